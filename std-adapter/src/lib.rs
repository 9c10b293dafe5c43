//! resilis: the Tokio driver of resilis-core (being written, issue 4).

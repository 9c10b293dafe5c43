//! Helpers shared by the integration tests: short timeouts so that every
//! outage and every failure resolves in well under a second or two.
#![allow(dead_code)]

use std::time::Duration;

use resilis::{Client, Options};

/// Logs to the test output when `RUST_LOG` is set (e.g. `RUST_LOG=resilis=debug`).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Options for `url` with timeouts and backoff scaled down for tests.
pub fn fast(url: &str) -> Options {
    init_logs();
    Options::from_url(url)
        .expect("test URL parses")
        .configure(|c| {
            c.connect_timeout = Duration::from_secs(2);
            c.tls_timeout = Duration::from_secs(2);
            c.handshake_timeout = Duration::from_secs(2);
            c.command_timeout = Duration::from_secs(2);
            c.ping_interval = Duration::from_millis(500);
            c.ping_timeout = Duration::from_millis(1000);
            c.backoff.initial = Duration::from_millis(20);
            c.backoff.max_delay = Duration::from_millis(200);
            c.backoff.probe_interval = Duration::from_millis(200);
            c.permanent_retry = Some(Duration::from_millis(500));
        })
}

pub async fn ready(client: &Client) {
    if let Err(e) = client.wait_ready(Duration::from_secs(5)).await {
        panic!("client not ready: {e}\nhealth: {:#?}", client.health());
    }
}

/// Polls `check` every 10 ms for at most `limit`.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

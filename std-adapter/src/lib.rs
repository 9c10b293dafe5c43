//! resilis: a Redis connection that does not fall over, for Tokio.
//!
//! ```no_run
//! # async fn demo() -> Result<(), resilis::Error> {
//! // REDIS_URL=rediss://default:password@host:6379, or REDIS_HOST/REDIS_PORT/
//! // REDIS_PASSWORD/REDIS_TLS, plus REDIS_TLS_CA_FILE & co for TLS.
//! let client = resilis::Client::from_env()?;
//! client.set("greeting", "hello").await?;
//! let value: Option<String> = client.get("greeting").await?;
//! println!("{value:?} ({})", client.health().state);
//! # Ok(()) }
//! ```
//!
//! A [`Client`] is a cloneable handle to one connection driven by a Tokio
//! task around `resilis_core::Connection`, which owns every policy:
//! reconnect backoff, keepalive pings, failure diagnosis, and what each
//! command does while Redis is unavailable (wait, fail with the reason, or
//! be answered by the fallback cache). Concurrent commands are pipelined
//! into shared writes.
//!
//! Modules:
//! - [`client`]: options, typed commands, `cmd()`; idempotency and blocking
//!   commands are described there.
//! - [`cluster`]: cluster mode (`redis://h1:p1,h2:p2`, `REDIS_CLUSTER_NODES`):
//!   the core's router over one connection per node.
//! - [`pubsub`]: `subscribe` / `psubscribe` / `ssubscribe` as a stream that
//!   marks its gaps, bounded per subscriber; `pushes()` for every other push.
//! - [`sentinel`]: Sentinel mode (`redis+sentinel://h1:p1,h2:p2/master`): the
//!   core's resolver over one connection per sentinel, the data node
//!   following the master it names.
//! - [`fallback`]: the in-memory cache that answers GETs while Redis is
//!   down (fed only by what Redis acknowledged).
//! - [`tls`]: TLS settings (`REDIS_TLS_*`) and [`tls::client_config`].
//! - [`health`]: the serializable [`Health`] report.
//! - [`error`]: the one [`Error`] type.
//!
//! Logs go through `tracing` (target `resilis`), never with a password.

pub mod client;
pub mod cluster;
mod cluster_pubsub;
mod driver;
mod encoding;
pub mod error;
pub mod fallback;
pub mod health;
mod node;
mod options;
pub mod pubsub;
mod seeds;
pub mod sentinel;
pub mod tls;
pub mod value;

pub use client::{Client, Cmd, OfflineMode, Options, SentinelOptions, SetOptions, Source, Sourced};
pub use cluster::{ClusterEvent, ClusterHealth, NodeHealth};
pub use error::Error;
pub use fallback::FallbackConfig;
pub use health::{Counters, Health, LastError};
pub use pubsub::{GapCause, Message, PubSubConfig, PubSubItem, Push, Subscriber};
pub use sentinel::{SentinelEvent, SentinelHealth};
pub use tls::{TlsConfigError, TlsOptions, client_config};
pub use value::{FromValue, ToArg, Value};

/// The core, re-exported: `Config`, `Event`, `DisconnectReason`...
pub use resilis_core as core;
pub use resilis_core::{Config, DisconnectReason, Event, PhaseKind};

/// `resilis doctor` and `resilis watch`: step-by-step diagnosis of a Redis
/// connection and a live view of the core state machine (issue 6).
pub mod doctor;

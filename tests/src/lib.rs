//! Test support: real redis-server processes, TLS material, a fault proxy.
//!
//! Everything here exists to make resilience claims checkable against the
//! real thing on loopback, and to fail loudly rather than skip:
//!
//! - [`server::RedisServer`]: a real `redis-server` per test on a free
//!   loopback port (plain, TLS, both; requirepass, ACL users, RESP2-only,
//!   protected mode, maxclients, idle timeout), kill/restart on the same
//!   port, and a raw RESP helper to check server-side state.
//! - [`tls::TestPki`]: a test CA, server and client certificates, and a
//!   second CA for wrong-CA cases, generated at test time (EC P-256).
//! - [`proxy::FaultProxy`]: a controllable TCP proxy (latency, freeze,
//!   RST, close after N bytes, idle limits, byte injection) and
//!   [`proxy::HostileServer`], which answers with scripted bytes.
//! - [`raw::RawConn`]: a blocking RESP client independent of resilis.

pub mod proxy;
pub mod raw;
pub mod server;
pub mod tls;

pub use proxy::{Behavior, Direction, FaultProxy, HostileServer, IdleAction};
pub use raw::{RawConn, Reply};
pub use server::{RedisServer, RedisServerBuilder};
pub use tls::{CertFiles, TestPki};

//! Test support: real redis-server processes, TLS material, a fault proxy.
//!
//! Everything here exists to make resilience claims checkable against the
//! real thing on loopback, and to fail loudly rather than skip:
//!
//! - [`server::RedisServer`]: a real `redis-server` per test on a free
//!   loopback port (plain, TLS, both; requirepass, ACL users, RESP2-only,
//!   protected mode, maxclients, idle timeout), kill/restart on the same
//!   port, and a raw RESP helper to check server-side state.
//! - [`cluster::Cluster`]: a real six-node Redis Cluster (three primaries,
//!   one replica each) and its faults: a killed, restarted or hung node, a
//!   manual failover, a slot in migration (ASK, TRYAGAIN).
//! - [`tls::TestPki`]: a test CA, server and client certificates, and a
//!   second CA for wrong-CA cases, generated at test time (EC P-256).
//! - [`proxy::FaultProxy`]: a controllable TCP proxy (latency, freeze,
//!   RST, close after N bytes, idle limits, byte injection) and
//!   [`proxy::HostileServer`], which answers with scripted bytes.
//! - [`raw::RawConn`]: a blocking RESP client independent of resilis.
//! - [`harness`]: a resilis client with every time scaled down, a recorder
//!   of its events, memory figures: what the fault scenarios share.
//!
//! ```no_run
//! use std::time::Duration;
//! use resilis_tests::{Direction, FaultProxy, RedisServer, TestPki};
//!
//! let pki = TestPki::generate();
//! let server = RedisServer::builder().tls(&pki).requirepass("pw").start();
//! let proxy = FaultProxy::start(server.addr());
//! // Point the client under test at proxy.url() / server.tls_url(), trusting
//! // pki.ca.cert_path; then misbehave:
//! proxy.set_latency(Direction::ToClient, Duration::from_millis(50));
//! proxy.freeze();
//! proxy.heal();
//! server.kill();
//! server.restart(); // same port, bounded wait until ready
//! assert_eq!(server.command(&["GET", "counter"]), "(nil)");
//! ```
//!
//! Every helper is bounded in time, never skips (a missing `redis-server`
//! is a panic saying how to install it), and cleans up on drop; spawned
//! servers also die with the test process (`PR_SET_PDEATHSIG`).

pub mod cluster;
pub mod harness;
pub mod linearizable;
pub mod proxy;
pub mod raw;
pub mod sentinel;
pub mod server;
pub mod soak;
pub mod table;
pub mod tls;

pub use cluster::Cluster;
pub use proxy::{Behavior, Direction, FaultProxy, HostileServer, IdleAction};
pub use raw::{RawConn, Reply};
pub use server::{RedisServer, RedisServerBuilder};
pub use tls::{CertFiles, TestPki};

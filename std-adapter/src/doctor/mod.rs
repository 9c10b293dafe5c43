//! `resilis doctor`: why can't my app reach Redis, and what do I change?
//!
//! [`diagnose`] walks the path a connection takes, one step at a time, and
//! stops at the first that fails: config → DNS → TCP → TLS → Redis handshake
//! → PING → INFO. Each step is timed and explained; the [`Report`] ends with
//! a verdict and the exact fix, reusing resilis-core's
//! [`DisconnectReason::fix`](resilis_core::DisconnectReason::fix) texts so
//! the doctor and the library never give different advice. The handshake is
//! run by the core's own state machine, so the doctor sees what the library
//! would see.
//!
//! In cluster mode (`redis://h1:p1,h2:p2`, or `REDIS_CLUSTER_NODES`) those
//! steps run against the first seed that answers, then the Cluster step
//! reaches every seed and listed node (at most 16) the same way, reads
//! each one's slot map and reports, as typed [`Finding`]s, slots no node
//! serves, nodes whose map differs from the majority's, nodes unreachable
//! or not online, and shards without a replica. A single-node URL to a
//! cluster node gets the finding that says to use cluster mode.
//!
//! In Sentinel mode (`redis+sentinel://h1:p1,h2:p2/mymaster`, or
//! `REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`) the Sentinel step comes
//! first: every sentinel is reached the same way (its own credentials,
//! `REDIS_SENTINEL_USERNAME` / `REDIS_SENTINEL_PASSWORD`) and asked
//! `SENTINEL get-master-addr-by-name`; the master is chosen from the
//! answers by resilis-core's resolver, as the client chooses it. Then the
//! per-connection steps run against that master, and its `ROLE` must say
//! `master`. Sentinels that do not answer, disagree or do not know the
//! name are typed findings; a single-node URL to a sentinel gets the
//! finding that says to use Sentinel mode.
//!
//! Both ways of getting TLS wrong are probed: a plaintext URL against a
//! TLS-only server (closed at once, or a TLS record back: confirmed with a
//! real ClientHello) and a TLS URL against a plaintext server (confirmed
//! with a plaintext PING).
//!
//! Everything that touches the outside is injectable for tests: the
//! environment (a lookup function) and DNS (a [`Resolver`]), so that a DNS
//! failure can be tested without a query leaving the machine.
//!
//! [`watch`] is the live view of the core state machine (`resilis watch`).
//!
//! ```no_run
//! # async fn demo() {
//! use resilis::doctor::{self, Options};
//! // What the application would connect to (REDIS_URL, REDIS_*...):
//! let report = doctor::diagnose(None, &doctor::process_env, &Options::default()).await;
//! print!("{}", doctor::render(&report)); // or report.to_json()
//! if let Some(fix) = &report.verdict.fix {
//!     eprintln!("fix: {fix}");
//! }
//! std::process::exit(report.exit_code());
//! # }
//! ```

mod cluster;
mod cluster_findings;
mod redis_steps;
mod render;
mod report;
mod sentinel;
mod sentinel_findings;
mod session;
mod steps;
mod tls;
mod tls_probe;
pub mod watch;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

pub use render::render;
pub use report::{
    ClusterNode, ClusterReport, EXIT_CODES, Finding, FindingKind, NodeRole, PingStats, Report,
    SentinelAnswer, SentinelNode, SentinelReport, SentinelTarget, ServerInfo, SlotSpan, Status,
    Step, StepName, Target, Verdict, ViewStatus,
};

/// Name resolution, injectable so tests can simulate NXDOMAIN without
/// sending a query anywhere. Called on a blocking thread.
pub trait Resolver: Send + Sync + 'static {
    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The system resolver (`getaddrinfo`: `/etc/hosts`, then DNS), as the
/// client uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        (host, port).to_socket_addrs().map(Iterator::collect)
    }
}

impl<F> Resolver for F
where
    F: Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
{
    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        self(host, port)
    }
}

/// How the doctor runs.
#[derive(Clone)]
pub struct Options {
    /// Limit for each step (DNS, TCP connect, TLS, handshake, each PING, INFO).
    pub timeout: Duration,
    /// PING round trips to measure.
    pub pings: usize,
    pub resolver: Arc<dyn Resolver>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(5),
            pings: 5,
            resolver: Arc::new(SystemResolver),
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("timeout", &self.timeout)
            .field("pings", &self.pings)
            .finish_non_exhaustive()
    }
}

/// Diagnoses the connection the library would make: `url` stands in for
/// `REDIS_URL` when given; every other `REDIS_*` / `REDIS_TLS_*` variable
/// comes from `env` (pass `|k| std::env::var(k).ok()` for the process
/// environment).
pub async fn diagnose(
    url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    options: &Options,
) -> Report {
    steps::run(url, env, options).await
}

/// The process environment, as `diagnose` and `watch` take it.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

//! The diagnosis itself: each step in order, each timed, stopping at the
//! first failure with the reason, the evidence and the fix. This file holds
//! the walk and the steps up to TCP; the TLS step is in `tls_probe`, the
//! handshake, PING and INFO in `redis_steps`, the Cluster step in `cluster`,
//! the Sentinel step in `sentinel`. [`connect`] is the per-connection walk,
//! which cluster mode runs once per node and Sentinel mode once per
//! sentinel and for the master.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use resilis_core::cluster::NodeAddr;
use resilis_core::config::ENV_VARS;
use resilis_core::{Config, DisconnectReason, TransportError};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::redis_steps::after_transport;
use super::report::{
    ClusterReport, Finding, PingStats, Report, SentinelReport, SentinelTarget, ServerInfo, Status,
    Step, StepName, Target, Verdict,
};
use super::session::{AnySession, Session, Stream, classify_io, reason_name};
use super::tls;
use super::tls_probe::{plaintext_tls_verdict, tls_step};
use super::{Options, Resolver};
use crate::error::Error;
use crate::options::SentinelOptions;
use crate::tls::{HostSource, TLS_ENV_VARS, TlsOptions};

/// The variable that names a cluster's seed nodes (besides a URL naming
/// several hosts).
const CLUSTER_NODES_VAR: &str = "REDIS_CLUSTER_NODES";
/// Sentinel mode's variables (besides a `redis+sentinel://` URL), as
/// `Options::from_env` reads them.
const SENTINEL_VARS: [&str; 4] = [
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "REDIS_SENTINEL_USERNAME",
    "REDIS_SENTINEL_PASSWORD",
];

/// The diagnosis so far: steps in order, and the failure that ended it.
pub(super) struct Diagnosis {
    pub steps: Vec<Step>,
    pub failure: Option<Failure>,
    pub warnings: Vec<String>,
    pub target: Option<Target>,
    pub ping: Option<PingStats>,
    pub server: Option<ServerInfo>,
    /// Typed problems (the cluster checks), in the order found.
    pub findings: Vec<Finding>,
    pub cluster: Option<ClusterReport>,
    /// The settings name several nodes: the Cluster step runs, and a seed
    /// that is a replica is no warning.
    pub cluster_mode: bool,
    /// INFO said `cluster_enabled:1`.
    pub cluster_enabled: bool,
    /// The settings name sentinels: the Sentinel step runs first, and the
    /// master's role is its finding, not an INFO warning.
    pub sentinel_mode: bool,
    pub sentinel: Option<SentinelReport>,
    /// What "healthy" means here, when not "accepts this configuration and
    /// answers PING".
    pub healthy_note: Option<String>,
}

pub(super) struct Failure {
    pub step: StepName,
    pub reason: Option<DisconnectReason>,
    pub problem: String,
    pub fix: String,
}

impl Diagnosis {
    pub fn new(cluster_mode: bool) -> Diagnosis {
        Diagnosis {
            steps: Vec::new(),
            failure: None,
            warnings: Vec::new(),
            target: None,
            ping: None,
            server: None,
            findings: Vec::new(),
            cluster: None,
            cluster_mode,
            cluster_enabled: false,
            sentinel_mode: false,
            sentinel: None,
            healthy_note: None,
        }
    }

    pub fn ok(&mut self, name: StepName, started: Instant, summary: String, details: Vec<String>) {
        self.push(name, Status::Ok, started, summary, details);
    }

    pub fn warn(
        &mut self,
        name: StepName,
        started: Instant,
        summary: String,
        details: Vec<String>,
    ) {
        self.push(name, Status::Warn, started, summary, details);
    }

    pub fn push(
        &mut self,
        name: StepName,
        status: Status,
        started: Instant,
        summary: String,
        details: Vec<String>,
    ) {
        self.steps.push(Step {
            name,
            status,
            elapsed_ms: Some(millis(started.elapsed())),
            summary,
            details,
        });
    }

    /// Records a failed step and the verdict it implies.
    /// The Config step fails: the settings are refused as the client
    /// refuses them, with the error's words and its fix.
    fn config_refused(
        &mut self,
        started: Instant,
        details: Vec<String>,
        error: &dyn std::fmt::Display,
        fix: &str,
    ) {
        self.fail(
            StepName::Config,
            started,
            details,
            failure(
                StepName::Config,
                None,
                format!("the configuration is invalid: {error}"),
                fix,
            ),
        );
    }

    pub fn fail(
        &mut self,
        name: StepName,
        started: Instant,
        details: Vec<String>,
        failure: Failure,
    ) {
        self.push(
            name,
            Status::Failed,
            started,
            failure.problem.clone(),
            details,
        );
        self.failure = Some(failure);
    }
}

pub(super) fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

pub(super) fn failure(
    step: StepName,
    reason: Option<DisconnectReason>,
    problem: String,
    fix: &str,
) -> Failure {
    Failure {
        step,
        reason,
        problem,
        fix: fix.to_owned(),
    }
}

pub(crate) async fn run(
    url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    options: &Options,
) -> Report {
    let mut d = Diagnosis::new(false);
    walk(&mut d, url, env, options).await;
    let cluster_step = d.cluster_mode.then_some(StepName::Cluster);
    let sentinel_step = d.sentinel_mode.then_some(StepName::Sentinel);
    for name in StepName::ALL
        .into_iter()
        .chain(cluster_step)
        .chain(sentinel_step)
    {
        if !d.steps.iter().any(|s| s.name == name) {
            d.steps
                .push(Step::skipped(name, "skipped: an earlier step failed"));
        }
    }
    d.steps.sort_by_key(|s| s.name.order());
    let passed = |name: StepName| {
        d.steps
            .iter()
            .any(|s| s.name == name && matches!(s.status, Status::Ok | Status::Warn))
    };
    let finished = passed(StepName::Info)
        && (!d.cluster_mode || passed(StepName::Cluster))
        && (!d.sentinel_mode || passed(StepName::Sentinel));
    if d.failure.is_none() && !finished {
        // Every early return records a failure; this is a bug, not health.
        return Report {
            schema: Report::SCHEMA,
            target: d.target,
            steps: d.steps,
            ping: d.ping,
            server: d.server,
            cluster: d.cluster,
            sentinel: d.sentinel,
            verdict: Verdict {
                healthy: false,
                exit_code: 1,
                failed_step: None,
                reason: None,
                problem: "the doctor stopped without a verdict (a bug in resilis: please report it with this output)".to_owned(),
                fix: None,
                warnings: d.warnings,
                findings: d.findings,
            },
        };
    }
    // Failures first, each group in the order found.
    d.findings.sort_by_key(|f| f.status != Status::Failed);
    let verdict = match d.failure {
        Some(f) => Verdict {
            healthy: false,
            exit_code: f.step.exit_code(),
            failed_step: Some(f.step),
            reason: f.reason.as_ref().map(reason_name),
            problem: f.problem,
            fix: Some(f.fix),
            warnings: d.warnings,
            findings: d.findings,
        },
        None => {
            let where_ = d.target.as_ref().map(|t| t.url.clone()).unwrap_or_default();
            let what = d
                .healthy_note
                .take()
                .unwrap_or_else(|| format!("{where_} accepts this configuration and answers PING"));
            let mut verdict = Verdict {
                healthy: true,
                exit_code: 0,
                failed_step: None,
                reason: None,
                problem: String::new(),
                fix: None,
                warnings: d.warnings,
                findings: d.findings,
            };
            verdict.problem = match verdict.warning_count() {
                0 => format!("healthy: {what}"),
                1 => format!("healthy, with 1 warning: {what}"),
                n => format!("healthy, with {n} warnings: {what}"),
            };
            verdict
        }
    };
    Report {
        schema: Report::SCHEMA,
        target: d.target,
        steps: d.steps,
        ping: d.ping,
        server: d.server,
        cluster: d.cluster,
        sentinel: d.sentinel,
        verdict,
    }
}

async fn walk(
    d: &mut Diagnosis,
    url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    options: &Options,
) {
    // ---- Config ---------------------------------------------------------
    let started = Instant::now();
    let Some((setup, trust)) = config_step(d, url, env, options, started) else {
        return;
    };
    if setup.sentinel.is_some() {
        d.sentinel_mode = true;
        super::sentinel::walk(d, &setup, options).await;
        return;
    }
    if setup.seeds.is_some() {
        d.cluster_mode = true;
        super::cluster::walk(d, &setup, trust, options).await;
        return;
    }
    let config = setup.config.clone();
    let session = connect(d, &setup, &config, trust, options, Upto::Info).await;
    let Some(mut session) = session else {
        return;
    };
    if d.cluster_enabled {
        super::cluster::single_node_is_cluster(d, &mut session, &setup, options.timeout).await;
    } else if d.server.as_ref().and_then(|s| s.mode.as_deref()) == Some("sentinel") {
        super::sentinel::single_node_is_sentinel(d, &mut session, &setup, options.timeout).await;
    }
}

/// How far [`connect`] goes once the handshake is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Upto {
    Handshake,
    /// PING round trips and INFO too.
    Info,
}

/// What the Config step settled, for every connection the doctor makes.
pub(super) struct Setup {
    pub config: Config,
    pub tls: TlsOptions,
    pub host_source: HostSource,
    /// Cluster mode: every seed, `config`'s host and port first.
    pub seeds: Option<Vec<NodeAddr>>,
    /// Sentinel mode: the sentinels, the master's name, the sentinels'
    /// credentials. `config` is then the data nodes' (its host and port a
    /// placeholder until the sentinels name the master).
    pub sentinel: Option<SentinelOptions>,
}

impl Setup {
    /// The configuration aimed at another node of the cluster: the same
    /// credentials, TLS and timeouts.
    pub fn at(&self, node: &NodeAddr) -> Config {
        let mut config = self.config.clone();
        config.host = node.host.clone();
        config.port = node.port;
        config
    }

    /// The client's trust for one TLS connection (each has its own
    /// recorder); `None` without TLS.
    pub fn trust(&self, host_source: HostSource) -> Result<Option<Trust>, String> {
        if !self.config.tls {
            return Ok(None);
        }
        let recorder: tls::Recorder = Arc::default();
        let config = tls::trust_config(&self.tls, recorder.clone())?;
        Ok(Some(Trust {
            config,
            recorder,
            host_source,
        }))
    }
}

/// DNS, TCP, TLS and the Redis handshake to `config`'s host and port (then
/// PING and INFO with [`Upto::Info`]), each a step recorded in `d`, as for
/// the one node of a single-node URL. `trust` is there exactly when the
/// config asks for TLS. The session, when no step failed.
pub(super) async fn connect(
    d: &mut Diagnosis,
    setup: &Setup,
    config: &Config,
    trust: Option<Trust>,
    options: &Options,
    upto: Upto,
) -> Option<AnySession> {
    let limit = options.timeout;

    // ---- DNS ------------------------------------------------------------
    let started = Instant::now();
    let addrs = dns_step(d, config, options.resolver.clone(), limit, started).await?;

    // ---- TCP ------------------------------------------------------------
    let started = Instant::now();
    let (tcp, addr) = tcp_step(d, &addrs, limit, started).await?;

    // ---- TLS and the handshake -------------------------------------------
    let (mut session, client_cert, done): (AnySession, bool, _) = if let Some(trust) = trust {
        let started = Instant::now();
        let stream = tls_step(d, config, &setup.tls, trust, tcp, addr, limit, started).await?;
        let stream: Box<dyn Stream> = Box::new(stream);
        (Session::new(stream), setup.tls.cert_file.is_some(), None)
    } else {
        let started = Instant::now();
        let stream: Box<dyn Stream> = Box::new(tcp);
        let mut session = Session::new(stream);
        let mut result = session.handshake(config, limit).await;
        if plaintext_tls_verdict(d, config, &setup.tls, &mut result, addr, limit, started).await {
            return None;
        }
        (session, false, Some((result, started)))
    };
    let ok = after_transport(
        d,
        &mut session,
        config,
        addr,
        limit,
        options.pings,
        client_cert,
        done,
        upto,
    )
    .await;
    ok.then_some(session)
}

/// The client's TLS configuration and what its verifier records.
pub(super) struct Trust {
    pub config: Arc<rustls::ClientConfig>,
    pub recorder: tls::Recorder,
    /// Where the host (the name to verify) came from.
    pub host_source: HostSource,
}

/// Parses the configuration exactly as the client does; on TLS URLs also
/// loads the trust (CA file...), whose errors are configuration errors too.
fn config_step(
    d: &mut Diagnosis,
    url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    options: &Options,
    started: Instant,
) -> Option<(Setup, Option<Trust>)> {
    let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
    let env_used: Vec<String> = ENV_VARS
        .iter()
        .chain(TLS_ENV_VARS)
        .chain(&[CLUSTER_NODES_VAR])
        .chain(&SENTINEL_VARS)
        .filter(|n| set(n))
        .map(|n| (*n).to_owned())
        .collect();
    let url_set = url.is_some() || set("REDIS_URL");
    let source = if url.is_some() {
        "the command line".to_owned()
    } else if set("REDIS_URL") {
        "REDIS_URL".to_owned()
    } else if set("REDIS_SENTINELS") {
        "REDIS_SENTINELS / REDIS_SENTINEL_MASTER".to_owned()
    } else if set("REDIS_HOST") || set("REDIS_PORT") {
        "REDIS_HOST / REDIS_PORT".to_owned()
    } else if set(CLUSTER_NODES_VAR) {
        CLUSTER_NODES_VAR.to_owned()
    } else {
        "the default: REDIS_URL and REDIS_HOST are not set".to_owned()
    };
    let refused = |d: &mut Diagnosis, e: &Error, details: Vec<String>| {
        let fix = match e {
            Error::Config(e) => format!("fix {}: {e}", e.field),
            other => other.fix().map_or_else(|| other.to_string(), str::to_owned),
        };
        d.config_refused(started, details, e, &fix);
    };
    let settings_from = || vec![format!("settings from {source}")];
    // A URL naming several hosts is cluster mode, as for the client: the
    // core parses the URL of the first (credentials and options included).
    // A Sentinel URL: the core parses the data nodes' URL.
    let given = url.map(str::to_owned).or_else(|| {
        env("REDIS_URL")
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.trim().to_owned())
    });
    let sentinel_url = match given.as_deref().map(crate::seeds::sentinel_url) {
        Some(Err(e)) => {
            refused(d, &e, settings_from());
            return None;
        }
        Some(Ok(parsed)) => parsed,
        None => None,
    };
    let split = match (&sentinel_url, given.as_deref()) {
        (Some(s), _) => Ok((Some(s.data_url.clone()), None)),
        (None, Some(given)) => {
            crate::seeds::split_url(given).map(|(first, seeds)| (Some(first), seeds))
        }
        (None, None) => Ok((None, None)),
    };
    let (first_url, mut seeds) = match split {
        Ok(split) => split,
        Err(e) => {
            refused(d, &e, settings_from());
            return None;
        }
    };
    let lookup = |name: &str| -> Option<String> {
        match (name, &first_url) {
            ("REDIS_URL", Some(first)) => Some(first.clone()),
            _ => env(name),
        }
    };
    let mut config = match Config::from_env(lookup) {
        Ok(c) => c,
        Err(e) => {
            let fix = format!("fix {}: {e}", e.field);
            d.config_refused(started, vec![format!("settings from {source}")], &e, &fix);
            return None;
        }
    };
    // REDIS_CLUSTER_NODES, as `Options::from_env` reads it: its first node
    // is the one to connect to unless REDIS_URL or REDIS_HOST names one.
    if seeds.is_none()
        && let Some(list) = env(CLUSTER_NODES_VAR).filter(|v| !v.trim().is_empty())
    {
        let list = match crate::seeds::parse_list(CLUSTER_NODES_VAR, &list) {
            Ok(list) => list,
            Err(e) => {
                refused(d, &e, settings_from());
                return None;
            }
        };
        if !url_set
            && !set("REDIS_HOST")
            && let Some((host, port)) = list.first()
        {
            config.host.clear();
            // The entry was parsed into a Config's host: it fits.
            let _ = config.host.push_str(host);
            config.port = *port;
        }
        seeds = Some(list);
    }
    let mut seeds = seeds.map(|list| {
        let first = NodeAddr {
            host: config.host.clone(),
            port: config.port,
        };
        let mut all = vec![first];
        for (host, port) in list {
            let node = NodeAddr::new(&host, port)
                .expect("a seed's host was parsed into a Config's host, of the same capacity");
            if !all.contains(&node) {
                all.push(node);
            }
        }
        all
    });
    let tls_settings = match TlsOptions::from_lookup(env) {
        Ok(s) => s,
        Err(e) => {
            d.config_refused(started, Vec::new(), &e, e.fix);
            return None;
        }
    };
    let host_source = match url {
        Some(_) => HostSource::Url,
        None => HostSource::of_env(env),
    };
    // As the client refuses them: TLS settings without TLS, a host that
    // cannot be a TLS server name.
    let tls_refused = match tls_settings.check_tls_on(config.tls) {
        Err(e) => Some(e),
        Ok(()) if config.tls => tls_settings
            .server_name_for(config.host.as_str(), host_source)
            .err(),
        Ok(()) => None,
    };
    // Sentinel mode, read by the client's own `Options::from_lookup`: once
    // the rest has passed the doctor's checks (so that their errors are
    // worded as above), its only errors are about the sentinels.
    let wants_sentinel = sentinel_url.is_some()
        || env("REDIS_SENTINELS").is_some()
        || env("REDIS_SENTINEL_MASTER").is_some();
    let mut sentinel_refused = None;
    let sentinel = if wants_sentinel && tls_refused.is_none() {
        let client_env = |name: &str| match (name, &given) {
            ("REDIS_URL", Some(given)) => Some(given.clone()),
            _ => env(name),
        };
        match crate::Options::from_lookup(client_env) {
            Ok(o) => o.sentinel,
            Err(e) => {
                sentinel_refused = Some(e);
                None
            }
        }
    } else {
        None
    };
    if sentinel.is_some() {
        // The client ignores cluster settings in Sentinel mode.
        seeds = None;
    }
    let target = target(
        &config,
        seeds.as_deref(),
        sentinel.as_ref(),
        &tls_settings,
        source,
        env_used,
        options,
    );
    let place = match (&seeds, &sentinel) {
        (_, Some(s)) => format!("Sentinel mode, master '{}'", s.master_name),
        (Some(seeds), None) => format!(
            "cluster mode, {} seed{}: {}",
            seeds.len(),
            if seeds.len() == 1 { "" } else { "s" },
            seeds
                .iter()
                .map(NodeAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (None, None) => format!("{}:{}", target.host, target.port),
    };
    let mut details = vec![format!(
        "{place} · TLS {} · user {} · password {} · db {} · RESP{}",
        if config.tls { "on" } else { "off" },
        if target.username.is_empty() {
            "default".to_owned()
        } else {
            format!("\"{}\"", target.username)
        },
        if target.password_set {
            "set"
        } else {
            "not set"
        },
        target.db,
        target.protocol
    )];
    if let Some(s) = &target.sentinel {
        details.push(format!(
            "{} sentinel{}: {} · sentinel user {} · sentinel password {}",
            s.sentinels.len(),
            if s.sentinels.len() == 1 { "" } else { "s" },
            s.sentinels.join(", "),
            if s.username.is_empty() {
                "default".to_owned()
            } else {
                format!("\"{}\"", s.username)
            },
            if s.password_set { "set" } else { "not set" },
        ));
    }
    details.push(format!(
        "client timeouts: connect {}, handshake {}, PING every {} (dead after {} more); the doctor allows {} per step",
        show_duration(config.connect_timeout),
        show_duration(config.handshake_timeout),
        show_duration(config.ping_interval),
        show_duration(config.ping_timeout),
        show_duration(options.timeout)
    ));
    if !target.env_used.is_empty() {
        details.push(format!("variables set: {}", target.env_used.join(", ")));
    }
    let summary = format!("settings from {}", target.source);
    d.target = Some(target);
    if let Some(e) = tls_refused {
        d.config_refused(started, details, &e, e.fix);
        return None;
    }
    if let Some(e) = sentinel_refused {
        refused(d, &e, details);
        return None;
    }
    // As the client refuses them when it starts.
    if let Some(s) = &sentinel
        && let Err(e) = super::sentinel::check(s)
    {
        d.config_refused(started, details, &e, super::sentinel::CHECK_FIX);
        return None;
    }
    let trust = if config.tls {
        let recorder: tls::Recorder = Arc::default();
        match tls::trust_config(&tls_settings, recorder.clone()) {
            Ok(config) => Some(Trust {
                config,
                recorder,
                host_source,
            }),
            Err(e) => {
                d.fail(
                    StepName::Config,
                    started,
                    details,
                    failure(StepName::Config, None, e.clone(), &e),
                );
                return None;
            }
        }
    } else {
        let loopback = |host: &str| {
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        };
        // In Sentinel mode the master is not known yet: its sentinels stand
        // for where the deployment is.
        let remote = match &sentinel {
            Some(s) => s.sentinels.iter().any(|(host, _)| !loopback(host)),
            None => !loopback(config.host.as_str()),
        };
        let password = !config.password.is_empty()
            || sentinel.as_ref().is_some_and(|s| !s.password.is_empty());
        if password && remote {
            d.warnings.push(
                "the password travels in clear text (redis://, no TLS): use rediss:// or REDIS_TLS=true if the server offers TLS"
                    .to_owned(),
            );
        }
        None
    };
    d.ok(StepName::Config, started, summary, details);
    let setup = Setup {
        config,
        tls: tls_settings,
        host_source,
        seeds,
        sentinel,
    };
    Some((setup, trust))
}

fn target(
    config: &Config,
    seeds: Option<&[NodeAddr]>,
    sentinel: Option<&SentinelOptions>,
    tls: &TlsOptions,
    source: String,
    env_used: Vec<String>,
    options: &Options,
) -> Target {
    let url = match (seeds, sentinel) {
        (_, Some(s)) => redacted_sentinel_url(config, s),
        (Some(seeds), None) => redacted_url_of(config, seeds),
        (None, None) => redacted_url(config),
    };
    Target {
        url,
        source,
        host: config.host.as_str().to_owned(),
        port: config.port,
        tls: config.tls,
        username: config.username.as_str().to_owned(),
        password_set: !config.password.is_empty(),
        db: config.db,
        protocol: config.protocol.version(),
        env_used,
        tls_ca_file: tls.ca_file.as_ref().map(|p| p.display().to_string()),
        tls_insecure: tls.insecure,
        tls_server_name: tls.server_name.clone(),
        ping_interval_ms: config.ping_interval.as_millis() as u64,
        step_timeout_ms: options.timeout.as_millis() as u64,
        cluster_seeds: seeds.map(|s| s.iter().map(NodeAddr::to_string).collect()),
        sentinel: sentinel.map(|s| SentinelTarget {
            sentinels: s
                .sentinels
                .iter()
                .map(|(host, port)| host_port(host, *port))
                .collect(),
            master_name: s.master_name.clone(),
            username: s.username.clone(),
            password_set: !s.password.is_empty(),
        }),
    }
}

/// `host:port`, IPv6 in brackets.
pub(super) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `redis://user:***@host:port/db`: the URL the config amounts to, never
/// with the password.
pub(crate) fn redacted_url(config: &Config) -> String {
    redacted_url_with(config, &host_port(config.host.as_str(), config.port))
}

/// `redis://user:***@h1:p1,h2:p2/db`: the URL naming every node (cluster
/// mode), never with the password.
pub(crate) fn redacted_url_of(config: &Config, nodes: &[NodeAddr]) -> String {
    let hosts: Vec<String> = nodes.iter().map(NodeAddr::to_string).collect();
    redacted_url_with(config, &hosts.join(","))
}

/// `redis+sentinel://user:***@s1:p1,s2:p2/mymaster/db`: the URL naming
/// the sentinels (Sentinel mode), never with the password. The userinfo
/// is the data nodes'; the sentinels' own password is never in a URL.
pub(crate) fn redacted_sentinel_url(config: &Config, sentinel: &SentinelOptions) -> String {
    let hosts: Vec<String> = sentinel
        .sentinels
        .iter()
        .map(|(host, port)| host_port(host, *port))
        .collect();
    format!(
        "{}+sentinel://{}{}/{}/{}",
        if config.tls { "rediss" } else { "redis" },
        userinfo(config),
        hosts.join(","),
        sentinel.master_name,
        config.db
    )
}

/// `redis://user:***@{hosts}/db`: the config's URL with these hosts.
pub(crate) fn redacted_url_with(config: &Config, hosts: &str) -> String {
    format!(
        "{}://{}{hosts}/{}",
        if config.tls { "rediss" } else { "redis" },
        userinfo(config),
        config.db
    )
}

/// `user:***@`, `user@` or nothing: never the password.
fn userinfo(config: &Config) -> String {
    match (config.username.is_empty(), config.password.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!("{}@", config.username),
        (_, false) => format!("{}:***@", config.username),
    }
}

async fn dns_step(
    d: &mut Diagnosis,
    config: &Config,
    resolver: Arc<dyn Resolver>,
    limit: Duration,
    started: Instant,
) -> Option<Vec<SocketAddr>> {
    let host = config.host.as_str().to_owned();
    let port = config.port;
    if let Ok(ip) = host.parse::<IpAddr>() {
        d.ok(
            StepName::Dns,
            started,
            format!("{ip} is an IP address: no lookup needed"),
            Vec::new(),
        );
        return Some(vec![SocketAddr::new(ip, port)]);
    }
    let lookup_host = host.clone();
    let lookup = tokio::task::spawn_blocking(move || resolver.resolve(&lookup_host, port));
    let dns_failure = |problem: String| {
        failure(
            StepName::Dns,
            Some(DisconnectReason::Transport(TransportError::Dns)),
            problem,
            DisconnectReason::Transport(TransportError::Dns).fix(),
        )
    };
    match timeout(limit, lookup).await {
        Ok(Ok(Ok(addrs))) if !addrs.is_empty() => {
            let mut shown: Vec<String> = Vec::new();
            for a in &addrs {
                let ip = a.ip().to_string();
                if !shown.contains(&ip) {
                    shown.push(ip);
                }
            }
            d.ok(
                StepName::Dns,
                started,
                format!(
                    "{host} resolves to {} address{}",
                    shown.len(),
                    if shown.len() == 1 { "" } else { "es" }
                ),
                shown,
            );
            Some(addrs)
        }
        Ok(Ok(Ok(_))) => {
            d.fail(
                StepName::Dns,
                started,
                Vec::new(),
                dns_failure(format!("{host} resolves to no address")),
            );
            None
        }
        Ok(Ok(Err(e))) => {
            d.fail(
                StepName::Dns,
                started,
                vec![format!("resolver: {e}")],
                dns_failure(format!("{host} does not resolve (unknown host)")),
            );
            None
        }
        Ok(Err(e)) => {
            d.fail(
                StepName::Dns,
                started,
                vec![format!("resolver task failed: {e}")],
                dns_failure(format!("{host} could not be resolved")),
            );
            None
        }
        Err(_) => {
            d.fail(
                StepName::Dns,
                started,
                Vec::new(),
                dns_failure(format!(
                    "resolving {host} took longer than {}",
                    show_duration(limit)
                )),
            );
            None
        }
    }
}

async fn tcp_step(
    d: &mut Diagnosis,
    addrs: &[SocketAddr],
    limit: Duration,
    started: Instant,
) -> Option<(TcpStream, SocketAddr)> {
    let mut details = Vec::new();
    let mut first_error: Option<(SocketAddr, Result<std::io::Error, ()>)> = None;
    for addr in addrs {
        match timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                d.ok(
                    StepName::Tcp,
                    started,
                    format!("connected to {addr}"),
                    details,
                );
                return Some((stream, *addr));
            }
            Ok(Err(e)) => {
                details.push(format!("{addr}: {e}"));
                first_error.get_or_insert((*addr, Ok(e)));
            }
            Err(_) => {
                details.push(format!("{addr}: no answer within {}", show_duration(limit)));
                first_error.get_or_insert((*addr, Err(())));
            }
        }
    }
    let Some((addr, error)) = first_error else {
        d.fail(
            StepName::Tcp,
            started,
            details,
            failure(
                StepName::Tcp,
                None,
                "no address to connect to".into(),
                "check REDIS_HOST",
            ),
        );
        return None;
    };
    let f = match error {
        Err(()) => failure(
            StepName::Tcp,
            Some(DisconnectReason::ConnectTimeout),
            format!(
                "TCP connect to {addr} got no answer within {}: a firewall or security group is dropping the packets, or the host is down",
                show_duration(limit)
            ),
            DisconnectReason::ConnectTimeout.fix(),
        ),
        Ok(e) => match classify_io(&e) {
            TransportError::Refused => failure(
                StepName::Tcp,
                Some(DisconnectReason::Transport(TransportError::Refused)),
                format!("connection refused by {addr}: nothing listens on that port"),
                DisconnectReason::Transport(TransportError::Refused).fix(),
            ),
            TransportError::TimedOut => failure(
                StepName::Tcp,
                Some(DisconnectReason::ConnectTimeout),
                format!("TCP connect to {addr} timed out: {e}"),
                DisconnectReason::ConnectTimeout.fix(),
            ),
            other => failure(
                StepName::Tcp,
                Some(DisconnectReason::Transport(other)),
                format!("cannot connect to {addr}: {e}"),
                "no route to the server: check the host, this machine's network (VPN, subnet) and that a firewall or security group allows this machine",
            ),
        },
    };
    d.fail(StepName::Tcp, started, details, f);
    None
}

pub(super) fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shown_url_never_has_the_password() {
        let shown = |url: &str| redacted_url(&Config::from_url(url).unwrap());
        assert_eq!(
            shown("rediss://app:hunter2@cache.example.com:25061/3"),
            "rediss://app:***@cache.example.com:25061/3"
        );
        assert_eq!(shown("redis://:hunter2@[::1]"), "redis://:***@[::1]:6379/0");
        assert_eq!(shown("redis://app@h"), "redis://app@h:6379/0");
        assert_eq!(shown("redis://h"), "redis://h:6379/0");
    }

    #[test]
    fn the_shown_sentinel_url_never_has_a_password() {
        let options = crate::Options::from_lookup(|name: &str| match name {
            "REDIS_URL" => {
                Some("rediss+sentinel://app:hunter2@s1:26379,[::1]:26380/mymaster/3".into())
            }
            "REDIS_SENTINEL_PASSWORD" => Some("sentinel-hunter2".into()),
            _ => None,
        })
        .unwrap();
        let sentinel = options.sentinel.as_ref().unwrap();
        assert_eq!(
            redacted_sentinel_url(&options.config, sentinel),
            "rediss+sentinel://app:***@s1:26379,[::1]:26380/mymaster/3"
        );
    }

    #[test]
    fn durations_read_like_the_config_s() {
        assert_eq!(show_duration(Duration::from_secs(5)), "5s");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(millis(Duration::from_micros(1_234_567)), 1234.6);
    }
}

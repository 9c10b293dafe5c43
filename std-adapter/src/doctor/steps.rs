//! The diagnosis itself: each step in order, each timed, stopping at the
//! first failure with the reason, the evidence and the fix. This file holds
//! the walk and the steps up to TCP; the TLS step is in `tls_probe`, the
//! handshake, PING and INFO in `redis_steps`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use resilis_core::config::ENV_VARS;
use resilis_core::{Config, DisconnectReason, TransportError};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::redis_steps::after_transport;
use super::report::{PingStats, Report, ServerInfo, Status, Step, StepName, Target, Verdict};
use super::session::{Session, classify_io, reason_name};
use super::tls;
use super::tls_probe::{plaintext_tls_verdict, tls_step};
use super::{Options, Resolver};
use crate::tls::{HostSource, TLS_ENV_VARS, TlsOptions};

/// The diagnosis so far: steps in order, and the failure that ended it.
pub(super) struct Diagnosis {
    pub steps: Vec<Step>,
    pub failure: Option<Failure>,
    pub warnings: Vec<String>,
    pub target: Option<Target>,
    pub ping: Option<PingStats>,
    pub server: Option<ServerInfo>,
}

pub(super) struct Failure {
    pub step: StepName,
    pub reason: Option<DisconnectReason>,
    pub problem: String,
    pub fix: String,
}

impl Diagnosis {
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

    fn push(
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
    let mut d = Diagnosis {
        steps: Vec::new(),
        failure: None,
        warnings: Vec::new(),
        target: None,
        ping: None,
        server: None,
    };
    walk(&mut d, url, env, options).await;
    for name in StepName::ALL {
        if !d.steps.iter().any(|s| s.name == name) {
            d.steps
                .push(Step::skipped(name, "skipped: an earlier step failed"));
        }
    }
    d.steps
        .sort_by_key(|s| StepName::ALL.iter().position(|n| *n == s.name));
    let finished = d
        .steps
        .iter()
        .any(|s| s.name == StepName::Info && matches!(s.status, Status::Ok | Status::Warn));
    if d.failure.is_none() && !finished {
        // Every early return records a failure; this is a bug, not health.
        return Report {
            schema: Report::SCHEMA,
            target: d.target,
            steps: d.steps,
            ping: d.ping,
            server: d.server,
            verdict: Verdict {
                healthy: false,
                exit_code: 1,
                failed_step: None,
                reason: None,
                problem: "the doctor stopped without a verdict (a bug in resilis: please report it with this output)".to_owned(),
                fix: None,
                warnings: d.warnings,
            },
        };
    }
    let verdict = match d.failure {
        Some(f) => Verdict {
            healthy: false,
            exit_code: f.step.exit_code(),
            failed_step: Some(f.step),
            reason: f.reason.as_ref().map(reason_name),
            problem: f.problem,
            fix: Some(f.fix),
            warnings: d.warnings,
        },
        None => {
            let where_ = d.target.as_ref().map(|t| t.url.clone()).unwrap_or_default();
            Verdict {
                healthy: true,
                exit_code: 0,
                failed_step: None,
                reason: None,
                problem: if d.warnings.is_empty() {
                    format!("healthy: {where_} accepts this configuration and answers PING")
                } else {
                    format!(
                        "healthy, with {} warning{}: {where_} accepts this configuration and answers PING",
                        d.warnings.len(),
                        if d.warnings.len() == 1 { "" } else { "s" }
                    )
                },
                fix: None,
                warnings: d.warnings,
            }
        }
    };
    Report {
        schema: Report::SCHEMA,
        target: d.target,
        steps: d.steps,
        ping: d.ping,
        server: d.server,
        verdict,
    }
}

async fn walk(
    d: &mut Diagnosis,
    url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    options: &Options,
) {
    let limit = options.timeout;

    // ---- Config ---------------------------------------------------------
    let started = Instant::now();
    let Some((config, tls_settings, trust)) = config_step(d, url, env, options, started) else {
        return;
    };

    // ---- DNS ------------------------------------------------------------
    let started = Instant::now();
    let Some(addrs) = dns_step(d, &config, options.resolver.clone(), limit, started).await else {
        return;
    };

    // ---- TCP ------------------------------------------------------------
    let started = Instant::now();
    let Some((tcp, addr)) = tcp_step(d, &addrs, limit, started).await else {
        return;
    };

    // ---- TLS and the handshake -------------------------------------------
    // `trust` is there exactly when the config asks for TLS.
    if let Some(trust) = trust {
        let started = Instant::now();
        let Some(stream) =
            tls_step(d, &config, &tls_settings, trust, tcp, addr, limit, started).await
        else {
            return;
        };
        let session = Session::new(stream);
        let client_cert = tls_settings.cert_file.is_some();
        after_transport(
            d,
            session,
            &config,
            addr,
            limit,
            options.pings,
            client_cert,
            None,
        )
        .await;
    } else {
        let started = Instant::now();
        let mut session = Session::new(tcp);
        let mut result = session.handshake(&config, limit).await;
        if plaintext_tls_verdict(d, &config, &tls_settings, &mut result, addr, limit, started).await
        {
            return;
        }
        after_transport(
            d,
            session,
            &config,
            addr,
            limit,
            options.pings,
            false,
            Some((result, started)),
        )
        .await;
    }
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
) -> Option<(Config, TlsOptions, Option<Trust>)> {
    let lookup = |name: &str| -> Option<String> {
        match (name, url) {
            ("REDIS_URL", Some(url)) => Some(url.to_owned()),
            _ => env(name),
        }
    };
    let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
    let env_used: Vec<String> = ENV_VARS
        .iter()
        .chain(TLS_ENV_VARS)
        .filter(|n| set(n))
        .map(|n| (*n).to_owned())
        .collect();
    let source = if url.is_some() {
        "the command line".to_owned()
    } else if set("REDIS_URL") {
        "REDIS_URL".to_owned()
    } else if set("REDIS_HOST") || set("REDIS_PORT") {
        "REDIS_HOST / REDIS_PORT".to_owned()
    } else {
        "the default: REDIS_URL and REDIS_HOST are not set".to_owned()
    };
    let config = match Config::from_env(lookup) {
        Ok(c) => c,
        Err(e) => {
            let fix = format!("fix {}: {e}", e.field);
            d.config_refused(started, vec![format!("settings from {source}")], &e, &fix);
            return None;
        }
    };
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
    let target = target(&config, &tls_settings, source, env_used, options);
    let mut details = vec![format!(
        "{}:{} · TLS {} · user {} · password {} · db {} · RESP{}",
        target.host,
        target.port,
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
    // As the client refuses them: TLS settings without TLS, a host that
    // cannot be a TLS server name.
    let refused = match tls_settings.check_tls_on(config.tls) {
        Err(e) => Some(e),
        Ok(()) if config.tls => tls_settings
            .server_name_for(config.host.as_str(), host_source)
            .err(),
        Ok(()) => None,
    };
    if let Some(e) = refused {
        d.config_refused(started, details, &e, e.fix);
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
        let loopback = config.host.as_str() == "localhost"
            || config
                .host
                .as_str()
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !config.password.is_empty() && !loopback {
            d.warnings.push(
                "the password travels in clear text (redis://, no TLS): use rediss:// or REDIS_TLS=true if the server offers TLS"
                    .to_owned(),
            );
        }
        None
    };
    d.ok(StepName::Config, started, summary, details);
    Some((config, tls_settings, trust))
}

fn target(
    config: &Config,
    tls: &TlsOptions,
    source: String,
    env_used: Vec<String>,
    options: &Options,
) -> Target {
    Target {
        url: redacted_url(config),
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
    }
}

/// `redis://user:***@host:port/db`: the URL the config amounts to, never
/// with the password.
pub(crate) fn redacted_url(config: &Config) -> String {
    let host = config.host.as_str();
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let userinfo = match (config.username.is_empty(), config.password.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!("{}@", config.username),
        (_, false) => format!("{}:***@", config.username),
    };
    format!(
        "{}://{userinfo}{host}:{}/{}",
        if config.tls { "rediss" } else { "redis" },
        config.port,
        config.db
    )
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
    fn durations_read_like_the_config_s() {
        assert_eq!(show_duration(Duration::from_secs(5)), "5s");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(millis(Duration::from_micros(1_234_567)), 1234.6);
    }
}

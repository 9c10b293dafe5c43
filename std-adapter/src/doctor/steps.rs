//! The diagnosis itself: each step in order, each timed, stopping at the
//! first failure with the reason, the evidence and the fix.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use resilis_core::config::ENV_VARS;
use resilis_core::{Config, DisconnectReason, TlsEvidence, TransportError};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::report::{PingStats, Report, ServerInfo, Status, Step, StepName, Target, Verdict};
use super::session::{HandshakeResult, Reply, Session, classify_io, quote, reason_name};
use super::tls;
use super::{Options, Resolver};
use crate::tls::{TLS_ENV_VARS, TlsOptions};

/// A certificate expiring sooner than this is a warning.
const EXPIRY_WARNING_DAYS: i64 = 14;
/// Share of maxclients in use that is a warning.
const CLIENTS_WARNING_PERCENT: u64 = 80;

/// The diagnosis so far: steps in order, and the failure that ended it.
struct Diagnosis {
    steps: Vec<Step>,
    failure: Option<Failure>,
    warnings: Vec<String>,
    target: Option<Target>,
    ping: Option<PingStats>,
    server: Option<ServerInfo>,
}

struct Failure {
    step: StepName,
    reason: Option<DisconnectReason>,
    problem: String,
    fix: String,
}

impl Diagnosis {
    fn ok(&mut self, name: StepName, started: Instant, summary: String, details: Vec<String>) {
        self.push(name, Status::Ok, started, summary, details);
    }

    fn warn(&mut self, name: StepName, started: Instant, summary: String, details: Vec<String>) {
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
    fn fail(&mut self, name: StepName, started: Instant, details: Vec<String>, failure: Failure) {
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

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

fn failure(
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
    if config.tls {
        let started = Instant::now();
        let Some(trust) = trust else { return };
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
        let result = session.handshake(&config, limit).await;
        if plaintext_tls_verdict(d, &config, &tls_settings, &result, addr, limit, started).await {
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
struct Trust {
    config: Arc<rustls::ClientConfig>,
    recorder: tls::Recorder,
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
            let shown = e.to_string();
            d.fail(
                StepName::Config,
                started,
                vec![format!("settings from {source}")],
                failure(
                    StepName::Config,
                    None,
                    format!("the configuration is invalid: {shown}"),
                    &format!("fix {}: {shown}", e.field),
                ),
            );
            return None;
        }
    };
    let tls_settings = match TlsOptions::from_lookup(env) {
        Ok(s) => s,
        Err(e) => {
            d.fail(
                StepName::Config,
                started,
                Vec::new(),
                failure(
                    StepName::Config,
                    None,
                    format!("the configuration is invalid: {e}"),
                    e.fix,
                ),
            );
            return None;
        }
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
    let trust = if config.tls {
        let recorder: tls::Recorder = Arc::default();
        match tls::trust_config(&tls_settings, recorder.clone()) {
            Ok(config) => Some(Trust { config, recorder }),
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
        if tls_settings.ca_file.is_some() || tls_settings.insecure {
            d.warnings.push(
                "REDIS_TLS_CA_FILE / REDIS_TLS_INSECURE are set but TLS is off (redis://): they have no effect"
                    .to_owned(),
            );
        }
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

#[allow(clippy::too_many_arguments)]
async fn tls_step(
    d: &mut Diagnosis,
    config: &Config,
    settings: &TlsOptions,
    trust: Trust,
    tcp: TcpStream,
    addr: SocketAddr,
    limit: Duration,
    started: Instant,
) -> Option<TlsStream<TcpStream>> {
    let expected = settings
        .server_name
        .clone()
        .unwrap_or_else(|| config.host.as_str().to_owned());
    let name = match settings.server_name_for(config.host.as_str()) {
        Ok(n) => n,
        Err(e) => {
            d.fail(
                StepName::Tls,
                started,
                Vec::new(),
                failure(StepName::Tls, None, e.to_string(), e.fix),
            );
            return None;
        }
    };
    let Trust {
        config: trust,
        recorder,
    } = trust;
    let connector = TlsConnector::from(trust);
    let result = timeout(limit, connector.connect(name.clone(), tcp)).await;
    let seen = tls::seen(&recorder);
    let mut details = cert_details(seen.as_ref());
    let stream = match result {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tls_failure(
                d,
                &e,
                seen.as_ref(),
                &expected,
                details,
                addr,
                limit,
                started,
            )
            .await;
            return None;
        }
        Err(_) => {
            let plain = speaks_plain_resp(addr, limit).await;
            let f = match plain {
                Some(reply) => {
                    details.push(format!("a plaintext PING on {addr} got: {reply}"));
                    not_spoken(addr)
                }
                None => failure(
                    StepName::Tls,
                    Some(DisconnectReason::TlsTimeout),
                    format!(
                        "the TLS handshake with {addr} got no answer within {}",
                        show_duration(limit)
                    ),
                    DisconnectReason::TlsTimeout.fix(),
                ),
            };
            d.fail(StepName::Tls, started, details, f);
            return None;
        }
    };
    let (_, session) = stream.get_ref();
    let version = session
        .protocol_version()
        .map(|v| format!("{v:?}").replace('_', "."))
        .unwrap_or_else(|| "TLS".into());
    let suite = session
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    details.insert(0, format!("{version} {suite}"));
    let mut summary = format!("{version} with {addr}, certificate verified for \"{expected}\"");
    let mut warn = false;
    if let Some(seen) = &seen {
        if let Err(e) = &seen.result {
            // Only reachable in insecure mode: the verifier accepted anyway.
            warn = true;
            summary = format!(
                "{version} with {addr}, certificate NOT verified (REDIS_TLS_INSECURE=true)"
            );
            d.warnings.push(format!(
                "REDIS_TLS_INSECURE=true: the certificate would be refused ({}); the connection is encrypted but anyone in the path can impersonate the server. Set REDIS_TLS_CA_FILE to your provider's CA instead",
                tls::explain_certificate(e, &expected)
            ));
        } else {
            details.push(match &settings.ca_file {
                Some(p) => format!("trusted: Mozilla roots + REDIS_TLS_CA_FILE={}", p.display()),
                None => "trusted: Mozilla roots".to_owned(),
            });
        }
        if let Some(leaf) = seen.chain.first().and_then(tls::summarize)
            && leaf.days_left < EXPIRY_WARNING_DAYS
        {
            warn = true;
            d.warnings.push(format!(
                "the server certificate expires in {} days ({}): renew it",
                leaf.days_left, leaf.not_after
            ));
        }
    }
    if warn {
        d.warn(StepName::Tls, started, summary, details);
    } else {
        d.ok(StepName::Tls, started, summary, details);
    }
    Some(stream)
}

fn cert_details(seen: Option<&tls::Seen>) -> Vec<String> {
    let Some(seen) = seen else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, der) in seen.chain.iter().enumerate() {
        let Some(c) = tls::summarize(der) else {
            out.push(format!("certificate {i}: unparseable"));
            continue;
        };
        let role = if i == 0 { "server" } else { "chain" };
        out.push(format!("{role} certificate: {}", c.subject));
        out.push(format!(
            "  issued by: {}{}",
            c.issuer,
            if c.self_signed { " (self-signed)" } else { "" }
        ));
        if i == 0 {
            if !c.names.is_empty() {
                out.push(format!("  names: {}", c.names.join(", ")));
            }
            out.push(if c.days_left < 0 {
                format!("  expired: {} ({} days ago)", c.not_after, -c.days_left)
            } else {
                format!("  expires: {} (in {} days)", c.not_after, c.days_left)
            });
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn tls_failure(
    d: &mut Diagnosis,
    error: &std::io::Error,
    seen: Option<&tls::Seen>,
    expected: &str,
    mut details: Vec<String>,
    addr: SocketAddr,
    limit: Duration,
    started: Instant,
) {
    let rustls_error = tls::rustls_error(error);
    if let Some(e @ rustls::Error::InvalidCertificate(cert)) = rustls_error {
        let why = tls::explain_certificate(e, expected);
        let leaf = seen.and_then(|s| s.chain.first()).and_then(tls::summarize);
        let fix = match cert {
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. } => match &leaf {
                Some(l) if !l.names.is_empty() => format!(
                    "connect with a name the certificate carries ({}), or set REDIS_TLS_SERVER_NAME to one of them",
                    l.names.join(", ")
                ),
                _ => "connect with the name on the server's certificate, or set REDIS_TLS_SERVER_NAME to it".to_owned(),
            },
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired: renew it on the server (or, knowing the risk, REDIS_TLS_INSECURE=true)".to_owned()
            }
            rustls::CertificateError::NotValidYet
            | rustls::CertificateError::NotValidYetContext { .. } => {
                "check this machine's clock (NTP), then the certificate's validity dates".to_owned()
            }
            _ => format!(
                "{}. REDIS_TLS_INSECURE=true skips verification: the connection stays encrypted, but anyone in the path can impersonate the server and read the password",
                DisconnectReason::TlsCertificate.fix()
            ),
        };
        d.fail(
            StepName::Tls,
            started,
            details,
            Failure {
                step: StepName::Tls,
                reason: Some(DisconnectReason::TlsCertificate),
                problem: format!("the server's TLS certificate is not trusted: {why}"),
                fix,
            },
        );
        return;
    }
    if let Some(rustls::Error::AlertReceived(alert)) = rustls_error {
        details.push(format!("the server sent the TLS alert {alert:?}"));
        d.fail(
            StepName::Tls,
            started,
            details,
            failure(
                StepName::Tls,
                Some(DisconnectReason::Transport(TransportError::TlsOther)),
                format!("the server refused the TLS handshake ({alert:?})"),
                "the server may require a client certificate (set REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE) or a TLS version/cipher this client lacks: check the server's tls-* settings",
            ),
        );
        return;
    }
    // Plaintext back, or the connection closed: does it speak plain RESP?
    details.push(format!("TLS handshake: {error}"));
    match speaks_plain_resp(addr, limit).await {
        Some(reply) => {
            details.push(format!("a plaintext PING on {addr} got: {reply}"));
            d.fail(StepName::Tls, started, details, not_spoken(addr));
        }
        None => {
            let reason = match classify_io(error) {
                TransportError::TlsNotSpoken => DisconnectReason::TlsNotSpoken,
                other => DisconnectReason::Transport(other),
            };
            d.fail(
                StepName::Tls,
                started,
                details,
                failure(
                    StepName::Tls,
                    Some(reason),
                    format!("the TLS handshake with {addr} failed: {error}"),
                    reason.fix(),
                ),
            );
        }
    }
}

fn not_spoken(addr: SocketAddr) -> Failure {
    failure(
        StepName::Tls,
        Some(DisconnectReason::TlsNotSpoken),
        format!(
            "TLS is on (rediss:// or REDIS_TLS=true) but {addr} speaks plaintext RESP, not TLS"
        ),
        DisconnectReason::TlsNotSpoken.fix(),
    )
}

/// On a plaintext URL: did the handshake fail because the server wants
/// TLS? Confirms with a real ClientHello on a second connection. Returns
/// whether it recorded a verdict (the TLS step failed).
#[allow(clippy::too_many_arguments)]
async fn plaintext_tls_verdict(
    d: &mut Diagnosis,
    config: &Config,
    settings: &TlsOptions,
    result: &HandshakeResult,
    addr: SocketAddr,
    limit: Duration,
    started: Instant,
) -> bool {
    let suspicious = match &result.outcome {
        Ok(_) => false,
        Err(DisconnectReason::TlsRequired(_)) => true,
        Err(DisconnectReason::Transport(TransportError::Closed | TransportError::Reset)) => {
            !result.received_any
        }
        Err(DisconnectReason::HandshakeTimeout {
            received_any: false,
        }) => true,
        Err(_) => false,
    };
    if !suspicious {
        let summary = if result.received_any {
            "not used (redis://): the server speaks plaintext RESP".to_owned()
        } else {
            "not used (redis://)".to_owned()
        };
        d.steps.push(Step {
            name: StepName::Tls,
            status: if result.received_any {
                Status::Ok
            } else {
                Status::Skipped
            },
            elapsed_ms: None,
            summary,
            details: Vec::new(),
        });
        return false;
    }
    let name = settings
        .server_name_for(config.host.as_str())
        .unwrap_or_else(|_| ServerName::try_from("localhost").expect("a valid DNS name"));
    let probe = speaks_tls(addr, name, limit).await;
    let how = match &result.outcome {
        Err(DisconnectReason::TlsRequired(TlsEvidence::TlsRecord)) => {
            "answered our plaintext HELLO with a TLS record"
        }
        Err(DisconnectReason::HandshakeTimeout { .. }) => "never answered our plaintext HELLO",
        _ => "closed the connection right after TCP connect",
    };
    match probe {
        Ok(evidence) => {
            let evidence_kind = if how.contains("TLS record") {
                TlsEvidence::TlsRecord
            } else {
                TlsEvidence::ClosedWithoutReply
            };
            let reason = DisconnectReason::TlsRequired(evidence_kind);
            d.fail(
                StepName::Tls,
                started,
                vec![
                    format!("plaintext HELLO: the server {how}"),
                    format!("TLS ClientHello on a new connection: {evidence}"),
                ],
                failure(
                    StepName::Tls,
                    Some(reason),
                    format!("The server {how} and answers a TLS ClientHello: it requires TLS"),
                    "use rediss:// or set REDIS_TLS=true",
                ),
            );
            true
        }
        Err(why) => {
            // Not TLS either: leave the verdict to the handshake step, with
            // what the probe showed.
            d.steps.push(Step {
                name: StepName::Tls,
                status: Status::Skipped,
                elapsed_ms: None,
                summary: format!(
                    "not used (redis://); the port does not answer TLS either ({why})"
                ),
                details: Vec::new(),
            });
            false
        }
    }
}

/// Connects again and tries a TLS handshake that accepts any certificate:
/// only to learn whether the port speaks TLS. Nothing is sent after it.
async fn speaks_tls(
    addr: SocketAddr,
    name: ServerName<'static>,
    limit: Duration,
) -> Result<String, String> {
    let recorder: tls::Recorder = Arc::default();
    let config = tls::blind_config(recorder)?;
    let tcp = match timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("reconnect failed: {e}")),
        Err(_) => return Err("reconnect timed out".into()),
    };
    match timeout(limit, TlsConnector::from(config).connect(name, tcp)).await {
        Ok(Ok(stream)) => {
            let version = stream
                .get_ref()
                .1
                .protocol_version()
                .map(|v| format!("{v:?}").replace('_', "."))
                .unwrap_or_else(|| "TLS".into());
            Ok(format!("{version} handshake completed"))
        }
        Ok(Err(e)) => match tls::rustls_error(&e) {
            Some(rustls::Error::AlertReceived(alert)) => {
                Ok(format!("answered with the TLS alert {alert:?}"))
            }
            _ => Err(e.to_string()),
        },
        Err(_) => Err("no TLS answer in time".into()),
    }
}

/// Connects again and sends a plaintext PING (no credentials): the first
/// line of a RESP reply, if one comes.
async fn speaks_plain_resp(addr: SocketAddr, limit: Duration) -> Option<String> {
    let mut tcp = timeout(limit, TcpStream::connect(addr)).await.ok()?.ok()?;
    timeout(limit, tcp.write_all(b"*1\r\n$4\r\nPING\r\n"))
        .await
        .ok()?
        .ok()?;
    let mut buf = [0u8; 512];
    let mut len = 0;
    let deadline = tokio::time::Instant::now() + limit;
    while len < buf.len() {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf[len..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => len += n,
        }
        if buf[..len].windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    let got = &buf[..len];
    let line_end = got.windows(2).position(|w| w == b"\r\n")?;
    matches!(
        got.first(),
        Some(b'+' | b'-' | b':' | b'$' | b'*' | b'%' | b'_')
    )
    .then(|| quote(&got[..line_end]))
}

/// The Redis handshake (done already on plaintext), PING and INFO.
#[allow(clippy::too_many_arguments)]
async fn after_transport<S: AsyncRead + AsyncWrite + Unpin>(
    d: &mut Diagnosis,
    mut session: Session<S>,
    config: &Config,
    addr: SocketAddr,
    limit: Duration,
    pings: usize,
    client_cert: bool,
    done: Option<(HandshakeResult, Instant)>,
) {
    let (result, started) = match done {
        Some(done) => done,
        None => {
            let started = Instant::now();
            (session.handshake(config, limit).await, started)
        }
    };
    let user = if config.username.is_empty() {
        "default"
    } else {
        config.username.as_str()
    };
    let ready = match result.outcome {
        Ok(ready) => ready,
        Err(reason) if result.tls_alert.is_some() => {
            // The TLS handshake looked fine, then the server ended the
            // session with an alert: a TLS problem (typically mutual TLS),
            // not a Redis one.
            let alert = result.tls_alert.unwrap_or_default();
            let fix = if client_cert {
                "the server rejected the client certificate: check that REDIS_TLS_CERT_FILE is signed by the CA the server trusts (tls-ca-cert-file) and has not expired"
            } else {
                "the server requires a client certificate (mutual TLS): set REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE to the certificate and key your provider issued"
            };
            let problem = format!(
                "the server ended the TLS session with the alert {alert} right after the handshake{}",
                if client_cert {
                    ""
                } else {
                    ": it wants a client certificate"
                }
            );
            if let Some(tls) = d.steps.iter_mut().find(|s| s.name == StepName::Tls) {
                tls.status = Status::Failed;
                tls.details
                    .push(format!("then the server sent the TLS alert {alert}"));
                tls.summary = problem.clone();
            }
            d.failure = Some(failure(StepName::Tls, Some(reason), problem, fix));
            return;
        }
        Err(reason) => {
            let mut details = Vec::new();
            if let Some(text) = &result.server_error {
                details.push(format!("server: {text}"));
            }
            let problem = handshake_problem(&reason, config, user, addr, limit);
            let fix = match reason {
                DisconnectReason::HandshakeTimeout {
                    received_any: false,
                } => {
                    "the server accepts TCP but never answers: a proxy, load balancer or firewall in between is holding the connection (or the port is not Redis); check the port and the path to the server"
                }
                other => other.fix(),
            };
            d.fail(
                StepName::Handshake,
                started,
                details,
                failure(StepName::Handshake, Some(reason), problem, fix),
            );
            return;
        }
    };
    let auth = if config.password.is_empty() {
        "no password".to_owned()
    } else {
        format!("authenticated as {user}")
    };
    let version = ready
        .version
        .map(|v| format!("Redis {v}"))
        .unwrap_or_else(|| "Redis (version not reported)".into());
    d.ok(
        StepName::Handshake,
        started,
        format!(
            "{version}, RESP{}, {auth}{}",
            ready.protocol.version(),
            if config.db != 0 {
                format!(", db {}", config.db)
            } else {
                String::new()
            }
        ),
        Vec::new(),
    );

    // ---- PING -------------------------------------------------------------
    let started = Instant::now();
    let mut samples = Vec::new();
    for _ in 0..pings.max(1) {
        let sent = Instant::now();
        match session.request(&[b"PING"], limit).await {
            Ok(Reply::Text(t)) if t.eq_ignore_ascii_case("PONG") => {
                samples.push(millis(sent.elapsed()));
            }
            Ok(other) => {
                d.fail(
                    StepName::Ping,
                    started,
                    Vec::new(),
                    failure(
                        StepName::Ping,
                        None,
                        format!("PING got {other:?} instead of PONG"),
                        "the server is not behaving like Redis: check the port, and any proxy in between",
                    ),
                );
                return;
            }
            Err(e) => {
                d.fail(
                    StepName::Ping,
                    started,
                    Vec::new(),
                    failure(
                        StepName::Ping,
                        Some(DisconnectReason::PingTimeout),
                        format!("PING after a successful handshake: {e}"),
                        DisconnectReason::PingTimeout.fix(),
                    ),
                );
                return;
            }
        }
    }
    let stats = PingStats::from_samples(samples).expect("at least one sample was taken");
    d.ok(
        StepName::Ping,
        started,
        format!(
            "{} round trips: min {:.1} ms, median {:.1} ms, max {:.1} ms",
            stats.samples_ms.len(),
            stats.min_ms,
            stats.median_ms,
            stats.max_ms
        ),
        Vec::new(),
    );
    d.ping = Some(stats);

    // ---- INFO -------------------------------------------------------------
    let started = Instant::now();
    info_step(
        d,
        &mut session,
        config,
        ready.protocol.version(),
        limit,
        started,
    )
    .await;
}

fn handshake_problem(
    reason: &DisconnectReason,
    config: &Config,
    user: &str,
    addr: SocketAddr,
    limit: Duration,
) -> String {
    match reason {
        DisconnectReason::AuthFailed if !config.username.is_empty() => format!(
            "authentication failed (WRONGPASS): ACL user \"{user}\" does not exist, is disabled, or the password is wrong"
        ),
        DisconnectReason::AuthFailed => {
            "authentication failed (WRONGPASS): the password is wrong for the default user"
                .to_owned()
        }
        DisconnectReason::AuthRequired => {
            "the server requires a password (NOAUTH) and none is configured".to_owned()
        }
        DisconnectReason::ProtectedMode => format!(
            "{addr} refused us: Redis is in protected mode (DENIED) and this client is not on its loopback interface"
        ),
        DisconnectReason::MaxClients => {
            "the server refused the connection: max number of clients reached".to_owned()
        }
        DisconnectReason::HandshakeTimeout {
            received_any: false,
        } => format!(
            "TCP connected to {addr}, but the server sent nothing back within {}",
            show_duration(limit)
        ),
        DisconnectReason::TlsRequired(TlsEvidence::ClosedWithoutReply) => format!(
            "{addr} closed the connection right after TCP connect without replying, and does not answer TLS either"
        ),
        other => {
            let text = other.to_string();
            // Display is "<what>: <fix>"; the fix is shown on its own line.
            text.split(": ").next().unwrap_or(&text).to_owned()
        }
    }
}

async fn info_step<S: AsyncRead + AsyncWrite + Unpin>(
    d: &mut Diagnosis,
    session: &mut Session<S>,
    config: &Config,
    protocol: u8,
    limit: Duration,
    started: Instant,
) {
    let text = match session.request(&[b"INFO"], limit).await {
        Ok(Reply::Text(t)) => t,
        Ok(Reply::Error(e)) => {
            d.warnings.push(format!(
                "INFO is not allowed for this user ({e}): server checks skipped"
            ));
            d.warn(
                StepName::Info,
                started,
                format!("INFO refused: {e}"),
                Vec::new(),
            );
            return;
        }
        Ok(other) => {
            d.warn(
                StepName::Info,
                started,
                format!("INFO returned {other:?}"),
                Vec::new(),
            );
            return;
        }
        Err(e) => {
            d.fail(
                StepName::Info,
                started,
                Vec::new(),
                failure(
                    StepName::Info,
                    Some(DisconnectReason::PingTimeout),
                    format!("INFO after a healthy PING: {e}"),
                    DisconnectReason::PingTimeout.fix(),
                ),
            );
            return;
        }
    };
    let field = |key: &str| -> Option<String> {
        text.lines().find_map(|line| {
            let (k, v) = line.trim_end().split_once(':')?;
            (k == key).then(|| v.to_owned())
        })
    };
    let number = |key: &str| field(key).and_then(|v| v.parse::<u64>().ok());
    let mut info = ServerInfo {
        version: field("redis_version"),
        mode: field("redis_mode"),
        role: field("role"),
        protocol: Some(protocol),
        uptime_s: number("uptime_in_seconds"),
        connected_clients: number("connected_clients"),
        maxclients: number("maxclients"),
        used_memory: number("used_memory"),
        maxmemory: number("maxmemory"),
        maxmemory_policy: field("maxmemory_policy"),
        evicted_keys: number("evicted_keys"),
        rdb_enabled: None,
        rdb_last_bgsave_status: field("rdb_last_bgsave_status"),
        aof_enabled: number("aof_enabled").map(|v| v == 1),
        idle_timeout_s: None,
        loading: number("loading").map(|v| v == 1),
    };
    let mut details = Vec::new();
    let mut config_note = None;
    match config_get(session, "timeout", limit).await {
        Ok(v) => info.idle_timeout_s = v.parse().ok(),
        Err(e) => config_note = Some(e),
    }
    if config_note.is_none() {
        if let Ok(save) = config_get(session, "save", limit).await {
            info.rdb_enabled = Some(!save.trim().is_empty());
        }
        // INFO shows maxclients since Redis 7.0 only.
        if info.maxclients.is_none()
            && let Ok(max) = config_get(session, "maxclients", limit).await
        {
            info.maxclients = max.parse().ok();
        }
    }

    details.push(format!(
        "server: Redis {} ({}), role {}",
        info.version.as_deref().unwrap_or("?"),
        info.mode.as_deref().unwrap_or("?"),
        info.role.as_deref().unwrap_or("?"),
    ));
    if let (Some(clients), Some(max)) = (info.connected_clients, info.maxclients) {
        details.push(format!("clients: {clients} connected of maxclients {max}"));
        if max > 0 && clients * 100 >= max * CLIENTS_WARNING_PERCENT {
            d.warnings.push(format!(
                "{clients} of {max} client connections in use: new connections will soon get \"max number of clients reached\"; raise maxclients or pool connections"
            ));
        }
    }
    let memory = match (info.used_memory, info.maxmemory) {
        (Some(used), Some(0)) => format!("memory: {} used, no maxmemory limit", bytes(used)),
        (Some(used), Some(max)) => format!(
            "memory: {} used of maxmemory {} ({}%)",
            bytes(used),
            bytes(max),
            used * 100 / max
        ),
        _ => "memory: unknown".to_owned(),
    };
    details.push(format!(
        "{memory}, policy {}, evicted_keys {}",
        info.maxmemory_policy.as_deref().unwrap_or("?"),
        info.evicted_keys.map_or("?".into(), |v| v.to_string())
    ));
    if info.maxmemory.is_some_and(|m| m > 0)
        && info.maxmemory_policy.as_deref() == Some("noeviction")
    {
        d.warnings.push(
            "maxmemory is set with policy noeviction: writes fail with OOM once memory is full (set an allkeys-* or volatile-* policy for a cache)"
                .to_owned(),
        );
    }
    if info.evicted_keys.is_some_and(|e| e > 0) {
        d.warnings.push(format!(
            "the server has evicted {} keys to stay under maxmemory: a cache that is too small, or data you expected to keep",
            info.evicted_keys.unwrap_or(0)
        ));
    }
    details.push(format!(
        "persistence: RDB {}, AOF {}{}",
        match info.rdb_enabled {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown",
        },
        match info.aof_enabled {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown",
        },
        match info.rdb_last_bgsave_status.as_deref() {
            Some("ok") | None => String::new(),
            Some(s) => format!(", last RDB save {s}"),
        }
    ));
    if info.rdb_enabled == Some(false) && info.aof_enabled == Some(false) {
        details.push("  (no persistence: data is lost on restart; fine for a cache)".to_owned());
    }
    if info.rdb_last_bgsave_status.as_deref() == Some("err") {
        d.warnings.push(
            "the last RDB save failed: with stop-writes-on-bgsave-error the server refuses writes"
                .to_owned(),
        );
    }
    let ping_every = config.ping_interval;
    match (info.idle_timeout_s, &config_note) {
        (Some(0), _) => details.push(format!(
            "server idle timeout: off (client pings every {})",
            show_duration(ping_every)
        )),
        (Some(idle), _) => {
            details.push(format!(
                "server idle timeout: {idle} s (client pings every {})",
                show_duration(ping_every)
            ));
            if Duration::from_secs(idle) <= ping_every {
                d.warnings.push(format!(
                    "the server closes connections idle for {idle} s but the client pings only every {}: idle connections will be dropped; set REDIS_PING_INTERVAL below {idle}s",
                    show_duration(ping_every)
                ));
            }
        }
        (None, Some(note)) => details.push(format!(
            "server idle timeout: unknown (CONFIG GET refused: {note}); client pings every {}",
            show_duration(ping_every)
        )),
        (None, None) => {}
    }
    if info.role.as_deref().is_some_and(|r| r != "master") {
        d.warnings.push(format!(
            "this server is a {}: writes fail with READONLY; point REDIS_URL at the primary",
            info.role.as_deref().unwrap_or("replica")
        ));
    }
    if info.loading == Some(true) {
        d.warnings.push(
            "the server is loading its dataset: commands fail with LOADING until it is done"
                .to_owned(),
        );
    }
    let summary = format!(
        "Redis {} {}, {} clients, {}",
        info.version.as_deref().unwrap_or("?"),
        info.role.as_deref().unwrap_or("?"),
        info.connected_clients.map_or("?".into(), |c| c.to_string()),
        info.used_memory
            .map_or("memory ?".into(), |m| format!("{} used", bytes(m))),
    );
    let warn = !d.warnings.is_empty();
    d.server = Some(info);
    if warn {
        d.warn(StepName::Info, started, summary, details);
    } else {
        d.ok(StepName::Info, started, summary, details);
    }
}

/// `CONFIG GET name` → its value; the error text when CONFIG is refused
/// (ACL, renamed on managed services).
async fn config_get<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    name: &str,
    limit: Duration,
) -> Result<String, String> {
    match session
        .request(&[b"CONFIG", b"GET", name.as_bytes()], limit)
        .await
    {
        Ok(Reply::List(items)) => items
            .get(1)
            .and_then(Reply::text)
            .map(str::to_owned)
            .ok_or_else(|| format!("no value for {name}")),
        Ok(Reply::Error(e)) => Err(e),
        Ok(other) => Err(format!("unexpected reply {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub(crate) fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

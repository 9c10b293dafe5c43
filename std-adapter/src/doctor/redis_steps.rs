//! After the transport is up: the Redis handshake's verdict (run by the
//! core), PING round trips, and what INFO and CONFIG GET say about the
//! server (clients, memory, persistence, idle timeout, role).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use resilis_core::{Config, DisconnectReason, TlsEvidence};
use tokio::io::{AsyncRead, AsyncWrite};

use super::report::{PingStats, ServerInfo, Status, StepName};
use super::session::{HandshakeResult, Reply, Session};
use super::steps::{Diagnosis, Upto, failure, millis, show_duration};

/// Share of maxclients in use that is a warning.
const CLIENTS_WARNING_PERCENT: u64 = 80;

/// The Redis handshake (done already on plaintext), then PING and INFO
/// unless `upto` stops at the handshake. Whether every step passed.
#[allow(clippy::too_many_arguments)]
pub(super) async fn after_transport<S: AsyncRead + AsyncWrite + Unpin>(
    d: &mut Diagnosis,
    session: &mut Session<S>,
    config: &Config,
    addr: SocketAddr,
    limit: Duration,
    pings: usize,
    client_cert: bool,
    done: Option<(HandshakeResult, Instant)>,
    upto: Upto,
) -> bool {
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
            return false;
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
            return false;
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
    if upto == Upto::Handshake {
        return true;
    }

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
                return false;
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
                return false;
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
    info_step(d, session, config, ready.protocol.version(), limit, started).await
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

/// Whether INFO answered (refused by ACL counts: the server is up).
async fn info_step<S: AsyncRead + AsyncWrite + Unpin>(
    d: &mut Diagnosis,
    session: &mut Session<S>,
    config: &Config,
    protocol: u8,
    limit: Duration,
    started: Instant,
) -> bool {
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
            return true;
        }
        Ok(other) => {
            d.warn(
                StepName::Info,
                started,
                format!("INFO returned {other:?}"),
                Vec::new(),
            );
            return true;
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
            return false;
        }
    };
    let field = |key: &str| -> Option<String> {
        text.lines().find_map(|line| {
            let (k, v) = line.trim_end().split_once(':')?;
            (k == key).then(|| v.to_owned())
        })
    };
    let number = |key: &str| field(key).and_then(|v| v.parse::<u64>().ok());
    // `cluster_enabled` is in INFO's Cluster section (every version with
    // cluster support); `redis_mode` says it too.
    d.cluster_enabled =
        number("cluster_enabled") == Some(1) || field("redis_mode").as_deref() == Some("cluster");
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
    // In cluster mode a seed may be any node: the router reads the map from
    // it and sends writes to the primaries. In Sentinel mode the master's
    // ROLE is the Sentinel step's finding, with its own fix.
    if !d.cluster_mode && !d.sentinel_mode && info.role.as_deref().is_some_and(|r| r != "master") {
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
    true
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

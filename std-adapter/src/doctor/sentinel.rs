//! The Sentinel step, and Sentinel mode's walk. Every sentinel is reached
//! the way the single-node walk reaches a node ([`connect`] up to the
//! handshake: DNS, TCP, TLS, the handshake with the sentinels' own
//! credentials and no database, as the client's sentinel connections make
//! it), concurrently, each step within the per-step limit, and asked
//! `SENTINEL get-master-addr-by-name` with the core's own wire helpers
//! (`encode_get_master`, `parse_master_answer`). A sentinel that does not
//! know the name is asked `SENTINEL MASTERS` too, so that the fix can say
//! which names it monitors. `sentinel_findings` judges the answers and
//! names the master; the per-connection steps then run against it, and
//! its `ROLE` (the core's `parse_role`) must say master.
//!
//! Also the other way round: a single-node URL that reaches a sentinel
//! (`redis_mode:sentinel`) gets a Sentinel step that says to use Sentinel
//! mode.

use std::time::{Duration, Instant};

use resilis_core::cluster::NodeAddr;
use resilis_core::resp::{self, Decoded, Frame};
use resilis_core::sentinel::{
    Answer, NodeRole, Resolver, SentinelError, encode_get_master, parse_master_answer, parse_role,
};
use resilis_core::{Config, DisconnectReason, TransportError};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Options;
use super::cluster::join_all;
use super::cluster_findings::Unreached;
use super::report::{Finding, FindingKind, Status, StepName};
use super::sentinel_findings::{Asked, Outcome, assess};
use super::session::{AnySession, LIMITS, Reply, RequestError, Session, quote};
use super::steps::{Diagnosis, Setup, Upto, connect, failure, host_port, show_duration};
use crate::options::SentinelOptions;
use crate::tls::HostSource;

/// The fix when the client would refuse the list of sentinels.
pub(super) const CHECK_FIX: &str =
    "name 1 to 16 distinct sentinels as host:port and the master's name (up to 64 bytes, no blank)";

/// Names listed from one sentinel's `SENTINEL MASTERS` (and sentinels
/// from `SENTINEL SENTINELS`): enough for a fix.
const MAX_LISTED: usize = 8;

/// Whether the client would accept these sentinels and this name: the
/// core's resolver takes them, as the client's does when it starts.
pub(super) fn check(sentinel: &SentinelOptions) -> Result<(), SentinelError> {
    let list = sentinel.sentinels.iter().map(|(h, p)| (h.as_str(), *p));
    let resolver: Result<Box<Resolver<{ crate::sentinel::MAX_SENTINELS }>>, _> =
        Resolver::new(sentinel.config, &sentinel.master_name, list).map(Box::new);
    resolver.map(drop)
}

/// Sentinel mode: the Sentinel step, then the per-connection steps against
/// the master it names, then that master's `ROLE`.
pub(super) async fn walk(d: &mut Diagnosis, setup: &Setup, options: &Options) {
    let Some(sentinel) = setup.sentinel.as_ref() else {
        return;
    };
    let started = Instant::now();
    // The Config step checked that every sentinel's host fits.
    let nodes: Vec<NodeAddr> = sentinel
        .sentinels
        .iter()
        .filter_map(|(host, port)| NodeAddr::new(host, *port))
        .collect();
    let asked = join_all(
        nodes
            .into_iter()
            .map(|node| ask(setup, sentinel, node, options))
            .collect(),
    )
    .await;
    let a = assess(&sentinel.master_name, &asked);
    d.sentinel = Some(a.report);
    let first_failure = a
        .findings
        .iter()
        .find(|f| f.status == Status::Failed)
        .map(|f| failure(StepName::Sentinel, None, f.problem.clone(), &f.fix));
    d.push(StepName::Sentinel, a.status, started, a.summary, a.details);
    d.findings.extend(a.findings);
    if let Some(f) = first_failure {
        d.failure = Some(f);
        return;
    }
    let Some(master) = a.master else {
        // `assess` names no master only with a failed finding.
        return;
    };
    if let Some(target) = &mut d.target {
        target.host = master.host.as_str().to_owned();
        target.port = master.port;
    }

    // ---- the master: the per-connection steps -----------------------------
    let mut config = setup.at(&master);
    // ROLE is asked below, to be a finding of its own, not a failed handshake.
    config.require_master = false;
    // The master's address is the sentinels', no setting of the user's.
    let trust = match setup.trust(HostSource::Config) {
        Ok(trust) => trust,
        Err(e) => {
            // The CA file was read a moment ago: it changed since.
            d.fail(
                StepName::Tls,
                Instant::now(),
                Vec::new(),
                failure(StepName::Tls, None, e.clone(), &e),
            );
            return;
        }
    };
    let Some(mut session) = connect(d, setup, &config, trust, options, Upto::Info).await else {
        announced_address_hint(d, &master, &sentinel.master_name);
        return;
    };
    role_step(
        d,
        &mut session,
        &master,
        &sentinel.master_name,
        options.timeout,
    )
    .await;
    if d.failure.is_none() {
        let votes = d.sentinel.as_ref().map_or(0, |s| s.votes);
        let total = sentinel.sentinels.len();
        let who = match (votes, total) {
            (1, 1) => "the sentinel names".to_owned(),
            (v, t) if v == t => format!("all {t} sentinels name"),
            (v, t) => format!("{v} of {t} sentinels name"),
        };
        d.healthy_note = Some(format!(
            "{who} {master} as master of '{}', it says ROLE master and answers PING",
            sentinel.master_name
        ));
    }
}

/// The sentinel's connection settings, as the client makes them: the data
/// nodes' TLS and timeouts, the sentinels' own credentials, no database,
/// no ROLE check.
fn sentinel_config(setup: &Setup, sentinel: &SentinelOptions, node: &NodeAddr) -> Config {
    let mut config = setup.at(node);
    config.db = 0;
    config.require_master = false;
    config.readonly = false;
    config.username = sentinel.username.as_str().try_into().unwrap_or_default();
    config.password = sentinel.password.clone();
    config
}

/// One sentinel: reached up to the handshake, then asked for the master.
async fn ask(
    setup: &Setup,
    sentinel: &SentinelOptions,
    node: NodeAddr,
    options: &Options,
) -> Asked {
    let config = sentinel_config(setup, sentinel, &node);
    let outcome = match setup.trust(setup.host_source) {
        Err(e) => Outcome::Unreached(Unreached {
            step: StepName::Tls,
            problem: e.clone(),
            fix: e,
        }),
        Ok(trust) => {
            let mut attempt = Diagnosis::new(false);
            match connect(
                &mut attempt,
                setup,
                &config,
                trust,
                options,
                Upto::Handshake,
            )
            .await
            {
                Some(mut session) => {
                    master_answer(&mut session, &sentinel.master_name, options.timeout).await
                }
                None => Outcome::Unreached(unreached(&attempt)),
            }
        }
    };
    Asked {
        sentinel: node,
        outcome,
    }
}

/// Why the connection to a sentinel failed, with the sentinels' own
/// settings in the fix where the core's names the data nodes' (REDIS_HOST,
/// REDIS_PASSWORD).
fn unreached(attempt: &Diagnosis) -> Unreached {
    let Some(f) = &attempt.failure else {
        return Unreached {
            step: StepName::Handshake,
            problem: "the check stopped without a verdict (a bug in resilis)".to_owned(),
            fix: "please report it with this output".to_owned(),
        };
    };
    let fix = match f.reason {
        Some(DisconnectReason::AuthFailed) => {
            "wrong password or unknown user for the sentinel: the sentinels take their own credentials, REDIS_SENTINEL_PASSWORD (and REDIS_SENTINEL_USERNAME for an ACL user); the URL's user:password are the data nodes'"
                .to_owned()
        }
        Some(DisconnectReason::AuthRequired) => {
            "the sentinel requires a password (requirepass in its sentinel.conf): set REDIS_SENTINEL_PASSWORD; the URL's password is the data nodes', not the sentinels'"
                .to_owned()
        }
        Some(DisconnectReason::PasswordNotConfigured) => {
            "the sentinel has no password: unset REDIS_SENTINEL_PASSWORD (the URL's password is the data nodes' and is not sent to sentinels), or set requirepass in its sentinel.conf"
                .to_owned()
        }
        Some(DisconnectReason::Transport(TransportError::Dns)) => {
            "the sentinel's host name does not resolve: check it in the redis+sentinel:// URL or REDIS_SENTINELS, and this machine's DNS"
                .to_owned()
        }
        Some(DisconnectReason::Transport(TransportError::Refused)) => {
            "nothing listens there: check the sentinel's address in the redis+sentinel:// URL or REDIS_SENTINELS (sentinels listen on 26379 by default), and that the sentinel is running"
                .to_owned()
        }
        _ => f.fix.clone(),
    };
    Unreached {
        step: f.step,
        problem: f.problem.clone(),
        fix,
    }
}

/// `SENTINEL get-master-addr-by-name <name>` on a ready session.
async fn master_answer<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    name: &str,
    limit: Duration,
) -> Outcome {
    let mut buf = vec![0u8; 128 + name.len()];
    let Some(len) = encode_get_master(&mut buf, name) else {
        // 74 bytes plus the name always suffice.
        return refused(
            "the request could not be encoded".to_owned(),
            "please report it",
        );
    };
    let bytes = match session.request_encoded(&buf[..len], limit).await {
        Ok(bytes) => bytes,
        Err(RequestError::TimedOut) => {
            return refused(
                format!(
                    "no answer to SENTINEL get-master-addr-by-name within {}",
                    show_duration(limit)
                ),
                "the sentinel is overloaded or hung: check its process and its log",
            );
        }
        Err(e) => {
            return refused(
                format!("SENTINEL get-master-addr-by-name: {e}"),
                "check the sentinel's log",
            );
        }
    };
    let Ok(Decoded::Frame { frame, .. }) = resp::decode(&bytes, &LIMITS) else {
        // `request_encoded` returns one frame that decoded with these limits.
        return refused("an invalid reply".to_owned(), "check the sentinel's log");
    };
    if let Some(text) = frame.error_text() {
        return refused_by(&quote(text));
    }
    match parse_master_answer(&frame) {
        Answer::Master(addr) => Outcome::Named(Box::new(addr)),
        Answer::Unknown => Outcome::UnknownName {
            monitored: monitored(session, limit).await,
        },
        Answer::Failed => refused(
            "its reply to SENTINEL get-master-addr-by-name is not a host and a port".to_owned(),
            "check that this address is a Redis Sentinel",
        ),
    }
}

fn refused(problem: String, fix: &str) -> Outcome {
    Outcome::Refused {
        problem,
        fix: fix.to_owned(),
    }
}

/// An error reply to `SENTINEL get-master-addr-by-name`.
fn refused_by(text: &str) -> Outcome {
    let lower = text.to_ascii_lowercase();
    if lower.contains("unknown command") || lower.contains("unknown subcommand") {
        refused(
            format!(
                "it does not know SENTINEL get-master-addr-by-name ({text}): it is a Redis server, not a sentinel"
            ),
            "name the sentinels' ports (26379 by default), not the data nodes', in the redis+sentinel:// URL or REDIS_SENTINELS",
        )
    } else if lower.starts_with("noperm") {
        refused(
            format!("the sentinel user may not ask for the master ({text})"),
            "allow it on each sentinel: ACL SETUSER <user> +sentinel|get-master-addr-by-name +sentinel|masters, or use another REDIS_SENTINEL_USERNAME",
        )
    } else {
        refused(
            format!("SENTINEL get-master-addr-by-name answered {text}"),
            "check the sentinel's log",
        )
    }
}

/// The names a sentinel monitors (`SENTINEL MASTERS`), at most
/// [`MAX_LISTED`]; `None` when it would not say.
async fn monitored<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    limit: Duration,
) -> Option<Vec<String>> {
    let Ok(Reply::List(masters)) = session.request(&[b"SENTINEL", b"MASTERS"], limit).await else {
        return None;
    };
    Some(
        masters
            .iter()
            .filter_map(|m| field(m, "name"))
            .take(MAX_LISTED)
            .collect(),
    )
}

/// A field of a RESP3 map, or of the flat name/value array RESP2 makes of
/// it (both arrive here as a list).
fn field(entry: &Reply, name: &str) -> Option<String> {
    let Reply::List(items) = entry else {
        return None;
    };
    items
        .chunks_exact(2)
        .find(|kv| kv[0].text() == Some(name))
        .and_then(|kv| kv[1].text())
        .map(quote_str)
}

fn quote_str(text: &str) -> String {
    quote(text.as_bytes())
}

/// The master could not be reached: the address is the sentinels', which
/// may be one only they can reach.
fn announced_address_hint(d: &mut Diagnosis, master: &NodeAddr, name: &str) {
    let Some(step) = d
        .steps
        .iter_mut()
        .rev()
        .find(|s| s.status == Status::Failed)
    else {
        return;
    };
    if matches!(step.name, StepName::Dns | StepName::Tcp) {
        step.details.push(format!(
            "{master} is the address the sentinels announce for '{name}'; if it is reachable from them but not from here (NAT, containers), set replica-announce-ip / replica-announce-port on the data nodes so that they announce one clients can reach"
        ));
    }
}

/// `ROLE` on the master: a line of the Sentinel step; a failure when it is
/// not a master (or refuses ROLE, which the client sends in every
/// handshake in Sentinel mode).
async fn role_step(
    d: &mut Diagnosis,
    session: &mut AnySession,
    master: &NodeAddr,
    name: &str,
    limit: Duration,
) {
    let reply = session.request_raw(&[b"ROLE"], limit).await;
    let decoded = reply
        .as_ref()
        .ok()
        .and_then(|bytes| match resp::decode(bytes, &LIMITS) {
            Ok(Decoded::Frame { frame, .. }) => Some(frame),
            _ => None,
        });
    let mut problem: Option<(FindingKind, String, String)> = None;
    let (role, line) = match (&reply, decoded) {
        (Err(e), _) => (None, format!("ROLE of {master}: {e}")),
        (Ok(_), None) => (None, format!("ROLE of {master}: an invalid reply")),
        (Ok(_), Some(frame)) => match (frame.error_text(), parse_role(&frame)) {
            (Some(text), _) => {
                let text = quote(text);
                problem = Some((
                    FindingKind::RoleRefused,
                    format!(
                        "{master} refuses ROLE ({text}): in Sentinel mode the client asks ROLE in every handshake, so it cannot connect"
                    ),
                    "allow ROLE for the data nodes' user: ACL SETUSER <user> +role".to_owned(),
                ));
                (None, format!("ROLE of {master}: refused: {text}"))
            }
            (None, Some(NodeRole::Master)) => (
                Some("master"),
                format!("ROLE of {master}: master, {}", replicas(&frame)),
            ),
            (None, Some(NodeRole::Replica)) => {
                let of = replica_of(&frame);
                problem = Some((
                    FindingKind::MasterNotMaster,
                    format!(
                        "the sentinels name {master} as master of '{name}', but it says ROLE slave{}: writes fail with READONLY, and the client keeps asking the sentinels for the master",
                        of.as_deref()
                            .map_or(String::new(), |o| format!(" (of {o})"))
                    ),
                    format!(
                        "if a failover just happened, run the doctor again in a few seconds; if it lasts, the sentinels' view is stale: compare `SENTINEL MASTER {name}` on each sentinel with the node's own `ROLE`, and check its replicaof setting"
                    ),
                ));
                (
                    Some("slave"),
                    format!(
                        "ROLE of {master}: slave{}",
                        of.map_or(String::new(), |o| format!(" of {o}"))
                    ),
                )
            }
            (None, Some(NodeRole::Sentinel)) => {
                problem = Some((
                    FindingKind::MasterNotMaster,
                    format!(
                        "the sentinels name {master} as master of '{name}', but it is a sentinel"
                    ),
                    format!(
                        "fix `sentinel monitor {name} <ip> <port> <quorum>`: it must name the master's data port"
                    ),
                ));
                (Some("sentinel"), format!("ROLE of {master}: sentinel"))
            }
            (None, None) => (None, format!("ROLE of {master}: an unexpected reply")),
        },
    };
    if let Some(report) = &mut d.sentinel {
        report.role = role.map(str::to_owned);
    }
    let Some(step) = d.steps.iter_mut().find(|s| s.name == StepName::Sentinel) else {
        return;
    };
    step.details.push(line);
    if let Some((kind, problem, fix)) = problem {
        step.status = Status::Failed;
        step.summary = problem.clone();
        d.failure = Some(failure(
            StepName::Sentinel,
            (kind == FindingKind::MasterNotMaster).then_some(DisconnectReason::NotMaster),
            problem.clone(),
            &fix,
        ));
        d.findings.push(Finding {
            kind,
            status: Status::Failed,
            node: Some(master.to_string()),
            problem,
            fix,
        });
    }
}

/// `2 replicas connected`, from a master's `ROLE` reply.
fn replicas(frame: &Frame<'_>) -> String {
    let count = match frame {
        Frame::Array(items) => match items.iter().nth(2) {
            Some(Frame::Array(list)) => Some(list.len()),
            _ => None,
        },
        _ => None,
    };
    match count {
        Some(1) => "1 replica connected".to_owned(),
        Some(n) => format!("{n} replicas connected"),
        None => "replicas unknown".to_owned(),
    }
}

/// `host:port (link connected)`, from a replica's `ROLE` reply.
fn replica_of(frame: &Frame<'_>) -> Option<String> {
    let Frame::Array(items) = frame else {
        return None;
    };
    let mut items = items.iter().skip(1);
    let host = text(&items.next()?)?;
    let port = match items.next()? {
        Frame::Integer(p) => p.to_string(),
        other => text(&other)?,
    };
    let state = items.next().and_then(|s| text(&s));
    Some(format!(
        "{}{}",
        host_port(&host, port.parse().unwrap_or(0)),
        state.map_or(String::new(), |s| format!(", link {s}"))
    ))
}

fn text(frame: &Frame<'_>) -> Option<String> {
    match *frame {
        Frame::BulkString(t) | Frame::SimpleString(t) => Some(quote(t)),
        Frame::Verbatim { text, .. } => Some(quote(text)),
        _ => None,
    }
}

/// A single-node URL reached a sentinel (`redis_mode:sentinel`): the
/// Sentinel step that says to use Sentinel mode, with the URL to use (the
/// names it monitors, the other sentinels it knows).
pub(super) async fn single_node_is_sentinel<S: AsyncRead + AsyncWrite + Unpin>(
    d: &mut Diagnosis,
    session: &mut Session<S>,
    setup: &Setup,
    limit: Duration,
) {
    let started = Instant::now();
    let config = &setup.config;
    let here = host_port(config.host.as_str(), config.port);
    let names = monitored(session, limit).await;
    let mut details = Vec::new();
    let name = match names.as_deref() {
        Some([only]) => only.clone(),
        Some([first, ..]) => {
            details.push(format!(
                "it monitors {}",
                names
                    .iter()
                    .flatten()
                    .map(|n| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            first.clone()
        }
        Some([]) => {
            details.push("it monitors no master (SENTINEL MASTERS is empty)".to_owned());
            "<master-name>".to_owned()
        }
        None => "<master-name>".to_owned(),
    };
    let mut sentinels = vec![here.clone()];
    if names.as_ref().is_some_and(|n| !n.is_empty()) {
        sentinels.extend(peers(session, &name, limit).await);
    }
    let list = sentinels.join(",");
    let url = format!(
        "{}+sentinel://{list}/{name}{}",
        if config.tls { "rediss" } else { "redis" },
        if config.db == 0 {
            String::new()
        } else {
            format!("/{}", config.db)
        }
    );
    let credentials = if config.password.is_empty() {
        ""
    } else {
        "; the password that opened this sentinel goes in REDIS_SENTINEL_PASSWORD (a redis+sentinel:// URL's user:password are the data nodes')"
    };
    let fix = format!(
        "use Sentinel mode: {url}, or REDIS_SENTINELS={list} and REDIS_SENTINEL_MASTER={name}; the client asks the sentinels for the master of that name and follows it through failovers{credentials}"
    );
    let problem = format!(
        "{here} is a Redis Sentinel (redis_mode:sentinel), not a data node, and the URL names this one node: GET, SET and every other data command fail with ERR unknown command"
    );
    d.fail(
        StepName::Sentinel,
        started,
        details,
        failure(StepName::Sentinel, None, problem.clone(), &fix),
    );
    d.findings.push(Finding {
        kind: FindingKind::UseSentinelMode,
        status: Status::Failed,
        node: Some(here),
        problem,
        fix,
    });
}

/// The other sentinels this one knows for `name` (`SENTINEL SENTINELS`).
async fn peers<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    name: &str,
    limit: Duration,
) -> Vec<String> {
    let Ok(Reply::List(peers)) = session
        .request(&[b"SENTINEL", b"SENTINELS", name.as_bytes()], limit)
        .await
    else {
        return Vec::new();
    };
    peers
        .iter()
        .filter_map(|p| {
            let ip = field(p, "ip")?;
            let port = field(p, "port")?.parse().ok()?;
            Some(host_port(&ip, port))
        })
        .take(MAX_LISTED)
        .collect()
}

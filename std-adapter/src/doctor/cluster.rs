//! The Cluster step, and cluster mode's walk. The per-connection steps run
//! against the first seed that answers (a seed that does not resolve or
//! refuses TCP is passed over, as the client passes it over); then every
//! seed and every node the slot maps list, at most [`MAX_NODES`] in all,
//! is reached the way the single-node walk reaches one ([`connect`]: DNS,
//! TCP, TLS, the handshake with the same credentials, each step within
//! the per-step limit), concurrently, and asked for its slot map: `CLUSTER
//! SHARDS`, or `CLUSTER SLOTS` where SHARDS is an unknown subcommand (Redis
//! before 7.0). `cluster_findings` judges the answers.
//!
//! Also the other way round: a single-node URL that reaches a node with
//! `cluster_enabled:1` gets a Cluster step that says to use cluster mode.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use resilis_core::cluster::NodeAddr;
use resilis_core::resp::{self, Decoded, Frame};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Options;
use super::cluster_findings::{Health, Map, Probe, Unreached, View, assess, use_cluster_mode};
use super::report::{Status, StepName};
use super::session::{LIMITS, Session, quote};
use super::steps::{Diagnosis, Failure, Setup, Trust, Upto, connect, failure};

pub(super) use super::cluster_findings::MAX_NODES;

/// Cluster mode: the per-connection steps on the first seed that answers,
/// then the Cluster step.
pub(super) async fn walk(
    d: &mut Diagnosis,
    setup: &Setup,
    trust: Option<Trust>,
    options: &Options,
) {
    let seeds = setup.seeds.clone().unwrap_or_default();
    let mut first_trust = Some(trust);
    let mut passed_over: Vec<(Probe, Diagnosis)> = Vec::new();
    let mut chosen = None;
    for (at, seed) in seeds.iter().enumerate() {
        let trust = match first_trust.take() {
            Some(trust) => trust,
            None => match setup.trust(setup.host_source) {
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
            },
        };
        let mut attempt = Diagnosis::new(true);
        let config = setup.at(seed);
        let session = connect(&mut attempt, setup, &config, trust, options, Upto::Info).await;
        let unreachable = matches!(
            attempt.failure.as_ref().map(|f| f.step),
            Some(StepName::Dns | StepName::Tcp)
        );
        match session {
            Some(session) => {
                chosen = Some((attempt, session, seed.clone()));
                break;
            }
            None if unreachable && at + 1 < seeds.len() => {
                let probe = Probe {
                    node: seed.clone(),
                    seed: true,
                    outcome: Err(unreached(&attempt)),
                };
                passed_over.push((probe, attempt));
            }
            None => {
                // The last seed, or a failure past TCP: the settings, not
                // that node. Shown with the seeds passed over; when no seed
                // answers, the first one's steps are shown, with the others.
                let all_unreachable = unreachable && passed_over.len() + 1 == seeds.len();
                let line = |node: &NodeAddr, problem: &str| {
                    if all_unreachable {
                        format!("seed {node}: {problem}")
                    } else {
                        format!("seed {node} passed over: {problem}")
                    }
                };
                let mut others: Vec<String> = passed_over
                    .iter()
                    .map(|(p, _)| line(&p.node, problem_of(p)))
                    .collect();
                let mut shown = attempt;
                if all_unreachable && !passed_over.is_empty() {
                    let last = shown.failure.as_ref().map(|f| f.problem.clone());
                    others.remove(0);
                    others.push(line(seed, last.as_deref().unwrap_or_default()));
                    shown = passed_over.remove(0).1;
                }
                if all_unreachable && let Some(f) = &mut shown.failure {
                    f.problem = format!(
                        "none of the {} seeds can be reached; {}",
                        seeds.len(),
                        f.problem
                    );
                }
                if let Some(step) = shown.steps.iter_mut().find(|s| s.status == Status::Failed) {
                    step.details.extend(others);
                }
                merge(d, shown);
                return;
            }
        }
    }
    let Some((attempt, mut session, used)) = chosen else {
        // The loop ends with a session or a merged failure; `seeds` holds
        // the config's host at least, so it ran.
        return;
    };
    merge(d, attempt);
    if let Some(tcp) = d.steps.iter_mut().find(|s| s.name == StepName::Tcp) {
        for (p, _) in &passed_over {
            tcp.details
                .push(format!("seed {} passed over: {}", p.node, problem_of(p)));
        }
    }

    // ---- Cluster ----------------------------------------------------------
    let started = Instant::now();
    let limit = options.timeout;
    let view = read_view(&mut session, setup.config.tls, used.host.as_str(), limit).await;
    drop(session);
    let mut probes: Vec<Probe> = passed_over.into_iter().map(|(p, _)| p).collect();
    probes.push(Probe {
        node: used,
        seed: true,
        outcome: Ok(view),
    });
    let rest: Vec<NodeAddr> = seeds
        .iter()
        .filter(|s| !probes.iter().any(|p| p.node == **s))
        .take(MAX_NODES.saturating_sub(probes.len()))
        .cloned()
        .collect();
    probes.extend(probe_all(setup, &rest, true, options).await);
    // Then the nodes the maps list, until none is new or the limit is
    // reached: bounded by MAX_NODES rounds at most.
    let not_checked = loop {
        let listed = listed(&probes);
        let room = MAX_NODES.saturating_sub(probes.len());
        if listed.is_empty() || room == 0 {
            break listed.len();
        }
        let batch: Vec<NodeAddr> = listed.into_iter().take(room).collect();
        probes.extend(probe_all(setup, &batch, false, options).await);
    };
    // Seeds first, in the order given; then the others as found.
    probes.sort_by_key(|p| {
        seeds
            .iter()
            .position(|s| *s == p.node)
            .unwrap_or(seeds.len())
    });

    let a = assess(&seeds, &probes, not_checked);
    d.healthy_note = Some(a.healthy_note);
    d.cluster = Some(a.report);
    let first_failure = a.findings.iter().find(|f| f.status == Status::Failed);
    match (a.status, first_failure) {
        (Status::Failed, Some(f)) => {
            let f = failure(StepName::Cluster, None, f.problem.clone(), &f.fix);
            d.push(
                StepName::Cluster,
                Status::Failed,
                started,
                a.summary,
                a.details,
            );
            d.failure = Some(f);
        }
        (status, _) => d.push(StepName::Cluster, status, started, a.summary, a.details),
    }
    d.findings.extend(a.findings);
}

/// A single-node URL reached a node with `cluster_enabled:1`: its slot map,
/// and the Cluster step that says to use cluster mode.
pub(super) async fn single_node_is_cluster<S: AsyncRead + AsyncWrite + Unpin>(
    d: &mut Diagnosis,
    session: &mut Session<S>,
    setup: &Setup,
    limit: Duration,
) {
    let started = Instant::now();
    let here = NodeAddr {
        host: setup.config.host.clone(),
        port: setup.config.port,
    };
    let view = read_view(session, setup.config.tls, here.host.as_str(), limit).await;
    let (finding, mut details) = use_cluster_mode(&setup.config, &here, Some(&view));
    if let View::Refused(text) | View::Unreadable(text) = &view {
        details.push(format!("no slot map: {text}"));
    }
    if finding.status == Status::Failed {
        d.fail(
            StepName::Cluster,
            started,
            details,
            failure(
                StepName::Cluster,
                None,
                finding.problem.clone(),
                &finding.fix,
            ),
        );
    } else {
        let summary = "a Redis Cluster node serving every slot, reached with a single-node URL";
        d.warn(StepName::Cluster, started, summary.to_owned(), details);
    }
    d.findings.push(finding);
}

/// Reaches each of `nodes` (concurrently) and reads its slot map.
async fn probe_all(setup: &Setup, nodes: &[NodeAddr], seed: bool, options: &Options) -> Vec<Probe> {
    join_all(
        nodes
            .iter()
            .map(|node| probe(setup, node.clone(), seed, options))
            .collect(),
    )
    .await
}

/// One node: the per-connection steps up to the handshake, then its map.
async fn probe(setup: &Setup, node: NodeAddr, seed: bool, options: &Options) -> Probe {
    // A map's node is no setting of the user's: name none in TLS errors.
    let host_source = if seed {
        setup.host_source
    } else {
        crate::tls::HostSource::Config
    };
    let outcome = match setup.trust(host_source) {
        Err(e) => Err(Unreached {
            step: StepName::Tls,
            problem: e.clone(),
            fix: e,
        }),
        Ok(trust) => {
            let mut d = Diagnosis::new(true);
            let config = setup.at(&node);
            match connect(&mut d, setup, &config, trust, options, Upto::Handshake).await {
                Some(mut session) => Ok(read_view(
                    &mut session,
                    setup.config.tls,
                    node.host.as_str(),
                    options.timeout,
                )
                .await),
                None => Err(unreached(&d)),
            }
        }
    };
    Probe {
        node,
        seed,
        outcome,
    }
}

/// Why the walk of `d` stopped.
fn unreached(d: &Diagnosis) -> Unreached {
    match &d.failure {
        Some(Failure {
            step, problem, fix, ..
        }) => Unreached {
            step: *step,
            problem: problem.clone(),
            fix: fix.clone(),
        },
        None => Unreached {
            step: StepName::Handshake,
            problem: "the check stopped without a verdict (a bug in resilis)".to_owned(),
            fix: "please report it with this output".to_owned(),
        },
    }
}

fn problem_of(probe: &Probe) -> &str {
    match &probe.outcome {
        Err(u) => &u.problem,
        Ok(_) => "",
    }
}

/// Moves an attempt's steps and findings into the report.
fn merge(d: &mut Diagnosis, attempt: Diagnosis) {
    d.steps.extend(attempt.steps);
    d.failure = attempt.failure;
    d.warnings.extend(attempt.warnings);
    d.ping = attempt.ping;
    d.server = attempt.server;
    d.cluster_enabled = attempt.cluster_enabled;
}

/// Nodes some map lists that were not probed yet, in the order the maps
/// list them.
fn listed(probes: &[Probe]) -> Vec<NodeAddr> {
    let mut out: Vec<NodeAddr> = Vec::new();
    for probe in probes {
        if let Ok(View::Map { map, .. }) = &probe.outcome {
            for node in map.nodes() {
                let new = !probes.iter().any(|p| p.node == node.addr) && !out.contains(&node.addr);
                if new {
                    out.push(node.addr.clone());
                }
            }
        }
    }
    out
}

/// `CLUSTER SHARDS`, or `CLUSTER SLOTS` where SHARDS is unknown.
pub(super) async fn read_view<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    tls: bool,
    answered_by: &str,
    limit: Duration,
) -> View {
    for command in ["SHARDS", "SLOTS"] {
        let bytes = match session
            .request_raw(&[b"CLUSTER", command.as_bytes()], limit)
            .await
        {
            Ok(bytes) => bytes,
            Err(e) => return View::Unreadable(format!("CLUSTER {command}: {e}")),
        };
        let Ok(Decoded::Frame { frame, .. }) = resp::decode(&bytes, &LIMITS) else {
            // `request_raw` returns one frame that decoded with these limits.
            return View::Unreadable(format!("CLUSTER {command}: invalid reply"));
        };
        if let Some(text) = frame.error_text() {
            let text = quote(text);
            if command == "SHARDS" && text.to_ascii_lowercase().contains("unknown subcommand") {
                continue;
            }
            return View::Refused(text);
        }
        let mut map = Box::new(Map::new());
        let parsed = if command == "SHARDS" {
            map.parse_shards(&frame, tls, answered_by)
        } else {
            map.parse_slots(&frame, answered_by)
        };
        return match parsed {
            // An empty map is a view too: a cluster serving no slot.
            Ok(()) | Err(resilis_core::cluster::TopologyError::NoSlots) => View::Map {
                map,
                command: if command == "SHARDS" {
                    "CLUSTER SHARDS"
                } else {
                    "CLUSTER SLOTS"
                },
                healths: (command == "SHARDS").then(|| healths(&frame, tls)),
            },
            Err(e) => View::Unreadable(format!("CLUSTER {command}: {e}")),
        };
    }
    View::Unreadable("neither CLUSTER SHARDS nor CLUSTER SLOTS is known".to_owned())
}

/// Each node's `health` in a `CLUSTER SHARDS` reply (RESP3 maps or RESP2
/// name/value arrays), with its port and names. The reply parsed as a map
/// already: anything else in it is skipped, not refused.
fn healths(reply: &Frame<'_>, tls: bool) -> Vec<Health> {
    let mut out = Vec::new();
    let Frame::Array(shards) = reply else {
        return out;
    };
    for shard in shards.iter() {
        for (key, nodes) in pairs(&shard) {
            let (Some(b"nodes"), Frame::Array(nodes)) = (text(&key), nodes) else {
                continue;
            };
            for node in nodes.iter() {
                let mut health = Health {
                    port: 0,
                    hosts: Vec::new(),
                    health: String::new(),
                };
                for (key, value) in pairs(&node) {
                    match (text(&key), value) {
                        (Some(b"port"), Frame::Integer(p)) if !tls => {
                            health.port = u16::try_from(p).unwrap_or(0);
                        }
                        (Some(b"tls-port"), Frame::Integer(p)) if tls => {
                            health.port = u16::try_from(p).unwrap_or(0);
                        }
                        (Some(b"endpoint" | b"ip" | b"hostname"), v) => {
                            if let Some(name) = text(&v) {
                                health
                                    .hosts
                                    .push(String::from_utf8_lossy(name).into_owned());
                            }
                        }
                        (Some(b"health"), v) => {
                            if let Some(h) = text(&v) {
                                health.health = quote(h);
                            }
                        }
                        _ => {}
                    }
                }
                out.push(health);
            }
        }
    }
    out
}

fn pairs<'a>(frame: &Frame<'a>) -> Vec<(Frame<'a>, Frame<'a>)> {
    let mut out = Vec::new();
    if let Frame::Map(items) | Frame::Array(items) = frame {
        let mut items = items.iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            out.push((key, value));
        }
    }
    out
}

fn text<'a>(frame: &Frame<'a>) -> Option<&'a [u8]> {
    match *frame {
        Frame::BulkString(t) | Frame::SimpleString(t) => Some(t),
        Frame::Verbatim { text, .. } => Some(text),
        _ => None,
    }
}

/// Runs `futures` concurrently on this task; their outputs in order. Each
/// is bounded by the per-step limits, so this is too.
pub(super) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

//! What the Cluster step makes of the nodes' answers: a pure function from
//! each node's probe (reached or not, and its slot map) to typed findings,
//! the per-node report and the step's lines. No I/O here (`cluster` does
//! that), so every judgement is tested below on hand-written maps.
//!
//! The map judged is the one most nodes hold ([`choose`], as the client's
//! router takes it): coverage, health and replicas are read from it, and
//! each node whose own map differs is named.

use resilis_core::Config;
use resilis_core::cluster::topology::{Node, SlotRange};
use resilis_core::cluster::{NodeAddr, Role, SLOTS, Topology, choose};

use super::report::{
    ClusterNode, ClusterReport, Finding, FindingKind, NodeRole, SlotSpan, Status, StepName,
    ViewStatus,
};
use super::steps::redacted_url_with;

/// A slot map as large as any cluster's: as many nodes as the client's
/// router follows, a range per slot at worst.
/// Most nodes the Cluster step reaches, seeds included: enough to see a
/// cluster's shape, few enough to stay quick on a large one.
pub(super) const MAX_NODES: usize = 16;

pub(super) type Map = Topology<{ crate::cluster::MAX_NODES }, { SLOTS as usize }>;

/// Ranges named in one finding; the rest are counted.
const SHOWN_RANGES: usize = 8;
/// Nodes suggested in the "use cluster mode" fix.
const SUGGESTED_SEEDS: usize = 3;

/// What one node said when asked for its slot map.
pub(super) enum View {
    Map {
        map: Box<Map>,
        /// `CLUSTER SHARDS` or `CLUSTER SLOTS`.
        command: &'static str,
        /// Each listed node's `health` as the server words it (`None`:
        /// `CLUSTER SLOTS`, which says nothing of health).
        healths: Option<Vec<Health>>,
    },
    /// An error reply: cluster support disabled, or the command not allowed.
    Refused(String),
    /// No reply in time, or not a slot map.
    Unreadable(String),
}

/// A node's `health` in a `CLUSTER SHARDS` reply, with what identifies it
/// (the map keeps only online or not).
pub(super) struct Health {
    pub port: u16,
    /// Its `endpoint`, `ip` and `hostname`.
    pub hosts: Vec<String>,
    pub health: String,
}

/// Why a node could not be reached: the step that failed, as the
/// single-node walk words it.
#[derive(Clone, Debug)]
pub(super) struct Unreached {
    pub step: StepName,
    pub problem: String,
    pub fix: String,
}

/// One node the doctor reached for (or tried to).
pub(super) struct Probe {
    pub node: NodeAddr,
    pub seed: bool,
    pub outcome: Result<View, Unreached>,
}

impl Probe {
    fn map(&self) -> Option<&Map> {
        match &self.outcome {
            Ok(View::Map { map, .. }) => Some(map),
            _ => None,
        }
    }
}

/// The Cluster step's result.
pub(super) struct Assessment {
    pub status: Status,
    pub summary: String,
    pub details: Vec<String>,
    pub findings: Vec<Finding>,
    pub report: ClusterReport,
    /// For the healthy verdict.
    pub healthy_note: String,
}

/// Judges what the nodes answered. `probes`: seeds first, in the order
/// given; `not_checked`: listed nodes beyond the doctor's limit.
pub(super) fn assess(seeds: &[NodeAddr], probes: &[Probe], not_checked: usize) -> Assessment {
    let mut findings = Vec::new();
    let views: Vec<(usize, &Map)> = probes
        .iter()
        .enumerate()
        .filter_map(|(at, p)| Some((at, p.map()?)))
        .collect();
    refusals(probes, views.is_empty(), &mut findings);
    let Some(chosen) = pick(&views, probes, &mut findings) else {
        return without_map(seeds, probes, findings);
    };
    let map = views[chosen.view].1;
    let answered_by = &probes[views[chosen.view].0];
    let healths: Option<&[Health]> = match &answered_by.outcome {
        Ok(View::Map { healths, .. }) => healths.as_deref(),
        _ => None,
    };
    let command = match &answered_by.outcome {
        Ok(View::Map { command, .. }) => Some((*command).to_owned()),
        _ => None,
    };
    let uncovered = uncovered(map.ranges());
    let served = u32::from(SLOTS) - uncovered.iter().map(span_len).sum::<u32>();
    if !uncovered.is_empty() {
        findings.push(Finding {
            kind: FindingKind::SlotsUncovered,
            status: Status::Failed,
            node: None,
            problem: format!(
                "{} of 16384 slots are served by no node ({}): commands on their keys fail with CLUSTERDOWN, and with cluster-require-full-coverage yes (the default) so does every command",
                u32::from(SLOTS) - served,
                spans(&uncovered)
            ),
            fix: "assign the slots to a primary (redis-cli --cluster fix HOST:PORT), or bring back the primary that served them: a shard whose primary fails with no replica to take over loses its slots this way".to_owned(),
        });
    }

    let mut nodes = Vec::new();
    for node in ordered(map) {
        let probe = probes
            .iter()
            .find(|p| p.node == map.nodes()[usize::from(node)].addr);
        nodes.push(judge_node(map, node, probe, healths, &mut findings));
    }
    for probe in probes {
        if map.find(&probe.node.host, probe.node.port).is_none() {
            nodes.push(unlisted(probe, &mut findings));
        }
    }
    for (at, other) in &views {
        let probe = &probes[*at];
        let view = if other.same_view(map) {
            ViewStatus::Agrees
        } else {
            if chosen.majority {
                findings.push(differs(probe, other, map, chosen.agreeing));
            }
            ViewStatus::Differs
        };
        if let Some(n) = nodes.iter_mut().find(|n| n.node == probe.node.to_string()) {
            n.view = view;
        }
    }
    no_replica(map, probes, &mut findings);

    let report = ClusterReport {
        seeds: seeds.iter().map(NodeAddr::to_string).collect(),
        map_command: command,
        views: views.len(),
        agreeing: chosen.agreeing,
        slots_served: served,
        uncovered,
        nodes,
        not_checked,
    };
    let primaries = primaries_serving(map).count();
    finish(report, findings, primaries)
}

/// The map the others are compared with.
struct Chosen {
    /// Index into the views.
    view: usize,
    agreeing: usize,
    /// Held by more than half of the views.
    majority: bool,
}

fn pick(views: &[(usize, &Map)], probes: &[Probe], findings: &mut Vec<Finding>) -> Option<Chosen> {
    let maps: Vec<&Map> = views.iter().map(|(_, m)| *m).collect();
    let agreeing = |at: usize| maps.iter().filter(|m| m.same_view(maps[at])).count();
    match choose(&maps) {
        Ok(view) => Some(Chosen {
            view,
            agreeing: agreeing(view),
            majority: true,
        }),
        Err(disagreement) => {
            // The largest group, for the listing; empty maps only when all are.
            let all_empty = maps.iter().all(|m| m.ranges().is_empty());
            let view = (0..maps.len())
                .filter(|&at| all_empty || !maps[at].ranges().is_empty())
                .max_by_key(|&at| (agreeing(at), std::cmp::Reverse(at)))?;
            if !all_empty {
                let groups = groups(&maps, views, probes);
                findings.push(Finding {
                    kind: FindingKind::NoMajority,
                    status: Status::Failed,
                    node: None,
                    problem: format!(
                        "the nodes disagree about the slot map: no map is held by more than half of the {} nodes that answered (the largest group: {}); {groups}",
                        disagreement.views, disagreement.best
                    ),
                    fix: "a failover or resharding is under way, or the cluster is split: run the doctor again in a minute; if it lasts, compare CLUSTER SHARDS on the nodes named and check the network between them".to_owned(),
                });
            }
            Some(Chosen {
                view,
                agreeing: agreeing(view),
                majority: false,
            })
        }
    }
}

/// `map A: n1, n2; map B: n3`, for a disagreement.
fn groups(maps: &[&Map], views: &[(usize, &Map)], probes: &[Probe]) -> String {
    let mut seen: Vec<usize> = Vec::new();
    let mut out = Vec::new();
    for at in 0..maps.len() {
        if seen.iter().any(|&s| maps[s].same_view(maps[at])) {
            continue;
        }
        seen.push(at);
        let holders: Vec<String> = (0..maps.len())
            .filter(|&o| maps[o].same_view(maps[at]))
            .map(|o| probes[views[o].0].node.to_string())
            .collect();
        out.push(format!(
            "map {} held by {}",
            char::from(b'A' + (seen.len() as u8 - 1).min(25)),
            holders.join(", ")
        ));
    }
    out.join("; ")
}

/// Nodes that answered the map command with an error or nothing usable,
/// as findings: all of them failures when no node gave a map.
fn refusals(probes: &[Probe], none_mapped: bool, findings: &mut Vec<Finding>) {
    for probe in probes {
        let node = probe.node.to_string();
        let (text, disabled) = match &probe.outcome {
            Ok(View::Refused(text)) => (text, text.to_ascii_lowercase().contains("disabled")),
            Ok(View::Unreadable(text)) => (text, false),
            _ => continue,
        };
        let status = if none_mapped {
            Status::Failed
        } else {
            Status::Warn
        };
        findings.push(if disabled {
            Finding {
                kind: FindingKind::NotACluster,
                status,
                node: Some(node.clone()),
                problem: format!(
                    "{node} is not a cluster node: it answers CLUSTER SHARDS with \"{text}\""
                ),
                fix: if none_mapped {
                    "this is a single Redis server: use one host in the URL (redis://host:port) and leave REDIS_CLUSTER_NODES unset".to_owned()
                } else {
                    format!("take {node} out of the seed list: it is not part of this cluster")
                },
            }
        } else {
            Finding {
                kind: FindingKind::NoSlotMap,
                status,
                node: Some(node.clone()),
                problem: format!("{node} gave no slot map: {text}"),
                fix: if text.contains("NOPERM") {
                    "allow the user to read the slot map (ACL: +cluster|shards +cluster|slots): the client needs it to route commands".to_owned()
                } else {
                    "check that the node is a member of a Redis Cluster that is set up (CLUSTER INFO on it)".to_owned()
                },
            }
        });
    }
}

/// No node gave a map: the nodes, each reached or not.
fn without_map(seeds: &[NodeAddr], probes: &[Probe], mut findings: Vec<Finding>) -> Assessment {
    let nodes = probes.iter().map(|p| unlisted(p, &mut findings)).collect();
    if !findings.iter().any(|f| f.status == Status::Failed) {
        // Every node unreachable is not possible here (the walk reached
        // one), but say something true if it happens.
        findings.insert(
            0,
            Finding {
                kind: FindingKind::NoSlotMap,
                status: Status::Failed,
                node: None,
                problem: "no node gave a slot map".to_owned(),
                fix: "check that the seeds are nodes of a Redis Cluster that is set up".to_owned(),
            },
        );
    }
    let report = ClusterReport {
        seeds: seeds.iter().map(NodeAddr::to_string).collect(),
        map_command: None,
        views: 0,
        agreeing: 0,
        slots_served: 0,
        uncovered: vec![SlotSpan {
            start: 0,
            end: SLOTS - 1,
        }],
        nodes,
        not_checked: 0,
    };
    finish(report, findings, 0)
}

/// The step's lines and status from the report and the findings.
fn finish(report: ClusterReport, findings: Vec<Finding>, primaries: usize) -> Assessment {
    let status = if findings.iter().any(|f| f.status == Status::Failed) {
        Status::Failed
    } else if findings.is_empty() {
        Status::Ok
    } else {
        Status::Warn
    };
    let checked = report
        .nodes
        .iter()
        .filter(|n| n.reachable.is_some())
        .count();
    let unreachable = report
        .nodes
        .iter()
        .filter(|n| n.reachable == Some(false))
        .count();
    let slots = if report.slots_served == u32::from(SLOTS) {
        "all 16384 slots served".to_owned()
    } else {
        format!("{} of 16384 slots served", report.slots_served)
    };
    let reach = match unreachable {
        0 => format!("{checked} of {checked} nodes reachable"),
        n => format!("{} of {checked} nodes reachable", checked - n),
    };
    let agree = if report.views == 0 {
        "no slot map".to_owned()
    } else if report.agreeing == report.views {
        "all hold one slot map".to_owned()
    } else {
        format!(
            "{} of {} hold the same slot map",
            report.agreeing, report.views
        )
    };
    let summary = format!(
        "{primaries} shard{}, {} node{}: {slots}; {reach}; {agree}",
        if primaries == 1 { "" } else { "s" },
        report.nodes.len(),
        if report.nodes.len() == 1 { "" } else { "s" },
    );
    let mut details = vec![format!("seeds: {}", report.seeds.join(", "))];
    if let Some(command) = &report.map_command {
        details.push(format!(
            "slot map from {command}, held by {} of the {} nodes that gave one",
            report.agreeing, report.views
        ));
    }
    details.extend(report.nodes.iter().map(node_line));
    if report.not_checked > 0 {
        details.push(format!(
            "{} more node{} in the map not checked (the doctor checks at most {})",
            report.not_checked,
            if report.not_checked == 1 { "" } else { "s" },
            MAX_NODES
        ));
    }
    let serves = format!(
        "the cluster serves all 16384 slots from {primaries} primar{}",
        if primaries == 1 { "y" } else { "ies" }
    );
    let healthy_note = if unreachable == 0 && report.agreeing == report.views {
        format!("{serves}; the {checked} nodes checked are reachable and hold one slot map")
    } else {
        format!("{serves}; {reach}; {agree}")
    };
    Assessment {
        status,
        summary,
        details,
        findings,
        report,
        healthy_note,
    }
}

/// `127.0.0.1:7000 primary, slots 0-5460: reachable, online, same map (seed)`.
fn node_line(n: &ClusterNode) -> String {
    let part = match n.role {
        NodeRole::Primary if n.slots.is_empty() => "primary, no slots".to_owned(),
        NodeRole::Primary => format!("primary, slots {}", spans(&n.slots)),
        NodeRole::Replica => format!("replica of {}", n.primary.as_deref().unwrap_or("?")),
        NodeRole::Unlisted => "not in the slot map".to_owned(),
    };
    let mut state = Vec::new();
    match (n.reachable, &n.problem) {
        (Some(true), _) => state.push("reachable".to_owned()),
        (Some(false), Some(problem)) => state.push(format!("UNREACHABLE ({problem})")),
        (Some(false), None) => state.push("UNREACHABLE".to_owned()),
        (None, _) => state.push("not checked".to_owned()),
    }
    match (&n.health, n.reachable) {
        (Some(health), Some(false)) => {
            state.push(format!("the cluster still reports it {health}"));
        }
        (Some(health), _) if health == "online" => state.push("online".to_owned()),
        (Some(health), _) => state.push(format!("health {}", health.to_ascii_uppercase())),
        (None, _) => {}
    }
    match n.view {
        ViewStatus::Agrees => state.push("same map".to_owned()),
        ViewStatus::Differs => state.push("DIFFERENT MAP".to_owned()),
        ViewStatus::None | ViewStatus::NotChecked => {}
    }
    format!(
        "{} {part}: {}{}",
        n.node,
        state.join(", "),
        if n.seed { " (seed)" } else { "" }
    )
}

/// Node indices: primaries serving slots by their first slot, each
/// followed by its replicas (by address), then primaries serving none.
fn ordered<const N: usize, const R: usize>(map: &Topology<N, R>) -> Vec<u16> {
    let mut primaries: Vec<u16> = Vec::new();
    for range in map.ranges() {
        if !primaries.contains(&range.primary) {
            primaries.push(range.primary);
        }
    }
    let idle = (0u16..)
        .zip(map.nodes())
        .filter(|(at, n)| n.role == Role::Primary && !primaries.contains(at))
        .map(|(at, _)| at)
        .collect::<Vec<_>>();
    primaries.extend(idle);
    let mut out = Vec::new();
    for primary in primaries {
        out.push(primary);
        let mut replicas: Vec<u16> = map.replicas_of(primary).collect();
        replicas.sort_by_key(|r| map.nodes()[usize::from(*r)].addr.to_string());
        out.extend(replicas);
    }
    out
}

fn primaries_serving<const N: usize, const R: usize>(
    map: &Topology<N, R>,
) -> impl Iterator<Item = u16> + '_ {
    ordered(map)
        .into_iter()
        .filter(|&at| map.ranges().iter().any(|r| r.primary == at))
}

fn slots_of<const N: usize, const R: usize>(map: &Topology<N, R>, primary: u16) -> Vec<SlotSpan> {
    map.ranges()
        .iter()
        .filter(|r| r.primary == primary)
        .map(|r| SlotSpan {
            start: r.start,
            end: r.end,
        })
        .collect()
}

/// One node of the map: its report entry, and its findings.
fn judge_node(
    map: &Map,
    at: u16,
    probe: Option<&Probe>,
    healths: Option<&[Health]>,
    findings: &mut Vec<Finding>,
) -> ClusterNode {
    let node: &Node = &map.nodes()[usize::from(at)];
    let addr = node.addr.to_string();
    let slots = slots_of(map, at);
    let health = healths.map(|list| match health_of(list, &node.addr) {
        Some(health) => health.to_owned(),
        None if node.online => "online".to_owned(),
        None => "not online".to_owned(),
    });
    let (role, primary, what) = match node.role {
        Role::Primary if slots.is_empty() => (
            NodeRole::Primary,
            None,
            format!("{addr} (a primary serving no slot)"),
        ),
        Role::Primary => (
            NodeRole::Primary,
            None,
            format!("{addr} (primary of slots {})", spans(&slots)),
        ),
        Role::Replica => {
            let primary = map.nodes()[usize::from(node.primary)].addr.to_string();
            (
                NodeRole::Replica,
                Some(primary.clone()),
                format!("{addr} (replica of {primary})"),
            )
        }
    };
    let serving = !slots.is_empty();
    let unhealthy = health
        .as_deref()
        .filter(|h| *h != "online")
        .map(|h| format!("the cluster reports it {h}"));
    let mut entry = ClusterNode {
        node: addr.clone(),
        role,
        primary,
        slots,
        health: health.clone(),
        seed: probe.is_some_and(|p| p.seed),
        reachable: probe.map(|p| p.outcome.is_ok()),
        problem: None,
        view: match probe {
            None => ViewStatus::NotChecked,
            Some(_) => ViewStatus::None,
        },
    };
    if let Some(Probe {
        outcome: Err(unreached),
        ..
    }) = probe
    {
        entry.problem = Some(unreached.problem.clone());
        let network = matches!(unreached.step, StepName::Dns | StepName::Tcp);
        let fix = match (network, serving) {
            (false, _) => unreached.fix.clone(),
            (true, true) => "the node is down or unreachable from here: if it is down, a replica takes over after cluster-node-timeout (when the shard has one), else restart it; if it runs, check that the address the cluster announces for it (cluster-announce-ip, -port, -hostname) is reachable from this machine".to_owned(),
            (true, false) => "the node is down or unreachable from here: restart it (its shard has one replica fewer to fail over to meanwhile); if it runs, check that the address the cluster announces for it (cluster-announce-ip, -port, -hostname) is reachable from this machine".to_owned(),
        };
        findings.push(Finding {
            kind: FindingKind::NodeUnreachable,
            status: if serving {
                Status::Failed
            } else {
                Status::Warn
            },
            node: Some(addr),
            problem: format!(
                "{what} cannot be reached: {}{}",
                unreached.problem,
                unhealthy.map(|h| format!("; {h}")).unwrap_or_default()
            ),
            fix,
        });
    } else if let Some(unhealthy) = unhealthy {
        let loading = health.as_deref() == Some("loading");
        findings.push(Finding {
            kind: FindingKind::NodeNotOnline,
            status: if serving && !loading {
                Status::Failed
            } else {
                Status::Warn
            },
            node: Some(addr),
            problem: if serving {
                format!("{what}: {unhealthy}: commands on its slots fail until it recovers or a replica takes over")
            } else {
                format!("{what}: {unhealthy}: its shard cannot fail over to it")
            },
            fix: if loading {
                "it is loading its data or syncing from its primary: wait, and run the doctor again".to_owned()
            } else {
                "the other nodes cannot reach it: restart it, or check the network between it and the other nodes (the cluster bus, its port + 10000)".to_owned()
            },
        });
    }
    entry
}

/// A probed node the map does not list.
fn unlisted(probe: &Probe, findings: &mut Vec<Finding>) -> ClusterNode {
    let node = probe.node.to_string();
    let mut entry = ClusterNode {
        node: node.clone(),
        role: NodeRole::Unlisted,
        primary: None,
        slots: Vec::new(),
        health: None,
        seed: probe.seed,
        reachable: Some(probe.outcome.is_ok()),
        problem: None,
        view: ViewStatus::None,
    };
    if let Err(unreached) = &probe.outcome {
        entry.problem = Some(unreached.problem.clone());
        let what = if probe.seed { "seed" } else { "node" };
        findings.push(Finding {
            kind: FindingKind::NodeUnreachable,
            status: Status::Warn,
            node: Some(node.clone()),
            problem: format!("{what} {node} cannot be reached: {}", unreached.problem),
            fix: if probe.seed {
                format!(
                    "{}; or take it out of the seed list (the client tries the next seed, but a list of dead seeds fails once the cluster moves)",
                    unreached.fix
                )
            } else {
                unreached.fix.clone()
            },
        });
    }
    entry
}

/// A node whose map is not the one most hold.
fn differs(probe: &Probe, its: &Map, map: &Map, agreeing: usize) -> Finding {
    let node = probe.node.to_string();
    let primary_at = |m: &Map, slot: u16| {
        m.primary_of(slot)
            .map(|p| m.nodes()[usize::from(p)].addr.to_string())
    };
    // The first slot the two route differently, if any: both maps are
    // constant between the bounds of their ranges, so it is one of those.
    let bounds = [map, its]
        .into_iter()
        .flat_map(|m| m.ranges())
        .flat_map(|r| [Some(r.start), r.end.checked_add(1).filter(|&s| s < SLOTS)])
        .flatten()
        .chain([0]);
    let first = bounds
        .filter(|&slot| primary_at(its, slot) != primary_at(map, slot))
        .min();
    let how = match first {
        Some(slot) => format!(
            "for slot {slot} it names {}, the others {}",
            primary_at(its, slot).unwrap_or_else(|| "no node".into()),
            primary_at(map, slot).unwrap_or_else(|| "no node".into())
        ),
        None => "it lists other replicas".to_owned(),
    };
    Finding {
        kind: FindingKind::ViewDiffers,
        status: Status::Warn,
        node: Some(node.clone()),
        problem: format!(
            "{node} holds a different slot map from the {agreeing} nodes that agree: {how}"
        ),
        fix: "usually a failover or resharding in progress, which converges within a few cluster-node-timeouts: run the doctor again; if it lasts, the node is cut off from the others (check CLUSTER INFO on it and the cluster bus, port + 10000)".to_owned(),
    }
}

/// Shards serving slots with no replica that is online and reachable.
fn no_replica(map: &Map, probes: &[Probe], findings: &mut Vec<Finding>) {
    for primary in primaries_serving(map) {
        let addr = map.nodes()[usize::from(primary)].addr.to_string();
        let slots = spans(&slots_of(map, primary));
        let replicas: Vec<&Node> = map
            .replicas_of(primary)
            .map(|r| &map.nodes()[usize::from(r)])
            .collect();
        let unreachable = |n: &Node| {
            probes
                .iter()
                .any(|p| p.node == n.addr && p.outcome.is_err())
        };
        let working = replicas
            .iter()
            .filter(|n| n.online && !unreachable(n))
            .count();
        if working > 0 {
            continue;
        }
        let (problem, fix) = if replicas.is_empty() {
            (
                format!(
                    "the shard of {addr} (slots {slots}) has no replica: if {addr} fails, its slots are down until it is back"
                ),
                "add a replica to the shard (a new node, then CLUSTER REPLICATE <primary id>; on a managed service, one replica or more per shard)".to_owned(),
            )
        } else {
            let names: Vec<String> = replicas.iter().map(|n| n.addr.to_string()).collect();
            (
                format!(
                    "the shard of {addr} (slots {slots}) has no working replica ({} {} unreachable or not online): if {addr} fails, its slots are down until it is back",
                    names.join(", "),
                    if names.len() == 1 { "is" } else { "are" }
                ),
                format!(
                    "bring {} back (see above), or add a replica",
                    names.join(", ")
                ),
            )
        };
        findings.push(Finding {
            kind: FindingKind::NoReplica,
            status: Status::Warn,
            node: Some(addr),
            problem,
            fix,
        });
    }
}

/// The slots no range covers.
fn uncovered(ranges: &[SlotRange]) -> Vec<SlotSpan> {
    let mut out = Vec::new();
    let mut next: u32 = 0;
    for range in ranges {
        if u32::from(range.start) > next {
            out.push(span(next, u32::from(range.start) - 1));
        }
        next = next.max(u32::from(range.end) + 1);
    }
    if next < u32::from(SLOTS) {
        out.push(span(next, u32::from(SLOTS) - 1));
    }
    out
}

fn span(start: u32, end: u32) -> SlotSpan {
    // Both are slot numbers below SLOTS here, which fits a u16.
    SlotSpan {
        start: u16::try_from(start).unwrap_or(u16::MAX),
        end: u16::try_from(end).unwrap_or(u16::MAX),
    }
}

fn span_len(s: &SlotSpan) -> u32 {
    u32::from(s.end) - u32::from(s.start) + 1
}

/// `0-5460, 5462` or `0-9, 20-29, ... and 3 more ranges`.
pub(super) fn spans(list: &[SlotSpan]) -> String {
    let shown: Vec<String> = list
        .iter()
        .take(SHOWN_RANGES)
        .map(SlotSpan::to_string)
        .collect();
    match list.len().saturating_sub(SHOWN_RANGES) {
        0 => shown.join(", "),
        1 => format!("{} and 1 more range", shown.join(", ")),
        more => format!("{} and {more} more ranges", shown.join(", ")),
    }
}

/// The health of `addr` as the reply words it: the entry with its port and
/// one of its names, else the only entry with its port.
fn health_of<'a>(healths: &'a [Health], addr: &NodeAddr) -> Option<&'a str> {
    let same_port: Vec<&Health> = healths.iter().filter(|h| h.port == addr.port).collect();
    let named = same_port
        .iter()
        .find(|h| h.hosts.iter().any(|n| n == addr.host.as_str()));
    match (named, same_port.as_slice()) {
        (Some(h), _) | (None, [h]) => Some(h.health.as_str()),
        _ => None,
    }
}

/// A single-node URL reached a cluster node: the finding that says to use
/// cluster mode, with the URL and the variable to set. `here`: the node
/// reached; `view`: its answer to the map command, if any.
pub(super) fn use_cluster_mode(
    config: &Config,
    here: &NodeAddr,
    view: Option<&View>,
) -> (Finding, Vec<String>) {
    let map = match view {
        Some(View::Map { map, .. }) if !map.ranges().is_empty() => Some(&**map),
        _ => None,
    };
    let mut details = Vec::new();
    let mut suggested = vec![here.clone()];
    let mut own: Option<u32> = None;
    let mut replica_of = None;
    if let Some(map) = map {
        let served = u32::from(SLOTS) - uncovered(map.ranges()).iter().map(span_len).sum::<u32>();
        let primaries: Vec<u16> = primaries_serving(map).collect();
        details.push(format!(
            "the slot map: {} shard{}, {} node{}, {served} of 16384 slots served",
            primaries.len(),
            if primaries.len() == 1 { "" } else { "s" },
            map.nodes().len(),
            if map.nodes().len() == 1 { "" } else { "s" },
        ));
        if let Some(at) = map.find(&here.host, here.port) {
            let node = &map.nodes()[usize::from(at)];
            match node.role {
                Role::Primary => {
                    let slots = slots_of(map, at);
                    own = Some(slots.iter().map(span_len).sum());
                    details.push(format!("this node: primary of slots {}", spans(&slots)));
                }
                Role::Replica => {
                    own = Some(0);
                    let primary = map.nodes()[usize::from(node.primary)].addr.to_string();
                    details.push(format!("this node: replica of {primary}"));
                    replica_of = Some(primary);
                }
            }
        }
        for at in primaries {
            let addr = &map.nodes()[usize::from(at)].addr;
            if suggested.len() < SUGGESTED_SEEDS && !suggested.contains(addr) {
                suggested.push(addr.clone());
            }
        }
    }
    let node = here.to_string();
    let (status, problem) = match (own, replica_of) {
        (Some(all), _) if all == u32::from(SLOTS) => (
            Status::Warn,
            format!(
                "{node} is a Redis Cluster node (cluster_enabled:1) and the URL names this one node: it serves all 16384 slots now, but once a failover or resharding moves them, commands fail with MOVED"
            ),
        ),
        (_, Some(primary)) => (
            Status::Failed,
            format!(
                "{node} is a Redis Cluster node (cluster_enabled:1), a replica of {primary}, and the URL names this one node: commands fail with MOVED"
            ),
        ),
        (Some(own), None) => (
            Status::Failed,
            format!(
                "{node} is a Redis Cluster node (cluster_enabled:1) serving {own} of 16384 slots, and the URL names this one node: commands on keys of the other slots fail with MOVED"
            ),
        ),
        (None, None) => (
            Status::Failed,
            format!(
                "{node} is a Redis Cluster node (cluster_enabled:1) and the URL names this one node: commands on keys of slots other nodes serve fail with MOVED"
            ),
        ),
    };
    let mut list: Vec<String> = suggested.iter().map(NodeAddr::to_string).collect();
    if list.len() == 1 {
        list.push("host2:port2".to_owned());
    }
    let url = redacted_url_with(config, &list.join(","));
    let password = if config.password.is_empty() {
        ""
    } else {
        " with your password for ***"
    };
    let fix = format!(
        "use cluster mode: name several nodes in the URL (redis://host:port,host2:port2), here {url}{password}, or set REDIS_CLUSTER_NODES={}; the client then reads the slot map and sends each command to the node serving its key",
        list.join(",")
    );
    let finding = Finding {
        kind: FindingKind::UseClusterMode,
        status,
        node: Some(node),
        problem,
        fix,
    };
    (finding, details)
}

#[cfg(test)]
mod tests {
    use resilis_core::resp::{Decoded, Limits, decode};

    use super::*;

    /// A `CLUSTER SLOTS` reply: per range, its primary and replicas (ports
    /// on 127.0.0.1).
    fn slots_reply(ranges: &[(u16, u16, &[u16])]) -> Vec<u8> {
        let bulk = |s: &str| format!("${}\r\n{s}\r\n", s.len());
        let mut out = format!("*{}\r\n", ranges.len());
        for (start, end, ports) in ranges {
            out += &format!("*{}\r\n:{start}\r\n:{end}\r\n", 2 + ports.len());
            for port in *ports {
                out += &format!("*2\r\n{}:{port}\r\n", bulk("127.0.0.1"));
            }
        }
        out.into_bytes()
    }

    fn map(ranges: &[(u16, u16, &[u16])]) -> Box<Map> {
        let bytes = slots_reply(ranges);
        let Ok(Decoded::Frame { frame, .. }) = decode(&bytes, &Limits::REDIS) else {
            panic!("bad fixture");
        };
        let mut map = Box::new(Map::new());
        map.parse_slots(&frame, "127.0.0.1").unwrap();
        map
    }

    fn addr(port: u16) -> NodeAddr {
        NodeAddr::new("127.0.0.1", port).unwrap()
    }

    fn mapped(port: u16, seed: bool, m: Box<Map>) -> Probe {
        Probe {
            node: addr(port),
            seed,
            outcome: Ok(View::Map {
                map: m,
                command: "CLUSTER SLOTS",
                healths: Some(Vec::new()),
            }),
        }
    }

    fn refused(port: u16) -> Probe {
        Probe {
            node: addr(port),
            seed: false,
            outcome: Err(Unreached {
                step: StepName::Tcp,
                problem: format!("connection refused by 127.0.0.1:{port}"),
                fix: "nothing listens there".to_owned(),
            }),
        }
    }

    const HEALTHY: &[(u16, u16, &[u16])] = &[
        (0, 5460, &[7000, 7003]),
        (5461, 10922, &[7001, 7004]),
        (10923, 16383, &[7002, 7005]),
    ];

    fn kinds(a: &Assessment) -> Vec<(FindingKind, Status, Option<&str>)> {
        a.findings
            .iter()
            .map(|f| (f.kind, f.status, f.node.as_deref()))
            .collect()
    }

    #[test]
    fn a_healthy_cluster_has_no_finding_and_lists_primaries_then_replicas() {
        let probes: Vec<Probe> = (7000..7006)
            .map(|p| mapped(p, p < 7002, map(HEALTHY)))
            .collect();
        let a = assess(&[addr(7000), addr(7001)], &probes, 0);
        assert!(a.findings.is_empty(), "{:?}", kinds(&a));
        assert_eq!(a.status, Status::Ok);
        let order: Vec<&str> = a.report.nodes.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(
            order,
            [
                "127.0.0.1:7000",
                "127.0.0.1:7003",
                "127.0.0.1:7001",
                "127.0.0.1:7004",
                "127.0.0.1:7002",
                "127.0.0.1:7005"
            ]
        );
        assert_eq!(
            a.summary,
            "3 shards, 6 nodes: all 16384 slots served; 6 of 6 nodes reachable; all hold one slot map"
        );
        assert_eq!(
            a.details[2],
            "127.0.0.1:7000 primary, slots 0-5460: reachable, online, same map (seed)"
        );
    }

    #[test]
    fn uncovered_slots_are_named_and_capped() {
        let gappy: Vec<(u16, u16, &[u16])> = (0..12)
            .map(|i| (i * 100, i * 100 + 49, &[7000u16][..]))
            .collect();
        let probes = vec![mapped(7000, true, map(&gappy))];
        let a = assess(&[addr(7000)], &probes, 0);
        let f = &a.findings[0];
        assert_eq!(
            (f.kind, f.status),
            (FindingKind::SlotsUncovered, Status::Failed)
        );
        assert!(
            f.problem.starts_with(
                "15784 of 16384 slots are served by no node (50-99, 150-199, 250-299, 350-399, 450-499, 550-599, 650-699, 750-799 and 4 more ranges)"
            ),
            "{}",
            f.problem
        );
        assert_eq!(a.report.uncovered.len(), 12);
        assert_eq!(a.report.slots_served, 600);
    }

    #[test]
    fn an_unreachable_replica_is_a_warning_and_its_shard_has_no_working_replica() {
        let mut probes: Vec<Probe> = [7000, 7001, 7002, 7004, 7005]
            .into_iter()
            .map(|p| mapped(p, p == 7000, map(HEALTHY)))
            .collect();
        probes.push(refused(7003));
        let a = assess(&[addr(7000)], &probes, 0);
        assert_eq!(
            kinds(&a),
            [
                (
                    FindingKind::NodeUnreachable,
                    Status::Warn,
                    Some("127.0.0.1:7003")
                ),
                (FindingKind::NoReplica, Status::Warn, Some("127.0.0.1:7000")),
            ]
        );
        assert!(
            a.findings[0].problem.starts_with(
                "127.0.0.1:7003 (replica of 127.0.0.1:7000) cannot be reached: connection refused"
            ),
            "{}",
            a.findings[0].problem
        );
        assert_eq!(a.status, Status::Warn);
    }

    #[test]
    fn an_unreachable_primary_serving_slots_is_a_failure() {
        let mut probes: Vec<Probe> = [7000, 7002, 7003, 7004, 7005]
            .into_iter()
            .map(|p| mapped(p, p == 7000, map(HEALTHY)))
            .collect();
        probes.push(refused(7001));
        let a = assess(&[addr(7000)], &probes, 0);
        let f = &a.findings[0];
        assert_eq!(
            (f.kind, f.status),
            (FindingKind::NodeUnreachable, Status::Failed)
        );
        assert!(
            f.problem.contains("(primary of slots 5461-10922)"),
            "{}",
            f.problem
        );
    }

    #[test]
    fn a_minority_view_is_named_and_no_majority_fails() {
        let moved: &[(u16, u16, &[u16])] = &[
            (0, 5460, &[7003]),
            (5461, 10922, &[7001, 7004]),
            (10923, 16383, &[7002, 7005]),
        ];
        let probes = vec![
            mapped(7000, true, map(HEALTHY)),
            mapped(7001, false, map(HEALTHY)),
            mapped(7002, false, map(moved)),
        ];
        let a = assess(&[addr(7000)], &probes, 0);
        let f = a
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::ViewDiffers)
            .unwrap();
        assert_eq!(f.node.as_deref(), Some("127.0.0.1:7002"));
        assert!(
            f.problem
                .contains("for slot 0 it names 127.0.0.1:7003, the others 127.0.0.1:7000"),
            "{}",
            f.problem
        );

        let split = vec![
            mapped(7000, true, map(HEALTHY)),
            mapped(7002, false, map(moved)),
        ];
        let a = assess(&[addr(7000)], &split, 0);
        assert_eq!(a.findings[0].kind, FindingKind::NoMajority);
        assert!(
            a.findings[0]
                .problem
                .contains("map A held by 127.0.0.1:7000; map B held by 127.0.0.1:7002"),
            "{}",
            a.findings[0].problem
        );
    }

    #[test]
    fn a_shard_without_replica_is_a_warning() {
        let lonely: &[(u16, u16, &[u16])] = &[(0, 16383, &[7000])];
        let a = assess(&[addr(7000)], &[mapped(7000, true, map(lonely))], 0);
        assert_eq!(
            kinds(&a),
            [(FindingKind::NoReplica, Status::Warn, Some("127.0.0.1:7000"))]
        );
        assert!(a.findings[0].problem.contains("has no replica"));
    }

    #[test]
    fn a_seed_with_cluster_support_disabled_is_not_a_cluster() {
        let probes = vec![Probe {
            node: addr(6379),
            seed: true,
            outcome: Ok(View::Refused(
                "ERR This instance has cluster support disabled".into(),
            )),
        }];
        let a = assess(&[addr(6379)], &probes, 0);
        assert_eq!(
            kinds(&a),
            [(
                FindingKind::NotACluster,
                Status::Failed,
                Some("127.0.0.1:6379")
            )]
        );
        assert!(a.findings[0].fix.contains("one host in the URL"));
    }

    #[test]
    fn use_cluster_mode_suggests_the_primaries_and_never_the_password() {
        let config = Config::from_url("redis://app:hunter2@127.0.0.1:7001/0").unwrap();
        let view = View::Map {
            map: map(HEALTHY),
            command: "CLUSTER SLOTS",
            healths: None,
        };
        let (f, details) = use_cluster_mode(&config, &addr(7001), Some(&view));
        assert_eq!(
            (f.kind, f.status),
            (FindingKind::UseClusterMode, Status::Failed)
        );
        assert!(
            f.problem.contains("serving 5462 of 16384 slots"),
            "{}",
            f.problem
        );
        assert!(
            f.fix.contains(
                "here redis://app:***@127.0.0.1:7001,127.0.0.1:7000,127.0.0.1:7002/0 with your password for ***, or set REDIS_CLUSTER_NODES=127.0.0.1:7001,127.0.0.1:7000,127.0.0.1:7002"
            ),
            "{}",
            f.fix
        );
        assert!(!format!("{f:?} {details:?}").contains("hunter2"));
        assert_eq!(details[1], "this node: primary of slots 5461-10922");

        // No map: the form, with a placeholder.
        let (f, _) = use_cluster_mode(&config, &addr(7001), None);
        assert!(
            f.fix
                .contains("here redis://app:***@127.0.0.1:7001,host2:port2/0"),
            "{}",
            f.fix
        );
    }

    #[test]
    fn spans_are_capped() {
        let list: Vec<SlotSpan> = (0..10)
            .map(|i| SlotSpan {
                start: i * 10,
                end: i * 10 + if i == 0 { 0 } else { 5 },
            })
            .collect();
        assert_eq!(
            spans(&list),
            "0, 10-15, 20-25, 30-35, 40-45, 50-55, 60-65, 70-75 and 2 more ranges"
        );
    }
}

//! What the Sentinel step makes of the sentinels' answers: a pure function
//! from what each sentinel said to the master chosen, typed findings, the
//! per-sentinel report and the step's lines. No I/O here (`sentinel` does
//! that), so every judgement is tested below on hand-written answers.
//!
//! The master is chosen by resilis-core's own [`Resolver`], fed the
//! answers as one round, so the doctor names the master the client would
//! follow: a strict majority of the sentinels ends the round at once;
//! otherwise the most votes win, a tie going to the sentinel listed first,
//! and one vote is enough when the others failed. The doctor then says
//! what that choice rests on.

use resilis_core::Instant;
use resilis_core::cluster::NodeAddr;
use resilis_core::sentinel::{Answer, Resolver, SentinelConfig, SentinelId};

use super::cluster_findings::Unreached;
use super::report::{
    Finding, FindingKind, SentinelAnswer, SentinelNode, SentinelReport, Status, StepName,
};

/// What one sentinel said when asked for the master.
pub(super) struct Asked {
    pub sentinel: NodeAddr,
    pub outcome: Outcome,
}

pub(super) enum Outcome {
    /// `SENTINEL get-master-addr-by-name` named this address.
    Named(Box<NodeAddr>),
    /// A nil: it monitors no master of this name. The names it monitors
    /// (`SENTINEL MASTERS`), when it told.
    UnknownName { monitored: Option<Vec<String>> },
    /// Reached, but an error reply, no reply in time, or not an answer.
    Refused { problem: String, fix: String },
    /// DNS, TCP, TLS or the handshake failed.
    Unreached(Unreached),
}

/// The Sentinel step's conclusion, before the master's `ROLE` is known.
pub(super) struct Assessment {
    /// The master the client would follow.
    pub master: Option<NodeAddr>,
    pub status: Status,
    pub summary: String,
    pub details: Vec<String>,
    /// Per-sentinel problems first, in the order given, then the others.
    pub findings: Vec<Finding>,
    pub report: SentinelReport,
}

pub(super) fn assess(name: &str, asked: &[Asked]) -> Assessment {
    let total = asked.len();
    let majority = total / 2 + 1;
    let master = choose(name, asked);
    let named = |a: &Asked| match &a.outcome {
        Outcome::Named(m) => Some((**m).clone()),
        _ => None,
    };
    let votes = asked
        .iter()
        .filter(|a| named(a).is_some() && named(a) == master)
        .count();
    let unknown: Vec<&Asked> = asked
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::UnknownName { .. }))
        .collect();
    let silent = asked
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Refused { .. } | Outcome::Unreached(_)))
        .count();
    let answered = total - silent;
    // Sentinels naming another address than the one chosen: (it, them).
    let dissent: Vec<(String, String)> = asked
        .iter()
        .filter_map(|a| Some((a.sentinel.to_string(), named(a)?)))
        .filter(|(_, m)| Some(m) != master.as_ref())
        .map(|(s, m)| (s, m.to_string()))
        .collect();

    let mut findings = Vec::new();
    let mut details = Vec::new();
    let mut nodes = Vec::new();
    for a in asked {
        let sentinel = a.sentinel.to_string();
        let (answer, said, problem) = match &a.outcome {
            Outcome::Named(m) => {
                details.push(format!("sentinel {sentinel}: names {m}"));
                (SentinelAnswer::Named, Some(m.to_string()), None)
            }
            Outcome::UnknownName { monitored } => {
                let what = monitors(monitored.as_deref());
                details.push(format!(
                    "sentinel {sentinel}: monitors no master named '{name}'{}",
                    what.as_deref().map_or(String::new(), |w| format!(" ({w})"))
                ));
                (SentinelAnswer::UnknownName, None, what)
            }
            Outcome::Refused { problem, fix } => {
                details.push(format!("sentinel {sentinel}: no answer: {problem}"));
                findings.push(unanswered(answered, &sentinel, problem, fix, false));
                (SentinelAnswer::Refused, None, Some(problem.clone()))
            }
            Outcome::Unreached(u) => {
                details.push(format!("sentinel {sentinel}: unreachable: {}", u.problem));
                let reached = !matches!(u.step, StepName::Dns | StepName::Tcp | StepName::Tls);
                findings.push(unanswered(answered, &sentinel, &u.problem, &u.fix, reached));
                (SentinelAnswer::Unreachable, None, Some(u.problem.clone()))
            }
        };
        nodes.push(SentinelNode {
            sentinel,
            answer,
            master: said,
            problem,
        });
    }

    let summary = match &master {
        None if answered == 0 => match total {
            1 => "the sentinel did not answer".to_owned(),
            n => format!("none of the {n} sentinels answered"),
        },
        None => {
            findings.push(name_unknown(name, &unknown, total, silent));
            format!(
                "no sentinel monitors '{name}' ({} of {total} answered)",
                answered
            )
        }
        Some(m) => {
            let mut summary = if votes == total && total == 1 {
                format!("the sentinel names {m} as master of '{name}'")
            } else if votes == total {
                format!("all {total} sentinels name {m} as master of '{name}'")
            } else {
                format!("{votes} of {total} sentinels name {m} as master of '{name}'")
            };
            for (count, what) in [
                (silent, "did not answer"),
                (dissent.len(), "named another"),
                (unknown.len(), "do not know the name"),
            ] {
                if count > 0 {
                    summary.push_str(&format!("; {count} {what}"));
                }
            }
            for a in &unknown {
                findings.push(one_does_not_know(name, a, m, votes));
            }
            if !dissent.is_empty() {
                findings.push(disagree(name, m, votes, majority, total, &dissent));
            } else if votes < majority {
                findings.push(minority(name, m, votes, majority, total));
            }
            summary
        }
    };
    let status = if findings.iter().any(|f| f.status == Status::Failed) {
        Status::Failed
    } else if findings.is_empty() {
        Status::Ok
    } else {
        Status::Warn
    };
    Assessment {
        report: SentinelReport {
            master_name: name.to_owned(),
            sentinels: nodes,
            master: master.as_ref().map(NodeAddr::to_string),
            votes,
            answered,
            role: None,
        },
        master,
        status,
        summary,
        details,
        findings,
    }
}

/// The master the client would follow: the core's resolver, one round of
/// these answers. `None` when no sentinel named one, or the list is one
/// the client refuses (the Config step refused it already).
fn choose(name: &str, asked: &[Asked]) -> Option<NodeAddr> {
    let sentinels = asked
        .iter()
        .map(|a| (a.sentinel.host.as_str(), a.sentinel.port));
    let mut resolver: Box<Resolver<{ crate::sentinel::MAX_SENTINELS }>> =
        Box::new(Resolver::new(SentinelConfig::default(), name, sentinels).ok()?);
    let now = Instant::ZERO;
    let ask = resolver.poll_ask(now)?;
    for (at, a) in asked.iter().enumerate() {
        let answer = match &a.outcome {
            Outcome::Named(m) => Answer::Master((**m).clone()),
            Outcome::UnknownName { .. } => Answer::Unknown,
            Outcome::Refused { .. } | Outcome::Unreached(_) => Answer::Failed,
        };
        // At most MAX_SENTINELS (16) entries: the resolver took them all.
        let id = SentinelId(u8::try_from(at).ok()?);
        if resolver.handle_answer(now, id, answer).is_some() {
            break;
        }
    }
    // A round that every answer did not end ends at its deadline.
    resolver.handle_timeout(ask.until);
    resolver.master().cloned()
}

/// `it monitors 'a', 'b'`, or that it monitors none.
fn monitors(names: Option<&[String]>) -> Option<String> {
    match names? {
        [] => Some("it monitors no master at all".to_owned()),
        names => Some(format!("it monitors {}", quoted(names))),
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A sentinel that gave no answer: a warning while others did, a failure
/// when none did.
fn unanswered(answered: usize, sentinel: &str, problem: &str, fix: &str, reached: bool) -> Finding {
    let problem = if reached {
        format!("sentinel {sentinel} refused the connection: {problem}")
    } else {
        format!("sentinel {sentinel} does not answer: {problem}")
    };
    Finding {
        kind: FindingKind::SentinelUnreachable,
        status: if answered == 0 {
            Status::Failed
        } else {
            Status::Warn
        },
        node: Some(sentinel.to_owned()),
        problem,
        fix: fix.to_owned(),
    }
}

/// Every sentinel that answered said it monitors no master of this name.
fn name_unknown(name: &str, unknown: &[&Asked], total: usize, silent: usize) -> Finding {
    let mut problem = match (unknown.len(), total) {
        (1, 1) => format!("no sentinel monitors a master named '{name}': the sentinel said so"),
        (u, t) if u == t => {
            format!("no sentinel monitors a master named '{name}': all {t} sentinels said so")
        }
        (u, t) => format!(
            "no sentinel monitors a master named '{name}': {u} of the {t} sentinels said so"
        ),
    };
    if silent > 0 {
        problem.push_str(&format!(", {silent} did not answer"));
    }
    let mut names: Vec<String> = Vec::new();
    for a in unknown {
        if let Outcome::UnknownName {
            monitored: Some(list),
        } = &a.outcome
        {
            for n in list {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
    }
    let mut fix = format!(
        "no sentinel monitors '{name}': check the name in `sentinel monitor <name> <ip> <port> <quorum>` (sentinel.conf) against the one in the URL (redis+sentinel://host:port/<name>) or REDIS_SENTINEL_MASTER"
    );
    match names.as_slice() {
        [] => {}
        [only] => fix.push_str(&format!("; these sentinels monitor '{only}'")),
        many => fix.push_str(&format!("; these sentinels monitor {}", quoted(many))),
    }
    Finding {
        kind: FindingKind::UnknownMasterName,
        status: Status::Failed,
        node: None,
        problem,
        fix,
    }
}

/// One sentinel does not know the name the others know.
fn one_does_not_know(name: &str, a: &Asked, master: &NodeAddr, votes: usize) -> Finding {
    let sentinel = a.sentinel.to_string();
    let mut fix = format!(
        "add `sentinel monitor {name} {} {} <quorum>` to its sentinel.conf, as on the others, or remove it from the list",
        master.host, master.port
    );
    if let Outcome::UnknownName {
        monitored: Some(list),
    } = &a.outcome
        && !list.is_empty()
    {
        fix.push_str(&format!(" (it monitors {})", quoted(list)));
    }
    Finding {
        kind: FindingKind::UnknownMasterName,
        status: Status::Warn,
        node: Some(sentinel.clone()),
        problem: format!(
            "sentinel {sentinel} monitors no master named '{name}', while {votes} other{} name{} {master}: it takes no part in this master's failovers",
            if votes == 1 { "" } else { "s" },
            if votes == 1 { "s" } else { "" },
        ),
        fix,
    }
}

/// Sentinels name different masters.
fn disagree(
    name: &str,
    master: &NodeAddr,
    votes: usize,
    majority: usize,
    total: usize,
    dissent: &[(String, String)],
) -> Finding {
    let others: Vec<String> = dissent
        .iter()
        .map(|(sentinel, m)| format!("sentinel {sentinel} names {m}"))
        .collect();
    let problem = format!(
        "the sentinels disagree on the master of '{name}': {votes} of {total} name {master}, {}",
        others.join(", ")
    );
    let look = format!(
        "if it lasts, the sentinels naming another master cannot reach the others, or monitor another group under the same name: compare `SENTINEL MASTER {name}` and `SENTINEL SENTINELS {name}` on each"
    );
    let (status, fix) = if votes >= majority {
        (
            Status::Warn,
            format!(
                "during a failover this lasts a few seconds (the sentinels learn the new master from each other's hellos, every 2 s): run the doctor again; {look}"
            ),
        )
    } else {
        (
            Status::Failed,
            format!(
                "no master is named by a majority ({majority} of {total}) of the sentinels: the client follows {master} (the most votes), which may be a stale master that loses the writes; {look}"
            ),
        )
    };
    Finding {
        kind: FindingKind::SentinelsDisagree,
        status,
        node: None,
        problem,
        fix,
    }
}

/// A master is named, but by fewer than a majority: the others failed.
fn minority(name: &str, master: &NodeAddr, votes: usize, majority: usize, total: usize) -> Finding {
    Finding {
        kind: FindingKind::SentinelMinority,
        status: Status::Warn,
        node: None,
        problem: format!(
            "only {votes} of the {total} sentinels answered with the master of '{name}' ({master}): Sentinel needs {majority} of them to elect the leader of a failover, so if they cannot reach each other either, a failed master is not replaced"
        ),
        fix: format!(
            "bring back the sentinels that do not answer (see why above); for those gone for good, remove them from this list and run `SENTINEL RESET {name}` on the others"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> NodeAddr {
        NodeAddr::new("10.0.0.1", port).unwrap()
    }

    fn named(sentinel: u16, master: u16) -> Asked {
        Asked {
            sentinel: addr(sentinel),
            outcome: Outcome::Named(Box::new(addr(master))),
        }
    }

    fn unknown(sentinel: u16, monitored: &[&str]) -> Asked {
        Asked {
            sentinel: addr(sentinel),
            outcome: Outcome::UnknownName {
                monitored: Some(monitored.iter().map(|s| (*s).to_owned()).collect()),
            },
        }
    }

    fn refused(sentinel: u16) -> Asked {
        Asked {
            sentinel: addr(sentinel),
            outcome: Outcome::Unreached(Unreached {
                step: StepName::Tcp,
                problem: format!("connection refused by 10.0.0.1:{sentinel}"),
                fix: "nothing listens there".to_owned(),
            }),
        }
    }

    fn kinds(a: &Assessment) -> Vec<(FindingKind, Status)> {
        a.findings.iter().map(|f| (f.kind, f.status)).collect()
    }

    #[test]
    fn all_agree_is_healthy() {
        let a = assess(
            "mymaster",
            &[named(1, 6379), named(2, 6379), named(3, 6379)],
        );
        assert_eq!(a.master, Some(addr(6379)));
        assert_eq!(a.status, Status::Ok);
        assert!(a.findings.is_empty());
        assert_eq!(
            a.summary,
            "all 3 sentinels name 10.0.0.1:6379 as master of 'mymaster'"
        );
        assert_eq!((a.report.votes, a.report.answered), (3, 3));
    }

    #[test]
    fn one_down_names_it_and_still_resolves() {
        let a = assess("mymaster", &[named(1, 6379), refused(2), named(3, 6379)]);
        assert_eq!(a.master, Some(addr(6379)));
        assert_eq!(a.status, Status::Warn);
        assert_eq!(
            kinds(&a),
            [(FindingKind::SentinelUnreachable, Status::Warn)]
        );
        assert_eq!(a.findings[0].node.as_deref(), Some("10.0.0.1:2"));
        assert!(
            a.findings[0]
                .problem
                .starts_with("sentinel 10.0.0.1:2 does not answer: connection refused"),
            "{}",
            a.findings[0].problem
        );
        assert!(a.summary.ends_with("; 1 did not answer"), "{}", a.summary);
        assert_eq!(a.report.sentinels[1].answer, SentinelAnswer::Unreachable);
    }

    #[test]
    fn two_down_of_three_is_a_minority() {
        let a = assess("m", &[refused(1), refused(2), named(3, 6379)]);
        assert_eq!(a.master, Some(addr(6379)), "one vote is enough");
        assert_eq!(
            kinds(&a),
            [
                (FindingKind::SentinelUnreachable, Status::Warn),
                (FindingKind::SentinelUnreachable, Status::Warn),
                (FindingKind::SentinelMinority, Status::Warn),
            ]
        );
    }

    #[test]
    fn none_answering_fails_on_each() {
        let a = assess("m", &[refused(1), refused(2)]);
        assert_eq!(a.master, None);
        assert_eq!(a.status, Status::Failed);
        assert_eq!(a.summary, "none of the 2 sentinels answered");
        assert_eq!(
            kinds(&a),
            [
                (FindingKind::SentinelUnreachable, Status::Failed),
                (FindingKind::SentinelUnreachable, Status::Failed),
            ]
        );
    }

    #[test]
    fn an_unknown_name_says_which_names_are_monitored() {
        let a = assess(
            "mymastr",
            &[
                unknown(1, &["mymaster"]),
                unknown(2, &["mymaster"]),
                refused(3),
            ],
        );
        assert_eq!(a.master, None);
        assert_eq!(a.status, Status::Failed);
        let f = a
            .findings
            .iter()
            .find(|f| f.status == Status::Failed)
            .unwrap();
        assert_eq!(f.kind, FindingKind::UnknownMasterName);
        assert!(
            f.fix
                .starts_with("no sentinel monitors 'mymastr': check the name in `sentinel monitor"),
            "{}",
            f.fix
        );
        assert!(
            f.fix.ends_with("these sentinels monitor 'mymaster'"),
            "{}",
            f.fix
        );
        assert_eq!(
            a.summary,
            "no sentinel monitors 'mymastr' (2 of 3 answered)"
        );
    }

    #[test]
    fn a_sentinel_that_does_not_know_the_name_is_a_warning() {
        let a = assess("m", &[named(1, 6379), named(2, 6379), unknown(3, &[])]);
        assert_eq!(a.master, Some(addr(6379)));
        assert_eq!(kinds(&a), [(FindingKind::UnknownMasterName, Status::Warn)]);
        assert!(
            a.findings[0]
                .fix
                .starts_with("add `sentinel monitor m 10.0.0.1 6379 <quorum>`"),
            "{}",
            a.findings[0].fix
        );
    }

    #[test]
    fn a_majority_wins_a_disagreement_with_a_warning() {
        let a = assess("m", &[named(1, 6380), named(2, 6379), named(3, 6379)]);
        assert_eq!(a.master, Some(addr(6379)));
        assert_eq!(kinds(&a), [(FindingKind::SentinelsDisagree, Status::Warn)]);
        assert!(
            a.findings[0]
                .problem
                .ends_with("2 of 3 name 10.0.0.1:6379, sentinel 10.0.0.1:1 names 10.0.0.1:6380"),
            "{}",
            a.findings[0].problem
        );
    }

    #[test]
    fn a_split_without_majority_fails_and_follows_the_first_listed() {
        let a = assess(
            "m",
            &[named(1, 6380), named(2, 6379), refused(3), refused(4)],
        );
        // A tie: the resolver takes the one named by the sentinel listed first.
        assert_eq!(a.master, Some(addr(6380)));
        assert_eq!(a.status, Status::Failed);
        assert!(
            a.findings
                .iter()
                .any(|f| f.kind == FindingKind::SentinelsDisagree && f.status == Status::Failed)
        );
    }
}

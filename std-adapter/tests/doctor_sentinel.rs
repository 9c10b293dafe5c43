//! `resilis doctor` and `resilis watch` against a real Sentinel deployment
//! (`SentinelSet`: a master, two replicas, three sentinels). Starting one
//! takes ~2.2 s, so the file starts one and runs every case on it, in an
//! order that leaves the one that breaks it (a killed sentinel) last:
//! healthy, a wrong master name, passwords never shown, a single-node URL
//! to a sentinel, watch, a master that says ROLE slave (for a few
//! milliseconds, too short for the sentinels to react), one sentinel down. Ports change from run to run,
//! so the snapshot names data nodes `P0`..`P2` and sentinels `S0`..`S2`,
//! and timings are zeroed; the rest is asserted on the report's typed
//! fields. The environment is injected (empty unless said), and the
//! binary runs with the REDIS_* variables of this machine removed.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use resilis::doctor::{self, FindingKind, Options, Report, SentinelAnswer, Status, StepName};
use resilis_tests::sentinel::SentinelSet;
use serde_json::Value;

/// Far above what `--for` asks: only a hung process reaches it.
const HANG: Duration = Duration::from_secs(20);

fn options() -> Options {
    Options {
        timeout: Duration::from_millis(1500),
        pings: 1,
        ..Options::default()
    }
}

/// The doctor on `url` with these variables only.
fn diagnose(url: &str, env: &[(&str, &str)]) -> Report {
    let vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let lookup = move |name: &str| vars.get(name).cloned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(doctor::diagnose(Some(url), &lookup, &options()))
        .without_timings()
}

/// `127.0.0.1:PORT` of data node `i` becomes `127.0.0.1:P{i}`, of
/// sentinel `j` `127.0.0.1:S{j}`.
fn normalize(text: &str, set: &SentinelSet) -> String {
    let mut ports: Vec<(String, String)> = Vec::new();
    for (i, node) in set.nodes().iter().enumerate() {
        ports.push((node.port().to_string(), format!("P{i}")));
    }
    for (j, sentinel) in set.sentinels().iter().enumerate() {
        ports.push((sentinel.port().to_string(), format!("S{j}")));
    }
    // A port that is a prefix of another must not eat its start.
    ports.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    let mut out = text.to_owned();
    for (port, name) in ports {
        out = out
            .replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{name}"))
            .replace(&format!("127.0.0.1 {port}"), &format!("127.0.0.1 {name}"));
    }
    out
}

fn node(set: &SentinelSet, i: usize) -> String {
    format!("127.0.0.1:{}", set.node(i).port())
}

fn sentinel(set: &SentinelSet, j: usize) -> String {
    format!("127.0.0.1:{}", set.sentinel(j).port())
}

/// The report up to the first per-connection step after Sentinel, and
/// the verdict: the steps after it quote memory and client counts, which
/// vary.
fn sentinel_part(report: &Report, set: &SentinelSet) -> String {
    let text = doctor::render(report);
    let dns = text
        .find("\n  ✓ DNS")
        .unwrap_or_else(|| panic!("no DNS step:\n{text}"));
    let verdict = text
        .find("\n✓ ")
        .unwrap_or_else(|| panic!("no verdict:\n{text}"));
    normalize(&format!("{}\n{}", &text[..dns], &text[verdict..]), set)
}

/// Every key and the type of every value: the contract of `--json`.
fn shape(value: &Value) -> Value {
    match value {
        Value::Null => Value::from("null"),
        Value::Bool(_) => Value::from("bool"),
        Value::Number(_) => Value::from("number"),
        Value::String(_) => Value::from("string"),
        Value::Array(items) => Value::Array(items.first().map(shape).into_iter().collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
    }
}

/// Runs the binary with no REDIS_* variables from this machine's
/// environment; kills it if it outlives [`HANG`].
fn resilis(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_resilis"));
    for (name, _) in std::env::vars() {
        if name.starts_with("REDIS_") {
            cmd.env_remove(name);
        }
    }
    cmd.args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run the resilis binary");
    let mut stdout = child.stdout.take().expect("piped stdout");
    // Read on a thread of its own: a full pipe must not block the child.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let deadline = Instant::now() + HANG;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("resilis {args:?} did not exit within {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut stderr);
    }
    Output {
        status,
        stdout: reader.join().expect("stdout reader"),
        stderr,
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn doctor_and_watch_on_a_sentinel_deployment() {
    let set = SentinelSet::start();
    healthy_deployment_names_the_master(&set);
    wrong_master_name_is_a_typed_finding_with_the_fix(&set);
    passwords_are_never_shown(&set);
    single_node_url_to_a_sentinel_is_told_to_use_sentinel_mode(&set);
    watch_shows_the_master_and_the_sentinels(&set);
    a_master_that_says_role_slave_is_a_finding(&set);
    // Last: it leaves a sentinel down.
    one_sentinel_killed_still_resolves_and_is_named(&set);
}

fn healthy_deployment_names_the_master(set: &SentinelSet) {
    let report = diagnose(&set.sentinel_url(), &[]);
    let text = doctor::render(&report);
    assert!(report.verdict.healthy, "{text}");
    assert_eq!(report.exit_code(), 0, "{text}");
    assert!(report.verdict.findings.is_empty(), "{text}");
    let names: Vec<StepName> = report.steps.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            StepName::Config,
            StepName::Sentinel,
            StepName::Dns,
            StepName::Tcp,
            StepName::Tls,
            StepName::Handshake,
            StepName::Ping,
            StepName::Info,
        ],
        "{text}"
    );
    assert_eq!(
        report.step(StepName::Sentinel).map(|s| s.status),
        Some(Status::Ok),
        "{text}"
    );
    let s = report.sentinel.as_ref().expect("a Sentinel report");
    assert_eq!(s.master_name, "mymaster");
    assert_eq!(s.master.as_deref(), Some(node(set, 0).as_str()), "{text}");
    assert_eq!(s.role.as_deref(), Some("master"), "{text}");
    assert_eq!((s.votes, s.answered), (3, 3));
    for (j, n) in s.sentinels.iter().enumerate() {
        assert_eq!(n.sentinel, sentinel(set, j));
        assert_eq!(n.answer, SentinelAnswer::Named, "{text}");
        assert_eq!(n.master.as_deref(), Some(node(set, 0).as_str()));
    }
    // The per-connection steps ran against the master the sentinels named.
    let target = report.target.as_ref().unwrap();
    assert_eq!(target.port, set.node(0).port());
    assert_eq!(
        report.step(StepName::Tcp).map(|s| s.summary.clone()),
        Some(format!("connected to {}", node(set, 0)))
    );
    assert_eq!(
        report.server.as_ref().unwrap().role.as_deref(),
        Some("master")
    );
    insta::assert_snapshot!("healthy", sentinel_part(&report, set));
    let json: Value = serde_json::from_str(&report.to_json()).unwrap();
    insta::assert_snapshot!(
        "healthy_json_shape",
        serde_json::to_string_pretty(&serde_json::json!({
            "sentinel": shape(&json["sentinel"]),
            "target.sentinel": shape(&json["target"]["sentinel"]),
        }))
        .unwrap()
    );

    // The binary, with the sentinels in REDIS_SENTINELS.
    let list = (0..3)
        .map(|j| sentinel(set, j))
        .collect::<Vec<_>>()
        .join(",");
    let out = resilis(
        &["doctor", "--json", "--timeout", "1500ms", "--pings", "1"],
        &[
            ("REDIS_SENTINELS", &list),
            ("REDIS_SENTINEL_MASTER", "mymaster"),
        ],
    );
    let stdout = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        json["target"]["source"],
        "REDIS_SENTINELS / REDIS_SENTINEL_MASTER"
    );
    assert_eq!(json["sentinel"]["master"], node(set, 0));
    assert_eq!(json["sentinel"]["role"], "master");
}

fn wrong_master_name_is_a_typed_finding_with_the_fix(set: &SentinelSet) {
    let url = set.sentinel_url().replace("/mymaster", "/mymastr");
    let report = diagnose(&url, &[]);
    let text = doctor::render(&report);
    assert!(!report.verdict.healthy, "{text}");
    assert_eq!(report.exit_code(), 11, "{text}");
    assert_eq!(report.verdict.failed_step, Some(StepName::Sentinel));
    let finding = &report.verdict.findings[0];
    assert_eq!(finding.kind, FindingKind::UnknownMasterName, "{text}");
    assert_eq!(finding.status, Status::Failed);
    assert!(
        finding.fix.starts_with(
            "no sentinel monitors 'mymastr': check the name in `sentinel monitor <name> <ip> <port> <quorum>`"
        ),
        "{}",
        finding.fix
    );
    assert!(
        finding.fix.ends_with("these sentinels monitor 'mymaster'"),
        "{}",
        finding.fix
    );
    assert_eq!(report.verdict.fix.as_ref(), Some(&finding.fix));
    let s = report.sentinel.as_ref().unwrap();
    assert_eq!(s.master, None);
    assert!(
        s.sentinels
            .iter()
            .all(|n| n.answer == SentinelAnswer::UnknownName)
    );
    // Nothing to connect to: the per-connection steps did not run.
    for name in [StepName::Dns, StepName::Tcp, StepName::Info] {
        assert_eq!(
            report.step(name).map(|s| s.status),
            Some(Status::Skipped),
            "{name:?}:\n{text}"
        );
    }
    assert!(text.contains("\nexit code 11 (Sentinel failed)"), "{text}");

    // The binary: the same exit code, documented in --help.
    let out = resilis(&["doctor", "--timeout", "1500ms", &url], &[]);
    assert_eq!(out.status.code(), Some(11), "{}", stdout(&out));
    let help = stdout(&resilis(&["doctor", "--help"], &[]));
    assert!(help.contains("\n  11  sentinel: "), "{help}");
}

fn passwords_are_never_shown(set: &SentinelSet) {
    // The sentinels have no password: the sentinels' one is refused by
    // each (and named as the thing to fix), the data nodes' is never sent.
    let url = set
        .sentinel_url()
        .replace("redis+sentinel://", "redis+sentinel://app:hunter2data@");
    let env = [
        ("REDIS_SENTINEL_USERNAME", "watcher"),
        ("REDIS_SENTINEL_PASSWORD", "hunter2sentinel"),
    ];
    let report = diagnose(&url, &env);
    let text = doctor::render(&report);
    let json = report.to_json();
    for shown in [&text, &json] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    assert_eq!(report.exit_code(), 11, "{text}");
    assert!(
        text.contains("resilis doctor: redis+sentinel://app:***@127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("sentinel user \"watcher\" · sentinel password set"),
        "{text}"
    );
    let target = report.target.as_ref().unwrap();
    let sentinel_target = target.sentinel.as_ref().unwrap();
    assert!(target.password_set && sentinel_target.password_set);
    assert_eq!(sentinel_target.username, "watcher");
    let f = &report.verdict.findings[0];
    assert_eq!(f.kind, FindingKind::SentinelUnreachable, "{text}");
    assert!(f.fix.contains("REDIS_SENTINEL_PASSWORD"), "{}", f.fix);

    // The binary, human and JSON, with the sentinels' password set.
    for json in [false, true] {
        let mut args = vec!["doctor", "--timeout", "1500ms"];
        if json {
            args.push("--json");
        }
        args.push(&url);
        let out = resilis(&args, &env);
        let shown = stdout(&out);
        assert_eq!(out.status.code(), Some(11), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"));
    }

    // The data nodes' password only: the sentinels answer, the master
    // takes it (its default user has no password, so any is accepted with
    // HELLO AUTH). Still never shown.
    let url = set
        .sentinel_url()
        .replace("redis+sentinel://", "redis+sentinel://:hunter2data@");
    let report = diagnose(&url, &[]);
    let text = doctor::render(&report);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!report.to_json().contains("hunter2"));
    assert_eq!(report.exit_code(), 0, "{text}");
    assert!(
        text.contains("resilis doctor: redis+sentinel://:***@127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("· password set ·"), "{text}");
}

fn single_node_url_to_a_sentinel_is_told_to_use_sentinel_mode(set: &SentinelSet) {
    let report = diagnose(&set.sentinel(1).url(), &[]);
    let text = doctor::render(&report);
    assert_eq!(report.exit_code(), 11, "{text}");
    assert_eq!(report.verdict.failed_step, Some(StepName::Sentinel));
    let finding = &report.verdict.findings[0];
    assert_eq!(finding.kind, FindingKind::UseSentinelMode);
    assert_eq!(finding.node.as_deref(), Some(sentinel(set, 1).as_str()));
    let fix = normalize(&finding.fix, set);
    assert!(
        fix.starts_with("use Sentinel mode: redis+sentinel://127.0.0.1:S1,"),
        "{fix}"
    );
    for j in [0, 2] {
        assert!(fix.contains(&format!("127.0.0.1:S{j}")), "{fix}");
    }
    assert!(
        fix.contains("/mymaster, or REDIS_SENTINELS=127.0.0.1:S1,"),
        "{fix}"
    );
    assert!(fix.contains("REDIS_SENTINEL_MASTER=mymaster"), "{fix}");
}

fn watch_shows_the_master_and_the_sentinels(set: &SentinelSet) {
    let url = set.sentinel_url();
    let out = resilis(
        &["watch", "--for", "1500ms", "--refresh", "250ms", &url],
        &[],
    );
    let text = normalize(&stdout(&out), set);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "resilis watch: redis+sentinel://127.0.0.1:S0,127.0.0.1:S1,127.0.0.1:S2/mymaster/0"
        ),
        "{text}"
    );
    assert!(
        text.contains("sentinel: master none → 127.0.0.1:P0 (resolved)"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("phase=ready") && l.contains("master=127.0.0.1:P0 sentinels=3/3")),
        "{text}"
    );

    // A password in the URL is not shown (the master refuses it: it has no
    // user "app").
    let url = url.replace("redis+sentinel://", "redis+sentinel://app:hunter2data@");
    let out = resilis(&["watch", "--for", "1s", "--refresh", "250ms", &url], &[]);
    let text = normalize(&stdout(&out), set);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("resilis watch: redis+sentinel://app:***@127.0.0.1:S0"),
        "{text}"
    );
    assert!(text.contains("master=127.0.0.1:P0"), "{text}");
}

/// Turns data node 0 back into a master when dropped, also on a panic.
struct Demoted<'a>(&'a SentinelSet);

impl Drop for Demoted<'_> {
    fn drop(&mut self) {
        let _ = self.0.node(0).try_command(&["REPLICAOF", "NO", "ONE"]);
    }
}

fn a_master_that_says_role_slave_is_a_finding(set: &SentinelSet) {
    // Node 0 follows a port nothing listens on: ROLE says slave at once,
    // while the sentinels (which read its INFO every 10 s and wait 2 s
    // before calling it down) still name it. Restored right after.
    let report = {
        let _restore = Demoted(set);
        set.node(0).command(&["REPLICAOF", "127.0.0.1", "1"]);
        diagnose(&set.sentinel_url(), &[])
    };
    let text = doctor::render(&report);
    assert_eq!(report.exit_code(), 11, "{text}");
    assert_eq!(report.verdict.failed_step, Some(StepName::Sentinel));
    assert_eq!(report.verdict.reason.as_deref(), Some("NotMaster"));
    let s = report.sentinel.as_ref().unwrap();
    assert_eq!(s.master.as_deref(), Some(node(set, 0).as_str()), "{text}");
    assert_eq!(s.role.as_deref(), Some("slave"));
    let finding = &report.verdict.findings[0];
    assert_eq!(finding.kind, FindingKind::MasterNotMaster, "{text}");
    assert_eq!(finding.node.as_deref(), Some(node(set, 0).as_str()));
    assert!(
        finding.problem.starts_with(&format!(
            "the sentinels name {} as master of 'mymaster', but it says ROLE slave (of 127.0.0.1:1",
            node(set, 0)
        )),
        "{}",
        finding.problem
    );
    // The connection itself works: every per-connection step passed, and
    // the INFO step leaves the role to this finding.
    for name in StepName::ALL {
        assert_eq!(
            report.step(name).map(|s| s.status),
            Some(Status::Ok),
            "{name:?}:\n{text}"
        );
    }
    assert!(!text.contains("point REDIS_URL at the primary"), "{text}");
}

fn one_sentinel_killed_still_resolves_and_is_named(set: &SentinelSet) {
    set.kill_sentinel(2);
    let report = diagnose(&set.sentinel_url(), &[]);
    let text = doctor::render(&report);
    assert!(report.verdict.healthy, "{text}");
    assert_eq!(report.exit_code(), 0, "{text}");
    assert_eq!(
        report.step(StepName::Sentinel).map(|s| s.status),
        Some(Status::Warn),
        "{text}"
    );
    let s = report.sentinel.as_ref().unwrap();
    assert_eq!(s.master.as_deref(), Some(node(set, 0).as_str()));
    assert_eq!((s.votes, s.answered), (2, 2));
    assert_eq!(s.role.as_deref(), Some("master"));
    assert_eq!(s.sentinels[2].answer, SentinelAnswer::Unreachable);
    assert_eq!(report.verdict.findings.len(), 1, "{text}");
    let finding = &report.verdict.findings[0];
    assert_eq!(finding.kind, FindingKind::SentinelUnreachable);
    assert_eq!(finding.status, Status::Warn);
    assert_eq!(finding.node.as_deref(), Some(sentinel(set, 2).as_str()));
    let dead = sentinel(set, 2);
    assert!(
        finding.problem.starts_with(&format!(
            "sentinel {dead} does not answer: connection refused by {dead}"
        )),
        "{}",
        finding.problem
    );
    assert!(
        text.contains(&format!(
            "2 of 3 sentinels name {} as master of 'mymaster'; 1 did not answer",
            node(set, 0)
        )),
        "{text}"
    );
    assert!(text.contains("✓ healthy, with 1 warning: "), "{text}");
}

//! `resilis doctor` against a real Redis Cluster (six nodes: three
//! primaries, a replica each; one cluster per test): cluster mode on a
//! healthy cluster, a single-node URL to one of its nodes, and a killed
//! replica. Ports change from run to run, so the snapshots name each node
//! by its index (`127.0.0.1:P0`..`P5`) and timings are zeroed; the rest is
//! asserted on the report's typed fields. The environment is injected
//! (empty) except where the binary is run, with the REDIS_* variables of
//! this machine removed.

use std::process::Command;
use std::time::Duration;

use resilis::doctor::{self, FindingKind, NodeRole, Options, Report, Status, StepName, ViewStatus};
use resilis_tests::Cluster;
use serde_json::Value;

fn options() -> Options {
    Options {
        timeout: Duration::from_millis(1500),
        pings: 1,
        ..Options::default()
    }
}

/// The doctor on `url`, with no REDIS_* variable set.
fn diagnose(url: &str) -> Report {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let no_env = |_: &str| -> Option<String> { None };
    runtime
        .block_on(doctor::diagnose(Some(url), &no_env, &options()))
        .without_timings()
}

/// `127.0.0.1:PORT` of node `i` becomes `127.0.0.1:P{i}`.
fn normalize(text: &str, cluster: &Cluster) -> String {
    let mut ports: Vec<(usize, String)> = (0..cluster.nodes().len())
        .map(|i| (i, cluster.node(i).port().to_string()))
        .collect();
    // A port that is a prefix of another must not eat its start.
    ports.sort_by_key(|(_, p)| std::cmp::Reverse(p.len()));
    let mut out = text.to_owned();
    for (i, port) in ports {
        out = out.replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:P{i}"));
    }
    out
}

/// The rendered report from the Cluster step on: the steps before it
/// quote memory and client counts, which vary.
fn from_cluster_step(report: &Report, cluster: &Cluster) -> String {
    let text = doctor::render(report);
    let at = text
        .find("Cluster  ")
        .unwrap_or_else(|| panic!("no Cluster step:\n{text}"));
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    normalize(&text[line_start..], cluster)
}

fn addr(cluster: &Cluster, i: usize) -> String {
    format!("127.0.0.1:{}", cluster.node(i).port())
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

/// Runs the binary with no REDIS_* variables from this machine's environment.
fn resilis(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_resilis"));
    for (name, _) in std::env::vars() {
        if name.starts_with("REDIS_") {
            cmd.env_remove(name);
        }
    }
    cmd.args(args).envs(env.iter().copied());
    cmd.output().expect("run the resilis binary")
}

#[test]
fn a_healthy_cluster_passes_with_every_node_listed() {
    let cluster = Cluster::start();
    let report = diagnose(&cluster.seed_url());
    let text = doctor::render(&report);
    assert!(report.verdict.healthy, "{text}");
    assert_eq!(report.exit_code(), 0, "{text}");
    assert!(report.verdict.findings.is_empty(), "{text}");
    assert_eq!(
        report.step(StepName::Cluster).map(|s| s.status),
        Some(Status::Ok),
        "{text}"
    );
    let target = report.target.as_ref().unwrap();
    assert_eq!(
        target.cluster_seeds.as_deref(),
        Some(&[addr(&cluster, 0), addr(&cluster, 1), addr(&cluster, 2)][..])
    );

    let map = report.cluster.as_ref().expect("a cluster report");
    assert_eq!(map.slots_served, 16384);
    assert!(map.uncovered.is_empty());
    assert_eq!((map.views, map.agreeing, map.not_checked), (6, 6, 0));
    assert_eq!(map.nodes.len(), 6, "{text}");
    for i in 0..6 {
        let node = map
            .nodes
            .iter()
            .find(|n| n.node == addr(&cluster, i))
            .unwrap_or_else(|| panic!("node {i} not listed:\n{text}"));
        assert_eq!(node.reachable, Some(true), "node {i}");
        assert_eq!(node.view, ViewStatus::Agrees, "node {i}");
        assert_eq!(node.health.as_deref(), Some("online"), "node {i}");
        let role = if i < 3 {
            NodeRole::Primary
        } else {
            NodeRole::Replica
        };
        assert_eq!(node.role, role, "node {i}");
        assert_eq!(node.seed, i < 3, "node {i}");
    }
    insta::assert_snapshot!("healthy", from_cluster_step(&report, &cluster));
    let json: Value = serde_json::from_str(&report.to_json()).unwrap();
    insta::assert_snapshot!(
        "healthy_cluster_json_shape",
        serde_json::to_string_pretty(&shape(&json["cluster"])).unwrap()
    );

    // The binary, with the seeds in REDIS_CLUSTER_NODES.
    let nodes = format!("{},{}", addr(&cluster, 1), addr(&cluster, 4));
    let out = resilis(
        &["doctor", "--json", "--timeout", "1500ms", "--pings", "1"],
        &[("REDIS_CLUSTER_NODES", &nodes)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["target"]["source"], "REDIS_CLUSTER_NODES");
    assert_eq!(json["target"]["port"], cluster.node(1).port());
    assert_eq!(json["cluster"]["nodes"].as_array().map(Vec::len), Some(6));
}

#[test]
fn a_single_node_url_to_a_cluster_node_is_told_to_use_cluster_mode() {
    let cluster = Cluster::start();
    let report = diagnose(&cluster.node_url(1));
    let text = doctor::render(&report);
    assert!(!report.verdict.healthy, "{text}");
    assert_eq!(
        report.verdict.failed_step,
        Some(StepName::Cluster),
        "{text}"
    );
    assert_eq!(report.exit_code(), 10);
    // Every per-connection step passed: the connection works, the mode is wrong.
    for name in StepName::ALL {
        let status = report.step(name).map(|s| s.status);
        assert_ne!(status, Some(Status::Failed), "{name:?}:\n{text}");
    }
    let finding = &report.verdict.findings[0];
    assert_eq!(finding.kind, FindingKind::UseClusterMode);
    assert_eq!(finding.status, Status::Failed);
    assert_eq!(finding.node.as_deref(), Some(addr(&cluster, 1).as_str()));
    let fix = normalize(&finding.fix, &cluster);
    assert!(
        fix.contains("redis://127.0.0.1:P1,127.0.0.1:P0,127.0.0.1:P2/0"),
        "{fix}"
    );
    assert!(
        fix.contains("REDIS_CLUSTER_NODES=127.0.0.1:P1,127.0.0.1:P0,127.0.0.1:P2"),
        "{fix}"
    );
    insta::assert_snapshot!("single_node_url", from_cluster_step(&report, &cluster));

    // The binary: exit code 10, the finding in --json.
    let out = resilis(
        &[
            "doctor",
            "--json",
            "--timeout",
            "1500ms",
            &cluster.node_url(1),
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(10), "{stdout}");
    let json: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["verdict"]["failed_step"], "cluster");
    assert_eq!(json["verdict"]["findings"][0]["kind"], "use_cluster_mode");
}

#[test]
fn a_killed_replica_is_named_unreachable() {
    let cluster = Cluster::start();
    let replica = cluster.replicas_of(0)[0];
    cluster.kill_node(replica);
    let report = diagnose(&cluster.seed_url());
    let text = doctor::render(&report);
    let dead = addr(&cluster, replica);

    // The cluster still serves every slot: healthy, with warnings.
    assert!(report.verdict.healthy, "{text}");
    assert_eq!(report.exit_code(), 0);
    assert_eq!(
        report.step(StepName::Cluster).map(|s| s.status),
        Some(Status::Warn),
        "{text}"
    );
    let unreachable = report
        .verdict
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::NodeUnreachable)
        .unwrap_or_else(|| panic!("no unreachable node:\n{text}"));
    assert_eq!(unreachable.node.as_deref(), Some(dead.as_str()), "{text}");
    assert_eq!(unreachable.status, Status::Warn);
    assert!(
        unreachable.problem.starts_with(&format!(
            "{dead} (replica of {}) cannot be reached: connection refused by {dead}",
            addr(&cluster, 0)
        )),
        "{}",
        unreachable.problem
    );
    let no_replica = report
        .verdict
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::NoReplica)
        .unwrap_or_else(|| panic!("no shard without replica:\n{text}"));
    assert_eq!(no_replica.node.as_deref(), Some(addr(&cluster, 0).as_str()));
    assert!(
        report
            .verdict
            .findings
            .iter()
            .all(|f| f.status == Status::Warn),
        "{text}"
    );

    let map = report.cluster.as_ref().unwrap();
    assert_eq!(map.slots_served, 16384);
    for node in &map.nodes {
        let expected = Some(node.node != dead);
        assert_eq!(node.reachable, expected, "{}:\n{text}", node.node);
    }
    assert!(
        text.contains(&format!(
            "{dead} replica of {}: UNREACHABLE",
            addr(&cluster, 0)
        )),
        "{text}"
    );
    assert!(text.contains(&format!("! {dead} (replica of")), "{text}");
    let json: Value = serde_json::from_str(&report.to_json()).unwrap();
    insta::assert_snapshot!(
        "findings_json_shape",
        serde_json::to_string_pretty(&shape(&json["verdict"]["findings"])).unwrap()
    );
}

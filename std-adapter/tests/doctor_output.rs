//! What `resilis doctor` prints: snapshots of the human report (timings
//! zeroed, ports replaced) and of the JSON shape, and the binary itself:
//! exit codes, `--json`, `--help`, the environment as the default target,
//! and never a password.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use resilis::doctor::{self, Options, Report};
use resilis_tests::{RedisServer, TestPki};
use serde_json::Value;

fn options() -> Options {
    Options {
        timeout: Duration::from_millis(1500),
        pings: 3,
        resolver: Arc::new(|host: &str, _: u16| -> std::io::Result<Vec<SocketAddr>> {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{host}: Name or service not known (test resolver)"),
            ))
        }),
    }
}

async fn diagnose(url: &str, env: &[(&str, &str)]) -> Report {
    let vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let lookup = move |name: &str| vars.get(name).cloned();
    doctor::diagnose(Some(url), &lookup, &options())
        .await
        .without_timings()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn normalize(text: &str, port: u16) -> String {
    text.replace(&format!(":{port}"), ":PORT")
        .replace(&format!("{port}"), "PORT")
}

#[tokio::test]
async fn snapshot_connection_refused() {
    let port = free_port();
    let report = diagnose(&format!("redis://127.0.0.1:{port}"), &[]).await;
    insta::assert_snapshot!("refused", normalize(&doctor::render(&report), port));
    insta::assert_snapshot!("refused_json", normalize(&report.to_json(), port));
}

#[tokio::test]
async fn snapshot_dns_failure() {
    let report = diagnose("redis://cache.internal.example:6379", &[]).await;
    insta::assert_snapshot!("dns_failure", doctor::render(&report));
}

#[tokio::test]
async fn snapshot_tls_required() {
    let pki = TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    let port = server.tls_port();
    let report = diagnose(&format!("redis://127.0.0.1:{port}"), &[]).await;
    insta::assert_snapshot!("tls_required", normalize(&doctor::render(&report), port));
}

#[tokio::test]
async fn snapshot_wrong_password() {
    let server = RedisServer::builder().requirepass("right-pw").start();
    let port = server.port();
    let report = diagnose(&format!("redis://app:wrong-pw@127.0.0.1:{port}"), &[]).await;
    insta::assert_snapshot!("wrong_password", normalize(&doctor::render(&report), port));
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

#[tokio::test]
async fn snapshot_json_shape_of_a_healthy_report() {
    let server = RedisServer::start();
    let report = diagnose(&server.url(), &[]).await;
    assert!(report.verdict.healthy, "{}", doctor::render(&report));
    let json: Value = serde_json::from_str(&report.to_json()).unwrap();
    insta::assert_snapshot!(
        "healthy_json_shape",
        serde_json::to_string_pretty(&shape(&json)).unwrap()
    );
}

// ---- the binary -------------------------------------------------------------

/// Runs the binary with no REDIS_* variables from this machine's environment.
fn resilis(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_resilis"));
    for (name, _) in std::env::vars() {
        if name.starts_with("REDIS_") {
            cmd.env_remove(name);
        }
    }
    cmd.args(args).envs(env.iter().copied());
    cmd.output().expect("run the resilis binary")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn binary_with_nothing_listening_explains_and_exits_5() {
    let port = free_port();
    let url = format!("redis://app:hunter2@127.0.0.1:{port}");
    let out = resilis(&["doctor", "--timeout", "1s", &url], &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.contains("connection refused"), "{text}");
    assert!(text.contains("fix: nothing listens there"), "{text}");
    assert!(text.contains("redis://app:***@127.0.0.1"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn binary_json_has_the_verdict_and_every_step() {
    let port = free_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let out = resilis(&["doctor", "--json", "--timeout", "1s", &url], &[]);
    assert_eq!(out.status.code(), Some(5));
    let text = stdout(&out);
    assert!(!text.contains("hunter2"), "{text}");
    let json: Value = serde_json::from_str(&text).expect("--json prints JSON");
    assert_eq!(json["verdict"]["exit_code"], 5);
    assert_eq!(json["verdict"]["failed_step"], "tcp");
    assert_eq!(json["verdict"]["reason"], "Transport(Refused)");
    let names: Vec<&str> = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["config", "dns", "tcp", "tls", "handshake", "ping", "info"]
    );
}

#[test]
fn binary_defaults_to_the_environment_like_the_library() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let out = resilis(
        &["doctor", "--timeout", "1s"],
        &[("REDIS_URL", &url), ("REDIS_PASSWORD", "hunter2")],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.contains("settings from REDIS_URL"), "{text}");
    assert!(
        text.contains("variables set: REDIS_URL, REDIS_PASSWORD"),
        "{text}"
    );
    assert!(text.contains("password set"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn binary_healthy_exits_0() {
    let server = RedisServer::start();
    let out = resilis(&["doctor", "--timeout", "2s", &server.url()], &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("✓ healthy"), "{text}");
}

#[test]
fn binary_invalid_config_exits_3() {
    let out = resilis(&["doctor", "redis://127.0.0.1:0"], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
}

#[test]
fn help_documents_every_exit_code() {
    let out = resilis(&["doctor", "--help"], &[]);
    let text = stdout(&out);
    assert!(out.status.success());
    for code in 3..=9 {
        assert!(
            text.contains(&format!("\n  {code}  ")),
            "{code} missing:\n{text}"
        );
    }
}

//! `resilis watch`, the binary, against real servers: it shows the state
//! machine reach `ready` (and the keepalive PING latency), it shows the
//! backoff schedule when nothing listens, it follows a server restart, and
//! Ctrl-C ends it cleanly. Every wait is bounded: a hung child is killed.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use resilis_tests::{RedisServer, TestPki};

/// Far above what `--for` asks: only a hung process reaches it.
const HANG: Duration = Duration::from_secs(20);

fn watch(args: &[&str]) -> Child {
    watch_env(args, &[])
}

fn watch_env(args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_resilis"));
    for (name, _) in std::env::vars() {
        if name.starts_with("REDIS_") {
            cmd.env_remove(name);
        }
    }
    cmd.arg("watch")
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the resilis binary")
}

/// Reads the child's stdout line by line on a thread of its own.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Collects lines until one contains `needle` or `limit` passes.
fn wait_for(
    rx: &mpsc::Receiver<String>,
    needle: &str,
    limit: Duration,
    seen: &mut Vec<String>,
) -> bool {
    let deadline = Instant::now() + limit;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

/// Waits (bounded) for the child to exit and returns its code and the rest
/// of its output.
fn finish(mut child: Child, rx: &mpsc::Receiver<String>, seen: &mut Vec<String>) -> Option<i32> {
    let deadline = Instant::now() + HANG;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "resilis watch did not exit; output so far:\n{}",
                seen.join("\n")
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
        seen.push(line);
    }
    status.code()
}

#[test]
fn watch_reaches_ready_and_shows_the_ping_latency() {
    let server = RedisServer::start();
    let mut child = watch(&[
        "--for",
        "2s",
        "--refresh",
        "250ms",
        "--ping-interval",
        "200ms",
        &server.url(),
    ]);
    let rx = lines(&mut child);
    let mut seen = Vec::new();
    let code = finish(child, &rx, &mut seen);
    let text = seen.join("\n");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ready: RESP3, Redis 7"), "{text}");
    assert!(text.contains("phase=ready"), "{text}");
    assert!(
        seen.iter()
            .any(|l| l.contains("phase=ready") && l.contains("ping=") && !l.contains("ping=-")),
        "no PING latency shown:\n{text}"
    );
    assert!(text.contains("stopped (--for elapsed)"), "{text}");
}

#[test]
fn watch_with_nothing_listening_shows_the_backoff_and_the_fix() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut child = watch(&["--for", "1s", "--refresh", "250ms", &url]);
    let rx = lines(&mut child);
    let mut seen = Vec::new();
    let code = finish(child, &rx, &mut seen);
    let text = seen.join("\n");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("connection refused: nothing listens there"),
        "{text}"
    );
    assert!(text.contains("retry 1/10 in"), "{text}");
    assert!(text.contains("fallback cache ON"), "{text}");
    assert!(text.contains("phase=backoff"), "{text}");
}

#[test]
fn watch_follows_a_server_restart() {
    let server = RedisServer::start();
    let mut child = watch(&["--for", "4s", "--refresh", "250ms", &server.url()]);
    let rx = lines(&mut child);
    let mut seen = Vec::new();
    assert!(
        wait_for(&rx, "ready:", HANG, &mut seen),
        "{}",
        seen.join("\n")
    );
    server.restart();
    assert!(
        wait_for(&rx, "disconnected", HANG, &mut seen),
        "{}",
        seen.join("\n")
    );
    assert!(
        wait_for(&rx, "ready:", HANG, &mut seen),
        "{}",
        seen.join("\n")
    );
    let code = finish(child, &rx, &mut seen);
    let text = seen.join("\n");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("fallback cache off: Redis is back"), "{text}");
}

#[test]
fn ctrl_c_ends_watch_cleanly() {
    let server = RedisServer::start();
    let mut child = watch(&["--refresh", "250ms", &server.url()]);
    let rx = lines(&mut child);
    let mut seen = Vec::new();
    assert!(
        wait_for(&rx, "ready:", HANG, &mut seen),
        "{}",
        seen.join("\n")
    );
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let code = finish(child, &rx, &mut seen);
    let text = seen.join("\n");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("stopped (Ctrl-C)"), "{text}");
}

#[test]
fn watch_with_an_invalid_url_exits_3_with_the_fix() {
    let mut child = watch(&["--for", "1s", "redis://127.0.0.1:0"]);
    let rx = lines(&mut child);
    let mut seen = Vec::new();
    let mut stderr = child.stderr.take().expect("piped stderr");
    let code = finish(child, &rx, &mut seen);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.contains("port must be a number from 1 to 65535"),
        "{text}"
    );
}

#[test]
fn watch_over_tls_uses_the_tls_variables_like_the_library() {
    let pki = TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    let ca = pki.ca.cert_path.to_str().unwrap();
    let mut child = watch_env(
        &["--for", "1500ms", "--refresh", "250ms", &server.tls_url()],
        &[("REDIS_TLS_CA_FILE", ca)],
    );
    let rx = lines(&mut child);
    let mut seen = Vec::new();
    let code = finish(child, &rx, &mut seen);
    let text = seen.join("\n");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("resilis watch: rediss://127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("ready: RESP3"), "{text}");
}

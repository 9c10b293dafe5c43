//! What the logs say, captured from `tracing`: the seed's lines, the fix for
//! each failure, the WARN for insecure TLS, and never a password.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilis::{Client, TlsOptions};
use resilis_tests::{RedisServer, TestPki};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Captures this thread's logs; the current-thread test runtime runs the
/// driver task on this thread too.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn the_seed_log_lines_appear_and_the_password_never_does() {
    let (logs, _guard) = capture();
    let server = RedisServer::builder().requirepass("hunter2-secret").start();
    let url = format!("redis://:hunter2-secret@127.0.0.1:{}", server.port());
    let client = Client::with_options(common::fast(&url)).unwrap();
    common::ready(&client).await;
    client.set("k", "v").await.unwrap();
    server.kill();
    assert!(
        common::eventually(Duration::from_secs(3), || logs
            .text()
            .contains("reconnecting in"))
        .await
    );
    // Several attempts against nothing, then the server is back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.restart();
    common::ready(&client).await;
    let text = logs.text();
    for line in [
        "connecting to Redis",
        "connected to Redis",
        "Redis client ready",
        "Redis connection lost",
        "fallback engaged",
        "(attempt 1 of 10)",
        "fallback released",
    ] {
        assert!(text.contains(line), "missing {line:?} in logs:\n{text}");
    }
    assert!(
        !text.contains("hunter2-secret"),
        "password in logs:\n{text}"
    );

    // A wrong password: the diagnosis and its fix, still no secret.
    let wrong = format!("redis://:not-the-pw-xyz@127.0.0.1:{}", server.port());
    let client = Client::with_options(common::fast(&wrong)).unwrap();
    assert!(client.wait_ready(Duration::from_secs(3)).await.is_err());
    let text = logs.text();
    assert!(text.contains("WRONGPASS"), "{text}");
    assert!(text.contains("REDIS_PASSWORD"), "{text}");
    assert!(
        !text.contains("not-the-pw-xyz"),
        "password in logs:\n{text}"
    );
}

#[tokio::test]
async fn insecure_tls_warns_on_every_connect() {
    let (logs, _guard) = capture();
    let pki = TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    let tls = TlsOptions {
        insecure: true,
        ..TlsOptions::default()
    };
    let client = Client::with_options(common::fast(&server.tls_url()).tls(tls)).unwrap();
    common::ready(&client).await;
    server.restart();
    assert!(
        common::eventually(Duration::from_secs(5), || logs
            .text()
            .matches("REDIS_TLS_INSECURE=true")
            .count()
            >= 2)
        .await,
        "one WARN per connect expected:\n{}",
        logs.text()
    );
    assert!(logs.text().contains("WARN"));
}

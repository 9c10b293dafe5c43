//! Scenario 4: TLS mismatches, the seed's production failure.
//!
//! - A plaintext client against a TLS-only server (a managed Redis): the
//!   error says the server requires TLS and how to turn it on (`rediss://`
//!   or `REDIS_TLS=true`), not "socket closed unexpectedly".
//! - A TLS client against a plaintext server: the error says the server does
//!   not speak TLS there and how to turn it off.
//!
//! Both within the connect timeout, and the retries follow the backoff
//! schedule: the proxy in front counts the connections, which must stay
//! within what the schedule allows (a storm would be hundreds).

use std::time::Duration;

use resilis::{Client, Error, LastError, OfflineMode, TlsOptions};
use resilis_tests::harness::{CONNECT_TIMEOUT, SLACK, fast_options, max_attempts_in};
use resilis_tests::{FaultProxy, RedisServer, TestPki};
use tokio::time::{Instant, sleep};

/// How long the attempts are counted.
const WINDOW: Duration = Duration::from_secs(2);

/// Polls the health report until it holds an error (bounded).
async fn first_error(client: &Client, limit: Duration) -> Option<(Duration, LastError)> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(e) = client.health().last_error {
            return Some((start.elapsed(), e));
        }
        sleep(Duration::from_millis(2)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_client_against_a_tls_only_server() {
    let pki = TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    let proxy = FaultProxy::start(server.tls_addr());
    let client = Client::with_options(fast_options(&proxy.url(), OfflineMode::Fallback))
        .expect("client starts");
    let (after, error) = first_error(&client, CONNECT_TIMEOUT + SLACK)
        .await
        .expect("no diagnosis within the connect timeout");
    // What a caller sees: a command with no fallback answer.
    let call = client.incr("tls:n").await;
    sleep(WINDOW.saturating_sub(after)).await;
    let attempts = proxy.connections_accepted();
    let bound = max_attempts_in(WINDOW) + 1;
    println!(
        "scenario 4a (plaintext → TLS-only): diagnosed after {after:?}: {} — fix: {}; \
         caller got: {}; {attempts} connections in {WINDOW:?} (schedule allows {bound})",
        error.message,
        error.fix,
        call.as_ref()
            .map_or_else(ToString::to_string, |v| v.to_string()),
    );
    // The health report's cause and fix, read together, name TLS.
    let said = format!("{} {}", error.message, error.fix);
    assert!(said.contains("TLS"), "{error:?}");
    assert!(
        error.fix.contains("rediss://") && error.fix.contains("REDIS_TLS"),
        "{error:?}"
    );
    assert!(
        !error.permanent,
        "a TLS mismatch is retried on the schedule"
    );
    match call {
        Err(e @ Error::ConnectionDown { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("TLS") && text.contains("rediss://") && text.contains("REDIS_TLS"),
                "the caller's error does not name cause and fix: {text}"
            );
        }
        other => panic!("INCR against a TLS-only server: {other:?}"),
    }
    assert!(
        (3..=bound).contains(&attempts),
        "{attempts} connections in {WINDOW:?}: the schedule allows {bound}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_against_a_plaintext_server() {
    let pki = TestPki::generate();
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let url = format!("rediss://127.0.0.1:{}", proxy.addr().port());
    let tls = TlsOptions {
        ca_file: Some(pki.ca.cert_path.clone()),
        ..TlsOptions::default()
    };
    let client = Client::with_options(fast_options(&url, OfflineMode::Fallback).tls(tls))
        .expect("client starts");
    let (after, error) = first_error(&client, CONNECT_TIMEOUT + SLACK)
        .await
        .expect("no diagnosis within the connect timeout");
    let call = client.incr("tls:n").await;
    sleep(WINDOW.saturating_sub(after)).await;
    let attempts = proxy.connections_accepted();
    let bound = max_attempts_in(WINDOW) + 1;
    println!(
        "scenario 4b (TLS → plaintext): diagnosed after {after:?}: {} — fix: {}; \
         caller got: {}; {attempts} connections in {WINDOW:?} (schedule allows {bound})",
        error.message,
        error.fix,
        call.as_ref()
            .map_or_else(ToString::to_string, |v| v.to_string()),
    );
    let said = format!("{} {}", error.message, error.fix);
    assert!(said.contains("TLS"), "{error:?}");
    assert!(
        error.fix.contains("redis://") && error.fix.contains("REDIS_TLS"),
        "{error:?}"
    );
    match call {
        Err(e @ Error::ConnectionDown { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("TLS") && text.contains("REDIS_TLS"),
                "the caller's error does not name cause and fix: {text}"
            );
        }
        other => panic!("INCR over TLS against a plaintext server: {other:?}"),
    }
    assert!(
        (3..=bound).contains(&attempts),
        "{attempts} connections in {WINDOW:?}: the schedule allows {bound}"
    );
}

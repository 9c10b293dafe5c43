//! TLS against a real TLS-only redis-server with EC P-256 certificates from
//! a test CA generated at test time: verified, mutual, insecure by choice,
//! and every way it goes wrong diagnosed instead of "socket closed".

mod common;

use std::time::Duration;

use resilis::{Client, DisconnectReason, Error, TlsOptions};
use resilis_tests::{RedisServer, TestPki};

use common::{fast, ready};

fn with_ca(pki: &TestPki) -> TlsOptions {
    // What REDIS_TLS_CA_FILE=/path/ca.crt gives.
    TlsOptions::from_lookup(|name| {
        (name == "REDIS_TLS_CA_FILE").then(|| pki.ca.cert_path.display().to_string())
    })
    .unwrap()
}

async fn reason_of(client: &Client, limit: Duration) -> DisconnectReason {
    match client.wait_ready(limit).await {
        Err(Error::ConnectionDown {
            reason: Some(reason),
            ..
        }) => reason,
        other => panic!("expected a diagnosed failure, got {other:?}"),
    }
}

#[tokio::test]
async fn tls_only_server_with_the_providers_ca() {
    let pki = TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    let client = Client::with_options(fast(&server.tls_url()).tls(with_ca(&pki))).unwrap();
    ready(&client).await;
    client.set("secure", "yes").await.unwrap();
    assert_eq!(
        client.get::<String>("secure").await.unwrap().as_deref(),
        Some("yes")
    );
    assert_eq!(server.command(&["GET", "secure"]), "yes");
    assert!(client.health().endpoint.ends_with("(tls)"));
}

#[tokio::test]
async fn sni_override_verifies_against_the_given_name() {
    let pki = TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    let mut tls = with_ca(&pki);
    tls.server_name = Some("localhost".into());
    let client = Client::with_options(fast(&server.tls_url()).tls(tls)).unwrap();
    ready(&client).await;
    client.ping().await.unwrap();

    let mut wrong = with_ca(&pki);
    wrong.server_name = Some("not-the-server.example".into());
    let client = Client::with_options(fast(&server.tls_url()).tls(wrong)).unwrap();
    assert_eq!(
        reason_of(&client, Duration::from_secs(5)).await,
        DisconnectReason::TlsCertificate
    );
}

#[tokio::test]
async fn without_the_ca_the_certificate_is_refused_with_the_fix() {
    let pki = TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    let client = Client::with_options(fast(&server.tls_url())).unwrap();
    let started = std::time::Instant::now();
    let reason = reason_of(&client, Duration::from_secs(5)).await;
    assert_eq!(reason, DisconnectReason::TlsCertificate);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a permanent failure is reported at once"
    );
    assert!(
        reason.fix().contains("REDIS_TLS_CA_FILE"),
        "{}",
        reason.fix()
    );
    let health = client.health();
    let last = health
        .last_error
        .expect("the health report names the error");
    assert!(last.permanent);
    assert!(last.fix.contains("REDIS_TLS_CA_FILE"));
    // Commands fail fast with the same diagnosis, not after a timeout.
    let err = client.cmd("PING").query().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ConnectionDown {
                reason: Some(DisconnectReason::TlsCertificate),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_server_signed_by_another_ca_is_refused() {
    let pki = TestPki::generate();
    let server = RedisServer::builder()
        .tls_identity(&pki.other_server, &pki.other_ca)
        .start();
    let client = Client::with_options(fast(&server.tls_url()).tls(with_ca(&pki))).unwrap();
    assert_eq!(
        reason_of(&client, Duration::from_secs(5)).await,
        DisconnectReason::TlsCertificate
    );
}

#[tokio::test]
async fn insecure_is_an_explicit_opt_in_that_still_encrypts() {
    let pki = TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    let tls = TlsOptions::from_lookup(|name| (name == "REDIS_TLS_INSECURE").then(|| "true".into()))
        .unwrap();
    assert!(tls.insecure);
    let client = Client::with_options(fast(&server.tls_url()).tls(tls)).unwrap();
    ready(&client).await;
    client.set("k", "v").await.unwrap();
    assert_eq!(server.command(&["GET", "k"]), "v");
}

#[tokio::test]
async fn mutual_tls_with_a_client_certificate() {
    let pki = TestPki::generate();
    let server = RedisServer::builder()
        .tls_only(&pki)
        .tls_client_auth()
        .start();
    let mut tls = with_ca(&pki);
    tls.cert_file = Some(pki.client.cert_path.clone());
    tls.key_file = Some(pki.client.key_path.clone());
    let client = Client::with_options(fast(&server.tls_url()).tls(tls)).unwrap();
    ready(&client).await;
    client.set("mtls", "ok").await.unwrap();
    assert_eq!(server.command(&["GET", "mtls"]), "ok");
}

#[tokio::test]
async fn plaintext_to_a_tls_only_port_says_use_tls() {
    let pki = TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    // The seed's failure: redis:// to a TLS port.
    let url = format!("redis://127.0.0.1:{}", server.tls_port());
    let client = Client::with_options(fast(&url)).unwrap();
    let reason = reason_of(&client, Duration::from_secs(2)).await;
    assert!(
        matches!(reason, DisconnectReason::TlsRequired(_)),
        "{reason:?}: {reason}"
    );
    assert!(reason.fix().contains("rediss://"), "{}", reason.fix());
}

#[tokio::test]
async fn tls_to_a_plaintext_port_is_diagnosed() {
    let server = RedisServer::start();
    let url = format!("rediss://127.0.0.1:{}", server.port());
    let client = Client::with_options(fast(&url)).unwrap();
    let reason = reason_of(&client, Duration::from_secs(4)).await;
    assert!(
        matches!(
            reason,
            DisconnectReason::TlsNotSpoken | DisconnectReason::TlsTimeout
        ),
        "{reason:?}: {reason}"
    );
}

#[tokio::test]
async fn a_bad_ca_file_fails_at_construction_naming_the_variable() {
    let tls = TlsOptions {
        ca_file: Some("/nonexistent/provider-ca.pem".into()),
        ..TlsOptions::default()
    };
    let err = Client::with_options(fast("rediss://127.0.0.1:1").tls(tls)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(text.contains("REDIS_TLS_CA_FILE"), "{text}");
    assert!(text.contains("/nonexistent/provider-ca.pem"), "{text}");
}

#[tokio::test]
async fn tls_to_a_plaintext_port_is_named_in_the_first_error_with_default_settings() {
    // A plaintext Redis stays silent on a TLS hello (unless the hello's
    // random bytes happen to hold a newline): with the defaults
    // (tls_timeout 10 s, command timeout 5 s) the first command must still
    // learn why, before its own deadline.
    let server = RedisServer::start();
    let url = format!("rediss://127.0.0.1:{}", server.port());
    let client = Client::connect(&url).unwrap();
    let started = std::time::Instant::now();
    let err = client.ping().await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            Error::ConnectionDown {
                reason: Some(DisconnectReason::TlsUnanswered | DisconnectReason::TlsNotSpoken),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.fix().is_some_and(|f| f.contains("redis://")), "{err}");
    assert!(
        took < Duration::from_millis(4_500),
        "named only after {took:?} (command deadline 5 s)"
    );
}

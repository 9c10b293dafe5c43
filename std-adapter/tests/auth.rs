//! Passwords, ACL users and RESP2-only servers: the handshake variants,
//! with the server's "no" reported as a permanent error naming the fix.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use resilis::{Client, DisconnectReason, Error, Value};
use resilis_tests::RedisServer;

use common::{fast, ready};

fn with_auth(server: &RedisServer, userinfo: &str) -> String {
    format!("redis://{userinfo}@127.0.0.1:{}", server.port())
}

async fn permanent_reason(client: &Client) -> DisconnectReason {
    let started = Instant::now();
    let reason = match client.wait_ready(Duration::from_secs(5)).await {
        Err(Error::ConnectionDown {
            reason: Some(reason),
            ..
        }) => reason,
        other => panic!("expected a permanent failure, got {other:?}"),
    };
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a permanent failure is reported at once, not after retries"
    );
    assert!(client.health().last_error.is_some_and(|e| e.permanent));
    reason
}

#[tokio::test]
async fn requirepass_with_the_right_password() {
    let server = RedisServer::builder().requirepass("s3cret-pw").start();
    let client = Client::with_options(fast(&with_auth(&server, ":s3cret-pw"))).unwrap();
    ready(&client).await;
    client.set("k", "v").await.unwrap();
    assert_eq!(server.command(&["GET", "k"]), "v");
    // The password appears nowhere a user could print.
    let shown = format!("{client:?} {:?}", client.health());
    assert!(!shown.contains("s3cret-pw"), "{shown}");
}

#[tokio::test]
async fn requirepass_with_a_wrong_password_is_permanent_and_names_the_fix() {
    let server = RedisServer::builder().requirepass("s3cret-pw").start();
    let client = Client::with_options(fast(&with_auth(&server, ":wrong-pw"))).unwrap();
    let reason = permanent_reason(&client).await;
    assert_eq!(reason, DisconnectReason::AuthFailed);
    assert!(reason.fix().contains("REDIS_PASSWORD"), "{}", reason.fix());
    // Fallback mode (the default) answers reads the local cache holds; this
    // one it does not, so the read fails with the diagnosis and the
    // server's own words, never a made-up "absent".
    let err = client.get_with_source::<String>("k").await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::ConnectionDown {
                reason: Some(DisconnectReason::AuthFailed),
                server_said: Some(said),
                ..
            } if said.starts_with("WRONGPASS")
        ),
        "{err:?}"
    );
    let err = client.cmd("PING").query().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ConnectionDown {
                reason: Some(DisconnectReason::AuthFailed),
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(!text.contains("wrong-pw"), "{text}");
    let health = serde_json::to_string(&client.health()).unwrap();
    assert!(!health.contains("wrong-pw"), "{health}");
    assert!(health.contains("REDIS_PASSWORD"), "{health}");
}

#[tokio::test]
async fn requirepass_without_a_password_says_one_is_needed() {
    let server = RedisServer::builder().requirepass("s3cret-pw").start();
    let client = Client::with_options(fast(&server.url())).unwrap();
    assert_eq!(
        permanent_reason(&client).await,
        DisconnectReason::AuthRequired
    );
}

#[tokio::test]
async fn acl_user_right_and_wrong() {
    let server = RedisServer::builder().acl_user("app", "app-pw").start();
    let client = Client::with_options(fast(&with_auth(&server, "app:app-pw"))).unwrap();
    ready(&client).await;
    client.set("acl", "ok").await.unwrap();
    let who: String = client.cmd("ACL").arg("WHOAMI").query_as().await.unwrap();
    assert_eq!(who, "app");

    let wrong = Client::with_options(fast(&with_auth(&server, "app:nope"))).unwrap();
    assert_eq!(permanent_reason(&wrong).await, DisconnectReason::AuthFailed);
}

#[tokio::test]
async fn resp2_only_server_falls_back_to_auth_and_resp2() {
    let server = RedisServer::builder()
        .resp2_only()
        .requirepass("pw2")
        .start();
    let client = Client::with_options(fast(&with_auth(&server, ":pw2"))).unwrap();
    ready(&client).await;
    assert_eq!(client.health().protocol, Some(2));
    client.set("k", "v").await.unwrap();
    assert_eq!(
        client.get::<String>("k").await.unwrap().as_deref(),
        Some("v")
    );
    client.hset("h", "a", "1").await.unwrap();
    client.hset("h", "b", "2").await.unwrap();
    // RESP2 answers HGETALL with a flat array; the map comes out the same.
    let all: HashMap<String, String> = client.hgetall("h").await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["b"], "2");
    let raw = client.cmd("HGETALL").arg("h").query().await.unwrap();
    assert!(
        matches!(raw, Value::Array(ref items) if items.len() == 4),
        "{raw:?}"
    );
}

/// Redis writes `-DENIED` (protected mode) or `-ERR max number of clients
/// reached` as it accepts, then closes; our HELLO then meets a reset. The
/// reason must still be read and reported, never mistaken for "closed
/// without a reply, server requires TLS". Repeated, since it is a race.
#[tokio::test]
async fn refusal_on_accept_is_read_before_the_reset() {
    let server = RedisServer::builder().protected_mode().start();
    // Protected mode trusts 127.0.0.1 only: come from 127.0.0.2.
    let proxy = resilis_tests::FaultProxy::builder(server.addr())
        .upstream_source("127.0.0.2".parse().unwrap())
        .start();
    for round in 0..10 {
        let client = Client::with_options(fast(&proxy.url())).unwrap();
        let reason = permanent_reason(&client).await;
        assert_eq!(reason, DisconnectReason::ProtectedMode, "round {round}");
        client.shutdown().await;
    }
    let full = RedisServer::builder().maxclients(1).start();
    let _holder = full.raw_conn();
    for round in 0..10 {
        let client = Client::with_options(fast(&full.url())).unwrap();
        let mut events = client.events();
        let reason = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(resilis::core::Event::Disconnected { reason }) = events.recv().await {
                    return reason;
                }
            }
        })
        .await
        .expect("a disconnect within 5 s");
        assert_eq!(reason, DisconnectReason::MaxClients, "round {round}");
        client.shutdown().await;
    }
}

//! Huge TTLs (`ex(u64::MAX)`, `expire(Duration::MAX)`, a fallback
//! `learned_ttl` of `Duration::MAX`) never panic, before or during an
//! outage: Redis refuses what it cannot hold (an error reply, never a TTL
//! cut short), and the fallback cache keeps what an `Instant` cannot time
//! with no expiry.

mod common;

use std::sync::Arc;
use std::time::Duration;

use resilis::{Client, Error, FallbackConfig, SetOptions, Source};
use resilis_tests::RedisServer;

use common::{eventually, fast, ready};

/// The largest EX Redis accepts: its expiry in milliseconds since the
/// epoch must fit an i64 (a little room left for "now").
const REDIS_MAX_EX: u64 = i64::MAX as u64 / 1000 - 10_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_ttls_never_panic_through_an_outage() {
    let server = Arc::new(RedisServer::start());
    let forever = FallbackConfig {
        learned_ttl: Duration::MAX,
        ..FallbackConfig::default()
    };
    let client = Client::with_options(fast(&server.url()).fallback(forever)).unwrap();
    ready(&client).await;

    client.set("k", "v").await.unwrap();
    // The GET's write-through added `learned_ttl` to now, and panicked.
    assert_eq!(
        client.get::<String>("k").await.unwrap().as_deref(),
        Some("v")
    );

    for (what, result) in [
        (
            "ex(u64::MAX)",
            client
                .set_with("k", "v", SetOptions::new().ex(u64::MAX))
                .await
                .map(|_| ()),
        ),
        (
            "px(u64::MAX)",
            client
                .set_with("k", "v", SetOptions::new().px(u64::MAX))
                .await
                .map(|_| ()),
        ),
        (
            "expire(Duration::MAX)",
            client.expire("k", Duration::MAX).await.map(|_| ()),
        ),
        (
            "expire(u64::MAX s)",
            client
                .expire("k", Duration::from_secs(u64::MAX))
                .await
                .map(|_| ()),
        ),
        (
            // Its milliseconds overflow u64: once sent wrapped to a short TTL.
            "expire(2^60 s + 1 ms)",
            client
                .expire("k", Duration::new(1 << 60, 1_000_000))
                .await
                .map(|_| ()),
        ),
    ] {
        assert!(
            matches!(result, Err(Error::Server(_))),
            "{what}: {result:?}"
        );
    }
    assert_eq!(client.ttl("k").await.unwrap(), -1, "no TTL was set");

    // The largest TTLs Redis takes are accepted and cached.
    assert!(
        client
            .set_with("big", "b", SetOptions::new().ex(REDIS_MAX_EX))
            .await
            .unwrap()
    );
    assert!(
        client
            .expire("k", Duration::from_secs(REDIS_MAX_EX))
            .await
            .unwrap()
    );

    let s = server.clone();
    tokio::task::spawn_blocking(move || s.kill()).await.unwrap();
    assert!(
        eventually(Duration::from_secs(3), || client.fallback_active()).await,
        "fallback never engaged: {:?}",
        client.health()
    );
    for (key, value) in [("k", "v"), ("big", "b")] {
        let got = client.get_with_source::<String>(key).await.unwrap();
        assert_eq!(
            (got.value.as_deref(), got.source),
            (Some(value), Source::Fallback)
        );
    }
    let refused = client
        .set_with("k", "w", SetOptions::new().ex(u64::MAX))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, Error::ConnectionDown { .. }),
        "{refused:?}"
    );
    let refused = client.expire("k", Duration::MAX).await.unwrap_err();
    assert!(refused.is_not_applied(), "{refused:?}");
}

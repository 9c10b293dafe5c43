//! Restarts mid-workload, fallback engaged and released, the offline modes,
//! and the event stream: the promises the seed makes about outages.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use resilis::{Client, Error, Event, OfflineMode, SetOptions, Source};
use resilis_tests::RedisServer;

use common::{eventually, fast, ready};

async fn kill(server: &Arc<RedisServer>) {
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.kill()).await.unwrap();
}

async fn restart(server: &Arc<RedisServer>) {
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.restart())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_workload_every_call_resolves_and_the_client_recovers() {
    let server = Arc::new(RedisServer::start());
    let options = fast(&server.url()).offline(OfflineMode::QueueThenFail);
    let client = Client::with_options(options).unwrap();
    ready(&client).await;
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (client, ok, failed) = (client.clone(), ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..300u32 {
                let key = format!("w{t}:{i}");
                // Every call resolves within its deadline (2 s), one way or another.
                let result = tokio::time::timeout(Duration::from_secs(5), async {
                    client.set(&key, "x").await?;
                    client.incr(format!("n{t}")).await
                })
                .await
                .expect("a call hung past its deadline");
                match result {
                    Ok(_) => ok.fetch_add(1, Relaxed),
                    Err(
                        Error::Timeout
                        | Error::Indeterminate { .. }
                        | Error::ConnectionDown { .. }
                        | Error::Server(_),
                    ) => failed.fetch_add(1, Relaxed),
                    Err(e) => panic!("unexpected error kind: {e:?}"),
                };
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    restart(&server).await;
    for task in tasks {
        task.await.unwrap();
    }
    // Recovered: fresh commands succeed on the restarted server.
    ready(&client).await;
    client.set("after", "restart").await.unwrap();
    assert_eq!(server.command(&["GET", "after"]), "restart");
    let health = client.health();
    assert!(health.counters.reconnects >= 1, "{health:?}");
    assert!(
        ok.load(Relaxed) > 1000,
        "ok {} failed {}",
        ok.load(Relaxed),
        failed.load(Relaxed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_engaged_then_released_and_outage_writes_refused() {
    let server = Arc::new(RedisServer::start());
    let client = Client::with_options(fast(&server.url())).unwrap();
    ready(&client).await;
    let mut events = client.events();

    client.set("user:1", "alice").await.unwrap();
    client.set("doomed", "x").await.unwrap();
    let _: Option<String> = client.get("user:1").await.unwrap();

    kill(&server).await;
    assert!(
        eventually(Duration::from_secs(3), || client.fallback_active()).await,
        "fallback never engaged: {:?}",
        client.health()
    );
    // Reads come from the cache, and say so.
    let got = client.get_with_source::<String>("user:1").await.unwrap();
    assert_eq!(got.value.as_deref(), Some("alice"));
    assert_eq!(got.source, Source::Fallback);
    assert_eq!(
        client.get::<String>("user:1").await.unwrap().as_deref(),
        Some("alice")
    );
    // What the cache cannot know fails with the reason: never a made-up
    // "absent" or "false".
    for answer in [
        client.exists("user:1").await.map(|_| ()),
        client.get::<String>("never-cached").await.map(|_| ()),
        client.ttl("user:1").await.map(|_| ()),
    ] {
        assert!(
            matches!(&answer, Err(e @ Error::ConnectionDown { reason: Some(_), .. }) if e.is_not_applied()),
            "{answer:?}"
        );
    }

    // Writes during the outage fail, not applied, and fast: none is kept
    // to be applied later over what other clients wrote meanwhile.
    let started = std::time::Instant::now();
    for answer in [
        client.set("user:2", "bob").await.map(|_| ()),
        client.del("doomed").await.map(|_| ()),
        client
            .expire("user:1", Duration::from_secs(600))
            .await
            .map(|_| ()),
        client
            .set_with("lock", "me", SetOptions::new().nx())
            .await
            .map(|_| ()),
        client.incr("counter").await.map(|_| ()),
    ] {
        assert!(
            matches!(&answer, Err(e @ Error::ConnectionDown { reason: Some(_), .. }) if e.is_not_applied()),
            "{answer:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "fails fast, not after the 2 s command timeout"
    );

    let health = client.health();
    assert!(health.fallback_active);
    assert!(health.counters.fallback_hits >= 2, "{health:?}");
    assert!(health.counters.fallback_misses >= 1);
    assert!(!health.healthy, "not ready while down: {health:?}");

    restart(&server).await;
    assert!(
        eventually(Duration::from_secs(5), || !client.fallback_active()).await,
        "fallback never released: {:?}",
        client.health()
    );
    ready(&client).await;
    // Nothing written during the outage reached Redis afterwards.
    assert_eq!(server.command(&["DBSIZE"]), "0");
    let fresh = client.get_with_source::<String>("user:2").await.unwrap();
    assert_eq!(fresh.source, Source::Redis);
    assert_eq!(fresh.value, None);

    // The event stream told the story.
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(
        seen.iter().any(|e| matches!(e, Event::Disconnected { .. })),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::FallbackEngaged { .. })),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| matches!(e, Event::FallbackReleased)),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| matches!(e, Event::Ready { .. })),
        "{seen:?}"
    );
}

#[tokio::test]
async fn fail_fast_mode_answers_at_once_while_down() {
    let server = Arc::new(RedisServer::start());
    let options = fast(&server.url()).offline(OfflineMode::FailFast);
    let client = Client::with_options(options).unwrap();
    ready(&client).await;
    client.set("k", "v").await.unwrap();
    kill(&server).await;
    assert!(
        eventually(Duration::from_secs(3), || !client.health().healthy).await,
        "{:?}",
        client.health()
    );
    let started = std::time::Instant::now();
    let err = client.get::<String>("k").await.unwrap_err();
    assert!(matches!(err, Error::ConnectionDown { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "fails fast, not after the 2 s command timeout"
    );
    assert!(err.fix().is_some());
    restart(&server).await;
    ready(&client).await;
    client.set("k", "again").await.unwrap();
}

#[tokio::test]
async fn queued_commands_time_out_as_not_applied_when_redis_stays_down() {
    let server = Arc::new(RedisServer::start());
    let options = fast(&server.url())
        .offline(OfflineMode::QueueThenFail)
        .command_timeout(Duration::from_millis(300));
    let client = Client::with_options(options).unwrap();
    ready(&client).await;
    kill(&server).await;
    assert!(eventually(Duration::from_secs(3), || !client.health().healthy).await);
    let started = std::time::Instant::now();
    // Out of time in the queue, and the reason is known: not applied, and
    // why (a bare Timeout would hide the diagnosis).
    let err = client.get::<String>("k").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ConnectionDown {
                reason: Some(resilis::DisconnectReason::Transport(_)),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_not_applied());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

#[tokio::test]
async fn shutdown_resolves_callers_and_refuses_new_commands() {
    let server = RedisServer::start();
    let client = Client::with_options(fast(&server.url())).unwrap();
    ready(&client).await;
    let other = client.clone();
    client.shutdown().await;
    assert!(
        eventually(Duration::from_secs(2), || client.health().state
            == "shutdown")
        .await,
        "{:?}",
        client.health()
    );
    let err = other.cmd("PING").query().await.unwrap_err();
    assert_eq!(err, Error::Shutdown);
}

#[tokio::test]
async fn nothing_listening_is_diagnosed_as_refused_and_retried() {
    let port = resilis_tests::server::pick_port();
    let client = Client::with_options(fast(&format!("redis://127.0.0.1:{port}"))).unwrap();
    let err = client
        .wait_ready(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ConnectionDown {
                reason: Some(resilis::DisconnectReason::Transport(
                    resilis::core::TransportError::Refused
                )),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.fix().unwrap_or("").contains("REDIS_PORT"), "{err}");
    let health = client.health();
    assert!(health.reconnect_attempts >= 1, "{health:?}");
    assert!(!health.last_error.unwrap().permanent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_outage_writes_are_refused_and_none_reaches_redis_later() {
    let server = Arc::new(RedisServer::start());
    let client = Client::with_options(fast(&server.url())).unwrap();
    ready(&client).await;
    kill(&server).await;
    assert!(eventually(Duration::from_secs(3), || client.fallback_active()).await);
    // Three times the core's default offline queue bound (1024 commands).
    const WRITES: u64 = 3000;
    let mut refused = 0;
    for i in 0..WRITES {
        match client.set(format!("outage:{i}"), "v").await {
            Err(e @ Error::ConnectionDown { .. }) if e.is_not_applied() => refused += 1,
            other => panic!("write {i} during the outage: {other:?}"),
        }
    }
    assert_eq!(refused, WRITES);
    restart(&server).await;
    ready(&client).await;
    client.set("after", "1").await.unwrap();
    assert_eq!(server.command(&["DBSIZE"]), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_caught_by_a_partition_falls_back_when_the_connection_is_declared_dead() {
    let server = RedisServer::start();
    let proxy = resilis_tests::FaultProxy::start(server.addr());
    // A long command deadline, so that falling back at the deadline would show.
    let options = fast(&proxy.url()).command_timeout(Duration::from_secs(8));
    let client = Client::with_options(options).unwrap();
    ready(&client).await;
    client.set("user:7", "grace").await.unwrap();
    proxy.freeze();
    let started = std::time::Instant::now();
    let got = client.get_with_source::<String>("user:7").await.unwrap();
    let waited = started.elapsed();
    assert_eq!(got.source, Source::Fallback);
    assert_eq!(got.value.as_deref(), Some("grace"));
    // Declared dead after ping_timeout (1 s here), not at the 8 s deadline.
    assert!(waited < Duration::from_secs(4), "waited {waited:?}");
    proxy.heal();
}

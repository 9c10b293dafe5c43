//! A restart of a server that takes a while to load its dataset (found by
//! the soak). Redis accepts connections and answers HELLO, AUTH, CLIENT and
//! SELECT while it loads, but refuses everything else with `-LOADING`. The
//! client must not count itself ready until the server is: calls meanwhile
//! get the diagnosis (`Loading`), and a write during the outage is refused
//! (not applied), never applied once loading is over.
//!
//! Loading is made slow and deterministic with Redis's own test knob,
//! `key-load-delay` (microseconds per key): 2000 keys × 500 µs ≈ 1 s; and
//! `loading-process-events-interval-bytes` makes it serve clients meanwhile,
//! as it does while loading a big dataset (a small one blocks instead).

use std::sync::Arc;
use std::time::Duration;

use resilis::{DisconnectReason, Error, OfflineMode, Source};
use resilis_tests::RedisServer;
use resilis_tests::harness::{
    BACKOFF_MAX, EventLog, SLACK, blocking, is_disconnect, is_ready, ready_client,
};
use tokio::time::{Instant, sleep};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_the_server_loads_its_dataset() {
    let server = Arc::new(
        RedisServer::builder()
            .config("appendonly yes")
            .config("key-load-delay 500")
            // Serve clients while loading (every KiB), as a big dataset does.
            .config("loading-process-events-interval-bytes 1024")
            .start(),
    );
    server.command(&["DEBUG", "POPULATE", "2000"]);
    server.command(&["BGREWRITEAOF"]);
    // Bounded: a 2000-key rewrite takes milliseconds.
    for _ in 0..500 {
        let info = server.command(&["INFO", "persistence"]);
        if info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0") {
            break;
        }
        sleep(Duration::from_millis(10)).await;
    }
    let client = ready_client(&server.url(), OfflineMode::Fallback).await;
    let log = EventLog::record(&client);

    let killed_at = Instant::now();
    let s = server.clone();
    blocking(move || s.kill()).await;
    log.wait_for(killed_at, Duration::from_secs(2), is_disconnect)
        .await
        .expect("the kill was not noticed");
    // A write during the outage is refused, not kept to be applied later.
    let outage_write = client.set("loading:outage", "lost-on-purpose").await;

    // restart() returns once the server answers PING without -LOADING.
    let s = server.clone();
    let restart_started = Instant::now();
    let restart = tokio::task::spawn_blocking(move || s.restart());
    sleep(Duration::from_millis(400)).await;
    let during_loading = client.incr("loading:n").await;
    let state_during_loading = client.health().state;
    restart.await.expect("restart");
    let loaded_at = Instant::now();
    let (ready_at, _) = log
        .wait_for(killed_at, Duration::from_secs(5), is_ready)
        .await
        .expect("not ready again after loading");
    let after = client
        .get_with_source::<String>("loading:outage")
        .await
        .expect("GET after loading");
    println!(
        "loading (~1 s after restart): outage write {outage_write:?}; INCR during loading: {during_loading:?} \
         (state {state_during_loading}); loading took {:?}; ready {:?} after it ended; \
         the key afterwards: {:?} from {:?}",
        loaded_at - restart_started,
        ready_at.saturating_duration_since(loaded_at),
        after.value,
        after.source,
    );
    assert!(
        matches!(&outage_write, Err(e @ Error::ConnectionDown { .. }) if e.is_not_applied()),
        "a write during the outage: {outage_write:?}"
    );
    assert!(
        loaded_at - restart_started >= Duration::from_millis(600),
        "loading was too quick to test anything"
    );
    assert!(
        matches!(
            during_loading,
            Err(Error::ConnectionDown {
                reason: Some(DisconnectReason::Loading),
                ..
            })
        ),
        "a call while the server loads: {during_loading:?}"
    );
    assert_ne!(state_during_loading, "ready");
    // restart() polls every 10 ms; the client may legitimately get in a
    // little before it returns, never while loading had far to go.
    assert!(
        ready_at + Duration::from_millis(100) >= loaded_at,
        "ready {:?} before loading ended",
        loaded_at - ready_at
    );
    assert!(
        ready_at.saturating_duration_since(loaded_at) <= BACKOFF_MAX + SLACK,
        "ready only {:?} after loading ended",
        ready_at.saturating_duration_since(loaded_at)
    );
    // Nothing was applied behind the application's back.
    assert_eq!(after.source, Source::Redis);
    assert_eq!(after.value, None);
    assert!(matches!(
        server.command_reply(&["GET", "loading:outage"]),
        resilis_tests::raw::Reply::Nil
    ));
}

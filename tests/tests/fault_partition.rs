//! Scenarios 2 and 9: a silent, half-open partition (the proxy stops
//! forwarding both ways and closes nothing), on an idle connection and
//! under steady load.
//!
//! Idle, the keepalive PING finds it: detected within ping_interval +
//! ping_timeout. Under load, the age of the oldest unanswered request finds
//! it within ping_timeout, however many writes keep going out meanwhile.
//! Either way calls end by their deadline (failing or served from the
//! fallback cache) and everything works again after the heal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use resilis::{DisconnectReason, Event, OfflineMode, Source};
use resilis_tests::harness::{
    BACKOFF_MAX, COMMAND_TIMEOUT, CONNECT_TIMEOUT, Ended, EventLog, PING_INTERVAL, PING_TIMEOUT,
    SLACK, Tally, is_disconnect, is_ready, ready_client, timed,
};
use resilis_tests::{FaultProxy, RedisServer};
use tokio::time::{Instant, sleep};

const PARTITION: Duration = Duration::from_secs(2);

fn reason_of(e: &Event) -> Option<DisconnectReason> {
    match e {
        Event::Disconnected { reason } => Some(*reason),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_partition_of_an_idle_connection() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let client = ready_client(&proxy.url(), OfflineMode::Fallback).await;
    let log = EventLog::record(&client);
    client.set("part:known", "cached").await.expect("SET");
    // Idle long enough that the next PING is the only traffic.
    sleep(PING_INTERVAL / 2).await;

    let frozen_at = Instant::now();
    proxy.freeze();
    // Calls made before the client can know: written into the void.
    let early_get = {
        let c = client.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            (
                c.get_with_source::<String>("part:known").await,
                start.elapsed(),
            )
        })
    };
    let early_incr = {
        let c = client.clone();
        tokio::spawn(async move { timed(COMMAND_TIMEOUT, c.incr("part:n")).await })
    };
    let (detected_at, event) = log
        .wait_for(frozen_at, Duration::from_secs(5), is_disconnect)
        .await
        .expect("the partition was never detected");
    let detect = detected_at - frozen_at;
    let (early_get, early_get_took) = early_get.await.expect("early GET");
    let (early_incr, early_incr_took) = early_incr.await.expect("early INCR");

    // Calls during the partition: answered from the fallback cache, or
    // refused at once; all by their deadline.
    let mut during = Tally::default();
    let (ended, took) = timed(
        COMMAND_TIMEOUT,
        client.get_with_source::<String>("part:known"),
    )
    .await;
    during.add(&ended, took);
    let fallback_get = client.get_with_source::<String>("part:known").await;
    let (ended, took) = timed(COMMAND_TIMEOUT, client.set("part:during", "outage")).await;
    during.add(&ended, took);
    let set_during = ended;
    let (ended, took) = timed(COMMAND_TIMEOUT, client.incr("part:n")).await;
    during.add(&ended, took);
    let incr_during = ended;

    sleep(PARTITION.saturating_sub(frozen_at.elapsed())).await;
    let healed_at = Instant::now();
    proxy.heal();
    let (ready_at, _) = log
        .wait_for(healed_at, Duration::from_secs(5), is_ready)
        .await
        .expect("not ready again within 5 s of the heal");
    let recover = ready_at - healed_at;
    // The outage write was refused, and nothing applies it later.
    let after = client
        .get_with_source::<String>("part:during")
        .await
        .expect("GET after the heal");

    println!(
        "scenario 2 (silent partition, idle): detected after {detect:?} (bound {:?}) as {event:?}; \
         ready {recover:?} after the heal; calls after detection: {} ok, {} down, max {:?}; \
         INCR then: {incr_during:?}; GET before detection: {:?} in {early_get_took:?}; \
         INCR before detection: {early_incr:?} in {early_incr_took:?}",
        PING_INTERVAL + PING_TIMEOUT + SLACK,
        during.ok,
        during.down,
        during.max_latency,
        early_get.as_ref().map(|g| (g.source, g.value.clone())),
    );
    // A GET caught in the partition gets one more connection attempt (a
    // quick reconnect answers it from Redis), then falls back: well before
    // its deadline.
    let early_get = early_get.expect("GET caught in the partition");
    assert_eq!(early_get.value.as_deref(), Some("cached"));
    assert_eq!(early_get.source, Source::Fallback);
    assert!(
        early_get_took <= PING_INTERVAL + PING_TIMEOUT + CONNECT_TIMEOUT + SLACK,
        "{early_get_took:?}"
    );
    // An INCR caught in it may have been applied: indeterminate, by its deadline.
    assert_eq!(early_incr, Ended::Indeterminate);
    assert!(
        early_incr_took <= COMMAND_TIMEOUT + SLACK,
        "{early_incr_took:?}"
    );
    assert_eq!(
        reason_of(&event),
        Some(DisconnectReason::PingTimeout),
        "{event:?}"
    );
    assert!(
        detect <= PING_INTERVAL + PING_TIMEOUT + SLACK,
        "detected only after {detect:?}"
    );
    assert!(
        detect >= PING_TIMEOUT,
        "declared dead after {detect:?}, before a PING could have waited ping_timeout"
    );
    assert_eq!(during.hung, 0);
    assert!(during.max_latency <= COMMAND_TIMEOUT + SLACK, "{during:?}");
    let fallback_get = fallback_get.expect("GET during the partition");
    assert_eq!(fallback_get.source, Source::Fallback);
    assert_eq!(fallback_get.value.as_deref(), Some("cached"));
    assert!(
        matches!(incr_during, Ended::Down),
        "INCR has no fallback: it must fail at once, got {incr_during:?}"
    );
    assert!(
        matches!(set_during, Ended::Down),
        "a write during the outage is refused at once, got {set_during:?}"
    );
    assert!(
        recover <= BACKOFF_MAX + SLACK,
        "ready only {recover:?} after the heal"
    );
    assert_eq!(after.source, Source::Redis);
    assert_eq!(after.value, None);
    assert!(!client.fallback_active());
    client.incr("part:n").await.expect("INCR after the heal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_partition_under_steady_load() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let client = ready_client(&proxy.url(), OfflineMode::QueueThenFail).await;
    let log = EventLog::record(&client);

    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for w in 0..4 {
        let client = client.clone();
        let stop = stop.clone();
        let started = started.clone();
        workers.push(tokio::spawn(async move {
            let mut calls = Vec::new();
            let mut starts = Vec::new();
            // Bounded by `stop`.
            while !stop.load(Ordering::Relaxed) {
                started.fetch_add(1, Ordering::Relaxed);
                starts.push(t0.elapsed());
                // Writes keep going out every few ms, each in its own task,
                // so a stalled reply never slows the load down.
                let c = client.clone();
                calls.push(tokio::spawn(async move {
                    timed(COMMAND_TIMEOUT, c.set(format!("load:{w}"), "x")).await
                }));
                sleep(Duration::from_millis(5)).await;
            }
            let mut tally = Tally::default();
            for call in calls {
                let (ended, took) = call.await.expect("call task");
                tally.add(&ended, took);
            }
            (tally, starts)
        }));
    }
    sleep(Duration::from_millis(500)).await;
    let frozen_at = Instant::now();
    let frozen_since_t0 = frozen_at - t0;
    proxy.freeze();
    let (detected_at, event) = log
        .wait_for(frozen_at, Duration::from_secs(5), is_disconnect)
        .await
        .expect("the partition was never detected under load");
    let detect = detected_at - frozen_at;
    let detected_since_t0 = detected_at - t0;
    sleep(PARTITION.saturating_sub(frozen_at.elapsed())).await;
    let healed_at = Instant::now();
    proxy.heal();
    let (ready_at, _) = log
        .wait_for(healed_at, Duration::from_secs(5), is_ready)
        .await
        .expect("not ready again within 5 s of the heal");
    sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    let mut writes_while_undetected = 0;
    for w in workers {
        let (tally, starts) = w.await.expect("worker panicked");
        total.merge(&tally);
        writes_while_undetected += starts
            .iter()
            .filter(|s| **s >= frozen_since_t0 && **s < detected_since_t0)
            .count();
    }
    println!(
        "scenario 9 (silent partition under load): detected after {detect:?} (bound {:?}) as {event:?} \
         while {writes_while_undetected} writes went out; ready {:?} after the heal; calls: {} ok, \
         {} timed out, {} indeterminate, {} down, max {:?}",
        PING_TIMEOUT + SLACK,
        ready_at - healed_at,
        total.ok,
        total.timed_out,
        total.indeterminate,
        total.down,
        total.max_latency,
    );
    assert_eq!(
        reason_of(&event),
        Some(DisconnectReason::PingTimeout),
        "{event:?}"
    );
    // Not ping_interval + ping_timeout: under load the oldest request's age
    // decides, and steady writes must not postpone it.
    assert!(
        detect <= PING_TIMEOUT + SLACK,
        "detected only after {detect:?} under load"
    );
    assert!(
        writes_while_undetected >= 10,
        "the load did not keep writing during the partition ({writes_while_undetected})"
    );
    assert_eq!(total.hung, 0);
    assert!(total.other.is_empty(), "{:?}", total.other);
    assert!(
        total.max_latency <= COMMAND_TIMEOUT + SLACK,
        "a call took {:?}",
        total.max_latency
    );
    assert!(ready_at - healed_at <= BACKOFF_MAX + SLACK);
    client
        .set("load:after", "ok")
        .await
        .expect("SET after heal");
    assert_eq!(server.command(&["GET", "load:after"]), "ok");
}

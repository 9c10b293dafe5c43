//! Scenario 3: idle drops. Cloud load balancers and NATs forget idle flows
//! (Azure after 4–10 minutes, DigitalOcean after 300 s), scaled down here to
//! a second or less.
//!
//! - With the keepalive PING inside the idle limit, the connection is never
//!   dropped at all: one connection, no disconnect, the next call is fast.
//! - With the idle limit shorter than the PING interval (a misconfigured
//!   client), the drop happens, and the reconnect is invisible to callers of
//!   idempotent commands: their GET is answered by Redis, within its deadline.

use std::time::Duration;

use resilis::core::Duration as CoreDuration;
use resilis::{Client, OfflineMode, Source};
use resilis_tests::harness::{
    BACKOFF_INITIAL, COMMAND_TIMEOUT, EventLog, PING_INTERVAL, PING_TIMEOUT, SLACK, fast_options,
    is_disconnect, ready_client, start_ready,
};
use resilis_tests::{FaultProxy, IdleAction, RedisServer};
use tokio::time::{Instant, sleep};

const IDLE_LIMIT: Duration = Duration::from_millis(800);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_inside_the_idle_limit_keeps_the_connection() {
    // Redis's own idle timeout (1 s, its smallest) on top of the proxy's.
    let server = RedisServer::builder()
        .idle_timeout(Duration::from_secs(1))
        .start();
    let proxy = FaultProxy::start(server.addr());
    proxy.set_idle_limit(IDLE_LIMIT, IdleAction::BlackHole);
    let client = ready_client(&proxy.url(), OfflineMode::Fallback).await;
    let log = EventLog::record(&client);
    client.set("idle:k", "v").await.expect("SET");
    let idle_from = Instant::now();
    sleep(IDLE_LIMIT * 3).await;

    let start = Instant::now();
    let got = client
        .get_with_source::<String>("idle:k")
        .await
        .expect("GET after idling");
    let took = start.elapsed();
    let reconnects = client.health().counters.reconnects;
    println!(
        "scenario 3a (idle {:?} past a {IDLE_LIMIT:?} black-hole limit and Redis's 1 s timeout, \
         PING every {PING_INTERVAL:?}): {} connection(s), {} disconnects, GET took {took:?} from {:?}",
        IDLE_LIMIT * 3,
        proxy.connections_accepted(),
        log.count_after(idle_from, is_disconnect),
        got.source,
    );
    assert_eq!(got.source, Source::Redis);
    assert_eq!(got.value.as_deref(), Some("v"));
    assert_eq!(
        log.count_after(idle_from, is_disconnect),
        0,
        "dropped while idle: {:?}",
        log.all()
    );
    assert_eq!(proxy.connections_accepted(), 1, "reconnected while idle");
    assert_eq!(reconnects, 0, "reconnects counted while idle");
    assert!(took <= SLACK, "GET after idling took {took:?}");
}

/// A client whose PING comes after the idle limit: the flow is dropped.
async fn late_pinging_client(url: &str) -> Client {
    let options = fast_options(url, OfflineMode::Fallback).configure(|c| {
        c.ping_interval = CoreDuration::from_millis(2 * IDLE_LIMIT.as_millis() as u64);
    });
    start_ready(options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_past_the_idle_limit_is_invisible_to_idempotent_calls() {
    let server = RedisServer::start();
    server.command(&["SET", "idle:k", "v"]);
    for action in [IdleAction::BlackHole, IdleAction::Close, IdleAction::Reset] {
        let proxy = FaultProxy::start(server.addr());
        proxy.set_idle_limit(Duration::from_millis(300), action);
        let client = late_pinging_client(&proxy.url()).await;
        // Past the idle limit, before the PING.
        sleep(Duration::from_millis(600)).await;
        let start = Instant::now();
        let got = client.get_with_source::<String>("idle:k").await;
        let took = start.elapsed();
        println!(
            "scenario 3b ({action:?} after 300 ms idle, PING every {:?}): GET {:?} in {took:?}; {} connections",
            IDLE_LIMIT * 2,
            got.as_ref().map(|g| g.source),
            proxy.connections_accepted()
        );
        let got = got.unwrap_or_else(|e| panic!("{action:?}: GET failed: {e}"));
        assert_eq!(got.source, Source::Redis, "{action:?}");
        assert_eq!(got.value.as_deref(), Some("v"), "{action:?}");
        // A black hole costs one ping_timeout and a reconnect; FIN and RST
        // are seen at once.
        let bound = match action {
            IdleAction::BlackHole => PING_TIMEOUT + BACKOFF_INITIAL + SLACK,
            _ => BACKOFF_INITIAL + SLACK,
        };
        assert!(
            took <= bound.min(COMMAND_TIMEOUT),
            "{action:?}: GET took {took:?} (bound {bound:?})"
        );
        assert!(
            proxy.connections_accepted() >= 2,
            "{action:?}: no reconnect"
        );
    }
}

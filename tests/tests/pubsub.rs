//! Pub/sub against a real redis-server, broken the way production breaks
//! it: SIGKILL and restart, a silent partition, a consumer too slow for
//! the publisher, an ACL that denies a channel. Each checks what the
//! server holds afterwards (`PUBSUB NUMSUB`: exactly one subscription per
//! channel, no leftovers) as well as what the stream delivered, on RESP3
//! (subscriptions share the client's connection) and RESP2 (a connection
//! of their own).

use std::time::Duration;

use resilis::core::Protocol;
use resilis::core::pubsub::PubSubEvent;
use resilis::{Client, GapCause, OfflineMode, PubSubConfig, PubSubItem, Subscriber};
use resilis_tests::harness::{PING_INTERVAL, PING_TIMEOUT, blocking, fast_options, start_ready};
use resilis_tests::raw::Reply;
use resilis_tests::{FaultProxy, RedisServer};
use tokio::sync::broadcast;
use tokio::time::{Instant, sleep, timeout};

const WAIT: Duration = Duration::from_secs(10);

async fn client(url: &str, protocol: Protocol) -> Client {
    let mut options = fast_options(url, OfflineMode::QueueThenFail);
    options.config.protocol = protocol;
    start_ready(options).await
}

/// `PUBSUB NUMSUB` of one channel, as the server counts it.
fn numsub(server: &RedisServer, channel: &str) -> i64 {
    match server.command_reply(&["PUBSUB", "NUMSUB", channel]) {
        Reply::Array(items) => integer(&items[1]),
        other => panic!("PUBSUB NUMSUB reply: {other:?}"),
    }
}

fn integer(reply: &Reply) -> i64 {
    match reply {
        Reply::Integer(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// Waits (bounded) until the server's count is `want`.
async fn wait_numsub(server: &std::sync::Arc<RedisServer>, channel: &str, want: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = server.clone();
        let c = channel.to_owned();
        let n = blocking(move || numsub(&s, &c)).await;
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "PUBSUB NUMSUB {channel} stayed {n}, want {want}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

async fn next(sub: &mut Subscriber) -> PubSubItem {
    timeout(WAIT, sub.next())
        .await
        .expect("an item within 10 s")
        .expect("the stream is open")
}

fn message_payload(item: &PubSubItem) -> Option<String> {
    match item {
        PubSubItem::Message(m) => Some(String::from_utf8_lossy(&m.payload).into_owned()),
        _ => None,
    }
}

async fn publish(server: &std::sync::Arc<RedisServer>, channel: &str, payload: &str) -> i64 {
    let s = server.clone();
    let (c, p) = (channel.to_owned(), payload.to_owned());
    let reply = blocking(move || s.command_reply(&["PUBLISH", &c, &p])).await;
    integer(&reply)
}

async fn resubscribed(events: &mut broadcast::Receiver<PubSubEvent>) -> PubSubEvent {
    timeout(WAIT, events.recv())
        .await
        .expect("Resubscribed within 10 s")
        .expect("event channel open")
}

/// SIGKILL, restart on the same port: the core subscribes again by itself,
/// each subscription reports its gap in order with the messages, and the
/// server holds each subscription exactly once.
async fn survives_sigkill_and_restart(protocol: Protocol) {
    let server = std::sync::Arc::new(RedisServer::start());
    let client = client(&server.url(), protocol).await;
    let mut events = client.pubsub_events().expect("pubsub events");
    let mut sub = client
        .subscribe(["news", "alerts"])
        .await
        .expect("subscribe");
    let mut psub = client.psubscribe(["user.*"]).await.expect("psubscribe");
    assert_eq!(publish(&server, "news", "before").await, 1);
    assert_eq!(
        message_payload(&next(&mut sub).await).as_deref(),
        Some("before")
    );
    assert_eq!(publish(&server, "user.7", "p-before").await, 1);
    assert_eq!(
        message_payload(&next(&mut psub).await).as_deref(),
        Some("p-before")
    );

    let killed = std::time::Instant::now();
    let s = server.clone();
    blocking(move || s.kill()).await;
    sleep(Duration::from_millis(100)).await;
    let s = server.clone();
    blocking(move || s.restart()).await;
    let restarted = std::time::Instant::now();

    let PubSubEvent::Resubscribed { subscriptions, .. } = resubscribed(&mut events).await;
    assert_eq!(subscriptions, 3, "news, alerts and user.*");
    // Each channel's gap comes first in its stream, and spans the outage.
    let mut gaps = Vec::new();
    for _ in 0..2 {
        match next(&mut sub).await {
            PubSubItem::Gap {
                name,
                cause: GapCause::Reconnected { since, until },
                ..
            } => {
                assert!(
                    since <= restarted && until >= restarted,
                    "gap covers the restart"
                );
                assert!(
                    since + Duration::from_millis(500) >= killed,
                    "gap starts at the loss"
                );
                gaps.push(String::from_utf8(name).unwrap());
            }
            other => panic!("expected a gap, got {other:?}"),
        }
    }
    gaps.sort();
    assert_eq!(gaps, ["alerts", "news"]);
    assert!(matches!(next(&mut psub).await, PubSubItem::Gap { .. }));

    assert_eq!(
        publish(&server, "news", "after").await,
        1,
        "one subscriber, not two"
    );
    assert_eq!(
        message_payload(&next(&mut sub).await).as_deref(),
        Some("after")
    );
    assert_eq!(publish(&server, "user.9", "p-after").await, 1);
    assert_eq!(
        message_payload(&next(&mut psub).await).as_deref(),
        Some("p-after")
    );
    assert_eq!(numsub(&server, "news"), 1);
    assert_eq!(numsub(&server, "alerts"), 1);
    assert_eq!(integer(&server.command_reply(&["PUBSUB", "NUMPAT"])), 1);
    // The client's other commands work on the same client meanwhile.
    client
        .set("ps:k", "v")
        .await
        .expect("SET after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_subscriptions_survive_sigkill_and_restart() {
    survives_sigkill_and_restart(Protocol::Resp3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp2_subscriptions_survive_sigkill_and_restart() {
    survives_sigkill_and_restart(Protocol::Resp2).await;
}

/// A silent partition: nothing arrives, nothing is closed. The keepalive
/// finds it, the client reconnects after the heal and subscribes again;
/// the server ends with one subscription (the stale one is gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_survive_a_silent_partition() {
    let server = std::sync::Arc::new(RedisServer::start());
    let proxy = FaultProxy::start(server.addr());
    let client = client(&proxy.url(), Protocol::Resp3).await;
    let mut events = client.pubsub_events().expect("pubsub events");
    let mut sub = client.subscribe(["quiet"]).await.expect("subscribe");
    proxy.freeze();
    let frozen = std::time::Instant::now();
    // Published during the partition: lost to this subscriber (at most once).
    sleep(Duration::from_millis(200)).await;
    assert_eq!(
        publish(&server, "quiet", "during").await,
        1,
        "the server still counts it"
    );
    sleep(PING_INTERVAL + PING_TIMEOUT + Duration::from_millis(300)).await;
    proxy.heal();
    let PubSubEvent::Resubscribed { subscriptions, .. } = resubscribed(&mut events).await;
    assert_eq!(subscriptions, 1);
    match next(&mut sub).await {
        PubSubItem::Gap {
            cause: GapCause::Reconnected { since, .. },
            ..
        } => assert!(since >= frozen, "the gap starts after the freeze"),
        // The held bytes of the old connection can arrive after the heal,
        // before the core closes it: the message, then the gap.
        PubSubItem::Message(m) => {
            assert_eq!(m.payload, b"during");
            assert!(matches!(next(&mut sub).await, PubSubItem::Gap { .. }));
        }
        other => panic!("expected the gap, got {other:?}"),
    }
    wait_numsub(&server, "quiet", 1).await;
    assert_eq!(publish(&server, "quiet", "healed").await, 1);
    assert_eq!(
        message_payload(&next(&mut sub).await).as_deref(),
        Some("healed")
    );
}

/// 100 000 messages to a consumer that does not read: the buffer never
/// holds more than its bounds, and every message is either delivered in
/// order or counted as dropped (nothing invented, nothing silently lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_stays_within_its_buffer_bound() {
    const TOTAL: usize = 100_000;
    let server = std::sync::Arc::new(RedisServer::start());
    let mut options = fast_options(&server.url(), OfflineMode::QueueThenFail);
    options.pubsub = PubSubConfig {
        buffer_messages: 1000,
        buffer_bytes: 16 * 1024,
    };
    let client = start_ready(options).await;
    let mut sub = client.subscribe(["firehose"]).await.expect("subscribe");
    let publisher = client.clone();
    let publishing = tokio::spawn(async move {
        for batch in 0..TOTAL / 500 {
            let calls = (0..500).map(|i| {
                let n = batch * 500 + i;
                let p = publisher.clone();
                async move {
                    p.cmd("PUBLISH")
                        .arg("firehose")
                        .arg(format!("{n:06}"))
                        .query_as::<i64>()
                        .await
                }
            });
            for r in futures_join(calls).await {
                assert_eq!(r.expect("PUBLISH"), 1);
            }
        }
    });
    let mut peak = (0, 0);
    while !publishing.is_finished() {
        let (n, bytes) = sub.buffered();
        peak = (peak.0.max(n), peak.1.max(bytes));
        sleep(Duration::from_millis(5)).await;
    }
    publishing.await.expect("publisher");
    assert!(
        peak.0 <= 1000,
        "at most 1000 messages buffered, saw {}",
        peak.0
    );
    assert!(
        peak.1 <= 16 * 1024,
        "at most 16 KiB buffered, saw {}",
        peak.1
    );
    // Drain: the last message is in the buffer (the newest are kept).
    let mut received = 0u64;
    let mut dropped = 0u64;
    let mut last = None;
    loop {
        match next(&mut sub).await {
            PubSubItem::Message(m) => {
                let n: usize = String::from_utf8(m.payload).unwrap().parse().unwrap();
                assert!(last.is_none_or(|l| n > l), "in order");
                last = Some(n);
                received += 1;
                if n == TOTAL - 1 {
                    break;
                }
            }
            PubSubItem::Gap {
                cause: GapCause::SlowConsumer { dropped: d },
                ..
            } => dropped += d,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        received + dropped,
        TOTAL as u64,
        "each message delivered or counted"
    );
    assert!(
        dropped > 0,
        "a consumer that never read must have lost some"
    );
    assert_eq!(sub.dropped_total(), dropped);
}

/// Runs futures concurrently on the current task (no extra dependency).
async fn futures_join<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await);
    }
    out
}

/// Dropping a subscriber unsubscribes, unless another still holds the channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_subscriber_unsubscribes_what_nobody_else_holds() {
    let server = std::sync::Arc::new(RedisServer::start());
    let client = client(&server.url(), Protocol::Resp3).await;
    let a = client.subscribe(["shared", "only-a"]).await.expect("a");
    let mut b = client.subscribe(["shared"]).await.expect("b");
    assert_eq!(
        numsub(&server, "shared"),
        1,
        "one connection, one subscription"
    );
    drop(a);
    wait_numsub(&server, "only-a", 0).await;
    assert_eq!(numsub(&server, "shared"), 1, "b still holds it");
    assert_eq!(publish(&server, "shared", "x").await, 1);
    assert_eq!(message_payload(&next(&mut b).await).as_deref(), Some("x"));
    drop(b);
    wait_numsub(&server, "shared", 0).await;
}

/// An ACL that denies a channel: the caller gets the server's words, and
/// the connection (and every other command on it) carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_channel_is_a_typed_error_not_a_broken_connection() {
    let server = std::sync::Arc::new(RedisServer::start());
    server.command(&[
        "ACL",
        "SETUSER",
        "limited",
        "on",
        ">pw",
        "~*",
        "resetchannels",
        "&allowed:*",
        "+@all",
    ]);
    let url = format!("redis://limited:pw@127.0.0.1:{}", server.port());
    let client = client(&url, Protocol::Resp3).await;
    let err = client.subscribe(["secret"]).await.expect_err("denied");
    assert!(err.to_string().contains("NOPERM"), "{err}");
    client
        .set("acl:k", "v")
        .await
        .expect("the connection still works");
    let mut sub = client.subscribe(["allowed:1"]).await.expect("allowed");
    assert_eq!(publish(&server, "allowed:1", "ok").await, 1);
    assert_eq!(
        message_payload(&next(&mut sub).await).as_deref(),
        Some("ok")
    );
    assert_eq!(client.health().counters.reconnects, 0, "never reconnected");
}

//! Issue 11, "liveness counts progress": a large reply on a slow link is
//! alive as long as its bytes keep coming. Real redis-server behind the
//! fault proxy, whose server-to-client direction is rate-limited.
//!
//! Once: a 10 MB reply arriving at 1 MB/s was declared dead at
//! `ping_timeout` and the GET (safe to resend) was sent again on each new
//! connection. Here the timings are scaled down (`ping_timeout` 300 ms):
//! a 1.5 MB value at 1 MB/s takes five times `ping_timeout`.
//!
//! What Redis did is checked on Redis: `INFO commandstats` counts how many
//! times GET actually ran.

use std::time::Duration;

use resilis::{DisconnectReason, Error, Event, OfflineMode, Value};
use resilis_tests::harness::{
    EventLog, PING_TIMEOUT, SLACK, is_disconnect, is_ready, ready_client,
};
use resilis_tests::raw::{RawConn, Reply};
use resilis_tests::{Direction, FaultProxy, RedisServer};
use tokio::time::Instant;

const BIG: usize = 1_500_000;

/// How many times the server ran GET, from `INFO commandstats`.
fn gets_run(server: &RedisServer) -> u64 {
    let mut admin = RawConn::connect(server.addr()).expect("admin connection");
    let Reply::Bulk(info) = admin.command(&["INFO", "commandstats"]).expect("INFO") else {
        panic!("INFO is a bulk string");
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("calls is a number"))
}

fn put_big_value(server: &RedisServer, key: &str) -> Vec<u8> {
    let value: Vec<u8> = (0..BIG).map(|i| b'a' + (i % 26) as u8).collect();
    let mut admin = RawConn::connect(server.addr()).expect("admin connection");
    let text = String::from_utf8(value.clone()).expect("ascii");
    assert_eq!(
        admin.command(&["SET", key, &text]).expect("SET"),
        Reply::Simple("OK".into())
    );
    value
}

fn reasons(log: &EventLog) -> Vec<DisconnectReason> {
    log.all()
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::Disconnected { reason } => Some(reason),
            _ => None,
        })
        .collect()
}

/// A redis-server holding a 1.5 MB value at `slow:big`, a proxy in front,
/// a ready client through it, its event log, and GET's count so far.
struct Link {
    server: RedisServer,
    value: Vec<u8>,
    proxy: FaultProxy,
    client: resilis::Client,
    log: EventLog,
    before: u64,
}

impl Link {
    async fn start() -> Link {
        let server = RedisServer::start();
        let value = put_big_value(&server, "slow:big");
        let proxy = FaultProxy::start(server.addr());
        let client = ready_client(&proxy.url(), OfflineMode::Fallback).await;
        let log = EventLog::record(&client);
        let before = gets_run(&server);
        Link {
            server,
            value,
            proxy,
            client,
            log,
            before,
        }
    }
}

async fn get(client: &resilis::Client, deadline: Duration) -> Result<Value, Error> {
    client
        .cmd("GET")
        .arg("slow:big")
        .timeout(deadline)
        .query()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_reply_on_a_slow_link_completes_once() {
    let Link {
        server,
        value,
        proxy,
        client,
        log,
        before,
    } = Link::start().await;

    proxy.set_rate(Direction::ToClient, Some(1_000_000));
    let started = Instant::now();
    let got = get(&client, Duration::from_secs(10)).await;
    let took = started.elapsed();
    proxy.set_rate(Direction::ToClient, None);
    println!("1.5 MB at 1 MB/s: {took:?}, ping_timeout {PING_TIMEOUT:?}");
    match got {
        Ok(Value::Bulk(bytes)) => assert!(bytes == value, "the value came back changed"),
        other => panic!("GET of a slow reply: {other:?}"),
    }
    assert!(
        took > PING_TIMEOUT * 3,
        "the link was not slow ({took:?}): the test proves nothing"
    );
    assert_eq!(reasons(&log), vec![], "the connection was cut while alive");
    assert_eq!(proxy.connections_accepted(), 1, "no reconnect");
    assert_eq!(gets_run(&server) - before, 1, "GET ran exactly once");
    client.ping().await.expect("PING after");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_deadline_holds_while_its_reply_arrives() {
    let Link {
        server,
        proxy,
        client,
        log,
        before,
        ..
    } = Link::start().await;

    proxy.set_rate(Direction::ToClient, Some(1_000_000));
    let deadline = Duration::from_millis(500);
    let started = Instant::now();
    let got = get(&client, deadline).await;
    let took = started.elapsed();
    assert!(
        matches!(got, Err(Error::Indeterminate { .. }) | Err(Error::Timeout)),
        "the deadline passed mid-reply: {got:?}"
    );
    assert!(took < deadline + SLACK, "ended after {took:?}");
    // The rest of the reply still arrives and is discarded; the connection
    // stays and the next command is answered after it.
    let ping = client
        .cmd("PING")
        .timeout(Duration::from_secs(10))
        .query()
        .await;
    proxy.set_rate(Direction::ToClient, None);
    assert!(
        matches!(ping, Ok(Value::Status(ref s)) if s == "PONG"),
        "{ping:?}"
    );
    assert_eq!(reasons(&log), vec![], "the connection was cut while alive");
    assert_eq!(gets_run(&server) - before, 1, "GET ran exactly once");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_reply_is_cut_and_not_resent() {
    let Link {
        server,
        proxy,
        client,
        log,
        before,
        ..
    } = Link::start().await;

    // 2 000 B/s: 600 B per ping_timeout, below the default floor (1 KiB).
    proxy.set_rate(Direction::ToClient, Some(2_000));
    let started = Instant::now();
    let got = get(&client, Duration::from_secs(5)).await;
    let took = started.elapsed();
    let cut = log
        .wait_for(started, Duration::from_secs(3), is_disconnect)
        .await
        .map(|(at, e)| (at - started, e));
    proxy.set_rate(Direction::ToClient, None);
    println!("trickle at 2 kB/s: GET ended {got:?} after {took:?}; cut {cut:?}");
    let (cut_after, event) = cut.expect("the trickle was never cut");
    assert!(
        matches!(
            event,
            Event::Disconnected {
                reason: DisconnectReason::SlowReply
            }
        ),
        "cut as {event:?}"
    );
    assert!(
        cut_after < PING_TIMEOUT * 3 + SLACK,
        "cut after {cut_after:?}"
    );
    // A read whose reply was cut mid-way: an error naming the cut (a read
    // is never indeterminate: it changed nothing), never a value.
    match &got {
        Err(e) => assert!(
            e.to_string().contains("min_reply_rate"),
            "the first error names the cause and the knob: {e}"
        ),
        Ok(v) => panic!("a reply cut mid-way is not an answer: {v:?}"),
    }
    // Not resent on the next connection: it would only trickle again.
    log.wait_for(started, Duration::from_secs(3), is_ready)
        .await
        .expect("reconnected after the cut");
    client.ping().await.expect("PING after the cut");
    assert_eq!(gets_run(&server) - before, 1, "GET ran exactly once");
    client.shutdown().await;
}

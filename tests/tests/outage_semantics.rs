//! Issue 10: outages never lose, invent or hide data.
//!
//! Each case checks what Redis holds afterwards, read over a raw connection
//! of its own (`server.command`), not only what the API answered:
//!
//! 1. A write made during an outage fails as not applied; it is never kept
//!    and replayed later over what another writer wrote meanwhile.
//! 2. A client's own writes keep their order across a reconnect.
//! 3. A call abandoned (its future dropped) before it was sent never runs.
//! 4. An abandoned BLPOP never swallows a job; blocking commands on
//!    different keys do not wait for each other.
//! 5. WAIT counts the replicas of the caller's own write.
//! 6. The first call against a TLS-only server says so, at once.
//! 7. "I don't know" is never answered as "no such key".
//! 8. `-BUSY` during the handshake is transient.
//! 9. A healthy connection takes a 50 MB value and 8192 concurrent calls.
//!
//! And a history of mixed calls under faults is linearizable per key
//! (see `resilis_tests::linearizable`).

use std::process::Command;
use std::time::Duration;

use resilis::{
    Client, DisconnectReason, Error, FallbackConfig, OfflineMode, SetOptions, Source, Value,
};
use resilis_tests::harness::{COMMAND_TIMEOUT, fast_options, ready_client, start_ready};
use resilis_tests::linearizable::{self, Answer, Call, Op, Outcome, Verdict};
use resilis_tests::{FaultProxy, RedisServer, Reply};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};

/// How long a client may take to notice a silent partition: the keepalive
/// PING after `ping_interval`, unanswered for `ping_timeout`, with room.
const NOTICE_LIMIT: Duration = Duration::from_secs(3);
/// How long a client may take to be ready again after a heal.
const READY_LIMIT: Duration = Duration::from_secs(5);

/// Polls `condition` every 5 ms until it holds or `limit` passes.
async fn wait_until(limit: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(5)).await;
    }
}

/// Whether the client knows its connection is gone.
fn noticed_outage(client: &Client) -> bool {
    client.fallback_active() || !client.health().healthy
}

/// Freezes the proxy and waits (bounded) until the client notices.
async fn partition(proxy: &FaultProxy, client: &Client) -> Duration {
    let frozen_at = Instant::now();
    proxy.freeze();
    assert!(
        wait_until(NOTICE_LIMIT, || noticed_outage(client)).await,
        "the client did not notice a silent partition within {NOTICE_LIMIT:?}: {:?}",
        client.health()
    );
    frozen_at.elapsed()
}

/// Heals the proxy and waits until the client is ready and one PING made
/// the round trip, then a little longer for anything queued behind it.
async fn heal(proxy: &FaultProxy, client: &Client) {
    proxy.heal();
    settle(client).await;
}

/// Waits (bounded) until the client is ready, out of fallback, and a PING
/// made the round trip; then 300 ms more for anything queued behind it.
/// The PING is retried: right after a fault the client may still be
/// finding out that its connection is gone.
async fn settle(client: &Client) {
    let deadline = Instant::now() + READY_LIMIT;
    let mut last = None;
    while Instant::now() < deadline {
        let ready = wait_until(deadline - Instant::now(), || {
            client.health().healthy && !client.fallback_active()
        })
        .await;
        if ready {
            match client.ping().await {
                Ok(()) => {
                    sleep(Duration::from_millis(300)).await;
                    return;
                }
                Err(e) => last = Some(e),
            }
        }
        sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no successful PING within {READY_LIMIT:?} (last error: {last:?}): {:?}",
        client.health()
    );
}

/// What Redis holds at `key`, read without resilis: `None` for no key.
fn redis_get(server: &RedisServer, key: &str) -> Option<String> {
    match server.command_reply(&["GET", key]) {
        Reply::Nil => None,
        Reply::Bulk(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        other => panic!("GET {key}: unexpected reply {other:?}"),
    }
}

fn redis_int(server: &RedisServer, args: &[&str]) -> i64 {
    match server.command_reply(args) {
        Reply::Integer(n) => n,
        other => panic!("{args:?}: expected an integer, got {other:?}"),
    }
}

/// One line for a result in the printed figures.
fn show<T: std::fmt::Debug>(result: &Result<T, Error>) -> String {
    match result {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({e})"),
    }
}

#[track_caller]
fn assert_down_not_applied<T: std::fmt::Debug>(what: &str, result: &Result<T, Error>) {
    match result {
        Err(e @ Error::ConnectionDown { .. }) => {
            assert!(e.is_not_applied(), "{what}: {e:?} must say not applied")
        }
        other => panic!("{what} during the outage must fail with ConnectionDown, got {other:?}"),
    }
}

// ----- 1. outage writes never overwrite other writers --------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_writes_never_overwrite_other_writers() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let a = ready_client(&proxy.url(), OfflineMode::Fallback).await;
    for key in ["o1:a", "o1:b", "o1:c"] {
        assert_eq!(server.command(&["SET", key, "orig"]), "OK");
    }

    let noticed = partition(&proxy, &a).await;
    let del = a.del("o1:a").await;
    let set = a.set("o1:b", "mine").await;
    let set_ex = a.set_with("o1:c", "mine", SetOptions::new().ex(1)).await;
    // Another writer, not partitioned, writes meanwhile.
    for key in ["o1:a", "o1:b", "o1:c"] {
        assert_eq!(server.command(&["SET", key, "other"]), "OK");
    }
    heal(&proxy, &a).await;

    let held: Vec<Option<String>> = ["o1:a", "o1:b", "o1:c"]
        .iter()
        .map(|k| redis_get(&server, k))
        .collect();
    let read_back = a.get_with_source::<String>("o1:b").await;
    println!(
        "case 1 (outage writes vs another writer): noticed after {noticed:?}; during the outage \
         DEL a: {}, SET b: {}, SET c EX 1: {}; Redis then holds a={:?} b={:?} c={:?}; \
         A reads b: {}",
        show(&del),
        show(&set),
        show(&set_ex),
        held[0],
        held[1],
        held[2],
        show(&read_back),
    );
    assert_down_not_applied("DEL a", &del);
    assert_down_not_applied("SET b", &set);
    assert_down_not_applied("SET c EX 1", &set_ex);
    assert_eq!(
        held,
        vec![Some("other".to_owned()); 3],
        "an outage write overwrote (or deleted) what another writer wrote"
    );
    let read_back = read_back.expect("GET b after the heal");
    assert_eq!(read_back.value.as_deref(), Some("other"));
    assert_eq!(read_back.source, Source::Redis);
}

// ----- 2. no reordering of a client's own writes across a reconnect ------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_keep_their_order_across_a_reconnect() {
    const N: usize = 500;
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let a = ready_client(&proxy.url(), OfflineMode::Fallback).await;

    partition(&proxy, &a).await;
    // Writes during the outage: every one must fail, none be kept for later.
    let mut outage_ok = 0;
    let mut outage_not_applied = 0;
    let mut outage_other = Vec::new();
    let mut record = |r: Result<(), Error>| match r {
        Ok(()) => outage_ok += 1,
        Err(e) if e.is_not_applied() => outage_not_applied += 1,
        Err(e) => outage_other.push(e.to_string()),
    };
    let k_old = a.set("o2:k", "old").await;
    record(k_old.clone());
    for i in 0..N {
        record(a.set(format!("o2:r:{i}"), "old").await);
    }

    // After the reconnect, newer writes, at once.
    proxy.heal();
    a.wait_ready(READY_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("not ready within {READY_LIMIT:?} of the heal: {e}"));
    let mut new_ok = 0;
    let mut new_from_fallback = 0;
    let mut new_failed = Vec::new();
    for i in 0..N {
        match a
            .set_with_source(format!("o2:r:{i}"), "new", SetOptions::new())
            .await
        {
            Ok(s) => {
                new_ok += 1;
                if s.source == Source::Fallback {
                    new_from_fallback += 1;
                }
            }
            Err(e) => new_failed.push(e.to_string()),
        }
    }
    let k_new = a.set("o2:k", "new").await;
    // Room for anything still queued behind them to land.
    sleep(Duration::from_millis(300)).await;

    let mut conn = server.admin_conn().expect("raw connection");
    let mut stale = Vec::new();
    for key in std::iter::once("o2:k".to_owned()).chain((0..N).map(|i| format!("o2:r:{i}"))) {
        let reply = conn.command(&["GET", &key]).expect("raw GET");
        if reply != Reply::Bulk(b"new".to_vec()) {
            stale.push(format!("{key}={reply}"));
        }
    }
    println!(
        "case 2 (own writes across a reconnect): outage SET k old: {}; {} outage writes: \
         {outage_ok} ok, {outage_not_applied} not applied, {} other; after the heal {N} SETs: \
         {new_ok} ok ({new_from_fallback} from the fallback), {} failed {:?}; SET k new: {}; \
         keys not holding \"new\": {} of {} (first: {:?})",
        show(&k_old),
        N + 1,
        outage_other.len(),
        new_failed.len(),
        new_failed.first(),
        show(&k_new),
        stale.len(),
        N + 1,
        stale.iter().take(5).collect::<Vec<_>>(),
    );
    assert_down_not_applied("SET k old", &k_old);
    assert_eq!(outage_ok, 0, "outage writes answered Ok");
    assert!(
        new_failed.is_empty(),
        "writes after the reconnect failed: {new_failed:?}"
    );
    assert!(k_new.is_ok(), "SET k new: {k_new:?}");
    assert!(
        stale.is_empty(),
        "{} keys hold an older value than the client's last write: {:?}",
        stale.len(),
        stale.iter().take(5).collect::<Vec<_>>()
    );
}

// ----- 3. abandoned calls never execute ----------------------------------

/// A client whose first connect hangs (the proxy is frozen before it
/// connects), two calls abandoned while they wait in the queue, then the
/// connect completes.
async fn abandoned_before_connect(mode: OfflineMode) {
    let server = RedisServer::start();
    assert_eq!(server.command(&["SET", "balance", "1000"]), "OK");
    assert_eq!(server.command(&["RPUSH", "jobs", "job1", "job2"]), "2");
    let proxy = FaultProxy::start(server.addr());
    proxy.freeze();
    let client = Client::with_options(fast_options(&proxy.url(), mode)).expect("client starts");

    let incr = timeout(
        Duration::from_millis(50),
        client.cmd("INCRBY").arg("balance").arg(-100).query(),
    )
    .await;
    let lpop = timeout(
        Duration::from_millis(50),
        client.cmd("LPOP").arg("jobs").query(),
    )
    .await;
    // Heal within the handshake timeout, so that the very connection the
    // calls were waiting for becomes ready.
    sleep(Duration::from_millis(50)).await;
    proxy.heal();
    settle(&client).await;
    let balance = redis_get(&server, "balance");
    let jobs = redis_int(&server, &["LLEN", "jobs"]);
    println!(
        "case 3 ({mode:?}, abandoned before the first connect): INCRBY: {}, LPOP: {}; \
         once ready (a PING made the round trip): Redis holds balance={balance:?}, {jobs} jobs",
        incr.as_ref()
            .map_or_else(|_| "abandoned after 50 ms".to_owned(), show),
        lpop.as_ref()
            .map_or_else(|_| "abandoned after 50 ms".to_owned(), show),
    );
    assert!(
        incr.is_err() && lpop.is_err(),
        "the calls must still be waiting when abandoned (the test relies on it)"
    );
    assert_eq!(balance.as_deref(), Some("1000"), "an abandoned INCRBY ran");
    assert_eq!(jobs, 2, "an abandoned LPOP ran and its job is lost");
    // Commands queued while READY but never written (a full socket) would
    // be the other half of this promise; arranging that deterministically
    // needs a stalled writer the fixtures do not have, so it is not here.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_calls_never_execute_queue_then_fail() {
    abandoned_before_connect(OfflineMode::QueueThenFail).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_calls_never_execute_fallback() {
    abandoned_before_connect(OfflineMode::Fallback).await;
}

// ----- 4. blocking commands ----------------------------------------------

fn blocked_clients(server: &RedisServer) -> String {
    let info = server.command(&["INFO", "clients"]);
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .unwrap_or("?")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_blpop_never_swallows_a_job() {
    let server = RedisServer::start();
    let client = ready_client(&server.url(), OfflineMode::Fallback).await;
    // Warm up the connection blocking commands use, so that the BLPOP below
    // is really sent and blocked on the server when it is abandoned.
    let warm = client.cmd("BLPOP").arg("warm").arg("0.01").query().await;
    assert_eq!(warm, Ok(Value::Nil), "warm-up BLPOP");

    let abandoned = timeout(
        Duration::from_millis(200),
        client.cmd("BLPOP").arg("q").arg(0).query(),
    )
    .await;
    let blocked_after_drop = blocked_clients(&server);
    // The client closes the BLPOP's connection as soon as its caller is
    // gone: the server stops counting it as blocked (bounded wait; under a
    // loaded machine the close may take a few milliseconds to arrive). If
    // the client kept it open, this fails.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while blocked_clients(&server) != "0" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the abandoned BLPOP is still blocked on the server"
        );
        sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(server.command(&["RPUSH", "q", "job1"]), "1");
    sleep(Duration::from_millis(300)).await;
    let left = server.command(&["LRANGE", "q", "0", "-1"]);
    let len = redis_int(&server, &["LLEN", "q"]);
    println!(
        "case 4a (abandoned BLPOP): {}; blocked clients right after: {blocked_after_drop}; \
         after RPUSH q job1: LLEN q = {len} ({left:?})",
        abandoned
            .as_ref()
            .map_or_else(|_| "abandoned after 200 ms".to_owned(), show),
    );
    assert!(
        abandoned.is_err(),
        "BLPOP on an empty list answered: {abandoned:?}"
    );
    assert_eq!(
        len, 1,
        "the job pushed after the BLPOP was abandoned is gone"
    );
    assert_eq!(left, "job1");
    // The job is still there for the next taker.
    let taken = client
        .cmd("BLPOP")
        .arg("q")
        .arg(1)
        .query_as::<Vec<String>>()
        .await;
    assert_eq!(taken, Ok(vec!["q".to_owned(), "job1".to_owned()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_blocking_commands_at_once() {
    let server = RedisServer::start();
    let client = ready_client(&server.url(), OfflineMode::Fallback).await;
    let blpop = |key: &'static str| {
        let c = client.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let r = timeout(
                Duration::from_secs(5),
                c.cmd("BLPOP").arg(key).arg(0).query_as::<Vec<String>>(),
            )
            .await;
            (r, start.elapsed())
        })
    };
    // The first one blocks on the server before the second is made.
    let first = blpop("bq1");
    let first_blocked =
        wait_until(Duration::from_secs(2), || blocked_clients(&server) == "1").await;
    assert!(first_blocked, "BLPOP bq1 never blocked on the server");
    let second = blpop("bq2");
    let both_blocked = wait_until(Duration::from_secs(1), || blocked_clients(&server) == "2").await;
    let blocked = blocked_clients(&server);
    // The second key's job comes first: its BLPOP must not wait for the first.
    let pushed = Instant::now();
    assert_eq!(server.command(&["RPUSH", "bq2", "job2"]), "1");
    let second = timeout(Duration::from_secs(2), second).await;
    let second_took = pushed.elapsed();
    assert_eq!(server.command(&["RPUSH", "bq1", "job1"]), "1");
    let first = timeout(Duration::from_secs(2), first).await;
    let show_task = |r: &Result<Result<_, _>, _>| match r {
        Ok(Ok((Ok(Ok(v)), took))) => format!("{v:?} after {took:?}"),
        Ok(Ok((Ok(Err(e)), took))) => format!("Err({e}) after {took:?}"),
        Ok(Ok((Err(_), _))) => "no answer within 5 s".to_owned(),
        Ok(Err(e)) => format!("task failed: {e}"),
        Err(_) => "no answer within 2 s of its push".to_owned(),
    };
    println!(
        "case 4b (two BLPOPs at once): blocked clients with both made: {blocked}; \
         BLPOP bq2 (pushed first): {} ({second_took:?} after its push); BLPOP bq1: {}",
        show_task(&second),
        show_task(&first),
    );
    match second {
        Ok(Ok((Ok(Ok(v)), _))) => assert_eq!(v, vec!["bq2".to_owned(), "job2".to_owned()]),
        _ => panic!("BLPOP bq2 waited behind BLPOP bq1: {}", show_task(&second)),
    }
    match first {
        Ok(Ok((Ok(Ok(v)), _))) => assert_eq!(v, vec!["bq1".to_owned(), "job1".to_owned()]),
        _ => panic!("BLPOP bq1: {}", show_task(&first)),
    }
    assert!(
        both_blocked,
        "both BLPOPs must be blocked on the server at once (saw {blocked})"
    );
}

// ----- 5. WAIT on the caller's own connection ----------------------------

/// SIGSTOPs a process and SIGCONTs it on drop, also when the test fails.
struct Stopped(u32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        let status = Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .expect("run kill -STOP");
        assert!(status.success(), "kill -STOP {pid}: {status}");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

fn info_field(server: &RedisServer, field: &str) -> Option<String> {
    let info = server.command(&["INFO", "replication"]);
    info.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')
            .map(|v| v.trim().to_owned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_counts_the_replicas_of_the_callers_own_write() {
    let master = RedisServer::start();
    let replica = RedisServer::builder()
        .config(&format!("replicaof 127.0.0.1 {}", master.port()))
        .start();
    // In sync: the master counts the replica online and it has acknowledged
    // everything (diskless sync marks it online only at its first ACK).
    let in_sync = || {
        let info = master.command(&["INFO", "replication"]);
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        let master_offset = field("master_repl_offset");
        field("slave0").is_some_and(|s| {
            s.contains("state=online")
                && master_offset
                    .as_deref()
                    .is_some_and(|o| s.contains(&format!("offset={o},")))
        }) && info_field(&replica, "master_link_status").as_deref() == Some("up")
    };
    assert!(
        wait_until(Duration::from_secs(10), in_sync).await,
        "the replica did not sync within 10 s: master {:?}, replica {:?}",
        master.command(&["INFO", "replication"]),
        replica.command(&["INFO", "replication"])
    );
    let client = ready_client(&master.url(), OfflineMode::Fallback).await;
    client
        .set("w", "0")
        .await
        .expect("SET while the replica runs");
    // A blocking command first, as an application would have made: Redis
    // gives WAIT the replication offset of the connection's last command,
    // so a WAIT sent on a connection other than the SET's (one that last
    // ran while the replica was in step) answers 1 at once.
    let warm = client.cmd("BLPOP").arg("warm").arg("0.01").query().await;
    assert_eq!(warm, Ok(Value::Nil), "warm-up BLPOP");
    // The replica acknowledges all that (it sends REPLCONF ACK every second).
    assert!(
        wait_until(Duration::from_secs(5), in_sync).await,
        "the replica did not acknowledge the first write within 5 s: {:?}",
        master.command(&["INFO", "replication"])
    );

    let pid = replica.pid().expect("replica runs");
    let stopped = Stopped::new(pid);
    client.set("w", "1").await.expect("SET");
    let start = Instant::now();
    let acked = client
        .cmd("WAIT")
        .arg(1)
        .arg(1000)
        .timeout(Duration::from_secs(3))
        .query_as::<i64>()
        .await;
    let took = start.elapsed();
    drop(stopped);
    println!(
        "case 5 (WAIT with the only replica stopped): WAIT 1 1000 = {} after {took:?}",
        show(&acked)
    );
    assert_eq!(
        acked,
        Ok(0),
        "no replica can have acknowledged the write: WAIT ran elsewhere"
    );
    // A correctness bound: WAIT waited for its own write, up to its timeout.
    assert!(
        took >= Duration::from_millis(900),
        "WAIT answered after {took:?}"
    );
}

// ----- 6. the seed's failure is named in the first error -----------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_call_names_a_tls_only_server() {
    let pki = resilis_tests::TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    let url = format!("redis://127.0.0.1:{}", server.tls_port());
    let client = Client::with_options(fast_options(&url, OfflineMode::Fallback)).expect("client");

    let start = Instant::now();
    let ping = client.ping().await;
    let ping_took = start.elapsed();
    let start = Instant::now();
    let get = client.get::<String>("k").await;
    let get_took = start.elapsed();
    println!(
        "case 6 (plaintext client, TLS-only server): first PING {} after {ping_took:?}; \
         GET {} after {get_took:?}",
        show(&ping),
        show(&get),
    );
    for (what, result, took) in [
        ("PING", ping.map(|_| None), ping_took),
        ("GET", get, get_took),
    ] {
        match &result {
            Err(
                e @ Error::ConnectionDown {
                    reason: Some(DisconnectReason::TlsRequired(_)),
                    ..
                },
            ) => {
                let said = format!("{e} {}", e.fix().unwrap_or_default());
                assert!(said.contains("rediss://"), "{what}: {said}");
            }
            other => panic!("{what} against a TLS-only server: {other:?}, not TlsRequired"),
        }
        assert!(
            took < COMMAND_TIMEOUT / 2,
            "{what} waited {took:?}: the diagnosis was known, the deadline need not pass"
        );
    }
}

// ----- 7. unknown is never a definite answer -----------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_is_never_a_definite_answer() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let a = ready_client(&proxy.url(), OfflineMode::Fallback).await;
    a.set("known", "v").await.expect("SET known");

    partition(&proxy, &a).await;
    let known = a.get_with_source::<String>("known").await;
    let unknown = a.get_with_source::<String>("unknown-key").await;
    let exists = a.exists("known").await;
    let expire = a.expire("known", Duration::from_secs(10)).await;
    let ttl = a.ttl("known").await;
    heal(&proxy, &a).await;
    let server_ttl = redis_int(&server, &["TTL", "known"]);
    println!(
        "case 7 (reads during an outage): GET known {}; GET unknown-key {}; EXISTS known {}; \
         EXPIRE known 10 {}; TTL known {}; after the heal the server's TTL known = {server_ttl}",
        show(&known),
        show(&unknown),
        show(&exists),
        show(&expire),
        show(&ttl),
    );
    let known = known.expect("GET known from the fallback cache");
    assert_eq!(known.value.as_deref(), Some("v"));
    assert_eq!(known.source, Source::Fallback);
    assert!(
        matches!(unknown, Err(Error::ConnectionDown { .. })),
        "a key the cache does not hold is unknown, not absent: {unknown:?}"
    );
    assert!(
        matches!(exists, Err(Error::ConnectionDown { .. })),
        "EXISTS during an outage: {exists:?}"
    );
    assert!(
        matches!(expire, Err(Error::ConnectionDown { .. })),
        "EXPIRE during an outage: {expire:?}"
    );
    assert!(ttl.is_err(), "TTL during an outage: {ttl:?}");
    assert_eq!(server_ttl, -1, "an EXPIRE that failed reached the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_misses_as_absent_is_an_opt_in() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let fallback = FallbackConfig {
        miss_reads_as_absent: true,
        ..Default::default()
    };
    let a = start_ready(fast_options(&proxy.url(), OfflineMode::Fallback).fallback(fallback)).await;
    partition(&proxy, &a).await;
    let unknown = a.get_with_source::<String>("unknown-key").await;
    println!(
        "case 7b (miss_reads_as_absent): GET unknown-key {}",
        show(&unknown)
    );
    let unknown = unknown.expect("with the opt-in a miss reads as absent");
    assert_eq!(unknown.value, None);
    assert_eq!(unknown.source, Source::Fallback);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_in_flight_when_the_connection_dies_is_never_nil() {
    const CALLS: usize = 50;
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let a = ready_client(&proxy.url(), OfflineMode::Fallback).await;
    // One key the fallback cache holds, one it has never seen.
    a.set("known", "v").await.expect("SET known");
    assert_eq!(server.command(&["SET", "seeded", "v"]), "OK");

    let mut calls = JoinSet::new();
    for i in 0..CALLS {
        let a = a.clone();
        let key = if i % 2 == 0 { "known" } else { "seeded" };
        calls.spawn(async move { (key, a.get_with_source::<String>(key).await) });
    }
    proxy.freeze();
    let mut redis = 0;
    let mut fallback = 0;
    let mut errors = 0;
    let mut nil = Vec::new();
    let mut wrong = Vec::new();
    // Bounded: every GET ends by its deadline; the cap reports a hang.
    let all = timeout(COMMAND_TIMEOUT * 5, async {
        while let Some(joined) = calls.join_next().await {
            match joined.expect("GET task") {
                (_, Ok(s)) if s.value.as_deref() == Some("v") => match s.source {
                    Source::Redis => redis += 1,
                    Source::Fallback => fallback += 1,
                },
                (key, Ok(s)) if s.value.is_none() => nil.push((key, s.source)),
                (key, Ok(s)) => wrong.push((key, s)),
                (_, Err(_)) => errors += 1,
            }
        }
    })
    .await;
    proxy.heal();
    println!(
        "case 7c ({CALLS} GETs in flight at a partition): {redis} from Redis, {fallback} from \
         the fallback, {errors} errors, {} nil ({:?}), {} wrong",
        nil.len(),
        nil.iter().take(3).collect::<Vec<_>>(),
        wrong.len(),
    );
    assert!(
        all.is_ok(),
        "GETs still pending after {:?}",
        COMMAND_TIMEOUT * 5
    );
    assert!(nil.is_empty(), "an existing key read as absent: {nil:?}");
    assert!(wrong.is_empty(), "{wrong:?}");
}

// ----- 8. BUSY is transient ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_during_the_handshake_is_transient() {
    let server = RedisServer::builder()
        .config("busy-reply-threshold 100")
        .start();
    let script = {
        let mut conn = server.admin_conn().expect("raw connection");
        std::thread::spawn(move || conn.command(&["EVAL", "while true do end", "0"]))
    };
    let busy = wait_until(Duration::from_secs(3), || {
        server
            .try_command(&["PING"])
            .is_ok_and(|r| matches!(&r, Reply::Error(e) if e.starts_with("BUSY")))
    })
    .await;
    assert!(busy, "the server never answered -BUSY");

    let client =
        Client::with_options(fast_options(&server.url(), OfflineMode::Fallback)).expect("client");
    // Watch the client meet -BUSY for a while.
    let mut states = Vec::new();
    let mut last_error = None;
    let watch_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < watch_until {
        let health = client.health();
        if states.last() != Some(&health.state) {
            states.push(health.state);
        }
        if health.last_error.is_some() {
            last_error = health.last_error;
        }
        sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.command(&["SCRIPT", "KILL"]), "OK");
    let killed_at = Instant::now();
    let ready = client.wait_ready(Duration::from_secs(2)).await;
    let ready_after = killed_at.elapsed();
    let state_then = client.health().state;
    let ping = client.ping().await;
    let script_reply = script.join().expect("script thread");
    println!(
        "case 8 (-BUSY in the handshake): states while busy {states:?}; last error {:?}; \
         after SCRIPT KILL: wait_ready {} after {ready_after:?}, state {state_then}, PING {}; \
         the script's own reply: {script_reply:?}",
        last_error.as_ref().map(|e| (&e.message, e.permanent)),
        show(&ready),
        show(&ping),
    );
    assert!(
        !states.contains(&"failed"),
        "-BUSY was taken for a permanent failure: {states:?}"
    );
    let last_error = last_error.expect("the client recorded why it is not ready");
    let said = format!(
        "{} {}",
        last_error.message,
        last_error.server_said.as_deref().unwrap_or_default()
    );
    assert!(
        said.contains("BUSY"),
        "the server's -BUSY message was lost: {last_error:?}"
    );
    assert!(!last_error.permanent, "{last_error:?}");
    ready.expect("ready within 2 s of SCRIPT KILL");
    ping.expect("PING after SCRIPT KILL");
}

// ----- 9. healthy connections take normal work ---------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_connection_takes_a_50_mb_value() {
    const LEN: usize = 50 << 20;
    let server = RedisServer::start();
    let client = start_ready(
        fast_options(&server.url(), OfflineMode::Fallback).command_timeout(Duration::from_secs(30)),
    )
    .await;
    let start = Instant::now();
    let set = client.set("big", vec![b'x'; LEN]).await;
    let took = start.elapsed();
    let strlen = redis_int(&server, &["STRLEN", "big"]);
    println!(
        "case 9a (50 MB SET): {} after {took:?}; STRLEN big = {strlen}",
        show(&set)
    );
    set.expect("a 50 MB SET on a ready connection");
    assert_eq!(strlen, LEN as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_connection_takes_8192_concurrent_calls() {
    const CALLS: usize = 8192;
    let server = RedisServer::start();
    assert_eq!(server.command(&["SET", "hot", "v"]), "OK");
    let client = ready_client(&server.url(), OfflineMode::Fallback).await;
    let mut calls = JoinSet::new();
    for _ in 0..CALLS {
        let c = client.clone();
        calls.spawn(async move { c.get_with_source::<String>("hot").await });
    }
    let (mut ok, mut from_fallback, mut backpressure, mut other) = (0, 0, 0, Vec::new());
    let all = timeout(Duration::from_secs(30), async {
        while let Some(joined) = calls.join_next().await {
            match joined.expect("GET task") {
                Ok(s) if s.value.as_deref() == Some("v") && s.source == Source::Redis => ok += 1,
                Ok(s) if s.source == Source::Fallback => from_fallback += 1,
                Ok(s) => other.push(format!("{s:?}")),
                Err(Error::Backpressure { .. }) => backpressure += 1,
                Err(e) => other.push(e.to_string()),
            }
        }
    })
    .await;
    println!(
        "case 9b ({CALLS} concurrent GETs): {ok} ok from Redis, {from_fallback} from the \
         fallback, {backpressure} backpressure, {} other (first: {:?})",
        other.len(),
        other.first(),
    );
    assert!(all.is_ok(), "GETs still pending after 30 s");
    assert_eq!(backpressure, 0, "a healthy connection refused work");
    assert_eq!(ok, CALLS, "fallback {from_fallback}, other {other:?}");
}

// ----- a history under faults is linearizable ----------------------------

/// How each client's calls ended, as the history counts them.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    ok: u32,
    not_applied: u32,
    indeterminate: u32,
    fallback_reads: u32,
    fallback_writes: u32,
    other: u32,
}

/// One call's outcome for the register history; `None`: a fallback answer,
/// not a Redis one, left out of the history.
fn outcome_of<T>(
    result: Result<T, Error>,
    counts: &mut Counts,
    answer: impl FnOnce(T) -> Option<Answer>,
) -> Option<Outcome> {
    match result {
        Ok(v) => match answer(v) {
            Some(a) => {
                counts.ok += 1;
                Some(Outcome::Ok(a))
            }
            None => None,
        },
        Err(e) if e.is_not_applied() => {
            counts.not_applied += 1;
            Some(Outcome::NotApplied)
        }
        Err(Error::Indeterminate { .. }) => {
            counts.indeterminate += 1;
            Some(Outcome::Indeterminate)
        }
        Err(Error::Server(_)) => {
            counts.ok += 1;
            Some(Outcome::Ok(Answer::Rejected))
        }
        // Anything else promises nothing: treat it as may-have-run.
        Err(_) => {
            counts.other += 1;
            Some(Outcome::Indeterminate)
        }
    }
}

/// A paced mix of SET/GET/INCR/DEL on `keys` until `until`, recorded.
async fn workload(
    client: Client,
    who: &'static str,
    seed: u64,
    keys: &'static [&'static str],
    until: Instant,
) -> (Vec<(String, Call)>, Counts) {
    const MAX_CALLS: u32 = 400;
    let mut history = Vec::new();
    let mut counts = Counts::default();
    let mut state = seed;
    let mut random = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let base = if who == "A" { 1_000_000 } else { 5_000_000 };
    for seq in 0..MAX_CALLS {
        if Instant::now() >= until {
            break;
        }
        let key = keys[random(keys.len() as u64) as usize];
        let kind = random(100);
        let start = std::time::Instant::now();
        let (op, outcome) = if kind < 35 {
            let value = (base + u64::from(seq) * 1000).to_string();
            let r = client.set_with_source(key, &value, SetOptions::new()).await;
            let outcome = match r {
                // A write answered locally would be one that may land any
                // time later; none is expected since writes are never kept.
                Ok(s) if s.source == Source::Fallback => {
                    counts.fallback_writes += 1;
                    Some(Outcome::Indeterminate)
                }
                r => outcome_of(r, &mut counts, |_| Some(Answer::Done)),
            };
            (Op::Set(value), outcome)
        } else if kind < 70 {
            let r = client.get_with_source::<String>(key).await;
            let mut fallback = false;
            let outcome = outcome_of(r, &mut counts, |s| match s.source {
                Source::Redis => Some(Answer::Value(s.value)),
                Source::Fallback => {
                    fallback = true;
                    None
                }
            });
            if fallback {
                counts.fallback_reads += 1;
            }
            (Op::Get, outcome)
        } else if kind < 90 {
            let r = client.incr(key).await;
            (
                Op::Incr,
                outcome_of(r, &mut counts, |n| Some(Answer::Int(n))),
            )
        } else {
            let r = client.del(key).await;
            let outcome = outcome_of(r, &mut counts, |n| Some(Answer::Int(n)));
            (Op::Del, outcome)
        };
        let end = std::time::Instant::now();
        if let Some(outcome) = outcome {
            let end = match outcome {
                Outcome::Indeterminate => None,
                _ => Some(end),
            };
            history.push((
                key.to_owned(),
                Call {
                    who,
                    start,
                    end,
                    op,
                    outcome,
                },
            ));
        }
        sleep(Duration::from_millis(20 + random(30))).await;
    }
    (history, counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_under_faults_is_linearizable() {
    static KEYS: &[&str] = &["lin:0", "lin:1", "lin:2", "lin:3"];
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let a = ready_client(&proxy.url(), OfflineMode::Fallback).await;
    let b = ready_client(&server.url(), OfflineMode::Fallback).await;
    let until = Instant::now() + Duration::from_secs(3);
    let worker_a = tokio::spawn(workload(a.clone(), "A", 0x2545_f491_4f6c_dd1d, KEYS, until));
    let worker_b = tokio::spawn(workload(b.clone(), "B", 0x9e37_79b9_7f4a_7c15, KEYS, until));

    // The faults: bounded in count, each a fraction of a second.
    let mut faults = Vec::new();
    for round in 0..3 {
        sleep(Duration::from_millis(300)).await;
        proxy.freeze();
        sleep(Duration::from_millis(500)).await;
        proxy.heal();
        sleep(Duration::from_millis(150)).await;
        if round % 2 == 0 {
            proxy.reset_all();
            faults.push("freeze, heal, reset");
        } else {
            proxy.close_all();
            faults.push("freeze, heal, close");
        }
    }
    proxy.heal();
    let (history_a, counts_a) = worker_a.await.expect("workload A");
    let (history_b, counts_b) = worker_b.await.expect("workload B");
    // Let A reconnect and anything still in flight land before reading.
    settle(&a).await;

    let finals: Vec<Option<String>> = KEYS.iter().map(|k| redis_get(&server, k)).collect();
    let mut history = history_a;
    history.extend(history_b);
    let per_key = linearizable::by_key(history);
    let verdicts = tokio::task::spawn_blocking(move || {
        KEYS.iter()
            .zip(&finals)
            .map(|(key, final_value)| {
                let calls = per_key.get(*key).cloned().unwrap_or_default();
                let started = std::time::Instant::now();
                let verdict = linearizable::check(&calls, None, final_value.as_deref());
                (*key, calls, final_value.clone(), verdict, started.elapsed())
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("checker");

    println!(
        "history under faults ({faults:?}): A {counts_a:?}; B {counts_b:?}; fallback answers \
         left out of the history: {} reads, {} writes (taken as indeterminate)",
        counts_a.fallback_reads + counts_b.fallback_reads,
        counts_a.fallback_writes + counts_b.fallback_writes,
    );
    for (key, calls, final_value, verdict, took) in &verdicts {
        let summary = match verdict {
            Verdict::Linearizable { order } => format!("linearizable ({} placed)", order.len()),
            Verdict::NotLinearizable { longest, stuck } => format!(
                "NOT linearizable after {} placed; stuck: {stuck}; last placed: {:?}",
                longest.len(),
                longest
                    .iter()
                    .rev()
                    .take(4)
                    .map(|&i| calls[i].to_string())
                    .collect::<Vec<_>>()
            ),
            Verdict::Undecided { why } => format!("undecided: {why}"),
        };
        println!(
            "  {key}: {} calls, final {final_value:?}, checked in {took:?}: {summary}",
            calls.len()
        );
    }
    for (key, _, _, verdict, _) in &verdicts {
        assert!(verdict.is_linearizable(), "{key}: {verdict:?}");
    }
}

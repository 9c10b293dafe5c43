//! Scenario 8: an outage longer than the command deadlines, with the
//! offline queue in use (`QueueThenFail`).
//!
//! - Every call ends by its deadline.
//! - The queue never holds more than its bound; the surplus is refused at
//!   once with `Backpressure`.
//! - A command reported as timed out while still queued never runs later
//!   (checked on the server after it is back).
//! - A command that was written and then ran out of time is reported as
//!   *indeterminate*, not as timed out: it may still run, and here it does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use resilis::core::IndeterminateCause;
use resilis::{Client, Error, OfflineMode};
use resilis_tests::harness::{
    Ended, EventLog, SLACK, Tally, blocking, fast_options, is_disconnect, is_ready, start_ready,
    timed,
};
use resilis_tests::{FaultProxy, RedisServer};
use tokio::time::{Instant, sleep};

const QUEUE_BOUND: usize = 16;
const SHORT_DEADLINE: Duration = Duration::from_millis(600);
const OUTAGE: Duration = Duration::from_millis(1200);

async fn queueing_client(url: &str) -> Client {
    let options = fast_options(url, OfflineMode::QueueThenFail).configure(|c| {
        c.queue.max_commands = QUEUE_BOUND;
    });
    start_ready(options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_commands_time_out_and_never_run_later() {
    let server = Arc::new(RedisServer::start());
    let client = queueing_client(&server.url()).await;
    let log = EventLog::record(&client);

    // Watch the queue's depth the whole time.
    let watching = Arc::new(AtomicBool::new(true));
    let deepest = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (client, watching, deepest) = (client.clone(), watching.clone(), deepest.clone());
        tokio::spawn(async move {
            while watching.load(Ordering::Relaxed) {
                deepest.fetch_max(client.health().queued, Ordering::Relaxed);
                sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let down_at = Instant::now();
    let s = server.clone();
    blocking(move || s.kill()).await;
    log.wait_for(down_at, Duration::from_secs(2), is_disconnect)
        .await
        .expect("the kill was not noticed");

    // Batch A: far more than the queue holds, with deadlines inside the outage.
    let mut batch_a = Vec::new();
    for i in 0..64 {
        let client = client.clone();
        batch_a.push(tokio::spawn(async move {
            let key = format!("queue:a:{i}");
            let call = client
                .cmd("SET")
                .arg(key.as_str())
                .arg(i)
                .timeout(SHORT_DEADLINE)
                .query();
            (key, timed(SHORT_DEADLINE, call).await)
        }));
    }
    // Batch B, later, with deadlines well past the end of the outage (a
    // restart on a busy machine takes a few hundred ms).
    sleep(Duration::from_millis(900)).await;
    let mut batch_b = Vec::new();
    for i in 0..8 {
        let client = client.clone();
        batch_b.push(tokio::spawn(async move {
            let key = format!("queue:b:{i}");
            let call = client
                .cmd("SET")
                .arg(key.as_str())
                .arg(i)
                .timeout(Duration::from_secs(2))
                .query();
            (key, timed(Duration::from_secs(2), call).await)
        }));
    }
    sleep(OUTAGE.saturating_sub(down_at.elapsed())).await;
    let s = server.clone();
    blocking(move || s.restart()).await;
    log.wait_for(down_at, Duration::from_secs(3), is_ready)
        .await
        .expect("no reconnect after the restart");

    let mut tally_a = Tally::default();
    let mut timed_out_keys = Vec::new();
    for call in batch_a {
        let (key, (ended, took)) = call.await.expect("call task");
        // Out of time in the queue while the reason is known: not applied,
        // with that reason (ConnectionDown), never a bare Timeout.
        if ended == Ended::Down {
            timed_out_keys.push(key);
        }
        tally_a.add(&ended, took);
    }
    let mut tally_b = Tally::default();
    let mut ok_keys = Vec::new();
    for call in batch_b {
        let (key, (ended, took)) = call.await.expect("call task");
        if ended == Ended::Ok {
            ok_keys.push(key);
        }
        tally_b.add(&ended, took);
    }
    // Anything that would run late has had time to.
    sleep(Duration::from_millis(300)).await;
    watching.store(false, Ordering::Relaxed);
    watcher.await.expect("watcher");
    let ran_late: Vec<_> = timed_out_keys
        .iter()
        .filter(|k| server.command(&["EXISTS", k]) == "1")
        .collect();
    let deepest = deepest.load(Ordering::Relaxed);
    println!(
        "scenario 8 (outage {OUTAGE:?}, deadlines {SHORT_DEADLINE:?}, queue bound {QUEUE_BOUND}): \
         batch A: {} out of time (down, with the reason), {} backpressure, {} other, slowest {:?}; batch B: {} ok of 8, slowest {:?}; \
         deepest queue {deepest}; out-of-time commands that ran later: {}",
        tally_a.down,
        tally_a.backpressure,
        tally_a.total() - tally_a.down - tally_a.backpressure,
        tally_a.max_latency,
        tally_b.ok,
        tally_b.max_latency,
        ran_late.len()
    );
    assert!(
        deepest <= QUEUE_BOUND as u64,
        "the queue held {deepest} commands"
    );
    assert_eq!(
        tally_a.down + tally_a.backpressure,
        64,
        "batch A: {tally_a:?}"
    );
    assert_eq!(tally_a.timed_out, 0, "a reason was known: {tally_a:?}");
    assert!(tally_a.down >= 1 && tally_a.backpressure >= 1);
    assert!(tally_a.max_latency <= SHORT_DEADLINE + SLACK, "{tally_a:?}");
    assert!(ran_late.is_empty(), "timed out, then ran: {ran_late:?}");
    assert_eq!(tally_b.ok, 8, "batch B: {tally_b:?}");
    assert!(tally_b.max_latency <= Duration::from_secs(2) + SLACK);
    for key in &ok_keys {
        assert_eq!(
            server.command(&["EXISTS", key]),
            "1",
            "{key} acknowledged but missing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_then_out_of_time_is_indeterminate() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let client = queueing_client(&proxy.url()).await;
    proxy.freeze();
    // Written at once (the connection still looks fine), then silence.
    let deadline = Duration::from_millis(150);
    let start = Instant::now();
    let result = client
        .cmd("INCR")
        .arg("queue:written")
        .timeout(deadline)
        .query()
        .await;
    let took = start.elapsed();
    sleep(Duration::from_millis(100)).await;
    proxy.heal();
    // The held INCR reaches the server after the heal, as TCP would
    // retransmit it: "indeterminate" was the truth.
    let mut ran = String::new();
    for _ in 0..100 {
        ran = server.command(&["GET", "queue:written"]);
        if ran == "1" {
            break;
        }
        sleep(Duration::from_millis(10)).await;
    }
    println!(
        "scenario 8 (written, then its {deadline:?} deadline passed): {result:?} after {took:?}; \
         on the server after the heal: {ran}"
    );
    assert!(
        matches!(
            result,
            Err(Error::Indeterminate {
                cause: IndeterminateCause::TimedOut
            })
        ),
        "{result:?}"
    );
    assert!(took <= deadline + SLACK, "{took:?}");
    assert_eq!(ran, "1", "the held INCR should have run after the heal");
}

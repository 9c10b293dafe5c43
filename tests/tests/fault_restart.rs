//! Scenario 1: the server is SIGKILLed and restarted on the same port 20
//! times while a workload runs. Every call resolves by its deadline, and
//! after each restart the client is ready again within one backoff step
//! (the schedule's cap) plus a round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use resilis::OfflineMode;
use resilis_tests::RedisServer;
use resilis_tests::harness::{
    BACKOFF_MAX, COMMAND_TIMEOUT, Ended, EventLog, SLACK, Tally, blocking, is_disconnect, is_ready,
    ready_client, timed,
};
use tokio::time::{Instant, sleep};

const RESTARTS: usize = 20;
const WORKERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkills_during_a_workload() {
    let server = Arc::new(RedisServer::start());
    let client = ready_client(&server.url(), OfflineMode::QueueThenFail).await;
    let log = EventLog::record(&client);

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let client = client.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut slowest = (Duration::ZERO, Ended::Ok);
            let mut i = 0u64;
            // Bounded by `stop`, which the test sets after the last restart.
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("restart:{w}:{}", i % 16);
                let (ended, took) = match i % 3 {
                    0 => timed(COMMAND_TIMEOUT, client.set(&key, "v")).await,
                    1 => timed(COMMAND_TIMEOUT, client.get::<String>(&key)).await,
                    _ => timed(COMMAND_TIMEOUT, client.incr(format!("restart:n:{w}"))).await,
                };
                if took > slowest.0 {
                    slowest = (took, ended.clone());
                }
                tally.add(&ended, took);
                sleep(Duration::from_millis(2)).await;
            }
            (tally, slowest)
        }));
    }

    let started = Instant::now();
    let mut recoveries = Vec::new();
    for round in 0..RESTARTS {
        // Run on a healthy connection for a while before each kill.
        sleep(Duration::from_millis(150)).await;
        let killed_at = Instant::now();
        let s = server.clone();
        blocking(move || s.kill()).await;
        sleep(Duration::from_millis(100)).await;
        let s = server.clone();
        blocking(move || s.restart()).await;
        let back_at = Instant::now();
        let (ready_at, _) = log
            .wait_for(killed_at, Duration::from_secs(5), is_ready)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "round {round}: not ready 5 s after the restart; health: {:?}",
                    client.health()
                )
            });
        // Ready before restart() returned (it polls the server too) counts as 0.
        recoveries.push(ready_at.saturating_duration_since(back_at));
    }
    sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = Tally::default();
    let mut slowest = (Duration::ZERO, Ended::Ok);
    for w in workers {
        let (tally, slow) = w.await.expect("worker panicked");
        total.merge(&tally);
        if slow.0 > slowest.0 {
            slowest = slow;
        }
    }
    recoveries.sort();
    let median = recoveries[recoveries.len() / 2];
    let worst = *recoveries.last().expect("20 rounds");
    println!(
        "scenario 1 (20 × SIGKILL + restart): ready again after restart: median {median:?}, worst {worst:?} \
         (bound {:?}); calls: {} ok, {} timed out, {} indeterminate, {} down, {} other, {} hung; \
         slowest call {:?} ({:?}), deadline {COMMAND_TIMEOUT:?}",
        BACKOFF_MAX + SLACK,
        total.ok,
        total.timed_out,
        total.indeterminate,
        total.down,
        total.other.len(),
        total.hung,
        slowest.0,
        slowest.1,
    );

    assert_eq!(total.hung, 0, "calls hung past their deadline: {total:?}");
    assert!(
        total.max_latency <= COMMAND_TIMEOUT + SLACK,
        "a call took {:?} ({:?}), past its {COMMAND_TIMEOUT:?} deadline",
        slowest.0,
        slowest.1
    );
    assert!(
        total.other.is_empty(),
        "unexpected errors: {:?}",
        total.other
    );
    assert!(
        total.ok > (RESTARTS * WORKERS) as u64,
        "the workload hardly ran: {total:?}"
    );
    assert!(
        worst <= BACKOFF_MAX + SLACK,
        "ready again only {worst:?} after a restart; one backoff step is at most {BACKOFF_MAX:?}; all: {recoveries:?}"
    );
    assert!(
        log.count_after(started, is_ready) >= RESTARTS,
        "fewer Ready events than restarts"
    );
    // The client works normally afterwards.
    client
        .set("restart:after", "yes")
        .await
        .expect("SET after the restarts");
    assert_eq!(server.command(&["GET", "restart:after"]), "yes");
}

/// The same over TLS: the reconnect path includes a fresh TLS handshake
/// (with certificate verification against the test CA) every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_of_a_tls_only_server() {
    let pki = resilis_tests::TestPki::generate();
    let server = Arc::new(RedisServer::builder().tls_only(&pki).start());
    let tls = resilis::TlsOptions {
        ca_file: Some(pki.ca.cert_path.clone()),
        ..resilis::TlsOptions::default()
    };
    let options =
        resilis_tests::harness::fast_options(&server.tls_url(), OfflineMode::QueueThenFail)
            .tls(tls);
    let client = resilis_tests::harness::start_ready(options).await;
    let log = EventLog::record(&client);
    let mut recoveries = Vec::new();
    for round in 0..5 {
        let killed_at = Instant::now();
        let s = server.clone();
        blocking(move || s.kill()).await;
        log.wait_for(killed_at, Duration::from_secs(2), is_disconnect)
            .await
            .unwrap_or_else(|| panic!("round {round}: the kill went unnoticed"));
        // A call issued during the outage waits in the queue and lands.
        let c = client.clone();
        let call = tokio::spawn(async move { timed(COMMAND_TIMEOUT, c.incr("restart:tls")).await });
        sleep(Duration::from_millis(100)).await;
        let s = server.clone();
        blocking(move || s.restart()).await;
        let back_at = Instant::now();
        let (ready_at, _) = log
            .wait_for(killed_at, Duration::from_secs(5), is_ready)
            .await
            .unwrap_or_else(|| panic!("round {round}: TLS client not ready after the restart"));
        recoveries.push(ready_at.saturating_duration_since(back_at));
        let (ended, took) = call.await.expect("call task");
        assert_eq!(
            ended,
            Ended::Ok,
            "round {round}: queued INCR ended {ended:?}"
        );
        assert!(took <= COMMAND_TIMEOUT + SLACK, "round {round}: {took:?}");
        // Fresh data after each restart: the queued INCR ran exactly once.
        assert_eq!(server.command(&["GET", "restart:tls"]), "1");
    }
    let worst = recoveries.iter().max().copied().unwrap_or_default();
    println!("scenario 1 over TLS (5 × SIGKILL + restart): ready again after {recoveries:?}");
    assert!(
        worst <= BACKOFF_MAX + SLACK,
        "TLS client ready only {worst:?} after a restart"
    );
}

//! Scenario 5: a wrong (or missing) password is a permanent error. The
//! caller learns it at once with the fix; the client does not hammer the
//! server with the seed's 10-attempt reconnect storm but probes at most
//! once per `permanent_retry`, and recovers by itself once the server
//! accepts the password.

use std::time::Duration;

use resilis::{Client, DisconnectReason, Error, OfflineMode};
use resilis_tests::harness::{
    CONNECT_TIMEOUT, EventLog, PERMANENT_RETRY, SLACK, fast_options, is_ready,
};
use resilis_tests::{FaultProxy, RedisServer};
use tokio::time::{Instant, sleep};

const WINDOW: Duration = Duration::from_millis(2200);

/// Connections a client that probes once per `PERMANENT_RETRY` may open in
/// `window`: the first, one per interval, and one for scheduling slack.
fn probe_bound(window: Duration) -> u64 {
    1 + (window.as_millis() / PERMANENT_RETRY.as_millis()) as u64 + 1
}

async fn permanent_failure(url: &str, expected: DisconnectReason, proxy: &FaultProxy) -> Client {
    let start = Instant::now();
    let client =
        Client::with_options(fast_options(url, OfflineMode::Fallback)).expect("client starts");
    let ready = client.wait_ready(Duration::from_secs(3)).await;
    let took = start.elapsed();
    let err = ready.expect_err("ready with a wrong password");
    let call_start = Instant::now();
    let call = client.incr("auth:n").await;
    let call_took = call_start.elapsed();
    sleep(WINDOW.saturating_sub(start.elapsed())).await;
    let attempts = proxy.connections_accepted();
    let health = client.health();
    println!(
        "scenario 5 ({expected:?}): wait_ready failed after {took:?}: {err}; INCR failed in {call_took:?}; \
         {attempts} connections in {WINDOW:?} (bound {}, probe every {PERMANENT_RETRY:?})",
        probe_bound(WINDOW)
    );
    match &err {
        Error::ConnectionDown {
            reason: Some(reason),
            fix,
            ..
        } => {
            assert_eq!(*reason, expected);
            assert!(fix.contains("REDIS_PASSWORD"), "{fix}");
        }
        other => panic!("wrong password reported as {other:?}"),
    }
    assert!(
        took <= CONNECT_TIMEOUT + SLACK,
        "a permanent failure took {took:?} to report"
    );
    assert!(
        matches!(call, Err(Error::ConnectionDown { reason: Some(r), .. }) if r == expected),
        "{call:?}"
    );
    assert!(call_took <= SLACK, "a call took {call_took:?} to fail");
    let last = health.last_error.expect("health has the error");
    assert!(last.permanent, "{last:?}");
    assert!(
        (2..=probe_bound(WINDOW)).contains(&attempts),
        "{attempts} connections in {WINDOW:?}: at most one per {PERMANENT_RETRY:?} allowed"
    );
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_permanent_and_probed_slowly() {
    let server = RedisServer::builder().requirepass("right").start();
    let proxy = FaultProxy::start(server.addr());
    let url = format!("redis://:wrong@127.0.0.1:{}", proxy.addr().port());
    let client = permanent_failure(&url, DisconnectReason::AuthFailed, &proxy).await;

    // The operator fixes the server side: the next probe gets in.
    let log = EventLog::record(&client);
    server.command(&["CONFIG", "SET", "requirepass", "wrong"]);
    let fixed_at = Instant::now();
    let (ready_at, _) = log
        .wait_for(fixed_at, PERMANENT_RETRY + SLACK, is_ready)
        .await
        .expect("not ready one probe interval after the password was accepted");
    println!(
        "scenario 5: ready {:?} after the server accepted the password",
        ready_at - fixed_at
    );
    assert_eq!(client.incr("auth:n").await.expect("INCR"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_password_is_permanent_and_probed_slowly() {
    let server = RedisServer::builder().requirepass("right").start();
    let proxy = FaultProxy::start(server.addr());
    permanent_failure(&proxy.url(), DisconnectReason::AuthRequired, &proxy).await;
}

//! Scenario 7: 64 non-idempotent INCRs in flight when the connection is
//! killed (RST). Some were answered, some ran without their answer getting
//! back, some never reached the server. Each call must end as a success or
//! as *indeterminate* (never as "failed" when it may have run), and none may
//! be silently sent again after the reconnect: afterwards the counter is at
//! least the successes and at most successes + indeterminates, and stays
//! there.

use std::time::Duration;

use resilis::OfflineMode;
use resilis_tests::harness::{
    COMMAND_TIMEOUT, EventLog, Tally, is_disconnect, is_ready, ready_client, timed,
};
use resilis_tests::{Direction, FaultProxy, RedisServer};
use tokio::time::{Instant, sleep, sleep_until};

const IN_FLIGHT: usize = 64;
const KEY: &str = "incr:counter";

fn counter(server: &RedisServer) -> i64 {
    match server.command(&["GET", KEY]).as_str() {
        "(nil)" => 0,
        n => n.parse().expect("counter is an integer"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incrs_in_flight_when_the_connection_dies() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let client = ready_client(&proxy.url(), OfflineMode::QueueThenFail).await;
    let log = EventLog::record(&client);

    // 100 ms each way: INCRs written in the first 50 ms are answered before
    // the reset at 250 ms, those written up to 150 ms ran but their answer
    // is still on its way, the rest never reach the server.
    proxy.set_latency(Direction::ToServer, Duration::from_millis(100));
    proxy.set_latency(Direction::ToClient, Duration::from_millis(100));
    let t0 = Instant::now();
    let mut calls = Vec::new();
    for i in 0..IN_FLIGHT {
        let client = client.clone();
        let at = t0 + Duration::from_micros(3_750 * i as u64);
        calls.push(tokio::spawn(async move {
            sleep_until(at).await;
            timed(COMMAND_TIMEOUT, client.incr(KEY)).await
        }));
    }
    sleep_until(t0 + Duration::from_millis(250)).await;
    let killed_at = Instant::now();
    proxy.reset_all();
    proxy.pass_through();

    let mut tally = Tally::default();
    for call in calls {
        let (ended, took) = call.await.expect("call task");
        tally.add(&ended, took);
    }
    log.wait_for(killed_at, Duration::from_secs(3), is_disconnect)
        .await
        .expect("the reset was not noticed");
    log.wait_for(killed_at, Duration::from_secs(3), is_ready)
        .await
        .expect("no reconnect after the reset");
    let after_reconnect = counter(&server);
    // Long enough for any resend to land.
    sleep(Duration::from_millis(500)).await;
    let settled = counter(&server);
    let (ok, indeterminate) = (tally.ok as i64, tally.indeterminate as i64);
    println!(
        "scenario 7 ({IN_FLIGHT} INCRs in flight, RST): {ok} ok, {indeterminate} indeterminate, \
         {} other; counter {settled} (must be in {ok}..={}); slowest {:?}",
        tally.total() - tally.ok - tally.indeterminate,
        ok + indeterminate,
        tally.max_latency
    );
    assert_eq!(
        tally.ok + tally.indeterminate,
        IN_FLIGHT as u64,
        "every INCR must end as a success or as indeterminate: {tally:?}"
    );
    assert!(
        ok <= settled && settled <= ok + indeterminate,
        "counter {settled} outside {ok}..={}",
        ok + indeterminate
    );
    assert_eq!(
        after_reconnect, settled,
        "the counter moved after the reconnect: an INCR was sent again"
    );
    // The mix the latencies aim at really happened, so each branch was
    // exercised: answered, ran unanswered, never ran.
    assert!(ok > 0, "no INCR was answered before the reset");
    assert!(settled > ok, "no INCR ran without its answer");
    assert!(
        settled < ok + indeterminate,
        "every unanswered INCR ran: none was cut off before the server"
    );
    assert!(tally.max_latency <= COMMAND_TIMEOUT, "{tally:?}");
    // And the connection is usable: one more INCR lands exactly once.
    assert_eq!(client.incr(KEY).await.expect("INCR"), settled + 1);
}

//! Issue 11: memory grows with what was received, not with what a header
//! claims. A 12-byte reply `$536870000\r\n` once took the client from 7 MB
//! to 519 MB of RSS before a byte of payload arrived.
//!
//! The assertions are on the driver's read buffer (`health().read_buffer_bytes`,
//! exact and deterministic), not on timing. The process's peak RSS is
//! printed for the record; the figure with its range over runs comes from
//! `cargo run --release -p resilis-tests --bin hostile_memory`.

use std::time::Duration;

use resilis::OfflineMode;
use resilis_tests::harness::{fast_options, start_ready};
use resilis_tests::{Behavior, HostileServer};

/// The client's normal read buffer (driver's `READ_BUF`).
const NORMAL: u64 = 64 * 1024;

/// Samples `health().read_buffer_bytes` every 10 ms for `window`; the
/// largest value seen. Bounded: `window / 10 ms` samples.
async fn peak_read_buffer(client: &resilis::Client, window: Duration) -> u64 {
    let mut peak = 0;
    let samples = window.as_millis() / 10;
    for _ in 0..samples {
        peak = peak.max(client.health().read_buffer_bytes);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_claiming_512_mib_costs_only_what_arrived() {
    // The header, then one byte of payload every 20 ms: far from 512 MiB.
    let server = HostileServer::start(Behavior::AfterHandshake(Box::new(Behavior::Endless {
        prefix: b"$536870000\r\n".to_vec(),
        chunk: b"x".to_vec(),
        interval: Duration::from_millis(20),
    })));
    // Redis's own limits (512 MiB bulks), as a new user has them.
    let client = start_ready(fast_options(&server.url(), OfflineMode::FailFast)).await;
    let get = tokio::spawn({
        let client = client.clone();
        async move { client.get::<Vec<u8>>("k").await }
    });
    let peak = peak_read_buffer(&client, Duration::from_millis(250)).await;
    println!("12-byte header claiming 536870000 bytes: read buffer peaked at {peak} B");
    assert!(
        peak <= NORMAL,
        "the read buffer grew to {peak} B on a header alone (normal {NORMAL} B)"
    );
    let ended = get.await.expect("the GET task");
    assert!(ended.is_err(), "no reply ever completed, yet: {ended:?}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_buffer_tracks_received_bytes_and_shrinks_after() {
    // 8 MiB of a 512 MiB bulk arrive quickly (64 KiB every ms), then the
    // payload stops coming in bulk: the buffer holds at most about twice
    // what arrived, never the 512 MiB announced.
    let server = HostileServer::start(Behavior::AfterHandshake(Box::new(Behavior::Endless {
        prefix: b"$536870000\r\n".to_vec(),
        chunk: vec![b'x'; 64 * 1024],
        interval: Duration::from_millis(1),
    })));
    let client = start_ready(fast_options(&server.url(), OfflineMode::FailFast)).await;
    let get = tokio::spawn({
        let client = client.clone();
        async move { client.get::<Vec<u8>>("k").await }
    });
    // Sampled together: the buffer against what the server had sent by
    // then (the client cannot have received more).
    let mut peak = 0;
    for _ in 0..30 {
        let held = client.health().read_buffer_bytes;
        let sent = server.bytes_sent();
        peak = peak.max(held);
        // The server counts a chunk once written: the client may hold one
        // chunk more than counted.
        let received_at_most = sent + 64 * 1024;
        assert!(
            held <= 2 * received_at_most + NORMAL,
            "the read buffer holds {held} B with only {sent} B sent: sized by the header"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "64 KiB/ms of a 512 MiB bulk for 300 ms: read buffer peaked at {peak} B, {} B sent",
        server.bytes_sent()
    );
    assert!(
        peak > NORMAL,
        "the payload arrived, the buffer grew with it"
    );
    let _ = get.await.expect("the GET task");
    // Once the connection is closed (deadline, liveness or shutdown), the
    // buffer goes back to its normal size.
    drop(server);
    let mut after = u64::MAX;
    for _ in 0..300 {
        after = client.health().read_buffer_bytes;
        if after <= NORMAL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        after <= NORMAL,
        "the read buffer still holds {after} B after the connection closed"
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_of_more_elements_than_memory_allows_is_refused_from_its_header() {
    // Each element becomes a 32-byte Value: by default one reply may hold
    // max_frame_len / 32 elements (16 777 216), so that its Values cost no
    // more than its bytes may. One more is refused from the header alone.
    let options = fast_options("redis://127.0.0.1:1", OfflineMode::FailFast);
    let max = options.config.resp_limits.max_elements;
    assert_eq!(
        max,
        options.config.max_frame_len / std::mem::size_of::<resilis::Value>()
    );
    let header = format!("*{}\r\n", max + 1).into_bytes();
    let server = HostileServer::start(Behavior::handshake_then(header));
    let client = start_ready(fast_options(&server.url(), OfflineMode::FailFast)).await;
    let got = client.cmd("LRANGE").arg("k").arg(0).arg(-1).query().await;
    let shown = match &got {
        Err(e) => e.to_string(),
        Ok(v) => panic!("a reply over the element bound was accepted: {v:?}"),
    };
    println!("*{}: {shown}", max + 1);
    let health = client.health();
    let last = health.last_error.expect("the reason is reported");
    assert!(
        last.message.contains("max_elements") && last.message.contains(&max.to_string()),
        "the reason names the limit: {last:?}"
    );
    client.shutdown().await;
}

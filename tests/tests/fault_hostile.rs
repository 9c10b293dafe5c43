//! Scenario 6: a hostile server. After a proper handshake it answers a
//! command with a bulk length over the limit, a recursion bomb, garbage, a
//! status line that never ends, an array that trickles in below the rate
//! floor, or a
//! flood of legal bulks in one endless array. Each time the connection is
//! closed with a typed reason, the caller's command ends by its deadline,
//! memory stays bounded (the limits refuse a frame from its header, a line
//! is cut at its limit, a whole reply at `max_frame_len`), and nothing
//! panics: the same client keeps working afterwards.
//!
//! One test runs the cases in turn so that the process's memory figures
//! belong to them alone.

use std::time::Duration;

use resilis::core::resp::{DecodeError, Limits};
use resilis::{DisconnectReason, Error, Event, OfflineMode};
use resilis_tests::harness::{
    COMMAND_TIMEOUT, EventLog, PING_TIMEOUT, SLACK, fast_options, is_disconnect, is_ready,
    panics_so_far, proc_status_kib, start_ready, timed,
};
use resilis_tests::{Behavior, HostileServer};
use tokio::time::Instant;

/// The limits the client is configured with: far below Redis's 512 MiB so
/// that "bounded" is checkable here.
const LIMITS: Limits = Limits {
    max_depth: 32,
    max_bulk_len: 1 << 20,
    max_aggregate_len: 1 << 20,
    max_elements: 1 << 20,
};

/// The most one reply may take, all its elements together.
const MAX_FRAME_LEN: usize = 4 << 20;

struct Case {
    name: &'static str,
    behavior: Behavior,
    expect: fn(&DisconnectReason) -> bool,
}

/// How soon the connection must be closed after the command.
const CLOSE_WITHIN: Duration =
    Duration::from_millis(PING_TIMEOUT.as_millis() as u64 + SLACK.as_millis() as u64);

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "bulk length over the limit ($9999999999)",
            behavior: Behavior::handshake_then(b"$9999999999\r\n".to_vec()),
            expect: |r| {
                matches!(
                    r,
                    DisconnectReason::Protocol(DecodeError::BulkTooLong { .. })
                )
            },
        },
        Case {
            name: "aggregate over the limit (*4294967295)",
            behavior: Behavior::handshake_then(b"*4294967295\r\n".to_vec()),
            expect: |r| {
                matches!(
                    r,
                    DisconnectReason::Protocol(DecodeError::AggregateTooLong { .. })
                )
            },
        },
        Case {
            // Each aggregate is within max_aggregate_len, but together
            // they announce more elements than max_elements: refused from
            // the headers, before 32 bytes per element are spent on them.
            name: "elements over the limit in all (*2 of *1048576)",
            behavior: Behavior::handshake_then(b"*2\r\n*1048576\r\n".to_vec()),
            expect: |r| {
                matches!(
                    r,
                    DisconnectReason::Protocol(DecodeError::TooManyElements { .. })
                )
            },
        },
        Case {
            name: "nesting 100 000 deep",
            behavior: Behavior::handshake_then({
                let mut bomb = b"*1\r\n".repeat(100_000);
                bomb.extend_from_slice(b":1\r\n");
                bomb
            }),
            expect: |r| matches!(r, DisconnectReason::Protocol(DecodeError::TooDeep { .. })),
        },
        Case {
            name: "garbage",
            behavior: Behavior::handshake_then(resilis_tests::proxy::GARBAGE.to_vec()),
            expect: |r| matches!(r, DisconnectReason::Protocol(_)),
        },
        Case {
            name: "a status line that never ends (16 MiB/s, no CRLF)",
            behavior: Behavior::AfterHandshake(Box::new(Behavior::Endless {
                prefix: b"+".to_vec(),
                chunk: vec![b'a'; 16 * 1024],
                interval: Duration::from_millis(1),
            })),
            expect: |r| {
                matches!(
                    r,
                    DisconnectReason::Protocol(DecodeError::LineTooLong { .. })
                )
            },
        },
        Case {
            name: "an array that trickles in forever, below the rate floor",
            behavior: Behavior::AfterHandshake(Box::new(Behavior::Endless {
                prefix: b"*1000000\r\n".to_vec(),
                chunk: b":1\r\n".to_vec(),
                interval: Duration::from_millis(10),
            })),
            // Bytes keep coming (so the connection is not silent), but at
            // 400 B/s: under the default min_reply_rate of 1 KiB per
            // ping_timeout, the reply is cut.
            expect: |r| matches!(r, DisconnectReason::SlowReply),
        },
        Case {
            // Every element is within the limits: only the bound on a whole
            // reply (max_frame_len) stops it before ping_timeout would.
            name: "an array of legal 64 KiB bulks, 64 MiB/s, forever",
            behavior: Behavior::AfterHandshake(Box::new(Behavior::Endless {
                prefix: b"*1000000\r\n".to_vec(),
                chunk: {
                    let mut bulk = b"$65536\r\n".to_vec();
                    bulk.extend_from_slice(&[b'x'; 65536]);
                    bulk.extend_from_slice(b"\r\n");
                    bulk
                },
                interval: Duration::from_millis(1),
            })),
            expect: |r| {
                matches!(
                    r,
                    DisconnectReason::Protocol(DecodeError::FrameTooLong { .. })
                )
            },
        },
    ]
}

fn reason_of(e: &Event) -> Option<DisconnectReason> {
    match e {
        Event::Disconnected { reason } => Some(*reason),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_replies_close_the_connection_with_a_typed_reason() {
    let panics_before = panics_so_far();
    let mut worst_growth_kib = 0;
    for case in cases() {
        let peak_before = proc_status_kib("VmHWM").expect("VmHWM");
        let server = HostileServer::start(case.behavior.clone());
        let options = fast_options(&server.url(), OfflineMode::QueueThenFail).configure(|c| {
            c.resp_limits = LIMITS;
            c.max_frame_len = MAX_FRAME_LEN;
        });
        let client = start_ready(options).await;
        let log = EventLog::record(&client);

        let sent_at = Instant::now();
        let (ended, took) = timed(COMMAND_TIMEOUT, client.incr("hostile:n")).await;
        let (closed_at, event) = log
            .wait_for(sent_at, Duration::from_secs(3), is_disconnect)
            .await
            .unwrap_or_else(|| panic!("{}: connection never closed", case.name));
        let reason = reason_of(&event).expect("a disconnect");
        let growth = proc_status_kib("VmHWM")
            .expect("VmHWM")
            .saturating_sub(peak_before);
        worst_growth_kib = worst_growth_kib.max(growth);
        println!(
            "scenario 6 ({}): closed after {:?} as {reason:?}; INCR ended {ended:?} in {took:?}; \
             peak RSS +{growth} KiB",
            case.name,
            closed_at - sent_at
        );
        assert!((case.expect)(&reason), "{}: reason {reason:?}", case.name);
        assert!(
            closed_at - sent_at <= CLOSE_WITHIN,
            "{}: closed only after {:?}",
            case.name,
            closed_at - sent_at
        );
        // Written, no valid reply: it may have run.
        assert_eq!(
            ended,
            resilis_tests::harness::Ended::Indeterminate,
            "{}",
            case.name
        );
        assert!(took <= COMMAND_TIMEOUT + SLACK, "{}: {took:?}", case.name);
        let health = client.health();
        let last = health.last_error.expect("health reports the reason");
        assert!(
            last.message.contains("RESP")
                || last.message.contains("limit")
                || matches!(reason, DisconnectReason::SlowReply),
            "{}: {last:?}",
            case.name
        );

        // The driver survived: it reconnects (the handshake is answered
        // properly) and a PING goes through on the fresh connection.
        log.wait_for(closed_at, Duration::from_secs(3), is_ready)
            .await
            .unwrap_or_else(|| panic!("{}: no reconnect", case.name));
        client
            .ping()
            .await
            .unwrap_or_else(|e| panic!("{}: PING after the attack: {e}", case.name));
        assert!(
            matches!(
                client.incr("hostile:n").await,
                Err(Error::Indeterminate { .. })
            ),
            "{}: the next INCR meets the same hostile reply",
            case.name
        );
        client.shutdown().await;
    }
    let peak = proc_status_kib("VmHWM").expect("VmHWM");
    println!(
        "scenario 6: peak RSS growth {worst_growth_kib} KiB at most; peak RSS {peak} KiB; \
         {LIMITS:?}, max_frame_len {MAX_FRAME_LEN}"
    );
    // A frame is refused from its header, a line is cut at its limit and a
    // whole reply at max_frame_len (4 MiB): nothing near the 10 GB or 4 G
    // elements announced, or the endless flood, is ever held.
    assert!(
        worst_growth_kib < 16 * 1024,
        "peak RSS grew by {worst_growth_kib} KiB during a hostile case"
    );
    assert_eq!(panics_so_far(), panics_before, "something panicked");
}

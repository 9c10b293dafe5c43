//! Runs the core through thousands of connect / fail / reconnect cycles in a
//! deterministic simulator, and through random input sequences with proptest,
//! checking its invariants (see `sim/mod.rs`).

mod sim;

use proptest::prelude::*;
use resilis_core::command::{Class, Flags};
use resilis_core::{
    CommandId, Config, Connection, Duration, Instant, Outcome, Output, PhaseKind, Received, Submit,
    TransportError,
};
use sim::Sim;
use std::collections::HashSet;

#[test]
fn thousands_of_cycles_keep_every_invariant() {
    let mut total = sim::Tally::default();
    for seed in 0..100 {
        let mut sim = Sim::new(seed, 8);
        for _ in 0..3_000 {
            sim.step();
        }
        let t = sim.finish();
        total.connects += t.connects;
        total.readies += t.readies;
        total.submitted += t.submitted;
        total.replies += t.replies;
        total.timed_out += t.timed_out;
        total.indeterminate += t.indeterminate;
        total.not_applied += t.not_applied;
        total.fallback += t.fallback;
        total.cancelled += t.cancelled;
        total.slow_replies += t.slow_replies;
        total.max_delay = total.max_delay.max(t.max_delay);
    }
    // The faults really happened and the connection really recovered.
    assert!(total.connects > 2_000, "{total:?}");
    assert!(total.readies > 300, "{total:?}");
    // Every command submitted ended exactly once (`finish` checks each).
    let ended = total.replies
        + total.timed_out
        + total.indeterminate
        + total.not_applied
        + total.fallback
        + total.cancelled;
    assert_eq!(ended, total.submitted, "{total:?}");
    assert!(total.replies > total.submitted / 5, "{total:?}");
    // Every way of ending was exercised, across the three offline policies.
    for (what, n) in [
        ("indeterminate", total.indeterminate),
        ("timed out", total.timed_out),
        ("not applied", total.not_applied),
        ("fallback", total.fallback),
        ("cancelled", total.cancelled),
    ] {
        assert!(n > 0, "no command ended {what}: {total:?}");
    }
    assert!(total.max_delay <= Duration::from_secs(3), "{total:?}");
    // Replies trickled in below min_reply_rate, and were cut for it.
    assert!(total.slow_replies > 0, "{total:?}");
}

#[test]
fn a_fault_free_network_answers_everything() {
    let mut sim = Sim::new(7, 0);
    for _ in 0..2_000 {
        sim.step();
    }
    assert_eq!(sim.conn.phase(), PhaseKind::Ready);
    let t = sim.finish();
    assert_eq!(t.connects, 1);
    assert_eq!(t.indeterminate + t.timed_out, 0, "{t:?}");
    assert!(t.replies > 100, "{t:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn simulated_runs_keep_every_invariant(seed in any::<u64>(), fault_rate in 0u64..60, steps in 10usize..1500) {
        let mut sim = Sim::new(seed, fault_rate);
        for _ in 0..steps {
            sim.step();
        }
        sim.finish();
    }

    /// Inputs in any order, even ones that make no sense for the phase (an
    /// adapter racing its transport), never panic, never resolve a command
    /// twice, and never leave pending work without a timer.
    #[test]
    fn arbitrary_input_sequences(ops in proptest::collection::vec(op(), 1..200)) {
        let mut conn: Connection<16> = Connection::new(Config::default());
        let mut now = Instant::ZERO;
        let mut open = false;
        let mut submitted = HashSet::new();
        let mut resolved = HashSet::new();
        for op in ops {
            match op {
                Op::Advance(ms) => now = now + Duration::from_millis(ms),
                Op::Backwards(ms) => now = Instant::from_micros(now.as_micros().saturating_sub(ms * 1000)),
                Op::Start => conn.handle_start(now),
                Op::Opened => conn.handle_transport_opened(now),
                Op::Tls => conn.handle_tls_established(now),
                Op::Failed(e) => { conn.handle_transport_failed(now, e); open = false; }
                Op::Timeout => conn.handle_timeout(now),
                Op::Retry => conn.handle_retry(now),
                Op::Shutdown => conn.handle_shutdown(now),
                Op::Cancel(id) => conn.handle_cancel(now, CommandId(id)),
                Op::Submit { class, deadline_ms } => {
                    let s = Submit { len: 10, deadline: now + Duration::from_millis(deadline_ms), class };
                    if let Ok(id) = conn.handle_submit(now, s) {
                        prop_assert!(submitted.insert(id));
                    }
                }
                Op::Receive(bytes) => {
                    let mut pos = 0;
                    for _ in 0..100 {
                        match conn.handle_receive(now, &bytes[pos..]) {
                            Received::Reply { id, consumed, .. } => {
                                prop_assert!(consumed > 0 && pos + consumed <= bytes.len());
                                prop_assert!(resolved.insert(id), "resolved twice");
                                pos += consumed;
                            }
                            Received::Push { consumed, .. } | Received::PubSubRefused { consumed, .. } | Received::Internal { consumed } => {
                                prop_assert!(consumed > 0 && pos + consumed <= bytes.len());
                                pos += consumed;
                            }
                            Received::Incomplete { .. } | Received::Discard => break,
                        }
                        if pos == bytes.len() { break; }
                    }
                }
            }
            for _ in 0..1000 {
                match conn.poll_output() {
                    Output::OpenTransport { .. } => { prop_assert!(!open, "two transports"); open = true; }
                    Output::Close => open = false,
                    Output::Resolved { id, outcome } => {
                        prop_assert!(resolved.insert(id), "resolved twice");
                        if outcome == Outcome::TimedOut {
                            prop_assert!(conn.outage_reason().is_none(), "TimedOut while the reason is known");
                        }
                    }
                    Output::TransmitCommand(id) => prop_assert!(!resolved.contains(&id), "{:?} written after it was resolved", id),
                    Output::Wait(deadline) => {
                        let busy = !matches!(conn.phase(), PhaseKind::Idle | PhaseKind::Failed | PhaseKind::GaveUp | PhaseKind::Shutdown);
                        if busy { prop_assert!(deadline.is_some(), "no timer in {:?}", conn.phase()); }
                        break;
                    }
                    _ => {}
                }
            }
        }
        conn.handle_shutdown(now);
        for _ in 0..1000 {
            match conn.poll_output() {
                Output::Resolved { id, .. } => prop_assert!(resolved.insert(id)),
                Output::Wait(_) => break,
                _ => {}
            }
        }
        prop_assert!(resolved.is_superset(&submitted), "unresolved commands after shutdown");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Backwards(u64),
    Start,
    Opened,
    Tls,
    Failed(TransportError),
    Timeout,
    Retry,
    Shutdown,
    Submit { class: Class, deadline_ms: u64 },
    Cancel(u64),
    Receive(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    let replies = prop_oneof![
        Just(b"%1\r\n$5\r\nproto\r\n:3\r\n".to_vec()),
        Just(b"+OK\r\n".to_vec()),
        Just(b"+PONG\r\n".to_vec()),
        Just(b"-WRONGPASS no\r\n".to_vec()),
        Just(b"-ERR unknown command 'HELLO'\r\n".to_vec()),
        Just(vec![0x15, 0x03, 0x03]),
        proptest::collection::vec(any::<u8>(), 0..24),
    ];
    prop_oneof![
        (0u64..40_000).prop_map(Op::Advance),
        (0u64..1_000).prop_map(Op::Backwards),
        Just(Op::Start),
        Just(Op::Opened),
        Just(Op::Tls),
        prop_oneof![
            Just(TransportError::Refused),
            Just(TransportError::Reset),
            Just(TransportError::Closed)
        ]
        .prop_map(Op::Failed),
        Just(Op::Timeout),
        Just(Op::Retry),
        Just(Op::Shutdown),
        (0u8..5, 0u64..20_000).prop_map(|(class, deadline_ms)| Op::Submit {
            class: match class {
                0 => Class::READ,
                1 => Class::CACHED_READ,
                2 => Class::IDEMPOTENT_WRITE,
                3 => Class::new(Flags::WRITE | Flags::BLOCKING),
                _ => Class::WRITE,
            },
            deadline_ms
        }),
        (0u64..20).prop_map(Op::Cancel),
        replies.prop_map(Op::Receive),
    ]
}

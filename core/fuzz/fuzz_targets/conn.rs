//! The connection state machine fed random inputs: byte 0 picks the config
//! knobs (TLS, db, RESP limits, jitter, `min_reply_rate`), then each pair of
//! bytes picks an input (time step, transport event, submit, timeout, or a
//! chunk of reply bytes of the given length from the rest of the data).
//! Checks the core's invariants on every step: no panic, at most one
//! transport, every command resolved exactly once, `consumed` within the
//! buffer, a timer pending whenever the connection is busy.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use resilis_core::command::{Class, Flags};
use resilis_core::{
    CommandId, Config, Connection, Duration, Instant, Output, PhaseKind, Received, Submit,
    TransportError,
};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, mut rest)) = data.split_first() else { return };
    let mut config = Config::default();
    config.tls = knobs & 1 != 0;
    config.db = u32::from(knobs >> 1 & 1);
    config.resp_limits.max_depth = 1 + (knobs >> 2 & 7);
    config.resp_limits.max_bulk_len = 1 << (knobs >> 5);
    config.backoff.jitter_percent = knobs & 0x70;
    // Off, tiny, the default, and more than a chunk can bring: replies
    // trickle in both under and over the floor.
    config.min_reply_rate = [0, 16, 1024, 1 << 20][usize::from(knobs >> 3 & 3)];
    let mut conn: Connection<8> = Connection::new(config);
    let mut now = Instant::ZERO;
    let mut open = false;
    let mut live = HashSet::new();
    let mut rx: Vec<u8> = Vec::new();
    let errors = [TransportError::Refused, TransportError::Reset, TransportError::Closed, TransportError::TlsNotSpoken];
    let mut steps = 0;
    while let [op, arg, tail @ ..] = rest {
        rest = tail;
        steps += 1;
        if steps > 2_000 {
            break;
        }
        match op % 11 {
            0 => now = now + Duration::from_millis(u64::from(*arg) * 50),
            1 => conn.handle_start(now),
            2 => conn.handle_transport_opened(now),
            3 => conn.handle_tls_established(now),
            4 => {
                conn.handle_transport_failed(now, errors[usize::from(*arg) % errors.len()]);
                open = false;
                rx.clear();
            }
            5 => conn.handle_timeout(now),
            6 => {
                let submit = Submit {
                    len: usize::from(*arg),
                    deadline: now + Duration::from_millis(u64::from(*arg) * 20),
                    class: Class::new(Flags(u16::from(*arg))),
                };
                if let Ok(id) = conn.handle_submit(now, submit) {
                    assert!(live.insert(id), "id reused");
                }
            }
            7 => conn.handle_retry(now),
            9 => conn.handle_cancel(now, CommandId(u64::from(*arg) % 32)),
            8 => {
                let n = usize::from(*arg).min(rest.len());
                rx.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                let mut pos = 0;
                for _ in 0..1_000 {
                    match conn.handle_receive(now, &rx[pos..]) {
                        Received::Reply { id, consumed, .. } => {
                            assert!(consumed > 0 && pos + consumed <= rx.len());
                            assert!(live.remove(&id), "reply for a resolved command");
                            pos += consumed;
                        }
                        Received::Push { consumed, .. } | Received::Internal { consumed } => {
                            assert!(consumed > 0 && pos + consumed <= rx.len());
                            pos += consumed;
                        }
                        Received::Incomplete { .. } => break,
                        Received::Discard => {
                            pos = rx.len();
                            break;
                        }
                    }
                    if pos == rx.len() {
                        break;
                    }
                }
                rx.drain(..pos);
            }
            10 => conn.handle_shutdown(now),
            _ => unreachable!("op % 11"),
        }
        for _ in 0..1_000 {
            match conn.poll_output() {
                Output::OpenTransport { .. } => {
                    assert!(!open, "a second transport");
                    open = true;
                }
                Output::Close => {
                    open = false;
                    rx.clear();
                }
                Output::Resolved { id, .. } => assert!(live.remove(&id), "resolved twice"),
                Output::Wait(deadline) => {
                    let idle = matches!(
                        conn.phase(),
                        PhaseKind::Idle | PhaseKind::Failed | PhaseKind::GaveUp | PhaseKind::Shutdown
                    );
                    assert!(idle || deadline.is_some(), "no timer while busy: {:?} in flight {} queued {}", conn.phase(), conn.in_flight(), conn.queued());
                    break;
                }
                Output::Transmit(_) | Output::TransmitCommand(_) | Output::Event(_) => {}
            }
        }
    }
});

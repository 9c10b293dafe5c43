//! Fuzzes the RESP decoder with arbitrary bytes split into arbitrary chunks.
//!
//! Byte 0 picks the limits (bits 0-1), a chunk size of 1-32 bytes (bits 2-6)
//! and, with bit 7 set, a hostile header that byte 1 picks from [`SEEDS`] to
//! put in front of the stream: lengths and counts near 2^32 and 2^64, which
//! random bytes reach only by luck. The rest is the stream. Checked on every
//! input:
//! - no panic, and `consumed` is never 0 nor past the buffer;
//! - decoding the stream whole, in chunks of that size (`decode` starting
//!   over each time), and in chunks of varying sizes (`decode_resume` going
//!   on where it stopped) gives the same frames, in the same places, and the
//!   same kind of error;
//! - each `decode_resume` answer is exactly `decode`'s on the same bytes;
//! - `Incomplete { needed: Some(n) }` keeps its promise: with n bytes the
//!   answer is no longer `Incomplete`;
//! - every aggregate iterates to exactly `len()` elements.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resilis_core::resp::{Decoded, Frame, Limits, Resume, decode, decode_resume};

/// Headers whose lengths wrap a 32-bit `usize` or overflow a 64-bit one.
const SEEDS: &[&[u8]] = &[
    b"$4294967297\r\n",
    b"$4294967296\r\n",
    b"$4294967295\r\n",
    b"$18446744073709551615\r\n",
    b"$18446744073709551616\r\n",
    b"!4294967297\r\n",
    b"*4294967297\r\n",
    b"*4294967295\r\n",
    b"%2147483649\r\n",
    b"%2147483648\r\n",
    b"|2147483649\r\n",
    b"*1\r\n*4294967297\r\n",
    b"*2\r\n:1\r\n$4294967297\r\n",
    b"*18446744073709551616\r\n",
    b"~9223372036854775808\r\n",
];

/// What happened at one step, comparable across chunkings.
#[derive(Debug, PartialEq)]
enum Step {
    Frame { consumed: usize, nodes: usize },
    Error(core::mem::Discriminant<resilis_core::resp::DecodeError>),
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, rest)) = input.split_first() else {
        return;
    };
    let limits = match control & 3 {
        0 => Limits::REDIS,
        1 => Limits {
            max_depth: 4,
            max_bulk_len: 32,
            max_aggregate_len: 8,
            max_elements: 12,
        },
        2 => Limits {
            max_depth: 64,
            max_bulk_len: 0,
            max_aggregate_len: 1,
            max_elements: 3,
        },
        _ => Limits {
            max_depth: 255,
            max_bulk_len: usize::MAX,
            max_aggregate_len: usize::MAX,
            max_elements: usize::MAX,
        },
    };
    let chunk = usize::from((control >> 2) & 0x1f) + 1;
    let mut stream = Vec::new();
    let rest = match rest.split_first() {
        Some((&pick, tail)) if control & 0x80 != 0 => {
            stream.extend_from_slice(SEEDS[usize::from(pick) % SEEDS.len()]);
            tail
        }
        _ => rest,
    };
    stream.extend_from_slice(rest);

    let whole = run(&stream, || stream.len().max(1), false, &limits);
    let chunked = run(&stream, || chunk, false, &limits);
    assert_eq!(whole, chunked);
    // Sizes from 1 to 64 bytes, from a generator seeded by the input.
    let mut seed = u32::from(control) << 16 | stream.len() as u32 | 1;
    let varying = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed % 64) as usize + 1
    };
    let resumed = run(&stream, varying, true, &limits);
    assert_eq!(whole, resumed);
});

/// Feeds `stream` in pieces of `next_size()` bytes, decoding everything
/// decodable after each, with `decode` or with `decode_resume` (one state
/// kept across the pieces of each frame, its every answer checked against
/// `decode`'s on the same bytes).
fn run(
    stream: &[u8],
    mut next_size: impl FnMut() -> usize,
    resume: bool,
    limits: &Limits,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut state = Resume::new();
    let mut start = 0;
    let mut end = 0;
    while end < stream.len() {
        end = (end + next_size()).min(stream.len());
        loop {
            let pending = &stream[start..end];
            let answer = if resume {
                let answer = decode_resume(pending, limits, &mut state);
                assert_eq!(answer, decode(pending, limits));
                answer
            } else {
                decode(pending, limits)
            };
            match answer {
                Ok(Decoded::Frame {
                    frame,
                    attributes,
                    consumed,
                }) => {
                    assert!(consumed > 0 && consumed <= pending.len());
                    let mut nodes = walk(frame);
                    if let Some(attributes) = attributes {
                        nodes += walk(Frame::Map(attributes));
                    }
                    steps.push(Step::Frame { consumed, nodes });
                    start += consumed;
                }
                Ok(Decoded::Incomplete { needed }) => {
                    if let Some(needed) = needed {
                        assert!(needed > pending.len());
                        check_needed(&stream[start..], needed, limits);
                    }
                    break;
                }
                Err(e) => {
                    steps.push(Step::Error(core::mem::discriminant(&e)));
                    return steps;
                }
            }
        }
    }
    steps
}

/// With `needed` bytes from where the pending frame starts, it is no longer
/// incomplete.
fn check_needed(from_frame: &[u8], needed: usize, limits: &Limits) {
    // A saturated `needed` (a bulk near usize::MAX) is beyond any stream.
    if let Some(enough) = from_frame.get(..needed) {
        assert!(!matches!(
            decode(enough, limits),
            Ok(Decoded::Incomplete { .. })
        ));
    }
}

/// Counts every frame in the tree, iterating every aggregate to its end.
fn walk(frame: Frame<'_>) -> usize {
    match frame {
        Frame::Array(a) | Frame::Map(a) | Frame::Set(a) | Frame::Push(a) => {
            let mut count = 0;
            let mut nodes = 1;
            for item in a.iter() {
                count += 1;
                nodes += walk(item);
            }
            assert_eq!(count, a.len());
            nodes
        }
        _ => 1,
    }
}

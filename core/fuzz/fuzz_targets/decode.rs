//! Fuzzes the RESP decoder with arbitrary bytes split into arbitrary chunks.
//!
//! The first input byte picks the limits and the chunk size; the rest is the
//! stream. Checked on every input:
//! - no panic, and `consumed` is never 0 nor past the buffer;
//! - decoding the stream whole and in chunks gives the same frames, in the
//!   same places, and the same kind of error;
//! - `Incomplete { needed: Some(n) }` keeps its promise: with n bytes the
//!   answer is no longer `Incomplete`;
//! - every aggregate iterates to exactly `len()` elements.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resilis_core::resp::{Decoded, Frame, Limits, decode};

/// What happened at one step, comparable across chunkings.
#[derive(Debug, PartialEq)]
enum Step {
    Frame { consumed: usize, nodes: usize },
    Error(core::mem::Discriminant<resilis_core::resp::DecodeError>),
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, stream)) = input.split_first() else {
        return;
    };
    let limits = match control & 3 {
        0 => Limits::REDIS,
        1 => Limits {
            max_depth: 4,
            max_bulk_len: 32,
            max_aggregate_len: 8,
        },
        2 => Limits {
            max_depth: 64,
            max_bulk_len: 0,
            max_aggregate_len: 1,
        },
        _ => Limits {
            max_depth: 255,
            max_bulk_len: usize::MAX,
            max_aggregate_len: usize::MAX,
        },
    };
    let chunk = usize::from(control >> 2) + 1;
    let whole = run(stream, stream.len().max(1), &limits);
    let chunked = run(stream, chunk, &limits);
    assert_eq!(whole, chunked);
});

/// Feeds `stream` `chunk` bytes at a time, decoding everything decodable.
fn run(stream: &[u8], chunk: usize, limits: &Limits) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    for piece in stream.chunks(chunk) {
        pending.extend_from_slice(piece);
        loop {
            match decode(&pending, limits) {
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
                    pending.drain(..consumed);
                }
                Ok(Decoded::Incomplete { needed }) => {
                    if let Some(needed) = needed {
                        assert!(needed > pending.len());
                        check_needed(stream, &steps, needed, limits);
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
fn check_needed(stream: &[u8], steps: &[Step], needed: usize, limits: &Limits) {
    let start: usize = steps
        .iter()
        .map(|s| match s {
            Step::Frame { consumed, .. } => *consumed,
            Step::Error(_) => 0,
        })
        .sum();
    // A saturated `needed` (a bulk near usize::MAX) is beyond any stream.
    if let Some(enough) = start
        .checked_add(needed)
        .and_then(|end| stream.get(start..end))
    {
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

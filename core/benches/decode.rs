//! Decoding throughput on one mixed reply corpus: resilis-core against
//! redis-protocol (its zero-copy `decode_range` and its `decode_bytes`) and
//! redis-rs's parser. Each decoder reads every frame of the corpus in order;
//! ours also walks every element of every aggregate, since the others build
//! the whole tree.
//!
//! Run `cargo bench -p resilis-core --bench decode`, then
//! `sh core/benches/mbps.sh` for the MB/s table.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use resilis_core::resp::{Decoded, Frame, Limits, decode};

/// Replies as a server sends them: many short status and integer replies,
/// small and large bulks, arrays of bulks (MGET), maps (HGETALL in RESP3;
/// flat arrays in RESP2).
fn corpus(resp3: bool) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut frames = 0;
    let bulk16 = b"$16\r\n0123456789abcdef\r\n";
    let big = vec![b'x'; 4096];
    for round in 0..16 {
        for _ in 0..10 {
            out.extend_from_slice(b"+OK\r\n");
            out.extend_from_slice(format!(":{}\r\n", 1_000_000 + round).as_bytes());
            out.extend_from_slice(bulk16);
            frames += 3;
        }
        out.extend_from_slice(b"$4096\r\n");
        out.extend_from_slice(&big);
        out.extend_from_slice(b"\r\n");
        frames += 1;
        for _ in 0..5 {
            out.extend_from_slice(b"*10\r\n");
            (0..10).for_each(|_| out.extend_from_slice(bulk16));
            frames += 1;
        }
        for _ in 0..2 {
            out.extend_from_slice(if resp3 { b"%5\r\n" } else { b"*10\r\n" });
            for i in 0..5 {
                out.extend_from_slice(format!("$6\r\nfield{i}\r\n:{}\r\n", 42 + i).as_bytes());
            }
            frames += 1;
        }
    }
    (out, frames)
}

/// Touches every element, so laziness does not get a free lunch.
fn walk(frame: Frame<'_>) -> usize {
    match frame {
        Frame::Array(a) | Frame::Map(a) | Frame::Set(a) | Frame::Push(a) => {
            a.iter().map(walk).sum::<usize>() + 1
        }
        Frame::BulkString(b) | Frame::SimpleString(b) => b.len(),
        Frame::Integer(n) => n as usize,
        _ => 1,
    }
}

fn resilis(buf: &[u8]) -> usize {
    let mut at = 0;
    let mut sum = 0;
    while let Ok(Decoded::Frame {
        frame, consumed, ..
    }) = decode(&buf[at..], &Limits::REDIS)
    {
        sum += walk(frame);
        at += consumed;
    }
    assert_eq!(at, buf.len());
    sum
}

/// Validation only: what a caller pays to learn the frame is complete and
/// well-formed before looking at any of it.
fn resilis_validate(buf: &[u8]) -> usize {
    let mut at = 0;
    while let Ok(Decoded::Frame { consumed, .. }) = decode(&buf[at..], &Limits::REDIS) {
        at += consumed;
    }
    assert_eq!(at, buf.len());
    at
}

fn redis_protocol_resp3_range(buf: &[u8]) -> usize {
    let mut at = 0;
    while let Ok(Some((frame, n))) =
        redis_protocol::resp3::decode::complete::decode_range(&buf[at..])
    {
        black_box(frame);
        at += n;
    }
    assert_eq!(at, buf.len());
    at
}

fn redis_protocol_resp3_bytes(buf: &Bytes) -> usize {
    let mut rest = buf.clone();
    while let Ok(Some((frame, n))) = redis_protocol::resp3::decode::complete::decode_bytes(&rest) {
        black_box(frame);
        rest = rest.slice(n..);
    }
    assert!(rest.is_empty());
    buf.len()
}

fn redis_protocol_resp2_range(buf: &[u8]) -> usize {
    let mut at = 0;
    while let Ok(Some((frame, n))) = redis_protocol::resp2::decode::decode_range(&buf[at..]) {
        black_box(frame);
        at += n;
    }
    assert_eq!(at, buf.len());
    at
}

fn redis_protocol_resp2_bytes(buf: &Bytes) -> usize {
    let mut rest = buf.clone();
    while let Ok(Some((frame, n))) = redis_protocol::resp2::decode::decode_bytes(&rest) {
        black_box(frame);
        rest = rest.slice(n..);
    }
    assert!(rest.is_empty());
    buf.len()
}

fn redis_rs(buf: &[u8], frames: usize) -> usize {
    let mut reader = buf;
    let mut parser = redis::Parser::new();
    for _ in 0..frames {
        black_box(
            parser
                .parse_value(&mut reader)
                .expect("redis-rs parses the corpus"),
        );
    }
    frames
}

fn bench(c: &mut Criterion) {
    for (name, resp3) in [("resp3_mixed", true), ("resp2_mixed", false)] {
        let (buf, frames) = corpus(resp3);
        let shared = Bytes::from(buf.clone());
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(buf.len() as u64));
        group.bench_function("resilis-core", |b| b.iter(|| resilis(black_box(&buf))));
        group.bench_function("resilis-core validate only", |b| {
            b.iter(|| resilis_validate(black_box(&buf)))
        });
        if resp3 {
            group.bench_function("redis-protocol decode_range", |b| {
                b.iter(|| redis_protocol_resp3_range(black_box(&buf)))
            });
            group.bench_function("redis-protocol decode_bytes", |b| {
                b.iter(|| redis_protocol_resp3_bytes(black_box(&shared)))
            });
        } else {
            group.bench_function("redis-protocol decode_range", |b| {
                b.iter(|| redis_protocol_resp2_range(black_box(&buf)))
            });
            group.bench_function("redis-protocol decode_bytes", |b| {
                b.iter(|| redis_protocol_resp2_bytes(black_box(&shared)))
            });
        }
        group.bench_function("redis-rs parse_value", |b| {
            b.iter(|| redis_rs(black_box(&buf), frames))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

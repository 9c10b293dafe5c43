//! Decoding throughput on one mixed reply corpus: resilis-core against
//! redis-protocol (its zero-copy `decode_range` and its `decode_bytes`) and
//! redis-rs's parser. Each decoder reads every frame of the corpus in order;
//! ours also walks every element of every aggregate, since the others build
//! the whole tree.
//!
//! Then one ~13 MB reply (HGETALL-shaped: a RESP2 array of bulks, and the
//! same pairs as a RESP3 map) decoded in one piece and as it arrives, 16 KiB
//! or 64 KiB more at a time, through `decode_resume`.
//!
//! Run `cargo bench -p resilis-core --bench decode`, then
//! `sh core/benches/mbps.sh` for the MB/s table.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use resilis_core::resp::{Decoded, Frame, Limits, Resume, decode, decode_resume};

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

/// [`resilis_validate`] through `decode_resume` with one long-lived state,
/// as `Connection::handle_receive` reads whole frames.
fn resilis_validate_resumable(buf: &[u8]) -> usize {
    let mut state = Resume::new();
    let mut at = 0;
    while let Ok(Decoded::Frame { consumed, .. }) =
        decode_resume(&buf[at..], &Limits::REDIS, &mut state)
    {
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

/// HGETALL of 100 000 fields: `field:000000`..`field:099999`, each with a
/// 100-byte value; 12.7 MB either way.
fn big_reply(resp3: bool) -> Vec<u8> {
    const PAIRS: usize = 100_000;
    let value = [b'v'; 100];
    let mut out = Vec::with_capacity(PAIRS * 128);
    if resp3 {
        out.extend_from_slice(format!("%{PAIRS}\r\n").as_bytes());
    } else {
        out.extend_from_slice(format!("*{}\r\n", 2 * PAIRS).as_bytes());
    }
    for i in 0..PAIRS {
        out.extend_from_slice(format!("$12\r\nfield:{i:06}\r\n$100\r\n").as_bytes());
        out.extend_from_slice(&value);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The reply as it arrives `chunk` bytes at a time, each arrival decoded
/// with the same state: what a connection's read loop does.
fn resumed(buf: &[u8], chunk: usize) -> usize {
    let mut state = Resume::new();
    let mut end = 0;
    loop {
        end = (end + chunk).min(buf.len());
        match decode_resume(&buf[..end], &Limits::REDIS, &mut state) {
            Ok(Decoded::Incomplete { .. }) => {}
            Ok(Decoded::Frame { consumed, .. }) => return consumed,
            Err(e) => panic!("{e}"),
        }
    }
}

/// The same arrivals decoded by stateless `decode`, which starts over each
/// time: what the read loop did before `decode_resume`.
fn restarted(buf: &[u8], chunk: usize) -> usize {
    let mut end = 0;
    loop {
        end = (end + chunk).min(buf.len());
        match decode(&buf[..end], &Limits::REDIS) {
            Ok(Decoded::Incomplete { .. }) => {}
            Ok(Decoded::Frame { consumed, .. }) => return consumed,
            Err(e) => panic!("{e}"),
        }
    }
}

fn one_shot(buf: &[u8]) -> usize {
    match decode(buf, &Limits::REDIS) {
        Ok(Decoded::Frame { consumed, .. }) => consumed,
        other => panic!("{other:?}"),
    }
}

fn bench_big_reply(c: &mut Criterion) {
    for (name, resp3) in [("resp2_hgetall_13mb", false), ("resp3_map_13mb", true)] {
        let buf = big_reply(resp3);
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(buf.len() as u64));
        group.sample_size(20);
        group.bench_function("decode one piece", |b| b.iter(|| one_shot(black_box(&buf))));
        group.bench_function("decode_resume 16 KiB pieces", |b| {
            b.iter(|| resumed(black_box(&buf), 16 * 1024))
        });
        group.bench_function("decode_resume 64 KiB pieces", |b| {
            b.iter(|| resumed(black_box(&buf), 64 * 1024))
        });
        if !resp3 {
            // Quadratic: ~800 restarts, each over half the reply on average.
            group.sample_size(10);
            group.bench_function("decode restarted 16 KiB pieces", |b| {
                b.iter(|| restarted(black_box(&buf), 16 * 1024))
            });
        }
        group.finish();
    }
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
        group.bench_function("resilis-core validate only, decode_resume", |b| {
            b.iter(|| resilis_validate_resumable(black_box(&buf)))
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

criterion_group!(benches, bench, bench_big_reply);
criterion_main!(benches);

//! The RESP codec on the real instruction set: every frame type decodes with
//! the right length, every strict prefix is `Incomplete`, garbage and limit
//! breaches are errors, lengths past 2^32 are refused as on a 64-bit host
//! (this `usize` is 32 bits), resumed decoding agrees with one-shot decoding
//! however a reply is cut, and commands encoded by the encoder decode back to
//! their arguments (byte-exact, binary-safe).
#![no_std]
#![no_main]

use core::mem::discriminant;

use cortex_m_rt::entry;
use heapless::Vec;
use panic_semihosting as _;
use resilis_core::resp::encode::{self, Expiry, SetCondition, SetOptions, Sink};
use resilis_core::resp::{
    DecodeError, Decoded, Double, Frame, Limits, MAX_DEPTH_CAP, Resume, decode, decode_resume,
};

#[track_caller]
fn whole(bytes: &[u8]) -> Frame<'_> {
    match decode(bytes, &Limits::REDIS) {
        Ok(Decoded::Frame {
            frame, consumed, ..
        }) => {
            assert_eq!(consumed, bytes.len(), "consumed all of {bytes:?}");
            frame
        }
        other => panic!("{bytes:?} decoded to {other:?}"),
    }
}

#[track_caller]
fn every_prefix_incomplete(bytes: &[u8]) {
    for cut in 0..bytes.len() {
        match decode(&bytes[..cut], &Limits::REDIS) {
            Ok(Decoded::Incomplete { needed }) => {
                if let Some(n) = needed {
                    assert!(n > cut && n <= bytes.len(), "needed {n} at cut {cut}");
                }
            }
            other => panic!("prefix {cut} of {bytes:?} decoded to {other:?}"),
        }
    }
}

const SCALARS: &[&[u8]] = &[
    b"+OK\r\n",
    b"-ERR unknown command\r\n",
    b":-42\r\n",
    b"$5\r\nhe\r\no\r\n",
    b"$0\r\n\r\n",
    b"$-1\r\n",
    b"_\r\n",
    b"#t\r\n",
    b",3.25\r\n",
    b",-inf\r\n",
    b"(3492890328409238509324850943850943825024385\r\n",
    b"!21\r\nSYNTAX invalid syntax\r\n",
    b"=15\r\ntxt:Some string\r\n",
];

fn double(text: &'static [u8]) -> Double<'static> {
    Double::parse(text).expect("a valid double")
}

fn scalars_decode_to_their_values() {
    let expected = [
        Frame::SimpleString(b"OK"),
        Frame::SimpleError(b"ERR unknown command"),
        Frame::Integer(-42),
        Frame::BulkString(b"he\r\no"),
        Frame::BulkString(b""),
        Frame::Null,
        Frame::Null,
        Frame::Boolean(true),
        Frame::Double(double(b"3.25")),
        Frame::Double(double(b"-inf")),
        Frame::BigNumber(b"3492890328409238509324850943850943825024385"),
        Frame::BulkError(b"SYNTAX invalid syntax"),
        Frame::Verbatim {
            format: *b"txt",
            text: b"Some string",
        },
    ];
    for (bytes, want) in SCALARS.iter().zip(expected.iter()) {
        assert_eq!(whole(bytes), *want);
        every_prefix_incomplete(bytes);
    }
}

fn aggregates_validate_whole_and_iterate_lazily() {
    let map = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n";
    let Frame::Map(m) = whole(map) else {
        panic!("not a map")
    };
    assert_eq!(m.len(), 4);
    let items: Vec<Frame<'_>, 4> = m.iter().collect();
    assert_eq!(
        items,
        [
            Frame::BulkString(b"server"),
            Frame::BulkString(b"redis"),
            Frame::BulkString(b"proto"),
            Frame::Integer(3)
        ]
    );
    every_prefix_incomplete(map);

    let nested = b"*3\r\n:1\r\n*2\r\n+a\r\n~1\r\n#f\r\n>2\r\n$7\r\nmessage\r\n_\r\n";
    let Frame::Array(a) = whole(nested) else {
        panic!("not an array")
    };
    let mut it = a.iter();
    assert_eq!(it.next(), Some(Frame::Integer(1)));
    let Some(Frame::Array(inner)) = it.next() else {
        panic!("no inner array")
    };
    assert_eq!(inner.iter().next(), Some(Frame::SimpleString(b"a")));
    let Some(Frame::Push(push)) = it.next() else {
        panic!("no push")
    };
    assert_eq!(push.len(), 2);
    assert_eq!(it.next(), None);
    every_prefix_incomplete(nested);
}

fn pipelined_frames_decode_one_at_a_time() {
    let stream = b"+OK\r\n:1\r\n$3\r\nbar\r\n";
    let mut rest: &[u8] = stream;
    let mut frames: Vec<Frame<'_>, 3> = Vec::new();
    while !rest.is_empty() {
        let Ok(Decoded::Frame {
            frame, consumed, ..
        }) = decode(rest, &Limits::REDIS)
        else {
            panic!("stream broke at {rest:?}")
        };
        frames.push(frame).expect("three frames");
        rest = &rest[consumed..];
    }
    assert_eq!(
        frames,
        [
            Frame::SimpleString(b"OK"),
            Frame::Integer(1),
            Frame::BulkString(b"bar")
        ]
    );
}

fn garbage_and_limits_are_errors() {
    assert_eq!(
        decode(b"HTTP/1.1 400\r\n", &Limits::REDIS),
        Err(DecodeError::UnknownType { byte: b'H' })
    );
    assert_eq!(
        decode(b":12x\r\n", &Limits::REDIS),
        Err(DecodeError::InvalidNumber)
    );
    assert_eq!(
        decode(b"$3\r\nfooXY", &Limits::REDIS),
        Err(DecodeError::MissingCrlf)
    );
    let small = Limits {
        max_depth: 2,
        max_bulk_len: 16,
        max_aggregate_len: 4,
        max_elements: 6,
    };
    // Refused from the header alone: a hostile length never makes us wait
    // for (or buffer) its payload.
    assert_eq!(
        decode(b"$1000000\r\n", &small),
        Err(DecodeError::BulkTooLong {
            len: 1_000_000,
            max: 16
        })
    );
    assert_eq!(
        decode(b"*5\r\n", &small),
        Err(DecodeError::AggregateTooLong { len: 5, max: 4 })
    );
    assert_eq!(
        decode(b"*1\r\n*1\r\n*1\r\n:1\r\n", &small),
        Err(DecodeError::TooDeep { max: 2 })
    );
    // Elements of every aggregate together: 4 + 3 > 6, refused at the
    // header that goes over.
    assert_eq!(
        decode(b"*4\r\n*3\r\n", &small),
        Err(DecodeError::TooManyElements { max: 6 })
    );
    // Deep nesting within the limit needs no recursion: a fixed stack.
    let mut deep: Vec<u8, 256> = Vec::new();
    for _ in 0..32 {
        deep.extend_from_slice(b"*1\r\n").expect("fits");
    }
    deep.extend_from_slice(b":7\r\n").expect("fits");
    assert!(matches!(whole(&deep), Frame::Array(_)));
    deep.clear();
    for _ in 0..33 {
        deep.extend_from_slice(b"*1\r\n").expect("fits");
    }
    assert_eq!(
        decode(&deep, &Limits::REDIS),
        Err(DecodeError::TooDeep { max: 32 })
    );
}

/// Feeds `bytes` to `decode_resume` `chunk` bytes more at a time; every
/// answer must be `decode`'s on the same bytes. Returns the last one.
#[track_caller]
fn resumed<'a>(bytes: &'a [u8], limits: &Limits, chunk: usize) -> Result<Decoded<'a>, DecodeError> {
    let mut state = Resume::new();
    let mut end = 0;
    loop {
        end = (end + chunk).min(bytes.len());
        let answer = decode_resume(&bytes[..end], limits, &mut state);
        assert_eq!(answer, decode(&bytes[..end], limits), "cut at {end}");
        if end == bytes.len() || !matches!(answer, Ok(Decoded::Incomplete { .. })) {
            return answer;
        }
    }
}

/// On a 32-bit `usize` a length accumulated in `usize` wraps: `$4294967297`
/// would read as `$1` and frame a different reply than on a 64-bit host.
/// Every one of these is refused here exactly as there, whole or resumed.
fn lengths_past_u32_are_refused() {
    let r = &Limits::REDIS;
    let bulk = |len| DecodeError::BulkTooLong {
        len,
        max: r.max_bulk_len,
    };
    let aggregate = |len| DecodeError::AggregateTooLong {
        len,
        max: u32::MAX as usize,
    };
    let cases: [(&[u8], DecodeError); 12] = [
        (b"$4294967297\r\nX\r\n", bulk(4_294_967_297)),
        (b"$4294967296\r\n\r\n", bulk(4_294_967_296)),
        (b"*2\r\n:1\r\n$4294967297\r\nX\r\n", bulk(4_294_967_297)),
        (b"*1\r\n*1\r\n$4294967297\r\nX\r\n", bulk(4_294_967_297)),
        (b"$18446744073709551616\r\nX\r\n", bulk(u64::MAX)),
        (b"*1\r\n$18446744073709551617\r\n", bulk(u64::MAX)),
        (b"*4294967297\r\n:1\r\n", aggregate(4_294_967_297)),
        (b"*1\r\n*4294967297\r\n:1\r\n", aggregate(4_294_967_297)),
        (b"%2147483649\r\n+k\r\n+v\r\n", aggregate(4_294_967_298)),
        (b"*1\r\n~1\r\n%2147483649\r\n", aggregate(4_294_967_298)),
        (b"*18446744073709551616\r\n", aggregate(u64::MAX)),
        (b"%9223372036854775808\r\n", aggregate(u64::MAX)),
    ];
    for (bytes, error) in cases {
        assert_eq!(decode(bytes, r), Err(error), "{bytes:?}");
        // Cut short, a limit error reports the length as far as it arrived.
        for chunk in 1..=bytes.len() {
            let Err(cut) = resumed(bytes, r, chunk) else {
                panic!("{bytes:?} in pieces of {chunk}");
            };
            assert_eq!(discriminant(&cut), discriminant(&error), "{bytes:?}");
        }
    }
    // Just under the ceiling: waits for the elements.
    assert_eq!(
        decode(b"*4294967295\r\n:1\r\n", r),
        Ok(Decoded::Incomplete { needed: None })
    );
    // No limit lifts the ceiling, and a bulk this `usize` cannot hold is
    // refused rather than wrapped.
    let loose = Limits {
        max_depth: MAX_DEPTH_CAP,
        max_bulk_len: usize::MAX,
        max_aggregate_len: usize::MAX,
        max_elements: usize::MAX,
    };
    assert_eq!(
        decode(b"$4294967297\r\nX\r\n", &loose),
        Err(DecodeError::BulkTooLong {
            len: 4_294_967_297,
            max: usize::MAX
        })
    );
    assert_eq!(
        decode(b"*1\r\n%2147483649\r\n", &loose),
        Err(aggregate(4_294_967_298))
    );
}

/// `decode_resume` on the real instruction set: the same answers as
/// `decode` at every cut, nesting and attributes included, in a state of
/// fixed size.
fn resumed_decoding_agrees_with_one_shot() {
    let replies: [&[u8]; 4] = [
        b"|1\r\n+ttl\r\n:3\r\n*3\r\n$5\r\nhello\r\n%1\r\n+k\r\n*1\r\n:1\r\n+tail\r\n",
        b"*1\r\n*1\r\n*1\r\n*2\r\n|1\r\n+k\r\n+v\r\n$3\r\nabc\r\n_\r\n",
        b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n",
        b"-ERR unknown command\r\n",
    ];
    for reply in replies {
        for chunk in 1..=reply.len() {
            let Ok(Decoded::Frame { consumed, .. }) = resumed(reply, &Limits::REDIS, chunk) else {
                panic!("{reply:?} in pieces of {chunk}");
            };
            assert_eq!(consumed, reply.len());
        }
    }
    // The element budget is carried from one call to the next.
    let budget = Limits {
        max_elements: 3,
        ..Limits::REDIS
    };
    assert_eq!(
        resumed(b"*2\r\n:1\r\n*2\r\n:2\r\n:3\r\n", &budget, 1),
        Err(DecodeError::TooManyElements { max: 3 })
    );
    // What a connection keeps for a reply in progress: the 64-entry stack
    // of u32 counts (256 bytes), positions, the frame's own header.
    assert!(core::mem::size_of::<Resume>() <= 320);
}

/// Decodes an encoded command back into its arguments.
#[track_caller]
fn args_of(bytes: &[u8]) -> Vec<&[u8], 8> {
    let Frame::Array(a) = whole(bytes) else {
        panic!("commands are arrays")
    };
    a.iter()
        .map(|f| match f {
            Frame::BulkString(b) => b,
            other => panic!("argument {other:?} is not a bulk string"),
        })
        .collect()
}

fn commands_round_trip() {
    let mut buf = [0u8; 128];
    let n = encode::ping(&mut buf).expect("fits");
    assert_eq!(&buf[..n], b"*1\r\n$4\r\nPING\r\n");

    let value = b"bin\r\n\x00ary";
    let opts = SetOptions {
        expiry: Some(Expiry::Ex(30)),
        condition: Some(SetCondition::Nx),
        get: false,
    };
    let n = encode::set(&mut buf, b"gw:heartbeat", value, &opts).expect("fits");
    assert_eq!(
        args_of(&buf[..n]),
        [&b"SET"[..], b"gw:heartbeat", value, b"EX", b"30", b"NX"]
    );

    let n = encode::hello(&mut buf, 3, Some((b"default", b"p@ss")), Some(b"gw-1")).expect("fits");
    assert_eq!(
        args_of(&buf[..n]),
        [
            &b"HELLO"[..],
            b"3",
            b"AUTH",
            b"default",
            b"p@ss",
            b"SETNAME",
            b"gw-1"
        ]
    );

    // A short buffer fails whole and says how much is needed.
    let mut tiny = [0u8; 8];
    assert_eq!(
        encode::get(&mut tiny, b"key"),
        Err(encode::EncodeError::BufferTooSmall { needed: 22 })
    );

    // Pipelining through a sink.
    let mut out: Vec<u8, 64> = Vec::new();
    out.append_with(|b| encode::get(b, b"k")).expect("fits");
    out.append_with(encode::ping).expect("fits");
    assert_eq!(
        &out[..],
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n"
    );
}

#[entry]
fn main() -> ! {
    resilis_qemu::run(
        "resp_codec",
        &[
            (
                "scalars_decode_to_their_values",
                scalars_decode_to_their_values,
            ),
            (
                "aggregates_validate_whole_and_iterate_lazily",
                aggregates_validate_whole_and_iterate_lazily,
            ),
            (
                "pipelined_frames_decode_one_at_a_time",
                pipelined_frames_decode_one_at_a_time,
            ),
            (
                "garbage_and_limits_are_errors",
                garbage_and_limits_are_errors,
            ),
            ("lengths_past_u32_are_refused", lengths_past_u32_are_refused),
            (
                "resumed_decoding_agrees_with_one_shot",
                resumed_decoding_agrees_with_one_shot,
            ),
            ("commands_round_trip", commands_round_trip),
        ],
    )
}

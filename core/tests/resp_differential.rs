//! Differential tests against redis-protocol 6: what one encodes the other
//! decodes to the same frame, and on random bytes both agree on valid /
//! invalid / incomplete, except for the differences listed here (and in the
//! `resp` module docs), each of them deliberate:
//!
//! 1. Limits. We refuse bulks, aggregates and nesting over `Limits`, and a
//!    line (simple string or error) without CRLF after a bound, as soon as
//!    the header shows it; redis-protocol waits for the bytes (and recurses
//!    once per level, so deep input can exhaust its stack).
//! 2. Strictness. We check every terminator: a bulk's trailing CRLF (they
//!    skip two bytes unchecked), `_`, `#t` and lines holding a lone CR (they
//!    read to the first CRLF). A big number must be digits; a verbatim's 4th
//!    byte must be `:`. Lengths take no `+` sign. We report these as errors
//!    where they report a frame or wait for more.
//! 3. Errors early. We reject bytes as soon as they are impossible, even in
//!    an incomplete frame; they often wait for a CRLF first.
//! 4. Leniency. We accept RESP2 nulls (`$-1`, `*-1`) in a RESP3 stream
//!    (their RESP3 decoder reads -1 as a streamed length and fails), any
//!    3-byte verbatim format (they know `txt` and `mkd`), and aggregates as
//!    map keys or set members (allowed by the spec; they cannot hash them).
//! 5. Streams and HELLO. Streamed types (`$?`, `;`, `.`) are
//!    `StreamedUnsupported` here; they decode chunks and end markers as
//!    frames. An inline `HELLO ...` line is `UnknownType` here; they parse it.
//! 6. Maps and sets are hash maps to them: order is lost and duplicates
//!    collapse, so comparisons go through their types.

mod resp_common;

use proptest::prelude::*;
use redis_protocol::resp2::types::OwnedFrame as R2;
use redis_protocol::resp3::types::{FrameMap, FrameSet, OwnedFrame as R3, VerbatimStringFormat};
use resilis_core::resp::{DecodeError, Decoded, Frame, Limits, decode, encode};
use resp_common::{Model, model};

/// Our frame as redis-protocol's, to compare through their equality. None
/// when they cannot represent it (difference 4).
fn ours_to_r3(frame: Frame<'_>) -> Option<R3> {
    let items =
        |a: resilis_core::resp::Aggregate<'_>| a.iter().map(ours_to_r3).collect::<Option<Vec<_>>>();
    Some(match frame {
        Frame::SimpleString(s) => R3::SimpleString {
            data: s.to_vec(),
            attributes: None,
        },
        Frame::SimpleError(s) => R3::SimpleError {
            data: String::from_utf8(s.to_vec()).ok()?,
            attributes: None,
        },
        Frame::Integer(n) => R3::Number {
            data: n,
            attributes: None,
        },
        Frame::BulkString(s) => R3::BlobString {
            data: s.to_vec(),
            attributes: None,
        },
        Frame::Null => R3::Null,
        Frame::Array(a) => R3::Array {
            data: items(a)?,
            attributes: None,
        },
        Frame::Push(a) => R3::Push {
            data: items(a)?,
            attributes: None,
        },
        Frame::Set(a) => {
            let v = items(a)?;
            if !v.iter().all(hashable) {
                return None;
            }
            R3::Set {
                data: v.into_iter().collect::<FrameSet<_>>(),
                attributes: None,
            }
        }
        Frame::Map(a) => {
            let v = items(a)?;
            let mut map = FrameMap::default();
            let mut it = v.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if !hashable(&k) {
                    return None;
                }
                map.insert(k, v);
            }
            R3::Map {
                data: map,
                attributes: None,
            }
        }
        Frame::Boolean(b) => R3::Boolean {
            data: b,
            attributes: None,
        },
        Frame::Double(d) => R3::Double {
            data: d.value(),
            attributes: None,
        },
        Frame::BigNumber(s) => R3::BigNumber {
            data: s.to_vec(),
            attributes: None,
        },
        Frame::BulkError(s) => R3::BlobError {
            data: s.to_vec(),
            attributes: None,
        },
        Frame::Verbatim { format, text } => R3::VerbatimString {
            data: text.to_vec(),
            format: match &format {
                b"txt" => VerbatimStringFormat::Text,
                b"mkd" => VerbatimStringFormat::Markdown,
                _ => return None,
            },
            attributes: None,
        },
    })
}

fn hashable(f: &R3) -> bool {
    use redis_protocol::resp3::types::Resp3Frame;
    f.kind().can_hash()
}

fn ours_to_r2(frame: Frame<'_>) -> Option<R2> {
    Some(match frame {
        Frame::SimpleString(s) => R2::SimpleString(s.to_vec()),
        Frame::SimpleError(s) => R2::Error(String::from_utf8(s.to_vec()).ok()?),
        Frame::Integer(n) => R2::Integer(n),
        Frame::BulkString(s) => R2::BulkString(s.to_vec()),
        Frame::Null => R2::Null,
        Frame::Array(a) => R2::Array(a.iter().map(ours_to_r2).collect::<Option<_>>()?),
        _ => return None,
    })
}

/// A model redis-protocol can carry: no attributes, hashable keys, known
/// verbatim formats, UTF-8 errors, no NaN (their equality is `==`).
fn theirs(m: &Model) -> R3 {
    let key = |m: &Model| {
        let f = theirs(m);
        if hashable(&f) {
            f
        } else {
            R3::Number {
                data: 0,
                attributes: None,
            }
        }
    };
    match m {
        Model::Simple(s) => R3::SimpleString {
            data: s.clone(),
            attributes: None,
        },
        Model::Error(s) => R3::SimpleError {
            data: String::from_utf8_lossy(s).replace(['\r', '\n'], " "),
            attributes: None,
        },
        Model::Int(n) => R3::Number {
            data: *n,
            attributes: None,
        },
        Model::Bulk(b) => R3::BlobString {
            data: b.clone(),
            attributes: None,
        },
        Model::Null => R3::Null,
        Model::Bool(b) => R3::Boolean {
            data: *b,
            attributes: None,
        },
        Model::Double(d) => R3::Double {
            data: if d.is_nan() { 0.5 } else { *d },
            attributes: None,
        },
        Model::Big(b) => R3::BigNumber {
            data: b.clone(),
            attributes: None,
        },
        Model::BulkError(b) => R3::BlobError {
            data: b.clone(),
            attributes: None,
        },
        Model::Verbatim(f, t) => R3::VerbatimString {
            data: t.clone(),
            format: if f[0] % 2 == 0 {
                VerbatimStringFormat::Text
            } else {
                VerbatimStringFormat::Markdown
            },
            attributes: None,
        },
        Model::Array(v) => R3::Array {
            data: v.iter().map(theirs).collect(),
            attributes: None,
        },
        Model::Push(v) => R3::Push {
            data: v.iter().map(theirs).collect(),
            attributes: None,
        },
        Model::Set(v) => R3::Set {
            data: v.iter().map(key).collect(),
            attributes: None,
        },
        Model::Map(p) => R3::Map {
            data: p.iter().map(|(k, v)| (key(k), theirs(v))).collect(),
            attributes: None,
        },
        Model::Attributed(_, v) => theirs(v),
    }
}

fn theirs_resp2(m: &Model) -> R2 {
    match m {
        Model::Simple(s) => R2::SimpleString(s.clone()),
        Model::Error(s) => R2::Error(String::from_utf8_lossy(s).replace(['\r', '\n'], " ")),
        Model::Int(n) => R2::Integer(*n),
        Model::Null => R2::Null,
        Model::Array(v) | Model::Set(v) | Model::Push(v) => {
            R2::Array(v.iter().map(theirs_resp2).collect())
        }
        Model::Map(p) => R2::Array(
            p.iter()
                .flat_map(|(k, v)| [theirs_resp2(k), theirs_resp2(v)])
                .collect(),
        ),
        Model::Attributed(_, v) => theirs_resp2(v),
        Model::Bulk(b) | Model::Big(b) | Model::BulkError(b) | Model::Verbatim(_, b) => {
            R2::BulkString(b.clone())
        }
        Model::Bool(b) => R2::Integer(i64::from(*b)),
        Model::Double(d) => R2::BulkString(d.to_string().into_bytes()),
    }
}

fn r3_bytes(f: &R3) -> Vec<u8> {
    use redis_protocol::resp3::types::Resp3Frame;
    let mut buf = vec![0; f.encode_len(false)];
    let n = redis_protocol::resp3::encode::complete::encode(&mut buf, f, false)
        .expect("redis-protocol encodes");
    buf.truncate(n);
    buf
}

fn r2_bytes(f: &R2) -> Vec<u8> {
    use redis_protocol::resp2::types::Resp2Frame;
    let mut buf = vec![0; f.encode_len(false)];
    let n =
        redis_protocol::resp2::encode::encode(&mut buf, f, false).expect("redis-protocol encodes");
    buf.truncate(n);
    buf
}

#[derive(Debug)]
enum Outcome {
    Valid(usize),
    Invalid,
    Incomplete,
}

fn theirs_outcome(bytes: &[u8]) -> (Outcome, Option<R3>) {
    match redis_protocol::resp3::decode::complete::decode(bytes) {
        Ok(Some((f, n))) => (Outcome::Valid(n), Some(f)),
        Ok(None) => (Outcome::Incomplete, None),
        Err(_) => (Outcome::Invalid, None),
    }
}

/// Whether our error is one of the deliberate differences 1-3 and 5.
fn excused_error(e: &DecodeError) -> bool {
    matches!(
        e,
        DecodeError::MissingCrlf
            | DecodeError::InvalidVerbatim
            | DecodeError::InvalidNumber
            | DecodeError::InvalidBoolean
            | DecodeError::StreamedUnsupported
            | DecodeError::LineTooLong { .. }
            | DecodeError::BulkTooLong { .. }
            | DecodeError::AggregateTooLong { .. }
            | DecodeError::TooDeep { .. }
            | DecodeError::UnknownType { byte: b'H' }
    )
}

/// Valid bytes with some of them cut off, changed or inserted.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        any::<u8>(),
        Just(b'\r'),
        Just(b'\n'),
        Just(b'-'),
        Just(b'1'),
        Just(b'*'),
        Just(b'$')
    ];
    (
        prop::collection::vec(model(), 1..3),
        prop::collection::vec((any::<prop::sample::Index>(), byte, 0u8..3), 0..3),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(ms, edits, cut)| {
            let mut bytes: Vec<u8> = ms.iter().flat_map(|m| r3_bytes(&theirs(m))).collect();
            for (at, b, op) in edits {
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = b,
                    1 => bytes.insert(i, b),
                    _ => {
                        bytes.remove(i);
                    }
                }
            }
            let keep = cut.index(bytes.len() + 1);
            bytes.truncate(keep.max(bytes.len() * 3 / 4));
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// They encode a RESP3 frame, we decode the same frame.
    #[test]
    fn they_encode_we_decode_resp3(m in model()) {
        let frame = theirs(&m);
        let bytes = r3_bytes(&frame);
        let Ok(Decoded::Frame { frame: ours, consumed, attributes: None }) = decode(&bytes, &Limits::REDIS) else {
            return Err(TestCaseError::fail(format!("{:?}", decode(&bytes, &Limits::REDIS))));
        };
        prop_assert_eq!(consumed, bytes.len());
        prop_assert_eq!(ours_to_r3(ours), Some(frame));
    }

    /// They encode a RESP2 frame, we decode the same frame.
    #[test]
    fn they_encode_we_decode_resp2(m in model()) {
        let frame = theirs_resp2(&m);
        let bytes = r2_bytes(&frame);
        let Ok(Decoded::Frame { frame: ours, consumed, .. }) = decode(&bytes, &Limits::REDIS) else {
            return Err(TestCaseError::fail(format!("{:?}", decode(&bytes, &Limits::REDIS))));
        };
        prop_assert_eq!(consumed, bytes.len());
        prop_assert_eq!(ours_to_r2(ours), Some(frame));
    }

    /// We encode a command, they decode it (RESP2 and RESP3) to the
    /// arguments.
    #[test]
    fn we_encode_they_decode(args in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..32), 1..8)) {
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let mut buf = vec![0; encode::encoded_len(&args)];
        let n = encode::encode_args(&mut buf, &args).unwrap();
        let r2 = redis_protocol::resp2::decode::decode(&buf[..n]).unwrap();
        prop_assert_eq!(r2, Some((R2::Array(args.iter().map(|a| R2::BulkString(a.to_vec())).collect()), n)));
        let r3 = redis_protocol::resp3::decode::complete::decode(&buf[..n]).unwrap();
        let blobs = args.iter().map(|a| R3::BlobString { data: a.to_vec(), attributes: None }).collect();
        prop_assert_eq!(r3, Some((R3::Array { data: blobs, attributes: None }, n)));
    }

    /// On damaged or cut streams both agree on valid / invalid / incomplete,
    /// and on the frame when valid, but for the documented differences.
    #[test]
    fn agree_on_damaged_bytes(bytes in mutated()) {
        let (their_outcome, their_frame) = theirs_outcome(&bytes);
        match (decode(&bytes, &Limits::REDIS), their_outcome) {
            (Ok(Decoded::Frame { frame, consumed, attributes }), Outcome::Valid(n)) => {
                prop_assert_eq!(consumed, n);
                // Their frame carries the attributes; compare without them.
                if attributes.is_none()
                    && let Some(ours) = ours_to_r3(frame)
                {
                    prop_assert_eq!(Some(ours), their_frame);
                }
            }
            (Ok(Decoded::Incomplete { .. }), Outcome::Incomplete) => {}
            (Err(_), Outcome::Invalid) => {}
            (Err(e), _) if excused_error(&e) => {}
            (Ok(Decoded::Frame { frame, .. }), Outcome::Invalid) => {
                // Difference 4: a frame they cannot represent, or a RESP2 null.
                let resp2_null = bytes.windows(5).any(|w| w == b"$-1\r\n" || w == b"*-1\r\n");
                prop_assert!(ours_to_r3(frame).is_none() || resp2_null, "we accept, they refuse: {:?}", bytes.escape_ascii().to_string());
            }
            (Ok(Decoded::Incomplete { .. }), Outcome::Invalid) => {
                // They can refuse early only what we accept (difference 4).
                let resp2_null = bytes.windows(3).any(|w| w == b"$-1" || w == b"*-1");
                prop_assert!(resp2_null || bytes.contains(&b'='), "they refuse early: {:?}", bytes.escape_ascii().to_string());
            }
            (ours, theirs) => prop_assert!(false, "ours {:?}, theirs {:?} on {:?}", ours, theirs, bytes.escape_ascii().to_string()),
        }
    }
}

/// Concrete cases of each documented difference, so a change on either side
/// shows up by name.
#[test]
fn documented_differences() {
    fn ours(b: &[u8]) -> Result<Decoded<'_>, DecodeError> {
        decode(b, &Limits::REDIS)
    }
    let theirs = |b: &[u8]| theirs_outcome(b).0;
    // 1. Limits: an over-long bulk fails now; they wait.
    assert!(matches!(
        ours(b"$999999999999\r\n"),
        Err(DecodeError::BulkTooLong { .. })
    ));
    assert!(matches!(theirs(b"$999999999999\r\n"), Outcome::Incomplete));
    // 2. Strictness: the bulk trailer.
    assert_eq!(ours(b"$1\r\naXY"), Err(DecodeError::MissingCrlf));
    assert!(matches!(theirs(b"$1\r\naXY"), Outcome::Valid(7)));
    // 4. Leniency: a RESP2 null in RESP3.
    assert!(matches!(
        ours(b"$-1\r\n"),
        Ok(Decoded::Frame {
            frame: Frame::Null,
            ..
        })
    ));
    assert!(matches!(theirs(b"$-1\r\n"), Outcome::Invalid));
    // 5. Streamed chunks.
    assert_eq!(
        ours(b";3\r\nabc\r\n"),
        Err(DecodeError::StreamedUnsupported)
    );
    assert!(matches!(theirs(b";3\r\nabc\r\n"), Outcome::Valid(_)));
}

#[cfg(feature = "alloc")]
mod interop {
    //! The `alloc` feature's conversions agree with this file's reference
    //! ones.
    use super::*;
    use resilis_core::resp::interop;

    proptest! {
        #[test]
        fn to_resp3_matches(m in model()) {
            let frame = theirs(&m);
            let bytes = interop::resp3_to_vec(&frame).unwrap();
            let Ok(Decoded::Frame { frame: ours, attributes, .. }) = decode(&bytes, &Limits::REDIS) else {
                return Err(TestCaseError::fail("no frame"));
            };
            prop_assert_eq!(interop::to_resp3(ours, attributes).ok(), Some(frame));
        }

        #[test]
        fn to_resp2_matches(m in model()) {
            let frame = theirs_resp2(&m);
            let bytes = interop::resp2_to_vec(&frame).unwrap();
            let Ok(Decoded::Frame { frame: ours, .. }) = decode(&bytes, &Limits::REDIS) else {
                return Err(TestCaseError::fail("no frame"));
            };
            prop_assert_eq!(interop::to_resp2(ours).ok(), Some(frame));
        }
    }
}

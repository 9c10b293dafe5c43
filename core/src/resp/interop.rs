//! Conversions between our borrowed frames and redis-protocol's owned ones,
//! for code that already speaks redis-protocol (feature `alloc`).
//!
//! Towards redis-protocol: [`to_resp3`] / [`to_resp3_bytes`] build an owned
//! RESP3 frame; [`to_resp2`] / [`to_resp2_bytes`] downgrade the RESP3-only
//! types the way Redis itself does for a RESP2 client (maps, sets and pushes
//! become flat arrays, booleans 0/1, doubles and big numbers bulk strings).
//!
//! Back to us: [`resp3_to_vec`] / [`resp2_to_vec`] encode one of their frames
//! into bytes that [`decode`](super::decode) reads.
//!
//! What does not carry over, and is refused rather than guessed:
//! - redis-protocol keeps maps and sets in hash maps: order is lost,
//!   duplicate keys collapse, and aggregates cannot be keys or set members
//!   (its `Hash` would panic on them) -> [`InteropError::UnhashableKey`];
//! - it knows only the `txt` and `mkd` verbatim formats ->
//!   [`InteropError::VerbatimFormat`];
//! - its simple errors are `String`s -> [`InteropError::NotUtf8`] otherwise.
//!
//! These functions recurse once per nesting level: the frames came through
//! `decode`, so that is at most [`MAX_DEPTH_CAP`](super::MAX_DEPTH_CAP).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use redis_protocol::resp2::types::{OwnedFrame as Resp2Frame, Resp2Frame as _};
use redis_protocol::resp3::types::{
    FrameMap, FrameSet, OwnedFrame as Resp3Frame, Resp3Frame as _, VerbatimStringFormat,
};

use super::{Aggregate, Frame};

/// Why a frame could not be converted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InteropError {
    /// A map key or set member is an aggregate, which redis-protocol cannot
    /// hash.
    UnhashableKey,
    /// A verbatim format other than `txt` / `mkd`.
    VerbatimFormat { format: [u8; 3] },
    /// A simple error that is not UTF-8.
    NotUtf8,
    /// redis-protocol refused to encode the frame (e.g. a `Hello` or a
    /// streamed chunk, which are not replies).
    Encode,
}

impl fmt::Display for InteropError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            InteropError::UnhashableKey => f.write_str("aggregate used as a map key or set member"),
            InteropError::VerbatimFormat { format } => {
                write!(
                    f,
                    "verbatim format {:?} is not txt or mkd",
                    format.escape_ascii()
                )
            }
            InteropError::NotUtf8 => f.write_str("simple error is not UTF-8"),
            InteropError::Encode => f.write_str("redis-protocol could not encode the frame"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for InteropError {}

/// Our frame (and the attributes `decode` returned with it) as
/// redis-protocol's owned RESP3 frame.
pub fn to_resp3(
    frame: Frame<'_>,
    attributes: Option<Aggregate<'_>>,
) -> Result<Resp3Frame, InteropError> {
    let attributes = attributes.map(pairs).transpose()?;
    let frame = match frame {
        Frame::SimpleString(s) => Resp3Frame::SimpleString {
            data: s.to_vec(),
            attributes,
        },
        Frame::SimpleError(s) => Resp3Frame::SimpleError {
            data: utf8(s)?,
            attributes,
        },
        Frame::Integer(n) => Resp3Frame::Number {
            data: n,
            attributes,
        },
        Frame::BulkString(s) => Resp3Frame::BlobString {
            data: s.to_vec(),
            attributes,
        },
        // redis-protocol's Null carries no attributes.
        Frame::Null => Resp3Frame::Null,
        Frame::Array(a) => Resp3Frame::Array {
            data: elements(a)?,
            attributes,
        },
        Frame::Map(a) => Resp3Frame::Map {
            data: pairs(a)?,
            attributes,
        },
        Frame::Set(a) => {
            let mut data = FrameSet::default();
            for item in a.iter() {
                data.insert(hashable(to_resp3(item, None)?)?);
            }
            Resp3Frame::Set { data, attributes }
        }
        Frame::Push(a) => Resp3Frame::Push {
            data: elements(a)?,
            attributes,
        },
        Frame::Boolean(b) => Resp3Frame::Boolean {
            data: b,
            attributes,
        },
        Frame::Double(d) => Resp3Frame::Double {
            data: d.value(),
            attributes,
        },
        Frame::BigNumber(s) => Resp3Frame::BigNumber {
            data: s.to_vec(),
            attributes,
        },
        Frame::BulkError(s) => Resp3Frame::BlobError {
            data: s.to_vec(),
            attributes,
        },
        Frame::Verbatim { format, text } => {
            let format = match &format {
                b"txt" => VerbatimStringFormat::Text,
                b"mkd" => VerbatimStringFormat::Markdown,
                _ => return Err(InteropError::VerbatimFormat { format }),
            };
            Resp3Frame::VerbatimString {
                data: text.to_vec(),
                format,
                attributes,
            }
        }
    };
    Ok(frame)
}

/// [`to_resp3`], as redis-protocol's `Bytes`-backed frame.
pub fn to_resp3_bytes(
    frame: Frame<'_>,
    attributes: Option<Aggregate<'_>>,
) -> Result<redis_protocol::resp3::types::BytesFrame, InteropError> {
    to_resp3(frame, attributes).map(Resp3Frame::into_bytes_frame)
}

/// Our frame as a RESP2 frame, downgraded as Redis does for RESP2 clients.
pub fn to_resp2(frame: Frame<'_>) -> Result<Resp2Frame, InteropError> {
    let frame = match frame {
        Frame::SimpleString(s) => Resp2Frame::SimpleString(s.to_vec()),
        Frame::SimpleError(s) | Frame::BulkError(s) => Resp2Frame::Error(utf8(s)?),
        Frame::Integer(n) => Resp2Frame::Integer(n),
        Frame::BulkString(s) | Frame::BigNumber(s) | Frame::Verbatim { text: s, .. } => {
            Resp2Frame::BulkString(s.to_vec())
        }
        Frame::Null => Resp2Frame::Null,
        Frame::Array(a) | Frame::Map(a) | Frame::Set(a) | Frame::Push(a) => {
            Resp2Frame::Array(a.iter().map(to_resp2).collect::<Result<_, _>>()?)
        }
        Frame::Boolean(b) => Resp2Frame::Integer(i64::from(b)),
        Frame::Double(d) => Resp2Frame::BulkString(alloc::format!("{}", d.value()).into_bytes()),
    };
    Ok(frame)
}

/// [`to_resp2`], as redis-protocol's `Bytes`-backed frame.
pub fn to_resp2_bytes(
    frame: Frame<'_>,
) -> Result<redis_protocol::resp2::types::BytesFrame, InteropError> {
    to_resp2(frame).map(Resp2Frame::into_bytes_frame)
}

/// One of redis-protocol's RESP3 frames encoded for [`decode`](super::decode).
pub fn resp3_to_vec(frame: &Resp3Frame) -> Result<Vec<u8>, InteropError> {
    let mut buf = alloc::vec![0; frame.encode_len(false)];
    let n = redis_protocol::resp3::encode::complete::encode(&mut buf, frame, false)
        .map_err(|_| InteropError::Encode)?;
    buf.truncate(n);
    Ok(buf)
}

/// One of redis-protocol's RESP2 frames encoded for [`decode`](super::decode).
pub fn resp2_to_vec(frame: &Resp2Frame) -> Result<Vec<u8>, InteropError> {
    let mut buf = alloc::vec![0; frame.encode_len(false)];
    let n = redis_protocol::resp2::encode::encode(&mut buf, frame, false)
        .map_err(|_| InteropError::Encode)?;
    buf.truncate(n);
    Ok(buf)
}

fn elements(agg: Aggregate<'_>) -> Result<Vec<Resp3Frame>, InteropError> {
    agg.iter().map(|item| to_resp3(item, None)).collect()
}

fn pairs(agg: Aggregate<'_>) -> Result<FrameMap<Resp3Frame, Resp3Frame>, InteropError> {
    let mut map = FrameMap::default();
    let mut items = agg.iter();
    // A validated map or attribute has an even number of elements.
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        map.insert(hashable(to_resp3(key, None)?)?, to_resp3(value, None)?);
    }
    Ok(map)
}

fn hashable(frame: Resp3Frame) -> Result<Resp3Frame, InteropError> {
    if frame.kind().can_hash() {
        Ok(frame)
    } else {
        Err(InteropError::UnhashableKey)
    }
}

fn utf8(s: &[u8]) -> Result<String, InteropError> {
    core::str::from_utf8(s)
        .map(String::from)
        .map_err(|_| InteropError::NotUtf8)
}

//! RESP2/RESP3 framing: a zero-copy, allocation-free decoder bounded against
//! hostile servers, and an encoder for commands.
//!
//! Why our own codec: redis-protocol needs an allocator even in `no_std` and
//! adds ~19 KB of flash plus a heap on a Cortex-M; the core must run with no
//! allocator at all. redis-protocol is used as the test oracle and benchmark
//! yardstick instead (see `tests/resp_differential.rs`).
//!
//! Decoding: [`decode`] looks at the front of a byte slice and returns one
//! complete [`Frame`] borrowed from it plus the number of bytes it used, or
//! [`Decoded::Incomplete`], or a [`DecodeError`]. Aggregates are validated in
//! full (depth, lengths, element counts, well-formedness) by that one call,
//! without recursion, and then iterated lazily with [`Aggregate::iter`].
//! [`decode_resume`] is the same for a reply that arrives in pieces: a
//! fixed-size [`Resume`] kept by the caller makes it go on where the last
//! call stopped, so the cost stays linear however the reply is cut.
//!
//! Streamed aggregates and strings (`$?`, `*?`, `%?`, `~?`, `>?`) are not
//! supported: Redis never sends them, and they decode to
//! [`DecodeError::StreamedUnsupported`].
//!
//! # Differences from redis-protocol
//! Deliberate, and pinned by `tests/resp_differential.rs`:
//! - limits: over-long bulks and aggregates, deep nesting, and lines with no
//!   CRLF past a bound (simple strings: `max_bulk_len` clamped to 1-64 KiB)
//!   fail as soon as the header shows it, instead of waiting for the bytes;
//! - strictness: every terminator is checked (a bulk's trailing CRLF, `_`,
//!   `#t`, a lone CR in a line), big numbers must be digits, lengths take no
//!   `+`; errors are reported as soon as bytes prove them;
//! - leniency: RESP2 nulls (`$-1`, `*-1`) are accepted in RESP3, as are any
//!   3-byte verbatim format and aggregates as map keys or set members;
//! - no streamed types and no inline `HELLO` frames.

mod decode;
pub mod encode;
#[cfg(feature = "alloc")]
pub mod interop;

pub use decode::{Aggregate, AggregateIter, Resume, decode, decode_resume};

/// Limits a hostile or broken server cannot get around.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Limits {
    /// Deepest nesting of aggregates accepted (a top-level array is depth 1).
    /// At most [`MAX_DEPTH_CAP`].
    pub max_depth: u8,
    /// Longest bulk string, bulk error, verbatim string or big number accepted.
    pub max_bulk_len: usize,
    /// Most elements in one aggregate (a map of n pairs counts 2n). At most
    /// `u32::MAX` (Redis's own limit) whatever this says, on every target.
    pub max_aggregate_len: usize,
    /// Most elements in one reply, all aggregates at every depth together
    /// (attributes included; a map of n pairs counts 2n). A caller that
    /// builds a tree pays per element, not per byte: a reply of 3-byte `_`
    /// elements turned into 32-byte values takes 11 times its own size, so
    /// this is what bounds that memory. Checked as each header arrives.
    pub max_elements: usize,
}

/// The decoder keeps its nesting stack in a fixed array of this many entries.
pub const MAX_DEPTH_CAP: u8 = 64;

impl Limits {
    /// Redis's own limits: 512 MiB bulks, depth 32, 2^32-1 elements per
    /// aggregate, and as many in the whole reply (no tighter than the
    /// others, so it changes nothing; a caller that allocates per element
    /// sets its own).
    pub const REDIS: Limits = Limits {
        max_depth: 32,
        max_bulk_len: 512 * 1024 * 1024,
        max_aggregate_len: u32::MAX as usize,
        max_elements: u32::MAX as usize,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::REDIS
    }
}

/// One decoded RESP value, borrowing from the input buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Frame<'a> {
    /// `+OK`
    SimpleString(&'a [u8]),
    /// `-ERR ...`: the whole line after `-`, code included.
    SimpleError(&'a [u8]),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo`
    BulkString(&'a [u8]),
    /// RESP2 `$-1` / `*-1` and RESP3 `_`.
    Null,
    /// `*n`
    Array(Aggregate<'a>),
    /// `%n`: iterating yields key, value, key, value, ...
    Map(Aggregate<'a>),
    /// `~n`
    Set(Aggregate<'a>),
    /// `>n`: out-of-band data (pub/sub, invalidation), never a reply.
    Push(Aggregate<'a>),
    /// `#t` / `#f`
    Boolean(bool),
    /// `,3.14`, `,inf`, `,-inf`, `,nan`: checked text; [`Double::value`]
    /// converts it.
    Double(Double<'a>),
    /// `(3492890328409238509324850943850943825024385`: the digits as sent.
    BigNumber(&'a [u8]),
    /// `!21\r\nSYNTAX invalid syntax`
    BulkError(&'a [u8]),
    /// `=15\r\ntxt:Some string`: the 3-byte format and the text after the colon.
    Verbatim { format: [u8; 3], text: &'a [u8] },
}

/// A RESP3 double as sent, its syntax already checked. The decoder does not
/// convert it: the float parser costs ~17 KB of flash on a Cortex-M, and a
/// firmware that never reads a double should not carry it. Call
/// [`value`](Double::value) where the number is wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Double<'a>(&'a [u8]);

impl<'a> Double<'a> {
    /// Checks `text` against the grammar of `f64::from_str` (which accepts
    /// everything RESP3 allows: `inf`, `-inf`, `nan`, exponents), without
    /// converting it.
    pub fn parse(text: &'a [u8]) -> Option<Double<'a>> {
        let unsigned = match text {
            [b'+' | b'-', rest @ ..] => rest,
            _ => text,
        };
        let special = [&b"inf"[..], b"infinity", b"nan"];
        if special.iter().any(|s| unsigned.eq_ignore_ascii_case(s)) {
            return Some(Double(text));
        }
        let digits = |from: usize| {
            unsigned
                .get(from..)
                .map_or(0, |s| s.iter().take_while(|b| b.is_ascii_digit()).count())
        };
        let integral = digits(0);
        let mut at = integral;
        let mut fraction = 0;
        if unsigned.get(at) == Some(&b'.') {
            fraction = digits(at + 1);
            at += 1 + fraction;
        }
        if integral + fraction == 0 {
            return None;
        }
        if matches!(unsigned.get(at), Some(b'e' | b'E')) {
            at += 1;
            if matches!(unsigned.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            let exponent = digits(at);
            if exponent == 0 {
                return None;
            }
            at += exponent;
        }
        (at == unsigned.len()).then_some(Double(text))
    }

    /// The text as sent.
    pub fn text(&self) -> &'a [u8] {
        self.0
    }

    /// The number. Syntax was checked by [`parse`](Double::parse), so this
    /// only returns NaN for `nan` itself.
    pub fn value(&self) -> f64 {
        core::str::from_utf8(self.0)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN)
    }
}

impl<'a> Frame<'a> {
    /// The error text when this frame is a simple or bulk error.
    pub fn error_text(&self) -> Option<&'a [u8]> {
        match *self {
            Frame::SimpleError(t) | Frame::BulkError(t) => Some(t),
            _ => None,
        }
    }

    /// The text of a simple, bulk or verbatim string.
    pub fn as_text(&self) -> Option<&'a [u8]> {
        match *self {
            Frame::SimpleString(t) | Frame::BulkString(t) | Frame::Verbatim { text: t, .. } => {
                Some(t)
            }
            _ => None,
        }
    }
}

/// What [`decode`] or [`decode_resume`] found at the front of the buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Decoded<'a> {
    /// A complete frame and the bytes it used. A RESP3 attribute (`|`) in front
    /// of the frame is included in `consumed` and handed over in `attributes`.
    Frame {
        frame: Frame<'a>,
        attributes: Option<Aggregate<'a>>,
        consumed: usize,
    },
    /// The buffer holds the start of a frame but not all of it. `needed` is the
    /// total length of the buffer that would be enough when known (e.g. after a
    /// bulk header), else `None`.
    Incomplete { needed: Option<usize> },
}

/// Why bytes are not valid RESP (or break a [`Limits`] bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecodeError {
    /// The first byte of a frame is not a RESP type marker.
    UnknownType { byte: u8 },
    /// A length, integer, boolean or double is malformed.
    InvalidNumber,
    /// A line or a bulk payload is not followed by `\r\n`.
    MissingCrlf,
    /// A verbatim string shorter than `xxx:`.
    InvalidVerbatim,
    /// A boolean other than `#t` / `#f`.
    InvalidBoolean,
    /// `$?`-style streamed types.
    StreamedUnsupported,
    /// Nesting deeper than [`Limits::max_depth`].
    TooDeep { max: u8 },
    /// A bulk longer than [`Limits::max_bulk_len`]. Reported from the header,
    /// before the payload; `len` is the length as far as its digits arrived.
    BulkTooLong { len: u64, max: usize },
    /// An aggregate longer than [`Limits::max_aggregate_len`] (or than
    /// `u32::MAX`, which `max` then says).
    AggregateTooLong { len: u64, max: usize },
    /// More elements in one reply, all depths together, than
    /// [`Limits::max_elements`]. Reported at the header that goes over.
    TooManyElements { max: usize },
    /// A reply still incomplete after this many bytes (the connection's
    /// `max_frame_len`; the decoder itself never returns it).
    FrameTooLong { max: usize },
    /// A simple string, error, double or big number with no CRLF within
    /// `max` bytes (`max_bulk_len` clamped to 1-64 KiB; 512 for doubles): the
    /// peer is not speaking RESP. Lengths and integers longer than 20
    /// characters are [`InvalidNumber`](DecodeError::InvalidNumber).
    LineTooLong { max: usize },
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            DecodeError::UnknownType { byte } => {
                write!(f, "invalid RESP: unknown type byte 0x{byte:02x}")
            }
            DecodeError::InvalidNumber => f.write_str("invalid RESP: malformed length or number"),
            DecodeError::MissingCrlf => f.write_str("invalid RESP: missing CRLF terminator"),
            DecodeError::InvalidVerbatim => f.write_str("invalid RESP: malformed verbatim string"),
            DecodeError::InvalidBoolean => f.write_str("invalid RESP: boolean must be #t or #f"),
            DecodeError::StreamedUnsupported => {
                f.write_str("RESP3 streamed types are not supported")
            }
            DecodeError::TooDeep { max } => {
                write!(f, "RESP nesting deeper than the limit of {max}")
            }
            DecodeError::BulkTooLong { len, max } => {
                write!(
                    f,
                    "RESP bulk of {len} bytes exceeds the limit of {max} bytes"
                )
            }
            DecodeError::AggregateTooLong { len, max } => {
                write!(
                    f,
                    "RESP aggregate of {len} elements exceeds the limit of {max}"
                )
            }
            DecodeError::TooManyElements { max } => {
                write!(
                    f,
                    "RESP reply of more than {max} elements in all (raise Limits::max_elements to accept it)"
                )
            }
            DecodeError::FrameTooLong { max } => {
                write!(f, "RESP reply longer than the limit of {max} bytes")
            }
            DecodeError::LineTooLong { max } => {
                write!(f, "RESP line longer than {max} bytes without CRLF")
            }
        }
    }
}

#[cfg(feature = "std")]
extern crate std;
#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

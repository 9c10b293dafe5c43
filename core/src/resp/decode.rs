//! The RESP2/RESP3 decoder: validates one whole frame at the front of a byte
//! slice in a single pass with an explicit, fixed-size nesting stack, then
//! hands out borrowed views of it.
//!
//! Why validate everything up front and iterate lazily afterwards: the caller
//! learns in one call whether the frame is complete and well-formed (so the
//! connection can be closed on garbage before any of it is acted on), yet no
//! storage proportional to the frame is ever needed. Iterating a nested
//! aggregate re-reads its headers; that is the price of holding nothing.
//!
//! Why no recursion: nesting depth is under the peer's control, and a small
//! firmware stack must not be its to exhaust. The stack here is
//! `[usize; MAX_DEPTH_CAP]` whatever the input.
//!
//! Bounds on lines without a length prefix: a simple string or error is
//! accepted up to `max_bulk_len` clamped to [`MIN_LINE`, `MAX_LINE`] bytes
//! (the floor keeps Redis's error messages, which quote the command, readable
//! even with a tiny bulk limit; the ceiling stops a peer that never sends CRLF
//! from making the caller buffer forever). Lengths and integers are at most 20
//! characters, doubles at most [`MAX_DOUBLE_LINE`].

use core::fmt;

use super::{DecodeError, Decoded, Double, Frame, Limits, MAX_DEPTH_CAP};

/// Longest simple-string or simple-error line, whatever `max_bulk_len` says.
pub(crate) const MAX_LINE: usize = 64 * 1024;
/// Shortest line bound, whatever `max_bulk_len` says.
pub(crate) const MIN_LINE: usize = 1024;
/// Longest double accepted. Redis writes `%.17g` (under 30 bytes), but the
/// shortest exact decimal of an f64 without exponent, which other encoders
/// (redis-protocol among them) write, runs to about 330.
pub(crate) const MAX_DOUBLE_LINE: usize = 512;
/// `-9223372036854775808` and `18446744073709551615` are both 20 characters.
const MAX_NUMBER_LINE: usize = 20;

/// Looks at the front of `buf`: one complete frame (validated in full, nested
/// elements included), or [`Decoded::Incomplete`], or an error.
///
/// Errors are reported as soon as the bytes seen prove them, even when the
/// frame is not complete yet: an over-long bulk header fails before its
/// payload arrives, and a first byte that is no type marker fails at once.
///
/// A RESP3 attribute (`|`) in front of the frame is consumed and returned in
/// `attributes`; when several follow each other, the last one is returned.
pub fn decode<'a>(buf: &'a [u8], limits: &Limits) -> Result<Decoded<'a>, DecodeError> {
    let cx = Context::new(limits);
    if let Some((frame, consumed)) = fast_scalar(buf, 0, &cx) {
        return Ok(Decoded::Frame {
            frame,
            attributes: None,
            consumed,
        });
    }
    let mut pos = 0;
    let mut attributes = None;
    loop {
        let (head, body_start) = match header(buf, pos, &cx) {
            Ok(h) => h,
            // A top-level bulk knows the whole frame's length: `needed` is a
            // buffer length, so attributes already read in front do not matter.
            Err(Halt::Incomplete(needed)) => return Ok(Decoded::Incomplete { needed }),
            Err(Halt::Invalid(e)) => return Err(e),
        };
        let (kind, len) = match head {
            Header::Scalar(frame) => {
                return Ok(Decoded::Frame {
                    frame,
                    attributes,
                    consumed: body_start,
                });
            }
            Header::Aggregate { kind, len } => (kind, len),
        };
        if cx.max_depth == 0 {
            return Err(DecodeError::TooDeep { max: cx.max_depth });
        }
        let is_attribute = kind == Kind::Attribute;
        let end = match skip_elements(buf, body_start, len, 1, &cx, !is_attribute) {
            Ok(end) => end,
            Err(Halt::Incomplete(needed)) => return Ok(Decoded::Incomplete { needed }),
            Err(Halt::Invalid(e)) => return Err(e),
        };
        let Some(body) = buf.get(body_start..end) else {
            // skip_elements only returns positions it has read up to.
            return Ok(Decoded::Incomplete { needed: None });
        };
        let agg = Aggregate { len, body };
        match kind {
            Kind::Attribute => {
                attributes = Some(agg);
                pos = end;
            }
            _ => {
                return Ok(Decoded::Frame {
                    frame: kind.wrap(agg),
                    attributes,
                    consumed: end,
                });
            }
        }
    }
}

/// The elements of an already validated array, map, set, push or attribute.
///
/// `len()` is the number of frames [`iter`](Aggregate::iter) yields: for a
/// map or an attribute of n pairs that is 2n (key, value, key, value, ...).
/// Equality compares the encoded bytes.
#[derive(Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Aggregate<'a> {
    len: usize,
    body: &'a [u8],
}

impl<'a> Aggregate<'a> {
    /// How many frames the iterator yields (2n for a map of n pairs).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The encoded elements, attributes in front of elements included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.body
    }

    /// The elements in order, decoded lazily. Attributes in front of an
    /// element are skipped.
    pub fn iter(&self) -> AggregateIter<'a> {
        AggregateIter {
            body: self.body,
            pos: 0,
            remaining: self.len,
        }
    }
}

impl<'a> IntoIterator for Aggregate<'a> {
    type Item = Frame<'a>;
    type IntoIter = AggregateIter<'a>;
    fn into_iter(self) -> AggregateIter<'a> {
        self.iter()
    }
}

impl fmt::Debug for Aggregate<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Recursion here is bounded by the validated depth (<= MAX_DEPTH_CAP).
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Iterator over an [`Aggregate`]. Cannot fail: the bytes were validated when
/// the aggregate was decoded.
#[derive(Clone, Debug)]
pub struct AggregateIter<'a> {
    body: &'a [u8],
    pos: usize,
    remaining: usize,
}

impl<'a> Iterator for AggregateIter<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        if self.remaining == 0 {
            return None;
        }
        // The body passed `decode` under limits at least this strict, so
        // nothing below can fail; if it somehow did, ending the iteration is
        // the only answer that neither panics nor invents data.
        let cx = Context::new(&Limits::VALIDATED);
        if let Some((frame, end)) = fast_scalar(self.body, self.pos, &cx) {
            self.pos = end;
            self.remaining -= 1;
            return Some(frame);
        }
        loop {
            let Ok((head, body_start)) = header(self.body, self.pos, &cx) else {
                return self.stop();
            };
            let (frame, end) = match head {
                Header::Scalar(frame) => (frame, body_start),
                Header::Aggregate { kind, len } => {
                    let Ok(end) = skip_elements(self.body, body_start, len, 1, &cx, false) else {
                        return self.stop();
                    };
                    let Some(body) = self.body.get(body_start..end) else {
                        return self.stop();
                    };
                    if kind == Kind::Attribute {
                        self.pos = end;
                        continue;
                    }
                    (kind.wrap(Aggregate { len, body }), end)
                }
            };
            self.pos = end;
            self.remaining -= 1;
            return Some(frame);
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

impl<'a> AggregateIter<'a> {
    fn stop(&mut self) -> Option<Frame<'a>> {
        self.remaining = 0;
        None
    }
}

impl Limits {
    /// Looser than or equal to any limits a body was validated with, so
    /// re-reading a validated body never trips over them.
    const VALIDATED: Limits = Limits {
        max_depth: MAX_DEPTH_CAP,
        max_bulk_len: usize::MAX,
        max_aggregate_len: usize::MAX,
    };
}

/// The limits with the derived bounds worked out once per call.
struct Context {
    max_depth: u8,
    max_bulk_len: usize,
    max_aggregate_len: usize,
    max_line: usize,
}

impl Context {
    fn new(limits: &Limits) -> Self {
        Context {
            max_depth: limits.max_depth.min(MAX_DEPTH_CAP),
            max_bulk_len: limits.max_bulk_len,
            max_aggregate_len: limits.max_aggregate_len,
            max_line: limits.max_bulk_len.clamp(MIN_LINE, MAX_LINE),
        }
    }
}

/// Why reading stopped short of a value.
enum Halt {
    /// More bytes are needed; the total buffer length that completes the item
    /// being read, when that is known.
    Incomplete(Option<usize>),
    Invalid(DecodeError),
}

impl From<DecodeError> for Halt {
    fn from(e: DecodeError) -> Self {
        Halt::Invalid(e)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Array,
    Map,
    Set,
    Push,
    Attribute,
}

impl Kind {
    fn wrap(self, agg: Aggregate<'_>) -> Frame<'_> {
        match self {
            Kind::Array => Frame::Array(agg),
            Kind::Map => Frame::Map(agg),
            Kind::Set => Frame::Set(agg),
            // An attribute is never wrapped: callers route it aside first.
            Kind::Push | Kind::Attribute => Frame::Push(agg),
        }
    }
}

enum Header<'a> {
    /// A complete non-aggregate frame.
    Scalar(Frame<'a>),
    /// An aggregate header; `len` counts elements (2n for maps/attributes).
    Aggregate { kind: Kind, len: usize },
}

/// Validates `len` elements starting at `start`, inside an aggregate at
/// nesting depth `depth` (1 = top level). Returns the position after them.
///
/// `final_item`: these elements end the whole frame, so the length still
/// needed for a bulk that completes every open aggregate is the frame's.
fn skip_elements(
    buf: &[u8],
    start: usize,
    len: usize,
    depth: u8,
    cx: &Context,
    final_item: bool,
) -> Result<usize, Halt> {
    // Most replies are flat (MGET, HGETALL, pub/sub messages): read scalars
    // here and set up the nesting stack only at the first nested aggregate.
    let mut pos = start;
    let mut left = len;
    while left > 0 {
        if let Some((_, next)) = fast_scalar(buf, pos, cx) {
            pos = next;
            left -= 1;
            continue;
        }
        match header(buf, pos, cx) {
            Ok((Header::Scalar(_), next)) => {
                pos = next;
                left -= 1;
            }
            Ok((Header::Aggregate { .. }, _)) => {
                return skip_nested(buf, pos, left, depth, cx, final_item);
            }
            Err(Halt::Incomplete(Some(n))) if final_item && left == 1 => {
                return Err(Halt::Incomplete(Some(n)));
            }
            Err(Halt::Incomplete(_)) => return Err(Halt::Incomplete(None)),
            Err(e) => return Err(e),
        }
    }
    Ok(pos)
}

/// [`skip_elements`] once nesting shows up: the general walk, with an
/// explicit stack of remaining counts.
fn skip_nested(
    buf: &[u8],
    start: usize,
    len: usize,
    depth: u8,
    cx: &Context,
    final_item: bool,
) -> Result<usize, Halt> {
    // remaining[i]: elements still to read in the aggregate at depth+i;
    // bit i of `attributes`: that aggregate is an attribute, whose completion
    // is not an element of its parent.
    let mut remaining = [0usize; MAX_DEPTH_CAP as usize];
    let mut attributes: u64 = 0;
    remaining[0] = len;
    let mut open = 1usize;
    let mut pos = start;
    loop {
        let (head, next) = match header(buf, pos, cx) {
            Ok(h) => h,
            Err(Halt::Incomplete(Some(n)))
                if final_item && attributes == 0 && completes_all(&remaining, open) =>
            {
                return Err(Halt::Incomplete(Some(n)));
            }
            Err(Halt::Incomplete(_)) => return Err(Halt::Incomplete(None)),
            Err(e) => return Err(e),
        };
        pos = next;
        if let Header::Aggregate { kind, len } = head {
            // The new aggregate sits at depth `depth + open`.
            if usize::from(depth) + open > usize::from(cx.max_depth) {
                return Err(DecodeError::TooDeep { max: cx.max_depth }.into());
            }
            if len > 0 {
                let Some(slot) = remaining.get_mut(open) else {
                    return Err(DecodeError::TooDeep { max: cx.max_depth }.into());
                };
                *slot = len;
                if kind == Kind::Attribute {
                    attributes |= 1 << open;
                }
                open += 1;
                continue;
            }
            if kind == Kind::Attribute {
                // An empty attribute still needs the element after it.
                continue;
            }
        }
        // One element complete: close every aggregate it completes.
        loop {
            let top = open - 1;
            let Some(r) = remaining.get_mut(top) else {
                return Err(DecodeError::TooDeep { max: cx.max_depth }.into());
            };
            *r -= 1;
            if *r > 0 {
                break;
            }
            open = top;
            if open == 0 {
                return Ok(pos);
            }
            if attributes & (1 << top) != 0 {
                attributes &= !(1 << top);
                // The attribute is done; the element it annotates is not.
                break;
            }
        }
    }
}

/// A complete and valid bulk string, checked without building a frame: where
/// its payload starts and the position after it, or `None` for anything else
/// (incomplete, null, malformed, over the limit), which the general path then
/// reads and reports exactly as it would have.
#[inline(always)]
fn checked_bulk(buf: &[u8], pos: usize, max_bulk_len: usize) -> Option<(usize, usize)> {
    let rest = buf.get(pos..)?;
    let (&b'$', digits) = rest.split_first()? else {
        return None;
    };
    let mut len: usize = 0;
    let mut n = 0;
    // 18 digits cannot overflow a u64 and are far beyond any sane limit.
    for &b in digits.iter().take(18) {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        len = len.wrapping_mul(10).wrapping_add(usize::from(digit));
        n += 1;
    }
    if n == 0 || len > max_bulk_len || digits.get(n..n + 2)? != b"\r\n" {
        return None;
    }
    let start = pos + 1 + n + 2;
    let end = start.checked_add(len)?;
    if buf.get(end..end.checked_add(2)?)? != b"\r\n" {
        return None;
    }
    Some((start, end + 2))
}

/// The commonest frames (bulk strings, integers, simple strings) when
/// complete and valid, read without the general machinery: the frame and the
/// position after it, or `None` for the general path to read and report.
#[inline(always)]
fn fast_scalar<'a>(buf: &'a [u8], pos: usize, cx: &Context) -> Option<(Frame<'a>, usize)> {
    match *buf.get(pos)? {
        b'$' => {
            let (start, next) = checked_bulk(buf, pos, cx.max_bulk_len)?;
            Some((Frame::BulkString(buf.get(start..next - 2)?), next))
        }
        b':' => {
            let (n, next) = integer(buf, pos + 1).ok()?;
            Some((Frame::Integer(n), next))
        }
        b'+' => {
            let (text, next) = line(buf, pos + 1, cx.max_line).ok()?;
            Some((Frame::SimpleString(text), next))
        }
        _ => None,
    }
}

/// Whether the element being read is the last one of every open aggregate.
fn completes_all(remaining: &[usize], open: usize) -> bool {
    remaining
        .get(..open)
        .is_some_and(|open| open.iter().all(|&r| r == 1))
}

/// Reads one frame header at `pos`: a whole scalar, or an aggregate's count.
/// Returns the position after what it read.
fn header<'a>(buf: &'a [u8], pos: usize, cx: &Context) -> Result<(Header<'a>, usize), Halt> {
    let Some(&marker) = buf.get(pos) else {
        return Err(Halt::Incomplete(None));
    };
    let at = pos + 1;
    let scalar = |frame, next| Ok((Header::Scalar(frame), next));
    match marker {
        b'+' => {
            let (line, next) = line(buf, at, cx.max_line)?;
            scalar(Frame::SimpleString(line), next)
        }
        b'-' => {
            let (line, next) = line(buf, at, cx.max_line)?;
            scalar(Frame::SimpleError(line), next)
        }
        b':' => {
            let (n, next) = integer(buf, at)?;
            scalar(Frame::Integer(n), next)
        }
        b'$' | b'!' | b'=' => {
            let (len, next) = match length(buf, at, cx.max_bulk_len as u64)? {
                (Length::Null, next) if marker == b'$' => return scalar(Frame::Null, next),
                (Length::Null, _) => return Err(DecodeError::InvalidNumber.into()),
                (Length::Len(len), next) => (len, next),
            };
            if len > cx.max_bulk_len as u64 {
                return Err(DecodeError::BulkTooLong {
                    len,
                    max: cx.max_bulk_len,
                }
                .into());
            }
            // len <= max_bulk_len: usize, so this fits.
            let len = len as usize;
            let end = next.saturating_add(len);
            let Some(payload) = buf.get(next..end) else {
                return Err(Halt::Incomplete(Some(end.saturating_add(2))));
            };
            let after = crlf(buf, end).map_err(|halt| match halt {
                Halt::Incomplete(_) => Halt::Incomplete(Some(end + 2)),
                invalid => invalid,
            })?;
            let frame = match marker {
                b'$' => Frame::BulkString(payload),
                b'!' => Frame::BulkError(payload),
                _ => verbatim(payload)?,
            };
            scalar(frame, after)
        }
        b'*' | b'%' | b'~' | b'>' | b'|' => {
            let pairs = matches!(marker, b'%' | b'|');
            let max = cx.max_aggregate_len as u64;
            // A map of n pairs is 2n elements: compare n against half the limit.
            let limit = if pairs { max / 2 } else { max };
            let (n, next) = match length(buf, at, limit)? {
                (Length::Null, next) if marker == b'*' => return scalar(Frame::Null, next),
                (Length::Null, _) => return Err(DecodeError::InvalidNumber.into()),
                (Length::Len(n), next) => (n, next),
            };
            let elements = if pairs { n.saturating_mul(2) } else { n };
            if elements > max {
                return Err(DecodeError::AggregateTooLong {
                    len: elements,
                    max: cx.max_aggregate_len,
                }
                .into());
            }
            let kind = match marker {
                b'*' => Kind::Array,
                b'%' => Kind::Map,
                b'~' => Kind::Set,
                b'>' => Kind::Push,
                _ => Kind::Attribute,
            };
            // elements <= max_aggregate_len: usize, so this fits.
            Ok((
                Header::Aggregate {
                    kind,
                    len: elements as usize,
                },
                next,
            ))
        }
        b'_' => scalar(Frame::Null, crlf(buf, at)?),
        b'#' => {
            let value = match buf.get(at) {
                None => return Err(Halt::Incomplete(None)),
                Some(b't') => true,
                Some(b'f') => false,
                Some(_) => return Err(DecodeError::InvalidBoolean.into()),
            };
            scalar(Frame::Boolean(value), crlf(buf, at + 1)?)
        }
        b',' => {
            let (line, next) = line(buf, at, MAX_DOUBLE_LINE)?;
            let double = Double::parse(line).ok_or(DecodeError::InvalidNumber)?;
            scalar(Frame::Double(double), next)
        }
        b'(' => {
            let (line, next) = line(buf, at, cx.max_line)?;
            if line.len() > cx.max_bulk_len {
                return Err(DecodeError::BulkTooLong {
                    len: line.len() as u64,
                    max: cx.max_bulk_len,
                }
                .into());
            }
            let digits = match line {
                [b'-' | b'+', rest @ ..] => rest,
                _ => line,
            };
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(DecodeError::InvalidNumber.into());
            }
            scalar(Frame::BigNumber(line), next)
        }
        // Streamed string chunks and the streamed-aggregate terminator.
        b';' | b'.' => Err(DecodeError::StreamedUnsupported.into()),
        byte => Err(DecodeError::UnknownType { byte }.into()),
    }
}

/// Expects `\r\n` at `pos`; returns the position after it.
#[inline]
fn crlf(buf: &[u8], pos: usize) -> Result<usize, Halt> {
    match buf.get(pos..pos + 2) {
        Some(b"\r\n") => Ok(pos + 2),
        Some(_) => Err(DecodeError::MissingCrlf.into()),
        None => match buf.get(pos) {
            Some(b'\r') | None => Err(Halt::Incomplete(None)),
            Some(_) => Err(DecodeError::MissingCrlf.into()),
        },
    }
}

/// A line from `start` up to the first CR, which must be followed by LF.
/// Longer than `max` without a CR is an error, so garbage cannot make the
/// caller wait forever.
#[inline]
fn line(buf: &[u8], start: usize, max: usize) -> Result<(&[u8], usize), Halt> {
    let rest = buf.get(start..).unwrap_or_default();
    // One byte past `max` is enough to prove the line too long.
    let window = rest.get(..max.saturating_add(1)).unwrap_or(rest);
    match memchr::memchr(b'\r', window) {
        Some(i) if i <= max => {
            let next = crlf(buf, start + i)?;
            Ok((rest.get(..i).unwrap_or_default(), next))
        }
        _ if window.len() > max => Err(DecodeError::LineTooLong { max }.into()),
        _ => Err(Halt::Incomplete(None)),
    }
}

enum Length {
    /// `-1`
    Null,
    Len(u64),
}

/// A length line: decimal digits, or `-1`. Fails as soon as the digits seen
/// exceed `limit`, before the line ends, so a hostile header cannot make the
/// caller wait for a payload it will refuse anyway. The caller turns a value
/// over `limit` into its own limit error; here it only stops reading early.
#[inline]
fn length(buf: &[u8], start: usize, limit: u64) -> Result<(Length, usize), Halt> {
    match buf.get(start) {
        None => return Err(Halt::Incomplete(None)),
        Some(b'?') => return Err(DecodeError::StreamedUnsupported.into()),
        Some(b'-') => {
            return match buf.get(start + 1) {
                None => Err(Halt::Incomplete(None)),
                Some(b'1') => Ok((Length::Null, crlf(buf, start + 2)?)),
                Some(_) => Err(DecodeError::InvalidNumber.into()),
            };
        }
        Some(_) => {}
    }
    // At most 20 digits: more is malformed whatever their value.
    let mut value: u64 = 0;
    let mut pos = start;
    for &b in buf
        .get(start..)
        .unwrap_or_default()
        .iter()
        .take(MAX_NUMBER_LINE)
    {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        value = value.saturating_mul(10).saturating_add(u64::from(digit));
        pos += 1;
    }
    if value > limit {
        // Report the whole number as far as it has arrived.
        while let Some(&b @ b'0'..=b'9') = buf.get(pos) {
            value = value.saturating_mul(10).saturating_add(u64::from(b - b'0'));
            pos += 1;
        }
        return Ok((Length::Len(value), pos));
    }
    match buf.get(pos) {
        Some(b'\r') if pos > start => Ok((Length::Len(value), crlf(buf, pos)?)),
        None => Err(Halt::Incomplete(None)),
        Some(_) => Err(DecodeError::InvalidNumber.into()),
    }
}

/// `:` payload: optional sign, decimal digits, within i64.
#[inline]
fn integer(buf: &[u8], start: usize) -> Result<(i64, usize), Halt> {
    let (negative, digits_start) = match buf.get(start) {
        None => return Err(Halt::Incomplete(None)),
        Some(b'-') => (true, start + 1),
        Some(b'+') => (false, start + 1),
        Some(_) => (false, start),
    };
    // Magnitude up to 2^63 so that i64::MIN parses.
    let max_magnitude = if negative {
        1u64 << 63
    } else {
        i64::MAX as u64
    };
    // 19 digits always fit a u64, and i64 needs no more.
    let mut magnitude: u64 = 0;
    let mut pos = digits_start;
    for &b in buf.get(digits_start..).unwrap_or_default().iter().take(19) {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        magnitude = magnitude.wrapping_mul(10).wrapping_add(u64::from(digit));
        pos += 1;
    }
    if magnitude > max_magnitude {
        return Err(DecodeError::InvalidNumber.into());
    }
    match buf.get(pos) {
        Some(b'\r') if pos > digits_start => {
            let next = crlf(buf, pos)?;
            // In range by the check above; wrapping takes 2^63 to i64::MIN.
            let value = if negative {
                (magnitude as i64).wrapping_neg()
            } else {
                magnitude as i64
            };
            Ok((value, next))
        }
        None => Err(Halt::Incomplete(None)),
        // A 20th digit, or anything else.
        Some(_) => Err(DecodeError::InvalidNumber.into()),
    }
}

/// `=` payload: `xxx:` then the text.
fn verbatim(payload: &[u8]) -> Result<Frame<'_>, DecodeError> {
    match payload {
        [a, b, c, b':', text @ ..] => Ok(Frame::Verbatim {
            format: [*a, *b, *c],
            text,
        }),
        _ => Err(DecodeError::InvalidVerbatim),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Limits = Limits {
        max_depth: 3,
        max_bulk_len: 16,
        max_aggregate_len: 4,
    };

    #[track_caller]
    fn frame<'a>(input: &'a [u8]) -> Frame<'a> {
        match decode(input, &Limits::REDIS) {
            Ok(Decoded::Frame {
                frame,
                attributes: None,
                consumed,
            }) => {
                assert_eq!(consumed, input.len(), "consumed all of {input:?}");
                frame
            }
            other => panic!("{input:?}: expected one frame, got {other:?}"),
        }
    }

    #[track_caller]
    fn incomplete(input: &[u8], needed: Option<usize>) {
        assert_eq!(
            decode(input, &Limits::REDIS),
            Ok(Decoded::Incomplete { needed }),
            "{input:?}"
        );
    }

    #[track_caller]
    fn invalid(input: &[u8], limits: &Limits, error: DecodeError) {
        assert_eq!(decode(input, limits), Err(error), "{input:?}");
    }

    #[track_caller]
    fn items<'a>(agg: Aggregate<'a>) -> heapless::Vec<Frame<'a>, 16> {
        let items: heapless::Vec<Frame<'a>, 16> = agg.iter().collect();
        assert_eq!(items.len(), agg.len());
        items
    }

    #[test]
    fn scalars() {
        assert_eq!(frame(b"+OK\r\n"), Frame::SimpleString(b"OK"));
        assert_eq!(frame(b"+\r\n"), Frame::SimpleString(b""));
        assert_eq!(frame(b"-ERR bad\r\n"), Frame::SimpleError(b"ERR bad"));
        assert_eq!(frame(b":0\r\n"), Frame::Integer(0));
        assert_eq!(frame(b":-42\r\n"), Frame::Integer(-42));
        assert_eq!(frame(b":+7\r\n"), Frame::Integer(7));
        assert_eq!(frame(b":9223372036854775807\r\n"), Frame::Integer(i64::MAX));
        assert_eq!(
            frame(b":-9223372036854775808\r\n"),
            Frame::Integer(i64::MIN)
        );
        assert_eq!(frame(b"$3\r\nf\r\n\r\n"), Frame::BulkString(b"f\r\n"));
        assert_eq!(frame(b"$0\r\n\r\n"), Frame::BulkString(b""));
        assert_eq!(frame(b"$-1\r\n"), Frame::Null);
        assert_eq!(frame(b"*-1\r\n"), Frame::Null);
        assert_eq!(frame(b"_\r\n"), Frame::Null);
        assert_eq!(frame(b"#t\r\n"), Frame::Boolean(true));
        assert_eq!(frame(b"#f\r\n"), Frame::Boolean(false));
        let double = |bytes: &'static [u8]| match frame(bytes) {
            Frame::Double(d) => d.value(),
            other => panic!("{other:?}"),
        };
        assert_eq!(double(b",3.25\r\n"), 3.25);
        assert_eq!(double(b",1e3\r\n"), 1000.0);
        assert_eq!(double(b",-1.5E-2\r\n"), -0.015);
        assert_eq!(double(b",inf\r\n"), f64::INFINITY);
        assert_eq!(double(b",-inf\r\n"), f64::NEG_INFINITY);
        assert!(double(b",nan\r\n").is_nan());
        for bad in [
            &b",\r\n"[..],
            b",1e\r\n",
            b",.\r\n",
            b",1.2.3\r\n",
            b",infx\r\n",
            b",0x10\r\n",
        ] {
            assert_eq!(
                decode(bad, &Limits::REDIS),
                Err(DecodeError::InvalidNumber),
                "{bad:?}"
            );
        }
        assert_eq!(
            frame(b"(-123456789012345678901234567890\r\n"),
            Frame::BigNumber(b"-123456789012345678901234567890")
        );
        assert_eq!(frame(b"!5\r\nERR x\r\n"), Frame::BulkError(b"ERR x"));
        assert_eq!(
            frame(b"=8\r\ntxt:hi\r\n\r\n"),
            Frame::Verbatim {
                format: *b"txt",
                text: b"hi\r\n"
            }
        );
        assert_eq!(
            frame(b"=4\r\nmkd:\r\n"),
            Frame::Verbatim {
                format: *b"mkd",
                text: b""
            }
        );
    }

    #[test]
    fn aggregates() {
        let Frame::Array(a) = frame(b"*3\r\n$1\r\na\r\n:1\r\n*1\r\n+x\r\n") else {
            panic!()
        };
        let v = items(a);
        assert_eq!(v[0], Frame::BulkString(b"a"));
        assert_eq!(v[1], Frame::Integer(1));
        let Frame::Array(inner) = v[2] else { panic!() };
        assert_eq!(&items(inner)[..], &[Frame::SimpleString(b"x")]);

        let Frame::Map(m) = frame(b"%2\r\n+a\r\n:1\r\n+b\r\n_\r\n") else {
            panic!()
        };
        assert_eq!(m.len(), 4);
        assert_eq!(
            &items(m)[..],
            &[
                Frame::SimpleString(b"a"),
                Frame::Integer(1),
                Frame::SimpleString(b"b"),
                Frame::Null
            ]
        );
        assert!(matches!(frame(b"~0\r\n"), Frame::Set(s) if s.is_empty()));
        let Frame::Push(p) = frame(b">2\r\n+message\r\n$2\r\nhi\r\n") else {
            panic!()
        };
        assert_eq!(
            &items(p)[..],
            &[Frame::SimpleString(b"message"), Frame::BulkString(b"hi")]
        );
    }

    #[test]
    fn nulls_inside_aggregates_stay_null() {
        let Frame::Array(a) = frame(b"*3\r\n$-1\r\n$1\r\na\r\n*-1\r\n") else {
            panic!()
        };
        assert_eq!(
            &items(a)[..],
            &[Frame::Null, Frame::BulkString(b"a"), Frame::Null]
        );
    }

    #[test]
    fn attributes_in_front_and_inside() {
        let input = b"|1\r\n+ttl\r\n:3\r\n*2\r\n|1\r\n+k\r\n+v\r\n:1\r\n|0\r\n:2\r\n";
        let Ok(Decoded::Frame {
            frame: Frame::Array(a),
            attributes: Some(attr),
            consumed,
        }) = decode(input, &Limits::REDIS)
        else {
            panic!("{:?}", decode(input, &Limits::REDIS));
        };
        assert_eq!(consumed, input.len());
        assert_eq!(
            &items(attr)[..],
            &[Frame::SimpleString(b"ttl"), Frame::Integer(3)]
        );
        assert_eq!(&items(a)[..], &[Frame::Integer(1), Frame::Integer(2)]);
    }

    #[test]
    fn incomplete_says_what_it_knows() {
        incomplete(b"", None);
        incomplete(b"+OK", None);
        incomplete(b"+OK\r", None);
        incomplete(b"$5\r\nab", Some(11));
        incomplete(b"$5\r\nabcde\r", Some(11));
        incomplete(b"*2\r\n$1\r\na\r\n$3\r\nb", Some(20));
        // More elements follow the bulk being read: the total is unknown.
        incomplete(b"*2\r\n$3\r\nb", None);
        incomplete(b"|1\r\n+a\r\n$3\r\nb", None);
        incomplete(b"|1\r\n+a\r\n+b\r\n$3\r\nb", Some(21));
        incomplete(b"#", None);
        incomplete(b":-", None);
        incomplete(b"$-", None);
    }

    #[test]
    fn errors_are_immediate() {
        let r = &Limits::REDIS;
        invalid(b"x", r, DecodeError::UnknownType { byte: b'x' });
        invalid(
            b"$999999999999\r\n",
            r,
            DecodeError::BulkTooLong {
                len: 999_999_999_999,
                max: r.max_bulk_len,
            },
        );
        // Over the limit before the header is even finished.
        invalid(
            b"$17",
            &SMALL,
            DecodeError::BulkTooLong { len: 17, max: 16 },
        );
        invalid(
            b"$99999999999999999999999",
            r,
            DecodeError::BulkTooLong {
                len: u64::MAX,
                max: r.max_bulk_len,
            },
        );
        invalid(
            b"*5",
            &SMALL,
            DecodeError::AggregateTooLong { len: 5, max: 4 },
        );
        invalid(
            b"%3\r\n",
            &SMALL,
            DecodeError::AggregateTooLong { len: 6, max: 4 },
        );
        invalid(
            b"*1\r\n*1\r\n*1\r\n*1\r\n",
            &SMALL,
            DecodeError::TooDeep { max: 3 },
        );
        invalid(b"$?\r\n", r, DecodeError::StreamedUnsupported);
        invalid(b"*?", r, DecodeError::StreamedUnsupported);
        invalid(b";4\r\n", r, DecodeError::StreamedUnsupported);
        invalid(b"$-2\r\n", r, DecodeError::InvalidNumber);
        invalid(b"%-1\r\n", r, DecodeError::InvalidNumber);
        invalid(b"$\r\n", r, DecodeError::InvalidNumber);
        invalid(b"$+1\r\n", r, DecodeError::InvalidNumber);
        invalid(b":\r\n", r, DecodeError::InvalidNumber);
        invalid(b":1x", r, DecodeError::InvalidNumber);
        invalid(b":9223372036854775808\r\n", r, DecodeError::InvalidNumber);
        invalid(b",abc\r\n", r, DecodeError::InvalidNumber);
        invalid(b"(12a\r\n", r, DecodeError::InvalidNumber);
        invalid(b"#x", r, DecodeError::InvalidBoolean);
        invalid(b"#tt", r, DecodeError::MissingCrlf);
        invalid(b"_x", r, DecodeError::MissingCrlf);
        invalid(b"+OK\rx", r, DecodeError::MissingCrlf);
        invalid(b"$1\r\nab", r, DecodeError::MissingCrlf);
        invalid(b"=3\r\ntxt\r\n", r, DecodeError::InvalidVerbatim);
        invalid(b"=4\r\ntxt-\r\n", r, DecodeError::InvalidVerbatim);
        invalid(b"*2\r\n+a\r\n?", r, DecodeError::UnknownType { byte: b'?' });
    }

    #[test]
    fn lines_are_bounded() {
        let mut garbage = [b'a'; MIN_LINE + 2];
        garbage[0] = b'+';
        invalid(&garbage, &SMALL, DecodeError::LineTooLong { max: MIN_LINE });
        // Exactly at the bound is still a line.
        let mut ok = [b'a'; MIN_LINE + 3];
        ok[0] = b'+';
        ok[MIN_LINE + 1] = b'\r';
        ok[MIN_LINE + 2] = b'\n';
        assert!(matches!(decode(&ok, &SMALL), Ok(Decoded::Frame { .. })));
        invalid(
            b":000000000000000000001\r\n",
            &Limits::REDIS,
            DecodeError::InvalidNumber,
        );
    }

    #[test]
    fn depth_limit_counts_attributes_and_empty_aggregates() {
        invalid(
            b"*1\r\n*1\r\n*1\r\n*0\r\n",
            &SMALL,
            DecodeError::TooDeep { max: 3 },
        );
        assert!(matches!(frame(b"*1\r\n*1\r\n*0\r\n"), Frame::Array(_)));
        let zero = Limits {
            max_depth: 0,
            ..Limits::REDIS
        };
        invalid(b"*0\r\n", &zero, DecodeError::TooDeep { max: 0 });
        assert!(matches!(
            decode(b"+OK\r\n", &zero),
            Ok(Decoded::Frame { .. })
        ));
    }

    #[test]
    fn deep_nesting_is_bounded_not_recursive() {
        let mut deep = [0u8; 4 * 200 + 4];
        for chunk in deep.chunks_mut(4) {
            chunk.copy_from_slice(b"*1\r\n");
        }
        let deep_limits = Limits {
            max_depth: 255,
            ..Limits::REDIS
        };
        invalid(
            &deep,
            &deep_limits,
            DecodeError::TooDeep { max: MAX_DEPTH_CAP },
        );
    }

    #[test]
    fn only_the_first_frame_is_consumed() {
        let input = b"+a\r\n+b\r\n";
        assert_eq!(
            decode(input, &Limits::REDIS),
            Ok(Decoded::Frame {
                frame: Frame::SimpleString(b"a"),
                attributes: None,
                consumed: 4
            })
        );
    }
}

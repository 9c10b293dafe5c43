//! The RESP2/RESP3 decoder: validates one whole frame at the front of a byte
//! slice with an explicit, fixed-size nesting stack, then hands out borrowed
//! views of it.
//!
//! Why validate everything up front and iterate lazily afterwards: the caller
//! learns in one call whether the frame is complete and well-formed (so the
//! connection can be closed on garbage before any of it is acted on), yet no
//! storage proportional to the frame is ever needed. Iterating a nested
//! aggregate re-reads its headers; that is the price of holding nothing.
//!
//! Why a [`Resume`] the caller keeps: a reply arrives in pieces, and a
//! decoder that starts over on every piece reads an n-byte reply n/piece
//! times (a 13 MB HGETALL fed 16 KiB at a time took 1.2 s instead of 3 ms).
//! The walk below stops only between elements, and everything it needs to go
//! on (where, how deep, how many elements each open aggregate still owes)
//! fits in a fixed-size value. One-shot [`decode`] is the same walk with a
//! fresh state.
//!
//! Why no recursion: nesting depth is under the peer's control, and a small
//! firmware stack must not be its to exhaust. The stack here is
//! `[u32; MAX_DEPTH_CAP]` whatever the input.
//!
//! Why every count is a `u32` and every length a `u64` until checked: a
//! Cortex-M's `usize` is 32 bits, and a length that wraps there frames a
//! different reply than on a 64-bit host (`$4294967297` read as `$1`). Counts
//! past `u32::MAX` (Redis's own ceiling) are refused on every target.
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
/// Most elements in one aggregate on any target, whatever
/// `max_aggregate_len` says: Redis's own limit, and what a `u32` counts.
pub(crate) const MAX_AGGREGATE_LEN: usize = u32::MAX as usize;

/// Looks at the front of `buf`: one complete frame (validated in full, nested
/// elements included), or [`Decoded::Incomplete`], or an error.
///
/// Errors are reported as soon as the bytes seen prove them, even when the
/// frame is not complete yet: an over-long bulk header fails before its
/// payload arrives, and a first byte that is no type marker fails at once.
///
/// A RESP3 attribute (`|`) in front of the frame is consumed and returned in
/// `attributes`; when several follow each other, the last one is returned.
///
/// Stateless: called again with more bytes, it starts over from the front.
/// Where a reply may arrive in many pieces, [`decode_resume`] goes on from
/// where the last call stopped instead.
pub fn decode<'a>(buf: &'a [u8], limits: &Limits) -> Result<Decoded<'a>, DecodeError> {
    decode_afresh(buf, &Context::new(limits))
}

/// [`decode`] with the limits worked out.
fn decode_afresh<'a>(buf: &'a [u8], cx: &Context) -> Result<Decoded<'a>, DecodeError> {
    if let Some((frame, consumed)) = fast_scalar(buf, 0, cx) {
        return Ok(Decoded::Frame {
            frame,
            attributes: None,
            consumed,
        });
    }
    // A state costs a 300-byte clear (and a stall on reading it back): only
    // set one up for what the flat path leaves.
    match flat(buf, cx) {
        Flat::Frame(decoded) => Ok(decoded),
        Flat::Stopped { top, pos, left } => walk(buf, cx, &mut Resume::inside(top, pos, left)),
        Flat::Elsewhere => walk(buf, cx, &mut Resume::new()),
    }
}

/// How far [`flat`] got.
enum Flat<'a> {
    /// The whole frame: a scalar, or an aggregate of complete scalars.
    Frame(Decoded<'a>),
    /// In the frame's own aggregate, at an element that is no complete
    /// scalar: `left` elements to go, that one included.
    Stopped { top: Opened, pos: usize, left: u32 },
    /// Anything else: an attribute in front, a limit, a header not all there.
    Elsewhere,
}

/// Most replies are scalars or flat aggregates (MGET, HGETALL, pub/sub
/// messages): read those without a nesting stack, and hand what is left to
/// [`walk`], which reads and reports it exactly as if it had started.
fn flat<'a>(buf: &'a [u8], cx: &Context) -> Flat<'a> {
    let (kind, len, body_start) = match header(buf, 0, cx, 0) {
        Ok((Header::Scalar(frame), consumed)) => {
            return Flat::Frame(Decoded::Frame {
                frame,
                attributes: None,
                consumed,
            });
        }
        // What `Resume::admit` checks of the frame's own aggregate.
        Ok((Header::Aggregate { kind, len }, next))
            if kind != Kind::Attribute
                && cx.max_depth > 0
                && u64::from(len) <= cx.max_elements as u64 =>
        {
            (kind, len, next)
        }
        _ => return Flat::Elsewhere,
    };
    let mut pos = body_start;
    let mut left = len;
    while left > 0 {
        if let Some((_, next)) = fast_scalar(buf, pos, cx) {
            pos = next;
        } else if let Ok((Header::Scalar(_), next)) = header(buf, pos, cx, 0) {
            pos = next;
        } else {
            let top = Opened {
                kind,
                body_start,
                len,
            };
            return Flat::Stopped { top, pos, left };
        }
        left -= 1;
    }
    let agg = Aggregate {
        len: len as usize,
        body: buf.get(body_start..pos).unwrap_or_default(),
    };
    Flat::Frame(Decoded::Frame {
        frame: kind.wrap(agg),
        attributes: None,
        consumed: pos,
    })
}

/// [`decode`] for a frame that arrives in pieces: goes on from where the
/// previous call with the same `state` stopped, so however the frame is cut,
/// each of its bytes is read a bounded number of times (a few; a bulk's
/// payload not at all) and the total cost is linear in its length.
///
/// Contract: `buf` starts where the previous call's `buf` started and is at
/// least as long (bytes were only appended), until this returns a frame or an
/// error. Both reset `state` for the next frame, wherever it starts. A `buf`
/// shorter than the previous one is taken as a new frame (the state is reset
/// first); call [`Resume::reset`] when the buffer is thrown away (on
/// reconnect, say) and the next one might be as long.
///
/// Results are those of [`decode`] on the same `buf`: the same frame and
/// `consumed`, the same error, and `Incomplete { needed }` with the same
/// promise (a buffer of `needed` bytes completes the frame).
pub fn decode_resume<'a>(
    buf: &'a [u8],
    limits: &Limits,
    state: &mut Resume,
) -> Result<Decoded<'a>, DecodeError> {
    let cx = Context::new(limits);
    if buf.len() < state.seen {
        state.reset();
    }
    // Nothing read yet (a pending line would be searched again): the
    // commonest frames need no walk.
    if state.pos == 0
        && state.line_scan == 0
        && let Some((frame, consumed)) = fast_scalar(buf, 0, &cx)
    {
        state.reset();
        return Ok(Decoded::Frame {
            frame,
            attributes: None,
            consumed,
        });
    }
    walk(buf, &cx, state)
}

/// How far [`decode_resume`] got into a frame that has not fully arrived.
///
/// Fixed size whatever the frame (352 bytes on a 64-bit target, 320 on a
/// 32-bit one, 256 of them the nesting stack): the position up to which the
/// frame is validated, the count of elements each open aggregate still owes,
/// and what is known of the frame's own header and of an attribute in front
/// of it. Nothing in it
/// borrows the buffer: the buffer may move (grow, be copied) between calls as
/// long as its bytes stay the same.
#[derive(Clone)]
pub struct Resume {
    /// The start of the next header: every byte before it is validated.
    pos: usize,
    /// The buffer's length at the last call: a shorter one is a new frame.
    seen: usize,
    /// A line (simple string, error, double, big number) starting at `pos`
    /// was cut short: no CR in it before this position. 0 otherwise.
    line_scan: usize,
    /// Elements announced by every aggregate header read so far.
    elements: u64,
    /// How many aggregates are open (the frame's own is the first).
    open: u8,
    /// Bit i: the aggregate at depth i + 1 is an attribute, whose end is not
    /// an element of its parent.
    attribute_levels: u64,
    /// `remaining[i]`: elements the aggregate at depth i + 1 still owes. The
    /// innermost one's lives in a local while walking, stored on suspending.
    remaining: [u32; MAX_DEPTH_CAP as usize],
    /// The frame's own aggregate, once its header is read.
    top: Opened,
    /// The last attribute read in front of the frame.
    leading: Option<Span>,
}

/// An aggregate whose header has been read.
#[derive(Clone, Copy)]
struct Opened {
    kind: Kind,
    body_start: usize,
    len: u32,
}

/// A validated aggregate body.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    len: u32,
}

impl Resume {
    /// A state for a frame not seen yet.
    pub const fn new() -> Self {
        Resume {
            pos: 0,
            seen: 0,
            line_scan: 0,
            elements: 0,
            open: 0,
            attribute_levels: 0,
            remaining: [0; MAX_DEPTH_CAP as usize],
            top: Opened {
                kind: Kind::Array,
                body_start: 0,
                len: 0,
            },
            leading: None,
        }
    }

    /// A state inside the frame's own aggregate `top` (admitted), at `pos`,
    /// `left` elements to go.
    fn inside(top: Opened, pos: usize, left: u32) -> Self {
        let mut state = Resume::new();
        state.pos = pos;
        state.open = 1;
        state.elements = u64::from(top.len);
        state.top = top;
        state.remaining[0] = left;
        state
    }

    /// Forgets the frame in progress: the next call starts a new one.
    pub fn reset(&mut self) {
        // `remaining` is written before it is read, at every depth: left as is.
        self.pos = 0;
        self.seen = 0;
        self.line_scan = 0;
        self.elements = 0;
        self.open = 0;
        self.attribute_levels = 0;
        self.leading = None;
    }

    /// How many bytes at the front of the pending frame are validated: the
    /// next call reads on from there.
    pub fn validated(&self) -> usize {
        self.pos
    }

    /// Counts an aggregate of `len` elements at `depth` (1 = the frame's own)
    /// against the limits.
    fn admit(&mut self, len: u32, depth: usize, cx: &Context) -> Result<(), DecodeError> {
        if depth > usize::from(cx.max_depth) {
            return Err(DecodeError::TooDeep { max: cx.max_depth });
        }
        self.elements = self.elements.saturating_add(u64::from(len));
        if self.elements > cx.max_elements as u64 {
            return Err(DecodeError::TooManyElements {
                max: cx.max_elements,
            });
        }
        Ok(())
    }

    /// Remembers where the walk stopped: at the header starting at `pos`,
    /// with `open` aggregates open, the innermost owing `left` elements.
    fn suspend(&mut self, buf: &[u8], pos: usize, open: usize, left: u32) {
        self.pos = pos;
        self.seen = buf.len();
        // `open` never exceeds max_depth <= MAX_DEPTH_CAP.
        self.open = open as u8;
        if let Some(slot) = open.checked_sub(1).and_then(|i| self.remaining.get_mut(i)) {
            *slot = left;
        }
        // A line has no length to say where it ends: without this, a 64 KiB
        // line arriving a byte at a time would be searched 64 Ki times. No CR
        // lies before the last byte (one that is the CR awaits its LF).
        self.line_scan = match buf.get(pos) {
            Some(b'+' | b'-' | b'(' | b',') => buf.len().saturating_sub(1).max(pos + 1),
            _ => 0,
        };
    }

    fn frame<'a>(&self, buf: &'a [u8], frame: Frame<'a>, consumed: usize) -> Decoded<'a> {
        let attributes = self.leading.map(|span| Aggregate {
            len: span.len as usize,
            // The span was validated within this buffer.
            body: buf.get(span.start..span.end).unwrap_or_default(),
        });
        Decoded::Frame {
            frame,
            attributes,
            consumed,
        }
    }
}

impl Default for Resume {
    fn default() -> Self {
        Resume::new()
    }
}

impl fmt::Debug for Resume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let open = self.remaining.get(..usize::from(self.open));
        f.debug_struct("Resume")
            .field("validated", &self.pos)
            .field("remaining", &open.unwrap_or_default())
            .field("elements", &self.elements)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Resume {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Resume {{ validated: {=usize}, open: {=u8}, elements: {=u64} }}",
            self.pos,
            self.open,
            self.elements
        )
    }
}

/// Walks the frame from where `state` stopped: the frame, or an error (both
/// reset the state), or `Incomplete` with the state saved.
fn walk<'a>(buf: &'a [u8], cx: &Context, state: &mut Resume) -> Result<Decoded<'a>, DecodeError> {
    match advance(buf, cx, state) {
        Ok(decoded) => {
            state.reset();
            Ok(decoded)
        }
        // `advance` saved the state before stopping.
        Err(Halt::Incomplete(needed)) => Ok(Decoded::Incomplete { needed }),
        Err(Halt::Invalid(e)) => {
            state.reset();
            Err(e)
        }
    }
}

/// The walk itself: one header at a time, stopping only between elements.
/// Everything the next call needs is in `st` when it returns
/// `Halt::Incomplete`.
fn advance<'a>(buf: &'a [u8], cx: &Context, st: &mut Resume) -> Result<Decoded<'a>, Halt> {
    let mut pos = st.pos;
    let mut open = usize::from(st.open);
    // Elements still owed by the innermost open aggregate.
    let mut left = match open.checked_sub(1) {
        Some(i) => st.remaining.get(i).copied().unwrap_or(0),
        None => 0,
    };
    let mut scan_from = st.line_scan;
    loop {
        if open == 0 {
            // The frame's own header, or an attribute in front of it.
            let (head, next) = match header(buf, pos, cx, scan_from) {
                Ok(h) => h,
                Err(Halt::Incomplete(needed)) => {
                    // A top-level bulk knows the whole frame's length: `needed`
                    // is a buffer length, so attributes in front do not matter.
                    st.suspend(buf, pos, 0, 0);
                    return Err(Halt::Incomplete(needed));
                }
                Err(e) => return Err(e),
            };
            scan_from = 0;
            let (kind, len) = match head {
                Header::Scalar(frame) => return Ok(st.frame(buf, frame, next)),
                Header::Aggregate { kind, len } => (kind, len),
            };
            st.admit(len, 1, cx)?;
            pos = next;
            if len == 0 {
                if kind == Kind::Attribute {
                    st.leading = Some(Span {
                        start: next,
                        end: next,
                        len: 0,
                    });
                    continue;
                }
                let empty = Aggregate { len: 0, body: &[] };
                return Ok(st.frame(buf, kind.wrap(empty), next));
            }
            st.top = Opened {
                kind,
                body_start: next,
                len,
            };
            st.attribute_levels = u64::from(kind == Kind::Attribute);
            open = 1;
            left = len;
        }

        // Elements of the innermost open aggregate. Most replies are flat
        // (MGET, HGETALL, pub/sub messages): their scalars go by here.
        if scan_from == 0 {
            while left > 0 {
                let Some((_, next)) = fast_scalar(buf, pos, cx) else {
                    break;
                };
                pos = next;
                left -= 1;
            }
        }
        if left > 0 {
            match header(buf, pos, cx, scan_from) {
                Ok((Header::Scalar(_), next)) => {
                    pos = next;
                    left -= 1;
                }
                Ok((Header::Aggregate { kind, len }, next)) => {
                    st.admit(len, open + 1, cx)?;
                    pos = next;
                    if len > 0 {
                        // admit: open + 1 <= max_depth <= MAX_DEPTH_CAP.
                        let Some(slot) = st.remaining.get_mut(open - 1) else {
                            return Err(DecodeError::TooDeep { max: cx.max_depth }.into());
                        };
                        *slot = left;
                        if kind == Kind::Attribute {
                            st.attribute_levels |= 1 << open;
                        }
                        open += 1;
                        left = len;
                    } else if kind != Kind::Attribute {
                        // An empty attribute still needs the element after it.
                        left -= 1;
                    }
                }
                Err(Halt::Incomplete(needed)) => {
                    // A bulk's end is the frame's when it is the last element
                    // of every open aggregate, none of them an attribute.
                    let needed = needed.filter(|_| {
                        st.attribute_levels == 0
                            && left == 1
                            && st
                                .remaining
                                .get(..open - 1)
                                .is_some_and(|outer| outer.iter().all(|&r| r == 1))
                    });
                    st.suspend(buf, pos, open, left);
                    return Err(Halt::Incomplete(needed));
                }
                Err(e) => return Err(e),
            }
            scan_from = 0;
            if left > 0 {
                continue;
            }
        }

        // The innermost aggregate is complete: close it and every one whose
        // last element it was.
        loop {
            open -= 1;
            let was_attribute = st.attribute_levels & (1 << open) != 0;
            st.attribute_levels &= !(1 << open);
            if open == 0 {
                let top = st.top;
                let body = buf.get(top.body_start..pos).unwrap_or_default();
                if top.kind == Kind::Attribute {
                    st.leading = Some(Span {
                        start: top.body_start,
                        end: pos,
                        len: top.len,
                    });
                    break;
                }
                let agg = Aggregate {
                    len: top.len as usize,
                    body,
                };
                return Ok(st.frame(buf, top.kind.wrap(agg), pos));
            }
            left = st.remaining.get(open - 1).copied().unwrap_or(0);
            // An attribute is no element of its parent: the element it
            // annotates is still to come.
            if !was_attribute {
                left = left.saturating_sub(1);
            }
            if left > 0 {
                break;
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
        // the only answer that neither panics nor invents data. Attributes in
        // front of the element are consumed with it and dropped.
        let cx = Context::new(&Limits::VALIDATED);
        if let Some((frame, end)) = fast_scalar(self.body, self.pos, &cx) {
            self.pos = end;
            self.remaining -= 1;
            return Some(frame);
        }
        let rest = self.body.get(self.pos..).unwrap_or_default();
        match decode_afresh(rest, &cx) {
            Ok(Decoded::Frame {
                frame, consumed, ..
            }) => {
                self.pos += consumed;
                self.remaining -= 1;
                Some(frame)
            }
            _ => self.stop(),
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
        max_elements: usize::MAX,
    };
}

/// The limits with the derived bounds worked out once per call.
struct Context {
    max_depth: u8,
    max_bulk_len: usize,
    /// At most [`MAX_AGGREGATE_LEN`], so that a count fits a `u32`.
    max_aggregate_len: usize,
    max_elements: usize,
    max_line: usize,
}

impl Context {
    fn new(limits: &Limits) -> Self {
        Context {
            max_depth: limits.max_depth.min(MAX_DEPTH_CAP),
            max_bulk_len: limits.max_bulk_len,
            max_aggregate_len: limits.max_aggregate_len.min(MAX_AGGREGATE_LEN),
            max_elements: limits.max_elements,
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
    Aggregate { kind: Kind, len: u32 },
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
    // In a u64 on every target: 18 digits cannot overflow it (and are far
    // beyond any sane limit), where a 32-bit usize would wrap and frame
    // `$4294967297` as `$1`.
    let mut len: u64 = 0;
    let mut n = 0;
    for &b in digits.iter().take(18) {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        len = len * 10 + u64::from(digit);
        n += 1;
    }
    if n == 0 || len > max_bulk_len as u64 || digits.get(n..n + 2)? != b"\r\n" {
        return None;
    }
    // len <= max_bulk_len: a usize.
    let len = len as usize;
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
            let (text, next) = line(buf, pos + 1, cx.max_line, 0).ok()?;
            Some((Frame::SimpleString(text), next))
        }
        _ => None,
    }
}

/// Reads one frame header at `pos`: a whole scalar, or an aggregate's count.
/// Returns the position after what it read. `scan_from`: a line starting at
/// `pos` has no CR before there (0 when nothing is known).
fn header<'a>(
    buf: &'a [u8],
    pos: usize,
    cx: &Context,
    scan_from: usize,
) -> Result<(Header<'a>, usize), Halt> {
    let Some(&marker) = buf.get(pos) else {
        return Err(Halt::Incomplete(None));
    };
    let at = pos + 1;
    let scalar = |frame, next| Ok((Header::Scalar(frame), next));
    match marker {
        b'+' => {
            let (line, next) = line(buf, at, cx.max_line, scan_from)?;
            scalar(Frame::SimpleString(line), next)
        }
        b'-' => {
            let (line, next) = line(buf, at, cx.max_line, scan_from)?;
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
            // elements <= max_aggregate_len <= MAX_AGGREGATE_LEN: a u32.
            Ok((
                Header::Aggregate {
                    kind,
                    len: elements as u32,
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
            let (line, next) = line(buf, at, MAX_DOUBLE_LINE, scan_from)?;
            let double = Double::parse(line).ok_or(DecodeError::InvalidNumber)?;
            scalar(Frame::Double(double), next)
        }
        b'(' => {
            let (line, next) = line(buf, at, cx.max_line, scan_from)?;
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
/// caller wait forever. The search for the CR starts at `scan_from` when that
/// is further on: a resumed walk does not search the same bytes again.
#[inline]
fn line(buf: &[u8], start: usize, max: usize, scan_from: usize) -> Result<(&[u8], usize), Halt> {
    // One byte past `max` is enough to prove the line too long.
    let bound = start.saturating_add(max).saturating_add(1);
    let window_end = bound.min(buf.len());
    let from = scan_from.max(start);
    let window = buf.get(from..window_end).unwrap_or_default();
    match memchr::memchr(b'\r', window) {
        Some(i) => {
            let cr = from + i;
            let next = crlf(buf, cr)?;
            Ok((buf.get(start..cr).unwrap_or_default(), next))
        }
        None if window_end == bound => Err(DecodeError::LineTooLong { max }.into()),
        None => Err(Halt::Incomplete(None)),
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
        magnitude = magnitude * 10 + u64::from(digit);
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
        max_elements: 64,
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

    /// Feeds `input` to `decode_resume` `chunk` bytes more at a time,
    /// checking at every step that the answer is `decode`'s on the same
    /// bytes and that `needed` keeps its promise. Returns the last answer.
    #[track_caller]
    fn resumed<'a>(
        input: &'a [u8],
        limits: &Limits,
        chunk: usize,
    ) -> Result<Decoded<'a>, DecodeError> {
        let mut state = Resume::new();
        let mut len = 0;
        loop {
            len = (len + chunk).min(input.len());
            let prefix = &input[..len];
            let answer = decode_resume(prefix, limits, &mut state);
            assert_eq!(
                answer,
                decode(prefix, limits),
                "{input:?} cut at {len}, {chunk} bytes at a time"
            );
            if let Ok(Decoded::Incomplete { needed: Some(n) }) = answer {
                assert!(n > len);
                if let Some(enough) = input.get(..n) {
                    assert!(!matches!(
                        decode(enough, limits),
                        Ok(Decoded::Incomplete { .. })
                    ));
                }
            }
            if len == input.len() || !matches!(answer, Ok(Decoded::Incomplete { .. })) {
                return answer;
            }
        }
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
    #[test]
    fn resume_agrees_with_decode_however_cut() {
        let deep = b"*1\r\n*1\r\n*1\r\n*3\r\n:1\r\n*0\r\n$2\r\nab\r\n+tail\r\n";
        let cases: &[(&[u8], &Limits)] = &[
            (b"+OK\r\n", &Limits::REDIS),
            (b"$5\r\nhello\r\n", &Limits::REDIS),
            (b"*3\r\n$1\r\na\r\n:1\r\n*1\r\n+x\r\n", &Limits::REDIS),
            (b"%2\r\n+a\r\n:1\r\n+b\r\n_\r\n", &Limits::REDIS),
            (
                b"|1\r\n+ttl\r\n:3\r\n*2\r\n|1\r\n+k\r\n+v\r\n:1\r\n|0\r\n:2\r\n",
                &Limits::REDIS,
            ),
            (b"|1\r\n+a\r\n+b\r\n|0\r\n$3\r\nbcd\r\n", &Limits::REDIS),
            (b"*2\r\n:1\r\n*1\r\n$3\r\nbcd\r\n", &Limits::REDIS),
            (
                b"*2\r\n*1\r\n|1\r\n+k\r\n*1\r\n:1\r\n,1.5\r\n:7\r\n",
                &Limits::REDIS,
            ),
            (b">3\r\n-ERR x\r\n(123\r\n=5\r\ntxt:x\r\n", &Limits::REDIS),
            (deep, &Limits::REDIS),
            (deep, &SMALL),
            (b"*2\r\n+a\r\n?", &Limits::REDIS),
            (b"*1\r\n$17\r\n", &SMALL),
            (b"*2\r\n$1\r\nab", &Limits::REDIS),
            (b"+a\r\n+b\r\n", &Limits::REDIS),
            (b"*1\r\n:1\r\n+next\r\n", &Limits::REDIS),
        ];
        for &(input, limits) in cases {
            for chunk in 1..=input.len() {
                // Every step is checked against `decode` on the same bytes.
                let _ = resumed(input, limits, chunk);
            }
        }
    }

    #[test]
    fn resume_goes_on_where_it_stopped() {
        let r = &Limits::REDIS;
        let mut state = Resume::new();
        // *3 | $1 a | *2 | +x | $3 bcd | :1
        let reply = b"*3\r\n$1\r\na\r\n*2\r\n+x\r\n$3\r\nbcd\r\n:1\r\n";
        let incomplete = Ok(Decoded::Incomplete { needed: None });
        assert_eq!(decode_resume(&reply[..13], r, &mut state), incomplete);
        assert_eq!(state.validated(), 11, "up to the inner array's header");
        assert_eq!(decode_resume(&reply[..22], r, &mut state), incomplete);
        assert_eq!(state.validated(), 19, "up to the bulk, which is not last");
        let Ok(Decoded::Frame {
            frame: Frame::Array(a),
            consumed: 32,
            attributes: None,
        }) = decode_resume(reply, r, &mut state)
        else {
            panic!("{state:?}");
        };
        assert_eq!(a.len(), 3);
        assert_eq!(state.validated(), 0, "a frame resets the state");

        // The last element of every open aggregate knows the frame's end.
        let reply = b"*2\r\n:1\r\n*1\r\n$3\r\nbcd\r\n";
        assert_eq!(
            decode_resume(&reply[..17], r, &mut state),
            Ok(Decoded::Incomplete { needed: Some(21) })
        );
        assert_eq!(state.validated(), 12);
    }

    #[test]
    fn a_shorter_buffer_is_a_new_frame() {
        let r = &Limits::REDIS;
        let mut state = Resume::new();
        assert_eq!(
            decode_resume(b"*2\r\n:1\r\n:", r, &mut state),
            Ok(Decoded::Incomplete { needed: None })
        );
        assert_eq!(state.validated(), 8);
        assert_eq!(
            decode_resume(b"+OK\r\n", r, &mut state),
            Ok(Decoded::Frame {
                frame: Frame::SimpleString(b"OK"),
                attributes: None,
                consumed: 5
            })
        );
        // An error resets it too.
        assert_eq!(
            decode_resume(b"*2\r\n:1\r\nx", r, &mut state),
            Err(DecodeError::UnknownType { byte: b'x' })
        );
        assert_eq!(state.validated(), 0);
        // So does `reset`, for a buffer thrown away.
        assert_eq!(
            decode_resume(b"*2\r\n:1\r\n", r, &mut state),
            Ok(Decoded::Incomplete { needed: None })
        );
        state.reset();
        assert!(matches!(
            decode_resume(b"*1\r\n+a long new frame\r\n", r, &mut state),
            Ok(Decoded::Frame { consumed: 23, .. })
        ));
    }

    /// Fed one byte at a time, a reply costs a bounded amount per byte: these
    /// take well under a second here, and minutes if each call re-read the
    /// reply from its start.
    #[test]
    fn byte_by_byte_is_linear() {
        let mut flat = std::vec::Vec::from(&b"*50000\r\n"[..]);
        (0..50_000).for_each(|_| flat.extend_from_slice(b":1\r\n"));
        let mut deep = std::vec::Vec::new();
        (0..31).for_each(|_| deep.extend_from_slice(b"*1\r\n"));
        deep.extend_from_slice(b"%25000\r\n");
        (0..25_000).for_each(|_| deep.extend_from_slice(b"$1\r\nk\r\n_\r\n"));
        let mut line = std::vec![b'a'; MAX_LINE];
        line[0] = b'+';
        line.extend_from_slice(b"\r\n");
        for input in [&flat, &deep, &line] {
            let mut state = Resume::new();
            for len in 1..input.len() {
                let answer = decode_resume(&input[..len], &Limits::REDIS, &mut state);
                assert!(
                    matches!(answer, Ok(Decoded::Incomplete { .. })),
                    "{answer:?}"
                );
            }
            assert!(matches!(
                decode_resume(input, &Limits::REDIS, &mut state),
                Ok(Decoded::Frame { consumed, .. }) if consumed == input.len()
            ));
        }
    }

    /// A 32-bit `usize` must not wrap a length into another frame: these are
    /// refused alike on every target (the QEMU suite runs them on a
    /// Cortex-M4).
    #[test]
    fn lengths_past_u32_are_refused_on_every_target() {
        let r = &Limits::REDIS;
        let too_long = |len| DecodeError::BulkTooLong {
            len,
            max: r.max_bulk_len,
        };
        let too_many = |len| DecodeError::AggregateTooLong {
            len,
            max: u32::MAX as usize,
        };
        invalid(b"$4294967297\r\nX\r\n", r, too_long(4_294_967_297));
        invalid(b"$4294967296\r\n\r\n", r, too_long(4_294_967_296));
        invalid(
            b"*2\r\n:1\r\n$4294967297\r\nX\r\n",
            r,
            too_long(4_294_967_297),
        );
        invalid(b"$18446744073709551616\r\nX\r\n", r, too_long(u64::MAX));
        invalid(b"$18446744073709551615\r\nX\r\n", r, too_long(u64::MAX));
        invalid(b"*1\r\n$18446744073709551617\r\n", r, too_long(u64::MAX));
        invalid(b"*4294967297\r\n:1\r\n", r, too_many(4_294_967_297));
        invalid(b"*4294967296\r\n", r, too_many(4_294_967_296));
        invalid(b"*1\r\n*4294967297\r\n:1\r\n", r, too_many(4_294_967_297));
        invalid(b"%2147483649\r\n", r, too_many(4_294_967_298));
        invalid(b"%2147483648\r\n", r, too_many(4_294_967_296));
        invalid(b"*1\r\n~1\r\n%2147483649\r\n", r, too_many(4_294_967_298));
        invalid(b"*18446744073709551616\r\n", r, too_many(u64::MAX));
        invalid(b"%9223372036854775808\r\n", r, too_many(u64::MAX));
        // Just under: waits for the elements.
        incomplete(b"*4294967295\r\n:1\r\n", None);
        incomplete(b"%2147483647\r\n", None);

        // No limit counts past u32::MAX elements, whatever it says.
        let loose = Limits {
            max_depth: MAX_DEPTH_CAP,
            max_bulk_len: usize::MAX,
            max_aggregate_len: usize::MAX,
            max_elements: usize::MAX,
        };
        invalid(b"*4294967297\r\n:1\r\n", &loose, too_many(4_294_967_297));
        invalid(b"*1\r\n%2147483649\r\n", &loose, too_many(4_294_967_298));
        // A bulk of 2^32 + 1 bytes is that, never one of 1 byte: a 64-bit
        // target waits for it, a 32-bit one cannot hold it.
        let bulk = decode(b"$4294967297\r\nX\r\n", &loose);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(
            bulk,
            Ok(Decoded::Incomplete {
                needed: Some(13 + 4_294_967_297 + 2)
            })
        );
        #[cfg(not(target_pointer_width = "64"))]
        assert_eq!(
            bulk,
            Err(DecodeError::BulkTooLong {
                len: 4_294_967_297,
                max: usize::MAX
            })
        );
    }

    #[test]
    fn element_budget_counts_every_depth() {
        let four = Limits {
            max_elements: 4,
            ..Limits::REDIS
        };
        let over = DecodeError::TooManyElements { max: 4 };
        assert!(matches!(
            decode(b"*2\r\n*2\r\n:1\r\n:2\r\n*0\r\n", &four),
            Ok(Decoded::Frame { consumed: 20, .. })
        ));
        invalid(b"*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n:3\r\n", &four, over);
        // Refused at the header that goes over, before the rest arrives.
        invalid(b"*3\r\n*2\r\n", &four, over);
        invalid(b"*5\r\n", &four, over);
        // A map of n pairs is 2n elements; attributes count too.
        invalid(b"%2\r\n+a\r\n%1\r\n", &four, over);
        invalid(b"|1\r\n+a\r\n:1\r\n*3\r\n", &four, over);
        invalid(b"*1\r\n|2\r\n", &four, over);
        // The count carries across calls.
        assert_eq!(
            resumed(b"*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n:3\r\n", &four, 1),
            Err(over)
        );
        // Scalars and empty aggregates cost nothing.
        let none = Limits {
            max_elements: 0,
            ..Limits::REDIS
        };
        assert!(matches!(
            decode(b"$1\r\na\r\n", &none),
            Ok(Decoded::Frame { .. })
        ));
        assert!(matches!(
            decode(b"*0\r\n", &none),
            Ok(Decoded::Frame { .. })
        ));
        invalid(b"*1\r\n", &none, DecodeError::TooManyElements { max: 0 });
        let text = std::format!("{}", DecodeError::TooManyElements { max: 1000 });
        assert!(
            text.contains("1000") && text.contains("Limits::max_elements"),
            "{text}"
        );
    }
}

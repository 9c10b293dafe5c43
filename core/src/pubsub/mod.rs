//! Pub/sub, sans-I/O: the subscriptions the application wants versus those
//! the server has confirmed, what to send after every reconnect, and what
//! each push means.
//!
//! Pub/sub is at-most-once: a message published while a subscriber's
//! connection is down is gone. What a subscriber *can* be told is where the
//! holes are. [`Subscriptions`] keeps, per subscription, whether the server
//! confirmed it on the current connection; when the connection is lost every
//! confirmed subscription opens a gap, and when the server confirms it again
//! on a new connection the gap closes and is reported
//! ([`Delivery::Subscribed`] with `gap: Some`), in order with the messages,
//! so the application knows exactly which stretch of time it may have
//! missed. Once every subscription is back, one [`PubSubEvent::Resubscribed`]
//! says so.
//!
//! The requests are the core's own: after a reconnect, nothing waits for
//! the application to call `subscribe` again. Shard channels go one
//! `SSUBSCRIBE` per hash slot (with the `cluster` feature), because one
//! `SSUBSCRIBE` over channels of several slots is refused with CROSSSLOT;
//! plain channels and patterns are batched.
//!
//! Which connection carries them: on RESP3 the shared one (a confirmation
//! is a push `>3 subscribe ch n`, out of band, and every other command
//! still works); on RESP2 a connection of their own, made with
//! [`Config::subscriber`](crate::Config::subscriber), on which the pub/sub
//! arrays are read as pushes ([`carrier`] says which). Either way the
//! request is written outside the command FIFO and the adapter reports it
//! with [`Connection::handle_pubsub_written`](crate::Connection::handle_pubsub_written),
//! which keeps a placeholder in the FIFO: the confirmations consume it, and
//! an error reply (an ACL that denies the channel) comes back as
//! [`Received::PubSubRefused`](crate::Received::PubSubRefused) and ends only
//! those subscriptions ([`Subscriptions::handle_refused`]), never the
//! connection.
//!
//! Driving it, next to a [`Connection`](crate::Connection):
//!
//! ```text
//! Event::Ready                     → subs.handle_ready(now)
//! Event::Disconnected              → subs.handle_lost(now)      (a loss opens the gaps)
//! Received::Push { frame }        → subs.handle_push(now, &frame) → Delivery
//! Received::PubSubRefused {frame} → subs.handle_refused(now, &frame), then refused()/clear_refused()
//! conn ready and conn.room() > 0  → subs.poll_request(now, &mut buf)
//!                                   → Some(Ok(req)): write buf[..req.len],
//!                                     conn.handle_pubsub_written(now, req.confirmations)
//!                                   → Some(Err(needed)): grow buf, poll again
//! subs.poll_event()               → Resubscribed { down_since, confirmed_at }
//! ```

use heapless::{Deque, Vec};

use crate::config::Protocol;
use crate::resp::Frame;
use crate::resp::encode::{self, EncodeError};
use crate::time::Instant;

#[cfg(test)]
mod tests;

/// Most names one request carries: a resubscribe of thousands of channels
/// goes out as several requests, none of them huge.
pub const NAMES_PER_REQUEST: usize = 128;
const EVENT_CAP: usize = 4;

/// What a subscription is to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Kind {
    /// `SUBSCRIBE channel`.
    Channel,
    /// `PSUBSCRIBE pattern`.
    Pattern,
    /// `SSUBSCRIBE shardchannel` (Redis 7): routed by the channel's slot.
    Shard,
}

impl Kind {
    pub fn subscribe_verb(self) -> &'static [u8] {
        match self {
            Kind::Channel => b"SUBSCRIBE",
            Kind::Pattern => b"PSUBSCRIBE",
            Kind::Shard => b"SSUBSCRIBE",
        }
    }

    pub fn unsubscribe_verb(self) -> &'static [u8] {
        match self {
            Kind::Channel => b"UNSUBSCRIBE",
            Kind::Pattern => b"PUNSUBSCRIBE",
            Kind::Shard => b"SUNSUBSCRIBE",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Channel => "channel",
            Kind::Pattern => "pattern",
            Kind::Shard => "shard channel",
        }
    }
}

/// Which connection carries subscriptions for a client configured with
/// `protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Carrier {
    /// RESP3: the shared connection (confirmations and messages are pushes).
    Shared,
    /// RESP2: a subscribed connection accepts no other command, so one of
    /// its own, made with `Config::subscriber`.
    Dedicated,
}

pub fn carrier(protocol: Protocol) -> Carrier {
    match protocol {
        Protocol::Resp3 => Carrier::Shared,
        Protocol::Resp2 => Carrier::Dedicated,
    }
}

/// A pub/sub frame, as Redis sends it: a RESP3 push, or (on a subscribed
/// RESP2 connection) an array with the same elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PubSubFrame<'a> {
    Message {
        kind: Kind,
        channel: &'a [u8],
        pattern: Option<&'a [u8]>,
        payload: &'a [u8],
    },
    /// `subscribe ch n`: the server now holds `name` (and `n` in all).
    Subscribed { kind: Kind, name: &'a [u8] },
    /// `unsubscribe ch n`: asked by us, or by the server (a shard channel
    /// whose slot moved).
    Unsubscribed { kind: Kind, name: &'a [u8] },
}

impl<'a> PubSubFrame<'a> {
    /// Reads a pub/sub frame; `None` for anything else (an `invalidate`
    /// push, a reply, a malformed frame).
    pub fn parse(frame: &Frame<'a>) -> Option<PubSubFrame<'a>> {
        let (Frame::Push(agg) | Frame::Array(agg)) = frame else {
            return None;
        };
        let mut items = agg.iter();
        let verb = items.next()?.as_text()?;
        let mut text = || items.next().and_then(|f| f.as_text());
        let lower = |v: &[u8], w: &[u8]| v.eq_ignore_ascii_case(w);
        let parsed = match (agg.len(), verb) {
            (3, v) if lower(v, b"message") => PubSubFrame::Message {
                kind: Kind::Channel,
                channel: text()?,
                pattern: None,
                payload: text()?,
            },
            (3, v) if lower(v, b"smessage") => PubSubFrame::Message {
                kind: Kind::Shard,
                channel: text()?,
                pattern: None,
                payload: text()?,
            },
            (4, v) if lower(v, b"pmessage") => {
                let pattern = text()?;
                PubSubFrame::Message {
                    kind: Kind::Pattern,
                    channel: text()?,
                    pattern: Some(pattern),
                    payload: text()?,
                }
            }
            (3, v) => {
                let (kind, subscribed) = confirmation_verb(v)?;
                let name = text()?;
                if subscribed {
                    PubSubFrame::Subscribed { kind, name }
                } else {
                    PubSubFrame::Unsubscribed { kind, name }
                }
            }
            _ => return None,
        };
        Some(parsed)
    }

    /// A confirmation (of a subscribe or an unsubscribe), which answers a
    /// request, unlike a message.
    pub fn is_confirmation(&self) -> bool {
        !matches!(self, PubSubFrame::Message { .. })
    }
}

fn confirmation_verb(verb: &[u8]) -> Option<(Kind, bool)> {
    const VERBS: [(&[u8], Kind, bool); 6] = [
        (b"subscribe", Kind::Channel, true),
        (b"psubscribe", Kind::Pattern, true),
        (b"ssubscribe", Kind::Shard, true),
        (b"unsubscribe", Kind::Channel, false),
        (b"punsubscribe", Kind::Pattern, false),
        (b"sunsubscribe", Kind::Shard, false),
    ];
    VERBS
        .iter()
        .find(|(v, ..)| v.eq_ignore_ascii_case(verb))
        .map(|&(_, kind, subscribed)| (kind, subscribed))
}

/// A stretch of time in which messages to a subscription may have been
/// published and not delivered: from the connection loss (or the server
/// dropping it) to the server's confirmation on the new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Gap {
    pub since: Instant,
    pub until: Instant,
}

/// What a push meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Delivery<'a> {
    /// A message for a subscription: to the application.
    Message {
        kind: Kind,
        channel: &'a [u8],
        pattern: Option<&'a [u8]>,
        payload: &'a [u8],
    },
    /// The server confirmed a subscription. `gap`: it had been confirmed
    /// before and was lost; messages in the gap may be missing.
    Subscribed {
        kind: Kind,
        name: &'a [u8],
        gap: Option<Gap>,
    },
    /// An unsubscribe the application asked for is done.
    Unsubscribed { kind: Kind, name: &'a [u8] },
    /// The server dropped a subscription the application still wants (a
    /// shard channel's slot moved): a gap opens, and the core subscribes
    /// again (in a cluster, wherever the slot now lives).
    Dropped { kind: Kind, name: &'a [u8] },
    /// Any other push (`invalidate`, `tracking-redir-broken`, ...): for the
    /// application's push handler.
    Other,
    /// A pub/sub frame about nothing this client holds (a late confirmation
    /// of something unsubscribed meanwhile): nothing to do.
    Ignored,
}

/// Something the application should know about its subscriptions as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PubSubEvent {
    /// Every subscription is confirmed again after a connection loss at
    /// `down_since`. Messages between the two may be missing.
    Resubscribed {
        down_since: Instant,
        confirmed_at: Instant,
        subscriptions: usize,
    },
}

/// Why a subscription could not be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PubSubError {
    /// The table holds `max` subscriptions already.
    TooMany {
        max: usize,
    },
    /// The names held would pass `max` bytes.
    NamesTooLong {
        max: usize,
    },
    EmptyName,
}

impl core::fmt::Display for PubSubError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PubSubError::TooMany { max } => {
                write!(
                    f,
                    "too many subscriptions (at most {max}): unsubscribe some first"
                )
            }
            PubSubError::NamesTooLong { max } => write!(
                f,
                "subscription names would take more than {max} bytes: use fewer or shorter names"
            ),
            PubSubError::EmptyName => write!(f, "a channel or pattern name cannot be empty"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PubSubError {}

/// A request [`Subscriptions::poll_request`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Request {
    /// Bytes written at the front of the buffer.
    pub len: usize,
    /// Confirmations the server sends for it (one per name): pass to
    /// `Connection::handle_pubsub_written`.
    pub confirmations: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Wanted, not written on this connection.
    Wanted,
    /// Written in request `seq`, not confirmed yet.
    Sent {
        seq: u32,
    },
    Confirmed,
    /// The application unsubscribed; the unsubscribe is not written yet.
    Leaving,
    /// The unsubscribe is written in request `seq`.
    LeaveSent {
        seq: u32,
        rejoin: bool,
    },
    /// The server refused it (error reply): reported, then removed.
    Refused,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    kind: Kind,
    start: usize,
    len: usize,
    state: State,
    /// Since when messages may be missing, while not confirmed after having
    /// been confirmed once.
    gap_since: Option<Instant>,
}

/// Counters, for health reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PubSubStats {
    pub messages: u64,
    pub requests: u64,
    pub resubscribes: u64,
    pub gaps: u64,
    pub refused: u64,
}

/// The subscriptions of one connection: at most `SUBS` of them, their
/// names in `BYTES` bytes in all.
pub struct Subscriptions<const SUBS: usize, const BYTES: usize> {
    entries: Vec<Entry, SUBS>,
    names: Vec<u8, BYTES>,
    ready: bool,
    /// The first connection loss not yet made good.
    down_since: Option<Instant>,
    next_seq: u32,
    events: Deque<PubSubEvent, EVENT_CAP>,
    refused_text: Vec<u8, 160>,
    stats: PubSubStats,
}

impl<const SUBS: usize, const BYTES: usize> Default for Subscriptions<SUBS, BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const SUBS: usize, const BYTES: usize> Subscriptions<SUBS, BYTES> {
    pub const fn new() -> Self {
        Subscriptions {
            entries: Vec::new(),
            names: Vec::new(),
            ready: false,
            down_since: None,
            next_seq: 1,
            events: Deque::new(),
            refused_text: Vec::new(),
            stats: PubSubStats {
                messages: 0,
                requests: 0,
                resubscribes: 0,
                gaps: 0,
                refused: 0,
            },
        }
    }

    // ----- getters ---------------------------------------------------------

    /// Subscriptions held (wanted, pending or confirmed; not leaving).
    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.wanted()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Subscriptions the server has confirmed on this connection.
    pub fn confirmed(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.state == State::Confirmed)
            .count()
    }

    /// Whether `name` is wanted (subscribed or being subscribed).
    pub fn is_wanted(&self, kind: Kind, name: &[u8]) -> bool {
        self.find(kind, name)
            .is_some_and(|i| self.entries[i].wanted())
    }

    /// Whether `name` is confirmed on the current connection.
    pub fn is_confirmed(&self, kind: Kind, name: &[u8]) -> bool {
        self.find(kind, name)
            .is_some_and(|i| self.entries[i].state == State::Confirmed)
    }

    /// The wanted subscriptions, in the order they were made.
    pub fn wanted(&self) -> impl Iterator<Item = (Kind, &[u8])> + '_ {
        self.entries
            .iter()
            .filter(|e| e.wanted())
            .map(|e| (e.kind, self.name(e)))
    }

    pub fn stats(&self) -> PubSubStats {
        self.stats
    }

    /// Since when subscriptions are missing after a connection loss.
    pub fn down_since(&self) -> Option<Instant> {
        self.down_since
    }

    // ----- the application -------------------------------------------------

    /// Wants a subscription; `Ok(false)` if it is wanted already. Written at
    /// the next [`poll_request`](Self::poll_request) while ready, and after
    /// every reconnect.
    pub fn subscribe(&mut self, kind: Kind, name: &[u8]) -> Result<bool, PubSubError> {
        if name.is_empty() {
            return Err(PubSubError::EmptyName);
        }
        if let Some(i) = self.find(kind, name) {
            let entry = &mut self.entries[i];
            return Ok(match entry.state {
                State::Leaving => {
                    // Not written yet: the subscription simply stays.
                    entry.state = State::Confirmed;
                    true
                }
                State::LeaveSent { seq, .. } => {
                    entry.state = State::LeaveSent { seq, rejoin: true };
                    true
                }
                State::Refused => {
                    entry.state = State::Wanted;
                    true
                }
                _ => false,
            });
        }
        if self.entries.is_full() {
            return Err(PubSubError::TooMany { max: SUBS });
        }
        let start = self.names.len();
        self.names
            .extend_from_slice(name)
            .map_err(|_| PubSubError::NamesTooLong { max: BYTES })?;
        // Room was checked above.
        let _ = self.entries.push(Entry {
            kind,
            start,
            len: name.len(),
            state: State::Wanted,
            gap_since: None,
        });
        Ok(true)
    }

    /// Drops a subscription; `false` if it was not held. Confirmed ones are
    /// unsubscribed on the server ([`Delivery::Unsubscribed`] when done);
    /// others are forgotten at once.
    pub fn unsubscribe(&mut self, kind: Kind, name: &[u8]) -> bool {
        let Some(i) = self.find(kind, name) else {
            return false;
        };
        match self.entries[i].state {
            State::Wanted | State::Refused => self.remove(i),
            // Written: the server will hold it, so it must be undone there.
            // (Only while ready: a loss turns both back into Wanted.)
            State::Sent { .. } | State::Confirmed => self.entries[i].state = State::Leaving,
            State::Leaving => return false,
            State::LeaveSent { seq, rejoin } => {
                if !rejoin {
                    return false;
                }
                self.entries[i].state = State::LeaveSent { seq, rejoin: false };
            }
        }
        true
    }

    // ----- the connection --------------------------------------------------

    /// The carrying connection is ready (its `Event::Ready`): the
    /// (re)subscribe starts at the next [`poll_request`](Self::poll_request).
    pub fn handle_ready(&mut self, now: Instant) {
        let _ = now;
        self.ready = true;
    }

    /// The carrying connection was lost (its `Event::Disconnected`): every
    /// confirmed subscription opens a gap, and is wanted again.
    pub fn handle_lost(&mut self, now: Instant) {
        self.ready = false;
        let mut i = 0;
        // Bounded: each pass removes an entry or moves on.
        while i < self.entries.len() {
            let entry = &mut self.entries[i];
            match entry.state {
                State::Confirmed => {
                    entry.gap_since.get_or_insert(now);
                    entry.state = State::Wanted;
                    self.down_since.get_or_insert(now);
                }
                State::Sent { .. } => entry.state = State::Wanted,
                State::LeaveSent { rejoin: true, .. } => entry.state = State::Wanted,
                // The server forgot them with the connection.
                State::Leaving | State::LeaveSent { .. } => {
                    self.remove(i);
                    continue;
                }
                State::Wanted | State::Refused => {}
            }
            i += 1;
        }
    }

    /// The next request to write, into `out`: unsubscribes first, then
    /// channels, patterns and shard channels (one slot per request).
    /// `Some(Err(needed))`: `out` is too small, nothing changed. Call only
    /// while the carrying connection is ready and has room.
    pub fn poll_request(&mut self, now: Instant, out: &mut [u8]) -> Option<Result<Request, usize>> {
        let _ = now;
        if !self.ready {
            return None;
        }
        let (leave, kind) = self.next_batch_kind()?;
        let want = if leave { State::Leaving } else { State::Wanted };
        let first = self
            .entries
            .iter()
            .position(|e| e.kind == kind && e.state == want)?;
        let group = self.group_of(&self.entries[first]);
        let selected = |e: &Entry| e.kind == kind && e.state == want && self.group_of(e) == group;
        let verb = if leave {
            kind.unsubscribe_verb()
        } else {
            kind.subscribe_verb()
        };
        let mut count = 0usize;
        let mut needed = 0usize;
        for e in self
            .entries
            .iter()
            .filter(|e| selected(e))
            .take(NAMES_PER_REQUEST)
        {
            count += 1;
            needed += arg_len(e.len);
        }
        needed += header_len(count + 1) + arg_len(verb.len());
        if out.len() < needed {
            return Some(Err(needed));
        }
        let written = match self.encode(out, verb, count, &selected) {
            Ok(n) => n,
            Err(_) => return Some(Err(needed)),
        };
        let picks: Vec<usize, NAMES_PER_REQUEST> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| selected(e))
            .map(|(i, _)| i)
            .take(NAMES_PER_REQUEST)
            .collect();
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let mut marked = 0;
        for i in picks {
            self.entries[i].state = if leave {
                State::LeaveSent { seq, rejoin: false }
            } else {
                State::Sent { seq }
            };
            marked += 1;
        }
        self.stats.requests += 1;
        Some(Ok(Request {
            len: written,
            confirmations: marked,
        }))
    }

    fn next_batch_kind(&self) -> Option<(bool, Kind)> {
        for leave in [true, false] {
            let want = if leave { State::Leaving } else { State::Wanted };
            for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
                if self
                    .entries
                    .iter()
                    .any(|e| e.kind == kind && e.state == want)
                {
                    return Some((leave, kind));
                }
            }
        }
        None
    }

    fn encode(
        &self,
        out: &mut [u8],
        verb: &[u8],
        count: usize,
        selected: &dyn Fn(&Entry) -> bool,
    ) -> Result<usize, EncodeError> {
        let mut enc = encode::CommandEncoder::new(out, count + 1);
        enc.arg(verb);
        for e in self.entries.iter().filter(|e| selected(e)).take(count) {
            enc.arg(self.name(e));
        }
        enc.finish()
    }

    /// Requests group names of one kind; shard channels also by slot.
    fn group_of(&self, entry: &Entry) -> u16 {
        match entry.kind {
            #[cfg(feature = "cluster")]
            Kind::Shard => crate::cluster::slot(self.name(entry)),
            _ => 0,
        }
    }

    /// A push from the carrying connection.
    pub fn handle_push<'a>(&mut self, now: Instant, frame: &Frame<'a>) -> Delivery<'a> {
        let Some(parsed) = PubSubFrame::parse(frame) else {
            return Delivery::Other;
        };
        match parsed {
            PubSubFrame::Message {
                kind,
                channel,
                pattern,
                payload,
            } => {
                self.stats.messages += 1;
                Delivery::Message {
                    kind,
                    channel,
                    pattern,
                    payload,
                }
            }
            PubSubFrame::Subscribed { kind, name } => self.subscribed(now, kind, name),
            PubSubFrame::Unsubscribed { kind, name } => self.unsubscribed(now, kind, name),
        }
    }

    fn subscribed<'a>(&mut self, now: Instant, kind: Kind, name: &'a [u8]) -> Delivery<'a> {
        let Some(i) = self.find(kind, name) else {
            return Delivery::Ignored;
        };
        let entry = &mut self.entries[i];
        if !matches!(entry.state, State::Sent { .. } | State::Wanted) {
            return Delivery::Ignored;
        }
        entry.state = State::Confirmed;
        let gap = entry
            .gap_since
            .take()
            .map(|since| Gap { since, until: now });
        if gap.is_some() {
            self.stats.gaps += 1;
        }
        self.check_resubscribed(now);
        Delivery::Subscribed { kind, name, gap }
    }

    fn unsubscribed<'a>(&mut self, now: Instant, kind: Kind, name: &'a [u8]) -> Delivery<'a> {
        let Some(i) = self.find(kind, name) else {
            return Delivery::Ignored;
        };
        match self.entries[i].state {
            State::LeaveSent { rejoin: false, .. } => {
                self.remove(i);
                Delivery::Unsubscribed { kind, name }
            }
            State::LeaveSent { rejoin: true, .. } => {
                self.entries[i].state = State::Wanted;
                Delivery::Ignored
            }
            State::Confirmed | State::Sent { .. } => {
                // The server let go of it (a shard channel's slot moved):
                // still wanted, so subscribe again.
                let entry = &mut self.entries[i];
                entry.state = State::Wanted;
                entry.gap_since.get_or_insert(now);
                Delivery::Dropped { kind, name }
            }
            State::Wanted | State::Leaving | State::Refused => Delivery::Ignored,
        }
    }

    fn check_resubscribed(&mut self, now: Instant) {
        let Some(down_since) = self.down_since else {
            return;
        };
        let missing = self
            .entries
            .iter()
            .any(|e| e.wanted() && e.state != State::Confirmed);
        if missing {
            return;
        }
        self.down_since = None;
        self.stats.resubscribes += 1;
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(PubSubEvent::Resubscribed {
            down_since,
            confirmed_at: now,
            subscriptions: self.len(),
        });
    }

    /// The error reply to the oldest request still unconfirmed
    /// ([`Received::PubSubRefused`](crate::Received::PubSubRefused)): the
    /// server refused its names (an ACL that denies the channel). They are
    /// not retried; read them with [`refused`](Self::refused), then
    /// [`clear_refused`](Self::clear_refused).
    pub fn handle_refused(&mut self, now: Instant, frame: &Frame<'_>) {
        let _ = now;
        let oldest = self
            .entries
            .iter()
            .filter_map(|e| match e.state {
                State::Sent { seq } | State::LeaveSent { seq, .. } => Some(seq),
                _ => None,
            })
            .min_by_key(|&seq| seq.wrapping_sub(self.next_seq));
        let Some(seq) = oldest else { return };
        self.refused_text.clear();
        if let Some(text) = frame.error_text() {
            let keep = text.len().min(self.refused_text.capacity());
            let _ = self.refused_text.extend_from_slice(&text[..keep]);
        }
        let mut i = 0;
        while i < self.entries.len() {
            match self.entries[i].state {
                State::Sent { seq: s } if s == seq => {
                    self.entries[i].state = State::Refused;
                    self.stats.refused += 1;
                }
                // An unsubscribe cannot really fail; if it did, the
                // subscription is as good as gone for the application.
                State::LeaveSent { seq: s, .. } if s == seq => {
                    self.remove(i);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        self.check_resubscribed(now);
    }

    /// Subscriptions the server refused, and its words.
    pub fn refused(&self) -> (impl Iterator<Item = (Kind, &[u8])> + '_, &[u8]) {
        let names = self
            .entries
            .iter()
            .filter(|e| e.state == State::Refused)
            .map(|e| (e.kind, self.name(e)));
        (names, &self.refused_text)
    }

    pub fn clear_refused(&mut self) {
        let mut i = 0;
        while i < self.entries.len() {
            if self.entries[i].state == State::Refused {
                self.remove(i);
            } else {
                i += 1;
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<PubSubEvent> {
        self.events.pop_front()
    }

    // ----- storage ----------------------------------------------------------

    fn name(&self, entry: &Entry) -> &[u8] {
        &self.names[entry.start..entry.start + entry.len]
    }

    fn find(&self, kind: Kind, name: &[u8]) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.kind == kind && self.name(e) == name)
    }

    /// Removes entry `i` and its name, keeping the arena packed.
    fn remove(&mut self, i: usize) {
        let entry = self.entries.remove(i);
        let end = entry.start + entry.len;
        let tail = self.names.len() - end;
        self.names.copy_within(end.., entry.start);
        self.names.truncate(entry.start + tail);
        for e in self.entries.iter_mut() {
            if e.start > entry.start {
                e.start -= entry.len;
            }
        }
    }
}

impl Entry {
    fn wanted(&self) -> bool {
        !matches!(
            self.state,
            State::Leaving | State::LeaveSent { rejoin: false, .. } | State::Refused
        )
    }
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// `*<n>\r\n`
fn header_len(n: usize) -> usize {
    1 + digits(n) + 2
}

/// `$<len>\r\n<bytes>\r\n`
fn arg_len(len: usize) -> usize {
    1 + digits(len) + 2 + len + 2
}

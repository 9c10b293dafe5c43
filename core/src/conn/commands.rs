//! The command FIFO: the bounded offline queue, requests in flight in the
//! order they were written (replies come back in that order), per-command
//! deadlines, and resolutions waiting to be polled.
//!
//! Invariant: every submitted command leaves this structure exactly once,
//! either as a reply matched in [`Commands::pop_reply`] or as an
//! [`Outcome`] in `resolutions`.
//!
//! What happens to a command that cannot get its reply is decided here, from
//! its [`Class`] and the [`OfflinePolicy`] (the table is in
//! [`Connection`](super::Connection)'s docs and ARCHITECTURE.md):
//! never written → *not applied* (with the reason Redis is unavailable) or,
//! for a read the fallback cache can answer, *fallback*; written and
//! read-only → written again or *not applied*; written and resend-safe →
//! written again on the next connection; any other written command →
//! *indeterminate*, never resent. A command whose reply had begun to arrive
//! is never written again, whatever its class: it ran, and writing it again
//! would only produce the same slow reply (a write ends *indeterminate*, a
//! read *not applied* or *fallback*).

use heapless::Deque;

use crate::command::Class;
use crate::config::OfflinePolicy;
use crate::reason::DisconnectReason;
use crate::time::Instant;

/// Handle of a submitted command, unique per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CommandId(pub u64);

/// How a command ended without a reply from Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Outcome {
    /// Its deadline passed and nothing is known about why: it was never
    /// written (or it was a read, which changes nothing). Not applied.
    TimedOut,
    /// Certainly not applied: never written, or a read-only command whose
    /// reply was lost. The reason is why Redis is unavailable.
    NotApplied(DisconnectReason),
    /// A read the fallback cache can answer (GET) while Redis is
    /// unavailable: answer it from the cache, marked as such. Nothing was
    /// applied. On a cache miss, fail it with the reason (a miss is not
    /// "absent" unless the application opted into that).
    Fallback(DisconnectReason),
    /// The command was written but no reply came: it may or may not have been
    /// applied. Never resent.
    Indeterminate(IndeterminateCause),
    /// Withdrawn by [`handle_cancel`](super::Connection::handle_cancel)
    /// before it was written: never sent, never will be.
    Cancelled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum IndeterminateCause {
    /// Written, then its deadline passed without a reply.
    TimedOut,
    /// Written, then the connection was lost.
    ConnectionLost(DisconnectReason),
    /// Written, then its caller withdrew it; its reply is discarded.
    Cancelled,
    /// Acknowledged by a cluster primary that had stopped answering and was
    /// replaced by its replica meanwhile: the node may have applied it and
    /// then dropped it when it rejoined as a replica.
    NodeReplaced,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum SlotKind {
    Command(Class),
    Ping,
    /// A pub/sub request written outside the FIFO: its answers are
    /// `remaining` confirmations (pushes), or one error reply.
    PubSub {
        remaining: u16,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Live,
    /// Resolved already (timed out or cancelled after being written); its
    /// reply, when it comes, is discarded so the FIFO stays aligned.
    Abandoned,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    id: CommandId,
    deadline: Instant,
    len: usize,
    kind: SlotKind,
    state: SlotState,
    written_at: Instant,
    /// Written on an earlier connection, then queued again (resend-safe):
    /// it may have run, so it can no longer end as "never sent".
    written_before: bool,
    /// Part of its reply arrived: it ran on the server, and is not resent.
    reply_started: bool,
}

impl Slot {
    fn class(&self) -> Option<Class> {
        match self.kind {
            SlotKind::Command(class) => Some(class),
            SlotKind::Ping | SlotKind::PubSub { .. } => None,
        }
    }

    fn live_waiting(&self) -> bool {
        self.state == SlotState::Live && self.class().is_some_and(Class::may_wait)
    }

    /// Resolution of a command whose caller withdrew it: a write that was
    /// written (on this connection, or on an earlier one before a resend)
    /// may have run; anything else was never applied.
    fn cancelled(&self, written_now: bool) -> Outcome {
        let read = self.class().is_some_and(Class::read_only);
        if (written_now || self.written_before) && !read {
            Outcome::Indeterminate(IndeterminateCause::Cancelled)
        } else {
            Outcome::Cancelled
        }
    }

    /// Resolution of a command that will get no reply and is not resent.
    /// `outage`: why Redis is unavailable, when known.
    fn unanswered(&self, outage: Option<DisconnectReason>, policy: OfflinePolicy) -> Outcome {
        let class = self.class().unwrap_or(Class::UNKNOWN);
        let applied_maybe = self.written_before && !class.read_only();
        match outage {
            _ if applied_maybe => Outcome::Indeterminate(match outage {
                Some(reason) => IndeterminateCause::ConnectionLost(reason),
                None => IndeterminateCause::TimedOut,
            }),
            Some(reason)
                if class.fallback_read()
                    && policy == OfflinePolicy::Fallback
                    && reason != DisconnectReason::Shutdown =>
            {
                Outcome::Fallback(reason)
            }
            Some(reason) => Outcome::NotApplied(reason),
            None => Outcome::TimedOut,
        }
    }
}

/// What a reply matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Matched {
    Command(CommandId),
    Ping {
        sent_at: Instant,
    },
    /// A reply to a command already resolved (timed out, cancelled).
    Abandoned,
    /// The error reply to a pub/sub request.
    PubSub,
}

/// Why a submit was refused by the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Full {
    Count,
    Bytes,
}

/// The bounds a new command is checked against: the offline queue's while
/// not ready, the in-flight byte bound while ready.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    pub max_commands: usize,
    pub max_bytes: usize,
}

/// What [`Commands::cancel`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cancelled {
    /// Removed before it was written: never sent.
    Unsent,
    /// Already written: its reply will be discarded. `blocking`: it may
    /// still take data, so its connection must close.
    Written { blocking: bool },
    /// Not a live command (resolved already, or unknown).
    NotFound,
}

pub(crate) struct Commands<const N: usize> {
    queue: Deque<Slot, N>,
    in_flight: Deque<Slot, N>,
    resolutions: Deque<(CommandId, Outcome), N>,
    queued_bytes: usize,
    in_flight_bytes: usize,
    next_id: u64,
}

impl<const N: usize> Commands<N> {
    pub(crate) const fn new() -> Self {
        Commands {
            queue: Deque::new(),
            in_flight: Deque::new(),
            resolutions: Deque::new(),
            queued_bytes: 0,
            in_flight_bytes: 0,
            next_id: 1,
        }
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub(crate) fn in_flight_bytes(&self) -> usize {
        self.in_flight_bytes
    }

    /// Slots used in all three deques. One slot is always kept free for the
    /// keepalive PING, so user commands can never starve it.
    fn used(&self) -> usize {
        self.queue.len() + self.in_flight.len() + self.resolutions.len()
    }

    /// How many more commands fit right now (slots only).
    pub(crate) fn room(&self) -> usize {
        N.saturating_sub(self.used() + 1)
    }

    fn new_id(&mut self) -> CommandId {
        let id = CommandId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Queues a command to be written when ready. `bytes_in_use`: what the
    /// byte bound counts (queued only offline; queued and in flight when
    /// ready).
    pub(crate) fn push(
        &mut self,
        len: usize,
        deadline: Instant,
        class: Class,
        bounds: Bounds,
        bytes_in_use: usize,
    ) -> Result<CommandId, Full> {
        if self.room() == 0 || self.queue.len() >= bounds.max_commands {
            return Err(Full::Count);
        }
        if bytes_in_use.saturating_add(len) > bounds.max_bytes {
            return Err(Full::Bytes);
        }
        let id = self.new_id();
        let slot = Slot {
            id,
            deadline,
            len,
            kind: SlotKind::Command(class),
            state: SlotState::Live,
            written_at: Instant::ZERO,
            written_before: false,
            reply_started: false,
        };
        // Capacity was checked above.
        let _ = self.queue.push_back(slot);
        self.queued_bytes += len;
        Ok(id)
    }

    /// A command decided at once, without being queued (a fallback read
    /// during an outage): it gets an id and its resolution.
    pub(crate) fn resolve_at_once(&mut self, outcome: Outcome) -> Result<CommandId, Full> {
        if self.room() == 0 {
            return Err(Full::Count);
        }
        let id = self.new_id();
        let _ = self.resolutions.push_back((id, outcome));
        Ok(id)
    }

    /// The next queued command to write, moved in flight.
    pub(crate) fn next_to_write(&mut self, now: Instant) -> Option<CommandId> {
        let mut slot = self.queue.pop_front()?;
        self.queued_bytes -= slot.len;
        self.in_flight_bytes += slot.len;
        slot.written_at = now;
        let id = slot.id;
        // A slot left the queue, so there is room in flight.
        let _ = self.in_flight.push_back(slot);
        Some(id)
    }

    pub(crate) fn push_ping(&mut self, now: Instant) {
        let slot = Slot {
            id: CommandId(0),
            deadline: Instant::from_micros(u64::MAX),
            len: 0,
            kind: SlotKind::Ping,
            state: SlotState::Live,
            written_at: now,
            written_before: false,
            reply_started: false,
        };
        // `room` keeps one slot free for this.
        let _ = self.in_flight.push_back(slot);
    }

    /// A pub/sub request written (its confirmations will consume it).
    /// Returns false when no slot is free.
    pub(crate) fn push_pubsub(&mut self, now: Instant, confirmations: u16) -> bool {
        if self.room() == 0 || confirmations == 0 {
            return false;
        }
        let slot = Slot {
            id: CommandId(0),
            deadline: Instant::from_micros(u64::MAX),
            len: 0,
            kind: SlotKind::PubSub {
                remaining: confirmations,
            },
            state: SlotState::Live,
            written_at: now,
            written_before: false,
            reply_started: false,
        };
        self.in_flight.push_back(slot).is_ok()
    }

    /// Whether the oldest request in flight is a pub/sub request.
    pub(crate) fn pubsub_in_front(&self) -> bool {
        self.in_flight
            .front()
            .is_some_and(|s| matches!(s.kind, SlotKind::PubSub { .. }))
    }

    /// A pub/sub confirmation arrived: it answers the oldest request in
    /// flight when that is a pub/sub request (confirmations come in order
    /// with replies); a confirmation nobody asked for (the server dropping
    /// a shard channel) consumes nothing.
    pub(crate) fn pubsub_confirmed(&mut self) {
        let Some(slot) = self.in_flight.front_mut() else {
            return;
        };
        if let SlotKind::PubSub { remaining } = &mut slot.kind {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                self.in_flight.pop_front();
            }
        }
    }

    pub(crate) fn ping_outstanding(&self) -> bool {
        self.in_flight
            .iter()
            .any(|s| matches!(s.kind, SlotKind::Ping))
    }

    /// Part of a reply (not a push) has arrived: replies come in order, so
    /// it is the oldest request's, which has therefore run on the server.
    pub(crate) fn reply_started(&mut self) {
        if let Some(slot) = self.in_flight.front_mut() {
            slot.reply_started = true;
        }
    }

    /// Matches a reply to the oldest request in flight.
    pub(crate) fn pop_reply(&mut self) -> Option<Matched> {
        let slot = self.in_flight.pop_front()?;
        self.in_flight_bytes -= slot.len;
        Some(match (slot.kind, slot.state) {
            (_, SlotState::Abandoned) => Matched::Abandoned,
            (SlotKind::Ping, _) => Matched::Ping {
                sent_at: slot.written_at,
            },
            (SlotKind::Command(_), _) => Matched::Command(slot.id),
            (SlotKind::PubSub { .. }, _) => Matched::PubSub,
        })
    }

    /// When the oldest outstanding request was written, unless a command
    /// that may wait (BLPOP, WAIT) is outstanding within its deadline. Once its caller has given up, the connection is stuck
    /// behind it anyway (Redis answers in order), so liveness applies again.
    pub(crate) fn oldest_written_at(&self) -> Option<Instant> {
        if self.in_flight.iter().any(Slot::live_waiting) {
            return None;
        }
        // A command that may wait is waited for from its deadline, not its
        // write.
        self.in_flight.front().map(|s| match s.class() {
            Some(class) if class.may_wait() => s.written_at.max(s.deadline),
            _ => s.written_at,
        })
    }

    /// The earliest deadline of a live command.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.queue
            .iter()
            .chain(self.in_flight.iter())
            .filter(|s| s.state == SlotState::Live && matches!(s.kind, SlotKind::Command(_)))
            .map(|s| s.deadline)
            .min()
    }

    /// Resolves every live command whose deadline is at or before `now`:
    /// queued ones are removed, written ones stay in the FIFO as abandoned so
    /// later replies still match their requests. Returns whether a written
    /// blocking command was abandoned (its connection must close).
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        outage: Option<DisconnectReason>,
        policy: OfflinePolicy,
    ) -> bool {
        for _ in 0..self.queue.len() {
            let Some(slot) = self.queue.pop_front() else {
                break;
            };
            if slot.deadline <= now {
                self.queued_bytes -= slot.len;
                let outcome = match slot.unanswered(outage, policy) {
                    // Written on an earlier connection and out of time: the
                    // loss may have come after it ran.
                    Outcome::Indeterminate(_) => {
                        Outcome::Indeterminate(IndeterminateCause::TimedOut)
                    }
                    other => other,
                };
                // The slot just left the queue, so its resolution has room.
                let _ = self.resolutions.push_back((slot.id, outcome));
            } else {
                let _ = self.queue.push_back(slot);
            }
        }
        let mut blocking_abandoned = false;
        for slot in self.in_flight.iter_mut() {
            let Some(class) = slot.class() else { continue };
            if slot.state == SlotState::Live && slot.deadline <= now {
                slot.state = SlotState::Abandoned;
                blocking_abandoned |= class.blocking();
                let outcome = if class.read_only() {
                    // A read changes nothing: out of time is all there is to say.
                    outage.map_or(Outcome::TimedOut, Outcome::NotApplied)
                } else {
                    Outcome::Indeterminate(IndeterminateCause::TimedOut)
                };
                let _ = self.resolutions.push_back((slot.id, outcome));
            }
        }
        blocking_abandoned
    }

    /// The caller withdrew command `id`. `just_polled`: the command the
    /// adapter was just told to write and has not written.
    pub(crate) fn cancel(&mut self, id: CommandId, just_polled: bool) -> Cancelled {
        if just_polled
            && self.in_flight.back().is_some_and(|s| s.id == id)
            && let Some(slot) = self.in_flight.pop_back()
        {
            self.in_flight_bytes -= slot.len;
            let _ = self.resolutions.push_back((id, slot.cancelled(false)));
            return Cancelled::Unsent;
        }
        let mut found = false;
        for _ in 0..self.queue.len() {
            let Some(slot) = self.queue.pop_front() else {
                break;
            };
            if slot.id == id {
                found = true;
                self.queued_bytes -= slot.len;
                let _ = self.resolutions.push_back((id, slot.cancelled(false)));
            } else {
                let _ = self.queue.push_back(slot);
            }
        }
        if found {
            return Cancelled::Unsent;
        }
        for slot in self.in_flight.iter_mut() {
            // The keepalive PING's slot carries no id of a command (its
            // `CommandId(0)` is never handed out): it cannot be cancelled.
            let command = matches!(slot.kind, SlotKind::Command(_));
            if command && slot.id == id && slot.state == SlotState::Live {
                slot.state = SlotState::Abandoned;
                let blocking = slot.class().is_some_and(Class::blocking);
                let _ = self.resolutions.push_back((id, slot.cancelled(true)));
                return Cancelled::Written { blocking };
            }
        }
        Cancelled::NotFound
    }

    /// The connection is gone. Resend-safe commands in flight go back to the
    /// front of the queue (in their order) to be written on the next
    /// connection, when `retry`; the others are resolved (see
    /// [`Slot::unanswered`]) and never resent. Nor is one whose reply had
    /// begun to arrive: the server was already answering it, so a write
    /// ends indeterminate and a read not applied (or from the cache), instead
    /// of asking a slow server or link for the same reply again.
    pub(crate) fn connection_lost(
        &mut self,
        reason: DisconnectReason,
        retry: bool,
        policy: OfflinePolicy,
    ) {
        while let Some(mut slot) = self.in_flight.pop_back() {
            self.in_flight_bytes -= slot.len;
            let (class, SlotState::Live) = (slot.class(), slot.state) else {
                continue;
            };
            let Some(class) = class else { continue };
            slot.written_at = Instant::ZERO;
            slot.written_before = true;
            if retry && class.resend_safe() && !slot.reply_started {
                self.queued_bytes += slot.len;
                let _ = self.queue.push_front(slot);
            } else {
                let _ = self
                    .resolutions
                    .push_back((slot.id, slot.unanswered(Some(reason), policy)));
            }
        }
    }

    /// Resolves queued commands as unanswered (see [`Slot::unanswered`]):
    /// all of them, or (`keep_resends`) all but the writes lost in flight
    /// earlier, which may have run and wait for the next connection or
    /// their deadline. A read lost in flight gets one more connection: it
    /// is queued again after this call, and resolved here at the next
    /// failure (a GET then goes to the cache).
    pub(crate) fn fail_queued(
        &mut self,
        reason: DisconnectReason,
        policy: OfflinePolicy,
        keep_resends: bool,
    ) {
        for _ in 0..self.queue.len() {
            let Some(slot) = self.queue.pop_front() else {
                break;
            };
            let read = slot.class().is_some_and(Class::read_only);
            if keep_resends && slot.written_before && !read {
                let _ = self.queue.push_back(slot);
                continue;
            }
            self.queued_bytes -= slot.len;
            let _ = self
                .resolutions
                .push_back((slot.id, slot.unanswered(Some(reason), policy)));
        }
    }

    pub(crate) fn pop_resolution(&mut self) -> Option<(CommandId, Outcome)> {
        self.resolutions.pop_front()
    }
}

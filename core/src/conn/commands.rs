//! The command FIFO: the bounded offline queue, requests in flight in the
//! order they were written (replies come back in that order), per-command
//! deadlines, and resolutions waiting to be polled.
//!
//! Invariant: every submitted command leaves this structure exactly once,
//! either as a reply matched in [`Commands::pop_reply`] or as an
//! [`Outcome`] in `resolutions`.

use heapless::Deque;

use crate::reason::DisconnectReason;
use crate::time::Instant;

/// Handle of a submitted command, unique per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CommandId(pub u64);

/// How a command ended without a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Outcome {
    /// The deadline passed before the command was written: it was never sent
    /// and will never run.
    TimedOut,
    /// The command was never sent (shutdown, give-up, fail-fast policy).
    NotSent(DisconnectReason),
    /// The command was written but no reply came: it may or may not have been
    /// applied. Never resent.
    Indeterminate(IndeterminateCause),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum IndeterminateCause {
    /// Written, then its deadline passed without a reply.
    TimedOut,
    /// Written, then the connection was lost.
    ConnectionLost(DisconnectReason),
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum SlotKind {
    Command { idempotent: bool, blocking: bool },
    Ping,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Live,
    /// Resolved already (timed out after being written); its reply, when it
    /// comes, is discarded so the FIFO stays aligned.
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
    /// Written on an earlier connection, then queued again (idempotent):
    /// it may have run, so it can no longer end as "never sent".
    written_before: bool,
}

/// What a reply matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Matched {
    Command(CommandId),
    Ping {
        sent_at: Instant,
    },
    /// A reply to a command already resolved as timed out.
    Abandoned,
}

/// Why a submit was refused by the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Full {
    Count,
    Bytes,
}

pub(crate) struct Commands<const N: usize> {
    queue: Deque<Slot, N>,
    in_flight: Deque<Slot, N>,
    resolutions: Deque<(CommandId, Outcome), N>,
    queued_bytes: usize,
    next_id: u64,
}

impl<const N: usize> Commands<N> {
    pub(crate) const fn new() -> Self {
        Commands {
            queue: Deque::new(),
            in_flight: Deque::new(),
            resolutions: Deque::new(),
            queued_bytes: 0,
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

    /// Slots used in all three deques. One slot is always kept free for the
    /// keepalive PING, so user commands can never starve it.
    fn used(&self) -> usize {
        self.queue.len() + self.in_flight.len() + self.resolutions.len()
    }

    pub(crate) fn push(
        &mut self,
        len: usize,
        deadline: Instant,
        kind: SlotKind,
        max_commands: usize,
        max_bytes: usize,
    ) -> Result<CommandId, Full> {
        if self.used() + 2 > N || self.queue.len() >= max_commands {
            return Err(Full::Count);
        }
        if self.queued_bytes.saturating_add(len) > max_bytes {
            return Err(Full::Bytes);
        }
        let id = CommandId(self.next_id);
        self.next_id += 1;
        let slot = Slot {
            id,
            deadline,
            len,
            kind,
            state: SlotState::Live,
            written_at: Instant::ZERO,
            written_before: false,
        };
        // Capacity was checked above.
        let _ = self.queue.push_back(slot);
        self.queued_bytes += len;
        Ok(id)
    }

    /// The next live queued command to write, moved in flight.
    pub(crate) fn next_to_write(&mut self, now: Instant) -> Option<CommandId> {
        if let Some(mut slot) = self.queue.pop_front() {
            self.queued_bytes -= slot.len;
            slot.written_at = now;
            let id = slot.id;
            // A slot left the queue, so there is room in flight.
            let _ = self.in_flight.push_back(slot);
            return Some(id);
        }
        None
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
        };
        // `push` keeps one slot free for this.
        let _ = self.in_flight.push_back(slot);
    }

    pub(crate) fn ping_outstanding(&self) -> bool {
        self.in_flight
            .iter()
            .any(|s| matches!(s.kind, SlotKind::Ping))
    }

    /// Matches a reply to the oldest request in flight.
    pub(crate) fn pop_reply(&mut self) -> Option<Matched> {
        let slot = self.in_flight.pop_front()?;
        Some(match (slot.kind, slot.state) {
            (_, SlotState::Abandoned) => Matched::Abandoned,
            (SlotKind::Ping, _) => Matched::Ping {
                sent_at: slot.written_at,
            },
            (SlotKind::Command { .. }, _) => Matched::Command(slot.id),
        })
    }

    /// When the oldest outstanding request was written, unless a blocking
    /// command is outstanding within its deadline (it may legitimately wait
    /// that long). Once its caller has given up, the connection is stuck
    /// behind it anyway (Redis answers in order), so liveness applies again.
    pub(crate) fn oldest_written_at(&self) -> Option<Instant> {
        if self.in_flight.iter().any(|s| {
            s.state == SlotState::Live && matches!(s.kind, SlotKind::Command { blocking: true, .. })
        }) {
            return None;
        }
        // A blocking command is waited for from its deadline, not its write.
        self.in_flight.front().map(|s| match s.kind {
            SlotKind::Command { blocking: true, .. } => s.written_at.max(s.deadline),
            _ => s.written_at,
        })
    }

    /// The earliest deadline of a live command.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.queue
            .iter()
            .chain(self.in_flight.iter())
            .filter(|s| s.state == SlotState::Live && matches!(s.kind, SlotKind::Command { .. }))
            .map(|s| s.deadline)
            .min()
    }

    /// Resolves every live command whose deadline is at or before `now`:
    /// queued ones are removed (never sent), written ones stay in the FIFO as
    /// abandoned so later replies still match their requests.
    pub(crate) fn expire(&mut self, now: Instant) {
        for _ in 0..self.queue.len() {
            let Some(slot) = self.queue.pop_front() else {
                break;
            };
            if slot.deadline <= now {
                self.queued_bytes -= slot.len;
                let outcome = if slot.written_before {
                    Outcome::Indeterminate(IndeterminateCause::TimedOut)
                } else {
                    Outcome::TimedOut
                };
                // The slot just left the queue, so its resolution has room.
                let _ = self.resolutions.push_back((slot.id, outcome));
            } else {
                let _ = self.queue.push_back(slot);
            }
        }
        for slot in self.in_flight.iter_mut() {
            if slot.state == SlotState::Live
                && matches!(slot.kind, SlotKind::Command { .. })
                && slot.deadline <= now
            {
                slot.state = SlotState::Abandoned;
                let _ = self.resolutions.push_back((
                    slot.id,
                    Outcome::Indeterminate(IndeterminateCause::TimedOut),
                ));
            }
        }
    }

    /// The connection is gone: idempotent commands in flight go back to the
    /// front of the queue (in their order) to be written on the next
    /// connection; the others are resolved as indeterminate and never resent.
    pub(crate) fn connection_lost(&mut self, reason: DisconnectReason, retry_idempotent: bool) {
        while let Some(mut slot) = self.in_flight.pop_back() {
            match (slot.kind, slot.state) {
                (SlotKind::Ping, _) | (_, SlotState::Abandoned) => {}
                (
                    SlotKind::Command {
                        idempotent: true, ..
                    },
                    SlotState::Live,
                ) if retry_idempotent => {
                    slot.written_at = Instant::ZERO;
                    slot.written_before = true;
                    self.queued_bytes += slot.len;
                    let _ = self.queue.push_front(slot);
                }
                (SlotKind::Command { .. }, SlotState::Live) => {
                    let _ = self.resolutions.push_back((
                        slot.id,
                        Outcome::Indeterminate(IndeterminateCause::ConnectionLost(reason)),
                    ));
                }
            }
        }
    }

    /// Fails every queued command as not sent (fail-fast policy, give-up,
    /// shutdown, permanent failure), or as indeterminate if it was written on
    /// an earlier connection.
    pub(crate) fn fail_queued(&mut self, reason: DisconnectReason) {
        while let Some(slot) = self.queue.pop_front() {
            let outcome = if slot.written_before {
                Outcome::Indeterminate(IndeterminateCause::ConnectionLost(reason))
            } else {
                Outcome::NotSent(reason)
            };
            let _ = self.resolutions.push_back((slot.id, outcome));
        }
        self.queued_bytes = 0;
    }

    pub(crate) fn pop_resolution(&mut self) -> Option<(CommandId, Outcome)> {
        self.resolutions.pop_front()
    }
}

//! Redis Sentinel, sans-I/O: which server is the master of a named group,
//! and following it through failovers. [`Resolver`] owns every decision;
//! the adapter keeps a connection to each sentinel, sends what it is told,
//! and reports what came back. No clock (time is a `now` argument), no
//! allocation (`SENTINELS` is the caller's capacity), no panic on any input.
//!
//! # How an adapter drives it
//! Methods come in three kinds, as in quinn-proto: getters (`&self`),
//! `handle_*` for what happened, and `poll_*` for what to do. After any
//! `handle_*`, drain [`poll_change`](Resolver::poll_change) (point the data
//! connection at the new master), then [`poll_ask`](Resolver::poll_ask),
//! then sleep until [`poll_timeout`](Resolver::poll_timeout), an answer or
//! a message.
//!
//! ```text
//! poll_ask(now) → Ask{sentinels, until}  send SENTINEL get-master-addr-by-name
//!                                         (encode_get_master) to each
//!    reply       → handle_answer(now, id, parse_master_answer(&frame))
//!    error/lost  → handle_answer(now, id, Answer::Failed)
//!    until       → handle_timeout(now)
//! watchers()     → SUBSCRIBE +switch-master on these (re-check after each change)
//!    message     → handle_switch_master(now, id, switch_payload(&frame))
//! master's ROLE is not master (parse_role), or READONLY from it
//!                → handle_not_master(now)
//! poll_change()  → MasterChange{from, to, cause}: reconnect the data connection
//! ```
//!
//! One round, with the bytes a sentinel sends:
//!
//! ```
//! use resilis_core::resp::{Decoded, Limits, decode};
//! use resilis_core::sentinel::{ChangeCause, Resolver, SentinelConfig, parse_master_answer};
//! use resilis_core::{Duration, Instant};
//!
//! let sentinels = [("10.0.0.7", 26379), ("10.0.0.8", 26379), ("10.0.0.9", 26379)];
//! let mut resolver: Resolver<3> =
//!     Resolver::new(SentinelConfig::default(), "mymaster", sentinels).unwrap();
//! let now = Instant::ZERO;
//! let ask = resolver.poll_ask(now).expect("the first round is due at once");
//! // `encode_get_master` went to all three; two have answered so far.
//! let reply = b"*2\r\n$8\r\n10.0.0.1\r\n$4\r\n6379\r\n";
//! let Ok(Decoded::Frame { frame, .. }) = decode(reply, &Limits::REDIS) else {
//!     unreachable!()
//! };
//! for &sentinel in &ask.sentinels[..2] {
//!     resolver.handle_answer(now, sentinel, parse_master_answer(&frame));
//! }
//! // Two of three is a majority: the round is over.
//! let change = resolver.poll_change().expect("a master was found");
//! assert_eq!(change.to.unwrap().to_string(), "10.0.0.1:6379");
//! assert_eq!(change.cause, ChangeCause::Resolved);
//! assert!(resolver.poll_ask(now).is_none());
//! assert_eq!(resolver.poll_timeout(), Some(now + Duration::from_secs(1)));
//! ```
//!
//! # The rules
//! - **Rounds.** Every sentinel is asked at once, at the start, then
//!   `recheck_interval` after each round ends while it found a master,
//!   `ask_timeout` after a round that found none, and at once after a
//!   `+switch-master` or a not-master report. One round at a time: an event
//!   during a round *overtakes* it (its answers were asked for before the
//!   event, so it decides nothing) and the next round starts as it ends.
//! - **Ending a round.** As soon as a strict majority of the configured
//!   sentinels name one (eligible) address, when every sentinel answered, or
//!   at `until`, whichever comes first. Sentinels silent at `until` count as
//!   failed.
//! - **The winner** is the eligible address with the most votes; a tie goes
//!   to the one named by the sentinel earliest in the current order. One
//!   vote is enough when the others failed: that is what the Redis client
//!   guidelines do (take the first sentinel that answers).
//! - **No winner** (every sentinel failed, or none knows the name, or only
//!   a suspect was named): the master stays what it was, so a client whose
//!   sentinels are unreachable keeps writing to the master it knows, which is
//!   what a user expects while only the sentinels are out. Why is kept in
//!   [`last_error`](Resolver::last_error) (cleared by the next master found),
//!   and the next round comes `ask_timeout` later instead of
//!   `recheck_interval`, so a master is found soon after the sentinels come
//!   back.
//! - **The order.** At the end of each round that was not overtaken, the
//!   first sentinel *in the current order* that named the winner moves to
//!   the front (the guidelines' move-to-front) past those ahead of it that
//!   answered otherwise, and sentinels that failed or said they do not know
//!   the name move behind all the others; ties and the watchers follow the
//!   order. Not the first to *arrive*: all are asked at once, so which
//!   answer lands first is network jitter, and following it would change
//!   the watchers (and re-subscribe) every round. For the same reason a
//!   sentinel not yet heard from when a majority ended the round keeps its
//!   place. With healthy sentinels the order never changes.
//! - **Suspects.** After a failover the sentinels that did not run it name
//!   the old master for a few seconds (they learn the new one from the
//!   leader's hello messages, sent every 2 s), so a majority can be stale.
//!   The old master of a `+switch-master`, and a master the adapter reported
//!   as not a master, is *suspect* for `suspect_for`. A round never picks a
//!   suspect while a master is known, and while none is known only when a
//!   strict majority names it *and no sentinel names any other address*: one
//!   sentinel naming a new address (the failover's leader, ahead of the
//!   others) outweighs a stale majority, but if all agree on the suspect
//!   (the failover has not happened; the sentinels will turn it back into
//!   a master) it is taken again. A second not-master report on a suspect
//!   taken so waits `ask_timeout` before the next round, so a replica the
//!   sentinels still call master cannot spin connect/ROLE/round.
//! - **`+switch-master`** is a finished failover, authorized by a majority of
//!   sentinels: acted on at once, from whichever sentinel reports it first;
//!   the same new master from another one is a no-op. A confirmation round
//!   follows. It clears a suspicion of the new master.
//!
//! # Panics, errors and unwraps
//! None of the inputs panics. An answer from an unknown sentinel, a second
//! answer from the same sentinel in one round, or one outside a round is
//! ignored (adapters race with their connections).

mod wire;

use core::fmt;

use heapless::{Deque, String, Vec};

use crate::addr::{HOST_CAP, NodeAddr};
use crate::time::{Duration, Instant};

pub use wire::{
    FAILOVER_PROMOTING_CHANNEL, NodeRole, SWITCH_MASTER_CHANNEL, encode_get_master,
    parse_master_answer, parse_role, parse_switch_master, switch_payload,
};

/// Longest master name the resolver holds.
pub const NAME_CAP: usize = 64;
/// Master changes kept for [`Resolver::poll_change`]; when full, the oldest
/// is dropped (counted in [`SentinelStats::changes_dropped`]).
pub const CHANGE_QUEUE: usize = 4;
/// Most sentinels one resolver asks (ids are a `u8`), whatever `SENTINELS`.
pub const MAX_SENTINELS: usize = 255;

/// A sentinel, by its place in the list given to [`Resolver::new`]. Stable
/// for the resolver's life (the *order* in which they rank changes; ids do
/// not).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SentinelId(pub u8);

/// How the resolver paces itself. The defaults suit sentinels on a LAN
/// (they answer in about a millisecond) and Redis's failover timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SentinelConfig {
    /// While a master is known, it is asked for again this long after each
    /// round ends (with `ask_timeout`, every 1-1.5 s by default), which
    /// bounds how long a missed `+switch-master` goes unnoticed.
    pub recheck_interval: Duration,
    /// A round waits this long for answers; also the wait before the next
    /// round when one found no master.
    pub ask_timeout: Duration,
    /// Subscribe to `+switch-master` on this many sentinels, the first in
    /// [`Resolver::watchers`]'s order. More than one, so that one sentinel
    /// down does not leave a failover to the next recheck.
    pub switch_watchers: usize,
    /// How long an old master (of a `+switch-master`, or reported not a
    /// master) is suspect: longer than the sentinels take to agree on a new
    /// master after a failover (they exchange hellos every 2 s).
    pub suspect_for: Duration,
}

impl Default for SentinelConfig {
    fn default() -> Self {
        SentinelConfig {
            recheck_interval: Duration::from_secs(1),
            ask_timeout: Duration::from_millis(500),
            switch_watchers: 2,
            suspect_for: Duration::from_secs(5),
        }
    }
}

/// What one sentinel said about the master (see [`parse_master_answer`]).
// No allocator to box the address into; an answer is built once and moved
// into the round, so its size costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Answer {
    /// It names this address.
    Master(NodeAddr),
    /// A nil: it monitors no master of this name.
    Unknown,
    /// An error reply, a connection failure, a timeout, or a reply in no
    /// shape Redis sends.
    Failed,
}

/// Ask these sentinels (all of them, in the current order) for the master;
/// report each with [`Resolver::handle_answer`], and call
/// [`Resolver::handle_timeout`] at `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Ask<const SENTINELS: usize> {
    pub sentinels: Vec<SentinelId, SENTINELS>,
    pub until: Instant,
}

/// How a round ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RoundOutcome {
    /// A master other than the one in use was chosen, named by `votes`
    /// sentinels.
    Changed { votes: u8 },
    /// The master in use was named again, by `votes` sentinels.
    Confirmed { votes: u8 },
    /// No master could be chosen; the one in use (if any) is kept.
    NoMaster(ResolveError),
    /// A `+switch-master` or not-master report came during the round: its
    /// answers decide nothing, and the next round is due at once.
    Overtaken,
}

/// Why the last round found no master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ResolveError {
    /// No sentinel answered: `failed` sent an error, lost the connection or
    /// stayed silent until the round's deadline.
    NoAnswer { failed: u8 },
    /// No sentinel named a master, and `unknown` of them said they monitor
    /// none of this name (the others failed).
    UnknownName { unknown: u8, failed: u8 },
    /// Only a suspect old master was named (by `votes`), which is not taken
    /// back without a majority and no other address named.
    OnlySuspect { votes: u8 },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ResolveError::NoAnswer { failed } => write!(
                f,
                "no sentinel answered ({failed} failed or timed out): are they running and reachable?"
            ),
            ResolveError::UnknownName { unknown, failed } => write!(
                f,
                "{unknown} sentinels monitor no master of this name ({failed} failed): check the master name (SENTINEL MASTERS)"
            ),
            ResolveError::OnlySuspect { votes } => write!(
                f,
                "{votes} sentinels still name the old master after a failover; waiting for them to agree on the new one"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ResolveError {}

/// Why [`Resolver::new`] refused its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SentinelError {
    /// The list of sentinels is empty.
    NoSentinels,
    /// More sentinels than `max` (`SENTINELS`, at most [`MAX_SENTINELS`]).
    TooManySentinels { max: usize },
    /// The master name is empty.
    EmptyName,
    /// The master name is longer than [`NAME_CAP`].
    NameTooLong { max: usize },
    /// Sentinel `index`'s host is longer than [`HOST_CAP`].
    HostTooLong { index: usize, max: usize },
    /// Sentinel `index` has an empty host or port 0.
    BadAddress { index: usize },
    /// Sentinel `index` is listed twice: it would vote twice.
    DuplicateSentinel { index: usize },
}

impl fmt::Display for SentinelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SentinelError::NoSentinels => f.write_str("no sentinel addresses given"),
            SentinelError::TooManySentinels { max } => write!(
                f,
                "more than {max} sentinels given: raise the resolver's SENTINELS"
            ),
            SentinelError::EmptyName => f.write_str("the sentinel master name is empty"),
            SentinelError::NameTooLong { max } => {
                write!(f, "the sentinel master name is over {max} bytes")
            }
            SentinelError::HostTooLong { index, max } => {
                write!(f, "sentinel #{index}: host over {max} bytes")
            }
            SentinelError::BadAddress { index } => {
                write!(f, "sentinel #{index}: empty host or port 0")
            }
            SentinelError::DuplicateSentinel { index } => write!(
                f,
                "sentinel #{index} is listed twice: list each sentinel once (a majority counts sentinels)"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SentinelError {}

/// Why the master changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ChangeCause {
    /// A round of questions chose it.
    Resolved,
    /// A sentinel announced a failover.
    SwitchMaster,
    /// The adapter reported that the master is not one.
    NotMaster,
    /// The failover's leader is promoting this replica
    /// (`+failover-state-send-slaveof-noone`): the old master may still
    /// take writes, and lose them.
    Promoting,
}

/// The master moved from `from` to `to` (`None`: unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MasterChange {
    pub from: Option<NodeAddr>,
    pub to: Option<NodeAddr>,
    pub cause: ChangeCause,
}

/// What [`Resolver::handle_switch_master`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SwitchOutcome {
    /// The master is now the message's new address; a round confirms it.
    Switched,
    /// The new address is already the master (another sentinel told first).
    AlreadyMaster,
    /// About another master name.
    OtherName,
    /// Not `<name> <ip> <port> <ip> <port>`.
    Malformed,
    /// From a sentinel id the resolver does not have.
    UnknownSentinel,
}

/// Counters for health reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SentinelStats {
    /// Rounds ended (overtaken ones included).
    pub rounds: u64,
    /// Rounds that ended with no master chosen.
    pub rounds_without_master: u64,
    /// Answers that named a master.
    pub named: u64,
    /// Answers that said the name is unknown.
    pub unknown: u64,
    /// Failed answers, and sentinels silent at a round's deadline.
    pub failed: u64,
    /// Answers from no round, an unknown sentinel, or a second one.
    pub ignored: u64,
    /// `+switch-master` messages acted on.
    pub switches: u64,
    /// `+switch-master` messages naming the master already in use.
    pub duplicate_switches: u64,
    pub not_master: u64,
    pub changes_dropped: u64,
}

/// A sentinel's reply in the round under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    Pending,
    /// Named the candidate at this index.
    Named(u8),
    Unknown,
    Failed,
}

#[derive(Clone, Debug)]
struct Candidate {
    addr: NodeAddr,
    votes: u8,
}

#[derive(Clone, Debug)]
struct Suspect {
    addr: NodeAddr,
    until: Instant,
}

/// The one timer: the next round, or the end of the one under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle {
        due: Instant,
    },
    Asking {
        until: Instant,
        /// Overtaken by an event: decides nothing, the next round is due
        /// then.
        overtaken: Option<Instant>,
    },
}

/// Finds and follows the master of one Sentinel-monitored group, asking up
/// to `SENTINELS` sentinels. Size: about `550 × SENTINELS + 3.2 KB` (on
/// 64-bit; 2.3 KB of it the change queue).
#[derive(Clone, Debug)]
pub struct Resolver<const SENTINELS: usize> {
    config: SentinelConfig,
    name: String<NAME_CAP>,
    /// By id.
    sentinels: Vec<NodeAddr, SENTINELS>,
    order: Vec<SentinelId, SENTINELS>,
    /// By id: the round under way (stale between rounds).
    replies: Vec<Reply, SENTINELS>,
    /// Distinct addresses named in the round under way.
    candidates: Vec<Candidate, SENTINELS>,
    phase: Phase,
    master: Option<NodeAddr>,
    suspect: Option<Suspect>,
    /// The master is a replica being promoted, until then.
    promoting_until: Option<Instant>,
    changes: u64,
    queue: Deque<MasterChange, CHANGE_QUEUE>,
    last_error: Option<ResolveError>,
    stats: SentinelStats,
}

impl<const SENTINELS: usize> Resolver<SENTINELS> {
    /// A resolver that knows no master yet; the first
    /// [`poll_ask`](Self::poll_ask) starts a round.
    pub fn new<'a>(
        config: SentinelConfig,
        master_name: &str,
        sentinels: impl IntoIterator<Item = (&'a str, u16)>,
    ) -> Result<Self, SentinelError> {
        if master_name.is_empty() {
            return Err(SentinelError::EmptyName);
        }
        let name = String::try_from(master_name)
            .map_err(|_| SentinelError::NameTooLong { max: NAME_CAP })?;
        let max = SENTINELS.min(MAX_SENTINELS);
        let mut list: Vec<NodeAddr, SENTINELS> = Vec::new();
        let mut order: Vec<SentinelId, SENTINELS> = Vec::new();
        let mut replies: Vec<Reply, SENTINELS> = Vec::new();
        for (index, (host, port)) in sentinels.into_iter().enumerate() {
            if index >= max {
                return Err(SentinelError::TooManySentinels { max });
            }
            if host.is_empty() || port == 0 {
                return Err(SentinelError::BadAddress { index });
            }
            let addr = NodeAddr::new(host, port).ok_or(SentinelError::HostTooLong {
                index,
                max: HOST_CAP,
            })?;
            if list.contains(&addr) {
                return Err(SentinelError::DuplicateSentinel { index });
            }
            // `index < max <= SENTINELS`: the three pushes fit, and the id
            // fits a u8.
            let _ = list.push(addr);
            let _ = order.push(SentinelId(index as u8));
            let _ = replies.push(Reply::Pending);
        }
        if list.is_empty() {
            return Err(SentinelError::NoSentinels);
        }
        Ok(Resolver {
            config,
            name,
            sentinels: list,
            order,
            replies,
            candidates: Vec::new(),
            phase: Phase::Idle { due: Instant::ZERO },
            master: None,
            suspect: None,
            promoting_until: None,
            changes: 0,
            queue: Deque::new(),
            last_error: None,
            stats: SentinelStats::default(),
        })
    }

    // ----- getters --------------------------------------------------------

    pub fn config(&self) -> &SentinelConfig {
        &self.config
    }

    pub fn master_name(&self) -> &str {
        &self.name
    }

    /// The master in use: `None` before the first round that found one, and
    /// after a not-master report until a round finds another.
    pub fn master(&self) -> Option<&NodeAddr> {
        self.master.as_ref()
    }

    /// Moves whenever [`master`](Self::master) changes.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Why the last round found no master; `None` once one found it.
    pub fn last_error(&self) -> Option<ResolveError> {
        self.last_error
    }

    /// The old master not to be taken back yet, as of the last input (its
    /// suspicion may have lapsed since).
    pub fn suspect(&self) -> Option<&NodeAddr> {
        self.suspect.as_ref().map(|s| &s.addr)
    }

    pub fn addr(&self, sentinel: SentinelId) -> Option<&NodeAddr> {
        self.sentinels.get(usize::from(sentinel.0))
    }

    pub fn sentinel_id(&self, host: &str, port: u16) -> Option<SentinelId> {
        self.sentinels
            .iter()
            .position(|a| a.is(host, port))
            .map(|i| SentinelId(i as u8))
    }

    /// The sentinels, best first (see the module's rules).
    pub fn order(&self) -> &[SentinelId] {
        &self.order
    }

    /// The sentinels to hold a `+switch-master` subscription on: the first
    /// `switch_watchers` of the order. Compare after each round: the order
    /// may have changed.
    pub fn watchers(&self) -> impl Iterator<Item = SentinelId> + '_ {
        self.order.iter().copied().take(self.config.switch_watchers)
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) (a round under
    /// way) or [`poll_ask`](Self::poll_ask) (the next round) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle { due } => Some(due),
            Phase::Asking { until, .. } => Some(until),
        }
    }

    /// A round is under way.
    pub fn is_asking(&self) -> bool {
        matches!(self.phase, Phase::Asking { .. })
    }

    pub fn stats(&self) -> SentinelStats {
        self.stats
    }

    // ----- pollers --------------------------------------------------------

    /// The next master change, oldest first.
    pub fn poll_change(&mut self) -> Option<MasterChange> {
        self.queue.pop_front()
    }

    /// Whether a round starts now, and whom to ask. `None` while one is
    /// under way or none is due. A round past its `until` is ended first,
    /// as [`handle_timeout`](Self::handle_timeout) would.
    pub fn poll_ask(&mut self, now: Instant) -> Option<Ask<SENTINELS>> {
        if let Phase::Asking { until, .. } = self.phase {
            if now < until {
                return None;
            }
            self.handle_timeout(now);
        }
        let Phase::Idle { due } = self.phase else {
            return None;
        };
        if now < due {
            return None;
        }
        for reply in self.replies.iter_mut() {
            *reply = Reply::Pending;
        }
        self.candidates.clear();
        let until = now + self.config.ask_timeout;
        self.phase = Phase::Asking {
            until,
            overtaken: None,
        };
        Some(Ask {
            sentinels: self.order.clone(),
            until,
        })
    }

    // ----- handlers: the transitions ---------------------------------------

    /// A sentinel's reply in the round under way. Returns how the round
    /// ended, if this answer ended it.
    pub fn handle_answer(
        &mut self,
        now: Instant,
        sentinel: SentinelId,
        answer: Answer,
    ) -> Option<RoundOutcome> {
        let Phase::Asking { until, .. } = self.phase else {
            self.stats.ignored += 1;
            return None;
        };
        let at = usize::from(sentinel.0);
        if self.replies.get(at) != Some(&Reply::Pending) {
            self.stats.ignored += 1;
            return None;
        }
        let reply = match answer {
            Answer::Master(addr) if !addr.host.is_empty() && addr.port != 0 => {
                self.stats.named += 1;
                self.vote(addr)
            }
            Answer::Unknown => {
                self.stats.unknown += 1;
                Reply::Unknown
            }
            Answer::Master(_) | Answer::Failed => {
                self.stats.failed += 1;
                Reply::Failed
            }
        };
        self.replies[at] = reply;
        let majority = self.sentinels.len() / 2 + 1;
        let agreed = match reply {
            Reply::Named(c) => self.candidates.get(usize::from(c)).is_some_and(|c| {
                usize::from(c.votes) >= majority && !self.is_suspect(now, &c.addr)
            }),
            _ => false,
        };
        let all = !self.replies.contains(&Reply::Pending);
        if agreed || all {
            return Some(self.end_round(now));
        }
        if now >= until {
            return self.handle_timeout(now);
        }
        None
    }

    /// Ends the round under way once its `until` has come: sentinels that
    /// have not answered count as failed. Early or spurious calls do
    /// nothing.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<RoundOutcome> {
        match self.phase {
            Phase::Asking { until, .. } if now >= until => {}
            _ => return None,
        }
        for reply in self.replies.iter_mut() {
            if *reply == Reply::Pending {
                *reply = Reply::Failed;
                self.stats.failed += 1;
            }
        }
        Some(self.end_round(now))
    }

    /// The payload of a `+switch-master` message from `sentinel` (see
    /// [`switch_payload`]). For this master name, the master is the new
    /// address at once, the old one is suspect, and a round confirms it.
    pub fn handle_switch_master(
        &mut self,
        now: Instant,
        sentinel: SentinelId,
        payload: &[u8],
    ) -> SwitchOutcome {
        let parsed = wire::split_switch(payload);
        self.announced(now, sentinel, parsed, ChangeCause::SwitchMaster)
    }

    /// A `+failover-state-send-slaveof-noone` message from the failover's
    /// leader: the replica named is about to become the master, and a
    /// write the old master takes from now on may be lost. The master
    /// becomes that replica at once and the old one is suspect; until
    /// `suspect_for` has passed, [`handle_not_master`](Self::handle_not_master)
    /// for it is ignored (its `ROLE` may say `slave` for a few
    /// milliseconds more: the adapter keeps retrying it with its backoff
    /// instead of asking the sentinels, who still name the old master until
    /// `+switch-master`).
    pub fn handle_promoting(
        &mut self,
        now: Instant,
        sentinel: SentinelId,
        payload: &[u8],
    ) -> SwitchOutcome {
        let parsed = wire::split_promoting(payload);
        self.announced(now, sentinel, parsed, ChangeCause::Promoting)
    }

    /// A sentinel announced that the master moved from `old` to `new`
    /// (done: `SwitchMaster`, a round confirms it; under way: `Promoting`).
    fn announced(
        &mut self,
        now: Instant,
        sentinel: SentinelId,
        parsed: Option<(&[u8], NodeAddr, NodeAddr)>,
        cause: ChangeCause,
    ) -> SwitchOutcome {
        if self.addr(sentinel).is_none() {
            return SwitchOutcome::UnknownSentinel;
        }
        let Some((name, old, new)) = parsed else {
            return SwitchOutcome::Malformed;
        };
        if name != self.name.as_bytes() {
            return SwitchOutcome::OtherName;
        }
        if self.master.as_ref() == Some(&new) {
            self.stats.duplicate_switches += 1;
            return SwitchOutcome::AlreadyMaster;
        }
        self.stats.switches += 1;
        if old != new {
            self.suspect = Some(Suspect {
                addr: old,
                until: now + self.config.suspect_for,
            });
        } else if self.suspect.as_ref().is_some_and(|s| s.addr == new) {
            self.suspect = None;
        }
        self.last_error = None;
        if cause == ChangeCause::Promoting {
            self.promoting_until = Some(now + self.config.suspect_for);
        }
        self.set_master(Some(new), cause);
        if cause == ChangeCause::SwitchMaster {
            self.round_due_at(now);
        }
        SwitchOutcome::Switched
    }

    /// The master in use is not one: a `ROLE` reply other than `master`
    /// ([`parse_role`]), or a `READONLY` error from it. It is forgotten and
    /// suspect, and a round starts at once (or `ask_timeout` from now when
    /// it was already a suspect taken back). Report it only for a
    /// connection to the current [`master`](Self::master): a late reply
    /// from an older one would demote its successor. Returns whether there
    /// was a master to forget.
    pub fn handle_not_master(&mut self, now: Instant) -> bool {
        let Some(old) = self.master.clone() else {
            return false;
        };
        if self.promoting_until.is_some_and(|until| now < until) {
            // Being promoted: it says slave until SLAVEOF NO ONE lands.
            return false;
        }
        self.stats.not_master += 1;
        let again = self.is_suspect(now, &old);
        self.suspect = Some(Suspect {
            addr: old,
            until: now + self.config.suspect_for,
        });
        self.set_master(None, ChangeCause::NotMaster);
        if again {
            self.round_due_at(now + self.config.ask_timeout);
        } else {
            self.round_due_at(now);
        }
        true
    }

    // ----- internals ------------------------------------------------------

    /// The candidate index for `addr`, with one more vote.
    fn vote(&mut self, addr: NodeAddr) -> Reply {
        if let Some(i) = self.candidates.iter().position(|c| c.addr == addr) {
            let c = &mut self.candidates[i];
            c.votes = c.votes.saturating_add(1);
            return Reply::Named(i as u8);
        }
        // At most one candidate per sentinel, so this fits; if it somehow
        // did not, the answer is as good as failed.
        match self.candidates.push(Candidate { addr, votes: 1 }) {
            Ok(()) => Reply::Named((self.candidates.len() - 1) as u8),
            Err(_) => Reply::Failed,
        }
    }

    /// The one place a round's answers become a decision.
    fn end_round(&mut self, now: Instant) -> RoundOutcome {
        self.stats.rounds += 1;
        if let Phase::Asking {
            overtaken: Some(due),
            ..
        } = self.phase
        {
            self.phase = Phase::Idle { due };
            return RoundOutcome::Overtaken;
        }
        if self.suspect.as_ref().is_some_and(|s| now >= s.until) {
            self.suspect = None;
        }
        let winner = self.winner();
        self.reorder(winner.map(|(c, _)| c));
        match winner {
            Some((c, votes)) => {
                self.last_error = None;
                self.phase = Phase::Idle {
                    due: now + self.config.recheck_interval,
                };
                let addr = &self.candidates[c].addr;
                if self.master.as_ref() == Some(addr) {
                    return RoundOutcome::Confirmed { votes };
                }
                // A suspect taken back stays suspect, so that a second
                // not-master report on it is paced (`handle_not_master`).
                let addr = addr.clone();
                self.set_master(Some(addr), ChangeCause::Resolved);
                RoundOutcome::Changed { votes }
            }
            None => {
                let error = self.why_none();
                self.last_error = Some(error);
                self.stats.rounds_without_master += 1;
                self.phase = Phase::Idle {
                    due: now + self.config.ask_timeout,
                };
                RoundOutcome::NoMaster(error)
            }
        }
    }

    /// The eligible candidate with the most votes, ties to the one named by
    /// the sentinel earliest in the order; with its votes.
    fn winner(&self) -> Option<(usize, u8)> {
        let majority = self.sentinels.len() / 2 + 1;
        let mut best: Option<(usize, u8, usize)> = None;
        for (i, c) in self.candidates.iter().enumerate() {
            if self.suspect.as_ref().is_some_and(|s| s.addr == c.addr) {
                let taken_back = self.master.is_none()
                    && usize::from(c.votes) >= majority
                    && self.candidates.len() == 1;
                if !taken_back {
                    continue;
                }
            }
            let rank = self.first_namer(i);
            let better = match best {
                None => true,
                Some((_, votes, at)) => c.votes > votes || (c.votes == votes && rank < at),
            };
            if better {
                best = Some((i, c.votes, rank));
            }
        }
        best.map(|(i, votes, _)| (i, votes))
    }

    /// Where in the order the first sentinel that named candidate `c` is.
    fn first_namer(&self, c: usize) -> usize {
        self.order
            .iter()
            .position(|id| self.replies.get(usize::from(id.0)) == Some(&Reply::Named(c as u8)))
            .unwrap_or(usize::MAX)
    }

    fn why_none(&self) -> ResolveError {
        if let Some(c) = self.candidates.first() {
            // Only a suspect can have been passed over.
            return ResolveError::OnlySuspect { votes: c.votes };
        }
        let count = |want: Reply| self.replies.iter().filter(|&&r| r == want).count() as u8;
        let failed = count(Reply::Failed);
        match count(Reply::Unknown) {
            0 => ResolveError::NoAnswer { failed },
            unknown => ResolveError::UnknownName { unknown, failed },
        }
    }

    /// Move-to-front of the first sentinel in the order that named the
    /// winner, when every one ahead of it answered otherwise (one that had
    /// not answered when a majority ended the round may have agreed: it
    /// keeps its place); the ones that failed or do not know the name sink
    /// behind the rest. Stable otherwise.
    fn reorder(&mut self, winner: Option<usize>) {
        let front = winner.map(|c| self.first_namer(c)).filter(|&at| {
            !self
                .order
                .iter()
                .take(at)
                .any(|id| self.replies.get(usize::from(id.0)) == Some(&Reply::Pending))
        });
        let reply = |id: &SentinelId| {
            self.replies
                .get(usize::from(id.0))
                .copied()
                .unwrap_or(Reply::Failed)
        };
        let sinks = |id: &SentinelId| matches!(reply(id), Reply::Failed | Reply::Unknown);
        let mut next: Vec<SentinelId, SENTINELS> = Vec::new();
        if let Some(&id) = front.and_then(|at| self.order.get(at)) {
            let _ = next.push(id);
        }
        for pass_sinks in [false, true] {
            for (at, id) in self.order.iter().enumerate() {
                if Some(at) != front && sinks(id) == pass_sinks {
                    let _ = next.push(*id);
                }
            }
        }
        self.order = next;
    }

    fn set_master(&mut self, to: Option<NodeAddr>, cause: ChangeCause) {
        if cause != ChangeCause::Promoting {
            self.promoting_until = None;
        }
        let from = core::mem::replace(&mut self.master, to.clone());
        if from == to {
            return;
        }
        self.changes += 1;
        if self.queue.is_full() {
            let _ = self.queue.pop_front();
            self.stats.changes_dropped += 1;
        }
        let _ = self.queue.push_back(MasterChange { from, to, cause });
    }

    /// A round is wanted no later than `at`; one under way is overtaken.
    fn round_due_at(&mut self, at: Instant) {
        match &mut self.phase {
            Phase::Idle { due } => *due = (*due).min(at),
            Phase::Asking { overtaken, .. } => {
                *overtaken = Some(overtaken.map_or(at, |o| o.min(at)));
            }
        }
    }

    fn is_suspect(&self, now: Instant, addr: &NodeAddr) -> bool {
        self.suspect
            .as_ref()
            .is_some_and(|s| now < s.until && s.addr == *addr)
    }
}

#[cfg(test)]
mod tests;

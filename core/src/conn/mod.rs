//! One Redis connection as a sans-I/O state machine.
//!
//! [`Connection`] owns every decision: when to open a transport, what to
//! write, when a connection is dead, how long to back off, whether a failure
//! is worth retrying, when to engage the fallback cache. It never reads a
//! clock, never sleeps and never touches a socket.
//!
//! Its methods come in three kinds (after quinn-proto):
//! - getters (`&self`): [`phase`](Connection::phase), [`stats`](Connection::stats), ...
//! - handlers of inputs, `handle_*`, each taking `now`;
//! - the poller [`poll_output`](Connection::poll_output), called after every
//!   input until it returns [`Output::Wait`].
//!
//! All phase transitions are in the `impl` block marked TRANSITIONS below,
//! which reads top to bottom as the state diagram in ARCHITECTURE.md:
//!
//! ```text
//! Idle ─start→ Connecting ─opened→ [TlsHandshake ─established→] Handshake ─ok→ Ready
//!   any failure (transient) → Backoff ─retry_at→ Connecting ...   (attempts 1..=max)
//!   schedule used up        → Down    ─probe_at→ Connecting ...   (or GaveUp)
//!   permanent failure       → Failed  ─retry_at / handle_retry→ Connecting
//!   handle_shutdown from anywhere → Shutdown
//! ```

mod commands;
mod handshake;

use heapless::{Deque, Vec};

pub use commands::{CommandId, IndeterminateCause, Outcome};

use crate::command::Class;
pub use handshake::{HandshakeStep, ServerVersion};

use crate::backoff::{Backoff, Step};
use crate::config::{Config, OfflinePolicy, Protocol};
use crate::pubsub::PubSubFrame;
use crate::reason::{
    DisconnectReason, FailureClass, HandshakeError, TlsEvidence, TransportError,
    classify_handshake_error, looks_like_tls,
};
use crate::resp::{self, Decoded, Frame};
use crate::time::{Duration, Instant};
use commands::{Bounds, Cancelled, Commands, Full, Matched};

/// Room for the core's own requests (HELLO with a 128-byte user, a 256-byte
/// password and a 64-byte name fits with room to spare).
const TX_CAP: usize = 640;
const EVENT_CAP: usize = 32;
/// The server's own words about the last refused handshake (BUSY, LOADING,
/// NOPERM...), kept for error messages.
const SERVER_MESSAGE_CAP: usize = 160;
/// Most bytes one handshake reply may take. Redis 7's HELLO reply with a
/// few modules loaded is under 1 KiB.
pub const HANDSHAKE_MAX_REPLY: usize = 8 * 1024;

/// The coarse phase, for getters, events and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PhaseKind {
    Idle,
    Connecting,
    TlsHandshake,
    Handshake,
    Ready,
    Backoff,
    Down,
    Failed,
    GaveUp,
    Shutdown,
}

impl PhaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseKind::Idle => "idle",
            PhaseKind::Connecting => "connecting",
            PhaseKind::TlsHandshake => "tls-handshake",
            PhaseKind::Handshake => "handshake",
            PhaseKind::Ready => "ready",
            PhaseKind::Backoff => "backoff",
            PhaseKind::Down => "down",
            PhaseKind::Failed => "failed",
            PhaseKind::GaveUp => "gave-up",
            PhaseKind::Shutdown => "shutdown",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Idle,
    Connecting {
        attempt: u32,
    },
    TlsHandshake {
        attempt: u32,
        /// When the TLS hello went out (`tls_timeout` counts from here).
        started: Instant,
        /// The adapter reported bytes from the server during the handshake.
        received_any: bool,
    },
    Handshake {
        attempt: u32,
        step: HandshakeStep,
        received_any: bool,
        protocol: Protocol,
    },
    Ready {
        since: Instant,
        protocol: Protocol,
    },
    Backoff {
        attempt: u32,
        delay: Duration,
    },
    Down {
        reason: DisconnectReason,
    },
    Failed {
        reason: DisconnectReason,
    },
    GaveUp {
        reason: DisconnectReason,
    },
    Shutdown,
}

impl Phase {
    fn kind(&self) -> PhaseKind {
        match self {
            Phase::Idle => PhaseKind::Idle,
            Phase::Connecting { .. } => PhaseKind::Connecting,
            Phase::TlsHandshake { .. } => PhaseKind::TlsHandshake,
            Phase::Handshake { .. } => PhaseKind::Handshake,
            Phase::Ready { .. } => PhaseKind::Ready,
            Phase::Backoff { .. } => PhaseKind::Backoff,
            Phase::Down { .. } => PhaseKind::Down,
            Phase::Failed { .. } => PhaseKind::Failed,
            Phase::GaveUp { .. } => PhaseKind::GaveUp,
            Phase::Shutdown => PhaseKind::Shutdown,
        }
    }

    fn transport_open(&self) -> bool {
        matches!(
            self,
            Phase::Connecting { .. }
                | Phase::TlsHandshake { .. }
                | Phase::Handshake { .. }
                | Phase::Ready { .. }
        )
    }
}

/// Something the application should know.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event {
    PhaseChanged {
        from: PhaseKind,
        to: PhaseKind,
    },
    /// Opening a transport: attempt 0 is the first connect, then the backoff
    /// attempt number, or the probe.
    Connecting {
        attempt: u32,
        max_attempts: u32,
    },
    /// The transport (TCP, and TLS when on) is up.
    Connected,
    Ready {
        protocol: Protocol,
        server_version: Option<ServerVersion>,
    },
    Disconnected {
        reason: DisconnectReason,
    },
    /// Attempt `attempt` of `max_attempts` after `delay`.
    Reconnecting {
        attempt: u32,
        max_attempts: u32,
        delay: Duration,
    },
    /// The backoff schedule is used up; probing every `probe_interval`.
    Down {
        reason: DisconnectReason,
        probe_interval: Duration,
    },
    /// A permanent failure: retrying with the same settings cannot help.
    /// The next probe is after `retry_in`, or only on `handle_retry`.
    Failed {
        reason: DisconnectReason,
        retry_in: Option<Duration>,
    },
    /// The schedule is used up and the config says give up.
    GaveUp {
        reason: DisconnectReason,
    },
    /// Redis is unavailable: serve from the fallback cache.
    FallbackEngaged {
        reason: DisconnectReason,
    },
    /// Redis is back: stop serving from the fallback cache.
    FallbackReleased,
}

/// What the adapter should do next. Drain with
/// [`poll_output`](Connection::poll_output) until [`Output::Wait`].
#[derive(Debug, PartialEq)]
pub enum Output<'a> {
    /// Open a transport; then call `handle_transport_opened` (after TCP) and,
    /// when `tls`, `handle_tls_established`; or `handle_transport_failed`.
    OpenTransport {
        host: &'a str,
        port: u16,
        tls: bool,
    },
    /// Write these bytes (the core's own requests).
    Transmit(&'a [u8]),
    /// Write the bytes of this submitted command. Keep a command's bytes until
    /// it is resolved: an idempotent command may be written again after a
    /// reconnect.
    TransmitCommand(CommandId),
    /// Close the transport. Nothing needs to be reported back.
    Close,
    /// A command ended without a reply.
    Resolved {
        id: CommandId,
        outcome: Outcome,
    },
    Event(Event),
    /// Nothing more to do: call `handle_timeout` at this instant (or earlier,
    /// harmlessly), or on the next input. `None`: no timer is pending.
    Wait(Option<Instant>),
}

/// What [`Connection::handle_receive`] did with the front of the buffer.
#[derive(Debug, PartialEq)]
pub enum Received<'a> {
    /// The reply to command `id`.
    Reply {
        id: CommandId,
        frame: Frame<'a>,
        consumed: usize,
    },
    /// An out-of-band push (RESP3 `>`; on a
    /// [`subscriber`](crate::Config::subscriber) connection also a RESP2
    /// pub/sub array), not a reply. Pub/sub ones go to
    /// [`Subscriptions::handle_push`](crate::pubsub::Subscriptions::handle_push).
    Push { frame: Frame<'a>, consumed: usize },
    /// The error reply to a pub/sub request (see
    /// [`handle_pubsub_written`](Connection::handle_pubsub_written)): for
    /// [`Subscriptions::handle_refused`](crate::pubsub::Subscriptions::handle_refused).
    /// The connection is fine.
    PubSubRefused { frame: Frame<'a>, consumed: usize },
    /// Bytes the core used itself (handshake, PING, the reply to a command
    /// already resolved as timed out).
    Internal { consumed: usize },
    /// Not a whole frame yet. `needed`: total buffer length that will be
    /// enough, when known.
    Incomplete { needed: Option<usize> },
    /// The bytes broke the connection (invalid RESP, a limit, a TLS record on
    /// plaintext, a stale transport): the core closed it. Drop the buffer.
    Discard,
}

/// A command to submit: the adapter keeps its encoded bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Submit {
    /// Length of the encoded command, for the byte bounds.
    pub len: usize,
    /// After this the command is resolved (timed out, not applied, or
    /// indeterminate when already written).
    pub deadline: Instant,
    /// What the command is (from [`crate::command::classify`] or a constant
    /// such as [`Class::CACHED_READ`]): whether it may be written again after
    /// a reconnect, answered from the fallback cache, or may block.
    pub class: Class,
}

/// Why a submit was refused at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SubmitError {
    /// The queue is at its bound (count or bytes): back off.
    Backpressure {
        queued: usize,
        queued_bytes: usize,
    },
    /// Redis is unavailable and the offline policy says fail at once
    /// (fail-fast, or fallback for anything the cache cannot answer).
    /// `reason`: why, once an attempt has failed. Not applied.
    NotReady {
        phase: PhaseKind,
        reason: Option<DisconnectReason>,
    },
    /// Failed permanently or gave up: the reason says what to change.
    Down {
        reason: DisconnectReason,
    },
    /// This one command is larger than the byte bound that applies (the
    /// offline queue's while not ready, the in-flight one while ready): it
    /// could never be taken, however empty the queue.
    TooLarge {
        len: usize,
        max: usize,
        offline: bool,
    },
    Shutdown,
}

impl core::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SubmitError::Backpressure {
                queued,
                queued_bytes,
            } => {
                write!(
                    f,
                    "command queue full ({queued} commands, {queued_bytes} bytes): slow down"
                )
            }
            SubmitError::NotReady {
                phase,
                reason: Some(reason),
            } => write!(f, "connection not ready ({}): {reason}", phase.as_str()),
            SubmitError::NotReady {
                phase,
                reason: None,
            } => write!(f, "connection not ready ({})", phase.as_str()),
            SubmitError::Down { reason } => write!(f, "connection down: {reason}"),
            SubmitError::TooLarge {
                len,
                max,
                offline: true,
            } => write!(
                f,
                "command of {len} bytes is larger than the offline queue's bound of {max} bytes: raise queue.max_bytes"
            ),
            SubmitError::TooLarge {
                len,
                max,
                offline: false,
            } => write!(
                f,
                "command of {len} bytes is larger than the in-flight bound of {max} bytes: raise queue.max_in_flight_bytes"
            ),
            SubmitError::Shutdown => f.write_str("connection shut down"),
        }
    }
}

/// Counters and measurements, for health reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    pub connects: u64,
    pub ready_count: u64,
    pub disconnects: u64,
    pub commands_submitted: u64,
    pub replies: u64,
    pub timed_out: u64,
    pub indeterminate: u64,
    pub not_applied: u64,
    pub fallback: u64,
    pub cancelled: u64,
    pub retried: u64,
    pub pings_sent: u64,
    pub last_ping_rtt: Option<Duration>,
    pub events_dropped: u64,
}

#[derive(Clone, Copy)]
enum Timer {
    /// Connect/TLS/handshake deadline, or the next attempt in Backoff/Down/Failed.
    Phase,
    /// Next keepalive PING.
    Ping,
    /// The attempt count resets when this passes while ready.
    Stable,
    /// End of a `ping_timeout` window of a reply still arriving: fewer than
    /// `min_reply_rate` bytes in it and the connection is cut.
    ReplyRate,
}
const TIMERS: usize = 4;

/// A reply being received, seen through the growth of the buffer the
/// adapter hands to [`Connection::handle_receive`].
#[derive(Clone, Copy, Debug)]
struct Partial {
    /// `buf.len()` at the last `Incomplete`: growth beyond it is progress.
    len: usize,
    /// Bytes that arrived since the current `min_reply_rate` window began.
    window_bytes: usize,
}

/// One connection. `N` bounds the commands tracked at once (queued, in
/// flight and resolved-but-not-polled), and so the core's memory:
/// about 48 bytes per slot.
pub struct Connection<const N: usize> {
    config: Config,
    phase: Phase,
    backoff: Backoff,
    timers: [Option<Instant>; TIMERS],
    commands: Commands<N>,
    /// The last `now` seen: time going backwards is treated as standing still.
    now: Instant,
    /// When a reply last completed or grew (or the connection became ready):
    /// what liveness counts from, so a large reply on a slow link is alive.
    last_progress: Instant,
    /// The frame at the front of the receive buffer, while incomplete (ready
    /// only; the handshake has its own timeout and bound).
    partial: Option<Partial>,
    /// Where the decoder stopped in that frame, so that each byte of a
    /// reply arriving in pieces is validated once (linear time however it
    /// is chunked). Reset with `partial`.
    resume: resp::Resume,
    /// Why Redis is unavailable: set at the first failure, updated by every
    /// later one, cleared when ready. `Some` = the fallback is engaged.
    outage: Option<DisconnectReason>,
    /// The command last handed out by `TransmitCommand`, until the next
    /// poll: it may still be withdrawn unsent by `handle_cancel`.
    just_polled: Option<CommandId>,
    server_message: heapless::String<SERVER_MESSAGE_CAP>,
    /// The Down event is sent once per outage, not once per probe.
    down_announced: bool,
    last_reason: Option<DisconnectReason>,
    server_version: Option<ServerVersion>,
    /// Closes and opens waiting to be polled, in order, ahead of everything else.
    close_pending: bool,
    open_pending: bool,
    tx: TxBuf,
    /// A PING is in `tx`: its slot joins the FIFO when `tx` is polled.
    ping_in_tx: bool,
    events: Deque<Event, EVENT_CAP>,
    stats: Stats,
}

impl<const N: usize> Connection<N> {
    pub fn new(config: Config) -> Self {
        Connection {
            backoff: Backoff::new(config.backoff),
            config,
            phase: Phase::Idle,
            timers: [None; TIMERS],
            commands: Commands::new(),
            now: Instant::ZERO,
            last_progress: Instant::ZERO,
            partial: None,
            resume: resp::Resume::new(),
            outage: None,
            just_polled: None,
            server_message: heapless::String::new(),
            down_announced: false,
            last_reason: None,
            server_version: None,
            close_pending: false,
            open_pending: false,
            tx: TxBuf {
                bytes: Vec::new(),
                pending: false,
            },
            ping_in_tx: false,
            events: Deque::new(),
            stats: Stats::default(),
        }
    }

    // ----- getters -------------------------------------------------------

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn phase(&self) -> PhaseKind {
        self.phase.kind()
    }

    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready { .. })
    }

    /// Whether the application should serve from its fallback cache: from the
    /// first failed attempt until the connection is ready again.
    pub fn fallback_active(&self) -> bool {
        self.outage.is_some()
    }

    /// Why Redis is unavailable right now (`None` while ready, and before the
    /// first attempt has failed).
    pub fn outage_reason(&self) -> Option<DisconnectReason> {
        self.outage
    }

    /// What the server itself said when it last refused the handshake
    /// (e.g. `BUSY Redis is busy running a script...`), printable ASCII,
    /// cut at 160 bytes.
    pub fn server_message(&self) -> Option<&str> {
        (!self.server_message.is_empty()).then_some(self.server_message.as_str())
    }

    /// How many more commands the connection can take now (its slots; the
    /// byte bounds are checked at submit). An adapter takes no more
    /// submissions than this, so callers wait instead of failing.
    pub fn room(&self) -> usize {
        self.commands.room()
    }

    /// The reason of the last disconnect or failed attempt.
    pub fn last_reason(&self) -> Option<DisconnectReason> {
        self.last_reason
    }

    /// Reconnect attempts made on the current backoff schedule.
    pub fn attempts(&self) -> u32 {
        self.backoff.attempts()
    }

    pub fn server_version(&self) -> Option<ServerVersion> {
        self.server_version
    }

    /// The protocol negotiated, once ready.
    pub fn protocol(&self) -> Option<Protocol> {
        match self.phase {
            Phase::Ready { protocol, .. } => Some(protocol),
            _ => None,
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn queued(&self) -> usize {
        self.commands.queued()
    }

    pub fn queued_bytes(&self) -> usize {
        self.commands.queued_bytes()
    }

    pub fn in_flight(&self) -> usize {
        self.commands.in_flight()
    }

    pub fn in_flight_bytes(&self) -> usize {
        self.commands.in_flight_bytes()
    }

    /// When to call `handle_timeout` next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.timers.iter().flatten().copied().min();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.commands.next_deadline());
        consider(self.dead_at());
        next
    }

    // ----- inputs --------------------------------------------------------

    /// Starts connecting (from Idle; elsewhere a no-op).
    pub fn handle_start(&mut self, now: Instant) {
        let now = self.tick(now);
        if matches!(self.phase, Phase::Idle) {
            self.open(now, 0);
        }
    }

    /// Retry now: after a permanent failure, a give-up, or to cut a backoff
    /// short. A no-op while connecting or ready.
    pub fn handle_retry(&mut self, now: Instant) {
        let now = self.tick(now);
        if matches!(
            self.phase,
            Phase::Backoff { .. }
                | Phase::Down { .. }
                | Phase::Failed { .. }
                | Phase::GaveUp { .. }
        ) {
            self.backoff.reset();
            self.open(now, 0);
        }
    }

    /// The transport (TCP) is connected.
    pub fn handle_transport_opened(&mut self, now: Instant) {
        let now = self.tick(now);
        if let Phase::Connecting { attempt } = self.phase {
            self.stats.connects += 1;
            if self.config.tls {
                self.set_phase(Phase::TlsHandshake {
                    attempt,
                    started: now,
                    received_any: false,
                });
                let silence = self
                    .config
                    .tls_silence_timeout
                    .unwrap_or(self.config.tls_timeout);
                self.set_timer(Timer::Phase, now + silence.min(self.config.tls_timeout));
            } else {
                self.transport_ready(now, attempt);
            }
        }
    }

    /// The TLS session is established.
    pub fn handle_tls_established(&mut self, now: Instant) {
        let now = self.tick(now);
        if let Phase::TlsHandshake { attempt, .. } = self.phase {
            self.transport_ready(now, attempt);
        }
    }

    /// The TLS stack read bytes from the server during its handshake (an
    /// adapter that can see them reports it, and `tls_silence_timeout`
    /// applies; one that cannot leaves that setting off). Elsewhere a no-op.
    pub fn handle_tls_bytes_received(&mut self, now: Instant) {
        let _ = self.tick(now);
        if let Phase::TlsHandshake { received_any, .. } = &mut self.phase {
            *received_any = true;
        }
    }

    /// The transport failed or was closed by the peer, in any phase.
    pub fn handle_transport_failed(&mut self, now: Instant, error: TransportError) {
        let now = self.tick(now);
        let reason = match (self.phase, error) {
            (_, TransportError::TlsNotSpoken) => DisconnectReason::TlsNotSpoken,
            (_, TransportError::TlsCertificate) => DisconnectReason::TlsCertificate,
            // A plaintext handshake closed before a single byte came back:
            // what a TLS-only server does (the seed's failure).
            (
                Phase::Handshake {
                    received_any: false,
                    ..
                },
                TransportError::Closed | TransportError::Reset,
            ) if !self.config.tls => DisconnectReason::TlsRequired(TlsEvidence::ClosedWithoutReply),
            (_, e) => DisconnectReason::Transport(e),
        };
        if self.phase.transport_open() {
            // The transport is already gone; no Close needed.
            self.fail(now, reason, false);
        }
    }

    /// Bytes arrived. Processes at most one frame from the front of `buf`;
    /// call again with the rest while it returns something other than
    /// `Incomplete` or `Discard`.
    ///
    /// `buf` is the whole unconsumed receive buffer: it starts at a frame and,
    /// after `Incomplete`, the next call passes the same bytes with more
    /// appended. That growth is how the core sees a large reply arriving:
    /// it counts as liveness (no `PingTimeout` while bytes keep coming), at
    /// least `min_reply_rate` bytes must come per `ping_timeout`
    /// ([`DisconnectReason::SlowReply`] otherwise), and a command whose reply
    /// has begun to arrive is never written again if the connection is lost.
    pub fn handle_receive<'a>(&mut self, now: Instant, buf: &'a [u8]) -> Received<'a> {
        let now = self.tick(now);
        if buf.is_empty() {
            return Received::Incomplete { needed: None };
        }
        let handshaking = match self.phase {
            Phase::Handshake { received_any, .. } => Some(received_any),
            Phase::Ready { .. } => None,
            _ => return Received::Discard,
        };
        if handshaking == Some(false) && !self.config.tls {
            if looks_like_tls(buf) {
                self.fail(
                    now,
                    DisconnectReason::TlsRequired(TlsEvidence::TlsRecord),
                    true,
                );
                return Received::Discard;
            }
            if matches!(buf, [0x15 | 0x16]) {
                return Received::Incomplete { needed: Some(2) };
            }
        }
        let decoded = resp::decode_resume(buf, &self.config.resp_limits, &mut self.resume);
        let (frame, consumed) = match decoded {
            Ok(Decoded::Frame {
                frame, consumed, ..
            }) => (frame, consumed),
            Ok(Decoded::Incomplete { needed }) => {
                // The handshake's replies are a few hundred bytes (a HELLO
                // map): a server that sends more is not buffered up to
                // max_frame_len before it is judged.
                let max = match handshaking {
                    Some(_) => HANDSHAKE_MAX_REPLY.min(self.config.max_frame_len),
                    None => self.config.max_frame_len,
                };
                if buf.len() >= max {
                    let reason =
                        DisconnectReason::Protocol(resp::DecodeError::FrameTooLong { max });
                    self.fail(now, reason, true);
                    return Received::Discard;
                }
                match &mut self.phase {
                    Phase::Handshake { received_any, .. } => *received_any = true,
                    _ => self.reply_progress(now, buf),
                }
                return Received::Incomplete { needed };
            }
            Err(e) => {
                self.fail(now, DisconnectReason::Protocol(e), true);
                return Received::Discard;
            }
        };
        // `decode_resume` has reset `resume` itself on returning the frame.
        self.last_progress = now;
        self.partial = None;
        self.timers[Timer::ReplyRate as usize] = None;
        if handshaking.is_some() {
            self.handshake_reply(now, &frame);
            return Received::Internal { consumed };
        }
        let pubsub = match frame {
            Frame::Push(_) => Some(PubSubFrame::parse(&frame)),
            Frame::Array(_) if self.config.subscriber => PubSubFrame::parse(&frame).map(Some),
            _ => None,
        };
        if let Some(parsed) = pubsub {
            if parsed.is_some_and(|p| p.is_confirmation()) {
                self.commands.pubsub_confirmed();
            }
            return Received::Push { frame, consumed };
        }
        if self.commands.pubsub_in_front() && frame.error_text().is_none() {
            // A pub/sub request is answered by confirmations or an error,
            // never by a reply: the stream is not what we think it is.
            self.fail(now, DisconnectReason::UnexpectedReply, true);
            return Received::Discard;
        }
        match self.commands.pop_reply() {
            Some(Matched::Command(id)) => {
                self.stats.replies += 1;
                Received::Reply {
                    id,
                    frame,
                    consumed,
                }
            }
            Some(Matched::Ping { sent_at }) => {
                self.stats.last_ping_rtt = Some(now - sent_at);
                self.arm_ping(now);
                Received::Internal { consumed }
            }
            Some(Matched::Abandoned) => Received::Internal { consumed },
            Some(Matched::PubSub) => Received::PubSubRefused { frame, consumed },
            None => {
                self.fail(now, DisconnectReason::UnexpectedReply, true);
                Received::Discard
            }
        }
    }

    /// Submits a command whose encoded bytes the adapter keeps, and decides
    /// its fate (the outage policy; every branch is here):
    ///
    /// | phase | policy | command | decision |
    /// |---|---|---|---|
    /// | shutdown | any | any | `Err(Shutdown)` |
    /// | ready | any | any | queued and written at once; bounded by slots and `max_in_flight_bytes` |
    /// | failed, gave up | fallback | fallback read | [`Outcome::Fallback`] at once |
    /// | failed, gave up | any | other | `Err(Down)`, with the reason |
    /// | not ready, no failure yet | fallback, queue | any | offline queue (waits for the first connect) |
    /// | not ready, a failure known | fallback | fallback read | [`Outcome::Fallback`] at once |
    /// | not ready, a failure known | fallback | other | `Err(NotReady)`, with the reason: not applied |
    /// | not ready | queue | any | offline queue until ready or its deadline |
    /// | not ready | fail-fast | any | `Err(NotReady)` |
    ///
    /// Queued commands are written when ready (via
    /// [`Output::TransmitCommand`]); see [`Outcome`] for how the rest end.
    pub fn handle_submit(
        &mut self,
        now: Instant,
        submit: Submit,
    ) -> Result<CommandId, SubmitError> {
        let _ = self.tick(now);
        let policy = self.config.queue.offline;
        let fallback_read = submit.class.fallback_read() && policy == OfflinePolicy::Fallback;
        let answer_from_cache = |this: &mut Self, reason| {
            this.commands
                .resolve_at_once(Outcome::Fallback(reason))
                .map_err(|_| this.backpressure())
        };
        match self.phase {
            Phase::Shutdown => return Err(SubmitError::Shutdown),
            Phase::Failed { reason } | Phase::GaveUp { reason } => {
                if fallback_read {
                    return answer_from_cache(self, reason);
                }
                return Err(SubmitError::Down { reason });
            }
            Phase::Ready { .. } => {}
            _ => match (policy, self.outage) {
                (OfflinePolicy::FailFast, reason) => {
                    return Err(SubmitError::NotReady {
                        phase: self.phase.kind(),
                        reason,
                    });
                }
                (OfflinePolicy::Fallback, Some(reason)) if fallback_read => {
                    return answer_from_cache(self, reason);
                }
                (OfflinePolicy::Fallback, Some(reason)) => {
                    return Err(SubmitError::NotReady {
                        phase: self.phase.kind(),
                        reason: Some(reason),
                    });
                }
                (OfflinePolicy::Fallback | OfflinePolicy::Queue, _) => {}
            },
        }
        let queue = self.config.queue;
        let (bounds, in_use, offline) = if self.is_ready() {
            let bounds = Bounds {
                max_commands: usize::MAX,
                max_bytes: queue.max_in_flight_bytes,
            };
            let in_use = self.commands.queued_bytes() + self.commands.in_flight_bytes();
            (bounds, in_use, false)
        } else {
            let bounds = Bounds {
                max_commands: queue.max_commands,
                max_bytes: queue.max_bytes,
            };
            (bounds, self.commands.queued_bytes(), true)
        };
        if submit.len > bounds.max_bytes {
            return Err(SubmitError::TooLarge {
                len: submit.len,
                max: bounds.max_bytes,
                offline,
            });
        }
        match self
            .commands
            .push(submit.len, submit.deadline, submit.class, bounds, in_use)
        {
            Ok(id) => {
                self.stats.commands_submitted += 1;
                Ok(id)
            }
            Err(Full::Count | Full::Bytes) => Err(self.backpressure()),
        }
    }

    /// The adapter wrote a pub/sub request from
    /// [`Subscriptions::poll_request`](crate::pubsub::Subscriptions::poll_request)
    /// that the server answers with `confirmations` pushes (or one error
    /// reply). A placeholder keeps the reply FIFO aligned and counts for
    /// liveness like any request. `false`: not ready, or no slot free (check
    /// [`room`](Self::room) before polling a request); then do not write it.
    pub fn handle_pubsub_written(&mut self, now: Instant, confirmations: u16) -> bool {
        let now = self.tick(now);
        if !matches!(self.phase, Phase::Ready { .. }) {
            return false;
        }
        self.commands.push_pubsub(now, confirmations)
    }

    /// The node to talk to is now `host:port` (Sentinel named a new master,
    /// or said the current one is not): an open connection to the old one
    /// is closed at once ([`DisconnectReason::MasterSwitched`]; commands in
    /// flight end as after any loss: resend-safe ones are written again on
    /// the new connection, others are indeterminate, queued ones stay
    /// queued), and a connection waiting out a backoff connects now. The
    /// same address again also reconnects (the node was demoted in place).
    /// In `Idle` it only sets the address for `handle_start`. `false`: the
    /// host is longer than the config holds; nothing changed.
    pub fn handle_retarget(&mut self, now: Instant, host: &str, port: u16) -> bool {
        let now = self.tick(now);
        let mut new_host = heapless::String::new();
        if new_host.push_str(host).is_err() {
            return false;
        }
        self.config.host = new_host;
        self.config.port = port;
        match self.phase {
            Phase::Idle | Phase::Shutdown => {}
            Phase::Connecting { .. }
            | Phase::TlsHandshake { .. }
            | Phase::Handshake { .. }
            | Phase::Ready { .. } => self.reopen(now, DisconnectReason::MasterSwitched),
            Phase::Backoff { .. }
            | Phase::Down { .. }
            | Phase::Failed { .. }
            | Phase::GaveUp { .. } => {
                self.backoff.reset();
                self.open(now, 0);
            }
        }
        true
    }

    /// The caller of command `id` is gone. Not written yet (queued, or the
    /// command just handed out by [`Output::TransmitCommand`] and not
    /// written: call this before polling again): removed, never sent,
    /// resolved [`Outcome::Cancelled`]. Written: its reply will be
    /// discarded; if it is a blocking command, which could still take data
    /// (BLPOP), the connection is closed at once and reopened
    /// ([`DisconnectReason::Abandoned`]). Unknown or resolved ids: no-op.
    pub fn handle_cancel(&mut self, now: Instant, id: CommandId) {
        let now = self.tick(now);
        let just_polled = self.just_polled.take() == Some(id);
        match self.commands.cancel(id, just_polled) {
            Cancelled::Written { blocking: true } if self.is_ready() => {
                self.reopen(now, DisconnectReason::Abandoned)
            }
            Cancelled::Unsent | Cancelled::Written { .. } | Cancelled::NotFound => {}
        }
    }

    /// Timers: deadlines, retries, pings, liveness. Early or repeated calls
    /// are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.tick(now);
        // Silence first: a window without a single byte is a dead
        // connection, not a slow one.
        if self.dead_at().is_some_and(|d| d <= now) {
            self.fail(now, DisconnectReason::PingTimeout, true);
        }
        if self.timers[Timer::ReplyRate as usize].is_some_and(|t| t <= now) {
            self.timers[Timer::ReplyRate as usize] = None;
            self.reply_window_ended(now);
        }
        if self.timers[Timer::Stable as usize].is_some_and(|t| t <= now) {
            self.timers[Timer::Stable as usize] = None;
            self.backoff.reset();
        }
        if self.timers[Timer::Ping as usize].is_some_and(|t| t <= now) {
            self.timers[Timer::Ping as usize] = None;
            self.send_ping(now);
        }
        if self.timers[Timer::Phase as usize].is_some_and(|t| t <= now) {
            self.timers[Timer::Phase as usize] = None;
            self.phase_timer_fired(now);
        }
        // Deadlines last, so a command out of time learns any diagnosis the
        // timers above just made (an adapter may call this late).
        if self.commands.next_deadline().is_some_and(|d| d <= now) {
            let policy = self.config.queue.offline;
            let blocking_abandoned = self.commands.expire(now, self.outage, policy);
            if blocking_abandoned && self.is_ready() {
                self.reopen(now, DisconnectReason::Abandoned);
            }
        }
    }

    /// Closes the connection for good. Queued commands are resolved as not
    /// sent; written ones as indeterminate.
    pub fn handle_shutdown(&mut self, now: Instant) {
        let _ = self.tick(now);
        if matches!(self.phase, Phase::Shutdown) {
            return;
        }
        if self.phase.transport_open() {
            self.close_pending = true;
        }
        self.open_pending = false;
        self.partial = None;
        self.resume.reset();
        let policy = self.config.queue.offline;
        self.commands
            .fail_queued(DisconnectReason::Shutdown, policy, false);
        self.commands
            .connection_lost(DisconnectReason::Shutdown, false, policy);
        self.timers = [None; TIMERS];
        self.set_phase(Phase::Shutdown);
    }

    // ----- output --------------------------------------------------------

    /// The next thing to do. Call after every input until it returns
    /// [`Output::Wait`].
    pub fn poll_output(&mut self) -> Output<'_> {
        self.just_polled = None;
        if self.close_pending {
            self.close_pending = false;
            return Output::Close;
        }
        if let Some(event) = self.events.pop_front() {
            return Output::Event(event);
        }
        if let Some((id, outcome)) = self.commands.pop_resolution() {
            match outcome {
                Outcome::TimedOut => self.stats.timed_out += 1,
                Outcome::NotApplied(_) => self.stats.not_applied += 1,
                Outcome::Fallback(_) => self.stats.fallback += 1,
                Outcome::Indeterminate(_) => self.stats.indeterminate += 1,
                Outcome::Cancelled => self.stats.cancelled += 1,
            }
            return Output::Resolved { id, outcome };
        }
        if self.open_pending {
            self.open_pending = false;
            return Output::OpenTransport {
                host: &self.config.host,
                port: self.config.port,
                tls: self.config.tls,
            };
        }
        if self.tx.pending {
            self.tx.pending = false;
            if self.ping_in_tx {
                self.ping_in_tx = false;
                self.commands.push_ping(self.now);
            }
            return Output::Transmit(&self.tx.bytes);
        }
        if self.is_ready()
            && let Some(id) = self.commands.next_to_write(self.now)
        {
            self.just_polled = Some(id);
            return Output::TransmitCommand(id);
        }
        Output::Wait(self.poll_timeout())
    }
}

// ===== TRANSITIONS ==========================================================
// Every phase change happens in this block.
impl<const N: usize> Connection<N> {
    /// → Connecting: ask for a transport.
    fn open(&mut self, now: Instant, attempt: u32) {
        self.partial = None;
        self.resume.reset();
        self.set_phase(Phase::Connecting { attempt });
        self.open_pending = true;
        self.set_timer(Timer::Phase, now + self.config.connect_timeout);
        self.push_event(Event::Connecting {
            attempt,
            max_attempts: self.backoff.max_attempts(),
        });
    }

    /// Transport (and TLS) up → Handshake: send HELLO.
    fn transport_ready(&mut self, now: Instant, attempt: u32) {
        self.push_event(Event::Connected);
        let protocol = self.config.protocol;
        self.set_phase(Phase::Handshake {
            attempt,
            step: HandshakeStep::Hello,
            received_any: false,
            protocol,
        });
        self.set_timer(Timer::Phase, now + self.config.handshake_timeout);
        self.send_step(now, HandshakeStep::Hello);
    }

    /// A handshake reply: next step, fallback to RESP2, Ready, or failure.
    fn handshake_reply(&mut self, now: Instant, frame: &Frame<'_>) {
        let Phase::Handshake { attempt, step, .. } = self.phase else {
            return;
        };
        let next = if let Some(text) = frame.error_text() {
            self.keep_server_message(text);
            match (step, classify_handshake_error(text)) {
                (HandshakeStep::Hello, HandshakeError::HelloUnsupported) => {
                    // Redis < 6: AUTH + RESP2.
                    self.phase = Phase::Handshake {
                        attempt,
                        step,
                        received_any: true,
                        protocol: Protocol::Resp2,
                    };
                    handshake::fallback_step(&self.config)
                }
                (_, HandshakeError::Fatal(reason)) => return self.fail(now, reason, true),
                (_, HandshakeError::HelloUnsupported) => {
                    return self.fail(now, DisconnectReason::HandshakeRejected, true);
                }
            }
        } else {
            if step == HandshakeStep::Hello {
                let (version, proto) = handshake::parse_hello(frame);
                self.server_version = version;
                let protocol = if proto == Some(3) {
                    Protocol::Resp3
                } else {
                    Protocol::Resp2
                };
                self.phase = Phase::Handshake {
                    attempt,
                    step,
                    received_any: true,
                    protocol,
                };
                // HELLO already authenticated and named the client.
                handshake::next_step(HandshakeStep::SetName, &self.config)
            } else if step == HandshakeStep::Role && !handshake::role_is_master(frame) {
                return self.fail(now, DisconnectReason::NotMaster, true);
            } else {
                handshake::next_step(step, &self.config)
            }
        };
        match next {
            Some(step) => {
                if let Phase::Handshake { step: s, .. } = &mut self.phase {
                    *s = step;
                }
                self.send_step(now, step);
            }
            None => self.become_ready(now),
        }
    }

    /// Handshake done → Ready.
    fn become_ready(&mut self, now: Instant) {
        let protocol = match self.phase {
            Phase::Handshake { protocol, .. } => protocol,
            _ => self.config.protocol,
        };
        self.set_phase(Phase::Ready {
            since: now,
            protocol,
        });
        self.stats.ready_count += 1;
        self.timers[Timer::Phase as usize] = None;
        self.set_timer(Timer::Stable, now + self.config.backoff.reset_after);
        self.last_progress = now;
        self.arm_ping(now);
        self.down_announced = false;
        self.push_event(Event::Ready {
            protocol,
            server_version: self.server_version,
        });
        self.server_message.clear();
        if self.outage.take().is_some() {
            self.push_event(Event::FallbackReleased);
        }
    }

    /// Any failure of an open or opening transport: Close (when we must),
    /// resolve what was in flight, then schedule the next attempt according
    /// to the failure's class.
    fn fail(&mut self, now: Instant, reason: DisconnectReason, close: bool) {
        if !self.phase.transport_open() {
            return;
        }
        let was_ready = self.is_ready();
        self.close_pending |= close;
        self.partial = None;
        self.resume.reset();
        self.tx.pending = false;
        self.ping_in_tx = false;
        self.last_reason = Some(reason);
        self.stats.disconnects += 1;
        self.timers = [None; TIMERS];
        self.push_event(Event::Disconnected { reason });
        let permanent = reason.class() == FailureClass::Permanent;
        let policy = self.config.queue.offline;
        let engaged = self.outage.replace(reason).is_none();
        // What was never written learns the diagnosis now, not at its
        // deadline (the policy table is at `handle_submit`). Resend-safe
        // commands lost in flight keep their chance on the next connection.
        let fail_unwritten = match policy {
            OfflinePolicy::Fallback => true,
            OfflinePolicy::FailFast => was_ready,
            OfflinePolicy::Queue => false,
        };
        let resend = !permanent && self.config.queue.resend_lost;
        if permanent || fail_unwritten {
            self.commands.fail_queued(reason, policy, resend);
        }
        let before = self.commands.queued();
        // After a permanent failure nothing will be retried soon: what was
        // written is indeterminate unless it was a read.
        self.commands.connection_lost(reason, resend, policy);
        self.stats.retried += self.commands.queued().saturating_sub(before) as u64;
        if engaged {
            self.push_event(Event::FallbackEngaged { reason });
        }
        if permanent {
            let retry_in = self.config.permanent_retry;
            if let Some(delay) = retry_in {
                self.set_timer(Timer::Phase, now + delay);
            }
            self.set_phase(Phase::Failed { reason });
            self.push_event(Event::Failed { reason, retry_in });
            return;
        }
        match self.backoff.next_step() {
            Step::Retry { attempt, delay } => {
                self.set_timer(Timer::Phase, now + delay);
                self.set_phase(Phase::Backoff { attempt, delay });
                self.push_event(Event::Reconnecting {
                    attempt,
                    max_attempts: self.backoff.max_attempts(),
                    delay,
                });
            }
            Step::Probe { delay } => {
                self.set_timer(Timer::Phase, now + delay);
                if !self.down_announced {
                    self.down_announced = true;
                    self.push_event(Event::Down {
                        reason,
                        probe_interval: self.config.backoff.probe_interval,
                    });
                }
                self.set_phase(Phase::Down { reason });
            }
            Step::GiveUp => {
                self.commands.fail_queued(reason, policy, false);
                self.set_phase(Phase::GaveUp { reason });
                self.push_event(Event::GaveUp { reason });
            }
        }
    }

    /// The phase timer: a connect/TLS/handshake deadline, or time for the
    /// next attempt.
    fn phase_timer_fired(&mut self, now: Instant) {
        match self.phase {
            Phase::Connecting { .. } => self.fail(now, DisconnectReason::ConnectTimeout, true),
            Phase::TlsHandshake {
                started,
                received_any,
                ..
            } => {
                let deadline = started + self.config.tls_timeout;
                if now >= deadline {
                    self.fail(now, DisconnectReason::TlsTimeout, true);
                } else if !received_any {
                    // Not a byte in answer to the hello: a plaintext Redis
                    // reads it as the start of an inline command and waits.
                    self.fail(now, DisconnectReason::TlsUnanswered, true);
                } else {
                    self.set_timer(Timer::Phase, deadline);
                }
            }
            Phase::Handshake { received_any, .. } => self.fail(
                now,
                DisconnectReason::HandshakeTimeout { received_any },
                true,
            ),
            Phase::Backoff { attempt, .. } => self.open(now, attempt),
            Phase::Down { .. } => self.open(now, self.backoff.attempts() + 1),
            Phase::Failed { .. } => self.open(now, 0),
            Phase::Idle | Phase::Ready { .. } | Phase::GaveUp { .. } | Phase::Shutdown => {}
        }
    }

    /// Ready → Connecting at once, without backoff or fallback: a written
    /// blocking command was abandoned, and only closing its connection stops
    /// it from taking data (a BLPOP's job) for a caller who is gone. Other
    /// commands in flight are treated as on any lost connection.
    fn reopen(&mut self, now: Instant, reason: DisconnectReason) {
        if !self.phase.transport_open() {
            return;
        }
        self.close_pending = true;
        self.tx.pending = false;
        self.ping_in_tx = false;
        self.stats.disconnects += 1;
        self.timers = [None; TIMERS];
        self.push_event(Event::Disconnected { reason });
        let policy = self.config.queue.offline;
        let resend = self.config.queue.resend_lost;
        self.commands.connection_lost(reason, resend, policy);
        self.open(now, 0);
    }
}

// ----- helpers that change no phase ------------------------------------------
impl<const N: usize> Connection<N> {
    fn tick(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    fn set_phase(&mut self, phase: Phase) {
        let (from, to) = (self.phase.kind(), phase.kind());
        self.phase = phase;
        if from != to {
            self.push_event(Event::PhaseChanged { from, to });
        }
    }

    fn backpressure(&self) -> SubmitError {
        SubmitError::Backpressure {
            queued: self.commands.queued(),
            queued_bytes: self.commands.queued_bytes(),
        }
    }

    fn keep_server_message(&mut self, text: &[u8]) {
        self.server_message.clear();
        for &b in text.iter().take(SERVER_MESSAGE_CAP) {
            let c = if (b' '..=b'~').contains(&b) {
                b as char
            } else {
                '?'
            };
            // Bounded by the `take` above.
            let _ = self.server_message.push(c);
        }
    }

    fn set_timer(&mut self, timer: Timer, at: Instant) {
        self.timers[timer as usize] = Some(at);
    }

    fn push_event(&mut self, event: Event) {
        if self.events.is_full() {
            // The adapter drains after every input, so this means it does not;
            // keep the newest and count the loss.
            let _ = self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        let _ = self.events.push_back(event);
    }

    fn send_step(&mut self, now: Instant, step: HandshakeStep) {
        if !self
            .tx
            .push(|out| handshake::encode_step(step, &self.config, out))
        {
            // Config capacities guarantee the fit; failing loudly beats hanging.
            self.fail(now, DisconnectReason::HandshakeRejected, true);
        }
    }

    /// The ping timer fired: PING if nothing was received for
    /// `ping_interval` and nothing is outstanding (requests in flight already
    /// prove or disprove liveness, through `dead_at`).
    fn send_ping(&mut self, now: Instant) {
        if !self.is_ready() {
            return;
        }
        let due = self.last_progress + self.config.ping_interval;
        if due > now {
            // Something arrived since the timer was armed.
            self.set_timer(Timer::Ping, due);
            return;
        }
        if self.commands.in_flight() > 0 || self.ping_in_tx {
            self.arm_ping(now);
            return;
        }
        if self.tx.push(resp::encode::ping) {
            self.ping_in_tx = true;
            self.stats.pings_sent += 1;
        }
    }

    fn arm_ping(&mut self, now: Instant) {
        if self.is_ready() && !self.commands.ping_outstanding() {
            self.set_timer(Timer::Ping, now + self.config.ping_interval);
        }
    }

    /// When the connection counts as dead: the oldest unanswered request (or
    /// the last progress received, if later) plus `ping_timeout`. Steady
    /// writes do not postpone it; replies, whole or arriving, do.
    fn dead_at(&self) -> Option<Instant> {
        if !self.is_ready() {
            return None;
        }
        let oldest = self.commands.oldest_written_at()?;
        Some(oldest.max(self.last_progress) + self.config.ping_timeout)
    }

    /// Ready, and `buf` holds the start of a frame not yet whole. The adapter
    /// hands over the whole unconsumed buffer, which only grows until the
    /// frame completes: growth since the last look is progress. It keeps the
    /// connection alive and counts towards `min_reply_rate`. A buffer that
    /// shrank (an adapter that dropped bytes) is taken as it is, not as
    /// progress.
    fn reply_progress(&mut self, now: Instant, buf: &[u8]) {
        match &mut self.partial {
            Some(partial) => {
                let grown = buf.len().saturating_sub(partial.len);
                partial.len = buf.len();
                partial.window_bytes = partial.window_bytes.saturating_add(grown);
                if grown == 0 {
                    return;
                }
            }
            None => {
                // Replies come in order, so this one is the oldest request's
                // (unless it is a push), which has therefore run.
                if buf.first() != Some(&b'>') {
                    self.commands.reply_started();
                }
                if self.config.min_reply_rate > 0 {
                    self.set_timer(Timer::ReplyRate, now + self.config.ping_timeout);
                }
                self.partial = Some(Partial {
                    len: buf.len(),
                    window_bytes: 0,
                });
            }
        }
        self.last_progress = now;
    }

    /// A `ping_timeout` window of a reply still arriving has ended: too few
    /// bytes in it cuts the connection, enough starts the next window. (A
    /// window with no bytes at all ended as `PingTimeout` already, unless a
    /// blocking command suspends liveness.)
    fn reply_window_ended(&mut self, now: Instant) {
        let Some(partial) = &mut self.partial else {
            return;
        };
        let floor = usize::try_from(self.config.min_reply_rate).unwrap_or(usize::MAX);
        if partial.window_bytes < floor {
            self.fail(now, DisconnectReason::SlowReply, true);
        } else {
            partial.window_bytes = 0;
            self.set_timer(Timer::ReplyRate, now + self.config.ping_timeout);
        }
    }
}

/// The core's own outgoing bytes (handshake, PING), written before any
/// command polled after them.
struct TxBuf {
    bytes: Vec<u8, TX_CAP>,
    /// `bytes` holds something not yet polled; once polled, the next push
    /// starts afresh.
    pending: bool,
}

impl TxBuf {
    fn push(
        &mut self,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, resp::encode::EncodeError>,
    ) -> bool {
        if !self.pending {
            self.bytes.clear();
        }
        let start = self.bytes.len();
        // Growing to capacity cannot fail.
        let _ = self.bytes.resize(TX_CAP, 0);
        match encode(&mut self.bytes[start..]) {
            Ok(n) => {
                self.bytes.truncate(start + n);
                self.pending = true;
                true
            }
            Err(_) => {
                self.bytes.truncate(start);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! A deterministic simulator: one `Connection` against a simulated Redis
//! server and network with a virtual clock and seeded faults. The clock jumps
//! to the next thing that happens, so hours of outages run in milliseconds.
//!
//! It checks the invariants of the core on every step:
//! - at most one transport is open or opening;
//! - every submitted command is resolved exactly once (reply or outcome),
//!   and never after its deadline;
//! - every reconnect delay is within [0, cap];
//! - `poll_timeout()` is never missing while work is pending;
//! - the outage policy: no command is resolved `TimedOut` while a reason is
//!   known; only a fallback read is resolved `Fallback`; a command resolved
//!   (not applied, cancelled, timed out) is never written afterwards; a
//!   command withdrawn before it was written is never written;
//! - a command part of whose reply has arrived is never written again, and
//!   a write once written never ends as anything but its reply or
//!   indeterminate;
//! - bytes arriving count as liveness: no `PingTimeout` while any arrived
//!   within `ping_timeout`, no `SlowReply` while at least `min_reply_rate`
//!   did.

use std::collections::{HashMap, VecDeque};

use resilis_core::command::Class;
use resilis_core::resp::{Decoded, Frame, Limits, decode};
use resilis_core::{
    CommandId, Config, Connection, DisconnectReason, Duration, Event, Instant, OfflinePolicy,
    Outcome, Output, PhaseKind, Received, Submit, SubmitError, TransportError,
};

/// The faults the simulator can inject, chosen by the seeded generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    Refuse,
    Reset,
    Freeze,
    Garbage,
    TlsAlert,
    WrongPass,
    SlowReplies,
    /// From now on, this transport answers commands with large replies
    /// that arrive a chunk at a time (some above `min_reply_rate`, some
    /// below).
    Trickle,
}

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next(&mut self) -> u64 {
        // xorshift64*: deterministic and dependency-free, which is all a test
        // scheduler needs.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug)]
struct Cmd {
    deadline: Instant,
    resolved: bool,
    class: Class,
    /// Handed to the server (not withdrawn at `TransmitCommand`).
    written: bool,
    /// Part of its reply reached the core.
    reply_started: bool,
}

enum Transport {
    /// Connect outcome decided at `at`.
    Opening {
        at: Instant,
        refuse: bool,
    },
    Open {
        frozen: bool,
    },
}

#[derive(Default, Debug)]
pub struct Tally {
    pub submitted: u64,
    pub replies: u64,
    pub timed_out: u64,
    pub indeterminate: u64,
    pub not_applied: u64,
    pub fallback: u64,
    pub cancelled: u64,
    pub refused_at_submit: u64,
    pub connects: u64,
    pub readies: u64,
    pub max_delay: Duration,
    pub slow_replies: u64,
}

pub struct Sim {
    pub conn: Connection<64>,
    pub now: Instant,
    rng: Rng,
    transport: Option<Transport>,
    /// Bytes the server will deliver, and when.
    inbound: VecDeque<(Instant, Vec<u8>)>,
    rx: Vec<u8>,
    /// Requests written on this transport whose replies are not whole yet,
    /// oldest first: the command's id, or `None` for the core's own.
    awaiting: VecDeque<Option<CommandId>>,
    /// Bytes delivered on this transport, and when.
    deliveries: Vec<(Instant, usize)>,
    /// `Fault::Trickle` on this transport: chunk size and interval.
    trickle: Option<(usize, Duration)>,
    cmds: HashMap<CommandId, Cmd>,
    fault_rate: u64,
    wrong_password: bool,
    pub tally: Tally,
    cap: Duration,
}

impl Sim {
    pub fn new(seed: u64, fault_rate: u64) -> Sim {
        let mut config = Config::default();
        config.queue.offline = match seed % 3 {
            0 => OfflinePolicy::Fallback,
            1 => OfflinePolicy::Queue,
            _ => OfflinePolicy::FailFast,
        };
        config.backoff.jitter_percent = 30;
        config.backoff.jitter_seed = seed;
        config.permanent_retry = Some(Duration::from_secs(30));
        let cap = config.backoff.max_delay.max(config.backoff.probe_interval);
        let mut conn = Connection::new(config);
        conn.handle_start(Instant::ZERO);
        Sim {
            conn,
            now: Instant::ZERO,
            rng: Rng::new(seed),
            transport: None,
            inbound: VecDeque::new(),
            rx: Vec::new(),
            awaiting: VecDeque::new(),
            deliveries: Vec::new(),
            trickle: None,
            cmds: HashMap::new(),
            fault_rate,
            wrong_password: false,
            tally: Tally::default(),
            cap,
        }
    }

    fn pick_fault(&mut self) -> Fault {
        if !self.rng.chance(self.fault_rate) {
            return Fault::None;
        }
        match self.rng.below(8) {
            0 => Fault::Refuse,
            1 => Fault::Reset,
            2 => Fault::Freeze,
            3 => Fault::Garbage,
            4 => Fault::TlsAlert,
            5 => Fault::WrongPass,
            6 => Fault::Trickle,
            _ => Fault::SlowReplies,
        }
    }

    fn latency(&mut self) -> Duration {
        Duration::from_micros(200 + self.rng.below(3_000))
    }

    /// Drains outputs, checking invariants.
    pub fn drain(&mut self) {
        for _ in 0..10_000 {
            match self.conn.poll_output() {
                Output::OpenTransport { .. } => {
                    assert!(
                        self.transport.is_none(),
                        "a second transport was requested while one is open"
                    );
                    self.tally.connects += 1;
                    self.awaiting.clear();
                    self.deliveries.clear();
                    self.trickle = None;
                    let refuse = self.pick_fault() == Fault::Refuse;
                    let at = self.now + self.latency();
                    self.transport = Some(Transport::Opening { at, refuse });
                }
                Output::Transmit(bytes) => {
                    let bytes = bytes.to_vec();
                    self.server_reads(&bytes, None);
                }
                Output::TransmitCommand(id) => {
                    let cmd = self.cmds.get(&id).expect("transmit of an unknown command");
                    assert!(!cmd.resolved, "{id:?} written after it was resolved");
                    assert!(
                        !cmd.reply_started,
                        "{id:?} written again after its reply began to arrive"
                    );
                    // Now and then its caller is gone before the write: the
                    // adapter withdraws it instead of writing it.
                    if self.rng.chance(5) {
                        self.conn.handle_cancel(self.now, id);
                        continue;
                    }
                    if let Some(cmd) = self.cmds.get_mut(&id) {
                        cmd.written = true;
                    }
                    self.server_reads(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", Some(id));
                }
                Output::Close => {
                    assert!(self.transport.is_some(), "Close without a transport");
                    self.transport = None;
                    self.inbound.clear();
                    self.rx.clear();
                    self.awaiting.clear();
                }
                Output::Resolved { id, outcome } => {
                    self.resolve(id);
                    let Cmd { class, written, .. } = self.cmds[&id];
                    assert!(
                        !written
                            || class.read_only()
                            || matches!(outcome, Outcome::Indeterminate(_)),
                        "{id:?}: a write that was written ended {outcome:?}"
                    );
                    match outcome {
                        Outcome::TimedOut => {
                            assert_eq!(
                                self.conn.outage_reason(),
                                None,
                                "{id:?} resolved TimedOut while the reason is known"
                            );
                            self.tally.timed_out += 1;
                        }
                        Outcome::NotApplied(_) => self.tally.not_applied += 1,
                        Outcome::Fallback(_) => {
                            assert!(class.fallback_read(), "{id:?} {class:?} sent to the cache");
                            assert_eq!(self.conn.config().queue.offline, OfflinePolicy::Fallback);
                            self.tally.fallback += 1;
                        }
                        Outcome::Indeterminate(_) => {
                            assert!(!class.read_only(), "{id:?}: a read cannot be indeterminate");
                            self.tally.indeterminate += 1;
                        }
                        Outcome::Cancelled => self.tally.cancelled += 1,
                    }
                }
                Output::Event(event) => self.check_event(event),
                Output::Wait(deadline) => {
                    self.check_timer_present(deadline);
                    return;
                }
            }
        }
        panic!("poll_output never returned Wait");
    }

    fn resolve(&mut self, id: CommandId) {
        let now = self.now;
        let cmd = self
            .cmds
            .get_mut(&id)
            .expect("resolution of an unknown command");
        assert!(!cmd.resolved, "{id:?} resolved twice");
        assert!(
            now <= cmd.deadline,
            "{id:?} resolved at {now:?}, after its deadline {:?}",
            cmd.deadline
        );
        cmd.resolved = true;
    }

    fn check_event(&mut self, event: Event) {
        match event {
            Event::Reconnecting { delay, .. } => {
                assert!(delay <= self.cap, "delay {delay:?} over the cap");
                self.tally.max_delay = self.tally.max_delay.max(delay);
            }
            Event::Ready { .. } => self.tally.readies += 1,
            Event::Disconnected { reason } => {
                let config = self.conn.config();
                let recent: usize = self
                    .deliveries
                    .iter()
                    .filter(|(at, _)| self.now.saturating_duration_since(*at) < config.ping_timeout)
                    .map(|(_, n)| n)
                    .sum();
                match reason {
                    DisconnectReason::PingTimeout => assert_eq!(
                        recent, 0,
                        "declared dead while bytes arrived within ping_timeout"
                    ),
                    DisconnectReason::SlowReply => {
                        assert!(
                            recent < config.min_reply_rate as usize,
                            "declared slow after {recent} bytes within ping_timeout"
                        );
                        self.tally.slow_replies += 1;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn check_timer_present(&self, deadline: Option<Instant>) {
        let pending_cmds = self.cmds.values().any(|c| !c.resolved);
        let waiting_phase = matches!(
            self.conn.phase(),
            PhaseKind::Connecting
                | PhaseKind::TlsHandshake
                | PhaseKind::Handshake
                | PhaseKind::Backoff
                | PhaseKind::Down
        );
        if pending_cmds || waiting_phase || self.conn.phase() == PhaseKind::Ready {
            assert!(
                deadline.is_some(),
                "no timer while work is pending ({:?})",
                self.conn.phase()
            );
        }
    }

    /// The simulated server reads requests and schedules replies. `owner`:
    /// the command these bytes are, or `None` for the core's own requests.
    fn server_reads(&mut self, bytes: &[u8], owner: Option<CommandId>) {
        let frozen = matches!(self.transport, Some(Transport::Open { frozen: true }));
        let mut rest = bytes;
        while let Ok(Decoded::Frame {
            frame, consumed, ..
        }) = decode(rest, &Limits::REDIS)
        {
            rest = &rest[consumed..];
            let name = match frame {
                Frame::Array(a) => match a.iter().next() {
                    Some(Frame::BulkString(n)) => n.to_vec(),
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            };
            self.awaiting.push_back(owner);
            let reply: Vec<u8> = match name.as_slice() {
                b"HELLO" if self.wrong_password => {
                    b"-WRONGPASS invalid username-password pair\r\n".to_vec()
                }
                b"HELLO" => b"%1\r\n$5\r\nproto\r\n:3\r\n".to_vec(),
                b"PING" => b"+PONG\r\n".to_vec(),
                _ => b"$1\r\nv\r\n".to_vec(),
            };
            if frozen {
                continue;
            }
            let mut at = self.now + self.latency();
            if let Some((last, _)) = self.inbound.back() {
                at = at.max(*last);
            }
            match self.trickle {
                Some((chunk, every)) if owner.is_some() => {
                    let len = 1_000 + self.rng.below(20_000) as usize;
                    let mut big = format!("${len}\r\n").into_bytes();
                    big.resize(big.len() + len, b'v');
                    big.extend_from_slice(b"\r\n");
                    for piece in big.chunks(chunk) {
                        self.inbound.push_back((at, piece.to_vec()));
                        at = at + every;
                    }
                }
                _ => self.inbound.push_back((at, reply)),
            }
        }
    }

    pub fn submit(&mut self, class: Class) {
        let deadline = self.now + Duration::from_millis(50 + self.rng.below(8_000));
        let submit = Submit {
            len: 24,
            deadline,
            class,
        };
        match self.conn.handle_submit(self.now, submit) {
            Ok(id) => {
                self.tally.submitted += 1;
                assert!(
                    self.cmds
                        .insert(
                            id,
                            Cmd {
                                deadline,
                                resolved: false,
                                class,
                                written: false,
                                reply_started: false,
                            }
                        )
                        .is_none(),
                    "id reused"
                );
            }
            Err(
                SubmitError::Backpressure { .. }
                | SubmitError::Down { .. }
                | SubmitError::NotReady { .. },
            ) => self.tally.refused_at_submit += 1,
            Err(e @ (SubmitError::Shutdown | SubmitError::TooLarge { .. })) => {
                panic!("unexpected {e:?}")
            }
        }
    }

    fn deliver(&mut self, bytes: &[u8]) {
        self.rx.extend_from_slice(bytes);
        self.deliveries.push((self.now, bytes.len()));
        let mut pos = 0;
        for _ in 0..10_000 {
            let received = self.conn.handle_receive(self.now, &self.rx[pos..]);
            match received {
                Received::Reply { id, consumed, .. } => {
                    self.resolve(id);
                    self.tally.replies += 1;
                    self.awaiting.pop_front();
                    pos += consumed;
                }
                // The simulated server sends no pushes.
                Received::Push { consumed, .. }
                | Received::PubSubRefused { consumed, .. }
                | Received::Internal { consumed } => {
                    self.awaiting.pop_front();
                    pos += consumed
                }
                Received::Incomplete { .. } => break,
                Received::Discard => {
                    pos = self.rx.len();
                    break;
                }
            }
        }
        self.rx.drain(..pos.min(self.rx.len()));
        // What is left is the start of the oldest request's reply.
        if !self.rx.is_empty()
            && let Some(Some(id)) = self.awaiting.front()
            && let Some(cmd) = self.cmds.get_mut(id)
        {
            cmd.reply_started = true;
        }
    }

    /// One step: maybe a random action, then jump to the next event.
    pub fn step(&mut self) {
        // Random application and network actions.
        if self.rng.chance(30) {
            let class = match self.rng.below(4) {
                0 => Class::READ,
                1 => Class::CACHED_READ,
                2 => Class::IDEMPOTENT_WRITE,
                _ => Class::WRITE,
            };
            self.submit(class);
        }
        // A caller that gave up on a command (queued or written).
        if self.rng.chance(3)
            && let Some(id) = self
                .cmds
                .iter()
                .find(|(_, c)| !c.resolved)
                .map(|(id, _)| *id)
        {
            self.conn.handle_cancel(self.now, id);
        }
        if matches!(self.transport, Some(Transport::Open { .. })) {
            match self.pick_fault() {
                Fault::Reset => {
                    self.transport = None;
                    self.inbound.clear();
                    self.rx.clear();
                    self.awaiting.clear();
                    self.conn
                        .handle_transport_failed(self.now, TransportError::Reset);
                }
                Fault::Freeze => self.transport = Some(Transport::Open { frozen: true }),
                Fault::Garbage => self
                    .inbound
                    .push_back((self.now, b"\x00garbage\r\n".to_vec())),
                Fault::TlsAlert => self
                    .inbound
                    .push_back((self.now, vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])),
                Fault::WrongPass => self.wrong_password = !self.wrong_password,
                Fault::Trickle => {
                    let chunk = 20 + self.rng.below(600) as usize;
                    let every = Duration::from_millis(100 + self.rng.below(1_900));
                    self.trickle = Some((chunk, every));
                }
                Fault::SlowReplies => {
                    for (at, _) in self.inbound.iter_mut() {
                        *at = *at + Duration::from_secs(2);
                    }
                }
                Fault::None | Fault::Refuse => {}
            }
        }
        self.drain();

        // Jump to whichever comes first: a core timer, the transport's
        // connect outcome, a delivery, or the next random action.
        let core_at = self.conn.poll_timeout();
        let open_at = match self.transport {
            Some(Transport::Opening { at, .. }) => Some(at),
            _ => None,
        };
        let deliver_at = self.inbound.front().map(|(at, _)| *at);
        let action_at = self.now + Duration::from_millis(1 + self.rng.below(500));
        let next = [core_at, open_at, deliver_at, Some(action_at)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(action_at);
        self.now = self.now.max(next);

        if open_at.is_some_and(|at| at <= self.now)
            && let Some(Transport::Opening { refuse, .. }) = self.transport
        {
            if refuse {
                self.transport = None;
                self.conn
                    .handle_transport_failed(self.now, TransportError::Refused);
            } else {
                self.transport = Some(Transport::Open { frozen: false });
                self.conn.handle_transport_opened(self.now);
            }
            self.drain();
        }
        while self.inbound.front().is_some_and(|(at, _)| *at <= self.now) {
            if let Some((_, bytes)) = self.inbound.pop_front() {
                self.deliver(&bytes);
                self.drain();
            }
        }
        if core_at.is_some_and(|at| at <= self.now) {
            self.conn.handle_timeout(self.now);
            self.drain();
        }
    }

    /// Shut down and check every command was resolved exactly once.
    pub fn finish(mut self) -> Tally {
        self.conn.handle_shutdown(self.now);
        self.drain();
        let unresolved: Vec<_> = self
            .cmds
            .iter()
            .filter(|(_, c)| !c.resolved)
            .map(|(id, _)| *id)
            .collect();
        assert!(unresolved.is_empty(), "never resolved: {unresolved:?}");
        self.tally
    }
}

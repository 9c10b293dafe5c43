//! The core's connection transcripts on the real instruction set: connect →
//! ready → ping timeout → backoff → down → probe → ready, TLS ordering, the
//! seed's "TLS-only server closes the plaintext socket" diagnosis, a
//! command round trip, and the outage decision (fallback reads, refused
//! writes). Each test reads as the conversation between an
//! adapter and the core, with a virtual clock that jumps to the next timer.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use heapless::Vec;
use panic_semihosting as _;
use resilis_core::command::Class;
use resilis_core::resp::Frame;
use resilis_core::{
    CommandId, Config, Connection, DisconnectReason, Duration, Event, Instant, Outcome, Output,
    PhaseKind, Protocol, Received, ServerVersion, Submit, SubmitError, TlsEvidence, TransportError,
};

const HELLO3_REPLY: &[u8] =
    b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n";
const HELLO3: &[u8] = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";
const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// One output of the core, owned so a transcript can be compared whole.
#[derive(Debug, PartialEq)]
enum Rec {
    Open { tls: bool },
    Tx(Vec<u8, 128>),
    Cmd(CommandId),
    Close,
    Ev(Event),
    Resolved(CommandId, Outcome),
}

fn tx(bytes: &[u8]) -> Rec {
    Rec::Tx(Vec::from_slice(bytes).expect("test bytes fit"))
}

type Transcript = Vec<Rec, 16>;

struct T {
    conn: Connection<8>,
    now: Instant,
}

impl T {
    fn new(config: Config) -> T {
        T {
            conn: Connection::new(config),
            now: Instant::ZERO,
        }
    }

    /// Drains outputs until `Wait`, leaving out phase-change events (checked
    /// through `phase()` instead) so transcripts stay short.
    #[track_caller]
    fn drain(&mut self) -> Transcript {
        let mut out = Transcript::new();
        for _ in 0..100 {
            let rec = match self.conn.poll_output() {
                Output::OpenTransport { tls, .. } => Rec::Open { tls },
                Output::Transmit(b) => tx(b),
                Output::TransmitCommand(id) => Rec::Cmd(id),
                Output::Close => Rec::Close,
                Output::Resolved { id, outcome } => Rec::Resolved(id, outcome),
                Output::Event(Event::PhaseChanged { .. }) => continue,
                Output::Event(e) => Rec::Ev(e),
                Output::Wait(_) => return out,
            };
            out.push(rec).expect("transcript longer than 16 outputs");
        }
        panic!("poll_output never returned Wait");
    }

    /// Jumps the clock to the next timer, fires it and drains.
    #[track_caller]
    fn advance(&mut self) -> Transcript {
        let at = self.conn.poll_timeout().expect("a timer should be pending");
        assert!(at >= self.now, "timers never point into the past");
        self.now = at;
        self.conn.handle_timeout(at);
        self.drain()
    }

    fn ms(&self) -> u64 {
        self.now.as_millis()
    }

    /// start → open → HELLO → ready, asserting each step.
    #[track_caller]
    fn ready(&mut self) {
        self.conn.handle_start(self.now);
        assert_eq!(
            self.drain(),
            [
                Rec::Ev(Event::Connecting {
                    attempt: 0,
                    max_attempts: 10
                }),
                Rec::Open { tls: false }
            ]
        );
        self.conn.handle_transport_opened(self.now);
        assert_eq!(self.drain(), [Rec::Ev(Event::Connected), tx(HELLO3)]);
        assert_eq!(
            self.conn.handle_receive(self.now, HELLO3_REPLY),
            Received::Internal {
                consumed: HELLO3_REPLY.len()
            }
        );
        // The readiness PING: HELLO is allowed while Redis loads, PING is not.
        assert_eq!(self.drain(), [tx(PING)]);
        assert_eq!(self.conn.phase(), PhaseKind::Handshake);
        let _ = self.conn.handle_receive(self.now, b"+PONG\r\n");
        assert_eq!(
            self.drain(),
            [Rec::Ev(Event::Ready {
                protocol: Protocol::Resp3,
                server_version: Some(ServerVersion {
                    major: 7,
                    minor: 0,
                    patch: 15
                }),
            })]
        );
        assert_eq!(self.conn.phase(), PhaseKind::Ready);
    }
}

fn connect_ready_ping_timeout_backoff() {
    let mut t = T::new(Config::default());
    t.ready();
    // Nothing received for ping_interval: the core pings.
    assert_eq!(t.advance(), [tx(PING)]);
    assert_eq!(t.ms(), 5_000);
    // The PING is never answered: dead after ping_timeout.
    assert_eq!(
        t.advance(),
        [
            Rec::Close,
            Rec::Ev(Event::Disconnected {
                reason: DisconnectReason::PingTimeout
            }),
            Rec::Ev(Event::FallbackEngaged {
                reason: DisconnectReason::PingTimeout
            }),
            Rec::Ev(Event::Reconnecting {
                attempt: 1,
                max_attempts: 10,
                delay: Duration::from_millis(100)
            }),
        ]
    );
    assert_eq!(t.ms(), 10_000);
    assert_eq!(t.conn.phase(), PhaseKind::Backoff);
    assert!(t.conn.fallback_active());
    // The seed's schedule: 100 ms doubling up to 3 s, ten attempts.
    let delays = [100, 200, 400, 800, 1600, 3000, 3000, 3000, 3000, 3000];
    for (i, delay) in delays.iter().enumerate() {
        let attempt = i as u32 + 1;
        let before = t.ms();
        assert_eq!(
            t.advance(),
            [
                Rec::Ev(Event::Connecting {
                    attempt,
                    max_attempts: 10
                }),
                Rec::Open { tls: false }
            ]
        );
        assert_eq!(t.ms() - before, *delay, "delay before attempt {attempt}");
        t.conn
            .handle_transport_failed(t.now, TransportError::Refused);
        let out = t.drain();
        assert_eq!(
            out[0],
            Rec::Ev(Event::Disconnected {
                reason: DisconnectReason::Transport(TransportError::Refused)
            })
        );
        if attempt < 10 {
            assert_eq!(
                out[1..],
                [Rec::Ev(Event::Reconnecting {
                    attempt: attempt + 1,
                    max_attempts: 10,
                    delay: Duration::from_millis(delays[i + 1]),
                })]
            );
            assert_eq!(t.conn.phase(), PhaseKind::Backoff);
        } else {
            assert_eq!(
                out[1..],
                [Rec::Ev(Event::Down {
                    reason: DisconnectReason::Transport(TransportError::Refused),
                    probe_interval: Duration::from_secs(3),
                })]
            );
            assert_eq!(t.conn.phase(), PhaseKind::Down);
        }
        assert!(t.conn.fallback_active(), "fallback stays on while down");
    }
    // Down keeps probing every 3 s; a probe that succeeds releases the fallback.
    let before = t.ms();
    assert_eq!(
        t.advance(),
        [
            Rec::Ev(Event::Connecting {
                attempt: 11,
                max_attempts: 10
            }),
            Rec::Open { tls: false }
        ]
    );
    assert_eq!(t.ms() - before, 3_000);
    t.conn.handle_transport_opened(t.now);
    assert_eq!(t.drain(), [Rec::Ev(Event::Connected), tx(HELLO3)]);
    let _ = t.conn.handle_receive(t.now, HELLO3_REPLY);
    assert_eq!(t.drain(), [tx(PING)]);
    let _ = t.conn.handle_receive(t.now, b"+PONG\r\n");
    let out = t.drain();
    assert!(
        matches!(
            out.as_slice(),
            [
                Rec::Ev(Event::Ready { .. }),
                Rec::Ev(Event::FallbackReleased)
            ]
        ),
        "{out:?}"
    );
    assert!(!t.conn.fallback_active());
    assert_eq!(t.conn.stats().ready_count, 2);
}

fn answered_ping_keeps_the_connection() {
    let mut t = T::new(Config::default());
    t.ready();
    let mut ping_at = 5_000;
    for _ in 0..3 {
        assert_eq!(t.advance(), [tx(PING)]);
        assert_eq!(t.ms(), ping_at);
        t.now = t.now + Duration::from_millis(3);
        assert_eq!(
            t.conn.handle_receive(t.now, b"+PONG\r\n"),
            Received::Internal { consumed: 7 }
        );
        assert_eq!(t.drain(), []);
        assert_eq!(t.conn.phase(), PhaseKind::Ready);
        assert_eq!(t.conn.stats().last_ping_rtt, Some(Duration::from_millis(3)));
        // The next ping is an interval after the reply.
        ping_at += 5_003;
    }
    assert_eq!(t.conn.stats().pings_sent, 3);
    assert_eq!(t.conn.stats().disconnects, 0);
}

fn tls_is_established_before_hello() {
    let mut t = T::new(Config::from_url("rediss://redis.example:6380").expect("valid URL"));
    t.conn.handle_start(t.now);
    let out = t.drain();
    assert_eq!(out[1], Rec::Open { tls: true });
    t.conn.handle_transport_opened(t.now);
    // TCP up: nothing to write until TLS is.
    assert_eq!(t.drain(), []);
    assert_eq!(t.conn.phase(), PhaseKind::TlsHandshake);
    // A stalled TLS handshake is told apart from a stalled TCP connect.
    assert_eq!(t.conn.poll_timeout(), Some(Instant::from_millis(10_000)));
    t.conn.handle_tls_established(t.now);
    assert_eq!(t.drain(), [Rec::Ev(Event::Connected), tx(HELLO3)]);
}

fn plaintext_to_tls_only_server_is_diagnosed() {
    // The seed's production failure: a TLS-only server closes the plaintext
    // socket without a byte of reply.
    let mut t = T::new(Config::default());
    t.conn.handle_start(t.now);
    t.drain();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.conn
        .handle_transport_failed(t.now, TransportError::Closed);
    let out = t.drain();
    let reason = DisconnectReason::TlsRequired(TlsEvidence::ClosedWithoutReply);
    assert_eq!(out[0], Rec::Ev(Event::Disconnected { reason }));
    assert_eq!(
        reason.fix(),
        "server requires TLS: use rediss:// or REDIS_TLS=true"
    );
    // A TLS record in answer to HELLO says the same.
    let mut t = T::new(Config::default());
    t.conn.handle_start(t.now);
    t.drain();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    assert_eq!(
        t.conn
            .handle_receive(t.now, b"\x15\x03\x03\x00\x02\x02\x46"),
        Received::Discard
    );
    assert_eq!(
        t.drain()[..2],
        [
            Rec::Close,
            Rec::Ev(Event::Disconnected {
                reason: DisconnectReason::TlsRequired(TlsEvidence::TlsRecord)
            })
        ]
    );
}

fn wrong_password_is_permanent() {
    let mut t = T::new(Config::from_url("redis://:secret@10.0.0.1").expect("valid URL"));
    t.conn.handle_start(t.now);
    t.drain();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    let reply = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    let _ = t.conn.handle_receive(t.now, reply);
    let out = t.drain();
    assert!(out.contains(&Rec::Ev(Event::Failed {
        reason: DisconnectReason::AuthFailed,
        retry_in: Some(Duration::from_secs(30)),
    })));
    assert_eq!(t.conn.phase(), PhaseKind::Failed);
    // No fast retry loop against a server that said no.
    assert_eq!(t.conn.poll_timeout(), Some(Instant::from_millis(30_000)));
}

fn command_round_trip_and_offline_queue() {
    let mut t = T::new(Config::default());
    // Submitted while idle: held in the offline queue until ready.
    let submit = Submit {
        len: 27,
        deadline: Instant::from_millis(1_000),
        class: Class::CACHED_READ,
    };
    let id = t.conn.handle_submit(t.now, submit).expect("queue has room");
    assert_eq!(t.conn.queued(), 1);
    t.ready_with_queued(id);
    assert_eq!(
        t.conn.handle_receive(t.now, b"$5\r\nhello\r\n+OK\r\n"),
        Received::Reply {
            id,
            frame: Frame::BulkString(b"hello"),
            consumed: 11
        }
    );
    // A reply nobody asked for breaks the connection rather than being
    // matched to the wrong request.
    assert_eq!(t.conn.handle_receive(t.now, b"+OK\r\n"), Received::Discard);
    assert_eq!(
        t.drain()[..2],
        [
            Rec::Close,
            Rec::Ev(Event::Disconnected {
                reason: DisconnectReason::UnexpectedReply
            })
        ]
    );
}

impl T {
    /// Like `ready`, but the queued command `id` is written right after.
    #[track_caller]
    fn ready_with_queued(&mut self, id: CommandId) {
        self.conn.handle_start(self.now);
        self.drain();
        self.conn.handle_transport_opened(self.now);
        self.drain();
        let _ = self.conn.handle_receive(self.now, HELLO3_REPLY);
        assert_eq!(self.drain(), [tx(PING)]);
        let _ = self.conn.handle_receive(self.now, b"+PONG\r\n");
        let out = self.drain();
        assert!(
            matches!(out.as_slice(), [Rec::Ev(Event::Ready { .. }), Rec::Cmd(c)] if *c == id),
            "{out:?}"
        );
        assert_eq!(self.conn.in_flight(), 1);
    }
}

fn command_deadline_resolves_without_reply() {
    let mut t = T::new(Config::default());
    let submit = Submit {
        len: 10,
        deadline: Instant::from_millis(500),
        class: Class::WRITE,
    };
    let id = t.conn.handle_submit(t.now, submit).expect("queue has room");
    t.conn.handle_start(t.now);
    t.drain();
    // Never connected in time: the command is resolved, never sent.
    assert_eq!(t.advance(), [Rec::Resolved(id, Outcome::TimedOut)]);
    assert_eq!(t.ms(), 500);
    assert_eq!(t.conn.stats().timed_out, 1);
}

fn outage_answers_reads_from_the_cache_and_refuses_writes() {
    let mut t = T::new(Config::default());
    let submit = |class| Submit {
        len: 20,
        deadline: Instant::from_millis(60_000),
        class,
    };
    // Before the first attempt has failed, everything waits for it.
    let get = t.conn.handle_submit(t.now, submit(Class::CACHED_READ));
    let get = get.expect("queue has room");
    let incr = t.conn.handle_submit(t.now, submit(Class::WRITE));
    let incr = incr.expect("queue has room");
    t.conn.handle_start(t.now);
    t.drain();
    t.conn
        .handle_transport_failed(t.now, TransportError::Refused);
    // The failure is the diagnosis: the queued commands learn it now, not
    // at their deadline.
    let reason = DisconnectReason::Transport(TransportError::Refused);
    assert_eq!(
        t.drain(),
        [
            Rec::Ev(Event::Disconnected { reason }),
            Rec::Ev(Event::FallbackEngaged { reason }),
            Rec::Ev(Event::Reconnecting {
                attempt: 1,
                max_attempts: 10,
                delay: Duration::from_millis(100)
            }),
            Rec::Resolved(get, Outcome::Fallback(reason)),
            Rec::Resolved(incr, Outcome::NotApplied(reason)),
        ]
    );
    assert_eq!(t.conn.outage_reason(), Some(reason));
    // From now on the core decides at once: the cache answers a cached read,
    assert_eq!(t.conn.queued(), 0);
    let get = t.conn.handle_submit(t.now, submit(Class::CACHED_READ));
    let get = get.expect("a fallback read is taken");
    assert_eq!(t.drain(), [Rec::Resolved(get, Outcome::Fallback(reason))]);
    // a write is refused with the reason (never held to be applied later),
    for class in [Class::WRITE, Class::IDEMPOTENT_WRITE, Class::READ] {
        assert_eq!(
            t.conn.handle_submit(t.now, submit(class)),
            Err(SubmitError::NotReady {
                phase: PhaseKind::Backoff,
                reason: Some(reason)
            })
        );
    }
    assert_eq!(t.drain(), []);
    let stats = t.conn.stats();
    assert_eq!((stats.fallback, stats.not_applied), (2, 1));
}

#[entry]
fn main() -> ! {
    resilis_qemu::run(
        "core_transcripts",
        &[
            (
                "connect_ready_ping_timeout_backoff",
                connect_ready_ping_timeout_backoff,
            ),
            (
                "answered_ping_keeps_the_connection",
                answered_ping_keeps_the_connection,
            ),
            (
                "tls_is_established_before_hello",
                tls_is_established_before_hello,
            ),
            (
                "plaintext_to_tls_only_server_is_diagnosed",
                plaintext_to_tls_only_server_is_diagnosed,
            ),
            ("wrong_password_is_permanent", wrong_password_is_permanent),
            (
                "command_round_trip_and_offline_queue",
                command_round_trip_and_offline_queue,
            ),
            (
                "command_deadline_resolves_without_reply",
                command_deadline_resolves_without_reply,
            ),
            (
                "outage_answers_reads_from_the_cache_and_refuses_writes",
                outage_answers_reads_from_the_cache_and_refuses_writes,
            ),
        ],
    )
}

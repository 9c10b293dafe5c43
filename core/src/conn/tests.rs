//! Transcript tests: each reads as the conversation between an adapter and
//! the core, with a virtual clock.
#![allow(clippy::field_reassign_with_default)]

extern crate std;
use std::vec::Vec;

use super::*;
use crate::config::{Config, QueueConfig, Secret};
use crate::reason::{TlsEvidence, TransportError};

const HELLO3_REPLY: &[u8] =
    b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n";

#[derive(Debug, PartialEq)]
enum Rec {
    Open,
    Tx(Vec<u8>),
    Cmd(CommandId),
    Close,
    Resolved(CommandId, Outcome),
    Ev(Event),
}

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

    fn ms(&self) -> u64 {
        self.now.as_millis()
    }

    /// Drains outputs, leaving out phase-change events (asserted separately
    /// through `phase()`), so transcripts stay short.
    #[track_caller]
    fn drain(&mut self) -> Vec<Rec> {
        let mut out = Vec::new();
        for _ in 0..1000 {
            match self.conn.poll_output() {
                Output::OpenTransport { .. } => out.push(Rec::Open),
                Output::Transmit(b) => out.push(Rec::Tx(b.to_vec())),
                Output::TransmitCommand(id) => out.push(Rec::Cmd(id)),
                Output::Close => out.push(Rec::Close),
                Output::Resolved { id, outcome } => out.push(Rec::Resolved(id, outcome)),
                Output::Event(Event::PhaseChanged { .. }) => {}
                Output::Event(e) => out.push(Rec::Ev(e)),
                Output::Wait(_) => return out,
            }
        }
        panic!("poll_output never returned Wait");
    }

    /// Jumps the clock to the next timer and fires it.
    #[track_caller]
    fn advance(&mut self) -> Vec<Rec> {
        let at = self.conn.poll_timeout().expect("a timer should be pending");
        self.now = at;
        self.conn.handle_timeout(at);
        self.drain()
    }

    fn advance_by(&mut self, ms: u64) -> Vec<Rec> {
        self.now = self.now + Duration::from_millis(ms);
        self.conn.handle_timeout(self.now);
        self.drain()
    }

    #[track_caller]
    fn recv(&mut self, bytes: &[u8]) -> Vec<Received<'static>> {
        let mut results = Vec::new();
        let mut rest = bytes;
        loop {
            let r = self.conn.handle_receive(self.now, rest);
            let consumed = match &r {
                Received::Reply { consumed, .. }
                | Received::Push { consumed, .. }
                | Received::PubSubRefused { consumed, .. }
                | Received::Internal { consumed } => *consumed,
                Received::Incomplete { .. } | Received::Discard => 0,
            };
            let done = consumed == 0;
            results.push(match r {
                Received::Reply { id, consumed, .. } => Received::Reply {
                    id,
                    frame: Frame::Null,
                    consumed,
                },
                Received::Push { consumed, .. } => Received::Push {
                    frame: Frame::Null,
                    consumed,
                },
                Received::PubSubRefused { consumed, .. } => Received::PubSubRefused {
                    frame: Frame::Null,
                    consumed,
                },
                Received::Internal { consumed } => Received::Internal { consumed },
                Received::Incomplete { needed } => Received::Incomplete { needed },
                Received::Discard => Received::Discard,
            });
            rest = &rest[consumed..];
            if done || rest.is_empty() {
                return results;
            }
        }
    }

    /// HELLO's reply, then the readiness PING's, each after the request
    /// went out (as on a real connection).
    #[track_caller]
    fn finish_handshake(&mut self) -> Vec<Rec> {
        self.recv(HELLO3_REPLY);
        let mut out = self.drain();
        assert_eq!(out.pop(), Some(Rec::Tx(b"*1\r\n$4\r\nPING\r\n".to_vec())));
        self.recv(b"+PONG\r\n");
        out.extend(self.drain());
        out
    }

    /// start → open → HELLO → PING → ready.
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
                Rec::Open
            ]
        );
        self.conn.handle_transport_opened(self.now);
        let out = self.drain();
        assert!(
            matches!(out.as_slice(), [Rec::Ev(Event::Connected), Rec::Tx(_)]),
            "{out:?}"
        );
        self.finish_handshake();
        self.drain();
        assert_eq!(self.conn.phase(), PhaseKind::Ready);
    }

    /// A write: resend-safe (plain SET) or not (INCR).
    fn submit(&mut self, idempotent: bool, deadline_ms: u64) -> Result<CommandId, SubmitError> {
        let class = if idempotent {
            Class::IDEMPOTENT_WRITE
        } else {
            Class::WRITE
        };
        self.submit_class(class, deadline_ms)
    }

    fn submit_class(&mut self, class: Class, deadline_ms: u64) -> Result<CommandId, SubmitError> {
        self.conn.handle_submit(
            self.now,
            Submit {
                len: 20,
                deadline: Instant::from_millis(deadline_ms),
                class,
            },
        )
    }
}

fn hello_bytes(args: &[&str]) -> Vec<u8> {
    let mut v = std::format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(std::format!("${}\r\n{}\r\n", a.len(), a).as_bytes());
    }
    v
}

#[test]
fn connect_handshake_ready() {
    let mut t = T::new(Config::default());
    assert_eq!(t.conn.phase(), PhaseKind::Idle);
    t.conn.handle_start(t.now);
    assert_eq!(
        t.drain(),
        [
            Rec::Ev(Event::Connecting {
                attempt: 0,
                max_attempts: 10
            }),
            Rec::Open
        ]
    );
    assert_eq!(t.conn.phase(), PhaseKind::Connecting);
    t.conn.handle_transport_opened(t.now);
    assert_eq!(
        t.drain(),
        [
            Rec::Ev(Event::Connected),
            Rec::Tx(hello_bytes(&["HELLO", "3"]))
        ]
    );
    assert_eq!(t.conn.phase(), PhaseKind::Handshake);
    // The reply split in two: nothing happens until it is whole.
    assert_eq!(
        t.recv(&HELLO3_REPLY[..10]),
        [Received::Incomplete { needed: None }]
    );
    assert_eq!(
        t.recv(HELLO3_REPLY),
        [Received::Internal {
            consumed: HELLO3_REPLY.len()
        }]
    );
    // HELLO is allowed while Redis loads its dataset; PING is not.
    assert_eq!(t.drain(), [Rec::Tx(b"*1\r\n$4\r\nPING\r\n".to_vec())]);
    assert_eq!(t.conn.phase(), PhaseKind::Handshake);
    t.recv(b"+PONG\r\n");
    let version = Some(ServerVersion {
        major: 7,
        minor: 0,
        patch: 15,
    });
    assert_eq!(
        t.drain(),
        [Rec::Ev(Event::Ready {
            protocol: Protocol::Resp3,
            server_version: version
        })]
    );
    assert!(t.conn.is_ready());
    assert_eq!(t.conn.server_version(), version);
}

#[test]
fn handshake_with_password_name_and_db() {
    let mut config = Config::from_url("redis://app:pw@h/2?client_name=worker").unwrap();
    config.protocol = Protocol::Resp3;
    let mut t = T::new(config);
    t.conn.handle_start(t.now);
    t.drain();
    t.conn.handle_transport_opened(t.now);
    let out = t.drain();
    assert_eq!(
        out[1],
        Rec::Tx(hello_bytes(&[
            "HELLO", "3", "AUTH", "app", "pw", "SETNAME", "worker"
        ]))
    );
    t.recv(HELLO3_REPLY);
    assert_eq!(t.drain(), [Rec::Tx(hello_bytes(&["SELECT", "2"]))]);
    assert_eq!(t.conn.phase(), PhaseKind::Handshake);
    t.recv(b"+OK\r\n");
    assert_eq!(t.drain(), [Rec::Tx(hello_bytes(&["PING"]))]);
    t.recv(b"+PONG\r\n");
    assert!(matches!(
        t.drain().as_slice(),
        [Rec::Ev(Event::Ready { .. })]
    ));
}

#[test]
fn a_server_still_loading_is_not_ready() {
    let mut t = T::new(Config::default());
    t.conn.handle_start(t.now);
    t.drain();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.recv(HELLO3_REPLY);
    t.drain();
    t.recv(b"-LOADING Redis is loading the dataset in memory\r\n");
    let out = t.drain();
    assert_eq!(out[0], Rec::Close);
    assert_eq!(t.conn.last_reason(), Some(DisconnectReason::Loading));
    // Transient: back off and try again, never Ready while loading.
    assert_eq!(t.conn.phase(), PhaseKind::Backoff);
}

#[test]
fn require_master_checks_role_and_refuses_a_replica() {
    let mut config = Config::default();
    config.require_master = true;
    let mut t = T::new(config);
    t.conn.handle_start(t.now);
    t.drain();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.recv(HELLO3_REPLY);
    assert_eq!(t.drain(), [Rec::Tx(b"*1\r\n$4\r\nROLE\r\n".to_vec())]);
    // A demoted master: `ROLE` says slave. Nothing is written to it.
    t.recv(b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:100\r\n");
    let out = t.drain();
    assert_eq!(out[0], Rec::Close);
    assert_eq!(t.conn.last_reason(), Some(DisconnectReason::NotMaster));
    assert_eq!(t.conn.phase(), PhaseKind::Backoff, "transient: ask again");
    // The next attempt finds a master: ROLE, then the readiness PING.
    t.advance();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.recv(HELLO3_REPLY);
    t.drain();
    t.recv(b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
    assert_eq!(t.drain(), [Rec::Tx(b"*1\r\n$4\r\nPING\r\n".to_vec())]);
    t.recv(b"+PONG\r\n");
    t.drain();
    assert!(t.conn.is_ready());
}

#[test]
fn retarget_leaves_the_old_node_at_once_and_connects_to_the_new_one() {
    let mut t = T::new(Config::default());
    t.ready();
    let incr = t.submit(false, 10_000).unwrap();
    let set = t.submit(true, 10_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(incr), Rec::Cmd(set)]);
    assert!(t.conn.handle_retarget(t.now, "10.0.0.9", 6380));
    let out = t.drain();
    // Closed at once, the INCR in flight may have run: indeterminate; the
    // SET is resend-safe and waits for the new master. A new connection
    // opens without a backoff.
    assert!(out.contains(&Rec::Close), "{out:?}");
    assert!(out.contains(&Rec::Ev(Event::Disconnected {
        reason: DisconnectReason::MasterSwitched
    })));
    assert!(out.contains(&Rec::Resolved(
        incr,
        Outcome::Indeterminate(IndeterminateCause::ConnectionLost(
            DisconnectReason::MasterSwitched
        ))
    )));
    assert_eq!(out.last(), Some(&Rec::Open));
    assert_eq!(t.conn.phase(), PhaseKind::Connecting);
    assert_eq!(
        (t.conn.config().host.as_str(), t.conn.config().port),
        ("10.0.0.9", 6380)
    );
    t.conn.handle_transport_opened(t.now);
    t.drain();
    let out = t.finish_handshake();
    assert!(
        out.contains(&Rec::Cmd(set)),
        "the SET is written on the new master: {out:?}"
    );
    assert!(t.conn.is_ready());
    // Waiting out a backoff: the new address is tried now.
    t.conn.handle_transport_failed(t.now, TransportError::Reset);
    t.drain();
    assert_eq!(t.conn.phase(), PhaseKind::Backoff);
    assert!(t.conn.handle_retarget(t.now, "10.0.0.10", 6381));
    assert_eq!(t.drain().last(), Some(&Rec::Open));
    // A host too long for the config changes nothing.
    assert!(!t.conn.handle_retarget(t.now, &"h".repeat(300), 1));
    assert_eq!(t.conn.config().host.as_str(), "10.0.0.10");
}

#[test]
fn server_without_hello_falls_back_to_auth_and_resp2() {
    let mut config = Config::default();
    config.password = Secret::new("pw").unwrap();
    config.client_name.push_str("w").unwrap();
    let mut t = T::new(config);
    t.conn.handle_start(t.now);
    t.drain();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.recv(b"-ERR unknown command 'HELLO', with args beginning with: '3'\r\n");
    assert_eq!(t.drain(), [Rec::Tx(hello_bytes(&["AUTH", "pw"]))]);
    t.recv(b"+OK\r\n");
    assert_eq!(
        t.drain(),
        [Rec::Tx(hello_bytes(&["CLIENT", "SETNAME", "w"]))]
    );
    t.recv(b"+OK\r\n");
    assert_eq!(t.drain(), [Rec::Tx(hello_bytes(&["PING"]))]);
    t.recv(b"+PONG\r\n");
    assert_eq!(
        t.drain(),
        [Rec::Ev(Event::Ready {
            protocol: Protocol::Resp2,
            server_version: None
        })]
    );
    assert_eq!(t.conn.protocol(), Some(Protocol::Resp2));
}

#[test]
fn refused_follows_the_backoff_schedule_then_probes() {
    let mut t = T::new(Config::default());
    t.conn.handle_start(t.now);
    t.drain();
    let mut delays = Vec::new();
    let mut down_events = 0;
    let mut connects_at = Vec::new();
    for _ in 0..14 {
        t.conn
            .handle_transport_failed(t.now, TransportError::Refused);
        for rec in t.drain() {
            match rec {
                Rec::Ev(Event::Reconnecting {
                    delay,
                    attempt,
                    max_attempts,
                }) => {
                    assert_eq!((attempt as usize, max_attempts), (delays.len() + 1, 10));
                    delays.push(delay.as_millis() as u64);
                }
                Rec::Ev(Event::Down {
                    probe_interval,
                    reason,
                }) => {
                    assert_eq!(probe_interval, Duration::from_secs(3));
                    assert_eq!(reason, DisconnectReason::Transport(TransportError::Refused));
                    down_events += 1;
                }
                _ => {}
            }
        }
        let before = t.ms();
        let out = t.advance();
        assert!(out.contains(&Rec::Open), "{out:?}");
        connects_at.push(t.ms() - before);
    }
    assert_eq!(
        delays,
        [100, 200, 400, 800, 1600, 3000, 3000, 3000, 3000, 3000]
    );
    assert_eq!(
        connects_at,
        [
            100, 200, 400, 800, 1600, 3000, 3000, 3000, 3000, 3000, 3000, 3000, 3000, 3000
        ]
    );
    assert_eq!(down_events, 1, "Down is announced once per outage");
    assert_eq!(t.conn.phase(), PhaseKind::Connecting);
    assert!(t.conn.fallback_active());
}

#[test]
fn wrong_password_stops_hammering() {
    let mut config = Config::from_url("redis://:bad@h").unwrap();
    config.permanent_retry = Some(Duration::from_secs(30));
    let mut t = T::new(config);
    t.conn.handle_start(t.now);
    t.drain();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.recv(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    let out = t.drain();
    assert_eq!(
        out,
        [
            Rec::Close,
            Rec::Ev(Event::Disconnected {
                reason: DisconnectReason::AuthFailed
            }),
            Rec::Ev(Event::FallbackEngaged {
                reason: DisconnectReason::AuthFailed
            }),
            Rec::Ev(Event::Failed {
                reason: DisconnectReason::AuthFailed,
                retry_in: Some(Duration::from_secs(30))
            }),
        ]
    );
    assert_eq!(t.conn.phase(), PhaseKind::Failed);
    // Submitting now fails at once with the reason, instead of queueing.
    assert_eq!(
        t.submit(false, 60_000),
        Err(SubmitError::Down {
            reason: DisconnectReason::AuthFailed
        })
    );
    // Nothing happens before the slow probe.
    assert_eq!(t.advance_by(29_999), []);
    let out = t.advance();
    assert_eq!(t.ms(), 30_000);
    assert!(out.contains(&Rec::Open));
    // An explicit retry cuts the wait short.
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.recv(b"-WRONGPASS x\r\n");
    t.drain();
    t.conn.handle_retry(t.now);
    assert!(t.drain().contains(&Rec::Open));
}

#[test]
fn plaintext_to_tls_only_server_is_diagnosed() {
    // Closed right after connect with no reply.
    let mut t = T::new(Config::default());
    t.conn.handle_start(t.now);
    t.drain();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.conn.handle_transport_failed(t.now, TransportError::Reset);
    let reason = DisconnectReason::TlsRequired(TlsEvidence::ClosedWithoutReply);
    assert_eq!(t.conn.last_reason(), Some(reason));
    let text = std::format!("{reason}");
    assert!(
        text.contains("server requires TLS: use rediss:// or REDIS_TLS=true"),
        "{text}"
    );
    // Transient: it follows the schedule, never a storm.
    assert!(t.drain().contains(&Rec::Ev(Event::Reconnecting {
        attempt: 1,
        max_attempts: 10,
        delay: Duration::from_millis(100)
    })));

    // Answered with a TLS alert record.
    let mut t = T::new(Config::default());
    t.ready_until_hello();
    assert_eq!(t.recv(&[0x15]), [Received::Incomplete { needed: Some(2) }]);
    assert_eq!(
        t.recv(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]),
        [Received::Discard]
    );
    assert_eq!(
        t.conn.last_reason(),
        Some(DisconnectReason::TlsRequired(TlsEvidence::TlsRecord))
    );
    assert_eq!(t.drain()[0], Rec::Close);
}

impl T {
    fn ready_until_hello(&mut self) {
        self.conn.handle_start(self.now);
        self.drain();
        self.conn.handle_transport_opened(self.now);
        self.drain();
    }
}

#[test]
fn tls_to_plaintext_server_is_diagnosed() {
    let mut t = T::new(Config::from_url("rediss://h").unwrap());
    t.conn.handle_start(t.now);
    t.drain();
    t.conn.handle_transport_opened(t.now);
    assert_eq!(t.conn.phase(), PhaseKind::TlsHandshake);
    t.conn
        .handle_transport_failed(t.now, TransportError::TlsNotSpoken);
    assert_eq!(t.conn.last_reason(), Some(DisconnectReason::TlsNotSpoken));
    let text = std::format!("{}", DisconnectReason::TlsNotSpoken);
    assert!(text.contains("server does not speak TLS"), "{text}");
    // A TLS handshake that stalls has its own deadline.
    t.advance();
    t.conn.handle_transport_opened(t.now);
    t.advance();
    assert_eq!(t.conn.last_reason(), Some(DisconnectReason::TlsTimeout));
    // Real Redis on a plaintext port answers a ClientHello with silence
    // (it waits for the inline command's newline), so the stall is the
    // usual way this mistake shows: its fix must name the way out.
    let text = std::format!("{}", DisconnectReason::TlsTimeout);
    assert!(
        text.contains("TLS") && text.contains("redis://") && text.contains("REDIS_TLS"),
        "{text}"
    );
}

#[test]
fn connect_and_handshake_timeouts() {
    let mut t = T::new(Config::default());
    t.conn.handle_start(t.now);
    t.drain();
    let out = t.advance();
    assert_eq!(t.ms(), 30_000, "the seed's connect timeout");
    assert_eq!(out[0], Rec::Close);
    assert_eq!(t.conn.last_reason(), Some(DisconnectReason::ConnectTimeout));
    t.advance();
    t.conn.handle_transport_opened(t.now);
    let start = t.ms();
    t.advance();
    assert_eq!(t.ms() - start, 10_000);
    assert_eq!(
        t.conn.last_reason(),
        Some(DisconnectReason::HandshakeTimeout {
            received_any: false
        })
    );
}

#[test]
fn idle_connection_pings_and_dead_one_is_detected() {
    let mut t = T::new(Config::default());
    t.ready();
    // Nothing received for ping_interval: PING.
    let out = t.advance();
    assert_eq!(t.ms(), 5_000);
    assert_eq!(out, [Rec::Tx(b"*1\r\n$4\r\nPING\r\n".to_vec())]);
    // It is answered: latency recorded, next ping 5 s after the reply.
    t.now = Instant::from_millis(5_020);
    assert_eq!(t.recv(b"+PONG\r\n"), [Received::Internal { consumed: 7 }]);
    assert_eq!(
        t.conn.stats().last_ping_rtt,
        Some(Duration::from_millis(20))
    );
    t.advance();
    assert_eq!(t.ms(), 10_020);
    // Not answered: dead after ping_timeout, closed, backoff.
    let out = t.advance();
    assert_eq!(t.ms(), 15_020);
    assert_eq!(out[0], Rec::Close);
    assert_eq!(
        out[1],
        Rec::Ev(Event::Disconnected {
            reason: DisconnectReason::PingTimeout
        })
    );
    assert_eq!(t.conn.phase(), PhaseKind::Backoff);
}

#[test]
fn replies_postpone_the_ping() {
    let mut t = T::new(Config::default());
    t.ready();
    t.now = Instant::from_millis(3_000);
    let id = t.submit(true, 60_000).unwrap();
    t.drain();
    t.recv(b"+OK\r\n");
    let _ = id;
    // The timer armed at ready fires at 5 s, but a reply came at 3 s: no PING
    // until 8 s.
    assert_eq!(t.advance(), []);
    assert_eq!(t.ms(), 5_000);
    assert_eq!(t.advance(), [Rec::Tx(b"*1\r\n$4\r\nPING\r\n".to_vec())]);
    assert_eq!(t.ms(), 8_000);
}

#[test]
fn steady_writes_do_not_keep_a_dead_connection_alive() {
    let mut t = T::new(Config::default());
    t.ready();
    let first = t.submit(true, 60_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(first)]);
    // Keep writing every 100 ms; the server never answers.
    for _ in 0..200 {
        t.advance_by(100);
        if t.conn.phase() != PhaseKind::Ready {
            break;
        }
        // In flight fills up (capacity 8): backpressure is the answer then.
        match t.submit(true, 60_000) {
            Ok(_) | Err(SubmitError::Backpressure { .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
        t.drain();
    }
    assert_eq!(t.conn.last_reason(), Some(DisconnectReason::PingTimeout));
    assert_eq!(
        t.ms(),
        5_000,
        "dead exactly ping_timeout after the oldest unanswered request"
    );
}

#[test]
fn a_blocking_command_suspends_liveness_only_until_its_deadline() {
    let mut t = T::new(Config::default());
    t.ready();
    let blpop = t
        .conn
        .handle_submit(
            t.now,
            Submit {
                len: 30,
                deadline: Instant::from_millis(20_000),
                class: Class::new(
                    crate::command::Flags::WRITE.union(crate::command::Flags::BLOCKING),
                ),
            },
        )
        .unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(blpop)]);
    // Waiting for its reply is not a sign of death...
    let mut out = Vec::new();
    while t.ms() < 20_000 {
        assert_eq!(t.conn.phase(), PhaseKind::Ready, "at {} ms", t.ms());
        out = t.advance();
    }
    // ...until the caller gives up: a BLPOP still blocked could take a job
    // for nobody, so its connection is closed at once and reopened, with no
    // backoff and no fallback.
    assert_eq!(t.ms(), 20_000);
    assert_eq!(
        out,
        [
            Rec::Close,
            Rec::Ev(Event::Disconnected {
                reason: DisconnectReason::Abandoned
            }),
            Rec::Ev(Event::Connecting {
                attempt: 0,
                max_attempts: 10
            }),
            Rec::Resolved(blpop, Outcome::Indeterminate(IndeterminateCause::TimedOut)),
            Rec::Open,
        ]
    );
    assert_eq!(t.conn.phase(), PhaseKind::Connecting);
    assert!(!t.conn.fallback_active());
    assert_eq!(t.conn.attempts(), 0, "no backoff step was taken");
}

#[test]
fn replies_match_requests_in_order() {
    let mut t = T::new(Config::default());
    t.ready();
    let a = t.submit(false, 60_000).unwrap();
    let b = t.submit(false, 60_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(a), Rec::Cmd(b)]);
    let got = t.recv(b"+OK\r\n:5\r\n");
    assert_eq!(
        got,
        [
            Received::Reply {
                id: a,
                frame: Frame::Null,
                consumed: 5
            },
            Received::Reply {
                id: b,
                frame: Frame::Null,
                consumed: 4
            }
        ]
    );
    // A push is not a reply.
    assert_eq!(
        t.recv(b">2\r\n+a\r\n+b\r\n"),
        [Received::Push {
            frame: Frame::Null,
            consumed: 12
        }]
    );
    // A reply nobody asked for breaks the connection.
    assert_eq!(t.recv(b"+OK\r\n"), [Received::Discard]);
    assert_eq!(
        t.conn.last_reason(),
        Some(DisconnectReason::UnexpectedReply)
    );
}

#[test]
fn hostile_bytes_close_with_a_typed_reason() {
    let mut config = Config::default();
    config.resp_limits.max_bulk_len = 1024;
    let mut t = T::new(config);
    t.ready();
    t.submit(true, 60_000).unwrap();
    t.drain();
    assert_eq!(t.recv(b"$999999\r\n"), [Received::Discard]);
    assert!(matches!(
        t.conn.last_reason(),
        Some(DisconnectReason::Protocol(
            resp::DecodeError::BulkTooLong { .. }
        ))
    ));
    assert_eq!(t.drain()[0], Rec::Close);
}

#[test]
fn a_reply_that_never_ends_is_cut_at_max_frame_len() {
    let mut config = Config::default();
    config.max_frame_len = 64;
    let mut t = T::new(config);
    t.ready();
    t.submit(true, 60_000).unwrap();
    t.drain();
    let mut endless = b"*1000\r\n".to_vec();
    while endless.len() < 60 {
        endless.extend_from_slice(b"$3\r\nabc\r\n");
    }
    assert!(matches!(
        t.recv(&endless).as_slice(),
        [Received::Incomplete { .. }]
    ));
    endless.extend_from_slice(b"$3\r\nabc\r\n");
    assert_eq!(t.recv(&endless), [Received::Discard]);
    let reason = DisconnectReason::Protocol(resp::DecodeError::FrameTooLong { max: 64 });
    assert_eq!(t.conn.last_reason(), Some(reason));
    assert_eq!(t.drain()[0], Rec::Close);
}

#[test]
fn offline_queue_is_bounded_by_count_and_bytes() {
    let mut config = Config::default();
    config.queue = QueueConfig {
        max_commands: 3,
        max_bytes: 50,
        ..QueueConfig::default()
    };
    let mut t = T::new(config);
    t.submit(false, 1_000).unwrap();
    t.submit(false, 1_000).unwrap();
    assert_eq!(
        t.submit(false, 1_000),
        Err(SubmitError::Backpressure {
            queued: 2,
            queued_bytes: 40
        })
    );
    t.conn.config.queue.max_bytes = 1_000;
    t.submit(false, 1_000).unwrap();
    assert_eq!(
        t.submit(false, 1_000),
        Err(SubmitError::Backpressure {
            queued: 3,
            queued_bytes: 60
        })
    );
    // The const capacity (8, one slot kept for PING) bounds it too.
    t.conn.config.queue.max_commands = 100;
    let mut accepted = 3;
    while t.submit(false, 1_000).is_ok() {
        accepted += 1;
        assert!(accepted < 100);
    }
    assert_eq!(accepted, 7);
    // One command over the byte bound is not backpressure: it never fits.
    let huge = Submit {
        len: 2_000,
        deadline: Instant::from_millis(1_000),
        class: Class::IDEMPOTENT_WRITE,
    };
    assert_eq!(
        t.conn.handle_submit(t.now, huge),
        Err(SubmitError::TooLarge {
            len: 2_000,
            max: 1_000,
            offline: true,
        })
    );
}

#[test]
fn fail_fast_policy_refuses_while_not_ready() {
    let mut config = Config::default();
    config.queue.offline = OfflinePolicy::FailFast;
    let mut t = T::new(config);
    assert_eq!(
        t.submit(true, 1_000),
        Err(SubmitError::NotReady {
            phase: PhaseKind::Idle,
            reason: None,
        })
    );
}

#[test]
fn in_flight_commands_are_resolved_exactly_once_on_disconnect() {
    let mut t = T::new(Config::default());
    t.ready();
    let read = t.submit(true, 60_000).unwrap();
    let incr = t.submit(false, 60_000).unwrap();
    let queued_later = t.submit(false, 60_000).unwrap();
    assert_eq!(
        t.drain(),
        [Rec::Cmd(read), Rec::Cmd(incr), Rec::Cmd(queued_later)]
    );
    t.conn.handle_transport_failed(t.now, TransportError::Reset);
    let out = t.drain();
    let lost = DisconnectReason::Transport(TransportError::Reset);
    let indeterminate = Outcome::Indeterminate(IndeterminateCause::ConnectionLost(lost));
    assert!(out.contains(&Rec::Resolved(incr, indeterminate)), "{out:?}");
    assert!(
        out.contains(&Rec::Resolved(queued_later, indeterminate)),
        "{out:?}"
    );
    assert!(
        !out.iter()
            .any(|r| matches!(r, Rec::Resolved(id, _) if *id == read)),
        "{out:?}"
    );
    assert_eq!(t.conn.queued(), 1);
    // Reconnect: only the idempotent read is written again.
    t.advance();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    let out = t.finish_handshake();
    assert_eq!(out.last(), Some(&Rec::Cmd(read)));
    assert_eq!(out.iter().filter(|r| matches!(r, Rec::Cmd(_))).count(), 1);
    assert_eq!(t.conn.stats().retried, 1);
}

#[test]
fn deadlines_resolve_queued_as_timed_out_and_written_as_indeterminate() {
    let mut t = T::new(Config::default());
    let queued = t.submit(false, 500).unwrap();
    t.conn.handle_start(t.now);
    t.drain();
    let out = t.advance_by(500);
    assert_eq!(out, [Rec::Resolved(queued, Outcome::TimedOut)]);
    // Never written afterwards.
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.finish_handshake();
    assert!(!t.drain().iter().any(|r| matches!(r, Rec::Cmd(_))));

    let written = t.submit(false, t.ms() + 1_000).unwrap();
    let next = t.submit(false, t.ms() + 60_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(written), Rec::Cmd(next)]);
    let out = t.advance();
    assert_eq!(
        out,
        [Rec::Resolved(
            written,
            Outcome::Indeterminate(IndeterminateCause::TimedOut)
        )]
    );
    // Its late reply is swallowed; the next reply still matches its request.
    t.now = t.now + Duration::from_millis(10);
    assert_eq!(
        t.recv(b"+late\r\n+mine\r\n"),
        [
            Received::Internal { consumed: 7 },
            Received::Reply {
                id: next,
                frame: Frame::Null,
                consumed: 7
            }
        ]
    );
}

#[test]
fn a_retried_idempotent_command_that_runs_out_of_time_may_have_run() {
    // Found by the soak: a SET written, its connection lost before the
    // reply, queued again for the next connection, then out of time while
    // the server was still away, was reported as "never sent" although the
    // server had run it.
    let mut config = Config::default();
    config.queue.offline = OfflinePolicy::Queue;
    let mut t = T::new(config);
    t.ready();
    let written = t.submit(true, t.ms() + 1_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(written)]);
    t.conn.handle_transport_failed(t.now, TransportError::Reset);
    t.drain();
    let never_written = t.submit(true, t.ms() + 1_000).unwrap();
    assert_eq!(t.conn.queued(), 2);
    // Every reconnect is refused until both deadlines pass.
    let mut resolved = std::vec::Vec::new();
    for _ in 0..100 {
        if resolved.len() == 2 {
            break;
        }
        for r in t.advance() {
            match r {
                Rec::Open => t
                    .conn
                    .handle_transport_failed(t.now, TransportError::Refused),
                Rec::Resolved(id, outcome) => resolved.push((id, outcome)),
                _ => {}
            }
        }
    }
    assert_eq!(
        resolved,
        [
            (
                written,
                Outcome::Indeterminate(IndeterminateCause::TimedOut)
            ),
            // Never written, and the reason is known: not applied, and why.
            (
                never_written,
                Outcome::NotApplied(DisconnectReason::Transport(TransportError::Refused))
            )
        ]
    );

    // The same when the queue is failed as a whole (here: shutdown).
    let mut t = T::new(Config::default());
    t.ready();
    let written = t.submit(true, t.ms() + 60_000).unwrap();
    t.drain();
    t.conn.handle_transport_failed(t.now, TransportError::Reset);
    t.drain();
    t.conn.handle_shutdown(t.now);
    let out = t.drain();
    assert!(
        out.contains(&Rec::Resolved(
            written,
            Outcome::Indeterminate(IndeterminateCause::ConnectionLost(
                DisconnectReason::Shutdown
            ))
        )),
        "{out:?}"
    );
}

#[test]
fn time_going_backwards_and_spurious_timeouts_are_harmless() {
    let mut t = T::new(Config::default());
    t.ready();
    t.now = Instant::from_millis(3_000);
    t.conn.handle_timeout(t.now);
    t.conn.handle_timeout(Instant::ZERO);
    t.conn.handle_timeout(t.now);
    assert_eq!(t.drain(), []);
    assert_eq!(t.conn.poll_timeout(), Some(Instant::from_millis(5_000)));
}

#[test]
fn attempts_reset_once_ready_long_enough() {
    let mut t = T::new(Config::default());
    t.conn.handle_start(t.now);
    t.drain();
    for _ in 0..3 {
        t.conn
            .handle_transport_failed(t.now, TransportError::Refused);
        t.drain();
        t.advance();
    }
    assert_eq!(t.conn.attempts(), 3);
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.finish_handshake();
    t.drain();
    // Dropped before reset_after: the schedule continues (flapping is not a reset).
    t.advance_by(1_000);
    t.conn.handle_transport_failed(t.now, TransportError::Reset);
    let out = t.drain();
    assert!(
        out.iter()
            .any(|r| matches!(r, Rec::Ev(Event::Reconnecting { attempt: 4, .. }))),
        "{out:?}"
    );
    t.advance();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.finish_handshake();
    t.drain();
    t.advance_by(5_000);
    assert_eq!(t.conn.attempts(), 0);
}

#[test]
fn fallback_engages_on_failure_and_releases_when_ready() {
    let mut t = T::new(Config::default());
    t.ready();
    assert!(!t.conn.fallback_active());
    t.conn
        .handle_transport_failed(t.now, TransportError::Closed);
    let out = t.drain();
    let reason = DisconnectReason::Transport(TransportError::Closed);
    assert!(
        out.contains(&Rec::Ev(Event::FallbackEngaged { reason })),
        "{out:?}"
    );
    assert!(t.conn.fallback_active());
    t.advance();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    let out = t.finish_handshake();
    assert_eq!(out.last(), Some(&Rec::Ev(Event::FallbackReleased)));
    assert!(!t.conn.fallback_active());
}

#[test]
fn give_up_when_configured() {
    let mut config = Config::default();
    config.backoff.max_attempts = 1;
    config.backoff.when_exhausted = crate::backoff::WhenExhausted::GiveUp;
    let mut t = T::new(config);
    let queued = t.submit(false, 60_000).unwrap();
    t.conn.handle_start(t.now);
    t.drain();
    t.conn
        .handle_transport_failed(t.now, TransportError::Refused);
    let first_failure = t.drain();
    t.advance();
    t.conn
        .handle_transport_failed(t.now, TransportError::Refused);
    let out = t.drain();
    let reason = DisconnectReason::Transport(TransportError::Refused);
    assert!(out.contains(&Rec::Ev(Event::GaveUp { reason })));
    assert_eq!(
        first_failure
            .iter()
            .filter(|r| **r == Rec::Resolved(queued, Outcome::NotApplied(reason)))
            .count(),
        1,
        "the queued command learns the reason at the first failure: {first_failure:?}"
    );
    assert_eq!(t.submit(false, 60_000), Err(SubmitError::Down { reason }));
    assert_eq!(t.conn.poll_timeout(), None);
}

#[test]
fn shutdown_from_ready_resolves_everything() {
    let mut t = T::new(Config::default());
    t.ready();
    let written = t.submit(false, 60_000).unwrap();
    t.drain();
    t.conn.handle_shutdown(t.now);
    let out = t.drain();
    assert_eq!(out[0], Rec::Close);
    let cause = IndeterminateCause::ConnectionLost(DisconnectReason::Shutdown);
    assert!(out.contains(&Rec::Resolved(written, Outcome::Indeterminate(cause))));
    assert_eq!(t.conn.phase(), PhaseKind::Shutdown);
    assert_eq!(t.submit(true, 1), Err(SubmitError::Shutdown));
    assert_eq!(t.conn.poll_timeout(), None);
}

// ----- the outage policy, cancellation and bounds (issue 10) ---------------

/// Drains until Wait, but stops after the first `TransmitCommand`, as an
/// adapter does when it checks that command's caller before writing it.
fn poll_until_cmd(t: &mut T) -> Option<CommandId> {
    for _ in 0..100 {
        match t.conn.poll_output() {
            Output::TransmitCommand(id) => return Some(id),
            Output::Wait(_) => return None,
            _ => {}
        }
    }
    panic!("poll_output never returned Wait");
}

#[test]
fn the_seed_failure_reaches_waiting_callers_at_once() {
    // `redis://` to a TLS-only server: commands submitted before the first
    // attempt wait for it; when it fails with a diagnosis, each learns that
    // diagnosis at once, not a timeout at its deadline.
    let mut t = T::new(Config::default());
    let ping = t.submit_class(Class::READ, 5_000).unwrap();
    let get = t.submit_class(Class::CACHED_READ, 5_000).unwrap();
    let set = t.submit(true, 5_000).unwrap();
    t.conn.handle_start(t.now);
    t.drain();
    t.now = Instant::from_millis(3);
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.conn
        .handle_transport_failed(t.now, TransportError::Closed);
    let out = t.drain();
    let reason = DisconnectReason::TlsRequired(TlsEvidence::ClosedWithoutReply);
    for expected in [
        Rec::Resolved(ping, Outcome::NotApplied(reason)),
        Rec::Resolved(get, Outcome::Fallback(reason)),
        Rec::Resolved(set, Outcome::NotApplied(reason)),
    ] {
        assert!(out.contains(&expected), "{expected:?} in {out:?}");
    }
    assert_eq!(t.conn.queued(), 0);
    assert_eq!(t.conn.outage_reason(), Some(reason));
}

#[test]
fn during_an_outage_writes_fail_with_the_reason_and_reads_go_to_the_cache() {
    let mut t = T::new(Config::default());
    t.ready();
    t.conn.handle_transport_failed(t.now, TransportError::Reset);
    t.drain();
    let reason = DisconnectReason::Transport(TransportError::Reset);
    // A write is refused, not held to be applied later behind other
    // clients' backs.
    assert_eq!(
        t.submit(true, 60_000),
        Err(SubmitError::NotReady {
            phase: PhaseKind::Backoff,
            reason: Some(reason)
        })
    );
    assert_eq!(
        t.submit_class(Class::READ, 60_000),
        Err(SubmitError::NotReady {
            phase: PhaseKind::Backoff,
            reason: Some(reason)
        })
    );
    // GET: the cache answers (or the adapter fails it with the reason).
    let get = t.submit_class(Class::CACHED_READ, 60_000).unwrap();
    assert_eq!(t.drain(), [Rec::Resolved(get, Outcome::Fallback(reason))]);
    // The next attempt fails differently: callers get the newest diagnosis.
    t.advance();
    t.conn
        .handle_transport_failed(t.now, TransportError::Refused);
    t.drain();
    let refused = DisconnectReason::Transport(TransportError::Refused);
    assert_eq!(
        t.submit(false, 60_000),
        Err(SubmitError::NotReady {
            phase: PhaseKind::Backoff,
            reason: Some(refused)
        })
    );
}

#[test]
fn lost_in_flight_reads_are_never_absent_and_writes_are_never_invented() {
    let mut t = T::new(Config::default());
    t.ready();
    let get = t.submit_class(Class::CACHED_READ, 60_000).unwrap();
    let hget = t.submit_class(Class::READ, 60_000).unwrap();
    let set = t.submit(true, 60_000).unwrap();
    let incr = t.submit(false, 60_000).unwrap();
    assert_eq!(t.drain().len(), 4);
    t.conn.handle_transport_failed(t.now, TransportError::Reset);
    let out = t.drain();
    let reason = DisconnectReason::Transport(TransportError::Reset);
    assert_eq!(
        out.iter()
            .filter(|r| matches!(r, Rec::Resolved(..)))
            .collect::<Vec<_>>(),
        [&Rec::Resolved(
            incr,
            Outcome::Indeterminate(IndeterminateCause::ConnectionLost(reason))
        )]
    );
    // The reads and the resend-safe write get the next connection...
    assert_eq!(t.conn.queued(), 3);
    t.advance();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    // ...and when that one fails too, the reads are answered at once (the
    // GET from the cache), while the write, which may have run, waits for
    // a connection or its deadline.
    t.conn
        .handle_transport_failed(t.now, TransportError::Refused);
    let out = t.drain();
    let closed = DisconnectReason::Transport(TransportError::Refused);
    assert!(
        out.contains(&Rec::Resolved(get, Outcome::Fallback(closed))),
        "{out:?}"
    );
    assert!(
        out.contains(&Rec::Resolved(hget, Outcome::NotApplied(closed))),
        "{out:?}"
    );
    assert_eq!(t.conn.queued(), 1);
    t.advance();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    let out = t.finish_handshake();
    let cmds: Vec<_> = out.iter().filter(|r| matches!(r, Rec::Cmd(_))).collect();
    assert_eq!(cmds, [&Rec::Cmd(set)]);
}

#[test]
fn queue_policy_names_the_reason_at_the_deadline() {
    let mut config = Config::default();
    config.queue.offline = OfflinePolicy::Queue;
    let mut t = T::new(config);
    // Nothing known yet: a plain timeout.
    let early = t.submit(false, 10).unwrap();
    t.conn.handle_start(t.now);
    t.drain();
    assert_eq!(t.advance_by(10), [Rec::Resolved(early, Outcome::TimedOut)]);
    t.conn
        .handle_transport_failed(t.now, TransportError::Refused);
    t.drain();
    let late = t.submit(false, t.ms() + 50).unwrap();
    let out = t.advance_by(50);
    let reason = DisconnectReason::Transport(TransportError::Refused);
    assert!(
        out.contains(&Rec::Resolved(late, Outcome::NotApplied(reason))),
        "{out:?}"
    );
}

#[test]
fn a_cancelled_command_is_never_written() {
    let mut t = T::new(Config::default());
    // Queued while connecting, then abandoned by its caller.
    let queued = t.submit(false, 60_000).unwrap();
    let kept = t.submit(false, 60_000).unwrap();
    t.conn.handle_cancel(t.now, queued);
    assert_eq!(t.drain(), [Rec::Resolved(queued, Outcome::Cancelled)]);
    // `kept` is written as the connection becomes ready.
    t.ready();
    assert_eq!(t.conn.in_flight(), 1);
    // Queued while ready, handed out for writing, withdrawn before the write.
    let a = t.submit(false, 60_000).unwrap();
    let b = t.submit(false, 60_000).unwrap();
    assert_eq!(poll_until_cmd(&mut t), Some(a));
    t.conn.handle_cancel(t.now, a);
    assert_eq!(
        (t.conn.in_flight(), t.conn.in_flight_bytes()),
        (1, 20),
        "only `kept` is in flight"
    );
    assert_eq!(
        t.drain(),
        [Rec::Resolved(a, Outcome::Cancelled), Rec::Cmd(b)]
    );
    // Only `kept` and `b` are in flight: replies still match their requests.
    let replies = t.recv(b":1\r\n:2\r\n");
    let ids: Vec<_> = replies
        .iter()
        .filter_map(|r| match r {
            Received::Reply { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, [kept, b]);
    // Withdrawing a command that was written only discards its reply.
    let c = t.submit(false, 60_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(c)]);
    t.conn.handle_cancel(t.now, c);
    assert_eq!(
        t.drain(),
        [Rec::Resolved(
            c,
            Outcome::Indeterminate(IndeterminateCause::Cancelled)
        )]
    );
    assert_eq!(t.recv(b":3\r\n"), [Received::Internal { consumed: 4 }]);
    assert_eq!(t.conn.phase(), PhaseKind::Ready);
    // Cancelling twice, or an unknown id, changes nothing.
    t.conn.handle_cancel(t.now, c);
    t.conn.handle_cancel(t.now, CommandId(999));
    assert_eq!(t.drain(), []);
}

#[test]
fn a_cancelled_blocking_command_closes_its_connection() {
    let mut t = T::new(Config::default());
    t.ready();
    let blocking = Class::new(crate::command::Flags::WRITE.union(crate::command::Flags::BLOCKING));
    let blpop = t.submit_class(blocking, 60_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(blpop)]);
    t.conn.handle_cancel(t.now, blpop);
    let out = t.drain();
    assert_eq!(out.first(), Some(&Rec::Close), "{out:?}");
    assert!(out.contains(&Rec::Open));
    assert!(out.contains(&Rec::Resolved(
        blpop,
        Outcome::Indeterminate(IndeterminateCause::Cancelled)
    )));
    assert_eq!(t.conn.stats().disconnects, 1);
    assert!(!t.conn.fallback_active());
}

#[test]
fn bounds_match_their_names() {
    let mut config = Config::default();
    config.queue.max_bytes = 1_000;
    config.queue.max_in_flight_bytes = 100_000;
    let mut t = T::new(config);
    let big = |len| Submit {
        len,
        deadline: Instant::from_millis(60_000),
        class: Class::IDEMPOTENT_WRITE,
    };
    // Offline, the offline queue's bound.
    assert_eq!(
        t.conn.handle_submit(t.now, big(5_000)),
        Err(SubmitError::TooLarge {
            len: 5_000,
            max: 1_000,
            offline: true
        })
    );
    t.ready();
    // Ready: the in-flight bound, counting what is written and unanswered.
    let a = t.conn.handle_submit(t.now, big(60_000)).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(a)]);
    assert!(matches!(
        t.conn.handle_submit(t.now, big(50_000)),
        Err(SubmitError::Backpressure { .. })
    ));
    assert_eq!(
        t.conn.handle_submit(t.now, big(100_001)),
        Err(SubmitError::TooLarge {
            len: 100_001,
            max: 100_000,
            offline: false
        })
    );
    t.recv(b"+OK\r\n");
    assert!(t.conn.handle_submit(t.now, big(50_000)).is_ok());
    // The count bound is the offline queue's: while ready only the slots
    // bound it, and `room` says how many an adapter may take.
    assert_eq!(t.conn.room(), 8 - 1 - 1);
}

#[test]
fn busy_during_the_handshake_is_transient_and_keeps_the_server_words() {
    let mut t = T::new(Config::default());
    t.conn.handle_start(t.now);
    t.drain();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.recv(b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT.\r\n");
    let out = t.drain();
    assert!(
        out.contains(&Rec::Ev(Event::Disconnected {
            reason: DisconnectReason::Busy
        })),
        "{out:?}"
    );
    assert_eq!(t.conn.phase(), PhaseKind::Backoff);
    assert!(
        t.conn
            .server_message()
            .is_some_and(|m| m.starts_with("BUSY Redis is busy running a script")),
        "{:?}",
        t.conn.server_message()
    );
    // Once the script ends, the next attempt gets through.
    t.advance();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.finish_handshake();
    assert_eq!(t.conn.phase(), PhaseKind::Ready);
    assert_eq!(t.conn.server_message(), None);
}

#[test]
fn a_cancelled_resend_that_may_have_run_is_indeterminate() {
    let mut t = T::new(Config::default());
    t.ready();
    let set = t.submit(true, 60_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(set)]);
    t.conn.handle_transport_failed(t.now, TransportError::Reset);
    t.drain();
    t.advance();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.recv(HELLO3_REPLY);
    t.drain();
    t.recv(b"+PONG\r\n");
    // The resend is handed out, and its caller is gone: it is not written
    // again, but the first write may have run.
    assert_eq!(poll_until_cmd(&mut t), Some(set));
    t.conn.handle_cancel(t.now, set);
    assert_eq!(
        t.drain(),
        [Rec::Resolved(
            set,
            Outcome::Indeterminate(IndeterminateCause::Cancelled)
        )]
    );
}

// ----- what the mutation check found unobserved -----------------------------

#[test]
fn byte_and_slot_accounting_follows_every_move() {
    let mut config = Config::default();
    config.queue.offline = OfflinePolicy::Queue;
    let mut t = T::new(config);
    // Queued while connecting: 20 bytes each.
    let a = t.submit(true, 60_000).unwrap();
    let b = t.submit(false, 60_000).unwrap();
    let c = t.submit(false, 100).unwrap();
    assert_eq!((t.conn.queued(), t.conn.queued_bytes()), (3, 60));
    assert_eq!(t.conn.room(), 8 - 3 - 1);
    t.conn.handle_cancel(t.now, b);
    assert_eq!(t.conn.queued_bytes(), 40);
    // Resolved but not yet polled: still holds a slot.
    assert_eq!(t.conn.room(), 8 - 2 - 1 - 1);
    t.drain();
    t.conn.handle_start(t.now);
    t.drain();
    t.advance_by(100);
    assert_eq!(
        (t.conn.queued(), t.conn.queued_bytes()),
        (1, 20),
        "c expired"
    );
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.finish_handshake();
    assert_eq!((t.conn.queued_bytes(), t.conn.in_flight()), (0, 1));
    assert_eq!(t.conn.in_flight_bytes(), 20);
    // Lost in flight: `a` (resend-safe) goes back to the queue with its bytes.
    t.conn.handle_transport_failed(t.now, TransportError::Reset);
    t.drain();
    assert_eq!((t.conn.in_flight(), t.conn.in_flight_bytes()), (0, 0));
    assert_eq!((t.conn.queued(), t.conn.queued_bytes()), (1, 20));
    // Given up on: nothing is held any more.
    t.conn.handle_shutdown(t.now);
    t.drain();
    assert_eq!((t.conn.queued(), t.conn.queued_bytes()), (0, 0));
    assert_eq!(t.conn.room(), 8 - 1);
    let _ = (a, c);
}

#[test]
fn stats_count_what_happened() {
    let mut config = Config::default();
    config.ping_interval = Duration::from_millis(1_000);
    let mut t = T::new(config);
    t.ready();
    // A keepalive PING and its answer.
    let out = t.advance_by(1_000);
    assert!(
        out.contains(&Rec::Tx(b"*1\r\n$4\r\nPING\r\n".to_vec())),
        "{out:?}"
    );
    t.recv(b"+PONG\r\n");
    let answered = t.submit(true, 60_000).unwrap();
    let timed_out = t.submit(false, t.ms() + 10).unwrap();
    let cancelled = t.submit(false, 60_000).unwrap();
    t.conn.handle_cancel(t.now, cancelled);
    t.drain();
    t.recv(b"+OK\r\n");
    t.advance_by(10);
    t.conn.handle_transport_failed(t.now, TransportError::Reset);
    t.drain();
    let get = t.submit_class(Class::CACHED_READ, 60_000).unwrap();
    t.drain();
    let stats = t.conn.stats();
    assert_eq!(stats.timed_out, 0);
    assert_eq!(stats.connects, 1);
    assert_eq!(stats.ready_count, 1);
    assert_eq!(stats.pings_sent, 1);
    assert_eq!(
        stats.commands_submitted, 3,
        "the cache's answer is no submission"
    );
    assert_eq!(stats.replies, 1);
    assert_eq!(
        stats.indeterminate, 1,
        "the write that timed out unanswered"
    );
    assert_eq!(stats.cancelled, 1, "withdrawn before it was written");
    assert_eq!(stats.fallback, 1);
    assert_eq!(stats.disconnects, 1);
    assert!(stats.last_ping_rtt.is_some());
    let _ = (answered, timed_out, get);
    // Events nobody drains are counted when the oldest are dropped.
    for _ in 0..40 {
        t.conn.handle_retry(t.now);
        t.conn
            .handle_transport_failed(t.now, TransportError::Refused);
    }
    assert!(t.conn.stats().events_dropped > 0);
    t.drain();
    let before = t.conn.stats();
    let reset = t.submit(true, 60_000);
    assert!(reset.is_err(), "refused at submit: no outcome to count");
    assert_eq!(t.conn.stats().not_applied, before.not_applied);

    // Outcomes of queued commands: out of time with nothing known, and not
    // applied with the reason.
    let mut config = Config::default();
    config.queue.offline = OfflinePolicy::Queue;
    let mut t = T::new(config);
    t.submit(false, 10).unwrap();
    t.submit(false, 10).unwrap();
    t.advance_by(10);
    t.conn.handle_start(t.now);
    t.drain();
    t.conn
        .handle_transport_failed(t.now, TransportError::Refused);
    t.submit(false, t.ms() + 10).unwrap();
    t.submit(false, t.ms() + 10).unwrap();
    t.submit(false, t.ms() + 10).unwrap();
    t.advance_by(10);
    assert_eq!(
        (t.conn.stats().timed_out, t.conn.stats().not_applied),
        (2, 3)
    );
}

#[test]
fn no_ping_goes_out_while_a_command_awaits_its_reply() {
    let mut config = Config::default();
    config.ping_interval = Duration::from_millis(1_000);
    config.ping_timeout = Duration::from_millis(5_000);
    let mut t = T::new(config);
    t.ready();
    t.submit(true, 60_000).unwrap();
    t.drain();
    // The ping timer fires with the command unanswered: its reply (or its
    // absence, through `dead_at`) says all a PING would.
    for _ in 0..3 {
        let out = t.advance_by(1_000);
        assert!(!out.iter().any(|r| matches!(r, Rec::Tx(_))), "{out:?}");
    }
    assert_eq!(t.conn.stats().pings_sent, 0);
}

#[test]
fn wait_suspends_liveness_until_its_deadline_and_not_after() {
    let mut config = Config::default();
    config.ping_timeout = Duration::from_millis(300);
    let mut t = T::new(config);
    t.ready();
    let wait = Class::new(crate::command::Flags::SAME_CONN);
    let id = t.submit_class(wait, 2_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(id)]);
    // WAIT 1 1500 waits for a replica: silence is expected until its deadline.
    t.advance_by(1_500);
    assert_eq!(t.conn.phase(), PhaseKind::Ready);
    t.advance_by(400);
    assert_eq!(t.conn.phase(), PhaseKind::Ready);
    // After the deadline the connection is judged again, from the
    // deadline on, and it is not closed for the abandoned WAIT (it takes
    // nothing).
    let out = t.advance_by(100);
    assert!(out.contains(&Rec::Resolved(
        id,
        Outcome::Indeterminate(IndeterminateCause::TimedOut)
    )));
    assert_eq!(t.conn.phase(), PhaseKind::Ready);
    t.advance_by(100);
    assert_eq!(t.conn.phase(), PhaseKind::Ready, "judged from the deadline");
    t.advance_by(200);
    assert_eq!(t.conn.last_reason(), Some(DisconnectReason::PingTimeout));
}

#[test]
fn a_waiting_command_behind_an_abandoned_one_still_suspends_liveness() {
    let mut config = Config::default();
    config.ping_timeout = Duration::from_millis(300);
    let mut t = T::new(config);
    t.ready();
    let wait = Class::new(crate::command::Flags::SAME_CONN);
    let first = t.submit_class(wait, 1_000).unwrap();
    let second = t.submit_class(wait, 5_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(first), Rec::Cmd(second)]);
    t.advance_by(1_000);
    // The first is given up on; the second still waits within its deadline.
    t.advance_by(1_000);
    assert_eq!(t.conn.phase(), PhaseKind::Ready);
}

#[test]
fn an_abandoned_command_leaves_no_past_deadline_behind() {
    let mut t = T::new(Config::default());
    t.ready();
    t.submit(false, 100).unwrap();
    t.drain();
    t.advance_by(100);
    // Its reply may still come; the adapter must not be woken in a loop.
    let next = t.conn.poll_timeout().expect("liveness timer");
    assert!(
        next > t.now,
        "poll_timeout {next:?} is not after now {:?}",
        t.now
    );
}

#[test]
fn bounds_are_inclusive() {
    let mut config = Config::default();
    config.queue.offline = OfflinePolicy::Queue;
    config.queue.max_bytes = 40;
    let mut t = T::new(config);
    let exactly = |len| Submit {
        len,
        deadline: Instant::from_millis(60_000),
        class: Class::WRITE,
    };
    // One command of exactly the bound fits; two that add up to it too.
    assert!(t.conn.handle_submit(t.now, exactly(40)).is_ok());
    t.conn.handle_shutdown(t.now);
    let mut t = T::new(t.conn.config().clone());
    assert!(t.conn.handle_submit(t.now, exactly(20)).is_ok());
    assert!(t.conn.handle_submit(t.now, exactly(20)).is_ok());
    assert!(matches!(
        t.conn.handle_submit(t.now, exactly(1)),
        Err(SubmitError::Backpressure { .. })
    ));
}

#[test]
fn fail_fast_takes_commands_while_ready() {
    let mut config = Config::default();
    config.queue.offline = OfflinePolicy::FailFast;
    let mut t = T::new(config);
    t.ready();
    let id = t.submit(false, 60_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(id)]);
}

#[test]
fn tls_established_starts_the_handshake() {
    let mut config = Config::default();
    config.tls = true;
    let mut t = T::new(config);
    t.conn.handle_start(t.now);
    t.drain();
    t.conn.handle_transport_opened(t.now);
    assert_eq!(t.drain(), []);
    assert_eq!(t.conn.phase(), PhaseKind::TlsHandshake);
    t.conn.handle_tls_established(t.now);
    assert_eq!(
        t.drain(),
        [
            Rec::Ev(Event::Connected),
            Rec::Tx(hello_bytes(&["HELLO", "3"]))
        ]
    );
    // Over TLS, a close before any reply is not "TLS required".
    t.conn
        .handle_transport_failed(t.now, TransportError::Closed);
    assert_eq!(
        t.conn.last_reason(),
        Some(DisconnectReason::Transport(TransportError::Closed))
    );
}

#[test]
fn a_tls_record_once_ready_is_a_protocol_error() {
    let mut t = T::new(Config::default());
    t.ready();
    t.submit(true, 60_000).unwrap();
    t.drain();
    assert_eq!(t.recv(&[0x15, 0x03, 0x03, 0x00, 0x02]), [Received::Discard]);
    assert!(
        matches!(t.conn.last_reason(), Some(DisconnectReason::Protocol(_))),
        "{:?}",
        t.conn.last_reason()
    );
}

#[test]
fn a_probe_after_the_schedule_counts_past_it() {
    let mut config = Config::default();
    config.backoff.max_attempts = 2;
    let mut t = T::new(config);
    t.conn.handle_start(t.now);
    t.drain();
    let mut probes = Vec::new();
    for _ in 0..4 {
        t.conn
            .handle_transport_failed(t.now, TransportError::Refused);
        for r in t.advance() {
            if let Rec::Ev(Event::Connecting { attempt, .. }) = r {
                probes.push(attempt);
            }
        }
    }
    assert_eq!(probes, [1, 2, 3, 3]);
}

#[test]
fn phase_changes_are_announced_once_each() {
    let mut t = T::new(Config::default());
    t.conn.handle_start(t.now);
    let mut changes = Vec::new();
    loop {
        match t.conn.poll_output() {
            Output::Event(Event::PhaseChanged { from, to }) => changes.push((from, to)),
            Output::Wait(_) => break,
            _ => {}
        }
    }
    assert_eq!(changes, [(PhaseKind::Idle, PhaseKind::Connecting)]);
}

#[test]
fn names_and_messages() {
    assert_eq!(PhaseKind::TlsHandshake.as_str(), "tls-handshake");
    assert_eq!(PhaseKind::GaveUp.as_str(), "gave-up");
    let text = std::format!(
        "{}",
        SubmitError::TooLarge {
            len: 9,
            max: 8,
            offline: false
        }
    );
    assert!(text.contains("max_in_flight_bytes"), "{text}");
    let text = std::format!(
        "{}",
        SubmitError::NotReady {
            phase: PhaseKind::Backoff,
            reason: Some(DisconnectReason::Busy)
        }
    );
    assert!(text.contains("backoff") && text.contains("BUSY"), "{text}");
    let version = ServerVersion {
        major: 7,
        minor: 0,
        patch: 15,
    };
    assert_eq!(std::format!("{version}"), "7.0.15");
}

#[test]
fn a_tls_hello_nobody_answers_is_named_long_before_the_tls_timeout() {
    // `rediss://` to a plaintext Redis: it reads the hello as the start of
    // an inline command and says nothing.
    let mut config = Config::default();
    config.tls = true;
    config.tls_silence_timeout = Some(Duration::from_millis(2_000));
    let mut t = T::new(config.clone());
    t.conn.handle_start(t.now);
    t.drain();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.advance();
    assert_eq!(t.ms(), 2_000);
    assert_eq!(t.conn.last_reason(), Some(DisconnectReason::TlsUnanswered));
    assert!(DisconnectReason::TlsUnanswered.fix().contains("redis://"));

    // A TLS server that answers, slowly: the silence rule does not apply,
    // the TLS deadline does.
    let mut t = T::new(config);
    t.conn.handle_start(t.now);
    t.drain();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.now = Instant::from_millis(500);
    t.conn.handle_tls_bytes_received(t.now);
    t.advance();
    assert_eq!(t.ms(), 2_000);
    assert_eq!(t.conn.phase(), PhaseKind::TlsHandshake);
    t.advance();
    assert_eq!(t.ms(), 10_000);
    assert_eq!(t.conn.last_reason(), Some(DisconnectReason::TlsTimeout));
}

#[test]
fn a_handshake_reply_is_bounded_by_a_few_kib() {
    // An endless array of legal elements in answer to HELLO: judged at
    // 8 KiB, not buffered up to max_frame_len (512 MiB).
    let mut t = T::new(Config::default());
    t.conn.handle_start(t.now);
    t.drain();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    let mut endless = b"*2147483647\r\n".to_vec();
    while endless.len() < HANDSHAKE_MAX_REPLY - 9 {
        endless.extend_from_slice(b"$3\r\nabc\r\n");
    }
    assert!(matches!(
        t.recv(&endless).as_slice(),
        [Received::Incomplete { .. }]
    ));
    endless.extend_from_slice(b"$3\r\nabc\r\n");
    assert_eq!(t.recv(&endless), [Received::Discard]);
    assert_eq!(
        t.conn.last_reason(),
        Some(DisconnectReason::Protocol(
            resp::DecodeError::FrameTooLong {
                max: HANDSHAKE_MAX_REPLY
            }
        ))
    );
}

// ----- a reply still arriving ------------------------------------------------

/// A bulk string reply of `n` bytes.
fn bulk(n: usize) -> Vec<u8> {
    let mut v = std::format!("${n}\r\n").into_bytes();
    v.resize(v.len() + n, b'x');
    v.extend_from_slice(b"\r\n");
    v
}

impl T {
    /// Feeds `reply` as a transport would: `chunk` more bytes every
    /// `every_ms`, each time handing the core the whole unconsumed buffer
    /// (from the start of the frame) after the timers due by then. Returns
    /// what the core made of the last call (`None`: the connection was cut
    /// first) and every output on the way, with the time it came, in ms.
    #[track_caller]
    fn trickle(
        &mut self,
        reply: &[u8],
        chunk: usize,
        every_ms: u64,
    ) -> (Option<Received<'static>>, Vec<(u64, Rec)>) {
        let mut out = Vec::new();
        let mut end = 0;
        loop {
            let fired = self.advance_by(every_ms);
            out.extend(fired.into_iter().map(|r| (self.ms(), r)));
            if self.conn.phase() != PhaseKind::Ready {
                return (None, out);
            }
            end = (end + chunk).min(reply.len());
            let got = self.recv(&reply[..end]);
            out.extend(self.drain().into_iter().map(|r| (self.ms(), r)));
            match got.as_slice() {
                [Received::Incomplete { .. }] if end < reply.len() => {}
                _ => return (got.into_iter().last(), out),
            }
        }
    }
}

#[test]
fn a_large_reply_on_a_slow_link_is_not_a_dead_connection() {
    // 10 MiB at 1 MiB/s with ping_timeout at 5 s: no frame completes for
    // 10 s, but the bytes arriving prove the connection alive.
    let mut t = T::new(Config::default());
    t.ready();
    let get = t.submit_class(Class::READ, 60_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(get)]);
    let reply = bulk(10 * 1024 * 1024);
    let (last, out) = t.trickle(&reply, 100 * 1024, 100);
    assert_eq!(
        last,
        Some(Received::Reply {
            id: get,
            frame: Frame::Null,
            consumed: reply.len()
        })
    );
    assert_eq!(out, [], "no PING, no close, no resend");
    assert_eq!(t.ms(), 10_300);
    assert_eq!(t.conn.phase(), PhaseKind::Ready);
    assert_eq!(t.conn.stats().disconnects, 0);
    // Partial frames and whole ones alike: the next PING is due
    // ping_interval after the last byte.
    let mut out = t.advance();
    while out.is_empty() {
        out = t.advance();
    }
    assert_eq!(out, [Rec::Tx(b"*1\r\n$4\r\nPING\r\n".to_vec())]);
    assert_eq!(t.ms(), 15_300);
}

#[test]
fn a_reply_trickling_below_the_floor_is_cut_and_its_command_not_resent() {
    let mut t = T::new(Config::default());
    t.ready();
    // A resend-safe read, and a resend-safe write pipelined behind it.
    let read = t.submit_class(Class::READ, 60_000).unwrap();
    let set = t.submit(true, 60_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(read), Rec::Cmd(set)]);
    // 100 bytes a second: in the 5 s after the reply began (at 1 s), 400
    // bytes, under min_reply_rate's 1024.
    let (last, out) = t.trickle(&bulk(100_000), 100, 1_000);
    assert_eq!(last, None);
    assert_eq!(t.ms(), 6_000, "one ping_timeout after the reply began");
    let reason = DisconnectReason::SlowReply;
    assert_eq!(
        out[..2],
        [
            (6_000, Rec::Close),
            (6_000, Rec::Ev(Event::Disconnected { reason }))
        ]
    );
    // The server was producing the read's reply: it ran, so it is not
    // written again (the same slow reply again would help nobody). A read
    // changes nothing: not applied, with the reason.
    let resolved: Vec<_> = out
        .iter()
        .filter(|(_, r)| matches!(r, Rec::Resolved(..)))
        .collect();
    assert_eq!(
        resolved,
        [&(6_000, Rec::Resolved(read, Outcome::NotApplied(reason)))]
    );
    assert_eq!(t.conn.phase(), PhaseKind::Backoff);
    assert_eq!(reason.class(), FailureClass::Transient);
    // The write behind it never saw a byte of its reply: it gets the next
    // connection; the read does not.
    assert_eq!(t.conn.queued(), 1);
    t.advance();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    let out = t.finish_handshake();
    let cmds: Vec<_> = out.iter().filter(|r| matches!(r, Rec::Cmd(_))).collect();
    assert_eq!(cmds, [&Rec::Cmd(set)]);
}

#[test]
fn a_write_whose_reply_began_is_indeterminate_not_resent() {
    let mut t = T::new(Config::default());
    t.ready();
    let set = t.submit(true, 60_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(set)]);
    assert!(matches!(
        t.recv(b"$5\r\nhel").as_slice(),
        [Received::Incomplete { .. }]
    ));
    t.conn.handle_transport_failed(t.now, TransportError::Reset);
    let out = t.drain();
    let reset = DisconnectReason::Transport(TransportError::Reset);
    assert!(
        out.contains(&Rec::Resolved(
            set,
            Outcome::Indeterminate(IndeterminateCause::ConnectionLost(reset))
        )),
        "{out:?}"
    );
    assert_eq!(t.conn.queued(), 0, "never resent");
}

#[test]
fn only_the_oldest_requests_reply_can_have_begun() {
    let mut t = T::new(Config::default());
    t.ready();
    // Idle for ping_interval: a PING, then a write behind it.
    assert_eq!(t.advance(), [Rec::Tx(b"*1\r\n$4\r\nPING\r\n".to_vec())]);
    let set = t.submit(true, 60_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(set)]);
    // Part of the PING's answer: nothing about the write.
    assert!(matches!(
        t.recv(b"+PO").as_slice(),
        [Received::Incomplete { .. }]
    ));
    t.conn.handle_transport_failed(t.now, TransportError::Reset);
    t.drain();
    assert_eq!(t.conn.queued(), 1, "the write is resent");
    t.advance();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    assert!(t.finish_handshake().contains(&Rec::Cmd(set)));
    // Part of a push (RESP3 `>`), which is no reply: nothing about it either.
    assert!(matches!(
        t.recv(b">2\r\n+message\r\n").as_slice(),
        [Received::Incomplete { .. }]
    ));
    t.conn.handle_transport_failed(t.now, TransportError::Reset);
    t.drain();
    assert_eq!(t.conn.queued(), 1, "the write is resent again");
}

#[test]
fn a_command_deadline_holds_while_its_reply_arrives() {
    let mut t = T::new(Config::default());
    t.ready();
    let get = t.submit_class(Class::READ, 3_000).unwrap();
    let incr = t.submit(false, 3_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(get), Rec::Cmd(incr)]);
    let reply = bulk(10 * 1024 * 1024);
    let (last, out) = t.trickle(&reply, 100 * 1024, 100);
    // Out of time at 3 s, long before the reply is whole...
    assert_eq!(
        out,
        [
            (3_000, Rec::Resolved(get, Outcome::TimedOut)),
            (
                3_000,
                Rec::Resolved(incr, Outcome::Indeterminate(IndeterminateCause::TimedOut))
            )
        ]
    );
    // ...and the reply, when whole, is discarded, on the same connection.
    assert_eq!(
        last,
        Some(Received::Internal {
            consumed: reply.len()
        })
    );
    assert_eq!(t.recv(b":1\r\n"), [Received::Internal { consumed: 4 }]);
    assert_eq!(t.conn.phase(), PhaseKind::Ready);
    assert_eq!(t.conn.stats().disconnects, 0);
}

#[test]
fn with_the_floor_off_a_slow_reply_lives_while_bytes_come() {
    let mut config = Config::default();
    config.min_reply_rate = 0;
    let mut t = T::new(config);
    t.ready();
    let get = t.submit_class(Class::READ, 120_000).unwrap();
    t.drain();
    // 10 bytes every 4 s: far under the default floor, never silent for
    // ping_timeout.
    let reply = bulk(200);
    let (last, out) = t.trickle(&reply, 10, 4_000);
    assert_eq!(
        last,
        Some(Received::Reply {
            id: get,
            frame: Frame::Null,
            consumed: reply.len()
        })
    );
    assert_eq!(out, []);
    assert_eq!(t.ms(), 84_000);
    assert_eq!(t.conn.stats().disconnects, 0);
}

#[test]
fn silence_in_the_middle_of_a_reply_is_a_dead_connection() {
    let mut t = T::new(Config::default());
    t.ready();
    let get = t.submit_class(Class::READ, 60_000).unwrap();
    t.drain();
    t.now = Instant::from_millis(1_000);
    let reply = bulk(100_000);
    assert!(matches!(
        t.recv(&reply[..5_000]).as_slice(),
        [Received::Incomplete { .. }]
    ));
    // Not one more byte: dead, not slow.
    let mut out = t.advance();
    while out.is_empty() {
        out = t.advance();
    }
    assert_eq!(t.ms(), 6_000);
    assert_eq!(
        out[..2],
        [
            Rec::Close,
            Rec::Ev(Event::Disconnected {
                reason: DisconnectReason::PingTimeout
            })
        ]
    );
    assert!(
        out.contains(&Rec::Resolved(
            get,
            Outcome::NotApplied(DisconnectReason::PingTimeout)
        )),
        "{out:?}"
    );
}

#[test]
fn the_keepalive_ping_cannot_be_cancelled() {
    // Found by the conn fuzz target: the PING's slot carries CommandId(0),
    // which an adapter may pass by mistake; it was resolved as a command.
    let mut t = T::new(Config::default());
    t.ready();
    assert_eq!(t.advance(), [Rec::Tx(b"*1\r\n$4\r\nPING\r\n".to_vec())]);
    t.conn.handle_cancel(t.now, CommandId(0));
    assert_eq!(t.drain(), []);
    t.now = Instant::from_millis(5_020);
    assert_eq!(t.recv(b"+PONG\r\n"), [Received::Internal { consumed: 7 }]);
    assert_eq!(
        t.conn.stats().last_ping_rtt,
        Some(Duration::from_millis(20))
    );
}

#[test]
fn a_reply_cut_by_a_reconnect_leaves_nothing_behind_in_the_decoder() {
    // The decoder keeps its place in a frame that arrives in pieces. When
    // the connection is lost mid-frame, the next connection's first bytes
    // (longer than what was held) are a frame of their own: decoding them
    // from the old place would read HELLO's reply as the rest of the array.
    let mut t = T::new(Config::default());
    t.ready();
    let read = t.submit_class(Class::READ, 60_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(read)]);
    assert_eq!(
        t.recv(b"*3\r\n$5\r\nhello\r\n$5\r\nworld\r\n"),
        [Received::Incomplete { needed: None }]
    );
    t.conn.handle_transport_failed(t.now, TransportError::Reset);
    t.drain();
    t.advance();
    t.conn.handle_transport_opened(t.now);
    t.drain();
    t.finish_handshake();
    assert_eq!(t.conn.phase(), PhaseKind::Ready);
    // And a frame that arrives in pieces on the new connection decodes
    // whole, from its own start.
    let get = t.submit_class(Class::READ, 60_000).unwrap();
    t.drain();
    let reply = b"*2\r\n$1\r\nx\r\n$1\r\ny\r\n";
    for end in 1..reply.len() {
        assert!(
            matches!(
                t.conn.handle_receive(t.now, &reply[..end]),
                Received::Incomplete { .. }
            ),
            "{end}"
        );
    }
    match t.conn.handle_receive(t.now, reply) {
        Received::Reply {
            id,
            frame: Frame::Array(items),
            consumed,
        } => {
            assert_eq!((id, consumed), (get, reply.len()));
            let items: Vec<_> = items.iter().collect();
            assert_eq!(items, [Frame::BulkString(b"x"), Frame::BulkString(b"y")]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_server_that_began_to_answer_then_closed_is_not_taken_for_tls_only() {
    // Part of a reply to HELLO, then the connection closes: the server
    // speaks plaintext RESP, so "requires TLS" would send the user the
    // wrong way. It is the closed transport, as it is.
    let mut t = T::new(Config::default());
    t.ready_until_hello();
    assert_eq!(
        t.recv(b"-ERR max number of clients rea"),
        [Received::Incomplete { needed: None }]
    );
    t.conn
        .handle_transport_failed(t.now, TransportError::Closed);
    assert_eq!(
        t.conn.last_reason(),
        Some(DisconnectReason::Transport(TransportError::Closed))
    );
}

#[test]
fn without_resend_lost_a_lost_resend_safe_command_is_resolved_at_once() {
    // A cluster router wants the command back to send it to the node that
    // took over the slot, not left waiting for a node that may never return.
    let mut config = Config::default();
    config.queue.offline = OfflinePolicy::FailFast;
    config.queue.resend_lost = false;
    let mut t = T::new(config);
    t.ready();
    let write = t.submit(true, t.ms() + 5_000).unwrap();
    let read = t.submit_class(Class::READ, t.ms() + 5_000).unwrap();
    assert_eq!(t.drain(), [Rec::Cmd(write), Rec::Cmd(read)]);
    t.conn.handle_transport_failed(t.now, TransportError::Reset);
    let resolved: Vec<_> = t
        .drain()
        .into_iter()
        .filter(|r| matches!(r, Rec::Resolved(..)))
        .collect();
    let reason = DisconnectReason::Transport(TransportError::Reset);
    assert_eq!(
        resolved,
        [
            Rec::Resolved(read, Outcome::NotApplied(reason)),
            Rec::Resolved(
                write,
                Outcome::Indeterminate(IndeterminateCause::ConnectionLost(reason))
            ),
        ]
    );
    assert_eq!(t.conn.queued(), 0);
}

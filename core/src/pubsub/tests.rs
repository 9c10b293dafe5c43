//! Transcript tests: a `Connection` and its `Subscriptions` driven together
//! the way an adapter does, with the server's bytes as Redis 7.0 sends them.

extern crate std;
use std::string::String;
use std::vec::Vec;

use super::*;
use crate::config::Config;
use crate::conn::{Connection, Output, Received};
use crate::resp::{Decoded, decode};
use crate::time::Duration;

const HELLO3: &[u8] =
    b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n";
const HELLO2: &[u8] =
    b"*6\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:2\r\n";

type Subs = Subscriptions<8, 64>;

/// What the adapter saw, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Message(Kind, String, Option<String>, String),
    Subscribed(Kind, String, Option<Gap>),
    Unsubscribed(Kind, String),
    Dropped(Kind, String),
    Other,
    Ignored,
    Refused,
    Reply,
    Internal,
}

struct T {
    conn: Connection<8>,
    subs: Subs,
    now: Instant,
    /// Requests the adapter wrote (the core's own bytes and pub/sub).
    written: Vec<String>,
    events: Vec<PubSubEvent>,
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl T {
    fn new(config: Config) -> T {
        let mut t = T {
            conn: Connection::new(config),
            subs: Subs::new(),
            now: Instant::ZERO,
            written: Vec::new(),
            events: Vec::new(),
        };
        t.conn.handle_start(t.now);
        t.pump();
        t.conn.handle_transport_opened(t.now);
        t.pump();
        t
    }

    fn ready(protocol: u8, subscriber: bool) -> T {
        let config = Config {
            subscriber,
            protocol: if protocol == 2 {
                crate::config::Protocol::Resp2
            } else {
                crate::config::Protocol::Resp3
            },
            ..Config::default()
        };
        let mut t = T::new(config);
        t.recv(if protocol == 2 { HELLO2 } else { HELLO3 });
        t.recv(b"+PONG\r\n");
        assert!(t.conn.is_ready());
        t.written.clear();
        t
    }

    /// The adapter's loop: drain the connection, feed its events to the
    /// subscriptions, write their requests while there is room.
    fn pump(&mut self) {
        for _ in 0..100 {
            match self.conn.poll_output() {
                Output::Transmit(b) => self.written.push(s(b)),
                Output::Event(crate::conn::Event::Ready { .. }) => self.subs.handle_ready(self.now),
                Output::Event(crate::conn::Event::Disconnected { .. }) => {
                    self.subs.handle_lost(self.now)
                }
                Output::Wait(_) => break,
                _ => {}
            }
        }
        let mut buf = [0u8; 64];
        for _ in 0..100 {
            if !self.conn.is_ready() || self.conn.room() == 0 {
                break;
            }
            match self.subs.poll_request(self.now, &mut buf) {
                Some(Ok(req)) => {
                    assert!(self.conn.handle_pubsub_written(self.now, req.confirmations));
                    self.written.push(s(&buf[..req.len]));
                }
                Some(Err(needed)) => panic!("64 bytes should do, {needed} needed"),
                None => break,
            }
        }
        while let Some(e) = self.subs.poll_event() {
            self.events.push(e);
        }
    }

    fn recv(&mut self, bytes: &[u8]) -> Vec<Seen> {
        let mut seen = Vec::new();
        let mut rest = bytes;
        for _ in 0..100 {
            if rest.is_empty() {
                break;
            }
            let (item, consumed) = match self.conn.handle_receive(self.now, rest) {
                Received::Push { frame, consumed } => {
                    let item = match self.subs.handle_push(self.now, &frame) {
                        Delivery::Message {
                            kind,
                            channel,
                            pattern,
                            payload,
                        } => Seen::Message(kind, s(channel), pattern.map(s), s(payload)),
                        Delivery::Subscribed { kind, name, gap } => {
                            Seen::Subscribed(kind, s(name), gap)
                        }
                        Delivery::Unsubscribed { kind, name } => Seen::Unsubscribed(kind, s(name)),
                        Delivery::Dropped { kind, name } => Seen::Dropped(kind, s(name)),
                        Delivery::Other => Seen::Other,
                        Delivery::Ignored => Seen::Ignored,
                    };
                    (item, consumed)
                }
                Received::PubSubRefused { frame, consumed } => {
                    self.subs.handle_refused(self.now, &frame);
                    (Seen::Refused, consumed)
                }
                Received::Reply { consumed, .. } => (Seen::Reply, consumed),
                Received::Internal { consumed } => (Seen::Internal, consumed),
                other => panic!("unexpected {other:?}"),
            };
            if item != Seen::Internal {
                seen.push(item);
            }
            rest = &rest[consumed..];
        }
        self.pump();
        seen
    }

    fn lose(&mut self, ms: u64) {
        self.now = self.now + Duration::from_millis(ms);
        self.conn
            .handle_transport_failed(self.now, crate::TransportError::Reset);
        self.pump();
        // Backoff, then a new connection.
        for _ in 0..10 {
            if let Some(at) = self.conn.poll_timeout() {
                self.now = at;
                self.conn.handle_timeout(at);
                self.pump();
            }
            if self.conn.phase() == crate::PhaseKind::Connecting {
                break;
            }
        }
        self.conn.handle_transport_opened(self.now);
        self.pump();
    }

    fn reconnect(&mut self, ms: u64) {
        self.lose(ms);
        self.written.clear();
        self.recv(HELLO3);
        self.recv(b"+PONG\r\n");
        // Only what came after the readiness PING.
        self.written.retain(|w| w != "*1\r\n$4\r\nPING\r\n");
    }
}

fn push(items: &[&str]) -> Vec<u8> {
    let mut out = std::format!(">{}\r\n", items.len()).into_bytes();
    for item in items {
        match item.strip_prefix(':') {
            Some(n) => out.extend(std::format!(":{n}\r\n").bytes()),
            None => out.extend(std::format!("${}\r\n{item}\r\n", item.len()).bytes()),
        }
    }
    out
}

/// The server's confirmations of a SUBSCRIBE of `names`.
fn confirms(names: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        out.extend(push(&["subscribe", name, &std::format!(":{}", i + 1)]));
    }
    out
}

fn array(items: &[&str]) -> Vec<u8> {
    let mut out = push(items);
    out[0] = b'*';
    out
}

fn sub(kind: Kind, name: &str) -> Seen {
    Seen::Subscribed(kind, name.into(), None)
}

#[test]
fn subscribe_writes_once_ready_and_confirmations_are_pushes() {
    let mut t = T::new(Config::default());
    t.subs.subscribe(Kind::Channel, b"news").unwrap();
    t.subs.subscribe(Kind::Pattern, b"user:*").unwrap();
    t.pump();
    assert!(
        t.written.iter().all(|w| !w.contains("SUBSCRIBE")),
        "not before ready"
    );
    t.recv(HELLO3);
    t.written.clear();
    t.recv(b"+PONG\r\n");
    assert_eq!(
        t.written,
        [
            "*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n",
            "*2\r\n$10\r\nPSUBSCRIBE\r\n$6\r\nuser:*\r\n"
        ]
    );
    let mut bytes = push(&["subscribe", "news", ":1"]);
    bytes.extend(push(&["psubscribe", "user:*", ":2"]));
    bytes.extend(push(&["message", "news", "hello"]));
    bytes.extend(push(&["pmessage", "user:*", "user:7", "x"]));
    assert_eq!(
        t.recv(&bytes),
        [
            sub(Kind::Channel, "news"),
            sub(Kind::Pattern, "user:*"),
            Seen::Message(Kind::Channel, "news".into(), None, "hello".into()),
            Seen::Message(
                Kind::Pattern,
                "user:7".into(),
                Some("user:*".into()),
                "x".into()
            ),
        ]
    );
    assert_eq!(t.subs.confirmed(), 2);
    assert!(t.events.is_empty(), "a first subscribe is no resubscribe");
    // The placeholders are gone: the next reply is the keepalive PING's.
    assert_eq!(t.conn.in_flight(), 0);
}

#[test]
fn after_a_reconnect_the_core_resubscribes_and_reports_the_gap() {
    let mut t = T::ready(3, false);
    t.subs.subscribe(Kind::Channel, b"a").unwrap();
    t.subs.subscribe(Kind::Channel, b"b").unwrap();
    t.pump();
    let confirm = confirms(&["a", "b"]);
    t.recv(&confirm);
    let lost_at = t.now + Duration::from_millis(1000);
    t.reconnect(1000);
    assert_eq!(
        t.written,
        ["*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n"]
    );
    assert_eq!(t.subs.confirmed(), 0);
    assert_eq!(t.subs.down_since(), Some(lost_at));
    let back = t.now;
    let seen = t.recv(&confirm);
    let gap = Some(Gap {
        since: lost_at,
        until: back,
    });
    assert_eq!(
        seen,
        [
            Seen::Subscribed(Kind::Channel, "a".into(), gap),
            Seen::Subscribed(Kind::Channel, "b".into(), gap)
        ]
    );
    assert_eq!(
        t.events,
        [PubSubEvent::Resubscribed {
            down_since: lost_at,
            confirmed_at: back,
            subscriptions: 2
        }]
    );
    assert_eq!(t.subs.stats().gaps, 2);
    // A second loss is a second gap, from its own start.
    t.reconnect(500);
    let seen = t.recv(&push(&["subscribe", "a", ":1"]));
    assert!(matches!(&seen[..], [Seen::Subscribed(_, _, Some(g))] if g.since > back));
    assert_eq!(t.events.len(), 1, "b is not back yet");
}

#[test]
fn a_subscription_sent_but_not_confirmed_when_lost_is_sent_again() {
    let mut t = T::ready(3, false);
    t.subs.subscribe(Kind::Channel, b"a").unwrap();
    t.pump();
    t.reconnect(10);
    assert_eq!(t.written, ["*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n"]);
    // Never confirmed before: no gap to report, no resubscribe event.
    assert_eq!(
        t.recv(&push(&["subscribe", "a", ":1"])),
        [sub(Kind::Channel, "a")]
    );
    assert!(t.events.is_empty());
}

#[test]
fn unsubscribe_is_written_and_confirmed_then_forgotten() {
    let mut t = T::ready(3, false);
    t.subs.subscribe(Kind::Channel, b"a").unwrap();
    t.subs.subscribe(Kind::Channel, b"b").unwrap();
    t.pump();
    let confirm = confirms(&["a", "b"]);
    t.recv(&confirm);
    t.written.clear();
    assert!(t.subs.unsubscribe(Kind::Channel, b"a"));
    assert!(!t.subs.unsubscribe(Kind::Channel, b"a"), "once");
    assert!(!t.subs.is_wanted(Kind::Channel, b"a"));
    t.pump();
    assert_eq!(t.written, ["*2\r\n$11\r\nUNSUBSCRIBE\r\n$1\r\na\r\n"]);
    assert_eq!(
        t.recv(&push(&["unsubscribe", "a", ":1"])),
        [Seen::Unsubscribed(Kind::Channel, "a".into())]
    );
    assert_eq!(
        t.subs.wanted().collect::<Vec<_>>(),
        [(Kind::Channel, &b"b"[..])]
    );
    // After a reconnect only b comes back.
    t.reconnect(10);
    assert_eq!(t.written, ["*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nb\r\n"]);
}

#[test]
fn subscribing_again_while_the_unsubscribe_is_in_flight_keeps_it() {
    let mut t = T::ready(3, false);
    t.subs.subscribe(Kind::Channel, b"a").unwrap();
    t.pump();
    t.recv(&push(&["subscribe", "a", ":1"]));
    t.subs.unsubscribe(Kind::Channel, b"a");
    t.pump();
    assert_eq!(t.subs.subscribe(Kind::Channel, b"a"), Ok(true));
    assert_eq!(t.recv(&push(&["unsubscribe", "a", ":0"])), [Seen::Ignored]);
    // Wanted again, so subscribed again.
    assert!(t.written.last().unwrap().contains("SUBSCRIBE\r\n$1\r\na"));
    assert_eq!(
        t.recv(&push(&["subscribe", "a", ":1"])),
        [sub(Kind::Channel, "a")]
    );
}

#[test]
fn a_channel_the_server_drops_is_subscribed_again_with_a_gap() {
    let mut t = T::ready(3, false);
    t.subs.subscribe(Kind::Shard, b"orders").unwrap();
    t.pump();
    t.recv(&push(&["ssubscribe", "orders", ":1"]));
    t.written.clear();
    let dropped_at = t.now;
    // The slot moved: Redis sends `sunsubscribe` unasked.
    assert_eq!(
        t.recv(&push(&["sunsubscribe", "orders", ":0"])),
        [Seen::Dropped(Kind::Shard, "orders".into())]
    );
    assert_eq!(t.written, ["*2\r\n$10\r\nSSUBSCRIBE\r\n$6\r\norders\r\n"]);
    t.now = t.now + Duration::from_millis(5);
    let seen = t.recv(&push(&["ssubscribe", "orders", ":1"]));
    assert_eq!(
        seen,
        [Seen::Subscribed(
            Kind::Shard,
            "orders".into(),
            Some(Gap {
                since: dropped_at,
                until: t.now
            })
        )]
    );
}

#[cfg(feature = "cluster")]
#[test]
fn shard_channels_go_one_slot_per_request() {
    let mut t = T::ready(3, false);
    // {a}x and {a}y share a slot; b is elsewhere.
    assert_eq!(crate::cluster::slot(b"{a}x"), crate::cluster::slot(b"{a}y"));
    assert_ne!(crate::cluster::slot(b"{a}x"), crate::cluster::slot(b"b"));
    for name in ["{a}x", "b", "{a}y"] {
        t.subs.subscribe(Kind::Shard, name.as_bytes()).unwrap();
    }
    t.pump();
    assert_eq!(
        t.written,
        [
            "*3\r\n$10\r\nSSUBSCRIBE\r\n$4\r\n{a}x\r\n$4\r\n{a}y\r\n",
            "*2\r\n$10\r\nSSUBSCRIBE\r\n$1\r\nb\r\n"
        ]
    );
}

#[test]
fn an_acl_refusal_ends_those_subscriptions_not_the_connection() {
    let mut t = T::ready(3, false);
    t.subs.subscribe(Kind::Channel, b"secret").unwrap();
    t.pump();
    t.subs.subscribe(Kind::Channel, b"open").unwrap();
    t.pump();
    assert_eq!(t.written.len(), 2);
    let mut bytes =
        b"-NOPERM this user has no permissions to access one of the channels used as arguments\r\n"
            .to_vec();
    bytes.extend(push(&["subscribe", "open", ":1"]));
    assert_eq!(t.recv(&bytes), [Seen::Refused, sub(Kind::Channel, "open")]);
    assert!(t.conn.is_ready(), "the connection is fine");
    let (names, text) = t.subs.refused();
    assert_eq!(names.collect::<Vec<_>>(), [(Kind::Channel, &b"secret"[..])]);
    assert!(text.starts_with(b"NOPERM"));
    t.subs.clear_refused();
    assert_eq!(t.subs.refused().0.count(), 0, "cleared");
    assert_eq!(t.subs.len(), 1);
    // Not retried after a reconnect.
    t.reconnect(10);
    assert_eq!(t.written, ["*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nopen\r\n"]);
}

#[test]
fn a_reply_where_a_confirmation_is_due_breaks_the_connection() {
    let mut t = T::ready(3, false);
    t.subs.subscribe(Kind::Channel, b"a").unwrap();
    t.pump();
    let r = t.conn.handle_receive(t.now, b"+OK\r\n");
    assert_eq!(r, Received::Discard);
    assert!(!t.conn.is_ready());
}

#[test]
fn resp2_subscriber_connection_reads_pubsub_arrays_as_pushes() {
    let mut t = T::ready(2, true);
    t.subs.subscribe(Kind::Channel, b"a").unwrap();
    t.pump();
    let mut bytes = array(&["subscribe", "a", ":1"]);
    bytes.extend(array(&["message", "a", "m1"]));
    assert_eq!(
        t.recv(&bytes),
        [
            sub(Kind::Channel, "a"),
            Seen::Message(Kind::Channel, "a".into(), None, "m1".into())
        ]
    );
    // The keepalive PING of a subscribed RESP2 connection is answered with
    // an array ("pong", ""): a reply, matched to the PING.
    t.now = t.now + Duration::from_secs(6);
    t.conn.handle_timeout(t.now);
    t.pump();
    assert_eq!(t.written.last().unwrap(), "*1\r\n$4\r\nPING\r\n");
    assert_eq!(t.recv(&array(&["pong", ""])), []);
    assert!(t.conn.is_ready());
    assert_eq!(t.conn.in_flight(), 0);
}

#[test]
fn without_the_subscriber_flag_a_resp2_array_is_a_reply() {
    let mut t = T::ready(2, false);
    let id = t
        .conn
        .handle_submit(
            t.now,
            crate::Submit {
                len: 10,
                deadline: t.now + Duration::from_secs(1),
                class: crate::command::Class::UNKNOWN,
            },
        )
        .unwrap();
    t.pump();
    let _ = id;
    // An LRANGE that happens to hold ["message", "a", "b"].
    assert_eq!(t.recv(&array(&["message", "a", "b"])), [Seen::Reply]);
}

#[test]
fn other_pushes_are_for_the_application() {
    let mut t = T::ready(3, false);
    assert_eq!(t.recv(&push(&["invalidate", "k"])), [Seen::Other]);
    assert_eq!(t.recv(b">2\r\n$10\r\ninvalidate\r\n_\r\n"), [Seen::Other]);
    assert_eq!(
        t.recv(&push(&["tracking-redir-broken", ":7"])),
        [Seen::Other]
    );
    assert!(t.conn.is_ready());
}

#[test]
fn names_per_request_and_a_buffer_too_small() {
    let mut subs: Subscriptions<300, 4096> = Subscriptions::new();
    for i in 0..300 {
        subs.subscribe(Kind::Channel, std::format!("c{i}").as_bytes())
            .unwrap();
    }
    subs.handle_ready(Instant::ZERO);
    let mut small = [0u8; 16];
    let Some(Err(needed)) = subs.poll_request(Instant::ZERO, &mut small) else {
        panic!("too small");
    };
    let mut buf = std::vec![0u8; needed];
    let mut counts = Vec::new();
    for _ in 0..10 {
        match subs.poll_request(Instant::ZERO, &mut buf) {
            Some(Ok(req)) => {
                let Ok(Decoded::Frame { consumed, .. }) =
                    decode(&buf[..req.len], &Default::default())
                else {
                    panic!("a valid command");
                };
                assert_eq!(consumed, req.len);
                counts.push(req.confirmations);
            }
            Some(Err(n)) => buf.resize(n, 0),
            None => break,
        }
    }
    assert_eq!(counts, [128, 128, 44]);
}

#[test]
fn capacity_and_bad_names_are_typed_errors() {
    let mut subs: Subscriptions<2, 8> = Subscriptions::new();
    assert_eq!(
        subs.subscribe(Kind::Channel, b""),
        Err(PubSubError::EmptyName)
    );
    assert_eq!(subs.subscribe(Kind::Channel, b"abc"), Ok(true));
    assert_eq!(subs.subscribe(Kind::Channel, b"abc"), Ok(false));
    assert_eq!(
        subs.subscribe(Kind::Channel, b"123456"),
        Err(PubSubError::NamesTooLong { max: 8 })
    );
    assert_eq!(
        subs.subscribe(Kind::Pattern, b"abc"),
        Ok(true),
        "another kind"
    );
    assert_eq!(
        subs.subscribe(Kind::Channel, b"x"),
        Err(PubSubError::TooMany { max: 2 })
    );
    // Removing keeps the names packed: the freed bytes are usable.
    assert!(subs.unsubscribe(Kind::Channel, b"abc"));
    assert_eq!(subs.subscribe(Kind::Channel, b"12345"), Ok(true));
    assert_eq!(
        subs.wanted().collect::<Vec<_>>(),
        [(Kind::Pattern, &b"abc"[..]), (Kind::Channel, &b"12345"[..])]
    );
}

proptest::proptest! {
    #[test]
    fn arbitrary_pushes_never_panic(items in proptest::collection::vec(
        proptest::prop_oneof![
            proptest::strategy::Just(std::string::String::from("message")),
            proptest::strategy::Just(std::string::String::from("subscribe")),
            proptest::strategy::Just(std::string::String::from("sunsubscribe")),
            proptest::strategy::Just(std::string::String::from("pmessage")),
            "[a-z:]{0,6}",
        ], 0..5)) {
        let refs: Vec<&str> = items.iter().map(|s| s.as_str()).collect();
        let bytes = push(&refs);
        let mut subs: Subscriptions<4, 32> = Subscriptions::new();
        let _ = subs.subscribe(Kind::Channel, b"a");
        if let Ok(Decoded::Frame { frame, .. }) = decode(&bytes, &Default::default()) {
            let _ = subs.handle_push(Instant::ZERO, &frame);
            let _ = PubSubFrame::parse(&frame);
        }
    }
}

#[test]
fn a_message_between_confirmations_answers_nothing() {
    let mut t = T::ready(3, false);
    t.subs.subscribe(Kind::Channel, b"a").unwrap();
    t.subs.subscribe(Kind::Channel, b"b").unwrap();
    t.pump();
    t.recv(&push(&["subscribe", "a", ":1"]));
    assert_eq!(t.conn.in_flight(), 1, "one confirmation still due");
    t.recv(&push(&["message", "a", "early"]));
    assert_eq!(t.conn.in_flight(), 1, "a message is not a confirmation");
    t.recv(&push(&["subscribe", "b", ":2"]));
    assert_eq!(t.conn.in_flight(), 0);
}

#[test]
fn errors_say_what_to_do() {
    let text = |e: PubSubError| std::format!("{e}");
    assert!(text(PubSubError::TooMany { max: 3 }).contains("at most 3"));
    assert!(text(PubSubError::NamesTooLong { max: 9 }).contains("9 bytes"));
    assert!(text(PubSubError::EmptyName).contains("empty"));
}

#[test]
fn shard_and_pattern_messages_are_told_apart_from_other_pushes() {
    let mut t = T::ready(3, false);
    t.subs.subscribe(Kind::Shard, b"s").unwrap();
    t.pump();
    t.recv(&push(&["ssubscribe", "s", ":1"]));
    assert_eq!(
        t.recv(&push(&["smessage", "s", "x"])),
        [Seen::Message(Kind::Shard, "s".into(), None, "x".into())]
    );
    // Four elements but not a pmessage: not a pub/sub frame.
    assert_eq!(t.recv(&push(&["tracking", "a", "b", "c"])), [Seen::Other]);
    assert_eq!(Kind::Channel.as_str(), "channel");
    assert_eq!(Kind::Pattern.as_str(), "pattern");
    assert_eq!(Kind::Shard.as_str(), "shard channel");
}

#[test]
fn getters_follow_the_states() {
    let mut t = T::ready(3, false);
    assert!(t.subs.is_empty());
    t.subs.subscribe(Kind::Channel, b"a").unwrap();
    assert!(!t.subs.is_empty());
    assert!(t.subs.is_wanted(Kind::Channel, b"a"));
    assert!(!t.subs.is_wanted(Kind::Pattern, b"a"));
    assert!(!t.subs.is_confirmed(Kind::Channel, b"a"));
    t.pump();
    assert_eq!(t.subs.stats().requests, 1);
    t.recv(&push(&["subscribe", "a", ":1"]));
    assert!(t.subs.is_confirmed(Kind::Channel, b"a"));
    assert!(!t.subs.is_confirmed(Kind::Channel, b"b"));
}

#[test]
fn changing_ones_mind_before_the_request_goes_out() {
    let mut t = T::ready(3, false);
    t.subs.subscribe(Kind::Channel, b"a").unwrap();
    t.pump();
    t.recv(&push(&["subscribe", "a", ":1"]));
    t.written.clear();
    // Unsubscribed and subscribed again before anything was written:
    // nothing to send, still confirmed.
    assert!(t.subs.unsubscribe(Kind::Channel, b"a"));
    assert_eq!(t.subs.subscribe(Kind::Channel, b"a"), Ok(true));
    assert!(t.subs.is_confirmed(Kind::Channel, b"a"));
    t.pump();
    assert!(t.written.is_empty(), "{:?}", t.written);
    // Unsubscribe written, subscribed again, unsubscribed again: the
    // unsubscribe in flight is what stands.
    assert!(t.subs.unsubscribe(Kind::Channel, b"a"));
    t.pump();
    assert!(!t.subs.unsubscribe(Kind::Channel, b"a"), "already leaving");
    assert_eq!(t.subs.subscribe(Kind::Channel, b"a"), Ok(true));
    assert!(t.subs.unsubscribe(Kind::Channel, b"a"));
    assert_eq!(
        t.recv(&push(&["unsubscribe", "a", ":0"])),
        [Seen::Unsubscribed(Kind::Channel, "a".into())]
    );
    assert!(t.subs.is_empty());
}

#[test]
fn a_refused_name_can_be_asked_for_again() {
    let mut t = T::ready(3, false);
    t.subs.subscribe(Kind::Channel, b"x").unwrap();
    t.pump();
    t.recv(b"-NOPERM no\r\n");
    assert!(!t.subs.is_wanted(Kind::Channel, b"x"));
    // The application asks again (the ACL may have changed): wanted again.
    assert_eq!(t.subs.subscribe(Kind::Channel, b"x"), Ok(true));
    assert!(t.subs.is_wanted(Kind::Channel, b"x"));
    t.written.clear();
    t.pump();
    assert_eq!(t.written, ["*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nx\r\n"]);
}

#[test]
fn the_size_asked_for_is_exactly_enough() {
    // 1, 9 and 120 names: headers of one, two and three digits.
    for count in [1usize, 9, 120] {
        let mut subs: Subscriptions<128, 1024> = Subscriptions::new();
        for i in 0..count {
            subs.subscribe(Kind::Channel, std::format!("{i}").as_bytes())
                .unwrap();
        }
        subs.handle_ready(Instant::ZERO);
        let Some(Err(needed)) = subs.poll_request(Instant::ZERO, &mut []) else {
            panic!("an empty buffer is too small");
        };
        let mut buf = std::vec![0u8; needed];
        let Some(Ok(req)) = subs.poll_request(Instant::ZERO, &mut buf) else {
            panic!("exactly `needed` bytes are enough for {count} names");
        };
        assert_eq!(req.len, needed);
        assert_eq!(usize::from(req.confirmations), count);
    }
}

#[test]
fn counters_count() {
    let mut t = T::ready(3, false);
    t.subs.subscribe(Kind::Channel, b"a").unwrap();
    t.subs.subscribe(Kind::Channel, b"b").unwrap();
    t.pump();
    let confirm = confirms(&["a", "b"]);
    t.recv(&confirm);
    t.recv(&push(&["message", "a", "1"]));
    t.recv(&push(&["message", "b", "2"]));
    assert_eq!(t.subs.stats().messages, 2);
    t.reconnect(10);
    t.recv(&confirm);
    t.reconnect(10);
    t.recv(&confirm);
    assert_eq!(t.subs.stats().resubscribes, 2);
    assert_eq!(t.subs.stats().gaps, 4);
    t.subs.subscribe(Kind::Channel, b"x").unwrap();
    t.subs.subscribe(Kind::Pattern, b"y*").unwrap();
    t.pump();
    t.recv(b"-NOPERM no\r\n");
    t.recv(b"-NOPERM no\r\n");
    assert_eq!(t.subs.stats().refused, 2);
}

#[test]
fn a_refused_unsubscribe_ends_only_its_own_request() {
    let mut t = T::ready(3, false);
    t.subs.subscribe(Kind::Channel, b"a").unwrap();
    t.subs.subscribe(Kind::Channel, b"b").unwrap();
    t.pump();
    let confirm = confirms(&["a", "b"]);
    t.recv(&confirm);
    t.subs.unsubscribe(Kind::Channel, b"a");
    t.pump();
    t.subs.unsubscribe(Kind::Channel, b"b");
    t.pump();
    // The first UNSUBSCRIBE is refused: a is gone for the application (a
    // new subscribe of it is a new request); b's is still in flight.
    t.recv(b"-ERR no\r\n");
    t.written.clear();
    assert_eq!(t.subs.subscribe(Kind::Channel, b"a"), Ok(true));
    t.pump();
    assert_eq!(t.written, ["*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n"]);
    assert_eq!(
        t.recv(&push(&["unsubscribe", "b", ":1"])),
        [Seen::Unsubscribed(Kind::Channel, "b".into())]
    );
}

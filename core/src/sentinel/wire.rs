//! The sentinel protocol's few messages, read from borrowed [`Frame`]s and
//! written into caller memory: `SENTINEL get-master-addr-by-name`, `ROLE`
//! and the `+switch-master` pub/sub message. What the bytes say never
//! panics here; anything not in the shape Redis sends is refused (`Failed`,
//! `None`), never guessed at.

use crate::addr::{HOST_CAP, NodeAddr};
use crate::resp::Frame;
use crate::resp::encode::encode_args;

use super::Answer;

/// The channel on which every sentinel announces a finished failover.
pub const SWITCH_MASTER_CHANNEL: &str = "+switch-master";
/// The channel on which the failover's leader announces, just before it
/// sends `SLAVEOF NO ONE` to the replica it chose, which one that is:
/// `slave <ip>:<port> <ip> <port> @ <name> <master-ip> <master-port>`.
/// From then on a write to the old master may be lost.
pub const FAILOVER_PROMOTING_CHANNEL: &str = "+failover-state-send-slaveof-noone";

/// The `+failover-state-send-slaveof-noone` payload: the master's name,
/// its address, and the replica being promoted.
pub(super) fn split_promoting(payload: &[u8]) -> Option<(&[u8], NodeAddr, NodeAddr)> {
    let at = payload.windows(3).position(|w| w == b" @ ")?;
    let (replica, master) = (&payload[..at], &payload[at + 3..]);
    let mut fields = replica.split(|&b| b == b' ');
    if fields.next()? != b"slave" {
        return None;
    }
    let _id = fields.next()?;
    let new = address(fields.next()?, fields.next()?)?;
    if fields.next().is_some() {
        return None;
    }
    // The master's name may hold spaces: its address is the last two fields.
    let mut tail = master.rsplitn(3, |&b| b == b' ');
    let port = tail.next()?;
    let host = tail.next()?;
    let name = tail.next()?;
    if name.is_empty() {
        return None;
    }
    Some((name, address(host, port)?, new))
}

/// What a server says it is, from its reply to `ROLE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum NodeRole {
    Master,
    /// `slave` on the wire (Redis has not renamed it in `ROLE`).
    Replica,
    Sentinel,
}

/// `SENTINEL get-master-addr-by-name <name>` into `buf`; `None` when `buf`
/// is too short (74 bytes plus the name's length always suffice).
pub fn encode_get_master(buf: &mut [u8], name: &str) -> Option<usize> {
    encode_args(
        buf,
        &[b"SENTINEL", b"get-master-addr-by-name", name.as_bytes()],
    )
    .ok()
}

/// A sentinel's reply to `SENTINEL get-master-addr-by-name`: an array of
/// two strings, host and port, is [`Answer::Master`]; a nil (RESP2 `*-1`,
/// RESP3 `_`) means the sentinel monitors no master of that name,
/// [`Answer::Unknown`]. An error reply, or anything else (a wrong length,
/// a port that is not 1-65535, an empty or oversized host), is
/// [`Answer::Failed`]: this sentinel gave no usable answer.
pub fn parse_master_answer(frame: &Frame<'_>) -> Answer {
    match frame {
        Frame::Null => Answer::Unknown,
        Frame::Array(items) if items.len() == 2 => {
            let mut items = items.iter();
            let host = items.next();
            let port = items.next();
            match (
                host.as_ref().and_then(Frame::as_text),
                port.as_ref().and_then(Frame::as_text),
            ) {
                (Some(host), Some(port)) => {
                    address(host, port).map_or(Answer::Failed, Answer::Master)
                }
                _ => Answer::Failed,
            }
        }
        _ => Answer::Failed,
    }
}

/// What a server's reply to `ROLE` says it is: the first element of the
/// array, `master`, `slave` (or `replica`) or `sentinel`. `None` for an
/// error reply or any other shape.
pub fn parse_role(frame: &Frame<'_>) -> Option<NodeRole> {
    let Frame::Array(items) = frame else {
        return None;
    };
    let first = items.iter().next()?;
    let role = first.as_text()?;
    if role.eq_ignore_ascii_case(b"master") {
        Some(NodeRole::Master)
    } else if role.eq_ignore_ascii_case(b"slave") || role.eq_ignore_ascii_case(b"replica") {
        Some(NodeRole::Replica)
    } else if role.eq_ignore_ascii_case(b"sentinel") {
        Some(NodeRole::Sentinel)
    } else {
        None
    }
}

/// The payload of a `+switch-master` message,
/// `<name> <old-ip> <old-port> <new-ip> <new-port>`, when it is about
/// `name`: the old and the new master. `None` for another name or a
/// malformed payload.
pub fn parse_switch_master(payload: &[u8], name: &str) -> Option<(NodeAddr, NodeAddr)> {
    match split_switch(payload)? {
        (said, old, new) if said == name.as_bytes() => Some((old, new)),
        _ => None,
    }
}

/// The payload of a pub/sub message on [`SWITCH_MASTER_CHANNEL`], RESP2
/// (`*3 message +switch-master <payload>`) or RESP3 (the same as a push);
/// `None` for any other message or reply.
pub fn switch_payload<'a>(frame: &Frame<'a>) -> Option<&'a [u8]> {
    let (Frame::Array(items) | Frame::Push(items)) = frame else {
        return None;
    };
    if items.len() != 3 {
        return None;
    }
    let mut items = items.iter();
    let kind = items.next().as_ref().and_then(Frame::as_text)?;
    let channel = items.next().as_ref().and_then(Frame::as_text)?;
    let payload = items.next().as_ref().and_then(Frame::as_text)?;
    (kind == b"message" && channel == SWITCH_MASTER_CHANNEL.as_bytes()).then_some(payload)
}

/// `(name, old, new)`. Split from the right, so that a master name with a
/// space in it (Redis does not forbid one) still reads; the four fields
/// after it are fixed.
pub(super) fn split_switch(payload: &[u8]) -> Option<(&[u8], NodeAddr, NodeAddr)> {
    let mut fields = payload.rsplitn(5, |&b| b == b' ');
    let new_port = fields.next()?;
    let new_host = fields.next()?;
    let old_port = fields.next()?;
    let old_host = fields.next()?;
    let name = fields.next()?;
    if name.is_empty() {
        return None;
    }
    let old = address(old_host, old_port)?;
    let new = address(new_host, new_port)?;
    Some((name, old, new))
}

/// A host and a port as a sentinel sends them: the host UTF-8, 1 to
/// [`HOST_CAP`] bytes with no space or control byte (an IP, IPv6 without
/// brackets, or a name with `announce-hostnames`); the port 1-65535 in
/// plain digits.
pub(super) fn address(host: &[u8], port: &[u8]) -> Option<NodeAddr> {
    let host = core::str::from_utf8(host).ok()?;
    let usable = !host.is_empty()
        && host.len() <= HOST_CAP
        && !host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    if !usable {
        return None;
    }
    NodeAddr::new(host, decimal_port(port)?)
}

/// Plain ASCII digits, 1-65535 (no sign, no spaces, unlike `str::parse`).
fn decimal_port(text: &[u8]) -> Option<u16> {
    if text.is_empty() {
        return None;
    }
    let port = text.iter().try_fold(0u16, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u16::from(digit))
    })?;
    (port != 0).then_some(port)
}

/// The text of a string frame.
#[cfg(test)]
mod tests {
    extern crate std;

    use proptest::prelude::*;

    use super::*;
    use crate::resp::{Decoded, Limits, decode};

    /// Replies and messages as Redis 7.0.15 sent them (a sentinel monitoring
    /// `mymaster`, its master on 16379 and a replica on 16380, captured
    /// before and after `SENTINEL FAILOVER`).
    mod captured {
        pub const MASTER_RESP2: &[u8] = b"*2\r\n$9\r\n127.0.0.1\r\n$5\r\n16379\r\n";
        pub const UNKNOWN_RESP2: &[u8] = b"*-1\r\n";
        pub const UNKNOWN_RESP3: &[u8] = b"_\r\n";
        pub const WRONG_ARITY: &[u8] =
            b"-ERR wrong number of arguments for 'sentinel|get-master-addr-by-name' command\r\n";
        pub const ROLE_SENTINEL: &[u8] = b"*2\r\n$8\r\nsentinel\r\n*1\r\n$8\r\nmymaster\r\n";
        pub const ROLE_MASTER: &[u8] = b"*3\r\n$6\r\nmaster\r\n:448\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$5\r\n16380\r\n$3\r\n448\r\n";
        pub const ROLE_MASTER_NO_REPLICAS: &[u8] = b"*3\r\n$6\r\nmaster\r\n:1266\r\n*0\r\n";
        pub const ROLE_REPLICA: &[u8] =
            b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:16379\r\n$9\r\nconnected\r\n:582\r\n";
        pub const READONLY: &[u8] = b"-READONLY You can't write against a read only replica.\r\n";
        pub const SWITCH_RESP2: &[u8] = b"*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$40\r\nmymaster 127.0.0.1 16379 127.0.0.1 16380\r\n";
        pub const SWITCH_RESP3: &[u8] = b">3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$40\r\nmymaster 127.0.0.1 16379 127.0.0.1 16380\r\n";
        pub const SUBSCRIBED: &[u8] = b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n";
    }

    #[track_caller]
    fn frame(bytes: &[u8]) -> Frame<'_> {
        match decode(bytes, &Limits::REDIS) {
            Ok(Decoded::Frame {
                frame, consumed, ..
            }) if consumed == bytes.len() => frame,
            other => panic!("bad fixture {}: {other:?}", bytes.escape_ascii()),
        }
    }

    fn addr(host: &str, port: u16) -> NodeAddr {
        NodeAddr::new(host, port).unwrap()
    }

    #[test]
    fn the_master_as_a_sentinel_names_it() {
        assert_eq!(
            parse_master_answer(&frame(captured::MASTER_RESP2)),
            Answer::Master(addr("127.0.0.1", 16379))
        );
        // RESP3 sends the same array.
        let hostname = b"*2\r\n$23\r\nredis-0.redis.svc.local\r\n$4\r\n6379\r\n";
        assert_eq!(
            parse_master_answer(&frame(hostname)),
            Answer::Master(addr("redis-0.redis.svc.local", 6379))
        );
        let v6 = b"*2\r\n$7\r\nfe80::1\r\n$4\r\n6379\r\n";
        assert_eq!(
            parse_master_answer(&frame(v6)),
            Answer::Master(addr("fe80::1", 6379))
        );
    }

    #[test]
    fn nil_means_the_sentinel_does_not_know_the_name() {
        assert_eq!(
            parse_master_answer(&frame(captured::UNKNOWN_RESP2)),
            Answer::Unknown
        );
        assert_eq!(
            parse_master_answer(&frame(captured::UNKNOWN_RESP3)),
            Answer::Unknown
        );
    }

    #[test]
    fn errors_and_odd_shapes_are_failures() {
        for bytes in [
            captured::WRONG_ARITY,
            b"-IDONTKNOW No good slave to promote\r\n".as_slice(),
            b"!10\r\nERR broken\r\n",
            b"+OK\r\n",
            b"*0\r\n",
            b"*1\r\n$9\r\n127.0.0.1\r\n",
            b"*3\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n$1\r\nx\r\n",
            b"*2\r\n$9\r\n127.0.0.1\r\n:6379\r\n",
            b"*2\r\n$9\r\n127.0.0.1\r\n$1\r\n0\r\n",
            b"*2\r\n$9\r\n127.0.0.1\r\n$5\r\n65536\r\n",
            b"*2\r\n$9\r\n127.0.0.1\r\n$5\r\n+6379\r\n",
            b"*2\r\n$0\r\n\r\n$4\r\n6379\r\n",
            b"*2\r\n$5\r\na b c\r\n$4\r\n6379\r\n",
            b"*2\r\n$2\r\n\xff\xfe\r\n$4\r\n6379\r\n",
            b"%1\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n",
        ] {
            assert_eq!(
                parse_master_answer(&frame(bytes)),
                Answer::Failed,
                "{}",
                bytes.escape_ascii()
            );
        }
        let long = std::format!(
            "*2\r\n${0}\r\n{1}\r\n$4\r\n6379\r\n",
            HOST_CAP + 1,
            "h".repeat(HOST_CAP + 1)
        );
        assert_eq!(parse_master_answer(&frame(long.as_bytes())), Answer::Failed);
    }

    #[test]
    fn role_as_each_kind_of_server_answers_it() {
        assert_eq!(
            parse_role(&frame(captured::ROLE_MASTER)),
            Some(NodeRole::Master)
        );
        assert_eq!(
            parse_role(&frame(captured::ROLE_MASTER_NO_REPLICAS)),
            Some(NodeRole::Master)
        );
        assert_eq!(
            parse_role(&frame(captured::ROLE_REPLICA)),
            Some(NodeRole::Replica)
        );
        assert_eq!(
            parse_role(&frame(captured::ROLE_SENTINEL)),
            Some(NodeRole::Sentinel)
        );
        assert_eq!(parse_role(&frame(captured::READONLY)), None);
        assert_eq!(parse_role(&frame(b"*0\r\n")), None);
        assert_eq!(parse_role(&frame(b"*1\r\n$7\r\nprimary\r\n")), None);
        assert_eq!(parse_role(&frame(b"$6\r\nmaster\r\n")), None);
    }

    #[test]
    fn switch_master_as_a_sentinel_publishes_it() {
        for message in [captured::SWITCH_RESP2, captured::SWITCH_RESP3] {
            let payload = switch_payload(&frame(message)).expect("a +switch-master message");
            assert_eq!(payload, b"mymaster 127.0.0.1 16379 127.0.0.1 16380");
            assert_eq!(
                parse_switch_master(payload, "mymaster"),
                Some((addr("127.0.0.1", 16379), addr("127.0.0.1", 16380)))
            );
            assert_eq!(parse_switch_master(payload, "other"), None);
            assert_eq!(parse_switch_master(payload, "mymaste"), None);
        }
        // The subscription's confirmation is not a message.
        assert_eq!(switch_payload(&frame(captured::SUBSCRIBED)), None);
        assert_eq!(
            switch_payload(&frame(
                b"*3\r\n$7\r\nmessage\r\n$5\r\nother\r\n$40\r\nmymaster 127.0.0.1 16379 127.0.0.1 16380\r\n"
            )),
            None
        );
    }

    #[test]
    fn a_name_with_spaces_reads_from_the_right() {
        assert_eq!(
            parse_switch_master(b"my master 10.0.0.1 6379 10.0.0.2 6380", "my master"),
            Some((addr("10.0.0.1", 6379), addr("10.0.0.2", 6380)))
        );
        assert_eq!(
            parse_switch_master(b"my master 10.0.0.1 6379 10.0.0.2 6380", "master"),
            None
        );
    }

    #[test]
    fn malformed_switch_payloads_are_refused() {
        for payload in [
            &b""[..],
            b"mymaster",
            b"mymaster 10.0.0.1 6379 10.0.0.2",
            b" 10.0.0.1 6379 10.0.0.2 6380",
            b"mymaster 10.0.0.1 6379 10.0.0.2 6380 ",
            b"mymaster 10.0.0.1 6379  6380",
            b"mymaster 10.0.0.1 0 10.0.0.2 6380",
            b"mymaster 10.0.0.1 6379 10.0.0.2 99999",
            b"mymaster 10.0.0.1 6379 10.0.0.2 -1",
            b"mymaster 10.0.0.1 6379 10.0.\xff.2 6380",
            b"mymaster 10.0.0.1 6379 10.0.0.2 6380\r\n",
        ] {
            assert_eq!(
                parse_switch_master(payload, "mymaster"),
                None,
                "{}",
                payload.escape_ascii()
            );
        }
    }

    #[test]
    fn get_master_is_encoded_as_a_bulk_array() {
        let mut buf = [0u8; 128];
        let n = encode_get_master(&mut buf, "mymaster").expect("fits");
        assert_eq!(
            &buf[..n],
            b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n"
        );
        assert_eq!(encode_get_master(&mut buf[..20], "mymaster"), None);
        // The bound the doc promises.
        let mut enough = [0u8; 74 + 8];
        assert!(encode_get_master(&mut enough, "mymaster").is_some());
    }

    proptest! {
        #[test]
        fn switch_parsing_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = parse_switch_master(&payload, "mymaster");
            let _ = split_switch(&payload);
        }

        #[test]
        fn a_well_formed_switch_always_reads(
            name in "[a-z][a-z0-9 _-]{0,20}",
            old in ("[a-z0-9.:-]{1,40}", 1u16..),
            new in ("[a-z0-9.:-]{1,40}", 1u16..),
        ) {
            let payload = std::format!("{name} {} {} {} {}", old.0, old.1, new.0, new.1);
            prop_assert_eq!(
                parse_switch_master(payload.as_bytes(), &name),
                Some((addr(&old.0, old.1), addr(&new.0, new.1)))
            );
        }

        #[test]
        fn master_answers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(Decoded::Frame { frame, .. }) = decode(&bytes, &Limits::REDIS) {
                let _ = parse_master_answer(&frame);
                let _ = parse_role(&frame);
                let _ = switch_payload(&frame);
            }
        }
    }
}

//! Reading the error replies by which a cluster node says where a command
//! belongs or why it cannot run it now.
//!
//! The input is the text of an error reply without its leading `-` or `!`,
//! as [`crate::resp::Frame::error_text`] gives it. Anything this module
//! does not recognise, malformed redirects included, is an ordinary error
//! reply for the application to see: a node's text never panics here.

use super::slot::SLOTS;

/// What a cluster node's error reply asks of the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClusterReply<'a> {
    /// `MOVED 3999 127.0.0.1:6381`: the slot lives elsewhere for good; patch
    /// the map. `host` is empty when the node does not know its peer's
    /// address (`MOVED 3999 :6381`): use the host of the node that answered.
    Moved { slot: u16, host: &'a str, port: u16 },
    /// `ASK 3999 127.0.0.1:6381`: this one command goes there, after
    /// ASKING; the map is unchanged.
    Ask { slot: u16, host: &'a str, port: u16 },
    /// `TRYAGAIN`: a multi-key command during a slot migration; retry
    /// shortly.
    TryAgain,
    /// `CLUSTERDOWN ...`: the cluster cannot serve the slot now (failover
    /// under way, uncovered slot); retry shortly.
    ClusterDown,
    /// `READONLY You can't write against a read only replica.`: sent to a
    /// replica: refresh the map and re-route.
    ReadOnly,
    /// `LOADING ...`: the node is loading its data; retry shortly (or
    /// another node).
    Loading,
    /// `MASTERDOWN ...`: a replica whose master link is down
    /// (`replica-serve-stale-data no`).
    MasterDown,
    /// `CROSSSLOT ...`: keys in different slots (the server's own refusal).
    CrossSlot,
}

impl ClusterReply<'_> {
    /// Worth waiting and retrying: the node may answer differently soon
    /// (TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN).
    pub const fn retry_later(&self) -> bool {
        matches!(
            self,
            ClusterReply::TryAgain
                | ClusterReply::ClusterDown
                | ClusterReply::Loading
                | ClusterReply::MasterDown
        )
    }
}

/// The cluster meaning of an error reply's text, or `None` for any other
/// error (WRONGTYPE, ERR ...) and for a malformed redirect (slot out of
/// range, no port, port not a u16, non-UTF-8 host).
///
/// The code is the first word, matched exactly and case-sensitively, as
/// Redis spells its codes. A redirect's port is after the last `:`, so an
/// IPv6 host needs no brackets (`MOVED 1 ::1:6379`); hostnames are allowed
/// (`cluster-preferred-endpoint-type hostname`).
pub fn classify_error(msg: &[u8]) -> Option<ClusterReply<'_>> {
    let (code, rest) = match msg.iter().position(|&b| b == b' ') {
        Some(space) => (&msg[..space], &msg[space + 1..]),
        None => (msg, &msg[msg.len()..]),
    };
    let reply = match code {
        b"MOVED" => {
            let (slot, host, port) = target(rest)?;
            ClusterReply::Moved { slot, host, port }
        }
        b"ASK" => {
            let (slot, host, port) = target(rest)?;
            ClusterReply::Ask { slot, host, port }
        }
        b"TRYAGAIN" => ClusterReply::TryAgain,
        b"CLUSTERDOWN" => ClusterReply::ClusterDown,
        b"READONLY" => ClusterReply::ReadOnly,
        b"LOADING" => ClusterReply::Loading,
        b"MASTERDOWN" => ClusterReply::MasterDown,
        b"CROSSSLOT" => ClusterReply::CrossSlot,
        _ => return None,
    };
    Some(reply)
}

/// `<slot> <host>:<port>`, exactly, as MOVED and ASK carry it.
fn target(text: &[u8]) -> Option<(u16, &str, u16)> {
    let text = core::str::from_utf8(text).ok()?;
    let (slot, endpoint) = text.split_once(' ')?;
    let (host, port) = endpoint.rsplit_once(':')?;
    let slot = decimal(slot).filter(|&slot| slot < SLOTS)?;
    // Port 0 cannot be connected to: following it would only fail later.
    let port = decimal(port).filter(|&port| port != 0)?;
    // `?` is what Redis sends when told to prefer hostnames but given none:
    // no address to follow, unlike the empty host (the answering node's).
    // A space or control byte means the text is not one endpoint.
    if host == "?"
        || host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return None;
    }
    Some((slot, host, port))
}

/// Plain ASCII digits that fit a u16 (no sign, unlike `str::parse`).
fn decimal(text: &str) -> Option<u16> {
    if text.is_empty() {
        return None;
    }
    text.bytes().try_fold(0u16, |n, b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u16::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[track_caller]
    fn reads(text: &str, expected: ClusterReply<'_>) {
        assert_eq!(classify_error(text.as_bytes()), Some(expected), "`{text}`");
    }

    #[track_caller]
    fn ordinary(text: &[u8]) {
        assert_eq!(
            classify_error(text),
            None,
            "`{}` should be an ordinary error",
            text.escape_ascii()
        );
    }

    #[test]
    fn moved_and_ask_as_redis_sends_them() {
        reads(
            "MOVED 3999 127.0.0.1:6381",
            ClusterReply::Moved {
                slot: 3999,
                host: "127.0.0.1",
                port: 6381,
            },
        );
        reads(
            "ASK 3999 127.0.0.1:6381",
            ClusterReply::Ask {
                slot: 3999,
                host: "127.0.0.1",
                port: 6381,
            },
        );
        reads(
            "MOVED 16383 10.0.0.2:6379",
            ClusterReply::Moved {
                slot: 16383,
                host: "10.0.0.2",
                port: 6379,
            },
        );
        reads(
            "MOVED 0 10.0.0.2:65535",
            ClusterReply::Moved {
                slot: 0,
                host: "10.0.0.2",
                port: 65535,
            },
        );
    }

    #[test]
    fn hostnames_ipv6_and_unknown_endpoints() {
        reads(
            "MOVED 12182 redis-2.cache.example:6379",
            ClusterReply::Moved {
                slot: 12182,
                host: "redis-2.cache.example",
                port: 6379,
            },
        );
        reads(
            "MOVED 1 ::1:6379",
            ClusterReply::Moved {
                slot: 1,
                host: "::1",
                port: 6379,
            },
        );
        reads(
            "ASK 7 fe80::1:2:7000",
            ClusterReply::Ask {
                slot: 7,
                host: "fe80::1:2",
                port: 7000,
            },
        );
        // `cluster-preferred-endpoint-type unknown-endpoint` (seen from
        // redis-server 7.0.15).
        reads(
            "MOVED 12182 :17999",
            ClusterReply::Moved {
                slot: 12182,
                host: "",
                port: 17999,
            },
        );
    }

    #[test]
    fn malformed_redirects_are_ordinary_errors() {
        ordinary(b"MOVED");
        ordinary(b"MOVED ");
        ordinary(b"MOVED 3999");
        ordinary(b"MOVED 3999 127.0.0.1");
        ordinary(b"MOVED 3999 127.0.0.1:");
        ordinary(b"MOVED 3999 127.0.0.1:65536");
        ordinary(b"MOVED 3999 127.0.0.1:0");
        ordinary(b"MOVED 3999 127.0.0.1:+6379");
        ordinary(b"MOVED 3999 127.0.0.1:6379 extra");
        ordinary(b"MOVED 3999 two hosts:6379");
        ordinary(b"MOVED 16384 127.0.0.1:6379");
        ordinary(b"MOVED 99999999999 127.0.0.1:6379");
        ordinary(b"MOVED -1 127.0.0.1:6379");
        ordinary(b"MOVED  3999 127.0.0.1:6379");
        ordinary(b"MOVED x 127.0.0.1:6379");
        ordinary(b"ASK 3999 \xff\xfe:6379");
        // Hostnames preferred but none configured: nowhere to go.
        ordinary(b"MOVED 12182 ?:17999");
    }

    #[test]
    fn every_state_reply_in_redis_7_words() {
        reads(
            "TRYAGAIN Multiple keys request during rehashing of slot",
            ClusterReply::TryAgain,
        );
        reads("CLUSTERDOWN The cluster is down", ClusterReply::ClusterDown);
        reads(
            "CLUSTERDOWN Hash slot not served",
            ClusterReply::ClusterDown,
        );
        reads(
            "CLUSTERDOWN The cluster is down and only accepts read commands",
            ClusterReply::ClusterDown,
        );
        reads(
            "READONLY You can't write against a read only replica.",
            ClusterReply::ReadOnly,
        );
        reads(
            "LOADING Redis is loading the dataset in memory",
            ClusterReply::Loading,
        );
        reads(
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            ClusterReply::MasterDown,
        );
        reads(
            "CROSSSLOT Keys in request don't hash to the same slot",
            ClusterReply::CrossSlot,
        );
        reads("TRYAGAIN", ClusterReply::TryAgain);
    }

    #[test]
    fn other_errors_are_ordinary() {
        ordinary(b"");
        ordinary(b"ERR unknown command 'FOO'");
        ordinary(b"WRONGTYPE Operation against a key holding the wrong kind of value");
        ordinary(b"moved 3999 127.0.0.1:6381");
        ordinary(b"Moved 3999 127.0.0.1:6381");
        ordinary(b"MOVEDX 3999 127.0.0.1:6381");
        ordinary(b"clusterdown The cluster is down");
        ordinary(b"CLUSTERDOWNThe cluster is down");
        ordinary(b" TRYAGAIN");
    }

    #[test]
    fn which_replies_are_worth_waiting_for() {
        let moved = ClusterReply::Moved {
            slot: 1,
            host: "h",
            port: 1,
        };
        let ask = ClusterReply::Ask {
            slot: 1,
            host: "h",
            port: 1,
        };
        assert!(ClusterReply::TryAgain.retry_later());
        assert!(ClusterReply::ClusterDown.retry_later());
        assert!(ClusterReply::Loading.retry_later());
        assert!(ClusterReply::MasterDown.retry_later());
        assert!(!moved.retry_later());
        assert!(!ask.retry_later());
        assert!(!ClusterReply::ReadOnly.retry_later());
        assert!(!ClusterReply::CrossSlot.retry_later());
    }

    proptest! {
        #[test]
        fn never_panics(msg in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = classify_error(&msg);
        }

        #[test]
        fn never_panics_near_a_redirect(
            code in "MOVED|ASK",
            rest in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let mut msg = code.into_bytes();
            msg.push(b' ');
            msg.extend_from_slice(&rest);
            let _ = classify_error(&msg);
        }

        #[test]
        fn a_well_formed_moved_reads_back(
            slot in 0..SLOTS,
            host in "[a-z0-9.:-]{0,24}",
            port in 1..=u16::MAX,
        ) {
            let text = format!("MOVED {slot} {host}:{port}");
            prop_assert_eq!(
                classify_error(text.as_bytes()),
                Some(ClusterReply::Moved { slot, host: &host, port })
            );
        }
    }
}

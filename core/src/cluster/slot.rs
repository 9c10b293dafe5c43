//! Key slots: CRC16/XMODEM of the key (or of its `{hashtag}`) mod 16384, as
//! Redis Cluster computes them; which slots a command line touches; and how
//! the multi-key commands that may span slots split.

use crate::command;

/// How many slots a Redis Cluster divides its keys into.
pub const SLOTS: u16 = 16384;

/// CRC16/XMODEM (polynomial 0x1021, initial value 0, no reflection): the
/// checksum Redis Cluster hashes keys with.
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0, |crc, &byte| {
        let index = usize::from((crc >> 8) as u8 ^ byte);
        (crc << 8) ^ CRC16_TABLE[index]
    })
}

/// One entry per value of the top byte, built at compile time: 512 bytes of
/// flash buy a lookup per key byte instead of eight shifts.
const CRC16_TABLE: [u16; 256] = crc16_table();

const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// The part of `key` that is hashed: the bytes between the first `{` and the
/// first `}` after it, when there is at least one; otherwise the whole key.
/// This is what lets an application keep related keys in one slot
/// (`{user1000}.following`, `{user1000}.followers`).
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let inside = &key[open + 1..];
    match inside.iter().position(|&b| b == b'}') {
        // `{}` is not a tag: Redis hashes the whole key, later braces or not.
        Some(0) | None => key,
        Some(close) => &inside[..close],
    }
}

/// The slot Redis Cluster keeps `key` in.
pub fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) & (SLOTS - 1)
}

/// The slots a command line touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SlotsOf {
    /// No key (PING, INFO, unknown commands): any node may answer.
    Keyless,
    /// Every key hashes to this slot.
    One(u16),
    /// Keys in two different slots (the first two seen): Redis would answer
    /// CROSSSLOT. Refuse before sending unless [`split_of`] says it splits.
    Cross { first: u16, other: u16 },
}

/// The slots the command line `args` touches (`args[0]` is the command
/// name). Keys are where the command table's key specs say, shard channels
/// of SPUBLISH and SSUBSCRIBE included: a cluster routes them like keys.
/// Reads at most every argument once.
pub fn slots_of<'a, I>(args: I) -> SlotsOf
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: Clone,
{
    let mut keys = command::keys(args);
    let Some(first) = keys.next().map(slot) else {
        return SlotsOf::Keyless;
    };
    // One differing key is enough to know the answer; the rest need no hash.
    match keys.map(slot).find(|&other| other != first) {
        Some(other) => SlotsOf::Cross { first, other },
        None => SlotsOf::One(first),
    }
}

/// How a multi-key command that spans slots is split into one sub-command
/// per slot, and its answers put back together.
///
/// Not atomic: each part runs on its own node at its own time, so another
/// client may see some parts done and others not, and a failure may leave
/// some parts applied. Redis itself gives the same guarantee for these
/// commands across slots (none), which is why only these few split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Split {
    /// MGET: one sub-command per slot with that slot's keys; the answer is
    /// the array of values in the caller's key order.
    Values,
    /// MSET k v k v: one sub-command per slot with that slot's pairs; the
    /// answer is OK when every part answered OK.
    Pairs,
    /// DEL / EXISTS / UNLINK / TOUCH: per-slot parts; the answer is the sum
    /// of the integer answers.
    Sum,
}

impl Split {
    /// Arguments that go together after the name: 1 key, or 2 (key value)
    /// for [`Split::Pairs`].
    pub const fn group(self) -> usize {
        match self {
            Split::Values | Split::Sum => 1,
            Split::Pairs => 2,
        }
    }
}

/// `Some` when the command line `args` (name first, ASCII case-insensitive)
/// is one of the commands that may be split across slots and its arguments
/// come in whole groups. A line that does not (no key at all, an MSET key
/// without its value) is left for Redis to refuse with its own arity error.
pub fn split_of<'a, I>(args: I) -> Option<Split>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: Clone,
{
    let mut args = args.into_iter();
    let name = args.next()?;
    let split = [
        ("mget", Split::Values),
        ("mset", Split::Pairs),
        ("del", Split::Sum),
        ("exists", Split::Sum),
        ("unlink", Split::Sum),
        ("touch", Split::Sum),
    ]
    .into_iter()
    .find(|(known, _)| name.eq_ignore_ascii_case(known.as_bytes()))?
    .1;
    let rest = args.count();
    (rest > 0 && rest.is_multiple_of(split.group())).then_some(split)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Splits like a shell would, without quotes: enough for transcripts.
    fn line(text: &str) -> impl Iterator<Item = &[u8]> + Clone {
        text.split(' ').map(str::as_bytes)
    }

    #[track_caller]
    fn slots(text: &str) -> SlotsOf {
        slots_of(line(text))
    }

    #[track_caller]
    fn tag(key: &str) -> &str {
        core::str::from_utf8(hash_tag(key.as_bytes())).unwrap()
    }

    #[test]
    fn crc16_is_xmodem() {
        // The check value of CRC-16/XMODEM, also in Redis's crc16.c.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn slots_match_a_real_server() {
        // `redis-cli CLUSTER KEYSLOT ...` against redis-server 7.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"user1000"), 3443);
        assert_eq!(slot(b"{user1000}.following"), 3443);
        assert_eq!(slot(b"foo{}{bar}"), 8363);
        assert_eq!(slot(b"foo{{bar}}zap"), 4015);
        assert_eq!(slot(b"0-0"), 844);
        assert_eq!(slot(b""), 0);
    }

    #[test]
    fn a_hashtag_keeps_related_keys_together() {
        let user = slot(b"user1000");
        assert_eq!(slot(b"{user1000}.following"), user);
        assert_eq!(slot(b"{user1000}.followers"), user);
        assert_ne!(slot(b"user1000.following"), user);
    }

    #[test]
    fn hashtag_rules() {
        assert_eq!(tag("{user1000}.following"), "user1000");
        assert_eq!(tag("foo{}{bar}"), "foo{}{bar}");
        assert_eq!(tag("foo{{bar}}zap"), "{bar");
        assert_eq!(tag("foo{bar}{zap}"), "bar");
        assert_eq!(tag("plain"), "plain");
        assert_eq!(tag("open{only"), "open{only");
        assert_eq!(tag("close}{"), "close}{");
        assert_eq!(tag("}{x}"), "x");
    }

    #[test]
    fn one_key_one_slot() {
        assert_eq!(slots("GET foo"), SlotsOf::One(12182));
        assert_eq!(slots("set bar 1"), SlotsOf::One(5061));
    }

    #[test]
    fn keys_sharing_a_hashtag_share_a_slot() {
        assert_eq!(
            slots("MGET {user1000}.a {user1000}.b {user1000}.c"),
            SlotsOf::One(slot(b"user1000"))
        );
    }

    #[test]
    fn keys_in_two_slots_cross() {
        assert_eq!(
            slots("MGET foo foo bar"),
            SlotsOf::Cross {
                first: 12182,
                other: 5061
            }
        );
    }

    #[test]
    fn no_key_no_slot() {
        assert_eq!(slots("PING"), SlotsOf::Keyless);
        assert_eq!(slots("INFO server"), SlotsOf::Keyless);
        assert_eq!(slots("NOSUCHCOMMAND foo bar"), SlotsOf::Keyless);
        assert_eq!(slots_of(core::iter::empty()), SlotsOf::Keyless);
    }

    #[test]
    fn eval_keys_are_counted_by_numkeys() {
        assert_eq!(
            slots("EVAL script 2 {a}x {a}y foo"),
            SlotsOf::One(slot(b"a"))
        );
        assert_eq!(slots("EVAL script 0 foo bar"), SlotsOf::Keyless);
        assert_eq!(
            slots("EVAL script 2 foo bar baz"),
            SlotsOf::Cross {
                first: 12182,
                other: 5061
            }
        );
    }

    #[test]
    fn a_shard_channel_routes_like_a_key() {
        assert_eq!(slots("SPUBLISH foo hello"), SlotsOf::One(12182));
        assert_eq!(slots("SSUBSCRIBE {c}1 {c}2"), SlotsOf::One(slot(b"c")));
    }

    #[test]
    fn xread_hashes_the_streams_not_the_ids() {
        // The ids would hash elsewhere if they were read as keys.
        assert_ne!(slot(b"0-0"), slot(b"foo"));
        assert_eq!(
            slots("XREAD COUNT 2 STREAMS foo {foo}x 0-0 0-0"),
            SlotsOf::One(12182)
        );
        assert_eq!(
            slots("XREAD STREAMS foo bar 0 0"),
            SlotsOf::Cross {
                first: 12182,
                other: 5061
            }
        );
    }

    #[test]
    fn the_splittable_commands() {
        assert_eq!(split_of(line("MGET a b c")), Some(Split::Values));
        assert_eq!(split_of(line("mset a 1 b 2")), Some(Split::Pairs));
        assert_eq!(split_of(line("DEL a b")), Some(Split::Sum));
        assert_eq!(split_of(line("Exists a")), Some(Split::Sum));
        assert_eq!(split_of(line("UNLINK a b")), Some(Split::Sum));
        assert_eq!(split_of(line("TOUCH a b")), Some(Split::Sum));
        assert_eq!(Split::Values.group(), 1);
        assert_eq!(Split::Pairs.group(), 2);
        assert_eq!(Split::Sum.group(), 1);
    }

    #[test]
    fn malformed_lines_are_left_to_redis() {
        assert_eq!(split_of(line("MSET a 1 b")), None);
        assert_eq!(split_of(line("MSET")), None);
        assert_eq!(split_of(line("MGET")), None);
        assert_eq!(split_of(core::iter::empty()), None);
    }

    #[test]
    fn other_multi_key_commands_do_not_split() {
        assert_eq!(split_of(line("SUNIONSTORE dst a b")), None);
        assert_eq!(split_of(line("MSETNX a 1 b 2")), None);
        assert_eq!(split_of(line("GET a")), None);
    }

    proptest! {
        #[test]
        fn every_slot_is_in_range(key in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert!(slot(&key) < SLOTS);
        }

        #[test]
        fn only_the_tag_is_hashed(
            tag in "[^}]{1,16}",
            rest in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let mut key = b"{".to_vec();
            key.extend_from_slice(tag.as_bytes());
            key.push(b'}');
            key.extend_from_slice(&rest);
            prop_assert_eq!(slot(&key), slot(tag.as_bytes()));
        }
    }
}

//! Reading a concrete command line against the table: which entry it is
//! (subcommands included), its [`Class`] once its options are read, and
//! which arguments are keys. No allocation, and every loop is bounded by the
//! number of arguments.
//!
//! Arguments come as any cloneable iterator of byte slices (a slice's
//! `iter().copied()`, an array), so the caller's own command buffer can be
//! read in place; a clone is a rewind.

use core::cmp::Ordering;

use super::table::COMMANDS;
use super::{BeginSearch, Class, CommandInfo, FindKeys, Flags, KeySpec};

/// Every entry, commands and subcommands, sorted by name.
pub fn commands() -> &'static [CommandInfo] {
    &COMMANDS
}

/// The table entry for a command name (`get`, or `client|reply` as Redis
/// spells subcommands), ASCII case-insensitive.
pub fn lookup(name: &[u8]) -> Option<&'static CommandInfo> {
    search(name.iter().copied())
}

/// The entry for a subcommand of a container command (`CLIENT REPLY`).
pub fn lookup_sub(name: &[u8], sub: &[u8]) -> Option<&'static CommandInfo> {
    search(name.iter().chain(b"|").chain(sub).copied())
}

fn search(name: impl Iterator<Item = u8> + Clone) -> Option<&'static CommandInfo> {
    let name = name.map(|b| b.to_ascii_lowercase());
    COMMANDS
        .binary_search_by(|entry| -> Ordering { entry.name.bytes().cmp(name.clone()) })
        .ok()
        .map(|i| &COMMANDS[i])
}

/// The entry a command line runs: the subcommand's for a container with a
/// known subcommand, else the command's own. `None` for an unknown command.
pub fn resolve<'a, I>(args: I) -> Option<&'static CommandInfo>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut args = args.into_iter();
    let name = args.next()?;
    // `client|id` is how the table spells a subcommand, not a command Redis
    // would run.
    if name.contains(&b'|') {
        return None;
    }
    // Only containers have `name|...` entries, so no need to know which
    // commands are containers.
    if let Some(sub) = args.next()
        && let Some(info) = lookup_sub(name, sub)
    {
        return Some(info);
    }
    lookup(name)
}

/// What the connection's state machine needs to know about one command
/// line (`args[0]` is the command name). Unknown commands are
/// [`Class::UNKNOWN`]: sent on the shared connection, never resent.
pub fn classify<'a, I>(args: I) -> Class
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: Clone,
{
    let args = args.into_iter();
    let Some(info) = resolve(args.clone()) else {
        return Class::UNKNOWN;
    };
    let mut flags = info.flags;
    match info.name {
        // SET k v NX answers nil the second time, SET k v GET the value the
        // first one wrote: the replies differ, so neither may be resent.
        "set" if args.clone().skip(3).any(|a| is(a, "nx") || is(a, "get")) => {
            flags = flags.without(Flags::RESEND_SAFE);
        }
        "xread" | "xreadgroup" if !blocks_before_streams(args.clone()) => {
            flags = flags.without(Flags::BLOCKING);
        }
        _ => {}
    }
    // The fallback cache holds one value per key: GET with a wrong number of
    // arguments is an error for Redis to give, not a cache read.
    if flags.contains(Flags::FALLBACK_READ)
        && args.count() != usize::from(info.arity.unsigned_abs())
    {
        flags = flags.without(Flags::FALLBACK_READ);
    }
    Class::new(flags)
}

/// XREAD and XREADGROUP wait only with a BLOCK option. Options come before
/// STREAMS and everything after it is keys and ids, so "block" there is a
/// stream's name; option values are stepped over for the same reason
/// (`GROUP block streams` names a group and a consumer).
fn blocks_before_streams<'a>(args: impl Iterator<Item = &'a [u8]>) -> bool {
    let mut args = args.skip(1);
    while let Some(arg) = args.next() {
        if is(arg, "streams") {
            return false;
        }
        if is(arg, "block") {
            return true;
        }
        let values = if is(arg, "group") {
            2
        } else if is(arg, "count") {
            1
        } else {
            0
        };
        for _ in 0..values {
            args.next();
        }
    }
    false
}

fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// The key arguments of a command line, in key-spec order (a key named in
/// two specs comes twice). Nothing for an unknown command.
pub fn keys<'a, I>(args: I) -> Keys<I::IntoIter>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: Clone,
{
    let args = args.into_iter();
    let specs: &'static [KeySpec] = resolve(args.clone()).map_or(&[], |info| info.key_specs);
    Keys::new(args, specs)
}

/// The first key of a command line: what a Cluster router hashes.
pub fn first_key<'a, I>(args: I) -> Option<&'a [u8]>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: Clone,
{
    keys(args).next()
}

impl CommandInfo {
    /// The key arguments of `args` (which must be this command's line,
    /// name first) by this entry's key specs.
    pub fn keys<'a, I>(&self, args: I) -> Keys<I::IntoIter>
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: Clone,
    {
        Keys::new(args.into_iter(), self.key_specs)
    }
}

/// Iterator over the key arguments of one command line; see [`keys`].
#[derive(Clone, Debug)]
pub struct Keys<I> {
    /// Rewound to argument 0 for each spec.
    args: I,
    argc: usize,
    specs: core::slice::Iter<'static, KeySpec>,
    walk: Option<Walk<I>>,
}

/// One spec's keys: `cursor` stands at argument `at`.
#[derive(Clone, Debug)]
struct Walk<I> {
    cursor: I,
    at: usize,
    /// Inclusive, and below `argc`.
    last: usize,
    step: usize,
    skip_empty: bool,
}

impl<'a, I: Iterator<Item = &'a [u8]> + Clone> Keys<I> {
    fn new(args: I, specs: &'static [KeySpec]) -> Self {
        Keys {
            argc: args.clone().count(),
            args,
            specs: specs.iter(),
            walk: None,
        }
    }

    /// Where `spec`'s keys are in this command line, if it has any.
    fn start(&self, spec: &KeySpec) -> Option<Walk<I>> {
        let begin = match spec.begin {
            BeginSearch::Index(i) => usize::from(i),
            BeginSearch::Keyword {
                keyword,
                start_from,
            } => self.find_keyword(keyword, start_from)? + 1,
            BeginSearch::Unknown => return None,
        };
        let (first, last, step) = match spec.find {
            FindKeys::Range { last, step, limit } => {
                let last = if last >= 0 {
                    begin + last.unsigned_abs() as usize
                } else {
                    let from_end = last.unsigned_abs() as usize;
                    if limit <= 1 {
                        self.argc.checked_sub(from_end)?
                    } else {
                        let rest = self.argc.checked_sub(begin)?;
                        (begin + rest / usize::from(limit)).checked_sub(from_end)?
                    }
                };
                (begin, last, step)
            }
            FindKeys::KeyNum {
                numkeys_at,
                first,
                step,
            } => {
                let count = parse_count(self.args.clone().nth(begin + usize::from(numkeys_at))?)?;
                let first = begin + usize::from(first);
                // Redis refuses a count larger than what follows; reading
                // only what is there keeps the arithmetic bounded.
                let count = count.min(self.argc).checked_sub(1)?;
                (first, first + count * usize::from(step.max(1)), step)
            }
            FindKeys::Unknown => return None,
        };
        let last = last.min(self.argc.checked_sub(1)?);
        if first > last {
            return None;
        }
        let mut cursor = self.args.clone();
        if first > 0 {
            cursor.nth(first - 1)?;
        }
        Some(Walk {
            cursor,
            at: first,
            last,
            step: usize::from(step.max(1)),
            skip_empty: spec.empty_is_placeholder,
        })
    }

    /// Position of `keyword`: the first at or after `start_from`, or, when
    /// negative, the last at or before `argc + start_from` (never the name).
    fn find_keyword(&self, keyword: &str, start_from: i8) -> Option<usize> {
        let from_end = start_from.unsigned_abs() as usize;
        let mut positions = self.args.clone().enumerate().skip(1);
        if start_from >= 0 {
            positions
                .find(|&(i, arg)| i >= from_end && is(arg, keyword))
                .map(|(i, _)| i)
        } else {
            let until = self.argc.checked_sub(from_end)?;
            positions
                .take_while(|&(i, _)| i <= until)
                .filter(|&(_, arg)| is(arg, keyword))
                .last()
                .map(|(i, _)| i)
        }
    }
}

impl<'a, I: Iterator<Item = &'a [u8]> + Clone> Iterator for Keys<I> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if let Some(walk) = &mut self.walk {
                while walk.at <= walk.last {
                    let Some(key) = walk.cursor.next() else {
                        break;
                    };
                    walk.at += walk.step;
                    if walk.at <= walk.last {
                        for _ in 1..walk.step {
                            walk.cursor.next();
                        }
                    }
                    if !(walk.skip_empty && key.is_empty()) {
                        return Some(key);
                    }
                }
            }
            let spec = self.specs.next()?;
            self.walk = self.start(spec);
        }
    }
}

/// A non-negative decimal count, as Redis reads `numkeys`.
fn parse_count(arg: &[u8]) -> Option<usize> {
    if arg.is_empty() {
        return None;
    }
    arg.iter().try_fold(0usize, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(usize::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Route;

    /// Splits like a shell would, without quotes: enough for transcripts.
    fn line(text: &str) -> impl Iterator<Item = &[u8]> + Clone {
        text.split(' ').map(str::as_bytes)
    }

    #[track_caller]
    fn class(text: &str) -> Class {
        classify(line(text))
    }

    #[track_caller]
    fn routes(text: &str, expected: Route) {
        assert_eq!(class(text).route(), expected, "route of `{text}`");
    }

    #[track_caller]
    fn refused(text: &str) {
        assert!(
            matches!(class(text).route(), Route::Refused { .. }),
            "`{text}` should be refused, is {:?}",
            class(text)
        );
    }

    #[track_caller]
    fn keys_are(text: &str, expected: &[&str]) {
        let got: heapless::Vec<&[u8], 16> = keys(line(text)).collect();
        let expected: heapless::Vec<&[u8], 16> = expected.iter().map(|k| k.as_bytes()).collect();
        assert_eq!(got, expected, "keys of `{text}`");
    }

    #[test]
    fn get_is_a_cached_read_and_set_an_idempotent_write() {
        assert_eq!(class("GET k"), Class::CACHED_READ);
        assert_eq!(class("SET k v"), Class::IDEMPOTENT_WRITE);
        assert_eq!(class("SET k v EX 10 XX"), Class::IDEMPOTENT_WRITE);
        // A wrong arity is Redis's error to give, not the cache's answer.
        assert!(!class("GET k extra").fallback_read());
        assert!(class("GET k extra").resend_safe());
    }

    #[test]
    fn set_nx_or_get_may_not_be_resent() {
        assert_eq!(class("SET k v NX"), Class::WRITE);
        assert_eq!(class("SET k v nx EX 5"), Class::WRITE);
        assert_eq!(class("SET k v get"), Class::WRITE);
        // The key and the value are not options.
        assert_eq!(class("SET nx get"), Class::IDEMPOTENT_WRITE);
    }

    #[test]
    fn xread_blocks_only_with_block_before_streams() {
        routes("XREAD COUNT 1 BLOCK 0 STREAMS s 0", Route::Blocking);
        routes("xread block 100 streams s $", Route::Blocking);
        routes("XREAD STREAMS block 0", Route::Shared);
        routes("XREAD COUNT 2 STREAMS block other 0 0", Route::Shared);
        assert_eq!(class("XREAD STREAMS s 0"), Class::READ);
        routes("XREADGROUP GROUP g c BLOCK 0 STREAMS s >", Route::Blocking);
        routes("XREADGROUP GROUP g c STREAMS s >", Route::Shared);
        // A group and a consumer named like options are option values.
        routes("XREADGROUP GROUP block streams STREAMS s >", Route::Shared);
        assert!(!class("XREADGROUP GROUP g c BLOCK 0 STREAMS s >").resend_safe());
    }

    #[test]
    fn blocking_pops_go_to_the_blocking_pool_and_are_never_resent() {
        for text in [
            "BLPOP l 0",
            "BRPOP a b 1",
            "BLMOVE a b LEFT RIGHT 0",
            "BZPOPMIN z 0",
            "BRPOPLPUSH a b 0",
            "BLMPOP 0 1 l LEFT",
        ] {
            routes(text, Route::Blocking);
            assert!(!class(text).resend_safe(), "`{text}` resend-safe");
        }
    }

    #[test]
    fn wait_and_waitaof_stay_on_the_shared_connection() {
        for text in ["WAIT 1 0", "WAITAOF 1 0 0"] {
            routes(text, Route::Shared);
            assert!(class(text).flags.contains(Flags::SAME_CONN), "`{text}`");
            assert!(!class(text).blocking(), "`{text}`");
        }
    }

    #[test]
    fn connection_state_and_pubsub_are_refused() {
        for text in [
            "SUBSCRIBE ch",
            "PSUBSCRIBE p*",
            "SUNSUBSCRIBE",
            "MULTI",
            "EXEC",
            "SELECT 1",
            "CLIENT REPLY OFF",
            "CLIENT TRACKING on",
            "HELLO 3",
            "AUTH pw",
            "WATCH k",
            "RESET",
            "MONITOR",
            "READONLY",
        ] {
            refused(text);
        }
        routes("CLIENT ID", Route::Shared);
        routes("CLIENT SETNAME app", Route::Shared);
        routes("SWAPDB 0 1", Route::Shared);
    }

    #[test]
    fn publish_is_an_ordinary_command() {
        routes("PUBLISH ch msg", Route::Shared);
        routes("SPUBLISH ch msg", Route::Shared);
        routes("PUBSUB NUMSUB ch", Route::Shared);
        assert!(!class("PUBLISH ch msg").resend_safe());
        assert!(class("PUBSUB CHANNELS").resend_safe());
    }

    #[test]
    fn resend_safety() {
        assert_eq!(class("INCR n"), Class::WRITE);
        assert_eq!(class("EVAL_RO return 1 0"), Class::READ);
        assert_eq!(class("FCALL_RO f 0"), Class::READ);
        assert_eq!(class("EVAL return 1 0"), Class::UNKNOWN);
        assert_eq!(class("MSET a 1 b 2"), Class::IDEMPOTENT_WRITE);
        assert_eq!(class("HLEN h"), Class::READ);
        assert!(class("PING").resend_safe());
        assert!(class("COMMAND").resend_safe());
        assert!(class("COMMAND DOCS get").resend_safe());
        assert!(class("CONFIG GET maxmemory").resend_safe());
        assert!(!class("CONFIG SET maxmemory 1mb").resend_safe());
        assert!(!class("CLIENT KILL ID 7").resend_safe());
    }

    #[test]
    fn unknown_commands_and_subcommands() {
        assert_eq!(class("NOSUCHCOMMAND a b"), Class::UNKNOWN);
        assert_eq!(class("client|id"), Class::UNKNOWN);
        assert_eq!(class(""), Class::UNKNOWN);
        assert_eq!(classify([]), Class::UNKNOWN);
        // An unknown subcommand gets the container's (empty) flags.
        assert_eq!(class("CLIENT NOSUCH"), Class::UNKNOWN);
        assert_eq!(lookup(b"nosuch"), None);
        assert_eq!(lookup_sub(b"get", b"k"), None);
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(class("gEt k"), Class::CACHED_READ);
        refused("client reply off");
        assert_eq!(lookup(b"ZADD").map(|c| c.name), Some("zadd"));
        assert_eq!(
            lookup_sub(b"Client", b"REPLY").map(|c| c.name),
            Some("client|reply")
        );
        assert_eq!(lookup(b"client|reply").map(|c| c.arity), Some(3));
    }

    #[test]
    fn keys_by_index_and_range() {
        keys_are("GET k", &["k"]);
        assert_eq!(first_key(line("GET k")), Some(&b"k"[..]));
        keys_are("MSET a 1 b 2 c 3", &["a", "b", "c"]);
        keys_are("DEL a b c", &["a", "b", "c"]);
        keys_are("OBJECT ENCODING k", &["k"]);
        keys_are("PING", &[]);
        keys_are("NOSUCH a b", &[]);
        assert_eq!(first_key(line("PING")), None);
    }

    #[test]
    fn keys_by_numkeys() {
        keys_are("EVAL return 2 a b arg", &["a", "b"]);
        keys_are("EVAL return 0 arg", &[]);
        keys_are("ZUNIONSTORE dst 2 a b WEIGHTS 1 2", &["dst", "a", "b"]);
        keys_are("ZINTER 2 a b", &["a", "b"]);
        // A count larger than what follows reads only what is there, and a
        // count that is not a number reads nothing.
        keys_are("ZINTER 5 a b", &["a", "b"]);
        keys_are("ZINTER x a b", &[]);
    }

    #[test]
    fn keys_after_a_keyword() {
        keys_are("XREAD COUNT 1 STREAMS a b 0 0", &["a", "b"]);
        keys_are("XREAD STREAMS block 0", &["block"]);
        keys_are("XREADGROUP GROUP g c STREAMS s >", &["s"]);
        keys_are("GEORADIUS src 0 0 1 km STORE dst", &["src", "dst"]);
        keys_are("GEORADIUS src 0 0 1 km", &["src"]);
    }

    #[test]
    fn shard_channels_are_routed_like_keys() {
        keys_are("SPUBLISH ch msg", &["ch"]);
        keys_are("SSUBSCRIBE a b", &["a", "b"]);
        assert!(lookup(b"spublish").is_some_and(|c| c.key_specs[0].not_key));
        keys_are("PUBLISH ch msg", &[]);
    }

    #[test]
    fn migrate_reports_real_keys_only() {
        keys_are("MIGRATE h 6379 k 0 5000", &["k"]);
        keys_are("MIGRATE h 6379  0 5000 KEYS a b", &["a", "b"]);
        keys_are("MIGRATE h 6379  0 5000 COPY REPLACE KEYS a", &["a"]);
    }

    #[test]
    fn entries_are_sorted_and_lowercase() {
        assert!(COMMANDS.windows(2).all(|w| w[0].name < w[1].name));
        assert!(
            COMMANDS
                .iter()
                .all(|c| !c.name.bytes().any(|b| b.is_ascii_uppercase()))
        );
        // Every entry is found by its own name.
        assert!(
            COMMANDS
                .iter()
                .all(|c| lookup(c.name.as_bytes()) == Some(c))
        );
    }
}

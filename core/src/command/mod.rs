//! What resilis knows about each Redis command: the flags that decide its
//! fate on a connection (may it be resent after a reconnect, may the
//! fallback cache answer it, which connection carries it, is it refused),
//! and where its keys are (for Cluster routing).
//!
//! Two layers:
//! - [`Class`]: the few bits the connection's state machine needs about one
//!   concrete command. An adapter passes it in [`crate::Submit`]; firmware
//!   that sends a handful of known commands can build it from constants
//!   ([`Class::READ`], [`Class::WRITE`], ...) and never link the table.
//! - the table (`table.rs`, generated from a real redis-server's
//!   `COMMAND` reply by `scripts/gen-command-table.py`) and [`classify`],
//!   which reads a whole command line (subcommands, and options that change
//!   a command's nature: `SET ... NX|GET`, `XREAD ... BLOCK`). [`lookup`]
//!   gives one entry, [`keys`] the key arguments of a command line.
//!
//! The table is only linked when one of these functions is used.

mod class;
mod classify;
mod table;

pub use class::{Class, Flags, Route};
pub use classify::{Keys, classify, commands, first_key, keys, lookup, lookup_sub, resolve};

/// One command or subcommand as the table knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CommandInfo {
    /// Lowercase, as Redis spells it: `get`, `client|reply`.
    pub name: &'static str,
    /// Redis's arity, counting the name: `n` is exactly n arguments, `-n`
    /// at least n.
    pub arity: i8,
    /// Redis's `readonly`/`write`/`blocking`/`pubsub` facts plus resilis's
    /// judgements, before [`classify`] looks at the options.
    pub flags: Flags,
    /// Where the keys are, as Redis's key specs say; all of them apply.
    pub key_specs: &'static [KeySpec],
}

impl CommandInfo {
    /// The class of this command when no option changes it.
    pub const fn class(&self) -> Class {
        Class::new(self.flags)
    }
}

/// One of Redis's key specs: where to start looking, then which arguments
/// from there are keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct KeySpec {
    pub begin: BeginSearch,
    pub find: FindKeys,
    /// Not a key but routed like one (shard channels of SPUBLISH, SSUBSCRIBE).
    pub not_key: bool,
    /// May miss keys (MIGRATE's `KEYS` can be mistaken for a key named so).
    pub incomplete: bool,
    /// An empty argument here stands in for keys given elsewhere (MIGRATE's
    /// `""` before `KEYS`) and is not reported: it would route to slot 0.
    /// resilis's judgement, not Redis's.
    pub empty_is_placeholder: bool,
}

/// Where a key spec starts, as an argument index (0 is the command name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BeginSearch {
    /// At this argument.
    Index(u8),
    /// Just after `keyword` (ASCII case-insensitive), searched forward from
    /// argument `start_from`, or backward from `argc + start_from` when it
    /// is negative. No keyword, no keys.
    Keyword {
        keyword: &'static str,
        start_from: i8,
    },
    /// Redis cannot say (SORT's BY/GET/STORE): the spec yields nothing.
    Unknown,
}

/// Which arguments are keys, counted from where the search began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FindKeys {
    /// Every `step`-th argument up to `last`: an offset from the start when
    /// `last >= 0`, else counted from the end (`-1` is the last argument).
    /// With `limit > 1` and a negative `last`, only the first `1/limit` of
    /// the rest are keys (XREAD's keys come before as many ids).
    Range {
        last: i8,
        step: u8,
        limit: u8,
    },
    /// The argument at `numkeys_at` says how many keys there are; the first
    /// is at `first`, then every `step`-th (EVAL, ZUNIONSTORE).
    KeyNum {
        numkeys_at: u8,
        first: u8,
        step: u8,
    },
    Unknown,
}

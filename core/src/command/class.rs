//! The class of one concrete command: what the core decides by.

/// Bits describing one command. Combine with `|`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Flags(pub u16);

impl Flags {
    pub const NONE: Flags = Flags(0);
    /// Reads data, changes nothing (COMMAND INFO `readonly`).
    pub const READONLY: Flags = Flags(1 << 0);
    /// May change data (COMMAND INFO `write`).
    pub const WRITE: Flags = Flags(1 << 1);
    /// May wait for data for a long time (BLPOP, XREAD ... BLOCK). Runs on a
    /// connection of its own; abandoning it after it was written closes
    /// that connection, so it cannot take data for a caller who left.
    pub const BLOCKING: Flags = Flags(1 << 2);
    /// Pub/sub (SUBSCRIBE...): replies become pushes.
    pub const PUBSUB: Flags = Flags(1 << 3);
    /// Changes the connection's state for the commands after it (SELECT,
    /// MULTI, CLIENT REPLY, AUTH...): refused on a shared connection.
    pub const CONN_STATE: Flags = Flags(1 << 4);
    /// Answers about this connection's own earlier writes (WAIT, WAITAOF):
    /// must run on the connection that carried them, never elsewhere.
    pub const SAME_CONN: Flags = Flags(1 << 5);
    /// Writing it twice leaves the same data and the same answer (reads,
    /// plain SET, MSET): may be written again after a reconnect instead of
    /// being reported indeterminate.
    pub const RESEND_SAFE: Flags = Flags(1 << 6);
    /// A read of one string key that the adapter's fallback cache can answer
    /// (GET) while Redis is unavailable.
    pub const FALLBACK_READ: Flags = Flags(1 << 7);

    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.union(rhs)
    }
}

/// Which connection carries a command, or why none does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Route {
    /// The shared, pipelined connection.
    Shared,
    /// A connection of its own from the blocking pool.
    Blocking,
    /// Not sent at all: `why` says what to do instead.
    Refused { why: &'static str },
}

/// What the connection's state machine knows about one submitted command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Class {
    pub flags: Flags,
}

impl Class {
    /// A read that changes nothing and may be resent (HGET, LRANGE, PING...).
    pub const READ: Class = Class::new(Flags::READONLY.union(Flags::RESEND_SAFE));
    /// GET: a read the fallback cache can answer during an outage.
    pub const CACHED_READ: Class = Class::new(
        Flags::READONLY
            .union(Flags::RESEND_SAFE)
            .union(Flags::FALLBACK_READ),
    );
    /// A write that is safe to write twice (plain SET, MSET).
    pub const IDEMPOTENT_WRITE: Class = Class::new(Flags::WRITE.union(Flags::RESEND_SAFE));
    /// A write that must never be written twice (INCR, DEL, LPUSH, SET NX).
    pub const WRITE: Class = Class::new(Flags::WRITE);
    /// Nothing known: treated as a write that may not be resent.
    pub const UNKNOWN: Class = Class::new(Flags::NONE);

    pub const fn new(flags: Flags) -> Class {
        Class { flags }
    }

    pub const fn resend_safe(self) -> bool {
        self.flags.contains(Flags::RESEND_SAFE)
    }

    /// Changes nothing: if its reply is lost, nothing was applied.
    pub const fn read_only(self) -> bool {
        self.flags.contains(Flags::READONLY) && !self.flags.contains(Flags::WRITE)
    }

    pub const fn blocking(self) -> bool {
        self.flags.contains(Flags::BLOCKING)
    }

    /// May legitimately wait long for its reply (a blocking command, or
    /// WAIT/WAITAOF waiting for replicas): while it is outstanding within
    /// its deadline, silence is not a sign of a dead connection.
    pub const fn may_wait(self) -> bool {
        self.flags.contains(Flags::BLOCKING) || self.flags.contains(Flags::SAME_CONN)
    }

    pub const fn fallback_read(self) -> bool {
        self.flags.contains(Flags::FALLBACK_READ)
    }

    /// Which connection carries it. Refusals name what to do instead.
    pub const fn route(self) -> Route {
        if self.flags.contains(Flags::PUBSUB) {
            Route::Refused {
                why: "pub/sub replies are pushes, not replies: a subscriber needs a connection of its own (not in this version)",
            }
        } else if self.flags.contains(Flags::CONN_STATE) {
            Route::Refused {
                why: "it changes the state of the shared connection for every other caller (database, protocol, credentials, transactions, reply mode): set it in the config or use the dedicated API",
            }
        } else if self.flags.contains(Flags::BLOCKING) && !self.flags.contains(Flags::SAME_CONN) {
            Route::Blocking
        } else {
            Route::Shared
        }
    }
}

//! The one error type of the client: every way a command or a constructor
//! can fail, sorted by what the caller should do about it.
//!
//! - [`Error::ConnectionDown`]: Redis is unreachable or refused us; the
//!   reason says why (the core's diagnosis, as soon as it is made: a caller
//!   waiting for the first connect to a TLS-only server learns "TLS
//!   required" within one round trip, not at its deadline) and `fix` says
//!   what to change. Nothing was applied.
//! - [`Error::Timeout`]: the command's deadline passed and nothing is known
//!   about why (no attempt has failed yet). Nothing was applied.
//! - [`Error::Indeterminate`]: the command was written but no reply came. It
//!   may or may not have been applied; only the caller knows whether to retry.
//! - [`Error::Server`]: Redis answered with an error reply.
//! - [`Error::Backpressure`]: the bounded queue is full: slow down.
//! - [`Error::Config`] / [`Error::Tls`]: a setting is wrong; the message names
//!   the variable and the fix.
//!
//! No variant ever holds a password: configuration errors never quote a
//! password, any part of a URL's `user:password` or a whole URL (the core
//! guarantees that; `tests/secrets.rs` checks it over random mistyped URLs),
//! and TLS errors quote only paths and host names.

use std::fmt;

use resilis_core::{ConfigError, DisconnectReason, IndeterminateCause};

pub use crate::tls::TlsConfigError;

/// What went wrong. Match on the variant, not on the message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// Redis is not available (or refused the connection for good). Never
    /// applied. `fix` is the one-sentence remedy for `reason`.
    ConnectionDown {
        reason: Option<DisconnectReason>,
        fix: &'static str,
        /// What the server itself said, when it refused the handshake
        /// (e.g. `BUSY Redis is busy running a script...`).
        server_said: Option<String>,
    },
    /// The deadline passed with nothing known about why: never applied.
    Timeout,
    /// Written, then no reply: it may have been applied.
    Indeterminate { cause: IndeterminateCause },
    /// An error reply from Redis, e.g. `WRONGTYPE Operation against a key...`.
    Server(String),
    /// The command queue is at its bound (commands or bytes): back off.
    Backpressure { queued: usize, queued_bytes: usize },
    /// One command larger than the byte bound that applies: the offline
    /// queue's (`offline`, while Redis is unavailable) or the in-flight one.
    /// Never applied.
    TooLarge {
        len: usize,
        max: usize,
        offline: bool,
    },
    /// A `REDIS_*` variable or URL part is invalid.
    Config(ConfigError),
    /// A `REDIS_TLS_*` setting is invalid (unreadable file, bad PEM...).
    Tls(TlsConfigError),
    /// The reply does not have the shape the typed command expects (e.g. a
    /// string where an integer was expected).
    UnexpectedReply(String),
    /// A command `cmd()` does not send on the shared connection (pub/sub,
    /// transactions, SELECT...): `why` says what to do instead.
    Unsupported { command: String, why: &'static str },
    /// Cluster mode: the command's keys hash to different slots and it is
    /// not one of the commands resilis splits (MGET, MSET, DEL, EXISTS,
    /// UNLINK, TOUCH). Never sent. Put the keys in one slot with a
    /// `{hashtag}`.
    CrossSlot {
        command: String,
        first: u16,
        other: u16,
    },
    /// Cluster mode: no node is known to serve the command's slot (no slot
    /// map could be read from any seed, or no shard serves the slot) before
    /// its deadline. Never applied.
    NoRoute { slot: Option<u16> },
    /// Cluster mode: more MOVED/ASK/READONLY redirects than the budget; the
    /// nodes disagree about the slot. Never applied.
    RedirectLoop { redirects: u8 },
    /// A Sentinel setting is missing or invalid (a URL with no master
    /// name, `REDIS_SENTINELS` without `REDIS_SENTINEL_MASTER`...).
    SentinelConfig {
        field: &'static str,
        problem: &'static str,
        fix: &'static str,
    },
    /// Sentinel mode: no sentinel named a master for the command's
    /// lifetime (all unreachable, or none knows the name). Never applied.
    NoMaster { why: String },
    /// A subscription could not be taken (too many, names too long, an
    /// empty name). Nothing was subscribed.
    PubSub(resilis_core::pubsub::PubSubError),
    /// The client was shut down (or its driver task ended).
    Shutdown,
    /// The client was created outside a Tokio runtime.
    NoRuntime,
}

impl Error {
    /// Redis is unavailable for `reason`, with the server's own words when
    /// it gave any.
    pub(crate) fn down_said(reason: DisconnectReason, said: Option<&str>) -> Error {
        Error::ConnectionDown {
            reason: Some(reason),
            fix: reason.fix(),
            server_said: said.map(str::to_owned),
        }
    }

    pub(crate) fn down_unknown() -> Error {
        Error::ConnectionDown {
            reason: None,
            fix: "Redis is not reachable yet; resilis keeps reconnecting (see client.health())",
            server_said: None,
        }
    }

    /// True when the command certainly did not run (safe to retry anything).
    pub fn is_not_applied(&self) -> bool {
        matches!(
            self,
            Error::ConnectionDown { .. }
                | Error::Timeout
                | Error::Backpressure { .. }
                | Error::TooLarge { .. }
                | Error::CrossSlot { .. }
                | Error::NoRoute { .. }
                | Error::RedirectLoop { .. }
        )
    }

    /// True for failures of the connection rather than of the command: the
    /// cases in which a fallback answer makes sense.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            Error::ConnectionDown { .. }
                | Error::Timeout
                | Error::Indeterminate { .. }
                | Error::Shutdown
        )
    }

    /// What to change, when there is something to change.
    pub fn fix(&self) -> Option<&'static str> {
        match self {
            Error::ConnectionDown { fix, .. } => Some(fix),
            Error::Timeout => Some(
                "no answer before the command's deadline and no failure diagnosed yet: raise the timeout, or see client.health()",
            ),
            Error::Backpressure { .. } => {
                Some("too many commands queued: slow down or raise the queue bounds")
            }
            Error::TooLarge { offline: true, .. } => Some(
                "Redis is unavailable and the command is larger than the offline queue's bound: retry when it is back, or raise Options::configure(|c| c.queue.max_bytes = ...)",
            ),
            Error::TooLarge { offline: false, .. } => Some(
                "raise the in-flight byte bound (Options::configure(|c| c.queue.max_in_flight_bytes = ...)) or split the value",
            ),
            Error::Tls(e) => Some(e.fix),
            Error::Unsupported { why, .. } => Some(why),
            Error::SentinelConfig { fix, .. } => Some(fix),
            Error::NoMaster { .. } => Some(
                "check that the sentinels are reachable (REDIS_SENTINELS) and monitor this master name (SENTINEL get-master-addr-by-name)",
            ),
            Error::CrossSlot { .. } => Some(
                "give the keys a common {hashtag} (user:{42}:a, user:{42}:b) so they share a slot, or send one command per key",
            ),
            Error::NoRoute { .. } => Some(
                "check that the seed nodes are reachable and that every slot is assigned (`redis-cli --cluster check`); see client.health()",
            ),
            Error::RedirectLoop { .. } => Some(
                "the nodes disagree about who serves the slot (a resharding in progress?): retry later, or check `redis-cli --cluster check`",
            ),
            Error::NoRuntime => {
                Some("create the client inside a Tokio runtime (#[tokio::main] or Runtime::enter)")
            }
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ConnectionDown {
                reason: Some(reason),
                server_said,
                ..
            } => {
                write!(f, "Redis connection down (not applied): {reason}")?;
                match server_said {
                    Some(said) => write!(f, " (the server said: {said})"),
                    None => Ok(()),
                }
            }
            Error::ConnectionDown {
                reason: None, fix, ..
            } => {
                write!(f, "Redis connection down (not applied): {fix}")
            }
            Error::Timeout => f.write_str(
                "command timed out with no failure diagnosed yet (not applied)",
            ),
            Error::Indeterminate { cause } => match cause {
                IndeterminateCause::TimedOut => f.write_str(
                    "command sent but no reply before its deadline: it may have been applied",
                ),
                IndeterminateCause::ConnectionLost(reason) => write!(
                    f,
                    "connection lost after the command was sent: it may have been applied ({reason})"
                ),
                IndeterminateCause::NodeReplaced => f.write_str(
                    "acknowledged by a cluster primary that had hung and was replaced by its replica meanwhile: the write may have been lost",
                ),
                IndeterminateCause::Cancelled => f.write_str(
                    "the caller gave up after the command was sent: it may have been applied",
                ),
            },
            Error::Server(text) => write!(f, "Redis error: {text}"),
            Error::Backpressure {
                queued,
                queued_bytes,
            } => write!(
                f,
                "command queue full ({queued} commands, {queued_bytes} bytes): slow down"
            ),
            Error::TooLarge {
                len,
                max,
                offline: true,
            } => write!(
                f,
                "command of {len} bytes is larger than the offline queue's bound of {max} bytes (not applied)"
            ),
            Error::TooLarge {
                len,
                max,
                offline: false,
            } => write!(
                f,
                "command of {len} bytes is larger than the in-flight bound of {max} bytes (not applied)"
            ),
            Error::Config(e) => write!(f, "configuration: {e}"),
            Error::Tls(e) => write!(f, "TLS configuration: {e}"),
            Error::UnexpectedReply(what) => write!(f, "unexpected reply: {what}"),
            Error::Unsupported { command, why } => {
                write!(f, "{command} is not sent on the shared connection: {why}")
            }
            Error::CrossSlot {
                command,
                first,
                other,
            } => write!(
                f,
                "{command} names keys in slots {first} and {other}: a cluster runs it only on keys of one slot (not sent)"
            ),
            Error::NoRoute { slot: Some(slot) } => {
                write!(f, "no cluster node is known to serve slot {slot} (not applied)")
            }
            Error::NoRoute { slot: None } => {
                f.write_str("no cluster node is known to be reachable (not applied)")
            }
            Error::RedirectLoop { redirects } => write!(
                f,
                "redirected {redirects} times without reaching the slot's node (not applied)"
            ),
            Error::PubSub(e) => write!(f, "subscription refused: {e}"),
            Error::SentinelConfig { field, problem, .. } => write!(f, "{field}: {problem}"),
            Error::NoMaster { why } => write!(f, "no master from Sentinel: {why} (not applied)"),
            Error::Shutdown => f.write_str("the client was shut down"),
            Error::NoRuntime => f.write_str(
                "no Tokio runtime: create the client inside a Tokio runtime (#[tokio::main] or Runtime::enter)",
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<TlsConfigError> for Error {
    fn from(e: TlsConfigError) -> Self {
        Error::Tls(e)
    }
}

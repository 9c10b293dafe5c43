//! Why a connection failed, whether retrying can help, and what to change.
//!
//! Every disconnect carries a [`DisconnectReason`]. Its [`FailureClass`]
//! separates "the network failed" (transient: retry on the backoff schedule)
//! from "the server said no" (permanent: retrying with the same settings
//! cannot help, so the connection waits for a slow probe or an explicit
//! retry). [`DisconnectReason::fix`] says what the user should change.

use core::fmt;

use crate::resp::DecodeError;

/// What the adapter saw go wrong with the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TransportError {
    /// The host name did not resolve.
    Dns,
    /// Connection refused: nothing listens on that port.
    Refused,
    /// The OS or the adapter gave up on the transport (TCP_USER_TIMEOUT, a
    /// connect timeout of its own).
    TimedOut,
    /// Connection reset by peer.
    Reset,
    /// The peer closed the connection (EOF).
    Closed,
    /// The TLS handshake received bytes that are not TLS (plaintext RESP):
    /// the server does not speak TLS on this port.
    TlsNotSpoken,
    /// The server's certificate failed verification (unknown CA, expired,
    /// wrong host name).
    TlsCertificate,
    /// Any other TLS failure (alert, protocol version, cipher).
    TlsOther,
    /// Any other I/O failure.
    Other,
}

/// Transient failures are retried on the backoff schedule; permanent ones wait
/// for a slow probe or an explicit retry instead of hammering the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FailureClass {
    Transient,
    Permanent,
}

/// How we know a plaintext connection met a TLS-only server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TlsEvidence {
    /// The server closed the connection right after connect without a byte of
    /// reply (what TLS-only Redis and managed services do).
    ClosedWithoutReply,
    /// The server answered with a TLS record (0x15/0x16 then 0x03).
    TlsRecord,
}

/// Why a connection ended (or never became ready).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The adapter reported a transport failure that has no better diagnosis.
    Transport(TransportError),
    /// No transport within `connect_timeout`.
    ConnectTimeout,
    /// No TLS session within `tls_timeout`.
    TlsTimeout,
    /// No answer to the handshake within `handshake_timeout`.
    HandshakeTimeout { received_any: bool },
    /// Plaintext connection to a server that requires TLS (the seed's
    /// "Socket closed unexpectedly").
    TlsRequired(TlsEvidence),
    /// TLS connection to a server that speaks plaintext.
    TlsNotSpoken,
    /// Not one byte back in answer to the TLS hello within
    /// `tls_silence_timeout`: what a plaintext Redis does.
    TlsUnanswered,
    /// The server's certificate was not trusted.
    TlsCertificate,
    /// WRONGPASS or "invalid password": wrong password or unknown user.
    AuthFailed,
    /// NOAUTH: the server needs a password and none was given.
    AuthRequired,
    /// AUTH was sent to a server that has no password configured.
    PasswordNotConfigured,
    /// NOPERM: the ACL user may not run a handshake command.
    NoPermission,
    /// DENIED: protected mode refuses non-loopback clients without a password.
    ProtectedMode,
    /// SELECT failed: the database index does not exist.
    InvalidDatabase,
    /// "max number of clients reached".
    MaxClients,
    /// LOADING: the server is loading its dataset.
    Loading,
    /// BUSY: a script or function is running; the server answers nothing
    /// else until it ends or is killed.
    Busy,
    /// MASTERDOWN: a replica whose link to its master is down refuses reads.
    MasterDown,
    /// TRYAGAIN: the server asked to retry shortly (a cluster slot moving).
    TryAgain,
    /// Any other error reply to the handshake.
    HandshakeRejected,
    /// Nothing received while the oldest request (or PING) waited `ping_timeout`.
    PingTimeout,
    /// A reply was arriving, but fewer than `min_reply_rate` bytes of it came
    /// in over a whole `ping_timeout`: alive, yet too slow to be useful.
    SlowReply,
    /// The server sent bytes that are not valid RESP or break a limit.
    Protocol(DecodeError),
    /// A reply arrived with no request outstanding.
    UnexpectedReply,
    /// The application asked for the connection to close.
    Shutdown,
    /// A blocking command (BLPOP...) was abandoned by its caller after it
    /// was written: the connection was closed so that it cannot take data
    /// for nobody, and is reopened at once.
    Abandoned,
    /// `ROLE` said this node is not a master (with `Config::require_master`:
    /// a Sentinel-managed master that was demoted, or an address that is
    /// stale). Nothing is written to it; ask Sentinel again.
    NotMaster,
    /// The adapter moved the connection to another node
    /// ([`crate::Connection::handle_retarget`]: Sentinel named a new master).
    MasterSwitched,
}

impl DisconnectReason {
    pub fn class(&self) -> FailureClass {
        use DisconnectReason::*;
        match self {
            AuthFailed
            | AuthRequired
            | PasswordNotConfigured
            | NoPermission
            | ProtectedMode
            | InvalidDatabase
            | TlsCertificate
            | HandshakeRejected
            | Shutdown => FailureClass::Permanent,
            _ => FailureClass::Transient,
        }
    }

    /// What to change, in one sentence.
    pub fn fix(&self) -> &'static str {
        use DisconnectReason::*;
        match self {
            Transport(TransportError::Dns) => {
                "check the host name in REDIS_URL / REDIS_HOST and the DNS of this machine"
            }
            Transport(TransportError::Refused) => {
                "nothing listens there: check REDIS_HOST and REDIS_PORT, and that Redis is running"
            }
            Transport(_) => {
                "the network or the server dropped the connection; resilis reconnects with backoff"
            }
            ConnectTimeout => {
                "no TCP connection: check that a firewall or security group allows this machine (IP allowlist) and the port is right"
            }
            // A plaintext Redis reads a ClientHello as the start of an inline
            // command and waits for its newline: silence, not an error.
            TlsTimeout => {
                "no TLS answer: a plaintext Redis stays silent on a TLS hello, so if this server does not use TLS use redis:// and unset REDIS_TLS; otherwise check the port is the server's TLS port"
            }
            HandshakeTimeout {
                received_any: false,
            } => {
                "the server never answered: if it requires TLS use rediss:// or REDIS_TLS=true; else check for a proxy or firewall"
            }
            HandshakeTimeout { received_any: true } => {
                "the server answered too slowly: raise handshake_timeout or check its load"
            }
            TlsRequired(_) => "server requires TLS: use rediss:// or REDIS_TLS=true",
            TlsNotSpoken => {
                "server does not speak TLS on this port: use redis:// and unset REDIS_TLS, or use the TLS port"
            }
            TlsUnanswered => {
                "the server did not answer the TLS hello, as a plaintext Redis does: use redis:// and unset REDIS_TLS, or use the server's TLS port"
            }
            TlsCertificate => {
                "the server's certificate is not trusted: set REDIS_TLS_CA_FILE to your provider's CA (or, knowing the risk, REDIS_TLS_INSECURE=true)"
            }
            AuthFailed => {
                "wrong password or unknown user: check REDIS_PASSWORD / REDIS_USERNAME or the URL's user:password"
            }
            AuthRequired => {
                "the server requires a password: set REDIS_PASSWORD or use redis://user:password@host"
            }
            PasswordNotConfigured => {
                "the server has no password: remove REDIS_PASSWORD, or set requirepass on the server"
            }
            NoPermission => {
                "the ACL user lacks permission for HELLO/AUTH/SELECT/PING: grant them with ACL SETUSER"
            }
            ProtectedMode => {
                "the server is in protected mode: set a password (requirepass) or bind it to this interface deliberately"
            }
            InvalidDatabase => {
                "the database number does not exist: use a smaller REDIS_DB or /db in the URL"
            }
            MaxClients => {
                "the server is at maxclients: raise maxclients or reduce connections (pooling)"
            }
            Loading => "the server is loading its dataset; resilis retries until it is done",
            Busy => {
                "a script or function is running on the server (BUSY): wait for it, or end it with SCRIPT KILL / FUNCTION KILL; resilis retries"
            }
            MasterDown => {
                "this replica lost its master (MASTERDOWN): fix the replication link or point at the master; resilis retries"
            }
            TryAgain => "the server asked to try again shortly (TRYAGAIN); resilis retries",
            HandshakeRejected => "the server rejected the handshake: see the server message",
            PingTimeout => {
                "no reply within ping_timeout: the connection was silently dropped (idle firewall, failover); resilis reconnects"
            }
            SlowReply => {
                "the link or the server is too slow for this reply (bandwidth, a huge value, server load): find out why, or lower min_reply_rate (0 turns the floor off); resilis reconnects"
            }
            Protocol(_) => {
                "the peer is not a Redis server or sent a reply over the configured limits"
            }
            UnexpectedReply => {
                "the server sent a reply nobody asked for: is something else sharing this connection?"
            }
            Shutdown => "the application closed the connection",
            MasterSwitched => "Sentinel named a new master; resilis moved there",
            NotMaster => {
                "the node is not the master (a failover moved it): resilis asks Sentinel for the master again"
            }
            Abandoned => {
                "a blocking command's caller gave up: its connection was closed so it cannot take data for nobody; reopened at once"
            }
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DisconnectReason::*;
        match self {
            Transport(e) => write!(f, "{}", transport_text(*e))?,
            ConnectTimeout => f.write_str("connect timed out")?,
            TlsTimeout => f.write_str("TLS handshake timed out")?,
            HandshakeTimeout { .. } => f.write_str("Redis handshake timed out")?,
            TlsRequired(TlsEvidence::ClosedWithoutReply) => f.write_str(
                "the server closed the connection right after connect without replying",
            )?,
            TlsRequired(TlsEvidence::TlsRecord) => {
                f.write_str("the server answered plaintext with a TLS record")?
            }
            TlsNotSpoken => f.write_str("the TLS handshake received plaintext")?,
            TlsUnanswered => f.write_str("no answer to the TLS hello")?,
            TlsCertificate => f.write_str("TLS certificate verification failed")?,
            AuthFailed => f.write_str("authentication failed (WRONGPASS)")?,
            AuthRequired => f.write_str("authentication required (NOAUTH)")?,
            PasswordNotConfigured => f.write_str("AUTH sent but the server has no password")?,
            NoPermission => f.write_str("permission denied by ACL (NOPERM)")?,
            ProtectedMode => f.write_str("refused by protected mode (DENIED)")?,
            InvalidDatabase => f.write_str("SELECT failed: database index out of range")?,
            MaxClients => f.write_str("max number of clients reached")?,
            Loading => f.write_str("server is loading the dataset")?,
            Busy => f.write_str("server busy running a script (BUSY)")?,
            MasterDown => f.write_str("replica without its master (MASTERDOWN)")?,
            TryAgain => f.write_str("server asked to try again (TRYAGAIN)")?,
            HandshakeRejected => f.write_str("the server rejected the handshake")?,
            PingTimeout => f.write_str("no reply within the ping timeout (dead connection)")?,
            SlowReply => {
                f.write_str("a reply arrived slower than min_reply_rate bytes per ping_timeout")?
            }
            Protocol(e) => write!(f, "{e}")?,
            UnexpectedReply => f.write_str("unexpected reply")?,
            Shutdown => f.write_str("shut down")?,
            Abandoned => f.write_str("closed under an abandoned blocking command")?,
            NotMaster => f.write_str("the node is not a master (ROLE)")?,
            MasterSwitched => f.write_str("moved to the new master")?,
        }
        write!(f, ": {}", self.fix())
    }
}

fn transport_text(e: TransportError) -> &'static str {
    match e {
        TransportError::Dns => "host name did not resolve",
        TransportError::Refused => "connection refused",
        TransportError::TimedOut => "transport timed out",
        TransportError::Reset => "connection reset by peer",
        TransportError::Closed => "connection closed by peer",
        TransportError::TlsNotSpoken => "TLS handshake received plaintext",
        TransportError::TlsCertificate => "TLS certificate not trusted",
        TransportError::TlsOther => "TLS handshake failed",
        TransportError::Other => "I/O error",
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DisconnectReason {}

/// Reads an error reply received during the handshake. Matching is on the
/// error code and stable fragments of Redis's messages (2.6 through 7.x).
pub(crate) fn classify_handshake_error(text: &[u8]) -> HandshakeError {
    let starts = |p: &[u8]| text.len() >= p.len() && text[..p.len()].eq_ignore_ascii_case(p);
    let contains = |p: &[u8]| text.windows(p.len()).any(|w| w.eq_ignore_ascii_case(p));
    let reason = if starts(b"WRONGPASS")
        || contains(b"invalid password")
        || contains(b"invalid username-password")
    {
        DisconnectReason::AuthFailed
    } else if starts(b"NOAUTH") {
        DisconnectReason::AuthRequired
    } else if starts(b"NOPERM") {
        DisconnectReason::NoPermission
    } else if starts(b"DENIED") {
        DisconnectReason::ProtectedMode
    } else if starts(b"LOADING") {
        DisconnectReason::Loading
    } else if starts(b"BUSY") {
        DisconnectReason::Busy
    } else if starts(b"MASTERDOWN") {
        DisconnectReason::MasterDown
    } else if starts(b"TRYAGAIN") {
        DisconnectReason::TryAgain
    } else if contains(b"max number of clients") {
        DisconnectReason::MaxClients
    } else if contains(b"without any password configured") || contains(b"no password is set") {
        DisconnectReason::PasswordNotConfigured
    } else if contains(b"DB index is out of range") || contains(b"invalid DB index") {
        DisconnectReason::InvalidDatabase
    } else if starts(b"NOPROTO") || contains(b"unknown command") {
        return HandshakeError::HelloUnsupported;
    } else {
        DisconnectReason::HandshakeRejected
    };
    HandshakeError::Fatal(reason)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandshakeError {
    /// The server does not know HELLO (Redis < 6) or the protocol version:
    /// fall back to AUTH + RESP2.
    HelloUnsupported,
    Fatal(DisconnectReason),
}

/// Does this look like the start of a TLS record (alert or handshake)?
pub(crate) fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15 | 0x16, 0x03, ..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_classified() {
        let fatal = |t: &[u8]| match classify_handshake_error(t) {
            HandshakeError::Fatal(r) => r,
            HandshakeError::HelloUnsupported => panic!("{t:?} read as HELLO unsupported"),
        };
        assert_eq!(
            fatal(b"WRONGPASS invalid username-password pair or user is disabled."),
            DisconnectReason::AuthFailed
        );
        assert_eq!(fatal(b"ERR invalid password"), DisconnectReason::AuthFailed);
        assert_eq!(
            fatal(b"NOAUTH HELLO must be called with the client already authenticated"),
            DisconnectReason::AuthRequired
        );
        assert_eq!(
            fatal(b"NOPERM this user has no permissions to run the 'select' command"),
            DisconnectReason::NoPermission
        );
        assert_eq!(
            fatal(b"DENIED Redis is running in protected mode"),
            DisconnectReason::ProtectedMode
        );
        assert_eq!(
            fatal(b"ERR max number of clients reached"),
            DisconnectReason::MaxClients
        );
        assert_eq!(
            fatal(b"LOADING Redis is loading the dataset in memory"),
            DisconnectReason::Loading
        );
        assert_eq!(
            fatal(b"BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT."),
            DisconnectReason::Busy
        );
        assert_eq!(
            fatal(
                b"MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."
            ),
            DisconnectReason::MasterDown
        );
        assert_eq!(
            fatal(b"TRYAGAIN Multiple keys request during rehashing of slot"),
            DisconnectReason::TryAgain
        );
        assert_eq!(
            fatal(b"ERR DB index is out of range"),
            DisconnectReason::InvalidDatabase
        );
        assert_eq!(
            fatal(
                b"ERR AUTH <password> called without any password configured for the default user."
            ),
            DisconnectReason::PasswordNotConfigured
        );
        assert_eq!(
            fatal(b"ERR something new"),
            DisconnectReason::HandshakeRejected
        );
        assert_eq!(
            classify_handshake_error(b"ERR unknown command 'HELLO'"),
            HandshakeError::HelloUnsupported
        );
        assert_eq!(
            classify_handshake_error(b"NOPROTO unsupported protocol version"),
            HandshakeError::HelloUnsupported
        );
    }

    #[test]
    fn classes() {
        assert_eq!(
            DisconnectReason::AuthFailed.class(),
            FailureClass::Permanent
        );
        assert_eq!(
            DisconnectReason::PingTimeout.class(),
            FailureClass::Transient
        );
        for busy in [
            DisconnectReason::Busy,
            DisconnectReason::Loading,
            DisconnectReason::MasterDown,
            DisconnectReason::TryAgain,
            DisconnectReason::Abandoned,
            DisconnectReason::SlowReply,
        ] {
            assert_eq!(busy.class(), FailureClass::Transient, "{busy:?}");
        }
        assert_eq!(
            DisconnectReason::TlsRequired(TlsEvidence::TlsRecord).class(),
            FailureClass::Transient
        );
        assert_eq!(
            DisconnectReason::Transport(TransportError::Refused).class(),
            FailureClass::Transient
        );
    }

    #[test]
    fn tls_record_detection() {
        assert!(looks_like_tls(&[0x15, 0x03, 0x03, 0x00, 0x02]));
        assert!(looks_like_tls(&[0x16, 0x03, 0x01]));
        assert!(!looks_like_tls(b"+OK\r\n"));
        assert!(!looks_like_tls(&[0x15]));
    }

    #[test]
    fn display_names_cause_and_fix() {
        extern crate std;
        let text = std::format!(
            "{}",
            DisconnectReason::TlsRequired(TlsEvidence::ClosedWithoutReply)
        );
        assert!(
            text.contains("closed the connection") && text.contains("rediss:// or REDIS_TLS=true"),
            "{text}"
        );
        let text = std::format!("{}", DisconnectReason::SlowReply);
        assert!(
            text.contains("slower than min_reply_rate") && text.contains("too slow"),
            "{text}"
        );
    }
}

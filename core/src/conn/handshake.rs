//! The Redis handshake's commands and how to read their replies:
//! `HELLO <proto> [AUTH user pass] [SETNAME name]`, or, for servers that do
//! not know HELLO (Redis < 6), `AUTH` and `CLIENT SETNAME` on RESP2; then
//! `SELECT db`; then `PING`, because HELLO, AUTH and SELECT are all allowed
//! while Redis loads its dataset after a restart, and PING is not: its
//! `-LOADING` keeps the connection out of Ready (and retrying) until the
//! server can really serve.

use crate::config::Config;
use crate::resp::{Frame, encode};

/// A handshake request awaiting its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HandshakeStep {
    Hello,
    Auth,
    SetName,
    Select,
    /// Cluster replica reads (`Config::readonly`).
    ReadOnly,
    /// `ROLE`, to refuse a node that is not a master (`Config::require_master`).
    Role,
    Ping,
}

/// The server's version, from HELLO's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ServerVersion {
    pub major: u16,
    pub minor: u16,
    pub patch: u16,
}

impl core::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The step after `step` succeeded, skipping what the config does not need.
pub(crate) fn next_step(step: HandshakeStep, config: &Config) -> Option<HandshakeStep> {
    let order = [
        HandshakeStep::Hello,
        HandshakeStep::Auth,
        HandshakeStep::SetName,
        HandshakeStep::Select,
        HandshakeStep::ReadOnly,
        HandshakeStep::Role,
        HandshakeStep::Ping,
    ];
    let after = order
        .iter()
        .position(|s| *s == step)
        .map_or(order.len(), |i| i + 1);
    order[after..].iter().copied().find(|s| needed(*s, config))
}

/// The first step of the RESP2 fallback path.
pub(crate) fn fallback_step(config: &Config) -> Option<HandshakeStep> {
    next_step(HandshakeStep::Hello, config)
}

fn needed(step: HandshakeStep, config: &Config) -> bool {
    match step {
        HandshakeStep::Hello => true,
        HandshakeStep::Auth => !config.password.is_empty(),
        HandshakeStep::SetName => !config.client_name.is_empty(),
        HandshakeStep::Select => config.db != 0,
        HandshakeStep::ReadOnly => config.readonly,
        HandshakeStep::Role => config.require_master,
        HandshakeStep::Ping => true,
    }
}

/// Encodes the request for `step`.
pub(crate) fn encode_step(
    step: HandshakeStep,
    config: &Config,
    buf: &mut [u8],
) -> Result<usize, encode::EncodeError> {
    let user = if config.username.is_empty() {
        "default"
    } else {
        config.username.as_str()
    };
    match step {
        HandshakeStep::Hello => {
            let auth = (!config.password.is_empty())
                .then(|| (user.as_bytes(), config.password.expose().as_bytes()));
            let name = (!config.client_name.is_empty()).then(|| config.client_name.as_bytes());
            encode::hello(buf, config.protocol.version(), auth, name)
        }
        HandshakeStep::Auth => {
            let username = (!config.username.is_empty()).then(|| config.username.as_bytes());
            encode::auth(buf, username, config.password.expose().as_bytes())
        }
        HandshakeStep::SetName => encode::client_setname(buf, config.client_name.as_bytes()),
        HandshakeStep::Select => encode::select(buf, config.db),
        HandshakeStep::ReadOnly => encode::encode_args(buf, &[b"READONLY"]),
        HandshakeStep::Role => encode::role(buf),
        HandshakeStep::Ping => encode::ping(buf),
    }
}

/// Reads `version` and `proto` out of HELLO's reply (a RESP3 map, or a flat
/// RESP2 array of key/value pairs).
/// Whether a `ROLE` reply says master: its first element.
pub(crate) fn role_is_master(frame: &Frame<'_>) -> bool {
    match frame {
        Frame::Array(items) => items
            .iter()
            .next()
            .and_then(|f| f.as_text())
            .is_some_and(|role| role.eq_ignore_ascii_case(b"master")),
        _ => false,
    }
}

pub(crate) fn parse_hello(frame: &Frame<'_>) -> (Option<ServerVersion>, Option<i64>) {
    let items = match frame {
        Frame::Map(a) | Frame::Array(a) => a.iter(),
        _ => return (None, None),
    };
    let (mut version, mut proto) = (None, None);
    let mut key: Option<&[u8]> = None;
    for item in items {
        match key.take() {
            None => key = text(&item).or(Some(b"")),
            Some(b"version") => version = text(&item).and_then(parse_version),
            Some(b"proto") => {
                if let Frame::Integer(p) = item {
                    proto = Some(p)
                }
            }
            Some(_) => {}
        }
    }
    (version, proto)
}

fn text<'a>(frame: &Frame<'a>) -> Option<&'a [u8]> {
    match *frame {
        Frame::BulkString(t) | Frame::SimpleString(t) => Some(t),
        Frame::Verbatim { text, .. } => Some(text),
        _ => None,
    }
}

/// `major[.minor[.patch]]`; a missing or odd minor or patch reads as 0.
/// Byte-wise rather than through `str::parse`, which costs ~1 KB of flash.
fn parse_version(text: &[u8]) -> Option<ServerVersion> {
    let mut numbers = text.split(|b| *b == b'.').map(number);
    Some(ServerVersion {
        major: numbers.next().flatten()?,
        minor: numbers.next().flatten().unwrap_or(0),
        patch: numbers.next().flatten().unwrap_or(0),
    })
}

fn number(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u16, |n, b| {
        b.is_ascii_digit().then_some(())?;
        n.checked_mul(10)?.checked_add(u16::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_skip_what_the_config_does_not_need() {
        let mut c = Config::default();
        assert_eq!(
            next_step(HandshakeStep::Hello, &c),
            Some(HandshakeStep::Ping)
        );
        assert_eq!(fallback_step(&c), Some(HandshakeStep::Ping));
        c.db = 2;
        assert_eq!(
            next_step(HandshakeStep::Hello, &c),
            Some(HandshakeStep::Select)
        );
        c.password = crate::config::Secret::new("pw").unwrap();
        c.client_name.push_str("app").unwrap();
        assert_eq!(fallback_step(&c), Some(HandshakeStep::Auth));
        assert_eq!(
            next_step(HandshakeStep::Auth, &c),
            Some(HandshakeStep::SetName)
        );
        assert_eq!(
            next_step(HandshakeStep::SetName, &c),
            Some(HandshakeStep::Select)
        );
        assert_eq!(
            next_step(HandshakeStep::Select, &c),
            Some(HandshakeStep::Ping)
        );
        assert_eq!(next_step(HandshakeStep::Ping, &c), None);
        c.readonly = true;
        assert_eq!(
            next_step(HandshakeStep::Select, &c),
            Some(HandshakeStep::ReadOnly)
        );
        assert_eq!(
            next_step(HandshakeStep::ReadOnly, &c),
            Some(HandshakeStep::Ping)
        );
    }

    #[test]
    fn hello_fields_may_come_as_verbatim_strings() {
        let reply = b"%2\r\n$7\r\nversion\r\n=9\r\ntxt:7.2.4\r\n$5\r\nproto\r\n:3\r\n";
        let Ok(crate::resp::Decoded::Frame { frame, .. }) =
            crate::resp::decode(reply, &crate::resp::Limits::REDIS)
        else {
            panic!("the test's reply decodes");
        };
        let (version, proto) = parse_hello(&frame);
        assert_eq!(
            version,
            Some(ServerVersion {
                major: 7,
                minor: 2,
                patch: 4
            })
        );
        assert_eq!(proto, Some(3));
    }

    #[test]
    fn versions() {
        assert_eq!(
            parse_version(b"7.0.15"),
            Some(ServerVersion {
                major: 7,
                minor: 0,
                patch: 15
            })
        );
        assert_eq!(
            parse_version(b"6.2"),
            Some(ServerVersion {
                major: 6,
                minor: 2,
                patch: 0
            })
        );
        assert_eq!(parse_version(b"x"), None);
        assert_eq!(parse_version(b""), None);
        assert_eq!(
            parse_version(b"7.x.1"),
            Some(ServerVersion {
                major: 7,
                minor: 0,
                patch: 1
            })
        );
        assert_eq!(parse_version(b"99999.0.0"), None);
    }
}

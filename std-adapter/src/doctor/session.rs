//! One RESP conversation over an open transport (TCP or TLS): the Redis
//! handshake driven by resilis-core's own state machine, so the doctor
//! judges the server exactly as the library would (same HELLO/AUTH/SELECT,
//! same classification of WRONGPASS, NOAUTH, DENIED, max clients, a TLS
//! record on plaintext...), then plain request/reply for PING, INFO and
//! CONFIG GET.

use std::time::Duration;

use resilis_core::resp::{self, Decoded, Frame, Limits};
use resilis_core::{
    Config, Connection, DisconnectReason, Event, Output, Protocol, Received, ServerVersion,
    TransportError,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

/// Replies larger than this are refused (INFO is a few KB).
const MAX_REPLY: usize = 4 * 1024 * 1024;
/// Limits for the doctor's own reads: generous for INFO and a cluster's
/// slot map, bounded.
pub(crate) const LIMITS: Limits = Limits {
    max_depth: 8,
    max_bulk_len: MAX_REPLY,
    max_aggregate_len: 100_000,
    // The reply becomes a tree of `Reply`s: bound what it costs.
    max_elements: 100_000,
};
/// Server error texts are quoted up to this many characters.
const QUOTE: usize = 200;
/// Reads during one handshake (a few replies, possibly in small chunks):
/// a bound on the loop, not a tuning knob; the core's handshake deadline
/// ends it long before.
const MAX_HANDSHAKE_TURNS: usize = 1024;

/// A reply, owned.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Reply {
    Text(String),
    Error(String),
    Int(i64),
    Null,
    List(Vec<Reply>),
    Other,
}

impl Reply {
    pub fn text(&self) -> Option<&str> {
        match self {
            Reply::Text(t) => Some(t),
            _ => None,
        }
    }
}

fn own(frame: &Frame<'_>) -> Reply {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match frame {
        Frame::SimpleString(b) | Frame::BulkString(b) | Frame::BigNumber(b) => Reply::Text(text(b)),
        Frame::Verbatim { text: b, .. } => Reply::Text(text(b)),
        Frame::SimpleError(b) | Frame::BulkError(b) => Reply::Error(quote(b)),
        Frame::Integer(i) => Reply::Int(*i),
        Frame::Null => Reply::Null,
        Frame::Boolean(b) => Reply::Int(i64::from(*b)),
        Frame::Array(a) | Frame::Map(a) | Frame::Set(a) => {
            Reply::List(a.iter().map(|f| own(&f)).collect())
        }
        Frame::Double(_) | Frame::Push(_) => Reply::Other,
    }
}

/// A server message, printable and cut short.
pub(crate) fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(QUOTE)
        .collect();
    if text.chars().count() > QUOTE {
        out.push('…');
    }
    out
}

/// Why a request got no reply.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum RequestError {
    TimedOut,
    Closed,
    Io(String),
    Invalid(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::TimedOut => f.write_str("no reply in time"),
            RequestError::Closed => f.write_str("the server closed the connection"),
            RequestError::Io(e) => write!(f, "I/O error: {e}"),
            RequestError::Invalid(e) => write!(f, "invalid reply: {e}"),
        }
    }
}

/// How the handshake ended.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HandshakeResult {
    pub outcome: Result<Ready, DisconnectReason>,
    /// The server's error reply, quoted, when it sent one.
    pub server_error: Option<String>,
    /// Whether any byte came back.
    pub received_any: bool,
    /// A TLS alert that ended the session after the TLS handshake (e.g. a
    /// server that requires a client certificate says so only then).
    pub tls_alert: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Ready {
    pub protocol: Protocol,
    pub version: Option<ServerVersion>,
}

/// A transport the doctor talks over: TCP, or TLS on TCP.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// A session over either transport, as cluster probes return it.
pub(crate) type AnySession = Session<Box<dyn Stream>>;

pub(crate) struct Session<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub fn new(stream: S) -> Self {
        Session {
            stream,
            buf: Vec::new(),
        }
    }

    /// Runs the core's handshake on this (already open) transport. `tls`
    /// says whether it is a TLS session, as the core must know.
    pub async fn handshake(&mut self, config: &Config, limit: Duration) -> HandshakeResult {
        let mut config = config.clone();
        config.handshake_timeout = limit;
        config.tls_timeout = limit;
        config.connect_timeout = limit;
        let tls = config.tls;
        let mut conn: Connection<4> = Connection::new(config);
        let origin = std::time::Instant::now();
        let now = || resilis_core::Instant::from_micros(origin.elapsed().as_micros() as u64);
        let mut server_error = None;
        let mut received_any = false;
        let mut tls_alert = None;
        let mut chunk = vec![0u8; 16 * 1024];
        conn.handle_start(now());
        for _ in 0..MAX_HANDSHAKE_TURNS {
            // Drain the core until it waits.
            let wait = loop {
                let mut write: Option<Vec<u8>> = None;
                match conn.poll_output() {
                    Output::OpenTransport { .. } => {
                        conn.handle_transport_opened(now());
                        if tls {
                            conn.handle_tls_established(now());
                        }
                    }
                    Output::Transmit(bytes) => write = Some(bytes.to_vec()),
                    Output::Event(Event::Ready {
                        protocol,
                        server_version,
                    }) => {
                        return HandshakeResult {
                            outcome: Ok(Ready {
                                protocol,
                                version: server_version,
                            }),
                            server_error,
                            received_any,
                            tls_alert,
                        };
                    }
                    Output::Event(Event::Disconnected { reason }) => {
                        return HandshakeResult {
                            outcome: Err(reason),
                            server_error,
                            received_any,
                            tls_alert,
                        };
                    }
                    Output::Wait(deadline) => break deadline,
                    Output::Event(_)
                    | Output::TransmitCommand(_)
                    | Output::Resolved { .. }
                    | Output::Close => {}
                }
                if let Some(bytes) = write
                    && let Err(e) = self.stream.write_all(&bytes).await
                {
                    tls_alert = alert_of(&e).or(tls_alert);
                    conn.handle_transport_failed(now(), classify_io(&e));
                }
            };
            let remaining = wait
                .map(|at| at.saturating_duration_since(now()))
                .unwrap_or(limit);
            match timeout(remaining, self.stream.read(&mut chunk)).await {
                Err(_) => conn.handle_timeout(now()),
                Ok(Ok(0)) => conn.handle_transport_failed(now(), TransportError::Closed),
                Ok(Err(e)) => {
                    tls_alert = alert_of(&e).or(tls_alert);
                    conn.handle_transport_failed(now(), classify_io(&e));
                }
                Ok(Ok(n)) => {
                    received_any = true;
                    self.buf.extend_from_slice(&chunk[..n]);
                    while !self.buf.is_empty() {
                        if let Ok(Decoded::Frame { frame, .. }) = resp::decode(&self.buf, &LIMITS)
                            && let Some(text) = frame.error_text()
                        {
                            server_error = Some(quote(text));
                        }
                        match conn.handle_receive(now(), &self.buf) {
                            Received::Internal { consumed }
                            | Received::Reply { consumed, .. }
                            | Received::Push { consumed, .. }
                            | Received::PubSubRefused { consumed, .. } => {
                                self.buf.drain(..consumed);
                            }
                            Received::Incomplete { .. } => break,
                            Received::Discard => {
                                self.buf.clear();
                                break;
                            }
                        }
                    }
                }
            }
        }
        HandshakeResult {
            outcome: Err(DisconnectReason::HandshakeTimeout { received_any }),
            server_error,
            received_any,
            tls_alert,
        }
    }

    /// Sends one command (as its arguments) and waits for its reply.
    pub async fn request(
        &mut self,
        args: &[&[u8]],
        limit: Duration,
    ) -> Result<Reply, RequestError> {
        let bytes = self.request_raw(args, limit).await?;
        match resp::decode(&bytes, &LIMITS) {
            Ok(Decoded::Frame { frame, .. }) => Ok(own(&frame)),
            // `request_raw` returns exactly one frame that decoded already.
            Ok(Decoded::Incomplete { .. }) => Err(RequestError::Invalid("incomplete reply".into())),
            Err(e) => Err(RequestError::Invalid(e.to_string())),
        }
    }

    /// Like [`request`](Self::request), but the reply's bytes: one whole
    /// RESP frame, for parsers that walk a borrowed `Frame` (the slot map's).
    pub async fn request_raw(
        &mut self,
        args: &[&[u8]],
        limit: Duration,
    ) -> Result<Vec<u8>, RequestError> {
        let mut bytes = vec![0u8; resp::encode::encoded_len(args)];
        let n = resp::encode::encode_args(&mut bytes, args)
            .map_err(|e| RequestError::Invalid(e.to_string()))?;
        bytes.truncate(n);
        self.request_encoded(&bytes, limit).await
    }

    /// Like [`request_raw`](Self::request_raw), for a command already
    /// encoded (by the core's own wire helpers, e.g.
    /// `resilis_core::sentinel::encode_get_master`).
    pub async fn request_encoded(
        &mut self,
        bytes: &[u8],
        limit: Duration,
    ) -> Result<Vec<u8>, RequestError> {
        let deadline = tokio::time::Instant::now() + limit;
        timeout(limit, self.stream.write_all(bytes))
            .await
            .map_err(|_| RequestError::TimedOut)?
            .map_err(|e| RequestError::Io(e.to_string()))?;
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match resp::decode(&self.buf, &LIMITS) {
                Ok(Decoded::Frame {
                    frame, consumed, ..
                }) => {
                    let push = matches!(frame, Frame::Push(_));
                    let bytes: Vec<u8> = self.buf.drain(..consumed).collect();
                    if push {
                        continue;
                    }
                    return Ok(bytes);
                }
                Ok(Decoded::Incomplete { .. }) => {}
                Err(e) => return Err(RequestError::Invalid(e.to_string())),
            }
            if self.buf.len() > MAX_REPLY {
                return Err(RequestError::Invalid("reply too large".into()));
            }
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(RequestError::TimedOut),
                Ok(Ok(0)) => return Err(RequestError::Closed),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => return Err(RequestError::Io(e.to_string())),
            }
        }
    }
}

/// What the core makes of a reply received during its handshake, e.g. an
/// error the server sent on accept before we wrote anything: `None` when
/// the core does not fail the handshake on it.
pub(crate) fn classify_reply(config: &Config, reply: &[u8]) -> Option<DisconnectReason> {
    let mut conn: Connection<4> = Connection::new(config.clone());
    let now = resilis_core::Instant::ZERO;
    conn.handle_start(now);
    let mut fed = false;
    // Each pass drains the outputs; the second feeds the reply. Bounded:
    // the core produces a handful of outputs per input.
    for _ in 0..2 {
        for _ in 0..64 {
            match conn.poll_output() {
                Output::OpenTransport { tls, .. } => {
                    conn.handle_transport_opened(now);
                    if tls {
                        conn.handle_tls_established(now);
                    }
                }
                Output::Event(Event::Disconnected { reason }) => return Some(reason),
                Output::Event(Event::Ready { .. }) => return None,
                Output::Wait(_) => break,
                _ => {}
            }
        }
        if !fed {
            fed = true;
            let _ = conn.handle_receive(now, reply);
        }
    }
    None
}

/// The TLS alert the peer sent, when that is what ended the session.
fn alert_of(error: &std::io::Error) -> Option<String> {
    match super::tls::rustls_error(error) {
        Some(rustls::Error::AlertReceived(alert)) => Some(format!("{alert:?}")),
        _ => None,
    }
}

/// An I/O error as the core's transport error.
pub(crate) fn classify_io(error: &std::io::Error) -> TransportError {
    use std::io::ErrorKind::*;
    if let Some(tls) = super::tls::rustls_error(error) {
        return match tls {
            rustls::Error::InvalidCertificate(_) => TransportError::TlsCertificate,
            e if super::tls::is_not_tls(e) => TransportError::TlsNotSpoken,
            _ => TransportError::TlsOther,
        };
    }
    match error.kind() {
        ConnectionRefused => TransportError::Refused,
        TimedOut => TransportError::TimedOut,
        ConnectionReset | ConnectionAborted | BrokenPipe => TransportError::Reset,
        UnexpectedEof => TransportError::Closed,
        _ => TransportError::Other,
    }
}

/// The core's classification, e.g. `AuthFailed` or `Transport(Refused)`,
/// for the JSON `reason` field.
pub(crate) fn reason_name(reason: &DisconnectReason) -> String {
    format!("{reason:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_url("redis://127.0.0.1:6379").unwrap()
    }

    #[test]
    fn errors_a_server_volunteers_are_classified_by_the_core() {
        let denied =
            b"-DENIED Redis is running in protected mode because protected mode is enabled\r\n";
        assert_eq!(
            classify_reply(&config(), denied),
            Some(DisconnectReason::ProtectedMode)
        );
        assert_eq!(
            classify_reply(&config(), b"-ERR max number of clients reached\r\n"),
            Some(DisconnectReason::MaxClients)
        );
        assert_eq!(
            classify_reply(&config(), b"\x15\x03\x03\x00\x02\x02\x28"),
            Some(DisconnectReason::TlsRequired(
                resilis_core::TlsEvidence::TlsRecord
            ))
        );
        // A proper HELLO reply is no failure.
        let hello = b"%1\r\n$5\r\nproto\r\n:3\r\n";
        assert_eq!(classify_reply(&config(), hello), None);
    }

    #[test]
    fn server_text_is_quoted_printable_and_short() {
        assert_eq!(quote(b"ERR bad\r\nthing"), "ERR bad  thing");
        let long = quote(&[b'x'; 500]);
        assert_eq!(long.chars().count(), QUOTE + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn io_errors_map_to_the_core_s_transport_errors() {
        use std::io::{Error, ErrorKind};
        assert_eq!(
            classify_io(&Error::from(ErrorKind::ConnectionRefused)),
            TransportError::Refused
        );
        assert_eq!(
            classify_io(&Error::from(ErrorKind::ConnectionReset)),
            TransportError::Reset
        );
        assert_eq!(
            classify_io(&Error::from(ErrorKind::UnexpectedEof)),
            TransportError::Closed
        );
        let not_tls = Error::new(
            ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert_eq!(classify_io(&not_tls), TransportError::TlsNotSpoken);
    }
}

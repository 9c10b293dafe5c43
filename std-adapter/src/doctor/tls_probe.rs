//! The TLS step, both ways: on a TLS URL, the handshake with the client's
//! trust and, when it fails, why (certificate, alert, plaintext on the
//! port); on a plaintext URL that the server closed or answered with TLS,
//! a real ClientHello on a second connection to confirm it wants TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use resilis_core::{Config, DisconnectReason, TlsEvidence, TransportError};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::report::{Status, Step, StepName};
use super::session::{HandshakeResult, classify_io, classify_reply, quote};
use super::steps::{Diagnosis, Failure, Trust, failure, show_duration};
use super::tls;
use crate::tls::{HostSource, TlsOptions};

/// A certificate expiring sooner than this is a warning.
const EXPIRY_WARNING_DAYS: i64 = 14;
/// A TLS handshake still pending after this long (or a quarter of the step
/// limit) makes the doctor ask the port in plaintext too.
const PLAINTEXT_PROBE_AFTER: Duration = Duration::from_millis(500);

#[allow(clippy::too_many_arguments)]
pub(super) async fn tls_step(
    d: &mut Diagnosis,
    config: &Config,
    settings: &TlsOptions,
    trust: Trust,
    tcp: TcpStream,
    addr: SocketAddr,
    limit: Duration,
    started: Instant,
) -> Option<TlsStream<TcpStream>> {
    let expected = settings
        .server_name
        .clone()
        .unwrap_or_else(|| config.host.as_str().to_owned());
    let name = match settings.server_name_for(config.host.as_str(), trust.host_source) {
        Ok(n) => n,
        Err(e) => {
            d.fail(
                StepName::Tls,
                started,
                Vec::new(),
                failure(StepName::Tls, None, e.to_string(), e.fix),
            );
            return None;
        }
    };
    let Trust {
        config: trust,
        recorder,
        ..
    } = trust;
    let connector = TlsConnector::from(trust);
    let handshake = timeout(limit, connector.connect(name.clone(), tcp));
    // A plaintext Redis reads our ClientHello as an inline command and waits
    // for a newline that may never come: if the handshake is still pending
    // after a moment, ask the port in plaintext meanwhile.
    let plaintext_meanwhile = async {
        tokio::time::sleep((limit / 4).min(PLAINTEXT_PROBE_AFTER)).await;
        speaks_plain_resp(addr, limit).await
    };
    let result = tokio::select! {
        result = handshake => result,
        Some(reply) = plaintext_meanwhile => {
            let mut details = vec![format!("the TLS handshake got no answer, but a plaintext PING on {addr} got: {reply}")];
            details.extend(cert_details(tls::seen(&recorder).as_ref()));
            d.fail(StepName::Tls, started, details, not_spoken(addr));
            return None;
        }
    };
    let seen = tls::seen(&recorder);
    let mut details = cert_details(seen.as_ref());
    let stream = match result {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tls_failure(
                d,
                &e,
                seen.as_ref(),
                &expected,
                details,
                addr,
                limit,
                started,
            )
            .await;
            return None;
        }
        Err(_) => {
            let plain = speaks_plain_resp(addr, limit).await;
            let f = match plain {
                Some(reply) => {
                    details.push(format!("a plaintext PING on {addr} got: {reply}"));
                    not_spoken(addr)
                }
                None => failure(
                    StepName::Tls,
                    Some(DisconnectReason::TlsTimeout),
                    format!(
                        "the TLS handshake with {addr} got no answer within {}",
                        show_duration(limit)
                    ),
                    DisconnectReason::TlsTimeout.fix(),
                ),
            };
            d.fail(StepName::Tls, started, details, f);
            return None;
        }
    };
    let (_, session) = stream.get_ref();
    let version = session
        .protocol_version()
        .map(|v| format!("{v:?}").replace('_', "."))
        .unwrap_or_else(|| "TLS".into());
    let suite = session
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    details.insert(0, format!("{version} {suite}"));
    let mut summary = format!("{version} with {addr}, certificate verified for \"{expected}\"");
    let mut warn = false;
    if let Some(seen) = &seen {
        if let Err(e) = &seen.result {
            // Only reachable in insecure mode: the verifier accepted anyway.
            warn = true;
            summary = format!(
                "{version} with {addr}, certificate NOT verified (REDIS_TLS_INSECURE=true)"
            );
            d.warnings.push(format!(
                "REDIS_TLS_INSECURE=true: the certificate would be refused ({}); the connection is encrypted but anyone in the path can impersonate the server. Set REDIS_TLS_CA_FILE to your provider's CA instead",
                tls::explain_certificate(e, &expected)
            ));
        } else {
            details.push(match &settings.ca_file {
                Some(p) => format!("trusted: Mozilla roots + REDIS_TLS_CA_FILE={}", p.display()),
                None => "trusted: Mozilla roots".to_owned(),
            });
        }
        if let Some(leaf) = seen.chain.first().and_then(tls::summarize)
            && leaf.days_left < EXPIRY_WARNING_DAYS
        {
            warn = true;
            d.warnings.push(format!(
                "the server certificate expires in {} days ({}): renew it",
                leaf.days_left, leaf.not_after
            ));
        }
    }
    if warn {
        d.warn(StepName::Tls, started, summary, details);
    } else {
        d.ok(StepName::Tls, started, summary, details);
    }
    Some(stream)
}

fn cert_details(seen: Option<&tls::Seen>) -> Vec<String> {
    let Some(seen) = seen else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, der) in seen.chain.iter().enumerate() {
        let Some(c) = tls::summarize(der) else {
            out.push(format!("certificate {i}: unparseable"));
            continue;
        };
        let role = if i == 0 { "server" } else { "chain" };
        out.push(format!("{role} certificate: {}", c.subject));
        out.push(format!(
            "  issued by: {}{}",
            c.issuer,
            if c.self_signed { " (self-signed)" } else { "" }
        ));
        if i == 0 {
            if !c.names.is_empty() {
                out.push(format!("  names: {}", c.names.join(", ")));
            }
            out.push(if c.days_left < 0 {
                format!("  expired: {} ({} days ago)", c.not_after, -c.days_left)
            } else {
                format!("  expires: {} (in {} days)", c.not_after, c.days_left)
            });
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
async fn tls_failure(
    d: &mut Diagnosis,
    error: &std::io::Error,
    seen: Option<&tls::Seen>,
    expected: &str,
    mut details: Vec<String>,
    addr: SocketAddr,
    limit: Duration,
    started: Instant,
) {
    let rustls_error = tls::rustls_error(error);
    if let Some(e @ rustls::Error::InvalidCertificate(cert)) = rustls_error {
        let leaf = seen.and_then(|s| s.chain.first()).and_then(tls::summarize);
        let why = match (cert, &leaf) {
            (rustls::CertificateError::UnknownIssuer, Some(l)) if l.self_signed => {
                "it is self-signed, and not in REDIS_TLS_CA_FILE".to_owned()
            }
            (rustls::CertificateError::UnknownIssuer, Some(l)) => format!(
                "its issuer ({}) is neither in the Mozilla roots nor in REDIS_TLS_CA_FILE",
                l.issuer
            ),
            _ => tls::explain_certificate(e, expected),
        };
        let fix = match cert {
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. } => match &leaf {
                Some(l) if !l.names.is_empty() => format!(
                    "connect with a name the certificate carries ({}), or set REDIS_TLS_SERVER_NAME to one of them",
                    l.names.join(", ")
                ),
                _ => "connect with the name on the server's certificate, or set REDIS_TLS_SERVER_NAME to it".to_owned(),
            },
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired: renew it on the server (or, knowing the risk, REDIS_TLS_INSECURE=true)".to_owned()
            }
            rustls::CertificateError::NotValidYet
            | rustls::CertificateError::NotValidYetContext { .. } => {
                "check this machine's clock (NTP), then the certificate's validity dates".to_owned()
            }
            _ => format!(
                "{}; insecure mode keeps the connection encrypted, but anyone in the path can then impersonate the server and read the password",
                DisconnectReason::TlsCertificate
                    .fix()
                    .trim_start_matches("the server's certificate is not trusted: ")
            ),
        };
        d.fail(
            StepName::Tls,
            started,
            details,
            Failure {
                step: StepName::Tls,
                reason: Some(DisconnectReason::TlsCertificate),
                problem: format!("the server's TLS certificate is not trusted: {why}"),
                fix,
            },
        );
        return;
    }
    if let Some(rustls::Error::AlertReceived(alert)) = rustls_error {
        details.push(format!("the server sent the TLS alert {alert:?}"));
        d.fail(
            StepName::Tls,
            started,
            details,
            failure(
                StepName::Tls,
                Some(DisconnectReason::Transport(TransportError::TlsOther)),
                format!("the server refused the TLS handshake ({alert:?})"),
                "the server may require a client certificate (set REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE) or a TLS version/cipher this client lacks: check the server's tls-* settings",
            ),
        );
        return;
    }
    // Plaintext back, or the connection closed: does it speak plain RESP?
    details.push(format!("TLS handshake: {error}"));
    match speaks_plain_resp(addr, limit).await {
        Some(reply) => {
            details.push(format!("a plaintext PING on {addr} got: {reply}"));
            d.fail(StepName::Tls, started, details, not_spoken(addr));
        }
        None => {
            let reason = match classify_io(error) {
                TransportError::TlsNotSpoken => DisconnectReason::TlsNotSpoken,
                other => DisconnectReason::Transport(other),
            };
            d.fail(
                StepName::Tls,
                started,
                details,
                failure(
                    StepName::Tls,
                    Some(reason),
                    format!("the TLS handshake with {addr} failed: {error}"),
                    reason.fix(),
                ),
            );
        }
    }
}

fn not_spoken(addr: SocketAddr) -> Failure {
    failure(
        StepName::Tls,
        Some(DisconnectReason::TlsNotSpoken),
        format!(
            "TLS is on (rediss:// or REDIS_TLS=true) but {addr} speaks plaintext RESP, not TLS"
        ),
        DisconnectReason::TlsNotSpoken.fix(),
    )
}

/// On a plaintext URL: did the handshake fail because the server wants
/// TLS? Confirms with a real ClientHello on a second connection. Returns
/// whether it recorded a verdict (the TLS step failed).
///
/// A closed connection is not always TLS: Redis writes `-DENIED` or
/// `-ERR max number of clients reached` on accept and closes at once, and
/// when our HELLO lands after that close, the kernel answers with a reset
/// that throws the unread error away. So first a silent connection listens
/// for what the server says unprompted; if that is a Redis error, it
/// replaces `result` and the handshake step reports it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn plaintext_tls_verdict(
    d: &mut Diagnosis,
    config: &Config,
    settings: &TlsOptions,
    result: &mut HandshakeResult,
    addr: SocketAddr,
    limit: Duration,
    started: Instant,
) -> bool {
    let closed_silently = !result.received_any
        && matches!(
            result.outcome,
            Err(
                DisconnectReason::TlsRequired(TlsEvidence::ClosedWithoutReply)
                    | DisconnectReason::Transport(TransportError::Closed | TransportError::Reset)
            )
        );
    if closed_silently
        && let Some(said) = speaks_first(addr, limit.min(UNPROMPTED_WAIT)).await
        && let Some(reason) = classify_reply(config, &said)
    {
        result.outcome = Err(reason);
        result.server_error = Some(
            quote(said.strip_prefix(b"-").unwrap_or(&said))
                .trim_end()
                .to_owned(),
        );
        result.received_any = true;
    }
    let suspicious = match &result.outcome {
        Ok(_) => false,
        Err(DisconnectReason::TlsRequired(_)) => true,
        Err(DisconnectReason::Transport(TransportError::Closed | TransportError::Reset)) => {
            !result.received_any
        }
        Err(DisconnectReason::HandshakeTimeout {
            received_any: false,
        }) => true,
        Err(_) => false,
    };
    if !suspicious {
        let summary = if result.received_any {
            "not used (redis://): the server speaks plaintext RESP".to_owned()
        } else {
            "not used (redis://)".to_owned()
        };
        d.steps.push(Step {
            name: StepName::Tls,
            status: if result.received_any {
                Status::Ok
            } else {
                Status::Skipped
            },
            elapsed_ms: None,
            summary,
            details: Vec::new(),
        });
        return false;
    }
    let name = settings
        .server_name_for(config.host.as_str(), HostSource::Config)
        .unwrap_or_else(|_| ServerName::try_from("localhost").expect("a valid DNS name"));
    let probe = speaks_tls(addr, name, limit).await;
    let how = match &result.outcome {
        Err(DisconnectReason::TlsRequired(TlsEvidence::TlsRecord)) => {
            "answered our plaintext HELLO with a TLS record"
        }
        Err(DisconnectReason::HandshakeTimeout { .. }) => "never answered our plaintext HELLO",
        _ => "closed the connection right after TCP connect",
    };
    match probe {
        Ok(evidence) => {
            let evidence_kind = if how.contains("TLS record") {
                TlsEvidence::TlsRecord
            } else {
                TlsEvidence::ClosedWithoutReply
            };
            let reason = DisconnectReason::TlsRequired(evidence_kind);
            d.fail(
                StepName::Tls,
                started,
                vec![
                    format!("plaintext HELLO: the server {how}"),
                    format!("TLS ClientHello on a new connection: {evidence}"),
                ],
                failure(
                    StepName::Tls,
                    Some(reason),
                    format!("The server {how} and answers a TLS ClientHello: it requires TLS"),
                    "use rediss:// or set REDIS_TLS=true",
                ),
            );
            true
        }
        Err(why) => {
            // Not TLS either: leave the verdict to the handshake step, with
            // what the probe showed.
            d.steps.push(Step {
                name: StepName::Tls,
                status: Status::Skipped,
                elapsed_ms: None,
                summary: format!(
                    "not used (redis://); the port does not answer TLS either ({why})"
                ),
                details: Vec::new(),
            });
            false
        }
    }
}

/// How long a silent connection waits for the server to speak first
/// (Redis refuses on accept at once; a TLS server waits for us).
const UNPROMPTED_WAIT: Duration = Duration::from_millis(500);

/// Connects again, sends nothing, and returns the first line the server
/// volunteers, if it is a RESP error.
async fn speaks_first(addr: SocketAddr, limit: Duration) -> Option<Vec<u8>> {
    let mut tcp = timeout(limit, TcpStream::connect(addr)).await.ok()?.ok()?;
    // Redis 7's DENIED message alone is about 1 KB.
    let mut buf = vec![0u8; 8 * 1024];
    let mut len = 0;
    let deadline = tokio::time::Instant::now() + limit;
    while len < buf.len() && !buf[..len].windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf[len..])).await {
            Ok(Ok(n)) if n > 0 => len += n,
            _ => break,
        }
    }
    let line_end = buf[..len].windows(2).position(|w| w == b"\r\n")?;
    buf.truncate(line_end + 2);
    (buf.first() == Some(&b'-')).then_some(buf)
}

/// Connects again and tries a TLS handshake that accepts any certificate:
/// only to learn whether the port speaks TLS. Nothing is sent after it.
async fn speaks_tls(
    addr: SocketAddr,
    name: ServerName<'static>,
    limit: Duration,
) -> Result<String, String> {
    let recorder: tls::Recorder = Arc::default();
    let config = tls::blind_config(recorder)?;
    let tcp = match timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("reconnect failed: {e}")),
        Err(_) => return Err("reconnect timed out".into()),
    };
    match timeout(limit, TlsConnector::from(config).connect(name, tcp)).await {
        Ok(Ok(stream)) => {
            let version = stream
                .get_ref()
                .1
                .protocol_version()
                .map(|v| format!("{v:?}").replace('_', "."))
                .unwrap_or_else(|| "TLS".into());
            Ok(format!("{version} handshake completed"))
        }
        Ok(Err(e)) => match tls::rustls_error(&e) {
            Some(rustls::Error::AlertReceived(alert)) => {
                Ok(format!("answered with the TLS alert {alert:?}"))
            }
            _ => Err(e.to_string()),
        },
        Err(_) => Err("no TLS answer in time".into()),
    }
}

/// Connects again and sends a plaintext PING (no credentials): the first
/// line of a RESP reply, if one comes.
async fn speaks_plain_resp(addr: SocketAddr, limit: Duration) -> Option<String> {
    let mut tcp = timeout(limit, TcpStream::connect(addr)).await.ok()?.ok()?;
    timeout(limit, tcp.write_all(b"*1\r\n$4\r\nPING\r\n"))
        .await
        .ok()?
        .ok()?;
    // Long enough for Redis 7's DENIED message (about 1 KB).
    let mut buf = vec![0u8; 8 * 1024];
    let mut len = 0;
    let deadline = tokio::time::Instant::now() + limit;
    while len < buf.len() {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf[len..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => len += n,
        }
        if buf[..len].windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    let got = &buf[..len];
    let line_end = got.windows(2).position(|w| w == b"\r\n")?;
    matches!(
        got.first(),
        Some(b'+' | b'-' | b':' | b'$' | b'*' | b'%' | b'_')
    )
    .then(|| quote(&got[..line_end]))
}

//! TLS 1.3 over embassy-net TCP, through embedded-tls. The server is
//! authenticated against one CA (DER), host name included, by
//! [`ServerVerifier`]: embedded-tls's `rustpki` verifier behind the guards
//! embedded-tls 0.19 lacks (see `server_auth`). Skipping verification takes
//! an explicit [`Verify::InsecureNoVerification`]. Between the socket and
//! embedded-tls, [`RecordGuard`] drops the connection on the one record we
//! know embedded-tls panics on.
//!
//! EC P-256 (ECDSA-SHA256) certificates only: verifying RSA signatures in
//! embedded-tls needs an allocator. Certificate validity dates are checked
//! only when the clock type `Clk` knows the time (`NoClock` does not: a
//! firmware without a wall clock cannot tell an expired certificate).

use core::marker::PhantomData;

use embassy_net::tcp::TcpSocket;
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use embedded_tls::{
    Aes128GcmSha256, CryptoProvider, CryptoRngCore, NoClock, TlsClock, TlsConfig, TlsConnection,
    TlsContext, TlsError, TlsVerifier,
};
use resilis_core::TransportError;

use super::record_guard::RecordGuard;
use super::server_auth::ServerVerifier;
use super::tcp::{TcpConnector, close_socket};
use crate::transport::{Connector, Progress, Target, Transport};

/// How the server's certificate is checked.
#[derive(Clone, Copy, Debug)]
pub enum Verify<'d> {
    /// Against this CA certificate (DER), with host-name verification.
    Ca(&'d [u8]),
    /// Not at all: anyone on the path can read the password. Only by choice.
    InsecureNoVerification,
}

#[derive(Clone, Copy, Debug)]
pub struct TlsOptions<'d> {
    pub verify: Verify<'d>,
    /// Name to send (SNI) and verify, when it is not the host the core
    /// connects to (e.g. the endpoint is an IP address and the certificate
    /// names `redis.example`).
    pub server_name: Option<&'d str>,
}

/// Opens plain or TLS connections, as the core's config says (`rediss://`,
/// `REDIS_TLS`). Buffers: the TCP socket's two, and TLS's record buffers
/// (read: 16640 bytes fits any record; write: 4 KiB is plenty for commands).
pub struct TlsConnector<'d, R, Clk = NoClock> {
    tcp: TcpConnector<'d>,
    read_record: &'d mut [u8],
    write_record: &'d mut [u8],
    options: TlsOptions<'d>,
    rng: R,
    clock: PhantomData<Clk>,
}

impl<'d, R: CryptoRngCore, Clk: TlsClock> TlsConnector<'d, R, Clk> {
    pub fn new(
        tcp: TcpConnector<'d>,
        read_record: &'d mut [u8],
        write_record: &'d mut [u8],
        options: TlsOptions<'d>,
        rng: R,
    ) -> Self {
        TlsConnector {
            tcp,
            read_record,
            write_record,
            options,
            rng,
            clock: PhantomData,
        }
    }
}

struct Provider<'v, 'r, R, Clk: TlsClock> {
    rng: &'r mut R,
    verifier: Option<ServerVerifier<'v, Clk>>,
}

impl<R: CryptoRngCore, Clk: TlsClock> CryptoProvider for Provider<'_, '_, R, Clk> {
    type CipherSuite = Aes128GcmSha256;
    type Signature = &'static [u8];

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut *self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Aes128GcmSha256>, TlsError> {
        // embedded-tls skips verification when there is no verifier.
        self.verifier.as_mut().ok_or(TlsError::Unimplemented)
    }
}

impl<R: CryptoRngCore, Clk: TlsClock> Connector for TlsConnector<'_, R, Clk> {
    type Transport<'a>
        = NetTransport<'a>
    where
        Self: 'a;

    async fn connect<'a>(
        &'a mut self,
        target: Target<'_>,
        progress: &Progress,
    ) -> Result<NetTransport<'a>, TransportError> {
        let socket = self.tcp.open(&target).await?;
        progress.tcp_connected();
        if !target.tls {
            return Ok(NetTransport::Plain(socket));
        }
        let server_name = self.options.server_name.unwrap_or(target.host);
        let tls = start_tls::<_, _, Clk>(
            socket,
            self.read_record,
            self.write_record,
            self.options.verify,
            server_name,
            &mut self.rng,
        )
        .await?;
        Ok(NetTransport::Tls(tls))
    }
}

/// The TLS 1.3 handshake over any `embedded-io-async` transport, the server
/// authenticated as `verify` says, as [`TlsConnector`] does it (and usable
/// where TCP is not embassy-net's). `server_name` is sent (SNI) and matched
/// against the certificate. Errors are classified for the core.
pub async fn start_tls<'a, S, R, Clk>(
    socket: S,
    read_record: &'a mut [u8],
    write_record: &'a mut [u8],
    verify: Verify<'_>,
    server_name: &str,
    rng: &mut R,
) -> Result<TlsConnection<'a, RecordGuard<S>, Aes128GcmSha256>, TransportError>
where
    S: Read + Write + 'a,
    R: CryptoRngCore,
    Clk: TlsClock,
{
    let config = TlsConfig::new().with_server_name(server_name);
    let verifier = match verify {
        Verify::Ca(der) => Some(ServerVerifier::new(der)),
        Verify::InsecureNoVerification => None,
    };
    let mut provider: Provider<'_, '_, R, Clk> = Provider { rng, verifier };
    let mut tls = TlsConnection::new(RecordGuard::new(socket), read_record, write_record);
    tls.open(TlsContext::new(&config, &mut provider))
        .await
        .map_err(classify_handshake)?;
    // embedded-tls also completes a handshake in which the server never
    // sent Certificate or CertificateVerify: an open connection proves
    // nothing until the verifier says both were verified.
    if let Some(verifier) = &provider.verifier {
        verifier.authenticated()?;
    }
    Ok(tls)
}

fn classify_handshake(error: TlsError) -> TransportError {
    match error {
        TlsError::InvalidCertificate
        | TlsError::InvalidCertificateEntry
        | TlsError::InvalidSignature => TransportError::TlsCertificate,
        // Bytes that are no TLS record: a plaintext server on this port.
        TlsError::InvalidRecord | TlsError::UnknownContentType => TransportError::TlsNotSpoken,
        // IoError: the socket hit EOF in the middle of the handshake.
        TlsError::ConnectionClosed | TlsError::IoError => TransportError::Closed,
        // A record RecordGuard kept from embedded-tls.
        TlsError::Io(ErrorKind::InvalidData) => TransportError::TlsOther,
        TlsError::Io(kind) => crate::classify_io_error(kind),
        _ => TransportError::TlsOther,
    }
}

/// A connection opened by [`TlsConnector`]: plain or TLS.
// No allocator to box the TLS state into, and only one transport is alive at
// a time: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum NetTransport<'a> {
    Plain(TcpSocket<'a>),
    Tls(TlsConnection<'a, RecordGuard<TcpSocket<'a>>, Aes128GcmSha256>),
}

/// An I/O error, already classified for the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NetError(pub TransportError);

impl embedded_io_async::Error for NetError {
    fn kind(&self) -> ErrorKind {
        match self.0 {
            TransportError::Reset => ErrorKind::ConnectionReset,
            TransportError::Closed => ErrorKind::ConnectionAborted,
            TransportError::TimedOut => ErrorKind::TimedOut,
            _ => ErrorKind::Other,
        }
    }
}

fn tls_io(error: TlsError) -> NetError {
    NetError(match error {
        // IoError: embedded-tls's name for EOF on the socket (no close_notify).
        TlsError::ConnectionClosed | TlsError::IoError => TransportError::Closed,
        // A record RecordGuard kept from embedded-tls.
        TlsError::Io(ErrorKind::InvalidData) => TransportError::TlsOther,
        TlsError::Io(kind) => crate::classify_io_error(kind),
        _ => TransportError::TlsOther,
    })
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl core::error::Error for NetError {}

const RESET: NetError = NetError(TransportError::Reset);

impl ErrorType for NetTransport<'_> {
    type Error = NetError;
}

impl Read for NetTransport<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        match self {
            NetTransport::Plain(s) => s.read(buf).await.map_err(|_| RESET),
            NetTransport::Tls(t) => match t.read(buf).await {
                // close_notify: the server ended the session.
                Err(TlsError::ConnectionClosed) => Ok(0),
                other => other.map_err(tls_io),
            },
        }
    }
}

impl Write for NetTransport<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        match self {
            NetTransport::Plain(s) => s.write(buf).await.map_err(|_| RESET),
            NetTransport::Tls(t) => t.write(buf).await.map_err(tls_io),
        }
    }

    async fn flush(&mut self) -> Result<(), NetError> {
        match self {
            NetTransport::Plain(s) => s.flush().await.map_err(|_| RESET),
            NetTransport::Tls(t) => t.flush().await.map_err(tls_io),
        }
    }
}

impl Transport for NetTransport<'_> {
    fn classify(error: &NetError) -> TransportError {
        error.0
    }

    async fn close(self) {
        let mut socket = match self {
            NetTransport::Plain(socket) => socket,
            // close_notify, then TCP's FIN.
            NetTransport::Tls(tls) => match tls.close().await {
                Ok(socket) | Err((socket, _)) => socket.into_inner(),
            },
        };
        close_socket(&mut socket).await;
    }
}

//! The transport under the driver: TCP (with keepalive and
//! TCP_USER_TIMEOUT), optionally TLS, and the mapping of I/O errors to the
//! core's `TransportError`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use resilis_core::TransportError;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub(super) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<Watched>>),
}

impl Transport {
    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }

    pub(super) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            // Nothing is buffered above the socket.
            Transport::Plain(_) => Poll::Ready(Ok(())),
            Transport::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }
}

/// The TCP stream under TLS, noting whether the server sent anything at
/// all: the core tells a plaintext server (silent on a TLS hello) from a
/// slow TLS one by it (`handle_tls_bytes_received`).
pub(crate) struct Watched {
    inner: TcpStream,
    seen: Arc<AtomicBool>,
}

impl Watched {
    pub(super) fn new(inner: TcpStream, seen: Arc<AtomicBool>) -> Watched {
        Watched { inner, seen }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.seen.store(true, Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

pub(super) type Step<T> = Pin<Box<dyn Future<Output = Result<T, TransportError>> + Send>>;

pub(super) enum Connecting {
    Tcp(Step<TcpStream>),
    Tls(Step<TlsStream<Watched>>),
}

pub(super) enum Connected {
    Tcp(TcpStream),
    Tls(Box<TlsStream<Watched>>),
}

/// TLS as the driver needs it: the shared rustls config and the name.
#[derive(Clone)]
pub(crate) struct TlsSetup {
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
    pub insecure: bool,
}

pub(crate) fn classify_io_error(e: &io::Error) -> TransportError {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => TransportError::Refused,
        ConnectionReset | ConnectionAborted | BrokenPipe => TransportError::Reset,
        UnexpectedEof => TransportError::Closed,
        TimedOut => TransportError::TimedOut,
        _ => TransportError::Other,
    }
}

pub(super) async fn connect_tcp(
    host: String,
    port: u16,
    keepalive: Duration,
) -> Result<TcpStream, TransportError> {
    let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|_| TransportError::Dns)?
        .collect();
    let mut last = TransportError::Dns;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                tune_socket(&stream, keepalive);
                return Ok(stream);
            }
            Err(e) => last = classify_io_error(&e),
        }
    }
    Err(last)
}

/// TCP_NODELAY (requests are already coalesced per drain; Nagle would only
/// add latency), keepalive after `idle` with probes every idle/3 (at least
/// 1 s), and on Linux TCP_USER_TIMEOUT matching the keepalive verdict, so
/// unacknowledged writes to a vanished peer fail as fast as an idle socket.
fn tune_socket(stream: &TcpStream, idle: Duration) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY not set: {e}");
    }
    if idle.is_zero() {
        return;
    }
    let sock = socket2::SockRef::from(stream);
    let interval = (idle / 3).max(Duration::from_secs(1));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(interval);
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "macos"))]
    let keepalive = keepalive.with_retries(3);
    if let Err(e) = sock.set_tcp_keepalive(&keepalive) {
        tracing::debug!("TCP keepalive not set: {e}");
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = sock.set_tcp_user_timeout(Some(idle + interval * 3)) {
        tracing::debug!("TCP_USER_TIMEOUT not set: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_transport_errors() {
        let e = |k| classify_io_error(&io::Error::from(k));
        assert_eq!(e(io::ErrorKind::ConnectionRefused), TransportError::Refused);
        assert_eq!(e(io::ErrorKind::ConnectionReset), TransportError::Reset);
        assert_eq!(e(io::ErrorKind::UnexpectedEof), TransportError::Closed);
        assert_eq!(e(io::ErrorKind::Other), TransportError::Other);
    }
}

//! Plain TCP over embassy-net.

use core::net::Ipv4Addr;

use embassy_net::dns::DnsQueryType;
use embassy_net::tcp::{ConnectError, TcpSocket};
use embassy_net::{IpAddress, Stack};
use embassy_time::{Duration, with_timeout};
use embedded_io_async::{ErrorType, Read, Write};
use resilis_core::TransportError;

use crate::transport::{Connector, Progress, Target, Transport};

/// Opens plain TCP connections on an embassy-net stack, lending the same two
/// socket buffers to each.
pub struct TcpConnector<'d> {
    stack: Stack<'d>,
    rx: &'d mut [u8],
    tx: &'d mut [u8],
}

impl<'d> TcpConnector<'d> {
    pub fn new(stack: Stack<'d>, rx: &'d mut [u8], tx: &'d mut [u8]) -> Self {
        TcpConnector { stack, rx, tx }
    }

    pub(crate) async fn open<'a>(
        &'a mut self,
        target: &Target<'_>,
    ) -> Result<TcpSocket<'a>, TransportError> {
        let address = resolve(self.stack, target.host).await?;
        let mut socket = TcpSocket::new(self.stack, self.rx, self.tx);
        socket.set_keep_alive(Some(target.keepalive));
        socket
            .connect((address, target.port))
            .await
            .map_err(|e| match e {
                // A RST in answer to SYN: nothing listens there.
                ConnectError::ConnectionReset => TransportError::Refused,
                ConnectError::TimedOut => TransportError::TimedOut,
                ConnectError::NoRoute | ConnectError::InvalidState => TransportError::Other,
            })?;
        Ok(socket)
    }
}

/// An IPv4 literal as is; anything else through the stack's DNS resolver.
pub async fn resolve(stack: Stack<'_>, host: &str) -> Result<IpAddress, TransportError> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(IpAddress::Ipv4(ip));
    }
    let found = stack
        .dns_query(host, DnsQueryType::A)
        .await
        .map_err(|_| TransportError::Dns)?;
    found.first().copied().ok_or(TransportError::Dns)
}

impl Connector for TcpConnector<'_> {
    type Transport<'a>
        = TcpTransport<'a>
    where
        Self: 'a;

    async fn connect<'a>(
        &'a mut self,
        target: Target<'_>,
        progress: &Progress,
    ) -> Result<TcpTransport<'a>, TransportError> {
        if target.tls {
            // Refusing beats sending the password in clear text.
            return Err(TransportError::TlsOther);
        }
        let socket = self.open(&target).await?;
        progress.tcp_connected();
        Ok(TcpTransport { socket })
    }
}

/// A connected embassy-net TCP socket.
pub struct TcpTransport<'a> {
    socket: TcpSocket<'a>,
}

impl ErrorType for TcpTransport<'_> {
    type Error = embassy_net::tcp::Error;
}

impl Read for TcpTransport<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.socket.read(buf).await
    }
}

impl Write for TcpTransport<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.socket.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.socket.flush().await
    }
}

impl Transport for TcpTransport<'_> {
    fn classify(_: &embassy_net::tcp::Error) -> TransportError {
        TransportError::Reset
    }

    async fn close(mut self) {
        close_socket(&mut self.socket).await;
    }
}

/// FIN, then a short wait for it to leave: dropping an embassy-net socket
/// removes it from the stack at once, and the server would never hear.
pub(crate) async fn close_socket(socket: &mut TcpSocket<'_>) {
    socket.close();
    let _ = with_timeout(Duration::from_millis(200), socket.flush()).await;
}

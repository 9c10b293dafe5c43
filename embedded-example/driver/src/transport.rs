//! What the runner needs from the network: a [`Connector`] that opens a
//! [`Transport`] to the place the core names, and says when TCP is up so the
//! core can tell a stalled TLS handshake from a stalled connect.

use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::signal::Signal;
use embedded_io_async::{ErrorKind, Read, Write};
use resilis_core::TransportError;

/// Where the core asked to connect (copied out of `Output::OpenTransport`).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    /// Start TLS once TCP is up.
    pub tls: bool,
    /// The core's `tcp_keepalive`, for connectors that can apply it.
    pub keepalive: embassy_time::Duration,
}

/// Told by a connector when the TCP part of [`Connector::connect`] is done,
/// before it starts TLS: the core then moves from its connect deadline to
/// its TLS deadline.
pub struct Progress {
    tcp_connected: Signal<NoopRawMutex, ()>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    pub const fn new() -> Self {
        Progress {
            tcp_connected: Signal::new(),
        }
    }

    /// TCP is connected; TLS (if any) starts now.
    pub fn tcp_connected(&self) {
        self.tcp_connected.signal(());
    }

    /// Whether `tcp_connected` was called since the last `take`, clearing it.
    pub(crate) fn take(&self) -> bool {
        self.tcp_connected.try_take().is_some()
    }

    /// Until `tcp_connected` is called (then clears it).
    pub(crate) async fn wait(&self) {
        self.tcp_connected.wait().await
    }
}

/// An open byte stream to Redis.
pub trait Transport: Read + Write {
    /// What the core should be told about an I/O error of this transport.
    fn classify(error: &Self::Error) -> TransportError {
        classify_io_error(embedded_io_async::Error::kind(error))
    }

    /// Ends the stream politely (TLS close_notify, TCP FIN), in bounded time.
    /// Dropping instead is allowed and merely abrupt.
    async fn close(self)
    where
        Self: Sized,
    {
    }
}

/// Opens transports. One at a time: the runner closes (drops) the previous
/// transport before it asks for the next, so a connector may lend the same
/// socket buffers to each.
pub trait Connector {
    type Transport<'a>: Transport
    where
        Self: 'a;

    /// Connects to `target`, calls `progress.tcp_connected()` once TCP is up,
    /// then, when `target.tls`, completes the TLS handshake. The runner races
    /// this with the core's deadlines and drops the future when one passes.
    async fn connect<'a>(
        &'a mut self,
        target: Target<'_>,
        progress: &Progress,
    ) -> Result<Self::Transport<'a>, TransportError>;
}

/// The usual mapping of `embedded-io` error kinds onto the core's.
pub fn classify_io_error(kind: ErrorKind) -> TransportError {
    match kind {
        ErrorKind::ConnectionRefused => TransportError::Refused,
        ErrorKind::ConnectionReset => TransportError::Reset,
        ErrorKind::TimedOut => TransportError::TimedOut,
        ErrorKind::ConnectionAborted | ErrorKind::NotConnected | ErrorKind::BrokenPipe => {
            TransportError::Closed
        }
        _ => TransportError::Other,
    }
}

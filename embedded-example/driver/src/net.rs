//! Connectors over embassy-net: plain TCP ([`TcpConnector`]) and, with the
//! `tls` feature, TLS 1.3 through embedded-tls ([`TlsConnector`]).

mod tcp;
pub use tcp::{TcpConnector, TcpTransport, resolve};

#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
pub use tls::{NetTransport, TlsConnector, TlsOptions, Verify};

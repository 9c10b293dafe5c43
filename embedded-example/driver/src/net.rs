//! Connectors over embassy-net: plain TCP ([`TcpConnector`]) and, with the
//! `tls` feature, TLS 1.3 through embedded-tls ([`TlsConnector`]).

mod tcp;
pub use tcp::{TcpConnector, TcpTransport, resolve};

#[cfg(feature = "tls")]
mod record_guard;
#[cfg(feature = "tls")]
mod server_auth;
#[cfg(feature = "tls")]
mod signers;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
pub use record_guard::RecordGuard;
#[cfg(feature = "tls")]
pub use server_auth::{Refusal, ServerVerifier, Stage};
#[cfg(feature = "tls")]
pub use signers::{ChainError, check_signers};
#[cfg(feature = "tls")]
pub use tls::{NetTransport, TlsConnector, TlsOptions, Verify, start_tls};

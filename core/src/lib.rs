//! resilis-core: one resilient Redis connection as a pure, sans-I/O state
//! machine, plus RESP2/RESP3 framing. `#![no_std]`, no allocator.
//!
//! The core never reads a clock, sleeps or touches a socket. An adapter (the
//! Tokio one in `resilis`, the Embassy one in `embedded-example`) owns the
//! transport and the clock and runs one small loop: *feed inputs, then drain
//! outputs until `Wait`*.
//!
//! ```
//! use resilis_core::{Config, Connection, Instant, Output, Received, TransportError};
//!
//! let mut conn: Connection<16> = Connection::new(Config::from_url("redis://127.0.0.1:6379").unwrap());
//! let mut now = Instant::ZERO;
//! conn.handle_start(now);
//! // The adapter's loop, with a scripted "network" standing in for a socket:
//! // HELLO's reply, then the readiness PING's.
//! let mut server_replies: &[&[u8]] = &[b"%1\r\n$5\r\nproto\r\n:3\r\n", b"+PONG\r\n"];
//! while !conn.is_ready() && now < Instant::from_millis(60_000) {
//!     loop {
//!         match conn.poll_output() {
//!             Output::OpenTransport { host, port, tls } => {
//!                 assert_eq!((host, port, tls), ("127.0.0.1", 6379, false));
//!                 conn.handle_transport_opened(now); // after TcpStream::connect
//!             }
//!             Output::Transmit(bytes) => assert!(bytes.starts_with(b"*")), // write them
//!             Output::TransmitCommand(_id) => { /* write that command's bytes */ }
//!             Output::Close => { /* drop the socket */ }
//!             Output::Resolved { .. } | Output::Event(_) => {}
//!             Output::Wait(deadline) => {
//!                 // Sleep until `deadline` or until bytes arrive, then:
//!                 if let Some((reply, rest)) = server_replies.split_first() {
//!                     server_replies = rest;
//!                     let _ = conn.handle_receive(now, reply);
//!                 } else if let Some(at) = deadline {
//!                     now = at;
//!                     conn.handle_timeout(now);
//!                 }
//!                 break;
//!             }
//!         }
//!     }
//! }
//! assert!(conn.is_ready());
//! # let _ = (Received::Incomplete { needed: None }, TransportError::Closed);
//! ```
//!
//! # Panics, errors and unwraps
//! A panic is a bug. No input from the peer or the application panics; no
//! buffer grows without bound (every capacity is a const generic or a
//! config limit). Misuse of the API (an input that does not fit the phase)
//! is ignored, since adapters race with the transport.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod addr;
pub mod backoff;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod command;
pub mod config;
pub mod conn;
pub mod pubsub;
pub mod reason;
pub mod resp;
#[cfg(feature = "sentinel")]
pub mod sentinel;
pub mod time;

pub use backoff::{BackoffConfig, WhenExhausted};
pub use config::{
    Config, ConfigError, ConfigErrorKind, OfflinePolicy, Protocol, QueueConfig, Secret,
};
pub use conn::{
    CommandId, Connection, Event, HandshakeStep, IndeterminateCause, Outcome, Output, PhaseKind,
    Received, ServerVersion, Stats, Submit, SubmitError,
};
pub use reason::{DisconnectReason, FailureClass, TlsEvidence, TransportError};
pub use time::{Duration, Instant};

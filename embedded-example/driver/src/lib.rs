//! resilis-embassy: runs a [`resilis_core::Connection`] on Embassy.
//!
//! The core decides everything (when to connect, what to write, when a
//! connection is dead, how long to back off, which command the fallback
//! cache answers and which fail during an outage, from each call's class);
//! this crate only moves bytes and time between it and
//! - a [`Connector`] that opens an `embedded-io-async` transport (an
//!   embassy-net `TcpSocket`, embedded-tls on top of one, an in-memory mock),
//! - `embassy-time` timers, and
//! - the application, through a [`Client`] handle.
//!
//! Memory is the caller's, as in embassy-net: [`Shared`] (the mailbox between
//! client and runner) lives in a `static`, the receive buffer is a slice, and
//! capacities are const generics. No allocator.
//!
//! ```text
//! let shared = SHARED.init(Shared::new());
//! let (mut runner, client) = resilis_embassy::new::<_, _, 8>(config, connector, shared, rx_buf);
//! spawner.spawn(redis_task(runner));   // runner.run().await, forever
//! client.wait_ready(Duration::from_secs(10)).await;
//! let reply = client.call(|b| encode::get(b, b"key"), CallOptions::cached_read(Duration::from_secs(2))).await?;
//! ```
//!
//! Features: `net` (an embassy-net TCP connector), `tls` (embedded-tls 1.3
//! with certificate verification, on top of `net`), `defmt` / `log` (logging
//! of every core event).
#![no_std]
#![allow(async_fn_in_trait)]

mod fmt;

mod client;
mod runner;
mod transport;

#[cfg(feature = "net")]
pub mod net;

pub use client::{CallOptions, Client, Error, Reply, Request, Shared, Status};
pub use runner::{Runner, new};
pub use transport::{Connector, Progress, Target, Transport, classify_io_error};

/// Converts between embassy-time's clock and the core's: both count
/// microseconds since the same epoch (the embassy time driver's zero).
pub mod time {
    pub fn to_core(at: embassy_time::Instant) -> resilis_core::Instant {
        resilis_core::Instant::from_micros(at.as_micros())
    }

    pub fn from_core(at: resilis_core::Instant) -> embassy_time::Instant {
        embassy_time::Instant::from_micros(at.as_micros())
    }

    pub fn now() -> resilis_core::Instant {
        to_core(embassy_time::Instant::now())
    }

    pub fn duration(d: resilis_core::Duration) -> embassy_time::Duration {
        embassy_time::Duration::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}

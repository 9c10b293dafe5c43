//! resilis-core: one resilient Redis connection as a pure, sans-I/O state
//! machine, plus RESP2/RESP3 framing. `#![no_std]`, no allocator.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod resp;
pub mod time;

pub use time::{Duration, Instant};

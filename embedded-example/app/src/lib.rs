//! The gateway application, the same on the STM32 and on the host: a
//! heartbeat key SET periodically, and reads answered by Redis or, while it
//! is unavailable, by a small fallback cache (the seed's "graceful fallback
//! to in-memory cache").
//!
//! Every decision about a command is the core's, from its class: a GET is
//! submitted as a cached read, and during an outage the core resolves it as
//! `Outcome::Fallback(reason)`; only then is the cache consulted. A write
//! during an outage fails with the reason, never held or faked. The cache
//! holds only what Redis acknowledged (a SET's `OK`) or answered (a GET's
//! reply, in reply order), so it never serves a value Redis did not have.
#![no_std]

mod cache;

pub use cache::FallbackCache;

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_time::Duration;
use heapless::Vec;
use resilis_core::resp::Frame;
use resilis_core::resp::encode::{self, Expiry, SetOptions};
use resilis_core::{DisconnectReason, Outcome};
use resilis_embassy::{CallOptions, Client, Error, Status};

/// Where a read was answered from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Source {
    Redis,
    /// The fallback cache: Redis is unavailable.
    Fallback,
}

/// A value read through the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read<const V: usize> {
    /// Redis answered: its value, or `None` when Redis has no such key.
    Redis(Option<Vec<u8, V>>),
    /// Redis is unavailable (`reason`): the value Redis last acknowledged or
    /// answered for this key, from the fallback cache.
    Fallback {
        value: Vec<u8, V>,
        reason: DisconnectReason,
    },
}

impl<const V: usize> Read<V> {
    pub fn source(&self) -> Source {
        match self {
            Read::Redis(_) => Source::Redis,
            Read::Fallback { .. } => Source::Fallback,
        }
    }

    pub fn value(&self) -> Option<&[u8]> {
        match self {
            Read::Redis(value) => value.as_deref(),
            Read::Fallback { value, .. } => Some(value),
        }
    }
}

/// Why a read, a write or a ping has no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum GatewayError {
    /// No reply: the core refused the command (`Error::Submit`, e.g. a write
    /// during an outage, `NotReady` with the reason) or resolved it without
    /// one (`Error::Outcome`: not applied, timed out, indeterminate).
    Call(Error),
    /// Redis answered with an error or something unexpected.
    Rejected,
    /// Redis is unavailable (`reason`) and the fallback cache does not hold
    /// the key: unknown, not "absent".
    Unavailable(DisconnectReason),
    /// The value is longer than the gateway's `V` bytes.
    TooLarge { len: usize },
}

/// The application over one connection. `N` keys of at most `K` bytes with
/// values of at most `V` bytes are cached.
pub struct Gateway<
    'a,
    M: RawMutex,
    const CMD: usize,
    const REPLY: usize,
    const N: usize,
    const K: usize,
    const V: usize,
> {
    client: Client<'a, M, CMD, REPLY>,
    cache: FallbackCache<N, K, V>,
    timeout: Duration,
}

impl<'a, M, const CMD: usize, const REPLY: usize, const N: usize, const K: usize, const V: usize>
    Gateway<'a, M, CMD, REPLY, N, K, V>
where
    M: RawMutex,
{
    /// `timeout`: per command (the core resolves it after this).
    pub fn new(client: Client<'a, M, CMD, REPLY>, timeout: Duration) -> Self {
        Gateway {
            client,
            cache: FallbackCache::new(),
            timeout,
        }
    }

    pub fn status(&self) -> Status {
        self.client.status()
    }

    pub fn client(&mut self) -> &mut Client<'a, M, CMD, REPLY> {
        &mut self.client
    }

    pub fn cache(&self) -> &FallbackCache<N, K, V> {
        &self.cache
    }

    /// `PING` → `PONG`.
    pub async fn ping(&mut self) -> Result<(), GatewayError> {
        let reply = self
            .client
            .call(encode::ping, CallOptions::read(self.timeout))
            .await
            .map_err(GatewayError::Call)?;
        match reply.frame() {
            Frame::SimpleString(b"PONG") => Ok(()),
            _ => Err(GatewayError::Rejected),
        }
    }

    /// `SET key value [EX ttl]`. The cache takes the value only once Redis
    /// acknowledged it. During an outage it fails at once with the reason
    /// (`Call(Submit(NotReady { reason: Some(..), .. }))`): not applied.
    pub async fn set(
        &mut self,
        key: &str,
        value: &[u8],
        ttl_seconds: Option<u64>,
    ) -> Result<(), GatewayError> {
        let options = SetOptions {
            expiry: ttl_seconds.map(Expiry::Ex),
            ..SetOptions::default()
        };
        let reply = self
            .client
            .call(
                |buf| encode::set(buf, key.as_bytes(), value, &options),
                CallOptions::idempotent_write(self.timeout),
            )
            .await;
        match reply {
            Ok(reply) if reply.frame() == Frame::SimpleString(b"OK") => {
                self.cache.put(key, value);
                Ok(())
            }
            Ok(_) => Err(GatewayError::Rejected),
            Err(error) => {
                if maybe_applied(&error) {
                    // Redis may hold the old value or the new one: the cache
                    // can vouch for neither.
                    self.cache.remove(key);
                }
                Err(GatewayError::Call(error))
            }
        }
    }

    /// `GET key`, as a cached read: Redis's answer (which refreshes the
    /// cache), or, when the core says Redis is unavailable, the cached value.
    /// A key the cache does not hold is then `Unavailable`, never `None`.
    pub async fn get(&mut self, key: &str) -> Result<Read<V>, GatewayError> {
        let reply = self
            .client
            .call(
                |buf| encode::get(buf, key.as_bytes()),
                CallOptions::cached_read(self.timeout),
            )
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(Error::Outcome(Outcome::Fallback(reason))) => {
                return match self.cache.get(key) {
                    // The cache only holds values that fit `V`.
                    Some(value) => Ok(Read::Fallback {
                        value: Vec::from_slice(value)
                            .map_err(|_| GatewayError::TooLarge { len: value.len() })?,
                        reason,
                    }),
                    None => Err(GatewayError::Unavailable(reason)),
                };
            }
            Err(error) => return Err(GatewayError::Call(error)),
        };
        match reply.frame() {
            Frame::BulkString(value) => {
                self.cache.put(key, value);
                let value = Vec::from_slice(value)
                    .map_err(|_| GatewayError::TooLarge { len: value.len() })?;
                Ok(Read::Redis(Some(value)))
            }
            Frame::Null => {
                self.cache.remove(key);
                Ok(Read::Redis(None))
            }
            _ => Err(GatewayError::Rejected),
        }
    }
}

/// Whether a failed write may have been applied all the same.
fn maybe_applied(error: &Error) -> bool {
    matches!(
        error,
        Error::Outcome(Outcome::Indeterminate(_)) | Error::NoResponse | Error::ReplyTooLarge { .. }
    )
}

#[cfg(test)]
mod tests;

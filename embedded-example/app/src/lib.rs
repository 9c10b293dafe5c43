//! The gateway application, the same on the STM32 and on the host: a
//! heartbeat key SET periodically, and reads that come from Redis when it is
//! up and from a small fallback cache while the core says it is not
//! (`Status::fallback_active`, the seed's "graceful fallback to in-memory
//! cache"). Decisions about the connection stay in the core; this only
//! chooses where a read is answered from.
#![no_std]

mod cache;

pub use cache::FallbackCache;

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_time::Duration;
use heapless::Vec;
use resilis_core::resp::Frame;
use resilis_core::resp::encode::{self, Expiry, SetOptions};
use resilis_embassy::{CallOptions, Client, Error, Status};

/// Where a read was answered from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Source {
    Redis,
    /// The fallback cache: Redis is unavailable (or the read failed).
    Fallback,
}

/// A value read through the gateway; `None` when neither Redis nor the cache
/// has the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read<const V: usize> {
    pub value: Option<Vec<u8, V>>,
    pub source: Source,
}

/// Where a write went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Written {
    /// Redis acknowledged it (and the cache has it).
    Redis,
    /// Redis is unavailable: only the cache has it.
    CacheOnly,
}

/// Why a write or a ping failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum GatewayError {
    /// No reply (see the core's outcome / status for why).
    Call(Error),
    /// Redis answered with an error or something unexpected.
    Rejected,
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
            .call(encode::ping, CallOptions::idempotent(self.timeout))
            .await
            .map_err(GatewayError::Call)?;
        match reply.frame() {
            Frame::SimpleString(b"PONG") => Ok(()),
            _ => Err(GatewayError::Rejected),
        }
    }

    /// `SET key value [EX ttl]`, write-through to the cache so reads during an
    /// outage see the latest local value. While Redis is unavailable only the
    /// cache is written: a queued heartbeat would be stale when delivered.
    pub async fn set(
        &mut self,
        key: &str,
        value: &[u8],
        ttl_seconds: Option<u64>,
    ) -> Result<Written, GatewayError> {
        self.cache.put(key, value);
        if self.client.status().fallback_active {
            return Ok(Written::CacheOnly);
        }
        let options = SetOptions {
            expiry: ttl_seconds.map(Expiry::Ex),
            ..SetOptions::default()
        };
        let reply = self
            .client
            .call(
                |buf| encode::set(buf, key.as_bytes(), value, &options),
                CallOptions::idempotent(self.timeout),
            )
            .await
            .map_err(GatewayError::Call)?;
        match reply.frame() {
            Frame::SimpleString(b"OK") => Ok(Written::Redis),
            _ => Err(GatewayError::Rejected),
        }
    }

    /// `GET key` from Redis when it is available (refreshing the cache), else
    /// from the cache.
    pub async fn get(&mut self, key: &str) -> Read<V> {
        if !self.client.status().fallback_active {
            let reply = self
                .client
                .call(
                    |buf| encode::get(buf, key.as_bytes()),
                    CallOptions::idempotent(self.timeout),
                )
                .await;
            if let Ok(reply) = reply {
                match reply.frame() {
                    Frame::BulkString(value) => {
                        self.cache.put(key, value);
                        return Read {
                            value: Vec::from_slice(value).ok(),
                            source: Source::Redis,
                        };
                    }
                    Frame::Null => {
                        self.cache.remove(key);
                        return Read {
                            value: None,
                            source: Source::Redis,
                        };
                    }
                    _ => {}
                }
            }
        }
        Read {
            value: self.cache.get(key).and_then(|v| Vec::from_slice(v).ok()),
            source: Source::Fallback,
        }
    }
}

//! The typed commands: each encodes with a core encoder, names its class
//! with one of the core's constants, and converts the reply. What happens to
//! the command during an outage is the core's decision, not made here.

use std::time::{Duration, Instant};

use resilis_core::command::Class;
use resilis_core::resp::encode::{self, CommandEncoder, Expiry, SetCondition};

use super::{Client, Source, Sourced};
use crate::encoding::encode_vec;
use crate::error::Error;
use crate::fallback::expiry_after;
use crate::value::{FromValue, Value, convert};

/// Options of a SET: `SetOptions::new().ex(60).nx()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetOptions {
    pub expiry: Option<Expiry>,
    pub condition: Option<SetCondition>,
}

impl SetOptions {
    pub fn new() -> Self {
        SetOptions::default()
    }
    /// Expire after `seconds`.
    pub fn ex(mut self, seconds: u64) -> Self {
        self.expiry = Some(Expiry::Ex(seconds));
        self
    }
    /// Expire after `millis`.
    pub fn px(mut self, millis: u64) -> Self {
        self.expiry = Some(Expiry::Px(millis));
        self
    }
    /// Only if the key does not exist.
    pub fn nx(mut self) -> Self {
        self.condition = Some(SetCondition::Nx);
        self
    }
    /// Only if the key exists.
    pub fn xx(mut self) -> Self {
        self.condition = Some(SetCondition::Xx);
        self
    }
    fn ttl(&self) -> Option<Duration> {
        match self.expiry {
            Some(Expiry::Ex(s)) => Some(Duration::from_secs(s)),
            Some(Expiry::Px(ms)) => Some(Duration::from_millis(ms)),
            None => None,
        }
    }
}

impl Client {
    /// `GET key`; `None` when the key does not exist. In fallback mode,
    /// while Redis is unavailable, answered from the fallback cache (see
    /// [`Client::get_with_source`]); a key the cache does not hold fails
    /// with [`Error::ConnectionDown`] naming the reason.
    pub async fn get<T: FromValue>(&self, key: impl AsRef<[u8]>) -> Result<Option<T>, Error> {
        self.get_with_source(key).await.map(|s| s.value)
    }

    /// `GET`, saying whether Redis or the fallback cache answered.
    pub async fn get_with_source<T: FromValue>(
        &self,
        key: impl AsRef<[u8]>,
    ) -> Result<Sourced<Option<T>>, Error> {
        let key = key.as_ref();
        let reply = self
            .request(
                encode_vec(|b| encode::get(b, key)),
                Class::CACHED_READ,
                None,
            )
            .await?;
        if reply.from_cache {
            return Ok(Sourced {
                value: convert(reply.value)?,
                source: Source::Fallback,
            });
        }
        match &reply.value {
            Value::Bulk(b) => {
                self.learn(key, Some(b), Some(self.inner.options.fallback.learned_ttl))
            }
            Value::Nil => self.learn(key, None, None),
            _ => {}
        }
        Ok(Sourced::redis(convert(reply.value)?))
    }

    /// `SET key value`. While Redis is unavailable it fails with
    /// [`Error::ConnectionDown`] (not applied): a write is never kept to be
    /// applied later over what other clients wrote meanwhile.
    pub async fn set(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), Error> {
        self.set_with(key, value, SetOptions::default())
            .await
            .map(|_| ())
    }

    /// `SET key value [EX|PX] [NX|XX]`: true if it was set (NX/XX may say no).
    pub async fn set_with(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: SetOptions,
    ) -> Result<bool, Error> {
        let (key, value) = (key.as_ref(), value.as_ref());
        let core_options = encode::SetOptions {
            expiry: options.expiry,
            condition: options.condition,
            get: false,
        };
        // SET NX is not resend-safe: a resend would answer "not set" to the
        // writer who set it.
        let class = if options.condition == Some(SetCondition::Nx) {
            Class::WRITE
        } else {
            Class::IDEMPOTENT_WRITE
        };
        let bytes = encode_vec(|b| encode::set(b, key, value, &core_options));
        let done = !self.redis(bytes, class).await?.is_nil();
        if done {
            self.learn(key, Some(value), options.ttl());
        }
        Ok(done)
    }

    /// `SET`, with where the answer came from: always [`Source::Redis`],
    /// since writes are never applied locally.
    pub async fn set_with_source(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: SetOptions,
    ) -> Result<Sourced<bool>, Error> {
        self.set_with(key, value, options).await.map(Sourced::redis)
    }

    /// `DEL key`: how many keys were removed (0 or 1).
    pub async fn del(&self, key: impl AsRef<[u8]>) -> Result<i64, Error> {
        let key = key.as_ref();
        let removed = self
            .redis(encode_vec(|b| encode::del(b, &[key])), Class::WRITE)
            .await;
        // Whatever happened, a cached copy may now be stale.
        self.forget(key);
        convert(removed?)
    }

    /// `EXISTS key`. Only Redis answers it: during an outage it fails with
    /// the reason (the cache cannot know what it does not hold).
    pub async fn exists(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        let key = key.as_ref();
        let n: i64 = convert(
            self.redis(encode_vec(|b| encode::exists(b, &[key])), Class::READ)
                .await?,
        )?;
        Ok(n > 0)
    }

    /// `EXPIRE key seconds` (or `PEXPIRE` for a fraction of a second): true
    /// if the key exists.
    pub async fn expire(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<bool, Error> {
        let key = key.as_ref();
        let bytes = if ttl.subsec_millis() == 0 {
            encode_vec(|b| encode::expire(b, key, ttl.as_secs()))
        } else {
            // Saturated, never wrapped: a TTL past u64 milliseconds is
            // refused by Redis, not cut to a short one.
            let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            encode_vec(|b| {
                let mut c = CommandEncoder::new(b, 3);
                c.arg(b"PEXPIRE").arg(key).arg_uint(ms);
                c.finish()
            })
        };
        let set: bool = convert(self.redis(bytes, Class::WRITE).await?)?;
        if set {
            self.learn_expiry(key, ttl);
        }
        Ok(set)
    }

    /// Write-through of an EXPIRE Redis applied: a TTL too large for an
    /// `Instant` keeps the cached value with no expiry.
    fn learn_expiry(&self, key: &[u8], ttl: Duration) {
        if self.write_through() {
            let now = Instant::now();
            self.shared()
                .fallback()
                .cache
                .set_expiry(key, expiry_after(now, ttl), now);
        }
    }

    /// `TTL key`: seconds left, -1 without expiry, -2 if the key is missing.
    pub async fn ttl(&self, key: impl AsRef<[u8]>) -> Result<i64, Error> {
        let key = key.as_ref();
        convert(
            self.redis(encode_vec(|b| encode::ttl(b, key)), Class::READ)
                .await?,
        )
    }

    /// `INCR key`: the new value. Not resend-safe: never written twice.
    pub async fn incr(&self, key: impl AsRef<[u8]>) -> Result<i64, Error> {
        let key = key.as_ref();
        let v = self
            .redis(encode_vec(|b| encode::incr(b, key)), Class::WRITE)
            .await;
        self.forget(key);
        convert(v?)
    }

    /// `DECR key`: the new value.
    pub async fn decr(&self, key: impl AsRef<[u8]>) -> Result<i64, Error> {
        let key = key.as_ref();
        let v = self
            .redis(encode_vec(|b| encode::decr(b, key)), Class::WRITE)
            .await;
        self.forget(key);
        convert(v?)
    }

    /// `MGET key...`: one entry per key, `None` where missing.
    pub async fn mget<K: AsRef<[u8]>, T: FromValue>(
        &self,
        keys: &[K],
    ) -> Result<Vec<Option<T>>, Error> {
        let keys: Vec<&[u8]> = keys.iter().map(AsRef::as_ref).collect();
        convert(
            self.redis(encode_vec(|b| encode::mget(b, &keys)), Class::READ)
                .await?,
        )
    }

    /// `MSET key value...`.
    pub async fn mset<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        pairs: &[(K, V)],
    ) -> Result<(), Error> {
        let pairs: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        let v = self
            .redis(
                encode_vec(|b| encode::mset(b, &pairs)),
                Class::IDEMPOTENT_WRITE,
            )
            .await?;
        for (k, val) in &pairs {
            // MSET clears any TTL, as the cache entry does.
            self.learn(k, Some(val), None);
        }
        convert(v)
    }

    /// `HGET key field`.
    pub async fn hget<T: FromValue>(
        &self,
        key: impl AsRef<[u8]>,
        field: impl AsRef<[u8]>,
    ) -> Result<Option<T>, Error> {
        let (key, field) = (key.as_ref(), field.as_ref());
        convert(
            self.redis(encode_vec(|b| encode::hget(b, key, field)), Class::READ)
                .await?,
        )
    }

    /// `HSET key field value`: 1 if the field is new, 0 if it was updated.
    pub async fn hset(
        &self,
        key: impl AsRef<[u8]>,
        field: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<i64, Error> {
        let (key, field, value) = (key.as_ref(), field.as_ref(), value.as_ref());
        convert(
            self.redis(
                encode_vec(|b| encode::hset(b, key, &[(field, value)])),
                Class::WRITE,
            )
            .await?,
        )
    }

    /// `HGETALL key` as a map, e.g. `HashMap<String, String>`.
    pub async fn hgetall<T: FromValue>(&self, key: impl AsRef<[u8]>) -> Result<T, Error> {
        let key = key.as_ref();
        convert(
            self.redis(encode_vec(|b| encode::hgetall(b, key)), Class::READ)
                .await?,
        )
    }

    /// `PUBLISH channel message`: how many subscribers got it.
    pub async fn publish(
        &self,
        channel: impl AsRef<[u8]>,
        message: impl AsRef<[u8]>,
    ) -> Result<i64, Error> {
        let (channel, message) = (channel.as_ref(), message.as_ref());
        convert(
            self.redis(
                encode_vec(|b| encode::publish(b, channel, message)),
                Class::WRITE,
            )
            .await?,
        )
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), Error> {
        self.redis(encode_vec(encode::ping), Class::READ)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Options;

    /// A client whose connection never comes up: only its cache is used.
    fn client_without_server() -> Client {
        Client::with_options(Options::from_url("redis://127.0.0.1:1").unwrap()).unwrap()
    }

    fn cached(client: &Client, key: &[u8], at: Instant) -> bool {
        client.shared().fallback().cache.get(key, at).is_some()
    }

    /// The write-through after Redis accepted a huge TTL panicked with
    /// "overflow when adding duration to instant".
    #[tokio::test]
    async fn huge_ttls_never_panic_and_never_expire() {
        let client = client_without_server();
        let later = Instant::now() + Duration::from_secs(1 << 40);
        for options in [
            SetOptions::new().ex(u64::MAX),
            SetOptions::new().px(u64::MAX),
        ] {
            client.learn(b"k", Some(b"v"), options.ttl());
            assert!(cached(&client, b"k", later), "{options:?}");
        }
        client.learn(b"k", Some(b"v"), Some(Duration::from_secs(60)));
        assert!(!cached(&client, b"k", later));
        client.learn(b"k", Some(b"v"), Some(Duration::from_secs(60)));
        client.learn_expiry(b"k", Duration::MAX);
        assert!(cached(&client, b"k", later));
        client.learn_expiry(b"k", Duration::from_secs(60));
        assert!(!cached(&client, b"k", later));
        client.shutdown().await;
    }

    #[tokio::test]
    async fn waiting_forever_for_ready_does_not_panic() {
        let client = client_without_server();
        let stopper = client.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            stopper.shutdown().await;
        });
        let waited = client.wait_ready(Duration::MAX).await;
        assert!(matches!(waited, Err(Error::Shutdown)), "{waited:?}");
    }
}

//! The client handle: options, typed commands, the generic `cmd` builder,
//! and the fallback routing around them.
//!
//! A [`Client`] is a cheap, cloneable handle to one driver task (one Redis
//! connection). Each command is encoded by the calling task, sent to the
//! driver over a bounded channel with a oneshot for its answer, and
//! pipelined with whatever else is waiting.
//!
//! Idempotency (what the core may write again after a reconnect instead of
//! reporting "indeterminate"): reads (GET, MGET, EXISTS, TTL, HGET, HGETALL
//! and the read-only commands in [`READ_ONLY`]), plain SET and SET with
//! EX/PX/XX, and MSET: writing them twice leaves the same state and the
//! same reply. Not idempotent: SET NX (a resend would answer "not set" to
//! the writer who set it), DEL, EXPIRE, HSET (their counts would be wrong),
//! INCR/DECR, PUBLISH. `cmd()` classifies by name; `.idempotent(bool)`
//! overrides.
//!
//! Blocking commands (BLPOP, BRPOP, BLMOVE, BZPOPMIN, XREAD ... BLOCK, WAIT
//! ...) never go on the shared connection, where they would stall every
//! command pipelined behind them: `cmd()` sends them to a second, dedicated
//! connection, opened on first use, one blocking command at a time in
//! order. Their default deadline is none (they may block "forever"); set one
//! with `.timeout()`. While one is outstanding that connection's liveness
//! rests on TCP keepalive, since silence is then expected.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use resilis_core::resp::encode::{self, CommandEncoder};
pub use resilis_core::resp::encode::{Expiry, SetCondition};
use resilis_core::{Config, OfflinePolicy, PhaseKind};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::driver::{self, Command, Driver, Request, TlsSetup, encode_vec};
use crate::error::Error;
use crate::fallback::{FallbackConfig, Lookup, Refused};
use crate::health::{Health, Shared, bump};
use crate::tls::{TlsOptions, client_config};
use crate::value::{FromValue, ToArg, Value, convert};

/// What commands do while Redis is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OfflineMode {
    /// The seed's behaviour: get/set/del/exists/expire are answered by the
    /// fallback cache (see [`crate::fallback`]); other commands fail at once
    /// with [`Error::ConnectionDown`]. Before the first failure, commands
    /// wait in the queue for the first connect.
    #[default]
    Fallback,
    /// Every command fails at once with [`Error::ConnectionDown`] while the
    /// connection is not ready (also before the first connect: use
    /// [`Client::wait_ready`]).
    FailFast,
    /// Commands wait in the bounded queue until the connection is ready or
    /// their deadline passes ([`Error::Timeout`]).
    QueueThenFail,
}

/// Everything a client needs: the core's connection config, TLS settings,
/// the offline mode and the fallback cache's bounds.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: Config,
    pub tls: TlsOptions,
    pub offline: OfflineMode,
    pub fallback: FallbackConfig,
}

impl Options {
    /// The seed's variables (`REDIS_URL`, `REDIS_HOST`, `REDIS_PORT`,
    /// `REDIS_PASSWORD`, `REDIS_TLS`, ...) and the `REDIS_TLS_*` ones.
    pub fn from_env() -> Result<Options, Error> {
        let config = Config::from_env(|name| std::env::var(name).ok())?;
        let tls = TlsOptions::from_env()?;
        Ok(Options::from_config(config).tls(tls))
    }

    /// A `redis://` or `rediss://` URL; TLS options at their defaults
    /// (verification against the Mozilla roots): add a CA with `.tls(...)`.
    pub fn from_url(url: &str) -> Result<Options, Error> {
        Ok(Options::from_config(Config::from_url(url)?))
    }

    pub fn from_config(config: Config) -> Options {
        Options {
            config,
            tls: TlsOptions::default(),
            offline: OfflineMode::default(),
            fallback: FallbackConfig::default(),
        }
    }

    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    pub fn offline(mut self, mode: OfflineMode) -> Self {
        self.offline = mode;
        self
    }

    pub fn fallback(mut self, fallback: FallbackConfig) -> Self {
        self.fallback = fallback;
        self
    }

    /// Default deadline of a command (the core's `command_timeout`).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.config.command_timeout = timeout;
        self
    }

    /// Adjusts anything else in the core's config.
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Redis,
    /// The in-memory fallback cache, because Redis was unavailable.
    Fallback,
}

/// An answer and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Sourced<T> {
    fn redis(value: T) -> Self {
        Sourced {
            value,
            source: Source::Redis,
        }
    }
    fn fallback(value: T) -> Self {
        Sourced {
            value,
            source: Source::Fallback,
        }
    }
}

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

/// Commands that only read: safe to write twice after a reconnect.
pub const READ_ONLY: &[&str] = &[
    "GET",
    "MGET",
    "EXISTS",
    "TTL",
    "PTTL",
    "TYPE",
    "STRLEN",
    "GETRANGE",
    "HGET",
    "HMGET",
    "HGETALL",
    "HEXISTS",
    "HLEN",
    "HKEYS",
    "HVALS",
    "HSTRLEN",
    "LRANGE",
    "LLEN",
    "LINDEX",
    "SMEMBERS",
    "SISMEMBER",
    "SMISMEMBER",
    "SCARD",
    "ZRANGE",
    "ZSCORE",
    "ZCARD",
    "ZRANK",
    "ZCOUNT",
    "ZMSCORE",
    "XRANGE",
    "XLEN",
    "SCAN",
    "HSCAN",
    "SSCAN",
    "ZSCAN",
    "KEYS",
    "DBSIZE",
    "PING",
    "ECHO",
    "INFO",
    "TIME",
    "EXPIRETIME",
    "PEXPIRETIME",
    "BITCOUNT",
    "GETBIT",
    "PFCOUNT",
    "GEOPOS",
    "GEODIST",
    "OBJECT",
    "MEMORY",
];

/// Commands `cmd()` refuses, with why: they change the state of the shared
/// connection for every other caller, or break the one-reply-per-command
/// order that pipelining rests on.
pub const REFUSED: &[(&str, &str)] = &[
    (
        "SUBSCRIBE",
        "pub/sub replies are pushes, not replies: a subscriber needs a dedicated connection (not in this version)",
    ),
    (
        "PSUBSCRIBE",
        "pub/sub replies are pushes, not replies: a subscriber needs a dedicated connection (not in this version)",
    ),
    (
        "SSUBSCRIBE",
        "pub/sub replies are pushes, not replies: a subscriber needs a dedicated connection (not in this version)",
    ),
    (
        "UNSUBSCRIBE",
        "pub/sub is not supported on the shared connection",
    ),
    (
        "PUNSUBSCRIBE",
        "pub/sub is not supported on the shared connection",
    ),
    (
        "SUNSUBSCRIBE",
        "pub/sub is not supported on the shared connection",
    ),
    (
        "MONITOR",
        "MONITOR turns the connection into a stream: use redis-cli",
    ),
    (
        "MULTI",
        "other callers' commands would join the transaction on the shared connection (not in this version)",
    ),
    (
        "EXEC",
        "transactions are not supported on the shared connection",
    ),
    (
        "DISCARD",
        "transactions are not supported on the shared connection",
    ),
    (
        "WATCH",
        "transactions are not supported on the shared connection",
    ),
    (
        "UNWATCH",
        "transactions are not supported on the shared connection",
    ),
    (
        "SELECT",
        "the database is part of the config: set REDIS_DB or /db in the URL",
    ),
    (
        "HELLO",
        "the protocol is negotiated by the connection: set REDIS_PROTOCOL",
    ),
    (
        "AUTH",
        "credentials are part of the config: set REDIS_PASSWORD / REDIS_USERNAME",
    ),
    (
        "RESET",
        "RESET would drop the connection's authentication and protocol",
    ),
    ("QUIT", "use client.shutdown()"),
    ("SYNC", "replication streams are not replies"),
    ("PSYNC", "replication streams are not replies"),
];

/// Commands that may block for a long time waiting for data.
pub const BLOCKING: &[&str] = &[
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BLMOVE",
    "BLMPOP",
    "BZPOPMIN",
    "BZPOPMAX",
    "BZMPOP",
    "WAIT",
    "WAITAOF",
];

struct Handle {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

struct Inner {
    main: Handle,
    blocking: OnceLock<Handle>,
    options: Options,
    tls: Option<TlsSetup>,
}

/// A resilient Redis client: clone it freely, every clone shares one
/// connection (and one fallback cache). Dropping the last clone closes it.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.main.shared.endpoint)
            .field("offline", &self.inner.options.offline)
            .finish_non_exhaustive()
    }
}

fn spawn(options: &Options, tls: Option<TlsSetup>) -> Result<Handle, Error> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
    let mut config = options.config.clone();
    config.queue.offline = match options.offline {
        OfflineMode::FailFast => OfflinePolicy::FailFast,
        OfflineMode::Fallback | OfflineMode::QueueThenFail => OfflinePolicy::Queue,
    };
    let endpoint = format!(
        "{}:{}{}",
        config.host,
        config.port,
        if config.tls { " (tls)" } else { "" }
    );
    let shared = Arc::new(Shared::new(endpoint, options.fallback));
    let (tx, rx) = mpsc::channel(driver::CHANNEL);
    let early_fallback = options.offline == OfflineMode::Fallback;
    runtime.spawn(Driver::new(config, tls, rx, shared.clone(), early_fallback).run());
    Ok(Handle { tx, shared })
}

impl Client {
    /// Reads the configuration from the environment (see
    /// [`Options::from_env`]) and starts connecting in the background.
    /// Must be called inside a Tokio runtime.
    pub fn from_env() -> Result<Client, Error> {
        Client::with_options(Options::from_env()?)
    }

    /// Connects to a `redis://` / `rediss://` URL (see [`Options::from_url`]).
    pub fn connect(url: &str) -> Result<Client, Error> {
        Client::with_options(Options::from_url(url)?)
    }

    /// Starts a client; TLS files are read and checked now, so a bad
    /// `REDIS_TLS_CA_FILE` fails here and not at the first connect.
    pub fn with_options(options: Options) -> Result<Client, Error> {
        let tls = if options.config.tls {
            Some(TlsSetup {
                connector: tokio_rustls::TlsConnector::from(client_config(&options.tls)?),
                server_name: options.tls.server_name_for(&options.config.host)?,
                insecure: options.tls.insecure,
            })
        } else {
            None
        };
        let main = spawn(&options, tls.clone())?;
        Ok(Client {
            inner: Arc::new(Inner {
                main,
                blocking: OnceLock::new(),
                options,
                tls,
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.main.shared
    }

    /// A snapshot of the connection for health endpoints.
    pub fn health(&self) -> Health {
        self.shared().health()
    }

    /// The core's events (phase changes, reconnects, fallback engaged and
    /// released...), from now on.
    pub fn events(&self) -> broadcast::Receiver<resilis_core::Event> {
        self.shared().events.subscribe()
    }

    /// Whether get/set/del/exists/expire are being answered by the fallback
    /// cache right now.
    pub fn fallback_active(&self) -> bool {
        self.shared().fallback_hint.load(Relaxed)
    }

    /// Waits until the connection is ready. Fails at once on a permanent
    /// failure (wrong password, untrusted certificate), or after `timeout`,
    /// with the last reason and its fix.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let mut events = self.events();
        let deadline = tokio::time::Instant::now() + timeout;
        // Bounded by the deadline.
        loop {
            {
                let status = self.shared().status();
                match status.phase {
                    PhaseKind::Ready => return Ok(()),
                    PhaseKind::Failed | PhaseKind::GaveUp => {
                        return Err(status
                            .last_reason
                            .map_or_else(Error::down_unknown, Error::down));
                    }
                    PhaseKind::Shutdown => return Err(Error::Shutdown),
                    _ => {}
                }
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => return Err(self.down_error()),
                Ok(Err(broadcast::error::RecvError::Closed)) => return Err(Error::Shutdown),
                Ok(_) => {}
            }
        }
    }

    /// Retry at once (after a permanent failure was fixed, or to cut a
    /// backoff short).
    pub async fn retry(&self) {
        let _ = self.inner.main.tx.send(Request::Retry).await;
    }

    /// Closes the connection: queued commands fail as not sent, written ones
    /// as indeterminate. Other clones see [`Error::Shutdown`] afterwards.
    pub async fn shutdown(&self) {
        let _ = self.inner.main.tx.send(Request::Shutdown).await;
        if let Some(b) = self.inner.blocking.get() {
            let _ = b.tx.send(Request::Shutdown).await;
        }
    }

    fn down_error(&self) -> Error {
        self.shared()
            .status()
            .last_reason
            .map_or_else(Error::down_unknown, Error::down)
    }

    fn serving_fallback(&self) -> bool {
        self.inner.options.offline == OfflineMode::Fallback
            && self.shared().fallback_hint.load(Relaxed)
    }

    fn fallback_mode(&self) -> bool {
        self.inner.options.offline == OfflineMode::Fallback
    }

    fn write_through(&self) -> bool {
        self.inner.options.fallback.write_through
    }

    fn blocking_handle(&self) -> Result<&Handle, Error> {
        if let Some(h) = self.inner.blocking.get() {
            return Ok(h);
        }
        let mut options = self.inner.options.clone();
        // Blocking commands wait for the connection rather than fail fast.
        options.offline = OfflineMode::QueueThenFail;
        let handle = spawn(&options, self.inner.tls.clone())?;
        Ok(self.inner.blocking.get_or_init(|| handle))
    }

    /// Sends encoded bytes and waits for the answer.
    async fn request(
        &self,
        bytes: Vec<u8>,
        idempotent: bool,
        blocking: bool,
        timeout: Option<Duration>,
    ) -> Result<Value, Error> {
        self.send(bytes, idempotent, blocking, timeout, false).await
    }

    /// `fallback_read`: a GET/EXISTS whose caller turns to the cache when
    /// fallback engages while it waits.
    async fn send(
        &self,
        bytes: Vec<u8>,
        idempotent: bool,
        blocking: bool,
        timeout: Option<Duration>,
        fallback_read: bool,
    ) -> Result<Value, Error> {
        let handle = if blocking {
            self.blocking_handle()?
        } else {
            if self.serving_fallback() {
                // Fallback mode: what the cache cannot answer fails fast.
                return Err(self.down_error());
            }
            &self.inner.main
        };
        let timeout = timeout.unwrap_or(if blocking {
            Duration::MAX
        } else {
            self.inner.options.config.command_timeout
        });
        let (tx, rx) = oneshot::channel();
        let command = Command {
            bytes,
            timeout,
            idempotent,
            blocking,
            fallback_read,
            reply: tx,
        };
        // The channel is drained on every wake, so it is rarely full: try the
        // cheap path first, and wait for room only when there is none.
        match handle.tx.try_send(Request::Command(command)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(request)) => {
                handle.tx.send(request).await.map_err(|_| Error::Shutdown)?
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Error::Shutdown),
        }
        rx.await.unwrap_or(Err(Error::Shutdown))
    }

    // ----- fallback helpers ---------------------------------------------

    fn fallback_read(&self, key: &[u8]) -> Option<Vec<u8>> {
        let found = self.shared().fallback().read(key, Instant::now());
        match found {
            Lookup::Hit(v) => {
                bump(&self.shared().metrics.fallback_hits);
                Some(v)
            }
            Lookup::Miss => {
                bump(&self.shared().metrics.fallback_misses);
                None
            }
        }
    }

    fn learn(&self, key: &[u8], value: Option<&[u8]>, ttl: Option<Duration>) {
        if !self.write_through() {
            return;
        }
        let mut fb = self.shared().fallback();
        match value {
            Some(v) => fb.cache.put(key, v, ttl.map(|t| Instant::now() + t)),
            None => {
                fb.cache.remove(key, Instant::now());
            }
        }
    }

    fn forget(&self, key: &[u8]) {
        if self.write_through() {
            self.shared().fallback().cache.remove(key, Instant::now());
        }
    }

    /// Runs an outage write, or says to send it to Redis after all.
    fn outage_write<T>(
        &self,
        write: impl FnOnce(&mut crate::fallback::FallbackState, Instant) -> Result<T, Refused>,
    ) -> Option<Result<T, Error>> {
        let result = write(&mut self.shared().fallback(), Instant::now());
        let m = &self.shared().metrics;
        match result {
            Ok(v) => {
                bump(&m.outage_writes);
                Some(Ok(v))
            }
            Err(Refused::NotActive) => None,
            Err(Refused::LogFull) => {
                bump(&m.outage_writes_refused);
                Some(Err(Error::ConnectionDown {
                    reason: self.shared().status().last_reason,
                    fix: "Redis is down and the outage write log is full: this write was NOT kept; retry when Redis is back",
                }))
            }
        }
    }

    // ----- typed commands ------------------------------------------------

    /// `GET key`; `None` when the key does not exist. In fallback mode,
    /// answered from the fallback cache while Redis is unavailable (a key the
    /// cache does not hold reads as `None`).
    pub async fn get<T: FromValue>(&self, key: impl AsRef<[u8]>) -> Result<Option<T>, Error> {
        self.get_with_source(key).await.map(|s| s.value)
    }

    /// `GET`, saying whether Redis or the fallback cache answered.
    pub async fn get_with_source<T: FromValue>(
        &self,
        key: impl AsRef<[u8]>,
    ) -> Result<Sourced<Option<T>>, Error> {
        let key = key.as_ref();
        let from_cache = |this: &Self| -> Result<Sourced<Option<T>>, Error> {
            let value = this.fallback_read(key).map_or(Value::Nil, Value::Bulk);
            Ok(Sourced::fallback(convert(value)?))
        };
        if self.serving_fallback() {
            return from_cache(self);
        }
        let fallback_read = self.fallback_mode();
        match self
            .send(
                encode_vec(|b| encode::get(b, key)),
                true,
                false,
                None,
                fallback_read,
            )
            .await
        {
            Ok(value) => {
                match &value {
                    Value::Bulk(b) => {
                        self.learn(key, Some(b), Some(self.inner.options.fallback.learned_ttl))
                    }
                    Value::Nil => self.learn(key, None, None),
                    _ => {}
                }
                Ok(Sourced::redis(convert(value)?))
            }
            Err(e) if self.fallback_mode() && e.is_connection_error() => from_cache(self),
            Err(e) => Err(e),
        }
    }

    /// `SET key value`.
    pub async fn set(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), Error> {
        self.set_with_source(key, value, SetOptions::default())
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
        self.set_with_source(key, value, options)
            .await
            .map(|s| s.value)
    }

    /// `SET`, saying whether Redis or the fallback cache took it. During an
    /// outage (fallback mode) an unconditional SET is kept locally and
    /// replayed to Redis on reconnect; a conditional one (NX/XX) is refused.
    pub async fn set_with_source(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        options: SetOptions,
    ) -> Result<Sourced<bool>, Error> {
        let (key, value) = (key.as_ref(), value.as_ref());
        let ttl = options.ttl();
        let local = |this: &Self| -> Option<Result<Sourced<bool>, Error>> {
            if options.condition.is_some() {
                bump(&this.shared().metrics.outage_writes_refused);
                return Some(Err(Error::ConnectionDown {
                    reason: this.shared().status().last_reason,
                    fix: "conditional SET (NX/XX) is not applied during an outage: a lock taken in local memory is no lock; retry when Redis is back",
                }));
            }
            this.outage_write(|fb, now| fb.outage_set(key, value, ttl, now))
                .map(|r| r.map(|()| Sourced::fallback(true)))
        };
        if self.serving_fallback()
            && let Some(answer) = local(self)
        {
            return answer;
        }
        let core_options = encode::SetOptions {
            expiry: options.expiry,
            condition: options.condition,
            get: false,
        };
        let idempotent = options.condition != Some(SetCondition::Nx);
        let bytes = encode_vec(|b| encode::set(b, key, value, &core_options));
        match self.request(bytes, idempotent, false, None).await {
            Ok(reply) => {
                let done = !reply.is_nil();
                if done {
                    self.learn(key, Some(value), ttl);
                }
                Ok(Sourced::redis(done))
            }
            Err(e @ (Error::ConnectionDown { .. } | Error::Timeout)) if self.fallback_mode() => {
                // Certainly not applied: keep it for replay if fallback is on.
                local(self).unwrap_or(Err(e))
            }
            Err(e) => Err(e),
        }
    }

    /// `DEL key`: how many keys were removed (0 or 1). During an outage
    /// (fallback mode) applied locally and replayed on reconnect.
    pub async fn del(&self, key: impl AsRef<[u8]>) -> Result<i64, Error> {
        self.del_with_source(key).await.map(|s| s.value)
    }

    pub async fn del_with_source(&self, key: impl AsRef<[u8]>) -> Result<Sourced<i64>, Error> {
        let key = key.as_ref();
        let local = |this: &Self| {
            this.outage_write(|fb, now| fb.outage_del(key, now))
                .map(|r| r.map(|removed| Sourced::fallback(i64::from(removed))))
        };
        if self.serving_fallback()
            && let Some(answer) = local(self)
        {
            return answer;
        }
        match self
            .request(encode_vec(|b| encode::del(b, &[key])), false, false, None)
            .await
        {
            Ok(v) => {
                self.forget(key);
                Ok(Sourced::redis(convert(v)?))
            }
            Err(e @ (Error::ConnectionDown { .. } | Error::Timeout)) if self.fallback_mode() => {
                local(self).unwrap_or(Err(e))
            }
            Err(e) => Err(e),
        }
    }

    /// `EXISTS key`.
    pub async fn exists(&self, key: impl AsRef<[u8]>) -> Result<bool, Error> {
        self.exists_with_source(key).await.map(|s| s.value)
    }

    pub async fn exists_with_source(&self, key: impl AsRef<[u8]>) -> Result<Sourced<bool>, Error> {
        let key = key.as_ref();
        let from_cache = |this: &Self| Ok(Sourced::fallback(this.fallback_read(key).is_some()));
        if self.serving_fallback() {
            return from_cache(self);
        }
        let fallback_read = self.fallback_mode();
        match self
            .send(
                encode_vec(|b| encode::exists(b, &[key])),
                true,
                false,
                None,
                fallback_read,
            )
            .await
        {
            Ok(v) => Ok(Sourced::redis(convert::<i64>(v)? > 0)),
            Err(e) if self.fallback_mode() && e.is_connection_error() => from_cache(self),
            Err(e) => Err(e),
        }
    }

    /// `EXPIRE key seconds` (or `PEXPIRE` for a fraction of a second): true
    /// if the key exists. During an outage (fallback mode) applied locally
    /// and replayed on reconnect.
    pub async fn expire(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<bool, Error> {
        self.expire_with_source(key, ttl).await.map(|s| s.value)
    }

    pub async fn expire_with_source(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<Sourced<bool>, Error> {
        let key = key.as_ref();
        let local = |this: &Self| {
            this.outage_write(|fb, now| fb.outage_expire(key, ttl, now))
                .map(|r| r.map(Sourced::fallback))
        };
        if self.serving_fallback()
            && let Some(answer) = local(self)
        {
            return answer;
        }
        let bytes = if ttl.subsec_millis() == 0 {
            encode_vec(|b| encode::expire(b, key, ttl.as_secs()))
        } else {
            let ms = ttl.as_millis() as u64;
            encode_vec(|b| {
                let mut c = CommandEncoder::new(b, 3);
                c.arg(b"PEXPIRE").arg(key).arg_uint(ms);
                c.finish()
            })
        };
        match self.request(bytes, false, false, None).await {
            Ok(v) => {
                let set: bool = convert(v)?;
                if set && self.write_through() {
                    let now = Instant::now();
                    self.shared()
                        .fallback()
                        .cache
                        .set_expiry(key, now + ttl, now);
                }
                Ok(Sourced::redis(set))
            }
            Err(e @ (Error::ConnectionDown { .. } | Error::Timeout)) if self.fallback_mode() => {
                local(self).unwrap_or(Err(e))
            }
            Err(e) => Err(e),
        }
    }

    /// `TTL key`: seconds left, -1 without expiry, -2 if the key is missing.
    pub async fn ttl(&self, key: impl AsRef<[u8]>) -> Result<i64, Error> {
        let key = key.as_ref();
        let v = self
            .request(encode_vec(|b| encode::ttl(b, key)), true, false, None)
            .await?;
        convert(v)
    }

    /// `INCR key`: the new value. Not idempotent; not served by the fallback.
    pub async fn incr(&self, key: impl AsRef<[u8]>) -> Result<i64, Error> {
        let key = key.as_ref();
        let v = self
            .request(encode_vec(|b| encode::incr(b, key)), false, false, None)
            .await;
        // Whatever happened, a cached copy may now be stale.
        self.forget(key);
        convert(v?)
    }

    /// `DECR key`: the new value.
    pub async fn decr(&self, key: impl AsRef<[u8]>) -> Result<i64, Error> {
        let key = key.as_ref();
        let v = self
            .request(encode_vec(|b| encode::decr(b, key)), false, false, None)
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
        let v = self
            .request(encode_vec(|b| encode::mget(b, &keys)), true, false, None)
            .await?;
        convert(v)
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
            .request(encode_vec(|b| encode::mset(b, &pairs)), true, false, None)
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
        let v = self
            .request(
                encode_vec(|b| encode::hget(b, key, field)),
                true,
                false,
                None,
            )
            .await?;
        convert(v)
    }

    /// `HSET key field value`: 1 if the field is new, 0 if it was updated.
    pub async fn hset(
        &self,
        key: impl AsRef<[u8]>,
        field: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<i64, Error> {
        let (key, field, value) = (key.as_ref(), field.as_ref(), value.as_ref());
        let v = self
            .request(
                encode_vec(|b| encode::hset(b, key, &[(field, value)])),
                false,
                false,
                None,
            )
            .await?;
        convert(v)
    }

    /// `HGETALL key` as a map, e.g. `HashMap<String, String>`.
    pub async fn hgetall<T: FromValue>(&self, key: impl AsRef<[u8]>) -> Result<T, Error> {
        let key = key.as_ref();
        let v = self
            .request(encode_vec(|b| encode::hgetall(b, key)), true, false, None)
            .await?;
        convert(v)
    }

    /// `PUBLISH channel message`: how many subscribers got it.
    pub async fn publish(
        &self,
        channel: impl AsRef<[u8]>,
        message: impl AsRef<[u8]>,
    ) -> Result<i64, Error> {
        let (channel, message) = (channel.as_ref(), message.as_ref());
        let v = self
            .request(
                encode_vec(|b| encode::publish(b, channel, message)),
                false,
                false,
                None,
            )
            .await?;
        convert(v)
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), Error> {
        self.request(encode_vec(encode::ping), true, false, None)
            .await
            .map(|_| ())
    }

    /// Any command: `client.cmd("HINCRBY").arg("h").arg("f").arg(1).query().await`.
    pub fn cmd(&self, name: &str) -> Cmd<'_> {
        let mut cmd = Cmd {
            client: self,
            name: name.to_ascii_uppercase(),
            args: Vec::new(),
            ends: Vec::new(),
            idempotent: None,
            timeout: None,
        };
        name.write_arg(&mut cmd.args);
        cmd.ends.push(cmd.args.len());
        cmd
    }
}

/// A command under construction; see [`Client::cmd`].
#[must_use = "a command does nothing until .query().await"]
pub struct Cmd<'c> {
    client: &'c Client,
    name: String,
    /// Every argument's bytes back to back; `ends` marks where each ends.
    args: Vec<u8>,
    ends: Vec<usize>,
    idempotent: Option<bool>,
    timeout: Option<Duration>,
}

impl Cmd<'_> {
    pub fn arg(mut self, arg: impl ToArg) -> Self {
        arg.write_arg(&mut self.args);
        self.ends.push(self.args.len());
        self
    }

    /// Safe to write twice after a reconnect? Default: true for the commands
    /// in [`READ_ONLY`], false otherwise.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }

    /// This command's deadline (default: the client's command timeout, or
    /// none for blocking commands).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn is_blocking(&self) -> bool {
        if BLOCKING.contains(&self.name.as_str()) {
            return true;
        }
        if matches!(self.name.as_str(), "XREAD" | "XREADGROUP") {
            return self.iter_args().any(|a| a.eq_ignore_ascii_case(b"BLOCK"));
        }
        false
    }

    fn iter_args(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let arg = &self.args[start..end];
            start = end;
            arg
        })
    }

    fn refused(&self) -> Option<&'static str> {
        if let Some((_, why)) = REFUSED.iter().find(|(name, _)| *name == self.name) {
            return Some(why);
        }
        // CLIENT REPLY OFF|SKIP would leave commands without replies.
        let mut args = self.iter_args().skip(1);
        if self.name == "CLIENT"
            && args
                .next()
                .is_some_and(|a| a.eq_ignore_ascii_case(b"REPLY"))
        {
            return Some("CLIENT REPLY would leave commands without replies");
        }
        None
    }

    /// Sends the command; an error reply is [`Error::Server`]. Commands that
    /// would break the shared connection (see [`REFUSED`]) fail with
    /// [`Error::Unsupported`] without being sent.
    pub async fn query(self) -> Result<Value, Error> {
        if let Some(why) = self.refused() {
            return Err(Error::Unsupported {
                command: self.name.clone(),
                why,
            });
        }
        let bytes = encode_vec(|b| {
            let mut enc = CommandEncoder::new(b, self.ends.len());
            for arg in self.iter_args() {
                enc.arg(arg);
            }
            enc.finish()
        });
        let blocking = self.is_blocking();
        let idempotent = self
            .idempotent
            .unwrap_or_else(|| READ_ONLY.contains(&self.name.as_str()));
        self.client
            .request(bytes, idempotent, blocking, self.timeout)
            .await
    }

    /// Sends the command and converts the reply.
    pub async fn query_as<T: FromValue>(self) -> Result<T, Error> {
        convert(self.query().await?)
    }
}

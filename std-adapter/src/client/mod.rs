//! The client handle: options, typed commands, the generic `cmd` builder,
//! and the fallback routing around them.
//!
//! A [`Client`] is a cheap, cloneable handle to one driver task (one Redis
//! connection). Each command is encoded by the calling task, sent to the
//! driver over a bounded channel with a oneshot for its answer, and
//! pipelined with whatever else is waiting.
//!
//! What happens to each command (may it be written again after a
//! reconnect, may the fallback cache answer it, which connection carries
//! it, is it refused) is decided by `resilis_core`: from its command table
//! ([`resilis_core::command::classify`], generated from Redis's own
//! `COMMAND INFO`) and its outage policy. This module only encodes, routes
//! where the class says and converts replies.
//!
//! Blocking commands (BLPOP, BRPOP, BLMOVE, BZPOPMIN, XREAD ... BLOCK...)
//! never go on the shared connection, where they would stall every command
//! pipelined behind them: each runs on a connection of a small pool of its
//! own (up to [`MAX_BLOCKING`], opened on demand). Their default deadline
//! is the core's `blocking_timeout` (60 s); set one with `.timeout()`. When
//! a caller gives up on one (drops its future, or the deadline passes), the
//! core closes that connection at once, so the command cannot take a job
//! for nobody. WAIT and WAITAOF answer about the writes of the connection
//! they run on, so they run on the shared one.
//!
//! Cancellation: a caller that drops its future before its command was
//! written never has it sent (the driver checks the caller before each
//! write and the core withdraws it). After the write, its reply is
//! discarded.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use resilis_core::cluster::ClusterConfig;
use resilis_core::command::{Class, Route};
pub use resilis_core::resp::encode::{Expiry, SetCondition};
use resilis_core::{Config, OfflinePolicy, PhaseKind};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::cluster::{Cluster, ClusterEvent, ClusterHealth};
use crate::driver::{self, Command, Driver, Reply, Request, TlsSetup};
use crate::encoding::encode_vec;
use crate::error::Error;
use crate::fallback::{FallbackConfig, expiry_after};
use crate::health::{Health, Shared, Status};
use crate::tls::{HostSource, TlsOptions, client_config};
use crate::value::Value;
use resilis_core::resp::encode::CommandEncoder;

mod cmd;
mod typed;

pub use cmd::Cmd;
pub use typed::SetOptions;

/// What commands do while Redis is unavailable (the core's
/// [`OfflinePolicy`], which decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OfflineMode {
    /// The seed's behaviour. Before the first attempt fails, commands wait
    /// for the first connect. Once Redis is known to be unavailable, a GET
    /// is answered from the fallback cache ([`Source::Fallback`]; a key the
    /// cache does not hold fails with the reason, unless
    /// [`FallbackConfig::miss_reads_as_absent`]), and every other command
    /// fails at once with [`Error::ConnectionDown`] naming the reason: not
    /// applied, never applied later.
    #[default]
    Fallback,
    /// Every command fails at once with [`Error::ConnectionDown`] while the
    /// connection is not ready (also before the first connect: use
    /// [`Client::wait_ready`]).
    FailFast,
    /// Commands wait in the bounded offline queue until the connection is
    /// ready or their deadline passes ([`Error::ConnectionDown`] with the
    /// reason, or [`Error::Timeout`] when none is known yet).
    QueueThenFail,
}

impl OfflineMode {
    pub(crate) fn policy(self) -> OfflinePolicy {
        match self {
            OfflineMode::Fallback => OfflinePolicy::Fallback,
            OfflineMode::FailFast => OfflinePolicy::FailFast,
            OfflineMode::QueueThenFail => OfflinePolicy::Queue,
        }
    }
}

/// Everything a client needs: the core's connection config, TLS settings,
/// the offline mode and the fallback cache's bounds.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: Config,
    pub tls: TlsOptions,
    pub offline: OfflineMode,
    pub fallback: FallbackConfig,
    /// Where `config.host` came from, named by an error about it.
    pub host_source: HostSource,
    /// Cluster mode: the seed nodes (`config.host:config.port` is the
    /// first). Set by a URL naming several nodes (`redis://h1:p1,h2:p2`), by
    /// `REDIS_CLUSTER_NODES`, or by [`Options::cluster`].
    pub cluster: Option<Vec<(String, u16)>>,
    /// How the cluster router behaves (redirect budget, refresh pacing).
    pub cluster_config: ClusterConfig,
}

impl Options {
    /// The seed's variables (`REDIS_URL`, `REDIS_HOST`, `REDIS_PORT`,
    /// `REDIS_PASSWORD`, `REDIS_TLS`, ...) and the `REDIS_TLS_*` ones. A
    /// `REDIS_TLS_*` setting on a connection without TLS is refused (see
    /// [`TlsOptions::check_tls_on`]).
    pub fn from_env() -> Result<Options, Error> {
        Options::from_lookup(|name: &str| std::env::var(name).ok())
    }

    /// [`Options::from_env`] over any source of variables.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Options, Error> {
        // A REDIS_URL naming several nodes: the core reads the first node's
        // URL (credentials, options), the others are seeds.
        let (url_seeds, first_url) = match env("REDIS_URL") {
            Some(url) => match crate::seeds::split_url(&url)? {
                (first, Some(seeds)) => (Some(seeds), Some(first)),
                _ => (None, None),
            },
            None => (None, None),
        };
        let env = &|name: &str| match (name, &first_url) {
            ("REDIS_URL", Some(first)) => Some(first.clone()),
            _ => env(name),
        };
        let config = Config::from_env(env)?;
        let tls = TlsOptions::from_lookup(env)?;
        tls.check_tls_on(config.tls)?;
        let mut options = Options::from_config(config).tls(tls);
        options.host_source = HostSource::of_env(env);
        if let Some(nodes) = env("REDIS_CLUSTER_NODES") {
            let seeds = crate::seeds::parse_list("REDIS_CLUSTER_NODES", &nodes)?;
            let (host, port) = seeds[0].clone();
            // The first seed is the one the core's config names, unless
            // REDIS_URL/REDIS_HOST chose one already.
            if env("REDIS_URL").is_none() && env("REDIS_HOST").is_none() {
                options.config.host.clear();
                let _ = options.config.host.push_str(&host);
                options.config.port = port;
            }
            options = options.cluster(seeds);
        }
        if let Some(seeds) = url_seeds {
            options = options.cluster(seeds);
        }
        Ok(options)
    }

    /// A `redis://` or `rediss://` URL; TLS options at their defaults
    /// (verification against the Mozilla roots): add a CA with `.tls(...)`.
    /// A URL naming several nodes, `redis://[user:pass@]h1:p1,h2:p2[/db]`,
    /// is cluster mode with those seeds.
    pub fn from_url(url: &str) -> Result<Options, Error> {
        let (first, seeds) = crate::seeds::split_url(url)?;
        let mut options = Options::from_config(Config::from_url(&first)?);
        options.host_source = HostSource::Url;
        if let Some(seeds) = seeds {
            options = options.cluster(seeds);
        }
        Ok(options)
    }

    pub fn from_config(mut config: Config) -> Options {
        // This adapter sees the bytes under its TLS handshake, so the core
        // can tell a plaintext server (silent on a TLS hello) in 3 s
        // instead of at tls_timeout (10 s). Turn off with
        // `configure(|c| c.tls_silence_timeout = None)`.
        if config.tls_silence_timeout.is_none() {
            config.tls_silence_timeout = Some(resilis_core::Duration::from_secs(3));
        }
        // Every element of a reply becomes a `Value` here (32 bytes), ten
        // times or more the bytes it took on the wire (`_\r\n`, 3 bytes): bound the
        // elements of one reply so that its Values take no more memory than
        // `max_frame_len` lets its bytes take (512 MiB / 32 B: 16 777 216
        // elements by default). Raise with
        // `configure(|c| c.resp_limits.max_elements = ...)`.
        if config.resp_limits.max_elements == resilis_core::resp::Limits::REDIS.max_elements {
            config.resp_limits.max_elements =
                (config.max_frame_len / std::mem::size_of::<crate::Value>()).max(1);
        }
        Options {
            config,
            tls: TlsOptions::default(),
            offline: OfflineMode::default(),
            fallback: FallbackConfig::default(),
            host_source: HostSource::Config,
            cluster: None,
            cluster_config: ClusterConfig::default(),
        }
    }

    /// Cluster mode: send read-only commands to replicas (see
    /// [`ClusterConfig::replica_reads`]; a read there may not see this
    /// client's latest write).
    pub fn replica_reads(mut self, on: bool) -> Self {
        self.cluster_config.replica_reads = on;
        self
    }

    /// Cluster mode, with these seed nodes besides `config`'s host and port
    /// (any reachable node of the cluster will do; several survive one being
    /// down). Auth, TLS and timeouts apply to every node.
    pub fn cluster<S: Into<String>>(mut self, seeds: impl IntoIterator<Item = (S, u16)>) -> Self {
        let mut all = vec![(self.config.host.as_str().to_owned(), self.config.port)];
        for (host, port) in seeds {
            let host = host.into();
            if !all.iter().any(|(h, p)| *h == host && *p == port) {
                all.push((host, port));
            }
        }
        self.cluster = Some(all);
        self
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
    /// The in-memory fallback cache, because Redis was unavailable: the
    /// last value this client saw Redis hold (or `None`, only with
    /// [`FallbackConfig::miss_reads_as_absent`]).
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
}

/// Most connections the blocking pool opens (each carries one blocking
/// command at a time; more callers share the least busy one, in order).
pub const MAX_BLOCKING: usize = 4;

struct Handle {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

/// A connection of the blocking pool.
struct Pooled {
    tx: mpsc::Sender<Request>,
    /// Requests sent on it whose answers are not back yet.
    outstanding: Arc<AtomicUsize>,
}

/// Counts a request outstanding on a connection while its future lives.
struct Outstanding(Arc<AtomicUsize>);

impl Outstanding {
    fn new(counter: &Arc<AtomicUsize>) -> Outstanding {
        counter.fetch_add(1, Relaxed);
        Outstanding(counter.clone())
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

struct Inner {
    /// The shared connection's driver; `None` in cluster mode.
    main: Option<mpsc::Sender<Request>>,
    /// Status, counters, events and the fallback cache: the connection's,
    /// or in cluster mode the cluster's as a whole.
    shared: Arc<Shared>,
    cluster: Option<Arc<Cluster>>,
    blocking: Mutex<Vec<Pooled>>,
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
            .field("endpoint", &self.inner.shared.endpoint)
            .field("cluster", &self.inner.cluster.is_some())
            .field("offline", &self.inner.options.offline)
            .finish_non_exhaustive()
    }
}

fn spawn(options: &Options, tls: Option<TlsSetup>, shared: Arc<Shared>) -> Result<Handle, Error> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
    let mut config = options.config.clone();
    config.queue.offline = options.offline.policy();
    let (tx, rx) = mpsc::channel(driver::CHANNEL);
    let miss_absent = options.fallback.miss_reads_as_absent;
    runtime.spawn(Driver::new(config, tls, rx, shared.clone(), miss_absent).run());
    Ok(Handle { tx, shared })
}

/// Why Redis is unavailable, as of the connection's last event.
fn down_error_of(status: &Status) -> Error {
    status.last_reason.map_or_else(Error::down_unknown, |r| {
        Error::down_said(r, status.server_message.as_deref())
    })
}

fn endpoint(config: &Config) -> String {
    format!(
        "{}:{}{}",
        config.host,
        config.port,
        if config.tls { " (tls)" } else { "" }
    )
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
    /// `REDIS_TLS_CA_FILE` fails here and not at the first connect, and so
    /// does a TLS setting on a connection without TLS.
    pub fn with_options(options: Options) -> Result<Client, Error> {
        options.tls.check_tls_on(options.config.tls)?;
        let tls = if options.config.tls {
            Some(TlsSetup {
                connector: tokio_rustls::TlsConnector::from(client_config(&options.tls)?),
                server_name: options
                    .tls
                    .server_name_for(&options.config.host, options.host_source)?,
                insecure: options.tls.insecure,
            })
        } else {
            None
        };
        if let Some(seeds) = &options.cluster {
            let list: Vec<String> = seeds.iter().map(|(h, p)| format!("{h}:{p}")).collect();
            let shared = Arc::new(Shared::new(
                format!("cluster {}", list.join(",")),
                options.fallback,
            ));
            let cluster = Cluster::start(&options, seeds, shared.clone())?;
            return Ok(Client {
                inner: Arc::new(Inner {
                    main: None,
                    shared,
                    cluster: Some(cluster),
                    blocking: Mutex::new(Vec::new()),
                    options,
                    tls,
                }),
            });
        }
        let shared = Arc::new(Shared::new(endpoint(&options.config), options.fallback));
        let main = spawn(&options, tls.clone(), shared)?;
        Ok(Client {
            inner: Arc::new(Inner {
                main: Some(main.tx),
                shared: main.shared,
                cluster: None,
                blocking: Mutex::new(Vec::new()),
                options,
                tls,
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Cluster mode: the map's generation, routing counters and each node's
    /// health. `None` for a single-node client.
    pub fn cluster_health(&self) -> Option<ClusterHealth> {
        self.inner.cluster.as_ref().map(|c| c.health())
    }

    /// Cluster mode: map changes and nodes going up and down, from now on.
    /// `None` for a single-node client.
    pub fn cluster_events(&self) -> Option<broadcast::Receiver<ClusterEvent>> {
        self.inner.cluster.as_ref().map(|c| c.events())
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

    /// Whether the core says Redis is unavailable right now (GETs are then
    /// answered by the fallback cache).
    pub fn fallback_active(&self) -> bool {
        self.shared().fallback_hint.load(Relaxed)
    }

    /// Waits until the connection is ready. Fails at once on a permanent
    /// failure (wrong password, untrusted certificate), or after `timeout`,
    /// with the last reason and its fix.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let mut events = self.events();
        let now = tokio::time::Instant::now();
        // `Duration::MAX` means "as long as it takes": about 30 years.
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400));
        // Bounded by the deadline.
        loop {
            {
                let status = self.shared().status();
                match status.phase {
                    PhaseKind::Ready => return Ok(()),
                    PhaseKind::Failed | PhaseKind::GaveUp => return Err(down_error_of(&status)),
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
        match &self.inner.cluster {
            Some(cluster) => cluster.retry().await,
            None => self.retry_connection().await,
        }
    }

    /// This client's own connection (a cluster node's, in cluster mode).
    pub(crate) async fn retry_connection(&self) {
        if let Some(tx) = &self.inner.main {
            let _ = tx.send(Request::Retry).await;
        }
    }

    /// Closes the connection: queued commands fail as not sent, written ones
    /// as indeterminate. Other clones see [`Error::Shutdown`] afterwards.
    pub async fn shutdown(&self) {
        match &self.inner.cluster {
            Some(cluster) => cluster.shutdown().await,
            None => self.shutdown_connection().await,
        }
    }

    /// This client's own connections (a cluster node's, in cluster mode).
    pub(crate) async fn shutdown_connection(&self) {
        if let Some(tx) = &self.inner.main {
            let _ = tx.send(Request::Shutdown).await;
        }
        let pool: Vec<_> = self.blocking_pool().iter().map(|h| h.tx.clone()).collect();
        for tx in pool {
            let _ = tx.send(Request::Shutdown).await;
        }
    }

    fn down_error(&self) -> Error {
        down_error_of(&self.shared().status())
    }

    fn write_through(&self) -> bool {
        self.inner.options.fallback.write_through
    }

    fn blocking_pool(&self) -> std::sync::MutexGuard<'_, Vec<Pooled>> {
        // A panic elsewhere while holding the lock leaves a plain list.
        self.inner
            .blocking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A connection of the blocking pool for one more blocking command: an
    /// idle one, else a new one (up to [`MAX_BLOCKING`]), else the least busy.
    fn blocking_handle(&self) -> Result<(mpsc::Sender<Request>, Arc<AtomicUsize>), Error> {
        let mut pool = self.blocking_pool();
        let idle = pool.iter().find(|h| h.outstanding.load(Relaxed) == 0);
        if let Some(h) = idle {
            return Ok((h.tx.clone(), h.outstanding.clone()));
        }
        if pool.len() < MAX_BLOCKING {
            let mut options = self.inner.options.clone();
            // A blocking command waits for its connection rather than fail
            // fast: it was going to wait anyway.
            options.offline = OfflineMode::QueueThenFail;
            let shared = Arc::new(Shared::new(
                endpoint(&options.config),
                FallbackConfig::default(),
            ));
            let handle = spawn(&options, self.inner.tls.clone(), shared)?;
            pool.push(Pooled {
                tx: handle.tx,
                outstanding: Arc::new(AtomicUsize::new(0)),
            });
            self.shared()
                .blocking_connections
                .store(pool.len() as u64, Relaxed);
        }
        let least = pool
            .iter()
            .min_by_key(|h| h.outstanding.load(Relaxed))
            .ok_or(Error::Shutdown)?;
        Ok((least.tx.clone(), least.outstanding.clone()))
    }

    /// Sends encoded bytes, on the connection the core's class says, and
    /// waits for the answer.
    async fn request(
        &self,
        bytes: Vec<u8>,
        class: Class,
        timeout: Option<Duration>,
    ) -> Result<Reply, Error> {
        if let Route::Refused { why } = class.route() {
            return Err(Error::Unsupported {
                command: command_name(&bytes),
                why,
            });
        }
        if let Some(cluster) = &self.inner.cluster {
            let timeout = timeout.unwrap_or_else(|| self.default_timeout(class));
            let absent = self.inner.options.fallback.miss_reads_as_absent;
            return cluster.request(bytes, class, timeout, absent).await;
        }
        self.request_asking(bytes, class, timeout, false).await
    }

    fn default_timeout(&self, class: Class) -> Duration {
        let config = &self.inner.options.config;
        if class.blocking() {
            config.blocking_timeout
        } else {
            config.command_timeout
        }
    }

    /// The reply's RESP bytes as they came, for a parser in the core.
    pub(crate) async fn request_raw(
        &self,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        let tx = self.inner.main.as_ref().ok_or(Error::Shutdown)?;
        let (reply, answer) = oneshot::channel();
        let command = Command {
            bytes,
            timeout,
            class: Class::READ,
            reply,
            raw: true,
        };
        tx.send(Request::Command(command))
            .await
            .map_err(|_| Error::Shutdown)?;
        answer.await.unwrap_or(Err(Error::Shutdown))
    }

    /// Sends on this connection (not routed by a cluster). `asking`: a
    /// cluster node's `ASKING` goes just before it, with nothing between.
    pub(crate) async fn request_asking(
        &self,
        bytes: Vec<u8>,
        class: Class,
        timeout: Option<Duration>,
        asking: bool,
    ) -> Result<Reply, Error> {
        // The shared connection's sender is borrowed (nothing to count on
        // the hot path); a pool connection's is counted while this waits.
        let pooled;
        let main = self.inner.main.as_ref().ok_or(Error::Shutdown)?;
        let (tx, _outstanding) = match class.route() {
            Route::Refused { why } => {
                return Err(Error::Unsupported {
                    command: command_name(&bytes),
                    why,
                });
            }
            Route::Blocking => {
                pooled = self.blocking_handle()?;
                (&pooled.0, Some(Outstanding::new(&pooled.1)))
            }
            Route::Shared => (main, None),
        };
        let timeout = timeout.unwrap_or_else(|| self.default_timeout(class));
        let (reply, answer) = oneshot::channel();
        let command = Command {
            bytes,
            timeout,
            class,
            reply,
            raw: false,
        };
        // Kept alive until the command's answer: a dropped receiver would
        // make the driver withdraw ASKING.
        let mut _asking_answer = None;
        let request = if asking {
            let (asking_reply, asking_rx) = oneshot::channel();
            _asking_answer = Some(asking_rx);
            Request::Group(vec![
                Command {
                    bytes: encode_vec(|b| {
                        let mut enc = CommandEncoder::new(b, 1);
                        enc.arg(b"ASKING");
                        enc.finish()
                    }),
                    timeout,
                    class: Class::READ,
                    reply: asking_reply,
                    raw: false,
                },
                command,
            ])
        } else {
            Request::Command(command)
        };
        // The channel is drained on every wake, so it is rarely full: try the
        // cheap path first, and wait for room only when there is none (the
        // driver takes no more than the core has room for).
        match tx.try_send(request) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(request)) => {
                tx.send(request).await.map_err(|_| Error::Shutdown)?
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Error::Shutdown),
        }
        answer.await.unwrap_or(Err(Error::Shutdown))
    }

    /// A request whose answer only Redis may give (every command but GET).
    async fn redis(&self, bytes: Vec<u8>, class: Class) -> Result<Value, Error> {
        self.request(bytes, class, None).await.map(|r| r.value)
    }

    // ----- write-through to the fallback cache ----------------------------

    fn learn(&self, key: &[u8], value: Option<&[u8]>, ttl: Option<Duration>) {
        if !self.write_through() {
            return;
        }
        let mut fb = self.shared().fallback();
        match value {
            Some(v) => fb
                .cache
                .put(key, v, ttl.and_then(|t| expiry_after(Instant::now(), t))),
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
}

/// The command's name, for an error message.
fn command_name(bytes: &[u8]) -> String {
    use resilis_core::resp::{Decoded, Frame, Limits, decode};
    match decode(bytes, &Limits::REDIS) {
        Ok(Decoded::Frame {
            frame: Frame::Array(args),
            ..
        }) => match args.iter().next() {
            Some(Frame::BulkString(name)) => String::from_utf8_lossy(name).to_ascii_uppercase(),
            _ => String::new(),
        },
        _ => String::new(),
    }
}

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

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use resilis_core::PhaseKind;
use resilis_core::cluster::{ClusterReply, classify_error};
use resilis_core::command::{Class, Route};
pub use resilis_core::resp::encode::{Expiry, SetCondition};
use tokio::sync::broadcast;

use crate::cluster::{Cluster, ClusterEvent, ClusterHealth};
use crate::driver::Reply;
use crate::error::Error;
use crate::fallback::expiry_after;
use crate::health::{Health, Shared};
pub use crate::node::MAX_BLOCKING;
use crate::node::{Node, command_name, down_error_of};
pub use crate::options::{OfflineMode, Options, SentinelOptions};
use crate::pubsub::{Kind, Push, Subscriber};
use crate::sentinel::{SentinelEvent, SentinelHealth, SentinelMode};
use crate::value::Value;
use resilis_core::pubsub::PubSubEvent;

mod cmd;
mod typed;

pub use cmd::Cmd;
pub use typed::SetOptions;

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

struct Inner {
    /// The node of a single-node client; `None` in cluster mode.
    node: Option<Node>,
    cluster: Option<Arc<Cluster>>,
    /// Sentinel mode: the task that follows the master for `node`.
    sentinel: Option<SentinelMode>,
    /// Status, counters, events and the fallback cache: the node's, or in
    /// cluster mode the cluster's as a whole.
    shared: Arc<Shared>,
    options: Options,
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
        if let Some(seeds) = &options.cluster {
            let list: Vec<String> = seeds.iter().map(|(h, p)| format!("{h}:{p}")).collect();
            let shared = Arc::new(Shared::new(
                format!("cluster {}", list.join(",")),
                options.fallback,
            ));
            let cluster = Cluster::start(&options, seeds, shared.clone())?;
            return Ok(Client {
                inner: Arc::new(Inner {
                    node: None,
                    sentinel: None,
                    cluster: Some(cluster),
                    shared,
                    options,
                }),
            });
        }
        let node = Node::start(options.clone())?;
        let sentinel = match options.sentinel {
            Some(_) => Some(SentinelMode::start(&options, node.clone())?),
            None => None,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                sentinel,
                shared: node.shared().clone(),
                node: Some(node),
                cluster: None,
                options,
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// Subscribes to channels: a stream of their messages, with a
    /// [`PubSubItem::Gap`](crate::PubSubItem::Gap) wherever messages may be
    /// missing (a reconnect, a consumer too slow for its buffer). Returns
    /// once Redis confirmed every channel; after a reconnect the core
    /// subscribes again by itself. Dropping the [`Subscriber`] unsubscribes.
    /// On RESP3 the subscriptions share the client's connection; on RESP2
    /// they get one of their own.
    pub async fn subscribe<N: AsRef<[u8]>>(
        &self,
        channels: impl IntoIterator<Item = N>,
    ) -> Result<Subscriber, Error> {
        self.subscribe_kind(Kind::Channel, channels).await
    }

    /// [`subscribe`](Self::subscribe) to glob-style patterns (`news.*`).
    pub async fn psubscribe<N: AsRef<[u8]>>(
        &self,
        patterns: impl IntoIterator<Item = N>,
    ) -> Result<Subscriber, Error> {
        self.subscribe_kind(Kind::Pattern, patterns).await
    }

    /// [`subscribe`](Self::subscribe) to shard channels (`SSUBSCRIBE`,
    /// Redis 7): one request per hash slot.
    pub async fn ssubscribe<N: AsRef<[u8]>>(
        &self,
        channels: impl IntoIterator<Item = N>,
    ) -> Result<Subscriber, Error> {
        self.subscribe_kind(Kind::Shard, channels).await
    }

    async fn subscribe_kind<N: AsRef<[u8]>>(
        &self,
        kind: Kind,
        names: impl IntoIterator<Item = N>,
    ) -> Result<Subscriber, Error> {
        let mut names: Vec<Vec<u8>> = names.into_iter().map(|n| n.as_ref().to_vec()).collect();
        names.sort();
        names.dedup();
        if names.is_empty() || names.iter().any(Vec::is_empty) {
            return Err(Error::PubSub(resilis_core::pubsub::PubSubError::EmptyName));
        }
        match (&self.inner.node, &self.inner.cluster) {
            (Some(node), _) => node.subscribe(kind, names).await,
            (None, Some(cluster)) => crate::cluster_pubsub::subscribe(cluster, kind, names).await,
            (None, None) => Err(Error::Shutdown),
        }
    }

    /// Pushes that are not pub/sub messages (`invalidate` with `CLIENT
    /// TRACKING`, `tracking-redir-broken`...), as Redis sent them. A
    /// receiver that falls behind loses the oldest (bounded).
    pub fn pushes(&self) -> broadcast::Receiver<Push> {
        match &self.inner.node {
            Some(node) => node.pushes(),
            None => self.shared().pushes.subscribe(),
        }
    }

    /// `Resubscribed { down_since, confirmed_at }` each time every
    /// subscription is confirmed again after a connection loss.
    pub fn pubsub_events(&self) -> Result<broadcast::Receiver<PubSubEvent>, Error> {
        match &self.inner.node {
            Some(node) => node.pubsub_events(),
            None => Ok(self.shared().pubsub_events.subscribe()),
        }
    }

    /// Sentinel mode: the master followed, the sentinels in the resolver's
    /// order and what they said. `None` otherwise.
    pub fn sentinel_health(&self) -> Option<SentinelHealth> {
        self.inner.sentinel.as_ref().map(SentinelMode::health)
    }

    /// Sentinel mode: each change of master. `None` otherwise.
    pub fn sentinel_events(&self) -> Option<broadcast::Receiver<SentinelEvent>> {
        self.inner.sentinel.as_ref().map(SentinelMode::events)
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
        if let Some(cluster) = &self.inner.cluster {
            cluster.retry().await;
        }
        if let Some(node) = &self.inner.node {
            node.retry().await;
        }
    }

    /// Closes the connection: queued commands fail as not sent, written ones
    /// as indeterminate. Other clones see [`Error::Shutdown`] afterwards.
    pub async fn shutdown(&self) {
        if let Some(cluster) = &self.inner.cluster {
            cluster.shutdown().await;
        }
        if let Some(node) = &self.inner.node {
            node.shutdown().await;
        }
        if let Some(sentinel) = &self.inner.sentinel {
            sentinel.shutdown().await;
        }
    }

    fn down_error(&self) -> Error {
        down_error_of(&self.shared().status())
    }

    fn write_through(&self) -> bool {
        self.inner.options.fallback.write_through
    }

    /// Sends encoded bytes, on the connection the core's class says (in
    /// cluster mode, the node the core's router says), and waits for the
    /// answer.
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
        match (&self.inner.node, &self.inner.cluster) {
            (Some(node), _) => {
                let result = node.request(bytes, class, timeout, false).await;
                // Sentinel mode: a replica's refusal means the master moved.
                if let (Some(sentinel), Err(Error::Server(text))) = (&self.inner.sentinel, &result)
                    && classify_error(text.as_bytes()) == Some(ClusterReply::ReadOnly)
                {
                    sentinel.saw_readonly();
                }
                result
            }
            (None, Some(cluster)) => {
                let config = &self.inner.options.config;
                let timeout = timeout.unwrap_or(if class.blocking() {
                    config.blocking_timeout
                } else {
                    config.command_timeout
                });
                let absent = self.inner.options.fallback.miss_reads_as_absent;
                cluster.request(bytes, class, timeout, absent).await
            }
            (None, None) => Err(Error::Shutdown),
        }
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

//! Pub/sub for the application: [`Subscriber`], a stream of messages with
//! the holes marked, and [`Push`], every other push.
//!
//! What is subscribed, what to send after a reconnect and what each push
//! means are `resilis_core::pubsub`'s decisions; the driver that carries
//! the subscriptions (the shared connection on RESP3, a dedicated one on
//! RESP2) feeds it and hands what it delivers to the hub, which fans
//! messages out to the subscribers' buffers.
//!
//! Pub/sub is at-most-once. A subscriber is told where messages may be
//! missing, in order with the messages, as a [`PubSubItem::Gap`]:
//! - [`GapCause::Reconnected`]: the connection was lost; the core
//!   subscribed again on the new one, and the gap is the time between.
//! - [`GapCause::SlowConsumer`]: the subscriber's buffer was full (more
//!   than [`PubSubConfig::buffer_messages`] messages or
//!   [`PubSubConfig::buffer_bytes`] bytes waiting), so the oldest messages
//!   were dropped, and counted. Memory stays bounded, the connection and
//!   the other subscribers are not held up by a slow one.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::value::Value;
pub use resilis_core::pubsub::Kind;

/// Tells the carrying connection that nobody listens to these names any
/// more (it unsubscribes those no new subscriber took meanwhile).
pub(crate) type Unsubscribe = Box<dyn Fn(Kind, Vec<Vec<u8>>) + Send + Sync>;

/// Bounds of each subscriber's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PubSubConfig {
    /// Messages waiting for the consumer, at most (default 10 000).
    pub buffer_messages: usize,
    /// Bytes of channel names and payloads waiting, at most (default 16 MiB).
    pub buffer_bytes: usize,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        PubSubConfig {
            buffer_messages: 10_000,
            buffer_bytes: 16 << 20,
        }
    }
}

/// A message published to a subscribed channel (or one matching a pattern).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    pub channel: Vec<u8>,
    /// The pattern it matched, for [`Kind::Pattern`].
    pub pattern: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

impl Message {
    fn size(&self) -> usize {
        self.channel.len() + self.payload.len() + self.pattern.as_ref().map_or(0, Vec::len)
    }
}

/// Why messages may be missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GapCause {
    /// The connection was lost at `since` and the server confirmed the
    /// subscription again at `until`: messages published between are lost.
    Reconnected { since: Instant, until: Instant },
    /// The consumer fell behind: the `dropped` oldest messages were
    /// discarded to keep the buffer within its bounds.
    SlowConsumer { dropped: u64 },
}

/// What a [`Subscriber`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PubSubItem {
    Message(Message),
    /// Messages to `name` may be missing here (for a slow consumer: to any
    /// of the subscriber's names, `name` empty).
    Gap {
        kind: Kind,
        name: Vec<u8>,
        cause: GapCause,
    },
    /// The server refused `name` when it was subscribed again (an ACL
    /// changed meanwhile): no more messages will come for it.
    Refused {
        kind: Kind,
        name: Vec<u8>,
        server: String,
    },
}

/// A push that is not a pub/sub message (`invalidate`,
/// `tracking-redir-broken`, ...), as Redis sent it.
#[derive(Clone, Debug, PartialEq)]
pub struct Push(pub Value);

struct SinkState {
    queue: VecDeque<PubSubItem>,
    bytes: usize,
    dropped: u64,
    dropped_total: u64,
    waker: Option<Waker>,
    closed: bool,
}

/// One subscriber's bounded buffer.
pub(crate) struct Sink {
    state: Mutex<SinkState>,
    config: PubSubConfig,
}

impl Sink {
    pub(crate) fn new(config: PubSubConfig) -> Sink {
        Sink {
            state: Mutex::new(SinkState {
                queue: VecDeque::new(),
                bytes: 0,
                dropped: 0,
                dropped_total: 0,
                waker: None,
                closed: false,
            }),
            config,
        }
    }

    fn lock(&self) -> MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends, dropping the oldest messages while over a bound.
    pub(crate) fn push(&self, item: PubSubItem) {
        let size = match &item {
            PubSubItem::Message(m) => m.size(),
            _ => 0,
        };
        let mut s = self.lock();
        let max_messages = self.config.buffer_messages.max(1);
        // Bounded: each pass removes one item.
        while !s.queue.is_empty()
            && (s.queue.len() >= max_messages || s.bytes + size > self.config.buffer_bytes)
        {
            // Whatever is dropped (a message, or an older marker), the
            // consumer is told with one SlowConsumer gap.
            if let Some(PubSubItem::Message(m)) = s.queue.pop_front() {
                s.bytes -= m.size();
            }
            s.dropped += 1;
            s.dropped_total += 1;
        }
        s.bytes += size;
        s.queue.push_back(item);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<PubSubItem>> {
        let mut s = self.lock();
        if s.dropped > 0 {
            let dropped = std::mem::take(&mut s.dropped);
            return Poll::Ready(Some(PubSubItem::Gap {
                kind: Kind::Channel,
                name: Vec::new(),
                cause: GapCause::SlowConsumer { dropped },
            }));
        }
        if let Some(item) = s.queue.pop_front() {
            if let PubSubItem::Message(m) = &item {
                s.bytes -= m.size();
            }
            return Poll::Ready(Some(item));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

type Route = (Kind, Vec<u8>);

/// Who listens to what, on one carrying connection.
#[derive(Default)]
pub(crate) struct Hub {
    routes: Mutex<HashMap<Route, Vec<Arc<Sink>>>>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HashMap<Route, Vec<Arc<Sink>>>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, kind: Kind, names: &[Vec<u8>], sink: &Arc<Sink>) {
        let mut routes = self.lock();
        for name in names {
            routes
                .entry((kind, name.clone()))
                .or_default()
                .push(sink.clone());
        }
    }

    /// Removes `sink`; returns the names nobody listens to any more.
    fn remove(&self, kind: Kind, names: &[Vec<u8>], sink: &Arc<Sink>) -> Vec<Vec<u8>> {
        let mut routes = self.lock();
        let mut orphans = Vec::new();
        for name in names {
            let key = (kind, name.clone());
            if let Some(sinks) = routes.get_mut(&key) {
                sinks.retain(|s| !Arc::ptr_eq(s, sink));
                if sinks.is_empty() {
                    routes.remove(&key);
                    orphans.push(name.clone());
                }
            }
        }
        orphans
    }

    /// Whether anybody still listens to `name` (an unsubscribe that raced
    /// with a new subscriber must not go out).
    pub(crate) fn listened(&self, kind: Kind, name: &[u8]) -> bool {
        self.lock().contains_key(&(kind, name.to_vec()))
    }

    /// Hands `item` to everybody listening to `(kind, name)`.
    pub(crate) fn deliver(&self, kind: Kind, name: &[u8], item: impl Fn() -> PubSubItem) -> bool {
        let routes = self.lock();
        let Some(sinks) = routes.get(&(kind, name.to_vec())) else {
            return false;
        };
        for sink in sinks {
            sink.push(item());
        }
        true
    }

    /// The carrying connection is gone for good (shutdown): streams end.
    pub(crate) fn close_all(&self) {
        for sinks in self.lock().values() {
            for sink in sinks {
                sink.close();
            }
        }
    }
}

/// A stream of the messages to some channels, patterns or shard channels,
/// with [`PubSubItem::Gap`] where messages may be missing. Dropping it
/// unsubscribes (names another subscriber still holds stay subscribed).
pub struct Subscriber {
    kind: Kind,
    names: Vec<Vec<u8>>,
    sink: Arc<Sink>,
    owner: Owner,
}

/// Who holds the subscriptions behind a [`Subscriber`].
enum Owner {
    /// One connection's hub: dropping unsubscribes there, with the names
    /// nobody else holds.
    Node {
        hub: Arc<Hub>,
        unsubscribe: Unsubscribe,
    },
    /// Cluster mode: a task that keeps one node-level subscriber per slot
    /// on the slot's owner and moves it when the slot moves.
    Task(tokio::task::JoinHandle<()>),
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("kind", &self.kind)
            .field("names", &self.names.len())
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    pub(crate) fn new(
        kind: Kind,
        names: Vec<Vec<u8>>,
        config: PubSubConfig,
        hub: Arc<Hub>,
        unsubscribe: Unsubscribe,
    ) -> Subscriber {
        let sink = Arc::new(Sink::new(config));
        hub.add(kind, &names, &sink);
        Subscriber {
            kind,
            names,
            sink,
            owner: Owner::Node { hub, unsubscribe },
        }
    }

    /// A subscriber fed by a task (cluster mode); `sink` is what the task
    /// pushes into, and the task ends when the subscriber is dropped.
    pub(crate) fn fed(
        kind: Kind,
        names: Vec<Vec<u8>>,
        sink: Arc<Sink>,
        task: tokio::task::JoinHandle<()>,
    ) -> Subscriber {
        Subscriber {
            kind,
            names,
            sink,
            owner: Owner::Task(task),
        }
    }

    /// Polls the next item (for a task that merges several subscribers).
    pub(crate) fn poll_item(&self, cx: &mut Context<'_>) -> Poll<Option<PubSubItem>> {
        self.sink.poll_next(cx)
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn names(&self) -> &[Vec<u8>] {
        &self.names
    }

    /// The next message or gap; `None` once the client shut down.
    pub async fn next(&mut self) -> Option<PubSubItem> {
        std::future::poll_fn(|cx| self.sink.poll_next(cx)).await
    }

    /// Messages dropped for this subscriber because it fell behind, in all.
    pub fn dropped_total(&self) -> u64 {
        self.sink.lock().dropped_total
    }

    /// Messages (and markers) waiting in its buffer now.
    pub fn buffered(&self) -> (usize, usize) {
        let s = self.sink.lock();
        (s.queue.len(), s.bytes)
    }
}

impl futures_core::Stream for Subscriber {
    type Item = PubSubItem;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PubSubItem>> {
        self.sink.poll_next(cx)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        match &self.owner {
            Owner::Node { hub, unsubscribe } => {
                let names = hub.remove(self.kind, &self.names, &self.sink);
                if !names.is_empty() {
                    unsubscribe(self.kind, names);
                }
            }
            // Its node-level subscribers unsubscribe as they drop.
            Owner::Task(task) => task.abort(),
        }
    }
}

/// Converts a core gap to wall-clock instants on the driver's epoch.
pub(crate) fn gap_cause(epoch: tokio::time::Instant, gap: resilis_core::pubsub::Gap) -> GapCause {
    let at = |t: resilis_core::Instant| (epoch + Duration::from_micros(t.as_micros())).into_std();
    GapCause::Reconnected {
        since: at(gap.since),
        until: at(gap.until),
    }
}

//! Cluster mode: one node handle per node, and the core's
//! [`ClusterRouter`] deciding where each command goes.
//!
//! Every decision (which node, what a MOVED/ASK/TRYAGAIN/CLUSTERDOWN means,
//! whether a command lost with its node may go elsewhere, when to read the
//! slot map again and from whom) is the router's. This module only moves
//! bytes and time: it sends where the router says, waits when it says
//! wait, reports what came back, and keeps a connection open to each node
//! the router wants.
//!
//! Each node's connection is what a single-node client has (its own driver
//! task, liveness, backoff, TLS), with two settings of its own: commands
//! fail fast while it is not ready (the router decides whether to wait for
//! it or for another node), and a resend-safe command lost in flight comes
//! back at once instead of waiting for that node (`resend_lost = false`),
//! so it can follow its slot to the promoted replica.
//!
//! MGET, MSET, DEL, EXISTS, UNLINK and TOUCH over keys of several slots are
//! split into one command per slot, sent concurrently, and reassembled.
//! This is not atomic: another client may see some parts applied and not
//! others, and a write whose parts did not all succeed reports the first
//! failure (indeterminate when some part may have applied).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use resilis_core::cluster::{
    ClusterReply, ClusterRouter, Failure, MapCommand, NodeId, RefreshAsk, Refreshed, Role, SlotsOf,
    Split, Step, Topology, classify_error, slots_of, split_of,
};
use resilis_core::command::Class;
use resilis_core::resp::encode::CommandEncoder;
use resilis_core::resp::{Decoded, Frame, Limits, decode};
use resilis_core::{DisconnectReason, Event, IndeterminateCause, Instant as CoreInstant, Outcome};
use resilis_core::{OfflinePolicy, PhaseKind};
use serde::Serialize;
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::Instant as TokioInstant;

use crate::driver::{Reply, answer_from_cache};
use crate::encoding::encode_vec;
use crate::error::Error;
use crate::health::{Health, Shared, bump};
use crate::node::Node;
use crate::options::{OfflineMode, Options};
use crate::value::Value;

/// Most nodes (primaries and replicas) one client follows.
pub const MAX_NODES: usize = 128;
/// Slot ranges the map holds: enough for any map, however fragmented.
const RANGES: usize = 16384;

type Router = ClusterRouter<MAX_NODES, RANGES>;
type Map = Topology<MAX_NODES, RANGES>;

/// Most steps one command takes (sends, waits); each is bounded by the
/// deadline and the redirect budget already, this only guards the loop.
const MAX_STEPS: usize = 10_000;

/// Something about the cluster as a whole.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A new slot map was taken (`generation` counts them).
    TopologyChanged {
        generation: u64,
        primaries: usize,
        nodes: usize,
        all_slots_served: bool,
    },
    /// The nodes asked disagreed; the map in use is kept.
    Disagreement { views: usize, best: usize },
    /// A node's connection became ready.
    NodeUp { node: String },
    /// A node's connection left ready.
    NodeDown {
        node: String,
        reason: Option<String>,
    },
}

/// Per-node health, for [`Client::cluster_health`].
#[derive(Debug, Clone, Serialize)]
pub struct ClusterHealth {
    pub generation: u64,
    pub all_slots_served: bool,
    pub refreshes: u64,
    pub moved: u64,
    pub ask: u64,
    pub rerouted_after_loss: u64,
    pub nodes: Vec<NodeHealth>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeHealth {
    pub node: String,
    /// "primary", "replica", or "unlisted" (not in the map in use).
    pub role: &'static str,
    pub health: Health,
}

pub(crate) struct Cluster {
    router: Mutex<Box<Router>>,
    /// One client per node, by `host:port`.
    nodes: Mutex<HashMap<String, Node>>,
    /// The router's `changes()`, for the commands that wait.
    changed: watch::Sender<u64>,
    refresh_wake: Arc<Notify>,
    /// When the refresher will look at the router next (core micros; 0 while
    /// it is busy refreshing): a publish wakes it only to bring that
    /// forward, not on every command.
    refresher_at: Arc<AtomicU64>,
    /// Each node's options: the template with its address.
    template: Options,
    epoch: TokioInstant,
    events: broadcast::Sender<ClusterEvent>,
    /// The cluster's own status, cache and counters.
    pub(crate) shared: Arc<Shared>,
    closed: AtomicBool,
}

impl Cluster {
    pub(crate) fn start(
        options: &Options,
        seeds: &[(String, u16)],
        shared: Arc<Shared>,
    ) -> Result<Arc<Cluster>, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let mut config = options.cluster_config;
        config.offline = options.offline.policy();
        if config.seed == resilis_core::cluster::ClusterConfig::default().seed {
            config.seed = process_seed();
        }
        let router = Router::new(config, seeds.iter().map(|(h, p)| (h.as_str(), *p)));
        let mut template = options.clone();
        template.cluster = None;
        template.offline = OfflineMode::FailFast;
        template.config.queue.offline = OfflinePolicy::FailFast;
        template.config.queue.resend_lost = false;
        // The cluster keeps one cache for every node: a slot that moves
        // takes its entries along.
        template.fallback.write_through = false;
        let cluster = Arc::new(Cluster {
            router: Mutex::new(Box::new(router)),
            nodes: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            refresh_wake: Arc::new(Notify::new()),
            refresher_at: Arc::new(AtomicU64::new(0)),
            template,
            epoch: TokioInstant::now(),
            events: broadcast::channel(256).0,
            shared,
            closed: AtomicBool::new(false),
        });
        cluster.set_status(PhaseKind::Connecting, None);
        runtime.spawn(refresher(
            Arc::downgrade(&cluster),
            cluster.refresh_wake.clone(),
        ));
        Ok(cluster)
    }

    fn router(&self) -> MutexGuard<'_, Box<Router>> {
        self.router.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn node_map(&self) -> MutexGuard<'_, HashMap<String, Node>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> CoreInstant {
        CoreInstant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    fn tokio_at(&self, at: CoreInstant) -> TokioInstant {
        self.epoch + Duration::from_micros(at.as_micros())
    }

    pub(crate) fn template(&self) -> &Options {
        &self.template
    }

    /// Wakes on every change of the router (map, node states).
    pub(crate) fn watch_changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The node the router says serves `slot`, and its key; `None` while
    /// no map names one.
    pub(crate) fn slot_owner(self: &Arc<Self>, slot: u16) -> Result<Option<(Node, String)>, Error> {
        let id = {
            let router = self.router();
            match router.primary_for(slot) {
                Some(id) => id,
                None => return Ok(None),
            }
        };
        let node = self.node_client(id)?;
        let key = {
            let router = self.router();
            router
                .addr(id)
                .map(|a| node_key(a.host.as_str(), a.port))
                .unwrap_or_default()
        };
        Ok(Some((node, key)))
    }

    /// An error text met outside a routed command (a pub/sub resubscribe),
    /// from the node at `from`: a `MOVED` (as the core reads it) patches
    /// the router's map. Returns whether it was one.
    pub(crate) fn note_moved(&self, text: &str, from: &str) -> bool {
        let Some(ClusterReply::Moved { slot, host, port }) = classify_error(text.as_bytes()) else {
            return false;
        };
        // An empty host is the host of the node that answered.
        let from_host = from.rsplit_once(':').map_or(from, |(h, _)| h);
        let host = if host.is_empty() { from_host } else { host };
        let now = self.now();
        let mut router = self.router();
        router.handle_moved(now, slot, host, port);
        self.publish(&router);
        true
    }

    /// The phase of the node at `key`, if the cluster has a connection there.
    pub(crate) fn node_phase(&self, key: &str) -> Option<PhaseKind> {
        let node = self.node_map().get(key).cloned()?;
        let phase = node.shared().status().phase;
        Some(phase)
    }

    pub(crate) fn events(&self) -> broadcast::Receiver<ClusterEvent> {
        self.events.subscribe()
    }

    /// After anything that may have changed the router: wake the waiting
    /// commands and the refresher.
    fn publish(&self, router: &Router) {
        let changes = router.changes();
        self.changed.send_if_modified(|seen| {
            let moved = *seen != changes;
            *seen = changes;
            moved
        });
        let sleeping_until = self.refresher_at.load(Relaxed);
        let wanted = router
            .poll_timeout()
            .map_or(u64::MAX, CoreInstant::as_micros);
        // While the refresher is between looks (0), a notification leaves a
        // permit that makes its next sleep return at once: nothing is missed.
        if sleeping_until == 0 || wanted < sleeping_until {
            self.refresh_wake.notify_one();
        }
    }

    /// The client of a node, opened when new.
    fn node_client(self: &Arc<Self>, node: NodeId) -> Result<Node, Error> {
        let (host, port) = {
            let router = self.router();
            let addr = router.addr(node).ok_or(Error::NoRoute { slot: None })?;
            (addr.host.as_str().to_owned(), addr.port)
        };
        let key = node_key(&host, port);
        if let Some(client) = self.node_map().get(&key) {
            return Ok(client.clone());
        }
        let mut options = self.template.clone();
        options.config.host.clear();
        options
            .config
            .host
            .push_str(&host)
            .map_err(|_| Error::NoRoute { slot: None })?;
        options.config.port = port;
        // A replica serves reads only after READONLY; harmless on a primary.
        options.config.readonly = self.template.cluster_config.replica_reads;
        let client = Node::start(options)?;
        let client = {
            let mut nodes = self.node_map();
            nodes.entry(key.clone()).or_insert(client).clone()
        };
        tokio::spawn(watch_node(Arc::downgrade(self), client.clone(), node, key));
        Ok(client)
    }

    /// Opens the connections the router wants and closes the others (a
    /// node gone from the map, a primary demoted: its in-flight commands
    /// end now, and the router re-routes the resend-safe ones).
    fn reconcile(self: &Arc<Self>) {
        let (wanted, unwanted): (Vec<NodeId>, Vec<String>) = {
            let router = self.router();
            let wanted = router.node_ids().filter(|&n| router.wanted(n)).collect();
            let unwanted = router
                .node_ids()
                .filter(|&n| !router.wanted(n))
                .filter_map(|n| router.addr(n).map(|a| node_key(a.host.as_str(), a.port)))
                .collect();
            (wanted, unwanted)
        };
        for node in wanted {
            let _ = self.node_client(node);
        }
        let closing: Vec<Node> = {
            let mut nodes = self.node_map();
            unwanted.iter().filter_map(|k| nodes.remove(k)).collect()
        };
        for client in closing {
            tokio::spawn(async move { client.shutdown().await });
        }
    }

    /// The cluster's status for `health()` and `wait_ready`: ready when a
    /// map is known and every primary in it is ready.
    fn update_status(&self, router: &Router) {
        let known = !router.topology().ranges().is_empty();
        let phase = if known && !router.degraded() {
            PhaseKind::Ready
        } else {
            PhaseKind::Connecting
        };
        let reason = router
            .node_ids()
            .filter(|&n| router.role(n) == Some(Role::Primary) && !router.is_ready(n))
            .find_map(|n| router.reason(n));
        self.set_status(phase, reason);
    }

    fn set_status(&self, phase: PhaseKind, reason: Option<DisconnectReason>) {
        let from = {
            let mut status = self.shared.status();
            let from = status.phase;
            if reason.is_some() {
                status.last_reason = reason;
            }
            if from != phase {
                status.phase = phase;
                status.since = SystemTime::now();
            }
            from
        };
        self.shared
            .fallback_hint
            .store(phase != PhaseKind::Ready, Relaxed);
        if from != phase {
            let _ = self
                .shared
                .events
                .send(Event::PhaseChanged { from, to: phase });
        }
    }

    pub(crate) fn health(&self) -> ClusterHealth {
        let (stats, generation, covered, nodes) = {
            let router = self.router();
            let nodes: Vec<(String, &'static str)> = router
                .node_ids()
                .filter_map(|n| {
                    let addr = router.addr(n)?;
                    let role = match router.role(n) {
                        Some(Role::Primary) => "primary",
                        Some(Role::Replica) => "replica",
                        None => "unlisted",
                    };
                    Some((node_key(addr.host.as_str(), addr.port), role))
                })
                .collect();
            (
                router.stats(),
                router.generation(),
                router.topology().covers_all(),
                nodes,
            )
        };
        let clients = self.node_map().clone();
        ClusterHealth {
            generation,
            all_slots_served: covered,
            refreshes: stats.refreshes,
            moved: stats.moved,
            ask: stats.ask,
            rerouted_after_loss: stats.rerouted_after_loss,
            nodes: nodes
                .into_iter()
                .filter_map(|(node, role)| {
                    let health = clients.get(&node)?.health();
                    Some(NodeHealth { node, role, health })
                })
                .collect(),
        }
    }

    pub(crate) async fn shutdown(&self) {
        self.closed.store(true, Relaxed);
        self.refresh_wake.notify_one();
        let clients: Vec<Node> = self.node_map().drain().map(|(_, c)| c).collect();
        for client in clients {
            client.shutdown().await;
        }
        self.set_status(PhaseKind::Shutdown, None);
    }

    pub(crate) async fn retry(&self) {
        let clients: Vec<Node> = self.node_map().values().cloned().collect();
        for client in clients {
            client.retry().await;
        }
    }

    // ----- commands -------------------------------------------------------

    /// One command, routed by the router until it ends.
    pub(crate) async fn request(
        self: &Arc<Self>,
        bytes: Vec<u8>,
        class: Class,
        timeout: Duration,
        miss_reads_as_absent: bool,
    ) -> Result<Reply, Error> {
        if self.closed.load(Relaxed) {
            return Err(Error::Shutdown);
        }
        let args = command_args(&bytes);
        let slots = slots_of(args.iter().copied());
        if let SlotsOf::Cross { .. } = slots
            && let Some(split) = split_of(args.iter().copied())
        {
            let parts = split_parts(&args, split);
            drop(args);
            let result = self.split(parts, split, class, timeout).await;
            count(&self.shared, &result);
            return result;
        }
        let key = args.get(1).map(|k| k.to_vec());
        let name = args
            .first()
            .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase());
        drop(args);
        let result = self
            .route(
                bytes,
                class,
                timeout,
                slots,
                key.as_deref(),
                miss_reads_as_absent,
            )
            .await;
        count(&self.shared, &result);
        result.map_err(|e| match e {
            Error::CrossSlot { first, other, .. } => Error::CrossSlot {
                command: name.unwrap_or_default(),
                first,
                other,
            },
            e => e,
        })
    }

    async fn route(
        self: &Arc<Self>,
        bytes: Vec<u8>,
        class: Class,
        timeout: Duration,
        slots: SlotsOf,
        key: Option<&[u8]>,
        miss_reads_as_absent: bool,
    ) -> Result<Reply, Error> {
        let mut changed = self.changed.subscribe();
        let now = self.now();
        let deadline = now + timeout;
        // Whether the node of a Send is known Ready, read under the same
        // lock as the step: the common case skips waiting for a first phase.
        let ready = |router: &Router, step: &Step| match *step {
            Step::Send { node, .. } => router.is_ready(node),
            _ => false,
        };
        let (mut attempt, mut step, stall_after, mut node_ready) = {
            let mut router = self.router();
            let (attempt, step) = router.begin(now, class, slots, deadline);
            self.publish(&router);
            let node_ready = ready(&router, &step);
            (attempt, step, router.config().stall_after, node_ready)
        };
        let mut last: Option<Result<Reply, Error>> = None;
        for _ in 0..MAX_STEPS {
            if self.closed.load(Relaxed) {
                return Err(Error::Shutdown);
            }
            match step {
                Step::Send { node, asking } => {
                    let client = self.node_client(node)?;
                    if !node_ready {
                        first_phase(&client, self.tokio_at(deadline)).await;
                    }
                    let remaining = self
                        .tokio_at(deadline)
                        .saturating_duration_since(TokioInstant::now());
                    let request = client.request(bytes.clone(), class, Some(remaining), asking);
                    tokio::pin!(request);
                    let result = if class.may_wait() {
                        request.await
                    } else {
                        // A node that sits on a command may hang: the
                        // router wants to know, and keeps waiting.
                        tokio::select! {
                            result = &mut request => result,
                            _ = tokio::time::sleep(stall_after) => {
                                {
                                    let mut router = self.router();
                                    router.handle_node_stalled(self.now(), node);
                                    self.publish(&router);
                                }
                                request.await
                            }
                        }
                    };
                    let now = self.now();
                    let mut router = self.router();
                    changed.borrow_and_update();
                    step = match &result {
                        Ok(_) => router.on_reply(now, &mut attempt, None),
                        Err(Error::Server(text)) => {
                            let reply = classify_error(text.as_bytes());
                            router.on_reply(now, &mut attempt, reply)
                        }
                        Err(Error::ConnectionDown { reason, .. }) => {
                            router.on_unavailable(now, &mut attempt, *reason)
                        }
                        Err(Error::Shutdown) => router.on_unavailable(
                            now,
                            &mut attempt,
                            Some(DisconnectReason::Shutdown),
                        ),
                        Err(Error::Timeout) => {
                            router.on_outcome(now, &mut attempt, Outcome::TimedOut)
                        }
                        Err(Error::Indeterminate { cause }) => {
                            router.on_outcome(now, &mut attempt, Outcome::Indeterminate(*cause))
                        }
                        Err(_) => Step::Answer,
                    };
                    self.publish(&router);
                    node_ready = ready(&router, &step);
                    last = Some(result);
                }
                Step::Wait { until } => {
                    let until = self.tokio_at(until);
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => {}
                        _ = changed.changed() => {}
                    }
                    let now = self.now();
                    let mut router = self.router();
                    changed.borrow_and_update();
                    step = router.resume(now, &mut attempt);
                    self.publish(&router);
                    node_ready = ready(&router, &step);
                }
                Step::Answer => {
                    return last.unwrap_or(Err(Error::NoRoute { slot: attempt.slot }));
                }
                Step::Fallback(reason) => {
                    return answer_from_cache(&self.shared, key, miss_reads_as_absent, || {
                        Error::down_said(reason, None)
                    });
                }
                Step::Fail(failure) => return Err(failure_error(failure)),
            }
        }
        Err(Error::NoRoute { slot: attempt.slot })
    }

    /// A multi-key command over several slots: one part per slot, all at
    /// once, then one answer in the caller's key order.
    async fn split(
        self: &Arc<Self>,
        parts: Vec<Part>,
        split: Split,
        class: Class,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, part) in parts.iter().enumerate() {
            let cluster = self.clone();
            let bytes = part.bytes.clone();
            let slot = part.slot;
            tasks.spawn(async move {
                let result = cluster
                    .route(bytes, class, timeout, SlotsOf::One(slot), None, false)
                    .await;
                (i, result)
            });
        }
        let mut results: Vec<Option<Result<Reply, Error>>> =
            (0..parts.len()).map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, result)) = joined {
                results[i] = Some(result);
            }
        }
        let results: Vec<Result<Reply, Error>> = results
            .into_iter()
            .map(|r| r.unwrap_or(Err(Error::Shutdown)))
            .collect();
        reassemble(&parts, results, split, class)
    }
}

/// One slot's share of a split command.
#[derive(Debug)]
struct Part {
    slot: u16,
    bytes: Vec<u8>,
    /// Where each of its keys was in the caller's command (key order).
    positions: Vec<usize>,
}

fn split_parts(args: &[&[u8]], split: Split) -> Vec<Part> {
    let group = split.group();
    let name = args[0];
    let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (i, chunk) in args[1..].chunks(group).enumerate() {
        by_slot
            .entry(resilis_core::cluster::slot(chunk[0]))
            .or_default()
            .push(i);
    }
    by_slot
        .into_iter()
        .map(|(slot, positions)| {
            let bytes = encode_vec(|b| {
                let mut enc = CommandEncoder::new(b, 1 + positions.len() * group);
                enc.arg(name);
                for &i in &positions {
                    for arg in &args[1 + i * group..1 + (i + 1) * group] {
                        enc.arg(arg);
                    }
                }
                enc.finish()
            });
            Part {
                slot,
                bytes,
                positions,
            }
        })
        .collect()
}

fn reassemble(
    parts: &[Part],
    results: Vec<Result<Reply, Error>>,
    split: Split,
    class: Class,
) -> Result<Reply, Error> {
    let failed = results.iter().position(Result::is_err);
    if let Some(first) = failed {
        let applied_some = results.iter().any(|r| match r {
            Ok(_) => true,
            Err(e) => !e.is_not_applied(),
        });
        let error = results
            .into_iter()
            .nth(first)
            .and_then(Result::err)
            .unwrap_or(Error::Shutdown);
        // A write of which some part ran is not "not applied".
        if !class.read_only() && applied_some && error.is_not_applied() {
            return Err(Error::Indeterminate {
                cause: match error {
                    Error::ConnectionDown {
                        reason: Some(reason),
                        ..
                    } => IndeterminateCause::ConnectionLost(reason),
                    _ => IndeterminateCause::TimedOut,
                },
            });
        }
        return Err(error);
    }
    let replies: Vec<Value> = results
        .into_iter()
        .filter_map(|r| r.ok().map(|r| r.value))
        .collect();
    let value = match split {
        Split::Values => {
            let total: usize = parts.iter().map(|p| p.positions.len()).sum();
            let mut out = vec![Value::Nil; total];
            for (part, reply) in parts.iter().zip(replies) {
                let Value::Array(values) = reply else {
                    return Err(Error::UnexpectedReply(format!(
                        "a part of a split MGET answered {reply:?}"
                    )));
                };
                for (&at, value) in part.positions.iter().zip(values) {
                    out[at] = value;
                }
            }
            Value::Array(out)
        }
        Split::Pairs => Value::Okay,
        Split::Sum => {
            let mut sum = 0i64;
            for reply in replies {
                let Value::Int(n) = reply else {
                    return Err(Error::UnexpectedReply(format!(
                        "a part of a split command answered {reply:?}"
                    )));
                };
                sum = sum.saturating_add(n);
            }
            Value::Int(sum)
        }
    };
    Ok(Reply {
        value,
        from_cache: false,
    })
}

/// The cluster's own counters, as a connection's driver keeps them.
fn count(shared: &Shared, result: &Result<Reply, Error>) {
    let m = &shared.metrics;
    match result {
        Ok(_) => bump(&m.ok),
        Err(Error::Indeterminate { .. }) => bump(&m.indeterminate),
        Err(Error::Timeout) => {
            bump(&m.timed_out);
            bump(&m.failed);
        }
        Err(_) => bump(&m.failed),
    }
}

fn failure_error(failure: Failure) -> Error {
    match failure {
        Failure::CrossSlot { first, other } => Error::CrossSlot {
            command: String::new(),
            first,
            other,
        },
        Failure::NoRoute { slot } => Error::NoRoute { slot },
        Failure::RedirectLoop { redirects } => Error::RedirectLoop { redirects },
        Failure::Outcome(Outcome::NotApplied(reason) | Outcome::Fallback(reason)) => {
            Error::down_said(reason, None)
        }
        Failure::Outcome(Outcome::TimedOut) => Error::Timeout,
        Failure::Outcome(Outcome::Indeterminate(cause)) => Error::Indeterminate { cause },
        Failure::Outcome(Outcome::Cancelled) => Error::Shutdown,
    }
}

/// The arguments of an encoded command (name first).
fn command_args(bytes: &[u8]) -> Vec<&[u8]> {
    match decode(bytes, &Limits::REDIS) {
        Ok(Decoded::Frame {
            frame: Frame::Array(args),
            ..
        }) => args
            .iter()
            .filter_map(|a| match a {
                Frame::BulkString(b) => Some(b),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn node_key(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Waits until a node's connection is ready or has failed once (bounded
/// by `until`): a fresh connection fails fast while it connects, which
/// is not a reason to give up on the node.
async fn first_phase(client: &Node, until: TokioInstant) {
    let mut events = client.events();
    // Bounded by `until`.
    loop {
        {
            let status = client.shared().status();
            if status.phase == PhaseKind::Ready
                || status.last_reason.is_some()
                || status.phase == PhaseKind::Shutdown
            {
                return;
            }
        }
        match tokio::time::timeout_at(until, events.recv()).await {
            Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => return,
            Ok(_) => {}
        }
    }
}

/// Reports one node's readiness to the router, for as long as both live.
async fn watch_node(cluster: Weak<Cluster>, client: Node, node: NodeId, key: String) {
    let mut events = client.events();
    let report = |ready: bool, reason: Option<DisconnectReason>| -> bool {
        let Some(cluster) = cluster.upgrade() else {
            return false;
        };
        let now = cluster.now();
        {
            let mut router = cluster.router();
            // The router's table may have given this id to another node.
            let same = router
                .addr(node)
                .is_some_and(|a| node_key(a.host.as_str(), a.port) == key);
            if !same {
                return false;
            }
            router.handle_node_phase(now, node, ready, reason);
            cluster.update_status(&router);
            cluster.publish(&router);
        }
        let _ = cluster.events.send(if ready {
            ClusterEvent::NodeUp { node: key.clone() }
        } else {
            ClusterEvent::NodeDown {
                node: key.clone(),
                reason: reason.map(|r| r.to_string()),
            }
        });
        true
    };
    if client.shared().status().phase == PhaseKind::Ready && !report(true, None) {
        return;
    }
    // Bounded by the client: its events end when it shuts down.
    loop {
        let keep = match events.recv().await {
            Ok(Event::Ready { .. }) => report(true, None),
            Ok(
                Event::Disconnected { reason }
                | Event::Down { reason, .. }
                | Event::Failed { reason, .. }
                | Event::GaveUp { reason },
            ) => report(false, Some(reason)),
            Ok(Event::PhaseChanged {
                to: PhaseKind::Shutdown,
                ..
            }) => {
                report(false, Some(DisconnectReason::Shutdown));
                false
            }
            Ok(_) => true,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let ready = client.shared().status().phase == PhaseKind::Ready;
                report(ready, None)
            }
            Err(broadcast::error::RecvError::Closed) => false,
        };
        if !keep {
            return;
        }
    }
}

/// Reads the slot map when the router says, for as long as the cluster
/// lives. Holds no strong reference while it sleeps.
async fn refresher(cluster: Weak<Cluster>, wake: Arc<Notify>) {
    // Bounded by the cluster's life: it ends when the client is dropped or
    // shut down.
    loop {
        let next = {
            let Some(cluster) = cluster.upgrade() else {
                return;
            };
            if cluster.closed.load(Relaxed) {
                return;
            }
            cluster.refresher_at.store(0, Relaxed);
            let now = cluster.now();
            let (ask, next) = {
                let mut router = cluster.router();
                (router.poll_refresh(now), router.poll_timeout())
            };
            if let Some(ask) = ask {
                cluster.refresh(ask).await;
                continue;
            }
            // Wake at least every second to notice a dropped client.
            let cap = now + Duration::from_secs(1);
            let at = next.map_or(cap, |at| at.min(cap));
            cluster.refresher_at.store(at.as_micros().max(1), Relaxed);
            cluster.tokio_at(at)
        };
        let until = next;
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = wake.notified() => {}
        }
    }
}

impl Cluster {
    /// Asks the router's chosen nodes for their map, all at once, and gives
    /// the router the views that came back by `until`.
    async fn refresh(self: &Arc<Self>, ask: RefreshAsk) {
        let until = self.tokio_at(ask.until);
        let mut tasks = tokio::task::JoinSet::new();
        for &node in &ask.nodes {
            let Ok(client) = self.node_client(node) else {
                continue;
            };
            let host = self
                .router()
                .addr(node)
                .map(|a| a.host.as_str().to_owned())
                .unwrap_or_default();
            let command = ask.command;
            let tls = self.template.config.tls;
            tasks.spawn(async move {
                first_phase(&client, until).await;
                let timeout = until.saturating_duration_since(TokioInstant::now());
                let bytes = encode_vec(|b| {
                    let mut enc = CommandEncoder::new(b, 2);
                    for arg in command.args() {
                        enc.arg(arg.as_bytes());
                    }
                    enc.finish()
                });
                let reply = client.request_raw(bytes, timeout).await;
                read_view(reply, command, tls, &host)
            });
        }
        let mut views: Vec<Box<Map>> = Vec::new();
        let mut unsupported = false;
        let deadline = tokio::time::sleep_until(until);
        tokio::pin!(deadline);
        // Bounded: one answer per node asked, or the deadline.
        loop {
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    None => break,
                    Some(Ok(View::Map(map))) => views.push(map),
                    Some(Ok(View::ShardsUnsupported)) => unsupported = true,
                    Some(_) => {}
                },
                _ = &mut deadline => break,
            }
        }
        tasks.abort_all();
        let now = self.now();
        let result = {
            let mut router = self.router();
            if unsupported {
                router.handle_shards_unsupported();
            }
            let refs: Vec<&Map> = views.iter().map(|v| &**v).collect();
            let result = router.handle_refresh(now, &refs);
            self.update_status(&router);
            self.publish(&router);
            result
        };
        match result {
            Refreshed::Changed { generation } => {
                self.reconcile();
                let event = {
                    let router = self.router();
                    let map = router.topology();
                    ClusterEvent::TopologyChanged {
                        generation,
                        // Primaries that serve slots (a failed-over dead
                        // primary stays listed, serving nothing).
                        primaries: router
                            .node_ids()
                            .filter(|&n| router.role(n) == Some(Role::Primary))
                            .count(),
                        nodes: map.nodes().len(),
                        all_slots_served: map.covers_all(),
                    }
                };
                tracing::info!(?event, "cluster map");
                let _ = self.events.send(event);
            }
            Refreshed::Disagreement { views, best } => {
                tracing::warn!(views, best, "cluster nodes disagree about the slot map");
                let _ = self.events.send(ClusterEvent::Disagreement { views, best });
            }
            Refreshed::Unchanged | Refreshed::NoAnswer => {}
        }
    }
}

enum View {
    Map(Box<Map>),
    ShardsUnsupported,
    Nothing,
}

fn read_view(reply: Result<Reply, Error>, command: MapCommand, tls: bool, host: &str) -> View {
    let bytes = match reply {
        Ok(Reply {
            value: Value::Bulk(bytes),
            ..
        }) => bytes,
        Err(Error::Server(text))
            if command == MapCommand::Shards
                && text.to_ascii_lowercase().contains("unknown subcommand") =>
        {
            return View::ShardsUnsupported;
        }
        _ => return View::Nothing,
    };
    let Ok(Decoded::Frame { frame, .. }) = decode(&bytes, &Limits::REDIS) else {
        return View::Nothing;
    };
    let mut map = Box::new(Map::new());
    let parsed = match command {
        MapCommand::Shards => map.parse_shards(&frame, tls, host),
        MapCommand::Slots => map.parse_slots(&frame, host),
    };
    match parsed {
        Ok(()) => View::Map(map),
        Err(e) => {
            tracing::warn!(node = host, error = %e, "unusable cluster map");
            View::Nothing
        }
    }
}

/// A per-process seed for the refresh jitter, so that a fleet of clients
/// does not refresh in lockstep.
fn process_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}

//! The cluster router: every decision about where a command goes on a
//! Redis Cluster and what happens to it when a node redirects it, refuses
//! it for now, or stops answering. The adapter keeps one [`Connection`]
//! per node and only moves bytes: it asks [`ClusterRouter::begin`] where a
//! command goes, sends it there, and hands back what came of it
//! ([`on_reply`](ClusterRouter::on_reply), [`on_outcome`](ClusterRouter::on_outcome),
//! [`on_unavailable`](ClusterRouter::on_unavailable)); each of these returns
//! the next [`Step`]. Every attempt ends, bounded by its deadline and its
//! redirect budget.
//!
//! The router also decides when to ask nodes for the slot map
//! ([`poll_refresh`](ClusterRouter::poll_refresh)): one refresh at a time,
//! never sooner than `refresh_interval` (plus seeded jitter, so a fleet does
//! not ask in lockstep) after the last, at once when a node of the map
//! leaves Ready (a killed or hung primary sends no MOVED: its connection's
//! ping timeout is what tells), after a MOVED, and every
//! `periodic_refresh` otherwise. While a primary of the map is unavailable
//! it keeps refreshing at `refresh_interval`, so the promotion of its
//! replica is seen within about one interval.
//!
//! Delivery semantics are the single connection's, carried across nodes:
//! - a redirected command (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, READONLY,
//!   LOADING, MASTERDOWN) was not executed, so it may be sent again;
//! - a command never written (its node unavailable) waits for a node that
//!   serves its slot until its deadline, then fails not applied with the
//!   reason (a GET is answered from the fallback cache when the policy is
//!   `Fallback`);
//! - a command written to a node that was lost before it answered is
//!   indeterminate, unless it is resend-safe: then it is sent to whichever
//!   node serves its slot now, and if that too ends without an answer it is
//!   indeterminate (it may have run).
//!
//! The router does not own the nodes' [`Connection`]s, so that each adapter
//! can run them as it runs one (a Tokio task each, an Embassy task each);
//! the adapter reports their readiness with
//! [`handle_node_phase`](ClusterRouter::handle_node_phase).
//!
//! [`Connection`]: crate::Connection

use heapless::Vec;

use super::redirect::ClusterReply;
use super::slot::SlotsOf;
use super::topology::{NodeAddr, Role, Topology, choose};
use crate::command::Class;
use crate::conn::{IndeterminateCause, Outcome};
use crate::time::micros_of;
use crate::{DisconnectReason, Duration, Instant, OfflinePolicy};

/// Most nodes asked for their view in one refresh.
pub const MAX_VIEWS: usize = 5;
/// MOVED patches remembered to re-apply over a map read that began before
/// them.
const RECENT_PATCHES: usize = 16;

/// A node in the router's table. Stable while the node is known; an adapter
/// keys its connections by the node's address ([`ClusterRouter::addr`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NodeId(pub u16);

/// How the router behaves. The defaults follow the failures measured on a
/// real cluster (node timeout 1 s: a killed primary's replica is promoted
/// ~2.4 s later; `CLUSTER FAILOVER` pauses writes ~50 ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClusterConfig {
    /// Most MOVED/ASK/READONLY redirects one command follows (a map that
    /// keeps pointing in circles must not spin a command until its deadline).
    pub redirect_budget: u8,
    /// First wait after TRYAGAIN, CLUSTERDOWN, LOADING or MASTERDOWN; it
    /// doubles at each repeat, up to 16 times this.
    pub retry_delay: Duration,
    /// Least time between two refreshes of the slot map. Also how often it
    /// is refreshed while a primary of the map is unavailable or hangs, so
    /// that the promotion of its replica is seen within about this long.
    pub refresh_interval: Duration,
    /// After a MOVED (already patched into the map), the refresh that checks
    /// for more moved slots waits at least this long since the last one: a
    /// resharding's stream of MOVEDs costs about one map read per this, not
    /// one per interval.
    pub moved_refresh_after: Duration,
    /// Up to this much is added to each interval, from the seeded generator.
    pub refresh_jitter: Duration,
    /// A node that has not answered a refresh by then is not waited for.
    pub refresh_timeout: Duration,
    /// Refresh at least this often, even when nothing looks wrong.
    pub periodic_refresh: Duration,
    /// How many nodes are asked for their view in one refresh (at most
    /// [`MAX_VIEWS`]); the map most of them agree on is taken.
    pub views: u8,
    /// What a command does while no node serves its slot.
    pub offline: OfflinePolicy,
    /// Send read-only commands to a Ready replica of their slot's shard
    /// (whose connection sends `READONLY`), spreading reads over replicas.
    /// Off by default: a replica lags its primary, so a read there may not
    /// see a write this client just made (no read-your-writes).
    pub replica_reads: bool,
    /// A command unanswered this long on a node (not a blocking one) makes
    /// the router suspect the node hangs: a primary stuck in a long script
    /// or `DEBUG SLEEP`, or behind a silent partition, sends no MOVED and
    /// may be replaced by its replica long before its connection's ping
    /// timeout. The map is then refreshed every interval until the node
    /// answers again or is replaced, and new commands for it wait instead of
    /// being written: Redis runs one command at a time, so they would have
    /// waited behind the slow one anyway, and if the node is replaced they
    /// go to its successor instead of ending indeterminate.
    pub stall_after: Duration,
    /// Seed of the jitter generator (set it from the OS in an adapter; fix
    /// it in tests).
    pub seed: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redirect_budget: 5,
            retry_delay: Duration::from_millis(10),
            refresh_interval: Duration::from_millis(50),
            moved_refresh_after: Duration::from_secs(1),
            refresh_jitter: Duration::from_millis(25),
            refresh_timeout: Duration::from_secs(1),
            periodic_refresh: Duration::from_secs(60),
            views: 3,
            offline: OfflinePolicy::Fallback,
            replica_reads: false,
            stall_after: Duration::from_millis(500),
            seed: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

/// One command's way through the cluster. The adapter holds it while the
/// command is outstanding and passes it back with each result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Attempt {
    pub class: Class,
    /// `None`: keyless, any primary may run it.
    pub slot: Option<u16>,
    pub deadline: Instant,
    /// Where it was last sent.
    pub node: Option<NodeId>,
    redirects: u8,
    /// TRYAGAIN-like waits so far (for the doubling delay).
    waits: u8,
    /// Written once already to a node that was lost before answering: it
    /// may have run, so it can no longer end as "not applied".
    maybe_applied: bool,
    /// Why its slot's node was last unavailable.
    reason: Option<DisconnectReason>,
    /// A write acknowledged by a node suspected of hanging, at this instant:
    /// the answer waits for a map read after it to confirm the node still
    /// serves the slot.
    confirm: Option<(NodeId, Instant)>,
}

impl Attempt {
    pub fn redirects(&self) -> u8 {
        self.redirects
    }
}

/// What the adapter does next with one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Step {
    /// Send it to this node; `asking`: write `ASKING` just before it, on the
    /// same connection (the one-command permission an ASK redirect needs).
    Send { node: NodeId, asking: bool },
    /// Wait until `until`, or until [`ClusterRouter::changes`] moves (a new
    /// map, a node up or down), then call [`ClusterRouter::resume`].
    Wait { until: Instant },
    /// The node's reply is the answer (an ordinary error reply included).
    Answer,
    /// A fallback-cache read (GET) with no node able to answer: answer it
    /// from the cache, or fail with the reason on a miss. Not applied.
    Fallback(DisconnectReason),
    /// It ends here without an answer.
    Fail(Failure),
}

/// Why a command ends without an answer from Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Failure {
    /// Its keys are in two slots and it cannot be split: Redis would answer
    /// CROSSSLOT. Never sent. Use a `{hashtag}` so the keys share a slot.
    CrossSlot { first: u16, other: u16 },
    /// No node is known to serve its slot (no map yet, or a slot no shard
    /// serves) and none appeared before the deadline. Never applied.
    NoRoute { slot: Option<u16> },
    /// More redirects than `redirect_budget`: the nodes disagree about the
    /// slot. Never applied (a redirect is a refusal).
    RedirectLoop { redirects: u8 },
    /// As on one connection: `NotApplied(reason)`, `TimedOut`,
    /// `Indeterminate(cause)` or `Cancelled`.
    Outcome(Outcome),
}

/// The nodes to ask for their view, and with which command.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RefreshAsk {
    pub nodes: Vec<NodeId, MAX_VIEWS>,
    /// `CLUSTER SHARDS`, or `CLUSTER SLOTS` once a node said it does not
    /// know SHARDS (Redis before 7.0).
    pub command: MapCommand,
    /// Answers after this are not waited for: call
    /// [`ClusterRouter::handle_refresh`] with what came.
    pub until: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MapCommand {
    Shards,
    Slots,
}

impl MapCommand {
    pub const fn args(self) -> [&'static str; 2] {
        match self {
            MapCommand::Shards => ["CLUSTER", "SHARDS"],
            MapCommand::Slots => ["CLUSTER", "SLOTS"],
        }
    }
}

/// What a refresh did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Refreshed {
    /// A different map was taken: `generation` counts them.
    Changed { generation: u64 },
    /// The nodes agree with the map in use.
    Unchanged,
    /// No view won a majority (`views` answered, the largest agreeing group
    /// had `best`): the map in use is kept and the nodes are asked again.
    Disagreement { views: usize, best: usize },
    /// No node answered: asked again after the interval.
    NoAnswer,
}

/// Counters for health reports and the storm tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RouterStats {
    pub refreshes: u64,
    pub maps_taken: u64,
    pub moved: u64,
    pub ask: u64,
    pub retries: u64,
    pub rerouted_after_loss: u64,
}

#[derive(Clone, Debug)]
struct NodeState {
    addr: NodeAddr,
    /// Its connection is Ready (as the adapter last said).
    ready: bool,
    /// Why it last left Ready or refused a command.
    reason: Option<DisconnectReason>,
    /// Its role in the map in use, `None` when the map does not list it.
    role: Option<Role>,
    /// Given at construction: asked for the map until one is known.
    seed: bool,
    /// A command has waited `stall_after` on it, and it has not answered
    /// anything since.
    stalled: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RefreshState {
    Idle,
    InFlight { until: Instant },
}

/// Routes commands over a cluster of up to `NODES` nodes whose slot map
/// has up to `RANGES` ranges. Sizes: a map is ~`264 × NODES + 6 × RANGES`
/// bytes; 16384 ranges can describe any map, however fragmented.
#[derive(Clone, Debug)]
pub struct ClusterRouter<const NODES: usize, const RANGES: usize> {
    config: ClusterConfig,
    map: Topology<NODES, RANGES>,
    /// The router's node for each node of `map`, by index.
    map_nodes: Vec<NodeId, NODES>,
    nodes: Vec<NodeState, NODES>,
    generation: u64,
    changes: u64,
    refresh: RefreshState,
    /// A refresh is wanted, at or after this instant.
    refresh_due: Option<Instant>,
    last_refresh: Option<Instant>,
    /// When a refresh last settled on a map (taken, or agreed unchanged).
    last_map_read: Option<Instant>,
    /// MOVED patches (slot, node, when), newest last: a map read that
    /// started before a patch is older news for that slot, and the patch is
    /// applied again on top of it (a slot that moves often must not flip
    /// back to its old owner at every refresh).
    patches: Vec<(u16, NodeId, Instant), RECENT_PATCHES>,
    next_periodic: Option<Instant>,
    command: MapCommand,
    rng: u64,
    rotate: u16,
    stats: RouterStats,
}

impl<const NODES: usize, const RANGES: usize> ClusterRouter<NODES, RANGES> {
    /// A router that knows only its seed nodes; it asks them for the map at
    /// the first [`poll_refresh`](Self::poll_refresh). Seeds beyond the
    /// table's capacity (or with a host too long) are left out.
    pub fn new<'a>(config: ClusterConfig, seeds: impl IntoIterator<Item = (&'a str, u16)>) -> Self {
        let mut router = ClusterRouter {
            config,
            map: Topology::new(),
            map_nodes: Vec::new(),
            nodes: Vec::new(),
            generation: 0,
            changes: 0,
            refresh: RefreshState::Idle,
            refresh_due: Some(Instant::ZERO),
            last_refresh: None,
            last_map_read: None,
            patches: Vec::new(),
            next_periodic: None,
            command: MapCommand::Shards,
            rng: config.seed | 1,
            rotate: 0,
            stats: RouterStats::default(),
        };
        for (host, port) in seeds {
            if let Some(id) = router.intern(host, port) {
                router.nodes[usize::from(id.0)].seed = true;
            }
        }
        router
    }

    // ----- getters --------------------------------------------------------

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The map in use.
    pub fn topology(&self) -> &Topology<NODES, RANGES> {
        &self.map
    }

    /// Counts the maps taken (refreshes that changed it, and MOVED patches).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Moves whenever something a waiting command waits for may have
    /// changed (a map, a node's readiness): wake the [`Step::Wait`]s.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    pub fn stats(&self) -> RouterStats {
        self.stats
    }

    pub fn addr(&self, node: NodeId) -> Option<&NodeAddr> {
        self.nodes.get(usize::from(node.0)).map(|n| &n.addr)
    }

    pub fn node_id(&self, host: &str, port: u16) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| n.addr.is(host, port))
            .map(to_id)
    }

    pub fn is_ready(&self, node: NodeId) -> bool {
        self.nodes.get(usize::from(node.0)).is_some_and(|n| n.ready)
    }

    /// Why it last left Ready or refused a command.
    pub fn reason(&self, node: NodeId) -> Option<DisconnectReason> {
        self.nodes.get(usize::from(node.0)).and_then(|n| n.reason)
    }

    /// Its role in the map in use (`None`: the map does not list it).
    pub fn role(&self, node: NodeId) -> Option<Role> {
        self.nodes.get(usize::from(node.0)).and_then(|n| n.role)
    }

    /// The nodes an adapter should hold a connection to: the map's primaries
    /// (commands go there, and they answer refreshes), and the seeds until a
    /// map is known. The others (replicas, nodes gone from the map) may be
    /// closed: a node that was a primary and is no longer one must not keep
    /// commands (a hung primary that wakes after its replica was promoted
    /// would otherwise acknowledge writes the cluster then drops).
    pub fn wanted(&self, node: NodeId) -> bool {
        self.nodes.get(usize::from(node.0)).is_some_and(|n| {
            n.role == Some(Role::Primary)
                || (self.config.replica_reads && n.role == Some(Role::Replica))
                || (n.seed && self.map.ranges().is_empty())
        })
    }

    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len()).map(to_id)
    }

    /// The node serving `slot` in the map in use.
    pub fn primary_for(&self, slot: u16) -> Option<NodeId> {
        let at = self.map.primary_of(slot)?;
        self.map_nodes.get(usize::from(at)).copied()
    }

    /// A slot's primary is in the map but its connection is not Ready, or
    /// it seems to hang.
    pub fn degraded(&self) -> bool {
        self.map.ranges().iter().any(|r| {
            self.map_nodes
                .get(usize::from(r.primary))
                .and_then(|id| self.nodes.get(usize::from(id.0)))
                .is_none_or(|n| !n.ready || n.stalled)
        })
    }

    /// When to call [`poll_refresh`](Self::poll_refresh) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.refresh {
            RefreshState::InFlight { until } => Some(until),
            RefreshState::Idle => match (self.refresh_due, self.next_periodic) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }

    // ----- commands -------------------------------------------------------

    /// Where a new command goes. `slots` from [`super::slots_of`]; split
    /// a splittable multi-key command per slot before calling this.
    pub fn begin(
        &mut self,
        now: Instant,
        class: Class,
        slots: SlotsOf,
        deadline: Instant,
    ) -> (Attempt, Step) {
        let mut attempt = Attempt {
            class,
            slot: None,
            deadline,
            node: None,
            redirects: 0,
            waits: 0,
            maybe_applied: false,
            reason: None,
            confirm: None,
        };
        let step = match slots {
            SlotsOf::Cross { first, other } => Step::Fail(Failure::CrossSlot { first, other }),
            SlotsOf::One(slot) => {
                attempt.slot = Some(slot);
                self.route(now, &mut attempt)
            }
            SlotsOf::Keyless => self.route(now, &mut attempt),
        };
        (attempt, step)
    }

    /// After a [`Step::Wait`]: route again.
    pub fn resume(&mut self, now: Instant, attempt: &mut Attempt) -> Step {
        self.route(now, attempt)
    }

    /// The node answered. `cluster`: the reply read as a cluster error
    /// ([`super::classify_error`] of an error reply), `None` for any other
    /// reply, which is then the answer.
    pub fn on_reply(
        &mut self,
        now: Instant,
        attempt: &mut Attempt,
        cluster: Option<ClusterReply<'_>>,
    ) -> Step {
        let from = attempt.node;
        let suspect = from
            .and_then(|n| self.nodes.get(usize::from(n.0)))
            .is_some_and(|n| n.stalled);
        self.answered(from);
        let Some(reply) = cluster else {
            // A hung primary that wakes up acknowledges what it read before
            // it learns that its replica replaced it; the cluster then drops
            // those writes. Such an OK is only an OK once a map read after
            // it shows the node still serves the slot.
            if suspect && !attempt.class.read_only() && attempt.slot.is_some() {
                attempt.confirm = from.map(|n| (n, now));
                self.want_refresh(now);
                return Step::Wait {
                    until: attempt.deadline,
                };
            }
            return Step::Answer;
        };
        match reply {
            ClusterReply::Moved { slot, host, port } => {
                self.stats.moved += 1;
                if let Some(step) = self.spend_redirect(attempt) {
                    return step;
                }
                let host = self.host_or_sender(host, from);
                let Some(node) = self.moved(now, slot, host.as_str(), port) else {
                    return Step::Answer;
                };
                self.send(attempt, node, false)
            }
            ClusterReply::Ask {
                slot: _,
                host,
                port,
            } => {
                self.stats.ask += 1;
                if let Some(step) = self.spend_redirect(attempt) {
                    return step;
                }
                let host = self.host_or_sender(host, from);
                let Some(node) = self.intern(host.as_str(), port) else {
                    return Step::Answer;
                };
                self.send(attempt, node, true)
            }
            ClusterReply::ReadOnly => {
                // A write reached a replica: the map is stale (a failover
                // demoted the node). Not executed; re-route after a refresh.
                if let Some(step) = self.spend_redirect(attempt) {
                    return step;
                }
                if let Some(node) = from {
                    self.set_role(node, Some(Role::Replica));
                }
                self.want_refresh(now);
                self.wait_or_answer(now, attempt)
            }
            ClusterReply::ClusterDown | ClusterReply::MasterDown => {
                self.want_refresh(now);
                self.wait_or_answer(now, attempt)
            }
            ClusterReply::TryAgain | ClusterReply::Loading => self.wait_or_answer(now, attempt),
            // The server's own refusal is the answer: not executed.
            ClusterReply::CrossSlot => Step::Answer,
        }
    }

    /// The node's connection resolved the command without a reply (the
    /// core's [`Outcome`] on that connection).
    pub fn on_outcome(&mut self, now: Instant, attempt: &mut Attempt, outcome: Outcome) -> Step {
        match outcome {
            Outcome::NotApplied(reason) | Outcome::Fallback(reason) => {
                self.on_unavailable(now, attempt, Some(reason))
            }
            Outcome::Indeterminate(IndeterminateCause::ConnectionLost(reason))
                if attempt.class.resend_safe() =>
            {
                // Writing it again leaves the same data and the same answer,
                // so it goes to whoever serves the slot now; but it may have
                // run, so it can never end "not applied".
                self.stats.rerouted_after_loss += 1;
                attempt.maybe_applied |= !attempt.class.read_only();
                self.on_unavailable(now, attempt, Some(reason))
            }
            Outcome::TimedOut if attempt.maybe_applied => self.expire(attempt),
            other => Step::Fail(Failure::Outcome(other)),
        }
    }

    /// The node's connection refused the command unsent (not Ready; `reason`
    /// when a failure is known): never applied, so it waits for a node that
    /// can take it.
    pub fn on_unavailable(
        &mut self,
        now: Instant,
        attempt: &mut Attempt,
        reason: Option<DisconnectReason>,
    ) -> Step {
        if let Some(node) = attempt.node {
            let n = &mut self.nodes[usize::from(node.0)];
            if n.ready || reason.is_some() {
                n.ready = false;
                n.reason = reason.or(n.reason);
                self.changes += 1;
            }
        }
        attempt.reason = reason.or(attempt.reason);
        self.want_refresh(now);
        self.route(now, attempt)
    }

    // ----- nodes and refreshes --------------------------------------------

    /// A command has been outstanding on `node` for `stall_after` (the
    /// adapter's timer; not for blocking commands, which may wait): the
    /// node may hang, so ask the others who serves its slots.
    /// A MOVED met outside a routed command (the resubscribe of a shard
    /// channel whose slot migrated): patched into the map as a command's
    /// MOVED is, with the same refresh after it. Returns the slot's node.
    pub fn handle_moved(
        &mut self,
        now: Instant,
        slot: u16,
        host: &str,
        port: u16,
    ) -> Option<NodeId> {
        self.stats.moved += 1;
        self.moved(now, slot, host, port)
    }

    pub fn handle_node_stalled(&mut self, now: Instant, node: NodeId) {
        let Some(n) = self.nodes.get_mut(usize::from(node.0)) else {
            return;
        };
        if !n.stalled {
            n.stalled = true;
            self.want_refresh(now);
        }
    }

    /// A node's connection entered or left Ready. Leaving it asks for a
    /// refresh at once (within the interval): a hung or killed primary says
    /// nothing, and only the other nodes can tell who serves its slots now.
    pub fn handle_node_phase(
        &mut self,
        now: Instant,
        node: NodeId,
        ready: bool,
        reason: Option<DisconnectReason>,
    ) {
        let Some(n) = self.nodes.get_mut(usize::from(node.0)) else {
            return;
        };
        if n.ready == ready && (ready || reason.is_none() || n.reason == reason) {
            return;
        }
        n.ready = ready;
        if reason.is_some() {
            n.reason = reason;
        }
        self.changes += 1;
        if !ready {
            self.want_refresh(now);
        }
    }

    /// Whether a refresh starts now; then ask these nodes for their view and
    /// call [`handle_refresh`](Self::handle_refresh) with the answers that
    /// came by `until`. One at a time: `None` while one is in flight (until
    /// its `until`, after which it counts as unanswered).
    pub fn poll_refresh(&mut self, now: Instant) -> Option<RefreshAsk> {
        if let RefreshState::InFlight { until } = self.refresh {
            if now < until {
                return None;
            }
            // Nobody reported back: as good as no answer.
            self.refresh = RefreshState::Idle;
            self.want_refresh(now);
        }
        let due = self.refresh_due.is_some_and(|at| at <= now)
            || self.next_periodic.is_some_and(|at| at <= now);
        if !due {
            return None;
        }
        let nodes = self.pick_askees();
        self.stats.refreshes += 1;
        self.refresh_due = None;
        self.last_refresh = Some(now);
        self.next_periodic = Some(now + self.config.periodic_refresh);
        let until = now + self.config.refresh_timeout;
        self.refresh = RefreshState::InFlight { until };
        Some(RefreshAsk {
            nodes,
            command: self.command,
            until,
        })
    }

    /// A node answered `CLUSTER SHARDS` with an unknown-subcommand error:
    /// the next refreshes use `CLUSTER SLOTS`.
    pub fn handle_shards_unsupported(&mut self) {
        self.command = MapCommand::Slots;
    }

    /// The views that came back for the last [`RefreshAsk`] (the ones that
    /// parsed; errors and silence are simply absent). Takes the view most
    /// agree on ([`choose`]).
    pub fn handle_refresh(
        &mut self,
        now: Instant,
        views: &[&Topology<NODES, RANGES>],
    ) -> Refreshed {
        self.refresh = RefreshState::Idle;
        let result = if views.is_empty() {
            Refreshed::NoAnswer
        } else {
            match choose(views) {
                Err(d) => Refreshed::Disagreement {
                    views: d.views,
                    best: d.best,
                },
                Ok(i) if self.map.same_view(views[i]) => Refreshed::Unchanged,
                Ok(i) => {
                    self.map.clone_from(views[i]);
                    self.adopt();
                    self.reapply_patches();
                    self.stats.maps_taken += 1;
                    Refreshed::Changed {
                        generation: self.generation,
                    }
                }
            }
        };
        if matches!(result, Refreshed::Changed { .. } | Refreshed::Unchanged) {
            self.last_map_read = Some(now);
            // Writes waiting for a confirmation look at it.
            self.changes += 1;
        }
        if !matches!(result, Refreshed::Changed { .. } | Refreshed::Unchanged) || self.degraded() {
            self.want_refresh(now);
        }
        result
    }

    // ----- internals ------------------------------------------------------

    /// The one place a command is routed: to the node serving its slot if
    /// that node is Ready; otherwise it waits for one (or the policy says
    /// fail, or answer from the cache), never past its deadline.
    fn route(&mut self, now: Instant, attempt: &mut Attempt) -> Step {
        if let Some((node, since)) = attempt.confirm {
            return self.confirm(now, attempt, node, since);
        }
        if now >= attempt.deadline {
            return self.expire(attempt);
        }
        // Until a map is known, the seeds answer (with a MOVED, if need be).
        let target = match attempt.slot {
            Some(slot) if !self.map.ranges().is_empty() => self.primary_for(slot),
            _ => self.any_primary(),
        };
        if let (true, Some(primary)) = (self.reads_replicas(attempt), target)
            && let Some(replica) = self.ready_replica_of(primary)
        {
            return self.send(attempt, replica, false);
        }
        match target {
            Some(node) if self.is_stalled(node) => {
                // Held, not written: see `ClusterConfig::stall_after`.
                return Step::Wait {
                    until: attempt.deadline,
                };
            }
            Some(node) if self.is_ready(node) => return self.send(attempt, node, false),
            // A node never tried yet (a new primary, a seed): the adapter
            // opens its connection and sends once it is up.
            Some(node) if self.nodes[usize::from(node.0)].reason.is_none() => {
                return self.send(attempt, node, false);
            }
            Some(node) => {
                attempt.reason = self.nodes[usize::from(node.0)].reason.or(attempt.reason);
            }
            None => self.want_refresh(now),
        }
        // Nothing can take it now.
        match (self.config.offline, attempt.reason) {
            (OfflinePolicy::FailFast, reason) => self.fail_unavailable(attempt, reason),
            // Redis is unavailable as a whole (no node is Ready): the seed's
            // promise, a fast answer from the cache. One shard failing over
            // is not an outage: the GET waits for the promotion instead.
            (OfflinePolicy::Fallback, Some(reason))
                if attempt.class.fallback_read() && !attempt.maybe_applied && !self.any_ready() =>
            {
                Step::Fallback(reason)
            }
            _ => Step::Wait {
                until: attempt.deadline,
            },
        }
    }

    /// A node answered: it does not hang, and what waited for it goes on.
    fn answered(&mut self, node: Option<NodeId>) {
        if let Some(n) = node.and_then(|n| self.nodes.get_mut(usize::from(n.0)))
            && n.stalled
        {
            n.stalled = false;
            self.changes += 1;
        }
    }

    fn is_stalled(&self, node: NodeId) -> bool {
        self.nodes
            .get(usize::from(node.0))
            .is_some_and(|n| n.stalled)
    }

    fn reads_replicas(&self, attempt: &Attempt) -> bool {
        self.config.replica_reads
            && attempt.slot.is_some()
            && attempt.class.read_only()
            && !attempt.class.may_wait()
            && attempt.redirects == 0
    }

    /// A Ready replica of the primary `node`, in turn.
    fn ready_replica_of(&mut self, primary: NodeId) -> Option<NodeId> {
        let at = self.map_nodes.iter().position(|&m| m == primary)?;
        let count = self.map.replicas_of(at as u16).count();
        if count == 0 {
            return None;
        }
        self.rotate = self.rotate.wrapping_add(1);
        let start = usize::from(self.rotate) % count;
        (0..count)
            .filter_map(|i| self.map.replicas_of(at as u16).nth((start + i) % count))
            .filter_map(|r| self.map_nodes.get(usize::from(r)).copied())
            .find(|&id| self.is_ready(id))
    }

    /// A write a suspected node acknowledged: an answer once a map read
    /// after the reply shows the node still serves the slot; indeterminate
    /// if it does not (or nothing confirms it before the deadline).
    fn confirm(
        &mut self,
        now: Instant,
        attempt: &mut Attempt,
        node: NodeId,
        since: Instant,
    ) -> Step {
        if self.last_map_read.is_some_and(|read| read > since) {
            attempt.confirm = None;
            let still = attempt.slot.and_then(|s| self.primary_for(s)) == Some(node);
            if still {
                return Step::Answer;
            }
            if attempt.class.resend_safe() {
                // Writing it again leaves the same data: to the new primary.
                self.stats.rerouted_after_loss += 1;
                attempt.maybe_applied = true;
                return self.route(now, attempt);
            }
            return Step::Fail(Failure::Outcome(Outcome::Indeterminate(
                IndeterminateCause::NodeReplaced,
            )));
        }
        if now >= attempt.deadline {
            attempt.confirm = None;
            return Step::Fail(Failure::Outcome(Outcome::Indeterminate(
                IndeterminateCause::TimedOut,
            )));
        }
        self.want_refresh(now);
        Step::Wait {
            until: attempt.deadline,
        }
    }

    fn send(&mut self, attempt: &mut Attempt, node: NodeId, asking: bool) -> Step {
        attempt.node = Some(node);
        Step::Send { node, asking }
    }

    /// The deadline passed without an answer.
    fn expire(&self, attempt: &Attempt) -> Step {
        if attempt.maybe_applied {
            return Step::Fail(Failure::Outcome(Outcome::Indeterminate(
                attempt.reason.map_or(
                    IndeterminateCause::TimedOut,
                    IndeterminateCause::ConnectionLost,
                ),
            )));
        }
        match attempt.reason {
            Some(reason)
                if attempt.class.fallback_read()
                    && self.config.offline == OfflinePolicy::Fallback =>
            {
                Step::Fallback(reason)
            }
            Some(reason) => Step::Fail(Failure::Outcome(Outcome::NotApplied(reason))),
            None if self.map.ranges().is_empty()
                || attempt
                    .slot
                    .is_some_and(|s| self.map.primary_of(s).is_none()) =>
            {
                Step::Fail(Failure::NoRoute { slot: attempt.slot })
            }
            None => Step::Fail(Failure::Outcome(Outcome::TimedOut)),
        }
    }

    fn fail_unavailable(&self, attempt: &Attempt, reason: Option<DisconnectReason>) -> Step {
        match reason {
            _ if attempt.maybe_applied => self.expire(attempt),
            Some(reason) => Step::Fail(Failure::Outcome(Outcome::NotApplied(reason))),
            None => Step::Fail(Failure::NoRoute { slot: attempt.slot }),
        }
    }

    fn spend_redirect(&mut self, attempt: &mut Attempt) -> Option<Step> {
        attempt.redirects = attempt.redirects.saturating_add(1);
        (attempt.redirects > self.config.redirect_budget).then_some(Step::Fail(
            Failure::RedirectLoop {
                redirects: attempt.redirects,
            },
        ))
    }

    /// TRYAGAIN and friends: wait (doubling) and route again, if the
    /// deadline leaves room; else the server's refusal is the answer.
    fn wait_or_answer(&mut self, now: Instant, attempt: &mut Attempt) -> Step {
        let factor = 1u64 << attempt.waits.min(4);
        let delay =
            Duration::from_micros(micros_of(self.config.retry_delay).saturating_mul(factor));
        let until = now + delay;
        if until >= attempt.deadline {
            return Step::Answer;
        }
        attempt.waits = attempt.waits.saturating_add(1);
        self.stats.retries += 1;
        Step::Wait { until }
    }

    /// `MOVED`: the map is patched in place (the slot is that node's from
    /// now on) and a refresh is asked for, since one moved slot often means
    /// more. The node, even when the map's table is full.
    fn moved(&mut self, now: Instant, slot: u16, host: &str, port: u16) -> Option<NodeId> {
        let node = self.intern(host, port)?;
        if let Ok(at) = self.map.assign(slot, host, port) {
            let at = usize::from(at);
            if at == self.map_nodes.len() {
                let _ = self.map_nodes.push(node);
            }
            self.set_role(node, Some(Role::Primary));
            self.generation += 1;
            self.changes += 1;
            if self.patches.is_full() {
                self.patches.remove(0);
            }
            let _ = self.patches.push((slot, node, now));
        }
        self.want_refresh_after(now, self.config.moved_refresh_after);
        Some(node)
    }

    /// An address as the router's node, added when new. `None` when the
    /// table is full of nodes the map still names (or the host is too long).
    fn intern(&mut self, host: &str, port: u16) -> Option<NodeId> {
        if let Some(id) = self.node_id(host, port) {
            return Some(id);
        }
        let addr = NodeAddr::new(host, port)?;
        let state = NodeState {
            addr,
            ready: false,
            reason: None,
            role: None,
            seed: false,
            stalled: false,
        };
        if self.nodes.len() < NODES {
            let _ = self.nodes.push(state);
            return Some(to_id(self.nodes.len() - 1));
        }
        // Reuse the place of a node the map no longer names (asked of the
        // map itself: while a new map is being taken, roles are not set yet)
        // and whose connection is not up.
        let free = (0..self.nodes.len()).find(|&i| {
            let n = &self.nodes[i];
            !n.ready && self.map.find(n.addr.host.as_str(), n.addr.port).is_none()
        })?;
        self.nodes[free] = state;
        Some(to_id(free))
    }

    /// MOVEDs that came after the refresh just taken began are newer than
    /// it: applied again. Older ones are forgotten.
    fn reapply_patches(&mut self) {
        let Some(started) = self.last_refresh else {
            return;
        };
        self.patches.retain(|&(_, _, at)| at >= started);
        for i in 0..self.patches.len() {
            let (slot, node, _) = self.patches[i];
            let Some((host, port)) = self.addr(node).map(|a| (a.host.clone(), a.port)) else {
                continue;
            };
            if let Ok(at) = self.map.assign(slot, host.as_str(), port) {
                if usize::from(at) == self.map_nodes.len() {
                    let _ = self.map_nodes.push(node);
                }
                self.set_role(node, Some(Role::Primary));
            }
        }
    }

    /// A map was taken: learn its nodes and roles.
    fn adopt(&mut self) {
        self.generation += 1;
        self.changes += 1;
        self.map_nodes.clear();
        for n in self.nodes.iter_mut() {
            n.role = None;
        }
        for i in 0..self.map.nodes().len() {
            let (host, port, role) = {
                let node = &self.map.nodes()[i];
                (node.addr.host.clone(), node.addr.port, node.role)
            };
            // A primary that serves no slot is not one to send to or keep a
            // connection to: Redis 7.0 lists a failed-over dead primary so.
            let serves = self
                .map
                .ranges()
                .iter()
                .any(|r| usize::from(r.primary) == i);
            let role = match role {
                Role::Primary if !serves => None,
                role => Some(role),
            };
            let id = self.intern(host.as_str(), port).unwrap_or(NodeId(u16::MAX));
            let _ = self.map_nodes.push(id);
            self.set_role(id, role);
        }
    }

    fn set_role(&mut self, node: NodeId, role: Option<Role>) {
        if let Some(n) = self.nodes.get_mut(usize::from(node.0)) {
            n.role = role;
        }
    }

    fn any_ready(&self) -> bool {
        self.nodes.iter().any(|n| n.ready)
    }

    /// A Ready primary for a keyless command, in turn.
    fn any_primary(&mut self) -> Option<NodeId> {
        let len = self.nodes.len();
        if len == 0 {
            return None;
        }
        self.rotate = self.rotate.wrapping_add(1);
        let start = usize::from(self.rotate) % len;
        let candidates = (0..len).map(|i| (start + i) % len);
        let usable = |n: &NodeState| {
            n.role == Some(Role::Primary) || (n.seed && self.map.ranges().is_empty())
        };
        candidates
            .clone()
            .find(|&i| usable(&self.nodes[i]) && self.nodes[i].ready)
            .or_else(|| candidates.clone().find(|&i| usable(&self.nodes[i])))
            .map(to_id)
    }

    /// Whom to ask for the map: Ready nodes first (primaries, then others),
    /// from a rotating start so that one node is not asked every time; then
    /// nodes not known to be down.
    fn pick_askees(&mut self) -> Vec<NodeId, MAX_VIEWS> {
        let want = usize::from(self.config.views).clamp(1, MAX_VIEWS);
        let mut out: Vec<NodeId, MAX_VIEWS> = Vec::new();
        let len = self.nodes.len();
        if len == 0 {
            return out;
        }
        let start = (self.next_random() % len as u64) as usize;
        let order = |i: usize| (start + i) % len;
        // A node suspected of hanging is asked last: its answer would come
        // late, and from a view that may be stale.
        let tiers: [&dyn Fn(&NodeState) -> bool; 4] = [
            &|n| n.ready && !n.stalled && n.role == Some(Role::Primary),
            &|n| n.ready && !n.stalled,
            &|n| n.reason.is_none() && !n.stalled,
            &|_| true,
        ];
        for tier in tiers {
            for i in (0..len).map(order) {
                if out.len() == want {
                    return out;
                }
                let id = to_id(i);
                if tier(&self.nodes[i]) && !out.contains(&id) {
                    let _ = out.push(id);
                }
            }
        }
        out
    }

    /// Asks for a refresh as soon as the interval since the last allows,
    /// plus jitter.
    fn want_refresh(&mut self, now: Instant) {
        self.want_refresh_after(now, self.config.refresh_interval);
    }

    /// Asks for a refresh `interval` (plus jitter) after the last one, or
    /// now.
    fn want_refresh_after(&mut self, now: Instant, interval: Duration) {
        let earliest = match self.last_refresh {
            Some(last) => {
                let jitter = micros_of(self.config.refresh_jitter);
                let extra = if jitter == 0 {
                    0
                } else {
                    self.next_random() % (jitter + 1)
                };
                (last + interval + Duration::from_micros(extra)).max(now)
            }
            None => now,
        };
        self.refresh_due = Some(self.refresh_due.map_or(earliest, |due| due.min(earliest)));
    }

    fn host_or_sender(
        &self,
        host: &str,
        from: Option<NodeId>,
    ) -> heapless::String<{ crate::config::HOST_CAP }> {
        let host = if host.is_empty() {
            from.and_then(|n| self.addr(n))
                .map_or("", |a| a.host.as_str())
        } else {
            host
        };
        let mut out = heapless::String::new();
        let _ = out.push_str(host);
        out
    }

    /// xorshift64*: jitter needs spread, not secrecy.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn to_id(i: usize) -> NodeId {
    NodeId(i as u16)
}

#[cfg(test)]
mod tests;

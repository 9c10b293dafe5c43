//! A real Redis Cluster for the tests: six `redis-server` processes (three
//! primaries, one replica each) on free loopback ports, and the faults a
//! cluster client has to survive — a killed or hung primary, a manual
//! failover, a slot in migration — each bounded in time and each returning
//! once its effect can be observed.
//!
//! Every node is a [`RedisServer`]: a directory of its own (its
//! `nodes.conf` survives [`Cluster::restart_node`], so the node comes back
//! with the same identity), killed with the test process, killed by PID and
//! removed on drop. A port clash is retried per node with a fresh port (the
//! cluster bus is port + 10000, and a clash there fails the node's start
//! the same way). Like the rest of the support code this never skips: no
//! `redis-server` is a loud failure.
//!
//! The cluster is formed by hand (`CLUSTER SET-CONFIG-EPOCH`,
//! `ADDSLOTSRANGE`, `MEET`, `REPLICATE`) rather than with
//! `redis-cli --cluster create`, whose join loop polls once a second; see
//! [`Cluster::start`] for the timings.
//!
//! Each node only has an *opinion* of the cluster, and opinions differ for
//! a few milliseconds around every change. The helpers say whose opinion
//! they use: [`Cluster::primary_for_slot`] and [`Cluster::replicas_of`] take
//! the majority of the reachable nodes; [`Cluster::wait_primary_changed`]
//! waits for the new primary's own; [`Cluster::wait_all_online`] waits
//! until all agree.
//!
//! All methods take `&self`, so a cluster can be shared (in an `Arc`)
//! between a workload and the code that breaks it. They block (bounded);
//! from async code call them in `tokio::task::spawn_blocking`.

use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::thread;
use std::time::{Duration, Instant};

use crate::raw::{RAW_IO_TIMEOUT, RawConn, Reply};
use crate::server::RedisServer;

/// Nodes in the cluster.
pub const NODES: usize = 6;
/// Nodes `0..PRIMARIES` start as primaries; node `PRIMARIES + k` starts as
/// the replica of node `k`.
pub const PRIMARIES: usize = 3;
/// Hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;
/// `cluster-node-timeout`. A SIGKILLed primary's replica takes over ~2.4 s
/// later (failure detection, then the election's 500–1000 ms delay).
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Bound for the whole of [`Cluster::start`].
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound for the waits with no timeout argument (a manual failover, a
/// migration's end becoming visible, a paused node going silent).
pub const FAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Between two looks at the cluster's state.
const POLL: Duration = Duration::from_millis(20);
/// Read timeout of a poll: a hung node must not stall a wait for
/// [`RAW_IO_TIMEOUT`], it just counts as not answering.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// Lines of each node's log in a failure message.
const LOG_TAIL_LINES: usize = 12;

/// The slot ranges of the three primaries, as `redis-cli --cluster create`
/// assigns them.
const SLOT_RANGES: [(u16, u16); PRIMARIES] = [(0, 5460), (5461, 10922), (10923, 16383)];

/// One node: a [`RedisServer`] and the cluster node id it keeps for life.
pub struct ClusterNode {
    server: RedisServer,
    id: String,
}

impl ClusterNode {
    /// The client port (the cluster bus is this + 10000).
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `127.0.0.1:port()`.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The node id (`CLUSTER MYID`), the same after a restart.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// Whether the process is alive (a paused node is alive).
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// One raw command, rendered like `redis-cli` (`"OK"`, `"(nil)"`,
    /// `"(error) MOVED 42 127.0.0.1:23456"`). Panics if unreachable.
    pub fn command(&self, args: &[&str]) -> String {
        self.server.command(args)
    }

    /// One raw command, the structured reply. Panics if unreachable.
    pub fn command_reply(&self, args: &[&str]) -> Reply {
        self.server.command_reply(args)
    }

    /// One raw command on a fresh connection, for when the node may be down.
    pub fn try_command(&self, args: &[&str]) -> io::Result<Reply> {
        self.server.try_command(args)
    }

    /// The underlying server: its directory, its full log, `stop()`.
    pub fn server(&self) -> &RedisServer {
        &self.server
    }
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("port", &self.port())
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// One shard as a node reports it in `CLUSTER SHARDS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// Inclusive slot ranges; empty for a primary that serves no slot.
    pub slots: Vec<(u16, u16)>,
    pub nodes: Vec<ShardNode>,
}

/// One node of a [`Shard`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardNode {
    pub id: String,
    pub port: u16,
    /// `role master`; otherwise a replica.
    pub primary: bool,
    /// `online`, `loading` (a replica whose offset is still 0) or `fail`.
    pub health: String,
    pub replication_offset: i64,
}

impl Shard {
    /// Whether this shard serves `slot`.
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(lo, hi)| (lo..=hi).contains(&slot))
    }

    /// How many slots this shard serves.
    pub fn slot_count(&self) -> usize {
        self.slots
            .iter()
            .map(|&(lo, hi)| usize::from(hi - lo) + 1)
            .sum()
    }

    /// The shard's primary, if the reporting node knows one.
    pub fn primary(&self) -> Option<&ShardNode> {
        self.nodes.iter().find(|n| n.primary)
    }

    /// The shard's replicas.
    pub fn replicas(&self) -> impl Iterator<Item = &ShardNode> {
        self.nodes.iter().filter(|n| !n.primary)
    }
}

/// A shard reduced to what every node must agree on: its slot ranges and
/// its members' ports and roles (`true`: primary).
type ShardLayout = (Vec<(u16, u16)>, Vec<(u16, bool)>);

/// One node's opinion: its `CLUSTER SHARDS` and whether its
/// `CLUSTER INFO` says `cluster_state:ok`.
#[derive(Debug, Clone)]
struct View {
    shards: Vec<Shard>,
    state_ok: bool,
}

impl View {
    fn primary_port_for(&self, slot: u16) -> Option<u16> {
        self.shards
            .iter()
            .find(|s| s.serves(slot))
            .and_then(|s| s.primary())
            .map(|n| n.port)
    }

    /// What all nodes must agree on: who is in which shard, in which role,
    /// serving which slots (not offsets, not health).
    fn topology(&self) -> Vec<ShardLayout> {
        let mut shards: Vec<_> = self
            .shards
            .iter()
            .map(|s| {
                let mut nodes: Vec<_> = s.nodes.iter().map(|n| (n.port, n.primary)).collect();
                nodes.sort_unstable();
                (s.slots.clone(), nodes)
            })
            .collect();
        shards.sort_unstable();
        shards
    }
}

/// Six `redis-server` nodes forming one cluster; all killed and removed on
/// drop, also when the test panics.
pub struct Cluster {
    nodes: Vec<ClusterNode>,
    started_in: Duration,
}

impl Cluster {
    /// Starts six nodes (`cluster-enabled yes`, `cluster-node-timeout
    /// 1000`, no persistence, `nodes.conf` in each node's directory) and
    /// forms three shards of a primary and a replica, nodes `0..3` serving
    /// slots 0–5460, 5461–10922, 10923–16383 and node `3 + k` replicating
    /// node `k`. Returns once every node reports `cluster_state:ok` and
    /// lists all six nodes `online`, and all agree on the topology.
    ///
    /// Takes ~2.1 s here, of which 2 s is Redis's own: a primary does not
    /// turn `cluster_state:ok` until 2 s after it started
    /// (`CLUSTER_WRITABLE_DELAY`); the nodes are up and introduced within
    /// ~0.3 s. `redis-cli --cluster create` took 2.4–2.9 s, and without
    /// the two replication settings in `node_builder` the replicas stay
    /// `loading` until 5.5–10.5 s.
    /// Panics with every node's log tail if the cluster does not form
    /// within [`START_TIMEOUT`].
    pub fn start() -> Cluster {
        let began = Instant::now();
        let servers: Vec<RedisServer> = thread::scope(|scope| {
            let starting: Vec<_> = (0..NODES)
                .map(|_| scope.spawn(|| node_builder().start()))
                .collect();
            starting
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let nodes = servers
            .into_iter()
            .map(|server| {
                let id = match server.command_reply(&["CLUSTER", "MYID"]) {
                    Reply::Bulk(id) => String::from_utf8_lossy(&id).into_owned(),
                    other => panic!("CLUSTER MYID answered {other:?}"),
                };
                ClusterNode { server, id }
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            started_in: Duration::ZERO,
        };
        let deadline = began + START_TIMEOUT;
        cluster.form(deadline);
        cluster.started_in = began.elapsed();
        eprintln!(
            "cluster: 6 nodes on ports {:?} ready in {:?}",
            cluster
                .nodes
                .iter()
                .map(ClusterNode::port)
                .collect::<Vec<_>>(),
            cluster.started_in
        );
        cluster
    }

    /// How long [`start`](Self::start) took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The nodes, in their start order (see [`start`](Self::start)).
    pub fn nodes(&self) -> &[ClusterNode] {
        &self.nodes
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &ClusterNode {
        &self.nodes[i]
    }

    /// The index of the node on `port`, if it is one of ours.
    pub fn node_index(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.port() == port)
    }

    /// `redis://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`: nodes 0, 1 and 2
    /// as seeds.
    pub fn seed_url(&self) -> String {
        let seeds: Vec<String> = self.nodes[..3]
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis://{}", seeds.join(","))
    }

    /// `redis://127.0.0.1:PORT` of node `i`.
    pub fn node_url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// One raw command to node `i` on its own connection (no redirection
    /// followed: a `-MOVED` is the reply). Panics if the node is unreachable.
    pub fn command(&self, i: usize, args: &[&str]) -> Reply {
        self.nodes[i].command_reply(args)
    }

    /// Like [`command`](Self::command) without panicking.
    pub fn try_command(&self, i: usize, args: &[&str]) -> io::Result<Reply> {
        self.nodes[i].try_command(args)
    }

    /// The hash slot of `key`, from `CLUSTER KEYSLOT` on a running node.
    pub fn key_slot(&self, key: &str) -> u16 {
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            if let Ok(mut conn) = probe_conn(node.port())
                && let Ok(Reply::Integer(slot)) = conn.command(&["CLUSTER", "KEYSLOT", key])
            {
                return u16::try_from(slot).expect("a slot fits in u16");
            }
        }
        panic!(
            "CLUSTER KEYSLOT {key:?}: no node answered\n{}",
            self.log_tails()
        )
    }

    /// Node `i`'s `CLUSTER SHARDS`. Panics if it does not answer.
    pub fn shards(&self, i: usize) -> Vec<Shard> {
        let reply = self.command(i, &["CLUSTER", "SHARDS"]);
        parse_shards(&reply).unwrap_or_else(|e| {
            panic!("node {i}: unexpected CLUSTER SHARDS reply ({e}): {reply:?}")
        })
    }

    /// The index of the node that serves `slot` as primary in the opinion
    /// of most reachable nodes (a killed primary stays the answer until
    /// the cluster has failed it over). Panics if no node answers or none
    /// serves the slot.
    pub fn primary_for_slot(&self, slot: u16) -> usize {
        let port = self.majority(&format!("primary of slot {slot}"), |view| {
            view.primary_port_for(slot)
        });
        let port = port.unwrap_or_else(|| {
            panic!(
                "no node serves slot {slot} in the majority's opinion\n{}",
                self.log_tails()
            )
        });
        self.index_of(port)
    }

    /// The replicas of node `i` (in any health) in the opinion of most
    /// reachable nodes; empty if `i` is not a primary.
    pub fn replicas_of(&self, i: usize) -> Vec<usize> {
        let port = self.nodes[i].port();
        let ports = self.majority(&format!("replicas of node {i}"), |view| {
            let mut ports: Vec<u16> = view
                .shards
                .iter()
                .filter(|s| s.primary().is_some_and(|p| p.port == port))
                .flat_map(|s| s.replicas().map(|r| r.port))
                .collect();
            ports.sort_unstable();
            ports
        });
        ports.into_iter().map(|p| self.index_of(p)).collect()
    }

    /// SIGKILL by PID, like a crash: no goodbye on the cluster bus or to
    /// clients. Returns once the process is reaped (its ports refuse).
    pub fn kill_node(&self, i: usize) {
        self.nodes[i].server.kill();
    }

    /// Starts node `i` again on the same port with the same directory, so
    /// its `nodes.conf` gives it its old id and its last view of the
    /// cluster (no data: no persistence). Returns once it answers PING;
    /// rejoining takes longer, see [`wait_all_online`](Self::wait_all_online).
    pub fn restart_node(&self, i: usize) {
        let node = &self.nodes[i];
        node.server.restart();
        let id = node.command_reply(&["CLUSTER", "MYID"]);
        assert_eq!(
            id,
            Reply::Bulk(node.id.clone().into_bytes()),
            "node {i} came back with another id: its nodes.conf was lost"
        );
    }

    /// Waits until a node other than `old` serves `slot` as primary in its
    /// own opinion and reports `cluster_state:ok`: the moment it accepts
    /// writes for the slot. Returns its index. Other nodes may still
    /// redirect to `old` for a few milliseconds. Panics after `timeout`.
    pub fn wait_primary_changed(&self, slot: u16, old: usize, timeout: Duration) -> usize {
        self.wait_until(
            timeout,
            &format!("a primary other than node {old} for slot {slot}"),
            || {
                let mut opinions = String::new();
                for (j, node) in self.nodes.iter().enumerate() {
                    if j == old || !node.is_running() {
                        continue;
                    }
                    let Some(view) = self.view(j) else {
                        let _ = write!(opinions, " node {j}: no answer;");
                        continue;
                    };
                    let owner = view.primary_port_for(slot);
                    if owner == Some(node.port()) && view.state_ok {
                        return Ok(j);
                    }
                    let _ = write!(
                        opinions,
                        " node {j}: owner {:?}, state ok {};",
                        owner.and_then(|p| self.node_index(p)),
                        view.state_ok
                    );
                }
                Err(opinions)
            },
        )
    }

    /// `CLUSTER FAILOVER` on `replica` (a manual failover: the primary
    /// stops writes, the replica catches up and takes over), then waits
    /// until `replica` answers `ROLE` as master.
    pub fn failover(&self, replica: usize) {
        let reply = self.command(replica, &["CLUSTER", "FAILOVER"]);
        assert_eq!(
            reply,
            Reply::Simple("OK".into()),
            "CLUSTER FAILOVER on node {replica}"
        );
        self.wait_until(
            FAULT_TIMEOUT,
            &format!("node {replica} to become master"),
            || match probe(self.nodes[replica].port(), &["ROLE"]) {
                Some(Reply::Array(role))
                    if role.first() == Some(&Reply::Bulk(b"master".to_vec())) =>
                {
                    Ok(())
                }
                other => Err(format!("ROLE answered {other:?}")),
            },
        );
    }

    /// Hangs node `i` for `duration` with `DEBUG SLEEP`: its sockets stay
    /// open and it answers nothing, neither clients nor the cluster bus.
    /// The command's reply is awaited on a thread of its own; this returns
    /// once the node is seen not answering (for a pause of 200 ms or more;
    /// a shorter one returns once the command is sent).
    pub fn pause(&self, i: usize, duration: Duration) {
        let port = self.nodes[i].port();
        let mut conn = RawConn::connect(loopback(port))
            .unwrap_or_else(|e| panic!("node {i}: cannot connect to pause it: {e}"));
        let secs = format!("{:.3}", duration.as_secs_f64());
        conn.send(&["DEBUG", "SLEEP", &secs])
            .unwrap_or_else(|e| panic!("node {i}: cannot send DEBUG SLEEP: {e}"));
        thread::Builder::new()
            .name(format!("cluster-pause-{i}"))
            .spawn(move || {
                let _ = conn
                    .stream()
                    .set_read_timeout(Some(duration + RAW_IO_TIMEOUT));
                let _ = conn.read_reply();
            })
            .expect("cannot start the pause thread");
        if duration < Duration::from_millis(200) {
            return;
        }
        // A PING that gets no answer within 50 ms: the node is asleep.
        let silence = Duration::from_millis(50);
        self.wait_until(FAULT_TIMEOUT, &format!("node {i} to hang"), || {
            let answered = RawConn::connect(loopback(port))
                .and_then(|mut c| {
                    c.stream().set_read_timeout(Some(silence))?;
                    c.command(&["PING"])
                })
                .is_ok();
            if answered {
                Err("it still answers PING".into())
            } else {
                Ok(())
            }
        });
    }

    /// Waits until every node runs, reports `cluster_state:ok` and lists
    /// all six nodes `online`, every shard that serves slots has a
    /// replica, and all nodes agree on who is where. Panics after `timeout`.
    pub fn wait_all_online(&self, timeout: Duration) {
        self.wait_until(timeout, "all nodes online and in agreement", || {
            self.check_all_online()
        });
    }

    /// Starts moving `slot` from node `from` to node `to`: `CLUSTER
    /// SETSLOT slot IMPORTING <from-id>` on `to`, then `MIGRATING <to-id>`
    /// on `from`. From then on `from` answers `-ASK slot 127.0.0.1:<to>`
    /// for keys of the slot it no longer has, and multi-key commands on the
    /// slot may answer `-TRYAGAIN`.
    pub fn begin_migration(&self, slot: u16, from: usize, to: usize) {
        let slot = slot.to_string();
        let (from_id, to_id) = (self.nodes[from].id.as_str(), self.nodes[to].id.as_str());
        self.expect_ok(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", from_id]);
        self.expect_ok(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", to_id]);
    }

    /// `MIGRATE 127.0.0.1 <to-port> "" 0 5000 KEYS key` on node `from`:
    /// moves one key (atomically: it is on one node or the other). Returns
    /// the reply, `OK` or `NOKEY`; panics on an error.
    pub fn migrate_key(&self, key: &str, from: usize, to: usize) -> Reply {
        let port = self.nodes[to].port().to_string();
        let args = ["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS", key];
        let reply = self.command(from, &args);
        assert!(!reply.is_error(), "node {from}: {args:?} answered {reply}");
        reply
    }

    /// Ends a migration of `slot` to node `to`, in the order the Redis docs
    /// give: `CLUSTER SETSLOT slot NODE <to-id>` on `to`, then on the old
    /// owner, then on the other primaries. Returns once every running node
    /// says `to` serves the slot. The old owner refuses while it still
    /// holds keys of the slot: migrate them first.
    pub fn finish_migration(&self, slot: u16, to: usize) {
        let from = self.primary_for_slot(slot);
        let mut primaries: Vec<usize> = (0..NODES)
            .filter(|&j| j != to && j != from)
            .filter(|&j| {
                let port = self.nodes[j].port();
                self.view(j).is_some_and(|v| {
                    v.shards
                        .iter()
                        .any(|s| s.primary().is_some_and(|p| p.port == port))
                })
            })
            .collect();
        let mut order = vec![to];
        if from != to {
            order.push(from);
        }
        order.append(&mut primaries);
        let slot_arg = slot.to_string();
        let to_id = self.nodes[to].id.clone();
        for j in order {
            self.expect_ok(j, &["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id]);
        }
        let to_port = self.nodes[to].port();
        self.wait_until(
            FAULT_TIMEOUT,
            &format!("every node to see node {to} serving slot {slot}"),
            || {
                for (j, node) in self.nodes.iter().enumerate() {
                    if !node.is_running() {
                        continue;
                    }
                    let owner = self.view(j).and_then(|v| v.primary_port_for(slot));
                    if owner != Some(to_port) {
                        return Err(format!("node {j} says {owner:?}"));
                    }
                }
                Ok(())
            },
        );
    }

    /// The last lines of every node's log, for failure messages.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let log = node.server.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            let _ = writeln!(
                out,
                "=== node {i} (port {}, id {}) ===\n{}",
                node.port(),
                node.id,
                tail.join("\n")
            );
        }
        out
    }

    /// Introduces the nodes to each other and assigns slots and replicas,
    /// then waits until the cluster is whole.
    fn form(&self, deadline: Instant) {
        // Distinct epochs up front, as redis-cli does: otherwise all start
        // at 0 and the collision resolution bumps them one by one.
        for i in 0..NODES {
            let epoch = (i + 1).to_string();
            self.expect_ok(i, &["CLUSTER", "SET-CONFIG-EPOCH", &epoch]);
        }
        for (i, (lo, hi)) in SLOT_RANGES.iter().enumerate() {
            let (lo, hi) = (lo.to_string(), hi.to_string());
            self.expect_ok(i, &["CLUSTER", "ADDSLOTSRANGE", &lo, &hi]);
        }
        // Every pair meets directly instead of waiting for gossip.
        for i in 0..NODES {
            for j in i + 1..NODES {
                let port = self.nodes[j].port().to_string();
                self.expect_ok(i, &["CLUSTER", "MEET", "127.0.0.1", &port]);
            }
        }
        // REPLICATE needs the primary known by id, i.e. past the handshake.
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.wait_until(remaining, "every node to know every other", || {
            for i in 0..NODES {
                let nodes = match probe(self.nodes[i].port(), &["CLUSTER", "NODES"]) {
                    Some(Reply::Bulk(text)) => String::from_utf8_lossy(&text).into_owned(),
                    other => return Err(format!("node {i}: CLUSTER NODES answered {other:?}")),
                };
                let known = nodes
                    .lines()
                    .filter(|l| !l.contains("handshake") && !l.contains("noaddr"))
                    .count();
                if known != NODES {
                    return Err(format!("node {i} knows {known} nodes:\n{nodes}"));
                }
            }
            Ok(())
        });
        for k in 0..PRIMARIES {
            let primary = self.nodes[k].id.clone();
            self.expect_ok(PRIMARIES + k, &["CLUSTER", "REPLICATE", &primary]);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.wait_until(remaining, "the new cluster to form", || {
            self.check_all_online()
        });
    }

    fn check_all_online(&self) -> Result<(), String> {
        let mut agreed: Option<(usize, Vec<_>)> = None;
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.is_running() {
                return Err(format!("node {i} is not running"));
            }
            let view = self.view(i).ok_or(format!("node {i} does not answer"))?;
            if !view.state_ok {
                return Err(format!("node {i}: cluster_state is not ok"));
            }
            let listed: Vec<&ShardNode> = view.shards.iter().flat_map(|s| &s.nodes).collect();
            if listed.len() != NODES {
                return Err(format!("node {i} lists {} nodes", listed.len()));
            }
            if let Some(n) = listed.iter().find(|n| n.health != "online") {
                return Err(format!(
                    "node {i} sees node {:?} {}",
                    self.node_index(n.port),
                    n.health
                ));
            }
            if let Some(s) = view
                .shards
                .iter()
                .find(|s| !s.slots.is_empty() && s.replicas().next().is_none())
            {
                return Err(format!("node {i} sees shard {:?} without replica", s.slots));
            }
            let topology = view.topology();
            match &agreed {
                None => agreed = Some((i, topology)),
                Some((j, other)) if *other != topology => {
                    return Err(format!(
                        "nodes {j} and {i} disagree:\n{other:?}\n{topology:?}"
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Node `i`'s opinion, or `None` if it is down, hung or busy loading.
    fn view(&self, i: usize) -> Option<View> {
        let node = &self.nodes[i];
        if !node.is_running() {
            return None;
        }
        // Both commands in one write: one round trip per node and poll.
        let mut conn = probe_conn(node.port()).ok()?;
        conn.send_raw(
            &[
                crate::raw::encode_command(&["CLUSTER", "SHARDS"]),
                crate::raw::encode_command(&["CLUSTER", "INFO"]),
            ]
            .concat(),
        )
        .ok()?;
        let shards = conn.read_reply().ok()?;
        let info = conn.read_reply().ok()?;
        if shards.is_error() || info.is_error() {
            return None;
        }
        let shards = parse_shards(&shards).unwrap_or_else(|e| {
            panic!("node {i}: unexpected CLUSTER SHARDS reply ({e}): {shards:?}")
        });
        let state_ok =
            text(&info).is_some_and(|t| t.lines().any(|l| l.trim() == "cluster_state:ok"));
        Some(View { shards, state_ok })
    }

    /// The answer most reachable nodes give; panics if none answers.
    fn majority<T: PartialEq + std::fmt::Debug>(
        &self,
        what: &str,
        opinion: impl Fn(&View) -> T,
    ) -> T {
        let mut tally: Vec<(T, usize)> = Vec::new();
        for i in 0..NODES {
            let Some(view) = self.view(i) else { continue };
            let answer = opinion(&view);
            match tally.iter_mut().find(|(t, _)| *t == answer) {
                Some((_, n)) => *n += 1,
                None => tally.push((answer, 1)),
            }
        }
        tally
            .into_iter()
            .max_by_key(|&(_, n)| n)
            .map(|(t, _)| t)
            .unwrap_or_else(|| panic!("{what}: no node answered\n{}", self.log_tails()))
    }

    fn index_of(&self, port: u16) -> usize {
        self.node_index(port)
            .unwrap_or_else(|| panic!("the cluster names port {port}, which is none of ours"))
    }

    fn expect_ok(&self, i: usize, args: &[&str]) {
        let reply = self.command(i, args);
        assert_eq!(
            reply,
            Reply::Simple("OK".into()),
            "node {i}: {args:?} answered {reply}\n{}",
            self.log_tails()
        );
    }

    /// Polls `check` every [`POLL`] until it gives a value; panics after
    /// `timeout` with its last complaint and the nodes' log tails.
    fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut() -> Result<T, String>,
    ) -> T {
        let began = Instant::now();
        loop {
            let complaint = match check() {
                Ok(value) => return value,
                Err(complaint) => complaint,
            };
            if began.elapsed() >= timeout {
                panic!(
                    "cluster: waited {timeout:?} for {what}; last state: {complaint}\n{}",
                    self.log_tails()
                );
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Kill all before any directory goes, so no node logs into a
        // removed directory or gossips about a half-dead cluster.
        for node in &self.nodes {
            node.server.kill();
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes)
            .finish_non_exhaustive()
    }
}

/// One node's options. `cluster-config-file` is relative to the node's
/// `dir`, so it lands in the node's own directory.
fn node_builder() -> crate::server::RedisServerBuilder {
    RedisServer::builder()
        .config("cluster-enabled yes")
        .config("cluster-config-file nodes.conf")
        .config(&format!(
            "cluster-node-timeout {}",
            NODE_TIMEOUT.as_millis()
        ))
        // The replica's full sync starts at once instead of after 5 s.
        .config("repl-diskless-sync-delay 0")
        // A replica reports health `loading` until its offset moves; the
        // primary's PING to its replicas moves it, every second not ten.
        .config("repl-ping-replica-period 1")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// A connection whose reads give up after [`PROBE_TIMEOUT`].
fn probe_conn(port: u16) -> io::Result<RawConn> {
    let conn = RawConn::connect(loopback(port))?;
    conn.stream().set_read_timeout(Some(PROBE_TIMEOUT))?;
    Ok(conn)
}

/// One command with a short timeout; `None` if the node does not answer.
fn probe(port: u16, args: &[&str]) -> Option<Reply> {
    probe_conn(port).ok()?.command(args).ok()
}

fn text(reply: &Reply) -> Option<String> {
    match reply {
        Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Simple(s) | Reply::Other(s) => Some(s.clone()),
        _ => None,
    }
}

fn integer(reply: &Reply) -> Option<i64> {
    match reply {
        Reply::Integer(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

/// A field of a RESP3 map, or of the flat key/value array RESP2 makes of it.
fn field<'a>(reply: &'a Reply, name: &str) -> Option<&'a Reply> {
    match reply {
        Reply::Array(items) => items
            .chunks_exact(2)
            .find(|kv| text(&kv[0]).as_deref() == Some(name))
            .map(|kv| &kv[1]),
        Reply::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn parse_shards(reply: &Reply) -> Result<Vec<Shard>, String> {
    let Reply::Array(shards) = reply else {
        return Err("not an array".into());
    };
    shards
        .iter()
        .map(|shard| {
            let Some(Reply::Array(bounds)) = field(shard, "slots") else {
                return Err("shard without slots".into());
            };
            let bounds: Vec<u16> = bounds
                .iter()
                .map(|b| integer(b).and_then(|b| u16::try_from(b).ok()))
                .collect::<Option<_>>()
                .ok_or("a slot bound is not a slot")?;
            let slots = bounds.chunks_exact(2).map(|b| (b[0], b[1])).collect();
            let Some(Reply::Array(nodes)) = field(shard, "nodes") else {
                return Err("shard without nodes".into());
            };
            let nodes = nodes
                .iter()
                .map(|n| {
                    let get = |name: &str| field(n, name).ok_or(format!("node without {name}"));
                    Ok(ShardNode {
                        id: text(get("id")?).ok_or("bad id")?,
                        port: integer(get("port")?)
                            .and_then(|p| u16::try_from(p).ok())
                            .ok_or("bad port")?,
                        primary: text(get("role")?).ok_or("bad role")? == "master",
                        health: text(get("health")?).ok_or("bad health")?,
                        replication_offset: integer(get("replication-offset")?)
                            .ok_or("bad offset")?,
                    })
                })
                .collect::<Result<_, String>>()?;
            Ok(Shard { slots, nodes })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_a_resp2_cluster_shards_reply() {
        let node = |id: &str, port: i64, role: &str, health: &str| {
            Reply::Array(vec![
                bulk("id"),
                bulk(id),
                bulk("port"),
                Reply::Integer(port),
                bulk("ip"),
                bulk("127.0.0.1"),
                bulk("role"),
                bulk(role),
                bulk("replication-offset"),
                Reply::Integer(14),
                bulk("health"),
                bulk(health),
            ])
        };
        let reply = Reply::Array(vec![Reply::Array(vec![
            bulk("slots"),
            Reply::Array(vec![
                Reply::Integer(0),
                Reply::Integer(5460),
                Reply::Integer(7),
                Reply::Integer(7),
            ]),
            bulk("nodes"),
            Reply::Array(vec![
                node("a", 20001, "master", "online"),
                node("b", 20004, "replica", "loading"),
            ]),
        ])]);
        let shards = parse_shards(&reply).unwrap();
        assert_eq!(shards.len(), 1);
        let shard = &shards[0];
        assert_eq!(shard.slots, vec![(0, 5460), (7, 7)]);
        assert!(shard.serves(5460) && !shard.serves(5461));
        assert_eq!(shard.slot_count(), 5462);
        assert_eq!(shard.primary().unwrap().port, 20001);
        let replicas: Vec<_> = shard.replicas().collect();
        assert_eq!(replicas.len(), 1);
        assert_eq!(replicas[0].health, "loading");
        assert_eq!(replicas[0].replication_offset, 14);
    }

    #[test]
    fn a_malformed_reply_is_an_error_not_a_panic() {
        assert!(parse_shards(&Reply::Integer(1)).is_err());
        assert!(parse_shards(&Reply::Array(vec![Reply::Array(vec![bulk("slots")])])).is_err());
    }
}

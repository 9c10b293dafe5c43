//! A real Redis Sentinel deployment for the tests: one master, two
//! replicas and three sentinels, each a `redis-server` on a free loopback
//! port, and the faults a Sentinel client has to survive — a killed or hung
//! master, a manual failover, a killed sentinel — each bounded in time.
//!
//! Every process is a [`RedisServer`]: a directory of its own, killed with
//! the test process, killed by PID and removed on drop. A sentinel is
//! `redis-server <dir>/redis.conf --sentinel`; the file is Sentinel's own
//! config, writable, and Sentinel rewrites it (its id, the peers and
//! replicas it found, the current master), so [`SentinelSet::restart_sentinel`]
//! brings back the same sentinel with what it knew. Like the rest of the
//! support code this never skips: no `redis-server` is a loud failure.
//!
//! The settings are [`DOWN_AFTER`] (2000 ms; 1000 caused a spurious second
//! failover), [`FAILOVER_TIMEOUT`] (10 s), quorum [`QUORUM`] and
//! `parallel-syncs 1`; everything else is Sentinel's default, so that the
//! timings a test sees are the ones a production deployment with these
//! settings has.
//!
//! Each sentinel only has an *opinion* of who the master is, and opinions
//! differ for seconds around a failover (the leader may switch last). The
//! helpers say whose opinion they use: [`SentinelSet::master_index`] takes
//! the majority of the reachable sentinels; [`SentinelSet::wait_switch`]
//! waits for a majority and for the new master's own `ROLE`;
//! [`SentinelSet::wait_roles_settled`] waits until every running process
//! agrees.
//!
//! All methods take `&self`, so a set can be shared (in an `Arc`) between a
//! workload and the code that breaks it. They block (bounded); from async
//! code call them in `tokio::task::spawn_blocking`.

use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::thread;
use std::time::{Duration, Instant};

use crate::raw::{RAW_IO_TIMEOUT, RawConn, Reply, encode_command};
use crate::server::{RedisServer, RedisServerBuilder};

/// The name the sentinels monitor the master under.
pub const MASTER_NAME: &str = "mymaster";
/// Data nodes: node 0 starts as the master, the others as its replicas.
pub const DATA_NODES: usize = 3;
/// Sentinels.
pub const SENTINELS: usize = 3;
/// Sentinels that must agree the master is down (`sentinel monitor ... 2`).
pub const QUORUM: usize = 2;
/// `sentinel down-after-milliseconds`. A SIGKILLed master is replaced
/// ~3.2 s later here (see the fixture tests). Not lower: with 1000 a second,
/// spurious failover followed the first one here.
pub const DOWN_AFTER: Duration = Duration::from_millis(2000);
/// `sentinel failover-timeout`. Sentinel also waits twice this long after
/// a failover attempt (or after voting for another sentinel's) before it
/// starts another *automatic* one for the same master; `SENTINEL FAILOVER`
/// is not held back.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_millis(10_000);
/// Bound for the whole of [`SentinelSet::start`].
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound for [`SentinelSet::failover`] to be accepted.
pub const FAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Between two looks at the deployment's state.
const POLL: Duration = Duration::from_millis(20);
/// Read timeout of a poll: a hung process must not stall a wait for
/// [`RAW_IO_TIMEOUT`], it just counts as not answering.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// Lines of each process's log in a failure message.
const LOG_TAIL_LINES: usize = 12;

/// One process of the set, a data node or a sentinel.
pub struct Instance {
    server: RedisServer,
    label: String,
}

impl Instance {
    /// The port (plain, loopback).
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

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    /// Whether the process is alive (a node in `DEBUG SLEEP` is alive).
    pub fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// One raw command on a fresh connection, the structured reply (an
    /// error reply is a `Reply::Error`, not a panic). Panics if the
    /// process cannot be reached within [`RAW_IO_TIMEOUT`].
    pub fn command(&self, args: &[&str]) -> Reply {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("{}: raw command {args:?} failed: {e}", self.label))
    }

    /// Like [`command`](Self::command) without panicking, for when the
    /// process may be down or hung.
    pub fn try_command(&self, args: &[&str]) -> io::Result<Reply> {
        self.server.try_command(args)
    }

    /// The underlying server: its directory, its full log.
    pub fn server(&self) -> &RedisServer {
        &self.server
    }
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("label", &self.label)
            .field("port", &self.port())
            .finish_non_exhaustive()
    }
}

/// One `+switch-master` message: `<name> <old-ip> <old-port> <new-ip>
/// <new-port>`, and when the watch read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchMaster {
    pub old: SocketAddr,
    pub new: SocketAddr,
    pub received: Instant,
}

/// A subscription to one sentinel's `+switch-master` channel, from
/// [`SentinelSet::subscribe_switch_master`].
pub struct SwitchWatch {
    conn: RawConn,
    sentinel: usize,
}

impl SwitchWatch {
    /// The next `+switch-master` this sentinel publishes, waiting at most
    /// `timeout`; `None` on timeout or if the sentinel went away.
    pub fn recv(&mut self, timeout: Duration) -> Option<SwitchMaster> {
        let deadline = Instant::now() + timeout;
        // Bounded: every turn either returns or reads one message.
        for _ in 0..1000 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.conn.stream().set_read_timeout(Some(left)).ok()?;
            let reply = self.conn.read_reply().ok()?;
            let received = Instant::now();
            let Reply::Array(parts) = &reply else {
                continue;
            };
            if parts.len() != 3 || text(&parts[0]).as_deref() != Some("message") {
                continue;
            }
            let payload = text(&parts[2]).unwrap_or_default();
            let words: Vec<&str> = payload.split_whitespace().collect();
            let addr = |ip: &str, port: &str| -> Option<SocketAddr> {
                Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
            };
            if let [_, old_ip, old_port, new_ip, new_port] = words[..] {
                return Some(SwitchMaster {
                    old: addr(old_ip, old_port)?,
                    new: addr(new_ip, new_port)?,
                    received,
                });
            }
            panic!(
                "sentinel {}: unexpected +switch-master payload {payload:?}",
                self.sentinel
            );
        }
        None
    }

    /// Which sentinel this watch listens to.
    pub fn sentinel(&self) -> usize {
        self.sentinel
    }
}

impl std::fmt::Debug for SwitchWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchWatch")
            .field("sentinel", &self.sentinel)
            .finish_non_exhaustive()
    }
}

/// One sentinel's view of `mymaster`: what `SENTINEL
/// get-master-addr-by-name`, `SENTINEL master`, `SENTINEL replicas` and
/// `SENTINEL sentinels` say.
#[derive(Debug, Clone)]
struct View {
    master_port: Option<u16>,
    master_flags: String,
    /// `(port, flags, master-link-status, role-reported)` per replica.
    replicas: Vec<(u16, String, String, String)>,
    /// `(port, flags)` per other sentinel.
    sentinels: Vec<(u16, String)>,
}

/// A master, two replicas and three sentinels; all killed and removed on
/// drop, also when the test panics.
pub struct SentinelSet {
    nodes: Vec<Instance>,
    sentinels: Vec<Instance>,
    started_in: Duration,
}

impl SentinelSet {
    /// Starts node 0, then nodes 1 and 2 as its replicas
    /// (`replicaof 127.0.0.1 <port of node 0>`), waits until both report
    /// `master_link_status:up`, then starts three sentinels monitoring node
    /// 0 as [`MASTER_NAME`]. Returns once every sentinel names node 0 as the
    /// master, lists both replicas (flags `slave`, link `ok`) and the other
    /// two sentinels (connected): before that, a failover fails
    /// (`NOGOODSLAVE`) or never gets a quorum.
    ///
    /// Takes ~2.2 s here, nearly all of it Sentinel's own: sentinels find
    /// each other through hello messages published every 2 s. The
    /// replicas are linked 40–130 ms after start (`repl-diskless-sync-delay 0`;
    /// the default 5 s would dominate). The order matters: a sentinel that
    /// starts before a replica is linked learns of that replica at the
    /// master's next `INFO`, 10 s later.
    /// Panics with every process's log tail if the set is not ready within
    /// [`START_TIMEOUT`].
    pub fn start() -> SentinelSet {
        let began = Instant::now();
        let deadline = began + START_TIMEOUT;
        let master = node_builder().start();
        let master_port = master.port();
        let replicas = start_all(DATA_NODES - 1, || {
            node_builder()
                .config(&format!("replicaof 127.0.0.1 {master_port}"))
                .start()
        });
        let nodes = std::iter::once(master)
            .chain(replicas)
            .enumerate()
            .map(|(i, server)| Instance {
                server,
                label: format!("node {i}"),
            })
            .collect();
        let mut set = SentinelSet {
            nodes,
            sentinels: Vec::new(),
            started_in: Duration::ZERO,
        };
        set.wait_until(
            deadline.saturating_duration_since(Instant::now()),
            "both replicas linked to node 0",
            || set.check_replicas_linked(0),
        );
        let linked_in = began.elapsed();
        set.sentinels = start_all(SENTINELS, || sentinel_builder(master_port).start())
            .into_iter()
            .enumerate()
            .map(|(j, server)| Instance {
                server,
                label: format!("sentinel {j}"),
            })
            .collect();
        set.wait_until(
            deadline.saturating_duration_since(Instant::now()),
            "every sentinel to know node 0, both replicas and the other sentinels",
            || match set.check_settled(true)? {
                0 => Ok(()),
                m => Err(format!("the sentinels name node {m}")),
            },
        );
        set.started_in = began.elapsed();
        eprintln!(
            "sentinel set: nodes on ports {:?} (replicas linked after {linked_in:?}), \
             sentinels on ports {:?}; ready in {:?}",
            set.nodes.iter().map(Instance::port).collect::<Vec<_>>(),
            set.sentinels.iter().map(Instance::port).collect::<Vec<_>>(),
            set.started_in
        );
        set
    }

    /// How long [`start`](Self::start) took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Data node `i` (0 is the initial master).
    pub fn node(&self, i: usize) -> &Instance {
        &self.nodes[i]
    }

    /// The data nodes, in their start order.
    pub fn nodes(&self) -> &[Instance] {
        &self.nodes
    }

    /// Sentinel `j`.
    pub fn sentinel(&self, j: usize) -> &Instance {
        &self.sentinels[j]
    }

    /// The sentinels.
    pub fn sentinels(&self) -> &[Instance] {
        &self.sentinels
    }

    /// The index of the data node on `port`, if it is one of ours.
    pub fn node_index(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.port() == port)
    }

    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/mymaster`.
    pub fn sentinel_url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The sentinels' addresses, in order.
    pub fn sentinel_addrs(&self) -> Vec<SocketAddr> {
        self.sentinels.iter().map(Instance::addr).collect()
    }

    /// `redis://127.0.0.1:PORT` of data node `i`.
    pub fn node_url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// The index of the master in the opinion of most reachable sentinels
    /// (`SENTINEL get-master-addr-by-name`). A killed master stays the
    /// answer until the sentinels have failed it over. Panics if no
    /// sentinel answers, or if they name a port that is none of ours.
    pub fn master_index(&self) -> usize {
        let mut tally: Vec<(u16, usize)> = Vec::new();
        for s in self.sentinels.iter().filter(|s| s.is_running()) {
            let Some(port) = probe(s.port(), &master_addr_cmd()).and_then(|r| master_port(&r))
            else {
                continue;
            };
            match tally.iter_mut().find(|(p, _)| *p == port) {
                Some((_, n)) => *n += 1,
                None => tally.push((port, 1)),
            }
        }
        let port = tally
            .into_iter()
            .max_by_key(|&(_, n)| n)
            .map(|(p, _)| p)
            .unwrap_or_else(|| panic!("master_index: no sentinel answered\n{}", self.log_tails()));
        self.index_of(port)
    }

    /// The first element of data node `i`'s `ROLE` (`"master"` or
    /// `"slave"`), `None` if it is down, hung or does not answer within
    /// 300 ms.
    pub fn role(&self, i: usize) -> Option<String> {
        if !self.nodes[i].is_running() {
            return None;
        }
        match probe(self.nodes[i].port(), &["ROLE"])? {
            Reply::Array(items) => items.first().and_then(text),
            _ => None,
        }
    }

    /// SIGKILL by PID, like a crash: no goodbye to clients, replicas or
    /// sentinels. Returns once the process is reaped (its port refuses).
    pub fn kill_node(&self, i: usize) {
        self.nodes[i].server.kill();
    }

    /// Starts data node `i` again on the same port with the same
    /// directory; returns once it answers PING. It has no data (no
    /// persistence) and starts from its `redis.conf` as Sentinel last
    /// rewrote it (Sentinel sends `CONFIG REWRITE` with every `REPLICAOF`
    /// it issues): a replica comes back replicating the master it last
    /// followed; a master killed before any failover comes back as an
    /// *empty master* (its replicas resync from it: data loss, as in
    /// production); an old master killed and replaced comes back as a
    /// master too, and the sentinels convert it to a replica of the new
    /// one (`+convert-to-slave`) only once it has reported `master` for
    /// 8 s and its next `INFO` to them says so — ~10 s after the restart (use
    /// [`wait_roles_settled`](Self::wait_roles_settled)).
    pub fn restart_node(&self, i: usize) {
        self.nodes[i].server.restart();
    }

    /// SIGKILL of sentinel `j` by PID. Returns once it is reaped.
    pub fn kill_sentinel(&self, j: usize) {
        self.sentinels[j].server.kill();
    }

    /// Starts sentinel `j` again on the same port from its rewritten
    /// config (same id, same known peers and replicas, the master it last
    /// believed in); returns once it answers PING. Its peers see it again
    /// within a second (their reconnect).
    pub fn restart_sentinel(&self, j: usize) {
        self.sentinels[j].server.restart();
    }

    /// `SENTINEL FAILOVER mymaster` on the first running sentinel that
    /// accepts it, retried (bounded by [`FAULT_TIMEOUT`]) while the
    /// answer is `-INPROG` (a failover is under way) or `-NOGOODSLAVE`
    /// (no replica known and healthy yet). Returns the index of the
    /// sentinel that accepted, once it has said `OK`: the switch itself
    /// follows within ~1–2 s for most sentinels, later for this one (it
    /// waits for the other replicas to be reconfigured), see
    /// [`wait_switch`](Self::wait_switch).
    pub fn failover(&self) -> usize {
        self.wait_until(
            FAULT_TIMEOUT,
            "a sentinel to accept SENTINEL FAILOVER",
            || {
                let mut answers = String::new();
                for (j, s) in self.sentinels.iter().enumerate() {
                    if !s.is_running() {
                        continue;
                    }
                    match probe(s.port(), &["SENTINEL", "FAILOVER", MASTER_NAME]) {
                        Some(Reply::Simple(ok)) if ok == "OK" => return Ok(j),
                        Some(Reply::Error(e))
                            if e.starts_with("INPROG") || e.starts_with("NOGOODSLAVE") =>
                        {
                            let _ = write!(answers, " sentinel {j}: {e};");
                        }
                        Some(other) => panic!(
                            "sentinel {j}: SENTINEL FAILOVER answered {other:?}\n{}",
                            self.log_tails()
                        ),
                        None => {
                            let _ = write!(answers, " sentinel {j}: no answer;");
                        }
                    }
                }
                Err(answers)
            },
        )
    }

    /// Hangs data node `i` for `duration` with `DEBUG SLEEP`: its sockets
    /// stay open and it answers nothing — not clients, not replicas, not
    /// sentinels. Returns at once, once the command is sent; its reply is
    /// awaited on a thread of its own. A sleep over [`DOWN_AFTER`] on the
    /// master makes the sentinels fail it over; it wakes still saying
    /// `ROLE master` and keeps taking writes until they demote it.
    pub fn debug_sleep(&self, i: usize, duration: Duration) {
        let mut conn = RawConn::connect(self.nodes[i].addr())
            .unwrap_or_else(|e| panic!("node {i}: cannot connect for DEBUG SLEEP: {e}"));
        let secs = format!("{:.3}", duration.as_secs_f64());
        conn.send(&["DEBUG", "SLEEP", &secs])
            .unwrap_or_else(|e| panic!("node {i}: cannot send DEBUG SLEEP: {e}"));
        thread::Builder::new()
            .name(format!("sentinel-set-sleep-{i}"))
            .spawn(move || {
                let _ = conn
                    .stream()
                    .set_read_timeout(Some(duration + RAW_IO_TIMEOUT));
                let _ = conn.read_reply();
            })
            .expect("cannot start the DEBUG SLEEP thread");
    }

    /// Waits until a majority of the running sentinels name a master other
    /// than data node `old`, and that node's own `ROLE` says `master`.
    /// Returns its index. The other sentinels (often the failover's
    /// leader) may still name `old` for seconds. Panics after `timeout`.
    pub fn wait_switch(&self, old: usize, timeout: Duration) -> usize {
        let old_port = self.nodes[old].port();
        self.wait_until(
            timeout,
            &format!("a majority of sentinels to name a master other than node {old}"),
            || {
                let running: Vec<&Instance> =
                    self.sentinels.iter().filter(|s| s.is_running()).collect();
                let mut tally: Vec<(u16, usize)> = Vec::new();
                let mut opinions = String::new();
                for s in &running {
                    let port = probe(s.port(), &master_addr_cmd()).and_then(|r| master_port(&r));
                    let _ = write!(
                        opinions,
                        " {}: {:?};",
                        s.label,
                        port.map(|p| self.node_index(p))
                    );
                    let Some(port) = port else { continue };
                    match tally.iter_mut().find(|(p, _)| *p == port) {
                        Some((_, n)) => *n += 1,
                        None => tally.push((port, 1)),
                    }
                }
                let Some(&(port, _)) = tally
                    .iter()
                    .find(|&&(p, n)| p != old_port && 2 * n > running.len())
                else {
                    return Err(opinions);
                };
                let new = self.index_of(port);
                match self.role(new) {
                    Some(role) if role == "master" => Ok(new),
                    role => Err(format!("{opinions} node {new} says ROLE {role:?}")),
                }
            },
        )
    }

    /// Waits until the deployment is at rest, for use between test phases:
    /// every running sentinel names the same master, which is not in
    /// failover nor down in its eyes, and lists every other running node
    /// as a healthy replica and every other running sentinel as connected;
    /// that master's `ROLE` says `master`; every other running node says
    /// `role:slave` of it with `master_link_status:up`. Killed processes
    /// are left out. Returns the master's index. Panics after `timeout`.
    ///
    /// What a sentinel learns from a replica's own `INFO` (`role-reported`,
    /// `master-link-status` in `SENTINEL REPLICAS`) is *not* waited for: it
    /// is refreshed every 10 s, so for up to 10 s after a node was demoted
    /// the sentinels still say it reports `master` with link `err`. Waiting
    /// for that doubled the settle time after a demotion (~20 s instead of
    /// ~10 s) and changes nothing a client sees.
    ///
    /// Typical times here: ~5 s after a `wait_switch` following a kill -9
    /// (the leader switches last, after reconfiguring the other replica);
    /// ~10 s after a manual failover (the old master's demotion); ~10 s
    /// after restarting a replaced master (its conversion to a replica).
    pub fn wait_roles_settled(&self, timeout: Duration) -> usize {
        self.wait_until(timeout, "the roles to settle", || self.check_settled(false))
    }

    /// Subscribes to sentinel `j`'s `+switch-master` channel. Each sentinel
    /// publishes when *it* switches; subscribe to several and act on the
    /// first (the leader may publish seconds after the others).
    pub fn subscribe_switch_master(&self, j: usize) -> SwitchWatch {
        let mut conn = RawConn::connect(self.sentinels[j].addr())
            .unwrap_or_else(|e| panic!("sentinel {j}: cannot connect to subscribe: {e}"));
        let reply = conn
            .command(&["SUBSCRIBE", "+switch-master"])
            .unwrap_or_else(|e| panic!("sentinel {j}: SUBSCRIBE failed: {e}"));
        assert!(
            matches!(&reply, Reply::Array(parts) if parts.first().and_then(text).as_deref() == Some("subscribe")),
            "sentinel {j}: SUBSCRIBE +switch-master answered {reply:?}"
        );
        SwitchWatch { conn, sentinel: j }
    }

    /// The last lines of every process's log, for failure messages.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for inst in self.nodes.iter().chain(&self.sentinels) {
            let log = inst.server.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            let _ = writeln!(
                out,
                "=== {} (port {}) ===\n{}",
                inst.label,
                inst.port(),
                tail.join("\n")
            );
        }
        out
    }

    /// Every running data node other than `master` replicates it with its
    /// link up (`INFO replication`).
    fn check_replicas_linked(&self, master: usize) -> Result<(), String> {
        let master_port = self.nodes[master].port().to_string();
        for (k, node) in self.nodes.iter().enumerate() {
            if k == master || !node.is_running() {
                continue;
            }
            let info = probe(node.port(), &["INFO", "replication"])
                .and_then(|r| text(&r))
                .ok_or(format!("node {k}: no INFO replication"))?;
            let (role, port, link) = (
                info_field(&info, "role"),
                info_field(&info, "master_port"),
                info_field(&info, "master_link_status"),
            );
            if role != Some("slave") || port != Some(&master_port) || link != Some("up") {
                return Err(format!(
                    "node {k}: role {role:?}, master_port {port:?}, link {link:?}"
                ));
            }
        }
        Ok(())
    }

    /// See [`wait_roles_settled`](Self::wait_roles_settled). `fresh`: also
    /// require what the sentinels learn from their replicas' `INFO` (`role
    /// slave`, link `ok`) to be current.
    fn check_settled(&self, fresh: bool) -> Result<usize, String> {
        let mut master: Option<usize> = None;
        for (j, s) in self.sentinels.iter().enumerate() {
            if !s.is_running() {
                continue;
            }
            let view = sentinel_view(s.port()).ok_or(format!("sentinel {j} does not answer"))?;
            let port = view
                .master_port
                .ok_or(format!("sentinel {j} names no master"))?;
            let m = self.index_of(port);
            if master.is_some_and(|other| other != m) {
                return Err(format!(
                    "sentinels disagree: node {m} for sentinel {j}, node {master:?} before"
                ));
            }
            master = Some(m);
            if view.master_flags != "master" {
                return Err(format!("sentinel {j}: master flags {}", view.master_flags));
            }
            for (k, node) in self.nodes.iter().enumerate() {
                if k == m || !node.is_running() {
                    continue;
                }
                let Some((_, flags, link, role)) =
                    view.replicas.iter().find(|r| r.0 == node.port())
                else {
                    return Err(format!("sentinel {j} does not list node {k} as a replica"));
                };
                if flags != "slave" || (fresh && (link != "ok" || role != "slave")) {
                    return Err(format!(
                        "sentinel {j}: node {k} flags {flags}, link {link}, role {role}"
                    ));
                }
            }
            for (k, other) in self.sentinels.iter().enumerate() {
                if k == j || !other.is_running() {
                    continue;
                }
                let Some((_, flags)) = view.sentinels.iter().find(|p| p.0 == other.port()) else {
                    return Err(format!("sentinel {j} does not know sentinel {k}"));
                };
                if flags != "sentinel" {
                    return Err(format!("sentinel {j}: sentinel {k} flags {flags}"));
                }
            }
        }
        let m = master.ok_or("no sentinel runs")?;
        match self.role(m) {
            Some(role) if role == "master" => {}
            role => return Err(format!("node {m} says ROLE {role:?}")),
        }
        self.check_replicas_linked(m)?;
        Ok(m)
    }

    fn index_of(&self, port: u16) -> usize {
        self.node_index(port).unwrap_or_else(|| {
            panic!("the sentinels name port {port}, which is none of our data nodes")
        })
    }

    /// Polls `check` every [`POLL`] until it gives a value; panics after
    /// `timeout` (or an equivalent number of polls) with its last
    /// complaint and the log tails.
    fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut() -> Result<T, String>,
    ) -> T {
        let began = Instant::now();
        let max_polls = timeout.as_millis() / POLL.as_millis() + 10;
        let mut polls = 0u128;
        loop {
            let complaint = match check() {
                Ok(value) => return value,
                Err(complaint) => complaint,
            };
            polls += 1;
            if began.elapsed() >= timeout || polls > max_polls {
                panic!(
                    "sentinel set: waited {:?} ({polls} polls) for {what}; last state: \
                     {complaint}\n{}",
                    began.elapsed(),
                    self.log_tails()
                );
            }
            thread::sleep(POLL);
        }
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        // Sentinels first, so none reacts to the data nodes going away.
        for inst in self.sentinels.iter().chain(&self.nodes) {
            inst.server.kill();
        }
    }
}

impl std::fmt::Debug for SentinelSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelSet")
            .field("nodes", &self.nodes)
            .field("sentinels", &self.sentinels)
            .finish_non_exhaustive()
    }
}

/// A data node's options. `replicaof` goes in the config file, not on the
/// command line, so that Sentinel's `CONFIG REWRITE` decides what a
/// restarted node follows.
fn node_builder() -> RedisServerBuilder {
    // The replica's full sync starts at once instead of after 5 s.
    RedisServer::builder().config("repl-diskless-sync-delay 0")
}

/// A sentinel's options: the same base config as any test server (port,
/// dir, loopback bind, no persistence), the monitor lines, `--sentinel`.
fn sentinel_builder(master_port: u16) -> RedisServerBuilder {
    RedisServer::builder()
        .config(&format!(
            "sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {QUORUM}"
        ))
        .config(&format!(
            "sentinel down-after-milliseconds {MASTER_NAME} {}",
            DOWN_AFTER.as_millis()
        ))
        .config(&format!(
            "sentinel failover-timeout {MASTER_NAME} {}",
            FAILOVER_TIMEOUT.as_millis()
        ))
        .config(&format!("sentinel parallel-syncs {MASTER_NAME} 1"))
        .arg("--sentinel")
}

/// Starts `n` servers in parallel; a panic in one is re-raised.
fn start_all(n: usize, start: impl Fn() -> RedisServer + Sync) -> Vec<RedisServer> {
    thread::scope(|scope| {
        let starting: Vec<_> = (0..n).map(|_| scope.spawn(&start)).collect();
        starting
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

fn master_addr_cmd() -> [&'static str; 3] {
    ["SENTINEL", "get-master-addr-by-name", MASTER_NAME]
}

/// The port in a `get-master-addr-by-name` reply.
fn master_port(reply: &Reply) -> Option<u16> {
    match reply {
        Reply::Array(parts) if parts.len() == 2 => text(&parts[1])?.parse().ok(),
        _ => None,
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// Several commands in one write and their replies, each read bounded by
/// [`PROBE_TIMEOUT`]; `None` if the process does not answer them all.
fn probe_all(port: u16, commands: &[&[&str]]) -> Option<Vec<Reply>> {
    let mut conn = RawConn::connect(loopback(port)).ok()?;
    conn.stream().set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    let bytes: Vec<u8> = commands.iter().flat_map(|c| encode_command(c)).collect();
    conn.send_raw(&bytes).ok()?;
    commands.iter().map(|_| conn.read_reply().ok()).collect()
}

/// One command with a short timeout; `None` if the process does not answer.
fn probe(port: u16, args: &[&str]) -> Option<Reply> {
    probe_all(port, &[args])?.pop()
}

/// Sentinel's view of `mymaster`, in one round trip.
fn sentinel_view(port: u16) -> Option<View> {
    let replies = probe_all(
        port,
        &[
            &master_addr_cmd(),
            &["SENTINEL", "MASTER", MASTER_NAME],
            &["SENTINEL", "REPLICAS", MASTER_NAME],
            &["SENTINEL", "SENTINELS", MASTER_NAME],
        ],
    )?;
    let get = |entry: &Reply, name: &str| field(entry, name).and_then(text).unwrap_or_default();
    let port_of = |entry: &Reply| get(entry, "port").parse::<u16>().ok();
    let entries = |reply: &Reply| match reply {
        Reply::Array(items) => items.clone(),
        _ => Vec::new(),
    };
    Some(View {
        master_port: master_port(&replies[0]),
        master_flags: get(&replies[1], "flags"),
        replicas: entries(&replies[2])
            .iter()
            .filter_map(|r| {
                Some((
                    port_of(r)?,
                    get(r, "flags"),
                    get(r, "master-link-status"),
                    get(r, "role-reported"),
                ))
            })
            .collect(),
        sentinels: entries(&replies[3])
            .iter()
            .filter_map(|s| Some((port_of(s)?, get(s, "flags"))))
            .collect(),
    })
}

fn text(reply: &Reply) -> Option<String> {
    match reply {
        Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Reply::Simple(s) | Reply::Other(s) => Some(s.clone()),
        Reply::Integer(i) => Some(i.to_string()),
        _ => None,
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

/// `name:value` from an `INFO` text.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn a_set_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<SentinelSet>();
        shareable::<Instance>();
    }

    #[test]
    fn reads_sentinel_and_info_replies() {
        let addr = Reply::Array(vec![bulk("127.0.0.1"), bulk("26001")]);
        assert_eq!(master_port(&addr), Some(26001));
        assert_eq!(master_port(&Reply::Nil), None);
        let entry = Reply::Array(vec![
            bulk("port"),
            bulk("26002"),
            bulk("flags"),
            bulk("slave"),
        ]);
        assert_eq!(
            field(&entry, "flags").and_then(text).as_deref(),
            Some("slave")
        );
        assert_eq!(field(&entry, "missing"), None);
        let info = "# Replication\r\nrole:slave\r\nmaster_port:26001\r\nmaster_link_status:up\r\n";
        assert_eq!(info_field(info, "role"), Some("slave"));
        assert_eq!(info_field(info, "master_port"), Some("26001"));
        assert_eq!(info_field(info, "master"), None);
    }
}

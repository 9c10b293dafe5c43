//! Sentinel side by side: the same Sentinel faults against resilis,
//! redis-rs's `SentinelClient` and fred's client behind sentinels, each with
//! its defaults (fred also with the exponential reconnect policy from its
//! docs, since without one it does not recover from a dead master). A fresh
//! `SentinelSet` (a master, two replicas, three sentinels, down-after 2 s)
//! for every run: a failover leaves the set changed. On demand, not in CI:
//!
//! ```text
//! cargo run --release -p resilis-tests --features side-by-side --bin sentinel_side_by_side -- \
//!     [--runs 5] [--faults failover,kill,sleep] [--clients resilis,redis-rs,fred,fred+reconnect]
//! ```
//!
//! Each run: one writer RPUSHes unique values to a list (one call at a time,
//! ~1 ms apart, each capped at [`CAP`] so that a client that hangs cannot
//! hang the bench), then the fault:
//! - **failover**: `SENTINEL FAILOVER mymaster` (the old master stays up and
//!   keeps answering `ROLE master` until the sentinels demote it, ~10 s);
//! - **kill**: SIGKILL of the master;
//! - **sleep**: `DEBUG SLEEP 7` on the master (hung: no RST; it wakes still
//!   saying `ROLE master`).
//!
//! The clock is the first `+switch-master` any sentinel publishes (the
//! fixture subscribes to all three before the fault). Measured per run:
//! 1. **first OK after the switch**: the first acknowledged write that
//!    *started* after the switch and whose value is on the new master, its
//!    end minus the switch;
//! 2. **acked lost**: acknowledged values missing from the new master's list
//!    at the end;
//! 3. **writes the old master ran after the switch**: RPUSHes of this run's
//!    key that the old master executed for clients (`MONITOR`; the
//!    replication link from the new master is left out) with a server
//!    timestamp later than the switch, and of those, the ones whose call
//!    started after the switch (a master asleep runs on waking what was
//!    sent to it before the switch; MONITOR only shows when it ran them).
//!
//! How each client follows a failover, by its documentation:
//! - resilis: `Client::connect(sentinel_url)`, nothing else;
//! - redis-rs: `SentinelClient::get_async_connection` hands out a
//!   `MultiplexedConnection` to the master of the moment, which never moves
//!   to another node by itself; the application asks the `SentinelClient`
//!   for a new one (a fresh lookup through the sentinels, with the ROLE
//!   check) after any error. The connection's own defaults (500 ms response
//!   timeout, 1 s connect timeout) are kept;
//! - fred: `ServerConfig::Sentinel` with the default `Config` and no
//!   reconnect policy (fred's default), and the same with
//!   `ReconnectPolicy::new_exponential(0, 100, 30_000, 2)`.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::io::BufRead;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use resilis_tests::sentinel::{MASTER_NAME, SentinelSet};
use resilis_tests::table::{commonest, count, ms, secs, short, spread};
use resilis_tests::{RawConn, Reply};
use tokio::time::{sleep, timeout};

/// The bench's cap on one call: a little over resilis's own 5 s deadline,
/// so resilis answers first.
const CAP: Duration = Duration::from_millis(5250);
/// The writer's pause between two calls.
const CALL_PAUSE: Duration = Duration::from_millis(1);
/// Bounds of the writer, whatever happens to `stop`.
const MAX_WRITES: u64 = 200_000;
const MAX_WRITING: Duration = Duration::from_secs(90);
/// Writing before the fault.
const WARM_UP: Duration = Duration::from_secs(1);
/// The `DEBUG SLEEP` of the sleep fault.
const SLEEP_FOR: Duration = Duration::from_secs(7);
/// From the fault to the first `+switch-master`.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(30);
/// For a majority of sentinels and the new master's ROLE to agree.
const NEW_MASTER_TIMEOUT: Duration = Duration::from_secs(20);
/// The writer keeps going at least this long after the switch, and at
/// least [`AFTER_OLD_OUT`] after the old master is out (dead or `ROLE
/// slave`); never longer than [`MAX_AFTER_SWITCH`]. A client that has no
/// OK on the new master by then "never" recovered.
const AFTER_SWITCH: Duration = Duration::from_secs(5);
const AFTER_OLD_OUT: Duration = Duration::from_secs(3);
const MAX_AFTER_SWITCH: Duration = Duration::from_secs(25);
/// Between two looks at the old master's role.
const ROLE_POLL: Duration = Duration::from_millis(100);
/// How long each client gets to connect before the run gives up on it.
const CONNECT_CAP: Duration = Duration::from_secs(15);
/// How long closing a client may take before it is just dropped.
const CLOSE_CAP: Duration = Duration::from_secs(2);
/// The `MONITOR` reader's own bound.
const MONITOR_CAP: Duration = Duration::from_secs(120);

/// A failed call: its text, and whether the client said it may still have
/// been applied (resilis's "indeterminate"; the peers never say so).
struct CallError {
    text: String,
    maybe_applied: bool,
}

impl From<String> for CallError {
    fn from(text: String) -> Self {
        CallError {
            text,
            maybe_applied: false,
        }
    }
}

type CallFuture = Pin<Box<dyn Future<Output = Result<(), CallError>> + Send>>;

/// One client under test, behind a uniform "RPUSH one value" call.
trait Subject: Send + Sync {
    fn rpush(&self, key: String, value: u64) -> CallFuture;
    fn close(&self) -> CallFuture;
    /// What the client itself counted, when it counts anything.
    fn diagnostics(&self) -> Option<String> {
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// resilis, `Client::connect(sentinel_url)` and nothing else.
    Resilis,
    /// redis-rs 1.8 `SentinelClient`, a new connection from it after any
    /// error.
    RedisRs,
    /// fred 10.1 with `ServerConfig::Sentinel`, defaults (no reconnect
    /// policy: fred's default).
    Fred,
    /// fred with `ReconnectPolicy::new_exponential(0, 100, 30_000, 2)`,
    /// the policy of fred's own examples.
    FredReconnect,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Resilis,
        Kind::RedisRs,
        Kind::Fred,
        Kind::FredReconnect,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Resilis => "resilis (defaults: the URL only)",
            Kind::RedisRs => {
                "redis-rs 1.8 SentinelClient (defaults; new connection from it after any error)"
            }
            Kind::Fred => "fred 10.1 ServerConfig::Sentinel (defaults: no reconnect policy)",
            Kind::FredReconnect => "fred 10.1 Sentinel + exponential reconnect (0, 100, 30 000, 2)",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Kind::Resilis => "resilis",
            Kind::RedisRs => "redis-rs",
            Kind::Fred => "fred",
            Kind::FredReconnect => "fred+reconnect",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.slug() == s)
    }
}

struct Resilis(resilis::Client);

impl Subject for Resilis {
    fn rpush(&self, key: String, value: u64) -> CallFuture {
        let client = self.0.clone();
        Box::pin(async move {
            client
                .cmd("RPUSH")
                .arg(key)
                .arg(value.to_string())
                .query_as::<i64>()
                .await
                .map(drop)
                .map_err(|e| CallError {
                    maybe_applied: matches!(e, resilis::Error::Indeterminate { .. }),
                    text: e.to_string(),
                })
        })
    }

    fn close(&self) -> CallFuture {
        let client = self.0.clone();
        Box::pin(async move {
            client.shutdown().await;
            Ok(())
        })
    }

    fn diagnostics(&self) -> Option<String> {
        let h = self.0.sentinel_health()?;
        Some(format!(
            "resilis sentinel_health: master {:?}, rounds {}, switches {}, not master {}, \
             role demotions {}, last error {:?}",
            h.master, h.rounds, h.switches, h.not_master, h.role_demotions, h.last_error
        ))
    }
}

/// redis-rs: the `SentinelClient` and the connection it handed out last;
/// `None` after an error, so that the next call asks for a new one.
struct RedisRsState {
    sentinel: redis::sentinel::SentinelClient,
    conn: Option<redis::aio::MultiplexedConnection>,
    /// Connections obtained from the `SentinelClient`.
    lookups: u64,
}

struct RedisRs(Arc<tokio::sync::Mutex<RedisRsState>>);

impl Subject for RedisRs {
    fn rpush(&self, key: String, value: u64) -> CallFuture {
        let state = self.0.clone();
        Box::pin(async move {
            // One writer, one call at a time: the lock is never contended.
            let mut state = state.lock().await;
            let mut conn = match state.conn.take() {
                Some(conn) => conn,
                None => {
                    state.lookups += 1;
                    state
                        .sentinel
                        .get_async_connection()
                        .await
                        .map_err(|e| format!("lookup: {e}"))?
                }
            };
            let result = redis::cmd("RPUSH")
                .arg(key)
                .arg(value)
                .query_async::<i64>(&mut conn)
                .await;
            match result {
                Ok(_) => {
                    state.conn = Some(conn);
                    Ok(())
                }
                Err(e) => Err(e.to_string().into()),
            }
        })
    }

    fn close(&self) -> CallFuture {
        let state = self.0.clone();
        Box::pin(async move {
            // Dropping the last handle ends the connection's task.
            state.lock().await.conn = None;
            Ok(())
        })
    }

    fn diagnostics(&self) -> Option<String> {
        let state = self.0.try_lock().ok()?;
        Some(format!(
            "redis-rs: {} connections from the SentinelClient",
            state.lookups
        ))
    }
}

struct Fred(fred::prelude::Client);

impl Subject for Fred {
    fn rpush(&self, key: String, value: u64) -> CallFuture {
        use fred::prelude::ListInterface;
        let client = self.0.clone();
        Box::pin(async move {
            client
                .rpush::<i64, _, _>(key, value.to_string())
                .await
                .map(drop)
                .map_err(|e| e.to_string().into())
        })
    }

    fn close(&self) -> CallFuture {
        use fred::prelude::ClientLike;
        let client = self.0.clone();
        Box::pin(async move { client.quit().await.map_err(|e| e.to_string().into()) })
    }
}

/// Connects a client of `kind` through the set's three sentinels with that
/// client's defaults; returns once it has a connection to the master.
async fn connect(kind: Kind, set: &SentinelSet) -> Result<Arc<dyn Subject>, String> {
    match kind {
        Kind::Resilis => {
            let client =
                resilis::Client::connect(&set.sentinel_url()).map_err(|e| e.to_string())?;
            // Ready before the first call, like the peers' constructors.
            client
                .wait_ready(Duration::from_secs(10))
                .await
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(Resilis(client)))
        }
        Kind::RedisRs => {
            let urls: Vec<String> = set.sentinels().iter().map(|s| s.url()).collect();
            let mut sentinel = redis::sentinel::SentinelClient::build(
                urls,
                MASTER_NAME.to_owned(),
                None,
                redis::sentinel::SentinelServerType::Master,
            )
            .map_err(|e| e.to_string())?;
            let conn = sentinel
                .get_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(RedisRs(Arc::new(tokio::sync::Mutex::new(
                RedisRsState {
                    sentinel,
                    conn: Some(conn),
                    lookups: 1,
                },
            )))))
        }
        Kind::Fred | Kind::FredReconnect => {
            use fred::prelude::{Builder, ClientLike, Config, ReconnectPolicy, ServerConfig};
            let hosts = set
                .sentinels()
                .iter()
                .map(|s| ("127.0.0.1", s.port()))
                .collect();
            let config = Config {
                server: ServerConfig::new_sentinel(hosts, MASTER_NAME),
                ..Config::default()
            };
            let mut builder = Builder::from_config(config);
            if kind == Kind::FredReconnect {
                builder.set_policy(ReconnectPolicy::new_exponential(0, 100, 30_000, 2));
            }
            let client = builder.build().map_err(|e| e.to_string())?;
            client.init().await.map_err(|e| e.to_string())?;
            Ok(Arc::new(Fred(client)))
        }
    }
}

async fn connect_capped(kind: Kind, set: &SentinelSet) -> Result<Arc<dyn Subject>, String> {
    match timeout(CONNECT_CAP, connect(kind, set)).await {
        Ok(result) => result,
        Err(_) => Err(format!("connect hung for {}", secs(CONNECT_CAP))),
    }
}

async fn close(subject: Arc<dyn Subject>) {
    let _ = timeout(CLOSE_CAP, subject.close()).await;
}

#[derive(Clone, Debug)]
enum Outcome {
    Ok,
    Err(String),
    /// Failed, but the client said it may have been applied.
    MaybeApplied(String),
    /// Still pending when the bench's cap ran out.
    Hung,
}

#[derive(Clone, Debug)]
struct Write {
    value: u64,
    start: Instant,
    end: Instant,
    outcome: Outcome,
}

/// RPUSHes 1, 2, 3... to `key`, one call at a time, [`CALL_PAUSE`] apart,
/// until `stop` (or [`MAX_WRITES`] / [`MAX_WRITING`]).
async fn writer(subject: Arc<dyn Subject>, key: String, stop: Arc<AtomicBool>) -> Vec<Write> {
    let mut writes = Vec::new();
    let began = Instant::now();
    for value in 1..=MAX_WRITES {
        if stop.load(Ordering::Relaxed) || began.elapsed() > MAX_WRITING {
            break;
        }
        let start = Instant::now();
        let outcome = match timeout(CAP, subject.rpush(key.clone(), value)).await {
            Ok(Ok(())) => Outcome::Ok,
            Ok(Err(e)) if e.maybe_applied => Outcome::MaybeApplied(e.text),
            Ok(Err(e)) => Outcome::Err(e.text),
            Err(_) => Outcome::Hung,
        };
        writes.push(Write {
            value,
            start,
            end: Instant::now(),
            outcome,
        });
        sleep(CALL_PAUSE).await;
    }
    writes
}

/// `MONITOR` on one node: the RPUSHes to `key` it executed for clients
/// (the replication link from its new master, once it is demoted, comes
/// from a fixture port and is left out): the server timestamp and the
/// value pushed.
struct Monitor {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, Option<u64>)>>,
}

fn monitor(addr: SocketAddr, fixture_ports: Vec<u16>, key: String) -> Result<Monitor, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let mut conn = RawConn::connect(addr).map_err(|e| format!("MONITOR connection: {e}"))?;
    conn.send(&["MONITOR"])
        .map_err(|e| format!("MONITOR: {e}"))?;
    conn.stream()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| format!("MONITOR read timeout: {e}"))?;
    let stream = conn
        .stream()
        .try_clone()
        .map_err(|e| format!("MONITOR clone: {e}"))?;
    let quoted_key = format!("\"{key}\"");
    let thread = std::thread::spawn(move || {
        // Keeps the connection open while the clone reads.
        let _conn = conn;
        let mut stamps = Vec::new();
        let mut reader = std::io::BufReader::new(stream);
        let mut line = Vec::new();
        let until = Instant::now() + MONITOR_CAP;
        // Bounded by `stop` and MONITOR_CAP; each read by its 100 ms timeout.
        while !s.load(Ordering::Relaxed) && Instant::now() < until {
            // On a timeout the bytes read so far stay in `line`.
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) if line.ends_with(b"\n") => {}
                Ok(_) | Err(_) => continue,
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            line.clear();
            // +1700000000.123456 [0 127.0.0.1:54321] "rpush" "key" "7"
            if !text.to_ascii_lowercase().contains("\"rpush\"") || !text.contains(&quoted_key) {
                continue;
            }
            if fixture_ports
                .iter()
                .any(|p| text.contains(&format!("127.0.0.1:{p}]")))
            {
                continue;
            }
            let value = text
                .trim_end()
                .rsplit(' ')
                .next()
                .and_then(|v| v.trim_matches('"').parse::<u64>().ok());
            if let Some(ts) = text
                .trim_start_matches('+')
                .split_whitespace()
                .next()
                .and_then(|t| t.parse::<f64>().ok())
            {
                stamps.push((ts, value));
            }
        }
        stamps
    });
    Ok(Monitor { stop, thread })
}

impl Monitor {
    /// The values of the RPUSHes executed strictly after `at` (`None`
    /// for a value that could not be read).
    fn after(self, at: SystemTime) -> Vec<Option<u64>> {
        self.stop.store(true, Ordering::Relaxed);
        let stamps = self.thread.join().unwrap_or_default();
        let at = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        stamps
            .into_iter()
            .filter(|&(t, _)| t > at)
            .map(|(_, value)| value)
            .collect()
    }
}

fn fixture_ports(set: &SentinelSet) -> Vec<u16> {
    set.nodes()
        .iter()
        .chain(set.sentinels())
        .map(|i| i.port())
        .collect()
}

/// The values of `key` on node `i`.
fn list_on(set: &SentinelSet, i: usize, key: &str) -> Result<HashSet<u64>, String> {
    match set.node(i).try_command(&["LRANGE", key, "0", "-1"]) {
        Ok(Reply::Array(items)) => items
            .iter()
            .map(|r| match r {
                Reply::Bulk(b) => String::from_utf8_lossy(b)
                    .parse()
                    .map_err(|e| format!("LRANGE item {b:?}: {e}")),
                other => Err(format!("LRANGE item {other:?}")),
            })
            .collect(),
        other => Err(format!("LRANGE on node {i}: {other:?}")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Failover,
    Kill,
    Sleep,
}

impl Fault {
    const ALL: [Fault; 3] = [Fault::Failover, Fault::Kill, Fault::Sleep];

    fn name(self) -> &'static str {
        match self {
            Fault::Failover => "failover",
            Fault::Kill => "kill",
            Fault::Sleep => "sleep",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Fault::Failover => "SENTINEL FAILOVER mymaster",
            Fault::Kill => "kill -9 of the master",
            Fault::Sleep => "DEBUG SLEEP 7 on the master",
        }
    }

    fn apply(self, set: &SentinelSet, master: usize) {
        match self {
            Fault::Failover => {
                set.failover();
            }
            Fault::Kill => set.kill_node(master),
            Fault::Sleep => set.debug_sleep(master, SLEEP_FOR),
        }
    }
}

/// What one run measured.
#[derive(Debug, Default)]
struct Run {
    /// From the fault to the first `+switch-master`.
    switch_after: Duration,
    /// From the switch to the old master being out (dead or `ROLE slave`);
    /// `None` if it still said master when the writer stopped.
    old_out_after: Option<Duration>,
    /// (1), in ms; `None`: no such write before the writer stopped.
    first_ok: Option<f64>,
    /// (2).
    acked_lost: usize,
    /// (3): RPUSHes the old master executed after the switch, and those
    /// of them whose call started after the switch (the others were sent
    /// before it: to a master asleep, say, which ran them on waking).
    old_after_switch: usize,
    old_sent_after_switch: usize,
    acked: usize,
    failed: usize,
    maybe_applied: usize,
    hung: usize,
    /// Values on the new master nobody wrote or that were never sent.
    invented: usize,
    /// How long the writer went on after the switch.
    written_after_switch: Duration,
    first_error: Option<String>,
    last_error: Option<String>,
    diagnostics: Option<String>,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "switch {} after the fault; old master out {}; first OK on the new master {}; \
             acked {} / failed {} / indeterminate {} / hung {}; acked lost {}; \
             writes to the old master after the switch {} (sent after it {}); invented {}; \
             wrote {} after the switch; first error: {}; last error: {}; {}",
            secs(self.switch_after),
            self.old_out_after
                .map_or("never".into(), |d| format!("{} after the switch", secs(d))),
            self.first_ok.map_or("never".into(), ms),
            self.acked,
            self.failed,
            self.maybe_applied,
            self.hung,
            self.acked_lost,
            self.old_after_switch,
            self.old_sent_after_switch,
            self.invented,
            secs(self.written_after_switch),
            short(self.first_error.as_deref().unwrap_or("none")),
            short(self.last_error.as_deref().unwrap_or("none")),
            self.diagnostics.as_deref().unwrap_or("")
        )
    }
}

/// Runs fixture code (which blocks, and panics with the log tails when the
/// deployment misbehaves) on a blocking thread; a panic becomes the run's
/// error instead of ending the bench.
async fn fixture<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => Ok(value),
        Err(e) => Err(match e.try_into_panic() {
            Ok(payload) => payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "fixture panicked".into()),
            Err(e) => e.to_string(),
        }),
    }
}

async fn fault_run(kind: Kind, fault: Fault, run: usize) -> Result<Run, String> {
    let set = Arc::new(fixture(SentinelSet::start).await?);
    let result = fault_run_on(kind, fault, run, &set).await;
    // Killing and reaping six processes blocks.
    let _ = fixture(move || drop(set)).await;
    result
}

async fn fault_run_on(
    kind: Kind,
    fault: Fault,
    run: usize,
    set: &Arc<SentinelSet>,
) -> Result<Run, String> {
    // A key of its own per run: nothing left over from another run's
    // client can count here.
    let key = format!("sbs:{}:{run}:{}", fault.name(), kind.slug());
    let s = set.clone();
    let old = fixture(move || s.master_index()).await?;
    let subject = connect_capped(kind, set).await?;

    // Every sentinel's `+switch-master`, read as it arrives; the first is
    // the clock. Each thread ends with its message, its sentinel's death
    // or SWITCH_TIMEOUT.
    let (switch_tx, switch_rx) = mpsc::channel::<(Instant, SystemTime)>();
    let s = set.clone();
    let watches = fixture(move || {
        (0..s.sentinels().len())
            .filter(|&j| s.sentinel(j).is_running())
            .map(|j| s.subscribe_switch_master(j))
            .collect::<Vec<_>>()
    })
    .await?;
    for mut watch in watches {
        let tx = switch_tx.clone();
        std::thread::spawn(move || {
            if let Some(switch) = watch.recv(SWITCH_TIMEOUT) {
                let wall = SystemTime::now() - switch.received.elapsed();
                let _ = tx.send((switch.received, wall));
            }
        });
    }
    drop(switch_tx);
    let mon = monitor(set.node(old).addr(), fixture_ports(set), key.clone())?;

    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(subject.clone(), key.clone(), stop.clone()));
    sleep(WARM_UP).await;

    let fault_at = Instant::now();
    let s = set.clone();
    let applied = fixture(move || fault.apply(&s, old)).await;
    let switch = match applied {
        Ok(()) => fixture(move || switch_rx.recv_timeout(SWITCH_TIMEOUT))
            .await
            .and_then(|r| r.map_err(|_| "no +switch-master".to_owned())),
        Err(e) => Err(e),
    };
    let switched = match switch {
        Ok(clock) => {
            let s = set.clone();
            fixture(move || s.wait_switch(old, NEW_MASTER_TIMEOUT))
                .await
                .map(|new| (clock, new))
        }
        Err(e) => Err(e),
    };
    let ((switch_at, switch_wall), new) = match switched {
        Ok(switched) => switched,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            let _ = timeout(CAP * 2, writing).await;
            close(subject).await;
            return Err(format!("the deployment did not fail over: {e}"));
        }
    };

    // Keep writing until the old master is out of the picture and every
    // client has had its chance on the new one.
    let s = set.clone();
    let old_out_at = fixture(move || {
        let mut out_at: Option<Instant> = None;
        let polls = MAX_AFTER_SWITCH.as_millis() / ROLE_POLL.as_millis() + 10;
        for _ in 0..polls {
            let now = Instant::now();
            if now >= switch_at + MAX_AFTER_SWITCH {
                break;
            }
            if out_at.is_none() {
                let node = s.node(old);
                if !node.is_running() || s.role(old).as_deref() == Some("slave") {
                    out_at = Some(Instant::now());
                }
            }
            if let Some(out) = out_at
                && now >= switch_at + AFTER_SWITCH
                && now >= out + AFTER_OLD_OUT
            {
                break;
            }
            std::thread::sleep(ROLE_POLL);
        }
        out_at
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    let stopped_at = Instant::now();
    let writes = timeout(CAP * 2, writing)
        .await
        .map_err(|_| "the writer did not stop".to_owned())?
        .map_err(|e| format!("writer task: {e}"))?;
    let diagnostics = subject.diagnostics();
    close(subject).await;

    // Replies may still be landing on the new master's replicas; the list
    // is read on the new master itself.
    sleep(Duration::from_millis(200)).await;
    let after_switch = mon.after(switch_wall);
    let s = set.clone();
    let k = key.clone();
    let (held, still_master) = fixture(move || {
        let held = list_on(&s, new, &k);
        (held, s.role(new))
    })
    .await?;
    let held = held?;
    if still_master.as_deref() != Some("master") {
        eprintln!("   note: node {new} says ROLE {still_master:?} at the end");
    }

    let mut run = Run {
        switch_after: switch_at.saturating_duration_since(fault_at),
        old_out_after: old_out_at.map(|t| t.saturating_duration_since(switch_at)),
        written_after_switch: stopped_at.saturating_duration_since(switch_at),
        diagnostics,
        ..Run::default()
    };
    let mut sent: HashSet<u64> = HashSet::new();
    for w in &writes {
        sent.insert(w.value);
        match &w.outcome {
            Outcome::Ok => {
                run.acked += 1;
                if !held.contains(&w.value) {
                    run.acked_lost += 1;
                }
            }
            Outcome::Err(_) => run.failed += 1,
            Outcome::MaybeApplied(_) => run.maybe_applied += 1,
            Outcome::Hung => run.hung += 1,
        }
    }
    run.invented = held.iter().filter(|v| !sent.contains(v)).count();
    run.first_ok = writes
        .iter()
        .filter(|w| {
            matches!(w.outcome, Outcome::Ok) && w.start >= switch_at && held.contains(&w.value)
        })
        .map(|w| w.end)
        .min()
        .map(|end| (end - switch_at).as_secs_f64() * 1000.0);
    let error = |w: &Write| match &w.outcome {
        Outcome::Err(e) | Outcome::MaybeApplied(e) => Some(e.clone()),
        Outcome::Hung => Some(format!("(capped after {})", secs(CAP))),
        Outcome::Ok => None,
    };
    let since_fault = || writes.iter().filter(|w| w.end >= fault_at);
    run.first_error = since_fault().find_map(error);
    run.last_error = since_fault().rev().find_map(error);
    let started: BTreeMap<u64, Instant> = writes.iter().map(|w| (w.value, w.start)).collect();
    run.old_after_switch = after_switch.len();
    run.old_sent_after_switch = after_switch
        .iter()
        .filter(|v| {
            v.and_then(|v| started.get(&v))
                .is_some_and(|&t| t >= switch_at)
        })
        .count();
    Ok(run)
}

struct Options {
    runs: usize,
    faults: Vec<Fault>,
    clients: Vec<Kind>,
}

fn options() -> Options {
    let mut o = Options {
        runs: 5,
        faults: Fault::ALL.to_vec(),
        clients: Kind::ALL.to_vec(),
    };
    let mut args = std::env::args().skip(1);
    // Bounded by the arguments given.
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--runs" => o.runs = value().parse().expect("--runs N"),
            "--faults" => {
                o.faults = value()
                    .split(',')
                    .map(|f| {
                        Fault::ALL
                            .into_iter()
                            .find(|k| k.name() == f)
                            .unwrap_or_else(|| panic!("unknown fault {f:?}"))
                    })
                    .collect()
            }
            "--clients" => {
                o.clients = value()
                    .split(',')
                    .map(|c| Kind::parse(c).unwrap_or_else(|| panic!("unknown client {c:?}")))
                    .collect()
            }
            _ => panic!(
                "unknown option {flag:?}; options: --runs N --faults failover,kill,sleep \
                 --clients resilis,redis-rs,fred,fred+reconnect"
            ),
        }
    }
    o
}

type Results = BTreeMap<(&'static str, Kind), Vec<Result<Run, String>>>;

async fn run_all(o: &Options) -> Results {
    let mut results = Results::new();
    for &fault in &o.faults {
        for run in 1..=o.runs {
            // Clients interleaved within each run: this machine is noisy.
            for &kind in &o.clients {
                eprintln!("== {} run {run}/{}: {}", fault.name(), o.runs, kind.name());
                let began = Instant::now();
                let result = fault_run(kind, fault, run).await;
                match &result {
                    Ok(r) => eprintln!("   {} (run took {})", r.describe(), secs(began.elapsed())),
                    Err(e) => eprintln!("   failed: {}", short(e)),
                }
                results
                    .entry((fault.name(), kind))
                    .or_default()
                    .push(result);
            }
        }
    }
    results
}

fn print_table(fault: Fault, o: &Options, results: &Results) {
    println!(
        "\n### {} ({} runs, a fresh SentinelSet each; min – median – max)\n",
        fault.title(),
        o.runs
    );
    println!(
        "| client | first OK on the new master after +switch-master | acked writes lost \
         | writes the old master ran after +switch-master | of which sent after it \
         | runs failed | commonest first error after the fault |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &kind in &o.clients {
        let Some(runs) = results.get(&(fault.name(), kind)) else {
            continue;
        };
        let ok: Vec<&Run> = runs.iter().flatten().collect();
        let col = |f: &dyn Fn(&Run) -> Option<f64>| -> Vec<Option<f64>> {
            ok.iter().map(|r| f(r)).collect()
        };
        let errors = runs.iter().map(|r| match r {
            Ok(r) => r.first_error.clone(),
            Err(e) => Some(format!("run failed: {e}")),
        });
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            kind.name(),
            spread(&col(&|r| r.first_ok), ms, "never"),
            spread(&col(&|r| Some(r.acked_lost as f64)), count, "-"),
            spread(&col(&|r| Some(r.old_after_switch as f64)), count, "-"),
            spread(&col(&|r| Some(r.old_sent_after_switch as f64)), count, "-"),
            runs.len() - ok.len(),
            commonest(errors)
        );
    }
}

fn main() {
    let o = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let began = Instant::now();
    let results = runtime.block_on(run_all(&o));
    // Client tasks (fred's reconnect loops) may still be running.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "\n## Sentinel side by side\n\nCommand: `cargo run --release -p resilis-tests --features \
         side-by-side --bin sentinel_side_by_side --{}{}` ({} in all)\n",
        if args.is_empty() { "" } else { " " },
        args.join(" "),
        secs(began.elapsed())
    );
    println!(
        "One writer RPUSHes unique values to a list, one call at a time, {} apart, each capped \
         at {}; a fresh SentinelSet (1 master, 2 replicas, 3 sentinels, down-after 2 s, \
         failover-timeout 10 s) per run. The clock is the first `+switch-master` any sentinel \
         publishes. \"First OK\": the end of the first acknowledged write that started after \
         the switch and whose value is on the new master, minus the switch. \"Acked lost\": \
         acknowledged values missing from the new master's list at the end. \"Writes to the \
         old master ran\": RPUSHes of the run's key the old master executed for clients \
         (`MONITOR`) with a server timestamp after the switch, no grace for a write in \
         flight; \"of which sent after it\": those whose call started after the switch (the \
         others were sent before it, e.g. to a master asleep that ran them on waking). The writer stops once the old master is out (dead or `ROLE slave`) for {} \
         and at least {} after the switch, at most {} after it; \"never\" means no OK on the \
         new master by then.",
        secs(CALL_PAUSE),
        secs(CAP),
        secs(AFTER_OLD_OUT),
        secs(AFTER_SWITCH),
        secs(MAX_AFTER_SWITCH),
    );
    for &fault in &o.faults {
        print_table(fault, &o, &results);
    }
}

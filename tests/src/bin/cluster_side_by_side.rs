//! Cluster side by side: the same cluster faults against resilis, redis-rs's
//! async `ClusterConnection` and fred's clustered client, each with its
//! defaults (fred also with the exponential reconnect policy from its docs,
//! since without one it does not recover from a dead node). A fresh 6-node
//! cluster (3 primaries, 3 replicas, node-timeout 1 s) for every run. On
//! demand, not in CI:
//!
//! ```text
//! cargo run --release -p resilis-tests --features side-by-side --bin cluster_side_by_side -- \
//!     [--runs 10] [--bench-runs 3] [--clients resilis,redis-rs,fred,fred+reconnect] \
//!     [--scenario kill,failover,sleep,storm,throughput]
//! ```
//!
//! Scenarios (`--runs` runs of the first three, `--bench-runs` of the last
//! two; clients interleaved within each run, since this machine is noisy):
//! - **kill**: a writer issues `SET {sbs}:s <i>` (resend-safe) and
//!   `INCR {sbs}:c` every 5 ms, each call in its own task; the primary of
//!   their slot is SIGKILLed. Time from the promotion (the instant the
//!   replica says it serves the slot) to the client's first OK, the
//!   longest stretch without an OK, what the calls answered, and whether
//!   the counter on the new primary is explained by the answers.
//! - **failover**: the same writer, `CLUSTER FAILOVER` on the replica; also
//!   the writes the old primary refused (MOVED, as `rejected_calls` of SET
//!   and INCR in its `INFO commandstats`) after it was demoted.
//! - **sleep**: the same writer, `DEBUG SLEEP 6` on the primary (hung: no
//!   RST, no MOVED). Whatever it acknowledges on waking is discarded when it
//!   rejoins as a replica: "acknowledged but lost".
//! - **storm**: slot ownership of an empty slot moves between two primaries
//!   every 100 ms for 10 s (`CLUSTER SETSLOT` IMPORTING + NODE on the new
//!   owner, which bumps its epoch, then NODE on the other primaries); the
//!   client sends `DEL` to a key of that slot (a write that leaves the slot
//!   empty) back to back. Slot-map reads (`CLUSTER SHARDS`/`SLOTS`/`NODES`,
//!   summed over all nodes' `INFO commandstats`) per minute.
//! - **throughput**: 64 tasks, each sequential GET/SET on random keys over
//!   the 3 shards, 1 s warm-up then 5 s measured; one cluster per run,
//!   shared by the clients in turn. Only ratios within a run mean much.
//!
//! Every call is capped at [`CAP`] (a little over resilis's own 5 s
//! deadline, so resilis answers first) so that a client that hangs cannot
//! hang the bench: a capped call counts as "hung" and may have applied.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use resilis_tests::cluster::PRIMARIES;
use resilis_tests::table::{commonest, count, ms, secs, short, spread};
use resilis_tests::{Cluster, Reply};
use tokio::task::JoinSet;
use tokio::time::{MissedTickBehavior, sleep, timeout};

/// The fault scenarios' keys: one slot, so one shard.
const SET_KEY: &str = "{sbs}:s";
const INCR_KEY: &str = "{sbs}:c";
const STORM_KEY: &str = "{storm}:k";
/// One SET and one INCR are issued every tick.
const CALL_EVERY: Duration = Duration::from_millis(5);
/// The bench's cap on one call.
const CAP: Duration = Duration::from_millis(5250);
/// Writing before the fault.
const WARM_UP: Duration = Duration::from_secs(1);
/// Writing after the promotion; a client not recovered by then is "never".
const AFTER_PROMOTION: Duration = Duration::from_secs(4);
/// The `DEBUG SLEEP` of the sleep scenario, and writing after the wake.
const SLEEP_FOR: Duration = Duration::from_secs(6);
const AFTER_WAKE: Duration = Duration::from_secs(4);
/// Bound for the promotion to become visible.
const PROMOTION_TIMEOUT: Duration = Duration::from_secs(15);
/// The storm's length and the time between two slot moves.
const STORM_FOR: Duration = Duration::from_secs(10);
const STORM_EVERY: Duration = Duration::from_millis(100);
/// Throughput: concurrent tasks, warm-up, measured time, key space.
const TP_TASKS: u64 = 64;
const TP_WARM_UP: Duration = Duration::from_secs(1);
const TP_MEASURE: Duration = Duration::from_secs(5);
const TP_KEYS: u64 = 10_000;
/// How long each client gets to connect before the run gives up on it.
const CONNECT_CAP: Duration = Duration::from_secs(15);
/// How long closing a client may take before it is just dropped.
const CLOSE_CAP: Duration = Duration::from_secs(2);

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

/// One client under test, behind uniform one-key calls.
trait Subject: Send + Sync {
    fn set(&self, key: String, value: String) -> CallFuture;
    fn incr(&self, key: String) -> CallFuture;
    fn get(&self, key: String) -> CallFuture;
    fn del(&self, key: String) -> CallFuture;
    fn close(&self) -> CallFuture;
    /// What the client itself counted, when it counts anything.
    fn diagnostics(&self) -> Option<String> {
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// resilis with its defaults (5 s command deadline).
    Resilis,
    /// redis-rs 1.8 `ClusterClient::get_async_connection`, defaults.
    RedisRs,
    /// fred 10.1 with `ServerConfig::Clustered`, defaults (no reconnect
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
            Kind::Resilis => "resilis (defaults)",
            Kind::RedisRs => "redis-rs 1.8 cluster-async (defaults)",
            Kind::Fred => "fred 10.1 clustered (defaults)",
            Kind::FredReconnect => "fred 10.1 + exponential reconnect",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "resilis" => Some(Kind::Resilis),
            "redis-rs" => Some(Kind::RedisRs),
            "fred" => Some(Kind::Fred),
            "fred+reconnect" => Some(Kind::FredReconnect),
            _ => None,
        }
    }

    /// Whether the client says "may have applied" when it does not know.
    /// The peers do not: any failure of theirs may have applied.
    fn says_indeterminate(self) -> bool {
        self == Kind::Resilis
    }
}

struct Resilis(resilis::Client);

impl Subject for Resilis {
    fn set(&self, key: String, value: String) -> CallFuture {
        let client = self.0.clone();
        Box::pin(async move { client.set(key, value).await.map_err(resilis_error) })
    }

    fn incr(&self, key: String) -> CallFuture {
        let client = self.0.clone();
        Box::pin(async move { client.incr(key).await.map(drop).map_err(resilis_error) })
    }

    fn get(&self, key: String) -> CallFuture {
        let client = self.0.clone();
        Box::pin(async move {
            client
                .get::<String>(key)
                .await
                .map(drop)
                .map_err(resilis_error)
        })
    }

    fn del(&self, key: String) -> CallFuture {
        let client = self.0.clone();
        Box::pin(async move {
            client
                .cmd("DEL")
                .arg(key)
                .query()
                .await
                .map(drop)
                .map_err(resilis_error)
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
        self.health()
    }
}

impl Resilis {
    fn health(&self) -> Option<String> {
        let h = self.0.cluster_health()?;
        Some(format!(
            "resilis cluster_health: generation {}, refreshes {}, moved {}, ask {}, rerouted after loss {}",
            h.generation, h.refreshes, h.moved, h.ask, h.rerouted_after_loss
        ))
    }
}

fn resilis_error(e: resilis::Error) -> CallError {
    CallError {
        maybe_applied: matches!(e, resilis::Error::Indeterminate { .. }),
        text: e.to_string(),
    }
}

struct RedisRs(redis::cluster_async::ClusterConnection);

impl RedisRs {
    fn run(&self, cmd: redis::Cmd) -> CallFuture {
        let mut conn = self.0.clone();
        Box::pin(async move {
            cmd.query_async::<redis::Value>(&mut conn)
                .await
                .map(drop)
                .map_err(|e| e.to_string().into())
        })
    }
}

impl Subject for RedisRs {
    fn set(&self, key: String, value: String) -> CallFuture {
        self.run(redis::cmd("SET").arg(key).arg(value).clone())
    }

    fn incr(&self, key: String) -> CallFuture {
        self.run(redis::cmd("INCR").arg(key).clone())
    }

    fn get(&self, key: String) -> CallFuture {
        self.run(redis::cmd("GET").arg(key).clone())
    }

    fn del(&self, key: String) -> CallFuture {
        self.run(redis::cmd("DEL").arg(key).clone())
    }

    fn close(&self) -> CallFuture {
        // Dropping the last handle ends its task.
        Box::pin(async { Ok(()) })
    }
}

struct Fred(fred::prelude::Client);

impl Subject for Fred {
    fn set(&self, key: String, value: String) -> CallFuture {
        use fred::prelude::KeysInterface;
        let client = self.0.clone();
        Box::pin(async move {
            client
                .set::<(), _, _>(key, value, None, None, false)
                .await
                .map_err(|e| e.to_string().into())
        })
    }

    fn incr(&self, key: String) -> CallFuture {
        use fred::prelude::KeysInterface;
        let client = self.0.clone();
        Box::pin(async move {
            client
                .incr::<i64, _>(key)
                .await
                .map(drop)
                .map_err(|e| e.to_string().into())
        })
    }

    fn get(&self, key: String) -> CallFuture {
        use fred::prelude::KeysInterface;
        let client = self.0.clone();
        Box::pin(async move {
            client
                .get::<Option<String>, _>(key)
                .await
                .map(drop)
                .map_err(|e| e.to_string().into())
        })
    }

    fn del(&self, key: String) -> CallFuture {
        use fred::prelude::KeysInterface;
        let client = self.0.clone();
        Box::pin(async move {
            client
                .del::<i64, _>(key)
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

/// Connects a client of `kind` to the cluster's three primaries (as seeds)
/// with that client's defaults.
async fn connect(kind: Kind, cluster: &Cluster) -> Result<Arc<dyn Subject>, String> {
    let seeds: Vec<u16> = (0..PRIMARIES).map(|i| cluster.node(i).port()).collect();
    match kind {
        Kind::Resilis => {
            let client =
                resilis::Client::connect(&cluster.seed_url()).map_err(|e| e.to_string())?;
            // Ready before the first call, like the peers' constructors.
            client
                .wait_ready(Duration::from_secs(10))
                .await
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(Resilis(client)))
        }
        Kind::RedisRs => {
            let urls: Vec<String> = seeds
                .iter()
                .map(|p| format!("redis://127.0.0.1:{p}"))
                .collect();
            let client = redis::cluster::ClusterClient::new(urls).map_err(|e| e.to_string())?;
            let conn = client
                .get_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(RedisRs(conn)))
        }
        Kind::Fred | Kind::FredReconnect => {
            use fred::prelude::{Builder, ClientLike, Config, ReconnectPolicy, ServerConfig};
            let hosts = seeds.iter().map(|&p| ("127.0.0.1", p)).collect();
            let config = Config {
                server: ServerConfig::new_clustered(hosts),
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

async fn connect_capped(kind: Kind, cluster: &Cluster) -> Result<Arc<dyn Subject>, String> {
    match timeout(CONNECT_CAP, connect(kind, cluster)).await {
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

async fn capped(call: CallFuture) -> Outcome {
    match timeout(CAP, call).await {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(e)) if e.maybe_applied => Outcome::MaybeApplied(e.text),
        Ok(Err(e)) => Outcome::Err(e.text),
        Err(_) => Outcome::Hung,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Set,
    Incr,
}

#[derive(Clone, Debug)]
struct Call {
    op: Op,
    start: Instant,
    end: Instant,
    outcome: Outcome,
}

/// Issues one SET and one INCR every [`CALL_EVERY`] until `stop`, each in
/// its own task and capped, and returns every call once all have ended.
async fn writer(subject: Arc<dyn Subject>, stop: Arc<AtomicBool>) -> Vec<Call> {
    let mut tasks = JoinSet::new();
    let mut tick = tokio::time::interval(CALL_EVERY);
    // A busy runtime delays ticks; it must not then fire a burst.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        i += 1;
        for op in [Op::Set, Op::Incr] {
            let call = match op {
                Op::Set => subject.set(SET_KEY.into(), i.to_string()),
                Op::Incr => subject.incr(INCR_KEY.into()),
            };
            tasks.spawn(async move {
                let start = Instant::now();
                let outcome = capped(call).await;
                Call {
                    op,
                    start,
                    end: Instant::now(),
                    outcome,
                }
            });
        }
    }
    let mut calls = Vec::new();
    while let Some(call) = tasks.join_next().await {
        calls.push(call.expect("a writer call panicked"));
    }
    calls.sort_by_key(|c| c.start);
    calls
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Kill,
    Failover,
    Sleep,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Failover => "failover",
            Fault::Sleep => "sleep",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Fault::Kill => "kill -9 of the primary",
            Fault::Failover => "CLUSTER FAILOVER on the replica",
            Fault::Sleep => "DEBUG SLEEP 6 on the primary",
        }
    }
}

/// What one run of a fault scenario measured.
#[derive(Debug, Default)]
struct FaultRun {
    /// From the fault to the promotion.
    promoted_after: Duration,
    /// First OK completed after the fault took effect, minus the
    /// promotion instant (negative: the client was faster than our poll).
    first_ok: Option<f64>,
    /// Like `first_ok`, counting only an OK after which every call started
    /// later succeeded: recovery means staying recovered.
    recovered: Option<f64>,
    /// Longest stretch without a completed OK from the last OK before the
    /// fault; `None` when no OK came after it.
    longest_gap: Option<Duration>,
    set_failed: usize,
    incr_ok: usize,
    incr_err: usize,
    incr_maybe: usize,
    hung: usize,
    counter: i64,
    /// Failover only: SET/INCR the old primary refused after the fault,
    /// in total and after the first 250 ms past the promotion.
    refused_on_old: Option<(u64, u64)>,
    first_error: Option<String>,
    diagnostics: Option<String>,
}

impl FaultRun {
    /// INCRs acknowledged but absent from the counter.
    fn lost(&self) -> i64 {
        (self.incr_ok as i64 - self.counter).max(0)
    }

    /// INCRs applied beyond those acknowledged: failed calls that applied,
    /// or a call applied twice.
    fn applied_beyond_acks(&self) -> i64 {
        (self.counter - self.incr_ok as i64).max(0)
    }

    /// Whether `counter` lies in what the answers allow: every OK applied,
    /// each call that may have applied did or not, nothing else. For a
    /// peer any failure may have applied; resilis says which.
    fn explained(&self, kind: Kind) -> bool {
        let mut maybe = self.incr_maybe + self.hung;
        if !kind.says_indeterminate() {
            maybe += self.incr_err;
        }
        self.counter >= self.incr_ok as i64 && self.counter <= (self.incr_ok + maybe) as i64
    }

    fn describe(&self) -> String {
        format!(
            "promoted {} after the fault; first OK {}; recovered {}; longest gap {}; SET failed {}; \
             INCR {} ok / {} err / {} indeterminate; {} hung; counter {} (lost {}, applied beyond acks {}); \
             refused on old primary {:?}; first error: {}; {}",
            secs(self.promoted_after),
            self.first_ok.map_or("never".into(), signed_ms),
            self.recovered.map_or("never".into(), signed_ms),
            self.longest_gap.map_or("not ended".into(), secs),
            self.set_failed,
            self.incr_ok,
            self.incr_err,
            self.incr_maybe,
            self.hung,
            self.counter,
            self.lost(),
            self.applied_beyond_acks(),
            self.refused_on_old,
            short(self.first_error.as_deref().unwrap_or("none")),
            self.diagnostics.as_deref().unwrap_or("")
        )
    }
}

/// Runs `f` on a blocking thread (the fixture blocks), with the instant it
/// returned.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> (T, Instant) {
    tokio::task::spawn_blocking(move || {
        let value = f();
        (value, Instant::now())
    })
    .await
    .unwrap_or_else(|p| std::panic::resume_unwind(p.into_panic()))
}

async fn start_cluster() -> Arc<Cluster> {
    blocking(|| Arc::new(Cluster::start())).await.0
}

async fn drop_cluster(cluster: Arc<Cluster>) {
    // Killing and reaping six processes blocks.
    blocking(move || drop(cluster)).await;
}

async fn fault_run(kind: Kind, fault: Fault) -> Result<FaultRun, String> {
    let cluster = start_cluster().await;
    let result = fault_run_on(kind, fault, &cluster).await;
    drop_cluster(cluster).await;
    result
}

async fn fault_run_on(
    kind: Kind,
    fault: Fault,
    cluster: &Arc<Cluster>,
) -> Result<FaultRun, String> {
    let c = cluster.clone();
    let ((slot, victim, replica), _) = blocking(move || {
        let slot = c.key_slot(INCR_KEY);
        let victim = c.primary_for_slot(slot);
        let replica = c.replicas_of(victim)[0];
        (slot, victim, replica)
    })
    .await;
    let subject = connect_capped(kind, cluster).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(subject.clone(), stop.clone()));
    sleep(WARM_UP).await;

    let stats_before = match fault {
        Fault::Failover => Some(refused_writes(cluster, victim).await),
        _ => None,
    };
    let fault_at = Instant::now();
    let c = cluster.clone();
    // The instant from which no OK can come from the old primary before
    // the promotion: it is dead, paused by the failover, or asleep.
    let (_, effective_at) = match fault {
        Fault::Kill => blocking(move || c.kill_node(victim)).await,
        Fault::Failover => blocking(move || c.failover(replica)).await,
        Fault::Sleep => blocking(move || c.pause(victim, SLEEP_FOR)).await,
    };
    let c = cluster.clone();
    let (_, promoted_at) =
        blocking(move || c.wait_primary_changed(slot, victim, PROMOTION_TIMEOUT)).await;
    let early_refused = match fault {
        Fault::Failover => {
            sleep(
                (promoted_at + Duration::from_millis(250))
                    .saturating_duration_since(Instant::now()),
            )
            .await;
            Some(refused_writes(cluster, victim).await)
        }
        _ => None,
    };
    let mut write_until = promoted_at + AFTER_PROMOTION;
    if fault == Fault::Sleep {
        write_until = write_until.max(fault_at + SLEEP_FOR + AFTER_WAKE);
    }
    sleep(write_until.saturating_duration_since(Instant::now())).await;
    stop.store(true, Ordering::Relaxed);
    let stop_at = Instant::now();
    let calls = writing.await.expect("writer task");
    let refused_on_old = match (stats_before, early_refused) {
        (Some(before), Some(early)) => {
            let after = refused_writes(cluster, victim).await;
            Some((after - before, after - early))
        }
        _ => None,
    };
    // Anything a client still holds has had its cap; let replies land.
    sleep(Duration::from_millis(200)).await;
    let c = cluster.clone();
    let (counter, _) = blocking(move || {
        let primary = c.primary_for_slot(slot);
        match c.command(primary, &["GET", INCR_KEY]) {
            Reply::Bulk(b) => String::from_utf8_lossy(&b).parse().unwrap_or(-1),
            Reply::Nil => 0,
            other => panic!("GET {INCR_KEY} on the new primary answered {other}"),
        }
    })
    .await;
    let diagnostics = subject.diagnostics();
    close(subject).await;

    let mut run = FaultRun {
        promoted_after: promoted_at - fault_at,
        counter,
        refused_on_old,
        diagnostics,
        ..FaultRun::default()
    };
    for call in &calls {
        let ok = matches!(call.outcome, Outcome::Ok);
        match (call.op, &call.outcome) {
            (Op::Set, _) if !ok => run.set_failed += 1,
            (Op::Incr, Outcome::Ok) => run.incr_ok += 1,
            (Op::Incr, Outcome::Err(_)) => run.incr_err += 1,
            (Op::Incr, Outcome::MaybeApplied(_)) => run.incr_maybe += 1,
            _ => {}
        }
        if matches!(call.outcome, Outcome::Hung) {
            run.hung += 1;
        }
    }
    run.first_ok = calls
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Ok) && c.end >= effective_at)
        .map(|c| c.end)
        .min()
        .map(|end| signed_between(promoted_at, end));
    let last_bad_start = calls
        .iter()
        .filter(|c| !matches!(c.outcome, Outcome::Ok))
        .map(|c| c.start)
        .max();
    run.recovered = calls
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Ok) && c.end >= effective_at)
        .filter(|c| last_bad_start.is_none_or(|bad| c.start > bad))
        .map(|c| c.end)
        .min()
        .map(|end| signed_between(promoted_at, end));
    run.longest_gap = longest_gap(&calls, fault_at, stop_at);
    run.first_error = calls
        .iter()
        .filter(|c| c.end >= fault_at)
        .filter_map(|c| match &c.outcome {
            Outcome::Err(e) | Outcome::MaybeApplied(e) => Some((c.end, e.clone())),
            Outcome::Hung => Some((c.end, format!("(capped after {})", secs(CAP)))),
            Outcome::Ok => None,
        })
        .min_by_key(|(end, _)| *end)
        .map(|(_, e)| e);
    Ok(run)
}

/// `to - from` in milliseconds, negative when `to` is earlier.
fn signed_between(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1000.0
    } else {
        -((from - to).as_secs_f64() * 1000.0)
    }
}

/// The longest time between two consecutive completed OKs, starting from
/// the last OK before `fault_at`; `None` if that stretch had not ended
/// when the writer stopped (no OK after the fault, or a last OK followed
/// by a longer silence than any before it).
fn longest_gap(calls: &[Call], fault_at: Instant, stop_at: Instant) -> Option<Duration> {
    let mut oks: Vec<Instant> = calls
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Ok))
        .map(|c| c.end)
        .collect();
    oks.sort();
    let anchor = oks
        .iter()
        .copied()
        .filter(|&t| t < fault_at)
        .max()
        .unwrap_or(fault_at);
    let mut previous = anchor;
    let mut longest = Duration::ZERO;
    for t in oks.into_iter().filter(|&t| t >= fault_at) {
        longest = longest.max(t - previous);
        previous = t;
    }
    // The writer issues a call every 5 ms: a silence this long at the end
    // is the outage still going on, not the end of the run.
    let open = stop_at.saturating_duration_since(previous);
    if previous == anchor || (open > longest && open > Duration::from_millis(250)) {
        return None;
    }
    Some(longest)
}

/// `INFO commandstats errorstats` of node `i` as text; `None` if it does
/// not answer.
fn info(cluster: &Cluster, i: usize) -> Option<String> {
    match cluster.try_command(i, &["INFO", "commandstats", "errorstats"]) {
        Ok(Reply::Bulk(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
        _ => None,
    }
}

/// Field `field` of the INFO line `name:k=v,k=v`, 0 when absent.
fn info_stat(info: &str, name: &str, field: &str) -> u64 {
    info.lines()
        .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
        .and_then(|fields| {
            fields.split(',').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == field).then(|| v.parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}

/// SET and INCR calls node `i` refused (a demoted primary refuses with
/// MOVED, counted as `rejected_calls`).
async fn refused_writes(cluster: &Arc<Cluster>, i: usize) -> u64 {
    let c = cluster.clone();
    blocking(move || {
        let text = info(&c, i).unwrap_or_default();
        info_stat(&text, "cmdstat_set", "rejected_calls")
            + info_stat(&text, "cmdstat_incr", "rejected_calls")
    })
    .await
    .0
}

/// Slot-map reads and MOVED replies, summed over all nodes.
#[derive(Clone, Copy, Debug, Default)]
struct MapStats {
    shards: u64,
    slots: u64,
    nodes: u64,
    moved: u64,
}

impl MapStats {
    fn of(cluster: &Cluster) -> MapStats {
        let mut total = MapStats::default();
        for i in 0..cluster.nodes().len() {
            let Some(text) = info(cluster, i) else {
                continue;
            };
            total.shards += info_stat(&text, "cmdstat_cluster|shards", "calls");
            total.slots += info_stat(&text, "cmdstat_cluster|slots", "calls");
            total.nodes += info_stat(&text, "cmdstat_cluster|nodes", "calls");
            total.moved += info_stat(&text, "errorstat_MOVED", "count");
        }
        total
    }

    fn map_reads(&self) -> u64 {
        self.shards + self.slots + self.nodes
    }

    fn minus(self, before: MapStats) -> MapStats {
        MapStats {
            shards: self.shards - before.shards,
            slots: self.slots - before.slots,
            nodes: self.nodes - before.nodes,
            moved: self.moved - before.moved,
        }
    }
}

#[derive(Debug, Default)]
struct StormRun {
    map_reads_per_min: f64,
    moved_per_min: f64,
    delta: MapStats,
    ok: usize,
    failed: usize,
    hung: usize,
    moves_failed: usize,
    first_error: Option<String>,
    diagnostics: Option<String>,
}

async fn storm_run(kind: Kind) -> Result<StormRun, String> {
    let cluster = start_cluster().await;
    let result = storm_run_on(kind, &cluster).await;
    drop_cluster(cluster).await;
    result
}

async fn storm_run_on(kind: Kind, cluster: &Arc<Cluster>) -> Result<StormRun, String> {
    let c = cluster.clone();
    let ((slot, first_owner), _) = blocking(move || {
        let slot = c.key_slot(STORM_KEY);
        (slot, c.primary_for_slot(slot))
    })
    .await;
    let other = (first_owner + 1) % PRIMARIES;
    let subject = connect_capped(kind, cluster).await?;
    // The client has its map and a connection to the slot's owner.
    let _ = capped(subject.del(STORM_KEY.into())).await;
    let c = cluster.clone();
    let (before, started) = blocking(move || MapStats::of(&c)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let subject = subject.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut run = StormRun::default();
            while !stop.load(Ordering::Relaxed) {
                match capped(subject.del(STORM_KEY.into())).await {
                    Outcome::Ok => run.ok += 1,
                    Outcome::Err(e) | Outcome::MaybeApplied(e) => {
                        run.failed += 1;
                        run.first_error.get_or_insert(e);
                    }
                    Outcome::Hung => {
                        run.hung += 1;
                        run.first_error
                            .get_or_insert(format!("(capped after {})", secs(CAP)));
                    }
                }
            }
            run
        })
    };
    let c = cluster.clone();
    let (moves_failed, _) = blocking(move || {
        let mut failed = 0;
        let mut owner = first_owner;
        let mut next = Instant::now();
        while started.elapsed() < STORM_FOR {
            let to = if owner == first_owner {
                other
            } else {
                first_owner
            };
            if move_empty_slot(&c, slot, owner, to) {
                owner = to;
            } else {
                failed += 1;
            }
            next += STORM_EVERY;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        failed
    })
    .await;
    let c = cluster.clone();
    let (after, ended) = blocking(move || MapStats::of(&c)).await;
    stop.store(true, Ordering::Relaxed);
    let mut run = writing.await.expect("storm writer");
    run.diagnostics = subject.diagnostics();
    close(subject).await;
    let minutes = (ended - started).as_secs_f64() / 60.0;
    run.delta = after.minus(before);
    run.map_reads_per_min = run.delta.map_reads() as f64 / minutes;
    run.moved_per_min = run.delta.moved as f64 / minutes;
    run.moves_failed = moves_failed;
    Ok(run)
}

/// Moves an empty `slot` from primary `from` to primary `to` without a
/// migration: IMPORTING then NODE on `to` (which bumps its config epoch,
/// so gossip agrees), then NODE on every other primary. Raw commands
/// only: no `CLUSTER SHARDS` of the fixture's may pollute the count.
/// False if a node refused.
fn move_empty_slot(cluster: &Cluster, slot: u16, from: usize, to: usize) -> bool {
    let slot = slot.to_string();
    let from_id = cluster.node(from).id().to_owned();
    let to_id = cluster.node(to).id().to_owned();
    let ok = |i: usize, args: &[&str]| matches!(cluster.try_command(i, args), Ok(Reply::Simple(s)) if s == "OK");
    if !ok(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id])
        || !ok(to, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id])
    {
        return false;
    }
    (0..PRIMARIES)
        .filter(|&i| i != to)
        .all(|i| ok(i, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]))
}

#[derive(Debug, Default)]
struct ThroughputRun {
    ops_per_sec: f64,
    errors: u64,
    first_error: Option<String>,
}

/// A small, seeded pseudo-random sequence (SplitMix64): key choice only.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

async fn throughput_run(kind: Kind, cluster: &Cluster) -> Result<ThroughputRun, String> {
    let subject = connect_capped(kind, cluster).await?;
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let (measure_from, measure_to) = (began + TP_WARM_UP, began + TP_WARM_UP + TP_MEASURE);
    let mut tasks = JoinSet::new();
    for task in 0..TP_TASKS {
        let (subject, ok, errors) = (subject.clone(), ok.clone(), errors.clone());
        tasks.spawn(async move {
            let mut state = task;
            let mut first_error = None;
            while Instant::now() < measure_to {
                let r = next_random(&mut state);
                let key = format!("tp:{}", r % TP_KEYS);
                let call = if r & (1 << 40) == 0 {
                    subject.set(key, "0123456789abcdef".into())
                } else {
                    subject.get(key)
                };
                let outcome = capped(call).await;
                let now = Instant::now();
                if now < measure_from || now >= measure_to {
                    continue;
                }
                match outcome {
                    Outcome::Ok => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::Err(e) | Outcome::MaybeApplied(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert(e);
                    }
                    Outcome::Hung => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert_with(|| "(capped)".to_owned());
                    }
                }
            }
            first_error
        });
    }
    let mut first_error = None;
    while let Some(e) = tasks.join_next().await {
        if let Some(e) = e.expect("throughput task") {
            first_error.get_or_insert(e);
        }
    }
    close(subject).await;
    Ok(ThroughputRun {
        ops_per_sec: ok.load(Ordering::Relaxed) as f64 / TP_MEASURE.as_secs_f64(),
        errors: errors.load(Ordering::Relaxed),
        first_error,
    })
}

fn signed_ms(ms: f64) -> String {
    if ms.abs() < 1000.0 {
        format!("{ms:+.0} ms")
    } else {
        format!("{:+.2} s", ms / 1000.0)
    }
}

struct Options {
    runs: usize,
    bench_runs: usize,
    clients: Vec<Kind>,
    scenarios: Vec<String>,
}

const SCENARIOS: [&str; 5] = ["kill", "failover", "sleep", "storm", "throughput"];

fn options() -> Options {
    let mut o = Options {
        runs: 10,
        bench_runs: 0,
        clients: Kind::ALL.to_vec(),
        scenarios: SCENARIOS.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--runs" => o.runs = value().parse().expect("--runs N"),
            "--bench-runs" => o.bench_runs = value().parse().expect("--bench-runs N"),
            "--clients" => {
                o.clients = value()
                    .split(',')
                    .map(|c| Kind::parse(c).unwrap_or_else(|| panic!("unknown client {c:?}")))
                    .collect()
            }
            "--scenario" => {
                o.scenarios = value().split(',').map(str::to_owned).collect();
                if let Some(s) = o
                    .scenarios
                    .iter()
                    .find(|s| !SCENARIOS.contains(&s.as_str()))
                {
                    panic!("unknown scenario {s:?}; scenarios: {SCENARIOS:?}");
                }
            }
            _ => panic!(
                "unknown option {flag:?}; options: --runs N --bench-runs N \
                 --clients resilis,redis-rs,fred,fred+reconnect \
                 --scenario kill,failover,sleep,storm,throughput"
            ),
        }
    }
    if o.bench_runs == 0 {
        o.bench_runs = o.runs.min(3);
    }
    o
}

/// Everything measured, per scenario, per client, in run order.
#[derive(Default)]
struct Results {
    faults: BTreeMap<(&'static str, Kind), Vec<Result<FaultRun, String>>>,
    storms: BTreeMap<Kind, Vec<Result<StormRun, String>>>,
    throughput: BTreeMap<Kind, Vec<Result<ThroughputRun, String>>>,
}

async fn run_all(o: &Options) -> Results {
    let mut results = Results::default();
    for fault in [Fault::Kill, Fault::Failover, Fault::Sleep] {
        if !o.scenarios.iter().any(|s| s == fault.name()) {
            continue;
        }
        for run in 1..=o.runs {
            for &kind in &o.clients {
                eprintln!("== {} run {run}/{}: {}", fault.name(), o.runs, kind.name());
                let result = fault_run(kind, fault).await;
                match &result {
                    Ok(r) => eprintln!("   {}", r.describe()),
                    Err(e) => eprintln!("   failed: {e}"),
                }
                results
                    .faults
                    .entry((fault.name(), kind))
                    .or_default()
                    .push(result);
            }
        }
    }
    if o.scenarios.iter().any(|s| s == "storm") {
        for run in 1..=o.bench_runs {
            for &kind in &o.clients {
                eprintln!("== storm run {run}/{}: {}", o.bench_runs, kind.name());
                let result = storm_run(kind).await;
                match &result {
                    Ok(r) => eprintln!(
                        "   {:.0} map reads/min ({:?}), {:.0} MOVED/min; DEL {} ok / {} failed / {} hung; \
                         {} slot moves failed; first error: {}; {}",
                        r.map_reads_per_min,
                        r.delta,
                        r.moved_per_min,
                        r.ok,
                        r.failed,
                        r.hung,
                        r.moves_failed,
                        short(r.first_error.as_deref().unwrap_or("none")),
                        r.diagnostics.as_deref().unwrap_or("")
                    ),
                    Err(e) => eprintln!("   failed: {e}"),
                }
                results.storms.entry(kind).or_default().push(result);
            }
        }
    }
    if o.scenarios.iter().any(|s| s == "throughput") {
        for run in 1..=o.bench_runs {
            let cluster = start_cluster().await;
            // Rotate who goes first: the cluster warms up as it serves.
            let n = o.clients.len();
            for k in 0..n {
                let kind = o.clients[(k + run - 1) % n];
                eprintln!("== throughput run {run}/{}: {}", o.bench_runs, kind.name());
                let result = throughput_run(kind, &cluster).await;
                match &result {
                    Ok(r) => eprintln!(
                        "   {:.0} ops/s, {} errors; first error: {}",
                        r.ops_per_sec,
                        r.errors,
                        short(r.first_error.as_deref().unwrap_or("none"))
                    ),
                    Err(e) => eprintln!("   failed: {e}"),
                }
                results.throughput.entry(kind).or_default().push(result);
            }
            drop_cluster(cluster).await;
        }
    }
    results
}

fn print_fault_table(fault: Fault, o: &Options, results: &Results) {
    let Some(_) = o
        .clients
        .iter()
        .find(|&&k| results.faults.contains_key(&(fault.name(), k)))
    else {
        return;
    };
    let failover = fault == Fault::Failover;
    println!(
        "\n### {} ({} runs, fresh cluster each; min – median – max)\n",
        fault.title(),
        o.runs
    );
    print!(
        "| client | promoted after the fault | first OK after promotion \
         | recovered for good after promotion | longest gap without OK | SET failed | INCR failed | INCR indeterminate | calls hung (capped) | acked INCRs lost \
         | INCRs applied beyond acks | counter explained |"
    );
    if failover {
        print!(" SET/INCR refused (MOVED) by the old primary: total / after +250 ms |");
    }
    println!(" commonest first error |");
    println!(
        "|---|---|---|---|---|---|---|---|---|---|---|---|{}---|",
        if failover { "---|" } else { "" }
    );
    for &kind in &o.clients {
        let Some(runs) = results.faults.get(&(fault.name(), kind)) else {
            continue;
        };
        let ok: Vec<&FaultRun> = runs.iter().flatten().collect();
        let col = |f: &dyn Fn(&FaultRun) -> Option<f64>| -> Vec<Option<f64>> {
            ok.iter().map(|r| f(r)).collect()
        };
        let explained = ok.iter().filter(|r| r.explained(kind)).count();
        let mut row = format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} |",
            kind.name(),
            spread(
                &col(&|r| Some(r.promoted_after.as_secs_f64() * 1000.0)),
                ms,
                "-"
            ),
            spread(&col(&|r| r.first_ok), signed_ms, "never"),
            spread(&col(&|r| r.recovered), signed_ms, "not in the run"),
            spread(
                &col(&|r| r.longest_gap.map(|g| g.as_secs_f64() * 1000.0)),
                ms,
                "not ended in the run"
            ),
            spread(&col(&|r| Some(r.set_failed as f64)), count, "-"),
            spread(&col(&|r| Some(r.incr_err as f64)), count, "-"),
            spread(&col(&|r| Some(r.incr_maybe as f64)), count, "-"),
            spread(&col(&|r| Some(r.hung as f64)), count, "-"),
            spread(&col(&|r| Some(r.lost() as f64)), count, "-"),
            spread(&col(&|r| Some(r.applied_beyond_acks() as f64)), count, "-"),
            explained,
            ok.len(),
        );
        if failover {
            row += &format!(
                " {} / {} |",
                spread(
                    &col(&|r| r.refused_on_old.map(|(total, _)| total as f64)),
                    count,
                    "-"
                ),
                spread(
                    &col(&|r| r.refused_on_old.map(|(_, late)| late as f64)),
                    count,
                    "-"
                )
            );
        }
        let errors: Vec<Option<String>> = runs
            .iter()
            .map(|r| match r {
                Ok(r) => r.first_error.clone(),
                Err(e) => Some(format!("run failed: {e}")),
            })
            .collect();
        row += &format!(" {} |", commonest(errors));
        println!("{row}");
    }
}

fn print_storm_table(o: &Options, results: &Results) {
    if results.storms.is_empty() {
        return;
    }
    println!(
        "\n### Redirect storm: an empty slot moved between two primaries every {} ms for {} \
         ({} runs; min – median – max)\n",
        STORM_EVERY.as_millis(),
        secs(STORM_FOR),
        o.bench_runs
    );
    println!(
        "| client | slot-map reads per minute (CLUSTER SHARDS+SLOTS+NODES, all nodes) \
         | MOVED replies per minute | DEL ok | DEL failed | DEL hung | slot moves refused | commonest first error |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &kind in &o.clients {
        let Some(runs) = results.storms.get(&kind) else {
            continue;
        };
        let ok: Vec<&StormRun> = runs.iter().flatten().collect();
        let col = |f: &dyn Fn(&StormRun) -> f64| -> Vec<Option<f64>> {
            ok.iter().map(|r| Some(f(r))).collect()
        };
        let errors = runs.iter().map(|r| match r {
            Ok(r) => r.first_error.clone(),
            Err(e) => Some(format!("run failed: {e}")),
        });
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            kind.name(),
            spread(&col(&|r| r.map_reads_per_min), count, "-"),
            spread(&col(&|r| r.moved_per_min), count, "-"),
            spread(&col(&|r| r.ok as f64), count, "-"),
            spread(&col(&|r| r.failed as f64), count, "-"),
            spread(&col(&|r| r.hung as f64), count, "-"),
            spread(&col(&|r| r.moves_failed as f64), count, "-"),
            commonest(errors)
        );
    }
}

fn print_throughput_table(o: &Options, results: &Results) {
    if results.throughput.is_empty() {
        return;
    }
    let reference = o.clients[0];
    println!(
        "\n### Throughput: {TP_TASKS} tasks of sequential GET/SET on random keys over 3 shards, \
         {} measured after {} ({} runs, one cluster per run; min – median – max)\n",
        secs(TP_MEASURE),
        secs(TP_WARM_UP),
        o.bench_runs
    );
    println!(
        "| client | ops/s | ratio to {} in the same run | errors | commonest first error |",
        reference.name()
    );
    println!("|---|---|---|---|---|");
    let ops = |kind: Kind| -> Vec<Option<f64>> {
        results.throughput.get(&kind).map_or(Vec::new(), |runs| {
            runs.iter()
                .map(|r| r.as_ref().ok().map(|r| r.ops_per_sec))
                .collect()
        })
    };
    let reference_ops = ops(reference);
    for &kind in &o.clients {
        let Some(runs) = results.throughput.get(&kind) else {
            continue;
        };
        let mine = ops(kind);
        let ratios: Vec<Option<f64>> = mine
            .iter()
            .zip(&reference_ops)
            .map(|(m, r)| Some(m.as_ref()? / r.as_ref().filter(|r| **r > 0.0)?))
            .collect();
        let errors = runs.iter().map(|r| match r {
            Ok(r) => r.first_error.clone(),
            Err(e) => Some(format!("run failed: {e}")),
        });
        println!(
            "| {} | {} | {} | {} | {} |",
            kind.name(),
            spread(&mine, count, "failed"),
            spread(&ratios, |v| format!("{v:.2}"), "-"),
            spread(
                &runs
                    .iter()
                    .map(|r| r.as_ref().ok().map(|r| r.errors as f64))
                    .collect::<Vec<_>>(),
                count,
                "-"
            ),
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
    let results = runtime.block_on(run_all(&o));
    // Client tasks (fred's reconnect loops) may still be running.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!(
        "\n## Cluster side by side\n\nCommand: `cargo run --release -p resilis-tests --features side-by-side \
         --bin cluster_side_by_side --{}{}`\n",
        if args.is_empty() { "" } else { " " },
        args.join(" ")
    );
    println!(
        "Fault scenarios: one `SET {SET_KEY} <i>` and one `INCR {INCR_KEY}` every {} ms, each \
         capped at {}; a fresh 6-node cluster (node-timeout 1 s) per run. \"First OK after \
         promotion\": the first OK completed once the old primary could no longer answer, minus \
         the instant the replica said it serves the slot (negative: the client beat the \
         fixture's 20 ms poll; in the sleep scenario it may be the old primary's ack on \
         waking). \"Recovered for good\": the first such OK after which every call started \
         later succeeded. \"Longest gap\": the longest time between two completed OKs from \
         the last OK before the fault. The writer stops {} after the promotion (sleep: at \
         least {} after the wake); \"not in the run\" means later than that. \"Counter explained\": the INCR \
         counter on the new primary lies in [acked, acked + indeterminate + hung (+ failed, \
         for the peers, which never say whether a failed call applied)]; above it, an INCR \
         applied twice. An INCR acked by a killed primary just before its death may be lost \
         by Redis's asynchronous replication whatever the client does.",
        CALL_EVERY.as_millis(),
        secs(CAP),
        secs(AFTER_PROMOTION),
        secs(AFTER_WAKE),
    );
    for fault in [Fault::Kill, Fault::Failover, Fault::Sleep] {
        print_fault_table(fault, &o, &results);
    }
    print_storm_table(&o, &results);
    print_throughput_table(&o, &results);
}

//! The soak: a mixed workload through the fault proxy while seeded random
//! faults hit the connection (SIGKILL + restart, silent partitions, resets,
//! latency, replies cut mid-frame, garbage, idle drops), for a bounded
//! time, then one summary. Run by `src/bin/soak.rs` (`--duration 60s`) and,
//! shortly, by `tests/fault_soak.rs` in CI.
//!
//! What it proves, from the summary:
//! - nothing hangs: every call ends, and the slowest against its deadline;
//! - nothing acknowledged is lost: every SET Redis acknowledged is read back
//!   from the server afterwards (the server runs with `appendfsync always`,
//!   so a SIGKILL cannot lose what it acknowledged); no SET reported as not
//!   applied (refused during an outage, out of time in the queue) is on the
//!   server afterwards; each INCR counter is at least its acknowledged
//!   increments and at most those plus the indeterminate ones;
//! - nothing panics (counted by a panic hook, including in the driver task);
//! - memory stays bounded (peak RSS of the whole process).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use resilis::{Client, OfflineMode, Source};
use tokio::time::{Instant, sleep};

use crate::harness::{
    COMMAND_TIMEOUT, Ended, blocking, fast_options, panics_so_far, proc_status_kib, timed,
};
use crate::proxy::GARBAGE;
use crate::raw::Reply;
use crate::{Direction, FaultProxy, IdleAction, RedisServer};

/// How long, with what seed, how many concurrent workers.
#[derive(Debug, Clone, Copy)]
pub struct SoakOptions {
    pub duration: Duration,
    pub seed: u64,
    pub workers: usize,
    /// What commands do while Redis is unavailable.
    pub offline: OfflineMode,
}

impl Default for SoakOptions {
    fn default() -> Self {
        SoakOptions {
            duration: Duration::from_secs(60),
            seed: 1,
            workers: 8,
            offline: OfflineMode::Fallback,
        }
    }
}

/// The one summary a soak prints.
#[derive(Debug, Clone, Default)]
pub struct SoakSummary {
    pub duration: Duration,
    pub seed: u64,
    pub ops: u64,
    pub ok: u64,
    /// Answered by the fallback cache while Redis was unavailable.
    pub fallback: u64,
    pub indeterminate: u64,
    pub timed_out: u64,
    /// Refused at once: connection down (no fallback for that command).
    pub down: u64,
    pub backpressure: u64,
    /// `-LOADING` replies: Redis was still loading its dataset after a
    /// restart although the client's handshake had succeeded (not applied).
    pub loading: u64,
    /// Any other error; listed, since there should be none.
    pub other: Vec<String>,
    /// Calls still pending past deadline + slack + 5 s.
    pub hung: u64,
    pub max_latency: Duration,
    pub deadline: Duration,
    /// SETs Redis acknowledged, and how many of them the server lacks.
    pub acked_writes: u64,
    pub acked_writes_lost: u64,
    /// INCRs: acknowledged, indeterminate, and counters outside
    /// [acknowledged, acknowledged + indeterminate].
    pub incr_acked: u64,
    pub incr_indeterminate: u64,
    pub incr_counters_out_of_bounds: u64,
    /// GETs from Redis that returned something else than the acknowledged value.
    pub wrong_reads: u64,
    /// SETs reported as certainly not applied (`Error::is_not_applied`:
    /// timed out in the queue, refused while down, backpressure), and how
    /// many of their keys exist afterwards: must be 0.
    pub not_applied_writes: u64,
    pub phantom_writes: u64,
    pub offline: Option<OfflineMode>,
    pub faults: Vec<(&'static str, u64)>,
    pub reconnects: u64,
    pub panics: u64,
    pub peak_rss_kib: u64,
}

impl SoakSummary {
    /// Acknowledged writes that are gone: must be 0.
    pub fn lost(&self) -> u64 {
        self.acked_writes_lost + self.incr_counters_out_of_bounds
    }
}

impl fmt::Display for SoakSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        writeln!(
            f,
            "soak {:?} seed {} ({:?}): {} ops: {} ok, {} fallback, {} indeterminate, {} timed out, {} down, \
             {} backpressure, {} LOADING, {} other, {} hung",
            self.duration,
            self.seed,
            self.offline.unwrap_or_default(),
            self.ops,
            self.ok,
            self.fallback,
            self.indeterminate,
            self.timed_out,
            self.down,
            self.backpressure,
            self.loading,
            self.other.len(),
            self.hung
        )?;
        writeln!(
            f,
            "  max latency {:?} (deadline {:?}); faults: {}; reconnects {}",
            self.max_latency,
            self.deadline,
            faults.join(", "),
            self.reconnects
        )?;
        writeln!(
            f,
            "  acknowledged writes verified on the server: {} of {} (lost {}); \
             INCR: {} acked, {} indeterminate, {} counters out of bounds; \
             wrong reads {}; SETs reported not applied: {}, found on the server anyway: {}",
            self.acked_writes - self.acked_writes_lost,
            self.acked_writes,
            self.acked_writes_lost,
            self.incr_acked,
            self.incr_indeterminate,
            self.incr_counters_out_of_bounds,
            self.wrong_reads,
            self.not_applied_writes,
            self.phantom_writes
        )?;
        if !self.other.is_empty() {
            let mut distinct: Vec<&String> = self.other.iter().collect();
            distinct.sort();
            distinct.dedup();
            writeln!(f, "  other errors: {distinct:?}")?;
        }
        write!(
            f,
            "  lost {}, panics {}, peak RSS {} KiB",
            self.lost(),
            self.panics,
            self.peak_rss_kib
        )
    }
}

/// SplitMix64: seeded, tiny, good enough to pick faults and operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (ms).
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct WorkerLog {
    ops: u64,
    ok: u64,
    fallback: u64,
    indeterminate: u64,
    timed_out: u64,
    down: u64,
    backpressure: u64,
    loading: u64,
    other: Vec<String>,
    hung: u64,
    max_latency: Duration,
    /// key → value Redis acknowledged.
    acked: Vec<(String, String)>,
    /// key → value the fallback cache took.
    /// Keys of SETs reported as certainly not applied.
    not_applied: Vec<(String, String)>,
    incr_key: String,
    incr_acked: u64,
    incr_indeterminate: u64,
    wrong_reads: u64,
}

impl WorkerLog {
    fn count(&mut self, ended: &Ended, took: Duration) {
        self.ops += 1;
        self.max_latency = self.max_latency.max(took);
        match ended {
            Ended::Ok => {}
            Ended::TimedOut => self.timed_out += 1,
            Ended::Indeterminate => self.indeterminate += 1,
            Ended::Down => self.down += 1,
            Ended::Backpressure => self.backpressure += 1,
            Ended::Loading => self.loading += 1,
            Ended::Other(e) => self.other.push(e.clone()),
            Ended::Hung => self.hung += 1,
        }
    }

    fn source(&mut self, source: Source) {
        match source {
            Source::Redis => self.ok += 1,
            Source::Fallback => self.fallback += 1,
        }
    }
}

async fn worker(client: Client, id: usize, seed: u64, stop: Arc<AtomicBool>) -> WorkerLog {
    let mut rng = Rng(seed);
    let mut log = WorkerLog {
        incr_key: format!("soak:counter:{id}"),
        ..WorkerLog::default()
    };
    let mut n = 0u64;
    // Bounded by `stop`, set when the soak's time is up.
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        match rng.below(10) {
            // SET a fresh key: every acknowledged one is checked afterwards.
            0..=3 => {
                let key = format!("soak:{id}:{n}");
                let value = format!("v{n}");
                let (ended, took, result) = timed_result(client.set(&key, &value)).await;
                log.count(&ended, took);
                match result {
                    // Writes are never applied locally: Ok is Redis's.
                    Some(Ok(())) => {
                        log.ok += 1;
                        log.acked.push((key, value));
                    }
                    // Not LOADING: a SET retried after a lost connection may
                    // meet it on the next one, having run on the first.
                    Some(Err(e)) if e.is_not_applied() => {
                        log.not_applied.push((key, value));
                    }
                    _ => {}
                }
            }
            // GET a key Redis acknowledged: it must read back the same.
            4..=6 if !log.acked.is_empty() => {
                let i = rng.below(log.acked.len() as u64) as usize;
                let (key, value) = log.acked[i].clone();
                let (ended, took, result) =
                    timed_result(client.get_with_source::<String>(&key)).await;
                log.count(&ended, took);
                if let Some(Ok(sourced)) = result {
                    log.source(sourced.source);
                    if sourced.source == Source::Redis && sourced.value.as_deref() != Some(&value) {
                        log.wrong_reads += 1;
                    }
                }
            }
            // INCR: not idempotent, never resent.
            7..=8 => {
                let (ended, took) = timed(COMMAND_TIMEOUT, client.incr(&log.incr_key)).await;
                log.count(&ended, took);
                match ended {
                    Ended::Ok => {
                        log.ok += 1;
                        log.incr_acked += 1;
                    }
                    Ended::Indeterminate => log.incr_indeterminate += 1,
                    _ => {}
                }
            }
            // EXISTS on a scratch key.
            _ => {
                let (ended, took) =
                    timed(COMMAND_TIMEOUT, client.exists(format!("soak:none:{id}"))).await;
                log.count(&ended, took);
                if ended == Ended::Ok {
                    log.ok += 1;
                }
            }
        }
        sleep(Duration::from_millis(1)).await;
    }
    log
}

/// Like [`timed`], keeping the result for the caller.
async fn timed_result<T>(
    call: impl std::future::Future<Output = Result<T, resilis::Error>>,
) -> (Ended, Duration, Option<Result<T, resilis::Error>>) {
    let start = Instant::now();
    let hard_cap = COMMAND_TIMEOUT + crate::harness::SLACK + Duration::from_secs(5);
    match tokio::time::timeout(hard_cap, call).await {
        Ok(result) => (Ended::of(&result), start.elapsed(), Some(result)),
        Err(_) => (Ended::Hung, start.elapsed(), None),
    }
}

const FAULTS: [&str; 7] = [
    "kill+restart",
    "partition",
    "reset",
    "latency",
    "cut mid-reply",
    "garbage",
    "idle drop",
];

/// Injects fault `which` with random parameters and undoes it (bounded: at
/// most ~1.5 s).
async fn inject_fault(which: usize, rng: &mut Rng, server: &Arc<RedisServer>, proxy: &FaultProxy) {
    match which {
        0 => {
            let s = server.clone();
            blocking(move || s.kill()).await;
            sleep(rng.millis(50, 500)).await;
            let s = server.clone();
            blocking(move || s.restart()).await;
        }
        1 => {
            proxy.freeze();
            sleep(rng.millis(200, 1500)).await;
            proxy.heal();
        }
        2 => proxy.reset_all(),
        3 => {
            proxy.set_latency(Direction::ToClient, rng.millis(20, 200));
            sleep(rng.millis(300, 1000)).await;
            proxy.set_latency(Direction::ToClient, Duration::ZERO);
        }
        4 => {
            proxy.close_after_bytes(Direction::ToClient, 1 + rng.below(2000));
            sleep(Duration::from_millis(100)).await;
            proxy.clear_close_after();
        }
        5 => proxy.inject(Direction::ToClient, GARBAGE),
        _ => {
            proxy.set_idle_limit(rng.millis(20, 150), IdleAction::BlackHole);
            sleep(rng.millis(300, 1000)).await;
            proxy.clear_idle_limit();
        }
    }
}

/// Runs a soak on a runtime of its own (call it from plain code, not from
/// inside a Tokio runtime).
pub fn run(options: SoakOptions) -> SoakSummary {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let summary = runtime.block_on(soak(options));
    runtime.shutdown_timeout(Duration::from_secs(2));
    summary
}

async fn soak(options: SoakOptions) -> SoakSummary {
    let panics_before = panics_so_far();
    // Durable acknowledgements: a SIGKILL must not lose what was acknowledged.
    let server = Arc::new(
        RedisServer::builder()
            .config("appendonly yes")
            .config("appendfsync always")
            .start(),
    );
    let proxy = FaultProxy::start(server.addr());
    let client =
        Client::with_options(fast_options(&proxy.url(), options.offline)).expect("client starts");
    client
        .wait_ready(Duration::from_secs(5))
        .await
        .expect("soak client ready");

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..options.workers)
        .map(|id| {
            let seed = options.seed.wrapping_mul(1000).wrapping_add(id as u64);
            tokio::spawn(worker(client.clone(), id, seed, stop.clone()))
        })
        .collect();

    let mut rng = Rng(options.seed);
    let mut fault_counts = [0u64; FAULTS.len()];
    let end = Instant::now() + options.duration;
    // Every kind of fault once per round, in a seeded order, so that even
    // a short soak meets them all. Bounded by `end`: each takes ~1.5 s at most.
    let mut round: Vec<usize> = Vec::new();
    while Instant::now() + Duration::from_millis(1600) < end {
        if round.is_empty() {
            round = (0..FAULTS.len()).collect();
            for i in (1..round.len()).rev() {
                round.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let which = round.pop().expect("refilled above");
        sleep(rng.millis(100, 700)).await;
        inject_fault(which, &mut rng, &server, &proxy).await;
        fault_counts[which] += 1;
    }
    proxy.pass_through();
    sleep(end.saturating_duration_since(Instant::now())).await;
    stop.store(true, Ordering::Relaxed);

    let mut logs = Vec::new();
    let mut worker_panics = 0;
    for w in workers {
        match w.await {
            Ok(log) => logs.push(log),
            Err(e) if e.is_panic() => worker_panics += 1,
            Err(e) => panic!("soak worker: {e}"),
        }
    }
    // Let the client reconnect (and settle what it retries) before checking.
    let _ = client.wait_ready(Duration::from_secs(5)).await;
    sleep(Duration::from_millis(300)).await;
    let health = client.health();

    let mut s = SoakSummary {
        duration: options.duration,
        seed: options.seed,
        deadline: COMMAND_TIMEOUT,
        faults: FAULTS.iter().copied().zip(fault_counts).collect(),
        reconnects: health.counters.reconnects,
        ..SoakSummary::default()
    };
    let mut acked = Vec::new();
    let mut not_applied = Vec::new();
    let mut counters = Vec::new();
    for log in logs {
        s.ops += log.ops;
        s.ok += log.ok;
        s.fallback += log.fallback;
        s.indeterminate += log.indeterminate;
        s.timed_out += log.timed_out;
        s.down += log.down;
        s.backpressure += log.backpressure;
        s.loading += log.loading;
        s.other.extend(log.other);
        s.hung += log.hung;
        s.max_latency = s.max_latency.max(log.max_latency);
        s.wrong_reads += log.wrong_reads;
        s.incr_acked += log.incr_acked;
        s.incr_indeterminate += log.incr_indeterminate;
        acked.extend(log.acked);
        not_applied.extend(log.not_applied);
        counters.push((log.incr_key, log.incr_acked, log.incr_indeterminate));
    }
    let server_check = server.clone();
    s.acked_writes = acked.len() as u64;
    s.not_applied_writes = not_applied.len() as u64;
    let (acked_present, phantoms, out_of_bounds) = blocking(move || {
        let acked_present = count_present(&server_check, &acked);
        let phantoms = count_present(&server_check, &not_applied);
        let out_of_bounds = counters
            .iter()
            .filter(|(key, ok, indeterminate)| {
                let value = match server_check.command_reply(&["GET", key]) {
                    Reply::Bulk(b) => String::from_utf8_lossy(&b).parse().unwrap_or(u64::MAX),
                    _ => 0,
                };
                value < *ok || value > ok + indeterminate
            })
            .count() as u64;
        (acked_present, phantoms, out_of_bounds)
    })
    .await;
    s.phantom_writes = phantoms;
    s.offline = Some(options.offline);
    s.acked_writes_lost = s.acked_writes - acked_present;
    s.incr_counters_out_of_bounds = out_of_bounds;
    client.shutdown().await;
    drop(proxy);
    s.panics = panics_so_far() - panics_before + worker_panics;
    s.peak_rss_kib = proc_status_kib("VmHWM").unwrap_or(0);
    s
}

/// How many of `pairs` the server holds with exactly that value (MGET in
/// chunks over one raw connection).
fn count_present(server: &RedisServer, pairs: &[(String, String)]) -> u64 {
    let mut conn = server.admin_conn().expect("admin connection for the check");
    let mut present = 0;
    for chunk in pairs.chunks(500) {
        let mut args = vec!["MGET"];
        args.extend(chunk.iter().map(|(k, _)| k.as_str()));
        match conn.command(&args).expect("MGET for the check") {
            Reply::Array(values) => {
                for ((_, v), got) in chunk.iter().zip(values) {
                    if matches!(&got, Reply::Bulk(b) if b == v.as_bytes()) {
                        present += 1;
                    }
                }
            }
            other => panic!("MGET answered {other}"),
        }
    }
    present
}

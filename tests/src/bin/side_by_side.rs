//! Side by side: the same fault scenarios, through the same proxy, against
//! resilis, redis-rs's `ConnectionManager` and fred, each with default
//! settings. On demand, not in CI (it takes minutes and builds two more
//! Redis clients):
//!
//! ```text
//! cargo run --release -p resilis-tests --features side-by-side --bin side_by_side -- \
//!     [--partition 20s] [--outage 2s] [--tls-window 15s] [--cap 30s] \
//!     [--clients resilis,resilis-fast,redis-rs,fred,fred+reconnect,fred+unresponsive]
//! ```
//!
//! Scenarios, each with a fresh redis-server (and proxy):
//! - **partition**: a silent, half-open partition (proxy freeze) of
//!   `--partition`, then heal. Time to the first error after the freeze
//!   (detection), what calls issued meanwhile did, time from the heal to the
//!   first success (recovery), and how many INCRs the client reported as
//!   failed but the server executed anyway.
//! - **restart**: SIGKILL, `--outage` down, restart on the same port. Time to
//!   the first error, what calls did, time from "server ready" to the first
//!   success.
//! - **tls**: a plaintext client against a TLS-only server (the seed's
//!   failure). The first error, how long it took, whether it says "TLS", and
//!   how many connections the client opened in `--tls-window` (a storm or a
//!   schedule).
//!
//! The workload issues one INCR every 50 ms, each in its own task and capped
//! at `--cap` so that a client that hangs cannot hang the bench: a capped
//! call is reported as "hung".

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use resilis_tests::{FaultProxy, RedisServer, TestPki};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};

const KEY: &str = "side-by-side:counter";
const CALL_EVERY: Duration = Duration::from_millis(50);

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

/// One client under test, behind a uniform "one INCR" call.
trait Subject: Send + Sync {
    fn incr(&self) -> CallFuture;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// resilis with its defaults (the seed's: PING after 5 s idle, dead
    /// after 5 s without an answer, 5 s command deadline).
    Resilis,
    /// resilis with 1 s ping interval, ping timeout and command deadline.
    ResilisFast,
    RedisRs,
    Fred,
    /// fred with `ReconnectPolicy::default()` (constant 1 s, forever): by
    /// default fred never reconnects at all, which makes the other rows
    /// uninformative, so this shows its best simple configuration too.
    FredReconnect,
    /// fred with a reconnect policy and its unresponsive check at 2 s:
    /// the closest it has to liveness detection.
    FredUnresponsive,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Resilis => "resilis (defaults)",
            Kind::ResilisFast => "resilis (ping 1 s, deadline 1 s)",
            Kind::RedisRs => "redis-rs 1.8 ConnectionManager",
            Kind::Fred => "fred 10.1 (defaults)",
            Kind::FredReconnect => "fred 10.1 + ReconnectPolicy::default()",
            Kind::FredUnresponsive => "fred 10.1 + reconnect + unresponsive 2 s",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "resilis" => Some(Kind::Resilis),
            "resilis-fast" => Some(Kind::ResilisFast),
            "redis-rs" => Some(Kind::RedisRs),
            "fred" => Some(Kind::Fred),
            "fred+reconnect" => Some(Kind::FredReconnect),
            "fred+unresponsive" => Some(Kind::FredUnresponsive),
            _ => None,
        }
    }
}

struct RedisRs(redis::aio::ConnectionManager);

impl Subject for RedisRs {
    fn incr(&self) -> CallFuture {
        let mut conn = self.0.clone();
        Box::pin(async move {
            redis::cmd("INCR")
                .arg(KEY)
                .query_async::<i64>(&mut conn)
                .await
                .map(drop)
                .map_err(|e| e.to_string().into())
        })
    }
}

struct Fred(fred::prelude::Client);

impl Subject for Fred {
    fn incr(&self) -> CallFuture {
        use fred::prelude::KeysInterface;
        let client = self.0.clone();
        Box::pin(async move {
            client
                .incr::<i64, _>(KEY)
                .await
                .map(drop)
                .map_err(|e| e.to_string().into())
        })
    }
}

struct Resilis(resilis::Client);

impl Subject for Resilis {
    fn incr(&self) -> CallFuture {
        let client = self.0.clone();
        Box::pin(async move {
            client.incr(KEY).await.map(drop).map_err(|e| CallError {
                maybe_applied: matches!(e, resilis::Error::Indeterminate { .. }),
                text: e.to_string(),
            })
        })
    }
}

/// Connects a client of `kind` to `url` with that client's defaults.
async fn connect(kind: Kind, url: &str) -> Result<Arc<dyn Subject>, String> {
    match kind {
        Kind::Resilis | Kind::ResilisFast => {
            let mut options = resilis::Options::from_url(url).map_err(|e| e.to_string())?;
            if kind == Kind::ResilisFast {
                let second = resilis::core::Duration::from_secs(1);
                options = options.configure(|c| {
                    c.ping_interval = second;
                    c.ping_timeout = second;
                    c.command_timeout = second;
                    c.connect_timeout = second;
                });
            }
            let client = resilis::Client::with_options(options).map_err(|e| e.to_string())?;
            // Connected before the first call, like the peers' constructors;
            // unlike theirs, a connection problem is not a construction
            // error: the calls report it (with its fix) and it keeps trying.
            let _ = client.wait_ready(Duration::from_secs(2)).await;
            Ok(Arc::new(Resilis(client)))
        }
        Kind::RedisRs => {
            let client = redis::Client::open(url).map_err(|e| e.to_string())?;
            let manager = redis::aio::ConnectionManager::new(client)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(RedisRs(manager)))
        }
        Kind::Fred | Kind::FredReconnect | Kind::FredUnresponsive => {
            use fred::prelude::{Builder, ClientLike, Config, ReconnectPolicy};
            let config = Config::from_url(url).map_err(|e| e.to_string())?;
            let mut builder = Builder::from_config(config);
            if kind != Kind::Fred {
                builder.set_policy(ReconnectPolicy::default());
            }
            if kind == Kind::FredUnresponsive {
                builder.with_connection_config(|c| {
                    c.unresponsive = fred::types::config::UnresponsiveConfig {
                        max_timeout: Some(Duration::from_secs(2)),
                        interval: Duration::from_millis(500),
                    };
                });
            }
            let client = builder.build().map_err(|e| e.to_string())?;
            client.init().await.map_err(|e| e.to_string())?;
            Ok(Arc::new(Fred(client)))
        }
    }
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
struct Call {
    /// Since the scenario's clock started.
    start: Duration,
    end: Duration,
    outcome: Outcome,
}

/// Issues one INCR every [`CALL_EVERY`] until `stop`, each capped at `cap`.
async fn workload(
    subject: Arc<dyn Subject>,
    t0: Instant,
    stop: Arc<AtomicBool>,
    cap: Duration,
) -> Vec<Call> {
    let mut tasks = JoinSet::new();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let subject = subject.clone();
        tasks.spawn(async move {
            let start = t0.elapsed();
            let outcome = match timeout(cap, subject.incr()).await {
                Ok(Ok(())) => Outcome::Ok,
                Ok(Err(e)) if e.maybe_applied => Outcome::MaybeApplied(e.text),
                Ok(Err(e)) => Outcome::Err(e.text),
                Err(_) => Outcome::Hung,
            };
            Call {
                start,
                end: t0.elapsed(),
                outcome,
            }
        });
        next += CALL_EVERY;
        tokio::time::sleep_until(next).await;
    }
    let mut calls = Vec::new();
    while let Some(call) = tasks.join_next().await {
        calls.push(call.expect("a workload call panicked"));
    }
    calls.sort_by_key(|c| c.start);
    calls
}

/// What the calls issued in `[from, to)` did.
#[derive(Default, Debug)]
struct Window {
    ok: usize,
    err: usize,
    maybe_applied: usize,
    hung: usize,
    max_latency: Duration,
    first_error: Option<String>,
}

impl Window {
    fn of(calls: &[Call], from: Duration, to: Duration) -> Window {
        let mut w = Window::default();
        for c in calls.iter().filter(|c| c.start >= from && c.start < to) {
            w.max_latency = w.max_latency.max(c.end - c.start);
            match &c.outcome {
                Outcome::Ok => w.ok += 1,
                Outcome::Err(e) => {
                    w.err += 1;
                    w.first_error.get_or_insert_with(|| e.clone());
                }
                Outcome::MaybeApplied(e) => {
                    w.maybe_applied += 1;
                    w.first_error.get_or_insert_with(|| e.clone());
                }
                Outcome::Hung => w.hung += 1,
            }
        }
        w
    }

    fn describe(&self) -> String {
        let maybe = if self.maybe_applied > 0 {
            format!(" / {} indeterminate", self.maybe_applied)
        } else {
            String::new()
        };
        format!(
            "{} ok / {} err{maybe} / {} hung, max {}",
            self.ok,
            self.err,
            self.hung,
            secs(self.max_latency)
        )
    }
}

/// Time from `at` to the first error any call reported after it, and its text.
fn first_error_after(calls: &[Call], at: Duration) -> Option<(Duration, String)> {
    calls
        .iter()
        .filter(|c| c.end >= at)
        .filter_map(|c| match &c.outcome {
            Outcome::Err(e) | Outcome::MaybeApplied(e) => Some((c.end - at, e.clone())),
            _ => None,
        })
        .min_by_key(|(d, _)| *d)
}

/// Time from `at` to the first success completed after it, counting only
/// successes after which no call started later failed or hung: recovery
/// means staying recovered.
fn recovered_after(calls: &[Call], at: Duration) -> Option<Duration> {
    let last_bad_start = calls
        .iter()
        .filter(|c| !matches!(c.outcome, Outcome::Ok))
        .map(|c| c.start)
        .max();
    calls
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Ok) && c.end >= at)
        .filter(|c| last_bad_start.is_none_or(|bad| c.start > bad))
        .map(|c| c.end - at)
        .min()
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn or_never(d: Option<Duration>, never: &str) -> String {
    d.map_or_else(|| never.to_owned(), secs)
}

fn short(text: &str) -> String {
    let one_line = text.replace(['\n', '\r', '|'], " ");
    if one_line.chars().count() > 90 {
        format!("{}…", one_line.chars().take(90).collect::<String>())
    } else {
        one_line
    }
}

struct Row {
    client: &'static str,
    scenario: &'static str,
    detect: String,
    meanwhile: String,
    recover: String,
    notes: String,
}

struct Options {
    partition: Duration,
    outage: Duration,
    tls_window: Duration,
    cap: Duration,
    clients: Vec<Kind>,
}

/// How long each client gets to connect before the scenario gives up on it.
const CONNECT_CAP: Duration = Duration::from_secs(15);

async fn partition(kind: Kind, o: &Options) -> Row {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut row = Row {
        client: kind.name(),
        scenario: "silent partition",
        detect: String::new(),
        meanwhile: String::new(),
        recover: String::new(),
        notes: String::new(),
    };
    let subject = match timeout(CONNECT_CAP, connect(kind, &proxy.url())).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return failed_to_connect(row, &e),
        Err(_) => return failed_to_connect(row, "connect hung"),
    };
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let run = tokio::spawn(workload(subject.clone(), t0, stop.clone(), o.cap));
    sleep(Duration::from_secs(1)).await;
    let freeze_at = t0.elapsed();
    proxy.freeze();
    sleep(o.partition).await;
    let heal_at = t0.elapsed();
    proxy.heal();
    // Long enough for a slow reconnect and for hung calls to be seen.
    sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let calls = run.await.expect("workload task");
    let ok_total = calls
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Ok))
        .count();
    let maybe_total = calls
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::MaybeApplied(_)))
        .count();
    // Let anything still held by the client or the proxy land.
    sleep(Duration::from_secs(1)).await;
    let executed: i64 = server.command(&["GET", KEY]).parse().unwrap_or(0);
    let during = Window::of(&calls, freeze_at, heal_at);
    let first_error = first_error_after(&calls, freeze_at);
    row.detect = or_never(first_error.as_ref().map(|e| e.0), "never");
    row.meanwhile = during.describe();
    row.recover = or_never(recovered_after(&calls, heal_at), "not within 10 s");
    // Executed beyond what was acknowledged or reported as "may have been
    // applied": calls the caller was told failed (or that hung) but ran.
    let late = (executed - ok_total as i64 - maybe_total as i64).max(0);
    row.notes = format!(
        "{} connections; {late} INCRs reported failed/hung but executed; first error: {}",
        proxy.connections_accepted(),
        short(first_error.as_ref().map_or("none", |e| &e.1))
    );
    row
}

async fn restart(kind: Kind, o: &Options) -> Row {
    let server = Arc::new(RedisServer::start());
    let mut row = Row {
        client: kind.name(),
        scenario: "kill + restart",
        detect: String::new(),
        meanwhile: String::new(),
        recover: String::new(),
        notes: String::new(),
    };
    let subject = match timeout(CONNECT_CAP, connect(kind, &server.url())).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return failed_to_connect(row, &e),
        Err(_) => return failed_to_connect(row, "connect hung"),
    };
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let run = tokio::spawn(workload(subject.clone(), t0, stop.clone(), o.cap));
    sleep(Duration::from_secs(1)).await;
    let kill_at = t0.elapsed();
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.kill())
        .await
        .expect("kill");
    sleep(o.outage).await;
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.restart())
        .await
        .expect("restart");
    let ready_at = t0.elapsed();
    sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let calls = run.await.expect("workload task");
    let during = Window::of(&calls, kill_at, ready_at);
    let first_error = first_error_after(&calls, kill_at);
    row.detect = or_never(first_error.as_ref().map(|e| e.0), "never");
    row.meanwhile = during.describe();
    row.recover = or_never(recovered_after(&calls, ready_at), "not within 10 s");
    row.notes = format!(
        "first error: {}",
        short(first_error.as_ref().map_or("none", |e| &e.1))
    );
    row
}

async fn tls_mismatch(kind: Kind, o: &Options) -> Row {
    let pki = TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    let proxy = FaultProxy::start(server.tls_addr());
    let mut row = Row {
        client: kind.name(),
        scenario: "plaintext → TLS-only",
        detect: String::new(),
        meanwhile: String::new(),
        recover: "n/a".into(),
        notes: String::new(),
    };
    let t0 = Instant::now();
    let window = o.tls_window;
    let first_error;
    match timeout(window, connect(kind, &proxy.url())).await {
        Err(_) => {
            first_error = None;
            row.meanwhile = format!("connect hung for the whole {} window", secs(window));
        }
        Ok(Err(e)) => {
            row.detect = secs(t0.elapsed());
            row.meanwhile = "connect failed".into();
            first_error = Some(e);
        }
        Ok(Ok(subject)) => {
            let stop = Arc::new(AtomicBool::new(false));
            let cap = o.cap.min(window);
            let run = tokio::spawn(workload(subject, t0, stop.clone(), cap));
            sleep(window.saturating_sub(t0.elapsed())).await;
            stop.store(true, Ordering::Relaxed);
            let calls = run.await.expect("workload task");
            let w = Window::of(&calls, Duration::ZERO, window);
            first_error = w.first_error.clone();
            row.meanwhile = format!("calls: {}", w.describe());
        }
    }
    if row.detect.is_empty() {
        row.detect = match &first_error {
            Some(_) => "(see calls)".into(),
            None => "never".into(),
        };
    }
    let says_tls = first_error
        .as_deref()
        .is_some_and(|e| e.to_ascii_uppercase().contains("TLS"));
    row.notes = format!(
        "{} connections in {}; says TLS: {}; error: {}",
        proxy.connections_accepted(),
        secs(t0.elapsed().max(window)),
        if says_tls { "yes" } else { "no" },
        short(first_error.as_deref().unwrap_or("none"))
    );
    row
}

fn failed_to_connect(mut row: Row, error: &str) -> Row {
    row.detect = "-".into();
    row.meanwhile = format!("could not connect: {}", short(error));
    row.recover = "-".into();
    row
}

fn parse_duration(s: &str) -> Duration {
    let (number, scale) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(sec) = s.strip_suffix('s') {
        (sec, 1.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("bad duration {s:?}: use e.g. 20s or 500ms"));
    Duration::from_secs_f64(value * scale)
}

fn options() -> Options {
    let mut o = Options {
        partition: Duration::from_secs(20),
        outage: Duration::from_secs(2),
        tls_window: Duration::from_secs(15),
        cap: Duration::from_secs(30),
        clients: vec![
            Kind::Resilis,
            Kind::ResilisFast,
            Kind::RedisRs,
            Kind::Fred,
            Kind::FredReconnect,
            Kind::FredUnresponsive,
        ],
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--partition" => o.partition = parse_duration(&value()),
            "--outage" => o.outage = parse_duration(&value()),
            "--tls-window" => o.tls_window = parse_duration(&value()),
            "--cap" => o.cap = parse_duration(&value()),
            "--clients" => {
                o.clients = value()
                    .split(',')
                    .map(|c| Kind::parse(c).unwrap_or_else(|| panic!("unknown client {c:?}")))
                    .collect()
            }
            _ => panic!(
                "unknown option {flag:?}; options: --partition D --outage D --tls-window D --cap D --clients a,b"
            ),
        }
    }
    o
}

fn main() {
    let o = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows = Vec::new();
    runtime.block_on(async {
        for &kind in &o.clients {
            for scenario in ["partition", "restart", "tls"] {
                eprintln!("== {} / {scenario}", kind.name());
                let row = match scenario {
                    "partition" => partition(kind, &o).await,
                    "restart" => restart(kind, &o).await,
                    _ => tls_mismatch(kind, &o).await,
                };
                eprintln!(
                    "   detect {} | meanwhile {} | recover {} | {}",
                    row.detect, row.meanwhile, row.recover, row.notes
                );
                rows.push(row);
            }
        }
    });
    // Client tasks (fred's reconnect loops) may still be running.
    runtime.shutdown_timeout(Duration::from_secs(1));
    println!(
        "\nSide by side: partition {}, outage {}, TLS window {}, per-call cap {}, one INCR every {} ms\n",
        secs(o.partition),
        secs(o.outage),
        secs(o.tls_window),
        secs(o.cap),
        CALL_EVERY.as_millis()
    );
    println!("| client | scenario | first error | calls meanwhile | recovered | notes |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.client, r.scenario, r.detect, r.meanwhile, r.recover, r.notes
        );
    }
}

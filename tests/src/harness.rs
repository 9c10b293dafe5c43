//! What the fault scenarios and the soak share: a resilis client with every
//! time scaled down so that a suite of outages runs in seconds, a recorder
//! of the client's events with the instant each arrived, and the process's
//! memory figures.
//!
//! The scaled config keeps the *ratios* of the defaults that matter: the
//! keepalive PING comes well before an idle limit, a dead connection is
//! declared long before a command deadline runs out, and the backoff starts
//! small and is capped, so each bound a test asserts is a statement about
//! the schedule, not about a lucky machine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilis::core::{BackoffConfig, Duration as CoreDuration, WhenExhausted};
use resilis::{Client, Event, OfflineMode, Options};
use tokio::time::Instant;

/// Keepalive PING after this long with nothing received.
pub const PING_INTERVAL: Duration = Duration::from_millis(200);
/// The oldest unanswered request may wait this long.
pub const PING_TIMEOUT: Duration = Duration::from_millis(300);
/// First reconnect delay; it doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(25);
pub const BACKOFF_MAX: Duration = Duration::from_millis(200);
/// Attempts on the exponential schedule before probing every [`BACKOFF_MAX`].
pub const MAX_ATTEMPTS: u32 = 10;
/// TCP connect, TLS handshake and Redis handshake, each.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Default command deadline.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// After a permanent failure (wrong password), probe again after this long.
pub const PERMANENT_RETRY: Duration = Duration::from_millis(500);
/// Slack for a loaded two-core machine on top of every bound that a test
/// asserts: big enough for a scheduler hiccup while cargo builds next door,
/// small next to what the bound is about (a hang is seconds, a storm is
/// dozens of connections).
pub const SLACK: Duration = Duration::from_millis(400);

fn core(d: Duration) -> CoreDuration {
    CoreDuration::from_millis(d.as_millis() as u64)
}

/// Options for `url` with every time scaled down (see the constants) and
/// the given offline mode.
pub fn fast_options(url: &str, offline: OfflineMode) -> Options {
    Options::from_url(url)
        .expect("test URL parses")
        .offline(offline)
        .configure(|c| {
            c.ping_interval = core(PING_INTERVAL);
            c.ping_timeout = core(PING_TIMEOUT);
            c.connect_timeout = core(CONNECT_TIMEOUT);
            c.tls_timeout = core(CONNECT_TIMEOUT);
            c.handshake_timeout = core(CONNECT_TIMEOUT);
            c.command_timeout = core(COMMAND_TIMEOUT);
            c.permanent_retry = Some(core(PERMANENT_RETRY));
            c.backoff = BackoffConfig {
                initial: core(BACKOFF_INITIAL),
                factor: 2,
                max_delay: core(BACKOFF_MAX),
                max_attempts: MAX_ATTEMPTS,
                when_exhausted: WhenExhausted::KeepProbing,
                probe_interval: core(BACKOFF_MAX),
                jitter_percent: 0,
                jitter_seed: 7,
                reset_after: CoreDuration::from_millis(1000),
            };
        })
}

/// The most connection attempts the scaled backoff schedule can make in
/// `window` after a first failure at its start: the first connect, then
/// one per delay (25, 50, 100, 200, 200... ms).
pub fn max_attempts_in(window: Duration) -> u64 {
    let mut attempts = 1;
    let mut elapsed = Duration::ZERO;
    let mut delay = BACKOFF_INITIAL;
    loop {
        elapsed += delay;
        if elapsed > window {
            return attempts;
        }
        attempts += 1;
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}

/// A client from [`fast_options`], connected (bounded wait).
pub async fn ready_client(url: &str, offline: OfflineMode) -> Client {
    start_ready(fast_options(url, offline)).await
}

/// Starts a client and waits (bounded) until it is ready *and* its Ready
/// event has been published: `wait_ready` returns on the phase, a moment
/// before the event goes out, and an [`EventLog`] started in that moment
/// would record the first connect's Ready as if it were a reconnect.
pub async fn start_ready(options: Options) -> Client {
    let client = Client::with_options(options).expect("client starts");
    let mut events = client.events();
    client
        .wait_ready(Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("client not ready within 5 s: {e}"));
    let deadline = Instant::now() + Duration::from_secs(1);
    // Bounded by the deadline; a missed event only costs the wait.
    while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if is_ready(&event) {
            break;
        }
    }
    client
}

/// Every event a client published, with when it arrived here.
#[derive(Clone, Default)]
pub struct EventLog {
    events: Arc<Mutex<Vec<(Instant, Event)>>>,
}

impl EventLog {
    /// Starts recording `client`'s events (from now on) on the current
    /// runtime; recording stops when the client is dropped.
    pub fn record(client: &Client) -> EventLog {
        let log = EventLog::default();
        let events = log.events.clone();
        let mut rx = client.events();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) => lock(&events).push((Instant::now(), e)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        panic!("event log lagged by {n} events: the test cannot see them all")
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        log
    }

    /// A copy of everything so far.
    pub fn all(&self) -> Vec<(Instant, Event)> {
        lock(&self.events).clone()
    }

    /// The first event at or after `since` that matches.
    pub fn first_after(
        &self,
        since: Instant,
        matches: impl Fn(&Event) -> bool,
    ) -> Option<(Instant, Event)> {
        lock(&self.events)
            .iter()
            .find(|(at, e)| *at >= since && matches(e))
            .cloned()
    }

    /// Waits (polling, bounded by `limit`) for the first matching event at or
    /// after `since`.
    pub async fn wait_for(
        &self,
        since: Instant,
        limit: Duration,
        matches: impl Fn(&Event) -> bool,
    ) -> Option<(Instant, Event)> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(found) = self.first_after(since, &matches) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// How many events at or after `since` match.
    pub fn count_after(&self, since: Instant, matches: impl Fn(&Event) -> bool) -> usize {
        lock(&self.events)
            .iter()
            .filter(|(at, e)| *at >= since && matches(e))
            .count()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn is_ready(e: &Event) -> bool {
    matches!(e, Event::Ready { .. })
}

pub fn is_disconnect(e: &Event) -> bool {
    matches!(e, Event::Disconnected { .. })
}

/// How one call ended, as the scenarios count it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    Ok,
    /// Never sent: the deadline passed in the queue.
    TimedOut,
    /// Written, no reply: may have been applied.
    Indeterminate,
    /// Refused at once: the connection is down (or failed for good).
    Down,
    Backpressure,
    /// `-LOADING`: the server was loading its dataset after a restart and
    /// refused the command (not applied).
    Loading,
    /// Anything else (a server error reply, shutdown...), with its text.
    Other(String),
    /// Still pending after the test's hard cap: a hang.
    Hung,
}

impl Ended {
    pub fn of<T>(result: &Result<T, resilis::Error>) -> Ended {
        use resilis::Error as E;
        match result {
            Ok(_) => Ended::Ok,
            Err(E::Timeout) => Ended::TimedOut,
            Err(E::Indeterminate { .. }) => Ended::Indeterminate,
            Err(E::ConnectionDown { .. }) => Ended::Down,
            Err(E::Backpressure { .. }) => Ended::Backpressure,
            Err(E::Server(text)) if text.starts_with("LOADING") => Ended::Loading,
            Err(e) => Ended::Other(e.to_string()),
        }
    }
}

/// Counts of how calls ended and the slowest of them.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub ok: u64,
    pub timed_out: u64,
    pub indeterminate: u64,
    pub down: u64,
    pub backpressure: u64,
    pub loading: u64,
    pub other: Vec<String>,
    pub hung: u64,
    pub max_latency: Duration,
}

impl Tally {
    pub fn add(&mut self, ended: &Ended, latency: Duration) {
        self.max_latency = self.max_latency.max(latency);
        match ended {
            Ended::Ok => self.ok += 1,
            Ended::TimedOut => self.timed_out += 1,
            Ended::Indeterminate => self.indeterminate += 1,
            Ended::Down => self.down += 1,
            Ended::Backpressure => self.backpressure += 1,
            Ended::Loading => self.loading += 1,
            Ended::Other(e) => self.other.push(e.clone()),
            Ended::Hung => self.hung += 1,
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.ok += other.ok;
        self.timed_out += other.timed_out;
        self.indeterminate += other.indeterminate;
        self.down += other.down;
        self.backpressure += other.backpressure;
        self.loading += other.loading;
        self.other.extend(other.other.iter().cloned());
        self.hung += other.hung;
        self.max_latency = self.max_latency.max(other.max_latency);
    }

    pub fn total(&self) -> u64 {
        self.ok
            + self.timed_out
            + self.indeterminate
            + self.down
            + self.backpressure
            + self.loading
            + self.other.len() as u64
            + self.hung
    }
}

/// Awaits `call` for at most `deadline` + [`SLACK`] (+ a hard cap beyond
/// that, so that a hang is reported, not waited out) and says how it ended
/// and how long it took.
pub async fn timed<T>(
    deadline: Duration,
    call: impl std::future::Future<Output = Result<T, resilis::Error>>,
) -> (Ended, Duration) {
    let start = Instant::now();
    let hard_cap = deadline + SLACK + Duration::from_secs(5);
    match tokio::time::timeout(hard_cap, call).await {
        Ok(result) => (Ended::of(&result), start.elapsed()),
        Err(_) => (Ended::Hung, start.elapsed()),
    }
}

/// A value from `/proc/self/status` in KiB (`VmHWM`: peak resident set,
/// `VmRSS`: resident set now).
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Panics seen in any thread of this process since the first call (which
/// installs a hook that counts them and then runs the previous hook). A
/// panic in the client's driver task is swallowed by Tokio; this still sees
/// it.
pub fn panics_so_far() -> u64 {
    use std::sync::Once;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PANICS: AtomicU64 = AtomicU64::new(0);
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}

/// Runs `f` on a blocking thread (server kill/restart block for a while).
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking helper panicked")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_bound_follows_the_schedule() {
        // 25 + 50 + 100 = 175 ms: the first connect and three retries.
        assert_eq!(max_attempts_in(Duration::from_millis(180)), 4);
        // + 200 ms each after that.
        assert_eq!(max_attempts_in(Duration::from_millis(180 + 400)), 6);
        assert_eq!(max_attempts_in(Duration::ZERO), 1);
    }

    #[test]
    fn proc_status_is_readable() {
        assert!(proc_status_kib("VmHWM").is_some_and(|k| k > 0));
        assert!(proc_status_kib("VmRSS").is_some_and(|k| k > 0));
    }
}

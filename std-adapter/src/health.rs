//! What the driver shares with the client handles: counters, the
//! connection's status, the event broadcast, the fallback state, and the
//! serializable [`Health`] report built from them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use resilis_core::{DisconnectReason, Event, FailureClass, PhaseKind, Protocol, ServerVersion};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::fallback::{FallbackConfig, FallbackState};

/// Counters, updated with relaxed atomics (each has one writer or is a plain
/// tally; none orders anything).
#[derive(Default)]
pub(crate) struct Metrics {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub indeterminate: AtomicU64,
    pub timed_out: AtomicU64,
    pub backpressure: AtomicU64,
    pub reconnects: AtomicU64,
    pub fallback_hits: AtomicU64,
    pub fallback_misses: AtomicU64,
    pub cancelled: AtomicU64,
    pub pushes_dropped: AtomicU64,
    pub pubsub_messages: AtomicU64,
    pub pubsub_gaps: AtomicU64,
    pub ping_rtt_us: AtomicU64,
    pub attempts: AtomicU64,
    pub queued: AtomicU64,
    pub in_flight: AtomicU64,
    /// Bytes held by the driver's read buffer now.
    pub read_buffer: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// The connection's state as of the last event.
pub(crate) struct Status {
    pub phase: PhaseKind,
    pub since: SystemTime,
    pub last_reason: Option<DisconnectReason>,
    pub protocol: Option<Protocol>,
    pub server_version: Option<ServerVersion>,
    /// The server's own words when it last refused the handshake.
    pub server_message: Option<String>,
}

pub(crate) struct Shared {
    pub metrics: Metrics,
    pub status: Mutex<Status>,
    pub events: broadcast::Sender<Event>,
    /// Whether the core says Redis is unavailable (fallback engaged), as of
    /// its last event.
    pub fallback_hint: AtomicBool,
    /// Connections of the blocking pool opened so far (set by the client).
    pub blocking_connections: AtomicU64,
    pub fallback: Mutex<FallbackState>,
    /// Where the connection goes, for logs and the report (never the password).
    pub endpoint: String,
    /// The subscribers of the subscriptions this connection carries.
    pub hub: std::sync::Arc<crate::pubsub::Hub>,
    /// Pushes that are not pub/sub messages (`invalidate`...).
    pub pushes: broadcast::Sender<crate::pubsub::Push>,
    /// `Resubscribed`: every subscription is back after a loss.
    pub pubsub_events: broadcast::Sender<resilis_core::pubsub::PubSubEvent>,
}

impl Shared {
    pub(crate) fn new(endpoint: String, fallback: FallbackConfig) -> Shared {
        Shared {
            metrics: Metrics::default(),
            status: Mutex::new(Status {
                phase: PhaseKind::Idle,
                since: SystemTime::now(),
                last_reason: None,
                protocol: None,
                server_version: None,
                server_message: None,
            }),
            events: broadcast::channel(256).0,
            fallback_hint: AtomicBool::new(false),
            blocking_connections: AtomicU64::new(0),
            fallback: Mutex::new(FallbackState::new(fallback)),
            endpoint,
            hub: Default::default(),
            pushes: broadcast::channel(1024).0,
            pubsub_events: broadcast::channel(64).0,
        }
    }

    pub(crate) fn status(&self) -> MutexGuard<'_, Status> {
        // A panic elsewhere while holding the lock leaves plain data behind.
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn fallback(&self) -> MutexGuard<'_, FallbackState> {
        self.fallback.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn health(&self) -> Health {
        let status = self.status();
        let m = &self.metrics;
        let (cache_entries, cache_bytes, evictions) = {
            let fb = self.fallback();
            (
                fb.cache.len() as u64,
                fb.cache.bytes() as u64,
                fb.cache.evictions,
            )
        };
        let since_ms = status
            .since
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let for_ms = SystemTime::now()
            .duration_since(status.since)
            .map_or(0, |d| d.as_millis() as u64);
        let rtt = m.ping_rtt_us.load(Relaxed);
        Health {
            healthy: status.phase == PhaseKind::Ready,
            state: status.phase.as_str(),
            since_unix_ms: since_ms,
            in_state_ms: for_ms,
            endpoint: self.endpoint.clone(),
            protocol: status.protocol.map(Protocol::version),
            server_version: status
                .server_version
                .map(|v| format!("{}.{}.{}", v.major, v.minor, v.patch)),
            last_error: status.last_reason.map(|r| LastError {
                message: describe(&r),
                fix: r.fix(),
                permanent: r.class() == FailureClass::Permanent,
                server_said: status.server_message.clone(),
            }),
            reconnect_attempts: m.attempts.load(Relaxed),
            fallback_active: self.fallback_hint.load(Relaxed),
            ping_latency_ms: (rtt > 0).then(|| rtt as f64 / 1000.0),
            queued: m.queued.load(Relaxed),
            read_buffer_bytes: m.read_buffer.load(Relaxed),
            in_flight: m.in_flight.load(Relaxed),
            blocking_connections: self.blocking_connections.load(Relaxed),
            counters: Counters {
                commands_ok: m.ok.load(Relaxed),
                commands_failed: m.failed.load(Relaxed),
                commands_indeterminate: m.indeterminate.load(Relaxed),
                commands_timed_out: m.timed_out.load(Relaxed),
                commands_backpressured: m.backpressure.load(Relaxed),
                reconnects: m.reconnects.load(Relaxed),
                fallback_hits: m.fallback_hits.load(Relaxed),
                fallback_misses: m.fallback_misses.load(Relaxed),
                fallback_evictions: evictions,
                fallback_entries: cache_entries,
                fallback_bytes: cache_bytes,
                commands_cancelled: m.cancelled.load(Relaxed),
                pushes_dropped: m.pushes_dropped.load(Relaxed),
                pubsub_messages: m.pubsub_messages.load(Relaxed),
                pubsub_gaps: m.pubsub_gaps.load(Relaxed),
            },
        }
    }

    /// Keeps the status in step with the core's events.
    pub(crate) fn on_event(&self, event: &Event) {
        let mut status = self.status();
        match *event {
            Event::PhaseChanged { to, .. } => {
                status.phase = to;
                status.since = SystemTime::now();
                if to != PhaseKind::Ready {
                    status.protocol = None;
                }
            }
            Event::Ready {
                protocol,
                server_version,
            } => {
                status.protocol = Some(protocol);
                status.server_version = server_version;
            }
            Event::Disconnected { reason }
            | Event::Down { reason, .. }
            | Event::Failed { reason, .. }
            | Event::GaveUp { reason } => status.last_reason = Some(reason),
            _ => {}
        }
    }
}

/// What happened, without the fix (which `Display` appends; logs and the
/// report carry the fix in a field of its own).
pub(crate) fn describe(reason: &DisconnectReason) -> String {
    let full = reason.to_string();
    let suffix = format!(": {}", reason.fix());
    match full.strip_suffix(&suffix) {
        Some(what) => what.to_owned(),
        None => full,
    }
}

/// A snapshot of the connection, for `/api/health` and dashboards.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Health {
    /// True when the connection is ready.
    pub healthy: bool,
    /// `connecting`, `ready`, `backoff`, `down`, `failed`...
    pub state: &'static str,
    /// When the connection entered `state` (Unix milliseconds).
    pub since_unix_ms: u64,
    /// How long it has been in `state`.
    pub in_state_ms: u64,
    /// `host:port` (and `tls`), never credentials.
    pub endpoint: String,
    pub protocol: Option<u8>,
    pub server_version: Option<String>,
    pub last_error: Option<LastError>,
    /// Reconnect attempts on the current backoff schedule.
    pub reconnect_attempts: u64,
    pub fallback_active: bool,
    /// Round trip of the last keepalive PING.
    pub ping_latency_ms: Option<f64>,
    pub queued: u64,
    pub in_flight: u64,
    /// Memory the connection's read buffer holds now: it grows with the
    /// bytes of a reply actually received (never with what a header
    /// claims) and shrinks back after a large reply.
    pub read_buffer_bytes: u64,
    /// Connections opened for blocking commands (BLPOP...), one command each.
    pub blocking_connections: u64,
    pub counters: Counters,
}

/// The last disconnect reason, with what to change.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LastError {
    pub message: String,
    pub fix: &'static str,
    /// Retrying with the same settings cannot help (bad password, untrusted
    /// certificate...).
    pub permanent: bool,
    /// What the server itself said, when it refused the handshake (BUSY,
    /// LOADING, NOPERM...).
    pub server_said: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Counters {
    pub commands_ok: u64,
    /// Error replies and commands that failed without being sent.
    pub commands_failed: u64,
    /// Written, then no reply: may have been applied.
    pub commands_indeterminate: u64,
    pub commands_timed_out: u64,
    pub commands_backpressured: u64,
    pub reconnects: u64,
    pub fallback_hits: u64,
    pub fallback_misses: u64,
    pub fallback_evictions: u64,
    pub fallback_entries: u64,
    pub fallback_bytes: u64,
    /// Commands whose caller gave up (dropped the future) before an answer:
    /// withdrawn unsent where they had not been written yet.
    pub commands_cancelled: u64,
    /// Pushes nobody listened to (a message for a subscription already
    /// dropped, a push with no receiver of `Client::pushes`).
    pub pushes_dropped: u64,
    /// Pub/sub messages received on this connection.
    pub pubsub_messages: u64,
    /// Subscriptions confirmed again after a loss (a gap each).
    pub pubsub_gaps: u64,
}

//! Sentinel mode: one task that moves bytes and time between the
//! sentinels and `resilis_core::sentinel::Resolver`, which decides where
//! the master is, and tells the data node's drivers to follow it.
//!
//! - Each sentinel is a node of its own (its own resilient connection,
//!   its own credentials): asked `SENTINEL get-master-addr-by-name` when
//!   the resolver starts a round, and, for the first two in the resolver's
//!   order, subscribed to `+switch-master`.
//! - The data node's connections check `ROLE` in every handshake (a node
//!   that is not a master is never written to); while ready, `ROLE` is
//!   asked again every `recheck_interval` (1 s), and a READONLY reply to
//!   any command triggers a round at once.
//! - A change of master is sent to the data node's drivers on a channel
//!   they poll before anything else, so that nothing more is written to
//!   the old master once the switch is known; queued commands wait for the
//!   new one (see [`Connection::handle_retarget`](resilis_core::Connection::handle_retarget)).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilis_core::resp::{Decoded, Limits, decode};
use resilis_core::sentinel::{
    Answer, ChangeCause, FAILOVER_PROMOTING_CHANNEL, NodeRole, Resolver, SWITCH_MASTER_CHANNEL,
    SentinelId, encode_get_master, parse_master_answer, parse_role,
};
use resilis_core::{DisconnectReason, Event, Instant as CoreInstant, PhaseKind};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant as TokioInstant;

use crate::error::Error;
use crate::node::Node;
use crate::options::{OfflineMode, Options, SentinelOptions};
use crate::pubsub::{Kind, PubSubItem};
use crate::value::Value;

/// Most sentinels one client follows.
pub const MAX_SENTINELS: usize = 16;

/// The master changed, or Sentinel could not name one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SentinelEvent {
    MasterChanged {
        from: Option<String>,
        to: Option<String>,
        /// `resolved` (a round of asks), `switch-master` (a sentinel's
        /// push), `not-master` (ROLE or READONLY said so).
        cause: &'static str,
    },
}

/// What Sentinel mode knows, for `Client::sentinel_health`.
#[derive(Debug, Clone, Serialize)]
pub struct SentinelHealth {
    pub master_name: String,
    /// `host:port` of the master followed now.
    pub master: Option<String>,
    /// The sentinels in the resolver's order (the first answered last).
    pub sentinels: Vec<SentinelState>,
    /// Why the last round named no master, if it did not.
    pub last_error: Option<String>,
    pub rounds: u64,
    pub switches: u64,
    pub not_master: u64,
    /// ROLE checks that found the followed node not a master.
    pub role_demotions: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SentinelState {
    pub addr: String,
    pub ready: bool,
    /// Subscribed to `+switch-master` on it.
    pub watched: bool,
}

pub(crate) struct SentinelMode {
    health: Arc<Mutex<SentinelHealth>>,
    events: broadcast::Sender<SentinelEvent>,
    notices: mpsc::UnboundedSender<Notice>,
    task: JoinHandle<()>,
    sentinels: Vec<Node>,
}

impl Drop for SentinelMode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a watched sentinel announced.
enum Announce {
    /// `+switch-master`: the failover is done.
    Switched(Vec<u8>),
    /// `+failover-state-send-slaveof-noone` (the leader only): a replica
    /// is being promoted; the old master's writes may be lost from now on.
    Promoting(Vec<u8>),
}

enum Notice {
    /// A reply said READONLY, or ROLE said not master.
    NotMaster,
}

impl SentinelMode {
    /// Starts a sentinel connection each and the task that follows the
    /// master for `data`.
    pub(crate) fn start(options: &Options, data: Node) -> Result<SentinelMode, Error> {
        let sentinel = options
            .sentinel
            .as_ref()
            .expect("SentinelMode::start only with sentinel options");
        let resolver = Resolver::<MAX_SENTINELS>::new(
            sentinel.config,
            &sentinel.master_name,
            sentinel.sentinels.iter().map(|(h, p)| (h.as_str(), *p)),
        )
        .map_err(|e| Error::SentinelConfig {
            field: "sentinels",
            problem: sentinel_error_text(e),
            fix: "name 1 to 16 distinct sentinels as host:port and the master's name (up to 64 bytes)",
        })?;
        let mut sentinels = Vec::new();
        for (host, port) in &sentinel.sentinels {
            sentinels.push(Node::start(sentinel_node_options(
                options, sentinel, host, *port,
            )?)?);
        }
        let health = Arc::new(Mutex::new(SentinelHealth {
            master_name: sentinel.master_name.clone(),
            master: None,
            sentinels: Vec::new(),
            last_error: None,
            rounds: 0,
            switches: 0,
            not_master: 0,
            role_demotions: 0,
        }));
        let events = broadcast::channel(64).0;
        let (notices, notices_rx) = mpsc::unbounded_channel();
        let watcher = Watcher {
            resolver,
            data,
            sentinels: sentinels.clone(),
            health: health.clone(),
            events: events.clone(),
            notices: notices.clone(),
            epoch: TokioInstant::now(),
            recheck: sentinel.config.recheck_interval,
        };
        let task = tokio::spawn(watcher.run(notices_rx));
        Ok(SentinelMode {
            health,
            events,
            notices,
            task,
            sentinels,
        })
    }

    pub(crate) fn health(&self) -> SentinelHealth {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn events(&self) -> broadcast::Receiver<SentinelEvent> {
        self.events.subscribe()
    }

    /// A command's reply said READONLY: the node followed is a replica now.
    pub(crate) fn saw_readonly(&self) {
        let _ = self.notices.send(Notice::NotMaster);
    }

    pub(crate) async fn shutdown(&self) {
        self.task.abort();
        for node in &self.sentinels {
            node.shutdown().await;
        }
    }
}

fn sentinel_error_text(e: resilis_core::sentinel::SentinelError) -> &'static str {
    use resilis_core::sentinel::SentinelError::*;
    match e {
        NoSentinels => "no sentinel is named",
        TooManySentinels { .. } => "more than 16 sentinels",
        EmptyName | NameTooLong { .. } => "the master name is empty or longer than 64 bytes",
        DuplicateSentinel { .. } => "a sentinel is named twice",
        _ => "a sentinel address is invalid",
    }
}

/// A sentinel's connection: the data nodes' timeouts and TLS, the
/// sentinels' own credentials, no database, no ROLE check; commands wait
/// for the first connect rather than fail at once (bounded by their
/// deadline, the ask timeout).
fn sentinel_node_options(
    options: &Options,
    sentinel: &SentinelOptions,
    host: &str,
    port: u16,
) -> Result<Options, Error> {
    let mut o = options.clone();
    o.sentinel = None;
    o.cluster = None;
    o.offline = OfflineMode::QueueThenFail;
    o.fallback.write_through = false;
    let config = &mut o.config;
    config.host = host.try_into().map_err(|_| Error::SentinelConfig {
        field: "REDIS_SENTINELS",
        problem: "a sentinel host name is too long",
        fix: "use an address or a shorter name",
    })?;
    config.port = port;
    config.db = 0;
    config.require_master = false;
    config.readonly = false;
    config.username = sentinel.username.as_str().try_into().unwrap_or_default();
    config.password = sentinel.password.clone();
    Ok(o)
}

struct Watcher {
    resolver: Resolver<MAX_SENTINELS>,
    data: Node,
    sentinels: Vec<Node>,
    health: Arc<Mutex<SentinelHealth>>,
    events: broadcast::Sender<SentinelEvent>,
    notices: mpsc::UnboundedSender<Notice>,
    epoch: TokioInstant,
    recheck: Duration,
}

impl Watcher {
    fn now(&self) -> CoreInstant {
        CoreInstant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    async fn run(mut self, mut notices: mpsc::UnboundedReceiver<Notice>) {
        let (answers_tx, mut answers) = mpsc::unbounded_channel::<(SentinelId, Answer)>();
        let (switch_tx, mut switches) = mpsc::unbounded_channel::<(SentinelId, Announce)>();
        let mut watching: HashMap<u8, JoinHandle<()>> = HashMap::new();
        let mut data_events = self.data.events();
        let recheck = self.recheck.max(Duration::from_millis(100));
        let mut role_tick = tokio::time::interval(recheck);
        role_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Bounded per pass: each branch handles one input; the loop ends
        // when the client drops this task.
        loop {
            self.apply_changes();
            let now = self.now();
            if let Some(ask) = self.resolver.poll_ask(now) {
                let timeout = Duration::from_micros(
                    ask.until
                        .as_micros()
                        .saturating_sub(now.as_micros())
                        .max(1000),
                );
                for id in ask.sentinels {
                    self.ask(id, timeout, answers_tx.clone());
                }
            }
            self.watch(&mut watching, &switch_tx);
            self.publish_health(&watching);
            let sleep_until = self
                .resolver
                .poll_timeout()
                .map(|at| self.epoch + Duration::from_micros(at.as_micros()));
            tokio::select! {
                Some((id, answer)) = answers.recv() => {
                    let _ = self.resolver.handle_answer(self.now(), id, answer);
                }
                Some((id, announce)) = switches.recv() => {
                    let now = self.now();
                    let _ = match announce {
                        Announce::Switched(payload) => {
                            self.resolver.handle_switch_master(now, id, &payload)
                        }
                        Announce::Promoting(payload) => {
                            self.resolver.handle_promoting(now, id, &payload)
                        }
                    };
                }
                Some(Notice::NotMaster) = notices.recv() => {
                    self.resolver.handle_not_master(self.now());
                }
                event = data_events.recv() => match event {
                    // ROLE in the handshake said not a master.
                    Ok(Event::Disconnected { reason: DisconnectReason::NotMaster }) => {
                        self.resolver.handle_not_master(self.now());
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                    _ => {}
                },
                _ = role_tick.tick() => self.check_role(),
                _ = sleep(sleep_until) => {
                    let _ = self.resolver.handle_timeout(self.now());
                }
            }
        }
    }

    fn apply_changes(&mut self) {
        while let Some(change) = self.resolver.poll_change() {
            let show = |a: &Option<resilis_core::addr::NodeAddr>| a.as_ref().map(|a| a.to_string());
            let (from, to) = (show(&change.from), show(&change.to));
            let cause = match change.cause {
                ChangeCause::Resolved => "resolved",
                ChangeCause::SwitchMaster => "switch-master",
                ChangeCause::NotMaster => "not-master",
                ChangeCause::Promoting => "promoting",
            };
            if let Some(addr) = &change.to {
                self.data.retarget(addr.host.as_str(), addr.port);
                tracing::warn!(from = from.as_deref().unwrap_or("none"), to = %addr, cause, "Sentinel: following the master");
            } else {
                tracing::warn!(
                    from = from.as_deref().unwrap_or("none"),
                    cause,
                    "Sentinel: no master known"
                );
            }
            self.health_mut().master = to.clone();
            let _ = self
                .events
                .send(SentinelEvent::MasterChanged { from, to, cause });
        }
    }

    /// `SENTINEL get-master-addr-by-name` on one sentinel, answered on `tx`.
    fn ask(
        &self,
        id: SentinelId,
        timeout: Duration,
        tx: mpsc::UnboundedSender<(SentinelId, Answer)>,
    ) {
        let Some(node) = self.sentinels.get(usize::from(id.0)).cloned() else {
            return;
        };
        let mut buf = vec![0u8; 128 + self.resolver.master_name().len()];
        let Some(len) = encode_get_master(&mut buf, self.resolver.master_name()) else {
            return;
        };
        buf.truncate(len);
        tokio::spawn(async move {
            let answer = match tokio::time::timeout(timeout, node.request_raw(buf, timeout)).await {
                Ok(Ok(reply)) => match reply.value {
                    Value::Bulk(raw) => match decode(&raw, &Limits::REDIS) {
                        Ok(Decoded::Frame { frame, .. }) => parse_master_answer(&frame),
                        _ => Answer::Failed,
                    },
                    _ => Answer::Failed,
                },
                _ => Answer::Failed,
            };
            let _ = tx.send((id, answer));
        });
    }

    /// Subscribes to `+switch-master` on the resolver's watchers; drops the
    /// subscriptions of sentinels that are no longer watchers.
    fn watch(
        &self,
        watching: &mut HashMap<u8, JoinHandle<()>>,
        tx: &mpsc::UnboundedSender<(SentinelId, Announce)>,
    ) {
        let wanted: Vec<u8> = self.resolver.watchers().map(|id| id.0).collect();
        watching.retain(|id, task| {
            let keep = wanted.contains(id) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for id in wanted {
            if watching.contains_key(&id) {
                continue;
            }
            let Some(node) = self.sentinels.get(usize::from(id)).cloned() else {
                continue;
            };
            let tx = tx.clone();
            let task = tokio::spawn(async move {
                // Bounded by the subscriber's life: it ends with the client,
                // or is retried on the next pass when this task ends.
                let channels = vec![
                    SWITCH_MASTER_CHANNEL.as_bytes().to_vec(),
                    FAILOVER_PROMOTING_CHANNEL.as_bytes().to_vec(),
                ];
                let Ok(mut sub) = node.subscribe(Kind::Channel, channels).await else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    return;
                };
                while let Some(item) = sub.next().await {
                    let PubSubItem::Message(m) = item else {
                        continue;
                    };
                    let announce = if m.channel == SWITCH_MASTER_CHANNEL.as_bytes() {
                        Announce::Switched(m.payload)
                    } else {
                        Announce::Promoting(m.payload)
                    };
                    if tx.send((SentinelId(id), announce)).is_err() {
                        return;
                    }
                }
            });
            watching.insert(id, task);
        }
    }

    /// `ROLE` on the node followed, while it is ready: a node demoted in
    /// place (or that woke from a long pause after a failover) is left.
    fn check_role(&self) {
        if self.data.shared().status().phase != PhaseKind::Ready {
            return;
        }
        let data = self.data.clone();
        let notices = self.notices.clone();
        let health = self.health.clone();
        let timeout = self.recheck.max(Duration::from_millis(100));
        tokio::spawn(async move {
            let bytes = crate::encoding::encode_vec(resilis_core::resp::encode::role);
            let Ok(Ok(reply)) =
                tokio::time::timeout(timeout, data.request_raw(bytes, timeout)).await
            else {
                return;
            };
            let Value::Bulk(raw) = reply.value else {
                return;
            };
            let Ok(Decoded::Frame { frame, .. }) = decode(&raw, &Limits::REDIS) else {
                return;
            };
            if parse_role(&frame).is_some_and(|r| r != NodeRole::Master) {
                health
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .role_demotions += 1;
                tracing::warn!("Sentinel: the node followed says it is not a master (ROLE)");
                let _ = notices.send(Notice::NotMaster);
            }
        });
    }

    fn health_mut(&self) -> std::sync::MutexGuard<'_, SentinelHealth> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish_health(&self, watching: &HashMap<u8, JoinHandle<()>>) {
        let stats = self.resolver.stats();
        let sentinels = self
            .resolver
            .order()
            .iter()
            .filter_map(|id| {
                let node = self.sentinels.get(usize::from(id.0))?;
                Some(SentinelState {
                    addr: self
                        .resolver
                        .addr(*id)
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                    ready: node.shared().status().phase == PhaseKind::Ready,
                    watched: watching.contains_key(&id.0),
                })
            })
            .collect();
        let mut h = self.health_mut();
        h.sentinels = sentinels;
        h.master = self.resolver.master().map(|a| a.to_string());
        h.last_error = self.resolver.last_error().map(|e| format!("{e:?}"));
        h.rounds = stats.rounds;
        h.switches = stats.switches;
        h.not_master = stats.not_master;
    }
}

async fn sleep(until: Option<TokioInstant>) {
    match until {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

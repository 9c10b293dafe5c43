//! One Redis node: the driver task of its shared, pipelined connection, and
//! the small pool of connections that carry its blocking commands. A
//! single-node [`crate::Client`] is one of these; in cluster mode there is
//! one per node, and the cluster router sends to them.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use resilis_core::command::{Class, Route};
use resilis_core::resp::encode::CommandEncoder;
use resilis_core::{Config, Event};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::driver::{self, Command, Driver, Reply, Request, TlsSetup};
use crate::encoding::encode_vec;
use crate::error::Error;
use crate::fallback::FallbackConfig;
use crate::health::{Health, Shared, Status};
use crate::options::{OfflineMode, Options};
use crate::pubsub::{Kind, Push, Subscriber, Unsubscribe};
use crate::tls::client_config;
use resilis_core::pubsub::{Carrier, PubSubEvent, carrier};

/// Most connections the blocking pool opens (each carries one blocking
/// command at a time; more callers share the least busy one, in order).
pub const MAX_BLOCKING: usize = 4;

pub(crate) struct Handle {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

/// A connection of the blocking pool.
struct Pooled {
    tx: mpsc::Sender<Request>,
    /// Requests sent on it whose answers are not back yet.
    outstanding: Arc<AtomicUsize>,
}

/// Counts a request outstanding on a connection while its future lives.
struct Outstanding(Arc<AtomicUsize>);

impl Outstanding {
    fn new(counter: &Arc<AtomicUsize>) -> Outstanding {
        counter.fetch_add(1, Relaxed);
        Outstanding(counter.clone())
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

struct NodeInner {
    main: mpsc::Sender<Request>,
    shared: Arc<Shared>,
    blocking: Mutex<Vec<Pooled>>,
    options: Options,
    tls: Option<TlsSetup>,
    /// RESP2: the connection of its own that carries subscriptions (a
    /// subscribed RESP2 connection takes no other command), opened at the
    /// first subscribe.
    subscriber: Mutex<Option<Handle>>,
    /// Sentinel mode: the drivers follow the master the resolver names.
    follow: Option<Mutex<Follow>>,
}

/// A cheap, cloneable handle to one node's connections.
#[derive(Clone)]
pub(crate) struct Node {
    inner: Arc<NodeInner>,
}

pub(crate) fn spawn(
    options: &Options,
    tls: Option<TlsSetup>,
    shared: Arc<Shared>,
    follow: Option<&Mutex<Follow>>,
) -> Result<Handle, Error> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
    let mut config = options.config.clone();
    config.queue.offline = options.offline.policy();
    let (tx, rx) = mpsc::channel(driver::CHANNEL);
    let miss_absent = options.fallback.miss_reads_as_absent;
    let follow = follow.map(|f| {
        let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
        let (control, rx) = mpsc::unbounded_channel();
        f.controls.push(control);
        // A driver started after the master is known goes there at once.
        if let Some((host, port)) = &f.target
            && let Ok(h) = host.as_str().try_into()
        {
            config.host = h;
            config.port = *port;
            return (rx, false);
        }
        (rx, true)
    });
    runtime.spawn(Driver::new(config, tls, rx, shared.clone(), miss_absent, follow).run());
    Ok(Handle { tx, shared })
}

/// Sentinel mode: where the master is, and every driver of this node that
/// must follow it (the shared connection, the blocking pool's, the
/// subscriber's).
#[derive(Default)]
pub(crate) struct Follow {
    target: Option<(String, u16)>,
    controls: Vec<mpsc::UnboundedSender<(String, u16)>>,
}

/// Why Redis is unavailable, as of the connection's last event.
pub(crate) fn down_error_of(status: &Status) -> Error {
    status.last_reason.map_or_else(Error::down_unknown, |r| {
        Error::down_said(r, status.server_message.as_deref())
    })
}

pub(crate) fn endpoint(config: &Config) -> String {
    format!(
        "{}:{}{}",
        config.host,
        config.port,
        if config.tls { " (tls)" } else { "" }
    )
}

impl Node {
    /// Starts the node's driver; TLS files are read and checked now.
    pub(crate) fn start(options: Options) -> Result<Node, Error> {
        options.tls.check_tls_on(options.config.tls)?;
        let tls = tls_setup(&options)?;
        let shared = Arc::new(Shared::new(endpoint(&options.config), options.fallback));
        let follow = options
            .sentinel
            .as_ref()
            .map(|_| Mutex::new(Follow::default()));
        let main = spawn(&options, tls.clone(), shared, follow.as_ref())?;
        Ok(Node {
            inner: Arc::new(NodeInner {
                main: main.tx,
                shared: main.shared,
                blocking: Mutex::new(Vec::new()),
                options,
                tls,
                subscriber: Mutex::new(None),
                follow,
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Sentinel mode: every driver of this node moves to `host:port`.
    pub(crate) fn retarget(&self, host: &str, port: u16) {
        let Some(follow) = &self.inner.follow else {
            return;
        };
        let mut f = follow.lock().unwrap_or_else(|p| p.into_inner());
        f.target = Some((host.to_owned(), port));
        f.controls
            .retain(|c| c.send((host.to_owned(), port)).is_ok());
    }

    pub(crate) fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.shared.events.subscribe()
    }

    pub(crate) fn health(&self) -> Health {
        self.inner.shared.health()
    }

    pub(crate) async fn retry(&self) {
        let _ = self.inner.main.send(Request::Retry).await;
    }

    /// Closes its connections: queued commands fail as not sent, written
    /// ones as indeterminate.
    pub(crate) async fn shutdown(&self) {
        let _ = self.inner.main.send(Request::Shutdown).await;
        let pool: Vec<_> = self.blocking_pool().iter().map(|h| h.tx.clone()).collect();
        for tx in pool {
            let _ = tx.send(Request::Shutdown).await;
        }
        let subscriber = self
            .inner
            .subscriber
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|h| h.tx.clone());
        if let Some(tx) = subscriber {
            let _ = tx.send(Request::Shutdown).await;
        }
    }

    pub(crate) fn default_timeout(&self, class: Class) -> Duration {
        let config = &self.inner.options.config;
        if class.blocking() {
            config.blocking_timeout
        } else {
            config.command_timeout
        }
    }

    fn blocking_pool(&self) -> std::sync::MutexGuard<'_, Vec<Pooled>> {
        // A panic elsewhere while holding the lock leaves a plain list.
        self.inner
            .blocking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A connection of this node besides the shared one (the blocking
    /// pool's, or the RESP2 subscriber's): its own counters, and commands
    /// wait for it to connect rather than fail fast (they were going to
    /// wait anyway). In Sentinel mode it follows the master too.
    fn spawn_extra(&self, subscriber: bool) -> Result<Handle, Error> {
        let mut options = self.inner.options.clone();
        options.offline = OfflineMode::QueueThenFail;
        options.config.subscriber = subscriber;
        let label = if subscriber { " (subscriber)" } else { "" };
        let shared = Arc::new(Shared::new(
            format!("{}{label}", endpoint(&options.config)),
            FallbackConfig::default(),
        ));
        spawn(
            &options,
            self.inner.tls.clone(),
            shared,
            self.inner.follow.as_ref(),
        )
    }

    /// A connection of the blocking pool for one more blocking command: an
    /// idle one, else a new one (up to [`MAX_BLOCKING`]), else the least busy.
    fn blocking_handle(&self) -> Result<(mpsc::Sender<Request>, Arc<AtomicUsize>), Error> {
        let mut pool = self.blocking_pool();
        let idle = pool.iter().find(|h| h.outstanding.load(Relaxed) == 0);
        if let Some(h) = idle {
            return Ok((h.tx.clone(), h.outstanding.clone()));
        }
        if pool.len() < MAX_BLOCKING {
            let handle = self.spawn_extra(false)?;
            pool.push(Pooled {
                tx: handle.tx,
                outstanding: Arc::new(AtomicUsize::new(0)),
            });
            self.inner
                .shared
                .blocking_connections
                .store(pool.len() as u64, Relaxed);
        }
        let least = pool
            .iter()
            .min_by_key(|h| h.outstanding.load(Relaxed))
            .ok_or(Error::Shutdown)?;
        Ok((least.tx.clone(), least.outstanding.clone()))
    }

    /// Subscribes to `names` on the connection the core says carries
    /// subscriptions, and returns once the server confirmed every one.
    pub(crate) async fn subscribe(
        &self,
        kind: Kind,
        names: Vec<Vec<u8>>,
    ) -> Result<Subscriber, Error> {
        let (tx, shared) = self.subscription_carrier()?;
        let unsubscribe_tx = tx.clone();
        let unsubscribe: Unsubscribe = Box::new(move |kind, names| {
            let request = Request::Unsubscribe { kind, names };
            if let Err(mpsc::error::TrySendError::Full(request)) = unsubscribe_tx.try_send(request)
            {
                let tx = unsubscribe_tx.clone();
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        let _ = tx.send(request).await;
                    });
                }
            }
        });
        let subscriber = Subscriber::new(
            kind,
            names.clone(),
            self.inner.options.pubsub,
            shared.hub.clone(),
            unsubscribe,
        );
        let (done, answer) = oneshot::channel();
        tx.send(Request::Subscribe { kind, names, done })
            .await
            .map_err(|_| Error::Shutdown)?;
        let timeout = self.inner.options.config.command_timeout;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(Ok(()))) => Ok(subscriber),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(Error::Shutdown),
            // Not confirmed in time: dropping the subscriber withdraws it.
            Err(_) => {
                let status = shared.status();
                Err(if status.phase == resilis_core::PhaseKind::Ready {
                    Error::Timeout
                } else {
                    down_error_of(&status)
                })
            }
        }
    }

    /// The driver that carries subscriptions: the shared connection on
    /// RESP3, a dedicated one on RESP2 (the core's [`carrier`]).
    fn subscription_carrier(&self) -> Result<(mpsc::Sender<Request>, Arc<Shared>), Error> {
        if carrier(self.inner.options.config.protocol) == Carrier::Shared {
            return Ok((self.inner.main.clone(), self.inner.shared.clone()));
        }
        let mut slot = self
            .inner
            .subscriber
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = &*slot {
            return Ok((handle.tx.clone(), handle.shared.clone()));
        }
        let handle = self.spawn_extra(true)?;
        let carrier = (handle.tx.clone(), handle.shared.clone());
        *slot = Some(handle);
        Ok(carrier)
    }

    /// Pushes that are not pub/sub messages.
    pub(crate) fn pushes(&self) -> broadcast::Receiver<Push> {
        self.inner.shared.pushes.subscribe()
    }

    /// `Resubscribed` events of the connection that carries subscriptions.
    pub(crate) fn pubsub_events(&self) -> Result<broadcast::Receiver<PubSubEvent>, Error> {
        let (_, shared) = self.subscription_carrier()?;
        Ok(shared.pubsub_events.subscribe())
    }

    /// The reply's RESP bytes as they came, for a parser in the core.
    pub(crate) async fn request_raw(
        &self,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Result<Reply, Error> {
        let (reply, answer) = oneshot::channel();
        let command = Command {
            bytes,
            timeout,
            class: Class::READ,
            reply,
            raw: true,
        };
        self.inner
            .main
            .send(Request::Command(command))
            .await
            .map_err(|_| Error::Shutdown)?;
        answer.await.unwrap_or(Err(Error::Shutdown))
    }

    /// Sends encoded bytes on the connection the core's class says and waits
    /// for the answer. `asking`: a cluster node's `ASKING` goes just before
    /// it, with nothing between.
    pub(crate) async fn request(
        &self,
        bytes: Vec<u8>,
        class: Class,
        timeout: Option<Duration>,
        asking: bool,
    ) -> Result<Reply, Error> {
        // The shared connection's sender is borrowed (nothing to count on
        // the hot path); a pool connection's is counted while this waits.
        let pooled;
        let (tx, _outstanding) = match class.route() {
            Route::Refused { why } => {
                return Err(Error::Unsupported {
                    command: command_name(&bytes),
                    why,
                });
            }
            Route::Blocking => {
                pooled = self.blocking_handle()?;
                (&pooled.0, Some(Outstanding::new(&pooled.1)))
            }
            Route::Shared => (&self.inner.main, None),
        };
        let timeout = timeout.unwrap_or_else(|| self.default_timeout(class));
        let (reply, answer) = oneshot::channel();
        let command = Command {
            bytes,
            timeout,
            class,
            reply,
            raw: false,
        };
        // Kept alive until the command's answer: a dropped receiver would
        // make the driver withdraw ASKING.
        let mut _asking_answer = None;
        let request = if asking {
            let (asking_reply, asking_rx) = oneshot::channel();
            _asking_answer = Some(asking_rx);
            Request::Group(vec![
                Command {
                    bytes: encode_vec(|b| {
                        let mut enc = CommandEncoder::new(b, 1);
                        enc.arg(b"ASKING");
                        enc.finish()
                    }),
                    timeout,
                    class: Class::READ,
                    reply: asking_reply,
                    raw: false,
                },
                command,
            ])
        } else {
            Request::Command(command)
        };
        // The channel is drained on every wake, so it is rarely full: try the
        // cheap path first, and wait for room only when there is none (the
        // driver takes no more than the core has room for).
        match tx.try_send(request) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(request)) => {
                tx.send(request).await.map_err(|_| Error::Shutdown)?
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Error::Shutdown),
        }
        answer.await.unwrap_or(Err(Error::Shutdown))
    }
}

/// TLS for a connection to `options.config.host`, when on.
fn tls_setup(options: &Options) -> Result<Option<TlsSetup>, Error> {
    if !options.config.tls {
        return Ok(None);
    }
    Ok(Some(TlsSetup {
        connector: tokio_rustls::TlsConnector::from(client_config(&options.tls)?),
        server_name: options
            .tls
            .server_name_for(&options.config.host, options.host_source)?,
        insecure: options.tls.insecure,
    }))
}

/// The command's name, for an error message.
pub(crate) fn command_name(bytes: &[u8]) -> String {
    use resilis_core::resp::{Decoded, Frame, Limits, decode};
    match decode(bytes, &Limits::REDIS) {
        Ok(Decoded::Frame {
            frame: Frame::Array(args),
            ..
        }) => match args.iter().next() {
            Some(Frame::BulkString(name)) => String::from_utf8_lossy(name).to_ascii_uppercase(),
            _ => String::new(),
        },
        _ => String::new(),
    }
}

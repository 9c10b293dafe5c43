//! The driver: one Tokio task per connection that moves bytes and time
//! between the sockets and `resilis_core::Connection`. No policy lives here:
//! backoff, pings, failure classification, what happens to each command
//! while Redis is unavailable (the outage policy) are the core's. The driver
//! only fulfils the core's outcomes: a reply goes to its caller, an
//! `Outcome::Fallback` is looked up in the cache, a caller that is gone is
//! reported with `handle_cancel`. The loop is the core's own rule, *feed inputs, then drain outputs
//! until `Wait`*:
//!
//! 1. drain `poll_output()`: open transports, append every command that is
//!    ready to ONE write buffer, complete callers, publish events;
//! 2. wait (one hand-written poll, so nothing blocks anything else) for any
//!    of: a connect or TLS step finishing, bytes readable, the write buffer
//!    accepting bytes, new submissions, the core's deadline;
//! 3. feed what happened to the core, and go to 1.
//!
//! Pipelining falls out of step 2: every submission waiting in the channel
//! is taken at once, so concurrent callers share one write syscall.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use resilis_core::command::Class;
use resilis_core::{
    CommandId, Config, Connection, DisconnectReason, Event, Instant as CoreInstant, Outcome,
    Output, PhaseKind, Received, Submit, SubmitError, TransportError,
};
use tokio::io::ReadBuf;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant as TokioInstant, Sleep};

mod pending;
pub(crate) mod transport;

use pending::{Pending, PendingTable};
pub(crate) use transport::TlsSetup;
use transport::{Connected, Connecting, Transport, classify_io_error, connect_tcp};

use crate::error::Error;
use crate::fallback::Lookup;
use crate::health::{Shared, bump};
use crate::pubsub::{PubSubItem, Push, gap_cause};
use crate::value::Value;
use resilis_core::pubsub::{Delivery, Kind, Subscriptions};

/// Commands one connection tracks at once (queued + in flight + resolved
/// but not yet polled): the core's const capacity, ~48 bytes each.
pub(crate) const SLOTS: usize = 4096;
/// Submissions taken per wake, at most (and never more than the core has
/// room for: the rest wait in the channel, and their callers with them).
const BATCH: usize = 256;
/// Initial receive buffer; it grows only when a frame needs more.
const READ_BUF: usize = 64 * 1024;
/// Free space below which the buffer is compacted or grown before a read.
const MIN_READ: usize = 16 * 1024;
/// Capacity of the submission channel.
pub(crate) const CHANNEL: usize = 8192;

pub(crate) enum Request {
    Command(Command),
    /// Commands submitted back to back, so that no other caller's command
    /// is written between them (a cluster's `ASKING` and the command it
    /// permits).
    Group(Vec<Command>),
    /// Hold these subscriptions on this connection; `done` once the server
    /// confirmed them all (the subscriber is registered in the hub first).
    Subscribe {
        kind: Kind,
        names: Vec<Vec<u8>>,
        done: oneshot::Sender<Result<(), Error>>,
    },
    /// Nobody listens to these any more.
    Unsubscribe {
        kind: Kind,
        names: Vec<Vec<u8>>,
    },
    /// Retry now (after a permanent failure or a give-up).
    Retry,
    Shutdown,
}

/// A command from a caller: its encoded bytes and where its answer goes.
pub(crate) struct Command {
    pub bytes: Vec<u8>,
    pub timeout: Duration,
    pub class: Class,
    pub reply: oneshot::Sender<Result<Reply, Error>>,
    /// Answer with the reply's RESP bytes as they came (a `Value::Bulk`),
    /// for a parser in the core (the cluster's slot map).
    pub raw: bool,
}

/// An answer: from Redis, or from the fallback cache when the core said so.
#[derive(Debug)]
pub(crate) struct Reply {
    pub value: Value,
    pub from_cache: bool,
}

/// What one wake brought.
#[derive(Default)]
struct Wake {
    connected: Option<Result<Connected, TransportError>>,
    io_failed: Option<TransportError>,
    read_any: bool,
    eof: bool,
    /// Written blocking commands whose callers are gone.
    abandoned: Vec<CommandId>,
    timer: bool,
    channel_closed: bool,
    /// Sentinel mode: the master's new address.
    retarget: Option<(String, u16)>,
}

pub(crate) struct Driver {
    conn: Box<Connection<SLOTS>>,
    epoch: TokioInstant,
    rx: mpsc::Receiver<Request>,
    incoming: Vec<Request>,
    pending: PendingTable,
    transport: Option<Transport>,
    connecting: Option<Connecting>,
    tls: Option<TlsSetup>,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    needs_flush: bool,
    sleep: Pin<Box<Sleep>>,
    timer_armed: bool,
    shared: Arc<Shared>,
    keepalive: Duration,
    shutting_down: bool,
    /// Written blocking commands: their callers are watched, so that one who
    /// leaves is reported to the core at once (which closes the connection
    /// before the command can take data for nobody).
    blocking_written: Vec<CommandId>,
    /// A GET the cache cannot answer during an outage reads as absent.
    miss_reads_as_absent: bool,
    /// Set by the TCP stream under a TLS handshake once the server sent
    /// anything.
    tls_seen: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The subscriptions this connection carries (the core decides what to
    /// send and what each push means); made at the first subscribe.
    subs: Option<Box<Subscriptions<MAX_SUBSCRIPTIONS, SUBSCRIPTION_BYTES>>>,
    /// Sentinel mode: where the master is, as the core's resolver says.
    /// Polled before anything else on every wake, so that nothing more is
    /// written to the old master once a switch is known.
    follow: Option<mpsc::UnboundedReceiver<(String, u16)>>,
    /// Sentinel mode before any master is known: not started.
    paused: bool,
    /// Callers of `subscribe` waiting for the server's confirmations.
    sub_waiters: Vec<SubWaiter>,
    sub_buf: Vec<u8>,
}

/// Most subscriptions one connection carries, and the bytes of their names.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 2048;
pub(crate) const SUBSCRIPTION_BYTES: usize = 128 << 10;

struct SubWaiter {
    kind: Kind,
    names: Vec<Vec<u8>>,
    done: oneshot::Sender<Result<(), Error>>,
}

impl Driver {
    pub(crate) fn new(
        config: Config,
        tls: Option<TlsSetup>,
        rx: mpsc::Receiver<Request>,
        shared: Arc<Shared>,
        miss_reads_as_absent: bool,
        follow: Option<(mpsc::UnboundedReceiver<(String, u16)>, bool)>,
    ) -> Driver {
        let (follow, paused) = match follow {
            Some((rx, paused)) => (Some(rx), paused),
            None => (None, false),
        };
        let epoch = TokioInstant::now();
        Driver {
            keepalive: config.tcp_keepalive,
            conn: Box::new(Connection::new(config)),
            epoch,
            rx,
            incoming: Vec::with_capacity(BATCH),
            pending: PendingTable::default(),
            transport: None,
            connecting: None,
            tls,
            rbuf: vec![0; READ_BUF],
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(READ_BUF),
            wpos: 0,
            needs_flush: false,
            sleep: Box::pin(tokio::time::sleep_until(epoch)),
            timer_armed: false,
            shared,
            shutting_down: false,
            blocking_written: Vec::new(),
            miss_reads_as_absent,
            tls_seen: None,
            subs: None,
            follow,
            paused,
            sub_waiters: Vec::new(),
            sub_buf: vec![0; 4096],
        }
    }

    fn now(&self) -> CoreInstant {
        CoreInstant::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    pub(crate) async fn run(mut self) {
        let now = self.now();
        if !self.paused {
            self.conn.handle_start(now);
        }
        loop {
            let deadline = self.drain();
            self.publish_gauges();
            if self.conn.phase() == PhaseKind::Shutdown && self.wbuf.is_empty() {
                break;
            }
            self.arm_timer(deadline);
            let wake = poll_fn(|cx| self.poll_io(cx)).await;
            self.feed(wake);
        }
        self.rx.close();
        self.shared.hub.close_all();
        for waiter in self.sub_waiters.drain(..) {
            let _ = waiter.done.send(Err(Error::Shutdown));
        }
        // The core resolved everything at shutdown; whatever is left (a bug)
        // still gets an answer.
        for pending in self.pending.drain() {
            finish(pending.waiter, Err(Error::Shutdown), None);
        }
        // Bounded: the channel is closed, so it only empties.
        while let Ok(request) = self.rx.try_recv() {
            match request {
                Request::Command(cmd) => {
                    let _ = cmd.reply.send(Err(Error::Shutdown));
                }
                Request::Group(cmds) => {
                    for cmd in cmds {
                        let _ = cmd.reply.send(Err(Error::Shutdown));
                    }
                }
                Request::Subscribe { done, .. } => {
                    let _ = done.send(Err(Error::Shutdown));
                }
                Request::Retry | Request::Shutdown | Request::Unsubscribe { .. } => {}
            }
        }
    }

    // ----- step 1: drain the core -----------------------------------------

    fn drain(&mut self) -> Option<CoreInstant> {
        // Bounded: every output but Wait consumes something the core holds,
        // and each is bounded (events, commands, transports).
        loop {
            let mut open = None;
            let mut event = None;
            match self.conn.poll_output() {
                Output::Wait(deadline) => {
                    // Pub/sub requests may add a liveness deadline: drain again.
                    if !self.write_subscriptions() {
                        return deadline;
                    }
                }
                Output::Transmit(bytes) => self.wbuf.extend_from_slice(bytes),
                Output::TransmitCommand(id) => self.transmit(id),
                Output::OpenTransport { host, port, tls } => {
                    open = Some((host.to_owned(), port, tls));
                }
                Output::Close => self.close_transport(),
                Output::Resolved { id, outcome } => self.resolved(id, outcome),
                Output::Event(e) => event = Some(e),
            }
            if let Some((host, port, tls)) = open {
                self.open_transport(host, port, tls);
            }
            if let Some(e) = event {
                self.on_event(e);
            }
        }
    }

    /// Sentinel mode: the master is at `host:port` now.
    fn retarget(&mut self, now: CoreInstant, host: String, port: u16) {
        if let Some(tls) = &mut self.tls
            && let Ok(name) = rustls_pki_types::ServerName::try_from(host.clone())
        {
            tls.server_name = name;
        }
        if !self.conn.handle_retarget(now, &host, port) {
            tracing::error!(%host, "master host name too long for the config; not followed");
            return;
        }
        tracing::info!(endpoint = %format!("{host}:{port}"), "following the master Sentinel named");
        if self.paused {
            self.paused = false;
            self.conn.handle_start(now);
        }
    }

    /// Writes a command, unless its caller is gone: then the core withdraws
    /// it, and it is never sent.
    fn transmit(&mut self, id: CommandId) {
        let Some(p) = self.pending.get(id) else {
            tracing::error!(?id, "core asked to write an unknown command");
            return;
        };
        if p.waiter.is_closed() {
            let now = self.now();
            self.conn.handle_cancel(now, id);
            return;
        }
        self.wbuf.extend_from_slice(&p.bytes);
        if p.class.blocking() {
            self.blocking_written.push(id);
        }
    }

    /// Fulfils an outcome the core decided.
    fn resolved(&mut self, id: CommandId, outcome: Outcome) {
        self.blocking_written.retain(|&b| b != id);
        let Some(p) = self.pending.take(id) else {
            return;
        };
        let result = match outcome {
            Outcome::Fallback(reason) => self.answer_from_cache(&p.bytes, reason),
            Outcome::Cancelled => {
                bump(&self.shared.metrics.cancelled);
                return;
            }
            Outcome::Indeterminate(resilis_core::IndeterminateCause::Cancelled) => {
                bump(&self.shared.metrics.cancelled);
                bump(&self.shared.metrics.indeterminate);
                return;
            }
            Outcome::TimedOut => Err(Error::Timeout),
            Outcome::NotApplied(reason) => Err(self.down(reason)),
            Outcome::Indeterminate(cause) => Err(Error::Indeterminate { cause }),
        };
        finish(p.waiter, result, Some(&self.shared));
    }

    /// The answer to a read the core sent to the cache.
    fn answer_from_cache(&self, bytes: &[u8], reason: DisconnectReason) -> Result<Reply, Error> {
        answer_from_cache(
            &self.shared,
            command_key(bytes),
            self.miss_reads_as_absent,
            || self.down(reason),
        )
    }

    fn down(&self, reason: DisconnectReason) -> Error {
        Error::down_said(reason, self.conn.server_message())
    }

    fn close_transport(&mut self) {
        self.transport = None;
        self.connecting = None;
        self.tls_seen = None;
        self.wbuf.clear();
        self.wpos = 0;
        self.needs_flush = false;
        self.rstart = 0;
        self.rend = 0;
        if self.rbuf.len() > 4 * READ_BUF {
            self.rbuf = vec![0; READ_BUF];
        }
    }

    fn open_transport(&mut self, host: String, port: u16, tls: bool) {
        self.close_transport();
        if tls && self.tls.as_ref().is_some_and(|t| t.insecure) {
            tracing::warn!(
                endpoint = %self.shared.endpoint,
                "REDIS_TLS_INSECURE=true: the server's certificate is NOT verified; anyone in the path can read this connection"
            );
        }
        let keepalive = self.keepalive;
        self.connecting = Some(Connecting::Tcp(Box::pin(connect_tcp(
            host, port, keepalive,
        ))));
    }

    fn on_event(&mut self, event: Event) {
        if let Some(subs) = &mut self.subs {
            let now = CoreInstant::from_micros(self.epoch.elapsed().as_micros() as u64);
            match event {
                Event::Ready { .. } => subs.handle_ready(now),
                Event::Disconnected { .. } => subs.handle_lost(now),
                _ => {}
            }
            self.sub_waiters.retain(|w| !w.done.is_closed());
        }
        let endpoint = &self.shared.endpoint;
        match event {
            Event::PhaseChanged { from, to } => {
                tracing::debug!(from = from.as_str(), to = to.as_str(), "phase")
            }
            Event::Connecting {
                attempt,
                max_attempts,
            } => {
                if attempt == 0 {
                    tracing::info!(%endpoint, "connecting to Redis");
                } else {
                    tracing::info!(%endpoint, attempt, max_attempts, "connecting to Redis");
                }
            }
            Event::Connected => tracing::info!(%endpoint, "connected to Redis"),
            Event::Ready {
                protocol,
                server_version,
            } => {
                if self.conn.stats().ready_count > 1 {
                    bump(&self.shared.metrics.reconnects);
                }
                let version = server_version.map(|v| v.to_string());
                tracing::info!(
                    %endpoint,
                    protocol = protocol.version(),
                    server_version = version.as_deref().unwrap_or("unknown"),
                    "Redis client ready"
                );
            }
            Event::Disconnected { reason } => {
                self.shared.status().server_message = self.conn.server_message().map(str::to_owned);
                let what = crate::health::describe(&reason);
                if self.shared.status().phase == PhaseKind::Ready {
                    tracing::warn!(%endpoint, fix = reason.fix(), "Redis connection lost: {what}");
                } else {
                    tracing::info!(%endpoint, fix = reason.fix(), "connect attempt failed: {what}");
                }
            }
            Event::Reconnecting {
                attempt,
                max_attempts,
                delay,
            } => tracing::info!(
                %endpoint,
                "reconnecting in {} ms (attempt {attempt} of {max_attempts})",
                delay.as_millis()
            ),
            Event::Down {
                reason,
                probe_interval,
            } => tracing::error!(
                %endpoint,
                fix = reason.fix(),
                "Redis down after all reconnect attempts: {}; probing every {} ms",
                crate::health::describe(&reason),
                probe_interval.as_millis()
            ),
            Event::Failed { reason, retry_in } => tracing::error!(
                %endpoint,
                fix = reason.fix(),
                retry_in_ms = retry_in.map(|d| d.as_millis() as u64),
                "Redis refused the connection: {}",
                crate::health::describe(&reason)
            ),
            Event::GaveUp { reason } => {
                tracing::error!(%endpoint, fix = reason.fix(), "gave up on Redis: {}", crate::health::describe(&reason))
            }
            Event::FallbackEngaged { reason } => {
                self.shared.fallback_hint.store(true, Relaxed);
                tracing::warn!(%endpoint, "fallback engaged: reads the cache holds are answered from it ({})", crate::health::describe(&reason));
            }
            Event::FallbackReleased => {
                self.shared.fallback_hint.store(false, Relaxed);
                tracing::info!(%endpoint, "fallback released: Redis is back");
            }
        }
        self.shared.on_event(&event);
        // No subscribers is fine; a lagging one loses the oldest events.
        let _ = self.shared.events.send(event);
    }

    fn publish_gauges(&self) {
        let m = &self.shared.metrics;
        let stats = self.conn.stats();
        if let Some(rtt) = stats.last_ping_rtt {
            m.ping_rtt_us.store(rtt.as_micros() as u64, Relaxed);
        }
        m.attempts.store(u64::from(self.conn.attempts()), Relaxed);
        m.queued.store(self.conn.queued() as u64, Relaxed);
        m.in_flight.store(self.conn.in_flight() as u64, Relaxed);
        m.read_buffer.store(self.rbuf.len() as u64, Relaxed);
    }

    /// Re-arms the timer only when the deadline moves earlier: under load the
    /// core's deadline moves later with every reply, and resetting a Tokio
    /// timer each time costs more than letting it fire early once (an early
    /// `handle_timeout` is a no-op; the loop then re-arms).
    fn arm_timer(&mut self, deadline: Option<CoreInstant>) {
        match deadline {
            Some(at) => {
                let at = self.epoch + Duration::from_micros(at.as_micros());
                if !self.timer_armed || at < self.sleep.deadline() {
                    self.sleep.as_mut().reset(at);
                }
                self.timer_armed = true;
            }
            None => self.timer_armed = false,
        }
    }

    // ----- step 2: wait for anything --------------------------------------

    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Wake> {
        let mut wake = Wake::default();
        let mut woke = false;

        if let Some(follow) = &mut self.follow {
            // Bounded: the resolver sends one address per master change.
            while let Poll::Ready(Some(target)) = follow.poll_recv(cx) {
                wake.retarget = Some(target);
                woke = true;
            }
        }

        match &mut self.connecting {
            Some(Connecting::Tcp(f)) => {
                if let Poll::Ready(r) = f.as_mut().poll(cx) {
                    wake.connected = Some(r.map(Connected::Tcp));
                }
            }
            Some(Connecting::Tls(f)) => {
                if let Poll::Ready(r) = f.as_mut().poll(cx) {
                    wake.connected = Some(r.map(|s| Connected::Tls(Box::new(s))));
                }
            }
            None => {}
        }
        if wake.connected.is_some() {
            self.connecting = None;
            woke = true;
        }

        if let Some(transport) = &mut self.transport {
            // Write first: requests out before we look for replies.
            while self.wpos < self.wbuf.len() {
                match transport.poll_write(cx, &self.wbuf[self.wpos..]) {
                    Poll::Ready(Ok(0)) => {
                        wake.io_failed = Some(TransportError::Closed);
                        break;
                    }
                    Poll::Ready(Ok(n)) => {
                        self.wpos += n;
                        self.needs_flush = true;
                    }
                    Poll::Ready(Err(e)) => {
                        wake.io_failed = Some(classify_io_error(&e));
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            if self.wpos > 0 && self.wpos == self.wbuf.len() {
                self.wbuf.clear();
                self.wpos = 0;
            }
            if self.needs_flush && wake.io_failed.is_none() {
                match transport.poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.needs_flush = false,
                    Poll::Ready(Err(e)) => wake.io_failed = Some(classify_io_error(&e)),
                    Poll::Pending => {}
                }
            }
            // Read even when the write failed: a server that refuses us
            // (-DENIED, max clients) writes its reason and closes, and our
            // HELLO then meets a reset. The reason is still in the receive
            // queue, and it is the diagnosis; the reset alone would read as
            // "closed without a reply" (TLS required).
            {
                make_room(&mut self.rbuf, &mut self.rstart, &mut self.rend, None);
                let mut buf = ReadBuf::new(&mut self.rbuf[self.rend..]);
                match transport.poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        let n = buf.filled().len();
                        if n == 0 {
                            wake.eof = true;
                        } else {
                            self.rend += n;
                            wake.read_any = true;
                        }
                    }
                    Poll::Ready(Err(e)) => {
                        wake.io_failed.get_or_insert(classify_io_error(&e));
                    }
                    Poll::Pending => {}
                }
            }
            woke |= wake.io_failed.is_some() || wake.eof || wake.read_any;
        }

        // Callers beyond the core's room wait in the channel (their `send`
        // waits in turn): more callers than slots is backpressure in time,
        // not an error.
        let room = self.conn.room().min(BATCH);
        if !self.shutting_down && room > 0 {
            match self.rx.poll_recv_many(cx, &mut self.incoming, room) {
                Poll::Ready(0) => {
                    wake.channel_closed = true;
                    woke = true;
                }
                Poll::Ready(_) => woke = true,
                Poll::Pending => {}
            }
        }

        for &id in &self.blocking_written {
            if let Some(p) = self.pending.get_mut(id)
                && p.waiter.poll_closed(cx).is_ready()
            {
                wake.abandoned.push(id);
                woke = true;
            }
        }

        if self.timer_armed && self.sleep.as_mut().poll(cx).is_ready() {
            self.timer_armed = false;
            wake.timer = true;
            woke = true;
        }

        if woke {
            Poll::Ready(wake)
        } else {
            Poll::Pending
        }
    }

    // ----- step 3: feed the core ------------------------------------------

    fn feed(&mut self, wake: Wake) {
        let now = self.now();
        // First: nothing below may write to a master Sentinel replaced.
        if let Some((host, port)) = wake.retarget {
            self.retarget(now, host, port);
        }
        // Before any timer: the core's TLS-silence rule needs to know.
        if self
            .tls_seen
            .as_ref()
            .is_some_and(|seen| seen.load(Relaxed))
        {
            self.tls_seen = None;
            self.conn.handle_tls_bytes_received(now);
        }
        if let Some(result) = wake.connected {
            match result {
                Ok(Connected::Tcp(stream)) => {
                    if let Some(tls) = self.conn.config().tls.then(|| self.tls.clone()).flatten() {
                        let name = tls.server_name.clone();
                        let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
                        let stream = transport::Watched::new(stream, seen.clone());
                        self.tls_seen = Some(seen);
                        self.connecting = Some(Connecting::Tls(Box::pin(async move {
                            tls.connector
                                .connect(name, stream)
                                .await
                                .map_err(|e| crate::tls::classify_tls_error(&e))
                        })));
                    } else {
                        self.transport = Some(Transport::Plain(stream));
                    }
                    self.conn.handle_transport_opened(now);
                }
                Ok(Connected::Tls(stream)) => {
                    self.tls_seen = None;
                    self.transport = Some(Transport::Tls(stream));
                    self.conn.handle_tls_established(now);
                }
                Err(e) => {
                    tracing::debug!(?e, "transport failed while connecting");
                    self.close_transport();
                    self.conn.handle_transport_failed(now, e);
                }
            }
        }
        if wake.read_any {
            self.on_readable(now);
        }
        if let Some(e) = wake.io_failed {
            self.close_transport();
            self.conn.handle_transport_failed(now, e);
        } else if wake.eof {
            self.close_transport();
            self.conn
                .handle_transport_failed(now, TransportError::Closed);
        }
        for id in wake.abandoned {
            self.conn.handle_cancel(now, id);
        }
        if !self.incoming.is_empty() {
            self.submit_incoming(now);
        }
        if wake.channel_closed {
            // Every client handle is gone: nobody can read another answer.
            self.shutting_down = true;
            self.conn.handle_shutdown(now);
        }
        if wake.timer {
            self.conn.handle_timeout(now);
        }
    }

    fn on_readable(&mut self, now: CoreInstant) {
        // Bounded: every pass consumes a frame or breaks.
        loop {
            let buf = &self.rbuf[self.rstart..self.rend];
            match self.conn.handle_receive(now, buf) {
                Received::Reply {
                    id,
                    frame,
                    consumed,
                } => {
                    self.blocking_written.retain(|&b| b != id);
                    if let Some(p) = self.pending.take(id) {
                        let result = match frame.error_text() {
                            Some(text) => {
                                Err(Error::Server(String::from_utf8_lossy(text).into_owned()))
                            }
                            None if p.raw => Ok(Reply {
                                value: Value::Bulk(buf[..consumed].to_vec()),
                                from_cache: false,
                            }),
                            None => Ok(Reply {
                                value: Value::from_frame(&frame),
                                from_cache: false,
                            }),
                        };
                        finish(p.waiter, result, Some(&self.shared));
                    }
                    self.rstart += consumed;
                }
                Received::Push { frame, consumed } => {
                    on_push(
                        &mut self.subs,
                        &mut self.sub_waiters,
                        &self.shared,
                        self.epoch,
                        now,
                        &frame,
                    );
                    self.rstart += consumed;
                }
                Received::PubSubRefused { frame, consumed } => {
                    if let Some(subs) = &mut self.subs {
                        subs.handle_refused(now, &frame);
                        refused(subs, &mut self.sub_waiters, &self.shared);
                    }
                    self.rstart += consumed;
                }
                Received::Internal { consumed } => self.rstart += consumed,
                Received::Incomplete { needed } => {
                    make_room(&mut self.rbuf, &mut self.rstart, &mut self.rend, needed);
                    break;
                }
                Received::Discard => {
                    self.rstart = 0;
                    self.rend = 0;
                    break;
                }
            }
            if self.rstart == self.rend {
                self.rstart = 0;
                self.rend = 0;
                // A large reply is done: give its memory back.
                if self.rbuf.len() > 4 * READ_BUF {
                    self.rbuf = vec![0; READ_BUF];
                }
                break;
            }
        }
    }

    fn submit_incoming(&mut self, now: CoreInstant) {
        let mut batch = std::mem::take(&mut self.incoming);
        for request in batch.drain(..) {
            match request {
                Request::Command(cmd) => self.submit_one(now, cmd),
                Request::Group(cmds) => {
                    for cmd in cmds {
                        self.submit_one(now, cmd);
                    }
                }
                Request::Retry => self.conn.handle_retry(now),
                Request::Subscribe { kind, names, done } => self.subscribe(now, kind, names, done),
                Request::Unsubscribe { kind, names } => {
                    if let Some(subs) = &mut self.subs {
                        for name in names {
                            if !self.shared.hub.listened(kind, &name) {
                                subs.unsubscribe(kind, &name);
                            }
                        }
                    }
                }
                Request::Shutdown => {
                    self.shutting_down = true;
                    self.conn.handle_shutdown(now);
                }
            }
        }
        self.incoming = batch;
    }

    fn submit_one(&mut self, now: CoreInstant, cmd: Command) {
        if cmd.reply.is_closed() {
            // Its caller left while it waited in the channel.
            bump(&self.shared.metrics.cancelled);
            return;
        }
        let submit = Submit {
            len: cmd.bytes.len(),
            deadline: now + cmd.timeout,
            class: cmd.class,
        };
        match self.conn.handle_submit(now, submit) {
            Ok(id) => self.pending.insert(
                id,
                Pending {
                    bytes: cmd.bytes,
                    waiter: cmd.reply,
                    class: cmd.class,
                    raw: cmd.raw,
                },
            ),
            Err(e) => {
                let error = self.submit_error(e);
                finish(cmd.reply, Err(error), Some(&self.shared));
            }
        }
    }
}

/// The answer to a read sent to the fallback cache: a hit, or `down` (why
/// Redis is unavailable): a miss is not "absent", unless the application
/// opted into that.
pub(crate) fn answer_from_cache(
    shared: &Shared,
    key: Option<&[u8]>,
    miss_reads_as_absent: bool,
    down: impl FnOnce() -> Error,
) -> Result<Reply, Error> {
    let found = key.map(|key| shared.fallback().read(key, std::time::Instant::now()));
    let m = &shared.metrics;
    match found {
        Some(Lookup::Hit(value)) => {
            bump(&m.fallback_hits);
            Ok(Reply {
                value: Value::Bulk(value),
                from_cache: true,
            })
        }
        _ => {
            bump(&m.fallback_misses);
            if miss_reads_as_absent {
                Ok(Reply {
                    value: Value::Nil,
                    from_cache: true,
                })
            } else {
                Err(down())
            }
        }
    }
}

/// The key of a one-key command (`GET key`, `EXISTS key`), read back from
/// its encoded bytes.
fn command_key(bytes: &[u8]) -> Option<&[u8]> {
    match resilis_core::resp::decode(bytes, &resilis_core::resp::Limits::REDIS) {
        Ok(resilis_core::resp::Decoded::Frame {
            frame: resilis_core::resp::Frame::Array(args),
            ..
        }) => match args.iter().nth(1) {
            Some(resilis_core::resp::Frame::BulkString(key)) => Some(key),
            _ => None,
        },
        _ => None,
    }
}

// ----- pub/sub: the core decides, the driver moves bytes ---------------------

impl Driver {
    fn subscribe(
        &mut self,
        now: CoreInstant,
        kind: Kind,
        names: Vec<Vec<u8>>,
        done: oneshot::Sender<Result<(), Error>>,
    ) {
        if self.subs.is_none() {
            let mut subs = Box::new(Subscriptions::new());
            if self.conn.is_ready() {
                subs.handle_ready(now);
            }
            self.subs = Some(subs);
        }
        let Some(subs) = &mut self.subs else { return };
        let mut waiting = Vec::new();
        for name in names {
            if let Err(e) = subs.subscribe(kind, &name) {
                let _ = done.send(Err(Error::PubSub(e)));
                return;
            }
            if !subs.is_confirmed(kind, &name) {
                waiting.push(name);
            }
        }
        if waiting.is_empty() {
            let _ = done.send(Ok(()));
        } else {
            self.sub_waiters.push(SubWaiter {
                kind,
                names: waiting,
                done,
            });
        }
    }

    /// Writes the requests the core wants sent, while the connection has
    /// room for their placeholders. Returns whether it wrote any.
    fn write_subscriptions(&mut self) -> bool {
        let Some(subs) = &mut self.subs else {
            return false;
        };
        let now = CoreInstant::from_micros(self.epoch.elapsed().as_micros() as u64);
        let mut wrote = false;
        // Bounded: every request marks names as sent, and there are at most
        // MAX_SUBSCRIPTIONS of them (plus one buffer growth per request).
        for _ in 0..2 * MAX_SUBSCRIPTIONS {
            if !self.conn.is_ready() || self.conn.room() == 0 || self.transport.is_none() {
                break;
            }
            match subs.poll_request(now, &mut self.sub_buf) {
                Some(Ok(req)) => {
                    if self.conn.handle_pubsub_written(now, req.confirmations) {
                        self.wbuf.extend_from_slice(&self.sub_buf[..req.len]);
                        wrote = true;
                    }
                }
                Some(Err(needed)) => self.sub_buf.resize(needed, 0),
                None => break,
            }
        }
        while let Some(event) = subs.poll_event() {
            let _ = self.shared.pubsub_events.send(event);
        }
        wrote
    }
}

/// What a push means, as the core says, handed to whoever listens.
fn on_push(
    subs: &mut Option<Box<Subscriptions<MAX_SUBSCRIPTIONS, SUBSCRIPTION_BYTES>>>,
    waiters: &mut Vec<SubWaiter>,
    shared: &Shared,
    epoch: TokioInstant,
    now: CoreInstant,
    frame: &resilis_core::resp::Frame<'_>,
) {
    let delivery = match subs {
        Some(subs) => subs.handle_push(now, frame),
        None => Delivery::Other,
    };
    match delivery {
        Delivery::Message {
            kind,
            channel,
            pattern,
            payload,
        } => {
            bump(&shared.metrics.pubsub_messages);
            let item = || {
                PubSubItem::Message(crate::pubsub::Message {
                    kind,
                    channel: channel.to_vec(),
                    pattern: pattern.map(<[u8]>::to_vec),
                    payload: payload.to_vec(),
                })
            };
            if !shared.hub.deliver(kind, pattern.unwrap_or(channel), item) {
                bump(&shared.metrics.pushes_dropped);
            }
        }
        Delivery::Subscribed { kind, name, gap } => {
            if let Some(gap) = gap {
                bump(&shared.metrics.pubsub_gaps);
                shared.hub.deliver(kind, name, || PubSubItem::Gap {
                    kind,
                    name: name.to_vec(),
                    cause: gap_cause(epoch, gap),
                });
            }
            waiters.retain_mut(|w| {
                if w.kind == kind {
                    w.names.retain(|n| n != name);
                }
                if w.names.is_empty() {
                    // Its caller may be gone; nothing to do then.
                    let _ = std::mem::replace(&mut w.done, oneshot::channel().0).send(Ok(()));
                    return false;
                }
                true
            });
        }
        Delivery::Other => {
            if shared.pushes.send(Push(Value::from_frame(frame))).is_err() {
                bump(&shared.metrics.pushes_dropped);
            }
        }
        Delivery::Unsubscribed { .. } | Delivery::Dropped { .. } | Delivery::Ignored => {}
    }
}

/// Subscriptions the server refused: their callers (or, on a resubscribe,
/// their subscribers) are told, and the core forgets them.
fn refused(
    subs: &mut Subscriptions<MAX_SUBSCRIPTIONS, SUBSCRIPTION_BYTES>,
    waiters: &mut Vec<SubWaiter>,
    shared: &Shared,
) {
    let (names, text) = subs.refused();
    let server = String::from_utf8_lossy(text).into_owned();
    for (kind, name) in names {
        let mut told = false;
        waiters.retain_mut(|w| {
            if w.kind == kind && w.names.iter().any(|n| n == name) {
                let done = std::mem::replace(&mut w.done, oneshot::channel().0);
                let _ = done.send(Err(Error::Server(server.clone())));
                told = true;
                return false;
            }
            true
        });
        if !told {
            shared.hub.deliver(kind, name, || PubSubItem::Refused {
                kind,
                name: name.to_vec(),
                server: server.clone(),
            });
        }
    }
    subs.clear_refused();
}

/// Keeps at least `MIN_READ` bytes free after `rend`, and room for what
/// `needed` says a frame needs — but never more than twice what was
/// actually received: a 12-byte header claiming 512 MiB must not cost
/// 512 MiB before a byte of payload arrived. The buffer grows in step
/// with the bytes, compacting before growing.
fn make_room(rbuf: &mut Vec<u8>, rstart: &mut usize, rend: &mut usize, needed: Option<usize>) {
    if *rstart == *rend {
        *rstart = 0;
        *rend = 0;
    }
    let live = *rend - *rstart;
    let earned = live.saturating_mul(2).max(READ_BUF);
    let want_total = needed.unwrap_or(0).min(earned).max(live + MIN_READ);
    if rbuf.len() - *rstart >= want_total {
        return;
    }
    if *rstart > 0 {
        rbuf.copy_within(*rstart..*rend, 0);
        *rstart = 0;
        *rend = live;
    }
    if rbuf.len() < want_total {
        // Doubling keeps the copies amortised, but never past what the
        // received bytes earned.
        let grown = want_total.max((rbuf.len() * 2).min(earned));
        rbuf.resize(grown, 0);
    }
}

/// Answers a caller and counts the answer.
fn finish(
    waiter: oneshot::Sender<Result<Reply, Error>>,
    result: Result<Reply, Error>,
    shared: Option<&Shared>,
) {
    if let Some(shared) = shared {
        let m = &shared.metrics;
        match &result {
            Ok(_) => bump(&m.ok),
            Err(Error::Indeterminate { .. }) => bump(&m.indeterminate),
            Err(Error::Timeout) => {
                bump(&m.timed_out);
                bump(&m.failed);
            }
            Err(Error::Backpressure { .. }) => {
                bump(&m.backpressure);
                bump(&m.failed);
            }
            Err(_) => bump(&m.failed),
        }
    }
    // The caller may have given up (dropped its future) since: fine, the
    // answer has nowhere to go.
    let _ = waiter.send(result);
}

impl Driver {
    fn submit_error(&self, e: SubmitError) -> Error {
        match e {
            SubmitError::Backpressure {
                queued,
                queued_bytes,
            } => Error::Backpressure {
                queued,
                queued_bytes,
            },
            SubmitError::NotReady {
                reason: Some(reason),
                ..
            }
            | SubmitError::Down { reason } => self.down(reason),
            SubmitError::NotReady { reason: None, .. } => Error::down_unknown(),
            SubmitError::Shutdown => Error::Shutdown,
            SubmitError::TooLarge { len, max, offline } => Error::TooLarge { len, max, offline },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_key_reads_the_first_argument() {
        use crate::encoding::encode_vec;
        use resilis_core::resp::encode;
        let get = encode_vec(|b| encode::get(b, b"user:\r\n1"));
        assert_eq!(command_key(&get), Some(&b"user:\r\n1"[..]));
        let ping = encode_vec(encode::ping);
        assert_eq!(command_key(&ping), None);
        assert_eq!(command_key(b"garbage"), None);
    }

    #[test]
    fn make_room_compacts_then_grows() {
        let mut buf = vec![0u8; 32 * 1024];
        let (mut start, mut end) = (30 * 1024, 31 * 1024);
        buf[start] = 7;
        make_room(&mut buf, &mut start, &mut end, None);
        assert_eq!((start, end), (0, 1024));
        assert_eq!(buf[0], 7);
        assert_eq!(buf.len(), 32 * 1024, "compaction was enough");
        make_room(&mut buf, &mut start, &mut end, Some(100 * 1024));
        assert!(buf.len() >= 64 * 1024, "grown for what the frame needs");
    }

    #[test]
    fn a_header_alone_does_not_buy_its_claimed_size() {
        // `$536870000\r\n`: 12 bytes received, 512 MiB claimed.
        let mut buf = vec![0u8; READ_BUF];
        let (mut start, mut end) = (0, 12);
        make_room(&mut buf, &mut start, &mut end, Some(536_870_014));
        assert_eq!(buf.len(), READ_BUF, "nothing received justifies growing");
        // As payload arrives, the buffer grows in step with it.
        let mut steps = 0;
        while end < 10 << 20 && steps < 100 {
            steps += 1;
            end = buf.len();
            make_room(&mut buf, &mut start, &mut end, Some(536_870_014));
            assert!(
                buf.len() <= 2 * end + READ_BUF,
                "{} for {end} received",
                buf.len()
            );
            assert!(buf.len() >= end + MIN_READ);
        }
        assert!(end >= 10 << 20, "grew to what was received");
    }
}

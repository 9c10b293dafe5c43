//! The run loop: *feed the core an input, then drain its outputs until
//! `Wait`*, over whatever transport the connector opened. Every decision is
//! the core's; this file only carries bytes, deadlines and replies.
//!
//! One transport at a time, in three states:
//! - idle: no transport; wait for the core's timer or a request, until the
//!   core asks for a transport;
//! - connecting: race the connector against the core's connect/TLS deadline;
//! - serving: race a read against the core's timer and the client's requests.
//!
//! Requests are taken only while the core has room for them (`room()`), so a
//! caller waits in the channel instead of being refused. A command whose
//! caller has gone (its call future dropped) is withdrawn with
//! `handle_cancel` instead of being written.

use core::convert::Infallible;
use core::future::{Future, pending};
use core::pin::pin;

use embassy_futures::select::{Either, Either3, Either4, select, select3, select4};
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_time::{Duration, Timer, with_deadline, with_timeout};
use embedded_io_async::{ErrorType, Read, Write};
use heapless::{String, Vec};
use resilis_core::config::HOST_CAP;
use resilis_core::{
    CommandId, Config, Connection, Event, Output, PhaseKind, Received, Submit, TransportError,
};

use crate::client::{Client, Error, Reply, Request, Shared, Status};
use crate::fmt::{debug, info, warning};
use crate::time;
use crate::transport::{Connector, Progress, Target, Transport};

/// The least time a write is given, whatever the core's next deadline.
const MIN_WRITE_WINDOW: resilis_core::Duration = resilis_core::Duration::from_millis(250);

/// How long a polite close (TLS close_notify, TCP FIN) may take.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// Creates the runner and its client. `rx` is the receive buffer: a reply
/// longer than it cannot be received, so the core's bulk-length limit is
/// lowered to its size (such a reply then fails cleanly in the decoder).
pub fn new<'a, M, C, const N: usize, const CMD: usize, const REPLY: usize>(
    mut config: Config,
    connector: C,
    shared: &'a Shared<M, CMD, REPLY>,
    rx: &'a mut [u8],
) -> (Runner<'a, M, C, N, CMD, REPLY>, Client<'a, M, CMD, REPLY>)
where
    M: RawMutex,
    C: Connector,
{
    config.resp_limits.max_bulk_len = config.resp_limits.max_bulk_len.min(rx.len());
    let runner = Runner {
        connector,
        io: Io {
            conn: Connection::new(config),
            shared,
            rx,
            rx_len: 0,
            pending: None,
            open: None,
            on_event: None,
        },
    };
    (runner, Client::new(shared))
}

/// Runs one connection forever; spawn [`Runner::run`] as a task of its own.
pub struct Runner<'a, M: RawMutex, C, const N: usize, const CMD: usize, const REPLY: usize> {
    connector: C,
    io: Io<'a, M, N, CMD, REPLY>,
}

/// A transport the core asked for, copied out of `Output::OpenTransport`.
struct Open {
    host: String<HOST_CAP>,
    port: u16,
    tls: bool,
}

/// The command in flight: its bytes are kept until it is resolved, since the
/// core may ask for them again after a reconnect.
struct Pending<const CMD: usize> {
    id: CommandId,
    seq: u32,
    bytes: Vec<u8, CMD>,
}

/// Everything but the connector, so a transport can borrow the connector
/// while the loop uses the rest.
struct Io<'a, M: RawMutex, const N: usize, const CMD: usize, const REPLY: usize> {
    conn: Connection<N>,
    shared: &'a Shared<M, CMD, REPLY>,
    rx: &'a mut [u8],
    rx_len: usize,
    pending: Option<Pending<CMD>>,
    open: Option<Open>,
    on_event: Option<fn(&Event)>,
}

/// What a drain left to do.
struct Drained {
    wait: Option<resilis_core::Instant>,
    close: bool,
    /// A write or flush failed and the core was told: the transport is gone.
    failed: bool,
}

impl<'a, M, C, const N: usize, const CMD: usize, const REPLY: usize> Runner<'a, M, C, N, CMD, REPLY>
where
    M: RawMutex,
    C: Connector,
{
    /// Calls `hook` with every event of the core (after logging it), e.g. to
    /// print or count reconnects.
    pub fn with_event_hook(mut self, hook: fn(&Event)) -> Self {
        self.io.on_event = Some(hook);
        self
    }

    /// The core, for getters (`phase`, `stats`...).
    pub fn connection(&self) -> &Connection<N> {
        &self.io.conn
    }

    pub async fn run(&mut self) -> ! {
        self.io.conn.handle_start(time::now());
        loop {
            let open = self.io.idle().await;
            let target = Target {
                host: &open.host,
                port: open.port,
                tls: open.tls,
                keepalive: time::duration(self.io.conn.config().tcp_keepalive),
            };
            let progress = Progress::new();
            let connecting = self.connector.connect(target, &progress);
            match self.io.connecting(connecting, &progress, open.tls).await {
                Some(Ok(transport)) => self.io.serve(transport).await,
                Some(Err(error)) => {
                    warning!("connect failed: {:?}", error);
                    self.io.conn.handle_transport_failed(time::now(), error);
                }
                // The core's deadline passed first; dropping the future
                // dropped the half-open socket.
                None => {}
            }
        }
    }
}

impl<M: RawMutex, const N: usize, const CMD: usize, const REPLY: usize> Io<'_, M, N, CMD, REPLY> {
    /// No transport: timers and requests until the core asks for one.
    async fn idle(&mut self) -> Open {
        loop {
            let drained = self.drain::<NoTransport>(None).await;
            if let Some(open) = self.open.take() {
                return open;
            }
            match select(
                sleep_until(drained.wait),
                next_request(self.shared, self.conn.room()),
            )
            .await
            {
                Either::First(()) => self.conn.handle_timeout(time::now()),
                Either::Second(request) => self.submit(request),
            }
        }
    }

    /// Races the connector against the core's deadlines. `None`: the core
    /// gave up on this attempt first.
    async fn connecting<T: Transport>(
        &mut self,
        connect: impl Future<Output = Result<T, TransportError>>,
        progress: &Progress,
        tls: bool,
    ) -> Option<Result<T, TransportError>> {
        let mut connect = pin!(connect);
        let mut tcp_reported = false;
        loop {
            let drained = self.drain::<NoTransport>(None).await;
            if !matches!(
                self.conn.phase(),
                PhaseKind::Connecting | PhaseKind::TlsHandshake
            ) {
                return None;
            }
            let result = select4(
                &mut connect,
                progress.wait(),
                sleep_until(drained.wait),
                next_request(self.shared, self.conn.room()),
            )
            .await;
            let now = time::now();
            let tcp_up = matches!(result, Either4::Second(())) || progress.take();
            if tcp_up && !tcp_reported {
                tcp_reported = true;
                self.conn.handle_transport_opened(now);
            }
            match result {
                Either4::First(Ok(transport)) => {
                    if !tcp_reported {
                        // A connector that never reported TCP on its own.
                        self.conn.handle_transport_opened(now);
                    }
                    if tls {
                        self.conn.handle_tls_established(now);
                    }
                    return Some(Ok(transport));
                }
                Either4::First(Err(error)) => return Some(Err(error)),
                Either4::Second(()) => {}
                Either4::Third(()) => self.conn.handle_timeout(now),
                // Into the core's offline queue, like any request made
                // while there is no connection.
                Either4::Fourth(request) => self.submit(request),
            }
        }
    }

    /// A transport is open: bytes both ways until the core closes it or it fails.
    async fn serve<T: Transport>(&mut self, mut transport: T) {
        self.rx_len = 0;
        loop {
            let drained = self.drain(Some(&mut transport)).await;
            if drained.close {
                let _ = with_timeout(CLOSE_TIMEOUT, transport.close()).await;
                return;
            }
            if drained.failed || !transport_phase(self.conn.phase()) {
                // The core was told the transport failed: it is gone.
                return;
            }
            let read = transport.read(&mut self.rx[self.rx_len..]);
            let failure = match select3(
                read,
                sleep_until(drained.wait),
                next_request(self.shared, self.conn.room()),
            )
            .await
            {
                Either3::First(Ok(0)) => {
                    info!("transport closed by the peer");
                    Some(TransportError::Closed)
                }
                Either3::First(Ok(n)) => {
                    self.rx_len += n;
                    self.process_rx()
                }
                Either3::First(Err(error)) => {
                    let error = T::classify(&error);
                    warning!("read failed: {:?}", error);
                    Some(error)
                }
                Either3::Second(()) => {
                    self.conn.handle_timeout(time::now());
                    None
                }
                Either3::Third(request) => {
                    self.submit(request);
                    None
                }
            };
            if let Some(error) = failure {
                self.conn.handle_transport_failed(time::now(), error);
                // Let the core's events out, then drop the transport.
                self.drain::<NoTransport>(None).await;
                return;
            }
        }
    }

    /// Hands the received bytes to the core, frame by frame. `Some`: the
    /// transport cannot go on (a frame larger than the buffer).
    fn process_rx(&mut self) -> Option<TransportError> {
        let now = time::now();
        while self.rx_len > 0 {
            let (consumed, reply) = match self.conn.handle_receive(now, &self.rx[..self.rx_len]) {
                Received::Reply { id, consumed, .. } => (consumed, Some(id)),
                Received::Push { consumed, .. } | Received::PubSubRefused { consumed, .. } => {
                    debug!("push of {} bytes ignored", consumed);
                    (consumed, None)
                }
                Received::Internal { consumed } => (consumed, None),
                Received::Incomplete { .. } => {
                    if self.rx_len == self.rx.len() {
                        // A frame (an aggregate: bulks are bounded by the
                        // buffer) larger than the receive buffer can never
                        // complete.
                        warning!("reply larger than the receive buffer");
                        return Some(TransportError::Other);
                    }
                    return None;
                }
                Received::Discard => {
                    self.rx_len = 0;
                    return None;
                }
            };
            if let Some(id) = reply {
                self.deliver(id, consumed);
            }
            self.rx.copy_within(consumed..self.rx_len, 0);
            self.rx_len -= consumed;
        }
        None
    }

    fn deliver(&mut self, id: CommandId, len: usize) {
        let Some(pending) = self.pending.take_if(|p| p.id == id) else {
            return;
        };
        let result = Vec::from_slice(&self.rx[..len])
            .map(|bytes| Reply { bytes })
            .map_err(|_| Error::ReplyTooLarge { len });
        self.shared.respond(pending.seq, result);
    }

    fn submit(&mut self, request: Request<CMD>) {
        if request.shutdown {
            // The Close, the resolutions and the events follow in the drain.
            self.conn.handle_shutdown(time::now());
            return;
        }
        let now = time::now();
        if !self.shared.waiting_for(request.seq) {
            // Its caller left before the request was even taken.
            return;
        }
        // One call at a time per client: a new call means the caller of the
        // previous one left without its reply.
        if let Some(previous) = self.pending.take() {
            self.conn.handle_cancel(now, previous.id);
        }
        let timeout = resilis_core::Duration::from_micros(request.timeout.as_micros());
        let submit = Submit {
            len: request.bytes.len(),
            deadline: now + timeout,
            class: request.class,
        };
        match self.conn.handle_submit(now, submit) {
            Ok(id) => {
                self.pending = Some(Pending {
                    id,
                    seq: request.seq,
                    bytes: request.bytes,
                })
            }
            Err(error) => self.shared.respond(request.seq, Err(Error::Submit(error))),
        }
    }

    /// Drains the core's outputs until `Wait`, writing through `link`.
    async fn drain<T: Transport>(&mut self, mut link: Option<&mut T>) -> Drained {
        let mut close = false;
        let mut wrote = false;
        let mut gone = false;
        let wait = loop {
            // Taken before polling: a write may not outlast the core's next
            // deadline by much. The floor keeps a deadline that is already
            // due (its timer not yet handled) from failing a healthy write.
            let floor = time::now() + MIN_WRITE_WINDOW;
            let deadline = self.conn.poll_timeout().map(|at| at.max(floor));
            let mut failed = None;
            match self.conn.poll_output() {
                Output::Wait(at) => break at,
                Output::OpenTransport { host, port, tls } => {
                    let mut copy = String::new();
                    // Both strings have HOST_CAP bytes of room.
                    let _ = copy.push_str(host);
                    self.open = Some(Open {
                        host: copy,
                        port,
                        tls,
                    });
                }
                Output::Transmit(bytes) => {
                    if let Some(transport) = link.as_deref_mut() {
                        failed = write(transport, bytes, deadline).await.err();
                        wrote = true;
                    }
                }
                Output::TransmitCommand(id) => {
                    let shared = self.shared;
                    let waited = self
                        .pending
                        .as_ref()
                        .filter(|p| p.id == id && shared.waiting_for(p.seq));
                    match (link.as_deref_mut(), waited) {
                        (Some(transport), Some(pending)) => {
                            failed = write(transport, &pending.bytes, deadline).await.err();
                            wrote = true;
                        }
                        // Its caller left (or its bytes are gone): withdrawn
                        // before the next poll, so it is never written.
                        _ => {
                            self.conn.handle_cancel(time::now(), id);
                            self.pending.take_if(|p| p.id == id);
                        }
                    }
                }
                Output::Close => {
                    close = true;
                    link = None;
                }
                Output::Resolved { id, outcome } => {
                    if let Some(pending) = self.pending.take_if(|p| p.id == id) {
                        self.shared
                            .respond(pending.seq, Err(Error::Outcome(outcome)));
                    }
                }
                Output::Event(event) => {
                    info!("redis: {:?}", event);
                    if let Some(hook) = self.on_event {
                        hook(&event);
                    }
                }
            }
            if let Some(error) = failed {
                warning!("write failed: {:?}", error);
                self.conn.handle_transport_failed(time::now(), error);
                link = None;
                gone = true;
            }
        };
        if wrote && let Some(transport) = link {
            // TLS writes its records here: a flush cut short would leave half
            // a record on the wire, so running out of time breaks the stream.
            let floor = time::now() + MIN_WRITE_WINDOW;
            let flushed = match wait.map(|at| at.max(floor)) {
                Some(at) => with_deadline(time::from_core(at), transport.flush())
                    .await
                    .map_err(|_| TransportError::TimedOut)
                    .and_then(|r| r.map_err(|e| T::classify(&e))),
                None => transport.flush().await.map_err(|e| T::classify(&e)),
            };
            if let Err(error) = flushed {
                warning!("flush failed: {:?}", error);
                self.conn.handle_transport_failed(time::now(), error);
                // Whatever the core has to say about it is drained next time.
                gone = true;
            }
        }
        self.publish();
        Drained {
            wait,
            close,
            failed: gone,
        }
    }

    fn publish(&self) {
        let stats = self.conn.stats();
        self.shared.set_status(Status {
            phase: self.conn.phase(),
            fallback_active: self.conn.fallback_active(),
            last_reason: self.conn.last_reason(),
            ready_count: stats.ready_count,
        });
    }
}

/// Writes all of `bytes` before the core's next deadline; a write that cannot
/// finish by then breaks the stream (half a command is on the wire).
async fn write<T: Transport>(
    transport: &mut T,
    bytes: &[u8],
    deadline: Option<resilis_core::Instant>,
) -> Result<(), TransportError> {
    let written = match deadline {
        Some(at) => with_deadline(time::from_core(at), transport.write_all(bytes))
            .await
            .map_err(|_| TransportError::TimedOut)?,
        None => transport.write_all(bytes).await,
    };
    written.map_err(|e| T::classify(&e))
}

fn transport_phase(phase: PhaseKind) -> bool {
    matches!(
        phase,
        PhaseKind::Connecting | PhaseKind::TlsHandshake | PhaseKind::Handshake | PhaseKind::Ready
    )
}

/// The client's next request, but only while the core can take one: until
/// then the caller waits in the channel.
async fn next_request<M: RawMutex, const CMD: usize, const REPLY: usize>(
    shared: &Shared<M, CMD, REPLY>,
    room: usize,
) -> Request<CMD> {
    if room == 0 {
        return pending().await;
    }
    shared.requests.receive().await
}

async fn sleep_until(at: Option<resilis_core::Instant>) {
    match at {
        Some(at) => Timer::at(time::from_core(at)).await,
        None => pending().await,
    }
}

/// The transport type of the phases that have none.
struct NoTransport;

impl ErrorType for NoTransport {
    type Error = Infallible;
}

impl Read for NoTransport {
    async fn read(&mut self, _buf: &mut [u8]) -> Result<usize, Infallible> {
        Ok(0)
    }
}

impl Write for NoTransport {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl Transport for NoTransport {
    fn classify(error: &Infallible) -> TransportError {
        match *error {}
    }
}

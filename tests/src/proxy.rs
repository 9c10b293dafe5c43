//! Network faults on loopback: [`FaultProxy`] sits between a client and a
//! real server and misbehaves on command; [`HostileServer`] is a server that
//! only ever misbehaves.
//!
//! Both run on a small Tokio runtime of their own, not on the test's: a test
//! may block its own runtime (a `current_thread` `#[tokio::test]` calling
//! `RedisServer::restart`, a `std::thread::sleep`) and the network must keep
//! behaving — or misbehaving — meanwhile. For the same reason their control
//! methods are plain synchronous calls that never block. Dropping the handle
//! stops the runtime, which drops every connection and task.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};

/// A TLS alert record (fatal, handshake_failure): what a TLS server sends a
/// client that spoke plaintext or offered nothing it accepts.
pub const TLS_ALERT: &[u8] = b"\x15\x03\x03\x00\x02\x02\x28";
/// Bytes that are no RESP type at all.
pub const GARBAGE: &[u8] = b"\x00\xffHTTP/1.1 400 Bad Request\r\n\r\n";
/// A bulk string that announces 100 bytes and stops after 3.
pub const TRUNCATED_FRAME: &[u8] = b"$100\r\nabc";
/// Redis's reply to a non-loopback client in protected mode (7.0 wording,
/// shortened), for faking it where a real one is not possible.
pub const DENIED_REPLY: &[u8] = b"-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface.\r\n";

/// Redis 7.0.15's reply to `HELLO 3`, captured from the real server.
pub const HELLO3_REPLY: &[u8] = b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:3\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
/// Redis 7.0.15's reply to `HELLO 2`, captured from the real server.
pub const HELLO2_REPLY: &[u8] = b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:4\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";

/// How long the proxy waits for the upstream connect before it resets the
/// client (as if refused).
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes buffered per direction per connection while frozen or delayed;
/// past this the proxy stops reading and TCP flow control does the rest.
const PIPE_CAP: usize = 1 << 20;
const READ_CHUNK: usize = 16 * 1024;
/// Bound for the hostile server's request buffer.
const HOSTILE_BUF_CAP: usize = 1 << 20;

/// Which way bytes flow through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server (commands).
    ToServer,
    /// Server to client (replies).
    ToClient,
}

/// What an idle limit does to a connection idle too long, after the
/// behaviours of real load balancers and NATs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleAction {
    /// FIN both ways.
    Close,
    /// RST both ways (e.g. Azure LB with "TCP reset on idle").
    Reset,
    /// Forget the flow silently: the connection stays open but nothing is
    /// forwarded on it ever again (Azure's default, most NATs).
    BlackHole,
}

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("cannot build a Tokio runtime for test support")
}

fn bind_loopback() -> (std::net::TcpListener, SocketAddr) {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let addr = listener.local_addr().expect("listener address");
    (listener, addr)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Clone, Default)]
struct Faults {
    latency_to_server: Duration,
    latency_to_client: Duration,
    frozen: bool,
    idle: Option<(Duration, IdleAction)>,
    /// (direction, byte budget, generation): each change is a new budget.
    close_after: Option<(Direction, u64, u64)>,
    /// Bytes per second, per direction: a slow link.
    rate_to_server: Option<u64>,
    rate_to_client: Option<u64>,
}

enum Control {
    Reset,
    Close,
    Inject(Direction, Vec<u8>),
}

struct ProxyShared {
    upstream: Mutex<SocketAddr>,
    upstream_source: Option<IpAddr>,
    faults: Mutex<Faults>,
    /// Bumped on every fault change so that idle connections re-evaluate.
    changed: watch::Sender<u64>,
    conns: Mutex<HashMap<u64, mpsc::UnboundedSender<Control>>>,
    accepted: AtomicU64,
    bytes_to_server: AtomicU64,
    bytes_to_client: AtomicU64,
    generation: AtomicU64,
}

impl ProxyShared {
    fn update(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut lock(&self.faults));
        self.changed.send_modify(|v| *v += 1);
    }

    fn broadcast(&self, make: impl Fn() -> Control) {
        for tx in lock(&self.conns).values() {
            let _ = tx.send(make());
        }
    }
}

/// Options for a [`FaultProxy`].
#[derive(Debug, Clone)]
pub struct FaultProxyBuilder {
    upstream: SocketAddr,
    upstream_source: Option<IpAddr>,
}

impl FaultProxyBuilder {
    /// Connect upstream from this loopback address, e.g. `127.0.0.2`:
    /// Redis in protected mode then sees a non-local client and answers
    /// `-DENIED`, which is otherwise impossible to provoke on loopback.
    pub fn upstream_source(mut self, ip: IpAddr) -> Self {
        assert!(ip.is_loopback(), "the tests stay on loopback");
        self.upstream_source = Some(ip);
        self
    }

    /// Starts the proxy; it listens on a free 127.0.0.1 port at once.
    pub fn start(self) -> FaultProxy {
        let (std_listener, addr) = bind_loopback();
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(ProxyShared {
            upstream: Mutex::new(self.upstream),
            upstream_source: self.upstream_source,
            faults: Mutex::new(Faults::default()),
            changed,
            conns: Mutex::new(HashMap::new()),
            accepted: AtomicU64::new(0),
            bytes_to_server: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        });
        let runtime = runtime("fault-proxy");
        let accept_shared = shared.clone();
        runtime.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("register listener");
            let mut next_id = 0u64;
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    // EMFILE and friends: back off briefly rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                accept_shared.accepted.fetch_add(1, Ordering::Relaxed);
                next_id += 1;
                let (tx, rx) = mpsc::unbounded_channel();
                lock(&accept_shared.conns).insert(next_id, tx);
                tokio::spawn(run_connection(accept_shared.clone(), next_id, client, rx));
            }
        });
        FaultProxy {
            shared,
            addr,
            runtime: Some(runtime),
        }
    }
}

/// A TCP proxy on `127.0.0.1` that forwards to one upstream and injects
/// faults on command. New faults apply to live and future connections.
pub struct FaultProxy {
    shared: Arc<ProxyShared>,
    addr: SocketAddr,
    runtime: Option<Runtime>,
}

impl FaultProxy {
    /// A pass-through proxy to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        FaultProxy::builder(upstream).start()
    }

    /// Options; finish with `.start()`.
    pub fn builder(upstream: SocketAddr) -> FaultProxyBuilder {
        assert!(upstream.ip().is_loopback(), "the tests stay on loopback");
        FaultProxyBuilder {
            upstream,
            upstream_source: None,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.addr.port())
    }

    /// Points future connections at another upstream (live ones keep theirs).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *lock(&self.shared.upstream) = upstream;
    }

    /// Clears every fault: no latency, not frozen, no idle limit, no byte
    /// budget. Black-holed connections stay black-holed (reset them).
    pub fn pass_through(&self) {
        self.shared.update(|f| *f = Faults::default());
    }

    /// Delays every chunk in `direction` by `latency` (order is kept;
    /// chunks already queued keep their old delay).
    pub fn set_latency(&self, direction: Direction, latency: Duration) {
        self.shared.update(|f| match direction {
            Direction::ToServer => f.latency_to_server = latency,
            Direction::ToClient => f.latency_to_client = latency,
        });
    }

    /// A slow link: at most `bytes_per_sec` forwarded in `direction`
    /// (`None`: unlimited), paced in 10 ms slices.
    pub fn set_rate(&self, direction: Direction, bytes_per_sec: Option<u64>) {
        self.shared.update(|f| match direction {
            Direction::ToServer => f.rate_to_server = bytes_per_sec,
            Direction::ToClient => f.rate_to_client = bytes_per_sec,
        });
    }

    /// A silent, half-open partition: nothing is forwarded either way and
    /// nothing is closed. Live connections stall (bytes sent meanwhile are
    /// held, up to 1 MiB per direction, then TCP flow control pushes back);
    /// new connections are accepted (the kernel completes the handshake)
    /// but not connected upstream until [`heal`](Self::heal). Held bytes are
    /// delivered after the heal, as TCP retransmission would.
    pub fn freeze(&self) {
        self.shared.update(|f| f.frozen = true);
    }

    /// Ends a [`freeze`](Self::freeze).
    pub fn heal(&self) {
        self.shared.update(|f| f.frozen = false);
    }

    /// Resets every live connection with RST on both sides (SO_LINGER 0),
    /// as a crashed middlebox or a killed NAT entry would.
    pub fn reset_all(&self) {
        self.shared.broadcast(|| Control::Reset);
    }

    /// Closes every live connection with FIN on both sides.
    pub fn close_all(&self) {
        self.shared.broadcast(|| Control::Close);
    }

    /// From now on every connection (live or new) forwards at most `bytes`
    /// more bytes in `direction`, then closes both sides: a reply cut in
    /// the middle of a frame.
    pub fn close_after_bytes(&self, direction: Direction, bytes: u64) {
        let generation = self.shared.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.shared
            .update(|f| f.close_after = Some((direction, bytes, generation)));
    }

    /// Removes the byte budget.
    pub fn clear_close_after(&self) {
        self.shared.update(|f| f.close_after = None);
    }

    /// Connections with no bytes either way for `idle` get `action`, like a
    /// cloud load balancer's idle timeout (scaled down).
    pub fn set_idle_limit(&self, idle: Duration, action: IdleAction) {
        self.shared.update(|f| f.idle = Some((idle, action)));
    }

    /// Removes the idle limit.
    pub fn clear_idle_limit(&self) {
        self.shared.update(|f| f.idle = None);
    }

    /// Queues `bytes` in `direction` on every live connection, after what is
    /// already queued: e.g. [`TLS_ALERT`], [`GARBAGE`] or
    /// [`TRUNCATED_FRAME`] toward the client.
    pub fn inject(&self, direction: Direction, bytes: &[u8]) {
        self.shared
            .broadcast(|| Control::Inject(direction, bytes.to_vec()));
    }

    /// Connections accepted since start.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections currently open (or being opened) through the proxy.
    pub fn active_connections(&self) -> usize {
        lock(&self.shared.conns).len()
    }

    /// Bytes forwarded (or injected) toward the server since start.
    pub fn bytes_to_server(&self) -> u64 {
        self.shared.bytes_to_server.load(Ordering::Relaxed)
    }

    /// Bytes forwarded (or injected) toward the client since start.
    pub fn bytes_to_client(&self) -> u64 {
        self.shared.bytes_to_client.load(Ordering::Relaxed)
    }

    /// Waits (polling, bounded by `limit`) until at least `n` connections
    /// were accepted; returns whether that happened.
    pub fn wait_for_connections(&self, n: u64, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if self.connections_accepted() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.connections_accepted() >= n
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Non-blocking, so it is allowed inside a test's own runtime.
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("faults", &*lock(&self.shared.faults))
            .finish_non_exhaustive()
    }
}

/// Bytes waiting to go one way, each chunk with the instant it may leave.
#[derive(Default)]
struct Pipe {
    chunks: VecDeque<(Instant, Vec<u8>)>,
    /// Bytes of the front chunk already written.
    offset: usize,
    queued: usize,
}

impl Pipe {
    fn push(&mut self, due: Instant, bytes: Vec<u8>) {
        self.queued += bytes.len();
        self.chunks.push_back((due, bytes));
    }

    fn front(&self) -> Option<(Instant, &[u8])> {
        self.chunks
            .front()
            .map(|(due, bytes)| (*due, &bytes[self.offset..]))
    }

    fn consume(&mut self, n: usize) {
        self.queued -= n;
        self.offset += n;
        if self
            .chunks
            .front()
            .is_some_and(|(_, b)| self.offset == b.len())
        {
            self.chunks.pop_front();
            self.offset = 0;
        }
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

/// Writes (part of) the front chunk once it is due. Cancel-safe: a
/// `TcpStream` write either happened or did not.
async fn write_due(
    w: &mut (impl AsyncWriteExt + Unpin),
    pipe: &Pipe,
    budget: Option<u64>,
    pace: &Pace,
) -> io::Result<usize> {
    let (due, bytes) = pipe.front().expect("only polled when non-empty");
    sleep_until(due.max(pace.next)).await;
    let len = budget.map_or(bytes.len(), |b| bytes.len().min(b as usize));
    let len = pace.rate.map_or(len, |r| len.min(Pace::slice(r)));
    w.write(&bytes[..len]).await
}

/// A bandwidth limit on one direction: writes of at most 10 ms worth of
/// bytes, each followed by the pause its size costs at the rate.
struct Pace {
    rate: Option<u64>,
    next: Instant,
}

impl Pace {
    fn new() -> Pace {
        Pace {
            rate: None,
            next: Instant::now(),
        }
    }

    fn slice(rate: u64) -> usize {
        (rate / 100).max(1) as usize
    }

    fn set(&mut self, rate: Option<u64>) {
        self.rate = rate.filter(|&r| r > 0);
    }

    fn wrote(&mut self, n: usize) {
        if let Some(rate) = self.rate {
            self.next = Instant::now() + Duration::from_secs_f64(n as f64 / rate as f64);
        }
    }
}

enum End {
    Close,
    Reset,
}

/// Removes the connection from the live table however its task ends
/// (including when the runtime shuts down).
struct Registration {
    shared: Arc<ProxyShared>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.shared.conns).remove(&self.id);
    }
}

async fn connect_upstream(shared: &ProxyShared) -> io::Result<TcpStream> {
    let upstream = *lock(&shared.upstream);
    let socket = if upstream.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = shared.upstream_source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    timeout(UPSTREAM_CONNECT_TIMEOUT, socket.connect(upstream))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn run_connection(
    shared: Arc<ProxyShared>,
    id: u64,
    mut client: TcpStream,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let _registration = Registration {
        shared: shared.clone(),
        id,
    };
    let mut changed = shared.changed.subscribe();
    let mut early_injects = Vec::new();

    // During a freeze a new connection gets no further than the handshake.
    while lock(&shared.faults).frozen {
        tokio::select! {
            c = control.recv() => match c {
                Some(Control::Inject(d, b)) => early_injects.push((d, b)),
                Some(Control::Close) => return,
                Some(Control::Reset) | None => return reset(&client),
            },
            _ = changed.changed() => {}
        }
    }
    let Ok(mut server) = connect_upstream(&shared).await else {
        // Upstream down: the client sees a reset, as close to "refused" as
        // an already accepted connection can get.
        return reset(&client);
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);

    let end = {
        let (mut client_r, mut client_w) = client.split();
        let (mut server_r, mut server_w) = server.split();
        let mut up = Pipe::default();
        let mut down = Pipe::default();
        for (d, b) in early_injects {
            match d {
                Direction::ToServer => up.push(Instant::now(), b),
                Direction::ToClient => down.push(Instant::now(), b),
            }
        }
        let mut client_buf = vec![0u8; READ_CHUNK];
        let mut server_buf = vec![0u8; READ_CHUNK];
        let mut last_activity = Instant::now();
        let mut black_holed = false;
        let (mut client_eof, mut server_eof) = (false, false);
        let (mut server_w_shut, mut client_w_shut) = (false, false);
        let mut budget: Option<(Direction, u64)> = None;
        let mut budget_generation = 0;
        let mut up_pace = Pace::new();
        let mut down_pace = Pace::new();

        loop {
            let faults = lock(&shared.faults).clone();
            match faults.close_after {
                Some((d, n, g)) if g != budget_generation => {
                    budget = Some((d, n));
                    budget_generation = g;
                }
                None => budget = None,
                _ => {}
            }
            up_pace.set(faults.rate_to_server);
            down_pace.set(faults.rate_to_client);
            let up_budget = budget.and_then(|(d, n)| (d == Direction::ToServer).then_some(n));
            let down_budget = budget.and_then(|(d, n)| (d == Direction::ToClient).then_some(n));
            if up_budget == Some(0) || down_budget == Some(0) {
                break End::Close;
            }
            let stalled = faults.frozen || black_holed;
            let idle = faults
                .idle
                .filter(|_| !black_holed)
                .map(|(d, a)| (last_activity + d, a));
            let now = Instant::now();

            tokio::select! {
                c = control.recv() => match c {
                    Some(Control::Inject(Direction::ToServer, b)) => up.push(now, b),
                    Some(Control::Inject(Direction::ToClient, b)) => down.push(now, b),
                    Some(Control::Close) => break End::Close,
                    Some(Control::Reset) | None => break End::Reset,
                },
                _ = changed.changed() => {}
                r = client_r.read(&mut client_buf), if !client_eof && up.queued < PIPE_CAP => match r {
                    Ok(0) => client_eof = true,
                    Ok(n) => {
                        up.push(now + faults.latency_to_server, client_buf[..n].to_vec());
                        last_activity = now;
                    }
                    Err(_) => break End::Reset,
                },
                r = server_r.read(&mut server_buf), if !server_eof && down.queued < PIPE_CAP => match r {
                    Ok(0) => server_eof = true,
                    Ok(n) => {
                        down.push(now + faults.latency_to_client, server_buf[..n].to_vec());
                        last_activity = now;
                    }
                    Err(_) => break End::Reset,
                },
                r = write_due(&mut server_w, &up, up_budget, &up_pace), if !stalled && !up.is_empty() => match r {
                    Ok(n) => {
                        up.consume(n);
                        up_pace.wrote(n);
                        shared.bytes_to_server.fetch_add(n as u64, Ordering::Relaxed);
                        if let Some((_, left)) = budget.as_mut().filter(|(d, _)| *d == Direction::ToServer) {
                            *left -= n as u64;
                        }
                        last_activity = Instant::now();
                    }
                    Err(_) => break End::Reset,
                },
                r = write_due(&mut client_w, &down, down_budget, &down_pace), if !stalled && !down.is_empty() => match r {
                    Ok(n) => {
                        down.consume(n);
                        down_pace.wrote(n);
                        shared.bytes_to_client.fetch_add(n as u64, Ordering::Relaxed);
                        if let Some((_, left)) = budget.as_mut().filter(|(d, _)| *d == Direction::ToClient) {
                            *left -= n as u64;
                        }
                        last_activity = Instant::now();
                    }
                    Err(_) => break End::Reset,
                },
                _ = sleep_until(idle.map_or(now, |(at, _)| at)), if idle.is_some() => {
                    match idle.map(|(_, a)| a) {
                        Some(IdleAction::Close) => break End::Close,
                        Some(IdleAction::Reset) => break End::Reset,
                        _ => black_holed = true,
                    }
                }
            }

            // Half-closes travel once everything before them has.
            if client_eof && up.is_empty() && !server_w_shut && !stalled {
                let _ = server_w.shutdown().await;
                server_w_shut = true;
            }
            if server_eof && down.is_empty() && !client_w_shut && !stalled {
                let _ = client_w.shutdown().await;
                client_w_shut = true;
            }
            if server_w_shut && client_w_shut {
                break End::Close;
            }
        }
    };
    match end {
        End::Reset => {
            reset(&client);
            reset(&server);
        }
        End::Close => {
            let _ = client.shutdown().await;
            let _ = server.shutdown().await;
        }
    }
}

/// Computes the reply to one command from its arguments (`args[0]` is the
/// command name as sent); `None` leaves the command unanswered.
pub type Handler = Arc<dyn Fn(&[Vec<u8>]) -> Option<Vec<u8>> + Send + Sync>;

/// What a [`HostileServer`] does with each connection.
#[derive(Clone)]
pub enum Behavior {
    /// Answers each command with what the handler returns, so that a client
    /// can get through its handshake before meeting the hostile reply.
    Handler(Handler),
    /// Answers every command with these bytes.
    Reply(Vec<u8>),
    /// Answers the first command with these bytes, then closes (FIN).
    ReplyThenClose(Vec<u8>),
    /// Answers the i-th command with the i-th reply; silent after the last.
    /// E.g. a proper `HELLO` reply first, then garbage for the next command.
    Script(Vec<Vec<u8>>),
    /// Sends these bytes as soon as the connection is accepted, before any
    /// command, and keeps the connection open (e.g. [`DENIED_REPLY`]).
    Greet(Vec<u8>),
    /// Sends these bytes on accept, then closes (e.g. [`TLS_ALERT`]).
    GreetThenClose(Vec<u8>),
    /// Closes (FIN) right after accept.
    CloseOnAccept,
    /// Resets (RST) right after accept.
    ResetOnAccept,
    /// Reads everything, never answers.
    Silent,
    /// After the first command sends `prefix`, then `chunk` every
    /// `interval`, forever (until the client leaves or the server is
    /// dropped): a reply that never ends.
    /// A well-behaved handshake (as in [`Behavior::handshake_then`]), then
    /// the inner behaviour from the first other command on, e.g. an
    /// [`Behavior::Endless`] reply once the client is ready.
    AfterHandshake(Box<Behavior>),
    Endless {
        /// Sent once, e.g. `*1000000\r\n` or `$999999999\r\n`.
        prefix: Vec<u8>,
        /// Sent repeatedly, e.g. `:1\r\n`.
        chunk: Vec<u8>,
        /// Pause between chunks.
        interval: Duration,
    },
}

impl std::fmt::Debug for Behavior {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Behavior::Handler(_) => f.write_str("Handler(..)"),
            Behavior::Reply(r) => write!(f, "Reply({:?})", String::from_utf8_lossy(r)),
            Behavior::ReplyThenClose(r) => {
                write!(f, "ReplyThenClose({:?})", String::from_utf8_lossy(r))
            }
            Behavior::Script(r) => write!(f, "Script({} replies)", r.len()),
            Behavior::Greet(r) => write!(f, "Greet({:?})", String::from_utf8_lossy(r)),
            Behavior::GreetThenClose(r) => {
                write!(f, "GreetThenClose({:?})", String::from_utf8_lossy(r))
            }
            Behavior::CloseOnAccept => f.write_str("CloseOnAccept"),
            Behavior::ResetOnAccept => f.write_str("ResetOnAccept"),
            Behavior::Silent => f.write_str("Silent"),
            Behavior::Endless { interval, .. } => write!(f, "Endless({interval:?})"),
            Behavior::AfterHandshake(inner) => write!(f, "AfterHandshake({inner:?})"),
        }
    }
}

impl Behavior {
    /// A well-behaved handshake, then `hostile` for every other command:
    /// `HELLO` gets Redis's real reply (RESP3, or RESP2 for `HELLO 2`),
    /// `PING` gets `+PONG`, `AUTH`, `CLIENT` and `SELECT` get `+OK`.
    pub fn handshake_then(hostile: Vec<u8>) -> Behavior {
        Behavior::Handler(Arc::new(move |args: &[Vec<u8>]| {
            Some(handshake_reply(args).unwrap_or_else(|| hostile.clone()))
        }))
    }

    /// A bulk string header announcing ~10 GB: a client must refuse it
    /// from the header alone, not try to allocate it.
    pub fn huge_bulk() -> Behavior {
        Behavior::Reply(b"$9999999999\r\n".to_vec())
    }

    /// `*1\r\n` nested `depth` times, ending in `:1\r\n`: a recursion bomb.
    pub fn deep_nesting(depth: usize) -> Behavior {
        let mut reply = b"*1\r\n".repeat(depth);
        reply.extend_from_slice(b":1\r\n");
        Behavior::Reply(reply)
    }

    /// Answers every command with [`GARBAGE`].
    pub fn garbage() -> Behavior {
        Behavior::Reply(GARBAGE.to_vec())
    }

    /// Sends a TLS alert on accept and closes, like a TLS server seeing
    /// plaintext.
    pub fn tls_alert() -> Behavior {
        Behavior::GreetThenClose(TLS_ALERT.to_vec())
    }

    /// Answers every command with Redis's protected-mode `-DENIED` error.
    pub fn denied() -> Behavior {
        Behavior::Reply(DENIED_REPLY.to_vec())
    }

    /// An array that announces a million elements and trickles one integer
    /// every 10 ms.
    pub fn never_ending_array() -> Behavior {
        Behavior::Endless {
            prefix: b"*1000000\r\n".to_vec(),
            chunk: b":1\r\n".to_vec(),
            interval: Duration::from_millis(10),
        }
    }
}

/// Redis's answer to the commands of a client handshake (`HELLO` in RESP3,
/// or RESP2 for `HELLO 2`; `PING`; `AUTH`, `CLIENT`, `SELECT`); `None` for
/// any other command.
fn handshake_reply(args: &[Vec<u8>]) -> Option<Vec<u8>> {
    let name = args
        .first()
        .map(|a| a.to_ascii_uppercase())
        .unwrap_or_default();
    Some(match name.as_slice() {
        b"HELLO" if args.get(1).is_some_and(|v| v.as_slice() == b"2") => HELLO2_REPLY.to_vec(),
        b"HELLO" => HELLO3_REPLY.to_vec(),
        b"PING" => b"+PONG\r\n".to_vec(),
        b"AUTH" | b"CLIENT" | b"SELECT" => b"+OK\r\n".to_vec(),
        _ => return None,
    })
}

struct HostileShared {
    behavior: Mutex<Behavior>,
    connections: AtomicU64,
    commands: AtomicU64,
    bytes_sent: AtomicU64,
}

/// A server on `127.0.0.1` that answers with scripted bytes, for the
/// cases a real Redis never produces.
pub struct HostileServer {
    shared: Arc<HostileShared>,
    addr: SocketAddr,
    runtime: Option<Runtime>,
}

impl HostileServer {
    /// Starts listening on a free loopback port at once.
    pub fn start(behavior: Behavior) -> HostileServer {
        let (std_listener, addr) = bind_loopback();
        let shared = Arc::new(HostileShared {
            behavior: Mutex::new(behavior),
            connections: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
        });
        let runtime = runtime("hostile-server");
        let accept_shared = shared.clone();
        runtime.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("register listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                accept_shared.connections.fetch_add(1, Ordering::Relaxed);
                let behavior = lock(&accept_shared.behavior).clone();
                tokio::spawn(serve_hostile(accept_shared.clone(), stream, behavior));
            }
        });
        HostileServer {
            shared,
            addr,
            runtime: Some(runtime),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.addr.port())
    }

    /// Changes the behaviour for connections accepted from now on.
    pub fn set_behavior(&self, behavior: Behavior) {
        *lock(&self.shared.behavior) = behavior;
    }

    /// Connections accepted since start: how a test sees a reconnect storm.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Complete commands received since start.
    pub fn commands(&self) -> u64 {
        self.shared.commands.load(Ordering::Relaxed)
    }

    /// Bytes written to clients since start.
    pub fn bytes_sent(&self) -> u64 {
        self.shared.bytes_sent.load(Ordering::Relaxed)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for HostileServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostileServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The first complete command in `buf` (a RESP array of bulk strings, or
/// an inline line): its length in bytes and its arguments; `None` while
/// incomplete. Malformed input counts as an inline command up to the next
/// newline, so garbage from a client can never wedge the server.
fn parse_command(buf: &[u8]) -> Option<(usize, Vec<Vec<u8>>)> {
    fn line(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
        let nl = buf.get(from..)?.iter().position(|&b| b == b'\n')?;
        let end = from + nl;
        let text = &buf[from..end];
        Some((text.strip_suffix(b"\r").unwrap_or(text), end + 1))
    }
    fn number(text: &[u8]) -> Option<usize> {
        std::str::from_utf8(text).ok()?.parse().ok()
    }
    let (first, mut pos) = line(buf, 0)?;
    let inline = |text: &[u8], pos| {
        let args = text
            .split(|b| b.is_ascii_whitespace())
            .filter(|a| !a.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        Some((pos, args))
    };
    let Some(count) = first.strip_prefix(b"*").and_then(number) else {
        return inline(first, pos);
    };
    let mut args = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let (header, next) = line(buf, pos)?;
        let Some(len) = header.strip_prefix(b"$").and_then(number) else {
            return inline(header, next);
        };
        let end = next.checked_add(len)?;
        pos = end + 2;
        if pos > buf.len() {
            return None;
        }
        args.push(buf[next..end].to_vec());
    }
    Some((pos, args))
}

async fn serve_hostile(shared: Arc<HostileShared>, mut stream: TcpStream, mut behavior: Behavior) {
    let send = |n: usize| {
        shared.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
    };
    match &behavior {
        Behavior::CloseOnAccept => return,
        Behavior::ResetOnAccept => return reset(&stream),
        Behavior::Greet(bytes) | Behavior::GreetThenClose(bytes) => {
            if stream.write_all(bytes).await.is_err() {
                return;
            }
            send(bytes.len());
            if matches!(behavior, Behavior::GreetThenClose(_)) {
                let _ = stream.shutdown().await;
                return;
            }
        }
        _ => {}
    }
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut answered = 0usize;
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > HOSTILE_BUF_CAP {
            return;
        }
        while let Some((len, args)) = parse_command(&buf) {
            buf.drain(..len);
            shared.commands.fetch_add(1, Ordering::Relaxed);
            if let Behavior::AfterHandshake(inner) = &behavior {
                if let Some(reply) = handshake_reply(&args) {
                    if stream.write_all(&reply).await.is_err() {
                        return;
                    }
                    send(reply.len());
                    continue;
                }
                behavior = (**inner).clone();
            }
            let handled;
            let reply: Option<&[u8]> = match &behavior {
                Behavior::Handler(handler) => {
                    handled = handler(&args);
                    handled.as_deref()
                }
                Behavior::Reply(r) | Behavior::ReplyThenClose(r) => Some(r),
                Behavior::Script(replies) => replies.get(answered).map(Vec::as_slice),
                Behavior::Endless {
                    prefix,
                    chunk,
                    interval,
                } => {
                    return endless(&shared, stream, prefix, chunk, *interval).await;
                }
                _ => None,
            };
            answered += 1;
            if let Some(reply) = reply {
                if stream.write_all(reply).await.is_err() {
                    return;
                }
                send(reply.len());
            }
            if matches!(behavior, Behavior::ReplyThenClose(_)) {
                let _ = stream.shutdown().await;
                return;
            }
        }
    }
}

async fn endless(
    shared: &HostileShared,
    mut stream: TcpStream,
    prefix: &[u8],
    chunk: &[u8],
    interval: Duration,
) {
    if stream.write_all(prefix).await.is_err() {
        return;
    }
    shared
        .bytes_sent
        .fetch_add(prefix.len() as u64, Ordering::Relaxed);
    let (mut r, mut w) = stream.split();
    let mut sink = vec![0u8; READ_CHUNK];
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
    // A late tick is not made up for with a burst: the pace stays at most
    // one chunk per interval.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Keep draining so the client's writes never block; stop when it leaves.
            n = r.read(&mut sink) => if matches!(n, Ok(0) | Err(_)) { return },
            _ = tick.tick() => {
                if w.write_all(chunk).await.is_err() {
                    return;
                }
                shared.bytes_sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_resp_and_inline_commands() {
        let ping = vec![b"PING".to_vec()];
        assert_eq!(
            parse_command(b"*1\r\n$4\r\nPING\r\n"),
            Some((14, ping.clone()))
        );
        assert_eq!(parse_command(b"*1\r\n$4\r\nPI"), None);
        assert_eq!(parse_command(b"PING\r\n*1"), Some((6, ping)));
        assert_eq!(parse_command(b"*2\r\n$4\r\nECHO\r\n"), None);
        assert_eq!(parse_command(b"*1\r\n"), None);
        assert_eq!(
            parse_command(b"*1\r\n$99999999999999999999\r\n").map(|c| c.0),
            Some(27)
        );
    }

    #[test]
    fn captured_hello_replies_parse() {
        use crate::raw::Reply;
        let mut r = std::io::BufReader::new(HELLO3_REPLY);
        assert!(matches!(crate::raw::read_reply_from(&mut r), Ok(Reply::Map(m)) if m.len() == 7));
        let mut r = std::io::BufReader::new(HELLO2_REPLY);
        assert!(
            matches!(crate::raw::read_reply_from(&mut r), Ok(Reply::Array(a)) if a.len() == 14)
        );
    }
}

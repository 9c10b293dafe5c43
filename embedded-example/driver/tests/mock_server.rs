//! The runner over an in-memory transport and a tiny scripted Redis: the
//! driver carries the core's decisions (handshake, pings, ping timeout,
//! backoff, the outage decisions, the offline queue's deadlines, and
//! withdrawing a command whose caller left) end to end on the host's clock,
//! with no network. Timers are scaled down to tens of milliseconds.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::vec::Vec;

use embassy_futures::block_on;
use embassy_futures::select::{Either, Either3, select, select3};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::pipe::Pipe;
use embassy_sync::signal::Signal;
use embassy_time::{Duration, Instant, Timer};
use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
use resilis_core::resp::encode;
use resilis_core::resp::{Decoded, Frame, Limits, decode};
use resilis_core::{
    Config, DisconnectReason, OfflinePolicy, Outcome, PhaseKind, SubmitError, TransportError,
};
use resilis_embassy::{CallOptions, Connector, Error, Progress, Shared, Target, Transport};

const HELLO3_REPLY: &[u8] =
    b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n";

type Wire = Pipe<NoopRawMutex, 1024>;

/// Both directions of the one connection, plus the server's behaviour.
struct Net {
    to_server: Wire,
    to_client: Wire,
    /// The server hangs up (the client reads EOF).
    hangup: Signal<NoopRawMutex, ()>,
    /// Connection attempts still to refuse.
    refuse: Cell<u32>,
    /// When each connection attempt was made.
    attempts: RefCell<Vec<Instant>>,
    answer_pings: Cell<bool>,
    store: RefCell<HashMap<Vec<u8>, Vec<u8>>>,
    /// Every command the server received, by name.
    seen: RefCell<Vec<Vec<u8>>>,
}

impl Net {
    fn new() -> Net {
        Net {
            to_server: Pipe::new(),
            to_client: Pipe::new(),
            hangup: Signal::new(),
            refuse: Cell::new(0),
            attempts: RefCell::new(Vec::new()),
            answer_pings: Cell::new(true),
            store: RefCell::new(HashMap::new()),
            seen: RefCell::new(Vec::new()),
        }
    }

    /// A Redis that knows HELLO, PING, SET and GET.
    async fn serve(&self) -> ! {
        let mut buf = [0u8; 1024];
        let mut len = 0;
        loop {
            len += self.to_server.read(&mut buf[len..]).await;
            while let Ok(Decoded::Frame {
                frame: Frame::Array(args),
                consumed,
                ..
            }) = decode(&buf[..len], &Limits::REDIS)
            {
                let args: Vec<&[u8]> = args
                    .iter()
                    .map(|a| match a {
                        Frame::BulkString(b) => b,
                        _ => &b""[..],
                    })
                    .collect();
                self.seen.borrow_mut().push(args[0].to_vec());
                let reply: Vec<u8> = match args.as_slice() {
                    [b"HELLO", ..] => HELLO3_REPLY.to_vec(),
                    [b"PING"] if self.answer_pings.get() => b"+PONG\r\n".to_vec(),
                    [b"PING"] => Vec::new(),
                    [b"SET", key, value] => {
                        self.store.borrow_mut().insert(key.to_vec(), value.to_vec());
                        b"+OK\r\n".to_vec()
                    }
                    [b"GET", key] => match self.store.borrow().get(*key) {
                        Some(v) => {
                            let mut r = format!("${}\r\n", v.len()).into_bytes();
                            r.extend_from_slice(v);
                            r.extend_from_slice(b"\r\n");
                            r
                        }
                        None => b"_\r\n".to_vec(),
                    },
                    _ => b"-ERR unknown command\r\n".to_vec(),
                };
                self.to_client.write_all(&reply).await;
                buf.copy_within(consumed..len, 0);
                len -= consumed;
            }
        }
    }
}

struct MockConnector<'n> {
    net: &'n Net,
}

impl Connector for MockConnector<'_> {
    type Transport<'a>
        = MockTransport<'a>
    where
        Self: 'a;

    async fn connect<'a>(
        &'a mut self,
        target: Target<'_>,
        progress: &Progress,
    ) -> Result<MockTransport<'a>, TransportError> {
        assert_eq!((target.host, target.port), ("mock", 6379));
        self.net.attempts.borrow_mut().push(Instant::now());
        if target.tls {
            // TCP comes up, then the TLS handshake stalls (a middlebox that
            // swallows the ClientHello).
            progress.tcp_connected();
            return core::future::pending().await;
        }
        if self.net.refuse.get() > 0 {
            self.net.refuse.set(self.net.refuse.get() - 1);
            return Err(TransportError::Refused);
        }
        // A new connection starts with empty wires.
        self.net.to_server.clear();
        self.net.to_client.clear();
        self.net.hangup.reset();
        progress.tcp_connected();
        Ok(MockTransport { net: self.net })
    }
}

struct MockTransport<'a> {
    net: &'a Net,
}

impl ErrorType for MockTransport<'_> {
    type Error = ErrorKind;
}

impl Read for MockTransport<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        match select(self.net.to_client.read(buf), self.net.hangup.wait()).await {
            Either::First(n) => Ok(n),
            Either::Second(()) => Ok(0),
        }
    }
}

impl Write for MockTransport<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        Ok(self.net.to_server.write(buf).await)
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl Transport for MockTransport<'_> {}

fn fast_config() -> Config {
    let mut config = Config::from_url("redis://mock:6379").expect("valid URL");
    config.ping_interval = core::time::Duration::from_millis(60);
    config.ping_timeout = core::time::Duration::from_millis(60);
    config.backoff.initial = core::time::Duration::from_millis(20);
    config.connect_timeout = core::time::Duration::from_millis(500);
    config
}

/// Runs `$body` with `$client` (the config `$config`) against a runner over `$net` and its
/// scripted server, until the body returns (at most 10 s).
macro_rules! scenario {
    ($net:ident, $client:ident, $body:block) => {
        scenario!($net, $client, fast_config(), $body)
    };
    ($net:ident, $client:ident, $config:expr, $body:block) => {{
        let shared: Shared<NoopRawMutex, 128, 128> = Shared::new();
        let mut rx = [0u8; 256];
        let connector = MockConnector { net: &$net };
        #[allow(unused_mut)]
        let (mut runner, mut $client) =
            resilis_embassy::new::<_, _, 8, 128, 128>($config, connector, &shared, &mut rx);
        block_on(async {
            let test = async $body;
            let deadline = Timer::after(Duration::from_secs(10));
            match select3(select(runner.run(), $net.serve()), test, deadline).await {
                Either3::First(_) => unreachable!("the runner and the server never return"),
                Either3::Second(()) => {}
                Either3::Third(()) => panic!("test did not finish in 10 s"),
            }
        });
    }};
}

const TIMEOUT: Duration = Duration::from_millis(300);
const OPTS: CallOptions = CallOptions::read(TIMEOUT);
const GET: CallOptions = CallOptions::cached_read(TIMEOUT);
const SET: CallOptions = CallOptions::idempotent_write(TIMEOUT);

#[test]
fn ready_then_ping_set_get() {
    let net = Net::new();
    scenario!(net, client, {
        assert!(client.wait_ready(Duration::from_secs(2)).await);
        let pong = client
            .call(encode::ping, OPTS)
            .await
            .expect("PING answered");
        assert_eq!(pong.frame(), Frame::SimpleString(b"PONG"));
        let ok = client
            .call(|b| encode::set(b, b"k", b"v1", &Default::default()), SET)
            .await
            .expect("SET answered");
        assert_eq!(ok.frame(), Frame::SimpleString(b"OK"));
        let got = client
            .call(|b| encode::get(b, b"k"), GET)
            .await
            .expect("GET answered");
        assert_eq!(got.frame(), Frame::BulkString(b"v1"));
        let status = client.status();
        assert!(!status.fallback_active);
        assert_eq!(status.ready_count, 1);
    })
}

#[test]
fn silent_server_times_out_and_backoff_reconnects() {
    let net = Net::new();
    scenario!(net, client, {
        assert!(client.wait_ready(Duration::from_secs(2)).await);
        // The link goes silent (a dropped NAT entry): the core's ping goes
        // unanswered; the next two connects are refused.
        net.answer_pings.set(false);
        net.refuse.set(2);
        let down = client
            .wait_for(Duration::from_secs(2), |s| s.fallback_active)
            .await
            .expect("the core notices the silent link");
        assert_eq!(down.last_reason, Some(DisconnectReason::PingTimeout));
        net.answer_pings.set(true);
        let back = client
            .wait_for(Duration::from_secs(3), |s| {
                s.phase == PhaseKind::Ready && s.ready_count == 2
            })
            .await
            .expect("reconnected");
        assert!(!back.fallback_active);
        // Attempts: the first connect, two refused, the one that worked;
        // the core's schedule spaced them 20 ms, then 40 ms, then 80 ms.
        let attempts = net.attempts.borrow();
        assert_eq!(attempts.len(), 4, "{attempts:?}");
        let gap = |i: usize| (attempts[i + 1] - attempts[i]).as_millis();
        // Lower bounds only: timers never fire early, but a loaded machine
        // may fire them late.
        assert!(gap(0) >= 20, "first retry after {} ms", gap(0));
        assert!(gap(1) >= 40, "second retry after {} ms", gap(1));
        assert!(gap(2) >= 80, "third retry after {} ms", gap(2));
    })
}

/// The server hangs up and every reconnect is refused; returns the reason.
async fn outage(
    net: &Net,
    client: &resilis_embassy::Client<'_, NoopRawMutex, 128, 128>,
) -> DisconnectReason {
    assert!(client.wait_ready(Duration::from_secs(2)).await);
    net.refuse.set(1_000);
    net.hangup.signal(());
    let down = client
        .wait_for(Duration::from_secs(2), |s| s.fallback_active)
        .await
        .expect("EOF noticed");
    let reason = down.last_reason.expect("a failure is known");
    assert!(
        matches!(
            reason,
            DisconnectReason::Transport(TransportError::Closed | TransportError::Refused)
        ),
        "{down:?}"
    );
    reason
}

#[test]
fn outage_answers_gets_from_the_cache_and_refuses_writes() {
    let net = Net::new();
    scenario!(net, client, {
        outage(&net, &client).await;
        // The core decides at once, with the reason (the latest failure).
        match client.call(|b| encode::get(b, b"k"), GET).await {
            Err(Error::Outcome(Outcome::Fallback(DisconnectReason::Transport(
                TransportError::Closed | TransportError::Refused,
            )))) => {}
            other => panic!("GET during the outage: {other:?}"),
        }
        let set = client
            .call(|b| encode::set(b, b"k", b"v", &Default::default()), SET)
            .await;
        assert!(
            matches!(
                set,
                Err(Error::Submit(SubmitError::NotReady {
                    reason: Some(_),
                    ..
                }))
            ),
            "{set:?}"
        );
        // Answered at once, not at the deadline.
        let started = Instant::now();
        let ping = client.call(encode::ping, OPTS).await;
        assert!(matches!(
            ping,
            Err(Error::Submit(SubmitError::NotReady { .. }))
        ));
        assert!(started.elapsed() < TIMEOUT);
    })
}

#[test]
fn queue_policy_holds_a_command_until_its_deadline() {
    let net = Net::new();
    let mut config = fast_config();
    config.queue.offline = OfflinePolicy::Queue;
    scenario!(net, client, config, {
        outage(&net, &client).await;
        // Held in the core's offline queue until its deadline, never sent.
        let started = Instant::now();
        let result = client
            .call(
                |b| encode::get(b, b"k"),
                CallOptions::cached_read(Duration::from_millis(100)),
            )
            .await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(
            matches!(result, Err(Error::Outcome(Outcome::NotApplied(_)))),
            "{result:?}"
        );
    })
}

#[test]
fn a_call_dropped_before_it_was_written_is_never_sent() {
    let net = Net::new();
    // The first two connects are refused; the queue policy holds the SET.
    net.refuse.set(2);
    let mut config = fast_config();
    config.queue.offline = OfflinePolicy::Queue;
    scenario!(net, client, config, {
        let set = client.call(
            |b| encode::set(b, b"k", b"dropped", &Default::default()),
            CallOptions::idempotent_write(Duration::from_secs(2)),
        );
        match select(set, Timer::after(Duration::from_millis(10))).await {
            Either::First(result) => panic!("answered while refused: {result:?}"),
            // The caller gives up: its future is dropped.
            Either::Second(()) => {}
        }
        assert!(client.wait_ready(Duration::from_secs(2)).await);
        // Ready: the core asked for the SET, the runner withdrew it.
        Timer::after(Duration::from_millis(50)).await;
        let got = client.call(|b| encode::get(b, b"k"), GET).await;
        assert_eq!(got.expect("GET answered").frame(), Frame::Null);
        assert!(!net.seen.borrow().iter().any(|c| c == b"SET"));
    })
}

#[test]
fn stalled_tls_handshake_is_a_tls_timeout_not_a_connect_timeout() {
    let net = Net::new();
    let mut config = fast_config();
    config.tls = true;
    config.connect_timeout = core::time::Duration::from_secs(5);
    config.tls_timeout = core::time::Duration::from_millis(100);
    scenario!(net, client, config, {
        let started = Instant::now();
        let down = client
            .wait_for(Duration::from_secs(2), |s| s.last_reason.is_some())
            .await
            .expect("the TLS deadline passes");
        // The connector said TCP was up, so the core's TLS deadline applied.
        assert_eq!(down.last_reason, Some(DisconnectReason::TlsTimeout));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(down.fallback_active);
    })
}

#[test]
fn shutdown_closes_for_good() {
    let net = Net::new();
    scenario!(net, client, {
        assert!(client.wait_ready(Duration::from_secs(2)).await);
        assert!(client.shutdown(Duration::from_secs(1)).await);
        assert_eq!(client.status().phase, PhaseKind::Shutdown);
        let refused = client.call(encode::ping, OPTS).await;
        assert_eq!(
            refused,
            Err(Error::Submit(resilis_core::SubmitError::Shutdown))
        );
        // Nothing reconnects, however long we wait.
        Timer::after(Duration::from_millis(200)).await;
        assert_eq!(net.attempts.borrow().len(), 1);
        assert_eq!(client.status().phase, PhaseKind::Shutdown);
    })
}

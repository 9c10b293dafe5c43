//! The gateway over the real runner and a scripted in-memory Redis: the
//! cache holds only what Redis acknowledged, and during an outage the core's
//! decisions come through (cached reads from the cache, uncached reads and
//! writes failing with the reason).

extern crate std;

use core::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::vec::Vec;

use embassy_futures::block_on;
use embassy_futures::select::{Either, Either3, select, select3};
use embassy_sync::blocking_mutex::raw::NoopRawMutex;
use embassy_sync::pipe::Pipe;
use embassy_sync::signal::Signal;
use embassy_time::{Duration, Timer};
use embedded_io_async::{ErrorKind, ErrorType, Write};
use resilis_core::resp::{Decoded, Frame, Limits, decode};
use resilis_core::{Config, DisconnectReason, SubmitError, TransportError};
use resilis_embassy::{Connector, Error, Progress, Shared, Target, Transport};

use super::{Gateway, GatewayError, Read};

const HELLO3_REPLY: &[u8] =
    b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n";

/// One connection's wires and a Redis that knows HELLO, PING, SET and GET
/// (and refuses any SET of `readonly`).
struct Net {
    to_server: Pipe<NoopRawMutex, 1024>,
    to_client: Pipe<NoopRawMutex, 1024>,
    hangup: Signal<NoopRawMutex, ()>,
    refuse: Cell<bool>,
    store: RefCell<HashMap<Vec<u8>, Vec<u8>>>,
}

impl Net {
    fn new() -> Net {
        Net {
            to_server: Pipe::new(),
            to_client: Pipe::new(),
            hangup: Signal::new(),
            refuse: Cell::new(false),
            store: RefCell::new(HashMap::new()),
        }
    }

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
                let reply = match args.as_slice() {
                    [b"HELLO", ..] => HELLO3_REPLY.to_vec(),
                    [b"PING"] => b"+PONG\r\n".to_vec(),
                    [b"SET", b"readonly", ..] => b"-READONLY no writes here\r\n".to_vec(),
                    [b"SET", key, value] => {
                        self.store.borrow_mut().insert(key.to_vec(), value.to_vec());
                        b"+OK\r\n".to_vec()
                    }
                    [b"GET", key] => match self.store.borrow().get(*key) {
                        Some(v) => {
                            let mut r = std::format!("${}\r\n", v.len()).into_bytes();
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

    /// The server hangs up; every reconnect is refused.
    fn outage(&self) {
        self.refuse.set(true);
        self.hangup.signal(());
    }
}

struct MockConnector<'n>(&'n Net);

impl Connector for MockConnector<'_> {
    type Transport<'a>
        = MockTransport<'a>
    where
        Self: 'a;

    async fn connect<'a>(
        &'a mut self,
        _target: Target<'_>,
        progress: &Progress,
    ) -> Result<MockTransport<'a>, TransportError> {
        if self.0.refuse.get() {
            return Err(TransportError::Refused);
        }
        self.0.to_server.clear();
        self.0.to_client.clear();
        self.0.hangup.reset();
        progress.tcp_connected();
        Ok(MockTransport(self.0))
    }
}

struct MockTransport<'a>(&'a Net);

impl ErrorType for MockTransport<'_> {
    type Error = ErrorKind;
}

impl embedded_io_async::Read for MockTransport<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        match select(self.0.to_client.read(buf), self.0.hangup.wait()).await {
            Either::First(n) => Ok(n),
            Either::Second(()) => Ok(0),
        }
    }
}

impl Write for MockTransport<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        Ok(self.0.to_server.write(buf).await)
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

impl Transport for MockTransport<'_> {}

type App<'a> = Gateway<'a, NoopRawMutex, 128, 128, 4, 16, 16>;

/// Runs `test` with a gateway over a runner and the scripted server.
fn scenario(net: &Net, test: impl AsyncFnOnce(&mut App<'_>)) {
    let mut config = Config::from_url("redis://mock:6379").expect("valid URL");
    config.backoff.initial = core::time::Duration::from_millis(20);
    let shared: Shared<NoopRawMutex, 128, 128> = Shared::new();
    let mut rx = [0u8; 256];
    let (mut runner, client) =
        resilis_embassy::new::<_, _, 8, 128, 128>(config, MockConnector(net), &shared, &mut rx);
    let mut app: App<'_> = Gateway::new(client, Duration::from_millis(300));
    block_on(async {
        let body = async {
            assert!(app.client().wait_ready(Duration::from_secs(2)).await);
            test(&mut app).await;
        };
        let deadline = Timer::after(Duration::from_secs(10));
        match select3(select(runner.run(), net.serve()), body, deadline).await {
            Either3::First(_) => unreachable!("the runner and the server never return"),
            Either3::Second(()) => {}
            Either3::Third(()) => panic!("test did not finish in 10 s"),
        }
    });
}

fn cached(app: &mut App<'_>, key: &str) -> Option<Vec<u8>> {
    app.cache.get(key).map(<[u8]>::to_vec)
}

#[test]
fn the_cache_holds_only_what_redis_acknowledged_or_answered() {
    let net = Net::new();
    scenario(&net, async |app| {
        app.set("k", b"v1", None).await.expect("acknowledged");
        assert_eq!(cached(app, "k").as_deref(), Some(&b"v1"[..]));
        // Refused by Redis: the cache keeps nothing of it.
        assert_eq!(
            app.set("readonly", b"v", None).await,
            Err(GatewayError::Rejected)
        );
        assert_eq!(cached(app, "readonly"), None);
        // Another client deletes the key: Redis's "absent" clears the cache.
        net.store.borrow_mut().remove(&b"k"[..]);
        assert_eq!(app.get("k").await, Ok(Read::Redis(None)));
        assert_eq!(cached(app, "k"), None);
        // Another client writes it: the answer refreshes the cache.
        net.store.borrow_mut().insert(b"k".to_vec(), b"v2".to_vec());
        let read = app.get("k").await.expect("answered");
        assert_eq!(read.value(), Some(&b"v2"[..]));
        assert_eq!(cached(app, "k").as_deref(), Some(&b"v2"[..]));
    });
}

#[test]
fn an_outage_answers_cached_reads_and_fails_the_rest_with_the_reason() {
    let net = Net::new();
    scenario(&net, async |app| {
        app.set("k", b"v1", None).await.expect("acknowledged");
        net.outage();
        let down = app
            .client()
            .wait_for(Duration::from_secs(2), |s| s.fallback_active)
            .await
            .expect("the core notices the hangup");
        assert!(down.last_reason.is_some());
        // A write is refused, not applied, and the cache keeps the value
        // Redis acknowledged.
        match app.set("k", b"v2", None).await {
            Err(GatewayError::Call(Error::Submit(SubmitError::NotReady {
                reason: Some(_),
                ..
            }))) => {}
            other => panic!("SET during the outage: {other:?}"),
        }
        assert_eq!(cached(app, "k").as_deref(), Some(&b"v1"[..]));
        // A cached key is answered from the cache, marked so, with the reason.
        match app.get("k").await {
            Ok(Read::Fallback { value, reason }) => {
                assert_eq!(value, b"v1"[..]);
                assert!(matches!(
                    reason,
                    DisconnectReason::Transport(TransportError::Closed | TransportError::Refused)
                ));
            }
            other => panic!("GET of a cached key during the outage: {other:?}"),
        }
        // A key the cache never held is unknown, not absent.
        assert!(matches!(
            app.get("other").await,
            Err(GatewayError::Unavailable(_))
        ));
    });
}

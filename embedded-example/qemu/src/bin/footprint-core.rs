//! A firmware that uses resilis-core and nothing else: a const-style config,
//! the connection in a static, its run loop over a scripted peer (handshake,
//! a SET and a GET, the keepalive PING, a lost connection and the backoff),
//! the RESP encoder for the commands and the decoder for the replies. Every
//! input goes through `black_box`, so nothing is constant-folded away and the
//! size measured is what a real firmware links. Never run, only measured
//! (`footprint.sh`); the same paths are tested under QEMU.
#![no_std]
#![no_main]

use core::hint::black_box;
use cortex_m_rt::entry;
use panic_halt as _;
use resilis_core::command::Class;
use resilis_core::resp::encode::{self, SetOptions};
use resilis_core::resp::{Decoded, Frame, decode};
use resilis_core::{
    Config, Connection, Duration, Instant, Output, Received, Submit, TransportError,
};
use static_cell::StaticCell;

static CONN: StaticCell<Connection<8>> = StaticCell::new();

static SCRIPT: &[&[u8]] = &[
    b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n",
    b"+OK\r\n",
    b"$5\r\nalive\r\n",
    b"+PONG\r\n",
];

fn config() -> Config {
    let mut config = Config::default();
    config.host.clear();
    let _ = config.host.push_str(black_box("192.168.1.10"));
    config.port = black_box(6379);
    config.tls = black_box(false);
    config.ping_interval = Duration::from_secs(black_box(5));
    config
}

#[entry]
fn main() -> ! {
    let conn = CONN.init_with(|| Connection::new(config()));
    let mut commands = [[0u8; 64]; 2];
    let mut now = Instant::ZERO;
    let mut step = 0usize;
    loop {
        now = now + Duration::from_millis(black_box(10));
        conn.handle_timeout(now);
        // What the adapter's transport would report.
        match black_box(step % 6) {
            0 => conn.handle_start(now),
            1 => conn.handle_transport_opened(now),
            5 => conn.handle_transport_failed(now, TransportError::Reset),
            _ => {}
        }
        if step.is_multiple_of(3) {
            let len = encode::set(
                &mut commands[0],
                b"gw:heartbeat",
                black_box(b"alive"),
                &SetOptions::default(),
            )
            .unwrap_or(0);
            let _ = black_box(conn.handle_submit(
                now,
                Submit {
                    len,
                    deadline: now + Duration::from_secs(5),
                    class: Class::IDEMPOTENT_WRITE,
                },
            ));
            let len = encode::get(&mut commands[1], b"gw:heartbeat").unwrap_or(0);
            black_box(len);
        }
        let mut bytes: &[u8] = black_box(SCRIPT[step % SCRIPT.len()]);
        while !bytes.is_empty() {
            let consumed = match conn.handle_receive(now, bytes) {
                Received::Reply {
                    frame, consumed, ..
                } => {
                    if let Frame::BulkString(value) = frame {
                        black_box(value);
                    }
                    consumed
                }
                Received::Push { consumed, .. }
                | Received::PubSubRefused { consumed, .. }
                | Received::Internal { consumed } => consumed,
                Received::Incomplete { .. } | Received::Discard => break,
            };
            bytes = &bytes[consumed..];
        }
        // The application decodes replies it copied out of the buffer.
        if let Ok(Decoded::Frame { frame, .. }) =
            decode(black_box(b"$2\r\nok\r\n"), &conn.config().resp_limits)
        {
            black_box(frame);
        }
        loop {
            match conn.poll_output() {
                Output::OpenTransport { host, port, tls } => {
                    black_box((host, port, tls));
                }
                Output::Transmit(bytes) => {
                    black_box(bytes);
                }
                Output::TransmitCommand(id) => {
                    black_box(&commands[(id.0 % 2) as usize]);
                }
                Output::Close => {}
                Output::Resolved { id, outcome } => {
                    black_box((id, outcome));
                }
                Output::Event(event) => {
                    black_box(event);
                }
                Output::Wait(at) => {
                    black_box(at);
                    break;
                }
            }
        }
        step = step.wrapping_add(1);
    }
}

//! The gateway on Linux: embassy-executor (std), embassy-net over a TAP
//! device, embedded-tls, and the same driver (`resilis-embassy`) and
//! application (`resilis-gateway`) as the STM32 firmware, against a real
//! redis-server. `tap-test.sh` runs it inside a network namespace.
//!
//! What it checks, printing `PASS ...` / `FAIL ...` lines (exit 0 only when
//! all pass):
//! 1. plain: ready, PING, SET then GET of the same value;
//! 2. TLS 1.3 with the server certificate verified against the test CA:
//!    the same;
//! 3. TLS against a CA that did not sign the server's certificate: refused as
//!    `TlsCertificate`, a permanent failure (no reconnect storm);
//!    plaintext to the TLS port (the seed's production failure) diagnosed as
//!    `TlsRequired`, and TLS to the plaintext port as `TlsTimeout` (a
//!    plaintext Redis stays silent on a ClientHello);
//! 4. outage: prints `OUTAGE_READY`, then heartbeats and reads every 250 ms
//!    while the script restarts redis-server. While Redis is down, the core
//!    decides: reads of a cached key are answered from the fallback cache
//!    with the value Redis acknowledged, reads of a key never cached fail
//!    with the reason (not a silent "absent"), and heartbeat writes fail as
//!    not applied, with the reason. The core's backoff must reconnect, and
//!    both connections must be ready and answering again.

use std::time::SystemTime;

use embassy_executor::Spawner;
use embassy_net::{Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_time::{Duration, Instant, Timer};
use rand_core::{OsRng, RngCore};
use resilis_core::{Config, DisconnectReason, Event, Outcome, PhaseKind, SubmitError};
use resilis_embassy::net::{TcpConnector, TlsConnector, TlsOptions, Verify};
use resilis_embassy::{Client, Error, Shared};
use resilis_gateway::{Gateway, GatewayError, Read};

type Mutex = CriticalSectionRawMutex;
type Link = TlsConnector<'static, OsRng, SystemTime>;
type RedisRunner = resilis_embassy::Runner<'static, Mutex, Link, 8, 256, 512>;
type RedisClient = Client<'static, Mutex, 256, 512>;
type App = Gateway<'static, Mutex, 256, 512, 8, 32, 64>;

const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// The whole run, outage included, must finish in this long.
const OVERALL: Duration = Duration::from_secs(150);

struct Args {
    tap: String,
    address: Ipv4Cidr,
    redis: String,
    port: u16,
    tls_port: u16,
    ca: Vec<u8>,
    wrong_ca: Vec<u8>,
    server_name: String,
    outage: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: resilis-embassy-host --tap NAME --address A.B.C.D/N --redis A.B.C.D \
         --port P --tls-port P --ca CA.der --wrong-ca OTHER.der --server-name NAME [--no-outage]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let mut get = |name: &str| -> Option<String> {
        let _ = name;
        args.next()
    };
    let mut parsed = Args {
        tap: "tap0".into(),
        address: "198.51.100.2/24".parse().unwrap_or_else(|_| usage()),
        redis: "198.51.100.1".into(),
        port: 6379,
        tls_port: 6380,
        ca: Vec::new(),
        wrong_ca: Vec::new(),
        server_name: "redis.test".into(),
        outage: true,
    };
    let read =
        |path: String| std::fs::read(&path).unwrap_or_else(|e| fail(&format!("{path}: {e}")));
    while let Some(flag) = get("flag") {
        let mut value = || get("value").unwrap_or_else(|| usage());
        match flag.as_str() {
            "--tap" => parsed.tap = value(),
            "--address" => parsed.address = value().parse().unwrap_or_else(|_| usage()),
            "--redis" => parsed.redis = value(),
            "--port" => parsed.port = value().parse().unwrap_or_else(|_| usage()),
            "--tls-port" => parsed.tls_port = value().parse().unwrap_or_else(|_| usage()),
            "--ca" => parsed.ca = read(value()),
            "--wrong-ca" => parsed.wrong_ca = read(value()),
            "--server-name" => parsed.server_name = value(),
            "--no-outage" => parsed.outage = false,
            _ => usage(),
        }
    }
    if parsed.ca.is_empty() || parsed.wrong_ca.is_empty() {
        usage();
    }
    parsed
}

fn fail(what: &str) -> ! {
    println!("FAIL {what}");
    std::process::exit(1)
}

fn pass(what: &str) {
    println!("PASS {what}");
}

fn leak<T>(value: T) -> &'static mut T {
    // The host stands in for a firmware's statics: allocated once, never freed.
    Box::leak(Box::new(value))
}

/// The memory of one connection, as the firmware has it in statics.
struct Buffers {
    tcp_rx: [u8; 4096],
    tcp_tx: [u8; 4096],
    tls_read: [u8; 16640],
    tls_write: [u8; 4096],
    rx: [u8; 1024],
}

fn config(url: &str) -> Config {
    // The error names the field and the fix; the URL itself may hold a
    // password and is never printed.
    Config::from_url(url).unwrap_or_else(|e| fail(&format!("config: {e}")))
}

fn connection(
    stack: Stack<'static>,
    config: Config,
    options: TlsOptions<'static>,
    hook: fn(&Event),
) -> (RedisRunner, RedisClient) {
    let buffers = leak(Buffers {
        tcp_rx: [0; 4096],
        tcp_tx: [0; 4096],
        tls_read: [0; 16640],
        tls_write: [0; 4096],
        rx: [0; 1024],
    });
    let tcp = TcpConnector::new(stack, &mut buffers.tcp_rx, &mut buffers.tcp_tx);
    let connector = TlsConnector::new(
        tcp,
        &mut buffers.tls_read,
        &mut buffers.tls_write,
        options,
        OsRng,
    );
    let shared: &'static Shared<Mutex, 256, 512> = leak(Shared::new());
    let (runner, client) = resilis_embassy::new(config, connector, shared, &mut buffers.rx);
    (runner.with_event_hook(hook), client)
}

fn plain_events(event: &Event) {
    print_event("plain", event);
}
fn tls_events(event: &Event) {
    print_event("tls", event);
}
fn wrong_ca_events(event: &Event) {
    print_event("wrong-ca", event);
}
fn plain_to_tls_events(event: &Event) {
    print_event("plain-to-tls-port", event);
}
fn tls_to_plain_events(event: &Event) {
    print_event("tls-to-plain-port", event);
}

fn print_event(name: &str, event: &Event) {
    let at = Instant::now().as_millis();
    match event {
        Event::Disconnected { reason } | Event::FallbackEngaged { reason } => {
            println!("event[{name}] +{at}ms {event:?} fix: {}", reason.fix())
        }
        _ => println!("event[{name}] +{at}ms {event:?}"),
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

#[embassy_executor::task(pool_size = 5)]
async fn redis_task(mut runner: RedisRunner) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn watchdog() {
    Timer::after(OVERALL).await;
    fail(&format!("the run took longer than {} s", OVERALL.as_secs()));
}

/// Ends a connection that served its check, so it stops retrying.
async fn shut_down(what: &str, client: &mut RedisClient) {
    if !client.shutdown(Duration::from_secs(5)).await {
        fail(&format!("{what}: shutdown: {:?}", client.status()));
    }
    pass(&format!("{what}: shut down, no more reconnects"));
}

/// Ready, PING, SET, GET of the same value.
async fn basic_checks(name: &str, app: &mut App) {
    if !app.client().wait_ready(Duration::from_secs(15)).await {
        fail(&format!("{name}: not ready in 15 s: {:?}", app.status()));
    }
    pass(&format!("{name}: ready"));
    if let Err(e) = app.ping().await {
        fail(&format!("{name}: PING: {e:?}"));
    }
    pass(&format!("{name}: PING -> PONG"));
    let key = format!("resilis:e2e:{name}");
    let value = format!("value-over-{name}");
    if let Err(e) = app.set(&key, value.as_bytes(), Some(300)).await {
        fail(&format!("{name}: SET {key}: {e:?}"));
    }
    match app.get(&key).await {
        Ok(Read::Redis(Some(got))) if got == value.as_bytes() => {}
        other => fail(&format!("{name}: GET {key}: {other:?}")),
    }
    pass(&format!("{name}: SET {key} then GET -> {value:?}"));
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = parse_args();
    spawner.spawn(watchdog().unwrap_or_else(|_| fail("spawn watchdog")));

    let device = TunTapDevice::new(&args.tap)
        .unwrap_or_else(|e| fail(&format!("open TAP device {}: {e}", args.tap)));
    let net_config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: args.address,
        gateway: None,
        dns_servers: heapless::Vec::new(),
    });
    let resources = leak(StackResources::<8>::new());
    let (stack, net_runner) = embassy_net::new(device, net_config, resources, OsRng.next_u64());
    spawner.spawn(net_task(net_runner).unwrap_or_else(|_| fail("spawn net")));
    stack.wait_config_up().await;
    println!("embassy-net up at {}", args.address);

    let ca: &'static [u8] = leak(args.ca).as_slice();
    let wrong_ca: &'static [u8] = leak(args.wrong_ca).as_slice();
    let server_name: &'static str = leak(args.server_name).as_str();
    let verified = TlsOptions {
        verify: Verify::Ca(ca),
        server_name: Some(server_name),
    };
    let name = "?client_name=resilis-embassy-e2e";
    let plain_url = format!("redis://{}:{}{name}", args.redis, args.port);
    let tls_url = format!("rediss://{}:{}{name}", args.redis, args.tls_port);

    let (runner, client) = connection(stack, config(&plain_url), verified, plain_events);
    spawner.spawn(redis_task(runner).unwrap_or_else(|_| fail("spawn plain")));
    let mut plain: App = Gateway::new(client, COMMAND_TIMEOUT);
    let (runner, client) = connection(stack, config(&tls_url), verified, tls_events);
    spawner.spawn(redis_task(runner).unwrap_or_else(|_| fail("spawn tls")));
    let mut tls: App = Gateway::new(client, COMMAND_TIMEOUT);

    basic_checks("plain", &mut plain).await;
    basic_checks("tls", &mut tls).await;

    // Verification really verifies: a CA that did not sign the server's
    // certificate is refused, and as a permanent failure.
    let untrusted = TlsOptions {
        verify: Verify::Ca(wrong_ca),
        server_name: Some(server_name),
    };
    let (runner, mut client) = connection(stack, config(&tls_url), untrusted, wrong_ca_events);
    spawner.spawn(redis_task(runner).unwrap_or_else(|_| fail("spawn wrong-ca")));
    match client
        .wait_for(Duration::from_secs(15), |s| s.phase == PhaseKind::Failed)
        .await
    {
        Some(s) if s.last_reason == Some(DisconnectReason::TlsCertificate) => {
            pass("tls with an untrusted CA: refused as TlsCertificate (permanent, no retry storm)")
        }
        other => fail(&format!("tls with an untrusted CA: {other:?}")),
    }
    shut_down("wrong-ca", &mut client).await;

    // The seed's failure and its mirror image: the wrong scheme for the port.
    // A TLS-only port closes a plaintext connection without a byte of reply:
    // TlsRequired. A plaintext Redis says nothing to a ClientHello: the TLS
    // handshake times out (shortened here), and TlsTimeout's fix says so.
    let plain_to_tls = config(&format!("redis://{}:{}{name}", args.redis, args.tls_port));
    let mut tls_to_plain = config(&format!("rediss://{}:{}{name}", args.redis, args.port));
    tls_to_plain.tls_timeout = core::time::Duration::from_secs(1);
    let wrong_scheme = [
        (
            plain_to_tls,
            plain_to_tls_events as fn(&Event),
            "plaintext to the TLS port",
        ),
        (
            tls_to_plain,
            tls_to_plain_events,
            "TLS to the plaintext port",
        ),
    ];
    for (config, hook, what) in wrong_scheme {
        let tls = config.tls;
        let (runner, mut client) = connection(stack, config, verified, hook);
        spawner.spawn(redis_task(runner).unwrap_or_else(|_| fail("spawn wrong-scheme")));
        let seen = client
            .wait_for(Duration::from_secs(15), |s| s.last_reason.is_some())
            .await;
        match seen.and_then(|s| s.last_reason) {
            Some(reason @ DisconnectReason::TlsRequired(_)) if !tls => pass(&format!(
                "{what}: diagnosed as {reason:?}: {}",
                reason.fix()
            )),
            Some(reason @ DisconnectReason::TlsTimeout) if tls => pass(&format!(
                "{what}: diagnosed as {reason:?}: {}",
                reason.fix()
            )),
            other => fail(&format!("{what}: {other:?}")),
        }
        shut_down(what, &mut client).await;
    }

    if args.outage {
        outage(&mut plain, &mut tls).await;
    }
    println!("resilis-embassy-host: all checks passed");
    std::process::exit(0)
}

/// A write refused because Redis is unavailable, certainly not applied,
/// with the core's reason.
fn refused_with_reason(result: &Result<(), GatewayError>) -> bool {
    matches!(
        result,
        Err(GatewayError::Call(
            Error::Submit(SubmitError::NotReady {
                reason: Some(_),
                ..
            }) | Error::Outcome(Outcome::NotApplied(_))
        ))
    )
}

/// Reads and heartbeats through a redis-server restart.
async fn outage(plain: &mut App, tls: &mut App) {
    let key = "resilis:e2e:plain";
    let unknown = "resilis:e2e:never-written";
    let cached = b"value-over-plain";
    println!("OUTAGE_READY");
    let deadline = Instant::now() + Duration::from_secs(100);
    let mut fallback_reads = 0;
    let mut refused_writes = 0;
    let mut unknown_errors = 0;
    let mut seq = 0u32;
    while Instant::now() < deadline {
        seq += 1;
        let heartbeat = plain
            .set(
                "resilis:e2e:heartbeat",
                format!("beat {seq}").as_bytes(),
                Some(30),
            )
            .await;
        let read = plain.get(key).await;
        let status = plain.status();
        let (shown, source) = match &read {
            Ok(r) => (
                format!("{:?}", r.value().map(String::from_utf8_lossy)),
                format!("{:?}", r.source()),
            ),
            Err(e) => (format!("{e:?}"), "none".to_string()),
        };
        println!(
            "read {key} -> {shown} source={source} phase={} heartbeat={heartbeat:?}",
            status.phase.as_str(),
        );
        if refused_with_reason(&heartbeat) {
            refused_writes += 1;
        }
        match read {
            Ok(Read::Fallback { value, reason }) => {
                if value != cached[..] {
                    fail(&format!(
                        "fallback read of {key} returned {value:?}, not the acknowledged value"
                    ));
                }
                fallback_reads += 1;
                // The same outage, a key the cache never held: an error
                // with the reason, never "absent".
                match plain.get(unknown).await {
                    Err(GatewayError::Unavailable(why)) => {
                        println!("read {unknown} -> Unavailable({why:?}) (outage: {reason:?})");
                        unknown_errors += 1;
                    }
                    // Redis came back in between: absent is its answer.
                    Ok(Read::Redis(None)) => {}
                    other => fail(&format!("outage: read of {unknown}: {other:?}")),
                }
            }
            Ok(Read::Redis(_)) => {}
            // The reason of any other failure is printed above; only a
            // read the core sent to the cache is checked here.
            Err(_) => {}
        }
        if fallback_reads > 0 && status.phase == PhaseKind::Ready && !status.fallback_active {
            break;
        }
        Timer::after_millis(250).await;
    }
    if fallback_reads == 0 {
        fail("outage: no read was served from the fallback cache");
    }
    pass(&format!(
        "outage: {fallback_reads} reads served from the fallback cache while Redis was down"
    ));
    if unknown_errors == 0 {
        fail("outage: no read of an uncached key failed with the reason");
    }
    pass(&format!(
        "outage: {unknown_errors} reads of an uncached key failed as Unavailable(reason)"
    ));
    if refused_writes == 0 {
        fail("outage: no heartbeat was refused as not applied");
    }
    pass(&format!(
        "outage: {refused_writes} heartbeats refused as not applied, with the reason"
    ));
    if plain.status().phase != PhaseKind::Ready {
        fail(&format!(
            "outage: plain did not come back: {:?}",
            plain.status()
        ));
    }
    let ready_count = plain.status().ready_count;
    pass(&format!(
        "outage: the core reconnected (ready {ready_count} times)"
    ));
    // Redis restarted empty: write and read through it again.
    basic_checks("plain", plain).await;
    basic_checks("tls", tls).await;
    pass("outage: both connections answer again after the restart");
}

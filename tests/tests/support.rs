//! The test support checked against the real thing: if these fail, every
//! integration and fault-injection test built on them means nothing.

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use resilis_tests::proxy::{TLS_ALERT, TRUNCATED_FRAME};
use resilis_tests::server::redis_cli_binary;
use resilis_tests::{
    Behavior, Direction, FaultProxy, HostileServer, IdleAction, RawConn, RedisServer, Reply,
    TestPki,
};

/// `redis-cli` over TLS, with the given CA and optional client identity;
/// returns stdout + stderr so failures say why.
fn redis_cli_tls(
    port: u16,
    ca: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
    args: &[&str],
) -> String {
    let mut cmd = Command::new(redis_cli_binary());
    cmd.args(["--tls", "--cacert"])
        .arg(ca)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((cert, key)) = client {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let out = cmd.args(args).output().expect("run redis-cli");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn short_reads(conn: &RawConn, limit: Duration) {
    conn.stream().set_read_timeout(Some(limit)).unwrap();
}

/// Whether connecting to `addr` ends in a reset. A reset can race the
/// end of the connect itself (std checks SO_ERROR after its connect with
/// a timeout), so both places count.
fn connection_is_reset(addr: std::net::SocketAddr) -> bool {
    match RawConn::connect(addr) {
        Err(e) => e.kind() == ErrorKind::ConnectionReset,
        Ok(conn) => {
            let mut buf = [0u8; 8];
            matches!(conn.stream().read(&mut buf), Err(e) if e.kind() == ErrorKind::ConnectionReset)
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[test]
fn plain_server_serves_and_leaves_nothing_behind() {
    let server = RedisServer::start();
    assert_eq!(server.command(&["PING"]), "PONG");
    assert_eq!(server.command(&["SET", "k", "v"]), "OK");
    assert_eq!(server.command(&["GET", "k"]), "v");
    assert_eq!(server.command(&["INCR", "n"]), "1");
    assert_eq!(server.command(&["GET", "missing"]), "(nil)");
    assert!(server.url().starts_with("redis://127.0.0.1:"));
    // Persistence is off, so nothing the tests do can leak into the next run.
    assert_eq!(server.command(&["CONFIG", "GET", "save"]), "save\n");
    assert_eq!(
        server.command(&["CONFIG", "GET", "appendonly"]),
        "appendonly\nno"
    );

    let pid = server.pid().expect("running");
    let dir = server.dir().to_path_buf();
    let port = server.port();
    drop(server);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process left behind"
    );
    assert!(!dir.exists(), "temp dir left behind");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn tls_only_server_is_verified_with_the_test_ca() {
    let pki = TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    drop(pki); // the server keeps copies, so it can restart without them

    let dir_pki = TestPki::generate();
    // Signed by the first PKI's CA: a fresh PKI's CA must not verify it.
    let wrong = redis_cli_tls(server.tls_port(), &dir_pki.ca.cert_path, None, &["PING"]);
    assert!(!wrong.contains("PONG"), "wrong CA accepted: {wrong}");
    assert!(wrong.contains("certificate verify failed"), "{wrong}");

    // The admin path still works on a TLS-only server.
    assert_eq!(server.command(&["SET", "k", "tls"]), "OK");
    assert!(server.tls_url().starts_with("rediss://127.0.0.1:"));

    // Plaintext on the TLS port: Redis drops the connection, it never answers.
    let mut plain = RawConn::connect(server.tls_addr()).unwrap();
    let reply = plain.command(&["PING"]);
    assert!(
        reply.is_err(),
        "plaintext got an answer on the TLS port: {reply:?}"
    );

    let client_port_result = std::panic::catch_unwind(|| server.port());
    assert!(
        client_port_result.is_err(),
        "TLS-only server must have no client plain port"
    );
}

#[test]
fn tls_and_plain_ports_together_and_mutual_tls() {
    let pki = TestPki::generate();
    let both = RedisServer::builder().tls(&pki).start();
    assert_eq!(
        both.raw_conn().command(&["PING"]).unwrap().to_string(),
        "PONG"
    );
    let ok = redis_cli_tls(both.tls_port(), &pki.ca.cert_path, None, &["PING"]);
    assert_eq!(ok.trim(), "PONG", "{ok}");
    let wrong = redis_cli_tls(both.tls_port(), &pki.other_ca.cert_path, None, &["PING"]);
    assert!(!wrong.contains("PONG"), "{wrong}");

    let mtls = RedisServer::builder()
        .tls_only(&pki)
        .tls_client_auth()
        .start();
    let anonymous = redis_cli_tls(mtls.tls_port(), &pki.ca.cert_path, None, &["PING"]);
    assert!(
        !anonymous.contains("PONG"),
        "mTLS server accepted no certificate: {anonymous}"
    );
    let with_cert = redis_cli_tls(
        mtls.tls_port(),
        &pki.ca.cert_path,
        Some((&pki.client.cert_path, &pki.client.key_path)),
        &["PING"],
    );
    assert_eq!(with_cert.trim(), "PONG", "{with_cert}");
}

#[test]
fn requirepass_and_acl_user() {
    let server = RedisServer::builder()
        .requirepass("s3cret")
        .acl_user("app", "app-pass")
        .start();
    let mut conn = server.raw_conn();
    let noauth = conn.command(&["GET", "k"]).unwrap();
    assert!(noauth.to_string().starts_with("(error) NOAUTH"), "{noauth}");
    let wrong = conn.command(&["AUTH", "nope"]).unwrap();
    assert!(
        wrong.to_string().starts_with("(error) WRONGPASS"),
        "{wrong}"
    );
    assert_eq!(conn.command(&["AUTH", "s3cret"]).unwrap().to_string(), "OK");

    let mut app = server.raw_conn();
    let wrong_user = app.command(&["AUTH", "app", "s3cret"]).unwrap();
    assert!(wrong_user.is_error(), "{wrong_user}");
    assert_eq!(
        app.command(&["AUTH", "app", "app-pass"])
            .unwrap()
            .to_string(),
        "OK"
    );
    assert_eq!(app.command(&["ACL", "WHOAMI"]).unwrap().to_string(), "app");
    assert_eq!(
        app.command(&["SET", "k", "from-app"]).unwrap().to_string(),
        "OK"
    );

    // The helper authenticates by itself.
    assert_eq!(server.command(&["GET", "k"]), "from-app");
}

#[test]
fn resp2_only_server_refuses_hello() {
    let resp2 = RedisServer::builder().resp2_only().start();
    let reply = resp2
        .raw_conn()
        .command(&["HELLO", "3"])
        .unwrap()
        .to_string();
    assert!(
        reply.starts_with("(error) ERR unknown command 'HELLO'"),
        "{reply}"
    );

    let resp3 = RedisServer::start();
    let reply = resp3.raw_conn().command(&["HELLO", "3"]).unwrap();
    assert!(matches!(reply, Reply::Map(_)), "{reply:?}");
}

#[test]
fn maxclients_and_protected_mode() {
    let server = RedisServer::builder().maxclients(2).start();
    let mut a = server.raw_conn();
    let mut b = server.raw_conn();
    assert_eq!(a.command(&["PING"]).unwrap().to_string(), "PONG");
    assert_eq!(b.command(&["PING"]).unwrap().to_string(), "PONG");
    let third = server.raw_conn().read_reply().unwrap().to_string();
    assert!(third.contains("max number of clients reached"), "{third}");

    // Protected mode only denies clients not at exactly 127.0.0.1: a proxy
    // connecting from 127.0.0.2 puts any client in that position.
    let protected = RedisServer::builder().protected_mode().start();
    assert_eq!(
        protected.raw_conn().command(&["PING"]).unwrap().to_string(),
        "PONG"
    );
    let proxy = FaultProxy::builder(protected.addr())
        .upstream_source(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .start();
    let mut via = RawConn::connect(proxy.addr()).unwrap();
    let denied = via.command(&["PING"]).unwrap().to_string();
    assert!(denied.starts_with("(error) DENIED"), "{denied}");
}

#[test]
fn idle_timeout_closes_idle_connections() {
    let server = RedisServer::builder()
        .idle_timeout(Duration::from_secs(1))
        .start();
    let mut conn = server.raw_conn();
    assert_eq!(conn.command(&["PING"]).unwrap().to_string(), "PONG");
    let started = Instant::now();
    // Redis checks idle clients in its cron, so allow a few seconds.
    let closed = conn.read_until_close(1024).unwrap();
    assert!(closed.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

#[test]
fn kill_and_restart_keep_the_port() {
    let server = RedisServer::start();
    let port = server.port();
    let pid = server.pid().unwrap();
    server.command(&["SET", "k", "v"]);

    server.kill();
    assert!(!server.is_running());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(server.try_command(&["PING"]).is_err());

    server.restart();
    assert_eq!(server.port(), port);
    assert_ne!(server.pid().unwrap(), pid);
    assert_eq!(server.command(&["PING"]), "PONG");
    assert_eq!(server.command(&["GET", "k"]), "(nil)", "no persistence");

    // Restart while running kills first; stop is graceful.
    server.restart();
    assert_eq!(server.command(&["PING"]), "PONG");
    server.stop();
    assert!(!server.is_running());
    server.restart();
    assert_eq!(server.command(&["PING"]), "PONG");
}

#[test]
fn proxy_passes_through_and_counts() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut conn = RawConn::connect(proxy.addr()).unwrap();
    assert_eq!(conn.command(&["SET", "k", "v"]).unwrap().to_string(), "OK");
    assert_eq!(conn.command(&["GET", "k"]).unwrap().to_string(), "v");
    assert_eq!(proxy.connections_accepted(), 1);
    assert_eq!(proxy.active_connections(), 1);
    assert!(proxy.bytes_to_server() >= 40, "{}", proxy.bytes_to_server());
    // The counter moves just after the write the client already saw.
    let expected = b"+OK\r\n$1\r\nv\r\n".len() as u64;
    let deadline = Instant::now() + Duration::from_secs(2);
    while proxy.bytes_to_client() < expected && Instant::now() < deadline {
        sleep(Duration::from_millis(2));
    }
    assert_eq!(proxy.bytes_to_client(), expected);

    proxy.set_latency(Direction::ToClient, Duration::from_millis(150));
    let started = Instant::now();
    assert_eq!(conn.command(&["PING"]).unwrap().to_string(), "PONG");
    assert!(started.elapsed() >= Duration::from_millis(150));
    proxy.pass_through();

    // A client that closes is closed upstream too.
    drop(conn);
    let deadline = Instant::now() + Duration::from_secs(2);
    while proxy.active_connections() > 0 && Instant::now() < deadline {
        sleep(Duration::from_millis(5));
    }
    assert_eq!(proxy.active_connections(), 0);
}

#[test]
fn proxy_freeze_stalls_silently_and_heal_delivers() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut live = RawConn::connect(proxy.addr()).unwrap();
    assert_eq!(live.command(&["PING"]).unwrap().to_string(), "PONG");

    proxy.freeze();
    short_reads(&live, Duration::from_millis(300));
    live.send(&["INCR", "n"]).unwrap();
    let stalled = live.read_reply().unwrap_err();
    assert!(is_timeout(&stalled), "expected silence, got {stalled:?}");
    assert_eq!(
        server.command(&["GET", "n"]),
        "(nil)",
        "nothing reached the server"
    );

    // New connections during a freeze: TCP connects, nothing answers.
    let mut fresh = RawConn::connect(proxy.addr()).unwrap();
    short_reads(&fresh, Duration::from_millis(200));
    let err = fresh.command(&["PING"]).unwrap_err();
    assert!(is_timeout(&err), "{err:?}");

    proxy.heal();
    short_reads(&live, Duration::from_secs(5));
    short_reads(&fresh, Duration::from_secs(5));
    assert_eq!(live.read_reply().unwrap().to_string(), "1");
    assert_eq!(fresh.read_reply().unwrap().to_string(), "PONG");
    assert_eq!(server.command(&["GET", "n"]), "1");
}

#[test]
fn proxy_resets_cuts_and_injects() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());

    let mut conn = RawConn::connect(proxy.addr()).unwrap();
    assert_eq!(conn.command(&["PING"]).unwrap().to_string(), "PONG");
    proxy.reset_all();
    let mut buf = [0u8; 16];
    let err = conn.stream().read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err:?}");

    // A reply cut after 5 bytes: the client sees a partial frame, then EOF.
    server.command(&["SET", "big", &"x".repeat(100)]);
    let mut cut = RawConn::connect(proxy.addr()).unwrap();
    assert_eq!(cut.command(&["PING"]).unwrap().to_string(), "PONG");
    proxy.close_after_bytes(Direction::ToClient, 5);
    cut.send(&["GET", "big"]).unwrap();
    assert_eq!(cut.read_until_close(1024).unwrap(), b"$100\r");
    proxy.clear_close_after();

    let mut injected = RawConn::connect(proxy.addr()).unwrap();
    assert_eq!(injected.command(&["PING"]).unwrap().to_string(), "PONG");
    proxy.inject(Direction::ToClient, TLS_ALERT);
    proxy.inject(Direction::ToClient, TRUNCATED_FRAME);
    let mut got = vec![0u8; TLS_ALERT.len() + TRUNCATED_FRAME.len()];
    injected.stream().read_exact(&mut got).unwrap();
    assert_eq!(&got[..TLS_ALERT.len()], TLS_ALERT);
    assert_eq!(&got[TLS_ALERT.len()..], TRUNCATED_FRAME);
}

#[test]
fn proxy_idle_limits() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    proxy.set_idle_limit(Duration::from_millis(200), IdleAction::Reset);
    let mut conn = RawConn::connect(proxy.addr()).unwrap();
    assert_eq!(conn.command(&["PING"]).unwrap().to_string(), "PONG");
    let mut buf = [0u8; 16];
    let started = Instant::now();
    let err = conn.stream().read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    assert!(started.elapsed() >= Duration::from_millis(150));

    proxy.set_idle_limit(Duration::from_millis(200), IdleAction::BlackHole);
    let mut conn = RawConn::connect(proxy.addr()).unwrap();
    assert_eq!(conn.command(&["PING"]).unwrap().to_string(), "PONG");
    sleep(Duration::from_millis(300));
    short_reads(&conn, Duration::from_millis(300));
    let err = conn.command(&["PING"]).unwrap_err();
    assert!(is_timeout(&err), "black hole answered: {err:?}");
}

#[test]
fn hostile_server_behaviours() {
    let hostile = HostileServer::start(Behavior::huge_bulk());
    let mut conn = RawConn::connect(hostile.addr()).unwrap();
    conn.send(&["HELLO", "3"]).unwrap();
    let mut header = [0u8; 13];
    conn.stream().read_exact(&mut header).unwrap();
    assert_eq!(&header, b"$9999999999\r\n");
    assert_eq!(hostile.commands(), 1);

    hostile.set_behavior(Behavior::deep_nesting(1000));
    let mut conn = RawConn::connect(hostile.addr()).unwrap();
    let err = conn.command(&["PING"]).unwrap_err();
    assert!(err.to_string().contains("nested"), "{err}");

    hostile.set_behavior(Behavior::tls_alert());
    let mut conn = RawConn::connect(hostile.addr()).unwrap();
    assert_eq!(conn.read_until_close(64).unwrap(), TLS_ALERT);

    hostile.set_behavior(Behavior::ResetOnAccept);
    assert!(connection_is_reset(hostile.addr()));

    hostile.set_behavior(Behavior::Script(vec![
        b"+OK\r\n".to_vec(),
        b"\x00garbage\r\n".to_vec(),
    ]));
    let mut conn = RawConn::connect(hostile.addr()).unwrap();
    conn.send_raw(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n")
        .unwrap();
    assert_eq!(conn.read_reply().unwrap().to_string(), "OK");
    assert!(conn.read_reply().is_err());

    hostile.set_behavior(Behavior::never_ending_array());
    let mut conn = RawConn::connect(hostile.addr()).unwrap();
    conn.send(&["PING"]).unwrap();
    sleep(Duration::from_millis(100));
    let before = hostile.bytes_sent();
    sleep(Duration::from_millis(100));
    assert!(hostile.bytes_sent() > before, "the endless reply stopped");
    drop(conn);

    // A clean handshake first, then the hostile reply to the real command.
    hostile.set_behavior(Behavior::handshake_then(b"$9999999999\r\n".to_vec()));
    let mut conn = RawConn::connect(hostile.addr()).unwrap();
    assert!(matches!(
        conn.command(&["HELLO", "3"]).unwrap(),
        Reply::Map(_)
    ));
    assert_eq!(conn.command(&["PING"]).unwrap().to_string(), "PONG");
    let err = conn.command(&["GET", "k"]).unwrap_err();
    assert!(err.to_string().contains("over the helper's limit"), "{err}");

    // A clean handshake, then a reply that never ends.
    hostile.set_behavior(Behavior::AfterHandshake(Box::new(Behavior::Endless {
        prefix: b"*1000000\r\n".to_vec(),
        chunk: b":1\r\n".to_vec(),
        interval: Duration::from_millis(5),
    })));
    let mut conn = RawConn::connect(hostile.addr()).unwrap();
    assert!(matches!(
        conn.command(&["HELLO", "3"]).unwrap(),
        Reply::Map(_)
    ));
    assert_eq!(conn.command(&["PING"]).unwrap().to_string(), "PONG");
    conn.send(&["GET", "k"]).unwrap();
    let before = hostile.bytes_sent();
    sleep(Duration::from_millis(100));
    assert!(
        hostile.bytes_sent() > before,
        "the endless reply did not start"
    );
    drop(conn);

    assert_eq!(hostile.connections(), 8);
}

#[test]
fn proxy_to_a_dead_upstream_resets_the_client_and_recovers() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    server.kill();
    assert!(connection_is_reset(proxy.addr()));

    server.restart();
    let mut conn = RawConn::connect(proxy.addr()).unwrap();
    assert_eq!(conn.command(&["PING"]).unwrap().to_string(), "PONG");
    assert_eq!(proxy.connections_accepted(), 2);
}

/// The helpers own their runtimes, so an async test (current_thread by
/// default) can create, use and drop them, even while blocking in between.
#[tokio::test]
async fn usable_from_a_current_thread_tokio_test() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(b"PING\r\n").await.unwrap();
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"+PONG\r\n");
    // A blocking restart stalls this runtime, not the proxy's.
    server.restart();
    let mut stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(b"PING\r\n").await.unwrap();
    stream.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"+PONG\r\n");
    drop(proxy);
}

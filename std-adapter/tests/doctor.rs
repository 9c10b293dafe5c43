//! `resilis doctor` against real redis-servers set up to fail in each way
//! the seed's users met: each test asserts the failing step, the core's
//! classification, the exit code and the fix. DNS failures go through an
//! injected resolver, so no query leaves the machine. The environment is
//! injected too: nothing here depends on the REDIS_* variables of the
//! machine running the tests.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use resilis::doctor::{self, Options, Report, Status, StepName};
use resilis_tests::{Behavior, FaultProxy, HostileServer, RedisServer, TestPki};

/// Short enough to keep the suite fast, long enough for a busy machine.
const STEP_TIMEOUT: Duration = Duration::from_millis(1500);

fn options() -> Options {
    Options {
        timeout: STEP_TIMEOUT,
        pings: 3,
        ..Options::default()
    }
}

/// Resolves nothing: the tests that reach DNS use IP literals or inject
/// their own resolver, and this makes sure of it.
fn no_dns() -> Options {
    Options {
        resolver: Arc::new(|host: &str, _port: u16| -> io::Result<Vec<SocketAddr>> {
            panic!("unexpected DNS lookup of {host}")
        }),
        ..options()
    }
}

async fn diagnose(url: &str, env: &[(&str, &str)]) -> Report {
    diagnose_with(url, env, &no_dns()).await
}

async fn diagnose_with(url: &str, env: &[(&str, &str)], options: &Options) -> Report {
    let vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let lookup = move |name: &str| vars.get(name).cloned();
    doctor::diagnose(Some(url), &lookup, options).await
}

#[track_caller]
fn assert_fails(report: &Report, step: StepName, reason: &str) {
    let v = &report.verdict;
    assert!(!v.healthy, "{}", doctor::render(report));
    assert_eq!(v.failed_step, Some(step), "{}", doctor::render(report));
    assert_eq!(v.exit_code, step.exit_code());
    assert_eq!(
        v.reason.as_deref(),
        Some(reason),
        "{}",
        doctor::render(report)
    );
    let failed: Vec<_> = report
        .steps
        .iter()
        .filter(|s| s.status == Status::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "{}", doctor::render(report));
    let after = StepName::ALL.iter().skip_while(|s| **s != step).skip(1);
    for name in after {
        assert_eq!(
            report.step(*name).map(|s| s.status),
            Some(Status::Skipped),
            "{name:?} should not run after {step:?} failed"
        );
    }
}

#[track_caller]
fn assert_healthy(report: &Report) {
    assert!(report.verdict.healthy, "{}", doctor::render(report));
    assert_eq!(report.exit_code(), 0);
    assert!(
        report
            .ping
            .as_ref()
            .is_some_and(|p| p.samples_ms.len() == 3)
    );
}

fn fix(report: &Report) -> &str {
    report.verdict.fix.as_deref().unwrap_or_default()
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
    // Dropped here: nothing listens on it any more.
}

// ---- healthy --------------------------------------------------------------

#[tokio::test]
async fn healthy_plaintext_server_reports_ping_and_info() {
    let server = RedisServer::start();
    let report = diagnose(&server.url(), &[]).await;
    assert_healthy(&report);
    let info = report.server.as_ref().expect("INFO ran");
    assert!(info.version.as_deref().is_some_and(|v| v.starts_with('7')));
    assert_eq!(info.role.as_deref(), Some("master"));
    assert!(info.maxclients.is_some() && info.connected_clients.is_some());
    assert_eq!(info.idle_timeout_s, Some(0));
    assert_eq!(
        (info.rdb_enabled, info.aof_enabled),
        (Some(false), Some(false))
    );
    let tls = report.step(StepName::Tls).unwrap();
    assert!(tls.summary.contains("plaintext RESP"), "{}", tls.summary);
}

#[tokio::test]
async fn server_idle_timeout_shorter_than_the_ping_interval_is_a_warning() {
    let server = RedisServer::builder()
        .idle_timeout(Duration::from_secs(2))
        .start();
    let url = format!("{}?ping_interval=5s", server.url());
    let report = diagnose(&url, &[]).await;
    assert_healthy(&report);
    assert_eq!(report.server.as_ref().unwrap().idle_timeout_s, Some(2));
    assert!(
        report
            .verdict
            .warnings
            .iter()
            .any(|w| w.contains("idle for 2 s") && w.contains("REDIS_PING_INTERVAL")),
        "{}",
        doctor::render(&report)
    );
    assert_eq!(report.step(StepName::Info).unwrap().status, Status::Warn);
}

// ---- nothing there ----------------------------------------------------------

#[tokio::test]
async fn nothing_listening_is_connection_refused() {
    let port = free_port();
    let report = diagnose(&format!("redis://127.0.0.1:{port}"), &[]).await;
    assert_fails(&report, StepName::Tcp, "Transport(Refused)");
    assert!(report.verdict.problem.contains("refused"));
    assert!(fix(&report).contains("REDIS_PORT"), "{}", fix(&report));
}

#[tokio::test]
async fn dns_failure_through_the_injected_resolver() {
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    let options = Options {
        resolver: Arc::new(move |host: &str, _port: u16| {
            seen.lock().unwrap().push(host.to_owned());
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                "failed to lookup address information: Name or service not known",
            ))
        }),
        ..options()
    };
    let report = diagnose_with("redis://cache.internal.example:6379", &[], &options).await;
    assert_fails(&report, StepName::Dns, "Transport(Dns)");
    assert_eq!(*asked.lock().unwrap(), ["cache.internal.example"]);
    assert!(report.verdict.problem.contains("cache.internal.example"));
    assert!(fix(&report).contains("host name"), "{}", fix(&report));
}

#[tokio::test]
async fn a_resolved_name_lists_every_address_and_connects() {
    let server = RedisServer::start();
    let port = server.port();
    let options = Options {
        resolver: Arc::new(move |_: &str, port: u16| {
            Ok(vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), port),
            ])
        }),
        ..options()
    };
    let report = diagnose_with(&format!("redis://redis.test:{port}"), &[], &options).await;
    assert_healthy(&report);
    let dns = report.step(StepName::Dns).unwrap();
    assert_eq!(dns.details, ["127.0.0.1"]);
}

#[tokio::test]
async fn freezing_proxy_is_a_handshake_timeout_with_a_proxy_hint() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    proxy.freeze();
    let options = Options {
        timeout: Duration::from_millis(400),
        ..no_dns()
    };
    let report = diagnose_with(&proxy.url(), &[], &options).await;
    assert_fails(
        &report,
        StepName::Handshake,
        "HandshakeTimeout { received_any: false }",
    );
    assert!(
        report.verdict.problem.contains("sent nothing back"),
        "{}",
        report.verdict.problem
    );
    assert!(fix(&report).contains("proxy"), "{}", fix(&report));
}

#[tokio::test]
async fn blackholed_connect_is_a_timeout_with_the_firewall_fix() {
    // A listener whose accept queue is full drops further SYNs, like a
    // firewall that drops packets: the connect hangs until it times out.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    let mut full = false;
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => queued.push(stream),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    assert!(full, "the accept queue never filled");
    let options = Options {
        timeout: Duration::from_millis(300),
        ..no_dns()
    };
    let report = diagnose_with(&format!("redis://{addr}"), &[], &options).await;
    assert_fails(&report, StepName::Tcp, "ConnectTimeout");
    assert!(report.verdict.problem.contains("no answer within 300ms"));
    assert!(fix(&report).contains("firewall"), "{}", fix(&report));
    drop(queued);
}

// ---- TLS, both ways -----------------------------------------------------------

#[tokio::test]
async fn tls_only_server_with_a_plaintext_url_says_use_rediss() {
    let pki = TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    let url = format!("redis://127.0.0.1:{}", server.tls_port());
    let report = diagnose(&url, &[]).await;
    assert_fails(&report, StepName::Tls, "TlsRequired(ClosedWithoutReply)");
    assert!(
        report.verdict.problem.contains(
            "closed the connection right after TCP connect and answers a TLS ClientHello"
        ),
        "{}",
        report.verdict.problem
    );
    assert_eq!(fix(&report), "use rediss:// or set REDIS_TLS=true");
}

#[tokio::test]
async fn plaintext_server_with_rediss_says_tls_not_spoken() {
    let server = RedisServer::start();
    let url = format!("rediss://127.0.0.1:{}", server.port());
    // Redis often waits for a newline in our ClientHello: the doctor must
    // not sit out the whole step limit to find out.
    let options = Options {
        timeout: Duration::from_secs(8),
        ..no_dns()
    };
    for _ in 0..3 {
        let report = diagnose_with(&url, &[], &options).await;
        assert_fails(&report, StepName::Tls, "TlsNotSpoken");
        assert!(report.verdict.problem.contains("speaks plaintext RESP"));
        assert!(fix(&report).contains("use redis://"), "{}", fix(&report));
        let took = report.step(StepName::Tls).unwrap().elapsed_ms.unwrap();
        assert!(took < 4000.0, "the TLS step took {took} ms");
    }
}

#[tokio::test]
async fn tls_with_an_unknown_ca_names_the_ca_file_and_the_insecure_risk() {
    let pki = TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    let report = diagnose(&server.tls_url(), &[]).await;
    assert_fails(&report, StepName::Tls, "TlsCertificate");
    assert!(report.verdict.problem.contains("not trusted"));
    let fix = fix(&report);
    assert!(fix.contains("REDIS_TLS_CA_FILE"), "{fix}");
    assert!(
        fix.contains("REDIS_TLS_INSECURE=true") && fix.contains("impersonate"),
        "{fix}"
    );
    let details = &report.step(StepName::Tls).unwrap().details;
    assert!(
        details.iter().any(|d| d.contains("resilis test CA")),
        "{details:?}"
    );
}

#[tokio::test]
async fn tls_with_the_ca_file_is_healthy_and_says_who_trusts_it() {
    let pki = TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    let ca = pki.ca.cert_path.to_str().unwrap();
    let report = diagnose(&server.tls_url(), &[("REDIS_TLS_CA_FILE", ca)]).await;
    assert_healthy(&report);
    let tls = report.step(StepName::Tls).unwrap();
    assert_eq!(tls.status, Status::Ok);
    assert!(
        tls.details
            .iter()
            .any(|d| d.contains("REDIS_TLS_CA_FILE") && d.contains("trusted")),
        "{:?}",
        tls.details
    );
    assert!(
        tls.details
            .iter()
            .any(|d| d.contains("names: localhost, 127.0.0.1"))
    );
}

#[tokio::test]
async fn tls_insecure_connects_but_warns_with_the_risk() {
    let pki = TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    let report = diagnose(&server.tls_url(), &[("REDIS_TLS_INSECURE", "true")]).await;
    assert_healthy(&report);
    assert_eq!(report.step(StepName::Tls).unwrap().status, Status::Warn);
    assert!(
        report
            .verdict
            .warnings
            .iter()
            .any(|w| w.contains("REDIS_TLS_INSECURE") && w.contains("impersonate")),
        "{:?}",
        report.verdict.warnings
    );
}

/// A server certificate, trusted through `ca_path`, that expired in 2020.
fn expired_server_cert(dir: &std::path::Path) -> (resilis_tests::CertFiles, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "doctor expiry CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.is_ca = IsCa::ExplicitNoCa;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let ca_path = dir.join("expiry-ca.crt");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let files = resilis_tests::CertFiles {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
        cert_path: dir.join("unused.crt"),
        key_path: dir.join("unused.key"),
    };
    (files, ca_path.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_expired_certificate_says_so_and_when() {
    let pki = TestPki::generate();
    let (expired, ca_path) = expired_server_cert(pki.dir());
    let server = RedisServer::builder()
        .tls_identity(&expired, &pki.ca)
        .start();
    let report = diagnose(&server.tls_url(), &[("REDIS_TLS_CA_FILE", &ca_path)]).await;
    assert_fails(&report, StepName::Tls, "TlsCertificate");
    assert!(
        report.verdict.problem.contains("expired"),
        "{}",
        report.verdict.problem
    );
    assert!(fix(&report).contains("renew"), "{}", fix(&report));
    let details = &report.step(StepName::Tls).unwrap().details;
    assert!(
        details
            .iter()
            .any(|d| d.contains("expired: Jan  1 00:00:00 2020")),
        "{details:?}"
    );
}

#[tokio::test]
async fn tls_certificate_for_another_name_says_which_names_it_carries() {
    let pki = TestPki::generate();
    let server = RedisServer::builder().tls_only(&pki).start();
    let ca = pki.ca.cert_path.to_str().unwrap();
    let report = diagnose(
        &server.tls_url(),
        &[
            ("REDIS_TLS_CA_FILE", ca),
            ("REDIS_TLS_SERVER_NAME", "cache.example.com"),
        ],
    )
    .await;
    assert_fails(&report, StepName::Tls, "TlsCertificate");
    assert!(report.verdict.problem.contains("cache.example.com"));
    assert!(
        fix(&report).contains("localhost, 127.0.0.1"),
        "{}",
        fix(&report)
    );
}

// ---- the Redis handshake ---------------------------------------------------------

#[tokio::test]
async fn requirepass_with_the_wrong_password() {
    let server = RedisServer::builder().requirepass("right-pw").start();
    let url = format!("redis://:wrong-pw@127.0.0.1:{}", server.port());
    let report = diagnose(&url, &[]).await;
    assert_fails(&report, StepName::Handshake, "AuthFailed");
    assert!(fix(&report).contains("REDIS_PASSWORD"));
    let details = &report.step(StepName::Handshake).unwrap().details;
    assert!(
        details.iter().any(|d| d.contains("WRONGPASS")),
        "{details:?}"
    );
    assert!(!report.to_json().contains("wrong-pw"));
    assert!(!doctor::render(&report).contains("wrong-pw"));
}

#[tokio::test]
async fn requirepass_with_no_password() {
    let server = RedisServer::builder().requirepass("right-pw").start();
    let report = diagnose(&server.url(), &[]).await;
    assert_fails(&report, StepName::Handshake, "AuthRequired");
    assert!(report.verdict.problem.contains("NOAUTH"));
    assert!(fix(&report).contains("REDIS_PASSWORD"));
}

#[tokio::test]
async fn requirepass_with_the_password_from_redis_password() {
    let server = RedisServer::builder().requirepass("right-pw").start();
    let report = diagnose(&server.url(), &[("REDIS_PASSWORD", "right-pw")]).await;
    assert_healthy(&report);
    assert!(report.target.as_ref().unwrap().password_set);
    assert!(!report.to_json().contains("right-pw"));
}

#[tokio::test]
async fn acl_user_with_the_wrong_password_or_unknown() {
    let server = RedisServer::builder().acl_user("app", "app-pw").start();
    for userinfo in ["app:not-it", "ghost:app-pw"] {
        let url = format!("redis://{userinfo}@127.0.0.1:{}", server.port());
        let report = diagnose(&url, &[]).await;
        assert_fails(&report, StepName::Handshake, "AuthFailed");
        let user = userinfo.split(':').next().unwrap();
        assert!(
            report
                .verdict
                .problem
                .contains(&format!("ACL user \"{user}\"")),
            "{}",
            report.verdict.problem
        );
    }
    let url = format!("redis://app:app-pw@127.0.0.1:{}", server.port());
    assert_healthy(&diagnose(&url, &[]).await);
}

#[tokio::test]
async fn max_clients_reached() {
    let server = RedisServer::builder().maxclients(1).start();
    let mut holder = server.raw_conn();
    assert_eq!(
        holder.command(&["PING"]).unwrap().to_string(),
        "PONG",
        "the holder takes the only slot"
    );
    let report = diagnose(&server.url(), &[]).await;
    assert_fails(&report, StepName::Handshake, "MaxClients");
    assert!(fix(&report).contains("maxclients"));
    drop(holder);
}

#[tokio::test]
async fn protected_mode_denied_from_a_non_loopback_source() {
    // A real DENIED: Redis in protected mode refuses clients whose address
    // is not 127.0.0.1/::1, and the proxy connects from 127.0.0.2.
    let server = RedisServer::builder().protected_mode().start();
    let proxy = FaultProxy::builder(server.addr())
        .upstream_source(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .start();
    let report = diagnose(&proxy.url(), &[]).await;
    assert_fails(&report, StepName::Handshake, "ProtectedMode");
    assert!(report.verdict.problem.contains("protected mode"));
    assert!(fix(&report).contains("requirepass"));
}

#[tokio::test]
async fn a_database_that_does_not_exist() {
    let server = RedisServer::start();
    let report = diagnose(&format!("{}/99", server.url()), &[]).await;
    assert_fails(&report, StepName::Handshake, "InvalidDatabase");
    assert!(fix(&report).contains("REDIS_DB"), "{}", fix(&report));
}

#[tokio::test]
async fn a_server_without_hello_is_diagnosed_over_resp2() {
    // Like Redis before 6: the core falls back to AUTH on RESP2.
    let server = RedisServer::builder()
        .resp2_only()
        .requirepass("pw")
        .start();
    let url = format!("redis://:pw@127.0.0.1:{}", server.port());
    let report = diagnose(&url, &[]).await;
    assert_healthy(&report);
    let handshake = report.step(StepName::Handshake).unwrap();
    assert!(handshake.summary.contains("RESP2"), "{}", handshake.summary);
    let info = report.server.as_ref().unwrap();
    assert_eq!(info.protocol, Some(2));
    assert!(info.version.is_some() && info.maxclients.is_some());
}

// ---- configuration ------------------------------------------------------------

#[tokio::test]
async fn invalid_url_is_a_config_failure() {
    let report = diagnose("redis://127.0.0.1:99999", &[]).await;
    assert_eq!(report.verdict.failed_step, Some(StepName::Config));
    assert_eq!(report.exit_code(), 3);
    assert!(
        report.verdict.problem.contains("port"),
        "{}",
        report.verdict.problem
    );
}

#[tokio::test]
async fn unreadable_ca_file_is_a_config_failure_naming_the_variable() {
    let report = diagnose(
        "rediss://127.0.0.1:1",
        &[("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem")],
    )
    .await;
    assert_eq!(report.verdict.failed_step, Some(StepName::Config));
    assert_eq!(report.exit_code(), 3);
    assert!(report.verdict.problem.contains("REDIS_TLS_CA_FILE"));
}

#[tokio::test]
async fn mutual_tls_without_a_client_certificate_says_which_variables() {
    let pki = TestPki::generate();
    let server = RedisServer::builder()
        .tls_only(&pki)
        .tls_client_auth()
        .start();
    let ca = pki.ca.cert_path.to_str().unwrap();
    let report = diagnose(&server.tls_url(), &[("REDIS_TLS_CA_FILE", ca)]).await;
    assert_fails(&report, StepName::Tls, "Transport(TlsOther)");
    assert!(
        report.verdict.problem.contains("CertificateRequired"),
        "{}",
        report.verdict.problem
    );
    assert!(
        fix(&report).contains("REDIS_TLS_CERT_FILE") && fix(&report).contains("REDIS_TLS_KEY_FILE"),
        "{}",
        fix(&report)
    );
    let cert = pki.client.cert_path.to_str().unwrap();
    let key = pki.client.key_path.to_str().unwrap();
    let report = diagnose(
        &server.tls_url(),
        &[
            ("REDIS_TLS_CA_FILE", ca),
            ("REDIS_TLS_CERT_FILE", cert),
            ("REDIS_TLS_KEY_FILE", key),
        ],
    )
    .await;
    assert_healthy(&report);
}

// ---- not Redis at all ----------------------------------------------------------

#[tokio::test]
async fn a_tls_alert_on_plaintext_is_tls_required() {
    // What some TLS terminators do with plaintext: a TLS alert, then close.
    let server = HostileServer::start(Behavior::tls_alert());
    let report = diagnose(&server.url(), &[]).await;
    assert_fails(&report, StepName::Tls, "TlsRequired(TlsRecord)");
    assert!(
        report.verdict.problem.contains("with a TLS record"),
        "{}",
        report.verdict.problem
    );
    assert_eq!(fix(&report), "use rediss:// or set REDIS_TLS=true");
}

#[tokio::test]
async fn a_server_that_is_not_redis_is_a_protocol_error() {
    let server = HostileServer::start(Behavior::garbage());
    let report = diagnose(&server.url(), &[]).await;
    assert_eq!(report.verdict.failed_step, Some(StepName::Handshake));
    assert!(
        report
            .verdict
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("Protocol(")),
        "{}",
        doctor::render(&report)
    );
    assert!(
        fix(&report).contains("not a Redis server"),
        "{}",
        fix(&report)
    );
}

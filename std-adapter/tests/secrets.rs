//! A password is never shown: random URLs carrying a marker password, mistyped
//! in every way the generator knows (bad scheme, missing slashes, no `@`, bad
//! port, database or options, `/`, `?`, `:` and `@` inside the password,
//! percent-encodings good and bad), through every way the configuration is
//! shown: `ConfigError` and `Error` (`Display` and `Debug`), `Options`'
//! `Debug`, and the doctor's text and JSON reports, from the library and
//! from the `resilis` binary.
//!
//! The rule (see `Config::from_url`): the userinfo runs up to the last `@`.
//! A "password" after the last `@` is the host by that rule, so the
//! generator keeps every `@` of the password before an `@` that ends it.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use proptest::prelude::*;
use resilis::Options;
use resilis::core::Config;
use resilis::doctor;

/// Verbatim in every form the generator writes the marker (raw, or with its
/// first or last letter percent-encoded).
const CORE: &str = "unter2secre";
const MARKERS: &[&str] = &[
    "hunter2secret",
    "%68unter2secret",
    "hunter2secre%74",
    "hunter2secre%7",
];

/// A loopback port nothing listens on: the doctor's TCP step fails at once.
fn closed_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    })
}

fn url() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(
        &[
            "redis://",
            "rediss://",
            "REDIS://",
            "http://",
            "redis:/",
            "redis:",
            "",
            "redis:///",
            "redis//",
            "://",
            "redis+tls://",
            "redis ://",
        ][..],
    );
    let user = prop::sample::select(&["", "app", "default", "a%40b", "us/er", "u?x", "%zz"][..]);
    let marker = prop::sample::select(MARKERS);
    let piece = prop::sample::select(
        &[
            "",
            "/",
            "@",
            ":",
            "?",
            "#",
            "%",
            "%2",
            "%zz",
            "%2F",
            "%40",
            " ",
            "//",
            "://",
            "a",
            "0",
            "6379",
            "&x=1",
            "=",
            "[",
            "]",
            "?protocol=2",
        ][..],
    );
    let pieces = prop::collection::vec(piece, 0..4);
    let separator = prop::sample::select(&["@", "@@", "", "/", "@/", ":", " @"][..]);
    let port = closed_port();
    let host = prop::sample::select(vec![
        "host".to_owned(),
        String::new(),
        "[::1".to_owned(),
        "[zz]".to_owned(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}/3"),
        format!("127.0.0.1:{port}?protocol=2&ping_interval=1s"),
        "h:abc".to_owned(),
        "h:0".to_owned(),
        "h:99999".to_owned(),
        "h:6379/x".to_owned(),
        "h/99999999999".to_owned(),
        "h?bogus=1".to_owned(),
        "h?ping_interval=0".to_owned(),
        "h?connect_timeout=0s".to_owned(),
        "h?ping_timeout=0ms".to_owned(),
        "h?protocol=9&".to_owned(),
        "h?client_name=a b".to_owned(),
        "h?connect_timeout=%zz".to_owned(),
        "bad host!".to_owned(),
    ]);
    (
        scheme,
        user,
        pieces.clone(),
        marker,
        pieces,
        separator,
        host,
    )
        .prop_map(|(scheme, user, before, marker, after, separator, host)| {
            let keep = |p: &&str| separator.contains('@') || !p.contains('@');
            let before: Vec<&str> = before.into_iter().filter(keep).collect();
            let after: Vec<&str> = after.into_iter().filter(keep).collect();
            format!(
                "{scheme}{user}:{}{marker}{}{separator}{host}",
                before.concat(),
                after.concat()
            )
        })
}

#[track_caller]
fn assert_hidden(input: &str, what: &str, shown: &str) {
    assert!(
        !shown.contains(CORE),
        "{what} of {input:?} shows the password:\n{shown}"
    );
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fn doctor_options() -> doctor::Options {
    doctor::Options {
        timeout: Duration::from_millis(300),
        pings: 1,
        // No query leaves the machine: every name fails to resolve.
        resolver: Arc::new(|host: &str, _: u16| -> std::io::Result<Vec<SocketAddr>> {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{host}: not known (test resolver)"),
            ))
        }),
    }
}

/// The doctor's report on `url` (as the argument, or as `REDIS_URL`), in
/// text and JSON.
fn doctor_reports(url: &str, env: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let lookup = move |name: &str| vars.get(name).cloned();
    let mut with_url = env.to_vec();
    with_url.push(("REDIS_URL", url));
    let vars_url: HashMap<String, String> = with_url
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let lookup_url = move |name: &str| vars_url.get(name).cloned();
    let options = doctor_options();
    let mut shown = Vec::new();
    for (what, report) in [
        (
            "the doctor (argument)",
            runtime().block_on(doctor::diagnose(Some(url), &lookup, &options)),
        ),
        (
            "the doctor (REDIS_URL)",
            runtime().block_on(doctor::diagnose(None, &lookup_url, &options)),
        ),
    ] {
        shown.push((what, doctor::render(&report)));
        shown.push((what, report.to_json()));
        shown.push((what, format!("{report:?}")));
    }
    shown
}

fn check_everywhere(url: &str, env: &[(&str, &str)], doctor: bool) {
    match Config::from_url(url) {
        Err(e) => assert_hidden(url, "ConfigError", &format!("{e} {e:?}")),
        Ok(c) => assert_hidden(url, "Config", &format!("{c:?}")),
    }
    match Options::from_url(url) {
        Err(e) => assert_hidden(url, "Error", &format!("{e} {e:?}")),
        Ok(o) => assert_hidden(url, "Options", &format!("{o:?}")),
    }
    if doctor {
        for (what, shown) in doctor_reports(url, env) {
            assert_hidden(url, what, &shown);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn no_error_nor_report_shows_the_password(url in url()) {
        check_everywhere(&url, &[], true);
    }

    #[test]
    fn nor_with_other_settings_wrong(
        url in url(),
        other in prop::sample::select(&[
            ("REDIS_PORT", "x"),
            ("REDIS_DB", "x"),
            ("REDIS_TLS", "maybe"),
            ("REDIS_TLS", "true"),
            ("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem"),
            ("REDIS_TLS_INSECURE", "true"),
            ("REDIS_PING_TIMEOUT", "0"),
            ("REDIS_PASSWORD", " "),
        ][..]),
    ) {
        check_everywhere(&url, &[other], true);
    }

    #[test]
    fn nor_from_redis_password(
        password in "[ -~]{0,6}hunter2secret[ -~]{0,6}",
        other in prop::sample::select(&[
            ("REDIS_PORT", "x"),
            ("REDIS_HOST", "bad host!"),
            ("REDIS_TLS", "true"),
            ("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem"),
        ][..]),
    ) {
        let env = [("REDIS_PASSWORD", password.as_str()), other];
        let port = closed_port().to_string();
        let env_port = [("REDIS_PASSWORD", password.as_str()), ("REDIS_PORT", port.as_str()), other];
        for env in [&env[..], &env_port[..]] {
            let vars: HashMap<&str, &str> = env.iter().copied().collect();
            match Config::from_env(|name| vars.get(name).copied()) {
                Err(e) => assert_hidden(&password, "ConfigError", &format!("{e} {e:?}")),
                Ok(c) => assert_hidden(&password, "Config", &format!("{c:?}")),
            }
            let lookup = |name: &str| vars.get(name).map(|v| (*v).to_owned());
            let report = runtime().block_on(doctor::diagnose(None, &lookup, &doctor_options()));
            assert_hidden(&password, "the doctor", &doctor::render(&report));
            assert_hidden(&password, "the doctor's JSON", &report.to_json());
        }
    }
}

/// The reports, each of which showed the password, through the
/// binary itself.
#[test]
fn the_binary_never_prints_the_password() {
    let port = closed_port();
    for url in [
        "redis:/:hunter2secret@host".to_owned(),
        format!("redis://app:hunt/er2secret@127.0.0.1:{port}"),
        format!("redis://app:1234/er2secret@127.0.0.1:{port}"),
        "redis://app:1234/er2secret".to_owned(),
        format!("redis://app:hunter2secret@127.0.0.1:{port}/x"),
        format!("redis://:hunter2secret@127.0.0.1:{port}?bogus=1"),
    ] {
        for json in [false, true] {
            let mut args = vec!["doctor", "--timeout", "500ms", url.as_str()];
            if json {
                args.insert(1, "--json");
            }
            let out = Command::new(env!("CARGO_BIN_EXE_resilis"))
                .args(&args)
                .env_clear()
                .output()
                .unwrap();
            let shown = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!shown.contains("secret"), "{url}:\n{shown}");
            assert!(!shown.contains("er2"), "{url}:\n{shown}");
            assert!(matches!(out.status.code(), Some(3 | 5)), "{url}:\n{shown}");
        }
    }
}

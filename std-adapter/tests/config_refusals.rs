//! Settings that cannot be meant are refused where the client is built, and
//! by the doctor at its Config step (exit code 3), each naming the setting
//! and the fix: TLS settings on a connection without TLS, a host that cannot
//! be a TLS server name (named by where it came from), zero timeouts, a
//! password of blanks. No server is needed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use resilis::doctor::{self, Report, StepName};
use resilis::tls::HostSource;
use resilis::{Client, Error, Options, TlsOptions};

async fn diagnose(url: Option<&str>, env: &[(&str, &str)]) -> Report {
    let vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let lookup = move |name: &str| vars.get(name).cloned();
    let options = doctor::Options {
        timeout: Duration::from_millis(300),
        pings: 1,
        resolver: Arc::new(|_: &str, _: u16| -> std::io::Result<Vec<SocketAddr>> {
            Err(std::io::ErrorKind::NotFound.into())
        }),
    };
    doctor::diagnose(url, &lookup, &options).await
}

#[track_caller]
fn assert_config_failure(report: &Report, names: &str, fix: &str) {
    let shown = doctor::render(report);
    assert_eq!(
        report.verdict.failed_step,
        Some(StepName::Config),
        "{shown}"
    );
    assert_eq!(report.exit_code(), 3, "{shown}");
    assert!(report.verdict.problem.contains(names), "{shown}");
    let given = report.verdict.fix.as_deref().unwrap_or_default();
    assert!(given.contains(fix), "{shown}");
}

#[tokio::test]
async fn tls_settings_without_tls_are_refused() {
    for (variable, value) in [
        ("REDIS_TLS_CA_FILE", "/etc/ssl/ca.pem"),
        ("REDIS_TLS_INSECURE", "true"),
        ("REDIS_TLS_CERT_FILE", "/etc/ssl/client.crt"),
        ("REDIS_TLS_KEY_FILE", "/etc/ssl/client.key"),
        ("REDIS_TLS_SERVER_NAME", "cache.example.com"),
    ] {
        let tls =
            TlsOptions::from_lookup(|name| (name == variable).then(|| value.to_owned())).unwrap();
        let options = Options::from_url("redis://127.0.0.1:1").unwrap().tls(tls);
        let err = Client::with_options(options).unwrap_err();
        assert!(
            matches!(&err, Error::Tls(e) if e.variable == variable),
            "{err:?}"
        );
        assert!(
            err.fix()
                .is_some_and(|f| f.contains("rediss://") && f.contains("REDIS_TLS=true")),
            "{err}"
        );

        let report = diagnose(Some("redis://127.0.0.1:1"), &[(variable, value)]).await;
        assert_config_failure(
            &report,
            variable,
            "use a rediss:// URL or set REDIS_TLS=true",
        );
    }
    // With TLS on, the same settings are taken.
    let report = diagnose(
        None,
        &[
            ("REDIS_URL", "redis://nowhere.invalid"),
            ("REDIS_TLS", "true"),
            ("REDIS_TLS_INSECURE", "true"),
        ],
    )
    .await;
    assert_eq!(report.verdict.failed_step, Some(StepName::Dns));
}

#[tokio::test]
async fn a_bad_tls_host_name_says_where_it_came_from() {
    let err = Client::with_options(Options::from_url("rediss://bad host!").unwrap()).unwrap_err();
    assert!(
        matches!(&err, Error::Tls(e) if e.variable == "URL host"),
        "{err:?}"
    );
    assert!(err.to_string().contains("fix the host in the URL"), "{err}");
    let mut options = Options::from_config(resilis::Config::default()).configure(|c| {
        c.tls = true;
        c.host = "bad host!".try_into().unwrap();
    });
    let err = Client::with_options(options.clone()).unwrap_err();
    assert!(
        matches!(&err, Error::Tls(e) if e.variable == "Config::host"),
        "{err:?}"
    );
    options.host_source = HostSource::RedisHost;
    let err = Client::with_options(options).unwrap_err();
    assert!(
        matches!(&err, Error::Tls(e) if e.variable == "REDIS_HOST"),
        "{err:?}"
    );

    let report = diagnose(None, &[("REDIS_HOST", "bad host!"), ("REDIS_TLS", "true")]).await;
    assert_config_failure(&report, "REDIS_HOST=\"bad host!\"", "fix REDIS_HOST");
    let report = diagnose(None, &[("REDIS_URL", "rediss://bad host!")]).await;
    assert_config_failure(&report, "REDIS_URL host", "fix the host in REDIS_URL");
    let report = diagnose(Some("rediss://bad host!"), &[]).await;
    assert_config_failure(&report, "URL host", "fix the host in the URL");
    // The override wins, and is named when it is the bad one.
    let report = diagnose(
        Some("rediss://bad host!"),
        &[("REDIS_TLS_SERVER_NAME", "cache.example.com")],
    )
    .await;
    assert_eq!(report.verdict.failed_step, Some(StepName::Dns));
}

#[tokio::test]
async fn zero_timeouts_and_blank_passwords_are_refused() {
    for (env, names) in [
        (
            &[("REDIS_CONNECT_TIMEOUT", "0")][..],
            "REDIS_CONNECT_TIMEOUT must be more than 0",
        ),
        (
            &[("REDIS_PING_INTERVAL", "0ms")][..],
            "REDIS_PING_INTERVAL must be more than 0",
        ),
        (
            &[("REDIS_URL", "redis://h?ping_timeout=0s")][..],
            "REDIS_URL ping_timeout must be more than 0",
        ),
        (
            &[("REDIS_PASSWORD", "  ")][..],
            "REDIS_PASSWORD is only blanks",
        ),
    ] {
        let report = diagnose(None, env).await;
        assert_config_failure(&report, names, names);
    }
    let err = Options::from_url("redis://:%20@h").unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration: URL password is only blanks: set the real password, or leave it empty for no AUTH"
    );
}

#[tokio::test]
async fn watch_refuses_what_the_client_refuses() {
    let vars: HashMap<&str, &str> = [("REDIS_TLS_CA_FILE", "/etc/ssl/ca.pem")].into();
    let lookup = move |name: &str| vars.get(name).map(|v| (*v).to_owned());
    let options = doctor::watch::WatchOptions {
        duration: Some(Duration::from_millis(100)),
        refresh: Duration::from_millis(50),
        ping_interval: None,
        interactive: false,
    };
    let mut out = Vec::new();
    let err = doctor::watch::watch(Some("redis://127.0.0.1:1"), &lookup, &options, &mut out)
        .await
        .unwrap_err();
    assert!(err.contains("REDIS_TLS_CA_FILE"), "{err}");
}

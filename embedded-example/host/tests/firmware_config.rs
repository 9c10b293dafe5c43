//! The firmware's constants, checked on the host: the firmware parses
//! `REDIS_URL` at boot and cannot be tested without a board, so a typo there
//! would only show as a panic on the device.

#[path = "../../firmware/src/config.rs"]
#[allow(dead_code)]
mod config;

use resilis_core::Config;
use resilis_embassy::net::Verify;

#[test]
fn redis_url_parses_and_asks_for_tls_with_credentials() {
    let parsed = Config::from_url(config::REDIS_URL).expect("REDIS_URL parses");
    assert!(parsed.tls, "the example deploys with TLS (rediss://)");
    assert!(!parsed.password.is_empty(), "credentials come from the URL");
    assert_eq!(parsed.client_name.as_str(), "gw-f767");
    assert_eq!(parsed.ping_interval, core::time::Duration::from_secs(5));
}

#[test]
fn tls_verifies_against_a_der_certificate() {
    let Verify::Ca(der) = config::VERIFY else {
        panic!("the example must verify the server's certificate");
    };
    // A DER certificate is a SEQUENCE with a two-byte long-form length.
    assert_eq!(&der[..2], &[0x30, 0x82]);
    let len = usize::from(der[2]) << 8 | usize::from(der[3]);
    assert_eq!(der.len(), len + 4, "one whole certificate");
    assert!(config::TLS_SERVER_NAME.is_some_and(|n| !n.is_empty()));
}

#[test]
fn keys_fit_the_fallback_cache() {
    // The firmware's cache holds keys of at most 32 bytes and values of 64.
    assert!(config::HEARTBEAT_KEY.len() <= 32);
    assert!(config::SETPOINT_KEY.len() <= 32);
}

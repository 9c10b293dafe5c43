//! `Client::from_env()` reads the seed's variables and the REDIS_TLS_* ones.
//! The only test in this binary: it sets process environment variables.

mod common;

use resilis::{Client, Error};
use resilis_tests::RedisServer;

#[tokio::test]
async fn from_env_reads_the_seed_variables() {
    common::init_logs();
    let server = RedisServer::builder().requirepass("env-pw").start();
    // SAFETY: this binary has a single test, so no other thread reads the
    // environment while it is written.
    unsafe {
        std::env::set_var("REDIS_HOST", "127.0.0.1");
        std::env::set_var("REDIS_PORT", server.port().to_string());
        std::env::set_var("REDIS_PASSWORD", "env-pw");
        std::env::set_var("REDIS_DB", "3");
        std::env::set_var("REDIS_COMMAND_TIMEOUT", "2s");
    }
    let client = Client::from_env().unwrap();
    common::ready(&client).await;
    client.set("from-env", "yes").await.unwrap();
    // REDIS_DB=3 was applied: the key is in database 3, not 0.
    assert_eq!(server.command(&["EXISTS", "from-env"]), "0");
    let mut admin = server.admin_conn().unwrap();
    assert_eq!(admin.command(&["SELECT", "3"]).unwrap().to_string(), "OK");
    assert_eq!(
        admin.command(&["GET", "from-env"]).unwrap().to_string(),
        "yes"
    );
    let options = resilis::Options::from_env().unwrap();
    assert!(
        !format!("{options:?}").contains("env-pw"),
        "Debug redacts the password"
    );

    // A bad TLS variable names itself.
    unsafe {
        std::env::set_var("REDIS_TLS", "true");
        std::env::set_var("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem");
    }
    let err = Client::from_env().unwrap_err();
    assert!(
        matches!(err, Error::Tls(ref e) if e.variable == "REDIS_TLS_CA_FILE"),
        "{err:?}"
    );
    unsafe {
        std::env::set_var("REDIS_PORT", "not-a-port");
    }
    let err = Client::from_env().unwrap_err();
    assert!(err.to_string().contains("REDIS_PORT"), "{err}");
}

//! Against a real plain redis-server: the typed commands, the generic
//! builder, pipelining from many tasks, and the health report.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use resilis::{Client, Error, SetOptions, Source, Value};
use resilis_tests::RedisServer;

use common::{fast, ready};

#[tokio::test]
async fn get_set_roundtrip_against_a_real_server() {
    let server = RedisServer::start();
    let client = Client::with_options(fast(&server.url())).unwrap();
    ready(&client).await;
    client.set("greeting", "hello").await.unwrap();
    let got: Option<String> = client.get("greeting").await.unwrap();
    assert_eq!(got.as_deref(), Some("hello"));
    // The server agrees, seen through an independent connection.
    assert_eq!(server.command(&["GET", "greeting"]), "hello");
    let missing: Option<Vec<u8>> = client.get("nope").await.unwrap();
    assert_eq!(missing, None);
    let sourced = client.get_with_source::<String>("greeting").await.unwrap();
    assert_eq!(sourced.source, Source::Redis);
    let health = client.health();
    assert!(health.healthy, "{health:?}");
    assert_eq!(health.state, "ready");
    assert_eq!(health.protocol, Some(3));
    assert!(health.counters.commands_ok >= 4, "{health:?}");
}

#[tokio::test]
async fn typed_commands_and_the_generic_builder() {
    let server = RedisServer::start();
    let client = Client::with_options(fast(&server.url())).unwrap();
    ready(&client).await;

    assert!(
        client
            .set_with("lock", "me", SetOptions::new().nx().ex(30))
            .await
            .unwrap()
    );
    assert!(
        !client
            .set_with("lock", "you", SetOptions::new().nx())
            .await
            .unwrap(),
        "NX refused"
    );
    assert!(
        !client
            .set_with("absent", "x", SetOptions::new().xx())
            .await
            .unwrap(),
        "XX refused"
    );
    let ttl = client.ttl("lock").await.unwrap();
    assert!((1..=30).contains(&ttl), "ttl {ttl}");
    client
        .set_with("short", "v", SetOptions::new().px(60_000))
        .await
        .unwrap();
    assert!(client.exists("short").await.unwrap());
    assert!(
        client
            .expire("short", Duration::from_secs(100))
            .await
            .unwrap()
    );
    assert!(client.ttl("short").await.unwrap() > 60);
    assert!(
        !client
            .expire("absent", Duration::from_secs(1))
            .await
            .unwrap()
    );
    assert_eq!(client.del("short").await.unwrap(), 1);
    assert_eq!(client.del("short").await.unwrap(), 0);
    assert!(!client.exists("short").await.unwrap());

    assert_eq!(client.incr("n").await.unwrap(), 1);
    assert_eq!(client.incr("n").await.unwrap(), 2);
    assert_eq!(client.decr("n").await.unwrap(), 1);

    client.mset(&[("a", "1"), ("b", "2")]).await.unwrap();
    let got: Vec<Option<String>> = client.mget(&["a", "missing", "b"]).await.unwrap();
    assert_eq!(got, vec![Some("1".into()), None, Some("2".into())]);

    assert_eq!(client.hset("h", "f1", "v1").await.unwrap(), 1);
    assert_eq!(client.hset("h", "f2", "v2").await.unwrap(), 1);
    assert_eq!(client.hset("h", "f1", "v1b").await.unwrap(), 0);
    let f1: Option<String> = client.hget("h", "f1").await.unwrap();
    assert_eq!(f1.as_deref(), Some("v1b"));
    let all: HashMap<String, String> = client.hgetall("h").await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["f2"], "v2");

    assert_eq!(client.publish("chan", "hi").await.unwrap(), 0);
    client.ping().await.unwrap();

    let v = client
        .cmd("HINCRBY")
        .arg("h2")
        .arg("count")
        .arg(5)
        .query()
        .await
        .unwrap();
    assert_eq!(v, Value::Int(5));
    let n: i64 = client.cmd("hlen").arg("h").query_as().await.unwrap();
    assert_eq!(n, 2);
    // Binary-safe arguments.
    client
        .set(b"bin\r\nkey".as_slice(), [0u8, 13, 10, 255])
        .await
        .unwrap();
    let bin: Option<Vec<u8>> = client.get(b"bin\r\nkey".as_slice()).await.unwrap();
    assert_eq!(bin, Some(vec![0, 13, 10, 255]));

    // An error reply is a server error, and the connection carries on.
    let err = client
        .cmd("LPUSH")
        .arg("h")
        .arg("x")
        .query()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Server(t) if t.starts_with("WRONGTYPE")),
        "{err:?}"
    );
    let err = client.incr("h").await.unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err:?}");
    let err = client.cmd("NOSUCHCOMMAND").query().await.unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err:?}");
    assert_eq!(
        client.get::<String>("a").await.unwrap().as_deref(),
        Some("1")
    );
    assert!(client.health().counters.commands_failed >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_are_pipelined_and_answered_in_order() {
    let server = RedisServer::start();
    let client = Client::with_options(fast(&server.url())).unwrap();
    ready(&client).await;
    let mut tasks = Vec::new();
    for t in 0..32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                let key = format!("k{t}:{i}");
                client.set(&key, format!("v{t}:{i}")).await.unwrap();
                let got: Option<String> = client.get(&key).await.unwrap();
                assert_eq!(
                    got,
                    Some(format!("v{t}:{i}")),
                    "reply matched to the wrong caller"
                );
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(server.command(&["DBSIZE"]), "6400");
    let health = client.health();
    assert_eq!(health.counters.commands_ok, 12_800, "{health:?}");
    assert_eq!(health.counters.commands_failed, 0);
}

#[tokio::test]
async fn big_values_grow_the_read_buffer() {
    let server = RedisServer::start();
    // On a ready connection the in-flight bound applies (512 MiB by
    // default, Redis's own proto-max-bulk-len): a 2 MiB value just works.
    // Only a command larger than the bound that applies is refused as too
    // large (no amount of waiting helps), never half-queued, and the error
    // says which setting to raise.
    let small = Client::with_options(
        fast(&server.url()).configure(|c| c.queue.max_in_flight_bytes = 1 << 20),
    )
    .unwrap();
    ready(&small).await;
    let err = small.set("big", vec![0u8; 2 << 20]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                max: 1_048_576,
                offline: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_not_applied());
    assert!(
        err.fix().is_some_and(|f| f.contains("max_in_flight_bytes")),
        "{err:?}"
    );
    let client = Client::with_options(fast(&server.url())).unwrap();
    ready(&client).await;
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    client.set("big", &big).await.unwrap();
    let got: Option<Vec<u8>> = client.get("big").await.unwrap();
    assert_eq!(got.as_deref(), Some(big.as_slice()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_commands_use_their_own_connection_and_do_not_stall_others() {
    let server = RedisServer::start();
    let client = Client::with_options(fast(&server.url())).unwrap();
    ready(&client).await;
    let waiter = client.clone();
    let blpop = tokio::spawn(async move {
        waiter
            .cmd("BLPOP")
            .arg("jobs")
            .arg(10)
            .timeout(Duration::from_secs(15))
            .query_as::<Vec<String>>()
            .await
    });
    // Give BLPOP time to block on the server.
    assert!(
        common::eventually(Duration::from_secs(3), || server
            .command(&["CLIENT", "LIST"])
            .contains("cmd=blpop"))
        .await,
        "BLPOP never reached the server"
    );
    // The shared connection is not stuck behind it.
    let started = std::time::Instant::now();
    for i in 0..50 {
        client.set(format!("k{i}"), "v").await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    client
        .cmd("LPUSH")
        .arg("jobs")
        .arg("job-1")
        .query()
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), blpop)
        .await
        .expect("BLPOP answered")
        .unwrap()
        .unwrap();
    assert_eq!(got, vec!["jobs".to_owned(), "job-1".to_owned()]);
}

#[tokio::test]
async fn commands_that_would_break_the_shared_connection_are_refused() {
    let server = RedisServer::start();
    let client = Client::with_options(fast(&server.url())).unwrap();
    ready(&client).await;
    for (name, arg) in [
        ("SUBSCRIBE", "chan"),
        ("multi", ""),
        ("SELECT", "2"),
        ("CLIENT", "REPLY"),
    ] {
        let mut cmd = client.cmd(name);
        if !arg.is_empty() {
            cmd = cmd.arg(arg);
        }
        let err = cmd.query().await.unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{name}: {err:?}");
        assert!(err.fix().is_some());
    }
    // The pipeline is intact: replies still match their commands.
    client.set("after", "refusals").await.unwrap();
    assert_eq!(
        client.get::<String>("after").await.unwrap().as_deref(),
        Some("refusals")
    );
    let list: String = client.cmd("CLIENT").arg("LIST").query_as().await.unwrap();
    assert!(list.contains("cmd=client"), "{list}");
}

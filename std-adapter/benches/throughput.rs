//! Throughput against one local redis-server, in one run: resilis, redis-rs
//! (multiplexed connection) and fred, next to `redis-benchmark` as the C
//! reference. 100k SET then 100k GET of 16-byte values, sequentially (one
//! command in flight) and pipelined (64 in flight: 64 tasks sharing one
//! connection). Every client runs on the same single-threaded Tokio runtime
//! with its defaults; redis-benchmark is single-threaded too.
//!
//! `cargo bench -p resilis --features bench-peers --bench throughput`
//! (`-- --ops 20000` for a quicker run). Not a timed test: the machine is
//! shared and noisy, so compare the ratios within one run only.

use std::future::Future;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use resilis_tests::RedisServer;

const IN_FLIGHT: usize = 64;
const VALUE: &[u8; 16] = b"0123456789abcdef";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Set,
    Get,
}

struct Row {
    op: Op,
    in_flight: usize,
    reference: f64,
    results: Vec<(&'static str, f64)>,
}

/// Runs `op(i)` for every i, with `in_flight` tasks sharing the work.
async fn measure<F, Fut>(n: usize, in_flight: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    if in_flight == 1 {
        for i in 0..n {
            op(i).await;
        }
    } else {
        let mut tasks = Vec::with_capacity(in_flight);
        for t in 0..in_flight {
            let op = op.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = t;
                while i < n {
                    op(i).await;
                    i += in_flight;
                }
            }));
        }
        for task in tasks {
            task.await.expect("bench task panicked");
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn redis_benchmark(port: u16, n: usize, pipeline: usize) -> (f64, f64) {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-c", "1"])
        .args(["-P", &pipeline.to_string(), "-n", &n.to_string()])
        .args(["-d", "16", "-r", &n.to_string(), "-t", "set,get", "--csv"])
        .output()
        .expect("redis-benchmark not found: apt-get install -y redis-tools");
    let text = String::from_utf8_lossy(&output.stdout);
    let rps = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("\"{name}\"")))
            .and_then(|l| l.split(',').nth(1))
            .and_then(|v| v.trim_matches('"').parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} line in redis-benchmark output:\n{text}"))
    };
    (rps("SET"), rps("GET"))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut n = 100_000usize;
    let mut only: Option<String> = None;
    let mut in_flights = vec![1, IN_FLIGHT];
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ops" => n = args.next().and_then(|v| v.parse().ok()).expect("--ops N"),
            // e.g. `--only resilis` to profile one client.
            "--only" => only = args.next(),
            "--pipelined-only" => in_flights = vec![IN_FLIGHT],
            _ => {}
        }
    }
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let server = RedisServer::start();
    let port = server.port();
    let url = server.url();
    let keys: Arc<Vec<String>> = Arc::new((0..n).map(|i| format!("key:{i:012}")).collect());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut rows = Vec::new();
    for &in_flight in &in_flights {
        let (ref_set, ref_get) = redis_benchmark(port, n, in_flight);
        let mut set_results = Vec::new();
        let mut get_results = Vec::new();
        runtime.block_on(async {
            // resilis, with its defaults (fallback cache write-through on).
            if wanted("resilis") {
                let client = resilis::Client::connect(&url).expect("resilis client");
                client
                    .wait_ready(std::time::Duration::from_secs(5))
                    .await
                    .expect("resilis ready");
                let (c, k) = (client.clone(), keys.clone());
                set_results.push((
                    "resilis",
                    measure(n, in_flight, move |i| {
                        let (c, k) = (c.clone(), k.clone());
                        async move { c.set(&k[i], VALUE).await.expect("resilis SET") }
                    })
                    .await,
                ));
                let (c, k) = (client.clone(), keys.clone());
                get_results.push((
                    "resilis",
                    measure(n, in_flight, move |i| {
                        let (c, k) = (c.clone(), k.clone());
                        async move {
                            let v: Option<Vec<u8>> = c.get(&k[i]).await.expect("resilis GET");
                            assert_eq!(v.as_deref(), Some(&VALUE[..]));
                        }
                    })
                    .await,
                ));
                drop(client);
            }

            // resilis without the fallback cache's write-through, to show its cost.
            if wanted("resilis-nocache") {
                let options = resilis::Options::from_url(&url).expect("url").fallback(
                    resilis::FallbackConfig {
                        write_through: false,
                        ..resilis::FallbackConfig::default()
                    },
                );
                let client = resilis::Client::with_options(options).expect("resilis client");
                client
                    .wait_ready(std::time::Duration::from_secs(5))
                    .await
                    .expect("resilis ready");
                let (c, k) = (client.clone(), keys.clone());
                set_results.push((
                    "resilis-nocache",
                    measure(n, in_flight, move |i| {
                        let (c, k) = (c.clone(), k.clone());
                        async move { c.set(&k[i], VALUE).await.expect("resilis SET") }
                    })
                    .await,
                ));
                let (c, k) = (client.clone(), keys.clone());
                get_results.push((
                    "resilis-nocache",
                    measure(n, in_flight, move |i| {
                        let (c, k) = (c.clone(), k.clone());
                        async move {
                            let v: Option<Vec<u8>> = c.get(&k[i]).await.expect("resilis GET");
                            assert_eq!(v.as_deref(), Some(&VALUE[..]));
                        }
                    })
                    .await,
                ));
            }

            // redis-rs, multiplexed connection.
            if wanted("redis-rs") {
                let rr = redis::Client::open(url.as_str()).expect("redis-rs client");
                let conn = rr
                    .get_multiplexed_async_connection()
                    .await
                    .expect("redis-rs connect");
                let (c, k) = (conn.clone(), keys.clone());
                set_results.push((
                    "redis-rs",
                    measure(n, in_flight, move |i| {
                        let (mut c, k) = (c.clone(), k.clone());
                        async move {
                            redis::cmd("SET")
                                .arg(&k[i])
                                .arg(&VALUE[..])
                                .query_async::<()>(&mut c)
                                .await
                                .expect("redis-rs SET")
                        }
                    })
                    .await,
                ));
                let (c, k) = (conn.clone(), keys.clone());
                get_results.push((
                    "redis-rs",
                    measure(n, in_flight, move |i| {
                        let (mut c, k) = (c.clone(), k.clone());
                        async move {
                            let v: Option<Vec<u8>> = redis::cmd("GET")
                                .arg(&k[i])
                                .query_async(&mut c)
                                .await
                                .expect("redis-rs GET");
                            assert_eq!(v.as_deref(), Some(&VALUE[..]));
                        }
                    })
                    .await,
                ));
                drop(conn);
            }

            // fred 10.1, defaults.
            if wanted("fred") {
                use fred::prelude::{Builder, ClientLike, Config, KeysInterface};
                let config = Config::from_url(&url).expect("fred config");
                let fred = Builder::from_config(config).build().expect("fred client");
                fred.init().await.expect("fred connect");
                let (c, k) = (fred.clone(), keys.clone());
                set_results.push((
                    "fred",
                    measure(n, in_flight, move |i| {
                        let (c, k) = (c.clone(), k.clone());
                        async move {
                            c.set::<(), _, _>(k[i].as_str(), &VALUE[..], None, None, false)
                                .await
                                .expect("fred SET")
                        }
                    })
                    .await,
                ));
                let (c, k) = (fred.clone(), keys.clone());
                get_results.push((
                    "fred",
                    measure(n, in_flight, move |i| {
                        let (c, k) = (c.clone(), k.clone());
                        async move {
                            let v: Option<Vec<u8>> = c.get(k[i].as_str()).await.expect("fred GET");
                            assert_eq!(v.as_deref(), Some(&VALUE[..]));
                        }
                    })
                    .await,
                ));
                let _ = fred.quit().await;
            }
        });
        rows.push(Row {
            op: Op::Set,
            in_flight,
            reference: ref_set,
            results: set_results,
        });
        rows.push(Row {
            op: Op::Get,
            in_flight,
            reference: ref_get,
            results: get_results,
        });
    }
    print_table(n, &rows);
}

fn print_table(n: usize, rows: &[Row]) {
    println!(
        "\n{n} ops per cell, 16-byte values, one connection, ops/s (ratio to redis-benchmark)\n"
    );
    println!(
        "| op  | in flight | redis-benchmark | resilis | resilis (no write-through) | redis-rs | fred | resilis / best peer |"
    );
    println!(
        "|-----|-----------|-----------------|---------|----------|----------|------|---------------------|"
    );
    for row in rows {
        let get = |name: &str| {
            row.results
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0.0, |(_, v)| *v)
        };
        let cell = |v: f64| format!("{:.0} ({:.2}×)", v, v / row.reference);
        let best_peer = get("redis-rs").max(get("fred"));
        println!(
            "| {:<3} | {:>9} | {:>15.0} | {} | {} | {} | {} | {:.2}× |",
            format!("{:?}", row.op).to_uppercase(),
            row.in_flight,
            row.reference,
            cell(get("resilis")),
            cell(get("resilis-nocache")),
            cell(get("redis-rs")),
            cell(get("fred")),
            get("resilis") / best_peer,
        );
    }
}

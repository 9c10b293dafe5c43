//! Throughput against one local redis-server, in one run: resilis, redis-rs
//! (multiplexed connection) and fred, next to `redis-benchmark` as the C
//! reference. 100k SET then 100k GET of 16-byte values on random keys (as
//! `redis-benchmark -r 100000` draws them), sequentially (one
//! command in flight) and pipelined (64 in flight: 64 tasks sharing one
//! connection). Every client runs on the same single-threaded Tokio runtime
//! with its defaults; redis-benchmark is single-threaded too.
//!
//! `cargo bench -p resilis --features bench-peers --bench throughput`
//! (`-- --ops 20000 --repeat 1` for a quicker run; `--only resilis` to
//! profile one client). Each cell is the best of `--repeat` rounds (default
//! 3), every round on an emptied database. Not a timed test: the machine is
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

#[derive(Clone)]
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

/// A GET finds the value SET wrote, or nothing where the random keys of
/// the GET phase were never set (as in redis-benchmark).
fn check(v: Option<Vec<u8>>) {
    if let Some(v) = v {
        assert_eq!(v, VALUE, "wrong value");
    }
}

const CLIENTS: &[&str] = &["resilis", "resilis-nocache", "redis-rs", "fred"];

/// One client's SET then GET over `n` keys with `in_flight` callers.
async fn run_client(
    name: &str,
    url: &str,
    keys: &Arc<Vec<String>>,
    in_flight: usize,
) -> (f64, f64) {
    let n = keys.len();
    match name {
        "resilis" | "resilis-nocache" => {
            // resilis with its defaults; "-nocache" turns the fallback
            // cache's write-through off, to show what it costs.
            let mut options = resilis::Options::from_url(url).expect("url");
            if name == "resilis-nocache" {
                options.fallback.write_through = false;
            }
            let client = resilis::Client::with_options(options).expect("resilis client");
            client
                .wait_ready(std::time::Duration::from_secs(5))
                .await
                .expect("resilis ready");
            let (c, k) = (client.clone(), keys.clone());
            let set = measure(n, in_flight, move |i| {
                let (c, k) = (c.clone(), k.clone());
                async move { c.set(&k[i], VALUE).await.expect("resilis SET") }
            })
            .await;
            let (c, k) = (client.clone(), keys.clone());
            let get = measure(n, in_flight, move |i| {
                let (c, k) = (c.clone(), k.clone());
                async move {
                    let v: Option<Vec<u8>> = c.get(&k[i]).await.expect("resilis GET");
                    check(v);
                }
            })
            .await;
            client.shutdown().await;
            (set, get)
        }
        "redis-rs" => {
            let rr = redis::Client::open(url).expect("redis-rs client");
            let conn = rr
                .get_multiplexed_async_connection()
                .await
                .expect("redis-rs connect");
            let (c, k) = (conn.clone(), keys.clone());
            let set = measure(n, in_flight, move |i| {
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
            .await;
            let (c, k) = (conn.clone(), keys.clone());
            let get = measure(n, in_flight, move |i| {
                let (mut c, k) = (c.clone(), k.clone());
                async move {
                    let v: Option<Vec<u8>> = redis::cmd("GET")
                        .arg(&k[i])
                        .query_async(&mut c)
                        .await
                        .expect("redis-rs GET");
                    check(v);
                }
            })
            .await;
            (set, get)
        }
        "fred" => {
            use fred::prelude::{Builder, ClientLike, Config, KeysInterface};
            let config = Config::from_url(url).expect("fred config");
            let fred = Builder::from_config(config).build().expect("fred client");
            fred.init().await.expect("fred connect");
            let (c, k) = (fred.clone(), keys.clone());
            let set = measure(n, in_flight, move |i| {
                let (c, k) = (c.clone(), k.clone());
                async move {
                    c.set::<(), _, _>(k[i].as_str(), &VALUE[..], None, None, false)
                        .await
                        .expect("fred SET")
                }
            })
            .await;
            let (c, k) = (fred.clone(), keys.clone());
            let get = measure(n, in_flight, move |i| {
                let (c, k) = (c.clone(), k.clone());
                async move {
                    let v: Option<Vec<u8>> = c.get(k[i].as_str()).await.expect("fred GET");
                    check(v);
                }
            })
            .await;
            let _ = fred.quit().await;
            (set, get)
        }
        other => panic!("unknown client {other}"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut n = 100_000usize;
    let mut repeat = 3usize;
    let mut only: Option<String> = None;
    let mut in_flights = vec![1, IN_FLIGHT];
    let mut multi_thread = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--ops" => n = args.next().and_then(|v| v.parse().ok()).expect("--ops N"),
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--repeat N")
            }
            // e.g. `--only resilis` to profile one client.
            "--only" => only = args.next(),
            "--pipelined-only" => in_flights = vec![IN_FLIGHT],
            "--sequential-only" => in_flights = vec![1],
            // Two Tokio worker threads instead of one (for every client).
            "--multi-thread" => multi_thread = true,
            _ => {}
        }
    }
    let clients: Vec<&str> = CLIENTS
        .iter()
        .copied()
        .filter(|c| only.as_deref().is_none_or(|o| o == *c))
        .collect();
    let server = RedisServer::start();
    let port = server.port();
    let url = server.url();
    // The key distribution of `redis-benchmark -r N`: uniform over N keys,
    // "key:" and 12 digits, so SET creates (and GET finds) as many keys as
    // in the reference.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let keys: Arc<Vec<String>> = Arc::new(
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                format!("key:{:012}", seed % n as u64)
            })
            .collect(),
    );
    let runtime = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("tokio runtime");

    let mut rows = Vec::new();
    for &in_flight in &in_flights {
        let mut set_row = Row {
            op: Op::Set,
            in_flight,
            reference: 0.0,
            results: clients.iter().map(|c| (*c, 0.0)).collect(),
        };
        let mut get_row = Row {
            op: Op::Get,
            reference: 0.0,
            ..set_row.clone()
        };
        // Best of `repeat` rounds, clients in turn within each round, on an
        // empty database every time (so that every SET phase creates its keys).
        for _ in 0..repeat {
            server.command(&["FLUSHALL"]);
            let (s, g) = redis_benchmark(port, n, in_flight);
            set_row.reference = set_row.reference.max(s);
            get_row.reference = get_row.reference.max(g);
            for (slot, client) in clients.iter().enumerate() {
                server.command(&["FLUSHALL"]);
                let (s, g) = runtime.block_on(run_client(client, &url, &keys, in_flight));
                set_row.results[slot].1 = set_row.results[slot].1.max(s);
                get_row.results[slot].1 = get_row.results[slot].1.max(g);
            }
        }
        rows.push(set_row);
        rows.push(get_row);
    }
    print_table(n, repeat, &rows);
    println!(
        "\nTokio runtime: {}",
        if multi_thread {
            "multi-thread, 2 workers"
        } else {
            "current-thread"
        }
    );
}

fn print_table(n: usize, repeat: usize, rows: &[Row]) {
    println!(
        "\n{n} ops per cell, 16-byte values, one connection, best of {repeat} rounds; ops/s (ratio to redis-benchmark)\n"
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

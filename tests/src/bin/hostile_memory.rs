//! What hostile replies cost in memory, measured on the whole process (peak
//! RSS, `VmHWM`), with the client's default configuration:
//!
//! ```text
//! cargo run --release -p resilis-tests --bin hostile_memory
//! ```
//!
//! 1. A 12-byte reply `$536870000\r\n` whose payload never comes (one byte
//!    every 20 ms): the growth of peak RSS while it is pending.
//! 2. Amplification: a reply of `n` three-byte `_\r\n` elements (an array of
//!    nulls), the cheapest element on the wire: peak RSS growth over the
//!    bytes received. Each scenario runs in a fresh child process so that
//!    one's peak does not hide the next's.

use std::process::Command;
use std::time::Duration;

use resilis::{Client, OfflineMode, Options};
use resilis_tests::harness::proc_status_kib;
use resilis_tests::{Behavior, HostileServer};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Connects with the default configuration (only the offline mode set, so
/// that a failed reply ends the call at once) and waits until ready.
async fn ready(url: &str) -> Client {
    let options = Options::from_url(url)
        .expect("URL")
        .offline(OfflineMode::FailFast);
    let client = Client::with_options(options).expect("client");
    client
        .wait_ready(Duration::from_secs(5))
        .await
        .expect("ready");
    client
}

fn header() {
    let rt = runtime();
    rt.block_on(async {
        let server = HostileServer::start(Behavior::AfterHandshake(Box::new(Behavior::Endless {
            prefix: b"$536870000\r\n".to_vec(),
            chunk: b"x".to_vec(),
            interval: Duration::from_millis(20),
        })));
        let client = ready(&server.url()).await;
        let before = proc_status_kib("VmHWM").expect("VmHWM");
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.cmd("GET").arg("k").query().await }
        });
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let after = proc_status_kib("VmHWM").expect("VmHWM");
        call.abort();
        println!(
            "header: 12-byte $536870000 header pending 1 s: peak RSS {before} -> {after} KiB (+{} KiB); read buffer {} B",
            after.saturating_sub(before),
            client.health().read_buffer_bytes
        );
        client.shutdown().await;
    });
}

fn nulls(n: usize) {
    let mut reply = format!("*{n}\r\n").into_bytes();
    reply.extend_from_slice(&b"_\r\n".repeat(n));
    let bytes = reply.len();
    let rt = runtime();
    rt.block_on(async {
        let server = HostileServer::start(Behavior::handshake_then(reply));
        let client = ready(&server.url()).await;
        let before = proc_status_kib("VmHWM").expect("VmHWM");
        let answer = client.cmd("GET").arg("k").query().await;
        let after = proc_status_kib("VmHWM").expect("VmHWM");
        let growth = after.saturating_sub(before) * 1024;
        let answer = match answer {
            Ok(v) => format!("Ok({} bytes of Value)", std::mem::size_of_val(&v)),
            Err(e) => format!("Err({e})"),
        };
        println!(
            "nulls: *{n} of `_\\r\\n` ({bytes} B on the wire): peak RSS +{} KiB = {:.1}x the bytes; {answer}",
            growth / 1024,
            growth as f64 / bytes as f64
        );
        client.shutdown().await;
    });
}

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("header") => header(),
        Some("nulls") => nulls(args.next().map_or(4_000_000, |n| n.parse().expect("n"))),
        Some(other) => panic!("unknown scenario {other:?}: header | nulls [n]"),
        None => {
            // Each scenario in a child process of its own.
            let me = std::env::current_exe().expect("own path");
            for scenario in [&["header"][..], &["nulls", "4000000"][..]] {
                let status = Command::new(&me).args(scenario).status().expect("child");
                assert!(status.success(), "{scenario:?} failed");
            }
        }
    }
}

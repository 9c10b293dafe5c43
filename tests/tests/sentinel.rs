//! Sentinel mode against a real deployment (a master, two replicas, three
//! sentinels; `tests/src/sentinel.rs`), broken the ways production breaks
//! it: `SENTINEL FAILOVER`, SIGKILL of the master, a master that hangs
//! (`DEBUG SLEEP`) and wakes still saying `ROLE master`, a sentinel down,
//! sentinels that disagree.
//!
//! A writer RPUSHes unique values the whole time; afterwards the list on
//! the new master is compared with what the client acknowledged (an
//! acknowledged value missing is a lost write; an indeterminate one may be
//! there or not), and `MONITOR` on the old master counts the writes it
//! received from clients after the first `+switch-master`.

use std::collections::HashSet;
use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use resilis::{Client, Error, OfflineMode, SentinelEvent};
use resilis_tests::harness::{blocking, fast_options, start_ready};
use resilis_tests::raw::{RawConn, Reply};
use resilis_tests::sentinel::SentinelSet;
use tokio::time::{sleep, timeout};

const LIST: &str = "sentinel:writes";

async fn sentinel_client(set: &SentinelSet) -> Client {
    let options = fast_options(&set.sentinel_url(), OfflineMode::QueueThenFail);
    start_ready(options).await
}

/// What the writer saw.
#[derive(Default)]
struct Writes {
    acked: Vec<u64>,
    indeterminate: Vec<u64>,
    refused: usize,
}

/// Writes unique values (one every ~1 ms) until `stop`.
fn writer(client: Client, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Writes> {
    tokio::spawn(async move {
        let mut w = Writes::default();
        let mut n = 0u64;
        // Bounded by `stop`, which every test sets.
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let push = client.cmd("RPUSH").arg(LIST).arg(n.to_string());
            match push.query_as::<i64>().await {
                Ok(_) => w.acked.push(n),
                Err(Error::Indeterminate { .. } | Error::Timeout) => w.indeterminate.push(n),
                Err(_) => w.refused += 1,
            }
            sleep(Duration::from_millis(1)).await;
        }
        w
    })
}

/// The values the list holds on node `i`, in the list's order.
fn list_on(set: &SentinelSet, i: usize) -> Vec<u64> {
    match set.node(i).command(&["LRANGE", LIST, "0", "-1"]) {
        Reply::Array(items) => items
            .iter()
            .map(|r| match r {
                Reply::Bulk(b) => String::from_utf8_lossy(b).parse().expect("a number"),
                other => panic!("LRANGE item {other:?}"),
            })
            .collect(),
        other => panic!("LRANGE: {other:?}"),
    }
}

/// `MONITOR` on one node: the RPUSHes it received from clients (not from
/// its master: that one's port is a fixture port), with server timestamps.
struct Monitor {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<f64>>,
}

fn monitor(addr: SocketAddr, fixture_ports: Vec<u16>) -> Monitor {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let mut conn = RawConn::connect(addr).expect("MONITOR connection");
    conn.send(&["MONITOR"]).expect("MONITOR");
    let thread = std::thread::spawn(move || {
        let mut stamps = Vec::new();
        conn.stream()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .ok();
        let mut reader = std::io::BufReader::new(conn.stream().try_clone().expect("clone"));
        let mut line = String::new();
        // Bounded by `stop` (and a 60 s cap).
        let until = Instant::now() + Duration::from_secs(60);
        while !s.load(Ordering::Relaxed) && Instant::now() < until {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => continue,
            }
            // +1700000000.123456 [0 127.0.0.1:54321] "rpush" "sentinel:writes" "7"
            if !line.to_ascii_lowercase().contains("\"rpush\"") {
                continue;
            }
            let from_fixture = fixture_ports
                .iter()
                .any(|p| line.contains(&format!("127.0.0.1:{p}]")));
            if from_fixture {
                continue;
            }
            if let Some(ts) = line
                .trim_start_matches('+')
                .split_whitespace()
                .next()
                .and_then(|t| t.parse::<f64>().ok())
            {
                stamps.push(ts);
            }
        }
        stamps
    });
    Monitor { stop, thread }
}

impl Monitor {
    fn after(self, at: SystemTime) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let stamps = self.thread.join().expect("monitor thread");
        let at = at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        stamps.iter().filter(|&&t| t > at).count()
    }
}

fn fixture_ports(set: &SentinelSet) -> Vec<u16> {
    set.nodes()
        .iter()
        .chain(set.sentinels())
        .map(|i| i.port())
        .collect()
}

/// A fault and what the client must do through it.
async fn through(set: Arc<SentinelSet>, fault: impl FnOnce(&SentinelSet) + Send + 'static) {
    let client = sentinel_client(&set).await;
    let old = set.master_index();
    let health = client.sentinel_health().expect("sentinel mode");
    assert_eq!(
        health.master,
        Some(format!("127.0.0.1:{}", set.node(old).port()))
    );
    let mut events = client.sentinel_events().expect("sentinel mode");
    // Watch the sentinels' own announcements, as the clock of "the switch".
    let watches: Vec<_> = (0..set.sentinels().len())
        .filter(|&j| set.sentinel(j).is_running())
        .map(|j| set.subscribe_switch_master(j))
        .collect();
    let mon = monitor(set.node(old).addr(), fixture_ports(&set));
    let stop = Arc::new(AtomicBool::new(false));
    let writes = writer(client.clone(), stop.clone());
    sleep(Duration::from_millis(300)).await;

    let s = set.clone();
    blocking(move || fault(&s)).await;
    // The first sentinel to announce the switch sets the clock.
    let first_switch: Arc<Mutex<Option<SystemTime>>> = Arc::default();
    let mut waits = Vec::new();
    for mut w in watches {
        let first = first_switch.clone();
        waits.push(blocking(move || {
            if w.recv(Duration::from_secs(20)).is_some() {
                let mut f = first.lock().unwrap();
                let now = SystemTime::now();
                if f.is_none_or(|t| now < t) {
                    *f = Some(now);
                }
            }
        }));
    }
    let s = set.clone();
    let new = blocking(move || s.wait_switch(old, Duration::from_secs(20))).await;
    let switched = timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(SentinelEvent::MasterChanged { to: Some(to), .. })
                    if to == format!("127.0.0.1:{}", set.node(new).port()) =>
                {
                    return;
                }
                Ok(_) => {}
                Err(e) => panic!("sentinel events: {e}"),
            }
        }
    })
    .await;
    assert!(switched.is_ok(), "the client follows the new master");
    // Keep writing on the new master for a while.
    sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let w = writes.await.expect("writer");
    for wait in waits {
        // Some sentinels announce late (the leader last): bounded anyway.
        let _ = timeout(Duration::from_secs(25), wait).await;
    }
    let switch_at = first_switch.lock().unwrap().expect("a +switch-master");
    let after_switch = mon.after(switch_at + Duration::from_millis(20));
    let s = set.clone();
    let list = blocking(move || list_on(&s, new)).await;
    // One writer, one call at a time: the list must hold the values in the
    // order they were written (a history one order explains), each once.
    assert!(
        list.windows(2).all(|w| w[0] < w[1]),
        "the list is not in write order"
    );
    let held: HashSet<u64> = list.iter().copied().collect();
    let lost: Vec<u64> = w
        .acked
        .iter()
        .copied()
        .filter(|n| !held.contains(n))
        .collect();
    let invented: Vec<u64> = held
        .iter()
        .copied()
        .filter(|n| !w.acked.contains(n) && !w.indeterminate.contains(n))
        .collect();
    eprintln!(
        "acked {} indeterminate {} refused {} lost {} writes to the old master after the switch {}",
        w.acked.len(),
        w.indeterminate.len(),
        w.refused,
        lost.len(),
        after_switch
    );
    assert!(invented.is_empty(), "values nobody wrote: {invented:?}");
    // One writer, one write in flight: at most that one may be lost.
    assert!(lost.len() <= 1, "acknowledged writes lost: {lost:?}");
    assert_eq!(
        after_switch, 0,
        "no write reaches the old master after +switch-master"
    );
    let health = client.sentinel_health().unwrap();
    assert_eq!(
        health.master,
        Some(format!("127.0.0.1:{}", set.node(new).port()))
    );
    // Every write after the switch is on the new master.
    let last = *w.acked.last().expect("writes acknowledged");
    assert!(held.contains(&last), "the last acknowledged write is held");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_sentinel_failover() {
    let set = Arc::new(blocking(SentinelSet::start).await);
    through(set, |s| {
        s.failover();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_when_the_master_is_killed() {
    let set = Arc::new(blocking(SentinelSet::start).await);
    through(set, |s| {
        let m = s.master_index();
        s.kill_node(m);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_a_master_that_hangs_and_wakes_still_saying_master() {
    let set = Arc::new(blocking(SentinelSet::start).await);
    through(set, |s| {
        let m = s.master_index();
        s.debug_sleep(m, Duration::from_secs(7));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sentinel_down_still_resolves_and_follows() {
    let set = Arc::new(blocking(SentinelSet::start).await);
    let s = set.clone();
    blocking(move || s.kill_sentinel(0)).await;
    through(set, |s| {
        s.failover();
    })
    .await;
}

/// One sentinel names a replica (it was told to monitor the wrong node):
/// the majority wins, and the replica is never written to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_sentinels_disagree_the_majority_wins() {
    let set = Arc::new(blocking(SentinelSet::start).await);
    let master = set.master_index();
    let replica = (master + 1) % set.nodes().len();
    let replica_port = set.node(replica).port().to_string();
    let s = set.clone();
    blocking(move || {
        let wrong = s.sentinel(2);
        assert_eq!(
            wrong.command(&["SENTINEL", "REMOVE", "mymaster"]),
            Reply::Simple("OK".into())
        );
        let reply = wrong.command(&[
            "SENTINEL",
            "MONITOR",
            "mymaster",
            "127.0.0.1",
            &replica_port,
            "2",
        ]);
        assert_eq!(reply, Reply::Simple("OK".into()));
    })
    .await;
    let client = sentinel_client(&set).await;
    let health = client.sentinel_health().unwrap();
    assert_eq!(
        health.master,
        Some(format!("127.0.0.1:{}", set.node(master).port()))
    );
    for i in 0..50 {
        client
            .set(format!("agree:{i}"), "v")
            .await
            .expect("SET on the master");
    }
    let held = set.node(master).command(&["DBSIZE"]);
    assert!(matches!(held, Reply::Integer(n) if n >= 50), "{held:?}");
    client.shutdown().await;
}

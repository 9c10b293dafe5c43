//! The client in cluster mode against a real 6-node Redis Cluster (3
//! primaries, 3 replicas): routing, redirects, splitting, and what each
//! command becomes when a primary fails over, dies or hangs. Every test
//! checks what the nodes hold afterwards, asking them directly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use resilis::{Client, Error, Value};
use resilis_tests::linearizable;
use resilis_tests::{Cluster, Reply};

fn bulk(s: &str) -> Reply {
    Reply::Bulk(s.as_bytes().to_vec())
}

async fn connect(cluster: &Cluster) -> Client {
    let client = Client::connect(&cluster.seed_url()).expect("a cluster URL");
    client
        .wait_ready(Duration::from_secs(10))
        .await
        .expect("the cluster client gets ready");
    client
}

/// Waits (off the runtime's threads) until another node serves `slot`.
async fn promoted(cluster: &Arc<Cluster>, slot: u16, old: usize) -> usize {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || {
        cluster.wait_primary_changed(slot, old, Duration::from_secs(10))
    })
    .await
    .unwrap()
}

/// What the node serving `key` holds, asked directly.
fn held(cluster: &Cluster, key: &str) -> Reply {
    let primary = cluster.primary_for_slot(cluster.key_slot(key));
    cluster.command(primary, &["GET", key])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_go_to_the_node_of_their_slot_and_multi_key_ones_split() {
    let cluster = Cluster::start();
    let client = connect(&cluster).await;
    let health = client.cluster_health().expect("cluster mode");
    assert_eq!(
        health.nodes.iter().filter(|n| n.role == "primary").count(),
        3,
        "{health:?}"
    );
    assert!(health.all_slots_served);

    // Single-key commands, over every shard.
    for i in 0..60 {
        let key = format!("key:{i}");
        client.set(&key, format!("v{i}")).await.unwrap();
        assert_eq!(held(&cluster, &key), bulk(&format!("v{i}")), "{key}");
        let got: Option<String> = client.get(&key).await.unwrap();
        assert_eq!(got.as_deref(), Some(format!("v{i}").as_str()));
    }
    let mut slots: Vec<u16> = (0..60)
        .map(|i| cluster.key_slot(&format!("key:{i}")))
        .collect();
    slots.sort();
    assert!(
        cluster.primary_for_slot(slots[0]) != cluster.primary_for_slot(slots[59]),
        "the keys span shards"
    );

    // Hashtags: one slot, so multi-key commands run as one.
    client
        .cmd("MSET")
        .arg("{user:7}:name")
        .arg("ada")
        .arg("{user:7}:lang")
        .arg("rust")
        .query()
        .await
        .unwrap();
    let got: Vec<Option<String>> = client
        .cmd("MGET")
        .arg("{user:7}:name")
        .arg("{user:7}:lang")
        .query_as()
        .await
        .unwrap();
    assert_eq!(got, [Some("ada".into()), Some("rust".into())]);

    // A multi-key command over several slots that cannot be split is
    // refused before it is sent.
    let err = client
        .cmd("SUNIONSTORE")
        .arg("dest")
        .arg("src:a")
        .arg("src:b")
        .query()
        .await
        .unwrap_err();
    let Error::CrossSlot { command, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(command, "SUNIONSTORE");
    assert!(err.is_not_applied());
    assert_eq!(held(&cluster, "dest"), Reply::Nil);

    // MSET / MGET / EXISTS / DEL over several slots: split and reassembled
    // in the caller's order.
    let keys = ["a", "b", "c", "d", "e", "f"];
    let mut mset = client.cmd("MSET");
    for k in keys {
        mset = mset.arg(k).arg(format!("{k}!"));
    }
    assert_eq!(mset.query().await.unwrap(), Value::Okay);
    for k in keys {
        assert_eq!(held(&cluster, k), bulk(&format!("{k}!")));
    }
    let mut mget = client.cmd("MGET");
    for k in ["f", "missing", "a", "c"] {
        mget = mget.arg(k);
    }
    let got: Vec<Option<String>> = mget.query_as().await.unwrap();
    assert_eq!(
        got,
        [
            Some("f!".into()),
            None,
            Some("a!".into()),
            Some("c!".into())
        ]
    );
    let exists: i64 = client
        .cmd("EXISTS")
        .arg("a")
        .arg("b")
        .arg("missing")
        .query_as()
        .await
        .unwrap();
    assert_eq!(exists, 2);
    let deleted: i64 = client
        .cmd("DEL")
        .arg("a")
        .arg("b")
        .arg("c")
        .arg("missing")
        .query_as()
        .await
        .unwrap();
    assert_eq!(deleted, 3);
    for k in ["a", "b", "c"] {
        assert_eq!(held(&cluster, k), Reply::Nil);
    }
    assert_eq!(held(&cluster, "d"), bulk("d!"));

    // Keyless commands run on one primary.
    assert_eq!(
        client.cmd("PING").query().await.unwrap(),
        Value::Status("PONG".into())
    );

    // A blocking command runs on its node's blocking pool.
    let popper = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .cmd("BLPOP")
                .arg("jobs")
                .arg(5)
                .query_as::<Option<Vec<String>>>()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    client
        .cmd("RPUSH")
        .arg("jobs")
        .arg("j1")
        .query()
        .await
        .unwrap();
    let popped = popper.await.unwrap().unwrap();
    assert_eq!(popped, Some(vec!["jobs".into(), "j1".into()]));
    // Replica reads (opt-in): GETs go to the key's replica, writes never.
    let readers = Client::with_options(
        resilis::Options::from_url(&cluster.seed_url())
            .unwrap()
            .replica_reads(true),
    )
    .unwrap();
    readers.wait_ready(Duration::from_secs(10)).await.unwrap();
    // Ready means the primaries are; wait (bounded) for the replicas too.
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let health = readers.cluster_health().unwrap();
        let ready = health
            .nodes
            .iter()
            .filter(|n| n.role == "replica" && n.health.healthy);
        if ready.count() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let primary = cluster.primary_for_slot(cluster.key_slot("d"));
    let replica = cluster.replicas_of(primary)[0];
    let gets_before = get_calls(&cluster, replica);
    for _ in 0..20 {
        let got: Option<String> = readers.get("d").await.unwrap();
        assert_eq!(got.as_deref(), Some("d!"));
    }
    assert!(
        get_calls(&cluster, replica) >= gets_before + 20,
        "the replica served the reads"
    );
    readers.set("d", "d2").await.unwrap();
    assert_eq!(held(&cluster, "d"), bulk("d2"));
    readers.shutdown().await;
    client.shutdown().await;
}

/// `cmdstat_get` calls on a node.
fn get_calls(cluster: &Cluster, node: usize) -> u64 {
    let Reply::Bulk(info) = cluster.command(node, &["INFO", "commandstats"]) else {
        panic!("INFO answers a bulk string")
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_in_migration_is_followed_through_ask_tryagain_and_moved() {
    let cluster = Cluster::start();
    let client = connect(&cluster).await;
    let key = "{mig}:one";
    let other = "{mig}:two";
    let slot = cluster.key_slot(key);
    let from = cluster.primary_for_slot(slot);
    let to = (from + 1) % 3;
    client.set(key, "1").await.unwrap();
    client.set(other, "2").await.unwrap();

    cluster.begin_migration(slot, from, to);
    assert_eq!(
        cluster.migrate_key(key, from, to),
        Reply::Simple("OK".into())
    );
    // The key moved, the slot did not: the old owner answers ASK, and the
    // client follows it with ASKING, without touching its map.
    let got: Option<String> = client.get(key).await.unwrap();
    assert_eq!(got.as_deref(), Some("1"));
    let health = client.cluster_health().unwrap();
    assert!(health.ask >= 1, "{health:?}");
    assert_eq!(health.moved, 0, "{health:?}");
    // Keys of one slot split over two nodes: TRYAGAIN until the migration
    // ends; with a short deadline, the server's refusal is the answer.
    let err = client
        .cmd("MGET")
        .arg(key)
        .arg(other)
        .timeout(Duration::from_millis(300))
        .query()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Server(text) if text.starts_with("TRYAGAIN")),
        "{err:?}"
    );
    // Retried within a longer deadline, it succeeds once the migration ends.
    let mget = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .cmd("MGET")
                .arg("{mig}:one")
                .arg("{mig}:two")
                .timeout(Duration::from_secs(5))
                .query_as::<Vec<Option<String>>>()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        cluster.migrate_key(other, from, to),
        Reply::Simple("OK".into())
    );
    cluster.finish_migration(slot, to);
    let got = mget.await.unwrap().unwrap();
    assert_eq!(got, [Some("1".into()), Some("2".into())]);
    // Now the old owner says MOVED: followed, and the map patched.
    client.set(key, "3").await.unwrap();
    assert_eq!(cluster.command(to, &["GET", key]), bulk("3"));

    // The whole cluster gone: a GET is answered by the fallback cache, marked
    // as such; a write fails, not applied.
    for i in 0..cluster.nodes().len() {
        cluster.kill_node(i);
    }
    let got = client
        .get_with_source::<String>(key)
        .await
        .expect("answered from the cache");
    assert_eq!(got.value.as_deref(), Some("3"));
    assert_eq!(got.source, resilis::Source::Fallback);
    let err = client
        .cmd("SET")
        .arg(key)
        .arg("4")
        .timeout(Duration::from_millis(500))
        .query()
        .await
        .unwrap_err();
    assert!(err.is_not_applied(), "{err:?}");
    assert!(!client.health().healthy);
    client.shutdown().await;
}

/// Counts of what a writer saw.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    indeterminate: u64,
    failed: Vec<String>,
}

/// A writer that SETs (resend-safe) and INCRs (not) keys of one slot until
/// `stop`, recording every answer.
async fn write_until(
    client: Client,
    stop: Instant,
    set_key: &'static str,
    incr_key: &'static str,
) -> (Tally, Tally) {
    let mut sets = Tally::default();
    let mut incrs = Tally::default();
    let mut i = 0u64;
    // Bounded by `stop`.
    while Instant::now() < stop {
        i += 1;
        match client.set(set_key, i.to_string()).await {
            Ok(()) => sets.ok += 1,
            Err(Error::Indeterminate { .. }) => sets.indeterminate += 1,
            Err(e) => sets.failed.push(e.to_string()),
        }
        match client.cmd("INCR").arg(incr_key).query().await {
            Ok(_) => incrs.ok += 1,
            Err(Error::Indeterminate { .. }) => incrs.indeterminate += 1,
            Err(e) => incrs.failed.push(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (sets, incrs)
}

/// INCR's final value must be explained by the answers: every OK applied,
/// every indeterminate maybe, nothing else.
fn check_counter(cluster: &Cluster, key: &str, incrs: &Tally) {
    let primary = cluster.primary_for_slot(cluster.key_slot(key));
    let Reply::Bulk(value) = cluster.command(primary, &["GET", key]) else {
        panic!("counter missing");
    };
    let value: u64 = String::from_utf8_lossy(&value).parse().unwrap();
    assert!(
        value >= incrs.ok && value <= incrs.ok + incrs.indeterminate,
        "counter {value} not explained by {incrs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_costs_resend_safe_writes_nothing() {
    let cluster = Arc::new(Cluster::start());
    let client = connect(&cluster).await;
    let slot = cluster.key_slot("{kill}");
    let victim = cluster.primary_for_slot(slot);
    let writer = tokio::spawn(write_until(
        client.clone(),
        Instant::now() + Duration::from_secs(6),
        "{kill}:set",
        "{kill}:incr",
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut events = client.cluster_events().expect("cluster mode");
    let killed_at = Instant::now();
    cluster.kill_node(victim);
    let promoted = promoted(&cluster, slot, victim).await;
    println!("promoted {promoted} after {:?}", killed_at.elapsed());
    let (sets, incrs) = writer.await.unwrap();
    println!("sets {sets:?}\nincrs {incrs:?}");
    // SET is resend-safe and its 5 s deadline outlasts the failover: none
    // fails, not even as indeterminate.
    assert!(sets.failed.is_empty(), "{sets:?}");
    assert_eq!(sets.indeterminate, 0, "{sets:?}");
    assert!(sets.ok > 100, "{sets:?}");
    // INCR is never resent: at most the one in flight is indeterminate.
    assert!(incrs.failed.is_empty(), "{incrs:?}");
    assert!(incrs.indeterminate <= 1, "{incrs:?}");
    check_counter(&cluster, "{kill}:incr", &incrs);
    let health = client.cluster_health().unwrap();
    assert!(health.generation >= 2, "{health:?}");
    let victim_node = format!("127.0.0.1:{}", cluster.node(victim).port());
    let promoted_node = format!("127.0.0.1:{}", cluster.node(promoted).port());
    let (mut down, mut changed) = (false, false);
    while let Ok(event) = events.try_recv() {
        match event {
            resilis::ClusterEvent::NodeDown { node, .. } if node == victim_node => down = true,
            resilis::ClusterEvent::TopologyChanged { primaries: 3, .. } => changed = true,
            _ => {}
        }
    }
    assert!(
        down && changed,
        "node down {down}, topology changed {changed}"
    );
    assert!(
        health
            .nodes
            .iter()
            .any(|n| n.node == promoted_node && n.role == "primary" && n.health.healthy),
        "{health:?}"
    );
    assert!(
        health.nodes.iter().all(|n| n.node != victim_node),
        "{health:?}"
    );
    client.shutdown().await;
}

/// The value a register of sequential SETs must hold: the last one
/// acknowledged (no SET in these runs ends indeterminate).
fn last_set(cluster: &Cluster, key: &str) -> u64 {
    let Reply::Bulk(value) = held(cluster, key) else {
        panic!("{key} missing");
    };
    String::from_utf8_lossy(&value).parse().unwrap()
}

/// Like `write_until`, remembering the last acknowledged SET value.
async fn write_register(client: Client, stop: Instant, key: &'static str) -> (Tally, u64) {
    let mut sets = Tally::default();
    let mut last_ok = 0;
    let mut i = 0u64;
    // Bounded by `stop`.
    while Instant::now() < stop {
        i += 1;
        match client.set(key, i.to_string()).await {
            Ok(()) => {
                sets.ok += 1;
                last_ok = i;
            }
            Err(Error::Indeterminate { .. }) => sets.indeterminate += 1,
            Err(e) => sets.failed.push(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (sets, last_ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_primary_is_replaced_without_losing_acknowledged_writes() {
    let cluster = Arc::new(Cluster::start());
    let client = connect(&cluster).await;
    let slot = cluster.key_slot("{hung}");
    let victim = cluster.primary_for_slot(slot);
    let stop = Instant::now() + Duration::from_secs(5);
    let writer = tokio::spawn(write_until(client.clone(), stop, "{hung}:s", "{hung}:c"));
    let register = tokio::spawn(write_register(client.clone(), stop, "{hung}:r"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // DEBUG SLEEP: no RST, no MOVED, the node just stops answering, then
    // wakes (after its replica was promoted) and acknowledges what it read.
    let paused_at = Instant::now();
    {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.pause(victim, Duration::from_secs(4)))
            .await
            .unwrap();
    }
    let promoted = promoted(&cluster, slot, victim).await;
    println!(
        "promoted {promoted} {:?} after the pause",
        paused_at.elapsed()
    );
    let (sets, incrs) = writer.await.unwrap();
    let (register, last_ok) = register.await.unwrap();
    println!("sets {sets:?}\nincrs {incrs:?}\nregister {register:?} last {last_ok}");
    // Let the old primary wake and rejoin as a replica.
    {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.wait_all_online(Duration::from_secs(15)))
            .await
            .unwrap();
    }
    assert!(sets.failed.is_empty(), "{sets:?}");
    assert_eq!(sets.indeterminate, 0, "{sets:?}");
    assert!(incrs.failed.is_empty(), "{incrs:?}");
    assert!(incrs.indeterminate <= 1, "{incrs:?}");
    check_counter(&cluster, "{hung}:c", &incrs);
    assert!(
        register.failed.is_empty() && register.indeterminate == 0,
        "{register:?}"
    );
    // Every acknowledged write survived the hung primary's return.
    assert_eq!(last_set(&cluster, "{hung}:r"), last_ok);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_failover_costs_nothing_and_moves_the_writes() {
    let cluster = Arc::new(Cluster::start());
    let client = connect(&cluster).await;
    let slot = cluster.key_slot("{fo}");
    let old = cluster.primary_for_slot(slot);
    let replica = cluster.replicas_of(old)[0];
    let stop = Instant::now() + Duration::from_secs(2);
    let writer = tokio::spawn(write_until(client.clone(), stop, "{fo}:s", "{fo}:c"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.failover(replica))
            .await
            .unwrap();
    }
    let (sets, incrs) = writer.await.unwrap();
    println!("sets {sets:?}\nincrs {incrs:?}");
    // Writes pause, then MOVED: each is sent again to the new primary.
    assert!(
        sets.failed.is_empty() && sets.indeterminate == 0,
        "{sets:?}"
    );
    assert!(
        incrs.failed.is_empty() && incrs.indeterminate == 0,
        "{incrs:?}"
    );
    assert_eq!(cluster.primary_for_slot(slot), replica);
    let Reply::Bulk(value) = cluster.command(replica, &["GET", "{fo}:c"]) else {
        panic!("counter missing")
    };
    assert_eq!(String::from_utf8_lossy(&value), incrs.ok.to_string());
    let health = client.cluster_health().unwrap();
    println!("{health:?}");
    assert!(health.moved >= 1, "the switch was learned from a MOVED");
    assert!(
        health.moved <= 5,
        "the map is patched at the first MOVED: {}",
        health.moved
    );
    client.shutdown().await;
}

/// Random-enough numbers for a workload, without a dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// SET / GET / INCR / DEL on `keys` until `stop`, each call recorded with
/// its start, end and what the client said.
async fn history_workload(
    client: Client,
    who: &'static str,
    mut seed: u64,
    keys: &'static [&'static str],
    stop: Instant,
) -> Vec<(String, linearizable::Call)> {
    use linearizable::{Answer, Call, Op, Outcome};
    fn outcome<T>(r: Result<T, Error>, ok: impl FnOnce(T) -> Answer) -> Outcome {
        match r {
            Ok(v) => Outcome::Ok(ok(v)),
            Err(Error::Indeterminate { .. }) => Outcome::Indeterminate,
            Err(Error::Server(_)) => Outcome::Ok(Answer::Rejected),
            Err(e) if e.is_not_applied() => Outcome::NotApplied,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    let mut history = Vec::new();
    let mut n = 0u64;
    // Bounded by `stop`.
    while Instant::now() < stop {
        n += 1;
        let key = keys[(next(&mut seed) % keys.len() as u64) as usize];
        let kind = next(&mut seed) % 100;
        let start = Instant::now();
        let (op, outcome) = if kind < 40 {
            let value = format!("{who}{n}");
            let r = client.set(key, &value).await;
            (Op::Set(value), outcome(r, |()| Answer::Done))
        } else if kind < 70 {
            let r = client.get_with_source::<String>(key).await;
            // No fallback answer is expected: the cluster is never all down.
            if let Ok(s) = &r {
                assert_eq!(s.source, resilis::Source::Redis);
            }
            (Op::Get, outcome(r, |s| Answer::Value(s.value)))
        } else if kind < 90 {
            let r = client.incr(key).await;
            (Op::Incr, outcome(r, Answer::Int))
        } else {
            let r = client.del(key).await;
            (Op::Del, outcome(r, Answer::Int))
        };
        let end = match outcome {
            Outcome::Indeterminate => None,
            _ => Some(Instant::now()),
        };
        history.push((
            key.to_owned(),
            Call {
                who,
                start,
                end,
                op,
                outcome,
            },
        ));
        tokio::time::sleep(Duration::from_millis(15 + next(&mut seed) % 25)).await;
    }
    history
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_across_a_primary_kill_are_linearizable() {
    // Two keys on the shard that loses its primary, one elsewhere.
    static KEYS: &[&str] = &["{lin}:a", "{lin}:b", "{other}:c"];
    let cluster = Arc::new(Cluster::start());
    let slot = cluster.key_slot("{lin}");
    assert_ne!(
        cluster.primary_for_slot(slot),
        cluster.primary_for_slot(cluster.key_slot("{other}")),
        "the keys are on two shards"
    );
    let a = connect(&cluster).await;
    let b = connect(&cluster).await;
    let stop = Instant::now() + Duration::from_secs(4);
    let wa = tokio::spawn(history_workload(
        a.clone(),
        "A",
        0x2545_f491_4f6c_dd1d,
        KEYS,
        stop,
    ));
    let wb = tokio::spawn(history_workload(
        b.clone(),
        "B",
        0x9e37_79b9_7f4a_7c15,
        KEYS,
        stop,
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let victim = cluster.primary_for_slot(slot);
    cluster.kill_node(victim);
    let mut history = wa.await.unwrap();
    history.extend(wb.await.unwrap());
    promoted(&cluster, slot, victim).await;
    let per_key = linearizable::by_key(history);
    for key in KEYS {
        let calls = per_key.get(*key).cloned().unwrap_or_default();
        assert!(calls.len() >= 20, "{key}: only {} calls", calls.len());
        assert!(
            calls.len() <= linearizable::MAX_OPS,
            "{key}: {} calls",
            calls.len()
        );
        let final_value = match held(&cluster, key) {
            Reply::Bulk(v) => Some(String::from_utf8_lossy(&v).into_owned()),
            Reply::Nil => None,
            other => panic!("{key}: {other:?}"),
        };
        let verdict = linearizable::check(&calls, None, final_value.as_deref());
        let indeterminate = calls
            .iter()
            .filter(|c| c.outcome == linearizable::Outcome::Indeterminate)
            .count();
        println!(
            "{key}: {} calls, {indeterminate} indeterminate, {verdict:?}",
            calls.len()
        );
        assert!(
            verdict.is_linearizable(),
            "{key}: {verdict:?}\n{}",
            calls
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}

//! The cluster fixture checked against the real thing: if these fail, every
//! cluster test built on it means nothing.

use std::time::{Duration, Instant};

use resilis_tests::cluster::{NODES, PRIMARIES, SLOTS};
use resilis_tests::{Cluster, RawConn, Reply};

fn bulk(s: &str) -> Reply {
    Reply::Bulk(s.as_bytes().to_vec())
}

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

fn error(message: String) -> Reply {
    Reply::Error(message)
}

#[test]
fn a_new_cluster_serves_every_slot_redirects_and_migrates() {
    let cluster = Cluster::start();
    println!("Cluster::start() took {:?}", cluster.started_in());
    assert_eq!(cluster.nodes().len(), NODES);
    let ports: Vec<u16> = cluster.nodes().iter().map(|n| n.port()).collect();
    assert_eq!(
        cluster.seed_url(),
        format!(
            "redis://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
            ports[0], ports[1], ports[2]
        )
    );
    assert_eq!(
        cluster.node_url(4),
        format!("redis://127.0.0.1:{}", ports[4])
    );

    // Every node sees three shards that cover each slot exactly once, each
    // a primary with one online replica.
    for i in 0..NODES {
        let shards = cluster.shards(i);
        let serving: Vec<_> = shards.iter().filter(|s| !s.slots.is_empty()).collect();
        assert_eq!(serving.len(), PRIMARIES, "node {i}: {shards:?}");
        let mut covered = vec![0u8; usize::from(SLOTS)];
        for shard in &serving {
            for &(lo, hi) in &shard.slots {
                for slot in lo..=hi {
                    covered[usize::from(slot)] += 1;
                }
            }
            let primary = shard.primary().expect("a serving shard has a primary");
            assert_eq!(primary.health, "online", "node {i}: {shard:?}");
            let replicas: Vec<_> = shard.replicas().collect();
            assert_eq!(replicas.len(), 1, "node {i}: {shard:?}");
            assert_eq!(replicas[0].health, "online", "node {i}: {shard:?}");
        }
        assert!(covered.iter().all(|&n| n == 1), "node {i}: {shards:?}");
    }
    let primaries: Vec<usize> = [0, 5461, SLOTS - 1]
        .iter()
        .map(|&slot| cluster.primary_for_slot(slot))
        .collect();
    assert_eq!(primaries, vec![0, 1, 2]);
    for p in 0..PRIMARIES {
        assert_eq!(cluster.replicas_of(p), vec![PRIMARIES + p]);
    }
    assert_eq!(cluster.replicas_of(PRIMARIES), Vec::<usize>::new());

    // The right primary takes the write; any other node redirects to it.
    let key = "foo";
    let slot = cluster.key_slot(key);
    assert_eq!(slot, 12182, "CLUSTER KEYSLOT foo");
    let owner = cluster.primary_for_slot(slot);
    let owner_port = cluster.node(owner).port();
    assert_eq!(cluster.command(owner, &["SET", key, "v1"]), ok());
    assert_eq!(cluster.command(owner, &["GET", key]), bulk("v1"));
    let moved = error(format!("MOVED {slot} 127.0.0.1:{owner_port}"));
    for other in (0..NODES).filter(|&i| i != owner) {
        assert_eq!(
            cluster.command(other, &["SET", key, "v2"]),
            moved,
            "node {other}"
        );
    }
    assert_eq!(cluster.command(owner, &["GET", key]), bulk("v1"));

    // A hung node answers nothing until it wakes.
    let replica = cluster.replicas_of(owner)[0];
    cluster.pause(replica, Duration::from_millis(500));
    let asked = Instant::now();
    assert_eq!(
        cluster.command(replica, &["PING"]),
        Reply::Simple("PONG".into())
    );
    let hung_for = asked.elapsed();
    println!("paused node answered PING after {hung_for:?}");
    assert!(hung_for >= Duration::from_millis(200), "{hung_for:?}");

    // A slot in migration: ASK for what has moved, TRYAGAIN for a multi-key
    // command split between the two nodes, MOVED once it is over.
    let to = (owner + 1) % PRIMARIES;
    let to_port = cluster.node(to).port();
    let sibling = "{foo}b";
    assert_eq!(cluster.command(owner, &["SET", sibling, "b"]), ok());
    cluster.begin_migration(slot, owner, to);
    let ask = error(format!("ASK {slot} 127.0.0.1:{to_port}"));
    assert_eq!(cluster.command(owner, &["GET", key]), bulk("v1"));
    assert_eq!(cluster.command(owner, &["GET", "{foo}missing"]), ask);
    assert_eq!(cluster.migrate_key(key, owner, to), ok());
    assert_eq!(cluster.command(owner, &["GET", key]), ask);
    let tryagain = cluster.command(owner, &["MGET", key, sibling]);
    assert!(
        matches!(&tryagain, Reply::Error(e) if e.starts_with("TRYAGAIN")),
        "{tryagain:?}"
    );
    assert_eq!(cluster.command(to, &["GET", key]), moved);
    let mut asking = RawConn::connect(cluster.node(to).addr()).unwrap();
    assert_eq!(asking.command(&["ASKING"]).unwrap(), ok());
    assert_eq!(asking.command(&["GET", key]).unwrap(), bulk("v1"));
    // ASKING counts for one command only.
    assert_eq!(asking.command(&["GET", key]).unwrap(), moved);
    assert_eq!(cluster.migrate_key(sibling, owner, to), ok());
    assert_eq!(
        cluster.migrate_key("{foo}missing", owner, to),
        Reply::Simple("NOKEY".into())
    );
    cluster.finish_migration(slot, to);
    assert_eq!(cluster.primary_for_slot(slot), to);
    assert_eq!(
        cluster.command(owner, &["GET", key]),
        error(format!("MOVED {slot} 127.0.0.1:{to_port}"))
    );
    assert_eq!(
        cluster.command(to, &["MGET", key, sibling]),
        Reply::Array(vec![bulk("v1"), bulk("b")])
    );
}

#[test]
fn a_killed_primary_is_replaced_by_its_replica_and_rejoins_as_one() {
    let cluster = Cluster::start();
    println!("Cluster::start() took {:?}", cluster.started_in());
    let key = "failover:key";
    let slot = cluster.key_slot(key);
    let old = cluster.primary_for_slot(slot);
    let replicas = cluster.replicas_of(old);
    assert_eq!(replicas.len(), 1, "{replicas:?}");
    assert_eq!(cluster.command(old, &["SET", key, "before"]), ok());

    let pid = cluster.node(old).pid().expect("the primary runs");
    cluster.kill_node(old);
    let killed = Instant::now();
    assert!(cluster.node(old).pid().is_none());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} still exists after kill_node"
    );
    assert!(cluster.try_command(old, &["PING"]).is_err());
    let new = cluster.wait_primary_changed(slot, old, Duration::from_secs(10));
    let promoted_after = killed.elapsed();
    println!("kill_node -> replica promoted after {promoted_after:?}");
    assert_eq!(new, replicas[0]);
    assert!(
        promoted_after >= Duration::from_millis(1000),
        "promoted before the node timeout: {promoted_after:?}"
    );
    assert_eq!(cluster.command(new, &["SET", key, "after"]), ok());

    // Back on the same port with the same identity, as a replica.
    cluster.restart_node(old);
    let restarted = Instant::now();
    cluster.wait_all_online(Duration::from_secs(20));
    println!(
        "restart_node -> all online again after {:?}",
        restarted.elapsed()
    );
    assert_eq!(cluster.primary_for_slot(slot), new);
    assert_eq!(cluster.replicas_of(new), vec![old]);
    let moved = error(format!(
        "MOVED {slot} 127.0.0.1:{}",
        cluster.node(new).port()
    ));
    assert_eq!(cluster.command(old, &["GET", key]), moved);

    // A manual failover hands the slot back.
    let asked = Instant::now();
    cluster.failover(old);
    println!("failover() took {:?}", asked.elapsed());
    assert_eq!(
        cluster.wait_primary_changed(slot, new, Duration::from_secs(5)),
        old
    );
    assert_eq!(cluster.command(old, &["GET", key]), bulk("after"));
}

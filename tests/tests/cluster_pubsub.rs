//! Pub/sub in cluster mode against a real 6-node Redis Cluster: shard
//! channels on the primary of their slot (one SSUBSCRIBE per slot, never a
//! CROSSSLOT one), plain channels anywhere, and a shard subscription that
//! follows its slot to the replica promoted after its primary is killed,
//! with the gap reported and exactly one subscription left on the cluster.

use std::sync::Arc;
use std::time::Duration;

use resilis::{Client, GapCause, PubSubItem, Subscriber};
use resilis_tests::{Cluster, Reply};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

async fn next(sub: &mut Subscriber) -> PubSubItem {
    timeout(WAIT, sub.next())
        .await
        .expect("an item within 10 s")
        .expect("the stream is open")
}

fn payload(item: &PubSubItem) -> String {
    match item {
        PubSubItem::Message(m) => String::from_utf8_lossy(&m.payload).into_owned(),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Three shard channels whose slots are on three different primaries.
fn spread(cluster: &Cluster) -> Vec<(String, usize)> {
    let mut picked: Vec<(String, usize)> = Vec::new();
    for i in 0..10_000 {
        let name = format!("orders:{i}");
        let owner = cluster.primary_for_slot(cluster.key_slot(&name));
        if !picked.iter().any(|(_, o)| *o == owner) {
            picked.push((name, owner));
        }
        if picked.len() == 3 {
            break;
        }
    }
    assert_eq!(picked.len(), 3, "three primaries");
    picked
}

fn integer(reply: Reply) -> i64 {
    match reply {
        Reply::Integer(n) => n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

fn shardnumsub(cluster: &Cluster, node: usize, channel: &str) -> i64 {
    match cluster.command(node, &["PUBSUB", "SHARDNUMSUB", channel]) {
        Reply::Array(items) => integer(items[1].clone()),
        other => panic!("PUBSUB SHARDNUMSUB: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_subscriptions_live_on_their_slot_and_follow_a_failover() {
    let cluster = Arc::new(Cluster::start());
    let client = Client::connect(&cluster.seed_url()).expect("a cluster URL");
    client.wait_ready(WAIT).await.expect("ready");
    let channels = spread(&cluster);
    let names: Vec<&str> = channels.iter().map(|(n, _)| n.as_str()).collect();
    // Three slots in one call: one SSUBSCRIBE per slot, or Redis would
    // answer CROSSSLOT.
    let mut sub = client.ssubscribe(&names).await.expect("ssubscribe");
    for (name, owner) in &channels {
        assert_eq!(
            shardnumsub(&cluster, *owner, name),
            1,
            "{name} on its primary"
        );
        let n = integer(cluster.command(*owner, &["SPUBLISH", name, &format!("hello {name}")]));
        assert_eq!(n, 1, "one subscriber for {name}");
        assert_eq!(payload(&next(&mut sub).await), format!("hello {name}"));
    }

    // Plain channels: PUBLISH on any node reaches a subscriber on another.
    let mut plain = client.subscribe(["news"]).await.expect("subscribe");
    for node in 0..3 {
        cluster.command(node, &["PUBLISH", "news", &format!("from {node}")]);
        assert_eq!(payload(&next(&mut plain).await), format!("from {node}"));
    }

    // Kill the primary of the first channel's slot.
    let (name, old) = channels[0].clone();
    let slot = cluster.key_slot(&name);
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.kill_node(old))
        .await
        .unwrap();
    let c = cluster.clone();
    let new = tokio::task::spawn_blocking(move || c.wait_primary_changed(slot, old, WAIT))
        .await
        .unwrap();
    // The subscription moves to the new primary and says so.
    match next(&mut sub).await {
        PubSubItem::Gap {
            name: gap_name,
            cause: GapCause::Reconnected { since, until },
            ..
        } => {
            assert_eq!(gap_name, name.as_bytes());
            assert!(since <= until);
        }
        other => panic!("expected the gap of {name}, got {other:?}"),
    }
    assert_eq!(
        shardnumsub(&cluster, new, &name),
        1,
        "exactly one subscription"
    );
    let n = integer(cluster.command(new, &["SPUBLISH", &name, "after"]));
    assert_eq!(n, 1);
    assert_eq!(payload(&next(&mut sub).await), "after");
    // The other channels never moved.
    let (other, owner) = &channels[1];
    cluster.command(*owner, &["SPUBLISH", other, "still"]);
    assert_eq!(payload(&next(&mut sub).await), "still");

    // Dropping the subscriber unsubscribes everywhere.
    drop(sub);
    let deadline = tokio::time::Instant::now() + WAIT;
    // Bounded by the deadline.
    while shardnumsub(&cluster, new, &name) != 0 {
        assert!(tokio::time::Instant::now() < deadline, "still subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A slot migrated to another primary: the old owner drops the shard
/// subscriptions of that slot (`sunsubscribe`), the resubscribe there meets
/// MOVED, and the subscription follows the slot, with a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_slot_takes_its_shard_subscriptions_along() {
    let cluster = Arc::new(Cluster::start());
    let client = Client::connect(&cluster.seed_url()).expect("a cluster URL");
    client.wait_ready(WAIT).await.expect("ready");
    let (name, from) = spread(&cluster)[0].clone();
    let slot = cluster.key_slot(&name);
    let to = (0..3).find(|&p| p != from).expect("another primary");
    let mut sub = client.ssubscribe([&name]).await.expect("ssubscribe");
    assert_eq!(shardnumsub(&cluster, from, &name), 1);
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || {
        c.begin_migration(slot, from, to);
        c.finish_migration(slot, to);
    })
    .await
    .unwrap();
    match next(&mut sub).await {
        PubSubItem::Gap { name: gap, .. } => assert_eq!(gap, name.as_bytes()),
        other => panic!("expected the gap, got {other:?}"),
    }
    assert_eq!(shardnumsub(&cluster, to, &name), 1, "on the new owner");
    assert_eq!(shardnumsub(&cluster, from, &name), 0, "not on the old one");
    let n = integer(cluster.command(to, &["SPUBLISH", &name, "moved"]));
    assert_eq!(n, 1);
    assert_eq!(payload(&next(&mut sub).await), "moved");
}

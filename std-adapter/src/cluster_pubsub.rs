//! Pub/sub in cluster mode: each subscription lives on the primary that
//! serves its slot, and moves with the slot.
//!
//! Names are grouped by hash slot (so shard channels go one `SSUBSCRIBE`
//! per slot, never a CROSSSLOT one over several); each group is a
//! node-level [`Subscriber`] on the primary the core's router names for
//! that slot. Plain channels and patterns are placed the same way, by the
//! slot of their name: a `PUBLISH` reaches every node of a cluster, so any
//! node would do, and placing by slot spreads them over the primaries.
//!
//! A task merges the groups into the application's one stream and keeps
//! each group where the router says, re-placing it (with a
//! [`PubSubItem::Gap`] for its names, from when its node was lost to the
//! new owner's confirmation) when the map moves its slot, when the server
//! drops it (`sunsubscribe` after a migration, then `MOVED` on the
//! resubscribe) or when its node's connection is closed.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use resilis_core::PhaseKind;
use resilis_core::cluster::{ClusterReply, classify_error, slot};

use crate::cluster::Cluster;
use crate::error::Error;
use crate::node::Node;
use crate::pubsub::{GapCause, Kind, PubSubItem, Sink, Subscriber};

/// How often placements are checked against the map, besides every map
/// change.
const CHECK: Duration = Duration::from_millis(100);

/// One slot's names, subscribed on one node.
struct Group {
    slot: u16,
    names: Vec<Vec<u8>>,
    node: String,
    sub: Option<Subscriber>,
    /// Since when its messages may be missing (set when it must move).
    lost_since: Option<Instant>,
}

/// Subscribes to `names` on the primaries that serve their slots; returns
/// once every group is confirmed.
pub(crate) async fn subscribe(
    cluster: &Arc<Cluster>,
    kind: Kind,
    names: Vec<Vec<u8>>,
) -> Result<Subscriber, Error> {
    let timeout = cluster.template().config.command_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut by_slot: HashMap<u16, Vec<Vec<u8>>> = HashMap::new();
    for name in &names {
        by_slot.entry(slot(name)).or_default().push(name.clone());
    }
    let mut groups = Vec::new();
    for (slot, names) in by_slot {
        let (node, key) = owner(cluster, slot, deadline).await?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let sub = tokio::time::timeout(left, node.subscribe(kind, names.clone()))
            .await
            .map_err(|_| Error::Timeout)??;
        groups.push(Group {
            slot,
            names,
            node: key,
            sub: Some(sub),
            lost_since: None,
        });
    }
    let sink = Arc::new(Sink::new(cluster.template().pubsub));
    let task = tokio::spawn(run(Arc::downgrade(cluster), kind, groups, sink.clone()));
    Ok(Subscriber::fed(kind, names, sink, task))
}

/// The node serving `slot` (waiting for a map until `deadline`).
async fn owner(
    cluster: &Arc<Cluster>,
    slot: u16,
    deadline: tokio::time::Instant,
) -> Result<(Node, String), Error> {
    let mut changed = cluster.watch_changes();
    // Bounded by the deadline.
    loop {
        if let Some(found) = cluster.slot_owner(slot)? {
            return Ok(found);
        }
        match tokio::time::timeout_at(deadline, changed.changed()).await {
            Ok(Ok(())) => {}
            _ => return Err(Error::NoRoute { slot: Some(slot) }),
        }
    }
}

/// A MOVED or ASK, as the core reads an error reply.
fn is_redirect(text: &str) -> bool {
    matches!(
        classify_error(text.as_bytes()),
        Some(ClusterReply::Moved { .. } | ClusterReply::Ask { .. })
    )
}

/// What happened on one pass.
enum Step {
    Item(usize, PubSubItem),
    Ended(usize),
    Check,
}

async fn run(cluster: Weak<Cluster>, kind: Kind, mut groups: Vec<Group>, sink: Arc<Sink>) {
    let mut tick = tokio::time::interval(CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changed = match cluster.upgrade() {
        Some(c) => c.watch_changes(),
        None => return,
    };
    // Ends when the subscriber drops (the task is aborted) or the client is
    // gone (the cluster cannot be upgraded).
    loop {
        let step = {
            let mut tick_fut = std::pin::pin!(tick.tick());
            let mut change_fut = std::pin::pin!(changed.changed());
            poll_fn(|cx| {
                for (i, g) in groups.iter().enumerate() {
                    if let Some(sub) = &g.sub {
                        match sub.poll_item(cx) {
                            Poll::Ready(Some(item)) => return Poll::Ready(Step::Item(i, item)),
                            Poll::Ready(None) => return Poll::Ready(Step::Ended(i)),
                            Poll::Pending => {}
                        }
                    }
                }
                if tick_fut.as_mut().poll(cx).is_ready() || change_fut.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Step::Check);
                }
                Poll::Pending
            })
            .await
        };
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        match step {
            Step::Item(i, PubSubItem::Refused { server, .. }) if is_redirect(&server) => {
                // The server dropped it and the resubscribe met a redirect:
                // the slot lives elsewhere now, and the router learns where.
                let g = &mut groups[i];
                cluster.note_moved(&server, &g.node);
                g.lost_since.get_or_insert_with(Instant::now);
                g.sub = None;
            }
            Step::Item(_, item) => sink.push(item),
            Step::Ended(i) => {
                let g = &mut groups[i];
                g.lost_since.get_or_insert_with(Instant::now);
                g.sub = None;
            }
            Step::Check => {}
        }
        place(&cluster, kind, &mut groups, &sink).await;
    }
}

/// Moves every group whose slot the map gives to another node (or whose
/// subscriber ended) to the slot's owner.
async fn place(cluster: &Arc<Cluster>, kind: Kind, groups: &mut [Group], sink: &Arc<Sink>) {
    for g in groups.iter_mut() {
        if g.names.is_empty() {
            continue;
        }
        if g.sub.is_some() {
            // While its node is down the gap runs from the loss; if the
            // node comes back, its own subscriber reports its reconnect.
            if cluster.node_phase(&g.node) == Some(PhaseKind::Ready) {
                g.lost_since = None;
            } else {
                g.lost_since.get_or_insert_with(Instant::now);
            }
        }
        let Ok(Some((node, key))) = cluster.slot_owner(g.slot) else {
            continue;
        };
        if g.sub.is_some() && key == g.node {
            continue;
        }
        // Leave the old node first: one subscription per name, never two.
        g.sub = None;
        let since = *g.lost_since.get_or_insert_with(Instant::now);
        let timeout = cluster.template().config.command_timeout;
        match tokio::time::timeout(timeout, node.subscribe(kind, g.names.clone())).await {
            Ok(Ok(sub)) => {
                let until = Instant::now();
                for name in &g.names {
                    sink.push(PubSubItem::Gap {
                        kind,
                        name: name.clone(),
                        cause: GapCause::Reconnected { since, until },
                    });
                }
                g.sub = Some(sub);
                g.node = key;
                g.lost_since = None;
            }
            Ok(Err(Error::Server(text))) if cluster.note_moved(&text, &key) => {}
            Ok(Err(Error::Server(text))) => {
                for name in &g.names {
                    sink.push(PubSubItem::Refused {
                        kind,
                        name: name.clone(),
                        server: text.clone(),
                    });
                }
                g.names.clear();
            }
            // Not there yet (node down, map stale): the next check retries.
            _ => {}
        }
    }
}

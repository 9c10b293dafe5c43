//! Transcripts of the router's decisions, on maps built from `CLUSTER
//! SLOTS` replies shaped as Redis sends them.

extern crate std;

use std::format;
use std::string::String;
use std::vec::Vec;

use super::*;
use crate::TransportError;
use crate::resp::{Decoded, Limits, decode};

type Map = Topology<16, 64>;
type Router = ClusterRouter<16, 64>;

const CLASS_SET: Class = Class::IDEMPOTENT_WRITE;
const CLASS_INCR: Class = Class::WRITE;
const CLASS_GET: Class = Class::CACHED_READ;

/// A `CLUSTER SLOTS` reply: each shard `(start, end, primary port)`, its
/// replica on `port + 100`, all on 127.0.0.1.
fn slots_reply(shards: &[(u16, u16, u16)]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", shards.len());
    for &(start, end, port) in shards {
        out += &format!(
            "*4\r\n:{start}\r\n:{end}\r\n*3\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$2\r\nid\r\n*3\r\n$9\r\n127.0.0.1\r\n:{}\r\n$2\r\nid\r\n",
            port + 100
        );
    }
    out.into_bytes()
}

fn map(shards: &[(u16, u16, u16)]) -> Map {
    map_from(&slots_reply(shards))
}

fn map_from(bytes: &[u8]) -> Map {
    let Ok(Decoded::Frame { frame, .. }) = decode(bytes, &Limits::REDIS) else {
        panic!("bad fixture");
    };
    let mut map = Map::new();
    map.parse_slots(&frame, "127.0.0.1")
        .expect("fixture parses");
    map
}

/// Three primaries on 7001..7003 over the usual ranges.
fn three() -> Map {
    map(&[(0, 5460, 7001), (5461, 10922, 7002), (10923, 16383, 7003)])
}

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

fn port_of(r: &Router, node: NodeId) -> u16 {
    r.addr(node).expect("known node").port
}

/// A router that has taken `three()` with every primary Ready.
fn ready_router(config: ClusterConfig) -> Router {
    let mut r = Router::new(config, [("127.0.0.1", 7001)]);
    let ask = r.poll_refresh(ms(0)).expect("first refresh at once");
    assert_eq!(ask.nodes.len(), 1, "only the seed is known");
    assert_eq!(ask.command, MapCommand::Shards);
    let view = three();
    assert_eq!(
        r.handle_refresh(ms(1), &[&view]),
        Refreshed::Changed { generation: 1 }
    );
    for port in [7001, 7002, 7003] {
        let id = r.node_id("127.0.0.1", port).expect("primary known");
        r.handle_node_phase(ms(1), id, true, None);
    }
    r
}

fn send_port(r: &Router, step: Step) -> (u16, bool) {
    match step {
        Step::Send { node, asking } => (port_of(r, node), asking),
        other => panic!("expected a send, got {other:?}"),
    }
}

#[test]
fn a_command_goes_to_the_primary_of_its_slot() {
    let mut r = ready_router(ClusterConfig::default());
    // slot 12182 is "foo"'s: the third shard.
    let (a, step) = r.begin(ms(2), CLASS_GET, SlotsOf::One(12182), ms(5_000));
    assert_eq!(send_port(&r, step), (7003, false));
    assert_eq!(a.node, r.node_id("127.0.0.1", 7003));
    let (_, step) = r.begin(ms(2), CLASS_GET, SlotsOf::One(0), ms(5_000));
    assert_eq!(send_port(&r, step), (7001, false));
    let (_, step) = r.begin(ms(2), CLASS_GET, SlotsOf::One(5461), ms(5_000));
    assert_eq!(send_port(&r, step), (7002, false));
    // Replicas are in the map but are not wanted connections.
    let replica = r.node_id("127.0.0.1", 7101).expect("replica known");
    assert_eq!(r.role(replica), Some(Role::Replica));
    assert!(!r.wanted(replica));
    assert!(r.wanted(r.node_id("127.0.0.1", 7002).unwrap()));
}

#[test]
fn keys_in_two_slots_are_refused_before_sending() {
    let mut r = ready_router(ClusterConfig::default());
    let (_, step) = r.begin(
        ms(2),
        CLASS_GET,
        SlotsOf::Cross { first: 1, other: 2 },
        ms(5_000),
    );
    assert_eq!(step, Step::Fail(Failure::CrossSlot { first: 1, other: 2 }));
}

#[test]
fn keyless_commands_take_turns_over_ready_primaries() {
    let mut r = ready_router(ClusterConfig::default());
    let mut ports = Vec::new();
    for _ in 0..6 {
        let (_, step) = r.begin(ms(2), Class::READ, SlotsOf::Keyless, ms(5_000));
        ports.push(send_port(&r, step).0);
    }
    ports.sort();
    ports.dedup();
    assert_eq!(ports, [7001, 7002, 7003]);
}

#[test]
fn moved_patches_the_map_resends_there_and_asks_for_a_refresh() {
    let mut r = ready_router(ClusterConfig::default());
    let (mut a, _) = r.begin(ms(200), CLASS_SET, SlotsOf::One(42), ms(5_000));
    let step = r.on_reply(
        ms(200),
        &mut a,
        Some(ClusterReply::Moved {
            slot: 42,
            host: "127.0.0.1",
            port: 7002,
        }),
    );
    assert_eq!(send_port(&r, step), (7002, false));
    assert_eq!(r.primary_for(42), r.node_id("127.0.0.1", 7002));
    // The neighbours stay where they were.
    assert_eq!(r.primary_for(41), r.node_id("127.0.0.1", 7001));
    assert_eq!(r.primary_for(43), r.node_id("127.0.0.1", 7001));
    assert_eq!(r.generation(), 2);
    assert!(
        r.poll_refresh(ms(200)).is_some(),
        "a MOVED asks for a refresh"
    );
}

#[test]
fn a_moved_outside_a_command_patches_the_map_the_same_way() {
    let mut r = ready_router(ClusterConfig::default());
    let changes = r.changes();
    let node = r.handle_moved(ms(200), 42, "127.0.0.1", 7002);
    assert_eq!(node, r.node_id("127.0.0.1", 7002));
    assert_eq!(r.primary_for(42), node);
    assert_eq!(r.primary_for(43), r.node_id("127.0.0.1", 7001));
    assert!(r.changes() > changes, "waiters are woken");
    assert_eq!(r.stats().moved, 1);
    assert!(r.poll_refresh(ms(200)).is_some(), "and a refresh follows");
}

#[test]
fn a_moved_to_an_unnamed_host_means_the_host_that_answered() {
    let mut r = ready_router(ClusterConfig::default());
    let (mut a, _) = r.begin(ms(2), CLASS_SET, SlotsOf::One(42), ms(5_000));
    let step = r.on_reply(
        ms(2),
        &mut a,
        Some(ClusterReply::Moved {
            slot: 42,
            host: "",
            port: 7003,
        }),
    );
    let Step::Send { node, .. } = step else {
        panic!("{step:?}")
    };
    assert_eq!(r.addr(node).unwrap().host.as_str(), "127.0.0.1");
    assert_eq!(r.addr(node).unwrap().port, 7003);
}

#[test]
fn ask_sends_once_with_asking_and_leaves_the_map_alone() {
    let mut r = ready_router(ClusterConfig::default());
    let (mut a, _) = r.begin(ms(2), CLASS_SET, SlotsOf::One(42), ms(5_000));
    let generation = r.generation();
    let step = r.on_reply(
        ms(2),
        &mut a,
        Some(ClusterReply::Ask {
            slot: 42,
            host: "127.0.0.1",
            port: 7003,
        }),
    );
    assert_eq!(send_port(&r, step), (7003, true));
    assert_eq!(r.primary_for(42), r.node_id("127.0.0.1", 7001));
    assert_eq!(r.generation(), generation);
    // The next command for that slot goes to the owner again, without ASKING.
    let (_, step) = r.begin(ms(3), CLASS_SET, SlotsOf::One(42), ms(5_000));
    assert_eq!(send_port(&r, step), (7001, false));
}

#[test]
fn redirects_beyond_the_budget_end_the_command() {
    let mut r = ready_router(ClusterConfig::default());
    let (mut a, _) = r.begin(ms(2), CLASS_SET, SlotsOf::One(42), ms(5_000));
    let mut last = Step::Answer;
    for i in 0..6u16 {
        last = r.on_reply(
            ms(2),
            &mut a,
            Some(ClusterReply::Moved {
                slot: 42,
                host: "127.0.0.1",
                port: 7001 + (i % 2),
            }),
        );
        if i < 5 {
            assert!(matches!(last, Step::Send { .. }), "redirect {i}: {last:?}");
        }
    }
    assert_eq!(last, Step::Fail(Failure::RedirectLoop { redirects: 6 }));
}

#[test]
fn tryagain_waits_longer_each_time_then_the_refusal_is_the_answer() {
    let mut r = ready_router(ClusterConfig::default());
    let (mut a, _) = r.begin(ms(0), CLASS_SET, SlotsOf::One(42), ms(200));
    let mut now = ms(0);
    let mut waits = Vec::new();
    loop {
        match r.on_reply(now, &mut a, Some(ClusterReply::TryAgain)) {
            Step::Wait { until } => {
                waits.push((until - now).as_millis());
                now = until;
                assert!(matches!(r.resume(now, &mut a), Step::Send { .. }));
            }
            Step::Answer => break,
            other => panic!("{other:?}"),
        }
        assert!(waits.len() < 20, "bounded");
    }
    assert_eq!(waits, [10, 20, 40, 80]);
    assert!(now < ms(200));
}

#[test]
fn a_moved_storm_costs_about_one_map_read_a_second() {
    let mut r = ready_router(ClusterConfig::default());
    let mut refreshes = 0;
    // 30 000 MOVEDs over three seconds (10 000 a second), the refresh loop
    // polled as often.
    for i in 0..30_000u64 {
        let now = Instant::from_micros(1_000 + i * 100);
        let (mut a, _) = r.begin(
            now,
            CLASS_SET,
            SlotsOf::One(42),
            now + Duration::from_secs(5),
        );
        let _ = r.on_reply(
            now,
            &mut a,
            Some(ClusterReply::Moved {
                slot: 42,
                host: "127.0.0.1",
                port: 7002 + (i % 2) as u16,
            }),
        );
        if r.poll_refresh(now).is_some() {
            refreshes += 1;
            // The nodes answer at once, with the map before the storm.
            let view = three();
            r.handle_refresh(now, &[&view]);
        }
    }
    // One at the first MOVED, then one per `moved_refresh_after` (1 s, plus
    // up to 25 ms of jitter).
    assert!((3..=4).contains(&refreshes), "{refreshes} refreshes");
}

#[test]
fn a_killed_primary_is_refreshed_away_and_waiting_commands_follow_the_promotion() {
    let mut r = ready_router(ClusterConfig::default());
    let dead = r.node_id("127.0.0.1", 7001).unwrap();
    let reason = DisconnectReason::Transport(TransportError::Closed);
    r.handle_node_phase(ms(1_000), dead, false, Some(reason));
    let ask = r
        .poll_refresh(ms(1_000))
        .expect("leaving Ready asks at once");
    assert!(!ask.nodes.contains(&dead), "a node known down is not asked");
    // A write for one of its slots, never sent: waits (its deadline is 5 s).
    let (mut a, step) = r.begin(ms(1_001), CLASS_INCR, SlotsOf::One(100), ms(6_000));
    assert_eq!(step, Step::Wait { until: ms(6_000) });
    // Until the promotion, the nodes still name the dead primary: refreshed
    // again every interval while it is down.
    let before = three();
    assert_eq!(
        r.handle_refresh(ms(1_002), &[&before, &before]),
        Refreshed::Unchanged
    );
    assert!(r.degraded());
    assert_eq!(r.poll_refresh(ms(1_040)), None, "not before the interval");
    let next = r.poll_timeout().expect("a refresh is due");
    assert!(next >= ms(1_050) && next <= ms(1_075), "{next:?}");
    assert!(r.poll_refresh(next).is_some());
    // The replica (7101) is promoted.
    let after = map(&[(0, 5460, 7101), (5461, 10922, 7002), (10923, 16383, 7003)]);
    let changes = r.changes();
    assert!(matches!(
        r.handle_refresh(next, &[&after, &after, &before]),
        Refreshed::Changed { .. }
    ));
    assert!(r.changes() > changes, "waiters are woken");
    assert!(!r.wanted(dead));
    // The promoted node was never tried: the command goes there, and the
    // adapter opens its connection first.
    let step = r.resume(next, &mut a);
    assert_eq!(send_port(&r, step), (7101, false));
    let promoted = r.node_id("127.0.0.1", 7101).unwrap();
    assert!(r.wanted(promoted));
    r.handle_node_phase(next, promoted, true, None);
    let step = r.resume(next, &mut a);
    assert_eq!(send_port(&r, step), (7101, false));
}

#[test]
fn a_lost_resend_safe_write_is_rerouted_but_never_called_not_applied() {
    let mut r = ready_router(ClusterConfig::default());
    let node = r.node_id("127.0.0.1", 7001).unwrap();
    let (mut a, _) = r.begin(ms(0), CLASS_SET, SlotsOf::One(100), ms(3_000));
    let reason = DisconnectReason::Transport(TransportError::Reset);
    let lost = Outcome::Indeterminate(IndeterminateCause::ConnectionLost(reason));
    // Its node is gone: it waits for whoever serves the slot next.
    assert_eq!(
        r.on_outcome(ms(10), &mut a, lost),
        Step::Wait { until: ms(3_000) }
    );
    assert!(!r.is_ready(node));
    // Nobody takes over before its deadline: it may have run.
    assert_eq!(
        r.resume(ms(3_000), &mut a),
        Step::Fail(Failure::Outcome(lost))
    );
    // A write that is not resend-safe is indeterminate at once.
    let mut r = ready_router(ClusterConfig::default());
    let (mut a, _) = r.begin(ms(0), CLASS_INCR, SlotsOf::One(100), ms(3_000));
    assert_eq!(
        r.on_outcome(ms(10), &mut a, lost),
        Step::Fail(Failure::Outcome(lost))
    );
}

#[test]
fn a_read_lost_in_flight_is_sent_to_the_new_primary() {
    let mut r = ready_router(ClusterConfig::default());
    let (mut a, _) = r.begin(ms(0), Class::READ, SlotsOf::One(100), ms(3_000));
    let reason = DisconnectReason::Transport(TransportError::Reset);
    let step = r.on_outcome(ms(10), &mut a, Outcome::NotApplied(reason));
    assert_eq!(step, Step::Wait { until: ms(3_000) });
    let at = r.poll_timeout().expect("a refresh is due");
    assert!(at <= ms(150), "within the interval of the first: {at:?}");
    r.poll_refresh(at).expect("due");
    let after = map(&[(0, 5460, 7101), (5461, 10922, 7002), (10923, 16383, 7003)]);
    r.handle_refresh(at, &[&after]);
    let step = r.resume(at, &mut a);
    assert_eq!(send_port(&r, step), (7101, false));
    // The deadline passes with no answer: not applied, with the reason.
    assert_eq!(
        r.on_outcome(ms(3_000), &mut a, Outcome::NotApplied(reason)),
        Step::Fail(Failure::Outcome(Outcome::NotApplied(reason)))
    );
}

#[test]
fn the_cache_answers_a_get_only_when_no_node_is_ready() {
    let mut r = ready_router(ClusterConfig::default());
    let reason = DisconnectReason::Transport(TransportError::Refused);
    let ids: Vec<NodeId> = [7001, 7002, 7003]
        .iter()
        .map(|&p| r.node_id("127.0.0.1", p).unwrap())
        .collect();
    r.handle_node_phase(ms(10), ids[0], false, Some(reason));
    // One shard failing over is not an outage: the GET waits for it.
    let (_, step) = r.begin(ms(11), CLASS_GET, SlotsOf::One(100), ms(5_000));
    assert_eq!(step, Step::Wait { until: ms(5_000) });
    // Every node down: answered from the cache at once.
    r.handle_node_phase(ms(12), ids[1], false, Some(reason));
    r.handle_node_phase(ms(12), ids[2], false, Some(reason));
    let (mut a, step) = r.begin(ms(13), CLASS_GET, SlotsOf::One(100), ms(5_000));
    assert_eq!(step, Step::Fallback(reason));
    // Other commands wait for their deadline, then fail not applied.
    let (mut w, step) = r.begin(ms(13), CLASS_INCR, SlotsOf::One(100), ms(5_000));
    assert_eq!(step, Step::Wait { until: ms(5_000) });
    assert_eq!(
        r.resume(ms(5_000), &mut w),
        Step::Fail(Failure::Outcome(Outcome::NotApplied(reason)))
    );
    // A GET that reached its deadline waiting is answered from the cache.
    let mut r = ready_router(ClusterConfig::default());
    r.handle_node_phase(ms(10), ids[0], false, Some(reason));
    let (mut g, _) = r.begin(ms(11), CLASS_GET, SlotsOf::One(100), ms(5_000));
    assert_eq!(r.resume(ms(5_000), &mut g), Step::Fallback(reason));
    let _ = &mut a;
}

#[test]
fn fail_fast_fails_at_once_when_the_slot_has_no_ready_node() {
    let config = ClusterConfig {
        offline: OfflinePolicy::FailFast,
        ..ClusterConfig::default()
    };
    let mut r = ready_router(config);
    let reason = DisconnectReason::Transport(TransportError::Refused);
    let node = r.node_id("127.0.0.1", 7001).unwrap();
    r.handle_node_phase(ms(10), node, false, Some(reason));
    let (_, step) = r.begin(ms(11), CLASS_SET, SlotsOf::One(100), ms(5_000));
    assert_eq!(
        step,
        Step::Fail(Failure::Outcome(Outcome::NotApplied(reason)))
    );
}

#[test]
fn before_any_map_a_command_waits_and_ends_without_a_route() {
    let mut r = Router::new(ClusterConfig::default(), [("127.0.0.1", 7001)]);
    // The seed is tried: a command goes to it until a map is known.
    let (mut a, step) = r.begin(ms(0), CLASS_SET, SlotsOf::One(100), ms(1_000));
    assert_eq!(send_port(&r, step), (7001, false));
    let step = r.on_unavailable(ms(5), &mut a, None);
    // Nothing is known to be down, the seed is tried again.
    assert!(matches!(step, Step::Send { .. }));
    let reason = DisconnectReason::Transport(TransportError::Refused);
    assert_eq!(
        r.on_unavailable(ms(6), &mut a, Some(reason)),
        Step::Wait { until: ms(1_000) }
    );
    assert_eq!(
        r.resume(ms(1_000), &mut a),
        Step::Fail(Failure::Outcome(Outcome::NotApplied(reason)))
    );
}

#[test]
fn views_without_a_majority_keep_the_map_and_ask_again() {
    let mut r = ready_router(ClusterConfig::default());
    r.poll_refresh(ms(1_000))
        .unwrap_or_else(|| panic!("periodic or due"));
    let a = map(&[(0, 16383, 7001)]);
    let b = map(&[(0, 16383, 7002)]);
    let result = r.handle_refresh(ms(1_001), &[&a, &b]);
    assert_eq!(result, Refreshed::Disagreement { views: 2, best: 1 });
    assert_eq!(
        r.primary_for(9_000),
        r.node_id("127.0.0.1", 7002),
        "the old map stays"
    );
    assert!(r.poll_timeout().is_some_and(|t| t <= ms(1_151)));
}

#[test]
fn an_unanswered_refresh_does_not_block_the_next() {
    let mut r = ready_router(ClusterConfig::default());
    let node = r.node_id("127.0.0.1", 7002).unwrap();
    r.handle_node_phase(ms(100), node, false, Some(DisconnectReason::PingTimeout));
    let ask = r.poll_refresh(ms(200)).unwrap();
    assert_eq!(r.poll_refresh(ms(500)), None, "one at a time");
    assert!(
        r.poll_refresh(ask.until).is_some(),
        "given up on at `until`"
    );
}

#[test]
fn the_jitter_is_seeded() {
    let due = |seed| {
        let mut r = ready_router(ClusterConfig {
            seed,
            ..ClusterConfig::default()
        });
        let mut out = Vec::new();
        for i in 0..5 {
            let node = r.node_id("127.0.0.1", 7001).unwrap();
            r.handle_node_phase(
                ms(1_000 * (i + 1)),
                node,
                i % 2 == 1,
                Some(DisconnectReason::PingTimeout),
            );
            out.push(r.poll_timeout());
            if let Some(at) = r.poll_timeout() {
                r.poll_refresh(at);
                r.handle_refresh(at, &[]);
            }
        }
        out
    };
    assert_eq!(due(1), due(1));
    assert_ne!(due(1), due(2));
}

#[test]
fn a_primary_without_slots_is_not_wanted() {
    // Captured from Redis 7.0.15 after 17103 was killed and 17105 promoted:
    // 17103 is still listed, as a master with no slots, health `fail`.
    let bytes = crate::cluster::topology::tests::SHARDS_FAILOVER_RESP2;
    let Ok(Decoded::Frame { frame, .. }) = decode(bytes, &Limits::REDIS) else {
        panic!("fixture decodes")
    };
    let mut view = Map::new();
    view.parse_shards(&frame, false, "127.0.0.1").unwrap();
    let mut r = Router::new(ClusterConfig::default(), [("127.0.0.1", 17101)]);
    r.poll_refresh(ms(0)).unwrap();
    assert!(matches!(
        r.handle_refresh(ms(0), &[&view]),
        Refreshed::Changed { .. }
    ));
    let dead = r.node_id("127.0.0.1", 17103).unwrap();
    assert!(!r.wanted(dead));
    assert_eq!(r.role(dead), None);
    let promoted = r.node_id("127.0.0.1", 17105).unwrap();
    assert!(r.wanted(promoted));
    assert_eq!(r.primary_for(16383), Some(promoted));
}

#[test]
fn a_shards_refusal_switches_to_slots() {
    let mut r = Router::new(ClusterConfig::default(), [("127.0.0.1", 7001)]);
    r.handle_shards_unsupported();
    assert_eq!(r.poll_refresh(ms(0)).unwrap().command, MapCommand::Slots);
    let _ = String::new();
}

#[test]
fn a_node_that_stops_answering_is_refreshed_away_before_its_ping_timeout() {
    let mut r = ready_router(ClusterConfig::default());
    let hung = r.node_id("127.0.0.1", 7001).unwrap();
    let (mut a, _) = r.begin(ms(1_000), CLASS_SET, SlotsOf::One(100), ms(6_000));
    assert!(!r.degraded());
    // No reply for `stall_after`: the adapter says so.
    r.handle_node_stalled(ms(2_000), hung);
    assert!(r.degraded(), "a hung primary degrades the map");
    let ask = r.poll_refresh(ms(2_000)).expect("refresh at once");
    assert!(!ask.nodes.is_empty());
    // The others still name it until its replica is promoted: asked again.
    let before = three();
    assert_eq!(
        r.handle_refresh(ms(2_001), &[&before]),
        Refreshed::Unchanged
    );
    let next = r.poll_timeout().unwrap();
    assert!(next <= ms(2_151), "{next:?}");
    r.poll_refresh(next).unwrap();
    let after = map(&[(0, 5460, 7101), (5461, 10922, 7002), (10923, 16383, 7003)]);
    assert!(matches!(
        r.handle_refresh(next, &[&after]),
        Refreshed::Changed { .. }
    ));
    // Replaced: its connection is closed, and what was in flight there
    // comes back; a resend-safe SET goes to the promoted node.
    assert!(!r.wanted(hung));
    let lost = Outcome::Indeterminate(IndeterminateCause::ConnectionLost(
        DisconnectReason::Shutdown,
    ));
    let step = r.on_outcome(next, &mut a, lost);
    assert_eq!(send_port(&r, step), (7101, false));
    // A node that answers is no longer suspected.
    let mut r = ready_router(ClusterConfig::default());
    let (mut a, _) = r.begin(ms(1_000), CLASS_SET, SlotsOf::One(100), ms(6_000));
    r.handle_node_stalled(ms(2_000), hung);
    assert!(matches!(
        r.on_reply(ms(2_500), &mut a, None),
        Step::Wait { .. }
    ));
    assert!(!r.degraded());
}

#[test]
fn replica_reads_go_to_a_ready_replica_and_writes_never_do() {
    let config = ClusterConfig {
        replica_reads: true,
        ..ClusterConfig::default()
    };
    let mut r = ready_router(config);
    let replica = r.node_id("127.0.0.1", 7101).unwrap();
    assert!(r.wanted(replica), "replica connections are kept");
    // Not Ready yet: the read goes to the primary.
    let (_, step) = r.begin(ms(2), Class::READ, SlotsOf::One(100), ms(5_000));
    assert_eq!(send_port(&r, step), (7001, false));
    r.handle_node_phase(ms(3), replica, true, None);
    let (_, step) = r.begin(ms(4), Class::READ, SlotsOf::One(100), ms(5_000));
    assert_eq!(send_port(&r, step), (7101, false));
    let (_, step) = r.begin(ms(4), CLASS_SET, SlotsOf::One(100), ms(5_000));
    assert_eq!(send_port(&r, step), (7001, false));
    // A read the replica redirects goes to the primary from then on.
    let (mut a, _) = r.begin(ms(5), Class::READ, SlotsOf::One(100), ms(5_000));
    let step = r.on_reply(
        ms(5),
        &mut a,
        Some(ClusterReply::Moved {
            slot: 100,
            host: "127.0.0.1",
            port: 7001,
        }),
    );
    assert_eq!(send_port(&r, step), (7001, false));
    // Off by default.
    let mut r = ready_router(ClusterConfig::default());
    assert!(!r.wanted(r.node_id("127.0.0.1", 7101).unwrap()));
    let replica = r.node_id("127.0.0.1", 7101).unwrap();
    r.handle_node_phase(ms(3), replica, true, None);
    let (_, step) = r.begin(ms(4), Class::READ, SlotsOf::One(100), ms(5_000));
    assert_eq!(send_port(&r, step), (7001, false));
}

#[test]
fn a_write_acknowledged_by_a_hung_node_waits_for_the_map_to_confirm_it() {
    let mut r = ready_router(ClusterConfig::default());
    let hung = r.node_id("127.0.0.1", 7001).unwrap();
    let (mut a, _) = r.begin(ms(1_000), CLASS_INCR, SlotsOf::One(100), ms(6_000));
    r.handle_node_stalled(ms(2_000), hung);
    let ask = r.poll_refresh(ms(2_000)).unwrap();
    assert!(!ask.nodes.contains(&hung), "a hung node is not asked first");
    // It wakes and acknowledges: not an answer yet.
    let step = r.on_reply(ms(3_000), &mut a, None);
    assert_eq!(step, Step::Wait { until: ms(6_000) });
    // The map read that settled before the reply does not count.
    let before = three();
    r.handle_refresh(ms(2_500), &[&before]);
    assert_eq!(r.resume(ms(3_000), &mut a), Step::Wait { until: ms(6_000) });
    // A map read after it: the node was replaced, the write may be lost.
    let at = r.poll_timeout().unwrap().max(ms(3_001));
    r.poll_refresh(at).unwrap();
    let after = map(&[(0, 5460, 7101), (5461, 10922, 7002), (10923, 16383, 7003)]);
    let changes = r.changes();
    r.handle_refresh(at, &[&after, &after]);
    assert!(r.changes() > changes);
    assert_eq!(
        r.resume(at, &mut a),
        Step::Fail(Failure::Outcome(Outcome::Indeterminate(
            IndeterminateCause::NodeReplaced
        )))
    );
    // A resend-safe write goes to the new primary instead.
    let mut r2 = ready_router(ClusterConfig::default());
    let (mut w, _) = r2.begin(ms(1_000), CLASS_SET, SlotsOf::One(100), ms(6_000));
    r2.handle_node_stalled(ms(2_000), hung);
    assert!(matches!(
        r2.on_reply(ms(3_000), &mut w, None),
        Step::Wait { .. }
    ));
    r2.poll_refresh(ms(3_001)).unwrap();
    r2.handle_refresh(ms(3_001), &[&after]);
    let step = r2.resume(ms(3_001), &mut w);
    assert_eq!(send_port(&r2, step), (7101, false));
    // Still the primary after it woke: the OK stands.
    let mut r = ready_router(ClusterConfig::default());
    let (mut a, _) = r.begin(ms(1_000), CLASS_INCR, SlotsOf::One(100), ms(6_000));
    r.handle_node_stalled(ms(2_000), hung);
    assert!(matches!(
        r.on_reply(ms(2_100), &mut a, None),
        Step::Wait { .. }
    ));
    let at = r.poll_timeout().unwrap().max(ms(2_101));
    r.poll_refresh(at).unwrap();
    assert_eq!(r.handle_refresh(at, &[&before]), Refreshed::Unchanged);
    assert_eq!(r.resume(at, &mut a), Step::Answer);
    // Reads need no confirmation.
    let (mut g, _) = r.begin(ms(3_000), Class::READ, SlotsOf::One(100), ms(6_000));
    r.handle_node_stalled(ms(4_000), hung);
    assert_eq!(r.on_reply(ms(4_100), &mut g, None), Step::Answer);
}

#[test]
fn counters_count_what_happened() {
    let mut r = ready_router(ClusterConfig::default());
    assert_eq!(r.stats().refreshes, 1);
    assert_eq!(r.stats().maps_taken, 1);
    let (mut a, _) = r.begin(ms(10), CLASS_SET, SlotsOf::One(42), ms(5_000));
    let moved = ClusterReply::Moved {
        slot: 42,
        host: "127.0.0.1",
        port: 7002,
    };
    r.on_reply(ms(10), &mut a, Some(moved));
    let ask = ClusterReply::Ask {
        slot: 42,
        host: "127.0.0.1",
        port: 7003,
    };
    r.on_reply(ms(10), &mut a, Some(ask));
    r.on_reply(ms(10), &mut a, Some(ClusterReply::TryAgain));
    let lost = Outcome::Indeterminate(IndeterminateCause::ConnectionLost(
        DisconnectReason::PingTimeout,
    ));
    r.on_outcome(ms(20), &mut a, lost);
    let stats = r.stats();
    assert_eq!(
        (
            stats.moved,
            stats.ask,
            stats.retries,
            stats.rerouted_after_loss
        ),
        (1, 1, 1, 1)
    );
}

#[test]
fn becoming_ready_asks_for_nothing_and_a_new_reason_is_kept() {
    let mut r = ready_router(ClusterConfig::default());
    // The map was taken while its nodes were still connecting: one more
    // look, then only the periodic check.
    let at = r.poll_timeout().unwrap();
    r.poll_refresh(at).unwrap();
    assert_eq!(r.handle_refresh(at, &[&three()]), Refreshed::Unchanged);
    assert_eq!(r.poll_timeout(), Some(at + Duration::from_secs(60)));
    let node = r.node_id("127.0.0.1", 7002).unwrap();
    let refused = DisconnectReason::Transport(TransportError::Refused);
    let changes = r.changes();
    r.handle_node_phase(ms(100), node, false, Some(DisconnectReason::PingTimeout));
    assert_eq!(r.reason(node), Some(DisconnectReason::PingTimeout));
    r.handle_node_phase(ms(200), node, false, Some(refused));
    assert_eq!(r.reason(node), Some(refused), "the latest reason");
    assert_eq!(r.changes(), changes + 2);
    // The same news twice changes nothing.
    r.handle_node_phase(ms(300), node, false, Some(refused));
    assert_eq!(r.changes(), changes + 2);
    // Back up: used again, although its last failure is remembered.
    r.handle_node_phase(ms(400), node, true, None);
    let (_, step) = r.begin(ms(401), CLASS_SET, SlotsOf::One(6000), ms(5_000));
    assert_eq!(send_port(&r, step), (7002, false));
    // A replica that leaves asks for a look; coming back asks for nothing.
    let at = r.poll_timeout().unwrap();
    r.poll_refresh(at).unwrap();
    r.handle_refresh(at, &[&three()]);
    let replica = r.node_id("127.0.0.1", 7101).unwrap();
    r.handle_node_phase(ms(1_000), replica, true, None);
    r.handle_node_phase(ms(1_001), replica, false, Some(refused));
    let at = r.poll_timeout().unwrap();
    assert!(at < ms(1_200), "{at:?}");
    r.poll_refresh(at).unwrap();
    r.handle_refresh(at, &[&three()]);
    let periodic = r.poll_timeout().unwrap();
    assert!(periodic >= at + Duration::from_secs(59), "{periodic:?}");
    r.handle_node_phase(ms(1_500), replica, true, None);
    assert_eq!(r.poll_timeout(), Some(periodic));
}

#[test]
fn a_rerouted_write_that_then_times_out_may_have_run() {
    let mut r = ready_router(ClusterConfig::default());
    let (mut a, _) = r.begin(ms(0), CLASS_SET, SlotsOf::One(100), ms(3_000));
    let reason = DisconnectReason::Transport(TransportError::Reset);
    let lost = Outcome::Indeterminate(IndeterminateCause::ConnectionLost(reason));
    assert!(matches!(
        r.on_outcome(ms(10), &mut a, lost),
        Step::Wait { .. }
    ));
    let at = r.poll_timeout().unwrap();
    r.poll_refresh(at).unwrap();
    let after = map(&[(0, 5460, 7101), (5461, 10922, 7002), (10923, 16383, 7003)]);
    r.handle_refresh(at, &[&after]);
    let step = r.resume(at, &mut a);
    assert_eq!(send_port(&r, step), (7101, false));
    assert_eq!(
        r.on_outcome(ms(3_000), &mut a, Outcome::TimedOut),
        Step::Fail(Failure::Outcome(Outcome::Indeterminate(
            IndeterminateCause::ConnectionLost(reason)
        )))
    );
    // Under FailFast too: a lost resend-safe write is never "not applied".
    let mut r = ready_router(ClusterConfig {
        offline: OfflinePolicy::FailFast,
        ..ClusterConfig::default()
    });
    let (mut a, _) = r.begin(ms(0), CLASS_SET, SlotsOf::One(100), ms(3_000));
    assert_eq!(
        r.on_outcome(ms(10), &mut a, lost),
        Step::Fail(Failure::Outcome(lost))
    );
}

#[test]
fn replica_reads_take_turns_over_the_replicas() {
    // One shard, two replicas (7101, 7201).
    let reply = b"*1\r\n*5\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:7001\r\n\
        *2\r\n$9\r\n127.0.0.1\r\n:7101\r\n*2\r\n$9\r\n127.0.0.1\r\n:7201\r\n";
    let view = map_from(reply);
    let mut r = Router::new(
        ClusterConfig {
            replica_reads: true,
            ..ClusterConfig::default()
        },
        [("127.0.0.1", 7001)],
    );
    r.poll_refresh(ms(0)).unwrap();
    r.handle_refresh(ms(0), &[&view]);
    for port in [7001, 7101, 7201] {
        let id = r.node_id("127.0.0.1", port).unwrap();
        r.handle_node_phase(ms(1), id, true, None);
    }
    let mut ports = Vec::new();
    for _ in 0..4 {
        let (_, step) = r.begin(ms(2), Class::READ, SlotsOf::One(9), ms(5_000));
        ports.push(send_port(&r, step).0);
    }
    assert!(ports.iter().all(|&p| p == 7101 || p == 7201), "{ports:?}");
    assert!(ports.windows(2).all(|w| w[0] != w[1]), "in turn: {ports:?}");
}

#[test]
fn a_map_read_at_the_instant_of_the_reply_does_not_confirm_it() {
    let mut r = ready_router(ClusterConfig::default());
    let hung = r.node_id("127.0.0.1", 7001).unwrap();
    let (mut a, _) = r.begin(ms(1_000), CLASS_INCR, SlotsOf::One(100), ms(6_000));
    r.handle_node_stalled(ms(2_000), hung);
    r.poll_refresh(ms(2_000)).unwrap();
    assert!(matches!(
        r.on_reply(ms(2_050), &mut a, None),
        Step::Wait { .. }
    ));
    r.handle_refresh(ms(2_050), &[&three()]);
    assert!(matches!(r.resume(ms(2_050), &mut a), Step::Wait { .. }));
}

#[test]
fn a_deadline_says_no_route_or_timed_out_by_what_was_known() {
    // No map at all: no route.
    let mut r = Router::new(ClusterConfig::default(), [("127.0.0.1", 7001)]);
    let (mut a, _) = r.begin(ms(0), CLASS_SET, SlotsOf::One(100), ms(1_000));
    assert_eq!(
        r.resume(ms(1_000), &mut a),
        Step::Fail(Failure::NoRoute { slot: Some(100) })
    );
    // A slot no shard serves: no route.
    let mut r = Router::new(ClusterConfig::default(), [("127.0.0.1", 7001)]);
    r.poll_refresh(ms(0)).unwrap();
    r.handle_refresh(ms(0), &[&map(&[(200, 16383, 7001)])]);
    let (mut a, step) = r.begin(ms(1), CLASS_SET, SlotsOf::One(100), ms(1_000));
    assert_eq!(step, Step::Wait { until: ms(1_000) });
    assert_eq!(
        r.resume(ms(1_000), &mut a),
        Step::Fail(Failure::NoRoute { slot: Some(100) })
    );
    // Served, but refused (READONLY) until the deadline, no failure known.
    let mut r = ready_router(ClusterConfig::default());
    let (mut a, _) = r.begin(ms(0), CLASS_SET, SlotsOf::One(100), ms(1_000));
    assert!(matches!(
        r.on_reply(ms(0), &mut a, Some(ClusterReply::ReadOnly)),
        Step::Wait { .. }
    ));
    assert_eq!(
        r.resume(ms(1_000), &mut a),
        Step::Fail(Failure::Outcome(Outcome::TimedOut))
    );
}

#[test]
fn a_moved_to_a_new_node_adds_it_to_the_map() {
    let mut r = ready_router(ClusterConfig::default());
    let (mut a, _) = r.begin(ms(10), CLASS_SET, SlotsOf::One(42), ms(5_000));
    let moved = ClusterReply::Moved {
        slot: 42,
        host: "127.0.0.1",
        port: 7009,
    };
    let step = r.on_reply(ms(10), &mut a, Some(moved));
    assert_eq!(send_port(&r, step), (7009, false));
    let new = r.node_id("127.0.0.1", 7009).unwrap();
    assert_eq!(r.primary_for(42), Some(new));
    assert_eq!(r.role(new), Some(Role::Primary));
    assert!(r.wanted(new));
}

#[test]
fn a_full_node_table_gives_up_places_the_map_no_longer_names() {
    type Small = ClusterRouter<4, 64>;
    let mut r = Small::new(ClusterConfig::default(), [("127.0.0.1", 7000)]);
    r.poll_refresh(ms(0)).unwrap();
    // Two primaries and their replicas: the seed (not in the map) gives
    // its place up to the fourth.
    let view: Topology<4, 64> = {
        let bytes = slots_reply(&[(0, 8000, 7001), (8001, 16383, 7002)]);
        let Ok(Decoded::Frame { frame, .. }) = decode(&bytes, &Limits::REDIS) else {
            panic!("bad fixture")
        };
        let mut m = Topology::new();
        m.parse_slots(&frame, "127.0.0.1").unwrap();
        m
    };
    assert!(matches!(
        r.handle_refresh(ms(0), &[&view]),
        Refreshed::Changed { .. }
    ));
    for port in [7001, 7002, 7101, 7102] {
        assert!(r.node_id("127.0.0.1", port).is_some(), "{port}");
    }
    assert_eq!(r.node_id("127.0.0.1", 7000), None);
    assert_eq!(r.primary_for(0), r.node_id("127.0.0.1", 7001));
    assert_eq!(r.primary_for(16383), r.node_id("127.0.0.1", 7002));
    // Full of nodes the map names: a MOVED elsewhere is the answer as is.
    let (mut a, _) = r.begin(ms(1), CLASS_SET, SlotsOf::One(1), ms(5_000));
    let moved = ClusterReply::Moved {
        slot: 1,
        host: "127.0.0.1",
        port: 7009,
    };
    assert_eq!(r.on_reply(ms(1), &mut a, Some(moved)), Step::Answer);
}

#[test]
fn refreshes_ask_ready_primaries_first_in_turn_and_never_a_hung_one_first() {
    let mut r = ready_router(ClusterConfig::default());
    let down = r.node_id("127.0.0.1", 7001).unwrap();
    let hung = r.node_id("127.0.0.1", 7002).unwrap();
    let fine = r.node_id("127.0.0.1", 7003).unwrap();
    r.handle_node_phase(ms(10), down, false, Some(DisconnectReason::PingTimeout));
    r.handle_node_stalled(ms(10), hung);
    let replicas: Vec<NodeId> = [7101, 7102, 7103]
        .iter()
        .map(|&p| r.node_id("127.0.0.1", p).unwrap())
        .collect();
    for &id in &replicas {
        r.handle_node_phase(ms(11), id, true, None);
    }
    let mut firsts = Vec::new();
    let mut now = ms(100);
    for _ in 0..12 {
        let at = r.poll_timeout().unwrap().max(now);
        let ask = r
            .poll_refresh(at)
            .expect("degraded: refreshed every interval");
        assert_eq!(ask.nodes.len(), 3);
        // The one ready, unsuspected primary, then ready replicas.
        assert_eq!(ask.nodes[0], fine, "{:?}", ask.nodes);
        assert!(
            ask.nodes[1..].iter().all(|n| replicas.contains(n)),
            "{:?}",
            ask.nodes
        );
        assert!(!ask.nodes.contains(&hung) && !ask.nodes.contains(&down));
        firsts.push(ask.nodes[1]);
        r.handle_refresh(at, &[&three()]);
        now = at;
    }
    firsts.sort();
    firsts.dedup();
    assert!(firsts.len() >= 2, "the replicas take turns: {firsts:?}");
}

#[test]
fn keyless_commands_skip_primaries_that_are_down() {
    let mut r = ready_router(ClusterConfig::default());
    let down = r.node_id("127.0.0.1", 7002).unwrap();
    r.handle_node_phase(ms(10), down, false, Some(DisconnectReason::PingTimeout));
    for _ in 0..9 {
        let (_, step) = r.begin(ms(11), Class::READ, SlotsOf::Keyless, ms(5_000));
        let (port, _) = send_port(&r, step);
        assert!(port == 7001 || port == 7003, "{port}");
    }
    // Replicas never take keyless commands.
    for port in [7101, 7102, 7103] {
        let id = r.node_id("127.0.0.1", port).unwrap();
        r.handle_node_phase(ms(12), id, true, None);
    }
    for _ in 0..9 {
        let (_, step) = r.begin(ms(13), Class::READ, SlotsOf::Keyless, ms(5_000));
        assert!(send_port(&r, step).0 < 7100);
    }
}

#[test]
fn the_jitter_spreads_refreshes_over_the_jitter_window() {
    let mut r = ready_router(ClusterConfig::default());
    let node = r.node_id("127.0.0.1", 7001).unwrap();
    r.handle_node_phase(ms(10), node, false, Some(DisconnectReason::PingTimeout));
    let mut gaps = Vec::new();
    let mut last = r.poll_timeout().unwrap();
    r.poll_refresh(last).unwrap();
    for _ in 0..200 {
        r.handle_refresh(last, &[&three()]);
        let at = r.poll_timeout().unwrap();
        gaps.push((at - last).as_micros());
        r.poll_refresh(at).unwrap();
        last = at;
    }
    assert!(
        gaps.iter().all(|&g| (50_000..=75_000).contains(&g)),
        "{gaps:?}"
    );
    let spread = gaps.iter().max().unwrap() - gaps.iter().min().unwrap();
    assert!(spread > 20_000, "spread {spread} µs");
    let mut distinct = gaps.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > 150, "{} distinct gaps", distinct.len());
}

#[test]
fn commands_for_a_hung_node_wait_instead_of_being_written() {
    let mut r = ready_router(ClusterConfig::default());
    let hung = r.node_id("127.0.0.1", 7001).unwrap();
    let (mut first, _) = r.begin(ms(1_000), CLASS_INCR, SlotsOf::One(100), ms(6_000));
    r.handle_node_stalled(ms(1_500), hung);
    // A new command for its slots is held, not written.
    let (mut held, step) = r.begin(ms(1_600), CLASS_INCR, SlotsOf::One(200), ms(6_600));
    assert_eq!(step, Step::Wait { until: ms(6_600) });
    // Other shards are not held.
    let (_, step) = r.begin(ms(1_600), CLASS_INCR, SlotsOf::One(6000), ms(6_600));
    assert_eq!(send_port(&r, step), (7002, false));
    // It answers (a slow command, not a hang): the held one goes on.
    let changes = r.changes();
    assert!(matches!(
        r.on_reply(ms(1_700), &mut first, None),
        Step::Wait { .. }
    ));
    assert!(r.changes() > changes, "waiters are woken");
    let step = r.resume(ms(1_700), &mut held);
    assert_eq!(send_port(&r, step), (7001, false));
}

#[test]
fn a_map_read_older_than_a_moved_does_not_undo_it() {
    let mut r = ready_router(ClusterConfig::default());
    // A refresh begins...
    let at = r.poll_timeout().unwrap();
    r.poll_refresh(at).unwrap();
    // ...a MOVED says slot 42 is now 7002's...
    let (mut a, _) = r.begin(at, CLASS_SET, SlotsOf::One(42), at + Duration::from_secs(5));
    let moved = ClusterReply::Moved {
        slot: 42,
        host: "127.0.0.1",
        port: 7002,
    };
    r.on_reply(at, &mut a, Some(moved));
    // ...and the views, read before it, still say 7001 (and move another
    // slot): the map is taken, the newer MOVED stays.
    let view = map(&[
        (0, 40, 7001),
        (41, 5460, 7003),
        (5461, 10922, 7002),
        (10923, 16383, 7003),
    ]);
    assert!(matches!(
        r.handle_refresh(at, &[&view]),
        Refreshed::Changed { .. }
    ));
    assert_eq!(r.primary_for(42), r.node_id("127.0.0.1", 7002));
    assert_eq!(r.primary_for(41), r.node_id("127.0.0.1", 7003));
    // A later read is newer than the patch: it wins.
    let next = r.poll_timeout().unwrap().max(at + Duration::from_millis(1));
    r.poll_refresh(next).unwrap();
    assert!(matches!(
        r.handle_refresh(next, &[&view]),
        Refreshed::Changed { .. }
    ));
    assert_eq!(r.primary_for(42), r.node_id("127.0.0.1", 7003));
}

//! Transcripts of the resolver's decisions: three sentinels (26379..26381)
//! watching `mymaster`, whose master moves between 10.0.0.1..3:6379.
//! Answers are decoded from the bytes a sentinel sends.

extern crate std;

use std::format;
use std::vec::Vec as StdVec;

use proptest::prelude::*;

use super::*;
use crate::resp::{Decoded, Limits, decode};

type R = Resolver<5>;

const S0: SentinelId = SentinelId(0);
const S1: SentinelId = SentinelId(1);
const S2: SentinelId = SentinelId(2);

fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

/// Master number `n`: 10.0.0.n:6379.
fn node(n: u8) -> NodeAddr {
    NodeAddr::new(&format!("10.0.0.{n}"), 6379).unwrap()
}

/// What a sentinel replies when it names master `n`, decoded from its bytes.
fn names(n: u8) -> Answer {
    let host = format!("10.0.0.{n}");
    let bytes = format!("*2\r\n${}\r\n{host}\r\n$4\r\n6379\r\n", host.len());
    answer_from(bytes.as_bytes())
}

/// What a sentinel that does not monitor the name replies (RESP3 null).
fn nil() -> Answer {
    answer_from(b"_\r\n")
}

#[track_caller]
fn answer_from(bytes: &[u8]) -> Answer {
    let Ok(Decoded::Frame { frame, .. }) = decode(bytes, &Limits::REDIS) else {
        panic!("bad fixture {}", bytes.escape_ascii());
    };
    parse_master_answer(&frame)
}

/// `+switch-master` from master `old` to master `new`.
fn switch(old: u8, new: u8) -> StdVec<u8> {
    format!("mymaster 10.0.0.{old} 6379 10.0.0.{new} 6379").into_bytes()
}

fn three() -> R {
    R::new(
        SentinelConfig::default(),
        "mymaster",
        [
            ("127.0.0.1", 26379),
            ("127.0.0.1", 26380),
            ("127.0.0.1", 26381),
        ],
    )
    .expect("valid")
}

#[track_caller]
fn ask(r: &mut R, now: Instant) -> Ask<5> {
    r.poll_ask(now).expect("a round is due")
}

#[track_caller]
fn no_ask(r: &mut R, now: Instant) {
    assert_eq!(r.poll_ask(now), None, "no round due at {now:?}");
}

#[track_caller]
fn change(r: &mut R) -> (Option<NodeAddr>, Option<NodeAddr>, ChangeCause) {
    let c = r.poll_change().expect("a master change");
    (c.from, c.to, c.cause)
}

fn order(r: &R) -> StdVec<SentinelId> {
    r.order().to_vec()
}

fn watchers(r: &R) -> StdVec<SentinelId> {
    r.watchers().collect()
}

/// A resolver that found master 1 in a first round at 0-2 ms (all three
/// agreeing) and drained the change.
fn resolved() -> R {
    let mut r = three();
    ask(&mut r, ms(0));
    r.handle_answer(ms(1), S0, names(1));
    assert_eq!(
        r.handle_answer(ms(2), S1, names(1)),
        Some(RoundOutcome::Changed { votes: 2 })
    );
    r.poll_change();
    r
}

#[test]
fn the_first_round_takes_what_a_majority_names() {
    let mut r = three();
    assert_eq!(r.master(), None);
    assert_eq!(r.poll_timeout(), Some(ms(0)), "a round is due at once");
    let a = ask(&mut r, ms(0));
    assert_eq!(&a.sentinels[..], &[S0, S1, S2], "every sentinel, at once");
    assert_eq!(a.until, ms(500));
    no_ask(&mut r, ms(1));
    assert_eq!(r.poll_timeout(), Some(ms(500)));

    assert_eq!(r.handle_answer(ms(3), S2, names(1)), None, "1 of 3");
    assert_eq!(
        r.handle_answer(ms(4), S0, names(1)),
        Some(RoundOutcome::Changed { votes: 2 }),
        "2 of 3 is a majority: no need to wait for the third"
    );
    assert_eq!(r.master(), Some(&node(1)));
    assert_eq!(r.changes(), 1);
    assert_eq!(change(&mut r), (None, Some(node(1)), ChangeCause::Resolved));
    assert_eq!(r.poll_change(), None);
    assert_eq!(r.last_error(), None);
    assert_eq!(order(&r), [S0, S1, S2], "the first in order named it");

    // The third answer comes after the round: ignored.
    assert_eq!(r.handle_answer(ms(5), S1, names(2)), None);
    assert_eq!(r.master(), Some(&node(1)));
    assert_eq!(r.stats().ignored, 1);
}

#[test]
fn a_disagreement_goes_to_the_larger_side() {
    let mut r = three();
    ask(&mut r, ms(0));
    assert_eq!(r.handle_answer(ms(1), S0, names(2)), None);
    assert_eq!(r.handle_answer(ms(2), S1, names(1)), None);
    assert_eq!(
        r.handle_answer(ms(3), S2, names(1)),
        Some(RoundOutcome::Changed { votes: 2 })
    );
    assert_eq!(r.master(), Some(&node(1)));
    // S1 was the first in order to name the winner: to the front, past
    // S0, which named another; the others keep their order.
    assert_eq!(order(&r), [S1, S0, S2]);
    assert_eq!(watchers(&r), [S1, S0]);
}

#[test]
fn a_tie_goes_to_the_sentinel_earliest_in_the_order() {
    let mut r = three();
    ask(&mut r, ms(0));
    r.handle_answer(ms(1), S1, names(1));
    r.handle_answer(ms(2), S2, Answer::Failed);
    assert_eq!(
        r.handle_answer(ms(3), S0, names(2)),
        Some(RoundOutcome::Changed { votes: 1 }),
        "all answered: one vote each"
    );
    assert_eq!(r.master(), Some(&node(2)), "S0 is ahead of S1");
}

#[test]
fn one_sentinel_down_the_other_two_still_decide() {
    let mut r = three();
    ask(&mut r, ms(0));
    r.handle_answer(ms(1), S0, Answer::Failed);
    r.handle_answer(ms(2), S2, names(3));
    assert_eq!(
        r.handle_answer(ms(3), S1, names(3)),
        Some(RoundOutcome::Changed { votes: 2 })
    );
    assert_eq!(r.master(), Some(&node(3)));
    // The failed one sinks: the watchers are the two that answer.
    assert_eq!(order(&r), [S1, S2, S0]);
    assert_eq!(watchers(&r), [S1, S2]);
}

#[test]
fn the_sentinel_that_answered_moves_to_the_front() {
    let mut r = three();
    ask(&mut r, ms(0));
    r.handle_answer(ms(1), S0, Answer::Failed);
    r.handle_answer(ms(2), S1, Answer::Failed);
    r.handle_answer(ms(3), S2, names(1));
    assert_eq!(order(&r), [S2, S0, S1]);

    // Healthy sentinels keep their places, whoever answers first.
    let mut r = resolved();
    let a = ask(&mut r, ms(1_002));
    assert_eq!(&a.sentinels[..], &[S0, S1, S2]);
    r.handle_answer(ms(1_003), S2, names(1));
    assert_eq!(
        r.handle_answer(ms(1_004), S1, names(1)),
        Some(RoundOutcome::Confirmed { votes: 2 })
    );
    assert_eq!(order(&r), [S0, S1, S2]);
    assert_eq!(r.poll_change(), None, "confirming is no change");
}

#[test]
fn all_failed_keeps_the_master_and_asks_again_sooner() {
    // With no master known yet.
    let mut r = three();
    ask(&mut r, ms(0));
    r.handle_answer(ms(1), S0, Answer::Failed);
    r.handle_answer(ms(2), S1, answer_from(b"-ERR no such command\r\n"));
    assert_eq!(
        r.handle_answer(ms(3), S2, Answer::Failed),
        Some(RoundOutcome::NoMaster(ResolveError::NoAnswer { failed: 3 }))
    );
    assert_eq!(r.master(), None);
    assert_eq!(r.last_error(), Some(ResolveError::NoAnswer { failed: 3 }));
    assert_eq!(r.poll_timeout(), Some(ms(503)), "ask_timeout, not recheck");
    no_ask(&mut r, ms(502));
    assert_eq!(order(&r), [S0, S1, S2], "all failed alike: no reorder");

    // With a master known: it stays, silence counts as failure.
    let mut r = resolved();
    ask(&mut r, ms(1_002));
    assert_eq!(r.handle_timeout(ms(1_400)), None, "early: a no-op");
    assert_eq!(
        r.handle_timeout(ms(1_502)),
        Some(RoundOutcome::NoMaster(ResolveError::NoAnswer { failed: 3 }))
    );
    assert_eq!(r.master(), Some(&node(1)), "kept");
    assert_eq!(r.poll_change(), None);
    assert_eq!(r.poll_timeout(), Some(ms(2_002)));
    // The sentinels are back: the error clears.
    ask(&mut r, ms(2_002));
    r.handle_answer(ms(2_003), S0, names(1));
    r.handle_answer(ms(2_003), S1, names(1));
    assert_eq!(r.last_error(), None);
}

#[test]
fn sentinels_that_do_not_know_the_name_say_so() {
    let mut r = three();
    ask(&mut r, ms(0));
    r.handle_answer(ms(1), S0, nil());
    r.handle_answer(ms(1), S1, answer_from(b"*-1\r\n"));
    let end = r.handle_answer(ms(1), S2, Answer::Failed);
    assert_eq!(
        end,
        Some(RoundOutcome::NoMaster(ResolveError::UnknownName {
            unknown: 2,
            failed: 1
        }))
    );
    assert_eq!(r.master(), None);
}

#[test]
fn a_silent_sentinel_is_not_waited_for_past_the_deadline() {
    let mut r = three();
    ask(&mut r, ms(0));
    r.handle_answer(ms(1), S1, names(1));
    r.handle_answer(ms(2), S0, Answer::Failed);
    assert_eq!(r.master(), None, "S2 may still answer");
    assert_eq!(
        r.handle_timeout(ms(500)),
        Some(RoundOutcome::Changed { votes: 1 })
    );
    assert_eq!(r.master(), Some(&node(1)));
    assert_eq!(order(&r), [S1, S0, S2]);
    // A late answer is not this round's.
    assert_eq!(r.handle_answer(ms(501), S2, names(2)), None);
    assert_eq!(r.master(), Some(&node(1)));
}

#[test]
fn a_round_past_its_deadline_ends_at_the_next_poll() {
    let mut r = three();
    ask(&mut r, ms(0));
    r.handle_answer(ms(1), S1, names(1));
    // The adapter missed the deadline and polls late: the round ends, and
    // the next is not due yet.
    no_ask(&mut r, ms(700));
    assert_eq!(r.master(), Some(&node(1)));
    assert_eq!(r.poll_timeout(), Some(ms(1_700)));
}

#[test]
fn rechecks_come_every_interval_after_the_last_round_ended() {
    let mut r = resolved();
    // The first round ended at 2 ms.
    assert_eq!(r.poll_timeout(), Some(ms(1_002)));
    no_ask(&mut r, ms(1_001));
    let mut at = 1_002;
    for _ in 0..5 {
        let a = ask(&mut r, ms(at));
        assert_eq!(a.until, ms(at + 500));
        no_ask(&mut r, ms(at + 1));
        r.handle_answer(ms(at + 5), S0, names(1));
        assert_eq!(
            r.handle_answer(ms(at + 7), S2, names(1)),
            Some(RoundOutcome::Confirmed { votes: 2 })
        );
        assert_eq!(r.poll_timeout(), Some(ms(at + 1_007)));
        no_ask(&mut r, ms(at + 1_006));
        at += 1_007;
    }
    assert_eq!(r.changes(), 1);
    assert_eq!(r.stats().rounds, 6);
}

#[test]
fn switch_master_from_the_first_watcher_moves_at_once() {
    let mut r = resolved();
    let first = watchers(&r)[0];
    assert_eq!(
        r.handle_switch_master(ms(300), first, &switch(1, 2)),
        SwitchOutcome::Switched
    );
    assert_eq!(r.master(), Some(&node(2)));
    assert_eq!(
        change(&mut r),
        (Some(node(1)), Some(node(2)), ChangeCause::SwitchMaster)
    );
    assert_eq!(r.suspect(), Some(&node(1)));
    // A confirmation round at once, not at the recheck.
    ask(&mut r, ms(300));
    // Only the failover's leader knows yet; the two others are stale.
    r.handle_answer(ms(301), S1, names(1));
    r.handle_answer(ms(301), S2, names(1));
    assert_eq!(
        r.handle_answer(ms(302), S0, names(2)),
        Some(RoundOutcome::Confirmed { votes: 1 }),
        "a stale majority does not undo a failover"
    );
    assert_eq!(r.master(), Some(&node(2)));
    assert_eq!(r.poll_change(), None);
}

#[test]
fn the_same_switch_from_a_second_sentinel_is_a_no_op() {
    let mut r = resolved();
    assert_eq!(
        r.handle_switch_master(ms(300), S0, &switch(1, 2)),
        SwitchOutcome::Switched
    );
    let changes = r.changes();
    let due = r.poll_timeout();
    assert_eq!(
        r.handle_switch_master(ms(310), S1, &switch(1, 2)),
        SwitchOutcome::AlreadyMaster
    );
    assert_eq!(r.changes(), changes);
    assert_eq!(r.poll_timeout(), due);
    assert_eq!(
        r.poll_change().map(|c| c.cause),
        Some(ChangeCause::SwitchMaster)
    );
    assert_eq!(r.poll_change(), None, "one change, not two");
    assert_eq!(r.stats().switches, 1);
    assert_eq!(r.stats().duplicate_switches, 1);
}

#[test]
fn switches_about_other_names_or_malformed_are_ignored() {
    let mut r = resolved();
    let before = r.changes();
    assert_eq!(
        r.handle_switch_master(ms(5), S0, b"other 10.0.0.1 6379 10.0.0.2 6379"),
        SwitchOutcome::OtherName
    );
    assert_eq!(
        r.handle_switch_master(ms(5), S0, b"mymaster 10.0.0.1 6379 10.0.0.2"),
        SwitchOutcome::Malformed
    );
    assert_eq!(
        r.handle_switch_master(ms(5), S0, b"mymaster 10.0.0.1 6379 10.0.0.2 0"),
        SwitchOutcome::Malformed
    );
    assert_eq!(
        r.handle_switch_master(ms(5), SentinelId(9), &switch(1, 2)),
        SwitchOutcome::UnknownSentinel
    );
    assert_eq!(r.changes(), before);
    assert_eq!(r.master(), Some(&node(1)));
    assert_eq!(r.poll_timeout(), Some(ms(1_002)), "no round forced");
}

#[test]
fn not_master_forgets_it_and_asks_at_once() {
    let mut r = resolved();
    assert!(r.handle_not_master(ms(400)));
    assert_eq!(r.master(), None);
    assert_eq!(
        change(&mut r),
        (Some(node(1)), None, ChangeCause::NotMaster)
    );
    assert_eq!(r.suspect(), Some(&node(1)));
    ask(&mut r, ms(400));
    // Two stale sentinels still name the old master; the leader names the
    // new one, and its single vote wins over the suspect.
    r.handle_answer(ms(401), S0, names(1));
    r.handle_answer(ms(401), S1, names(1));
    assert_eq!(r.master(), None, "a majority for a suspect does not end it");
    assert_eq!(
        r.handle_answer(ms(402), S2, names(2)),
        Some(RoundOutcome::Changed { votes: 1 })
    );
    assert_eq!(r.master(), Some(&node(2)));
    assert_eq!(change(&mut r), (None, Some(node(2)), ChangeCause::Resolved));
    assert_eq!(order(&r)[0], S2);

    // Without a master, a not-master report has nothing to forget.
    let mut r = three();
    assert!(!r.handle_not_master(ms(0)));
    assert_eq!(r.stats().not_master, 0);
}

#[test]
fn a_suspect_named_by_a_minority_alone_is_not_taken_back() {
    let mut r = resolved();
    r.handle_not_master(ms(400));
    ask(&mut r, ms(400));
    r.handle_answer(ms(401), S0, names(1));
    r.handle_answer(ms(401), S1, Answer::Failed);
    assert_eq!(
        r.handle_answer(ms(401), S2, Answer::Failed),
        Some(RoundOutcome::NoMaster(ResolveError::OnlySuspect {
            votes: 1
        }))
    );
    assert_eq!(r.master(), None);
    assert_eq!(r.poll_timeout(), Some(ms(901)));
}

#[test]
fn a_suspect_all_agree_on_is_taken_back_and_a_repeat_is_paced() {
    let mut r = resolved();
    r.handle_not_master(ms(400));
    ask(&mut r, ms(400));
    r.handle_answer(ms(401), S0, names(1));
    r.handle_answer(ms(401), S1, names(1));
    assert_eq!(
        r.handle_answer(ms(402), S2, names(1)),
        Some(RoundOutcome::Changed { votes: 3 }),
        "every sentinel insists, none names another"
    );
    assert_eq!(r.master(), Some(&node(1)));
    // Still a replica: the next round waits, so a replica the sentinels
    // still call master cannot spin connect / ROLE / round.
    assert!(r.handle_not_master(ms(410)));
    no_ask(&mut r, ms(410));
    assert_eq!(r.poll_timeout(), Some(ms(910)));
    ask(&mut r, ms(910));
}

#[test]
fn a_suspicion_lapses() {
    let mut r = resolved();
    r.handle_not_master(ms(400));
    ask(&mut r, ms(400));
    r.handle_answer(ms(401), S0, names(2));
    r.handle_answer(ms(401), S1, names(2));
    assert_eq!(r.master(), Some(&node(2)));
    // Long after (a failover back): master 1 is an ordinary candidate.
    let later = 400 + 5_000 + 2_000;
    ask(&mut r, ms(later));
    r.handle_answer(ms(later + 1), S0, names(1));
    assert_eq!(
        r.handle_answer(ms(later + 1), S1, names(1)),
        Some(RoundOutcome::Changed { votes: 2 })
    );
    assert_eq!(r.suspect(), None);
}

#[test]
fn an_event_during_a_round_overtakes_it() {
    let mut r = resolved();
    ask(&mut r, ms(1_002));
    r.handle_answer(ms(1_003), S0, names(1));
    // The failover lands while the round is out.
    r.handle_switch_master(ms(1_004), S1, &switch(1, 2));
    assert_eq!(r.master(), Some(&node(2)));
    no_ask(&mut r, ms(1_004));
    // Its answers were asked for before the switch: they decide nothing,
    // but are waited for, so that none is taken for the next round's.
    assert_eq!(r.handle_answer(ms(1_005), S2, names(1)), None);
    assert_eq!(
        r.handle_answer(ms(1_005), S1, names(2)),
        Some(RoundOutcome::Overtaken)
    );
    assert_eq!(r.master(), Some(&node(2)));
    ask(&mut r, ms(1_005));
}

#[test]
fn answers_outside_a_round_or_from_strangers_are_ignored() {
    let mut r = three();
    assert_eq!(r.handle_answer(ms(0), S0, names(1)), None, "no round yet");
    ask(&mut r, ms(0));
    assert_eq!(r.handle_answer(ms(1), SentinelId(7), names(1)), None);
    r.handle_answer(ms(1), S0, names(1));
    assert_eq!(
        r.handle_answer(ms(1), S0, names(1)),
        None,
        "a second answer does not vote twice"
    );
    assert_eq!(r.master(), None);
    assert_eq!(r.stats().ignored, 3);
    // An address no one can connect to is no answer.
    r.handle_answer(ms(2), S1, Answer::Master(NodeAddr::new("", 6379).unwrap()));
    r.handle_answer(ms(2), S2, Answer::Master(NodeAddr::new("x", 0).unwrap()));
    assert_eq!(r.master(), Some(&node(1)));
}

#[test]
fn construction_errors_are_typed() {
    let cfg = SentinelConfig::default();
    let one = [("127.0.0.1", 26379)];
    assert_eq!(
        R::new(cfg, "mymaster", []).err(),
        Some(SentinelError::NoSentinels)
    );
    assert_eq!(
        Resolver::<2>::new(cfg, "m", [("a", 1), ("b", 1), ("c", 1)]).err(),
        Some(SentinelError::TooManySentinels { max: 2 })
    );
    assert_eq!(R::new(cfg, "", one).err(), Some(SentinelError::EmptyName));
    let long = "n".repeat(NAME_CAP + 1);
    assert_eq!(
        R::new(cfg, &long, one).err(),
        Some(SentinelError::NameTooLong { max: NAME_CAP })
    );
    assert!(R::new(cfg, &long[..NAME_CAP], one).is_ok());
    let host = "h".repeat(HOST_CAP + 1);
    assert_eq!(
        R::new(cfg, "m", [("a", 1), (host.as_str(), 1)]).err(),
        Some(SentinelError::HostTooLong {
            index: 1,
            max: HOST_CAP
        })
    );
    assert_eq!(
        R::new(cfg, "m", [("a", 0)]).err(),
        Some(SentinelError::BadAddress { index: 0 })
    );
    assert_eq!(
        R::new(cfg, "m", [("a", 1), ("b", 1), ("a", 1)]).err(),
        Some(SentinelError::DuplicateSentinel { index: 2 })
    );
}

#[test]
fn getters_name_the_sentinels() {
    let r = three();
    assert_eq!(r.master_name(), "mymaster");
    assert_eq!(r.addr(S1).map(|a| a.port), Some(26380));
    assert_eq!(r.addr(SentinelId(3)), None);
    assert_eq!(r.sentinel_id("127.0.0.1", 26381), Some(S2));
    assert_eq!(watchers(&r), [S0, S1]);
    let none = R::new(
        SentinelConfig {
            switch_watchers: 0,
            ..SentinelConfig::default()
        },
        "m",
        [("a", 1)],
    )
    .unwrap();
    assert_eq!(none.watchers().count(), 0);
    let all = R::new(
        SentinelConfig {
            switch_watchers: 9,
            ..SentinelConfig::default()
        },
        "m",
        [("a", 1), ("b", 1)],
    )
    .unwrap();
    assert_eq!(all.watchers().count(), 2);
}

#[test]
fn the_change_queue_keeps_the_newest() {
    let mut r = resolved();
    for (i, (old, new)) in [(1, 2), (2, 3), (3, 1), (1, 2), (2, 3)]
        .into_iter()
        .enumerate()
    {
        let now = ms(10 + i as u64);
        assert_eq!(
            r.handle_switch_master(now, S0, &switch(old, new)),
            SwitchOutcome::Switched
        );
    }
    assert_eq!(r.changes(), 6);
    assert_eq!(r.stats().changes_dropped, 1);
    let seen: StdVec<_> = core::iter::from_fn(|| r.poll_change()).collect();
    assert_eq!(seen.len(), CHANGE_QUEUE);
    assert_eq!(seen.last().unwrap().to, Some(node(3)));
    assert_eq!(seen[0].from, Some(node(2)), "the oldest was dropped");
}

#[test]
fn errors_read_as_advice() {
    let e = ResolveError::UnknownName {
        unknown: 3,
        failed: 0,
    };
    assert!(format!("{e}").contains("check the master name"));
    let e = SentinelError::DuplicateSentinel { index: 2 };
    assert!(format!("{e}").contains("listed twice"));
}

/// One input to the resolver, for the property test.
#[derive(Clone, Debug)]
enum Input {
    Poll,
    Answer(u8, u8),
    Timeout,
    Switch(u8, StdVec<u8>),
    NotMaster,
    Wait(u16),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        Just(Input::Poll),
        (0u8..6, 0u8..6).prop_map(|(s, a)| Input::Answer(s, a)),
        Just(Input::Timeout),
        (0u8..4, 0u8..4, 0u8..4).prop_map(|(s, o, n)| Input::Switch(s, switch(o, n))),
        (0u8..4, proptest::collection::vec(any::<u8>(), 0..48))
            .prop_map(|(s, p)| Input::Switch(s, p)),
        Just(Input::NotMaster),
        (0u16..3_000).prop_map(Input::Wait),
    ]
}

proptest! {
    /// Whatever happens in whatever order: no panic, the order stays a
    /// permutation of the sentinels, the timer never points into the past
    /// of a round, every change is queued or counted as dropped, and the
    /// master is only ever an address someone named.
    #[test]
    fn invariants_hold_over_any_inputs(inputs in proptest::collection::vec(input(), 0..80)) {
        let mut r = three();
        let mut now = ms(0);
        let mut seen_changes = 0u64;
        for input in inputs {
            match input {
                Input::Poll => { let _ = r.poll_ask(now); }
                Input::Answer(s, a) => {
                    let answer = match a {
                        0 => Answer::Failed,
                        1 => nil(),
                        n => names(n - 1),
                    };
                    let _ = r.handle_answer(now, SentinelId(s), answer);
                }
                Input::Timeout => { let _ = r.handle_timeout(now); }
                Input::Switch(s, payload) => { let _ = r.handle_switch_master(now, SentinelId(s), &payload); }
                Input::NotMaster => { let _ = r.handle_not_master(now); }
                Input::Wait(d) => now = now + Duration::from_millis(u64::from(d)),
            }
            while let Some(c) = r.poll_change() {
                prop_assert_ne!(c.from, c.to);
                seen_changes += 1;
            }
            let mut ids = r.order().to_vec();
            ids.sort();
            prop_assert_eq!(ids, [S0, S1, S2]);
            prop_assert!(r.watchers().count() <= 2);
            prop_assert!(r.poll_timeout().is_some());
            if let Some(m) = r.master() {
                prop_assert!((0..=4).any(|n| *m == node(n)));
            }
            prop_assert_eq!(seen_changes + r.stats().changes_dropped, r.changes());
        }
    }
}

/// `+failover-state-send-slaveof-noone` as the leader sends it (captured
/// from Redis 7.0.15), promoting master `new` away from master `old`.
fn promoting(old: u8, new: u8) -> StdVec<u8> {
    format!("slave 10.0.0.{new}:6379 10.0.0.{new} 6379 @ mymaster 10.0.0.{old} 6379").into_bytes()
}

#[test]
fn promotion_moves_before_switch_master_and_waits_out_the_replica_role() {
    let mut r = resolved();
    assert_eq!(
        r.handle_promoting(ms(300), S2, &promoting(1, 2)),
        SwitchOutcome::Switched
    );
    assert_eq!(
        change(&mut r),
        (Some(node(1)), Some(node(2)), ChangeCause::Promoting)
    );
    assert_eq!(r.suspect(), Some(&node(1)));
    // Its ROLE says slave until SLAVEOF NO ONE lands: not a reason to leave.
    assert!(!r.handle_not_master(ms(310)));
    assert_eq!(r.master(), Some(&node(2)));
    assert_eq!(r.poll_change(), None);
    // The sentinels still name the old master until +switch-master: a
    // round keeps the one being promoted.
    let due = r.poll_timeout().expect("a recheck");
    ask(&mut r, due);
    for s in [S0, S1, S2] {
        r.handle_answer(due, s, names(1));
    }
    assert_eq!(r.master(), Some(&node(2)), "the old master is suspect");
    // +switch-master then confirms it.
    assert_eq!(
        r.handle_switch_master(due + Duration::from_millis(1), S0, &switch(1, 2)),
        SwitchOutcome::AlreadyMaster
    );
    // After suspect_for, a replica is a replica again.
    let later = ms(300) + SentinelConfig::default().suspect_for + Duration::from_millis(1);
    assert!(r.handle_not_master(later));
    assert_eq!(r.master(), None);
}

#[test]
fn promotion_payloads_that_do_not_fit_are_ignored() {
    let mut r = resolved();
    for bad in [
        &b""[..],
        b"master mymaster 10.0.0.1 6379",
        b"slave x 10.0.0.2 6379 mymaster 10.0.0.1 6379",
        b"slave x 10.0.0.2 0 @ mymaster 10.0.0.1 6379",
    ] {
        assert_eq!(
            r.handle_promoting(ms(1), S0, bad),
            SwitchOutcome::Malformed,
            "{}",
            bad.escape_ascii()
        );
    }
    assert_eq!(
        r.handle_promoting(ms(1), S0, b"slave x 10.0.0.2 6379 @ other 10.0.0.1 6379"),
        SwitchOutcome::OtherName
    );
    // A master name with a blank still parses.
    let mut spaced = R::new(SentinelConfig::default(), "my master", [("127.0.0.1", 1)]).unwrap();
    assert_eq!(
        spaced.handle_promoting(
            ms(1),
            S0,
            b"slave x 10.0.0.2 6379 @ my master 10.0.0.1 6379"
        ),
        SwitchOutcome::Switched
    );
    assert_eq!(r.master(), Some(&node(1)));
}

/// Five sentinels (26379..26383): a strict majority is three.
fn five() -> R {
    R::new(
        SentinelConfig::default(),
        "mymaster",
        [
            ("127.0.0.1", 26379),
            ("127.0.0.1", 26380),
            ("127.0.0.1", 26381),
            ("127.0.0.1", 26382),
            ("127.0.0.1", 26383),
        ],
    )
    .expect("valid")
}

const S3: SentinelId = SentinelId(3);
const S4: SentinelId = SentinelId(4);

#[test]
fn a_round_polled_at_exactly_its_deadline_ends_there() {
    let mut r = three();
    assert!(!r.is_asking(), "idle until the first poll");
    ask(&mut r, ms(0));
    assert!(r.is_asking());
    assert_eq!(r.handle_answer(ms(1), S1, names(1)), None, "1 of 3");
    assert!(r.is_asking());
    no_ask(&mut r, ms(499));
    assert!(r.is_asking(), "a millisecond before `until`: still out");
    no_ask(&mut r, ms(500));
    assert!(!r.is_asking(), "at `until` the round is over");
    assert_eq!(r.master(), Some(&node(1)), "the lone vote won");
    assert_eq!(r.poll_timeout(), Some(ms(1_500)), "a recheck later");
}

#[test]
fn an_answer_at_the_deadline_ends_the_round_before_handle_timeout() {
    let mut r = three();
    ask(&mut r, ms(0));
    assert_eq!(r.handle_answer(ms(499), S0, Answer::Failed), None);
    // The adapter's timer has not fired yet; the answer is counted and the
    // silent S2 fails with the round.
    assert_eq!(
        r.handle_answer(ms(500), S1, names(1)),
        Some(RoundOutcome::Changed { votes: 1 })
    );
    assert!(!r.is_asking());
    assert_eq!(r.master(), Some(&node(1)));
    assert_eq!(r.stats().failed, 2, "S0, then S2 at the deadline");
    assert_eq!(r.handle_timeout(ms(500)), None, "nothing left to end");
}

#[test]
fn a_master_with_no_host_or_no_port_is_a_failed_answer() {
    // Were it a vote, S0's would win the tie: S0 is first in the order.
    for bad in [
        NodeAddr::new("", 6379).unwrap(),
        NodeAddr::new("10.0.0.9", 0).unwrap(),
    ] {
        let mut r = three();
        ask(&mut r, ms(0));
        r.handle_answer(ms(1), S0, Answer::Master(bad.clone()));
        r.handle_answer(ms(1), S2, Answer::Failed);
        assert_eq!(
            r.handle_answer(ms(2), S1, names(1)),
            Some(RoundOutcome::Changed { votes: 1 }),
            "{bad:?}"
        );
        assert_eq!(r.master(), Some(&node(1)), "{bad:?}");
        assert_eq!((r.stats().named, r.stats().failed), (1, 2), "{bad:?}");
        assert_eq!(order(&r), [S1, S0, S2], "{bad:?}: S0 sinks as failed");
    }
}

#[test]
fn every_answer_and_round_is_counted() {
    let mut r = three();
    // Round 1: one names the master, one does not know the name, one fails.
    ask(&mut r, ms(0));
    r.handle_answer(ms(1), S0, names(1));
    r.handle_answer(ms(1), S1, nil());
    assert_eq!(
        r.handle_answer(ms(1), S2, Answer::Failed),
        Some(RoundOutcome::Changed { votes: 1 })
    );
    // Round 2: one names it, two stay silent until the deadline.
    ask(&mut r, ms(1_001));
    r.handle_answer(ms(1_002), S0, names(1));
    assert_eq!(
        r.handle_timeout(ms(1_501)),
        Some(RoundOutcome::Confirmed { votes: 1 })
    );
    // Rounds 3 and 4: nobody answers.
    ask(&mut r, ms(2_501));
    assert_eq!(
        r.handle_timeout(ms(3_001)),
        Some(RoundOutcome::NoMaster(ResolveError::NoAnswer { failed: 3 }))
    );
    ask(&mut r, ms(3_501));
    r.handle_timeout(ms(4_001));
    // The master is reported a replica, twice (a master in between).
    assert!(r.handle_not_master(ms(4_100)));
    ask(&mut r, ms(4_100));
    r.handle_answer(ms(4_101), S0, names(2));
    r.handle_answer(ms(4_101), S1, names(2));
    assert!(r.handle_not_master(ms(4_200)));
    assert_eq!(
        r.stats(),
        SentinelStats {
            rounds: 5,
            rounds_without_master: 2,
            named: 4,
            unknown: 1,
            failed: 1 + 2 + 3 + 3,
            ignored: 0,
            switches: 0,
            duplicate_switches: 0,
            not_master: 2,
            changes_dropped: 0,
        }
    );
}

#[test]
fn a_tie_stays_with_the_earlier_sentinel_when_it_answered_first() {
    let mut r = three();
    ask(&mut r, ms(0));
    r.handle_answer(ms(1), S0, names(2));
    r.handle_answer(ms(2), S1, names(1));
    assert_eq!(
        r.handle_answer(ms(3), S2, Answer::Failed),
        Some(RoundOutcome::Changed { votes: 1 })
    );
    assert_eq!(r.master(), Some(&node(2)), "S0 is ahead of S1");
    assert_eq!(order(&r), [S0, S1, S2]);
}

#[test]
fn with_five_sentinels_a_majority_is_three() {
    let mut r = five();
    ask(&mut r, ms(0));
    assert_eq!(r.handle_answer(ms(1), S0, names(1)), None);
    assert_eq!(
        r.handle_answer(ms(1), S1, names(1)),
        None,
        "2 of 5 is no majority"
    );
    assert_eq!(r.master(), None);
    assert_eq!(
        r.handle_answer(ms(2), S3, names(1)),
        Some(RoundOutcome::Changed { votes: 3 })
    );
    assert_eq!(r.master(), Some(&node(1)));
}

#[test]
fn more_votes_beat_an_earlier_sentinel() {
    let mut r = five();
    ask(&mut r, ms(0));
    r.handle_answer(ms(1), S1, names(1));
    r.handle_answer(ms(1), S2, names(1));
    r.handle_answer(ms(2), S0, names(2));
    r.handle_answer(ms(3), S3, Answer::Failed);
    assert_eq!(
        r.handle_answer(ms(3), S4, Answer::Failed),
        Some(RoundOutcome::Changed { votes: 2 }),
        "two votes against one, though S0 is first in the order"
    );
    assert_eq!(r.master(), Some(&node(1)));
    assert_eq!(order(&r), [S1, S0, S2, S3, S4]);
}

#[test]
fn with_five_sentinels_a_suspect_takes_three_votes_to_come_back() {
    let mut r = five();
    ask(&mut r, ms(0));
    for s in [S0, S1, S2] {
        r.handle_answer(ms(1), s, names(1));
    }
    assert_eq!(r.master(), Some(&node(1)));
    assert!(r.handle_not_master(ms(100)));
    ask(&mut r, ms(100));
    r.handle_answer(ms(101), S0, names(1));
    r.handle_answer(ms(101), S1, names(1));
    for s in [S2, S3] {
        r.handle_answer(ms(101), s, Answer::Failed);
    }
    assert_eq!(
        r.handle_answer(ms(101), S4, Answer::Failed),
        Some(RoundOutcome::NoMaster(ResolveError::OnlySuspect {
            votes: 2
        })),
        "2 of 5 is no majority"
    );
    assert_eq!(r.master(), None);
    // Three, and no other address: taken back.
    ask(&mut r, ms(601));
    for s in [S0, S1, S2] {
        r.handle_answer(ms(602), s, names(1));
    }
    assert_eq!(r.master(), None, "a suspect's majority does not end it");
    r.handle_answer(ms(602), S3, Answer::Failed);
    assert_eq!(
        r.handle_answer(ms(602), S4, Answer::Failed),
        Some(RoundOutcome::Changed { votes: 3 })
    );
    assert_eq!(r.master(), Some(&node(1)));
}

#[test]
fn a_switch_that_names_the_suspect_as_both_ends_clears_it() {
    let mut r = resolved();
    assert!(r.handle_not_master(ms(400)));
    assert_eq!(r.suspect(), Some(&node(1)));
    // No move, to another address: the suspicion stands.
    assert_eq!(
        r.handle_switch_master(ms(401), S0, &switch(2, 2)),
        SwitchOutcome::Switched
    );
    assert_eq!(r.master(), Some(&node(2)));
    assert_eq!(r.suspect(), Some(&node(1)));
    // No move, to the suspect itself: the sentinels vouch for it.
    assert_eq!(
        r.handle_switch_master(ms(402), S0, &switch(1, 1)),
        SwitchOutcome::Switched
    );
    assert_eq!(r.master(), Some(&node(1)));
    assert_eq!(r.suspect(), None);
}

#[test]
fn a_promotion_shields_the_replica_role_until_exactly_suspect_for() {
    let mut r = resolved();
    assert_eq!(
        r.handle_promoting(ms(300), S2, &promoting(1, 2)),
        SwitchOutcome::Switched
    );
    // suspect_for is 5 s.
    assert!(!r.handle_not_master(ms(5_299)));
    assert_eq!(r.master(), Some(&node(2)));
    assert!(r.handle_not_master(ms(5_300)), "the shield is over");
    assert_eq!(r.master(), None);
}

#[test]
fn a_suspicion_ends_at_exactly_suspect_for() {
    // Suspect from 400 ms until 5 400 ms.
    let mut r = resolved();
    r.handle_not_master(ms(400));
    ask(&mut r, ms(5_000));
    r.handle_answer(ms(5_399), S0, names(1));
    assert_eq!(
        r.handle_answer(ms(5_399), S1, names(1)),
        None,
        "still suspect: a majority does not end the round"
    );

    let mut r = resolved();
    r.handle_not_master(ms(400));
    ask(&mut r, ms(5_000));
    r.handle_answer(ms(5_400), S0, names(1));
    assert_eq!(
        r.handle_answer(ms(5_400), S1, names(1)),
        Some(RoundOutcome::Changed { votes: 2 }),
        "no longer suspect: an ordinary majority"
    );
    assert_eq!(r.suspect(), None);
}

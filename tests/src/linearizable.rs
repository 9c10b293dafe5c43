//! A linearizability checker for one Redis string key used as a register
//! (SET, GET, DEL) and as a counter (INCR), for histories recorded against a
//! real server under faults.
//!
//! The question it answers: is there one total order of the operations,
//! consistent with real time (X before Y whenever X ended before Y started),
//! in which every definite answer is what a single correct Redis would have
//! said, and which leaves the value that Redis holds afterwards?
//!
//! The three outcomes a client can report are read the way the library's
//! errors promise:
//!
//! - `Ok(answer)`: took effect exactly once, somewhere between its start and
//!   its end, and `answer` is what Redis said at that point.
//! - `NotApplied`: never took effect. Such an operation is left out, so if its
//!   value shows up anyway nothing can explain it.
//! - `Indeterminate`: may or may not have taken effect, at any time after its
//!   start (a write held in a frozen network can land much later). Its
//!   answer is unknown.
//!
//! The search is Wing & Gong's backtracking with memoization on (the set of
//! operations already placed, the register's value), bounded by a step
//! budget so that a pathological history is reported as undecided rather
//! than hanging a test. Histories are per key (see [`by_key`]); a few dozen
//! mostly sequential operations per key check in milliseconds.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Instant;

/// At most this many operations per key take part in the search (the set
/// of placed operations is a bitmask).
pub const MAX_OPS: usize = 128;
/// Search steps before the answer is "undecided".
pub const DEFAULT_BUDGET: u64 = 5_000_000;

/// What a call asked Redis to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Set(String),
    Get,
    Incr,
    Del,
}

/// A definite answer from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// SET's `OK`.
    Done,
    /// GET's reply; `None` is nil.
    Value(Option<String>),
    /// INCR's new value, or DEL's count of removed keys.
    Int(i64),
    /// An error reply (INCR on a value that is not an integer): no effect.
    Rejected,
}

/// How a call ended, as far as the caller can know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(Answer),
    NotApplied,
    Indeterminate,
}

/// One call in a history.
#[derive(Debug, Clone)]
pub struct Call {
    /// Who made it, for reports only.
    pub who: &'static str,
    pub start: Instant,
    /// `None`: never answered.
    pub end: Option<Instant>,
    pub op: Op,
    pub outcome: Outcome,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} -> {:?}", self.who, self.op, self.outcome)
    }
}

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A witness: indices into the input history, in linearization order
    /// (indeterminate calls that never took effect are not listed).
    Linearizable { order: Vec<usize> },
    /// No order explains the history. `longest` is the longest prefix of an
    /// order the search could build, `stuck` the calls that could not follow.
    NotLinearizable { longest: Vec<usize>, stuck: String },
    /// The search ran out of budget, or the history is too long.
    Undecided { why: String },
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable { .. })
    }
}

/// Splits a history of `(key, call)` into one history per key.
pub fn by_key(history: Vec<(String, Call)>) -> BTreeMap<String, Vec<Call>> {
    let mut keys: BTreeMap<String, Vec<Call>> = BTreeMap::new();
    for (key, call) in history {
        keys.entry(key).or_default().push(call);
    }
    keys
}

/// Checks one key's history, starting from `initial` and ending with
/// `final_value` (what Redis holds afterwards; `None`: no such key).
pub fn check(calls: &[Call], initial: Option<&str>, final_value: Option<&str>) -> Verdict {
    check_with_budget(calls, initial, final_value, DEFAULT_BUDGET)
}

/// [`check`] with an explicit step budget.
pub fn check_with_budget(
    calls: &[Call],
    initial: Option<&str>,
    final_value: Option<&str>,
    budget: u64,
) -> Verdict {
    // Calls that cannot affect anything and whose answer says nothing:
    // not-applied ones, and reads with no answer.
    let mut entries: Vec<Entry> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| match c.outcome {
            Outcome::NotApplied => false,
            Outcome::Indeterminate => c.op != Op::Get,
            Outcome::Ok(_) => true,
        })
        .map(|(index, c)| Entry {
            index,
            start: c.start,
            // An indeterminate call may take effect at any time after its start.
            end: match c.outcome {
                Outcome::Indeterminate => None,
                _ => c.end,
            },
            op: c.op.clone(),
            outcome: c.outcome.clone(),
        })
        .collect();
    if entries.len() > MAX_OPS {
        return Verdict::Undecided {
            why: format!(
                "{} operations on one key; the checker takes at most {MAX_OPS}: split the history or pace the workload",
                entries.len()
            ),
        };
    }
    // Sorted by start, the calls that may go next are a prefix of the
    // undone ones, which lets the candidate scan stop early.
    entries.sort_by_key(|e| e.start);
    let required = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.outcome != Outcome::Indeterminate)
        .fold(0u128, |mask, (i, _)| mask | (1u128 << i));
    let mut search = Search {
        entries: &entries,
        required,
        final_value: final_value.map(str::to_owned),
        failed: HashSet::new(),
        steps: 0,
        budget,
        path: Vec::new(),
        longest: Vec::new(),
        out_of_budget: false,
    };
    if search.dfs(0, initial.map(str::to_owned)) {
        return Verdict::Linearizable {
            order: search.path.iter().map(|&i| entries[i].index).collect(),
        };
    }
    if search.out_of_budget {
        return Verdict::Undecided {
            why: format!(
                "no answer within {budget} search steps ({} operations)",
                entries.len()
            ),
        };
    }
    let placed: u128 = search
        .longest
        .iter()
        .fold(0u128, |mask, &i| mask | (1u128 << i));
    let stuck = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| placed & (1u128 << i) == 0 && required & (1u128 << i) != 0)
        .map(|(_, e)| format!("#{} {}", e.index, calls[e.index]))
        .collect::<Vec<_>>()
        .join("; ");
    Verdict::NotLinearizable {
        longest: search.longest.iter().map(|&i| entries[i].index).collect(),
        stuck: if stuck.is_empty() {
            format!("every call fits, but no order leaves {final_value:?}, the value Redis holds")
        } else {
            stuck
        },
    }
}

struct Entry {
    index: usize,
    start: Instant,
    end: Option<Instant>,
    op: Op,
    outcome: Outcome,
}

struct Search<'a> {
    entries: &'a [Entry],
    required: u128,
    final_value: Option<String>,
    /// States from which no completion exists.
    failed: HashSet<(u128, Option<String>)>,
    steps: u64,
    budget: u64,
    path: Vec<usize>,
    longest: Vec<usize>,
    out_of_budget: bool,
}

impl Search<'_> {
    fn dfs(&mut self, done: u128, register: Option<String>) -> bool {
        if done & self.required == self.required && register == self.final_value {
            return true;
        }
        if self.path.len() > self.longest.len() {
            self.longest = self.path.clone();
        }
        if self.failed.contains(&(done, register.clone())) {
            return false;
        }
        self.steps += 1;
        if self.steps > self.budget {
            self.out_of_budget = true;
            return false;
        }
        // A call may go next only if no undone call ended before it started.
        let first_end = self
            .entries
            .iter()
            .enumerate()
            .filter(|(i, _)| done & (1u128 << i) == 0)
            .filter_map(|(_, e)| e.end)
            .min();
        for (i, entry) in self.entries.iter().enumerate() {
            if first_end.is_some_and(|end| entry.start > end) {
                break;
            }
            if done & (1u128 << i) != 0 {
                continue;
            }
            let Some(next) = apply(&entry.op, &entry.outcome, &register) else {
                continue;
            };
            self.path.push(i);
            if self.dfs(done | (1u128 << i), next) {
                return true;
            }
            self.path.pop();
            if self.out_of_budget {
                return false;
            }
        }
        self.failed.insert((done, register));
        false
    }
}

/// The register after `op` on `register`, or `None` when `outcome`'s answer
/// is not what Redis would have said at that point.
fn apply(op: &Op, outcome: &Outcome, register: &Option<String>) -> Option<Option<String>> {
    let answer = match outcome {
        Outcome::Ok(answer) => Some(answer),
        Outcome::Indeterminate => None,
        // Filtered out before the search.
        Outcome::NotApplied => return None,
    };
    match op {
        Op::Set(value) => match answer {
            None | Some(Answer::Done) => Some(Some(value.clone())),
            Some(_) => None,
        },
        Op::Get => match answer {
            Some(Answer::Value(seen)) if seen == register => Some(register.clone()),
            _ => None,
        },
        Op::Del => {
            let removed = i64::from(register.is_some());
            match answer {
                None => Some(None),
                Some(Answer::Int(n)) if *n == removed => Some(None),
                Some(_) => None,
            }
        }
        Op::Incr => {
            let current = match register {
                None => Some(0),
                Some(text) => text.parse::<i64>().ok(),
            };
            match (current.and_then(|n| n.checked_add(1)), answer) {
                // Redis refuses and nothing changes.
                (None, None | Some(Answer::Rejected)) => Some(register.clone()),
                (Some(new), None) => Some(Some(new.to_string())),
                (Some(new), Some(Answer::Int(seen))) if *seen == new => Some(Some(new.to_string())),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A history written as a transcript: times in milliseconds from `t0`.
    struct History {
        t0: Instant,
        calls: Vec<Call>,
    }

    impl History {
        fn new() -> History {
            History {
                t0: Instant::now(),
                calls: Vec::new(),
            }
        }

        fn at(&self, ms: u64) -> Instant {
            self.t0 + Duration::from_millis(ms)
        }

        fn call(
            mut self,
            who: &'static str,
            from: u64,
            to: Option<u64>,
            op: Op,
            outcome: Outcome,
        ) -> Self {
            let call = Call {
                who,
                start: self.at(from),
                end: to.map(|t| self.at(t)),
                op,
                outcome,
            };
            self.calls.push(call);
            self
        }

        fn set(self, from: u64, to: u64, value: &str) -> Self {
            self.call(
                "c",
                from,
                Some(to),
                Op::Set(value.into()),
                Outcome::Ok(Answer::Done),
            )
        }

        fn get(self, from: u64, to: u64, seen: Option<&str>) -> Self {
            let seen = seen.map(str::to_owned);
            self.call(
                "c",
                from,
                Some(to),
                Op::Get,
                Outcome::Ok(Answer::Value(seen)),
            )
        }

        fn incr(self, from: u64, to: u64, seen: i64) -> Self {
            self.call(
                "c",
                from,
                Some(to),
                Op::Incr,
                Outcome::Ok(Answer::Int(seen)),
            )
        }

        fn del(self, from: u64, to: u64, removed: i64) -> Self {
            self.call(
                "c",
                from,
                Some(to),
                Op::Del,
                Outcome::Ok(Answer::Int(removed)),
            )
        }

        fn set_not_applied(self, from: u64, to: u64, value: &str) -> Self {
            self.call(
                "c",
                from,
                Some(to),
                Op::Set(value.into()),
                Outcome::NotApplied,
            )
        }

        fn set_indeterminate(self, from: u64, to: u64, value: &str) -> Self {
            self.call(
                "c",
                from,
                Some(to),
                Op::Set(value.into()),
                Outcome::Indeterminate,
            )
        }

        fn incr_indeterminate(self, from: u64) -> Self {
            self.call("c", from, None, Op::Incr, Outcome::Indeterminate)
        }

        #[track_caller]
        fn holds(&self, final_value: Option<&str>) {
            let verdict = check(&self.calls, None, final_value);
            assert!(
                verdict.is_linearizable(),
                "expected linearizable: {verdict:?}"
            );
        }

        #[track_caller]
        fn violates(&self, final_value: Option<&str>) {
            let verdict = check(&self.calls, None, final_value);
            assert!(
                matches!(verdict, Verdict::NotLinearizable { .. }),
                "expected a violation: {verdict:?}"
            );
        }
    }

    #[test]
    fn sequential_writes_and_reads() {
        History::new()
            .get(0, 5, None)
            .set(10, 20, "1")
            .get(30, 40, Some("1"))
            .del(50, 60, 1)
            .get(70, 80, None)
            .holds(None);
    }

    #[test]
    fn a_read_of_a_value_never_written() {
        History::new()
            .set(0, 10, "1")
            .get(20, 30, Some("7"))
            .violates(Some("1"));
    }

    #[test]
    fn a_stale_read_after_a_completed_write() {
        History::new()
            .set(0, 10, "1")
            .set(20, 30, "2")
            .get(40, 50, Some("1"))
            .violates(Some("2"));
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        let before = History::new()
            .set(0, 10, "1")
            .set(20, 40, "2")
            .get(25, 35, Some("1"));
        before.holds(Some("2"));
        let after = History::new()
            .set(0, 10, "1")
            .set(20, 40, "2")
            .get(25, 35, Some("2"));
        after.holds(Some("2"));
    }

    #[test]
    fn a_not_applied_write_that_shows_up() {
        // In a read...
        History::new()
            .set(0, 10, "1")
            .set_not_applied(20, 30, "2")
            .get(40, 50, Some("2"))
            .violates(Some("2"));
        // ...or in what Redis holds afterwards.
        History::new()
            .set(0, 10, "1")
            .set_not_applied(20, 30, "2")
            .violates(Some("2"));
        // Not showing up is the promise kept.
        History::new()
            .set(0, 10, "1")
            .set_not_applied(20, 30, "2")
            .get(40, 50, Some("1"))
            .holds(Some("1"));
    }

    #[test]
    fn an_indeterminate_write_may_land_late_or_never() {
        // Landed long after the caller gave up.
        History::new()
            .set(0, 10, "1")
            .set_indeterminate(20, 30, "2")
            .get(100, 110, Some("1"))
            .get(200, 210, Some("2"))
            .holds(Some("2"));
        // Never landed.
        History::new()
            .set(0, 10, "1")
            .set_indeterminate(20, 30, "2")
            .get(100, 110, Some("1"))
            .holds(Some("1"));
        // Cannot land and then un-land.
        History::new()
            .set(0, 10, "1")
            .set_indeterminate(20, 30, "2")
            .get(100, 110, Some("2"))
            .get(200, 210, Some("1"))
            .violates(Some("1"));
    }

    #[test]
    fn a_write_lost_after_it_was_acknowledged() {
        History::new()
            .set(0, 10, "1")
            .set(20, 30, "2")
            .violates(Some("1"));
    }

    #[test]
    fn a_counter() {
        // Overlapping increments may answer in either order.
        History::new()
            .incr(0, 20, 2)
            .incr(5, 15, 1)
            .holds(Some("2"));
        // Two increments cannot both see 1.
        History::new()
            .incr(0, 10, 1)
            .incr(20, 30, 1)
            .violates(Some("2"));
        // An increment without an answer may explain a jump...
        History::new()
            .incr(0, 10, 1)
            .incr_indeterminate(20)
            .incr(40, 50, 3)
            .holds(Some("3"));
        // ...but the final value must still add up.
        History::new().incr(0, 10, 1).violates(Some("3"));
        // INCR on a value that is not a number is refused and changes nothing.
        History::new()
            .set(0, 10, "x")
            .call("c", 20, Some(30), Op::Incr, Outcome::Ok(Answer::Rejected))
            .get(40, 50, Some("x"))
            .holds(Some("x"));
    }

    #[test]
    fn del_counts_what_it_removed() {
        History::new().set(0, 10, "1").del(20, 30, 0).violates(None);
        History::new().del(0, 10, 1).violates(None);
    }

    /// Histories generated from a real register by two clients whose calls
    /// overlap, with linearization points inside each call: linearizable by
    /// construction, and big enough to show the search stays fast.
    #[test]
    fn generated_histories_of_realistic_size() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..20 {
            let t0 = Instant::now();
            let ms = |m: u64| t0 + Duration::from_millis(m);
            let mut register: Option<String> = None;
            let mut calls = Vec::new();
            // Each client is sequential; their calls overlap each other.
            let mut points: Vec<(u64, u64, u64, &'static str)> = Vec::new();
            for (who, offset) in [("a", 0u64), ("b", 7u64)] {
                let mut t = offset;
                for _ in 0..20 {
                    let length = 5 + next(20);
                    let point = t + 1 + next(length - 1);
                    points.push((point, t, t + length, who));
                    t += length + 1 + next(10);
                }
            }
            points.sort();
            for (i, &(_, start, end, who)) in points.iter().enumerate() {
                let (op, outcome) = match next(5) {
                    0 | 1 => {
                        let value = format!("{}", 1000 * (round * 100 + i as u64));
                        register = Some(value.clone());
                        (Op::Set(value), Outcome::Ok(Answer::Done))
                    }
                    2 => (Op::Get, Outcome::Ok(Answer::Value(register.clone()))),
                    3 => {
                        let n = register.as_deref().map_or(0, |v| v.parse::<i64>().unwrap()) + 1;
                        register = Some(n.to_string());
                        (Op::Incr, Outcome::Ok(Answer::Int(n)))
                    }
                    _ => {
                        let removed = i64::from(register.take().is_some());
                        (Op::Del, Outcome::Ok(Answer::Int(removed)))
                    }
                };
                calls.push(Call {
                    who,
                    start: ms(start),
                    end: Some(ms(end)),
                    op,
                    outcome,
                });
            }
            // Turn a few writes into indeterminate ones that did land, and
            // add a few not-applied ones that did not.
            for c in calls
                .iter_mut()
                .filter(|c| !matches!(c.op, Op::Get))
                .take(3)
            {
                c.outcome = Outcome::Indeterminate;
                c.end = None;
            }
            calls.push(Call {
                who: "a",
                start: ms(5),
                end: Some(ms(6)),
                op: Op::Set("never".into()),
                outcome: Outcome::NotApplied,
            });
            let verdict = check_with_budget(&calls, None, register.as_deref(), 1_000_000);
            assert!(verdict.is_linearizable(), "round {round}: {verdict:?}");

            // The same history with one read changed to a value never
            // written must fail.
            let read = calls
                .iter()
                .position(|c| matches!(c.outcome, Outcome::Ok(Answer::Value(_))))
                .expect("the generator made at least one read");
            calls[read].outcome = Outcome::Ok(Answer::Value(Some("never".into())));
            let verdict = check_with_budget(&calls, None, register.as_deref(), 1_000_000);
            assert!(
                matches!(verdict, Verdict::NotLinearizable { .. }),
                "round {round}: {verdict:?}"
            );
        }
    }

    #[test]
    fn a_history_too_long_is_undecided_not_wrong() {
        let t0 = Instant::now();
        let calls: Vec<Call> = (0..=MAX_OPS as u64)
            .map(|i| Call {
                who: "a",
                start: t0 + Duration::from_millis(2 * i),
                end: Some(t0 + Duration::from_millis(2 * i + 1)),
                op: Op::Get,
                outcome: Outcome::Ok(Answer::Value(None)),
            })
            .collect();
        assert!(matches!(
            check(&calls, None, None),
            Verdict::Undecided { .. }
        ));
    }
}

//! The soak, bounded in time: a mixed workload through the fault proxy
//! under seeded random faults, then one summary (see `resilis_tests::soak`).
//!
//! ```text
//! cargo run --release -p resilis-tests --bin soak -- --duration 60s [--seed 1] [--workers 8] \
//!     [--offline fallback|queue|fail-fast]
//! ```
//!
//! Exits non-zero if an acknowledged write was lost, something panicked or a
//! call hung.

use std::time::Duration;

use resilis::OfflineMode;
use resilis_tests::soak::{SoakOptions, run};

fn parse_duration(s: &str) -> Duration {
    let (number, scale) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(m) = s.strip_suffix('m') {
        (m, 60.0)
    } else if let Some(sec) = s.strip_suffix('s') {
        (sec, 1.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("bad duration {s:?}: use e.g. 60s, 2m or 500ms"));
    Duration::from_secs_f64(value * scale)
}

fn main() {
    let mut options = SoakOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--duration" => options.duration = parse_duration(&value),
            "--seed" => options.seed = value.parse().expect("--seed takes a number"),
            "--workers" => options.workers = value.parse().expect("--workers takes a number"),
            "--offline" => {
                options.offline = match value.as_str() {
                    "fallback" => OfflineMode::Fallback,
                    "queue" => OfflineMode::QueueThenFail,
                    "fail-fast" => OfflineMode::FailFast,
                    _ => panic!("--offline takes fallback, queue or fail-fast"),
                }
            }
            _ => panic!(
                "unknown option {flag:?}; options: --duration 60s --seed N --workers N --offline fallback|queue|fail-fast"
            ),
        }
    }
    let summary = run(options);
    println!("{summary}");
    if summary.lost() > 0 || summary.phantom_writes > 0 || summary.panics > 0 || summary.hung > 0 {
        std::process::exit(1);
    }
}

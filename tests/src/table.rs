//! Rendering for the side-by-side benches' markdown tables: durations,
//! counts, one-line error texts, and `min – median – max` over runs.

use std::collections::BTreeMap;
use std::time::Duration;

pub fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

pub fn ms(v: f64) -> String {
    secs(Duration::from_secs_f64(v.max(0.0) / 1000.0))
}

pub fn count(v: f64) -> String {
    format!("{v:.0}")
}

pub fn short(text: &str) -> String {
    let one_line = text.replace(['\n', '\r', '|'], " ");
    if one_line.chars().count() > 80 {
        format!("{}…", one_line.chars().take(80).collect::<String>())
    } else {
        one_line
    }
}

/// `min – median – max` of `values` rendered with `show`; runs where the
/// value is missing are counted as `missing`.
pub fn spread(values: &[Option<f64>], show: impl Fn(f64) -> String, missing: &str) -> String {
    let mut present: Vec<f64> = values.iter().flatten().copied().collect();
    let absent = values.len() - present.len();
    if present.is_empty() {
        return if values.is_empty() {
            "-".into()
        } else {
            format!("{missing} ({absent}/{})", values.len())
        };
    }
    present.sort_by(f64::total_cmp);
    let n = present.len();
    let median = if n % 2 == 1 {
        present[n / 2]
    } else {
        (present[n / 2 - 1] + present[n / 2]) / 2.0
    };
    let mut out = if present[0] == present[n - 1] {
        show(present[0])
    } else {
        format!(
            "{} – {} – {}",
            show(present[0]),
            show(median),
            show(present[n - 1])
        )
    };
    if absent > 0 {
        out += &format!("; {missing} in {absent}/{}", values.len());
    }
    out
}

/// The most frequent text among `texts`, with how many runs saw it.
pub fn commonest(texts: impl IntoIterator<Item = Option<String>>) -> String {
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut runs = 0;
    for text in texts {
        runs += 1;
        *tally
            .entry(short(text.as_deref().unwrap_or("none")))
            .or_default() += 1;
    }
    match tally.into_iter().max_by_key(|(_, n)| *n) {
        Some((text, n)) => format!("{text} ({n}/{runs})"),
        None => "-".into(),
    }
}

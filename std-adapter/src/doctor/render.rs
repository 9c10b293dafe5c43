//! The human-readable report: one line per step with its timing and mark,
//! the evidence indented under it, then the verdict and the fix, the other
//! failures found (cluster mode), and the warnings, each typed one with its
//! own fix.

use std::fmt::Write as _;

use super::report::{Finding, Report, Status};

const LABEL_WIDTH: usize = 16;
const TIME_WIDTH: usize = 11;

/// Renders `report` for a terminal (plain text, no colour codes).
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    match &report.target {
        Some(t) => {
            let _ = writeln!(out, "resilis doctor: {}", t.url);
        }
        None => {
            let _ = writeln!(out, "resilis doctor");
        }
    }
    out.push('\n');
    let indent = " ".repeat(4 + LABEL_WIDTH + TIME_WIDTH);
    for step in &report.steps {
        let time = match step.elapsed_ms {
            Some(ms) => format!("{ms:>8.1} ms"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {} {:<lw$}{:>tw$}  {}",
            step.status.symbol(),
            step.name.label(),
            time,
            step.summary,
            lw = LABEL_WIDTH,
            tw = TIME_WIDTH,
        );
        if step.status != Status::Skipped {
            for line in &step.details {
                let _ = writeln!(out, "{indent}  {line}");
            }
        }
    }
    out.push('\n');
    let v = &report.verdict;
    if v.healthy {
        let _ = writeln!(out, "✓ {}", v.problem);
    } else {
        let _ = writeln!(out, "✗ {}", v.problem);
        if let Some(fix) = &v.fix {
            let _ = writeln!(out, "  fix: {fix}");
        }
    }
    // The first failure is the verdict's already.
    let failures: Vec<&Finding> = v
        .findings
        .iter()
        .filter(|f| f.status == Status::Failed && Some(&f.problem) != Some(&v.problem))
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "\nalso failing:");
        for f in failures {
            finding(&mut out, f);
        }
    }
    let typed: Vec<&Finding> = v
        .findings
        .iter()
        .filter(|f| f.status == Status::Warn)
        .collect();
    if !v.warnings.is_empty() || !typed.is_empty() {
        let _ = writeln!(out, "\nwarnings:");
        for f in typed {
            finding(&mut out, f);
        }
        for w in &v.warnings {
            let _ = writeln!(out, "  ! {w}");
        }
    }
    match v.failed_step {
        Some(step) => {
            let _ = writeln!(out, "\nexit code {} ({} failed)", v.exit_code, step.label());
        }
        None => {
            let _ = writeln!(out, "\nexit code 0");
        }
    }
    out
}

fn finding(out: &mut String, f: &Finding) {
    let _ = writeln!(out, "  {} {}", f.status.symbol(), f.problem);
    let _ = writeln!(out, "    fix: {}", f.fix);
}

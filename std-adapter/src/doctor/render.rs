//! The human-readable report: one line per step with its timing and mark,
//! the evidence indented under it, then the verdict and the fix.

use std::fmt::Write as _;

use super::report::{Report, Status};

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
    if !v.warnings.is_empty() {
        let _ = writeln!(out, "\nwarnings:");
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

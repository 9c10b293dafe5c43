//! What the doctor found: the steps in order, what the server told us, and
//! the verdict. One serde shape serves `--json` and the human renderer, so
//! the two never disagree.
//!
//! The JSON shape is stable: fields are only ever added. Durations are
//! milliseconds as floats (`elapsed_ms`), absent when a step did not run.

use serde::Serialize;

/// The steps, in the order they run. Each failing step has its own exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepName {
    /// `REDIS_URL` / `REDIS_*` / the URL argument / `REDIS_TLS_*` parse.
    Config,
    Dns,
    Tcp,
    Tls,
    Handshake,
    Ping,
    Info,
}

impl StepName {
    pub const ALL: [StepName; 7] = [
        StepName::Config,
        StepName::Dns,
        StepName::Tcp,
        StepName::Tls,
        StepName::Handshake,
        StepName::Ping,
        StepName::Info,
    ];

    /// The process exit code when this step fails (0 means healthy; 1 is an
    /// internal error and 2 a usage error, as clap reports them).
    pub fn exit_code(self) -> i32 {
        match self {
            StepName::Config => 3,
            StepName::Dns => 4,
            StepName::Tcp => 5,
            StepName::Tls => 6,
            StepName::Handshake => 7,
            StepName::Ping => 8,
            StepName::Info => 9,
        }
    }

    /// The label in the human output.
    pub fn label(self) -> &'static str {
        match self {
            StepName::Config => "Config",
            StepName::Dns => "DNS",
            StepName::Tcp => "TCP connect",
            StepName::Tls => "TLS",
            StepName::Handshake => "Redis handshake",
            StepName::Ping => "PING",
            StepName::Info => "INFO",
        }
    }
}

/// The exit codes, as documented in `--help` and the README.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  healthy (warnings, if any, are printed)
  1  internal error of the doctor itself
  2  usage error (bad arguments)
  3  config: REDIS_URL / REDIS_* / REDIS_TLS_* or the URL argument is invalid
  4  DNS: the host name does not resolve
  5  TCP: connection refused, timed out (firewall) or unreachable
  6  TLS: TLS required but not used, used but not spoken, certificate not trusted
  7  Redis handshake: wrong password, unknown user, NOAUTH, DENIED, max clients
  8  PING: no reply in time on an established connection
  9  INFO: the server stopped answering after the handshake";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Worked, but something deserves attention.
    Warn,
    Failed,
    /// Not run, because an earlier step failed (or it does not apply).
    Skipped,
}

impl Status {
    pub fn symbol(self) -> &'static str {
        match self {
            Status::Ok => "✓",
            Status::Warn => "!",
            Status::Failed => "✗",
            Status::Skipped => "-",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    pub name: StepName,
    pub status: Status,
    /// Wall time of the step; `None` when skipped.
    pub elapsed_ms: Option<f64>,
    /// One line: what happened.
    pub summary: String,
    /// Further lines: addresses, certificate fields, server settings.
    pub details: Vec<String>,
}

impl Step {
    pub fn skipped(name: StepName, why: &str) -> Step {
        Step {
            name,
            status: Status::Skipped,
            elapsed_ms: None,
            summary: why.to_owned(),
            details: Vec::new(),
        }
    }
}

/// The effective configuration, password redacted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Target {
    /// `redis://user:***@host:port/db`: never the password itself.
    pub url: String,
    /// Where the settings came from, e.g. `argument` or `REDIS_URL`.
    pub source: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub username: String,
    pub password_set: bool,
    pub db: u32,
    pub protocol: u8,
    /// The `REDIS_*` / `REDIS_TLS_*` variables that were set (names only).
    pub env_used: Vec<String>,
    pub tls_ca_file: Option<String>,
    pub tls_insecure: bool,
    pub tls_server_name: Option<String>,
    pub ping_interval_ms: u64,
    /// The doctor's per-step limit (`--timeout`).
    pub step_timeout_ms: u64,
}

/// PING round trips on the ready connection.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PingStats {
    pub samples_ms: Vec<f64>,
    pub min_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
}

impl PingStats {
    pub fn from_samples(samples_ms: Vec<f64>) -> Option<PingStats> {
        let mut sorted = samples_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let min_ms = *sorted.first()?;
        let max_ms = *sorted.last()?;
        let mid = sorted.len() / 2;
        let median_ms = if sorted.len() % 2 == 1 {
            sorted[mid]
        } else {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        };
        Some(PingStats {
            samples_ms,
            min_ms,
            median_ms,
            max_ms,
        })
    }
}

/// What INFO (and CONFIG GET, where allowed) said about the server.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServerInfo {
    pub version: Option<String>,
    pub mode: Option<String>,
    pub role: Option<String>,
    pub protocol: Option<u8>,
    pub uptime_s: Option<u64>,
    pub connected_clients: Option<u64>,
    pub maxclients: Option<u64>,
    pub used_memory: Option<u64>,
    /// 0 means no limit.
    pub maxmemory: Option<u64>,
    pub maxmemory_policy: Option<String>,
    pub evicted_keys: Option<u64>,
    /// `CONFIG GET save` is not empty; `None` when CONFIG is not allowed.
    pub rdb_enabled: Option<bool>,
    pub rdb_last_bgsave_status: Option<String>,
    pub aof_enabled: Option<bool>,
    /// The server's idle `timeout` in seconds (0: never); `None` when CONFIG
    /// is not allowed.
    pub idle_timeout_s: Option<u64>,
    pub loading: Option<bool>,
}

/// The conclusion: healthy or not, and the one thing to change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub healthy: bool,
    pub exit_code: i32,
    pub failed_step: Option<StepName>,
    /// The core's classification (`DisconnectReason` variant name), when one applies.
    pub reason: Option<String>,
    /// What is wrong, in one sentence.
    pub problem: String,
    /// What to change.
    pub fix: Option<String>,
    /// Things that work now but will bite later.
    pub warnings: Vec<String>,
}

/// Everything `resilis doctor` found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Bumped only when a field changes meaning or goes away.
    pub schema: u32,
    pub target: Option<Target>,
    pub steps: Vec<Step>,
    pub ping: Option<PingStats>,
    pub server: Option<ServerInfo>,
    pub verdict: Verdict,
}

impl Report {
    pub const SCHEMA: u32 = 1;

    pub fn exit_code(&self) -> i32 {
        self.verdict.exit_code
    }

    pub fn step(&self, name: StepName) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The report as pretty JSON (the `--json` output).
    pub fn to_json(&self) -> String {
        // A tree of plain structs, strings and numbers: serialization cannot
        // fail (non-finite floats become null).
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Zeroes every timing, for snapshot tests and reproducible output.
    pub fn without_timings(mut self) -> Report {
        for step in &mut self.steps {
            if step.elapsed_ms.is_some() {
                step.elapsed_ms = Some(0.0);
            }
        }
        if let Some(ping) = &mut self.ping {
            for s in &mut ping.samples_ms {
                *s = 0.0;
            }
            ping.min_ms = 0.0;
            ping.median_ms = 0.0;
            ping.max_ms = 0.0;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let p = PingStats::from_samples(vec![3.0, 1.0, 2.0]).unwrap();
        assert_eq!((p.min_ms, p.median_ms, p.max_ms), (1.0, 2.0, 3.0));
        let p = PingStats::from_samples(vec![4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(p.median_ms, 2.5);
        assert!(PingStats::from_samples(vec![]).is_none());
    }

    #[test]
    fn exit_codes_are_distinct_and_not_clap_s() {
        let mut codes: Vec<i32> = StepName::ALL.iter().map(|s| s.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), StepName::ALL.len());
        assert!(codes.iter().all(|c| *c > 2));
        for step in StepName::ALL {
            assert!(
                EXIT_CODES.contains(&format!("  {}  ", step.exit_code())),
                "{step:?} undocumented"
            );
        }
    }
}

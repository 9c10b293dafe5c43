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
    /// Cluster mode: every seed and node of the slot map, and the map
    /// itself. Also on a single-node URL that reaches a cluster node.
    Cluster,
    /// Sentinel mode: every sentinel asked for the master, the master they
    /// name and its `ROLE`. Runs after Config; the per-connection steps
    /// then run against that master. Also on a single-node URL that
    /// reaches a sentinel.
    Sentinel,
}

impl StepName {
    /// The per-connection steps: every report lists them, in this order.
    /// [`StepName::Cluster`] follows them and [`StepName::Sentinel`]
    /// comes right after Config, each only where it applies.
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
            StepName::Cluster => 10,
            StepName::Sentinel => 11,
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
            StepName::Cluster => "Cluster",
            StepName::Sentinel => "Sentinel",
        }
    }

    /// Where the step sits in a report: Config, Sentinel (the master to
    /// connect to), the other per-connection steps, then Cluster.
    pub(super) fn order(self) -> usize {
        match self {
            StepName::Config => 0,
            StepName::Sentinel => 1,
            StepName::Dns => 2,
            StepName::Tcp => 3,
            StepName::Tls => 4,
            StepName::Handshake => 5,
            StepName::Ping => 6,
            StepName::Info => 7,
            StepName::Cluster => 8,
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
  9  INFO: the server stopped answering after the handshake
  10  cluster: a single-node URL to a cluster node, or (cluster mode) slots
      not served, nodes that disagree, a primary unreachable or failed
  11  sentinel: no sentinel answers, none monitors the master name, no
      majority names one master, the master named says ROLE slave, or a
      single-node URL to a sentinel";

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
    /// `redis://user:***@host:port/db`: never the password itself. In
    /// cluster mode every seed: `redis://user:***@h1:p1,h2:p2/0`.
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
    /// Cluster mode: the seed nodes (`host:port`); `host` and `port` above
    /// are the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_seeds: Option<Vec<String>>,
    /// Sentinel mode: the sentinels (`host:port`), their master name and
    /// their own credentials (never the password). `host` and `port` above
    /// are the master the sentinels named, once the Sentinel step found
    /// one (the first sentinel before that); `username` and
    /// `password_set` are the data nodes'.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<SentinelTarget>,
}

/// Sentinel mode's settings, password redacted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SentinelTarget {
    pub sentinels: Vec<String>,
    pub master_name: String,
    /// `REDIS_SENTINEL_USERNAME`; empty: the default user.
    pub username: String,
    /// `REDIS_SENTINEL_PASSWORD` is set.
    pub password_set: bool,
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

/// What a finding is about: scripts can act on the kind, people read the
/// problem and the fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// A single-node URL reaches a Redis Cluster node: use cluster mode.
    UseClusterMode,
    /// Cluster mode, but a node has cluster support disabled.
    NotACluster,
    /// No node returned a slot map the doctor could read.
    NoSlotMap,
    /// Some of the 16384 slots are served by no primary.
    SlotsUncovered,
    /// No slot map is held by more than half of the nodes that answered.
    NoMajority,
    /// A node's slot map differs from the one most nodes hold.
    ViewDiffers,
    /// A node cannot be reached (DNS, TCP, TLS or the Redis handshake).
    NodeUnreachable,
    /// The cluster reports a node's health as other than `online`.
    NodeNotOnline,
    /// A shard serving slots has no replica that is online and reachable.
    NoReplica,
    /// A single-node URL reaches a Redis Sentinel: use Sentinel mode.
    UseSentinelMode,
    /// A sentinel cannot be reached (DNS, TCP, TLS, its credentials), or
    /// gave no usable answer.
    SentinelUnreachable,
    /// No sentinel monitors the master name (failed), or one does not
    /// while the others do (warning).
    UnknownMasterName,
    /// Sentinels name different masters: a warning while a majority of
    /// them names one, a failure otherwise.
    SentinelsDisagree,
    /// Fewer than a majority of the sentinels answered: if they cannot
    /// reach each other either, a failed master is not replaced.
    SentinelMinority,
    /// The master the sentinels name says `ROLE slave` (or is a sentinel).
    MasterNotMaster,
    /// The master refuses `ROLE` (ACL), which the client asks in every
    /// handshake in Sentinel mode.
    RoleRefused,
}

/// One problem, typed: what is wrong, with whom, and what to change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// [`Status::Failed`] (the application will see errors) or
    /// [`Status::Warn`] (it works now, and will bite later).
    pub status: Status,
    /// The node it is about (`host:port`), when it is about one.
    pub node: Option<String>,
    pub problem: String,
    pub fix: String,
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
    /// The typed problems (cluster and Sentinel checks), failures first; the first
    /// failure is also `problem` and `fix`. Absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

impl Verdict {
    /// Warnings, the typed ones included.
    pub fn warning_count(&self) -> usize {
        self.warnings.len()
            + self
                .findings
                .iter()
                .filter(|f| f.status == Status::Warn)
                .count()
    }
}

/// Slots `start..=end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SlotSpan {
    pub start: u16,
    pub end: u16,
}

impl std::fmt::Display for SlotSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// A node's part in the slot map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    Primary,
    Replica,
    /// A seed the slot map does not list (under this address).
    Unlisted,
}

/// What a node's own slot map says, next to the one most nodes hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewStatus {
    /// The same as most nodes'.
    Agrees,
    Differs,
    /// No slot map from this node (unreachable, refused, unreadable).
    None,
    /// Not asked: beyond the doctor's limit of nodes.
    NotChecked,
}

/// One node of the cluster as the doctor saw it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterNode {
    /// `host:port`.
    pub node: String,
    pub role: NodeRole,
    /// A replica's primary (`host:port`).
    pub primary: Option<String>,
    /// A primary's slots.
    pub slots: Vec<SlotSpan>,
    /// The health the slot map gives (`online`, `fail`, `loading`...).
    pub health: Option<String>,
    pub seed: bool,
    /// `None`: not checked.
    pub reachable: Option<bool>,
    /// Why it could not be reached.
    pub problem: Option<String>,
    pub view: ViewStatus,
}

/// Cluster mode: the slot map most nodes hold, and each node.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterReport {
    /// `host:port` of each seed, in the order given.
    pub seeds: Vec<String>,
    /// `CLUSTER SHARDS`, or `CLUSTER SLOTS` on servers before 7.0.
    pub map_command: Option<String>,
    /// Nodes that returned a slot map.
    pub views: usize,
    /// Of those, how many hold the map below (more than half: a majority).
    pub agreeing: usize,
    pub slots_served: u32,
    /// Slots no primary serves (all of them, not capped).
    pub uncovered: Vec<SlotSpan>,
    /// Primaries first (by first slot), each followed by its replicas.
    pub nodes: Vec<ClusterNode>,
    /// Listed nodes left unchecked: the doctor checks at most 16.
    pub not_checked: usize,
}

/// What a sentinel said when asked for the master.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SentinelAnswer {
    /// It named a master (`master`).
    Named,
    /// It monitors no master of this name (a nil reply).
    UnknownName,
    /// Reached, but an error or no answer in time (`problem`).
    Refused,
    /// Not reached: DNS, TCP, TLS or its handshake failed (`problem`).
    Unreachable,
}

/// One sentinel as the doctor saw it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SentinelNode {
    /// `host:port`.
    pub sentinel: String,
    pub answer: SentinelAnswer,
    /// The master it named (`host:port`).
    pub master: Option<String>,
    /// Why it gave no answer; for `unknown_name`, what it monitors.
    pub problem: Option<String>,
}

/// Sentinel mode: what each sentinel said and the master chosen.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SentinelReport {
    pub master_name: String,
    /// In the order given.
    pub sentinels: Vec<SentinelNode>,
    /// The master the client follows (`host:port`), chosen from the
    /// answers by resilis-core's resolver, as the client chooses it.
    pub master: Option<String>,
    /// Sentinels that named it.
    pub votes: usize,
    /// Sentinels that answered (named a master or said the name is unknown).
    pub answered: usize,
    /// The first word of the master's `ROLE` (`master`, `slave`...); `None`
    /// when not asked (no master, or the connection to it failed).
    pub role: Option<String>,
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
    /// Cluster mode only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterReport>,
    /// Sentinel mode only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<SentinelReport>,
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
    fn sentinel_comes_after_config_and_cluster_last() {
        let mut order = vec![StepName::Cluster, StepName::Sentinel];
        order.extend(StepName::ALL);
        order.sort_by_key(|s| s.order());
        assert_eq!(
            order,
            [
                StepName::Config,
                StepName::Sentinel,
                StepName::Dns,
                StepName::Tcp,
                StepName::Tls,
                StepName::Handshake,
                StepName::Ping,
                StepName::Info,
                StepName::Cluster,
            ]
        );
    }

    #[test]
    fn exit_codes_are_distinct_and_not_clap_s() {
        let every = StepName::ALL
            .iter()
            .chain([&StepName::Cluster, &StepName::Sentinel]);
        let mut codes: Vec<i32> = every.clone().map(|s| s.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), StepName::ALL.len() + 2);
        assert!(codes.iter().all(|c| *c > 2));
        for step in every {
            assert!(
                EXIT_CODES.contains(&format!("  {}  ", step.exit_code())),
                "{step:?} undocumented"
            );
        }
    }
}

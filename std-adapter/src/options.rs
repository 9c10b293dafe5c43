//! What a client is built from: the core's connection config, TLS
//! settings, the offline mode, the fallback cache's bounds, and cluster
//! mode's seeds and router settings; read from the environment, a URL, or
//! set in code.

use std::time::Duration;

use resilis_core::cluster::ClusterConfig;
use resilis_core::sentinel::SentinelConfig;
use resilis_core::{Config, OfflinePolicy, Secret};

use crate::error::Error;
use crate::fallback::FallbackConfig;
use crate::tls::{HostSource, TlsOptions};

/// What commands do while Redis is unavailable (the core's
/// [`OfflinePolicy`], which decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OfflineMode {
    /// The seed's behaviour. Before the first attempt fails, commands wait
    /// for the first connect. Once Redis is known to be unavailable, a GET
    /// is answered from the fallback cache ([`Source::Fallback`]; a key the
    /// cache does not hold fails with the reason, unless
    /// [`FallbackConfig::miss_reads_as_absent`]), and every other command
    /// fails at once with [`Error::ConnectionDown`] naming the reason: not
    /// applied, never applied later.
    #[default]
    Fallback,
    /// Every command fails at once with [`Error::ConnectionDown`] while the
    /// connection is not ready (also before the first connect: use
    /// [`Client::wait_ready`]).
    FailFast,
    /// Commands wait in the bounded offline queue until the connection is
    /// ready or their deadline passes ([`Error::ConnectionDown`] with the
    /// reason, or [`Error::Timeout`] when none is known yet).
    QueueThenFail,
}

impl OfflineMode {
    pub(crate) fn policy(self) -> OfflinePolicy {
        match self {
            OfflineMode::Fallback => OfflinePolicy::Fallback,
            OfflineMode::FailFast => OfflinePolicy::FailFast,
            OfflineMode::QueueThenFail => OfflinePolicy::Queue,
        }
    }
}

/// Everything a client needs: the core's connection config, TLS settings,
/// the offline mode and the fallback cache's bounds.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: Config,
    pub tls: TlsOptions,
    pub offline: OfflineMode,
    pub fallback: FallbackConfig,
    /// Where `config.host` came from, named by an error about it.
    pub host_source: HostSource,
    /// Cluster mode: the seed nodes (`config.host:config.port` is the
    /// first). Set by a URL naming several nodes (`redis://h1:p1,h2:p2`), by
    /// `REDIS_CLUSTER_NODES`, or by [`Options::cluster`].
    pub cluster: Option<Vec<(String, u16)>>,
    /// How the cluster router behaves (redirect budget, refresh pacing).
    pub cluster_config: ClusterConfig,
    /// Each subscriber's buffer bounds.
    pub pubsub: crate::pubsub::PubSubConfig,
    /// Sentinel mode: the master of a Sentinel-monitored group. Set by a
    /// `redis+sentinel://` URL, by `REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`,
    /// or by [`Options::sentinel`].
    pub sentinel: Option<SentinelOptions>,
}

/// Where the sentinels are and which master to follow.
#[derive(Debug, Clone)]
pub struct SentinelOptions {
    pub sentinels: Vec<(String, u16)>,
    /// The name in `sentinel monitor <name> ...`.
    pub master_name: String,
    /// The sentinels' own ACL user and password (`REDIS_SENTINEL_USERNAME`,
    /// `REDIS_SENTINEL_PASSWORD`); the data nodes' come from the URL or
    /// `REDIS_USERNAME` / `REDIS_PASSWORD`. None by default.
    pub username: String,
    pub password: Secret,
    /// Re-check pacing, the ask timeout, how many sentinels to watch.
    pub config: SentinelConfig,
}

impl SentinelOptions {
    pub fn new<S: Into<String>>(
        master_name: &str,
        sentinels: impl IntoIterator<Item = (S, u16)>,
    ) -> SentinelOptions {
        SentinelOptions {
            sentinels: sentinels.into_iter().map(|(h, p)| (h.into(), p)).collect(),
            master_name: master_name.to_owned(),
            username: String::new(),
            password: Secret::default(),
            config: SentinelConfig {
                // Only the failover's leader announces the promotion, the
                // moment from which the old master's writes may be lost:
                // watch three sentinels (all of the usual three).
                switch_watchers: 3,
                ..SentinelConfig::default()
            },
        }
    }
}

impl Options {
    /// The seed's variables (`REDIS_URL`, `REDIS_HOST`, `REDIS_PORT`,
    /// `REDIS_PASSWORD`, `REDIS_TLS`, ...) and the `REDIS_TLS_*` ones. A
    /// `REDIS_TLS_*` setting on a connection without TLS is refused (see
    /// [`TlsOptions::check_tls_on`]).
    pub fn from_env() -> Result<Options, Error> {
        Options::from_lookup(|name: &str| std::env::var(name).ok())
    }

    /// [`Options::from_env`] over any source of variables.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Options, Error> {
        // A REDIS_URL naming several nodes: the core reads the first node's
        // URL (credentials, options), the others are seeds. A Sentinel URL:
        // the core reads the data nodes' URL.
        let url = env("REDIS_URL");
        let sentinel_url = url
            .as_deref()
            .map(crate::seeds::sentinel_url)
            .transpose()?
            .flatten();
        let (url_seeds, first_url) = match (&url, &sentinel_url) {
            (_, Some(s)) => (None, Some(s.data_url.clone())),
            (Some(url), None) => match crate::seeds::split_url(url)? {
                (first, Some(seeds)) => (Some(seeds), Some(first)),
                _ => (None, None),
            },
            (None, None) => (None, None),
        };
        let env = &|name: &str| match (name, &first_url) {
            ("REDIS_URL", Some(first)) => Some(first.clone()),
            _ => env(name),
        };
        let config = Config::from_env(env)?;
        let tls = TlsOptions::from_lookup(env)?;
        tls.check_tls_on(config.tls)?;
        let mut options = Options::from_config(config).tls(tls);
        options.host_source = HostSource::of_env(env);
        if let Some(nodes) = env("REDIS_CLUSTER_NODES") {
            let seeds = crate::seeds::parse_list("REDIS_CLUSTER_NODES", &nodes)?;
            let (host, port) = seeds[0].clone();
            // The first seed is the one the core's config names, unless
            // REDIS_URL/REDIS_HOST chose one already.
            if env("REDIS_URL").is_none() && env("REDIS_HOST").is_none() {
                options.config.host.clear();
                let _ = options.config.host.push_str(&host);
                options.config.port = port;
            }
            options = options.cluster(seeds);
        }
        if let Some(seeds) = url_seeds {
            options = options.cluster(seeds);
        }
        let sentinels = match (sentinel_url, env("REDIS_SENTINELS")) {
            (Some(s), _) => Some(SentinelOptions::new(&s.master_name, s.sentinels)),
            (None, Some(list)) => {
                let sentinels = crate::seeds::parse_list("REDIS_SENTINELS", &list)?;
                let master = env("REDIS_SENTINEL_MASTER").unwrap_or_default();
                crate::seeds::check_master_name("REDIS_SENTINEL_MASTER", &master)?;
                Some(SentinelOptions::new(&master, sentinels))
            }
            (None, None) => {
                if env("REDIS_SENTINEL_MASTER").is_some() {
                    return Err(Error::SentinelConfig {
                        field: "REDIS_SENTINELS",
                        problem: "REDIS_SENTINEL_MASTER is set but no sentinel is named",
                        fix: "set REDIS_SENTINELS=host1:26379,host2:26379 (or use a redis+sentinel:// URL)",
                    });
                }
                None
            }
        };
        if let Some(mut sentinel) = sentinels {
            if let Some(user) = env("REDIS_SENTINEL_USERNAME") {
                sentinel.username = user;
            }
            if let Some(password) = env("REDIS_SENTINEL_PASSWORD").filter(|p| !p.is_empty()) {
                sentinel.password = Secret::new(&password).map_err(|mut e| {
                    e.field = "REDIS_SENTINEL_PASSWORD";
                    Error::Config(e)
                })?;
            }
            options = options.sentinel(sentinel);
        }
        Ok(options)
    }

    /// Sentinel mode: the master is whatever the sentinels say, checked
    /// with `ROLE` on every connect. `config`'s host and port are only a
    /// placeholder until then.
    pub fn sentinel(mut self, sentinel: SentinelOptions) -> Self {
        self.config.require_master = true;
        self.cluster = None;
        self.sentinel = Some(sentinel);
        self
    }

    /// A `redis://` or `rediss://` URL; TLS options at their defaults
    /// (verification against the Mozilla roots): add a CA with `.tls(...)`.
    /// A URL naming several nodes, `redis://[user:pass@]h1:p1,h2:p2[/db]`,
    /// is cluster mode with those seeds.
    pub fn from_url(url: &str) -> Result<Options, Error> {
        if let Some(s) = crate::seeds::sentinel_url(url)? {
            let mut options = Options::from_config(Config::from_url(&s.data_url)?);
            options.host_source = HostSource::Url;
            return Ok(options.sentinel(SentinelOptions::new(&s.master_name, s.sentinels)));
        }
        let (first, seeds) = crate::seeds::split_url(url)?;
        let mut options = Options::from_config(Config::from_url(&first)?);
        options.host_source = HostSource::Url;
        if let Some(seeds) = seeds {
            options = options.cluster(seeds);
        }
        Ok(options)
    }

    pub fn from_config(mut config: Config) -> Options {
        // This adapter sees the bytes under its TLS handshake, so the core
        // can tell a plaintext server (silent on a TLS hello) in 3 s
        // instead of at tls_timeout (10 s). Turn off with
        // `configure(|c| c.tls_silence_timeout = None)`.
        if config.tls_silence_timeout.is_none() {
            config.tls_silence_timeout = Some(resilis_core::Duration::from_secs(3));
        }
        // Every element of a reply becomes a `Value` here (32 bytes), ten
        // times or more the bytes it took on the wire (`_\r\n`, 3 bytes): bound the
        // elements of one reply so that its Values take no more memory than
        // `max_frame_len` lets its bytes take (512 MiB / 32 B: 16 777 216
        // elements by default). Raise with
        // `configure(|c| c.resp_limits.max_elements = ...)`.
        if config.resp_limits.max_elements == resilis_core::resp::Limits::REDIS.max_elements {
            config.resp_limits.max_elements =
                (config.max_frame_len / std::mem::size_of::<crate::Value>()).max(1);
        }
        Options {
            config,
            tls: TlsOptions::default(),
            offline: OfflineMode::default(),
            fallback: FallbackConfig::default(),
            host_source: HostSource::Config,
            cluster: None,
            cluster_config: ClusterConfig::default(),
            pubsub: Default::default(),
            sentinel: None,
        }
    }

    /// Cluster mode: send read-only commands to replicas (see
    /// [`ClusterConfig::replica_reads`]; a read there may not see this
    /// client's latest write).
    pub fn replica_reads(mut self, on: bool) -> Self {
        self.cluster_config.replica_reads = on;
        self
    }

    /// Cluster mode, with these seed nodes besides `config`'s host and port
    /// (any reachable node of the cluster will do; several survive one being
    /// down). Auth, TLS and timeouts apply to every node.
    pub fn cluster<S: Into<String>>(mut self, seeds: impl IntoIterator<Item = (S, u16)>) -> Self {
        let mut all = vec![(self.config.host.as_str().to_owned(), self.config.port)];
        for (host, port) in seeds {
            let host = host.into();
            if !all.iter().any(|(h, p)| *h == host && *p == port) {
                all.push((host, port));
            }
        }
        self.cluster = Some(all);
        self
    }

    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    pub fn offline(mut self, mode: OfflineMode) -> Self {
        self.offline = mode;
        self
    }

    pub fn fallback(mut self, fallback: FallbackConfig) -> Self {
        self.fallback = fallback;
        self
    }

    /// Default deadline of a command (the core's `command_timeout`).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.config.command_timeout = timeout;
        self
    }

    /// Adjusts anything else in the core's config.
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }
}

//! Connection configuration: the seed's defaults, `redis://` / `rediss://`
//! URLs and the `REDIS_*` environment variables, parsed from strings into
//! fixed-capacity storage. Reading the process environment is the adapter's
//! job; [`Config::from_env`] takes a lookup function.
//!
//! Capacities (documented limits of the no-alloc storage): host 255 bytes
//! (the DNS maximum), username 128, password 256, client name 64.

use core::fmt;

use heapless::String;

use crate::backoff::BackoffConfig;
use crate::resp::Limits;
use crate::time::Duration;

pub const HOST_CAP: usize = 255;
pub const USERNAME_CAP: usize = 128;
pub const PASSWORD_CAP: usize = 256;
pub const CLIENT_NAME_CAP: usize = 64;
/// How much of a rejected value an error quotes back.
const QUOTE_CAP: usize = 48;
/// Longest option value of a URL, once percent-decoded.
const QUERY_VALUE_CAP: usize = 128;

/// A password: never shown by `Debug` or `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String<PASSWORD_CAP>);

impl Secret {
    pub fn new(value: &str) -> Result<Secret, ConfigError> {
        let mut s = String::new();
        s.push_str(value).map_err(|_| {
            ConfigError::secret("password", ConfigErrorKind::TooLong { max: PASSWORD_CAP })
        })?;
        Ok(Secret(s))
    }

    /// The secret itself, for the AUTH/HELLO command only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"<redacted>\""
        })
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Secret {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "<redacted>")
    }
}

/// RESP protocol version requested with HELLO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Protocol {
    Resp2,
    Resp3,
}

impl Protocol {
    pub fn version(self) -> u8 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// What a submitted command does while Redis is unavailable. The core
/// decides per command from this and the command's [`crate::command::Class`];
/// see [`crate::Connection::handle_submit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OfflinePolicy {
    /// The seed's behaviour. Until the first attempt fails, commands wait in
    /// the offline queue. Once a failure is known, a read the fallback cache
    /// can answer (GET) resolves as [`crate::Outcome::Fallback`] and every
    /// other command fails at once with that failure's reason: a write is
    /// never held to be applied later behind other clients' backs.
    #[default]
    Fallback,
    /// Hold it in the bounded offline queue until ready or its deadline.
    Queue,
    /// Refuse it at once with [`crate::SubmitError::NotReady`].
    FailFast,
}

/// The bounded offline queue, and the in-flight byte bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QueueConfig {
    /// Most commands held while not ready (also bounded by the connection's
    /// const capacity).
    pub max_commands: usize,
    /// Most bytes of encoded commands held while not ready.
    pub max_bytes: usize,
    /// Most bytes of encoded commands queued and in flight while ready: the
    /// memory an adapter holds for commands not yet answered. The default
    /// matches Redis's own `proto-max-bulk-len` (512 MiB).
    pub max_in_flight_bytes: usize,
    pub offline: OfflinePolicy,
    /// A resend-safe command lost in flight waits for this connection's
    /// next readiness and is written again (the default). Off, it is
    /// resolved at once (a write indeterminate, a read not applied), so that
    /// a layer above may send it elsewhere: a cluster router re-routes it to
    /// the node that took over the slot instead of leaving it with a node
    /// that may never come back.
    pub resend_lost: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_commands: 1024,
            max_bytes: 1024 * 1024,
            max_in_flight_bytes: 512 * 1024 * 1024,
            offline: OfflinePolicy::Fallback,
            resend_lost: true,
        }
    }
}

/// Everything one connection needs. Build with [`Config::default`],
/// [`Config::from_url`] or [`Config::from_env`], then adjust fields.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    pub host: String<HOST_CAP>,
    pub port: u16,
    /// `rediss://` or `REDIS_TLS=true`.
    pub tls: bool,
    /// ACL user; empty means the default user.
    pub username: String<USERNAME_CAP>,
    /// Empty means no AUTH.
    pub password: Secret,
    pub db: u32,
    pub protocol: Protocol,
    /// Sent with CLIENT SETNAME; empty means none.
    pub client_name: String<CLIENT_NAME_CAP>,
    /// Send `READONLY` in the handshake: a connection to a cluster replica
    /// that serves reads (a cluster router sets it; off for one node).
    pub readonly: bool,
    /// This connection carries only subscriptions (RESP2 pub/sub, where a
    /// subscribed connection takes no other command): the pub/sub arrays
    /// it receives (`message`, `subscribe`...) are pushes, not replies.
    /// Set by adapters for the dedicated subscriber connection; off for
    /// every other (a reply to LRANGE may look like one).
    pub subscriber: bool,
    /// Check `ROLE` in the handshake and refuse a node that is not a
    /// master ([`crate::DisconnectReason::NotMaster`], transient): for a
    /// Sentinel-managed master, so that nothing is written to a node that
    /// was demoted or to a stale address. Off by default.
    pub require_master: bool,
    /// TCP connect (the seed's `connectTimeout: 30000`).
    pub connect_timeout: Duration,
    /// TLS handshake, once TCP is up.
    pub tls_timeout: Duration,
    /// After the TLS hello, not one byte back from the server for this long
    /// means the port speaks plaintext (a plaintext Redis stays silent on a
    /// TLS hello): [`crate::DisconnectReason::TlsUnanswered`], long before
    /// `tls_timeout`. A TLS server answers within a round trip. Applies
    /// only if the adapter reports bytes with
    /// [`crate::Connection::handle_tls_bytes_received`] (the Tokio one does);
    /// `None` turns it off.
    pub tls_silence_timeout: Option<Duration>,
    /// HELLO/AUTH/SELECT, once the transport is up.
    pub handshake_timeout: Duration,
    /// TCP keepalive idle time, applied by adapters (the seed's `keepAlive: 5000`).
    pub tcp_keepalive: Duration,
    /// PING after this long with nothing received (the seed's `pingInterval: 5000`).
    pub ping_interval: Duration,
    /// The oldest unanswered request (a PING or a command) may wait this long
    /// with nothing received before the connection is declared dead. Bytes
    /// of a reply still arriving count: a large reply on a slow link is not
    /// a dead connection (see `min_reply_rate`).
    pub ping_timeout: Duration,
    /// While a reply is arriving, at least this many bytes must come in every
    /// `ping_timeout`, or the connection is closed as
    /// [`crate::DisconnectReason::SlowReply`] (transient: reconnect with
    /// backoff). Without this floor a reply trickling in a byte at a time
    /// would hold the connection forever. The default, 1024 bytes per 5 s,
    /// cuts only a link or server far too slow to be useful; 0 turns it off.
    pub min_reply_rate: u32,
    /// Default per-command deadline adapters apply when the caller gives none.
    pub command_timeout: Duration,
    /// Default deadline of a blocking command (BLPOP, XREAD ... BLOCK) when
    /// the caller gives none. When it passes after the command was written,
    /// the core closes that connection so the command cannot take data for
    /// a caller who is gone.
    pub blocking_timeout: Duration,
    pub backoff: BackoffConfig,
    /// After a permanent failure (bad password, ACL denial): probe again after
    /// this long; `None` waits for an explicit retry.
    pub permanent_retry: Option<Duration>,
    pub queue: QueueConfig,
    pub resp_limits: Limits,
    /// Most bytes one reply may take, all its elements together. The limits
    /// of `resp_limits` bound a bulk, an aggregate's length and the depth;
    /// this bounds what an adapter must buffer for one frame (an endless
    /// array of legal bulks would otherwise grow it until `ping_timeout`).
    pub max_frame_len: usize,
}

impl Default for Config {
    fn default() -> Self {
        let mut host = String::new();
        // "127.0.0.1" always fits in HOST_CAP.
        let _ = host.push_str("127.0.0.1");
        Config {
            host,
            port: 6379,
            tls: false,
            username: String::new(),
            password: Secret::default(),
            db: 0,
            protocol: Protocol::Resp3,
            client_name: String::new(),
            readonly: false,
            subscriber: false,
            require_master: false,
            connect_timeout: Duration::from_secs(30),
            tls_timeout: Duration::from_secs(10),
            tls_silence_timeout: None,
            handshake_timeout: Duration::from_secs(10),
            tcp_keepalive: Duration::from_secs(5),
            ping_interval: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(5),
            min_reply_rate: 1024,
            command_timeout: Duration::from_secs(5),
            blocking_timeout: Duration::from_secs(60),
            backoff: BackoffConfig::default(),
            permanent_retry: Some(Duration::from_secs(30)),
            queue: QueueConfig::default(),
            resp_limits: Limits::REDIS,
            max_frame_len: 512 * 1024 * 1024,
        }
    }
}

/// One tuning option: its URL query name, its environment variable, and the
/// field names errors quote for it.
struct TuningOption {
    url: &'static str,
    env: &'static str,
    in_url: &'static str,
    in_env_url: &'static str,
}

macro_rules! tuning_options {
    ($($url:literal => $env:literal),* $(,)?) => {
        /// The tuning options, each settable as `?url=` or as its variable.
        const TUNING: &[TuningOption] = &[$(TuningOption {
            url: $url,
            env: $env,
            in_url: concat!("URL ", $url),
            in_env_url: concat!("REDIS_URL ", $url),
        }),*];
        /// The URL query options [`Config::from_url`] accepts.
        pub const URL_OPTIONS: &[&str] = &[$($url),*];
        /// The environment variables [`Config::from_env`] reads, in the order
        /// of the README's configuration table.
        pub const ENV_VARS: &[&str] = &[
            "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_DB",
            "REDIS_TLS", $($env),*
        ];
    };
}

tuning_options! {
    "protocol" => "REDIS_PROTOCOL",
    "client_name" => "REDIS_CLIENT_NAME",
    "connect_timeout" => "REDIS_CONNECT_TIMEOUT",
    "keepalive" => "REDIS_KEEPALIVE",
    "ping_interval" => "REDIS_PING_INTERVAL",
    "ping_timeout" => "REDIS_PING_TIMEOUT",
    "command_timeout" => "REDIS_COMMAND_TIMEOUT",
    "blocking_timeout" => "REDIS_BLOCKING_TIMEOUT",
    "min_reply_rate" => "REDIS_MIN_REPLY_RATE",
    "max_reconnect_attempts" => "REDIS_MAX_RECONNECT_ATTEMPTS",
}

impl Config {
    /// Parses `redis://[user[:password]@]host[:port][/db][?option=value&...]`
    /// or `rediss://...` (TLS). Hosts may be IPv6 literals in brackets; user,
    /// password and option values may be percent-encoded. Options: see
    /// [`URL_OPTIONS`].
    ///
    /// The userinfo is everything between `://` and the **last** `@` of the
    /// URL, so a password may hold `/`, `?`, `#`, `:` and `@` unencoded (the
    /// user name ends at the first `:`, and must encode `/`, `?` and `#`).
    /// The price: an `@` after the host (in an option value) must be written
    /// `%40`. No error ever quotes any part of the userinfo, nor the URL
    /// itself: a URL that is not even `scheme://...` is not quoted at all,
    /// and of a URL with no `@` but a `:` after `://` only a host name is
    /// (`redis://user:pass/word` with the `@host` forgotten reads as host
    /// `user`, port `pass`, database `word`).
    pub fn from_url(url: &str) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        config.apply_url(url, Origin::Url)?;
        Ok(config)
    }

    /// Reads the seed's variables through `lookup` (the adapter passes the
    /// process environment). `REDIS_URL` wins over `REDIS_HOST`/`REDIS_PORT`;
    /// `REDIS_USERNAME`/`REDIS_PASSWORD`/`REDIS_DB` fill in what the URL leaves
    /// out; `REDIS_TLS=true` forces TLS even on a `redis://` URL.
    pub fn from_env<F, V>(mut lookup: F) -> Result<Config, ConfigError>
    where
        F: FnMut(&str) -> Option<V>,
        V: AsRef<str>,
    {
        let mut config = Config::default();
        // A variable set to blanks counts as unset, except REDIS_PASSWORD.
        let mut get = |name: &str| lookup(name).filter(|v| !v.as_ref().trim().is_empty());
        let mut url_set = UrlParts::default();
        if let Some(url) = get("REDIS_URL") {
            url_set = config.apply_url(url.as_ref().trim(), Origin::Env)?;
        } else {
            if let Some(host) = get("REDIS_HOST") {
                config.host = bounded("REDIS_HOST", host.as_ref().trim())?;
            }
            if let Some(port) = get("REDIS_PORT") {
                config.port = parse_port("REDIS_PORT", port.as_ref())?;
            }
        }
        if !url_set.username
            && let Some(user) = get("REDIS_USERNAME")
        {
            config.username = bounded("REDIS_USERNAME", user.as_ref())?;
        }
        if !url_set.db
            && let Some(db) = get("REDIS_DB")
        {
            config.db = parse_db("REDIS_DB", db.as_ref())?;
        }
        if let Some(tls) = get("REDIS_TLS") {
            // REDIS_TLS=false does not downgrade a rediss:// URL: that would
            // silently send the password in clear text.
            config.tls |= parse_bool("REDIS_TLS", tls.as_ref())?;
        }
        for option in TUNING {
            if let Some(value) = get(option.env) {
                config.apply_option(option.url, option.env, value.as_ref())?;
            }
        }
        if !url_set.password
            && let Some(pass) = lookup("REDIS_PASSWORD").filter(|v| !v.as_ref().is_empty())
        {
            // `REDIS_PASSWORD=` is unset; `REDIS_PASSWORD="  "` is a
            // template that lost its value, not "no password": say so.
            config.password = parse_password("REDIS_PASSWORD", pass.as_ref())?;
        }
        Ok(config)
    }

    fn apply_url(&mut self, url: &str, origin: Origin) -> Result<UrlParts, ConfigError> {
        let field = origin.field();
        let mut set = UrlParts::default();
        // Not even `scheme://`: nothing is quoted, the text may be a password
        // with the rest mistyped (`redis:/:pw@host`).
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| ConfigError::secret(field, ConfigErrorKind::MissingScheme))?;
        self.tls = match scheme.to_ascii_lowercase_fixed().as_str() {
            "redis" => false,
            "rediss" => true,
            _ if looks_like_scheme(scheme) => {
                return Err(ConfigError::new(
                    field,
                    ConfigErrorKind::InvalidScheme,
                    scheme,
                ));
            }
            _ => return Err(ConfigError::secret(field, ConfigErrorKind::InvalidScheme)),
        };
        // The userinfo first, up to the last '@' (see `from_url`), so that
        // a '/' or '?' in a password is not taken for the path or the query.
        let (userinfo, after) = match rest.rsplit_once('@') {
            Some((u, a)) => (Some(u), a),
            None => (None, rest),
        };
        let (before_query, query) = match after.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (after, None),
        };
        let (hostport, path) = match before_query.split_once('/') {
            Some((a, p)) => (a, p),
            None => (before_query, ""),
        };
        if let Some(userinfo) = userinfo {
            let (user, pass) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if user.bytes().any(|b| matches!(b, b'/' | b'?' | b'#')) {
                // `redis://host/0?client_name=a@b`: the '@' of an option
                // value ended the "userinfo". Refused rather than connect to
                // host "b".
                return Err(ConfigError::secret(
                    origin.named("username"),
                    ConfigErrorKind::InvalidUsername,
                ));
            }
            if !user.is_empty() {
                self.username = percent_decode::<USERNAME_CAP>(user)
                    .map_err(|kind| ConfigError::secret(origin.named("username"), kind))?;
                set.username = true;
            }
            if let Some(pass) = pass.filter(|p| !p.is_empty()) {
                let decoded = percent_decode::<PASSWORD_CAP>(pass)
                    .map_err(|kind| ConfigError::secret(origin.named("password"), kind))?;
                self.password = parse_password(origin.named("password"), &decoded)?;
                set.password = true;
            }
        }
        // `redis://user:pass/word` with the `@host` forgotten reads as
        // host "user", port "pass", database "word": of a URL with no '@'
        // but a ':' after `://`, only a host name is quoted.
        let maybe_secret = userinfo.is_none() && rest.contains(':');
        let hide = |e: ConfigError| if maybe_secret { e.withheld() } else { e };
        let (host, port) = split_host_port(hostport, origin).map_err(hide)?;
        if host.is_empty() {
            return Err(ConfigError::secret(field, ConfigErrorKind::MissingHost));
        }
        self.host = bounded(origin.named("host"), host)?;
        if let Some(port) = port {
            self.port = parse_port(origin.named("port"), port).map_err(hide)?;
        }
        if !path.is_empty() {
            self.db = parse_db(origin.named("database"), path).map_err(hide)?;
            set.db = true;
        }
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let option = TUNING.iter().find(|o| o.url == key).ok_or_else(|| {
                hide(ConfigError::new(
                    origin.named("option"),
                    ConfigErrorKind::UnknownOption,
                    key,
                ))
            })?;
            let field = match origin {
                Origin::Url => option.in_url,
                Origin::Env => option.in_env_url,
            };
            let value = percent_decode::<QUERY_VALUE_CAP>(value)
                .map_err(|kind| hide(ConfigError::new(field, kind, value)))?;
            self.apply_option(option.url, field, &value).map_err(hide)?;
        }
        Ok(set)
    }

    fn apply_option(
        &mut self,
        option: &str,
        field: &'static str,
        value: &str,
    ) -> Result<(), ConfigError> {
        let value = value.trim();
        match option {
            "protocol" => {
                self.protocol = match value {
                    "2" | "resp2" | "RESP2" => Protocol::Resp2,
                    "3" | "resp3" | "RESP3" => Protocol::Resp3,
                    _ => {
                        return Err(ConfigError::new(
                            field,
                            ConfigErrorKind::InvalidProtocol,
                            value,
                        ));
                    }
                }
            }
            "client_name" => {
                if value.bytes().any(|b| b <= b' ') {
                    return Err(ConfigError::new(
                        field,
                        ConfigErrorKind::InvalidClientName,
                        value,
                    ));
                }
                self.client_name = bounded(field, value)?;
            }
            // Zero would time out every connect, PING without pause, or
            // declare every connection dead at once.
            "connect_timeout" => self.connect_timeout = parse_positive_duration(field, value)?,
            "keepalive" => self.tcp_keepalive = parse_duration(field, value)?,
            "ping_interval" => self.ping_interval = parse_positive_duration(field, value)?,
            "ping_timeout" => self.ping_timeout = parse_positive_duration(field, value)?,
            "command_timeout" => self.command_timeout = parse_duration(field, value)?,
            "blocking_timeout" => self.blocking_timeout = parse_duration(field, value)?,
            "min_reply_rate" => {
                self.min_reply_rate = value
                    .parse::<u32>()
                    .map_err(|_| ConfigError::new(field, ConfigErrorKind::InvalidCount, value))?
            }
            "max_reconnect_attempts" => {
                self.backoff.max_attempts = value
                    .parse::<u32>()
                    .map_err(|_| ConfigError::new(field, ConfigErrorKind::InvalidCount, value))?
            }
            _ => {
                return Err(ConfigError::new(
                    field,
                    ConfigErrorKind::UnknownOption,
                    option,
                ));
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct UrlParts {
    username: bool,
    password: bool,
    db: bool,
}

#[derive(Clone, Copy)]
enum Origin {
    Url,
    Env,
}

impl Origin {
    fn field(self) -> &'static str {
        match self {
            Origin::Url => "URL",
            Origin::Env => "REDIS_URL",
        }
    }

    /// Field names quoted in errors: "REDIS_URL port" when the URL came from the
    /// environment, so the user knows which variable to fix.
    fn named(self, part: &str) -> &'static str {
        macro_rules! names {
            ($($p:literal),*) => {
                match (self, part) {
                    $((Origin::Url, $p) => concat!("URL ", $p), (Origin::Env, $p) => concat!("REDIS_URL ", $p),)*
                    _ => self.field(),
                }
            };
        }
        names!("username", "password", "host", "port", "database", "option")
    }
}

trait AsciiLower {
    fn to_ascii_lowercase_fixed(&self) -> String<8>;
}

impl AsciiLower for str {
    /// Schemes longer than 8 bytes are invalid anyway; they come back empty.
    fn to_ascii_lowercase_fixed(&self) -> String<8> {
        let mut out = String::new();
        for c in self.chars() {
            if out.push(c.to_ascii_lowercase()).is_err() {
                return String::new();
            }
        }
        out
    }
}

fn split_host_port(hostport: &str, origin: Origin) -> Result<(&str, Option<&str>), ConfigError> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| {
            ConfigError::new(origin.named("host"), ConfigErrorKind::InvalidIpv6, hostport)
        })?;
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(ConfigError::new(
                origin.named("host"),
                ConfigErrorKind::InvalidIpv6,
                hostport,
            ));
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(ConfigError::new(
                    origin.named("host"),
                    ConfigErrorKind::InvalidIpv6,
                    hostport,
                )),
            },
        };
    }
    match hostport.split_once(':') {
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((hostport, None)),
    }
}

/// Whether `text` could be a URL scheme someone meant (`http`, `redis+tls`):
/// only then is it quoted. Anything else before `://` may hold a password.
fn looks_like_scheme(text: &str) -> bool {
    let mut bytes = text.bytes();
    text.len() <= 16
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// A password as given; never quoted. Blanks are refused: they are a
/// template or secret store that lost the value, and sending them would
/// fail later as a wrong password with no hint why.
fn parse_password(field: &'static str, value: &str) -> Result<Secret, ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::secret(field, ConfigErrorKind::BlankPassword));
    }
    Secret::new(value).map_err(|e| ConfigError { field, ..e })
}

fn bounded<const N: usize>(field: &'static str, value: &str) -> Result<String<N>, ConfigError> {
    let mut s = String::new();
    s.push_str(value)
        .map_err(|_| ConfigError::new(field, ConfigErrorKind::TooLong { max: N }, value))?;
    Ok(s)
}

fn parse_port(field: &'static str, value: &str) -> Result<u16, ConfigError> {
    match value.trim().parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(ConfigError::new(field, ConfigErrorKind::InvalidPort, value)),
    }
}

fn parse_db(field: &'static str, value: &str) -> Result<u32, ConfigError> {
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| ConfigError::new(field, ConfigErrorKind::InvalidDb, value))
}

fn parse_bool(field: &'static str, value: &str) -> Result<bool, ConfigError> {
    let v = value.trim();
    for (text, result) in [("true", true), ("1", true), ("yes", true), ("on", true)]
        .into_iter()
        .chain([
            ("false", false),
            ("0", false),
            ("no", false),
            ("off", false),
        ])
    {
        if v.eq_ignore_ascii_case(text) {
            return Ok(result);
        }
    }
    Err(ConfigError::new(field, ConfigErrorKind::InvalidBool, value))
}

/// A duration that must not be zero.
fn parse_positive_duration(field: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let duration = parse_duration(field, value)?;
    if duration == Duration::from_millis(0) {
        return Err(ConfigError::new(
            field,
            ConfigErrorKind::ZeroDuration,
            value,
        ));
    }
    Ok(duration)
}

/// `250ms`, `5s`, `2m`, or a bare number of milliseconds (like the seed's
/// `connectTimeout: 30000`).
pub fn parse_duration(field: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let v = value.trim();
    let err = || ConfigError::new(field, ConfigErrorKind::InvalidDuration, value);
    let digits_end = v
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(digits_end);
    let n: u64 = number.parse().map_err(|_| err())?;
    let millis = match unit {
        "" | "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" | "min" => n.checked_mul(60_000),
        _ => None,
    }
    .ok_or_else(err)?;
    Ok(Duration::from_millis(millis))
}

fn percent_decode<const N: usize>(input: &str) -> Result<String<N>, ConfigErrorKind> {
    let bytes = input.as_bytes();
    let mut out: heapless::Vec<u8, N> = heapless::Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .ok_or(ConfigErrorKind::InvalidPercentEncoding)?;
                let hi = hex_val(hex[0]).ok_or(ConfigErrorKind::InvalidPercentEncoding)?;
                let lo = hex_val(hex[1]).ok_or(ConfigErrorKind::InvalidPercentEncoding)?;
                i += 3;
                hi << 4 | lo
            }
            b => {
                i += 1;
                b
            }
        };
        out.push(b)
            .map_err(|_| ConfigErrorKind::TooLong { max: N })?;
    }
    String::from_utf8(out).map_err(|_| ConfigErrorKind::InvalidPercentEncoding)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// What is wrong with a configuration value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// Not `scheme://...` at all. Nothing of it is quoted.
    MissingScheme,
    InvalidScheme,
    /// A user name with `/`, `?` or `#` unencoded: usually an `@` in an
    /// option value, which ended the userinfo there (write it `%40`).
    InvalidUsername,
    /// A password of only blanks.
    BlankPassword,
    MissingHost,
    InvalidIpv6,
    InvalidPort,
    InvalidDb,
    InvalidBool,
    InvalidDuration,
    /// `connect_timeout`, `ping_interval` or `ping_timeout` of 0.
    ZeroDuration,
    InvalidProtocol,
    InvalidCount,
    InvalidClientName,
    InvalidPercentEncoding,
    UnknownOption,
    TooLong {
        max: usize,
    },
}

/// A rejected configuration value: which field, why, what was given (never
/// for secrets) and, through `Display`, how to fix it. Neither `Display` nor
/// `Debug` ever shows a password, any part of a URL's userinfo, or a whole
/// URL.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConfigError {
    /// The variable or URL part, e.g. `REDIS_PORT` or `REDIS_URL port`.
    pub field: &'static str,
    pub kind: ConfigErrorKind,
    got: Got,
}

/// What an error shows of the rejected value.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Got {
    /// The value, cut to 48 bytes.
    Value(String<QUOTE_CAP>),
    /// A password, a user name of a URL, a URL that is not one: never shown.
    Secret,
    /// Not a secret by its place, but maybe one by mistake: the port of a
    /// URL without `@` (`redis://user:password`, host forgotten).
    Withheld,
}

impl ConfigError {
    fn new(field: &'static str, kind: ConfigErrorKind, got: &str) -> ConfigError {
        let mut quoted = String::new();
        for c in got.chars() {
            if quoted.push(c).is_err() {
                break;
            }
        }
        ConfigError {
            field,
            kind,
            got: Got::Value(quoted),
        }
    }

    fn secret(field: &'static str, kind: ConfigErrorKind) -> ConfigError {
        ConfigError {
            field,
            kind,
            got: Got::Secret,
        }
    }

    fn withheld(self) -> ConfigError {
        ConfigError {
            got: Got::Withheld,
            ..self
        }
    }

    /// The rejected value as given (cut short), or `None` when it is not
    /// shown (a secret, or what may be one).
    pub fn got(&self) -> Option<&str> {
        match &self.got {
            Got::Value(v) => Some(v),
            Got::Secret | Got::Withheld => None,
        }
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ConfigError");
        d.field("field", &self.field).field("kind", &self.kind);
        match &self.got {
            Got::Value(v) => d.field("got", &v.as_str()),
            Got::Secret | Got::Withheld => d.field("got", &format_args!("<not shown>")),
        };
        d.finish()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = self.field;
        match self.kind {
            ConfigErrorKind::MissingScheme => write!(
                f,
                "{field} must start with redis:// (plain) or rediss:// (TLS); it has no :// (not shown: it may hold a password)"
            )?,
            ConfigErrorKind::InvalidScheme => write!(
                f,
                "{field} must start with redis:// (plain) or rediss:// (TLS)"
            )?,
            ConfigErrorKind::InvalidUsername => write!(
                f,
                "{field} must not hold /, ? or # unencoded (write %2F, %3F, %23); an @ after the host, in an option value, must be written %40 (not shown: it is part of the user:password)"
            )?,
            ConfigErrorKind::BlankPassword => write!(
                f,
                "{field} is only blanks: set the real password, or leave it empty for no AUTH"
            )?,
            ConfigErrorKind::MissingHost => {
                write!(f, "{field} has no host: use redis://host:6379")?
            }
            ConfigErrorKind::InvalidIpv6 => write!(
                f,
                "{field} must be an IPv6 literal in brackets, e.g. [::1]:6379"
            )?,
            ConfigErrorKind::InvalidPort => write!(f, "{field} must be a number from 1 to 65535")?,
            ConfigErrorKind::InvalidDb => {
                write!(f, "{field} must be a database number from 0 (e.g. /0)")?
            }
            ConfigErrorKind::InvalidBool => write!(f, "{field} must be true or false")?,
            ConfigErrorKind::InvalidDuration => write!(
                f,
                "{field} must be a duration like 500ms, 5s or 2m (a bare number is milliseconds)"
            )?,
            ConfigErrorKind::ZeroDuration => write!(
                f,
                "{field} must be more than 0, e.g. 5s (remove it for the default)"
            )?,
            ConfigErrorKind::InvalidProtocol => write!(f, "{field} must be 2 or 3")?,
            ConfigErrorKind::InvalidCount => write!(f, "{field} must be a whole number from 0")?,
            ConfigErrorKind::InvalidClientName => {
                write!(f, "{field} must not contain spaces or control characters")?
            }
            ConfigErrorKind::InvalidPercentEncoding => write!(
                f,
                "{field} has a bad percent-encoding: write special characters as %XX (e.g. @ as %40)"
            )?,
            ConfigErrorKind::UnknownOption => {
                write!(f, "{field} is not a known option; known: ")?;
                for (i, o) in URL_OPTIONS.iter().enumerate() {
                    write!(f, "{}{o}", if i > 0 { ", " } else { "" })?;
                }
            }
            ConfigErrorKind::TooLong { max } => {
                write!(f, "{field} is longer than the {max} bytes resilis can hold")?
            }
        }
        match &self.got {
            Got::Value(got) => write!(f, ", got \"{got}\""),
            Got::Secret => Ok(()),
            Got::Withheld => f.write_str(
                " (not shown: the URL has no @, so this may be a password whose @host was forgotten)",
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl FnMut(&str) -> Option<&'a str> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    #[test]
    fn defaults_are_the_seeds() {
        let c = Config::default();
        assert_eq!(c.connect_timeout, Duration::from_secs(30));
        assert_eq!(c.tcp_keepalive, Duration::from_secs(5));
        assert_eq!(c.ping_interval, Duration::from_secs(5));
        assert_eq!(c.backoff.initial, Duration::from_millis(100));
        assert_eq!(c.backoff.max_delay, Duration::from_secs(3));
        assert_eq!(c.backoff.max_attempts, 10);
        assert_eq!((c.host.as_str(), c.port, c.tls), ("127.0.0.1", 6379, false));
    }

    #[test]
    fn full_url() {
        let c = Config::from_url(
            "rediss://app:s%40cret@cache.example.com:25061/3?protocol=2&ping_interval=2s",
        )
        .unwrap();
        assert!(c.tls);
        assert_eq!(c.username.as_str(), "app");
        assert_eq!(c.password.expose(), "s@cret");
        assert_eq!(c.host.as_str(), "cache.example.com");
        assert_eq!(c.port, 25061);
        assert_eq!(c.db, 3);
        assert_eq!(c.protocol, Protocol::Resp2);
        assert_eq!(c.ping_interval, Duration::from_secs(2));
    }

    #[test]
    fn heroku_style_empty_user_and_ipv6() {
        let c = Config::from_url("rediss://:pw@[::1]:7000").unwrap();
        assert_eq!(c.username.as_str(), "");
        assert_eq!(c.password.expose(), "pw");
        assert_eq!(c.host.as_str(), "::1");
        assert_eq!(c.port, 7000);
        let c = Config::from_url("redis://[fe80::1]").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("fe80::1", 6379));
    }

    #[test]
    fn bad_urls_name_the_field_and_the_fix() {
        let e = Config::from_url("http://localhost").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidScheme);
        assert!(e.to_string().contains("rediss://"), "{e}");
        let e = Config::from_url("redis://app@localhost:abc").unwrap_err();
        assert_eq!(
            e.to_string(),
            "URL port must be a number from 1 to 65535, got \"abc\""
        );
        let e = Config::from_url("redis://localhost/x").unwrap_err();
        assert_eq!(e.got(), Some("x"));
        let e = Config::from_url("redis://localhost:0").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidPort);
        let e = Config::from_url("redis://localhost/x").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidDb);
        let e = Config::from_url("redis://[::1").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidIpv6);
        let e = Config::from_url("redis://h?bogus=1").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::UnknownOption);
        assert!(e.to_string().contains("ping_interval"), "{e}");
        let e = Config::from_url("redis://:p@/").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::MissingHost);
        assert_eq!(e.got(), None);
    }

    /// The reports, each of which quoted the password.
    #[test]
    fn no_error_quotes_the_userinfo_or_the_url() {
        let e = Config::from_url("redis:/:hunter2secret@host").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::MissingScheme);
        assert_eq!(
            e.to_string(),
            "URL must start with redis:// (plain) or rediss:// (TLS); it has no :// (not shown: it may hold a password)"
        );
        // A '/' in a password is not the start of the path any more.
        let c = Config::from_url("redis://app:hunt/er2@host").unwrap();
        assert_eq!(c.password.expose(), "hunt/er2");
        assert_eq!((c.host.as_str(), c.port, c.db), ("host", 6379, 0));
        let c = Config::from_url("redis://app:1234/er2secret@host:7000/2").unwrap();
        assert_eq!(c.password.expose(), "1234/er2secret");
        assert_eq!((c.host.as_str(), c.port, c.db), ("host", 7000, 2));
        let c = Config::from_url("redis://app:a/b@c@host").unwrap();
        assert_eq!((c.username.as_str(), c.password.expose()), ("app", "a/b@c"));
        let c = Config::from_url("redis://:a?b#c@d:e/f@host?protocol=2").unwrap();
        assert_eq!(c.password.expose(), "a?b#c@d:e/f");
        assert_eq!(c.protocol, Protocol::Resp2);
        // A scheme that is not one is not quoted: it may hold the password.
        let e = Config::from_url("app:hunter2secret://host").unwrap_err();
        assert_eq!((e.kind, e.got()), (ConfigErrorKind::InvalidScheme, None));
        let e = Config::from_url("http://host").unwrap_err();
        assert_eq!(e.got(), Some("http"));
        // The user name is never quoted either.
        let e = Config::from_url("redis://us%zzer:pw@host").unwrap_err();
        assert_eq!((e.field, e.got()), ("URL username", None));
    }

    #[test]
    fn without_an_at_nothing_after_the_host_s_colon_is_quoted() {
        for url in [
            "redis://app:hunter2secret",
            "redis://app:1234/hunter2secret",
            "redis://app:1234?hunter2secret",
            "redis://app:1234?protocol=hunter2secret",
            // Found by the property test: the ':' is past a '/'.
            "redis://us/er:hunter2secrethost",
        ] {
            let e = Config::from_url(url).unwrap_err();
            assert_eq!(e.got(), None, "{url}: {e}");
            let shown = std::format!("{e} {e:?}");
            assert!(!shown.contains("hunter2secret"), "{shown}");
            assert!(shown.contains("has no @"), "{shown}");
        }
        // A bracketed "host" may be one too.
        let e = Config::from_url("redis://[:hunter2secret]").unwrap_err();
        assert_eq!((e.kind, e.got()), (ConfigErrorKind::InvalidIpv6, None));
        // With an '@', or no ':' at all, the value is quoted.
        let e = Config::from_url("redis://u@[::1]:abc").unwrap_err();
        assert_eq!(e.got(), Some("abc"));
        let e = Config::from_url("redis://localhost/abc").unwrap_err();
        assert_eq!(e.got(), Some("abc"));
    }

    #[test]
    fn an_at_in_an_option_value_must_be_encoded() {
        let e = Config::from_url("redis://host/0?client_name=me@example").unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::InvalidUsername);
        assert!(e.to_string().contains("%40"), "{e}");
        let c = Config::from_url("redis://host/0?client_name=me%40example").unwrap();
        assert_eq!(c.client_name.as_str(), "me@example");
    }

    #[test]
    fn debug_is_structured_and_redacted() {
        let e = Config::from_url("redis://h?protocol=9").unwrap_err();
        assert_eq!(
            std::format!("{e:?}"),
            "ConfigError { field: \"URL protocol\", kind: InvalidProtocol, got: \"9\" }"
        );
        let e = Config::from_url("redis://u:%zzhunter2@h").unwrap_err();
        assert_eq!(
            std::format!("{e:?}"),
            "ConfigError { field: \"URL password\", kind: InvalidPercentEncoding, got: <not shown> }"
        );
    }

    #[test]
    fn a_blank_password_is_refused_not_dropped() {
        let e = Config::from_env(env(&[("REDIS_PASSWORD", "   ")])).unwrap_err();
        assert_eq!(
            (e.field, e.kind),
            ("REDIS_PASSWORD", ConfigErrorKind::BlankPassword)
        );
        assert_eq!(
            e.to_string(),
            "REDIS_PASSWORD is only blanks: set the real password, or leave it empty for no AUTH"
        );
        // Empty is unset.
        let c = Config::from_env(env(&[("REDIS_PASSWORD", "")])).unwrap();
        assert!(c.password.is_empty());
        let e = Config::from_url("redis://:%20%09@h").unwrap_err();
        assert_eq!(
            (e.field, e.kind),
            ("URL password", ConfigErrorKind::BlankPassword)
        );
        let e = Config::from_env(env(&[("REDIS_URL", "redis://: @h")])).unwrap_err();
        assert_eq!(e.field, "REDIS_URL password");
        // A password the URL gives makes REDIS_PASSWORD irrelevant.
        let c = Config::from_env(env(&[
            ("REDIS_URL", "redis://:pw@h"),
            ("REDIS_PASSWORD", " "),
        ]))
        .unwrap();
        assert_eq!(c.password.expose(), "pw");
    }

    #[test]
    fn zero_timeouts_are_refused() {
        for (url, field) in [
            ("redis://h?connect_timeout=0", "URL connect_timeout"),
            ("redis://h?ping_interval=0ms", "URL ping_interval"),
            ("redis://h?ping_timeout=0s", "URL ping_timeout"),
        ] {
            let e = Config::from_url(url).unwrap_err();
            assert_eq!((e.field, e.kind), (field, ConfigErrorKind::ZeroDuration));
        }
        for var in [
            "REDIS_CONNECT_TIMEOUT",
            "REDIS_PING_INTERVAL",
            "REDIS_PING_TIMEOUT",
        ] {
            let e = Config::from_env(env(&[(var, "0")])).unwrap_err();
            assert_eq!((e.field, e.kind), (var, ConfigErrorKind::ZeroDuration));
            assert_eq!(
                e.to_string(),
                std::format!(
                    "{var} must be more than 0, e.g. 5s (remove it for the default), got \"0\""
                )
            );
        }
        let e = Config::from_env(env(&[("REDIS_URL", "redis://h?ping_timeout=0")])).unwrap_err();
        assert_eq!(e.field, "REDIS_URL ping_timeout");
        // Zero still means zero where it makes sense.
        assert!(Config::from_url("redis://h?keepalive=0&max_reconnect_attempts=0").is_ok());
    }

    #[test]
    fn min_reply_rate_from_url_and_env() {
        assert_eq!(Config::default().min_reply_rate, 1024);
        let c = Config::from_url("redis://h?min_reply_rate=0").unwrap();
        assert_eq!(c.min_reply_rate, 0, "0 turns the floor off");
        let c = Config::from_env(env(&[("REDIS_MIN_REPLY_RATE", "4096")])).unwrap();
        assert_eq!(c.min_reply_rate, 4096);
        let e = Config::from_url("redis://h?min_reply_rate=1kb").unwrap_err();
        assert_eq!(e.field, "URL min_reply_rate");
        assert!(e.to_string().contains("whole number"), "{e}");
    }

    #[test]
    fn password_never_shown() {
        let c = Config::from_url("redis://u:hunter2@h").unwrap();
        let shown = std::format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let e = Config::from_url("redis://u:hun%zzter2@h").unwrap_err();
        assert_eq!(e.got(), None);
        assert!(!std::format!("{e} {e:?}").contains("hun"), "{e}");
    }

    #[test]
    fn env_variables() {
        let c = Config::from_env(env(&[
            ("REDIS_HOST", "cache.internal"),
            ("REDIS_PORT", "6380"),
            ("REDIS_PASSWORD", "pw"),
            ("REDIS_DB", "2"),
            ("REDIS_TLS", "true"),
        ]))
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.db, c.tls),
            ("cache.internal", 6380, 2, true)
        );
        assert_eq!(c.password.expose(), "pw");
    }

    #[test]
    fn redis_tls_forces_tls_on_a_plain_url_but_never_downgrades() {
        let c = Config::from_env(env(&[
            ("REDIS_URL", "redis://default:pw@h:6379"),
            ("REDIS_TLS", "true"),
        ]))
        .unwrap();
        assert!(c.tls);
        let c =
            Config::from_env(env(&[("REDIS_URL", "rediss://h"), ("REDIS_TLS", "false")])).unwrap();
        assert!(c.tls);
    }

    #[test]
    fn url_wins_over_host_and_port_and_env_fills_gaps() {
        let c = Config::from_env(env(&[
            ("REDIS_URL", "redis://url-host:1234"),
            ("REDIS_HOST", "other"),
            ("REDIS_PASSWORD", "from-env"),
        ]))
        .unwrap();
        assert_eq!((c.host.as_str(), c.port), ("url-host", 1234));
        assert_eq!(c.password.expose(), "from-env");
    }

    #[test]
    fn bad_env_values() {
        let e = Config::from_env(env(&[("REDIS_PORT", "abc")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "REDIS_PORT must be a number from 1 to 65535, got \"abc\""
        );
        let e = Config::from_env(env(&[("REDIS_TLS", "maybe")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "REDIS_TLS must be true or false, got \"maybe\""
        );
        let e = Config::from_env(env(&[("REDIS_PING_INTERVAL", "5 parsecs")])).unwrap_err();
        assert_eq!(e.field, "REDIS_PING_INTERVAL");
        let e = Config::from_env(env(&[("REDIS_URL", "redis://h:99999")])).unwrap_err();
        assert_eq!(e.field, "REDIS_URL port");
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("x", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_duration("x", "30000").unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(parse_duration("x", "2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("x", "-1s").is_err());
        assert!(parse_duration("x", "99999999999999999999s").is_err());
    }

    #[test]
    fn too_long_values_are_typed_errors() {
        let long = "a".repeat(300);
        let e = Config::from_url(&std::format!("redis://{long}:1")).unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::TooLong { max: HOST_CAP });
        let e = Config::from_url(&std::format!("redis://u:{}@h", "p".repeat(300))).unwrap_err();
        assert_eq!(e.got(), None);
    }

    /// Random URLs with a marker password, mistyped in every way the
    /// generator knows: no error, and no config's `Debug`, shows it.
    mod marker_password {
        use super::*;
        use proptest::prelude::*;
        use std::string::String;
        use std::vec::Vec;

        /// In every form the generator writes the marker (raw, or with its
        /// first or last letter percent-encoded), this part is verbatim.
        const CORE: &str = "unter2secre";

        fn url() -> impl Strategy<Value = String> {
            let scheme = prop::sample::select(
                &[
                    "redis://",
                    "rediss://",
                    "REDIS://",
                    "http://",
                    "redis:/",
                    "redis:",
                    "",
                    "redis:///",
                    "redis//",
                    "://",
                    "redis+tls://",
                    "redis ://",
                ][..],
            );
            let user =
                prop::sample::select(&["", "app", "default", "a%40b", "us/er", "u?x", "%zz"][..]);
            let marker = prop::sample::select(
                &[
                    "hunter2secret",
                    "%68unter2secret",
                    "hunter2secre%74",
                    "hunter2secre%7",
                ][..],
            );
            let piece = prop::sample::select(
                &[
                    "",
                    "/",
                    "@",
                    ":",
                    "?",
                    "#",
                    "%",
                    "%2",
                    "%zz",
                    "%2F",
                    "%40",
                    " ",
                    "//",
                    "://",
                    "a",
                    "0",
                    "6379",
                    "&x=1",
                    "=",
                    "[",
                    "]",
                    "?protocol=2",
                ][..],
            );
            let pieces = prop::collection::vec(piece, 0..4);
            let separator = prop::sample::select(&["@", "@@", "", "/", "@/", ":", " @"][..]);
            let host = prop::sample::select(
                &[
                    "host",
                    "",
                    "[::1]",
                    "[::1",
                    "[zz]",
                    "h:abc",
                    "h:0",
                    "h:99999",
                    "h:6379",
                    "h:6379/x",
                    "h/99999999999",
                    "h/-1",
                    "h?bogus=1",
                    "h?ping_interval=0",
                    "h?protocol=9&",
                    "h?client_name=a b",
                    "h?connect_timeout=%zz",
                    "[fe80::1]:7000/3",
                    "h?ping_timeout=5parsecs",
                    "h:1/2?ping_interval=2s",
                ][..],
            );
            (
                scheme,
                user,
                pieces.clone(),
                marker,
                pieces,
                separator,
                host,
            )
                .prop_map(|(scheme, user, before, marker, after, separator, host)| {
                    // Without an '@' after it, a password is not one by the
                    // rule (it is the host): the '@'s go with the separator.
                    let keep = |p: &&str| separator.contains('@') || !p.contains('@');
                    let before: Vec<&str> = before.into_iter().filter(keep).collect();
                    let after: Vec<&str> = after.into_iter().filter(keep).collect();
                    std::format!(
                        "{scheme}{user}:{}{marker}{}{separator}{host}",
                        before.concat(),
                        after.concat()
                    )
                })
        }

        fn assert_hidden(what: &str, shown: &str) {
            assert!(!shown.contains(CORE), "{what} shows the password: {shown}");
        }

        proptest! {
            #[test]
            fn never_shown(url in url()) {
                match Config::from_url(&url) {
                    Err(e) => assert_hidden(&url, &std::format!("{e} {e:?}")),
                    Ok(c) => assert_hidden(&url, &std::format!("{c:?}")),
                }
                let vars = [("REDIS_URL", url.as_str()), ("REDIS_PORT", "x")];
                match Config::from_env(env(&vars)) {
                    Err(e) => assert_hidden(&url, &std::format!("{e} {e:?}")),
                    Ok(c) => assert_hidden(&url, &std::format!("{c:?}")),
                }
            }

            #[test]
            fn never_shown_from_the_variable(password in "[ -~]{0,6}hunter2secret[ -~]{0,6}") {
                for other in [("REDIS_PORT", "x"), ("REDIS_DB", "x"), ("REDIS_HOST", "h")] {
                    let vars = [("REDIS_PASSWORD", password.as_str()), other];
                    match Config::from_env(env(&vars)) {
                        Err(e) => assert_hidden(&password, &std::format!("{e} {e:?}")),
                        Ok(c) => assert_hidden(&password, &std::format!("{c:?}")),
                    }
                }
            }
        }
    }
}

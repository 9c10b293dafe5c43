//! `resilis watch`: what an operator leaves open during an incident. A real
//! [`Client`] connects with the library's own settings, and its state
//! machine is shown live: phase, attempt, next retry, ping latency, whether
//! the fallback cache is serving, counters, and every event as it happens.
//!
//! On a terminal the status block is redrawn in place (plain ANSI); piped,
//! it prints one status line per refresh and one line per event, which is
//! what logs and tests want. Ctrl-C (or `--for`) ends it cleanly: the
//! client is shut down and the last status printed.
//!
//! In Sentinel mode (a `redis+sentinel://` URL, or `REDIS_SENTINELS`) the
//! client is the library's Sentinel client: the status also shows the
//! master it follows and how many sentinels are connected
//! ([`Client::sentinel_health`]), and each change of master is an event
//! line ([`Client::sentinel_events`]).

use std::io::Write;
use std::time::{Duration, Instant};

use resilis_core::{Config, Event};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::steps::{redacted_sentinel_url, redacted_url, show_duration};
use crate::tls::{HostSource, TlsOptions};
use crate::{Client, Health, SentinelEvent, SentinelHealth};

/// Events kept on screen in interactive mode.
const EVENTS_SHOWN: usize = 12;

/// How `watch` runs.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Stop after this long (non-interactive runs, tests); `None`: until Ctrl-C.
    pub duration: Option<Duration>,
    /// How often the status is redrawn (or printed, when not a terminal).
    pub refresh: Duration,
    /// Overrides the configured keepalive PING interval, to see latency sooner.
    pub ping_interval: Option<Duration>,
    /// Redraw in place with ANSI codes (a terminal) or print lines.
    pub interactive: bool,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            duration: None,
            refresh: Duration::from_secs(1),
            ping_interval: None,
            interactive: false,
        }
    }
}

/// Connects with the library's settings (`url` standing in for
/// `REDIS_URL`, the rest from `env`) and shows the connection until Ctrl-C
/// or `options.duration`. Errors are configuration errors, with the fix.
pub async fn watch(
    url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    options: &WatchOptions,
    out: &mut dyn Write,
) -> Result<(), String> {
    let lookup = |name: &str| match (name, url) {
        ("REDIS_URL", Some(url)) => Some(url.to_owned()),
        _ => env(name),
    };
    let (client_options, target) = if wants_sentinel(&lookup) {
        // Read as the client reads them, Sentinel settings included.
        let mut o = crate::Options::from_lookup(lookup).map_err(|e| error_text(&e))?;
        if let Some(every) = options.ping_interval {
            o.config.ping_interval = every;
        }
        if url.is_some() {
            o.host_source = HostSource::Url;
        }
        let target = match &o.sentinel {
            Some(s) => redacted_sentinel_url(&o.config, s),
            None => redacted_url(&o.config),
        };
        (o, target)
    } else {
        let mut config = Config::from_env(lookup).map_err(|e| e.to_string())?;
        if let Some(every) = options.ping_interval {
            config.ping_interval = every;
        }
        let tls = TlsOptions::from_lookup(env).map_err(|e| e.to_string())?;
        let target = redacted_url(&config);
        let mut client_options = crate::Options::from_config(config).tls(tls);
        client_options.host_source = match url {
            Some(_) => HostSource::Url,
            None => HostSource::of_env(env),
        };
        (client_options, target)
    };
    let client = Client::with_options(client_options).map_err(|e| error_text(&e))?;
    // Subscribed before the driver task first runs (it needs this task to
    // yield), so the first Connecting is not missed.
    let mut events = client.events();
    let mut sentinel_events = client.sentinel_events();
    let started = Instant::now();
    let mut view = View {
        target,
        started,
        next_retry: None,
        log: Vec::new(),
    };
    let end = options.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(options.refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    if !options.interactive {
        let _ = writeln!(out, "resilis watch: {} (Ctrl-C to stop)", view.target);
    }
    let stopped_by = loop {
        tokio::select! {
            _ = &mut ctrl_c => break "Ctrl-C",
            _ = sleep_until(end) => break "--for elapsed",
            event = next_sentinel_event(&mut sentinel_events) => {
                let line = match event {
                    Ok(event) => describe_sentinel(&event),
                    Err(RecvError::Lagged(n)) => format!("({n} Sentinel events missed)"),
                    Err(RecvError::Closed) => {
                        sentinel_events = None;
                        continue;
                    }
                };
                let stamped = format!("{:>8}  {line}", stamp(started.elapsed()));
                if options.interactive {
                    view.log.push(stamped);
                    if view.log.len() > EVENTS_SHOWN {
                        view.log.remove(0);
                    }
                    let _ = write!(out, "{}", view.screen(&client.health(), client.sentinel_health().as_ref()));
                } else {
                    let _ = writeln!(out, "{stamped}");
                }
            }
            event = events.recv() => {
                let line = match event {
                    Ok(event) => {
                        view.note(&event);
                        describe(&event)
                    }
                    Err(RecvError::Lagged(n)) => format!("({n} events missed)"),
                    Err(RecvError::Closed) => break "the client stopped",
                };
                let stamped = format!("{:>8}  {line}", stamp(started.elapsed()));
                if options.interactive {
                    view.log.push(stamped);
                    if view.log.len() > EVENTS_SHOWN {
                        view.log.remove(0);
                    }
                    let _ = write!(out, "{}", view.screen(&client.health(), client.sentinel_health().as_ref()));
                } else {
                    let _ = writeln!(out, "{stamped}");
                }
            }
            _ = tick.tick() => {
                let health = client.health();
                let sentinel = client.sentinel_health();
                if options.interactive {
                    let _ = write!(out, "{}", view.screen(&health, sentinel.as_ref()));
                } else {
                    let _ = writeln!(out, "{:>8}  {}", stamp(started.elapsed()), view.status_line(&health, sentinel.as_ref()));
                }
            }
        }
        let _ = out.flush();
    };
    let health = client.health();
    let sentinel = client.sentinel_health();
    client.shutdown().await;
    let _ = writeln!(
        out,
        "{:>8}  stopped ({stopped_by}); last status: {}",
        stamp(started.elapsed()),
        view.status_line(&health, sentinel.as_ref())
    );
    let _ = out.flush();
    Ok(())
}

/// Sentinel mode is asked for, as `Options::from_lookup` decides it.
fn wants_sentinel(lookup: &dyn Fn(&str) -> Option<String>) -> bool {
    lookup("REDIS_URL").is_some_and(|u| {
        let u = u.trim_start();
        u.starts_with("redis+sentinel://") || u.starts_with("rediss+sentinel://")
    }) || lookup("REDIS_SENTINELS").is_some()
        || lookup("REDIS_SENTINEL_MASTER").is_some()
}

/// A client error with its fix, as a config error reads.
fn error_text(e: &crate::Error) -> String {
    match (e, e.fix()) {
        (crate::Error::Config(_), _) | (_, None) => e.to_string(),
        (_, Some(fix)) => format!("{e}: {fix}"),
    }
}

/// The next change of master; pending forever outside Sentinel mode.
async fn next_sentinel_event(
    events: &mut Option<broadcast::Receiver<SentinelEvent>>,
) -> Result<SentinelEvent, RecvError> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// A change of master as a line of the log.
pub fn describe_sentinel(event: &SentinelEvent) -> String {
    match event {
        SentinelEvent::MasterChanged { from, to, cause } => format!(
            "sentinel: master {} → {} ({cause})",
            from.as_deref().unwrap_or("none"),
            to.as_deref().unwrap_or("none")
        ),
    }
}

/// `master=host:port sentinels=2/3`: the master followed and the
/// sentinels connected.
fn sentinel_status(s: &SentinelHealth) -> String {
    format!(
        "master={} sentinels={}/{}",
        s.master.as_deref().unwrap_or("-"),
        s.sentinels.iter().filter(|s| s.ready).count(),
        s.sentinels.len()
    )
}

async fn sleep_until(end: Option<tokio::time::Instant>) {
    match end {
        Some(end) => tokio::time::sleep_until(end).await,
        None => std::future::pending().await,
    }
}

struct View {
    target: String,
    started: Instant,
    /// When the next connect attempt is due, as the last event announced.
    next_retry: Option<(Instant, String)>,
    log: Vec<String>,
}

impl View {
    fn note(&mut self, event: &Event) {
        let now = Instant::now();
        self.next_retry = match *event {
            Event::Reconnecting {
                attempt,
                max_attempts,
                delay,
            } => Some((now + delay, format!("attempt {attempt}/{max_attempts}"))),
            Event::Down { probe_interval, .. } => Some((now + probe_interval, "probe".into())),
            Event::Failed {
                retry_in: Some(delay),
                ..
            } => Some((now + delay, "probe after a permanent failure".into())),
            Event::Failed { retry_in: None, .. } | Event::GaveUp { .. } => None,
            Event::Connecting { .. } | Event::Ready { .. } => None,
            _ => return,
        };
    }

    fn next_retry(&self) -> String {
        match &self.next_retry {
            Some((at, what)) => format!(
                "in {} ({what})",
                show_ms(at.saturating_duration_since(Instant::now()))
            ),
            None => "-".into(),
        }
    }

    fn status_line(&self, h: &Health, sentinel: Option<&SentinelHealth>) -> String {
        let mut line = format!(
            "phase={} attempt={} next_retry={} ping={} fallback={} reconnects={} ok={} failed={}",
            h.state,
            h.reconnect_attempts,
            match &self.next_retry {
                Some((at, _)) => format!(
                    "{}ms",
                    at.saturating_duration_since(Instant::now()).as_millis()
                ),
                None => "-".into(),
            },
            h.ping_latency_ms
                .map_or("-".into(), |ms| format!("{ms:.2}ms")),
            if h.fallback_active { "on" } else { "off" },
            h.counters.reconnects,
            h.counters.commands_ok,
            h.counters.commands_failed,
        );
        if let Some(s) = sentinel {
            line.push(' ');
            line.push_str(&sentinel_status(s));
        }
        line
    }

    fn screen(&self, h: &Health, sentinel: Option<&SentinelHealth>) -> String {
        let mut s = String::from("\x1b[H\x1b[2J");
        let line = |s: &mut String, k: &str, v: String| {
            s.push_str(&format!("  {k:<12} {v}\n"));
        };
        s.push_str(&format!(
            "resilis watch: {}   (Ctrl-C to quit, {} elapsed)\n\n",
            self.target,
            stamp(self.started.elapsed())
        ));
        line(
            &mut s,
            "phase",
            format!(
                "{} (for {})",
                h.state,
                show_ms(Duration::from_millis(h.in_state_ms))
            ),
        );
        line(&mut s, "attempt", h.reconnect_attempts.to_string());
        line(&mut s, "next retry", self.next_retry());
        line(
            &mut s,
            "ping",
            h.ping_latency_ms
                .map_or("- (no keepalive PING yet)".into(), |ms| {
                    format!("{ms:.2} ms")
                }),
        );
        line(
            &mut s,
            "fallback",
            if h.fallback_active {
                "ON: serving from the in-memory cache"
            } else {
                "off"
            }
            .into(),
        );
        line(
            &mut s,
            "server",
            match (&h.server_version, h.protocol) {
                (Some(v), Some(p)) => format!("Redis {v}, RESP{p}"),
                _ => "-".into(),
            },
        );
        if let Some(e) = &h.last_error {
            line(&mut s, "last error", e.message.clone());
            line(&mut s, "fix", e.fix.to_owned());
        }
        if let Some(sh) = sentinel {
            line(
                &mut s,
                "master",
                format!(
                    "'{}' → {} (rounds {}, switches {}, not-master reports {})",
                    sh.master_name,
                    sh.master.as_deref().unwrap_or("- (none known)"),
                    sh.rounds,
                    sh.switches,
                    sh.not_master
                ),
            );
            line(
                &mut s,
                "sentinels",
                sh.sentinels
                    .iter()
                    .map(|st| {
                        format!(
                            "{} {}{}",
                            st.addr,
                            if st.ready { "up" } else { "DOWN" },
                            if st.watched { " (watched)" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" · "),
            );
            if let Some(e) = &sh.last_error {
                line(&mut s, "sentinel err", e.clone());
            }
        }
        let c = &h.counters;
        line(
            &mut s,
            "counters",
            format!(
                "reconnects {} · commands ok {} failed {} timed out {} · fallback hits {} misses {}",
                c.reconnects,
                c.commands_ok,
                c.commands_failed,
                c.commands_timed_out,
                c.fallback_hits,
                c.fallback_misses
            ),
        );
        s.push_str("\n  events:\n");
        for e in &self.log {
            s.push_str(&format!("  {e}\n"));
        }
        s
    }
}

/// One event as a line of the log.
pub fn describe(event: &Event) -> String {
    match *event {
        Event::PhaseChanged { from, to } => format!("phase {} → {}", from.as_str(), to.as_str()),
        Event::Connecting {
            attempt,
            max_attempts,
        } => format!("connecting (attempt {attempt}/{max_attempts})"),
        Event::Connected => "transport up".into(),
        Event::Ready {
            protocol,
            server_version,
        } => format!(
            "ready: RESP{}{}",
            protocol.version(),
            server_version.map_or(String::new(), |v| format!(", Redis {v}"))
        ),
        Event::Disconnected { reason } => format!("disconnected: {reason}"),
        Event::Reconnecting {
            attempt,
            max_attempts,
            delay,
        } => format!("retry {attempt}/{max_attempts} in {}", show_ms(delay)),
        Event::Down {
            reason,
            probe_interval,
        } => format!(
            "down (backoff used up), probing every {}: {reason}",
            show_duration(probe_interval)
        ),
        Event::Failed { reason, retry_in } => format!(
            "failed for good ({}): {reason}",
            retry_in.map_or("waiting for a retry".into(), |d| format!(
                "next probe in {}",
                show_duration(d)
            ))
        ),
        Event::GaveUp { reason } => format!("gave up: {reason}"),
        Event::FallbackEngaged { reason } => {
            format!(
                "fallback cache ON ({})",
                reason.to_string().split(": ").next().unwrap_or("")
            )
        }
        Event::FallbackReleased => "fallback cache off: Redis is back".into(),
    }
}

fn show_ms(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn stamp(d: Duration) -> String {
    format!("+{:.1}s", d.as_secs_f64())
}

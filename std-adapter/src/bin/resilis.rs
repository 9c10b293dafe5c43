//! `resilis`: the command line of the resilis crate.
//!
//! - `resilis doctor [URL]`: diagnoses a Redis connection step by step and
//!   says what to change (exit code per failing step; `--json`).
//! - `resilis watch [URL]`: a live view of the connection state machine
//!   (`--for 30s` to stop by itself; Ctrl-C otherwise).
//!
//! The work is in `resilis::doctor`; this file only parses arguments.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use resilis::doctor;

#[derive(Parser, Debug)]
#[command(
    name = "resilis",
    version,
    about = "Diagnose and watch a Redis connection",
    long_about = "Diagnose and watch a Redis connection.\n\nWith no URL, both commands use what the library would: REDIS_URL, or REDIS_HOST / REDIS_PORT / REDIS_PASSWORD / REDIS_TLS ..., else redis://127.0.0.1:6379. REDIS_TLS_CA_FILE, REDIS_TLS_INSECURE and REDIS_TLS_SERVER_NAME apply to TLS."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Checks DNS, TCP, TLS, the Redis handshake, PING and INFO, and says what to fix.
    #[command(after_long_help = doctor::EXIT_CODES, after_help = doctor::EXIT_CODES)]
    Doctor {
        /// redis://[user[:password]@]host[:port][/db], rediss://..., a cluster's redis://h1:p1,h2:p2,
        /// or redis+sentinel://h1:p1,h2:p2/master[/db] (stands in for REDIS_URL).
        url: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Limit for each step (e.g. 500ms, 2s).
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
        /// PING round trips to measure.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
        pings: u16,
    },
    /// Connects like the library and shows its state machine live (Ctrl-C to quit).
    #[command(after_help = WATCH_EXIT_CODES, after_long_help = WATCH_EXIT_CODES)]
    Watch {
        /// redis://..., rediss://... or redis+sentinel://... (stands in for REDIS_URL).
        url: Option<String>,
        /// Stop after this long (e.g. 30s), for scripts and logs.
        #[arg(long = "for", value_parser = parse_duration)]
        duration: Option<Duration>,
        /// How often the status is redrawn (printed, when not a terminal).
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        refresh: Duration,
        /// Keepalive PING interval, to see the latency sooner (default: the configured one).
        #[arg(long, value_parser = parse_duration)]
        ping_interval: Option<Duration>,
        /// Print lines even on a terminal (no in-place redraw).
        #[arg(long)]
        plain: bool,
    },
}

const WATCH_EXIT_CODES: &str = "\
Exit codes:
  0  stopped by Ctrl-C or --for (whatever the connection's state)
  2  usage error (bad arguments)
  3  config: REDIS_URL / REDIS_* / REDIS_TLS_* or the URL argument is invalid";

fn parse_duration(text: &str) -> Result<Duration, String> {
    resilis_core::config::parse_duration("the value", text)
        .map_err(|e| e.to_string())
        .and_then(|d| {
            if d.is_zero() {
                Err("must be more than 0".into())
            } else {
                Ok(d)
            }
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("resilis: cannot start the Tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match cli.command {
        Command::Doctor {
            url,
            json,
            timeout,
            pings,
        } => {
            let options = doctor::Options {
                timeout,
                pings: usize::from(pings),
                ..doctor::Options::default()
            };
            let report = runtime.block_on(doctor::diagnose(
                url.as_deref(),
                &doctor::process_env,
                &options,
            ));
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", doctor::render(&report));
            }
            report.exit_code()
        }
        Command::Watch {
            url,
            duration,
            refresh,
            ping_interval,
            plain,
        } => {
            let options = doctor::watch::WatchOptions {
                duration,
                refresh,
                ping_interval,
                interactive: !plain && std::io::stdout().is_terminal(),
            };
            let mut out = std::io::stdout();
            match runtime.block_on(doctor::watch::watch(
                url.as_deref(),
                &doctor::process_env,
                &options,
                &mut out,
            )) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("resilis watch: {e}");
                    3
                }
            }
        }
    };
    // A DNS lookup that outlived its timeout runs on a blocking thread:
    // do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

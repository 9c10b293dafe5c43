//! Real `redis-server` processes for the tests: one per test, on free
//! loopback ports, in a directory of its own, killed and cleaned up on drop.
//!
//! The tests never skip: a missing `redis-server` is a loud failure that
//! says how to install it, because a suite that silently runs nothing proves
//! nothing. Every wait here is bounded in time, and no server outlives the
//! test process (see [`spawn_guarded`]).
//!
//! All methods take `&self`, so one server can be shared (e.g. in an `Arc`)
//! between a workload and the code that kills and restarts it. They block
//! (at most a few seconds); from async code call them in
//! `tokio::task::spawn_blocking` or accept the short stall.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::raw::{RawConn, Reply};
use crate::tls::{CertFiles, TestPki};

/// How long a start or restart may take before the test fails. A fresh
/// redis-server with no data is ready in a few milliseconds; this is the
/// bound for a machine that is very busy compiling next door.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop()` waits for a graceful exit before it SIGKILLs.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Port clashes are retried this many times with fresh ports.
const START_ATTEMPTS: usize = 5;
const POLL: Duration = Duration::from_millis(10);

/// The message every test shows when Redis is not installed.
pub const MISSING_REDIS: &str = "redis-server not found: install it with `apt-get install -y redis-server` \
     (the tests need a real Redis; they never skip)";

/// Path of the `redis-server` binary: `$RESILIS_REDIS_SERVER`, then
/// `/usr/bin/redis-server`, then `PATH`. Panics with [`MISSING_REDIS`].
pub fn redis_server_binary() -> PathBuf {
    find_binary("RESILIS_REDIS_SERVER", "redis-server").unwrap_or_else(|| panic!("{MISSING_REDIS}"))
}

/// Path of `redis-cli` (Debian's `redis-tools`, a dependency of
/// `redis-server`), for the few checks that need its TLS support.
pub fn redis_cli_binary() -> PathBuf {
    find_binary("RESILIS_REDIS_CLI", "redis-cli").unwrap_or_else(|| {
        panic!(
            "redis-cli not found: install it with `apt-get install -y redis-tools redis-server` \
             (the tests need a real Redis; they never skip)"
        )
    })
}

fn find_binary(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let usr_bin = Path::new("/usr/bin").join(name);
    if usr_bin.is_file() {
        return Some(usr_bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// An ACL user created at startup with full rights (`~* &* +@all`).
#[derive(Debug, Clone)]
struct AclUser {
    name: String,
    password: String,
}

#[derive(Debug, Clone)]
struct TlsSetup {
    cert_pem: String,
    key_pem: String,
    ca_pem: String,
    auth_clients: bool,
}

/// Options for a [`RedisServer`]. The defaults are a plain port, no
/// persistence (`save ""`, `appendonly no`), protected mode off (so that a
/// proxy connecting from another loopback address is not refused), and
/// `DEBUG` allowed from loopback (for `DEBUG SLEEP`: a server that stalls).
#[derive(Debug, Clone)]
pub struct RedisServerBuilder {
    plain: bool,
    tls: Option<TlsSetup>,
    requirepass: Option<String>,
    users: Vec<AclUser>,
    resp2_only: bool,
    maxclients: Option<u32>,
    protected_mode: bool,
    idle_timeout: Option<Duration>,
    config_lines: Vec<String>,
    args: Vec<String>,
}

impl Default for RedisServerBuilder {
    fn default() -> Self {
        RedisServerBuilder {
            plain: true,
            tls: None,
            requirepass: None,
            users: Vec::new(),
            resp2_only: false,
            maxclients: None,
            protected_mode: false,
            idle_timeout: None,
            config_lines: Vec::new(),
            args: Vec::new(),
        }
    }
}

impl RedisServerBuilder {
    /// Adds a TLS port serving `pki.server` (signed by `pki.ca`), keeping
    /// the plain port: both are open.
    pub fn tls(self, pki: &TestPki) -> Self {
        self.tls_identity(&pki.server, &pki.ca)
    }

    /// TLS only: the client-facing plain port is gone (`port()` panics) and
    /// a plaintext client on `tls_port()` is reset, as with a managed
    /// Redis. The helper still reaches the server over a private plain
    /// admin port that no client is told about (see [`RedisServer::admin_port`]).
    pub fn tls_only(mut self, pki: &TestPki) -> Self {
        self.plain = false;
        self.tls(pki)
    }

    /// A TLS port serving `server` and trusting `ca` for client
    /// certificates; e.g. `(&pki.other_server, &pki.other_ca)` gives a
    /// server a client trusting `pki.ca` must refuse.
    pub fn tls_identity(mut self, server: &CertFiles, ca: &CertFiles) -> Self {
        // Copied, so the server can restart after the TestPki is dropped.
        self.tls = Some(TlsSetup {
            cert_pem: server.cert_pem.clone(),
            key_pem: server.key_pem.clone(),
            ca_pem: ca.cert_pem.clone(),
            auth_clients: self.tls.as_ref().is_some_and(|t| t.auth_clients),
        });
        self
    }

    /// Requires client certificates signed by the CA (mutual TLS). Call
    /// after `tls` / `tls_only` / `tls_identity`.
    pub fn tls_client_auth(mut self) -> Self {
        self.tls
            .as_mut()
            .expect("tls_client_auth() needs tls(), tls_only() or tls_identity() first")
            .auth_clients = true;
        self
    }

    /// `requirepass`: the default user needs this password (`AUTH pw`).
    /// The helper's own commands authenticate with it.
    pub fn requirepass(mut self, password: &str) -> Self {
        self.requirepass = Some(password.to_owned());
        self
    }

    /// An ACL user with full rights: `user NAME on >PASSWORD ~* &* +@all`.
    /// The default user stays as it is (no password unless `requirepass`).
    pub fn acl_user(mut self, name: &str, password: &str) -> Self {
        self.users.push(AclUser {
            name: name.to_owned(),
            password: password.to_owned(),
        });
        self
    }

    /// A RESP2-only server, like Redis before 6: `HELLO` is renamed away
    /// and answers `-ERR unknown command 'HELLO'` (checked on 7.0.15).
    pub fn resp2_only(mut self) -> Self {
        self.resp2_only = true;
        self
    }

    /// `maxclients N`: connection N+1 gets `-ERR max number of clients
    /// reached`. The helper's transient admin connection counts too.
    pub fn maxclients(mut self, n: u32) -> Self {
        self.maxclients = Some(n);
        self
    }

    /// `protected-mode yes` with no password. Redis 7.0 then answers
    /// `-DENIED ...` to any client whose address is not exactly 127.0.0.1
    /// or ::1 — so on loopback, a client connecting *from 127.0.0.2* is
    /// denied (verified on 7.0.15). To put a client that cannot choose its
    /// source address in that position, route it through
    /// `FaultProxy::builder(addr).upstream_source(127.0.0.2)`.
    pub fn protected_mode(mut self) -> Self {
        self.protected_mode = true;
        self
    }

    /// Redis's idle `timeout`: connections idle this long are closed by the
    /// server. Redis counts whole seconds, so this rounds up (minimum 1 s).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// Any other line for the config file, e.g. `"maxmemory 1mb"`.
    pub fn config(mut self, line: &str) -> Self {
        self.config_lines.push(line.to_owned());
        self
    }

    /// Any other command-line argument, appended after the config file.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Starts the server and waits (bounded) until it accepts commands.
    /// Panics with the server's log if it cannot start.
    pub fn start(self) -> RedisServer {
        let binary = redis_server_binary();
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("resilis-redis-")
                .tempdir()
                .expect("cannot create a temp dir for redis-server");
            let ports = Ports {
                plain: self.plain,
                admin: pick_port(),
                tls: self.tls.as_ref().map(|_| pick_port()),
            };
            let server = RedisServer {
                binary: binary.clone(),
                options: self.clone(),
                ports,
                state: Mutex::new(ProcessState {
                    child: None,
                    generation: 0,
                }),
                dir,
            };
            server.write_config();
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(StartError::AddrInUse(log)) => last_error = log,
                Err(StartError::Failed(log)) => panic!("redis-server failed to start:\n{log}"),
            }
        }
        panic!(
            "redis-server: no free port after {START_ATTEMPTS} attempts; last log:\n{last_error}"
        );
    }
}

#[derive(Debug, Clone, Copy)]
struct Ports {
    /// Whether `admin` is also the client-facing plain port.
    plain: bool,
    admin: u16,
    tls: Option<u16>,
}

struct ProcessState {
    child: Option<Child>,
    generation: u32,
}

enum StartError {
    AddrInUse(String),
    Failed(String),
}

/// A running `redis-server`, killed (SIGKILL) and its directory removed on
/// drop — also when the test panics.
pub struct RedisServer {
    binary: PathBuf,
    options: RedisServerBuilder,
    ports: Ports,
    state: Mutex<ProcessState>,
    dir: TempDir,
}

impl RedisServer {
    /// A plain server with the default options.
    pub fn start() -> RedisServer {
        RedisServer::builder().start()
    }

    /// Options for a server; finish with `.start()`.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// The plain port clients use. Panics on a TLS-only server, where a
    /// plain port would be a test bug.
    pub fn port(&self) -> u16 {
        assert!(
            self.ports.plain,
            "this redis-server is TLS-only: use tls_port() / tls_url()"
        );
        self.ports.admin
    }

    /// The TLS port. Panics if the server has no TLS.
    pub fn tls_port(&self) -> u16 {
        self.ports
            .tls
            .expect("this redis-server has no TLS port: build it with .tls() or .tls_only()")
    }

    /// The plain port the helper itself uses: the client port, or on a
    /// TLS-only server a private one no client is given.
    pub fn admin_port(&self) -> u16 {
        self.ports.admin
    }

    /// `127.0.0.1:port()`.
    pub fn addr(&self) -> SocketAddr {
        loopback(self.port())
    }

    /// `127.0.0.1:tls_port()`.
    pub fn tls_addr(&self) -> SocketAddr {
        loopback(self.tls_port())
    }

    /// `redis://127.0.0.1:PORT`, without credentials: tests add the right
    /// (or wrong) ones themselves.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port())
    }

    /// `rediss://127.0.0.1:TLS_PORT`. The server certificate names both
    /// `127.0.0.1` and `localhost`; use `localhost` as SNI if needed.
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port())
    }

    /// The process id while running.
    pub fn pid(&self) -> Option<u32> {
        let mut state = self.lock();
        reap(&mut state);
        state.child.as_ref().map(Child::id)
    }

    /// Whether the process is alive.
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// SIGKILL, like a crash or an OOM kill: no goodbye to the clients, the
    /// kernel closes their sockets. Returns once the process is reaped.
    /// A no-op if it is not running.
    pub fn kill(&self) {
        let mut state = self.lock();
        if let Some(mut child) = state.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and a bounded wait for Redis's own shutdown (it closes client
    /// connections); SIGKILL if that takes over 5 s.
    pub fn stop(&self) {
        let mut state = self.lock();
        let Some(mut child) = state.child.take() else {
            return;
        };
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits in pid_t");
        // SAFETY: plain kill(2) on our own, not yet reaped child: the pid
        // cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again on the same port(s), killing it first if it
    /// still runs, and waits until it is ready (bounded). Data is gone: no
    /// persistence. Panics with the log if it cannot come back.
    pub fn restart(&self) {
        self.kill();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                // Someone took our port while the server was down; it may
                // be a short-lived outgoing connection, so keep trying.
                Err(StartError::AddrInUse(log)) if Instant::now() < deadline => {
                    let _ = log;
                    thread::sleep(Duration::from_millis(50));
                }
                Err(StartError::AddrInUse(log) | StartError::Failed(log)) => {
                    panic!("redis-server failed to restart on the same port(s):\n{log}")
                }
            }
        }
    }

    /// Runs one command over a fresh raw connection to the admin port
    /// (authenticated when the server has `requirepass`) and renders the
    /// reply like `redis-cli`: `"OK"`, `"42"`, `"(nil)"`, `"(error) ERR ..."`.
    /// Independent of resilis, for checking server-side state. Panics if the
    /// server cannot be reached.
    pub fn command(&self, args: &[&str]) -> String {
        self.command_reply(args).to_string()
    }

    /// Like [`command`](Self::command) but returns the structured reply.
    pub fn command_reply(&self, args: &[&str]) -> Reply {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("raw command {args:?} to redis-server failed: {e}"))
    }

    /// Like [`command_reply`](Self::command_reply) without panicking, for
    /// checks made while the server may be down.
    pub fn try_command(&self, args: &[&str]) -> io::Result<Reply> {
        let mut conn = self.admin_conn()?;
        conn.command(args)
    }

    /// A raw connection to the admin port, authenticated like `command`.
    pub fn admin_conn(&self) -> io::Result<RawConn> {
        let mut conn = RawConn::connect(loopback(self.ports.admin))?;
        if let Some(pw) = &self.options.requirepass {
            let reply = conn.command(&["AUTH", pw])?;
            if reply.is_error() {
                return Err(io::Error::other(format!("admin AUTH failed: {reply}")));
            }
        }
        Ok(conn)
    }

    /// A raw, unauthenticated connection to the client plain port, for
    /// provoking the server by hand (wrong AUTH, HELLO, maxclients).
    pub fn raw_conn(&self) -> RawConn {
        RawConn::connect(self.addr()).expect("raw connection to redis-server")
    }

    /// The server's working directory (config, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The log of the current (or last) run, for failure messages.
    pub fn log(&self) -> String {
        let generation = self.lock().generation;
        read_logs(self.dir.path(), generation)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProcessState> {
        // A panic while holding the lock leaves nothing half-updated that
        // matters more than killing the process, so ignore poisoning.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_config(&self) {
        let o = &self.options;
        let dir = self.dir.path();
        let mut conf = String::new();
        let mut line = |s: String| {
            conf.push_str(&s);
            conf.push('\n');
        };
        line("bind 127.0.0.1".into());
        line(format!("port {}", self.ports.admin));
        line(format!("dir {}", dir.display()));
        line("daemonize no".into());
        line("save \"\"".into());
        line("appendonly no".into());
        line("enable-debug-command local".into());
        line(format!(
            "protected-mode {}",
            if o.protected_mode { "yes" } else { "no" }
        ));
        if let (Some(tls), Some(port)) = (&o.tls, self.ports.tls) {
            let write = |name: &str, pem: &str| {
                let path = dir.join(name);
                fs::write(&path, pem).expect("cannot write TLS file for redis-server");
                path
            };
            line(format!("tls-port {port}"));
            line(format!(
                "tls-cert-file {}",
                write("server.crt", &tls.cert_pem).display()
            ));
            line(format!(
                "tls-key-file {}",
                write("server.key", &tls.key_pem).display()
            ));
            line(format!(
                "tls-ca-cert-file {}",
                write("ca.crt", &tls.ca_pem).display()
            ));
            line(format!(
                "tls-auth-clients {}",
                if tls.auth_clients { "yes" } else { "no" }
            ));
        }
        if let Some(pw) = &o.requirepass {
            line(format!("requirepass {}", quote(pw)));
        }
        for user in &o.users {
            line(format!(
                "user {} on {} ~* &* +@all",
                user.name,
                quote(&format!(">{}", user.password))
            ));
        }
        if o.resp2_only {
            line("rename-command HELLO \"\"".into());
        }
        if let Some(n) = o.maxclients {
            line(format!("maxclients {n}"));
        }
        if let Some(idle) = o.idle_timeout {
            let secs = idle.as_secs() + u64::from(idle.subsec_nanos() > 0);
            line(format!("timeout {}", secs.max(1)));
        }
        for extra in &o.config_lines {
            line(extra.clone());
        }
        fs::write(dir.join("redis.conf"), conf).expect("cannot write redis.conf");
    }

    /// Spawns a new generation of the process and waits until it answers.
    fn spawn_and_wait(&self) -> Result<(), StartError> {
        let mut state = self.lock();
        state.generation += 1;
        let generation = state.generation;
        let dir = self.dir.path();
        let out = File::create(dir.join(format!("redis-{generation}.out")))
            .expect("cannot create redis-server output file");
        let mut cmd = Command::new(&self.binary);
        cmd.arg(dir.join("redis.conf"))
            .arg("--logfile")
            .arg(dir.join(format!("redis-{generation}.log")))
            .args(&self.options.args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                out.try_clone().expect("cannot duplicate output file"),
            ))
            .stderr(Stdio::from(out));
        let child = spawn_guarded(cmd).unwrap_or_else(|e| {
            panic!("cannot run {}: {e}\n{MISSING_REDIS}", self.binary.display())
        });
        state.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = state.child.as_mut().expect("set above");
            if let Ok(Some(status)) = child.try_wait() {
                state.child = None;
                let log = format!("exit status {status}\n{}", read_logs(dir, generation));
                return Err(if log.contains("Address already in use") {
                    StartError::AddrInUse(log)
                } else {
                    StartError::Failed(log)
                });
            }
            if self.is_ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                if let Some(mut child) = state.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(StartError::Failed(format!(
                    "not ready within {READY_TIMEOUT:?}\n{}",
                    read_logs(dir, generation)
                )));
            }
            thread::sleep(POLL);
        }
    }

    /// Ready means: the plain port answers PING with anything but
    /// `-LOADING` (a `-NOAUTH` is an answer), and the TLS port accepts.
    fn is_ready(&self) -> bool {
        let answered = RawConn::connect(loopback(self.ports.admin))
            .and_then(|mut c| c.command(&["PING"]))
            .is_ok_and(|r| !matches!(&r, Reply::Error(e) if e.starts_with("LOADING")));
        let tls_open = self.ports.tls.is_none_or(|port| {
            TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200)).is_ok()
        });
        answered && tls_open
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("ports", &self.ports)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

fn reap(state: &mut ProcessState) {
    if let Some(child) = state.child.as_mut()
        && matches!(child.try_wait(), Ok(Some(_)))
    {
        state.child = None;
    }
}

/// Redis config quoting: double quotes, with `"` and `\` escaped.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn read_logs(dir: &Path, generation: u32) -> String {
    let mut out = String::new();
    for name in [
        format!("redis-{generation}.out"),
        format!("redis-{generation}.log"),
    ] {
        if let Ok(text) = fs::read_to_string(dir.join(&name)) {
            let _ = writeln!(out, "--- {name} ---\n{text}");
        }
    }
    out
}

/// Picks a loopback port that is free now and that this process has not
/// handed out before. Ports come from below the kernel's ephemeral range, so
/// an outgoing connection is unlikely to grab one while its server is down
/// between `kill()` and `restart()`.
pub fn pick_port() -> u16 {
    static TAKEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let taken = TAKEN.get_or_init(Default::default);
    let low = ephemeral_low().clamp(20_001, 65_535);
    let span = u64::from(low - 20_000);
    let random = RandomState::new();
    for attempt in 0u64..200 {
        let port = 20_000 + (random.hash_one(attempt) % span) as u16;
        let mut taken = taken.lock().unwrap_or_else(|p| p.into_inner());
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            taken.insert(port);
            return port;
        }
    }
    // Fall back to whatever the kernel picks.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local addr").port();
    taken.lock().unwrap_or_else(|p| p.into_inner()).insert(port);
    port
}

fn ephemeral_low() -> u16 {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns a child that the kernel SIGKILLs when the test process dies, even
/// by SIGKILL or a CI timeout, where no `Drop` runs.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked exits, not the
/// process; test threads come and go, so every spawn goes through one
/// spawner thread that lives as long as the process.
pub fn spawn_guarded(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("redis-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(spawn_with_parent_death_signal(&mut cmd));
                }
            })
            .expect("cannot start the spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv_timeout(READY_TIMEOUT)
        .map_err(|_| io::Error::other("spawner thread did not answer"))?
}

fn spawn_with_parent_death_signal(cmd: &mut Command) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe calls (prctl, getppid); it allocates nothing.
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(io::Error::other("parent exited during spawn"));
            }
            Ok(())
        });
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_is_reported_not_skipped() {
        assert!(
            find_binary("RESILIS_TEST_UNSET_VARIABLE", "no-such-redis-server-binary").is_none()
        );
        assert!(MISSING_REDIS.contains("apt-get install -y redis-server"));
        assert!(MISSING_REDIS.contains("never skip"));
    }

    #[test]
    fn config_values_are_quoted() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn picked_ports_are_distinct_and_below_the_ephemeral_range() {
        let ports: HashSet<u16> = (0..50).map(|_| pick_port()).collect();
        assert_eq!(ports.len(), 50);
        assert!(ports.iter().all(|&p| p >= 20_000 && p < ephemeral_low()));
    }
}

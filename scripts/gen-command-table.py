#!/usr/bin/env python3
"""Generates core/src/command/table.rs from a real redis-server.

Usage (from anywhere in the checkout):

    python3 scripts/gen-command-table.py            # starts its own redis-server
    python3 scripts/gen-command-table.py --port N   # asks one already running
    python3 scripts/gen-command-table.py --check    # fails if the file is stale

The facts (names, arity, readonly/write/blocking/pubsub, key specs) come from
the server's `COMMAND` reply, never from memory, so the table is exactly what
that Redis version does; `tests/tests/command_table.rs` checks the checked-in
file against a live server. The judgements (which commands change the
connection's state, which may be written twice) are resilis's own and live in
the curated sets below, each with its reason.

Python 3.11, standard library only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "core" / "src" / "command" / "table.rs"

# --- resilis's judgements ---------------------------------------------------

# Pub/sub proper: after these the connection's replies become pushes. PUBLISH,
# SPUBLISH and PUBSUB <sub> also carry Redis's `pubsub` flag, but they are
# ordinary request/reply commands that work on any connection, so they must
# route Shared and are not marked.
PUBSUB_PUSH = {
    "subscribe", "psubscribe", "ssubscribe",
    "unsubscribe", "punsubscribe", "sunsubscribe",
}

# Change the connection's state for the commands after them (database,
# protocol, credentials, transaction, reply mode, tracking, replication or
# cluster read mode), or break one-reply-per-command (QUIT, MONITOR, SYNC):
# on a shared, pipelined connection they would change things under every
# other caller. SWAPDB is not here: it changes data, not this connection.
# CLIENT NO-TOUCH (7.2) stops later commands from touching keys' LRU/LFU.
CONN_STATE = {
    "select", "hello", "auth", "reset", "quit", "monitor", "sync", "psync",
    "replconf", "multi", "exec", "discard", "watch", "unwatch",
    "client|reply", "client|tracking", "client|caching", "client|no-touch",
    "readonly", "readwrite", "asking",
}

# Answer about this connection's own earlier writes: meaningless anywhere
# else. Redis does not flag them `blocking`, and they stay off the blocking
# pool: they must follow the writes on the shared connection.
SAME_CONN = {"wait", "waitaof"}

# Not `readonly` in Redis, yet writing them twice leaves the same data and
# gets the same reply, so a reconnect may resend them. Every `readonly`
# command is resend-safe too (added below). SET loses this in classify() when
# NX or GET makes the second reply differ. HSET/INCR/LPUSH... are not here:
# their second reply differs. EVAL/EVALSHA/FCALL are not: a script may do
# anything (the *_RO variants are `readonly`).
RESEND_SAFE = {
    # (DBSIZE needs no entry: Redis flags it `readonly`.)
    "ping", "echo", "time", "info", "role", "lastsave",
    "client|id", "client|getname", "client|info", "client|list",
    "config|get",
    # Informational pub/sub commands: counts and names, nothing changes.
    "pubsub|channels", "pubsub|numpat", "pubsub|numsub",
    "pubsub|shardchannels", "pubsub|shardnumsub",
    "set", "setex", "psetex", "mset", "hmset", "lset",
}
# COMMAND and all its subcommands describe the server's command table; every
# CONTAINER|HELP returns fixed text.
RESEND_SAFE_PREFIXES = ("command",)
RESEND_SAFE_SUFFIXES = ("|help",)

# Answerable by the adapter's fallback cache (one string key).
FALLBACK_READ = {"get"}

# Key specs whose argument, when empty, is a placeholder rather than a key:
# MIGRATE host port "" db timeout KEYS k1 k2 (the KEYS form requires it).
# (command, index of the key spec)
EMPTY_IS_PLACEHOLDER = {("migrate", 0)}

# Commands of later Redis 7.x releases than the server this runs against
# usually is (Debian's 7.0): name -> (arity, Redis flags). None of them has
# keys. Taken only when the server does not list the command; a newer server's
# own COMMAND reply wins. The live test allows exactly these to be absent.
LATER_7X = {
    "waitaof": (4, ["noscript"]),  # 7.2
    "client|no-touch": (3, ["noscript", "loading", "stale"]),  # 7.2
    "client|setinfo": (4, ["noscript", "loading", "stale"]),  # 7.2
}

# Subcommands are kept for these containers (all that 7.x has but DEBUG).
CONTAINERS = {
    "client", "config", "xinfo", "object", "memory", "script", "function",
    "cluster", "acl", "command", "module", "pubsub", "slowlog", "latency",
    "xgroup",
}

# --- talking to Redis (RESP2 over a socket) ---------------------------------


class RedisError(Exception):
    pass


def send(sock_file, *args: str) -> object:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    sock_file.write(b"".join(out))
    sock_file.flush()
    return read_reply(sock_file)


def read_reply(f) -> object:
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise RedisError(f"connection closed mid-reply: {line!r}")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        raise RedisError(body.decode())
    if kind == b":":
        return int(body)
    if kind == b"$":
        n = int(body)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode()
    if kind == b"*":
        n = int(body)
        return None if n < 0 else [read_reply(f) for _ in range(n)]
    raise RedisError(f"unexpected reply type {line!r}")


def as_map(flat: list) -> dict:
    """RESP2 sends key-spec maps as flat [k1, v1, k2, v2] arrays."""
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port: int, deadline: float):
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            f = sock.makefile("rwb")
            if send(f, "PING") == "PONG":
                return sock, f
            sock.close()
        except (OSError, RedisError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"redis-server on port {port} did not answer PING")
        time.sleep(0.02)


def fetch(port: int) -> tuple[str, list]:
    sock, f = connect(port, time.monotonic() + 10)
    with sock:
        info = send(f, "INFO", "server")
        version = next(
            line.split(":", 1)[1].strip()
            for line in info.splitlines()
            if line.startswith("redis_version:")
        )
        return version, send(f, "COMMAND")


def fetch_from_own_server(binary: str) -> tuple[str, list]:
    if shutil.which(binary) is None:
        raise SystemExit(
            f"{binary} not found: install it with `apt-get install -y redis-server`"
        )
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="gen-command-table-") as d:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", d,
             "--logfile", os.path.join(d, "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )
        try:
            return fetch(port)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- from COMMAND replies to table rows -------------------------------------


def flatten(commands: list) -> list[dict]:
    rows = []
    for c in commands:
        name, arity, flags, specs, subs = c[0].lower(), c[1], c[2], c[8], c[9]
        rows.append({
            "name": name, "arity": arity, "redis_flags": set(flags),
            "specs": [parse_spec(as_map(s)) for s in specs],
        })
        if name in CONTAINERS:
            rows.extend(flatten(subs))
    return rows


def parse_spec(spec: dict) -> dict:
    bs, fk = as_map(spec["begin_search"]), as_map(spec["find_keys"])
    bs_spec, fk_spec = as_map(bs["spec"]), as_map(fk["spec"])
    if bs["type"] == "index":
        begin = f"index({bs_spec['index']})"
    elif bs["type"] == "keyword":
        begin = f"keyword({rust_str(bs_spec['keyword'])}, {bs_spec['startfrom']})"
    else:
        begin = "BeginSearch::Unknown"
    if fk["type"] == "range":
        find = f"range({fk_spec['lastkey']}, {fk_spec['keystep']}, {fk_spec['limit']})"
    elif fk["type"] == "keynum":
        find = f"keynum({fk_spec['keynumidx']}, {fk_spec['firstkey']}, {fk_spec['keystep']})"
    else:
        find = "FindKeys::Unknown"
    flags = set(spec["flags"])
    return {"begin": begin, "find": find,
            "not_key": "not_key" in flags, "incomplete": "incomplete" in flags}


def rust_str(s: str) -> str:
    assert s.isascii() and '"' not in s and "\\" not in s, s
    return f'"{s}"'


def judge(row: dict) -> list[str]:
    """Flags bits for one row: Redis's facts first, then resilis's judgements."""
    name, rf = row["name"], row["redis_flags"]
    bits = []
    if "readonly" in rf:
        bits.append("RO")
    if "write" in rf:
        bits.append("WR")
    if "blocking" in rf:
        bits.append("BL")
    if "pubsub" in rf and name in PUBSUB_PUSH:
        bits.append("PS")
    if name in CONN_STATE:
        bits.append("CS")
    if name in SAME_CONN:
        bits.append("SC")
    if ("readonly" in rf or name in RESEND_SAFE
            or name.split("|")[0] in RESEND_SAFE_PREFIXES
            or name.endswith(RESEND_SAFE_SUFFIXES)):
        bits.append("RS")
    if name in FALLBACK_READ:
        bits.append("FB")
    return bits


def add_later(rows: list[dict]) -> None:
    present = {r["name"] for r in rows}
    for name, (arity, flags) in LATER_7X.items():
        if name not in present:
            rows.append({"name": name, "arity": arity,
                         "redis_flags": set(flags), "specs": []})


def check_curated(rows: list[dict]) -> None:
    """A typo in a curated set would silently mark nothing."""
    names = {r["name"] for r in rows}
    for label, group in [("PUBSUB_PUSH", PUBSUB_PUSH), ("CONN_STATE", CONN_STATE),
                         ("SAME_CONN", SAME_CONN), ("RESEND_SAFE", RESEND_SAFE),
                         ("FALLBACK_READ", FALLBACK_READ)]:
        missing = sorted(group - names)
        if missing:
            raise SystemExit(f"{label} names unknown commands: {missing}")
    for name, index in EMPTY_IS_PLACEHOLDER:
        row = next((r for r in rows if r["name"] == name), None)
        if row is None or index >= len(row["specs"]):
            raise SystemExit(f"EMPTY_IS_PLACEHOLDER: {name} has no key spec {index}")


# --- rendering --------------------------------------------------------------

HEADER = """\
//! GENERATED by `scripts/gen-command-table.py` from redis-server {version}'s
//! `COMMAND` reply: do not edit by hand. Regenerate with
//!
//! ```text
//! python3 scripts/gen-command-table.py
//! ```
//!
//! (it starts a redis-server of its own; `--port N` asks a running one,
//! `--check` fails if this file is stale). `tests/tests/command_table.rs`
//! compares it with a live server. Facts come from Redis; the judgements
//! (CS, SC, RS, FB and which PUBSUB) are the script's curated sets.
//!
//! Sorted by name (bytes) for binary search; subcommands sit among the
//! commands as `container|sub`. Key spec lists are shared between commands.

use super::{BeginSearch, CommandInfo, FindKeys, Flags, KeySpec};

const RO: u16 = Flags::READONLY.0;
const WR: u16 = Flags::WRITE.0;
const BL: u16 = Flags::BLOCKING.0;
const PS: u16 = Flags::PUBSUB.0;
const CS: u16 = Flags::CONN_STATE.0;
const SC: u16 = Flags::SAME_CONN.0;
const RS: u16 = Flags::RESEND_SAFE.0;
const FB: u16 = Flags::FALLBACK_READ.0;

// Marks on a key spec, for `key()`.
const NOT_KEY: u8 = 1;
const INCOMPLETE: u8 = 2;
const PLACEHOLDER: u8 = 4;

const fn cmd(
    name: &'static str,
    arity: i8,
    flags: u16,
    key_specs: &'static [KeySpec],
) -> CommandInfo {
    CommandInfo {
        name,
        arity,
        flags: Flags(flags),
        key_specs,
    }
}

const fn key(begin: BeginSearch, find: FindKeys, marks: u8) -> KeySpec {
    KeySpec {
        begin,
        find,
        not_key: marks & NOT_KEY != 0,
        incomplete: marks & INCOMPLETE != 0,
        empty_is_placeholder: marks & PLACEHOLDER != 0,
    }
}

const fn index(at: u8) -> BeginSearch {
    BeginSearch::Index(at)
}

const fn keyword(keyword: &'static str, start_from: i8) -> BeginSearch {
    BeginSearch::Keyword {
        keyword,
        start_from,
    }
}

const fn range(last: i8, step: u8, limit: u8) -> FindKeys {
    FindKeys::Range { last, step, limit }
}

const fn keynum(numkeys_at: u8, first: u8, step: u8) -> FindKeys {
    FindKeys::KeyNum {
        numkeys_at,
        first,
        step,
    }
}
"""


def render_spec(spec: dict, placeholder: bool) -> str:
    marks = [m for m, on in [("NOT_KEY", spec["not_key"]),
                             ("INCOMPLETE", spec["incomplete"]),
                             ("PLACEHOLDER", placeholder)] if on]
    return f"    key({spec['begin']}, {spec['find']}, {' | '.join(marks) or '0'}),\n"


def render(version: str, rows: list[dict]) -> str:
    rows = sorted(rows, key=lambda r: r["name"].encode())
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names)), "duplicate command names"

    # One static per distinct key spec list, named by order of first use.
    lists: dict[str, str] = {}
    users: dict[str, list[str]] = {}
    refs = []
    for r in rows:
        specs = r["specs"]
        if not specs:
            refs.append("&[]")
            continue
        body = "".join(
            render_spec(s, (r["name"], i) in EMPTY_IS_PLACEHOLDER)
            for i, s in enumerate(specs)
        )
        key = f"{len(specs)}\n{body}"
        if key not in lists:
            lists[key] = f"K{len(lists)}"
            users[key] = []
        users[key].append(r["name"])
        refs.append(f"&{lists[key]}")

    out = [HEADER.replace("{version}", version)]
    for key, ident in lists.items():
        count, body = key.split("\n", 1)
        used = users[key]
        example = ", ".join(used[:3]) + (", ..." if len(used) > 3 else "")
        out.append(f"\n// {example} ({len(used)} in all)\n")
        one_line = f"static {ident}: [KeySpec; 1] = [{body.strip().rstrip(',')}];"
        if count == "1" and len(one_line) <= 100:  # as rustfmt lays it out
            out.append(one_line + "\n")
        else:
            out.append(f"static {ident}: [KeySpec; {count}] = [\n{body}];\n")

    out.append(f"\npub(super) static COMMANDS: [CommandInfo; {len(rows)}] = [\n")
    for r, ref in zip(rows, refs):
        bits = " | ".join(judge(r)) or "0"
        assert -128 <= r["arity"] <= 127
        out.append(f'    cmd("{r["name"]}", {r["arity"]}, {bits}, {ref}),\n')
    out.append("];\n")
    return "".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, help="ask a redis-server already on 127.0.0.1:PORT")
    ap.add_argument("--server", default="redis-server", help="redis-server binary to start")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if --out differs from what would be generated")
    args = ap.parse_args()

    version, commands = fetch(args.port) if args.port else fetch_from_own_server(args.server)
    rows = flatten(commands)
    add_later(rows)
    check_curated(rows)
    text = render(version, rows)

    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run python3 scripts/gen-command-table.py",
                  file=sys.stderr)
            return 1
        print(f"{args.out} is up to date ({len(rows)} entries, Redis {version})")
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}: {len(rows)} entries from Redis {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

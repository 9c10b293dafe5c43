//! The checked-in command table (`core/src/command/table.rs`) against a live
//! redis-server: every command and subcommand the server lists must be in
//! the table with the same arity, the same readonly/write/blocking/pubsub
//! facts and the same key specs. When Redis changes, this fails until the
//! table is regenerated with `python3 scripts/gen-command-table.py`.
//!
//! The table's own judgements (connection state, resend safety, the
//! fallback read, MIGRATE's placeholder key) are not Redis's and are not
//! compared, except where they override a Redis fact (PUBSUB).

use resilis_core::command::{self, BeginSearch, CommandInfo, FindKeys, Flags, KeySpec};
use resilis_tests::{RedisServer, Reply};

/// Commands of Redis releases after the one the tests run against that the
/// table holds anyway (WAITAOF and two CLIENT subcommands, 7.2).
const LATER_THAN_SERVER: &[&str] = &["waitaof", "client|no-touch", "client|setinfo"];

/// Redis flags these `pubsub`, but they are request/reply commands that run
/// on the shared connection; only (P|S)(UN)SUBSCRIBE turn replies into pushes.
fn ordinary_despite_pubsub_flag(name: &str) -> bool {
    name == "publish" || name == "spublish" || name.starts_with("pubsub|")
}

#[test]
fn the_table_agrees_with_a_live_server() {
    let server = RedisServer::start();
    let Reply::Array(listed) = server.command_reply(&["COMMAND"]) else {
        panic!("COMMAND did not answer an array");
    };
    let mut server_names = Vec::new();
    let mut problems = Vec::new();
    for entry in &listed {
        compare(entry, &mut server_names, &mut problems);
    }
    for info in command::commands() {
        if !server_names.iter().any(|n| n == info.name) && !LATER_THAN_SERVER.contains(&info.name) {
            problems.push(format!(
                "{}: in the table, unknown to the server",
                info.name
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the command table disagrees with redis-server {} in {} places; regenerate it with \
         `python3 scripts/gen-command-table.py`:\n{}",
        server
            .command(&["INFO", "server"])
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("?"),
        problems.len(),
        problems.join("\n")
    );
    // A server far smaller than 7.x would make the comparison hollow.
    assert!(
        server_names.len() > 300,
        "only {} commands listed",
        server_names.len()
    );
}

/// One `COMMAND` entry and, recursively, its subcommands.
fn compare(entry: &Reply, names: &mut Vec<String>, problems: &mut Vec<String>) {
    let Reply::Array(fields) = entry else {
        panic!("a COMMAND entry is not an array: {entry:?}");
    };
    let name = text(&fields[0]).to_lowercase();
    let Reply::Integer(arity) = fields[1] else {
        panic!("{name}: arity is not an integer");
    };
    let server_flags: Vec<String> = items(&fields[2]).iter().map(text).collect();
    let has = |flag: &str| server_flags.iter().any(|f| f == flag);
    let server_specs: Vec<String> = items(&fields[8]).iter().map(describe_server_spec).collect();
    // DEBUG's subcommands (none on 7.0) are deliberately not in the table.
    if name != "debug" {
        for sub in items(&fields[9]) {
            compare(sub, names, problems);
        }
    }
    names.push(name.clone());

    let Some(info) = command::lookup(name.as_bytes()) else {
        problems.push(format!(
            "{name}: listed by the server, missing from the table"
        ));
        return;
    };
    let mut differ = |what: &str, table: String, live: String| {
        if table != live {
            problems.push(format!(
                "{name}: {what} is {table} in the table, {live} on the server"
            ));
        }
    };
    differ("arity", info.arity.to_string(), arity.to_string());
    let flag = |bit: Flags| info.flags.contains(bit).to_string();
    differ(
        "readonly",
        flag(Flags::READONLY),
        has("readonly").to_string(),
    );
    differ("write", flag(Flags::WRITE), has("write").to_string());
    differ(
        "blocking",
        flag(Flags::BLOCKING),
        has("blocking").to_string(),
    );
    differ(
        "pubsub",
        flag(Flags::PUBSUB),
        (has("pubsub") && !ordinary_despite_pubsub_flag(&name)).to_string(),
    );
    differ(
        "key specs",
        format!(
            "{:?}",
            info.key_specs
                .iter()
                .map(describe_table_spec)
                .collect::<Vec<_>>()
        ),
        format!("{server_specs:?}"),
    );
}

/// Both sides of a key spec in one spelling, so a mismatch prints readably.
fn describe_table_spec(spec: &KeySpec) -> String {
    let begin = match spec.begin {
        BeginSearch::Index(i) => format!("index {i}"),
        BeginSearch::Keyword {
            keyword,
            start_from,
        } => format!("keyword {keyword} from {start_from}"),
        BeginSearch::Unknown => "unknown".into(),
    };
    let find = match spec.find {
        FindKeys::Range { last, step, limit } => format!("range {last} {step} {limit}"),
        FindKeys::KeyNum {
            numkeys_at,
            first,
            step,
        } => format!("keynum {numkeys_at} {first} {step}"),
        FindKeys::Unknown => "unknown".into(),
    };
    format!(
        "{begin}; {find}; not_key={} incomplete={}",
        spec.not_key, spec.incomplete
    )
}

fn describe_server_spec(spec: &Reply) -> String {
    let flags: Vec<String> = items(field(spec, "flags")).iter().map(text).collect();
    let begin = field(spec, "begin_search");
    let bs = field(begin, "spec");
    let begin = match text(field(begin, "type")).as_str() {
        "index" => format!("index {}", int(field(bs, "index"))),
        "keyword" => format!(
            "keyword {} from {}",
            text(field(bs, "keyword")),
            int(field(bs, "startfrom"))
        ),
        _ => "unknown".into(),
    };
    let find = field(spec, "find_keys");
    let fk = field(find, "spec");
    let find = match text(field(find, "type")).as_str() {
        "range" => format!(
            "range {} {} {}",
            int(field(fk, "lastkey")),
            int(field(fk, "keystep")),
            int(field(fk, "limit"))
        ),
        "keynum" => format!(
            "keynum {} {} {}",
            int(field(fk, "keynumidx")),
            int(field(fk, "firstkey")),
            int(field(fk, "keystep"))
        ),
        _ => "unknown".into(),
    };
    let mark = |m: &str| flags.iter().any(|f| f == m);
    format!(
        "{begin}; {find}; not_key={} incomplete={}",
        mark("not_key"),
        mark("incomplete")
    )
}

/// The key arguments found by the table's specs are the server's own
/// `COMMAND GETKEYS` answer, for one command line of each kind of spec.
#[test]
fn keys_agree_with_command_getkeys() {
    let server = RedisServer::start();
    let mut conn = server.admin_conn().expect("connection to redis-server");
    let lines: &[&[&str]] = &[
        &["GET", "k"],
        &["MSET", "a", "1", "b", "2", "c", "3"],
        &["DEL", "a", "b"],
        &["BLPOP", "a", "b", "0"],
        &["LCS", "a", "b"],
        &["BITOP", "AND", "d", "a", "b"],
        &["EVAL", "return 1", "2", "a", "b", "arg"],
        &["ZUNIONSTORE", "d", "2", "a", "b", "WEIGHTS", "1", "2"],
        &["ZINTER", "2", "a", "b"],
        &["LMPOP", "2", "a", "b", "LEFT"],
        &["XREAD", "COUNT", "1", "STREAMS", "a", "b", "0", "0"],
        &["XREAD", "BLOCK", "0", "STREAMS", "block", "0"],
        &["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"],
        &["GEORADIUS", "src", "0", "0", "1", "km", "STORE", "dst"],
        &["MIGRATE", "h", "6379", "k", "0", "5000"],
        &["MIGRATE", "h", "6379", "", "0", "5000", "KEYS", "a", "b"],
        &["OBJECT", "ENCODING", "k"],
        &["MEMORY", "USAGE", "k"],
        // Not SPUBLISH: GETKEYS leaves out `not_key` channels that the
        // table reports, since a Cluster router must hash them.
    ];
    let mut problems = Vec::new();
    for line in lines {
        let mut args = vec!["COMMAND", "GETKEYS"];
        args.extend_from_slice(line);
        let reply = conn.command(&args).expect("COMMAND GETKEYS");
        let live: Vec<String> = match &reply {
            Reply::Error(e) if e.contains("no key arguments") => Vec::new(),
            reply => items(reply).iter().map(text).collect(),
        };
        let ours: Vec<String> = command::keys(line.iter().map(|a| a.as_bytes()))
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        if ours != live {
            problems.push(format!("{line:?}: table finds {ours:?}, server {live:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "key extraction differs:\n{}",
        problems.join("\n")
    );
    // Sanity: a command the table resolves through its subcommand.
    let usage: &CommandInfo = command::lookup_sub(b"memory", b"usage").expect("memory|usage");
    assert_eq!(usage.name, "memory|usage");
}

fn items(reply: &Reply) -> &[Reply] {
    match reply {
        Reply::Array(items) => items,
        other => panic!("expected an array, got {other:?}"),
    }
}

fn text(reply: &Reply) -> String {
    match reply {
        Reply::Simple(s) => s.clone(),
        Reply::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("expected a string, got {other:?}"),
    }
}

fn int(reply: &Reply) -> i64 {
    match reply {
        Reply::Integer(i) => *i,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// A field of a RESP3 map or of a RESP2 flat `[key, value, ...]` array.
fn field<'r>(map: &'r Reply, key: &str) -> &'r Reply {
    let found = match map {
        Reply::Map(pairs) => pairs.iter().find(|(k, _)| text(k) == key).map(|(_, v)| v),
        Reply::Array(flat) => flat
            .chunks(2)
            .find(|pair| text(&pair[0]) == key)
            .and_then(|pair| pair.get(1)),
        _ => None,
    };
    found.unwrap_or_else(|| panic!("no `{key}` in {map:?}"))
}

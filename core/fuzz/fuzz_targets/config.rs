//! Fuzzes `Config::from_url` and `Config::from_env` with a fixed marker
//! password spliced into a fuzzed URL, and into `REDIS_PASSWORD`.
//!
//! The input is text, split at `\n`: the part of the URL before the
//! password, the part after it, then values for the other `REDIS_*`
//! variables, in the order of `ENV_VARS`. The URL is
//! `{before}:{MARKER}{after}`. Checked on every input:
//! - no panic;
//! - no error (`Display` or `Debug`) shows the marker, wherever it lands:
//!   in the userinfo, in a "scheme" (no `://` before it), in a URL with no
//!   `@` at all (`redis://user:password`, host forgotten). The one place it
//!   may show is after the URL's last `@`, which by the documented rule is
//!   the host, not the password;
//! - when the marker is in the userinfo, a parsed `Config`'s `Debug` does
//!   not show it either;
//! - `REDIS_PASSWORD` is never shown, whatever else is set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resilis_core::Config;
use resilis_core::config::ENV_VARS;

const MARKER: &str = "Zq9hunter2secret";

/// Where the marker sits in `url`, by the rule of `Config::from_url`.
#[derive(PartialEq)]
enum Place {
    /// Before the first `://` (a "scheme"), or there is none.
    NoScheme,
    /// After `://`, before the last `@`.
    Userinfo,
    /// After `://`, and no `@` follows `://` at all.
    NoAt,
    /// After the last `@`: the host, the port, the path or the query.
    AfterUserinfo,
}

fn place(url: &str, marker_at: usize) -> Place {
    let Some(scheme_end) = url.find("://") else {
        return Place::NoScheme;
    };
    if scheme_end < marker_at {
        let rest = &url[scheme_end + 3..];
        match rest.rfind('@') {
            None => Place::NoAt,
            Some(at) if scheme_end + 3 + at > marker_at => Place::Userinfo,
            Some(_) => Place::AfterUserinfo,
        }
    } else {
        Place::NoScheme
    }
}

/// `text` with every `%XX` decoded, loosely: to tell whether the fuzzer
/// wrote the marker itself, encoded, somewhere an option value would show.
fn decoded(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(Some(hi)), Some(Some(lo))) = (
                bytes.get(i + 1).map(|b| hex(*b)),
                bytes.get(i + 2).map(|b| hex(*b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fn contains_marker(text: &str) -> bool {
    text.contains(MARKER)
        || decoded(text)
            .windows(MARKER.len())
            .any(|w| w == MARKER.as_bytes())
}

/// The variables: `others`, and `with` (which wins).
fn lookup<'a>(
    others: &[(&'a str, &'a str)],
    with: &[(&'a str, &'a str)],
) -> impl FnMut(&str) -> Option<&'a str> + use<'a> {
    let vars: Vec<(&str, &str)> = with.iter().chain(others).copied().collect();
    move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

#[track_caller]
fn assert_hidden(what: &str, input: &str, shown: &str) {
    assert!(
        !shown.contains(MARKER),
        "{what} of {input:?} shows the password: {shown}"
    );
}

fuzz_target!(|input: &[u8]| {
    let Ok(text) = core::str::from_utf8(input) else {
        return;
    };
    // The fuzzer's own copies of the marker would be no leak of ours.
    if contains_marker(text) {
        return;
    }
    let mut fields = text.split('\n');
    let before = fields.next().unwrap_or("");
    let after = fields.next().unwrap_or("");
    let others: Vec<(&str, &str)> = ENV_VARS
        .iter()
        .copied()
        .filter(|v| !matches!(*v, "REDIS_URL" | "REDIS_PASSWORD"))
        .zip(fields.by_ref())
        .collect();
    let url = format!("{before}:{MARKER}{after}");
    let place = place(&url, before.len() + 1);
    let checked = place != Place::AfterUserinfo;

    let from_url = Config::from_url(&url);
    match &from_url {
        Err(e) if checked => assert_hidden("from_url error", &url, &format!("{e} {e:?}")),
        Ok(c) if place == Place::Userinfo => {
            assert_hidden("from_url config", &url, &format!("{c:?}"))
        }
        _ => {}
    }

    match Config::from_env(lookup(&others, &[("REDIS_URL", &url)])) {
        Err(e) if checked => assert_hidden("from_env error", &url, &format!("{e} {e:?}")),
        Ok(c) if place == Place::Userinfo => {
            assert_hidden("from_env config", &url, &format!("{c:?}"))
        }
        _ => {}
    }

    // The marker as REDIS_PASSWORD, around the fuzzer's text, with or
    // without a URL (the fuzzer's, marker-free).
    let password = format!("{after}{MARKER}{before}");
    let plain_url = format!("{before}{after}");
    for with in [
        &[("REDIS_PASSWORD", password.as_str())][..],
        &[
            ("REDIS_PASSWORD", password.as_str()),
            ("REDIS_URL", plain_url.as_str()),
        ][..],
    ] {
        match Config::from_env(lookup(&others, with)) {
            Err(e) => assert_hidden("REDIS_PASSWORD error", &password, &format!("{e} {e:?}")),
            Ok(c) => assert_hidden("REDIS_PASSWORD config", &password, &format!("{c:?}")),
        }
    }
});

//! Host lists: the seed nodes of a cluster (`redis://h1:p1,h2:p2/0`,
//! `REDIS_CLUSTER_NODES=h1:p1,h2:p2`) and the sentinels of a
//! Sentinel-managed master (`redis+sentinel://h1:p1,h2:p2/mymaster/0`,
//! `REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`). Each entry is checked by the core's
//! own URL parser, so a bad one gets the same typed error (and nothing of
//! a URL's userinfo is ever quoted: entries come after its last `@`).

use resilis_core::Config;

use crate::error::Error;

/// Most seed nodes in one list.
const MAX_SEEDS: usize = 64;

/// Seed nodes as `(host, port)`.
pub(crate) type Seeds = Vec<(String, u16)>;

/// Splits a URL naming several nodes into the URL of the first (which the
/// core parses, credentials and options included) and every node's
/// address. `None`: one node, not cluster mode.
pub(crate) fn split_url(url: &str) -> Result<(String, Option<Seeds>), Error> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return Ok((url.to_owned(), None));
    };
    // The core takes the userinfo to the URL's last `@`.
    let hosts_start = url[scheme_end..]
        .rfind('@')
        .map_or(scheme_end, |at| scheme_end + at + 1);
    let hosts_end = url[hosts_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| hosts_start + i);
    let hosts = &url[hosts_start..hosts_end];
    if !hosts.contains(',') {
        return Ok((url.to_owned(), None));
    }
    let seeds = parse_list("REDIS_URL host", hosts)?;
    let first = hosts.split(',').next().unwrap_or_default();
    let single = format!("{}{}{}", &url[..hosts_start], first, &url[hosts_end..]);
    Ok((single, Some(seeds)))
}

/// `h1:p1,h2:p2` (a missing port is 6379; IPv6 in brackets).
pub(crate) fn parse_list(field: &'static str, list: &str) -> Result<Seeds, Error> {
    let mut seeds = Vec::new();
    for entry in list.split(',').map(str::trim).take(MAX_SEEDS) {
        // Parsed as the host part of a URL with a user (`seed@`), so that an
        // error quotes the entry instead of withholding it as a password
        // whose `@host` was forgotten: an entry here is only ever an address.
        let config = Config::from_url(&format!("redis://seed@{entry}")).map_err(|mut e| {
            e.field = field;
            Error::Config(e)
        })?;
        let seed = (config.host.as_str().to_owned(), config.port);
        if !seeds.contains(&seed) {
            seeds.push(seed);
        }
    }
    Ok(seeds)
}

/// A Sentinel URL, split: the sentinels, the master's name, and the URL
/// the core reads for the data nodes (`redis://` or `rediss://`, with the
/// URL's credentials, db and options; its host is the first sentinel's,
/// replaced by the master's address once Sentinel names it).
pub(crate) struct SentinelUrl {
    pub sentinels: Seeds,
    pub master_name: String,
    pub data_url: String,
}

/// `redis+sentinel://[user:pass@]h1:p1,h2:p2/mymaster[/db][?options]`
/// (`rediss+sentinel://` for TLS to sentinels and nodes). `None`: not a
/// Sentinel URL. The userinfo is the data nodes'; sentinels take their own
/// (`REDIS_SENTINEL_USERNAME`, `REDIS_SENTINEL_PASSWORD`).
pub(crate) fn sentinel_url(url: &str) -> Result<Option<SentinelUrl>, Error> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
        (false, rest)
    } else if let Some(rest) = url.strip_prefix("rediss+sentinel://") {
        (true, rest)
    } else {
        return Ok(None);
    };
    let hosts_start = rest.rfind('@').map_or(0, |at| at + 1);
    let hosts_end = rest[hosts_start..]
        .find(['/', '?', '#'])
        .map_or(rest.len(), |i| hosts_start + i);
    let hosts = &rest[hosts_start..hosts_end];
    if hosts.is_empty() {
        return Err(sentinel_error(
            "REDIS_URL sentinels",
            "a Sentinel URL names no sentinel",
            "write redis+sentinel://host1:26379,host2:26379/mymaster",
        ));
    }
    let sentinels = parse_list("REDIS_URL sentinels", hosts)?;
    // The path: /<master name>[/<db>], then the options.
    let after = &rest[hosts_end..];
    let path_end = after.find(['?', '#']).unwrap_or(after.len());
    let mut path = after[..path_end].trim_start_matches('/').splitn(2, '/');
    let master_name = path.next().unwrap_or_default();
    let db = path.next().filter(|d| !d.is_empty());
    check_master_name("REDIS_URL master name", master_name)?;
    let data_url = format!(
        "{}://{}{}{}{}",
        if tls { "rediss" } else { "redis" },
        &rest[..hosts_start],
        hosts.split(',').next().unwrap_or_default(),
        db.map(|d| format!("/{d}")).unwrap_or_default(),
        &after[path_end..],
    );
    Ok(Some(SentinelUrl {
        sentinels,
        master_name: master_name.to_owned(),
        data_url,
    }))
}

pub(crate) fn check_master_name(field: &'static str, name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(sentinel_error(
            field,
            "no master name",
            "name the master Sentinel monitors: redis+sentinel://h:26379/mymaster, or REDIS_SENTINEL_MASTER=mymaster",
        ));
    }
    if name.len() > resilis_core::sentinel::NAME_CAP || name.contains(char::is_whitespace) {
        return Err(sentinel_error(
            field,
            "the master name is longer than 64 bytes or holds a blank",
            "use the name from `sentinel monitor <name> ...` in sentinel.conf",
        ));
    }
    Ok(())
}

fn sentinel_error(field: &'static str, problem: &'static str, fix: &'static str) -> Error {
    Error::SentinelConfig {
        field,
        problem,
        fix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_is_not_a_cluster() {
        let (url, seeds) = split_url("redis://u:p@h:7000/0").unwrap();
        assert_eq!(url, "redis://u:p@h:7000/0");
        assert_eq!(seeds, None);
    }

    #[test]
    fn several_hosts_are_seeds_and_the_first_keeps_the_options() {
        let (url, seeds) = split_url(
            "rediss://user:p,a@ss@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002/0?ping_interval=2s",
        )
        .unwrap();
        assert_eq!(url, "rediss://user:p,a@ss@10.0.0.1:7000/0?ping_interval=2s");
        assert_eq!(
            seeds.unwrap(),
            [
                ("10.0.0.1".to_owned(), 7000),
                ("10.0.0.2".to_owned(), 7001),
                ("::1".to_owned(), 7002)
            ]
        );
    }

    #[test]
    fn a_bad_entry_is_a_typed_error_that_shows_no_password() {
        let err = split_url("redis://u:hunter2@h1:7000,h2:70x0").unwrap_err();
        let Error::Config(e) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(e.kind, resilis_core::ConfigErrorKind::InvalidPort);
        assert_eq!(e.field, "REDIS_URL host");
        assert!(!format!("{err} {err:?}").contains("hunter2"));
        let err = parse_list("REDIS_CLUSTER_NODES", "h1:1,,h3:3").unwrap_err();
        assert!(format!("{err}").contains("REDIS_CLUSTER_NODES"), "{err}");
    }

    #[test]
    fn a_sentinel_url_names_sentinels_master_and_the_data_nodes_url() {
        let parsed = sentinel_url(
            "redis+sentinel://app:s3cr@t@10.0.0.1:26379,10.0.0.2:26380/mymaster/2?ping_interval=2s",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            parsed.sentinels,
            [
                ("10.0.0.1".to_owned(), 26379),
                ("10.0.0.2".to_owned(), 26380)
            ]
        );
        assert_eq!(parsed.master_name, "mymaster");
        assert_eq!(
            parsed.data_url,
            "redis://app:s3cr@t@10.0.0.1:26379/2?ping_interval=2s"
        );
        let tls = sentinel_url("rediss+sentinel://h:26379/m")
            .unwrap()
            .unwrap();
        assert_eq!(tls.data_url, "rediss://h:26379");
        assert!(sentinel_url("redis://h").unwrap().is_none());
    }

    #[test]
    fn a_bad_sentinel_url_is_a_typed_error_without_the_password() {
        for url in [
            "redis+sentinel://u:hunter2@/m",
            "redis+sentinel://u:hunter2@h:26379",
            "redis+sentinel://u:hunter2@h:26379/",
            "redis+sentinel://u:hunter2@h:2x/m",
            "redis+sentinel://u:hunter2@h:26379/a b",
        ] {
            let err = sentinel_url(url)
                .err()
                .unwrap_or_else(|| panic!("{url} refused"));
            let text = format!("{err} {err:?}");
            assert!(!text.contains("hunter2"), "{text}");
            // A config error's Display carries its fix; the others have one.
            assert!(
                err.fix().is_some() || matches!(err, Error::Config(_)),
                "{url}: a fix"
            );
        }
    }
}

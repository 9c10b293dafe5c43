//! Seed nodes of a cluster: the host list of `redis://h1:p1,h2:p2/0` and
//! `REDIS_CLUSTER_NODES=h1:p1,h2:p2`. Each entry is checked by the core's
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
}

//! Cluster mode from a URL naming several nodes or from
//! `REDIS_CLUSTER_NODES`: the seeds, the settings every node shares, and
//! typed errors that quote no password.

use std::collections::HashMap;

use resilis::{Error, Options};

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.get(name).cloned()
}

#[test]
fn cluster_nodes_variable_names_the_seeds() {
    let options = Options::from_lookup(lookup(&[
        (
            "REDIS_CLUSTER_NODES",
            "10.0.0.1:7000, 10.0.0.2:7001,[::1]:7002",
        ),
        ("REDIS_PASSWORD", "s3cret-pw"),
    ]))
    .unwrap();
    assert_eq!(
        options.cluster.as_deref(),
        Some(
            &[
                ("10.0.0.1".to_owned(), 7000),
                ("10.0.0.2".to_owned(), 7001),
                ("::1".to_owned(), 7002),
            ][..]
        )
    );
    // The first seed is the node the core's config names; the password
    // applies to every node.
    assert_eq!(options.config.host.as_str(), "10.0.0.1");
    assert_eq!(options.config.port, 7000);
    assert_eq!(options.config.password.expose(), "s3cret-pw");
    assert!(!format!("{options:?}").contains("s3cret-pw"));
}

#[test]
fn redis_url_keeps_its_host_as_one_more_seed() {
    let options = Options::from_lookup(lookup(&[
        ("REDIS_URL", "redis://app:pw@10.0.0.9:7009"),
        ("REDIS_CLUSTER_NODES", "10.0.0.1:7000"),
    ]))
    .unwrap();
    let seeds = options.cluster.unwrap();
    assert_eq!(seeds[0], ("10.0.0.9".to_owned(), 7009));
    assert!(seeds.contains(&("10.0.0.1".to_owned(), 7000)));
}

#[test]
fn redis_url_may_name_several_nodes() {
    let options = Options::from_lookup(lookup(&[(
        "REDIS_URL",
        "redis://app:pw@10.0.0.1:7000,10.0.0.2:7001/0",
    )]))
    .unwrap();
    assert_eq!(options.config.host.as_str(), "10.0.0.1");
    assert_eq!(options.config.username.as_str(), "app");
    assert_eq!(
        options.cluster.unwrap(),
        [("10.0.0.1".to_owned(), 7000), ("10.0.0.2".to_owned(), 7001)]
    );
}

#[test]
fn a_url_with_several_hosts_is_cluster_mode_and_one_host_is_not() {
    let options = Options::from_url("rediss://app:pw@a.example:7000,b.example:7001/0").unwrap();
    assert!(options.config.tls);
    assert_eq!(
        options.cluster.unwrap(),
        [
            ("a.example".to_owned(), 7000),
            ("b.example".to_owned(), 7001)
        ]
    );
    assert!(
        Options::from_url("redis://a.example:7000")
            .unwrap()
            .cluster
            .is_none()
    );
}

#[test]
fn a_bad_seed_is_a_typed_error_that_names_where_it_came_from() {
    let err =
        Options::from_lookup(lookup(&[("REDIS_CLUSTER_NODES", "h1:7000,h2:port")])).unwrap_err();
    let Error::Config(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.field, "REDIS_CLUSTER_NODES");
    assert_eq!(e.kind, resilis::core::ConfigErrorKind::InvalidPort);
    assert_eq!(e.got(), Some("port"), "the entry's port is quoted: {err}");
    assert!(!err.to_string().contains("password"), "{err}");
    let err = Options::from_url("redis://app:hunter2@h1:7000,h2:99999").unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("REDIS_URL host"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

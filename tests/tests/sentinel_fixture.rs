//! The Sentinel fixture checked against the real thing: if these fail,
//! every Sentinel test built on it means nothing.
//!
//! Two tests, each on a deployment of its own, run in parallel: a fixture
//! start costs ~2.2 s and the slow parts (a failover, an old master's
//! demotion) are Sentinel's own waiting, not CPU.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use resilis_tests::Reply;
use resilis_tests::sentinel::{DATA_NODES, DOWN_AFTER, MASTER_NAME, SENTINELS, SentinelSet};

fn bulk(s: &str) -> Reply {
    Reply::Bulk(s.as_bytes().to_vec())
}

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

/// Polls `role(i)` until it says `want`; returns how long that took.
fn wait_role(set: &SentinelSet, i: usize, want: &str, timeout: Duration) -> Duration {
    let began = Instant::now();
    let mut last = None;
    for _ in 0..timeout.as_millis() / 20 + 1 {
        last = set.role(i);
        if last.as_deref() == Some(want) {
            return began.elapsed();
        }
        if began.elapsed() > timeout {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "node {i} still says ROLE {last:?} after {:?}, not {want}\n{}",
        began.elapsed(),
        set.log_tails()
    );
}

#[test]
fn a_new_set_has_its_roles_and_replaces_a_killed_master() {
    let set = SentinelSet::start();
    println!("SentinelSet::start() took {:?}", set.started_in());
    assert_eq!(set.nodes().len(), DATA_NODES);
    assert_eq!(set.sentinels().len(), SENTINELS);
    let ports: Vec<u16> = set.sentinels().iter().map(|s| s.port()).collect();
    assert_eq!(
        set.sentinel_url(),
        format!(
            "redis+sentinel://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}/{MASTER_NAME}",
            ports[0], ports[1], ports[2]
        )
    );
    let addrs: Vec<SocketAddr> = ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    assert_eq!(set.sentinel_addrs(), addrs);
    assert_eq!(
        set.node_url(2),
        format!("redis://127.0.0.1:{}", set.node(2).port())
    );

    // Node 0 is the master by every sentinel's word and by its own.
    assert_eq!(set.master_index(), 0);
    let master_addr = Reply::Array(vec![
        bulk("127.0.0.1"),
        bulk(&set.node(0).port().to_string()),
    ]);
    for j in 0..SENTINELS {
        assert_eq!(
            set.sentinel(j)
                .command(&["SENTINEL", "get-master-addr-by-name", MASTER_NAME]),
            master_addr,
            "sentinel {j}"
        );
    }
    assert_eq!(set.role(0).as_deref(), Some("master"));
    assert_eq!(set.role(1).as_deref(), Some("slave"));
    assert_eq!(set.role(2).as_deref(), Some("slave"));
    assert_eq!(set.node(0).command(&["SET", "k", "before"]), ok());
    assert_eq!(
        set.node(0).command(&["WAIT", "2", "2000"]),
        Reply::Integer(2)
    );
    assert_eq!(set.node(1).command(&["GET", "k"]), bulk("before"));
    let readonly = set.node(1).command(&["SET", "k", "x"]);
    assert!(
        matches!(&readonly, Reply::Error(e) if e.starts_with("READONLY")),
        "{readonly:?}"
    );

    // A killed sentinel leaves the others' majority; restarted, it is back
    // with its id and knowledge.
    let pid = set.sentinel(2).pid().expect("sentinel 2 runs");
    set.kill_sentinel(2);
    assert!(!set.sentinel(2).is_running());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(set.sentinel(2).try_command(&["PING"]).is_err());
    assert_eq!(set.master_index(), 0);
    set.restart_sentinel(2);
    let restarted = Instant::now();
    assert_eq!(set.wait_roles_settled(Duration::from_secs(10)), 0);
    println!(
        "restart_sentinel -> settled after {:?}",
        restarted.elapsed()
    );

    // kill -9 of the master: a replica takes over once the sentinels agree
    // it is down (DOWN_AFTER, then the election).
    let pid = set.node(0).pid().expect("the master runs");
    set.kill_node(0);
    let killed = Instant::now();
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(set.role(0), None);
    assert!(set.node(0).try_command(&["PING"]).is_err());
    let new = set.wait_switch(0, Duration::from_secs(15));
    let switched_after = killed.elapsed();
    println!("kill_node(master) -> wait_switch returned node {new} after {switched_after:?}");
    assert!(new == 1 || new == 2, "{new}");
    assert!(
        switched_after >= DOWN_AFTER,
        "switched before down-after: {switched_after:?}"
    );
    assert_eq!(set.master_index(), new);
    assert_eq!(set.node(new).command(&["GET", "k"]), bulk("before"));
    assert_eq!(set.node(new).command(&["SET", "k", "after"]), ok());
    // The other replica follows the new master; the dead node is left out.
    assert_eq!(set.wait_roles_settled(Duration::from_secs(20)), new);
    println!("kill_node(master) -> settled after {:?}", killed.elapsed());
    let other = 3 - new;
    assert_eq!(set.role(other).as_deref(), Some("slave"));

    // The old master comes back empty and as a master, until the sentinels
    // convert it to a replica of the new one.
    set.restart_node(0);
    let restarted = Instant::now();
    let early = set.role(0);
    assert_eq!(set.wait_roles_settled(Duration::from_secs(30)), new);
    println!(
        "restart_node(old master) -> said ROLE {early:?} at first, settled as a replica after {:?}",
        restarted.elapsed()
    );
    assert_eq!(early.as_deref(), Some("master"));
    assert_eq!(set.role(0).as_deref(), Some("slave"));
    assert_eq!(set.master_index(), new);
    assert_eq!(set.node(0).command(&["GET", "k"]), bulk("after"));
}

#[test]
fn a_manual_failover_switches_and_demotes_the_old_master() {
    let set = SentinelSet::start();
    println!("SentinelSet::start() took {:?}", set.started_in());
    let node0 = set.node(0).addr();

    // Every sentinel's +switch-master, with when it came.
    let watchers: Vec<_> = (0..SENTINELS)
        .map(|j| {
            let mut watch = set.subscribe_switch_master(j);
            thread::spawn(move || watch.recv(Duration::from_secs(25)))
        })
        .collect();

    let asked = Instant::now();
    let leader = set.failover();
    println!(
        "failover() accepted by sentinel {leader} after {:?}",
        asked.elapsed()
    );
    let new = set.wait_switch(0, Duration::from_secs(10));
    let switched_after = asked.elapsed();
    println!("SENTINEL FAILOVER -> wait_switch returned node {new} after {switched_after:?}");
    assert!(new == 1 || new == 2, "{new}");
    assert_eq!(set.role(new).as_deref(), Some("master"));

    // The old master is reachable all along; it says master until the
    // sentinels demote it.
    let early = set.role(0);
    let demoted_after = wait_role(&set, 0, "slave", Duration::from_secs(30));
    println!(
        "old master said ROLE {early:?} at the switch, slave {:?} after it ({:?} after the request)",
        demoted_after,
        asked.elapsed()
    );
    assert_eq!(set.wait_roles_settled(Duration::from_secs(20)), new);
    println!("SENTINEL FAILOVER -> settled after {:?}", asked.elapsed());

    let new_addr = set.node(new).addr();
    let mut heard = 0;
    for (j, watcher) in watchers.into_iter().enumerate() {
        match watcher.join().expect("watcher thread") {
            Some(event) => {
                println!(
                    "sentinel {j}{}: +switch-master {:?} after the request",
                    if j == leader { " (asked)" } else { "" },
                    event.received.duration_since(asked)
                );
                assert_eq!((event.old, event.new), (node0, new_addr), "sentinel {j}");
                heard += 1;
            }
            None => println!("sentinel {j}: no +switch-master"),
        }
    }
    assert!(
        heard >= 2,
        "only {heard} sentinels published +switch-master"
    );

    // A hung replica answers nothing, and debug_sleep does not wait for it.
    let other = 3 - new;
    let began = Instant::now();
    set.debug_sleep(other, Duration::from_millis(1500));
    let returned_after = began.elapsed();
    assert!(
        returned_after < Duration::from_millis(200),
        "debug_sleep blocked for {returned_after:?}"
    );
    thread::sleep(Duration::from_millis(100));
    assert_eq!(set.role(other), None, "a sleeping node answered ROLE");
    wait_role(&set, other, "slave", Duration::from_secs(5));
    let woke_after = began.elapsed();
    println!("debug_sleep(1.5 s) -> ROLE answered again after {woke_after:?}");
    assert!(woke_after >= Duration::from_millis(1400), "{woke_after:?}");

    // Settled again: a second failover works at once.
    assert_eq!(set.wait_roles_settled(Duration::from_secs(10)), new);
    let asked = Instant::now();
    set.failover();
    let back = set.wait_switch(new, Duration::from_secs(10));
    println!(
        "second SENTINEL FAILOVER -> node {back} after {:?}",
        asked.elapsed()
    );
    assert_ne!(back, new);
}

//! Where a Redis server listens: [`NodeAddr`], shared by the cluster router
//! (slot map nodes) and the Sentinel resolver (sentinels and masters), so it
//! is compiled whatever the features.

use core::fmt;

use heapless::String;

/// Longest host a [`NodeAddr`] holds (the DNS maximum). It lives with the
/// connection configuration, whose host has the same bound.
pub use crate::config::HOST_CAP;

/// Where a node listens.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NodeAddr {
    /// A name or an IP address, IPv6 without brackets.
    pub host: String<HOST_CAP>,
    pub port: u16,
}

impl NodeAddr {
    /// `None` when `host` is longer than [`HOST_CAP`].
    pub fn new(host: &str, port: u16) -> Option<NodeAddr> {
        let host = String::try_from(host).ok()?;
        Some(NodeAddr { host, port })
    }

    pub fn is(&self, host: &str, port: u16) -> bool {
        self.port == port && self.host.as_str() == host
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;

    #[test]
    fn ipv6_hosts_are_bracketed_when_shown() {
        let v4 = NodeAddr::new("10.0.0.2", 6379).unwrap();
        let v6 = NodeAddr::new("fe80::1", 6380).unwrap();
        assert_eq!(v4.to_string(), "10.0.0.2:6379");
        assert_eq!(v6.to_string(), "[fe80::1]:6380");
        assert!(v6.is("fe80::1", 6380));
        assert!(!v6.is("fe80::1", 6379));
    }

    #[test]
    fn a_host_over_the_cap_is_refused() {
        let long = "h".repeat(HOST_CAP + 1);
        assert_eq!(NodeAddr::new(&long, 1), None);
        assert!(NodeAddr::new(&long[..HOST_CAP], 1).is_some());
    }
}

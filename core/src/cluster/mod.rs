//! Redis Cluster, sans-I/O: which node carries each command, and what to do
//! when a node says the slot is elsewhere (MOVED, ASK), is busy moving it
//! (TRYAGAIN), has lost its quorum (CLUSTERDOWN), or stops answering.
//!
//! Behind the `cluster` feature, so firmware that talks to one node pays
//! nothing. No allocation: node addresses and slot ranges live in
//! fixed-capacity tables the caller sizes with const generics.
//!
//! - [`slot`]: CRC16 key slots with `{hashtag}` rules, the slots a command
//!   line touches (from the command table), typed CROSSSLOT refusal before
//!   sending, and how the few splittable multi-key commands split.
//! - [`redirect`]: reading a cluster error reply (`MOVED 3999 10.0.0.2:6379`,
//!   `ASK`, `TRYAGAIN`, `CLUSTERDOWN`, `READONLY`, `LOADING`, `MASTERDOWN`).
//! - [`topology`]: the slot map parsed from `CLUSTER SHARDS` (or `CLUSTER
//!   SLOTS` on servers before 7.0), and [`topology::choose`], the pure
//!   function that picks the view most nodes agree on.
//! - [`router`]: [`ClusterRouter`], which owns every decision: route, follow
//!   redirects within a budget, wait and re-route, when to refresh the map
//!   (one at a time, throttled, jittered) and from which nodes.

pub mod redirect;
pub mod router;
pub mod slot;
pub mod topology;

pub use redirect::{ClusterReply, classify_error};
pub use router::*;
pub use slot::{SLOTS, SlotsOf, Split, hash_tag, slot, slots_of, split_of};
pub use topology::{NodeAddr, Role, Topology, TopologyError, choose};

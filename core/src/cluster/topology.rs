//! The slot map: which shard serves each of the 16384 slots, its primary and
//! replicas, parsed from `CLUSTER SHARDS` (Redis 7+) or `CLUSTER SLOTS`
//! (older); and [`choose`], which picks the view most nodes agree on.
//!
//! Why hand-written: the crates that read these replies (redis-rs's and
//! fred's cluster code, glide-core) build `Vec`s and `HashMap`s of owned
//! strings; the core has no allocator and its tables are sized by the caller
//! with const generics. No crate fits, and the walk over a borrowed
//! [`Frame`] is short.
//!
//! What a [`Topology`] keeps true, whatever the input (the proptests below
//! check it): ranges sorted by start, never overlapping, and neighbours with
//! the same primary merged, so two maps that route alike hold equal ranges;
//! every range points at a node whose role is [`Role::Primary`]; a node
//! address appears once; every index fits a `u16`.
//!
//! Which host to use for a node (as Redis 7.0.15 sends it, fixtures below):
//! the preferred `endpoint`; empty or null means `unknown-endpoint` was
//! configured (the nodes sit behind something Redis does not know the address
//! of), so the node is reached at the host the reply came from, *not* at
//! `ip`, which is then the address behind it; `?` means a hostname is
//! preferred but unset, so `ip`, then `hostname`, are the next best.

use core::fmt;

use heapless::Vec;

pub use crate::addr::NodeAddr;
use crate::config::HOST_CAP;
use crate::resp::{AggregateIter, Frame};

/// The highest slot number.
const LAST_SLOT: u16 = 16383;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Role {
    Primary,
    Replica,
}

/// One node of the map.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Node {
    pub addr: NodeAddr,
    pub role: Role,
    /// Index in [`Topology::nodes`] of its shard's primary (itself for a
    /// primary).
    pub primary: u16,
    /// `health` is `online` in `CLUSTER SHARDS`. `CLUSTER SLOTS` says nothing
    /// of health (it leaves failed replicas out), so there it is `true`.
    pub online: bool,
}

/// Slots `start..=end`, served by the node at index `primary`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SlotRange {
    pub start: u16,
    /// Inclusive.
    pub end: u16,
    /// Index into [`Topology::nodes`].
    pub primary: u16,
}

/// The slot map. `NODES`: most nodes (primaries and replicas); `RANGES`:
/// most slot ranges (a freshly created cluster has one per primary; each
/// slot migrated on its own can add two).
#[derive(Clone, Debug)]
pub struct Topology<const NODES: usize, const RANGES: usize> {
    nodes: Vec<Node, NODES>,
    /// Sorted by start, non-overlapping, same-primary neighbours merged.
    ranges: Vec<SlotRange, RANGES>,
}

/// Why a reply could not become a slot map, or a change could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TopologyError {
    /// Not the shape `CLUSTER SHARDS` / `CLUSTER SLOTS` has (`what`: the
    /// part that was wrong).
    Malformed { what: &'static str },
    /// More nodes or ranges than this table holds (`nodes`, `ranges`: its
    /// capacities): raise the const generics.
    Full { nodes: usize, ranges: usize },
    /// A slot number ≥ 16384, a range that ends before it starts, or two
    /// ranges that overlap.
    BadSlots,
    /// A host longer than [`HOST_CAP`], or no usable port.
    BadAddress,
    /// No slot is served at all: an empty or not yet set up cluster.
    NoSlots,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TopologyError::Malformed { what } => write!(
                f,
                "not a CLUSTER SHARDS or CLUSTER SLOTS reply (bad {what}): is the server a cluster node?"
            ),
            TopologyError::Full { nodes, ranges } => write!(
                f,
                "the cluster has more nodes or slot ranges than the map holds ({nodes} nodes, {ranges} ranges): raise Topology's NODES or RANGES"
            ),
            TopologyError::BadSlots => f.write_str(
                "the slot map has a slot over 16383, a range ending before it starts, or slots claimed twice: ask another node",
            ),
            TopologyError::BadAddress => write!(
                f,
                "a node has no usable address (host over {HOST_CAP} bytes, or no port; under TLS no tls-port): check the cluster-announce-* settings and the tls flag"
            ),
            TopologyError::NoSlots => f.write_str(
                "the cluster serves no slot: it is empty or not set up yet (redis-cli --cluster create, CLUSTER ADDSLOTS)",
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TopologyError {}

/// No view is held by more than half of the nodes that answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Disagreement {
    /// How many views were given.
    pub views: usize,
    /// How many agreed on the commonest non-empty view (0: all were empty).
    pub best: usize,
}

impl<const NODES: usize, const RANGES: usize> Default for Topology<NODES, RANGES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const NODES: usize, const RANGES: usize> Topology<NODES, RANGES> {
    /// An empty map.
    pub const fn new() -> Self {
        Topology {
            nodes: Vec::new(),
            ranges: Vec::new(),
        }
    }

    pub fn clear(&mut self) {
        self.nodes.clear();
        self.ranges.clear();
    }

    /// Reads a `CLUSTER SHARDS` reply (RESP3 maps or RESP2 name/value
    /// arrays) into `self`, cleared first and left empty on error. `tls`:
    /// use each node's `tls-port`. `answered_by`: the host the reply came
    /// from, for nodes whose endpoint is unknown.
    pub fn parse_shards(
        &mut self,
        reply: &Frame<'_>,
        tls: bool,
        answered_by: &str,
    ) -> Result<(), TopologyError> {
        self.clear();
        let read = self.read_shards(reply, tls, answered_by.as_bytes());
        self.finish(read)
    }

    /// Reads a `CLUSTER SLOTS` reply: `[start, end, [host, port, id,
    /// metadata], replicas...]` per range. No `tls` flag: under
    /// `tls-cluster yes` the port given is already the TLS one.
    pub fn parse_slots(
        &mut self,
        reply: &Frame<'_>,
        answered_by: &str,
    ) -> Result<(), TopologyError> {
        self.clear();
        let read = self.read_slots(reply, answered_by.as_bytes());
        self.finish(read)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn ranges(&self) -> &[SlotRange] {
        &self.ranges
    }

    /// The node index of the primary serving `slot`.
    pub fn primary_of(&self, slot: u16) -> Option<u16> {
        let at = self.ranges.partition_point(|r| r.end < slot);
        let range = self.ranges.get(at)?;
        (range.start <= slot).then_some(range.primary)
    }

    /// The node indices of the replicas of the primary at index `primary`.
    pub fn replicas_of(&self, primary: u16) -> impl Iterator<Item = u16> + '_ {
        // `zip` with a u16 counter is exact: there are at most u16::MAX nodes.
        self.nodes
            .iter()
            .zip(0u16..)
            .filter(move |(n, _)| n.role == Role::Replica && n.primary == primary)
            .map(|(_, at)| at)
    }

    pub fn find(&self, host: &str, port: u16) -> Option<u16> {
        let at = self.nodes.iter().position(|n| n.addr.is(host, port))?;
        u16::try_from(at).ok()
    }

    /// Every slot, 0 to 16383, is served.
    pub fn covers_all(&self) -> bool {
        let mut next = 0u32;
        for range in &self.ranges {
            if u32::from(range.start) != next {
                return false;
            }
            next = u32::from(range.end) + 1;
        }
        next == u32::from(LAST_SLOT) + 1
    }

    /// The same slots go to the same primary address, and the primaries
    /// that serve slots have the same replicas (by address), whatever the
    /// order of the nodes and their health. Primaries serving no slot, and
    /// their replicas, do not count: no command goes to them. Cost: O(N·(R +
    /// N)) for N nodes and R ranges.
    pub fn same_view(&self, other: &Self) -> bool {
        let slots_alike = self.ranges.len() == other.ranges.len()
            && self.ranges.iter().zip(&other.ranges).all(|(a, b)| {
                (a.start, a.end) == (b.start, b.end)
                    && self.addr(a.primary) == other.addr(b.primary)
            });
        // Addresses are unique in a map, so equal counts and one inclusion
        // make the two sets of (replica, its primary) equal.
        slots_alike
            && self.serving_replicas().count() == other.serving_replicas().count()
            && self.serving_replicas().all(|r| {
                other.nodes.iter().any(|o| {
                    o.role == Role::Replica
                        && o.addr == r.addr
                        && other.addr(o.primary) == self.addr(r.primary)
                })
            })
    }

    /// Records `MOVED slot host:port`: `slot` is now served by that node
    /// (added as a primary when unknown, made one when it was a replica).
    /// Returns its index. On `Full` nothing changed; the caller sends that
    /// one command to the address directly and refreshes the map.
    pub fn assign(&mut self, slot: u16, host: &str, port: u16) -> Result<u16, TopologyError> {
        if slot > LAST_SLOT {
            return Err(TopologyError::BadSlots);
        }
        let known = self.find(host, port);
        let node = match known {
            Some(at) => at,
            None if self.nodes.is_full() => return Err(self.full()),
            None => u16::try_from(self.nodes.len()).map_err(|_| self.full())?,
        };
        let at = self.ranges.partition_point(|r| r.end < slot);
        let holder = self.ranges.get(at).copied().filter(|r| r.start <= slot);
        if holder.is_some_and(|r| r.primary == node) {
            return Ok(node);
        }
        // Plan first, so that `Full` leaves the map as it was: the holder
        // keeps the part left and right of `slot`; `slot` joins a neighbour
        // already served by `node`, or becomes a range of its own.
        let left = holder.is_some_and(|r| r.start < slot);
        let right = holder.is_some_and(|r| r.end > slot);
        let before = at.checked_sub(1).and_then(|i| self.ranges.get(i));
        let after = self.ranges.get(at + usize::from(holder.is_some()));
        let join_before = !left && before.is_some_and(|r| r.end + 1 == slot && r.primary == node);
        let join_after = !right && after.is_some_and(|r| r.start == slot + 1 && r.primary == node);
        let grown = self.ranges.len() + 1 + usize::from(left) + usize::from(right);
        let gone =
            usize::from(holder.is_some()) + usize::from(join_before) + usize::from(join_after);
        if grown.saturating_sub(gone) > RANGES {
            return Err(self.full());
        }
        let addr = NodeAddr::new(host, port).ok_or(TopologyError::BadAddress)?;

        // Nothing below fails: both capacities were checked above.
        match self.nodes.get_mut(usize::from(node)) {
            Some(n) => {
                n.role = Role::Primary;
                n.primary = node;
            }
            None => {
                let new = Node {
                    addr,
                    role: Role::Primary,
                    primary: node,
                    online: true,
                };
                self.nodes.push(new).map_err(|_| self.full())?;
            }
        }
        let mut k = at; // where `slot` goes once the holder is cut
        if let Some(r) = holder {
            match (left, right) {
                (true, true) => {
                    self.ranges[at].end = slot - 1;
                    let rest = SlotRange {
                        start: slot + 1,
                        ..r
                    };
                    self.ranges.insert(at + 1, rest).map_err(|_| self.full())?;
                    k = at + 1;
                }
                (true, false) => {
                    self.ranges[at].end = slot - 1;
                    k = at + 1;
                }
                (false, true) => self.ranges[at].start = slot + 1,
                (false, false) => {
                    self.ranges.remove(at);
                }
            }
        }
        match (join_before, join_after) {
            (true, true) => {
                self.ranges[k - 1].end = self.ranges[k].end;
                self.ranges.remove(k);
            }
            (true, false) => self.ranges[k - 1].end = slot,
            (false, true) => self.ranges[k].start = slot,
            (false, false) => {
                let own = SlotRange {
                    start: slot,
                    end: slot,
                    primary: node,
                };
                self.ranges.insert(k, own).map_err(|_| self.full())?;
            }
        }
        Ok(node)
    }

    fn full(&self) -> TopologyError {
        TopologyError::Full {
            nodes: NODES,
            ranges: RANGES,
        }
    }

    fn addr(&self, at: u16) -> Option<&NodeAddr> {
        self.nodes.get(usize::from(at)).map(|n| &n.addr)
    }

    /// Replicas of primaries that serve at least one slot.
    fn serving_replicas(&self) -> impl Iterator<Item = &Node> + '_ {
        self.nodes.iter().filter(|n| {
            n.role == Role::Replica && self.ranges.iter().any(|r| r.primary == n.primary)
        })
    }

    fn read_shards(
        &mut self,
        reply: &Frame<'_>,
        tls: bool,
        answered_by: &[u8],
    ) -> Result<(), TopologyError> {
        // Every loop below walks an aggregate the decoder validated, so it
        // is as long as the reply and no longer.
        for shard in elements(reply, "reply")? {
            let (mut slots, mut nodes) = (None, None);
            for (key, value) in fields(&shard, "shard")? {
                match key.as_text() {
                    Some(b"slots") => slots = Some(value),
                    Some(b"nodes") => nodes = Some(value),
                    _ => {}
                }
            }
            let slots = slots.ok_or(malformed("shard slots"))?;
            let nodes = nodes.ok_or(malformed("shard nodes"))?;
            // The primary is the online "master". Redis 7.0 lists a dead
            // primary as a master of a shard of its own, with no slots; later
            // versions group by shard id, so the dead one and its promoted
            // replica can both say "master" in one shard.
            let mut primary: Option<(usize, ShardNode<'_>)> = None;
            for (at, node) in elements(&nodes, "shard nodes")?.enumerate() {
                let node = ShardNode::read(&node)?;
                let better = primary.is_none_or(|(_, p)| node.online && !p.online);
                if node.role == Role::Primary && better {
                    primary = Some((at, node));
                }
            }
            let Some((primary_at, primary)) = primary else {
                // Only replicas listed (the primary forgotten mid-failover):
                // nothing here can take a command, so its slots stay
                // uncovered and its replicas out until a refresh shows a
                // primary. The slots must still be well-formed.
                read_ranges(&slots, |_, _| Ok(()))?;
                continue;
            };
            let addr = primary.addr(tls, answered_by)?;
            let index = self.add_node(addr, Role::Primary, None, primary.online)?;
            for (at, node) in elements(&nodes, "shard nodes")?.enumerate() {
                if at != primary_at {
                    // A second "master" is the dead one: it comes back as a
                    // replica, and must not be taken for a primary meanwhile.
                    let node = ShardNode::read(&node)?;
                    let addr = node.addr(tls, answered_by)?;
                    self.add_node(addr, Role::Replica, Some(index), node.online)?;
                }
            }
            read_ranges(&slots, |start, end| self.push_range(start, end, index))?;
        }
        Ok(())
    }

    fn read_slots(&mut self, reply: &Frame<'_>, answered_by: &[u8]) -> Result<(), TopologyError> {
        for entry in elements(reply, "reply")? {
            let mut parts = elements(&entry, "slot range")?;
            let (Some(start), Some(end), Some(primary)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(malformed("slot range"));
            };
            let (start, end) = (slot_number(&start)?, slot_number(&end)?);
            let primary = slots_node(&primary, answered_by)?;
            let index = self.add_node(primary, Role::Primary, None, true)?;
            self.push_range(start, end, index)?;
            for replica in parts {
                let replica = slots_node(&replica, answered_by)?;
                self.add_node(replica, Role::Replica, Some(index), true)?;
            }
        }
        Ok(())
    }

    /// Adds a node, or finds it when listed again (`CLUSTER SLOTS` repeats a
    /// primary and its replicas for each of its ranges).
    fn add_node(
        &mut self,
        addr: NodeAddr,
        role: Role,
        primary: Option<u16>,
        online: bool,
    ) -> Result<u16, TopologyError> {
        if let Some(at) = self.find(&addr.host, addr.port) {
            let same = self.nodes.get(usize::from(at)).is_some_and(|n| {
                n.role == role && (role == Role::Primary || Some(n.primary) == primary)
            });
            return if same {
                Ok(at)
            } else {
                Err(malformed("node listed twice"))
            };
        }
        let at = u16::try_from(self.nodes.len()).map_err(|_| self.full())?;
        let node = Node {
            addr,
            role,
            primary: primary.unwrap_or(at),
            online,
        };
        self.nodes.push(node).map_err(|_| self.full())?;
        Ok(at)
    }

    fn push_range(&mut self, start: u16, end: u16, primary: u16) -> Result<(), TopologyError> {
        if start > end {
            return Err(TopologyError::BadSlots);
        }
        let range = SlotRange {
            start,
            end,
            primary,
        };
        self.ranges.push(range).map_err(|_| self.full())
    }

    /// Sorts, refuses overlaps, merges same-primary neighbours; empties the
    /// map on any error.
    fn finish(&mut self, read: Result<(), TopologyError>) -> Result<(), TopologyError> {
        let result = read.and_then(|()| {
            if self.ranges.is_empty() {
                return Err(TopologyError::NoSlots);
            }
            self.ranges.sort_unstable_by_key(|r| r.start);
            let mut kept = 0usize;
            for at in 0..self.ranges.len() {
                let range = self.ranges[at];
                if let Some(last) = kept.checked_sub(1).map(|i| &mut self.ranges[i]) {
                    if range.start <= last.end {
                        return Err(TopologyError::BadSlots);
                    }
                    if range.start == last.end + 1 && range.primary == last.primary {
                        last.end = range.end;
                        continue;
                    }
                }
                self.ranges[kept] = range;
                kept += 1;
            }
            self.ranges.truncate(kept);
            Ok(())
        });
        if result.is_err() {
            self.clear();
        }
        result
    }
}

/// Picks the view held by more than half of `views` (one per node that
/// answered) and returns the index of one that holds it; with one view, that
/// one. Views with no ranges never win but count among the views. With no
/// majority the caller keeps the map it has and asks again later.
///
/// Cost: n² [`Topology::same_view`] calls for n views; keep n small (every
/// primary, at most 16 or so, is plenty).
pub fn choose<const N: usize, const R: usize>(
    views: &[&Topology<N, R>],
) -> Result<usize, Disagreement> {
    let mut best = (0, None);
    for (at, view) in views.iter().enumerate() {
        if view.ranges.is_empty() {
            continue;
        }
        let agree = views.iter().filter(|other| view.same_view(other)).count();
        if agree > best.0 {
            best = (agree, Some(at));
        }
    }
    match best {
        (agree, Some(at)) if agree * 2 > views.len() => Ok(at),
        (agree, _) => Err(Disagreement {
            views: views.len(),
            best: agree,
        }),
    }
}

/// One node of a `CLUSTER SHARDS` reply, before a host is picked.
#[derive(Clone, Copy)]
struct ShardNode<'a> {
    endpoint: Option<&'a [u8]>,
    ip: Option<&'a [u8]>,
    hostname: Option<&'a [u8]>,
    port: Option<u16>,
    tls_port: Option<u16>,
    role: Role,
    online: bool,
}

impl<'a> ShardNode<'a> {
    fn read(frame: &Frame<'a>) -> Result<ShardNode<'a>, TopologyError> {
        let mut node = ShardNode {
            endpoint: None,
            ip: None,
            hostname: None,
            port: None,
            tls_port: None,
            role: Role::Replica,
            online: false,
        };
        let mut role = None;
        for (key, value) in fields(frame, "node")? {
            match key.as_text() {
                Some(b"endpoint") => node.endpoint = Some(text_or_null(&value, "endpoint")?),
                Some(b"ip") => node.ip = Some(text_or_null(&value, "ip")?),
                Some(b"hostname") => node.hostname = Some(text_or_null(&value, "hostname")?),
                Some(b"port") => node.port = Some(port_number(&value)?),
                Some(b"tls-port") => node.tls_port = Some(port_number(&value)?),
                Some(b"role") => {
                    role = Some(match value.as_text() {
                        Some(b"master" | b"primary") => Role::Primary,
                        Some(b"replica" | b"slave") => Role::Replica,
                        _ => return Err(malformed("node role")),
                    })
                }
                Some(b"health") => node.online = value.as_text() == Some(b"online"),
                // `id`, `replication-offset`, and whatever later versions add.
                _ => {}
            }
        }
        node.role = role.ok_or(malformed("node role"))?;
        Ok(node)
    }

    fn addr(&self, tls: bool, answered_by: &[u8]) -> Result<NodeAddr, TopologyError> {
        let port = if tls { self.tls_port } else { self.port };
        let port = port.filter(|&p| p != 0).ok_or(TopologyError::BadAddress)?;
        let host = pick_host(self.endpoint, self.ip, self.hostname, answered_by);
        node_addr(host, port)
    }
}

/// `[host, port, id, {ip, hostname}]` of `CLUSTER SLOTS` (id and metadata
/// are missing on old servers).
fn slots_node(frame: &Frame<'_>, answered_by: &[u8]) -> Result<NodeAddr, TopologyError> {
    let mut parts = elements(frame, "node")?;
    let (Some(host), Some(port)) = (parts.next(), parts.next()) else {
        return Err(malformed("node"));
    };
    let endpoint = text_or_null(&host, "node host")?;
    let port = port_number(&port)?;
    let (mut ip, mut hostname) = (None, None);
    if let Some(metadata) = parts.nth(1) {
        for (key, value) in fields(&metadata, "node metadata")? {
            match key.as_text() {
                Some(b"ip") => ip = Some(text_or_null(&value, "ip")?),
                Some(b"hostname") => hostname = Some(text_or_null(&value, "hostname")?),
                _ => {}
            }
        }
    }
    if port == 0 {
        return Err(TopologyError::BadAddress);
    }
    node_addr(pick_host(Some(endpoint), ip, hostname, answered_by), port)
}

/// The module doc says why this order.
fn pick_host<'a>(
    endpoint: Option<&'a [u8]>,
    ip: Option<&'a [u8]>,
    hostname: Option<&'a [u8]>,
    answered_by: &'a [u8],
) -> &'a [u8] {
    match endpoint {
        Some(b"") => answered_by,
        Some(host) if host != b"?" => host,
        _ => [ip, hostname]
            .into_iter()
            .flatten()
            .find(|h| !h.is_empty() && *h != b"?")
            .unwrap_or(answered_by),
    }
}

fn node_addr(host: &[u8], port: u16) -> Result<NodeAddr, TopologyError> {
    core::str::from_utf8(host)
        .ok()
        .and_then(|host| NodeAddr::new(host, port))
        .ok_or(TopologyError::BadAddress)
}

/// `[start, end, start, end, ...]` of `CLUSTER SHARDS`.
fn read_ranges(
    slots: &Frame<'_>,
    mut each: impl FnMut(u16, u16) -> Result<(), TopologyError>,
) -> Result<(), TopologyError> {
    let Frame::Array(pairs) = slots else {
        return Err(malformed("shard slots"));
    };
    if pairs.len() % 2 != 0 {
        return Err(malformed("shard slots"));
    }
    let mut pairs = pairs.iter();
    while let (Some(start), Some(end)) = (pairs.next(), pairs.next()) {
        each(slot_number(&start)?, slot_number(&end)?)?;
    }
    Ok(())
}

fn malformed(what: &'static str) -> TopologyError {
    TopologyError::Malformed { what }
}

fn elements<'a>(frame: &Frame<'a>, what: &'static str) -> Result<AggregateIter<'a>, TopologyError> {
    match frame {
        Frame::Array(items) => Ok(items.iter()),
        _ => Err(malformed(what)),
    }
}

/// A RESP3 map, or the RESP2 array of name, value, name, value Redis sends a
/// RESP2 client for the same reply.
fn fields<'a>(frame: &Frame<'a>, what: &'static str) -> Result<Fields<'a>, TopologyError> {
    match frame {
        Frame::Map(pairs) => Ok(Fields(pairs.iter())),
        Frame::Array(pairs) if pairs.len() % 2 == 0 => Ok(Fields(pairs.iter())),
        _ => Err(malformed(what)),
    }
}

struct Fields<'a>(AggregateIter<'a>);

impl<'a> Iterator for Fields<'a> {
    type Item = (Frame<'a>, Frame<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        Some((self.0.next()?, self.0.next()?))
    }
}

/// A null host is an unknown endpoint, like an empty one.
fn text_or_null<'a>(frame: &Frame<'a>, what: &'static str) -> Result<&'a [u8], TopologyError> {
    match frame {
        Frame::Null => Ok(b""),
        _ => frame.as_text().ok_or(malformed(what)),
    }
}

fn slot_number(frame: &Frame<'_>) -> Result<u16, TopologyError> {
    match *frame {
        Frame::Integer(n) => u16::try_from(n)
            .ok()
            .filter(|&s| s <= LAST_SLOT)
            .ok_or(TopologyError::BadSlots),
        _ => Err(malformed("slot number")),
    }
}

fn port_number(frame: &Frame<'_>) -> Result<u16, TopologyError> {
    match *frame {
        Frame::Integer(n) => u16::try_from(n).map_err(|_| TopologyError::BadAddress),
        _ => Err(malformed("port")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::resp::{Decoded, Limits, decode};
    use proptest::prelude::*;
    use std::string::{String as Text, ToString};
    use std::vec;
    use std::vec::Vec as List;

    type Map = Topology<16, 64>;

    // Captured from Redis 7.0.15: `redis-cli --cluster create` of six nodes
    // on 127.0.0.1:17101-17106, three primaries and one replica each, asked
    // by a client on 17101.

    /// `CLUSTER SHARDS`, RESP2: three shards of a primary and a replica.
    const SHARDS_RESP2: &[u8] = b"\
        *3\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\n\
        id\r\n$40\r\n089d5655a94427fdf824f78225b921b16801024b\r\n$4\r\nport\r\n:17101\r\n\
        $2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
        $6\r\nmaster\r\n$18\r\nreplication-offset\r\n:28\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
        *14\r\n$2\r\nid\r\n$40\r\n8713edd4f1a918f46e334446ad1fe33b2de03a17\r\n$4\r\nport\r\n\
        :17106\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n\
        role\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:28\r\n$6\r\nhealth\r\n$6\r\n\
        online\r\n*4\r\n$5\r\nslots\r\n*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*2\r\n*14\r\n\
        $2\r\nid\r\n$40\r\n648016f194bfd55a8f3eebc89cc88875e7bae48a\r\n$4\r\nport\r\n\
        :17102\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n\
        role\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:28\r\n$6\r\nhealth\r\n$6\r\n\
        online\r\n*14\r\n$2\r\nid\r\n$40\r\n6203e8f851c157f92fe40a7fc3822325a3ff793e\r\n\
        $4\r\nport\r\n:17104\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n\
        127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:28\r\n\
        $6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n\
        $5\r\nnodes\r\n*2\r\n*14\r\n$2\r\nid\r\n$40\r\n\
        de6b3b140024505b471df6bc9fd483d4c5e3b758\r\n$4\r\nport\r\n:17103\r\n$2\r\nip\r\n\
        $9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\n\
        master\r\n$18\r\nreplication-offset\r\n:28\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
        *14\r\n$2\r\nid\r\n$40\r\n6e934e8eba6e5fb34f806882b43e9cec4a004fc1\r\n$4\r\nport\r\n\
        :17105\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n\
        role\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:28\r\n$6\r\nhealth\r\n$6\r\n\
        online\r\n";

    /// The same, RESP3 (maps).
    const SHARDS_RESP3: &[u8] = b"\
        *3\r\n%2\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*2\r\n%7\r\n$2\r\n\
        id\r\n$40\r\n089d5655a94427fdf824f78225b921b16801024b\r\n$4\r\nport\r\n:17101\r\n\
        $2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
        $6\r\nmaster\r\n$18\r\nreplication-offset\r\n:28\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
        %7\r\n$2\r\nid\r\n$40\r\n8713edd4f1a918f46e334446ad1fe33b2de03a17\r\n$4\r\nport\r\n\
        :17106\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n\
        role\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:28\r\n$6\r\nhealth\r\n$6\r\n\
        online\r\n%2\r\n$5\r\nslots\r\n*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*2\r\n%7\r\n\
        $2\r\nid\r\n$40\r\n648016f194bfd55a8f3eebc89cc88875e7bae48a\r\n$4\r\nport\r\n\
        :17102\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n\
        role\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:28\r\n$6\r\nhealth\r\n$6\r\n\
        online\r\n%7\r\n$2\r\nid\r\n$40\r\n6203e8f851c157f92fe40a7fc3822325a3ff793e\r\n\
        $4\r\nport\r\n:17104\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n\
        127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:28\r\n\
        $6\r\nhealth\r\n$6\r\nonline\r\n%2\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n\
        $5\r\nnodes\r\n*2\r\n%7\r\n$2\r\nid\r\n$40\r\n\
        de6b3b140024505b471df6bc9fd483d4c5e3b758\r\n$4\r\nport\r\n:17103\r\n$2\r\nip\r\n\
        $9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\n\
        master\r\n$18\r\nreplication-offset\r\n:28\r\n$6\r\nhealth\r\n$6\r\nonline\r\n%7\r\n\
        $2\r\nid\r\n$40\r\n6e934e8eba6e5fb34f806882b43e9cec4a004fc1\r\n$4\r\nport\r\n\
        :17105\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n\
        role\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:28\r\n$6\r\nhealth\r\n$6\r\n\
        online\r\n";

    /// `CLUSTER SLOTS` of the same cluster, RESP2.
    const SLOTS_RESP2: &[u8] = b"\
        *3\r\n*4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:17101\r\n$40\r\n\
        089d5655a94427fdf824f78225b921b16801024b\r\n*0\r\n*4\r\n$9\r\n127.0.0.1\r\n\
        :17106\r\n$40\r\n8713edd4f1a918f46e334446ad1fe33b2de03a17\r\n*0\r\n*4\r\n:5461\r\n\
        :10922\r\n*4\r\n$9\r\n127.0.0.1\r\n:17102\r\n$40\r\n\
        648016f194bfd55a8f3eebc89cc88875e7bae48a\r\n*0\r\n*4\r\n$9\r\n127.0.0.1\r\n\
        :17104\r\n$40\r\n6203e8f851c157f92fe40a7fc3822325a3ff793e\r\n*0\r\n*4\r\n:10923\r\n\
        :16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:17103\r\n$40\r\n\
        de6b3b140024505b471df6bc9fd483d4c5e3b758\r\n*0\r\n*4\r\n$9\r\n127.0.0.1\r\n\
        :17105\r\n$40\r\n6e934e8eba6e5fb34f806882b43e9cec4a004fc1\r\n*0\r\n";

    /// The same, RESP3: the node metadata is an empty map.
    const SLOTS_RESP3: &[u8] = b"\
        *3\r\n*4\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:17101\r\n$40\r\n\
        089d5655a94427fdf824f78225b921b16801024b\r\n%0\r\n*4\r\n$9\r\n127.0.0.1\r\n\
        :17106\r\n$40\r\n8713edd4f1a918f46e334446ad1fe33b2de03a17\r\n%0\r\n*4\r\n:5461\r\n\
        :10922\r\n*4\r\n$9\r\n127.0.0.1\r\n:17102\r\n$40\r\n\
        648016f194bfd55a8f3eebc89cc88875e7bae48a\r\n%0\r\n*4\r\n$9\r\n127.0.0.1\r\n\
        :17104\r\n$40\r\n6203e8f851c157f92fe40a7fc3822325a3ff793e\r\n%0\r\n*4\r\n:10923\r\n\
        :16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:17103\r\n$40\r\n\
        de6b3b140024505b471df6bc9fd483d4c5e3b758\r\n%0\r\n*4\r\n$9\r\n127.0.0.1\r\n\
        :17105\r\n$40\r\n6e934e8eba6e5fb34f806882b43e9cec4a004fc1\r\n%0\r\n";

    /// Seconds after `--cluster create`: the replicas are still `loading`.
    const SHARDS_LOADING_RESP3: &[u8] = b"\
        *3\r\n%2\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*2\r\n%7\r\n$2\r\n\
        id\r\n$40\r\n089d5655a94427fdf824f78225b921b16801024b\r\n$4\r\nport\r\n:17101\r\n\
        $2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
        $6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
        %7\r\n$2\r\nid\r\n$40\r\n8713edd4f1a918f46e334446ad1fe33b2de03a17\r\n$4\r\nport\r\n\
        :17106\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n\
        role\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$7\r\n\
        loading\r\n%2\r\n$5\r\nslots\r\n*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*2\r\n%7\r\n\
        $2\r\nid\r\n$40\r\n648016f194bfd55a8f3eebc89cc88875e7bae48a\r\n$4\r\nport\r\n\
        :17102\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n\
        role\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\n\
        online\r\n%7\r\n$2\r\nid\r\n$40\r\n6203e8f851c157f92fe40a7fc3822325a3ff793e\r\n\
        $4\r\nport\r\n:17104\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n\
        127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:0\r\n\
        $6\r\nhealth\r\n$7\r\nloading\r\n%2\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n\
        $5\r\nnodes\r\n*2\r\n%7\r\n$2\r\nid\r\n$40\r\n\
        de6b3b140024505b471df6bc9fd483d4c5e3b758\r\n$4\r\nport\r\n:17103\r\n$2\r\nip\r\n\
        $9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$6\r\n\
        master\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n%7\r\n\
        $2\r\nid\r\n$40\r\n6e934e8eba6e5fb34f806882b43e9cec4a004fc1\r\n$4\r\nport\r\n\
        :17105\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n\
        role\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$7\r\n\
        loading\r\n";

    /// After 17103 died and 17105 took over: the dead primary is a shard of
    /// its own, `fail`, with no slots.
    pub(crate) const SHARDS_FAILOVER_RESP2: &[u8] = b"\
        *4\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\n\
        id\r\n$40\r\n089d5655a94427fdf824f78225b921b16801024b\r\n$4\r\nport\r\n:17101\r\n\
        $2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
        $6\r\nmaster\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
        *14\r\n$2\r\nid\r\n$40\r\n8713edd4f1a918f46e334446ad1fe33b2de03a17\r\n$4\r\nport\r\n\
        :17106\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n\
        role\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\n\
        online\r\n*4\r\n$5\r\nslots\r\n*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*2\r\n*14\r\n\
        $2\r\nid\r\n$40\r\n648016f194bfd55a8f3eebc89cc88875e7bae48a\r\n$4\r\nport\r\n\
        :17102\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n\
        role\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\n\
        online\r\n*14\r\n$2\r\nid\r\n$40\r\n6203e8f851c157f92fe40a7fc3822325a3ff793e\r\n\
        $4\r\nport\r\n:17104\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n\
        127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:56\r\n\
        $6\r\nhealth\r\n$6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*1\r\n\
        *14\r\n$2\r\nid\r\n$40\r\nde6b3b140024505b471df6bc9fd483d4c5e3b758\r\n$4\r\nport\r\n\
        :17103\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n\
        role\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$4\r\n\
        fail\r\n*4\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*14\r\n\
        $2\r\nid\r\n$40\r\n6e934e8eba6e5fb34f806882b43e9cec4a004fc1\r\n$4\r\nport\r\n\
        :17105\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\n\
        role\r\n$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\n\
        online\r\n";

    /// `cluster-preferred-endpoint-type unknown-endpoint`: `endpoint` is empty.
    const SHARDS_UNKNOWN_ENDPOINT_RESP2: &[u8] = b"\
        *4\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*2\r\n*14\r\n$2\r\n\
        id\r\n$40\r\n089d5655a94427fdf824f78225b921b16801024b\r\n$4\r\nport\r\n:17101\r\n\
        $2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$0\r\n\r\n$4\r\nrole\r\n$6\r\n\
        master\r\n$18\r\nreplication-offset\r\n:168\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
        *14\r\n$2\r\nid\r\n$40\r\n8713edd4f1a918f46e334446ad1fe33b2de03a17\r\n$4\r\nport\r\n\
        :17106\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$0\r\n\r\n$4\r\nrole\r\n\
        $7\r\nreplica\r\n$18\r\nreplication-offset\r\n:168\r\n$6\r\nhealth\r\n$6\r\n\
        online\r\n*4\r\n$5\r\nslots\r\n*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*2\r\n*14\r\n\
        $2\r\nid\r\n$40\r\n648016f194bfd55a8f3eebc89cc88875e7bae48a\r\n$4\r\nport\r\n\
        :17102\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$0\r\n\r\n$4\r\nrole\r\n\
        $6\r\nmaster\r\n$18\r\nreplication-offset\r\n:168\r\n$6\r\nhealth\r\n$6\r\n\
        online\r\n*14\r\n$2\r\nid\r\n$40\r\n6203e8f851c157f92fe40a7fc3822325a3ff793e\r\n\
        $4\r\nport\r\n:17104\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$0\r\n\r\n\
        $4\r\nrole\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:168\r\n$6\r\nhealth\r\n\
        $6\r\nonline\r\n*4\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n\
        $40\r\nde6b3b140024505b471df6bc9fd483d4c5e3b758\r\n$4\r\nport\r\n:17103\r\n$2\r\n\
        ip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$0\r\n\r\n$4\r\nrole\r\n$6\r\nmaster\r\n\
        $18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$4\r\nfail\r\n*4\r\n$5\r\n\
        slots\r\n*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n*14\r\n$2\r\nid\r\n$40\r\n\
        6e934e8eba6e5fb34f806882b43e9cec4a004fc1\r\n$4\r\nport\r\n:17105\r\n$2\r\nip\r\n\
        $9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$0\r\n\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$18\r\n\
        replication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n";

    /// The same in `CLUSTER SLOTS`: a null host, the internal `ip` in the metadata.
    const SLOTS_UNKNOWN_ENDPOINT_RESP3: &[u8] = b"\
        *3\r\n*4\r\n:0\r\n:5460\r\n*4\r\n_\r\n:17101\r\n$40\r\n\
        089d5655a94427fdf824f78225b921b16801024b\r\n%1\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n\
        *4\r\n_\r\n:17106\r\n$40\r\n8713edd4f1a918f46e334446ad1fe33b2de03a17\r\n%1\r\n$2\r\n\
        ip\r\n$9\r\n127.0.0.1\r\n*4\r\n:5461\r\n:10922\r\n*4\r\n_\r\n:17102\r\n$40\r\n\
        648016f194bfd55a8f3eebc89cc88875e7bae48a\r\n%1\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n\
        *4\r\n_\r\n:17104\r\n$40\r\n6203e8f851c157f92fe40a7fc3822325a3ff793e\r\n%1\r\n$2\r\n\
        ip\r\n$9\r\n127.0.0.1\r\n*3\r\n:10923\r\n:16383\r\n*4\r\n_\r\n:17105\r\n$40\r\n\
        6e934e8eba6e5fb34f806882b43e9cec4a004fc1\r\n%1\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n";

    /// `cluster-preferred-endpoint-type hostname` with no hostname set:
    /// `endpoint` is `?`.
    const SHARDS_NO_HOSTNAME_RESP3: &[u8] = b"\
        *4\r\n%2\r\n$5\r\nslots\r\n*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n*2\r\n%7\r\n$2\r\n\
        id\r\n$40\r\n089d5655a94427fdf824f78225b921b16801024b\r\n$4\r\nport\r\n:17101\r\n\
        $2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$1\r\n?\r\n$4\r\nrole\r\n$6\r\n\
        master\r\n$18\r\nreplication-offset\r\n:182\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
        %7\r\n$2\r\nid\r\n$40\r\n8713edd4f1a918f46e334446ad1fe33b2de03a17\r\n$4\r\nport\r\n\
        :17106\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$1\r\n?\r\n$4\r\nrole\r\n\
        $7\r\nreplica\r\n$18\r\nreplication-offset\r\n:168\r\n$6\r\nhealth\r\n$6\r\n\
        online\r\n%2\r\n$5\r\nslots\r\n*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*2\r\n%7\r\n\
        $2\r\nid\r\n$40\r\n648016f194bfd55a8f3eebc89cc88875e7bae48a\r\n$4\r\nport\r\n\
        :17102\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$1\r\n?\r\n$4\r\nrole\r\n\
        $6\r\nmaster\r\n$18\r\nreplication-offset\r\n:168\r\n$6\r\nhealth\r\n$6\r\n\
        online\r\n%7\r\n$2\r\nid\r\n$40\r\n6203e8f851c157f92fe40a7fc3822325a3ff793e\r\n\
        $4\r\nport\r\n:17104\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$1\r\n?\r\n\
        $4\r\nrole\r\n$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:168\r\n$6\r\nhealth\r\n\
        $6\r\nonline\r\n%2\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*1\r\n%7\r\n$2\r\nid\r\n\
        $40\r\nde6b3b140024505b471df6bc9fd483d4c5e3b758\r\n$4\r\nport\r\n:17103\r\n$2\r\n\
        ip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$1\r\n?\r\n$4\r\nrole\r\n$6\r\nmaster\r\n\
        $18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$4\r\nfail\r\n%2\r\n$5\r\n\
        slots\r\n*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n*1\r\n%7\r\n$2\r\nid\r\n$40\r\n\
        6e934e8eba6e5fb34f806882b43e9cec4a004fc1\r\n$4\r\nport\r\n:17105\r\n$2\r\nip\r\n\
        $9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$1\r\n?\r\n$4\r\nrole\r\n$6\r\nmaster\r\n\
        $18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n";

    #[track_caller]
    fn frame(bytes: &[u8]) -> Frame<'_> {
        match decode(bytes, &Limits::REDIS) {
            Ok(Decoded::Frame { frame, .. }) => frame,
            other => panic!("not one frame: {other:?}"),
        }
    }

    #[track_caller]
    fn shards(bytes: &[u8], answered_by: &str) -> Map {
        let mut map = Map::new();
        map.parse_shards(&frame(bytes), false, answered_by)
            .expect("CLUSTER SHARDS parses");
        check(&map);
        map
    }

    #[track_caller]
    fn slots(bytes: &[u8], answered_by: &str) -> Map {
        let mut map = Map::new();
        map.parse_slots(&frame(bytes), answered_by)
            .expect("CLUSTER SLOTS parses");
        check(&map);
        map
    }

    /// `host:port` of node `at`.
    fn name<const N: usize, const R: usize>(map: &Topology<N, R>, at: Option<u16>) -> Text {
        at.and_then(|at| map.nodes().get(usize::from(at)))
            .map_or("none".to_string(), |n| n.addr.to_string())
    }

    fn local(map: &Map, port: u16) -> u16 {
        map.find("127.0.0.1", port).expect("node in the map")
    }

    /// What the module doc promises of every map.
    #[track_caller]
    fn check<const N: usize, const R: usize>(map: &Topology<N, R>) {
        for pair in map.ranges().windows(2) {
            assert!(pair[0].end < pair[1].start, "sorted, apart: {pair:?}");
            let touching = pair[0].end + 1 == pair[1].start;
            assert!(
                !touching || pair[0].primary != pair[1].primary,
                "merged: {pair:?}"
            );
        }
        for r in map.ranges() {
            assert!(r.start <= r.end && r.end <= LAST_SLOT, "{r:?}");
            assert_eq!(map.nodes()[usize::from(r.primary)].role, Role::Primary);
        }
        for (at, n) in map.nodes().iter().enumerate() {
            assert_eq!(
                map.find(&n.addr.host, n.addr.port),
                Some(at as u16),
                "unique"
            );
            assert_eq!(map.nodes()[usize::from(n.primary)].role, Role::Primary);
            if n.role == Role::Primary {
                assert_eq!(usize::from(n.primary), at);
            }
        }
    }

    /// A reply Redis 7.0 does not send on its own, written by hand.
    #[derive(Clone, Debug)]
    enum V {
        Int(i64),
        Str(List<u8>),
        Null,
        Arr(List<V>),
        Map(List<(V, V)>),
    }

    fn s(text: &str) -> V {
        V::Str(text.as_bytes().to_vec())
    }

    fn encode(v: &V, out: &mut List<u8>) {
        match v {
            V::Int(n) => out.extend_from_slice(std::format!(":{n}\r\n").as_bytes()),
            V::Str(b) => {
                out.extend_from_slice(std::format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            V::Null => out.extend_from_slice(b"_\r\n"),
            V::Arr(items) => {
                out.extend_from_slice(std::format!("*{}\r\n", items.len()).as_bytes());
                items.iter().for_each(|i| encode(i, out));
            }
            V::Map(pairs) => {
                out.extend_from_slice(std::format!("%{}\r\n", pairs.len()).as_bytes());
                for (k, v) in pairs {
                    encode(k, out);
                    encode(v, out);
                }
            }
        }
    }

    /// RESP3 map, or the RESP2 array of name, value, ...
    fn pairs(fields: List<(V, V)>, resp3: bool) -> V {
        if resp3 {
            V::Map(fields)
        } else {
            V::Arr(fields.into_iter().flat_map(|(k, v)| [k, v]).collect())
        }
    }

    fn shard(slots: &[i64], nodes: List<V>) -> V {
        let slots = V::Arr(slots.iter().map(|&n| V::Int(n)).collect());
        V::Map(vec![(s("slots"), slots), (s("nodes"), V::Arr(nodes))])
    }

    /// A `CLUSTER SHARDS` node on 10.0.0.1.
    fn node(port: i64, role: &str, health: &str) -> V {
        V::Map(vec![
            (s("id"), s("0123")),
            (s("port"), V::Int(port)),
            (s("ip"), s("10.0.0.1")),
            (s("endpoint"), s("10.0.0.1")),
            (s("role"), s(role)),
            (s("health"), s(health)),
        ])
    }

    /// `node` with field `key` set to `value` (`None`: removed).
    fn with(node: V, key: &str, value: Option<V>) -> V {
        let V::Map(mut fields) = node else {
            unreachable!("nodes are maps")
        };
        fields.retain(|(k, _)| !matches!(k, V::Str(k) if k == key.as_bytes()));
        fields.extend(value.map(|v| (s(key), v)));
        V::Map(fields)
    }

    fn parse_shards(reply: &V, tls: bool) -> Result<Map, TopologyError> {
        let mut bytes = List::new();
        encode(reply, &mut bytes);
        let mut map = shards(SHARDS_RESP2, "127.0.0.1");
        let result = map.parse_shards(&frame(&bytes), tls, "seed.example");
        match result {
            Ok(()) => check(&map),
            Err(_) => assert!(map.nodes().is_empty() && map.ranges().is_empty()),
        }
        result.map(|()| map)
    }

    fn parse_slots(reply: &V) -> Result<Map, TopologyError> {
        let mut bytes = List::new();
        encode(reply, &mut bytes);
        let mut map = shards(SHARDS_RESP2, "127.0.0.1");
        let result = map.parse_slots(&frame(&bytes), "seed.example");
        match result {
            Ok(()) => check(&map),
            Err(_) => assert!(map.nodes().is_empty() && map.ranges().is_empty()),
        }
        result.map(|()| map)
    }

    #[test]
    fn both_commands_in_both_protocols_give_one_map() {
        let map = shards(SHARDS_RESP2, "127.0.0.1");
        for other in [
            shards(SHARDS_RESP3, "127.0.0.1"),
            slots(SLOTS_RESP2, "127.0.0.1"),
            slots(SLOTS_RESP3, "127.0.0.1"),
        ] {
            assert_eq!((other.nodes(), other.ranges()), (map.nodes(), map.ranges()));
            assert!(map.same_view(&other));
        }
        assert!(map.covers_all());
        assert_eq!((map.nodes().len(), map.ranges().len()), (6, 3));
        for (slot, primary) in [
            (0, "127.0.0.1:17101"),
            (5460, "127.0.0.1:17101"),
            (5461, "127.0.0.1:17102"),
            (10922, "127.0.0.1:17102"),
            (10923, "127.0.0.1:17103"),
            (16383, "127.0.0.1:17103"),
            (16384, "none"),
        ] {
            assert_eq!(name(&map, map.primary_of(slot)), primary, "slot {slot}");
        }
        for (primary, replica) in [(17101, 17106), (17102, 17104), (17103, 17105)] {
            let replicas: List<u16> = map.replicas_of(local(&map, primary)).collect();
            assert_eq!(replicas, [local(&map, replica)]);
            assert_eq!(map.nodes()[usize::from(replicas[0])].role, Role::Replica);
        }
        assert_eq!(map.replicas_of(local(&map, 17106)).count(), 0);
        assert!(map.nodes().iter().all(|n| n.online));
    }

    #[test]
    fn health_other_than_online_is_offline() {
        let map = shards(SHARDS_LOADING_RESP3, "127.0.0.1");
        for n in map.nodes() {
            assert_eq!(n.online, n.role == Role::Primary, "{}", n.addr);
        }
        assert!(map.covers_all());

        // The dead primary stays listed, offline and serving nothing; its
        // replica took its slots.
        let map = shards(SHARDS_FAILOVER_RESP2, "127.0.0.1");
        let dead = &map.nodes()[usize::from(local(&map, 17103))];
        assert_eq!((dead.role, dead.online), (Role::Primary, false));
        assert!(map.ranges().iter().all(|r| r.primary != local(&map, 17103)));
        assert_eq!(name(&map, map.primary_of(10923)), "127.0.0.1:17105");
        assert!(map.covers_all());
    }

    #[test]
    fn an_unknown_endpoint_is_the_host_that_answered() {
        let by_shards = shards(SHARDS_UNKNOWN_ENDPOINT_RESP2, "redis.example");
        let by_slots = slots(SLOTS_UNKNOWN_ENDPOINT_RESP3, "redis.example");
        for map in [&by_shards, &by_slots] {
            assert!(map.nodes().iter().all(|n| n.addr.host == "redis.example"));
            assert_eq!(name(map, map.primary_of(0)), "redis.example:17101");
        }
        // CLUSTER SLOTS leaves out the dead 17103; it serves nothing, so the
        // views agree.
        assert_eq!((by_shards.nodes().len(), by_slots.nodes().len()), (6, 5));
        assert!(by_shards.same_view(&by_slots));

        // `?`: a hostname is preferred but unset: the ip is next.
        let map = shards(SHARDS_NO_HOSTNAME_RESP3, "redis.example");
        assert!(map.nodes().iter().all(|n| n.addr.host == "127.0.0.1"));
        let unset = with(node(7000, "master", "online"), "endpoint", Some(s("?")));
        let named = with(unset.clone(), "hostname", Some(s("a.example")));
        let named = with(named, "ip", Some(s("")));
        let reply = V::Arr(vec![shard(&[0, 16383], vec![named])]);
        assert_eq!(
            name(&parse_shards(&reply, false).unwrap(), Some(0)),
            "a.example:7000"
        );
        let bare = with(unset, "ip", None);
        let reply = V::Arr(vec![shard(&[0, 16383], vec![bare])]);
        assert_eq!(
            name(&parse_shards(&reply, false).unwrap(), Some(0)),
            "seed.example:7000"
        );
    }

    #[test]
    fn tls_takes_the_tls_port() {
        let both = with(
            node(6379, "master", "online"),
            "tls-port",
            Some(V::Int(6380)),
        );
        let reply = V::Arr(vec![shard(&[0, 16383], vec![both])]);
        assert_eq!(
            name(&parse_shards(&reply, false).unwrap(), Some(0)),
            "10.0.0.1:6379"
        );
        assert_eq!(
            name(&parse_shards(&reply, true).unwrap(), Some(0)),
            "10.0.0.1:6380"
        );
        for tls_port in [None, Some(V::Int(0))] {
            let plain = with(node(6379, "master", "online"), "tls-port", tls_port);
            let reply = V::Arr(vec![shard(&[0, 16383], vec![plain])]);
            assert_eq!(
                parse_shards(&reply, true).unwrap_err(),
                TopologyError::BadAddress
            );
        }
    }

    #[test]
    fn a_shard_without_primary_leaves_its_slots_uncovered() {
        let reply = V::Arr(vec![
            shard(&[0, 8191], vec![node(7000, "master", "online")]),
            shard(&[8192, 16383], vec![node(7001, "replica", "online")]),
        ]);
        let map = parse_shards(&reply, false).unwrap();
        assert_eq!(name(&map, map.primary_of(8191)), "10.0.0.1:7000");
        assert_eq!(map.primary_of(8192), None);
        assert_eq!((map.nodes().len(), map.covers_all()), (1, false));
    }

    /// Redis 7.2 groups nodes by shard id: the dead primary and its promoted
    /// replica both say "master" in one shard.
    #[test]
    fn of_two_masters_in_a_shard_the_online_one_serves() {
        let reply = V::Arr(vec![shard(
            &[0, 16383],
            vec![
                node(7000, "master", "fail"),
                node(7001, "master", "online"),
                node(7002, "replica", "online"),
            ],
        )]);
        let map = parse_shards(&reply, false).unwrap();
        assert_eq!(name(&map, map.primary_of(0)), "10.0.0.1:7001");
        let dead = &map.nodes()[usize::from(map.find("10.0.0.1", 7000).unwrap())];
        assert_eq!((dead.role, dead.online), (Role::Replica, false));
        assert_eq!(map.replicas_of(map.primary_of(0).unwrap()).count(), 2);
    }

    #[test]
    fn malformed_replies_are_typed_errors() {
        let malformed = |what| TopologyError::Malformed { what };
        let ok = || node(7000, "master", "online");
        let one = |slots: &[i64], n: V| V::Arr(vec![shard(slots, vec![n])]);
        let long = "h".repeat(HOST_CAP + 1);
        for (reply, error) in [
            (s("OK"), malformed("reply")),
            (V::Arr(vec![]), TopologyError::NoSlots),
            (V::Arr(vec![V::Int(1)]), malformed("shard")),
            (
                V::Arr(vec![V::Map(vec![(s("slots"), V::Arr(vec![]))])]),
                malformed("shard nodes"),
            ),
            (one(&[0], ok()), malformed("shard slots")),
            (one(&[0, 16384], ok()), TopologyError::BadSlots),
            (one(&[-1, 5], ok()), TopologyError::BadSlots),
            (one(&[10, 5], ok()), TopologyError::BadSlots),
            (one(&[], ok()), TopologyError::NoSlots),
            (
                one(&[0, 1], with(ok(), "port", None)),
                TopologyError::BadAddress,
            ),
            (
                one(&[0, 1], with(ok(), "port", Some(V::Int(70000)))),
                TopologyError::BadAddress,
            ),
            (
                one(&[0, 1], with(ok(), "port", Some(s("7000")))),
                malformed("port"),
            ),
            (
                one(&[0, 1], with(ok(), "role", None)),
                malformed("node role"),
            ),
            (
                one(&[0, 1], with(ok(), "role", Some(s("boss")))),
                malformed("node role"),
            ),
            (
                one(&[0, 1], with(ok(), "endpoint", Some(s(&long)))),
                TopologyError::BadAddress,
            ),
            (
                one(&[0, 1], with(ok(), "endpoint", Some(V::Int(1)))),
                malformed("endpoint"),
            ),
            (
                V::Arr(vec![
                    shard(&[0, 100], vec![node(7000, "master", "online")]),
                    shard(&[100, 200], vec![node(7001, "master", "online")]),
                ]),
                TopologyError::BadSlots,
            ),
            (
                V::Arr(vec![
                    shard(&[0, 100], vec![node(7000, "master", "online")]),
                    shard(
                        &[101, 200],
                        vec![
                            node(7001, "master", "online"),
                            node(7000, "replica", "online"),
                        ],
                    ),
                ]),
                malformed("node listed twice"),
            ),
        ] {
            assert_eq!(parse_shards(&reply, false).unwrap_err(), error, "{reply:?}");
        }

        let host = |port| V::Arr(vec![s("10.0.0.1"), V::Int(port), s("id"), V::Arr(vec![])]);
        let entry = |start, end, nodes: List<V>| {
            V::Arr(
                [V::Int(start), V::Int(end)]
                    .into_iter()
                    .chain(nodes)
                    .collect(),
            )
        };
        for (reply, error) in [
            (s("OK"), malformed("reply")),
            (V::Arr(vec![]), TopologyError::NoSlots),
            (V::Arr(vec![entry(0, 10, vec![])]), malformed("slot range")),
            (
                V::Arr(vec![entry(0, 16384, vec![host(7000)])]),
                TopologyError::BadSlots,
            ),
            (
                V::Arr(vec![entry(9, 1, vec![host(7000)])]),
                TopologyError::BadSlots,
            ),
            (
                V::Arr(vec![entry(0, 1, vec![V::Arr(vec![s("h")])])]),
                malformed("node"),
            ),
            (
                V::Arr(vec![entry(0, 1, vec![host(0)])]),
                TopologyError::BadAddress,
            ),
            (
                V::Arr(vec![entry(0, 1, vec![host(-1)])]),
                TopologyError::BadAddress,
            ),
            (
                V::Arr(vec![entry(0, 1, vec![V::Arr(vec![V::Int(1), V::Int(2)])])]),
                malformed("node host"),
            ),
            (
                V::Arr(vec![
                    entry(0, 9, vec![host(7000)]),
                    entry(5, 20, vec![host(7001)]),
                ]),
                TopologyError::BadSlots,
            ),
            (
                V::Arr(vec![
                    entry(0, 9, vec![host(7000), host(7001)]),
                    entry(10, 20, vec![host(7001)]),
                ]),
                malformed("node listed twice"),
            ),
        ] {
            assert_eq!(parse_slots(&reply).unwrap_err(), error, "{reply:?}");
        }

        // What a node without cluster support answers.
        let mut map = shards(SHARDS_RESP2, "127.0.0.1");
        let refusal = frame(b"-ERR This instance has cluster support disabled\r\n");
        assert_eq!(map.parse_slots(&refusal, "h"), Err(malformed("reply")));
        assert_eq!(
            map.parse_shards(&refusal, false, "h"),
            Err(malformed("reply"))
        );
        assert!(map.nodes().is_empty());
    }

    #[test]
    fn a_table_too_small_is_full() {
        let reply = frame(SHARDS_RESP2);
        let mut few_nodes = Topology::<4, 64>::new();
        let full = TopologyError::Full {
            nodes: 4,
            ranges: 64,
        };
        assert_eq!(few_nodes.parse_shards(&reply, false, "h"), Err(full));
        let mut few_ranges = Topology::<16, 2>::new();
        let full = TopologyError::Full {
            nodes: 16,
            ranges: 2,
        };
        assert_eq!(few_ranges.parse_slots(&frame(SLOTS_RESP2), "h"), Err(full));
        assert!(few_ranges.nodes().is_empty());
        assert_eq!(
            Topology::<6, 3>::new().parse_shards(&reply, false, "h"),
            Ok(())
        );
        assert!(
            full.to_string()
                .contains("raise Topology's NODES or RANGES")
        );
    }

    /// The ranges as `start-end port`.
    fn layout(map: &Map) -> List<Text> {
        let port = |at: u16| map.nodes()[usize::from(at)].addr.port;
        map.ranges()
            .iter()
            .map(|r| std::format!("{}-{} {}", r.start, r.end, port(r.primary)))
            .collect()
    }

    #[test]
    fn moved_splits_a_range_and_undoing_it_merges_back() {
        let original = shards(SHARDS_RESP2, "127.0.0.1");
        let mut map = original.clone();
        assert_eq!(map.assign(100, "127.0.0.1", 17102), Ok(local(&map, 17102)));
        assert_eq!(
            layout(&map),
            [
                "0-99 17101",
                "100-100 17102",
                "101-5460 17101",
                "5461-10922 17102",
                "10923-16383 17103"
            ]
        );
        assert_eq!(map.assign(101, "127.0.0.1", 17102), Ok(local(&map, 17102)));
        assert_eq!(layout(&map)[1..3], ["100-101 17102", "102-5460 17101"]);
        map.assign(100, "127.0.0.1", 17101).unwrap();
        map.assign(101, "127.0.0.1", 17101).unwrap();
        assert_eq!(map.ranges(), original.ranges());
        assert!(map.same_view(&original));
    }

    #[test]
    fn moved_at_the_edges_of_a_range() {
        let mut map = shards(SHARDS_RESP2, "127.0.0.1");
        map.assign(5460, "127.0.0.1", 17102).unwrap();
        map.assign(0, "127.0.0.1", 17103).unwrap();
        map.assign(16383, "127.0.0.1", 17101).unwrap();
        assert_eq!(
            layout(&map),
            [
                "0-0 17103",
                "1-5459 17101",
                "5460-10922 17102",
                "10923-16382 17103",
                "16383-16383 17101"
            ]
        );
        // Already there: nothing to do.
        let before = layout(&map);
        assert_eq!(map.assign(1, "127.0.0.1", 17101), Ok(local(&map, 17101)));
        assert_eq!(layout(&map), before);
        assert_eq!(
            map.assign(16384, "127.0.0.1", 17101),
            Err(TopologyError::BadSlots)
        );
    }

    #[test]
    fn moved_to_a_new_node_or_a_replica_makes_it_a_primary() {
        let mut map = shards(SHARDS_RESP2, "127.0.0.1");
        assert_eq!(map.assign(7000, "10.9.9.9", 7000), Ok(6));
        let new = &map.nodes()[6];
        assert_eq!(
            (new.role, new.primary, new.online),
            (Role::Primary, 6, true)
        );
        assert_eq!(name(&map, map.primary_of(7000)), "10.9.9.9:7000");
        assert_eq!(name(&map, map.primary_of(7001)), "127.0.0.1:17102");

        let promoted = local(&map, 17106);
        assert_eq!(map.assign(42, "127.0.0.1", 17106), Ok(promoted));
        let n = &map.nodes()[usize::from(promoted)];
        assert_eq!((n.role, n.primary), (Role::Primary, promoted));
        assert_eq!(map.replicas_of(local(&map, 17101)).count(), 0);
        check(&map);

        // A map not yet known.
        let mut empty = Map::new();
        assert_eq!(empty.assign(9, "10.0.0.1", 1), Ok(0));
        assert_eq!(layout(&empty), ["9-9 1"]);
    }

    #[test]
    fn moved_into_a_full_table_changes_nothing() {
        let mut map = Topology::<6, 4>::new();
        map.parse_shards(&frame(SHARDS_RESP2), false, "h").unwrap();
        let full = TopologyError::Full {
            nodes: 6,
            ranges: 4,
        };
        assert_eq!(map.assign(9, "10.0.0.1", 1), Err(full));
        assert_eq!(
            map.assign(100, "127.0.0.1", 17102),
            Err(full),
            "needs 5 ranges"
        );
        assert_eq!(map.nodes().len(), 6);
        assert_eq!(map.ranges().len(), 3);
        assert_eq!(map.assign(0, "127.0.0.1", 17102), Ok(2), "needs 4");
    }

    /// Three shards, listed in the order given, replicas reversed when
    /// `flip`.
    fn cluster(order: [usize; 3], flip: bool, health: &str) -> V {
        let shards = [(0, 5000, 7000), (5001, 10000, 7010), (10001, 16383, 7020)];
        V::Arr(
            order
                .iter()
                .map(|&i| {
                    let (start, end, port) = shards[i];
                    let mut replicas = [port + 1, port + 2].map(|p| node(p, "replica", health));
                    if flip {
                        replicas.reverse();
                    }
                    let mut nodes = vec![node(port, "master", "online")];
                    nodes.extend(replicas);
                    shard(&[start, end], nodes)
                })
                .collect(),
        )
    }

    #[test]
    fn same_view_ignores_order_and_health() {
        let a = parse_shards(&cluster([0, 1, 2], false, "online"), false).unwrap();
        let b = parse_shards(&cluster([2, 0, 1], true, "loading"), false).unwrap();
        assert_ne!(a.nodes(), b.nodes());
        assert!(a.same_view(&b) && b.same_view(&a));

        let mut moved = b.clone();
        moved.assign(0, "10.0.0.1", 7010).unwrap();
        assert!(!a.same_view(&moved));

        let other_replica = V::Arr(vec![
            shard(
                &[0, 5000],
                vec![
                    node(7000, "master", "online"),
                    node(7001, "replica", "online"),
                    node(7099, "replica", "online"),
                ],
            ),
            shard(
                &[5001, 10000],
                vec![
                    node(7010, "master", "online"),
                    node(7011, "replica", "online"),
                    node(7012, "replica", "online"),
                ],
            ),
            shard(
                &[10001, 16383],
                vec![
                    node(7020, "master", "online"),
                    node(7021, "replica", "online"),
                    node(7022, "replica", "online"),
                ],
            ),
        ]);
        let c = parse_shards(&other_replica, false).unwrap();
        assert!(!a.same_view(&c) && !c.same_view(&a));
    }

    #[test]
    fn choose_takes_the_view_most_nodes_hold() {
        let a = shards(SHARDS_RESP2, "127.0.0.1");
        let b = slots(SLOTS_RESP3, "127.0.0.1");
        let c = shards(SHARDS_RESP3, "127.0.0.1");
        let mut moved = a.clone();
        moved.assign(0, "127.0.0.1", 17102).unwrap();
        let empty = Map::new();
        let no = |views, best| Err(Disagreement { views, best });

        assert_eq!(choose(&[&a, &b, &c]), Ok(0));
        assert_eq!(choose(&[&moved, &a, &b]), Ok(1));
        assert_eq!(choose(&[&a, &moved, &moved]), Ok(1));
        assert_eq!(choose(&[&moved]), Ok(0));
        assert_eq!(choose(&[&a, &moved]), no(2, 1));
        assert_eq!(choose(&[&empty, &a, &b]), Ok(1));
        assert_eq!(choose(&[&empty, &empty, &a]), no(3, 1));
        assert_eq!(choose(&[&empty]), no(1, 0));
        assert_eq!(choose::<16, 64>(&[]), no(0, 0));
    }

    #[test]
    fn node_addresses() {
        assert_eq!(NodeAddr::new(&"h".repeat(HOST_CAP + 1), 1), None);
        let v6 = NodeAddr::new("::1", 6379).unwrap();
        assert_eq!(v6.to_string(), "[::1]:6379");
        assert!(v6.is("::1", 6379) && !v6.is("::1", 6380));
        assert_eq!(
            NodeAddr::new("10.0.0.1", 7000).unwrap().to_string(),
            "10.0.0.1:7000"
        );
    }

    const WORDS: &[&str] = &[
        "slots", "nodes", "port", "tls-port", "ip", "endpoint", "hostname", "role", "master",
        "replica", "primary", "health", "online", "loading", "?", "", "10.0.0.1",
    ];

    fn leaf() -> impl Strategy<Value = V> {
        prop_oneof![
            3 => prop::sample::select(WORDS).prop_map(s),
            3 => prop_oneof![0i64..16390, -2i64..2, 6370i64..6376, Just(65536), Just(i64::MIN)]
                .prop_map(V::Int),
            1 => Just(V::Null),
            1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(V::Str),
        ]
    }

    fn any_reply() -> impl Strategy<Value = V> {
        leaf().prop_recursive(5, 96, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(V::Arr),
                prop::collection::vec((inner.clone(), inner), 0..6).prop_map(V::Map),
            ]
        })
    }

    fn slot() -> impl Strategy<Value = i64> {
        prop_oneof![8 => 0i64..64, 1 => 16320i64..16390, 1 => -2i64..0]
    }

    /// Mostly sound ranges, wide apart or crowded near 0; some broken ones.
    fn range() -> impl Strategy<Value = (i64, i64)> {
        prop_oneof![
            4 => (0i64..16384, 0i64..64).prop_map(|(start, len)| (start, start + len)),
            4 => (0i64..64, 0i64..8).prop_map(|(start, len)| (start, start + len)),
            1 => (slot(), slot()),
        ]
    }

    /// Now and then a field of any name and value, to break a node.
    fn extra() -> impl Strategy<Value = Option<(V, V)>> {
        prop::option::weighted(0.2, (prop::sample::select(WORDS).prop_map(s), leaf()))
    }

    fn shards_reply() -> impl Strategy<Value = V> {
        let roles = &["master", "master", "replica", "replica", "slave", "primary"][..];
        let role = prop_oneof![9 => prop::sample::select(roles), 1 => Just("boss")];
        let health = prop::sample::select(&["online", "loading", "fail"][..]);
        let endpoint = prop_oneof![prop::sample::select(WORDS).prop_map(s), Just(V::Null)];
        let node = (
            6370i64..6376,
            role,
            health,
            endpoint,
            extra(),
            any::<bool>(),
        )
            .prop_map(|(port, role, health, endpoint, extra, resp3)| {
                let mut fields = vec![
                    (s("port"), V::Int(port)),
                    (s("role"), s(role)),
                    (s("health"), s(health)),
                    (s("endpoint"), endpoint),
                ];
                fields.extend(extra);
                pairs(fields, resp3)
            });
        let ranges = prop::collection::vec(range(), 0..3);
        let slots = (ranges, prop::option::weighted(0.05, slot())).prop_map(|(ranges, odd)| {
            let ends = ranges.into_iter().flat_map(|(start, end)| [start, end]);
            V::Arr(ends.chain(odd).map(V::Int).collect())
        });
        let shard = (slots, prop::collection::vec(node, 1..4), any::<bool>()).prop_map(
            |(slots, nodes, resp3)| {
                pairs(
                    vec![(s("slots"), slots), (s("nodes"), V::Arr(nodes))],
                    resp3,
                )
            },
        );
        prop::collection::vec(shard, 0..4).prop_map(V::Arr)
    }

    fn slots_reply() -> impl Strategy<Value = V> {
        let host = prop_oneof![prop::sample::select(WORDS).prop_map(s), Just(V::Null)];
        let node = (host, 6370i64..6376, extra(), any::<bool>()).prop_map(
            |(host, port, metadata, resp3)| {
                let metadata = pairs(metadata.into_iter().collect(), resp3);
                V::Arr(vec![host, V::Int(port), s("id"), metadata])
            },
        );
        let entry =
            (range(), prop::collection::vec(node, 1..3)).prop_map(|((start, end), nodes)| {
                V::Arr(
                    [V::Int(start), V::Int(end)]
                        .into_iter()
                        .chain(nodes)
                        .collect(),
                )
            });
        prop::collection::vec(entry, 0..5).prop_map(V::Arr)
    }

    /// The same checks as `parse_shards`/`parse_slots` above, on bytes.
    fn parse_all(bytes: &[u8]) {
        let Ok(Decoded::Frame { frame, .. }) = decode(bytes, &Limits::REDIS) else {
            return;
        };
        let mut map = Topology::<8, 8>::new();
        for tls in [false, true] {
            match map.parse_shards(&frame, tls, "seed") {
                Ok(()) => check(&map),
                Err(_) => assert!(map.nodes().is_empty() && map.ranges().is_empty()),
            }
        }
        match map.parse_slots(&frame, "seed") {
            Ok(()) => check(&map),
            Err(_) => assert!(map.nodes().is_empty() && map.ranges().is_empty()),
        }
    }

    proptest! {
        #[test]
        fn any_reply_parses_or_fails_cleanly(
            reply in prop_oneof![any_reply(), shards_reply(), slots_reply()],
        ) {
            let mut bytes = List::new();
            encode(&reply, &mut bytes);
            parse_all(&bytes);
        }

        #[test]
        fn damaged_captures_parse_or_fail_cleanly(
            fixture in prop::sample::select(&[
                SHARDS_RESP2, SHARDS_RESP3, SLOTS_RESP2, SLOTS_RESP3, SHARDS_FAILOVER_RESP2,
            ][..]),
            damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = fixture.to_vec();
            for (at, byte) in damage {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            parse_all(&bytes);
        }

        #[test]
        fn moved_keeps_the_map_sound(
            moves in prop::collection::vec(
                (prop_oneof![0u16..40, 5455u16..5467, 16370u16..16384], 17100u16..17110),
                0..40,
            ),
        ) {
            let mut map = Topology::<8, 24>::new();
            map.parse_shards(&frame(SHARDS_RESP2), false, "h").unwrap();
            let port = |map: &Topology<8, 24>, slot| {
                map.primary_of(slot).map(|at| map.nodes()[usize::from(at)].addr.port)
            };
            let mut expected: List<Option<u16>> = (0..=LAST_SLOT).map(|s| port(&map, s)).collect();
            for (slot, to) in moves {
                let before = map.clone();
                match map.assign(slot, "127.0.0.1", to) {
                    Ok(at) => {
                        prop_assert_eq!(map.nodes()[usize::from(at)].addr.port, to);
                        expected[usize::from(slot)] = Some(to);
                    }
                    Err(e) => {
                        prop_assert_eq!(e, TopologyError::Full { nodes: 8, ranges: 24 });
                        prop_assert_eq!((map.nodes(), map.ranges()), (before.nodes(), before.ranges()));
                    }
                }
                check(&map);
            }
            for slot in 0..=LAST_SLOT {
                prop_assert_eq!(port(&map, slot), expected[usize::from(slot)], "slot {}", slot);
            }
        }
    }
}

//! The fallback cache: a bounded in-memory LRU (by entries and by bytes,
//! TTL honoured) that answers reads while Redis is unavailable.
//!
//! Which commands it answers, and when, is not decided here: the core
//! resolves a read it may answer as `Outcome::Fallback(reason)` (today only
//! GET, under the default offline policy), and the driver looks the key up.
//! A hit is answered marked [`crate::Source::Fallback`]; a miss fails with
//! the reason Redis is unavailable, unless the application opted into the
//! seed's cache-aside reading ([`FallbackConfig::miss_reads_as_absent`]).
//!
//! How it is fed: successful SET, GET, DEL and EXPIRE answered by Redis
//! update it (write-through). Nothing is ever written to it that Redis did
//! not acknowledge, and nothing in it is ever written back to Redis: a write
//! during an outage fails with `ConnectionDown` (not applied).

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

/// Sizes and lifetimes of the fallback cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallbackConfig {
    /// Most entries kept; the least recently used go first.
    pub max_entries: usize,
    /// Most bytes kept (keys + values + 64 bytes of overhead per entry).
    pub max_bytes: usize,
    /// Lifetime of a value learned from a GET (its Redis TTL is unknown).
    pub learned_ttl: Duration,
    /// Whether successful Redis commands update the cache (write-through).
    /// Off, the cache stays empty and outage reads fail with the reason.
    pub write_through: bool,
    /// During an outage, a GET of a key the cache does not hold answers
    /// `None` (marked `Source::Fallback`) instead of failing with
    /// `ConnectionDown`. The seed's cache-aside behaviour; off by default
    /// because "not in my cache" is not "not in Redis".
    pub miss_reads_as_absent: bool,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            max_entries: 10_000,
            max_bytes: 64 * 1024 * 1024,
            learned_ttl: Duration::from_secs(300),
            write_through: true,
            miss_reads_as_absent: false,
        }
    }
}

/// When an entry given `ttl` at `now` expires; `None` (never) when that is
/// past what `Instant` can hold (`ex(u64::MAX)`, `expire(Duration::MAX)`,
/// a `learned_ttl` of `Duration::MAX`): such a TTL outlives the process.
pub(crate) fn expiry_after(now: Instant, ttl: Duration) -> Option<Instant> {
    now.checked_add(ttl)
}

const ENTRY_OVERHEAD: usize = 64;
const NIL: usize = usize::MAX;
/// A freed slot keeps its buffers for the next insert, up to this size.
const KEEP_CAPACITY: usize = 4096;

struct Node {
    key: Vec<u8>,
    value: Vec<u8>,
    /// The key's hash, so that evicting never hashes again.
    hash: u64,
    expires: Option<Instant>,
    prev: usize,
    next: usize,
}

/// LRU with O(1) operations: a hash table of slot indices into a slab of
/// nodes linked from most (`head`) to least (`tail`) recently used. Each
/// operation hashes the key once (SipHash, randomly keyed: keys may come from
/// users), keys are stored once, and a slot freed by eviction is reused with
/// its buffers, so a full cache inserts without allocating.
pub(crate) struct Lru {
    table: hashbrown::HashTable<usize>,
    hasher: RandomState,
    nodes: Vec<Node>,
    free: Vec<usize>,
    head: usize,
    tail: usize,
    bytes: usize,
    len: usize,
    max_entries: usize,
    max_bytes: usize,
    pub(crate) evictions: u64,
}

impl Lru {
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Lru {
        Lru {
            table: hashbrown::HashTable::new(),
            hasher: RandomState::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
            len: 0,
            max_entries,
            max_bytes,
            evictions: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    fn cost(key: &[u8], value: &[u8]) -> usize {
        key.len() + value.len() + ENTRY_OVERHEAD
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        let nodes = &self.nodes;
        self.table.find(hash, |&i| nodes[i].key == key).copied()
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.nodes[i].prev, self.nodes[i].next);
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next].prev = prev;
        }
    }

    fn push_front(&mut self, i: usize) {
        self.nodes[i].prev = NIL;
        self.nodes[i].next = self.head;
        if self.head != NIL {
            self.nodes[self.head].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    fn remove_index(&mut self, i: usize) {
        self.unlink(i);
        let hash = self.nodes[i].hash;
        if let Ok(entry) = self.table.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        let node = &mut self.nodes[i];
        self.bytes -= Lru::cost(&node.key, &node.value);
        self.len -= 1;
        for buf in [&mut node.key, &mut node.value] {
            buf.clear();
            if buf.capacity() > KEEP_CAPACITY {
                *buf = Vec::new();
            }
        }
        self.free.push(i);
    }

    /// The live value of `key`, marking it most recently used; an expired
    /// entry is removed and reads as absent.
    pub(crate) fn get(&mut self, key: &[u8], now: Instant) -> Option<&[u8]> {
        let i = self.find(self.hasher.hash_one(key), key)?;
        if self.nodes[i].expires.is_some_and(|e| e <= now) {
            self.remove_index(i);
            return None;
        }
        self.unlink(i);
        self.push_front(i);
        Some(&self.nodes[i].value)
    }

    #[cfg(test)]
    pub(crate) fn contains(&mut self, key: &[u8], now: Instant) -> bool {
        self.get(key, now).is_some()
    }

    pub(crate) fn remove(&mut self, key: &[u8], now: Instant) -> bool {
        match self.find(self.hasher.hash_one(key), key) {
            Some(i) => {
                let live = self.nodes[i].expires.is_none_or(|e| e > now);
                self.remove_index(i);
                live
            }
            None => false,
        }
    }

    /// Sets the expiry of a live entry (`None`: never); false if there is
    /// none.
    pub(crate) fn set_expiry(
        &mut self,
        key: &[u8],
        expires: Option<Instant>,
        now: Instant,
    ) -> bool {
        if self.get(key, now).is_none() {
            return false;
        }
        // `get` just made it the head.
        if self.head != NIL {
            self.nodes[self.head].expires = expires;
        }
        true
    }

    /// Inserts or replaces, evicting least recently used entries until both
    /// bounds hold. A value larger than the whole cache is not kept (and any
    /// older value of the key is dropped, never served stale).
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8], expires: Option<Instant>) {
        let cost = Lru::cost(key, value);
        let hash = self.hasher.hash_one(key);
        let fits = cost <= self.max_bytes && self.max_entries > 0;
        if let Some(i) = self.find(hash, key) {
            if !fits {
                self.remove_index(i);
                return;
            }
            let node = &mut self.nodes[i];
            self.bytes = self.bytes - Lru::cost(&node.key, &node.value) + cost;
            node.value.clear();
            node.value.extend_from_slice(value);
            node.expires = expires;
            self.unlink(i);
            self.push_front(i);
            self.evict();
            return;
        }
        if !fits {
            return;
        }
        // Make room first, so the slot just freed (and its buffers) is reused.
        // Bounded: each round removes one entry.
        while (self.len + 1 > self.max_entries || self.bytes + cost > self.max_bytes)
            && self.tail != NIL
        {
            let t = self.tail;
            self.remove_index(t);
            self.evictions += 1;
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.nodes.push(Node {
                    key: Vec::new(),
                    value: Vec::new(),
                    hash: 0,
                    expires: None,
                    prev: NIL,
                    next: NIL,
                });
                self.nodes.len() - 1
            }
        };
        let node = &mut self.nodes[i];
        node.key.extend_from_slice(key);
        node.value.extend_from_slice(value);
        node.hash = hash;
        node.expires = expires;
        let nodes = &self.nodes;
        self.table.insert_unique(hash, i, |&j| nodes[j].hash);
        self.len += 1;
        self.bytes += cost;
        self.push_front(i);
    }

    /// After a value grew in place: evicts from the tail, never the entry
    /// just written (its own cost fits the bound).
    fn evict(&mut self) {
        while (self.len > self.max_entries || self.bytes > self.max_bytes)
            && self.tail != NIL
            && self.tail != self.head
        {
            let t = self.tail;
            self.remove_index(t);
            self.evictions += 1;
        }
    }
}

/// What a fallback read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    Hit(Vec<u8>),
    Miss,
}

/// The cache and its configuration, under one lock.
pub(crate) struct FallbackState {
    pub(crate) cache: Lru,
}

impl FallbackState {
    pub(crate) fn new(config: FallbackConfig) -> FallbackState {
        FallbackState {
            cache: Lru::new(config.max_entries, config.max_bytes),
        }
    }

    pub(crate) fn read(&mut self, key: &[u8], now: Instant) -> Lookup {
        match self.cache.get(key, now) {
            Some(v) => Lookup::Hit(v.to_vec()),
            None => Lookup::Miss,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn evicts_least_recently_used_by_count() {
        let mut lru = Lru::new(2, 1 << 20);
        let now = t0();
        lru.put(b"a", b"1", None);
        lru.put(b"b", b"2", None);
        assert_eq!(lru.get(b"a", now), Some(&b"1"[..])); // a is now most recent
        lru.put(b"c", b"3", None);
        assert_eq!(lru.get(b"b", now), None, "b was least recently used");
        assert_eq!(lru.get(b"a", now), Some(&b"1"[..]));
        assert_eq!(lru.get(b"c", now), Some(&b"3"[..]));
        assert_eq!(lru.evictions, 1);
        assert_eq!(lru.len(), 2);
    }

    #[test]
    fn evicts_by_bytes_and_refuses_oversized_values() {
        let mut lru = Lru::new(100, 3 * (ENTRY_OVERHEAD + 11));
        let now = t0();
        for k in [b"k1", b"k2", b"k3", b"k4"] {
            lru.put(k, b"123456789", None);
        }
        assert_eq!(lru.len(), 3);
        assert!(lru.bytes() <= 3 * (ENTRY_OVERHEAD + 11));
        assert!(!lru.contains(b"k1", now));
        lru.put(b"big", &vec![0u8; 10_000], None);
        assert!(!lru.contains(b"big", now));
        // Replacing a key with an oversized value drops the old value.
        lru.put(b"k4", &vec![0u8; 10_000], None);
        assert!(!lru.contains(b"k4", now));
    }

    #[test]
    fn honours_ttl() {
        let mut lru = Lru::new(10, 1 << 20);
        let now = t0();
        lru.put(b"a", b"1", Some(now + Duration::from_secs(1)));
        assert!(lru.contains(b"a", now));
        assert!(!lru.contains(b"a", now + Duration::from_secs(2)));
        assert_eq!(lru.len(), 0, "expired entries are removed when seen");
    }

    #[test]
    fn a_ttl_past_what_instant_holds_never_expires() {
        let now = t0();
        assert_eq!(expiry_after(now, Duration::MAX), None);
        assert_eq!(expiry_after(now, Duration::from_secs(u64::MAX)), None);
        let hour = Duration::from_secs(3600);
        assert_eq!(expiry_after(now, hour), Some(now + hour));
        let mut lru = Lru::new(10, 1 << 20);
        lru.put(b"a", b"1", expiry_after(now, Duration::MAX));
        assert!(lru.contains(b"a", now + Duration::from_secs(1 << 40)));
        assert!(lru.set_expiry(b"a", Some(now + hour), now));
        assert!(!lru.contains(b"a", now + 2 * hour));
        lru.put(b"b", b"2", Some(now + hour));
        assert!(lru.set_expiry(b"b", expiry_after(now, Duration::MAX), now));
        assert!(lru.contains(b"b", now + 2 * hour));
    }

    #[test]
    fn slots_are_reused_after_removal() {
        let mut lru = Lru::new(10, 1 << 20);
        let now = t0();
        for round in 0..100u32 {
            let key = round.to_be_bytes();
            lru.put(&key, b"v", None);
            assert!(lru.remove(&key, now));
        }
        assert!(lru.nodes.len() <= 1, "slab grew to {}", lru.nodes.len());
        // A full cache reuses the evicted slot.
        let mut full = Lru::new(2, 1 << 20);
        for round in 0..100u32 {
            full.put(&round.to_be_bytes(), b"value", None);
        }
        assert_eq!(full.nodes.len(), 2);
        assert_eq!(full.len(), 2);
        assert_eq!(full.evictions, 98);
        assert!(full.contains(&99u32.to_be_bytes(), t0()));
        assert!(full.contains(&98u32.to_be_bytes(), t0()));
    }

    /// Random operations against a plain model (a Vec in recency order):
    /// the linked list, the table and the byte count never disagree.
    #[test]
    fn matches_a_simple_model_under_random_operations() {
        let now = t0();
        let mut lru = Lru::new(8, 8 * (ENTRY_OVERHEAD + 3));
        let mut model: Vec<(Vec<u8>, Vec<u8>)> = Vec::new(); // most recent first
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for step in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let key = vec![b'k', (seed % 13) as u8];
            let value = vec![b'v'; (seed >> 8) as usize % 2 + 1];
            match (seed >> 16) % 3 {
                0 => {
                    lru.put(&key, &value, None);
                    model.retain(|(k, _)| *k != key);
                    model.insert(0, (key, value));
                    while model.len() > 8
                        || model.iter().map(|(k, v)| Lru::cost(k, v)).sum::<usize>()
                            > 8 * (ENTRY_OVERHEAD + 3)
                    {
                        model.pop();
                    }
                }
                1 => {
                    let got = lru.get(&key, now).map(<[u8]>::to_vec);
                    let pos = model.iter().position(|(k, _)| *k == key);
                    assert_eq!(got, pos.map(|p| model[p].1.clone()), "step {step}");
                    if let Some(p) = pos {
                        let entry = model.remove(p);
                        model.insert(0, entry);
                    }
                }
                _ => {
                    let removed = lru.remove(&key, now);
                    let before = model.len();
                    model.retain(|(k, _)| *k != key);
                    assert_eq!(removed, model.len() < before, "step {step}");
                }
            }
            assert_eq!(lru.len(), model.len(), "step {step}");
            let bytes: usize = model.iter().map(|(k, v)| Lru::cost(k, v)).sum();
            assert_eq!(lru.bytes(), bytes, "step {step}");
        }
    }
}

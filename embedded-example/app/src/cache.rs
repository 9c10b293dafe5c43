//! The fallback cache: a handful of recently read or written keys, in fixed
//! memory, least recently used out first.

use heapless::{String, Vec};

struct Entry<const K: usize, const V: usize> {
    key: String<K>,
    value: Vec<u8, V>,
    used: u32,
}

/// At most `N` keys of at most `K` bytes, values of at most `V` bytes. Keys or
/// values that do not fit are not cached.
pub struct FallbackCache<const N: usize, const K: usize, const V: usize> {
    entries: Vec<Entry<K, V>, N>,
    clock: u32,
}

impl<const N: usize, const K: usize, const V: usize> Default for FallbackCache<N, K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const K: usize, const V: usize> FallbackCache<N, K, V> {
    pub const fn new() -> Self {
        FallbackCache {
            entries: Vec::new(),
            clock: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn tick(&mut self) -> u32 {
        self.clock = self.clock.wrapping_add(1);
        self.clock
    }

    /// Stores `value` under `key`; false when either is too long to cache.
    pub fn put(&mut self, key: &str, value: &[u8]) -> bool {
        let Ok(value) = Vec::from_slice(value) else {
            self.remove(key);
            return false;
        };
        let used = self.tick();
        if let Some(entry) = self.entries.iter_mut().find(|e| e.key == key) {
            entry.value = value;
            entry.used = used;
            return true;
        }
        let Ok(key) = String::try_from(key) else {
            return false;
        };
        if self.entries.is_full()
            && let Some(oldest) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].used)
        {
            self.entries.swap_remove(oldest);
        }
        // Room was made above (N > 0) or there was room already.
        self.entries.push(Entry { key, value, used }).is_ok()
    }

    pub fn get(&mut self, key: &str) -> Option<&[u8]> {
        let used = self.tick();
        let entry = self.entries.iter_mut().find(|e| e.key == key)?;
        entry.used = used;
        Some(&entry.value)
    }

    pub fn remove(&mut self, key: &str) {
        if let Some(i) = self.entries.iter().position(|e| e.key == key) {
            self.entries.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first() {
        let mut cache: FallbackCache<2, 8, 8> = FallbackCache::new();
        assert!(cache.put("a", b"1"));
        assert!(cache.put("b", b"2"));
        assert_eq!(cache.get("a"), Some(&b"1"[..]));
        assert!(cache.put("c", b"3"));
        assert_eq!(cache.get("b"), None, "b was the least recently used");
        assert_eq!(cache.get("a"), Some(&b"1"[..]));
        assert_eq!(cache.get("c"), Some(&b"3"[..]));
    }

    #[test]
    fn too_long_is_not_cached_and_drops_the_stale_value() {
        let mut cache: FallbackCache<2, 4, 4> = FallbackCache::new();
        assert!(cache.put("k", b"old"));
        assert!(!cache.put("k", b"too long"));
        assert_eq!(cache.get("k"), None);
        assert!(!cache.put("long key", b"v"));
        assert!(cache.is_empty());
    }
}

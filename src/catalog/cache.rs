//! `DirectoryCache`: a bounded in-memory copy of directory lookups, including "no entry".
//!
//! Owns the cache and its eviction. Eviction is CLOCK (second chance) as refined by SIEVE: a
//! hit only sets a bit (no list reordering under the lock, no allocation), a full cache sweeps
//! a hand over the slots clearing bits until it finds an entry not hit since the last sweep,
//! and new entries start with the bit clear, so a burst of one-time keys evicts itself
//! instead of the keys that are used again. That approximates least-recently-used at O(1)
//! amortised cost per operation.
//!
//! Freshness is not this file's job: the listener (`listener.rs`) calls `invalidate`/`clear`.
//! To close the race between a catalog read and a concurrent invalidation, readers take a
//! [`CacheTicket`] before reading and insert with [`DirectoryCache::insert_if_unchanged`],
//! which refuses when any invalidation happened in between. All methods are sync and hold a
//! `std::sync::Mutex` only for their own duration, never across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A cloneable handle; clones share one cache.
#[derive(Clone, Debug)]
pub struct DirectoryCache {
    inner: Arc<Mutex<State>>,
}

/// The invalidation count when a reader started; see [`DirectoryCache::ticket`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheTicket(u64);

#[derive(Debug)]
struct State {
    capacity: usize,
    /// scheme -> key -> slot. Nested so a lookup by `&str` needs no allocation.
    index: HashMap<String, HashMap<String, usize>>,
    slots: Vec<Option<Slot>>,
    /// Indices of `None` slots, reused before growing or evicting.
    free: Vec<usize>,
    /// The clock hand: the next slot the eviction sweep looks at.
    hand: usize,
    /// Bumped by every invalidation and clear.
    epoch: u64,
}

#[derive(Debug)]
struct Slot {
    scheme: String,
    key: String,
    value: Option<String>,
    referenced: bool,
}

impl DirectoryCache {
    /// A cache of at most `capacity` entries (0 caches nothing).
    pub fn new(capacity: usize) -> Self {
        DirectoryCache {
            inner: Arc::new(Mutex::new(State {
                capacity,
                index: HashMap::new(),
                slots: Vec::new(),
                free: Vec::new(),
                hand: 0,
                epoch: 0,
            })),
        }
    }

    /// `None`: not cached. `Some(None)`: cached "no entry" (route by the fallback scheme).
    /// `Some(Some(shard))`: the key is pinned to `shard`.
    pub fn get(&self, scheme: &str, key: &str) -> Option<Option<String>> {
        let mut state = self.lock();
        let i = *state.index.get(scheme)?.get(key)?;
        let slot = state.slots.get_mut(i)?.as_mut()?;
        slot.referenced = true;
        Some(slot.value.clone())
    }

    /// Cache `value` for `key` of `scheme` (`None` = "no entry"), evicting if full.
    pub fn insert(&self, scheme: &str, key: &str, value: Option<String>) {
        self.lock().insert(scheme, key, value);
    }

    /// Take before reading the catalog on a miss; pass to [`Self::insert_if_unchanged`].
    pub fn ticket(&self) -> CacheTicket {
        CacheTicket(self.lock().epoch)
    }

    /// Insert unless something was invalidated since `ticket` was taken (then the value read
    /// may already be stale, and not caching it costs only one more catalog read). Returns
    /// whether it was inserted.
    pub fn insert_if_unchanged(
        &self,
        ticket: CacheTicket,
        scheme: &str,
        key: &str,
        value: Option<String>,
    ) -> bool {
        let mut state = self.lock();
        if state.epoch != ticket.0 {
            return false;
        }
        state.insert(scheme, key, value);
        true
    }

    /// Forget `key` of `scheme` (cached or not: the epoch moves either way, which is what
    /// makes a concurrent reader's ticket stale).
    pub fn invalidate(&self, scheme: &str, key: &str) {
        let mut state = self.lock();
        state.epoch += 1;
        let Some(keys) = state.index.get_mut(scheme) else {
            return;
        };
        let Some(i) = keys.remove(key) else {
            return;
        };
        if keys.is_empty() {
            state.index.remove(scheme);
        }
        state.release(i);
    }

    /// Forget every key of `scheme`.
    pub fn invalidate_scheme(&self, scheme: &str) {
        let mut state = self.lock();
        state.epoch += 1;
        if let Some(keys) = state.index.remove(scheme) {
            for (_, i) in keys {
                state.release(i);
            }
        }
    }

    /// Forget everything.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.epoch += 1;
        state.index.clear();
        state.slots.clear();
        state.free.clear();
        state.hand = 0;
    }

    pub fn len(&self) -> usize {
        let state = self.lock();
        state.slots.len() - state.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }

    /// Every method leaves the state consistent before it could panic, so a poisoned lock
    /// (a panic elsewhere while holding it) still guards a usable cache.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn insert(&mut self, scheme: &str, key: &str, value: Option<String>) {
        if let Some(&i) = self.index.get(scheme).and_then(|keys| keys.get(key)) {
            if let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) {
                slot.value = value;
                slot.referenced = true;
                return;
            }
        }
        if self.capacity == 0 {
            return;
        }
        let slot = Slot {
            scheme: scheme.to_owned(),
            key: key.to_owned(),
            value,
            referenced: false,
        };
        let i = if let Some(i) = self.free.pop() {
            i
        } else if self.slots.len() < self.capacity {
            self.slots.push(None);
            self.slots.len() - 1
        } else {
            self.evict()
        };
        self.slots[i] = Some(slot);
        self.index
            .entry(scheme.to_owned())
            .or_default()
            .insert(key.to_owned(), i);
    }

    /// Sweep the hand to a slot not referenced since the last sweep, empty it and return its
    /// index. Terminates within two turns: the first clears every bit it passes.
    fn evict(&mut self) -> usize {
        loop {
            let i = self.hand % self.slots.len();
            self.hand = (i + 1) % self.slots.len();
            match &mut self.slots[i] {
                Some(slot) if slot.referenced => slot.referenced = false,
                Some(slot) => {
                    if let Some(keys) = self.index.get_mut(&slot.scheme) {
                        keys.remove(&slot.key);
                        if keys.is_empty() {
                            self.index.remove(&slot.scheme);
                        }
                    }
                    self.slots[i] = None;
                    return i;
                }
                None => return i,
            }
        }
    }

    fn release(&mut self, i: usize) {
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = None;
            self.free.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn miss_hit_and_negative_entries() {
        let c = DirectoryCache::new(4);
        assert_eq!(c.get("by_org", "acme"), None);
        c.insert("by_org", "acme", shard("s1"));
        c.insert("by_org", "none", None);
        assert_eq!(c.get("by_org", "acme"), Some(shard("s1")));
        assert_eq!(c.get("by_org", "none"), Some(None));
        assert_eq!(c.get("other", "acme"), None);
        c.insert("by_org", "acme", shard("s2"));
        assert_eq!(c.get("by_org", "acme"), Some(shard("s2")));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn invalidate_and_clear() {
        let c = DirectoryCache::new(4);
        c.insert("a", "1", shard("s0"));
        c.insert("a", "2", shard("s0"));
        c.insert("b", "1", shard("s1"));
        c.invalidate("a", "1");
        assert_eq!(c.get("a", "1"), None);
        assert_eq!(c.get("a", "2"), Some(shard("s0")));
        assert_eq!(c.len(), 2);
        c.invalidate_scheme("a");
        assert_eq!(c.get("a", "2"), None);
        assert_eq!(c.get("b", "1"), Some(shard("s1")));
        c.clear();
        assert!(c.is_empty());
        // Freed slots are reused, and the cache still works after a clear.
        c.insert("a", "1", None);
        assert_eq!(c.get("a", "1"), Some(None));
    }

    #[test]
    fn eviction_keeps_len_within_capacity() {
        let c = DirectoryCache::new(8);
        for i in 0..1000 {
            c.insert("s", &i.to_string(), shard("s0"));
            if i % 3 == 0 {
                c.invalidate("s", &(i / 2).to_string());
            }
            assert!(c.len() <= 8, "len {} after {i}", c.len());
        }
        assert_eq!(c.len(), 8);
        // The most recent key survives (it was placed in the slot just freed).
        assert_eq!(c.get("s", "999"), Some(shard("s0")));
    }

    #[test]
    fn entries_hit_again_survive_a_stream_of_one_time_keys() {
        let c = DirectoryCache::new(4);
        c.insert("s", "hot", shard("s1"));
        for i in 0..100 {
            assert_eq!(c.get("s", "hot"), Some(shard("s1")), "evicted at {i}");
            c.insert("s", &format!("cold{i}"), None);
        }
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let c = DirectoryCache::new(0);
        c.insert("s", "k", shard("s0"));
        assert_eq!(c.get("s", "k"), None);
        assert!(c.is_empty());
    }

    #[test]
    fn a_ticket_goes_stale_on_any_invalidation() {
        let c = DirectoryCache::new(4);
        let t = c.ticket();
        assert!(c.insert_if_unchanged(t, "s", "a", None));
        let t = c.ticket();
        // Invalidating a key that is not cached still makes the ticket stale: the reader may
        // have read the value before that change committed.
        c.invalidate("s", "b");
        assert!(!c.insert_if_unchanged(t, "s", "b", shard("old")));
        assert_eq!(c.get("s", "b"), None);
        let t = c.ticket();
        c.clear();
        assert!(!c.insert_if_unchanged(t, "s", "a", None));
    }

    #[test]
    fn clones_share_the_cache() {
        let c = DirectoryCache::new(2);
        let d = c.clone();
        c.insert("s", "k", shard("s0"));
        assert_eq!(d.get("s", "k"), Some(shard("s0")));
        assert_eq!(d.capacity(), 2);
    }
}

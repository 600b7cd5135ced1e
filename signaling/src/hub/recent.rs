//! A map that holds at most a fixed number of entries and forgets the least recently written
//! one first: the hub's bounded memory of things keyed by user ids a client chooses (when users
//! were last seen, how often a user was invited).
//!
//! Lifecycle of an entry: [`Recent::insert`] writes it and makes it the newest; it stays until
//! it is [`Recent::remove`]d, popped as the oldest ([`Recent::pop_oldest_if`]), or evicted by
//! an insert that would exceed the capacity. Reads do not refresh an entry: recency is the time
//! of the last write, which is what both users of this map mean by "recent".

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// A bounded map with eviction of the oldest write; see the module docs.
#[derive(Debug)]
pub struct Recent<K, V> {
    capacity: usize,
    /// Each value with the sequence number of its last write.
    entries: HashMap<K, (V, u64)>,
    /// Keys by the sequence number of their last write, oldest first.
    order: BTreeMap<u64, K>,
    next: u64,
}

impl<K: Clone + Eq + Hash, V> Recent<K, V> {
    /// An empty map that holds at most `capacity` entries (0: it never holds any).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
        }
    }

    /// Writes `value` for `key` as the newest entry, evicting the oldest one when the map is
    /// full.
    pub fn insert(&mut self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        if let Some((_, seq)) = self.entries.remove(&key) {
            self.order.remove(&seq);
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, key.clone());
        self.entries.insert(key, (value, seq));
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(v, _)| v)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let (value, seq) = self.entries.remove(key)?;
        self.order.remove(&seq);
        Some(value)
    }

    /// Removes the oldest entry if `stale` says so, and returns whether it did.
    pub fn pop_oldest_if(&mut self, stale: impl FnOnce(&V) -> bool) -> bool {
        let Some((&seq, key)) = self.order.first_key_value() else {
            return false;
        };
        if !self.entries.get(key).is_some_and(|(v, _)| stale(v)) {
            return false;
        }
        let key = self.order.remove(&seq).expect("first key exists");
        self.entries.remove(&key);
        true
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_capacity_and_forgets_the_oldest_write() {
        let mut m = Recent::new(3);
        for i in 0..1000u32 {
            m.insert(i, i * 10);
            assert!(m.len() <= 3);
        }
        assert_eq!(m.len(), 3);
        assert_eq!(
            (m.get(&996), m.get(&997), m.get(&999)),
            (None, Some(&9970), Some(&9990))
        );
        // Writing an entry again makes it the newest: 997 outlives 998 now.
        m.insert(997, 1);
        m.insert(5000, 2);
        assert_eq!((m.get(&997), m.get(&998)), (Some(&1), None));
        assert_eq!(m.order.len(), m.entries.len(), "no stale order entries");
        assert_eq!(m.remove(&997), Some(1));
        assert_eq!((m.len(), m.order.len()), (2, 2));
    }

    #[test]
    fn pops_the_oldest_only_when_it_is_stale() {
        let mut m = Recent::new(10);
        m.insert("a", 1);
        m.insert("b", 5);
        assert!(
            !m.pop_oldest_if(|v| *v > 3),
            "a is the oldest and not stale"
        );
        assert!(m.pop_oldest_if(|v| *v < 3));
        assert_eq!((m.get(&"a"), m.len()), (None, 1));
        assert!(m.pop_oldest_if(|_| true));
        assert!(!m.pop_oldest_if(|_| true), "empty");
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let mut m = Recent::new(0);
        m.insert(1, 1);
        assert_eq!((m.len(), m.get(&1)), (0, None));
    }
}

//! Per-key state split over shards, each behind its own lock, so that the work of a
//! decision about one agent never waits for the work about another (the guardrails'
//! per-agent state, governance's usage records).
//!
//! A key always lands in the same shard (a hash of the key, fixed for the process); an
//! operation on one key takes that shard's lock only. Operations over every key (flushes,
//! sweeps) take the shards one at a time, never two at once, so they cannot deadlock
//! with each other or with single-key operations.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;

/// How many shards: a power of two well above the cores a server has.
const SHARDS: usize = 64;

/// A map from `K` to `V` over [`SHARDS`] locks.
pub(crate) struct Shards<K, V> {
    shards: Box<[Mutex<HashMap<K, V>>]>,
    hasher: RandomState,
}

impl<K: Hash + Eq, V> Shards<K, V> {
    /// Shards holding `entries`.
    pub(crate) fn from_entries(entries: impl IntoIterator<Item = (K, V)>) -> Self {
        let shards: Box<[Mutex<HashMap<K, V>>]> = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        let this = Shards { shards, hasher: RandomState::new() };
        for (k, v) in entries {
            if let Some(mut map) = this.shard(&k).and_then(|shard| shard.lock().ok()) {
                map.insert(k, v);
            }
        }
        this
    }

    fn shard(&self, key: &K) -> Option<&Mutex<HashMap<K, V>>> {
        let index = usize::try_from(self.hasher.hash_one(key) % SHARDS as u64).unwrap_or(0);
        self.shards.get(index)
    }

    /// Runs `f` on the shard that holds `key` (or would), under that shard's lock only;
    /// `None` when the lock is poisoned (every shard exists: the index is taken modulo
    /// their number).
    pub(crate) fn with<R>(&self, key: &K, f: impl FnOnce(&mut HashMap<K, V>) -> R) -> Option<R> {
        let mut map = self.shard(key)?.lock().ok()?;
        Some(f(&mut map))
    }

    /// Runs `f` on every shard in turn, one lock at a time (poisoned shards are skipped).
    pub(crate) fn for_each_shard(&self, mut f: impl FnMut(&mut HashMap<K, V>)) {
        for shard in self.shards.iter() {
            if let Ok(mut map) = shard.lock() {
                f(&mut map);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Shards;

    /// Many threads updating many keys at once, some keys shared between threads: every
    /// update lands once, and a walk over every shard sees every key once.
    #[test]
    fn concurrent_updates_of_many_keys_all_land() {
        let shards: Shards<u32, u64> = Shards::from_entries([(7, 100)]);
        std::thread::scope(|s| {
            for t in 0..8u32 {
                let shards = &shards;
                s.spawn(move || {
                    for i in 0..5_000u32 {
                        let key = (i * 31 + t) % 500;
                        shards.with(&key, |m| *m.entry(key).or_default() += 1);
                    }
                });
            }
        });
        let (mut keys, mut total) = (0u64, 0u64);
        shards.for_each_shard(|m| {
            keys += m.len() as u64;
            total += m.values().sum::<u64>();
        });
        assert_eq!(keys, 500);
        assert_eq!(total, 8 * 5_000 + 100);
        assert_eq!(shards.with(&7, |m| m.get(&7).copied()).flatten().map(|n| n >= 100), Some(true));
        assert_eq!(shards.with(&9_999, |m| m.get(&9_999).copied()), Some(None));
    }
}

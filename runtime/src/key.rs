//! Keys and key groups.
//!
//! A key's *key group* decides which operator instance owns it and where its state lives, so
//! it must be the same in every process, on every machine and with every Rust version — and
//! across savepoints. weir never uses `std`'s `Hash` for it. Instead:
//!
//! 1. the key is written as **canonical bytes** ([`Key::write_key_bytes`]):
//!    integers as fixed-width little-endian (`usize`/`isize` as 8 bytes), `bool` as one byte
//!    0/1, `char` as its `u32`, strings and byte vectors as a `u32` little-endian length
//!    followed by the bytes, `Option` as a `0` byte or a `1` byte and the value, tuples and
//!    arrays as their elements in order, `()` as nothing;
//! 2. the bytes are hashed with **XXH3-64, seed 0**;
//! 3. `key group = hash % max_parallelism`, and the instance is
//!    `key_group * parallelism / max_parallelism` (Flink's contiguous ranges).
//!
//! Implement [`Key`] for your own key type by writing its fields in a fixed order.

use crate::data::Data;
use std::hash::BuildHasher;
use xxhash_rust::xxh3::xxh3_64;

/// A key of a keyed stream: the result of the `key_by` function.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a key of a keyed stream",
    label = "`{Self}` is not a weir `Key`",
    note = "key by integers, `String`, `bool`, `char`, `Option`s or tuples of them, or implement `weir::prelude::Key` (its canonical bytes decide the key group)"
)]
pub trait Key: Data + Eq + std::hash::Hash {
    /// Append the canonical bytes of the key (see the module documentation).
    fn write_key_bytes(&self, out: &mut Vec<u8>);

    /// XXH3-64 (seed 0) of the canonical bytes.
    fn key_hash(&self) -> u64 {
        let mut buf = Vec::with_capacity(32);
        self.write_key_bytes(&mut buf);
        xxh3_64(&buf)
    }
}

macro_rules! int_key {
    ($($t:ty => $as:ty),*) => {$(
        impl Key for $t {
            #[inline]
            fn write_key_bytes(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&(*self as $as).to_le_bytes());
            }
            #[inline]
            fn key_hash(&self) -> u64 {
                xxh3_64(&(*self as $as).to_le_bytes())
            }
        }
    )*};
}

int_key!(u8 => u8, u16 => u16, u32 => u32, u64 => u64, u128 => u128, usize => u64,
         i8 => i8, i16 => i16, i32 => i32, i64 => i64, i128 => i128, isize => i64);

impl Key for bool {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl Key for char {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&u32::from(*self).to_le_bytes());
    }
}

impl Key for () {
    fn write_key_bytes(&self, _out: &mut Vec<u8>) {}
}

fn write_len_prefixed(bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

impl Key for String {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        write_len_prefixed(self.as_bytes(), out);
    }
}

impl Key for Vec<u8> {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        write_len_prefixed(self, out);
    }
}

impl<K: Key> Key for Option<K> {
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(k) => {
                out.push(1);
                k.write_key_bytes(out);
            }
        }
    }
}

impl<K: Key, const N: usize> Key for [K; N]
where
    [K; N]: Data,
{
    fn write_key_bytes(&self, out: &mut Vec<u8>) {
        for k in self {
            k.write_key_bytes(out);
        }
    }
}

macro_rules! tuple_key {
    ($($name:ident)+) => {
        impl<$($name: Key),+> Key for ($($name,)+) {
            #[allow(non_snake_case)]
            fn write_key_bytes(&self, out: &mut Vec<u8>) {
                let ($($name,)+) = self;
                $($name.write_key_bytes(out);)+
            }
        }
    };
}

tuple_key!(A);
tuple_key!(A B);
tuple_key!(A B C);
tuple_key!(A B C D);
tuple_key!(A B C D E);
tuple_key!(A B C D E F);

/// A map from keys to operator state inside one worker. Keyed operators hash every record's
/// key into it, so it uses foldhash (fixed seed: iteration order is reproducible) instead of
/// `std`'s SipHash. It never leaves the process, so it is not the key-group hash.
pub type StateMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;

/// The per-key values of a keyed operator that stores whole records (`reduce`): a map from
/// key to record, iterable and fillable like any map (for snapshots), laid out to keep the
/// table small because every record probes it.
///
/// When the key is plain data (no destructor: integers, `char`, tuples and arrays of them)
/// each record is stored once, without its key: the table is probed with the key's hash and
/// compared by recomputing the key from the stored record, which is cheap for such keys. That
/// makes an entry the record's size instead of key + record (16 bytes instead of 24 for a
/// `(u64, u64)` record keyed by its first field), so more of the table stays in cache. A value
/// that no longer yields the key it is stored under (a reduce function that rewrote the key's
/// fields) moves to a plain `key → record` map, as does every entry when computing the key
/// allocates (`String`, `Vec`): the key function is then called once per record, not once per
/// probe.
pub struct RecordMap<K, T> {
    /// Records `t` stored under `key(t)`.
    own: hashbrown::HashTable<T>,
    /// Records stored under a key they do not yield, and every record of keys that allocate.
    moved: StateMap<K, T>,
    hasher: foldhash::fast::FixedState,
}

impl<K, T> Default for RecordMap<K, T> {
    fn default() -> Self {
        RecordMap {
            own: hashbrown::HashTable::new(),
            moved: StateMap::default(),
            hasher: foldhash::fast::FixedState::default(),
        }
    }
}

impl<K: Key, T> RecordMap<K, T> {
    /// Whether records are stored without their key (see the type's documentation).
    const COMPACT: bool = !std::mem::needs_drop::<K>();

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.own.len() + self.moved.len()
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `key`; `kf` is the key function the records were stored with.
    pub fn get(&self, key: &K, kf: impl Fn(&T) -> K) -> Option<&T> {
        if Self::COMPACT {
            let h = self.hasher.hash_one(key);
            if let Some(t) = self.own.find(h, |t| kf(t) == *key) {
                return Some(t);
            }
        }
        self.moved.get(key)
    }

    /// Set the value of `key` (restoring a snapshot, say), returning the previous one.
    pub fn insert(&mut self, key: K, value: T, kf: impl Fn(&T) -> K) -> Option<T> {
        let old = self.remove(&key, &kf);
        if Self::COMPACT && kf(&value) == key {
            let h = self.hasher.hash_one(&key);
            let hasher = &self.hasher;
            self.own.insert_unique(h, value, |t| hasher.hash_one(kf(t)));
        } else {
            self.moved.insert(key, value);
        }
        old
    }

    /// Remove the value of `key`.
    pub fn remove(&mut self, key: &K, kf: impl Fn(&T) -> K) -> Option<T> {
        if Self::COMPACT {
            let h = self.hasher.hash_one(key);
            if let Ok(e) = self.own.find_entry(h, |t| kf(t) == *key) {
                return Some(e.remove().0);
            }
        }
        self.moved.remove(key)
    }

    /// Every key and its value, in no particular order.
    pub fn iter<'a>(&'a self, kf: impl Fn(&T) -> K + 'a) -> impl Iterator<Item = (K, &'a T)> + 'a {
        self.own
            .iter()
            .map(move |t| (kf(t), t))
            .chain(self.moved.iter().map(|(k, t)| (k.clone(), t)))
    }

    /// Fold `record`, whose key is `key` = `kf(&record)`, into its key's value: the first
    /// record of a key is stored as is, a later one becomes `f(value, record)`. Returns the
    /// new value.
    #[inline]
    pub fn fold(&mut self, key: K, record: T, kf: impl Fn(&T) -> K, f: impl FnOnce(T, T) -> T) -> T
    where
        T: Clone,
    {
        if Self::COMPACT {
            // The hot path, for a key already in the table; everything else is out of line so
            // that this stays small enough to be inlined into the chain's loop.
            let h = self.hasher.hash_one(&key);
            if let Ok(mut e) = self.own.find_entry(h, |t| kf(t) == key) {
                let next = f(e.get().clone(), record);
                if kf(&next) == key {
                    *e.get_mut() = next.clone();
                } else {
                    e.remove();
                    move_out(&mut self.moved, key, next.clone());
                }
                return next;
            }
        }
        self.fold_slow(key, record, kf, f)
    }

    /// `fold` for a key that is not in the table: a new key, a key in the side map, or any
    /// key of a type that allocates.
    #[inline(never)]
    fn fold_slow(&mut self, key: K, record: T, kf: impl Fn(&T) -> K, f: impl FnOnce(T, T) -> T) -> T
    where
        T: Clone,
    {
        if Self::COMPACT && !self.moved.contains_key(&key) {
            // A new key; `record` yields it, so it belongs in the table.
            let h = self.hasher.hash_one(&key);
            let hasher = &self.hasher;
            self.own
                .insert_unique(h, record.clone(), |t| hasher.hash_one(kf(t)));
            return record;
        }
        match self.moved.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let next = f(e.get().clone(), record);
                e.insert(next.clone());
                next
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(record.clone());
                record
            }
        }
    }
}

/// A value that no longer yields its key, into the side map (see [`RecordMap`]).
#[cold]
#[inline(never)]
fn move_out<K: Key, T>(moved: &mut StateMap<K, T>, key: K, value: T) {
    moved.insert(key, value);
}

/// The key group of `key` among `max_parallelism` groups.
#[inline]
pub fn key_group_of<K: Key + ?Sized>(key: &K, max_parallelism: u32) -> u32 {
    weir_compiler::plan::key_group(key.key_hash(), max_parallelism)
}

#[cfg(test)]
mod tests {
    use super::*;

    // These values pin the documented encoding: if one changes, savepoints taken with an
    // earlier weir would restore keys into the wrong key groups.
    #[test]
    fn canonical_hashes_are_stable() {
        assert_eq!(42u64.key_hash(), xxh3_64(&42u64.to_le_bytes()));
        assert_eq!(42usize.key_hash(), 42u64.key_hash());
        let mut expected = 5u32.to_le_bytes().to_vec();
        expected.extend_from_slice(b"hello");
        assert_eq!("hello".to_string().key_hash(), xxh3_64(&expected));
        let mut t = Vec::new();
        t.extend_from_slice(&7u32.to_le_bytes());
        t.extend_from_slice(&1u32.to_le_bytes());
        t.extend_from_slice(b"a");
        assert_eq!((7u32, "a".to_string()).key_hash(), xxh3_64(&t));
        // A fixed constant, so a change of the hash function itself is caught too.
        assert_eq!(xxh3_64(&0u64.to_le_bytes()), 0xc77b_3abb_6f87_acd9);
    }

    #[test]
    fn key_groups_cover_range() {
        let mut seen = [false; 128];
        for k in 0u64..10_000 {
            seen[key_group_of(&k, 128) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    fn first(r: &(u64, u64)) -> u64 {
        r.0
    }

    // The map behaves as a key → record map whichever way it stores an entry: in the table
    // (the record yields its key), in the side map (it does not), or all in the side map
    // (keys that allocate).
    #[test]
    fn record_map_is_a_map_from_key_to_record() {
        let sum = |a: (u64, u64), b: (u64, u64)| (a.0, a.1 + b.1);
        let mut m = RecordMap::<u64, (u64, u64)>::default();
        assert!(m.is_empty());
        assert_eq!(m.fold(1, (1, 5), first, sum), (1, 5));
        assert_eq!(m.fold(2, (2, 1), first, sum), (2, 1));
        assert_eq!(m.fold(1, (1, 7), first, sum), (1, 12));
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&1, first), Some(&(1, 12)));
        assert_eq!(m.get(&3, first), None);
        // Filled from a snapshot: one value yields its key, one does not.
        assert_eq!(m.insert(3, (3, 30), first), None);
        assert_eq!(m.insert(4, (99, 40), first), None);
        assert_eq!(m.insert(1, (1, 1), first), Some((1, 12)));
        assert_eq!(m.get(&4, first), Some(&(99, 40)));
        assert_eq!(m.get(&99, first), None);
        let mut all: Vec<(u64, (u64, u64))> = m.iter(first).map(|(k, v)| (k, *v)).collect();
        all.sort();
        assert_eq!(
            all,
            vec![(1, (1, 1)), (2, (2, 1)), (3, (3, 30)), (4, (99, 40))]
        );
        assert_eq!(m.remove(&4, first), Some((99, 40)));
        assert_eq!(m.remove(&2, first), Some((2, 1)));
        assert_eq!(m.len(), 2);
    }

    // A reduce function may rewrite the fields the key is computed from; the value stays
    // under the key of the records that produced it (Flink's keyed state), and later records
    // of that key find it.
    #[test]
    fn record_map_keeps_a_value_under_its_key_when_the_value_changes_the_key() {
        let bucket = |r: &(u64, u64)| r.0 / 10;
        let add_both = |a: (u64, u64), b: (u64, u64)| (a.0 + b.0, a.1 + b.1);
        let mut m = RecordMap::<u64, (u64, u64)>::default();
        assert_eq!(m.fold(0, (3, 1), bucket, add_both), (3, 1));
        // (3 + 8) / 10 = 1: the value no longer yields key 0.
        assert_eq!(m.fold(0, (8, 1), bucket, add_both), (11, 2));
        // Key 1 is a different key and starts afresh.
        assert_eq!(m.fold(1, (12, 1), bucket, add_both), (12, 1));
        assert_eq!(m.fold(0, (5, 1), bucket, add_both), (16, 3));
        assert_eq!(m.fold(1, (10, 1), bucket, add_both), (22, 2));
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&0, bucket), Some(&(16, 3)));
        assert_eq!(m.get(&1, bucket), Some(&(22, 2)));
        let mut keys: Vec<u64> = m.iter(bucket).map(|(k, _)| k).collect();
        keys.sort();
        assert_eq!(keys, vec![0, 1]);
    }

    #[test]
    fn record_map_with_allocating_keys() {
        let name = |r: &(String, u64)| r.0.clone();
        let sum = |a: (String, u64), b: (String, u64)| (a.0, a.1 + b.1);
        let mut m = RecordMap::<String, (String, u64)>::default();
        for (k, v) in [("a", 1), ("b", 2), ("a", 3)] {
            m.fold(k.to_string(), (k.to_string(), v), name, sum);
        }
        assert_eq!(m.get(&"a".to_string(), name), Some(&("a".to_string(), 4)));
        assert_eq!(m.len(), 2);
    }
}

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
}

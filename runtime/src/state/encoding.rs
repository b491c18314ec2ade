//! Byte layout of the checkpoint store's LMDB keys and values, and the entry hash.
//!
//! * data: `op u32 | key group u32 | key length u32 | key | !version u64` → `tag | value`.
//!   Versions are stored inverted so the newest version of a key sorts first. A key longer
//!   than [`INLINE_KEY_MAX`] (LMDB keys are at most 511 bytes) is stored as
//!   `u32::MAX | xxh3-128(key)` with the key itself in front of the value.
//! * log: `version u64 | op u32 | entry prefix` → `kind u8 | previous version u64` (the
//!   previous version absent when the key was new): what a version wrote, for rollback and
//!   retention.
//! * versions: `version u64` → `status u8 | xxh3-64(manifest) u64 | manifest JSON`.
//! * meta: `version u64 | name` → bytes.
//! * operators: `name` → `id u32`; catalog: `"encoding"` → `u32`.
//!
//! All integers are big-endian so that LMDB's byte order is numeric order.

use xxhash_rust::xxh3::xxh3_128;

/// Keys longer than this are stored by hash (LMDB's key limit is 511 bytes, and a log key
/// adds 16 bytes to the entry prefix).
pub(crate) const INLINE_KEY_MAX: usize = 400;
/// The length field that marks a hashed (long) key.
const LONG_KEY: u32 = u32::MAX;

/// Value tag: a value follows.
const TAG_PUT: u8 = 0;
/// Value tag: the key was deleted in this version.
const TAG_DEL: u8 = 1;
/// Value tag: `key length u32 | key | value` follows (a long key).
const TAG_PUT_LONG: u8 = 2;

/// Version status byte: written, not yet acknowledged by every worker.
pub(crate) const STATUS_PENDING: u8 = 0;
/// Version status byte: acknowledged by every worker (promoted).
pub(crate) const STATUS_COMPLETE: u8 = 1;

/// `u64::MAX - version`, big-endian: newer versions sort first.
#[inline]
pub(crate) fn inv(version: u64) -> [u8; 8] {
    (u64::MAX - version).to_be_bytes()
}

/// Whether a key is stored by hash.
#[inline]
pub(crate) fn is_long(key: &[u8]) -> bool {
    key.len() > INLINE_KEY_MAX
}

/// Append the entry prefix `key group | length | key` (or `| u32::MAX | hash`).
pub(crate) fn push_prefix(buf: &mut Vec<u8>, key_group: u32, key: &[u8]) {
    buf.extend_from_slice(&key_group.to_be_bytes());
    if is_long(key) {
        buf.extend_from_slice(&LONG_KEY.to_be_bytes());
        buf.extend_from_slice(&xxh3_128(key).to_be_bytes());
    } else {
        // INLINE_KEY_MAX < u32::MAX, so the length fits.
        buf.extend_from_slice(&(key.len() as u32).to_be_bytes());
        buf.extend_from_slice(key);
    }
}

/// `op | prefix | !version` into `buf` (cleared first).
pub(crate) fn data_key(buf: &mut Vec<u8>, op: u32, prefix: &[u8], version: u64) {
    buf.clear();
    buf.extend_from_slice(&op.to_be_bytes());
    buf.extend_from_slice(prefix);
    buf.extend_from_slice(&inv(version));
}

/// A decoded data key.
pub(crate) struct DataKey<'a> {
    /// Operator id.
    pub op: u32,
    /// Key group.
    pub key_group: u32,
    /// `op | key group | length | key`: everything but the version.
    pub prefix: &'a [u8],
    /// The version that wrote the entry.
    pub version: u64,
    /// The key, when stored inline; `None` for a long key (its key is in the value).
    pub inline_key: Option<&'a [u8]>,
}

fn be_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// Decode a data key; `None` when it is malformed (a damaged store).
pub(crate) fn parse_data_key(raw: &[u8]) -> Option<DataKey<'_>> {
    let op = be_u32(raw)?;
    let key_group = be_u32(raw.get(4..)?)?;
    let len = be_u32(raw.get(8..)?)?;
    let (prefix_len, inline_key) = if len == LONG_KEY {
        (12 + 16, None)
    } else {
        let len = len as usize;
        (12 + len, Some(raw.get(12..12 + len)?))
    };
    if raw.len() != prefix_len + 8 {
        return None;
    }
    let version = u64::MAX - be_u64(&raw[prefix_len..])?;
    Some(DataKey {
        op,
        key_group,
        prefix: &raw[..prefix_len],
        version,
        inline_key,
    })
}

/// A decoded data value.
pub(crate) enum Val<'a> {
    /// The key holds `value`; `long_key` is the key of a hashed entry.
    Put {
        long_key: Option<&'a [u8]>,
        value: &'a [u8],
    },
    /// The key was deleted.
    Del,
}

/// Decode a data value; `None` when it is malformed.
pub(crate) fn parse_value(raw: &[u8]) -> Option<Val<'_>> {
    match *raw.first()? {
        TAG_PUT => Some(Val::Put {
            long_key: None,
            value: &raw[1..],
        }),
        TAG_DEL if raw.len() == 1 => Some(Val::Del),
        TAG_PUT_LONG => {
            let len = be_u32(raw.get(1..)?)? as usize;
            let key = raw.get(5..5 + len)?;
            Some(Val::Put {
                long_key: Some(key),
                value: &raw[5 + len..],
            })
        }
        _ => None,
    }
}

/// Encode a value (`None` is a deletion) into `buf` (cleared first).
pub(crate) fn encode_value(buf: &mut Vec<u8>, key: &[u8], value: Option<&[u8]>) {
    buf.clear();
    match value {
        None => buf.push(TAG_DEL),
        Some(v) if is_long(key) => {
            buf.push(TAG_PUT_LONG);
            buf.extend_from_slice(&(key.len() as u32).to_be_bytes());
            buf.extend_from_slice(key);
            buf.extend_from_slice(v);
        }
        Some(v) => {
            buf.push(TAG_PUT);
            buf.extend_from_slice(v);
        }
    }
}

/// `version | op | prefix`: the log key of an entry written by `version`.
pub(crate) fn log_key(buf: &mut Vec<u8>, version: u64, op: u32, prefix: &[u8]) {
    buf.clear();
    buf.extend_from_slice(&version.to_be_bytes());
    buf.extend_from_slice(&op.to_be_bytes());
    buf.extend_from_slice(prefix);
}

/// Log value kind: the version wrote a value.
const LOG_PUT: u8 = 0;
/// Log value kind: the version wrote a deletion.
const LOG_DEL: u8 = 1;

/// A log value: whether the entry is a deletion, and the version it replaced.
pub(crate) fn log_value(delete: bool, prev: Option<u64>) -> ([u8; 9], usize) {
    let mut v = [if delete { LOG_DEL } else { LOG_PUT }; 9];
    match prev {
        Some(p) => {
            v[1..].copy_from_slice(&p.to_be_bytes());
            (v, 9)
        }
        None => (v, 1),
    }
}

/// A decoded log record.
pub(crate) struct LogRecord {
    /// The version that wrote the entry.
    pub version: u64,
    /// `op | prefix` of the entry.
    pub entry: Vec<u8>,
    /// Whether the entry is a deletion.
    pub delete: bool,
    /// The version of the entry it replaced, if any.
    pub prev: Option<u64>,
}

/// Decode a log record; `None` when it is malformed.
pub(crate) fn parse_log(raw_key: &[u8], raw_value: &[u8]) -> Option<LogRecord> {
    let version = be_u64(raw_key)?;
    let entry = raw_key.get(8..)?.to_vec();
    let delete = match *raw_value.first()? {
        LOG_PUT => false,
        LOG_DEL => true,
        _ => return None,
    };
    let prev = match raw_value.len() {
        1 => None,
        9 => Some(be_u64(&raw_value[1..])?),
        _ => return None,
    };
    Some(LogRecord {
        version,
        entry,
        delete,
        prev,
    })
}

/// `version | name`: a meta key.
pub(crate) fn meta_key(version: u64, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + name.len());
    k.extend_from_slice(&version.to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k
}

/// Decode a version key.
pub(crate) fn parse_version(raw: &[u8]) -> Option<u64> {
    if raw.len() == 8 {
        be_u64(raw)
    } else {
        None
    }
}

/// Reads a big-endian `u32` (an operator id or the catalog's encoding).
pub(crate) fn parse_u32(raw: &[u8]) -> Option<u32> {
    if raw.len() == 4 {
        be_u32(raw)
    } else {
        None
    }
}

/// The hash of one state entry: xxh3-128 over `key group | key length | key | value`.
/// A version's checksum is the wrapping sum of its entries' hashes, so a commit updates it
/// from the changed keys alone and the order of entries does not matter.
pub(crate) fn entry_hash(scratch: &mut Vec<u8>, key_group: u32, key: &[u8], value: &[u8]) -> u128 {
    scratch.clear();
    scratch.extend_from_slice(&key_group.to_be_bytes());
    scratch.extend_from_slice(&(key.len() as u64).to_be_bytes());
    scratch.extend_from_slice(key);
    scratch.extend_from_slice(value);
    xxh3_128(scratch)
}

/// The hash of one meta entry: xxh3-128 over `name length | name | value`.
pub(crate) fn meta_hash(name: &[u8], value: &[u8]) -> u128 {
    let mut s = Vec::with_capacity(8 + name.len() + value.len());
    s.extend_from_slice(&(name.len() as u64).to_be_bytes());
    s.extend_from_slice(name);
    s.extend_from_slice(value);
    xxh3_128(&s)
}

/// Tracks, over data entries in key order, which entry is the newest one at or below a
/// version for its key (entries of one key are adjacent, newest first).
#[derive(Default)]
pub(crate) struct Newest {
    current: Vec<u8>,
    decided: bool,
}

impl Newest {
    /// Whether the entry (`prefix`, `version`) is the one a reader of `at` sees for its key.
    pub(crate) fn visible(&mut self, prefix: &[u8], version: u64, at: u64) -> bool {
        if self.current != prefix {
            self.current.clear();
            self.current.extend_from_slice(prefix);
            self.decided = false;
        }
        if self.decided || version > at {
            return false;
        }
        self.decided = true;
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn data_keys_round_trip_and_sort_newest_first() {
        let mut p = Vec::new();
        push_prefix(&mut p, 7, b"abc");
        let (mut k1, mut k2) = (Vec::new(), Vec::new());
        data_key(&mut k1, 3, &p, 5);
        data_key(&mut k2, 3, &p, 9);
        assert!(k2 < k1, "version 9 sorts before version 5");
        let d = parse_data_key(&k1).expect("valid key");
        assert_eq!(
            (d.op, d.key_group, d.version, d.inline_key),
            (3, 7, 5, Some(&b"abc"[..]))
        );
        // A key that is a prefix of another does not interleave with it.
        let mut p2 = Vec::new();
        push_prefix(&mut p2, 7, b"ab");
        let mut k3 = Vec::new();
        data_key(&mut k3, 3, &p2, 1);
        assert!(k3 < k1 && k3 < k2);
    }

    #[test]
    fn long_keys_are_hashed_and_kept_in_the_value() {
        let key = vec![b'x'; 1000];
        let mut p = Vec::new();
        push_prefix(&mut p, 1, &key);
        let mut k = Vec::new();
        data_key(&mut k, 0, &p, 2);
        assert!(k.len() < 64);
        let d = parse_data_key(&k).expect("valid key");
        assert!(d.inline_key.is_none());
        let mut v = Vec::new();
        encode_value(&mut v, &key, Some(b"val"));
        match parse_value(&v) {
            Some(Val::Put {
                long_key: Some(lk),
                value,
            }) => {
                assert_eq!(lk, &key[..]);
                assert_eq!(value, b"val");
            }
            _ => panic!("expected a long put"),
        }
    }

    #[test]
    fn malformed_bytes_are_rejected() {
        assert!(parse_data_key(b"short").is_none());
        assert!(parse_value(&[9]).is_none());
        assert!(parse_value(&[TAG_DEL, 0]).is_none());
        assert!(parse_value(&[]).is_none());
    }
}

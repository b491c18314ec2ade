//! The changes of one checkpoint, buffered in memory until the store commits them.

use std::collections::BTreeMap;

use super::encoding::{is_long, push_prefix};

/// The changes of checkpoint `checkpoint`: puts and deletes of the keys that changed since
/// the previous version, and the version's meta entries. Got from
/// [`CheckpointStore::begin`](super::CheckpointStore::begin), filled by operators and
/// sources (it borrows nothing, so it can be passed around the worker), and written by
/// [`CheckpointStore::commit`](super::CheckpointStore::commit) in one LMDB transaction.
///
/// Writing a key twice keeps the last write.
pub struct Writer {
    pub(crate) checkpoint: u64,
    pub(crate) ops: Vec<OpChanges>,
    last_op: usize,
    pub(crate) meta: BTreeMap<String, Vec<u8>>,
    pub(crate) bytes: usize,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("checkpoint", &self.checkpoint)
            .field("changes", &self.len())
            .field("meta", &self.meta.len())
            .finish_non_exhaustive()
    }
}

/// One operator's buffered changes: entries are slices of one arena.
pub(crate) struct OpChanges {
    pub(crate) name: String,
    arena: Vec<u8>,
    slots: Vec<Slot>,
}

/// One buffered change: `arena[start..]` holds the entry prefix, then the key again for a
/// long key, then the value.
#[derive(Clone, Copy)]
struct Slot {
    /// The first 16 bytes of the prefix (key group, length, key start), zero-padded: orders
    /// most keys without a `memcmp` (equal heads imply equal lengths, so the padding is fair).
    head: u128,
    start: usize,
    prefix_len: u32,
    long_key_len: u32,
    value_len: usize,
    delete: bool,
}

/// A buffered change, as the store reads it back.
pub(crate) struct Change<'a> {
    pub(crate) key_group: u32,
    /// `key group | length | key`, as in the data key.
    pub(crate) prefix: &'a [u8],
    pub(crate) key: &'a [u8],
    /// `None` for a delete.
    pub(crate) value: Option<&'a [u8]>,
}

impl Writer {
    pub(crate) fn new(checkpoint: u64) -> Self {
        Writer {
            checkpoint,
            ops: Vec::new(),
            last_op: 0,
            meta: BTreeMap::new(),
            bytes: 0,
        }
    }

    /// The checkpoint this writer writes.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// Number of buffered puts and deletes (before duplicates are merged).
    pub fn len(&self) -> usize {
        self.ops.iter().map(|o| o.slots.len()).sum()
    }

    /// Whether nothing was written (a commit still records the version and its meta).
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.meta.is_empty()
    }

    fn op(&mut self, operator: &str) -> &mut OpChanges {
        if self
            .ops
            .get(self.last_op)
            .is_none_or(|o| o.name != operator)
        {
            self.last_op = match self.ops.iter().position(|o| o.name == operator) {
                Some(i) => i,
                None => {
                    self.ops.push(OpChanges {
                        name: operator.to_string(),
                        arena: Vec::new(),
                        slots: Vec::new(),
                    });
                    self.ops.len() - 1
                }
            };
        }
        &mut self.ops[self.last_op]
    }

    fn push(&mut self, operator: &str, key_group: u32, key: &[u8], value: Option<&[u8]>) {
        self.bytes += key.len() + value.map_or(0, <[u8]>::len) + 32;
        let op = self.op(operator);
        let start = op.arena.len();
        push_prefix(&mut op.arena, key_group, key);
        let prefix_len = (op.arena.len() - start) as u32;
        let mut head = [0u8; 16];
        let n = (prefix_len as usize).min(16);
        head[..n].copy_from_slice(&op.arena[start..start + n]);
        let long_key_len = if is_long(key) {
            op.arena.extend_from_slice(key);
            key.len() as u32
        } else {
            0
        };
        if let Some(v) = value {
            op.arena.extend_from_slice(v);
        }
        op.slots.push(Slot {
            head: u128::from_be_bytes(head),
            start,
            prefix_len,
            long_key_len,
            value_len: value.map_or(0, <[u8]>::len),
            delete: value.is_none(),
        });
    }

    /// Record that `key` of `operator` in `key_group` holds `value` as of this checkpoint.
    pub fn put(&mut self, operator: &str, key_group: u32, key: &[u8], value: &[u8]) {
        self.push(operator, key_group, key, Some(value));
    }

    /// Record that `key` of `operator` in `key_group` was removed since the previous version.
    pub fn delete(&mut self, operator: &str, key_group: u32, key: &[u8]) {
        self.push(operator, key_group, key, None);
    }

    /// The meta entry `name` written so far, if any.
    pub fn meta_of(&self, name: &str) -> Option<&[u8]> {
        self.meta.get(name).map(Vec::as_slice)
    }

    /// Record a meta entry of this version (a source's position, a sink's pending output).
    /// Meta entries are not inherited: write every one at every checkpoint.
    pub fn put_meta(&mut self, name: &str, bytes: &[u8]) {
        self.bytes += name.len() + bytes.len() + 16;
        self.meta.insert(name.to_string(), bytes.to_vec());
    }
}

impl OpChanges {
    /// Sort by data-key order and keep the last write of each key.
    pub(crate) fn sort_dedup(&mut self) {
        let arena = &self.arena;
        let prefix = |s: &Slot| &arena[s.start..s.start + s.prefix_len as usize];
        // Stable: of equal keys, the last written stays last.
        self.slots
            .sort_by(|a, b| a.head.cmp(&b.head).then_with(|| prefix(a).cmp(prefix(b))));
        let mut out: Vec<Slot> = Vec::with_capacity(self.slots.len());
        for s in self.slots.drain(..) {
            match out.last_mut() {
                Some(last) if last.head == s.head && prefix(last) == prefix(&s) => *last = s,
                _ => out.push(s),
            }
        }
        self.slots = out;
    }

    pub(crate) fn changes(&self) -> impl Iterator<Item = Change<'_>> {
        self.slots.iter().map(|s| {
            let p_end = s.start + s.prefix_len as usize;
            let prefix = &self.arena[s.start..p_end];
            let mut kg = [0u8; 4];
            kg.copy_from_slice(&prefix[..4]);
            let (key, v_start) = if s.long_key_len > 0 {
                let k_end = p_end + s.long_key_len as usize;
                (&self.arena[p_end..k_end], k_end)
            } else {
                (&prefix[8..], p_end)
            };
            Change {
                key_group: u32::from_be_bytes(kg),
                prefix,
                key,
                value: (!s.delete).then(|| &self.arena[v_start..v_start + s.value_len]),
            }
        })
    }
}

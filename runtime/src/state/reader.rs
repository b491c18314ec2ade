//! Reading the state of one checkpoint version.

use std::ops::{Bound, Range};

use heed::types::Bytes;
use heed::{RoRange, RoTxn, WithoutTls};

use super::encoding::{inv, parse_data_key, parse_value, push_prefix, Newest, Val};
use super::manifest::Manifest;
use super::store::CheckpointStore;
use crate::error::{Result, RuntimeError};

/// The state as of one version, read in one LMDB read transaction. It borrows the store,
/// so no commit, retention or map growth happens while it is open.
pub struct Reader<'s> {
    pub(crate) store: &'s CheckpointStore,
    pub(crate) txn: RoTxn<'s, WithoutTls>,
    pub(crate) version: u64,
    pub(crate) complete: bool,
    pub(crate) manifest: Manifest,
}

impl<'s> Reader<'s> {
    /// The version read.
    pub fn checkpoint(&self) -> u64 {
        self.version
    }

    /// Whether the version was promoted (every worker committed it).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The version's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The value of `key` of `operator` in `key_group` as of this version.
    pub fn get(&self, operator: &str, key_group: u32, key: &[u8]) -> Result<Option<&[u8]>> {
        let Some(&op) = self.store.ops.get(operator) else {
            return Ok(None);
        };
        let mut k = Vec::with_capacity(28 + key.len());
        k.extend_from_slice(&op.to_be_bytes());
        push_prefix(&mut k, key_group, key);
        let head = k.len();
        k.extend_from_slice(&inv(self.version));
        let found = self
            .store
            .dbs
            .data
            .get_greater_than_or_equal_to(&self.txn, &k)
            .map_err(|e| self.store.lmdb(e))?;
        let Some((fk, fv)) = found else {
            return Ok(None);
        };
        if fk.len() != k.len() || fk[..head] != k[..head] {
            return Ok(None);
        }
        match parse_value(fv) {
            Some(Val::Put {
                long_key: Some(lk), ..
            }) if lk != key => Ok(None),
            Some(Val::Put { value, .. }) => Ok(Some(value)),
            Some(Val::Del) => Ok(None),
            None => Err(self
                .store
                .damaged(Some(self.version), "a data value is malformed")),
        }
    }

    /// Every key of `operator` in `key_groups` with its value as of this version, as
    /// `(key group, key, value)`, ordered by key group.
    pub fn scan(&self, operator: &str, key_groups: Range<u32>) -> Result<Scan<'_>> {
        let Some(&op) = self.store.ops.get(operator) else {
            return Ok(Scan {
                inner: None,
                store: self.store,
                version: self.version,
                newest: Newest::default(),
            });
        };
        let mut lo = op.to_be_bytes().to_vec();
        lo.extend_from_slice(&key_groups.start.to_be_bytes());
        let mut hi = op.to_be_bytes().to_vec();
        hi.extend_from_slice(&key_groups.end.to_be_bytes());
        let range = (Bound::Included(&lo[..]), Bound::Excluded(&hi[..]));
        let inner = if key_groups.is_empty() {
            None
        } else {
            Some(
                self.store
                    .dbs
                    .data
                    .range(&self.txn, &range)
                    .map_err(|e| self.store.lmdb(e))?,
            )
        };
        Ok(Scan {
            inner,
            store: self.store,
            version: self.version,
            newest: Newest::default(),
        })
    }

    /// The meta entry `name` of this version.
    pub fn meta(&self, name: &str) -> Result<Option<&[u8]>> {
        self.store
            .dbs
            .meta
            .get(&self.txn, &super::encoding::meta_key(self.version, name))
            .map_err(|e| self.store.lmdb(e))
    }
}

/// Iterator over the entries of one operator in a range of key groups, as of one version.
pub struct Scan<'r> {
    inner: Option<RoRange<'r, Bytes, Bytes>>,
    store: &'r CheckpointStore,
    version: u64,
    newest: Newest,
}

impl<'r> Iterator for Scan<'r> {
    type Item = Result<(u32, &'r [u8], &'r [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        let inner = self.inner.as_mut()?;
        loop {
            let (k, v) = match inner.next()? {
                Ok(kv) => kv,
                Err(e) => return Some(Err(self.store.lmdb(e))),
            };
            let damaged =
                |what: &str| -> RuntimeError { self.store.damaged(Some(self.version), what) };
            let Some(dk) = parse_data_key(k) else {
                return Some(Err(damaged("a data key is malformed")));
            };
            if !self.newest.visible(dk.prefix, dk.version, self.version) {
                continue;
            }
            match parse_value(v) {
                Some(Val::Del) => continue,
                Some(Val::Put { long_key, value }) => match long_key.or(dk.inline_key) {
                    Some(key) => return Some(Ok((dk.key_group, key, value))),
                    None => return Some(Err(damaged("a long key lost its key"))),
                },
                None => return Some(Err(damaged("a data value is malformed"))),
            }
        }
    }
}

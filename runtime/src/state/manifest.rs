//! The manifest of a checkpoint version: what it belongs to and how to check it.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Version of the byte layout of keys, values and manifests. A store or savepoint written
/// with another encoding is refused rather than misread.
pub const STATE_ENCODING_VERSION: u32 = 1;

/// What the caller tells [`CheckpointStore::commit`](super::CheckpointStore::commit) about
/// a checkpoint; the store adds the counts and checksums.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFields {
    /// The job's name.
    pub job: String,
    /// [`JobPlan::fingerprint`](crate::plan::JobPlan::fingerprint) of the plan that wrote the state.
    pub plan_fingerprint: u64,
    /// The epoch the checkpoint was taken at.
    pub epoch: u64,
    /// Key groups of each operator instance on this worker. An operator left out keeps the
    /// range of the previous version.
    pub key_groups: BTreeMap<String, Range<u32>>,
}

/// A wrapping sum of xxh3-128 hashes, one per entry: independent of entry order and
/// updated from the changed keys alone. Serialized as 32 hex digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checksum(pub u128);

impl Checksum {
    pub(crate) fn add(&mut self, h: u128) {
        self.0 = self.0.wrapping_add(h);
    }
    pub(crate) fn sub(&mut self, h: u128) {
        self.0 = self.0.wrapping_sub(h);
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl Serialize for Checksum {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Checksum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        u128::from_str_radix(&s, 16)
            .map(Checksum)
            .map_err(serde::de::Error::custom)
    }
}

/// Record count and checksum of a set of entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Number of entries.
    pub records: u64,
    /// Sum of the entries' hashes.
    pub checksum: Checksum,
}

impl Digest {
    pub(crate) fn add(&mut self, h: u128) {
        self.records += 1;
        self.checksum.add(h);
    }
    pub(crate) fn sub(&mut self, h: u128) {
        self.records = self.records.wrapping_sub(1);
        self.checksum.sub(h);
    }
}

/// One operator's part of a version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorManifest {
    /// The key groups the operator instance owns, when the caller said.
    pub key_groups: Option<Range<u32>>,
    /// Keys and checksum of the operator's whole state as of this version.
    #[serde(flatten)]
    pub digest: Digest,
}

/// Describes one checkpoint version of one worker: stored beside its data in LMDB and, for
/// a savepoint, as `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`STATE_ENCODING_VERSION`] of the writer.
    pub encoding: u32,
    /// The job's name.
    pub job: String,
    /// The plan fingerprint of the job that wrote it.
    pub plan_fingerprint: u64,
    /// The checkpoint id (the version).
    pub checkpoint: u64,
    /// The epoch the checkpoint was taken at.
    pub epoch: u64,
    /// The worker slot that wrote it (`None` if unknown).
    pub worker: Option<usize>,
    /// The version this one was written on top of (its changes are relative to it).
    pub parent: Option<u64>,
    /// The state of every operator that has or had state, by operator name.
    pub operators: BTreeMap<String, OperatorManifest>,
    /// Count and checksum of the version's meta entries (source positions, sink output).
    pub meta: Digest,
}

impl Manifest {
    /// Refuse state written by another job or another plan shape.
    pub fn check_compatible(&self, job: &str, plan_fingerprint: u64) -> crate::error::Result<()> {
        if self.job != job || self.plan_fingerprint != plan_fingerprint {
            return Err(crate::error::RuntimeError::user(format!(
                "checkpoint {} was written by job `{}` with plan fingerprint {:016x}, but this is job `{job}` \
                 with plan fingerprint {plan_fingerprint:016x}; restore it with the binary that wrote it, or start without state",
                self.checkpoint, self.job, self.plan_fingerprint
            )));
        }
        Ok(())
    }
}

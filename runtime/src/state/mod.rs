//! Checkpoint store: versioned keyed state and metadata per worker slot in LMDB (heed).
//!
//! LMDB overwrites in place and keeps no history, so versions are ours to keep. Every data
//! entry is keyed `(operator, key group, key, version)`; a reader of version v sees, per key,
//! the newest entry at or below v (a deletion is an entry too). A checkpoint therefore
//! writes only the keys that changed, yet every retained version reads back exactly, and
//! a worker that committed N can still return to N−1.
//!
//! The protocol, per worker slot:
//!
//! 1. At start: [`CheckpointStore::open`]; the cluster agrees on a checkpoint to resume
//!    from (each worker offers [`CheckpointStore::latest_valid_complete`]); every worker
//!    [`CheckpointStore::rollback_to`] it (discarding newer versions, pending or not),
//!    reads its key groups with [`CheckpointStore::reader`] and rewinds its sources to the
//!    stored meta.
//! 2. At checkpoint epoch N: [`CheckpointStore::begin`]`(N)`, operators [`Writer::put`] /
//!    [`Writer::delete`] their dirty keys, sources and sinks [`Writer::put_meta`], then
//!    [`CheckpointStore::commit`] writes a pending version in one LMDB transaction.
//! 3. When every worker committed N: [`CheckpointStore::promote`]`(N)`, then
//!    [`CheckpointStore::retain`]`(k)` to drop old versions.
//! 4. Savepoints: [`CheckpointStore::copy_to`] a complete version; [`open_savepoint`] reads
//!    one back (by key-group range, for rescaling).
//!
//! Each version has a [`Manifest`] with per-operator record counts and an order-independent
//! checksum (sum of xxh3-128 entry hashes), kept up to date from the changed keys alone;
//! [`CheckpointStore::verify`] recomputes them from the data.

mod encoding;
mod manifest;
mod reader;
mod savepoint;
mod store;
mod writer;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

pub use manifest::{
    Checksum, Digest, Manifest, ManifestFields, OperatorManifest, STATE_ENCODING_VERSION,
};
pub use reader::{Reader, Scan};
pub use savepoint::{open_savepoint, Savepoint, MANIFEST_FILE};
pub use store::{CheckpointStore, LatestValid, PendingInfo, RetainInfo, StoreStats, VersionInfo};
pub use writer::Writer;

//! The per-worker LMDB environment: opening, commits, promotion, retention, rollback, verify.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::ErrorKind;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use heed::types::Bytes;
use heed::{
    CommitOrAbort, Database, Env, EnvOpenOptions, MdbError, PutFlags, RoTxn, RwTxn, WithoutTls,
};
use xxhash_rust::xxh3::xxh3_64;

use super::encoding::{
    data_key, encode_value, entry_hash, inv, log_key, log_value, meta_hash, parse_data_key,
    parse_log, parse_u32, parse_value, parse_version, DataKey, LogRecord, Newest, Val,
    STATUS_COMPLETE, STATUS_PENDING,
};
use super::manifest::{Digest, Manifest, ManifestFields, STATE_ENCODING_VERSION};
use super::reader::Reader;
use super::writer::Writer;
use crate::error::{Result, RuntimeError};

/// An LMDB database of byte keys and values, valid as long as the store's environment.
pub(crate) type Db = Database<'static, Bytes, Bytes>;

/// The named databases of one environment.
#[derive(Clone, Copy)]
pub(crate) struct Dbs {
    pub(crate) data: Db,
    pub(crate) log: Db,
    pub(crate) versions: Db,
    pub(crate) meta: Db,
    pub(crate) operators: Db,
    pub(crate) catalog: Db,
}

/// The map size a new environment starts with. It is virtual address space, not disk:
/// the file grows with the data, and the map doubles whenever a commit needs more.
pub(crate) const INITIAL_MAP_SIZE: usize = 1 << 30;
/// How often one transaction may double the map before giving up.
const MAX_GROWS: u32 = 24;
/// Meta names become part of an LMDB key (at most 511 bytes).
const META_NAME_MAX: usize = 400;

/// One checkpoint version as listed by [`CheckpointStore::versions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// The checkpoint id.
    pub checkpoint: u64,
    /// Promoted: every worker committed it.
    pub complete: bool,
}

/// What [`CheckpointStore::commit`] wrote.
#[derive(Clone, Debug)]
pub struct PendingInfo {
    /// The checkpoint id, now stored as a pending version.
    pub checkpoint: u64,
    /// Keys written with a value.
    pub puts: u64,
    /// Keys written as deleted (deletes of keys that did not exist are dropped).
    pub deletes: u64,
    /// The version's manifest.
    pub manifest: Manifest,
}

/// What [`CheckpointStore::retain`] dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetainInfo {
    /// The versions no longer readable.
    pub dropped: Vec<u64>,
    /// Data entries deleted because no retained version reads them.
    pub entries_removed: u64,
}

/// The newest complete version that passes [`CheckpointStore::verify`], and why newer
/// complete versions were passed over.
#[derive(Clone, Debug)]
pub struct LatestValid {
    /// The version to restore, if any complete version is intact.
    pub checkpoint: Option<u64>,
    /// Newer complete versions that failed verification, newest first, with the reason.
    pub rejected: Vec<(u64, RuntimeError)>,
}

/// Sizes of a store, for tests and metrics.
#[derive(Clone, Copy, Debug)]
pub struct StoreStats {
    /// Entries in the data database (all retained versions together).
    pub data_entries: u64,
    /// Entries in the change log (one per key written by a retained version).
    pub log_entries: u64,
    /// Stored versions, pending and complete.
    pub versions: usize,
    /// Size of `data.mdb` on disk.
    pub file_bytes: u64,
    /// The current map size (virtual).
    pub map_size: usize,
}

/// The checkpoint store of one worker slot: one LMDB environment at `dir/worker-<n>/`
/// holding every retained checkpoint version of that worker's keyed state and metadata.
///
/// Versions are kept by us, not by LMDB: every data entry is keyed by
/// `(operator, key group, key, version)` and a reader of version v sees, per key, the
/// newest entry at or below v. A commit writes only changed keys; a change log per version
/// lets [`rollback_to`](Self::rollback_to) undo versions and [`retain`](Self::retain) delete
/// entries no retained version reads. See the module documentation for the protocol.
pub struct CheckpointStore {
    pub(crate) env: Env<WithoutTls>,
    pub(crate) dbs: Dbs,
    pub(crate) path: PathBuf,
    pub(crate) worker: Option<usize>,
    /// Operator name → id used in data keys.
    pub(crate) ops: HashMap<String, u32>,
    /// Grow the map ahead of a commit from its size estimate (off in a test of the
    /// map-full path).
    pub(crate) presize: bool,
    /// How often the map was grown after LMDB reported it full.
    pub(crate) grows_on_full: u32,
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointStore")
            .field("path", &self.path)
            .field("worker", &self.worker)
            .field("operators", &self.ops.len())
            .finish_non_exhaustive()
    }
}

/// An error inside a write transaction: LMDB's (a full map is retried) or ours.
pub(crate) enum TxnError {
    Heed(heed::Error),
    Fail(RuntimeError),
}

impl From<heed::Error> for TxnError {
    fn from(e: heed::Error) -> Self {
        TxnError::Heed(e)
    }
}

impl From<RuntimeError> for TxnError {
    fn from(e: RuntimeError) -> Self {
        TxnError::Fail(e)
    }
}

pub(crate) type TxnResult<T> = std::result::Result<T, TxnError>;

/// A one-line error for an LMDB failure while `doing` something with the store at `path`.
pub(crate) fn lmdb_error(path: &Path, doing: &str, e: heed::Error) -> RuntimeError {
    match &e {
        heed::Error::Mdb(
            MdbError::Corrupted
            | MdbError::PageNotFound
            | MdbError::Invalid
            | MdbError::VersionMismatch
            | MdbError::Incompatible,
        ) => RuntimeError::user(format!(
            "checkpoint store {} is damaged ({e}) and cannot {doing}; restore a savepoint, or move the directory away to start without state",
            path.display()
        )),
        heed::Error::Io(io) if io.kind() == ErrorKind::StorageFull => RuntimeError::external(format!(
            "cannot {doing} at {}: the disk is full; free space and restart the job",
            path.display()
        )),
        heed::Error::Io(io) if io.kind() == ErrorKind::PermissionDenied => RuntimeError::user(format!(
            "cannot {doing} at {}: permission denied; make the checkpoint directory readable and writable by the job",
            path.display()
        )),
        heed::Error::EnvAlreadyOpened => RuntimeError::internal(format!(
            "checkpoint store {} is already open in this process; each worker slot must open its own directory once",
            path.display()
        )),
        _ => RuntimeError::external(format!(
            "cannot {doing} at {}: {e}; check the disk and the directory's permissions",
            path.display()
        )),
    }
}

/// Round up to a whole MiB (a multiple of every page size LMDB runs with).
fn round_map(n: usize) -> usize {
    n.div_ceil(1 << 20).saturating_mul(1 << 20)
}

/// The range of keys that start with the 8-byte big-endian `version`.
fn version_prefix(version: u64) -> ([u8; 8], Option<[u8; 8]>) {
    (
        version.to_be_bytes(),
        version.checked_add(1).map(u64::to_be_bytes),
    )
}

fn upper(hi: &Option<[u8; 8]>) -> Bound<&[u8]> {
    match hi {
        Some(h) => Bound::Excluded(&h[..]),
        None => Bound::Unbounded,
    }
}

/// Encode a versions-database value: `status | xxh3-64(json) | json`.
pub(crate) fn encode_version(status: u8, manifest: &Manifest) -> TxnResult<Vec<u8>> {
    let json = serde_json::to_vec(manifest).map_err(|e| {
        TxnError::Fail(RuntimeError::internal(format!(
            "cannot encode a checkpoint manifest: {e}"
        )))
    })?;
    let mut v = Vec::with_capacity(9 + json.len());
    v.push(status);
    v.extend_from_slice(&xxh3_64(&json).to_be_bytes());
    v.extend_from_slice(&json);
    Ok(v)
}

/// Decode a versions-database value, or say what is wrong with it.
fn decode_version(raw: &[u8]) -> std::result::Result<(bool, Manifest), String> {
    if raw.len() < 9 {
        return Err("its manifest is truncated".into());
    }
    let complete = match raw[0] {
        STATUS_PENDING => false,
        STATUS_COMPLETE => true,
        s => return Err(format!("its status byte is {s}")),
    };
    let json = &raw[9..];
    if raw[1..9] != xxh3_64(json).to_be_bytes() {
        return Err("its manifest does not match its checksum".into());
    }
    let manifest: Manifest =
        serde_json::from_slice(json).map_err(|e| format!("its manifest cannot be read ({e})"))?;
    if manifest.encoding != STATE_ENCODING_VERSION {
        return Err(format!(
            "it was written with state encoding {}, and this build reads encoding {STATE_ENCODING_VERSION}",
            manifest.encoding
        ));
    }
    Ok((complete, manifest))
}

impl CheckpointStore {
    /// Open (creating if needed) the store of worker slot `worker` under the checkpoint
    /// directory `dir`, at `dir/worker-<worker>/`. `dir` itself must exist.
    pub fn open(dir: &Path, worker: usize) -> Result<Self> {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(RuntimeError::user(format!(
                    "checkpoint directory {} is not a directory; give a directory for checkpoints",
                    dir.display()
                )))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(RuntimeError::user(format!(
                    "checkpoint directory {} does not exist; create it or give another checkpoint directory",
                    dir.display()
                )))
            }
            Err(e) => {
                return Err(RuntimeError::user(format!(
                    "cannot read checkpoint directory {}: {e}; check its permissions",
                    dir.display()
                )))
            }
        }
        let slot = dir.join(format!("worker-{worker}"));
        if let Err(e) = fs::create_dir(&slot) {
            if e.kind() != ErrorKind::AlreadyExists {
                return Err(RuntimeError::user(format!(
                    "cannot create {}: {e}; make the checkpoint directory writable by the job",
                    slot.display()
                )));
            }
        }
        if let Err(e) = fs::read_dir(&slot) {
            return Err(RuntimeError::user(format!(
                "cannot read {}: {e}; make the checkpoint directory readable and writable by the job",
                slot.display()
            )));
        }
        Self::open_at(&slot, Some(worker), INITIAL_MAP_SIZE)
    }

    /// Open worker `worker`'s existing store under `dir` without writing to it — not even
    /// its map size, which another process (the running job) owns: for copying
    /// checkpoints out of a running job's stores.
    pub fn open_existing(dir: &Path, worker: usize) -> Result<Self> {
        let path = dir.join(format!("worker-{worker}"));
        if !path.join("data.mdb").is_file() {
            return Err(RuntimeError::user(format!(
                "{} holds no checkpoint store; give the --checkpoint-dir the job runs with",
                path.display()
            )));
        }
        Self::open_env(&path, Some(worker), 0, false)
    }

    /// Open the environment in directory `path` (which exists).
    pub(crate) fn open_at(path: &Path, worker: Option<usize>, map_size: usize) -> Result<Self> {
        Self::open_env(path, worker, map_size, true)
    }

    fn open_env(
        path: &Path,
        worker: Option<usize>,
        map_size: usize,
        writable: bool,
    ) -> Result<Self> {
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        // Read-only: take the map size the environment has (LMDB uses the larger of this
        // and the file's).
        options
            .map_size(round_map(if writable { map_size } else { 0 }))
            .max_dbs(8);
        // SAFETY: LMDB maps the file. Nothing else in this process maps it (heed refuses to
        // open one path twice), each worker slot has its own directory, and weir never
        // truncates or rewrites data.mdb while it is open.
        let env = unsafe { options.open(path) }.map_err(|e| match e {
            heed::Error::Mdb(MdbError::Invalid) => RuntimeError::user(format!(
                "{} holds a data.mdb that is not an LMDB checkpoint store or is damaged; restore a savepoint, or move it away to start without state",
                path.display()
            )),
            e => lmdb_error(path, "open the checkpoint store", e),
        })?;
        // A truncated file opens (LMDB reads only its header) but reading past its end
        // would crash: compare its size with the last page the header says is in use.
        let page = env.unnamed_database_stat().page_size as u64;
        let info = env.info();
        let needed = (info.last_page_number as u64 + 1) * page;
        let data_file = path.join("data.mdb");
        let len = fs::metadata(&data_file).map(|m| m.len()).map_err(|e| {
            RuntimeError::user(format!(
                "cannot read {}: {e}; check the checkpoint directory",
                data_file.display()
            ))
        })?;
        if len < needed {
            return Err(RuntimeError::user(format!(
                "{} is truncated ({len} bytes, but its pages reach {needed}); restore a savepoint, or move the directory away to start without state",
                data_file.display()
            )));
        }
        if !writable {
            return Self::open_readable(env, path, worker);
        }
        // Room to write at least as much again as is stored.
        let want = round_map((needed as usize).saturating_mul(2));
        if info.map_size < want {
            // SAFETY: the environment was just opened; no transaction exists yet.
            unsafe { env.resize(want.max(info.map_size)) }
                .map_err(|e| lmdb_error(path, "size the checkpoint store's map", e))?;
        }

        let wtxn = env
            .write_txn()
            .map_err(|e| lmdb_error(path, "open the checkpoint store", e))?;
        let dbs = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| {
                let data = dbo.create_database::<Bytes, Bytes>(wtxn, Some("data"))?;
                let log = dbo.create_database::<Bytes, Bytes>(wtxn, Some("log"))?;
                let versions = dbo.create_database::<Bytes, Bytes>(wtxn, Some("versions"))?;
                let meta = dbo.create_database::<Bytes, Bytes>(wtxn, Some("meta"))?;
                let operators = dbo.create_database::<Bytes, Bytes>(wtxn, Some("operators"))?;
                let catalog = dbo.create_database::<Bytes, Bytes>(wtxn, Some("catalog"))?;
                Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit((
                    data, log, versions, meta, operators, catalog,
                )))
            })
            .map_err(|e| lmdb_error(path, "open the checkpoint store's databases", e))?
            .commit()
            .map(|(data, log, versions, meta, operators, catalog)| Dbs {
                data,
                log,
                versions,
                meta,
                operators,
                catalog,
            })
            .ok_or_else(|| {
                RuntimeError::internal("creating the checkpoint databases was aborted")
            })?;

        // Reader slots left by a crashed process would keep LMDB from reusing pages.
        env.clear_stale_readers()
            .map_err(|e| lmdb_error(path, "open the checkpoint store", e))?;

        let mut store = CheckpointStore {
            env,
            dbs,
            path: path.to_path_buf(),
            worker,
            ops: HashMap::new(),
            presize: true,
            grows_on_full: 0,
        };
        store.check_catalog()?;
        store.load_operators()?;
        Ok(store)
    }

    /// The databases of an existing environment, opened in a read transaction.
    fn open_readable(
        env: heed::Env<WithoutTls>,
        path: &Path,
        worker: Option<usize>,
    ) -> Result<Self> {
        let missing = || {
            RuntimeError::user(format!(
                "{} is not a complete checkpoint store (a database is missing)",
                path.display()
            ))
        };
        let rtxn = env
            .read_txn()
            .map_err(|e| lmdb_error(path, "read the checkpoint store", e))?;
        let dbs = env
            .open_databases_and_commit(rtxn, |dbo, rtxn| {
                let open = |name: &str| dbo.open_database::<Bytes, Bytes>(rtxn, Some(name));
                let all = (
                    open("data")?,
                    open("log")?,
                    open("versions")?,
                    open("meta")?,
                    open("operators")?,
                    open("catalog")?,
                );
                Ok::<_, heed::Error>(match all {
                    (
                        Some(data),
                        Some(log),
                        Some(versions),
                        Some(meta),
                        Some(operators),
                        Some(catalog),
                    ) => CommitOrAbort::Commit((data, log, versions, meta, operators, catalog)),
                    _ => CommitOrAbort::Abort(()),
                })
            })
            .map_err(|e| lmdb_error(path, "read the checkpoint store", e))?
            .commit()
            .map(|(data, log, versions, meta, operators, catalog)| Dbs {
                data,
                log,
                versions,
                meta,
                operators,
                catalog,
            })
            .ok_or_else(missing)?;
        let mut store = CheckpointStore {
            env,
            dbs,
            path: path.to_path_buf(),
            worker,
            ops: HashMap::new(),
            presize: false,
            grows_on_full: 0,
        };
        store.load_operators()?;
        Ok(store)
    }

    /// Record the encoding in a new store; refuse a store of another encoding.
    fn check_catalog(&mut self) -> Result<()> {
        let catalog = self.dbs.catalog;
        let path = self.path.clone();
        self.write("open the checkpoint store", 0, |txn| {
            match catalog.get(txn, b"encoding")?.map(parse_u32) {
                None => catalog.put(txn, b"encoding", &STATE_ENCODING_VERSION.to_be_bytes())?,
                Some(Some(STATE_ENCODING_VERSION)) => {}
                Some(other) => {
                    return Err(TxnError::Fail(RuntimeError::user(format!(
                        "checkpoint store {} was written with state encoding {}, and this build reads encoding {STATE_ENCODING_VERSION}; \
                         restore it with the weir version that wrote it, or move it away to start without state",
                        path.display(),
                        other.map_or_else(|| "(unreadable)".to_string(), |v| v.to_string())
                    ))))
                }
            }
            Ok(())
        })
    }

    fn load_operators(&mut self) -> Result<()> {
        let txn = self.read_txn()?;
        let mut ops = HashMap::new();
        for item in self.dbs.operators.iter(&txn).map_err(|e| self.lmdb(e))? {
            let (name, id) = item.map_err(|e| self.lmdb(e))?;
            let (Ok(name), Some(id)) = (std::str::from_utf8(name), parse_u32(id)) else {
                return Err(self.damaged(None, "its operator table has a malformed entry"));
            };
            ops.insert(name.to_string(), id);
        }
        drop(txn);
        self.ops = ops;
        Ok(())
    }

    /// The directory of this store's environment.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn lmdb(&self, e: heed::Error) -> RuntimeError {
        lmdb_error(&self.path, "read the checkpoint store", e)
    }

    /// The error for damaged contents.
    pub(crate) fn damaged(&self, version: Option<u64>, what: &str) -> RuntimeError {
        let which = match version {
            Some(v) => format!("checkpoint {v} in {}", self.path.display()),
            None => format!("checkpoint store {}", self.path.display()),
        };
        RuntimeError::user(format!(
            "{which} is damaged: {what}; restore an older checkpoint or a savepoint, or move the directory away to start without state"
        ))
    }

    pub(crate) fn read_txn(&self) -> Result<RoTxn<'_, WithoutTls>> {
        self.env.read_txn().map_err(|e| self.lmdb(e))
    }

    /// Run `f` in one write transaction and commit it. When LMDB reports the map full, the
    /// transaction is aborted, the map doubled and `f` run again: `f` must only read what it
    /// captured. `reserve` estimates the bytes `f` writes, to grow the map ahead of time.
    pub(crate) fn write<T>(
        &mut self,
        doing: &str,
        reserve: usize,
        mut f: impl FnMut(&mut RwTxn<'_>) -> TxnResult<T>,
    ) -> Result<T> {
        if self.presize {
            self.ensure_room(reserve)?;
        }
        for _ in 0..MAX_GROWS {
            let mut txn = self
                .env
                .write_txn()
                .map_err(|e| lmdb_error(&self.path, doing, e))?;
            let outcome = match f(&mut txn) {
                Ok(v) => txn.commit().map(|()| v).map_err(TxnError::Heed),
                Err(e) => {
                    txn.abort();
                    Err(e)
                }
            };
            match outcome {
                Ok(v) => return Ok(v),
                Err(TxnError::Heed(heed::Error::Mdb(MdbError::MapFull))) => {
                    let size = self.env.info().map_size;
                    self.resize(size.saturating_mul(2))?;
                    self.grows_on_full += 1;
                }
                Err(TxnError::Heed(e)) => return Err(lmdb_error(&self.path, doing, e)),
                Err(TxnError::Fail(e)) => return Err(e),
            }
        }
        Err(RuntimeError::external(format!(
            "cannot {doing} at {}: the LMDB map is still full after doubling it {MAX_GROWS} times; check free disk space",
            self.path.display()
        )))
    }

    /// Grow the map so that `reserve` more bytes (twice over, for the log and page splits)
    /// fit without a retry.
    fn ensure_room(&mut self, reserve: usize) -> Result<()> {
        let page = self.env.unnamed_database_stat().page_size as usize;
        let info = self.env.info();
        let used = (info.last_page_number + 1).saturating_mul(page);
        let need = used.saturating_add(reserve.saturating_mul(2));
        if need > info.map_size {
            self.resize(round_map(need).max(info.map_size.saturating_mul(2)))?;
        }
        Ok(())
    }

    fn resize(&mut self, size: usize) -> Result<()> {
        // SAFETY: no transaction of this environment is open: resizing takes `&mut self`,
        // write transactions live only inside `write`, and every read transaction is held
        // by a `Reader` or a local that borrows the store.
        unsafe { self.env.resize(round_map(size)) }
            .map_err(|e| lmdb_error(&self.path, "grow the checkpoint store's map", e))
    }

    /// All stored versions, oldest first.
    pub fn versions(&self) -> Result<Vec<VersionInfo>> {
        let txn = self.read_txn()?;
        let mut out = Vec::new();
        for item in self.dbs.versions.iter(&txn).map_err(|e| self.lmdb(e))? {
            let (k, v) = item.map_err(|e| self.lmdb(e))?;
            let checkpoint = parse_version(k)
                .ok_or_else(|| self.damaged(None, "its version table has a malformed key"))?;
            let complete = match v.first() {
                Some(&STATUS_COMPLETE) => true,
                Some(&STATUS_PENDING) => false,
                _ => return Err(self.damaged(Some(checkpoint), "its status is unreadable")),
            };
            out.push(VersionInfo {
                checkpoint,
                complete,
            });
        }
        Ok(out)
    }

    /// The newest complete (promoted) version, without verifying it.
    pub fn latest_complete(&self) -> Result<Option<u64>> {
        Ok(self
            .versions()?
            .iter()
            .rev()
            .find(|v| v.complete)
            .map(|v| v.checkpoint))
    }

    fn newest_version(&self) -> Result<Option<u64>> {
        Ok(self.versions()?.last().map(|v| v.checkpoint))
    }

    /// The manifest and status of a stored version.
    pub(crate) fn load_version(
        &self,
        txn: &RoTxn<'_, WithoutTls>,
        version: u64,
    ) -> Result<(bool, Manifest)> {
        let raw = self
            .dbs
            .versions
            .get(txn, &version.to_be_bytes())
            .map_err(|e| self.lmdb(e))?
            .ok_or_else(|| {
                RuntimeError::user(format!(
                    "checkpoint {version} is not stored in {}; list the stored checkpoints and pick one of them",
                    self.path.display()
                ))
            })?;
        let (complete, manifest) =
            decode_version(raw).map_err(|what| self.damaged(Some(version), &what))?;
        if manifest.checkpoint != version {
            return Err(self.damaged(Some(version), "its manifest names another checkpoint"));
        }
        Ok((complete, manifest))
    }

    /// The manifest of a stored version.
    pub fn manifest(&self, version: u64) -> Result<Manifest> {
        let txn = self.read_txn()?;
        Ok(self.load_version(&txn, version)?.1)
    }

    /// Start writing checkpoint `checkpoint`, which must be newer than every stored version
    /// (after a restore, [`rollback_to`](Self::rollback_to) the restored version first).
    pub fn begin(&self, checkpoint: u64) -> Result<Writer> {
        self.check_newer(checkpoint)?;
        Ok(Writer::new(checkpoint))
    }

    fn check_newer(&self, checkpoint: u64) -> Result<Option<u64>> {
        let newest = self.newest_version()?;
        match newest {
            Some(n) if checkpoint <= n => Err(RuntimeError::internal(format!(
                "checkpoint {checkpoint} is not newer than checkpoint {n} stored in {}; roll back to the restored checkpoint before writing new ones",
                self.path.display()
            ))),
            _ => Ok(newest),
        }
    }

    /// Write the writer's changes as a pending version in one LMDB write transaction
    /// (synced to disk once, at its commit). The version is readable at once but ignored
    /// by [`latest_complete`](Self::latest_complete) until [`promote`](Self::promote)d.
    pub fn commit(&mut self, mut writer: Writer, fields: &ManifestFields) -> Result<PendingInfo> {
        let n = writer.checkpoint;
        let parent = self.check_newer(n)?;
        let base = match parent {
            Some(p) => {
                let txn = self.read_txn()?;
                self.load_version(&txn, p)?.1.operators
            }
            None => BTreeMap::new(),
        };
        // Operator ids: known ones, then new ones in order of appearance.
        let mut next_id = self.ops.values().max().map_or(0, |m| m + 1);
        let mut new_ops = Vec::new();
        let mut order = Vec::with_capacity(writer.ops.len());
        for (i, op) in writer.ops.iter_mut().enumerate() {
            let id = match self.ops.get(&op.name) {
                Some(&id) => id,
                None => {
                    let id = next_id;
                    next_id += 1;
                    new_ops.push((op.name.clone(), id));
                    id
                }
            };
            op.sort_dedup();
            order.push((id, i));
        }
        order.sort_unstable();
        for name in writer.meta.keys() {
            if name.len() > META_NAME_MAX {
                return Err(RuntimeError::internal(format!(
                    "checkpoint meta name `{name}` is longer than {META_NAME_MAX} bytes"
                )));
            }
        }

        let dbs = self.dbs;
        let worker = self.worker;
        let path = self.path.clone();
        let writer = &writer;
        let (manifest, puts, deletes) = self.write("commit a checkpoint", writer.bytes, |txn| {
            for (name, id) in &new_ops {
                dbs.operators.put(txn, name.as_bytes(), &id.to_be_bytes())?;
            }
            let mut manifest = Manifest {
                encoding: STATE_ENCODING_VERSION,
                job: fields.job.clone(),
                plan_fingerprint: fields.plan_fingerprint,
                checkpoint: n,
                epoch: fields.epoch,
                worker,
                parent,
                operators: base.clone(),
                meta: Digest::default(),
            };
            for (name, range) in &fields.key_groups {
                manifest.operators.entry(name.clone()).or_default().key_groups = Some(range.clone());
            }
            let (mut key, mut val, mut lkey, mut scratch) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let (mut puts, mut deletes) = (0u64, 0u64);
            for &(id, i) in &order {
                let op = &writer.ops[i];
                let entry = manifest.operators.entry(op.name.clone()).or_default();
                let range = entry.key_groups.clone();
                let digest = &mut entry.digest;
                for c in op.changes() {
                    if let Some(r) = &range {
                        if !r.contains(&c.key_group) {
                            return Err(TxnError::Fail(RuntimeError::internal(format!(
                                "operator `{}` wrote key group {} to its checkpoint, outside its key groups {r:?}",
                                op.name, c.key_group
                            ))));
                        }
                    }
                    data_key(&mut key, id, c.prefix, n);
                    let head = key.len() - 8;
                    // The newest stored entry of this key (every stored version is older).
                    let prev = match dbs.data.get_greater_than_or_equal_to(txn, &key)? {
                        Some((k, v)) if k.len() == key.len() && k[..head] == key[..head] => {
                            let bad = || {
                                TxnError::Fail(RuntimeError::user(format!(
                                    "checkpoint store {} is damaged: a stored entry of operator `{}` is malformed; \
                                     restore a savepoint, or move the directory away to start without state",
                                    path.display(),
                                    op.name
                                )))
                            };
                            let pk = parse_data_key(k).ok_or_else(bad)?;
                            match parse_value(v).ok_or_else(bad)? {
                                Val::Put { long_key, value } => {
                                    if long_key.is_some_and(|lk| lk != c.key) {
                                        return Err(TxnError::Fail(RuntimeError::internal(format!(
                                            "two keys of operator `{}` have the same 128-bit hash; please report this",
                                            op.name
                                        ))));
                                    }
                                    digest.sub(entry_hash(&mut scratch, c.key_group, c.key, value));
                                    Some((pk.version, true))
                                }
                                Val::Del => Some((pk.version, false)),
                            }
                        }
                        _ => None,
                    };
                    match c.value {
                        // Deleting a key that is not there changes nothing.
                        None if !matches!(prev, Some((_, true))) => continue,
                        None => deletes += 1,
                        Some(v) => {
                            puts += 1;
                            digest.add(entry_hash(&mut scratch, c.key_group, c.key, v));
                        }
                    }
                    encode_value(&mut val, c.key, c.value);
                    dbs.data.put(txn, &key, &val)?;
                    log_key(&mut lkey, n, id, c.prefix);
                    let (lval, len) = log_value(c.value.is_none(), prev.map(|(v, _)| v));
                    dbs.log.put_with_flags(txn, PutFlags::APPEND, &lkey, &lval[..len])?;
                }
            }
            for (name, bytes) in &writer.meta {
                dbs.meta.put(txn, &super::encoding::meta_key(n, name), bytes)?;
                manifest.meta.add(meta_hash(name.as_bytes(), bytes));
            }
            dbs.versions.put(txn, &n.to_be_bytes(), &encode_version(STATUS_PENDING, &manifest)?)?;
            Ok((manifest, puts, deletes))
        })?;
        self.ops.extend(new_ops);
        Ok(PendingInfo {
            checkpoint: n,
            puts,
            deletes,
            manifest,
        })
    }

    /// Mark a stored version complete: every worker committed it. Idempotent.
    pub fn promote(&mut self, checkpoint: u64) -> Result<()> {
        let dbs = self.dbs;
        let path = self.path.clone();
        self.write("promote a checkpoint", 0, |txn| {
            let key = checkpoint.to_be_bytes();
            let Some(raw) = dbs.versions.get(txn, &key)? else {
                return Err(TxnError::Fail(RuntimeError::internal(format!(
                    "cannot promote checkpoint {checkpoint}: it is not stored in {}",
                    path.display()
                ))));
            };
            if raw.first() == Some(&STATUS_COMPLETE) {
                return Ok(());
            }
            let mut v = raw.to_vec();
            v[0] = STATUS_COMPLETE;
            dbs.versions.put(txn, &key, &v)?;
            Ok(())
        })
    }

    /// Keep the newest `keep` complete versions and every pending version newer than the
    /// newest complete one; drop the others (older complete ones, and pending ones that a
    /// newer complete version superseded) and delete the data entries no kept version reads.
    pub fn retain(&mut self, keep: usize) -> Result<RetainInfo> {
        if keep == 0 {
            return Err(RuntimeError::user(
                "retaining 0 checkpoints would drop the one to restore from; retain at least 1",
            ));
        }
        let versions = self.versions()?;
        let Some(newest_complete) = versions
            .iter()
            .rev()
            .find(|v| v.complete)
            .map(|v| v.checkpoint)
        else {
            return Ok(RetainInfo::default());
        };
        let kept: BTreeSet<u64> = versions
            .iter()
            .rev()
            .filter(|v| v.complete)
            .take(keep)
            .map(|v| v.checkpoint)
            .chain(
                versions
                    .iter()
                    .filter(|v| !v.complete && v.checkpoint > newest_complete)
                    .map(|v| v.checkpoint),
            )
            .collect();
        let dropped: Vec<u64> = versions
            .iter()
            .map(|v| v.checkpoint)
            .filter(|c| !kept.contains(c))
            .collect();
        let Some(&oldest_kept) = kept.first() else {
            return Ok(RetainInfo::default());
        };
        if dropped.is_empty() {
            return Ok(RetainInfo::default());
        }
        // A dropped pending version between kept ones leaves a gap to look at too.
        let gap = dropped.iter().any(|&d| d > oldest_kept);
        let dbs = self.dbs;
        let path = self.path.clone();
        let malformed = || {
            TxnError::Fail(RuntimeError::user(format!(
                "checkpoint store {} is damaged: its change log has a malformed entry; restore a savepoint, or move the directory away to start without state",
                path.display()
            )))
        };
        let removed = self.write("drop old checkpoints", 0, |txn| {
            for &d in &dropped {
                dbs.versions.delete(txn, &d.to_be_bytes())?;
                let (lo, hi) = version_prefix(d);
                dbs.meta
                    .delete_range(txn, &(Bound::Included(&lo[..]), upper(&hi)))?;
            }
            let mut removed = 0u64;
            let mut k = Vec::new();
            // Records of versions up to the oldest kept one: the entry each replaced is
            // read by no kept version (all of them are at or above the replacing one).
            let (_, hi) = version_prefix(oldest_kept);
            let records = collect_log(dbs.log, txn, (Bound::Unbounded, upper(&hi)), &malformed)?;
            for r in &records {
                let Some(a) = r.prev else { continue };
                k.clear();
                k.extend_from_slice(&r.entry);
                k.extend_from_slice(&inv(a));
                if dbs.data.delete(txn, &k)? {
                    removed += 1;
                }
                // A deletion with nothing older left to hide is not needed either.
                if r.delete && !has_older(dbs.data, txn, &r.entry, r.version)? {
                    k.truncate(r.entry.len());
                    k.extend_from_slice(&inv(r.version));
                    if dbs.data.delete(txn, &k)? {
                        removed += 1;
                    }
                }
            }
            dbs.log.delete_range(txn, &(Bound::Unbounded, upper(&hi)))?;
            if gap {
                // Entries written by a dropped version and replaced before the next kept one.
                let (lo, _) = version_prefix(oldest_kept);
                let records = collect_log(
                    dbs.log,
                    txn,
                    (Bound::Excluded(&lo[..]), Bound::Unbounded),
                    &malformed,
                )?;
                for r in &records {
                    let Some(a) = r.prev else { continue };
                    if kept.range(a..r.version).next().is_none() {
                        k.clear();
                        k.extend_from_slice(&r.entry);
                        k.extend_from_slice(&inv(a));
                        if dbs.data.delete(txn, &k)? {
                            removed += 1;
                        }
                    }
                }
            }
            Ok(removed)
        })?;
        Ok(RetainInfo {
            dropped,
            entries_removed: removed,
        })
    }

    /// Discard every version newer than `checkpoint` (pending or complete), so that the
    /// store reads as it did right after `checkpoint` and the next [`begin`](Self::begin)
    /// continues from it. `None` discards every version. Returns the discarded versions.
    pub fn rollback_to(&mut self, checkpoint: Option<u64>) -> Result<Vec<u64>> {
        let versions = self.versions()?;
        if let Some(c) = checkpoint {
            if !versions.iter().any(|v| v.checkpoint == c) {
                return Err(RuntimeError::user(format!(
                    "cannot roll back to checkpoint {c}: it is not stored in {} (stored: {:?})",
                    self.path.display(),
                    versions.iter().map(|v| v.checkpoint).collect::<Vec<_>>()
                )));
            }
        }
        let doomed: Vec<u64> = versions
            .iter()
            .map(|v| v.checkpoint)
            .filter(|&v| checkpoint.is_none_or(|c| v > c))
            .collect();
        if doomed.is_empty() {
            return Ok(doomed);
        }
        let dbs = self.dbs;
        let path = self.path.clone();
        let malformed = || {
            TxnError::Fail(RuntimeError::user(format!(
                "checkpoint store {} is damaged: its change log has a malformed entry; restore a savepoint, or move the directory away to start without state",
                path.display()
            )))
        };
        self.write("roll back checkpoints", 0, |txn| {
            let Some(c) = checkpoint else {
                for db in [dbs.data, dbs.log, dbs.versions, dbs.meta] {
                    db.clear(txn)?;
                }
                return Ok(());
            };
            // Entries of every version above the target, including versions that retention
            // dropped in a gap (their entries stay readable by later versions until then).
            let (_, above) = version_prefix(c);
            let Some(above) = above else { return Ok(()) };
            let range = (Bound::Included(&above[..]), Bound::Unbounded);
            let mut k = Vec::new();
            for r in collect_log(dbs.log, txn, range, &malformed)? {
                k.clear();
                k.extend_from_slice(&r.entry);
                k.extend_from_slice(&inv(r.version));
                dbs.data.delete(txn, &k)?;
            }
            dbs.log.delete_range(txn, &range)?;
            dbs.meta.delete_range(txn, &range)?;
            dbs.versions.delete_range(txn, &range)?;
            Ok(())
        })?;
        Ok(doomed)
    }

    /// A reader of the state as of `checkpoint` (pending or complete).
    pub fn reader(&self, checkpoint: u64) -> Result<Reader<'_>> {
        let txn = self.read_txn()?;
        let (complete, manifest) = self.load_version(&txn, checkpoint)?;
        Ok(Reader {
            store: self,
            txn,
            version: checkpoint,
            complete,
            manifest,
        })
    }

    /// Call `f(decoded key, stored value, key, value)` for every entry a reader of
    /// `version` sees, in key order.
    pub(crate) fn for_each_visible<E: From<RuntimeError>>(
        &self,
        txn: &RoTxn<'_, WithoutTls>,
        version: u64,
        mut f: impl FnMut(&DataKey<'_>, &[u8], &[u8], &[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let mut newest = Newest::default();
        for item in self.dbs.data.iter(txn).map_err(|e| self.lmdb(e))? {
            let (k, v) = item.map_err(|e| self.lmdb(e))?;
            let dk = parse_data_key(k)
                .ok_or_else(|| self.damaged(Some(version), "a data key is malformed"))?;
            if !newest.visible(dk.prefix, dk.version, version) {
                continue;
            }
            match parse_value(v) {
                Some(Val::Del) => {}
                Some(Val::Put { long_key, value }) => {
                    let key = long_key
                        .or(dk.inline_key)
                        .ok_or_else(|| self.damaged(Some(version), "a long key lost its key"))?;
                    f(&dk, v, key, value)?;
                }
                None => {
                    return Err(self
                        .damaged(Some(version), "a data value is malformed")
                        .into())
                }
            }
        }
        Ok(())
    }

    /// Recompute a version's record counts and checksums from its data and compare them
    /// with its manifest. Reports missing, extra, altered or unreadable entries.
    pub fn verify(&self, checkpoint: u64) -> Result<()> {
        let txn = self.read_txn()?;
        let (_, manifest) = self.load_version(&txn, checkpoint)?;
        let names: HashMap<u32, &str> = self.ops.iter().map(|(n, &id)| (id, n.as_str())).collect();
        let mut found: HashMap<u32, Digest> = HashMap::new();
        let mut scratch = Vec::new();
        self.for_each_visible(&txn, checkpoint, |dk, _, key, value| {
            found
                .entry(dk.op)
                .or_default()
                .add(entry_hash(&mut scratch, dk.key_group, key, value));
            Ok::<_, RuntimeError>(())
        })?;
        let mut actual: BTreeMap<&str, Digest> = BTreeMap::new();
        for (id, d) in found {
            let name = names.get(&id).ok_or_else(|| {
                self.damaged(
                    Some(checkpoint),
                    &format!("it holds entries of unknown operator id {id}"),
                )
            })?;
            actual.insert(name, d);
        }
        for (name, op) in &manifest.operators {
            let got = actual.remove(name.as_str()).unwrap_or_default();
            if got.records != op.digest.records {
                return Err(self.damaged(
                    Some(checkpoint),
                    &format!(
                        "operator `{name}` has {} records where its manifest says {} (entries are missing or extra)",
                        got.records, op.digest.records
                    ),
                ));
            }
            if got.checksum != op.digest.checksum {
                return Err(self.damaged(
                    Some(checkpoint),
                    &format!("the state of operator `{name}` does not match its checksum (entries were altered)"),
                ));
            }
        }
        if let Some((name, d)) = actual.into_iter().next() {
            return Err(self.damaged(
                Some(checkpoint),
                &format!(
                    "it holds {} records of operator `{name}`, which its manifest does not list",
                    d.records
                ),
            ));
        }
        let mut meta = Digest::default();
        let (lo, hi) = version_prefix(checkpoint);
        let range = (Bound::Included(&lo[..]), upper(&hi));
        for item in self
            .dbs
            .meta
            .range(&txn, &range)
            .map_err(|e| self.lmdb(e))?
        {
            let (k, v) = item.map_err(|e| self.lmdb(e))?;
            meta.add(meta_hash(&k[8..], v));
        }
        if meta != manifest.meta {
            return Err(self.damaged(
                Some(checkpoint),
                &format!(
                    "its {} meta entries do not match the manifest's {} entries and checksum",
                    meta.records, manifest.meta.records
                ),
            ));
        }
        Ok(())
    }

    /// The newest complete version that [`verify`](Self::verify)s, falling back past damaged
    /// ones (and saying why each was passed over).
    pub fn latest_valid_complete(&self) -> Result<LatestValid> {
        let mut rejected = Vec::new();
        for v in self.versions()?.iter().rev().filter(|v| v.complete) {
            match self.verify(v.checkpoint) {
                Ok(()) => {
                    return Ok(LatestValid {
                        checkpoint: Some(v.checkpoint),
                        rejected,
                    })
                }
                Err(e) => rejected.push((v.checkpoint, e)),
            }
        }
        Ok(LatestValid {
            checkpoint: None,
            rejected,
        })
    }

    /// Entry counts and sizes.
    pub fn stats(&self) -> Result<StoreStats> {
        let txn = self.read_txn()?;
        let data_entries = self.dbs.data.len(&txn).map_err(|e| self.lmdb(e))?;
        let log_entries = self.dbs.log.len(&txn).map_err(|e| self.lmdb(e))?;
        let versions = self.dbs.versions.len(&txn).map_err(|e| self.lmdb(e))? as usize;
        drop(txn);
        let file_bytes = fs::metadata(self.path.join("data.mdb"))
            .map(|m| m.len())
            .unwrap_or(0);
        Ok(StoreStats {
            data_entries,
            log_entries,
            versions,
            file_bytes,
            map_size: self.env.info().map_size,
        })
    }
}

/// Read log records in `range` as `(version, op | prefix, previous version)`.
fn collect_log(
    log: Db,
    txn: &RwTxn<'_>,
    range: (Bound<&[u8]>, Bound<&[u8]>),
    malformed: &impl Fn() -> TxnError,
) -> TxnResult<Vec<LogRecord>> {
    let mut out = Vec::new();
    for item in log.range(txn, &range)? {
        let (k, v) = item?;
        out.push(parse_log(k, v).ok_or_else(malformed)?);
    }
    Ok(out)
}

/// Whether `entry` (`op | prefix`) has a stored version older than `version`.
fn has_older(data: Db, txn: &RwTxn<'_>, entry: &[u8], version: u64) -> TxnResult<bool> {
    let Some(older) = version.checked_sub(1) else {
        return Ok(false);
    };
    let mut k = Vec::with_capacity(entry.len() + 8);
    k.extend_from_slice(entry);
    k.extend_from_slice(&inv(older));
    Ok(matches!(
        data.get_greater_than_or_equal_to(txn, &k)?,
        Some((found, _)) if found.len() == k.len() && found.starts_with(entry)
    ))
}

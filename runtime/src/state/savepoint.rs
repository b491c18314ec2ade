//! Savepoints: a completed version copied to a self-contained directory, and read back.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use heed::PutFlags;

use super::encoding::{data_key, entry_hash, meta_hash, STATUS_COMPLETE};
use super::manifest::{Digest, Manifest, STATE_ENCODING_VERSION};
use super::reader::Reader;
use super::store::{encode_version, CheckpointStore, TxnError, INITIAL_MAP_SIZE};
use crate::error::{Result, RuntimeError};

/// The savepoint's manifest file, beside its `data.mdb`.
pub const MANIFEST_FILE: &str = "manifest.json";

/// A savepoint opened for reading: one complete version of one worker's state.
#[derive(Debug)]
pub struct Savepoint {
    store: CheckpointStore,
    manifest: Manifest,
}

impl Savepoint {
    /// The savepoint's manifest (the same as its `manifest.json`).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The checkpoint id it was taken from.
    pub fn checkpoint(&self) -> u64 {
        self.manifest.checkpoint
    }

    /// A reader of its state.
    pub fn reader(&self) -> Result<Reader<'_>> {
        self.store.reader(self.manifest.checkpoint)
    }

    /// Recompute its counts and checksums (see [`CheckpointStore::verify`]).
    pub fn verify(&self) -> Result<()> {
        self.store.verify(self.manifest.checkpoint)
    }

    /// The savepoint's directory.
    pub fn path(&self) -> &Path {
        self.store.path()
    }
}

fn io_error(path: &Path, doing: &str, e: std::io::Error) -> RuntimeError {
    let msg = format!(
        "cannot {doing} {}: {e}; check the directory's permissions and free space",
        path.display()
    );
    if e.kind() == ErrorKind::PermissionDenied {
        RuntimeError::user(msg)
    } else {
        RuntimeError::external(msg)
    }
}

impl CheckpointStore {
    /// Copy complete version `checkpoint` to `dest` (a new directory) as a savepoint: an
    /// LMDB environment holding only that version, written in key order (compact), plus
    /// `manifest.json`. The copy recomputes the checksums, so a damaged version is refused
    /// rather than copied. The directory appears only once complete.
    pub fn copy_to(&self, checkpoint: u64, dest: &Path) -> Result<Manifest> {
        if dest.exists() {
            return Err(RuntimeError::user(format!(
                "savepoint directory {} already exists; choose a new directory for the savepoint",
                dest.display()
            )));
        }
        let src = self.read_txn()?;
        let (complete, manifest) = self.load_version(&src, checkpoint)?;
        if !complete {
            return Err(RuntimeError::user(format!(
                "checkpoint {checkpoint} in {} is not complete; savepoints are taken of complete checkpoints",
                self.path.display()
            )));
        }
        let mut partial = PathBuf::from(dest);
        partial.as_mut_os_string().push(".partial");
        if partial.exists() {
            fs::remove_dir_all(&partial)
                .map_err(|e| io_error(&partial, "remove the leftover", e))?;
        }
        fs::create_dir_all(&partial).map_err(|e| io_error(&partial, "create", e))?;
        let result = self.fill_savepoint(&src, &partial, &manifest);
        drop(src);
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&partial);
            return Err(e);
        }
        // The environment is closed (dropped in fill_savepoint); its lock file is not needed.
        let _ = fs::remove_file(partial.join("lock.mdb"));
        fs::rename(&partial, dest).map_err(|e| io_error(dest, "create", e))?;
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the rename durable; not every file system supports syncing a directory.
            let _ = fs::File::open(parent).and_then(|d| d.sync_all());
        }
        Ok(manifest)
    }

    fn fill_savepoint(
        &self,
        src: &heed::RoTxn<'_, heed::WithoutTls>,
        dir: &Path,
        manifest: &Manifest,
    ) -> Result<()> {
        let version = manifest.checkpoint;
        let mut out = CheckpointStore::open_at(dir, manifest.worker, INITIAL_MAP_SIZE)?;
        let reserve = fs::metadata(self.path.join("data.mdb"))
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        let dbs = out.dbs;
        let ops = self.ops.clone();
        let names: std::collections::HashMap<u32, String> =
            ops.iter().map(|(n, &id)| (id, n.clone())).collect();
        let out_path = out.path.clone();
        out.write("write a savepoint", reserve, |txn| {
            for (name, id) in &ops {
                dbs.operators.put(txn, name.as_bytes(), &id.to_be_bytes())?;
            }
            // Copy every visible entry, relabelled with the savepoint's version. Keys come in
            // order and stay in order, so LMDB appends (a compact file).
            let mut digests: std::collections::HashMap<u32, Digest> = std::collections::HashMap::new();
            let (mut key, mut scratch) = (Vec::new(), Vec::new());
            self.for_each_visible(src, version, |dk, raw_value, k, value| {
                digests.entry(dk.op).or_default().add(entry_hash(&mut scratch, dk.key_group, k, value));
                data_key(&mut key, dk.op, &dk.prefix[4..], version);
                dbs.data.put_with_flags(txn, PutFlags::APPEND, &key, raw_value)?;
                Ok::<_, TxnError>(())
            })?;
            for (id, got) in &digests {
                let name = names.get(id).map_or("?", String::as_str);
                let want = manifest.operators.get(name).map(|o| o.digest).unwrap_or_default();
                if *got != want {
                    return Err(TxnError::Fail(self.damaged(
                        Some(version),
                        &format!("operator `{name}` does not match its manifest, so no savepoint was written"),
                    )));
                }
            }
            let expected: u64 = manifest.operators.values().map(|o| o.digest.records).sum();
            let copied: u64 = digests.values().map(|d| d.records).sum();
            if expected != copied {
                return Err(TxnError::Fail(self.damaged(
                    Some(version),
                    &format!("it has {copied} records where its manifest says {expected}, so no savepoint was written"),
                )));
            }
            let mut meta = Digest::default();
            let (lo, hi) = (version.to_be_bytes(), version.checked_add(1).map(u64::to_be_bytes));
            let upper = hi.as_ref().map_or(std::ops::Bound::Unbounded, |h| std::ops::Bound::Excluded(&h[..]));
            for item in self.dbs.meta.range(src, &(std::ops::Bound::Included(&lo[..]), upper))? {
                let (k, v) = item?;
                meta.add(meta_hash(&k[8..], v));
                dbs.meta.put(txn, k, v)?;
            }
            if meta != manifest.meta {
                return Err(TxnError::Fail(self.damaged(
                    Some(version),
                    "its meta entries do not match its manifest, so no savepoint was written",
                )));
            }
            let v = encode_version(STATUS_COMPLETE, manifest)?;
            dbs.versions.put(txn, &version.to_be_bytes(), &v)?;
            Ok(())
        })?;
        drop(out);
        let json = serde_json::to_string_pretty(manifest).map_err(|e| {
            RuntimeError::internal(format!("cannot encode a checkpoint manifest: {e}"))
        })?;
        let file = out_path.join(MANIFEST_FILE);
        let mut f = fs::File::create(&file).map_err(|e| io_error(&file, "create", e))?;
        f.write_all(json.as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.sync_all())
            .map_err(|e| io_error(&file, "write", e))?;
        Ok(())
    }
}

/// Open a savepoint written by [`CheckpointStore::copy_to`] and check that its data and
/// `manifest.json` agree.
pub fn open_savepoint(dir: &Path) -> Result<Savepoint> {
    if !dir.is_dir() {
        return Err(RuntimeError::user(format!(
            "savepoint directory {} does not exist or is not a directory; give the directory a savepoint was written to",
            dir.display()
        )));
    }
    let file = dir.join(MANIFEST_FILE);
    let text = match fs::read(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(RuntimeError::user(format!(
                "{} is not a savepoint: it has no {MANIFEST_FILE}; give the directory a savepoint was written to",
                dir.display()
            )))
        }
        Err(e) => return Err(io_error(&file, "read", e)),
    };
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| {
        RuntimeError::user(format!(
            "{} cannot be read ({e}); the savepoint is damaged",
            file.display()
        ))
    })?;
    if manifest.encoding != STATE_ENCODING_VERSION {
        return Err(RuntimeError::user(format!(
            "savepoint {} was written with state encoding {}, and this build reads encoding {STATE_ENCODING_VERSION}; \
             restore it with the weir version that wrote it",
            dir.display(),
            manifest.encoding
        )));
    }
    if !dir.join("data.mdb").is_file() {
        return Err(RuntimeError::user(format!(
            "savepoint {} has no data.mdb; the savepoint is incomplete",
            dir.display()
        )));
    }
    let store = CheckpointStore::open_at(dir, manifest.worker, INITIAL_MAP_SIZE)?;
    let versions = store.versions()?;
    let stored = store.manifest(manifest.checkpoint)?;
    if versions.len() != 1 || !versions[0].complete || stored != manifest {
        return Err(RuntimeError::user(format!(
            "savepoint {}: its data and {MANIFEST_FILE} disagree; the savepoint is damaged",
            dir.display()
        )));
    }
    Ok(Savepoint { store, manifest })
}

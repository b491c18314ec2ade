//! Savepoints of a whole job (Flink's savepoints): every worker's state at one complete
//! checkpoint, copied into one portable directory, and restored by a later run on any
//! cluster shape — state is redistributed by key group, sources that can re-split their
//! remaining input do so.
//!
//! Layout: `DIR/savepoint.json` ([`SavepointInfo`]) and `DIR/worker-<slot>/`, one
//! [`state::Savepoint`](crate::state::Savepoint) per worker slot of the job that wrote it
//! (an LMDB environment holding that one version, plus its `manifest.json`). Operators are
//! matched by name, not by plan fingerprint, so a savepoint survives a new build of the job.

use crate::error::{Result, RuntimeError};
use crate::state::{open_savepoint, CheckpointStore, Savepoint};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The file describing a savepoint, in its directory.
pub const SAVEPOINT_FILE: &str = "savepoint.json";

/// What a savepoint holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointInfo {
    /// The job that wrote it.
    pub job: String,
    /// The checkpoint it was taken from.
    pub checkpoint: u64,
    /// The job's number of key groups; state can only be restored with the same number.
    pub max_parallelism: u32,
    /// The worker slots whose state it holds (`worker-<slot>/`).
    pub workers: Vec<usize>,
}

/// The worker slots with a store under a job's checkpoint directory, in order.
fn worker_slots(dir: &Path) -> Result<Vec<usize>> {
    let entries = fs::read_dir(dir).map_err(|e| {
        RuntimeError::user(format!(
            "cannot read the checkpoint directory {}: {e}; give the --checkpoint-dir the job runs with",
            dir.display()
        ))
    })?;
    let mut slots: Vec<usize> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("worker-"))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    slots.sort_unstable();
    Ok(slots)
}

/// Write a savepoint of the job whose checkpoints are in `job_dir` (`--checkpoint-dir`
/// joined with the job's name) to `target`, a new directory: the newest checkpoint every
/// worker store there completed, or `checkpoint`. The job may be running: checkpoints are
/// read in LMDB read transactions, which see one version whatever the job writes meanwhile.
/// The directory appears only once complete.
pub fn take(
    job_dir: &Path,
    job: &str,
    max_parallelism: u32,
    target: &Path,
    checkpoint: Option<u64>,
) -> Result<SavepointInfo> {
    if target.exists() {
        return Err(RuntimeError::user(format!(
            "savepoint directory {} already exists; choose a new directory for the savepoint",
            target.display()
        )));
    }
    let slots = worker_slots(job_dir)?;
    if slots.is_empty() {
        return Err(RuntimeError::user(format!(
            "{} holds no checkpoints of job `{job}`; run the job with --checkpoint-interval and this --checkpoint-dir first",
            job_dir.display()
        )));
    }
    // A checkpoint every worker committed is marked complete in the stores a moment after
    // the job learns so, and the one chosen may be dropped by retention while copying: try
    // again for a few seconds.
    let start = std::time::Instant::now();
    let deadline = start + std::time::Duration::from_secs(5);
    loop {
        // A store without any checkpoint may belong to a worker that hosts no state, or to
        // one whose first checkpoint is being written: wait a moment before accepting it.
        let allow_empty = start.elapsed() > std::time::Duration::from_secs(2);
        match try_take(
            job_dir,
            job,
            max_parallelism,
            target,
            checkpoint,
            &slots,
            allow_empty,
        ) {
            Ok(info) => return Ok(info),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
}

/// The checkpoint stores this process's workers have open (LMDB lets a process open an
/// environment once, so a savepoint taken from inside the job — the REST API on process 0 —
/// must use them rather than open them again).
static OWN_STORES: ByPath<std::sync::Mutex<CheckpointStore>> = ByPath::new();

/// Register a worker's open store.
pub(crate) fn register_store(store: &std::sync::Arc<std::sync::Mutex<CheckpointStore>>) {
    let path = match store.lock() {
        Ok(s) => s.path().to_path_buf(),
        Err(_) => return,
    };
    let _ = OWN_STORES.get_or_open(&path, || Ok(std::sync::Arc::clone(store)));
}

/// A store to copy from: this process's own (shared with its worker) or opened read-only.
enum StoreRef {
    Opened(CheckpointStore),
    Own(std::sync::Arc<std::sync::Mutex<CheckpointStore>>),
}

impl StoreRef {
    fn open(job_dir: &Path, worker: usize) -> Result<Self> {
        let path = job_dir.join(format!("worker-{worker}"));
        match OWN_STORES.get(&path) {
            Some(st) => Ok(StoreRef::Own(st)),
            None => CheckpointStore::open_existing(job_dir, worker).map(StoreRef::Opened),
        }
    }
    fn with<R>(&self, f: impl FnOnce(&CheckpointStore) -> Result<R>) -> Result<R> {
        match self {
            StoreRef::Opened(st) => f(st),
            StoreRef::Own(st) => {
                let st = st
                    .lock()
                    .map_err(|_| RuntimeError::internal("a checkpoint store lock is poisoned"))?;
                f(&st)
            }
        }
    }
}

fn try_take(
    job_dir: &Path,
    job: &str,
    max_parallelism: u32,
    target: &Path,
    checkpoint: Option<u64>,
    slots: &[usize],
    allow_empty: bool,
) -> Result<SavepointInfo> {
    let stores = slots
        .iter()
        .map(|&w| StoreRef::open(job_dir, w))
        .collect::<Result<Vec<_>>>()?;
    // Complete in every store (a store without any version hosts no state: it is copied
    // only if it has the chosen one).
    let mut common: Option<Vec<u64>> = None;
    let mut hosting = vec![true; stores.len()];
    for (i, st) in stores.iter().enumerate() {
        let versions = st.with(|st| st.versions())?;
        let complete: Vec<u64> = versions
            .iter()
            .filter(|v| v.complete)
            .map(|v| v.checkpoint)
            .collect();
        if versions.is_empty() {
            if !allow_empty {
                return Err(RuntimeError::user(format!(
                    "{} holds no checkpoint yet",
                    job_dir.join(format!("worker-{}", slots[i])).display()
                )));
            }
            hosting[i] = false;
            continue;
        }
        common = Some(match common {
            None => complete,
            Some(c) => c.into_iter().filter(|x| complete.contains(x)).collect(),
        });
    }
    let common = common.unwrap_or_default();
    let chosen = match checkpoint {
        Some(c) if common.contains(&c) => c,
        Some(c) => {
            return Err(RuntimeError::user(format!(
                "checkpoint {c} is not complete in every worker store under {}; complete ones: {common:?}",
                job_dir.display()
            )))
        }
        None => *common.iter().max().ok_or_else(|| {
            RuntimeError::user(format!(
                "no checkpoint under {} is complete on every worker yet; wait for one (the log says `checkpoint complete`) and try again",
                job_dir.display()
            ))
        })?,
    };
    let tmp = in_progress(target);
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| {
        RuntimeError::user(format!(
            "cannot create {}: {e}; choose a writable place for the savepoint",
            tmp.display()
        ))
    })?;
    let mut workers = Vec::new();
    let copied = (|| -> Result<()> {
        for ((st, &w), hosts) in stores.iter().zip(slots).zip(hosting) {
            if !hosts {
                continue;
            }
            // Fails (and the whole savepoint is tried again) if retention dropped the
            // checkpoint since it was chosen.
            let m = st.with(|st| st.copy_to(chosen, &tmp.join(format!("worker-{w}"))))?;
            if m.job != job {
                return Err(RuntimeError::user(format!(
                    "the checkpoints under {} belong to job `{}`, not `{job}`",
                    job_dir.display(),
                    m.job
                )));
            }
            workers.push(w);
        }
        let info = SavepointInfo {
            job: job.to_string(),
            checkpoint: chosen,
            max_parallelism,
            workers: workers.clone(),
        };
        let json = serde_json::to_vec_pretty(&info)
            .map_err(|e| RuntimeError::internal(format!("cannot encode {SAVEPOINT_FILE}: {e}")))?;
        fs::write(tmp.join(SAVEPOINT_FILE), json)
            .map_err(|e| RuntimeError::external(format!("cannot write {}: {e}", tmp.display())))?;
        fs::rename(&tmp, target).map_err(|e| {
            RuntimeError::external(format!(
                "cannot move the savepoint to {}: {e}",
                target.display()
            ))
        })
    })();
    if let Err(e) = copied {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(SavepointInfo {
        job: job.to_string(),
        checkpoint: chosen,
        max_parallelism,
        workers,
    })
}

fn in_progress(target: &Path) -> PathBuf {
    let mut name = target
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".in-progress");
    target.with_file_name(name)
}

/// A savepoint opened for restoring.
pub struct SavepointSet {
    /// What it holds.
    pub info: SavepointInfo,
    /// Where it is.
    pub dir: PathBuf,
    /// One per worker slot of the job that wrote it.
    pub parts: Vec<Savepoint>,
    /// Instances of each operator that took part in the checkpoint, by operator name.
    pub instances: BTreeMap<String, usize>,
}

impl std::fmt::Debug for SavepointSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SavepointSet({}, checkpoint {})",
            self.dir.display(),
            self.info.checkpoint
        )
    }
}

/// The savepoints open in this process: LMDB lets a process open an environment once, so
/// the workers of a process share one.
static OPEN: ByPath<SavepointSet> = ByPath::new();

/// LMDB environments open in this process, by directory: LMDB lets a process open an
/// environment once, so whoever needs one that is open here must share it. Entries die
/// with their last user.
struct ByPath<T>(std::sync::Mutex<Vec<(PathBuf, std::sync::Weak<T>)>>);

impl<T> ByPath<T> {
    const fn new() -> Self {
        ByPath(std::sync::Mutex::new(Vec::new()))
    }
    /// The one open at `path`, or the one `open` opens (and registers).
    fn get_or_open(
        &self,
        path: &Path,
        open: impl FnOnce() -> Result<std::sync::Arc<T>>,
    ) -> Result<std::sync::Arc<T>> {
        let mut list = self
            .0
            .lock()
            .map_err(|_| RuntimeError::internal("a registry of open stores is poisoned"))?;
        list.retain(|(_, w)| w.strong_count() > 0);
        if let Some(t) = list
            .iter()
            .find(|(p, _)| p == path)
            .and_then(|(_, w)| w.upgrade())
        {
            return Ok(t);
        }
        let t = open()?;
        list.push((path.to_path_buf(), std::sync::Arc::downgrade(&t)));
        Ok(t)
    }
    /// The one open at `path`, if any.
    fn get(&self, path: &Path) -> Option<std::sync::Arc<T>> {
        let list = self.0.lock().ok()?;
        list.iter()
            .find(|(p, _)| p == path)
            .and_then(|(_, w)| w.upgrade())
    }
}

/// [`open`], shared by the workers of this process.
pub fn open_shared(
    dir: &Path,
    job: &str,
    max_parallelism: u32,
) -> Result<std::sync::Arc<SavepointSet>> {
    OPEN.get_or_open(dir, || {
        open(dir, job, max_parallelism).map(std::sync::Arc::new)
    })
}

/// Open the savepoint in `dir` for job `job` with `max_parallelism` key groups.
pub fn open(dir: &Path, job: &str, max_parallelism: u32) -> Result<SavepointSet> {
    let file = dir.join(SAVEPOINT_FILE);
    let text = fs::read(&file).map_err(|e| {
        RuntimeError::user(format!(
            "{} is not a savepoint ({} cannot be read: {e}); give the directory `savepoint` wrote",
            dir.display(),
            file.display()
        ))
    })?;
    let info: SavepointInfo = serde_json::from_slice(&text).map_err(|e| {
        RuntimeError::user(format!(
            "{} cannot be read ({e}); the savepoint is damaged",
            file.display()
        ))
    })?;
    if info.job != job {
        return Err(RuntimeError::user(format!(
            "savepoint {} is of job `{}`, and this is job `{job}`; restore it with that job",
            dir.display(),
            info.job
        )));
    }
    if info.max_parallelism != max_parallelism {
        return Err(RuntimeError::user(format!(
            "savepoint {} was taken with max_parallelism {} and this job has {max_parallelism}; state is split into key groups, whose number cannot change: set max_parallelism = {} in #[weir::job]",
            dir.display(),
            info.max_parallelism,
            info.max_parallelism
        )));
    }
    let mut parts = Vec::new();
    let mut instances: BTreeMap<String, usize> = BTreeMap::new();
    for w in &info.workers {
        let sp = open_savepoint(&dir.join(format!("worker-{w}")))?;
        if sp.checkpoint() != info.checkpoint || sp.manifest().job != info.job {
            return Err(RuntimeError::user(format!(
                "savepoint {}: worker-{w} holds checkpoint {} of `{}`, not checkpoint {} of `{}`; the savepoint is damaged",
                dir.display(),
                sp.checkpoint(),
                sp.manifest().job,
                info.checkpoint,
                info.job
            )));
        }
        for name in sp.manifest().operators.keys() {
            if let Some((op, i)) = name.rsplit_once('#') {
                if let Ok(i) = i.parse::<usize>() {
                    let n = instances.entry(op.to_string()).or_default();
                    *n = (*n).max(i + 1);
                }
            }
        }
        parts.push(sp);
    }
    Ok(SavepointSet {
        info,
        dir: dir.to_path_buf(),
        parts,
        instances,
    })
}

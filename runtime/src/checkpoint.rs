//! Periodic checkpoints that are consistent across every worker, process and node, and the
//! restore that resumes from them.
//!
//! The model (ARCHITECTURE.md, "Checkpoints"):
//!
//! - Checkpoint ids are epochs. With `every` epochs per checkpoint interval, checkpoint `c`
//!   is taken after epoch `c` whenever `(c + 1) % every == 0`; it holds exactly the effect
//!   of the records of epochs `≤ c`. Vertices that take part process records in epoch order
//!   and hear [`Event::EpochDone`](crate::vertex::Event) at every epoch boundary before any
//!   record of a later epoch, so a snapshot taken there is a consistent cut; sources record
//!   their position when they move past the checkpoint's epoch.
//! - Every stateful operator, source and sink instance is a [`Participant`] of its worker's
//!   [`Checkpoints`]. Each writes its changes since its previous contribution into that
//!   checkpoint's [`Writer`]; when every participant of the worker contributed (or ended:
//!   its final state then stands for every later checkpoint), the worker commits the
//!   checkpoint to its LMDB store as a pending version.
//! - Completion is global: a small acknowledgement operator on every worker holds a
//!   capability at "newest locally committed + 1"; the frontier of its stream, which timely
//!   computes over all workers, passes `c` exactly when every worker committed `c`. Then
//!   each worker promotes `c`, drops old versions and lets its sinks commit their external
//!   effects (two-phase). When every participant ended and everything is committed, the
//!   capability is dropped and the job can finish.
//! - On start, workers agree (a one-record-per-worker exchange) on the newest checkpoint
//!   that every worker with state has stored, roll their stores back to it, and every
//!   participant restores from it.

use crate::data::{tick_of, STEPS_PER_TICK};
use crate::error::{Result, RuntimeError};
use crate::key::Key;
use crate::state::{CheckpointStore, ManifestFields, Reader, Writer};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timely::scheduling::Activator;

/// Checkpoint settings of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// The job's checkpoint directory: one LMDB store per worker slot under it.
    pub dir: PathBuf,
    /// The checkpoint interval (rounded to whole epochs).
    pub interval: Duration,
    /// Complete checkpoints kept (the newest ones).
    pub retained: usize,
    /// Whether to resume from the newest checkpoint that every worker stored.
    pub restore: bool,
    /// Start from this savepoint (unless a newer checkpoint of this run exists: after a
    /// restart the run resumes from its own checkpoints).
    pub savepoint: Option<PathBuf>,
    /// Start even when the savepoint holds state of operators this job does not have.
    pub allow_non_restored_state: bool,
    /// Copy every completed checkpoint here too (a shared mount), one directory per worker
    /// slot, so that the state of a lost node survives; restores fall back to the copies.
    pub copy_dir: Option<PathBuf>,
}

/// For tests: checkpoint `state` (its first, full snapshot) and restore it into `fresh`,
/// through a real store, as a restart would.
#[cfg(test)]
pub(crate) fn through_a_checkpoint<S: Checkpointed>(state: &mut S, mut fresh: S) -> S {
    let root = tempfile::tempdir().expect("tempdir");
    let cfg = CheckpointConfig::for_tests(root.path());
    let epoch = Duration::from_millis(10);
    let (ck, _) = Checkpoints::open(&cfg, epoch, 0, "job", 1, 128).expect("open");
    ck.restore_to(None).expect("restore");
    let mut p = ck
        .participant("op", 0, 0..128)
        .expect("participant")
        .expect("on");
    ck.seal();
    p.epoch_done(checkpoint_at_tick(0), state)
        .expect("snapshot");
    ck.flush();
    drop((p, ck));
    let (ck, offer) = Checkpoints::open(&cfg, epoch, 0, "job", 1, 128).expect("reopen");
    ck.restore_to(agree(&[offer])).expect("restore");
    let p = ck
        .participant("op", 0, 0..128)
        .expect("participant")
        .expect("on");
    p.restore(&mut fresh).expect("restore");
    fresh
}

impl CheckpointConfig {
    /// Checkpoints under `dir` every `interval`: 2 retained, resuming from the newest, no
    /// savepoint and no copies (the flags' defaults).
    pub fn new(dir: &Path, interval: Duration) -> Self {
        CheckpointConfig {
            dir: dir.to_path_buf(),
            interval,
            retained: 2,
            restore: true,
            savepoint: None,
            allow_non_restored_state: false,
            copy_dir: None,
        }
    }

    /// Checkpoints under `dir` every 10 ms, 2 retained, restoring.
    #[cfg(test)]
    pub(crate) fn for_tests(dir: &Path) -> Self {
        Self::new(dir, Duration::from_millis(10))
    }
}

impl CheckpointConfig {
    /// Epochs per checkpoint for epochs of `epoch`.
    pub fn every(&self, epoch: Duration) -> u64 {
        let e = epoch.as_nanos().max(1);
        (self.interval.as_nanos() / e).max(1) as u64
    }
}

/// Whether checkpoint `c` is taken after epoch `c` with `every` ticks per checkpoint: `c` is
/// the last epoch (step) of a tick `t` with `(t + 1) % every == 0`.
pub fn is_checkpoint(c: u64, every: u64) -> bool {
    c % STEPS_PER_TICK == STEPS_PER_TICK - 1 && (tick_of(c) + 1).is_multiple_of(every)
}

/// The first checkpoint after `last` (or the first of all).
pub fn next_checkpoint(last: Option<u64>, every: u64) -> u64 {
    // The first tick whose last epoch is after `last`, then the first checkpoint tick.
    let t_min = last.map_or(0, |l| (l + 1) / STEPS_PER_TICK);
    let t = (t_min + 1).div_ceil(every) * every - 1;
    t * STEPS_PER_TICK + STEPS_PER_TICK - 1
}

/// The id of the checkpoint taken at the end of tick `t`.
pub fn checkpoint_at_tick(t: u64) -> u64 {
    t * STEPS_PER_TICK + STEPS_PER_TICK - 1
}

/// Serialize checkpointed values (keys, state, positions) compactly.
pub fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>> {
    bincode::serialize(value)
        .map_err(|e| RuntimeError::internal(format!("cannot encode {what} for a checkpoint: {e}")))
}

/// The inverse of [`encode`].
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    bincode::deserialize(bytes).map_err(|e| {
        RuntimeError::user(format!(
            "cannot decode {what} from the checkpoint: {e}; the job's types changed since the checkpoint was taken — start without it (run --restore none) or restore with the build that wrote it"
        ))
    })
}

/// What a participant writes into a checkpoint, and where it reads its state back.
pub struct StateWriter<'a> {
    writer: &'a mut Writer,
    operator: &'a str,
    instance: usize,
    max_parallelism: u32,
}

impl StateWriter<'_> {
    /// Store the state `value` of `key` (in its key group, under its canonical bytes).
    pub fn put_keyed<K: Key, V: Serialize>(&mut self, key: &K, value: &V) -> Result<()> {
        let (kg, kb) = self.locate(key);
        let v = encode("keyed state", &(key, value))?;
        self.put(kg, &kb, &v);
        Ok(())
    }
    /// Store one of several values of `key`, told apart by `sub` (appended to the key's
    /// canonical bytes, which are self-delimiting); read back with
    /// [`StateReader::for_each_keyed`] like any keyed value.
    pub fn put_keyed_sub<K: Key, V: Serialize>(
        &mut self,
        key: &K,
        sub: &[u8],
        value: &V,
    ) -> Result<()> {
        let (kg, mut kb) = self.locate(key);
        kb.extend_from_slice(sub);
        let v = encode("keyed state", &(key, value))?;
        self.put(kg, &kb, &v);
        Ok(())
    }
    /// Record that the value `sub` of `key` is gone.
    pub fn delete_keyed_sub<K: Key>(&mut self, key: &K, sub: &[u8]) {
        let (kg, mut kb) = self.locate(key);
        kb.extend_from_slice(sub);
        self.delete(kg, &kb);
    }
    /// Record that `key` no longer has state.
    pub fn delete_keyed<K: Key>(&mut self, key: &K) {
        let (kg, kb) = self.locate(key);
        self.delete(kg, &kb);
    }
    fn locate<K: Key>(&self, key: &K) -> (u32, Vec<u8>) {
        let mut kb = Vec::with_capacity(16);
        key.write_key_bytes(&mut kb);
        (
            weir_compiler::plan::key_group(key.key_hash(), self.max_parallelism),
            kb,
        )
    }
    /// Store `key` (canonical key bytes) of key group `key_group` with `value`.
    pub fn put(&mut self, key_group: u32, key: &[u8], value: &[u8]) {
        self.writer.put(self.operator, key_group, key, value);
    }
    /// Record that `key` no longer has state.
    pub fn delete(&mut self, key_group: u32, key: &[u8]) {
        self.writer.delete(self.operator, key_group, key);
    }
    /// Store this instance's non-keyed state (a source position, a sink's pending output).
    pub fn put_meta(&mut self, bytes: &[u8]) {
        let name = meta_name(self.operator, self.instance);
        self.writer.put_meta(&name, bytes);
    }
}

/// The state a participant restores from.
pub struct StateReader<'a> {
    /// The worker's own store; from a savepoint: every worker's of the job that wrote it.
    readers: &'a [Reader<'a>],
    operator: &'a str,
    instance: usize,
    key_groups: Range<u32>,
    /// From a savepoint: how many instances of the operator wrote it.
    savepoint_instances: Option<usize>,
    /// Restored from the worker's own store (see [`StateReader::incremental`]).
    incremental: bool,
}

impl StateReader<'_> {
    /// Every `(key, value)` stored with [`StateWriter::put_keyed`] in this instance's key
    /// groups.
    pub fn for_each_keyed<K: Key, V: DeserializeOwned>(
        &self,
        mut f: impl FnMut(K, V),
    ) -> Result<()> {
        self.for_each(|_, _, bytes| {
            let (k, v): (K, V) = decode("keyed state", bytes)?;
            f(k, v);
            Ok(())
        })
    }
    /// Every stored `(key group, key, value)` of this operator instance's key groups.
    pub fn for_each(&self, mut f: impl FnMut(u32, &[u8], &[u8]) -> Result<()>) -> Result<()> {
        for reader in self.readers {
            for item in reader.scan(self.operator, self.key_groups.clone())? {
                let (kg, k, v) = item?;
                f(kg, k, v)?;
            }
        }
        Ok(())
    }
    /// This instance's non-keyed state, if it stored any. From a savepoint taken with
    /// another parallelism: that of instance `instance mod previous parallelism` (a
    /// watermark, a broadcast state — anything the same on every instance or safe to take
    /// from another; sources re-split their input with [`all_meta`](Self::all_meta)).
    pub fn meta(&self) -> Result<Option<&[u8]>> {
        let instance = match self.savepoint_instances {
            Some(n) if n > 0 => self.instance % n,
            _ => self.instance,
        };
        self.meta_of(instance)
    }
    fn meta_of(&self, instance: usize) -> Result<Option<&[u8]>> {
        let name = meta_name(self.operator, instance);
        for reader in self.readers {
            if let Some(m) = reader.meta(&name)? {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }
    /// The parallelism the operator had when the savepoint restored from was taken, if it
    /// differs from `now`.
    pub fn rescaled_from(&self, now: usize) -> Option<usize> {
        self.savepoint_instances.filter(|&n| n != now && n > 0)
    }
    /// The non-keyed state of every instance of the operator that wrote the savepoint, in
    /// instance order (`None`: that instance stored none).
    pub fn all_meta(&self) -> Result<Vec<Option<Vec<u8>>>> {
        let n = self.savepoint_instances.unwrap_or(1);
        (0..n)
            .map(|i| Ok(self.meta_of(i)?.map(<[u8]>::to_vec)))
            .collect()
    }
    /// Whether the state restored is the worker's own checkpoint, so that the next
    /// checkpoint may write only what changed since. From a savepoint or a copy, the
    /// first checkpoint must write everything.
    pub fn incremental(&self) -> bool {
        self.incremental
    }
    /// Whether the state comes from a savepoint (another run's), not from this job's own
    /// checkpoints or their copies.
    pub fn from_savepoint(&self) -> bool {
        self.savepoint_instances.is_some()
    }
}

fn meta_name(operator: &str, instance: usize) -> String {
    format!("{operator}#{instance}")
}

/// State that takes part in checkpoints: operators, source readers and sink writers.
pub trait Checkpointed {
    /// Write what changed since the previous call (the first call: everything) into the
    /// checkpoint. Called at a consistent cut: every record of the checkpoint's epochs and
    /// none of later ones has been applied.
    fn snapshot(&mut self, checkpoint: u64, out: &mut StateWriter<'_>) -> Result<()>;
    /// Load the state of a checkpoint, before any record is processed.
    fn restore(&mut self, checkpoint: u64, from: &StateReader<'_>) -> Result<()>;
    /// The checkpoint `checkpoint` is complete on every worker: make external effects
    /// visible (sinks). Called in checkpoint order.
    fn committed(&mut self, _checkpoint: u64) -> Result<()> {
        Ok(())
    }
}

/// The keys an operator changed since its last checkpoint, so that a checkpoint writes only
/// those. Until the first checkpoint (or a restore) nothing is tracked: that checkpoint
/// writes every key.
pub struct DirtyKeys<K>(Option<std::collections::HashSet<K>>);

impl<K> Default for DirtyKeys<K> {
    fn default() -> Self {
        DirtyKeys(None)
    }
}

impl<K: Key> DirtyKeys<K> {
    /// `key`'s state changed.
    #[inline]
    pub fn touch(&mut self, key: &K) {
        if let Some(d) = &mut self.0 {
            d.insert(key.clone());
        }
    }
    /// Write the keys to write now — every key of `all` the first time, the changed ones
    /// later — with their state from `state` (`None`: the key's state is gone).
    pub fn write<'k, V: Serialize>(
        &mut self,
        out: &mut StateWriter<'_>,
        all: impl Iterator<Item = &'k K>,
        mut state: impl FnMut(&K) -> Result<Option<V>>,
    ) -> Result<()>
    where
        K: 'k,
    {
        let keys: Vec<K> = match self.0.replace(Default::default()) {
            Some(d) => d.into_iter().collect(),
            None => all.cloned().collect(),
        };
        for k in keys {
            match state(&k)? {
                Some(v) => out.put_keyed(&k, &v)?,
                None => out.delete_keyed(&k),
            }
        }
        Ok(())
    }
    /// State was restored from `from`: track changes from now on, unless the next
    /// checkpoint must write everything (a restore from a savepoint).
    pub fn restored(&mut self, from: &StateReader<'_>) {
        self.0 = from.incremental().then(Default::default);
    }
}

/// Something to call when a checkpoint completes globally (a sink's commit).
pub type Committer = Box<dyn FnMut(u64) -> Result<()>>;

struct Pending {
    writer: Writer,
    contributed: Vec<bool>,
}

struct Part {
    name: String,
    instance: usize,
    /// Its final non-keyed state once it ended: stands for every later checkpoint.
    ended: Option<Option<Vec<u8>>>,
}

/// The copy of checkpoint `c` in `dir` (one worker's copies).
fn copy_path(dir: &Path, c: u64) -> PathBuf {
    dir.join(format!("checkpoint-{c}"))
}

/// The checkpoints copied to `dir`, oldest first.
fn copied(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix("checkpoint-"))
                        .and_then(|n| n.parse().ok())
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

/// Copy complete checkpoint `c` of `store` to `dir` and keep the newest `retained` copies.
fn copy_checkpoint(store: &CheckpointStore, dir: &Path, c: u64, retained: usize) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        RuntimeError::user(format!(
            "cannot create the checkpoint copy directory {}: {e}; make --checkpoint-copy-dir writable",
            dir.display()
        ))
    })?;
    let dest = copy_path(dir, c);
    if !dest.exists() {
        store.copy_to(c, &dest)?;
        tracing::debug!(checkpoint = c, dir = %dir.display(), "checkpoint copied");
    }
    let ids = copied(dir);
    for old in ids.iter().take(ids.len().saturating_sub(retained.max(1))) {
        let _ = std::fs::remove_dir_all(copy_path(dir, *old));
    }
    Ok(())
}

/// Work for a worker's background committer thread, done in order.
enum Job {
    /// Write a checkpoint as a pending version.
    Commit(Writer, ManifestFields),
    /// These checkpoints are complete everywhere: promote them, drop old versions.
    Promote(Vec<u64>, usize),
    /// Answer once everything before is done.
    Sync(std::sync::mpsc::Sender<()>),
}

/// The thread that writes a worker's checkpoints to LMDB, so that the worker goes on
/// processing records while a checkpoint is synced (Flink's asynchronous snapshot phase).
struct Background {
    tx: Option<std::sync::mpsc::Sender<Job>>,
    handle: Option<std::thread::JoinHandle<()>>,
    /// Newest checkpoint written, plus one (0: none).
    done: Arc<AtomicU64>,
    error: Arc<Mutex<Option<RuntimeError>>>,
}

impl Background {
    fn start(
        store: Arc<Mutex<CheckpointStore>>,
        worker: usize,
        copies: Option<PathBuf>,
    ) -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let done = Arc::new(AtomicU64::new(0));
        let error = Arc::new(Mutex::new(None));
        let (d2, e2) = (Arc::clone(&done), Arc::clone(&error));
        let handle = std::thread::Builder::new()
            .name(format!("weir-checkpoint-{worker}"))
            .spawn(move || {
                for job in rx {
                    let r = match job {
                        Job::Commit(writer, fields) => {
                            let c = writer.checkpoint();
                            lock(&store)
                                .and_then(|mut st| st.commit(writer, &fields))
                                .map(|info| {
                                    tracing::debug!(
                                        checkpoint = c,
                                        puts = info.puts,
                                        deletes = info.deletes,
                                        "checkpoint committed by this worker"
                                    );
                                    d2.store(c + 1, Ordering::SeqCst);
                                })
                        }
                        Job::Promote(list, retained) => lock(&store).and_then(|mut st| {
                            let newest = list.iter().max().copied();
                            for c in list {
                                st.promote(c)?;
                            }
                            if let (Some(dir), Some(c)) = (&copies, newest) {
                                copy_checkpoint(&st, dir, c, retained)?;
                            }
                            st.retain(retained).map(|_| ())
                        }),
                        Job::Sync(reply) => {
                            let _ = reply.send(());
                            Ok(())
                        }
                    };
                    if let Err(e) = r {
                        if let Ok(mut slot) = e2.lock() {
                            slot.get_or_insert(e);
                        }
                    }
                }
            })
            .map_err(|e| {
                RuntimeError::external(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Background {
            tx: Some(tx),
            handle: Some(handle),
            done,
            error,
        })
    }

    fn send(&self, job: Job) -> Result<()> {
        match &self.tx {
            Some(tx) => tx
                .send(job)
                .map_err(|_| RuntimeError::internal("the checkpoint thread stopped")),
            None => Err(RuntimeError::internal("the checkpoint thread stopped")),
        }
    }

    fn committed(&self) -> Option<u64> {
        self.done.load(Ordering::SeqCst).checked_sub(1)
    }

    fn error(&self) -> Option<RuntimeError> {
        self.error.lock().ok().and_then(|e| e.clone())
    }

    /// Wait until every job sent so far is done.
    fn sync(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.send(Job::Sync(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Finish what was sent (the last promotions), then stop.
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn lock(store: &Mutex<CheckpointStore>) -> Result<std::sync::MutexGuard<'_, CheckpointStore>> {
    store
        .lock()
        .map_err(|_| RuntimeError::internal("the checkpoint store's lock is poisoned"))
}

struct Shared {
    store: Arc<Mutex<CheckpointStore>>,
    background: Background,
    /// Newest checkpoint handed to the background thread.
    queued: Option<u64>,
    /// Checkpoints handed over and not yet known complete everywhere.
    uncompleted: Vec<u64>,
    max_parallelism: u32,
    fields: ManifestFields,
    every: u64,
    retained: usize,
    restored: Option<u64>,
    parts: Vec<Part>,
    pending: BTreeMap<u64, Pending>,
    /// Newest checkpoint complete on every worker (promoted here).
    completed: Option<u64>,
    committers: Vec<Committer>,
    ack: Option<Activator>,
    sealed: bool,
    /// The savepoint this run may start from.
    savepoint: Option<Arc<crate::savepoints::SavepointSet>>,
    /// Where the restored state is read from.
    source: RestoreSource,
    /// This worker's copies of completed checkpoints (`--checkpoint-copy-dir`).
    copies: Option<PathBuf>,
    allow_non_restored_state: bool,
}

/// Where a restore reads its state.
enum RestoreSource {
    /// The worker's own store (or nothing was restored).
    Store,
    /// Every worker's copy in the savepoint (`Shared::savepoint`).
    Savepoint,
    /// This worker's copy of a checkpoint its store lacks (`--checkpoint-copy-dir`).
    Copy(crate::state::Savepoint),
}

impl Shared {
    /// Continue after restored checkpoint `c`: it counts as written, committed and complete.
    fn resume_after(&mut self, c: u64) {
        self.background.done.store(c + 1, Ordering::SeqCst);
        self.queued = Some(c);
        self.completed = Some(c);
    }

    /// Commit every pending checkpoint, in order, that all participants contributed to.
    fn commit_ready(&mut self) -> Result<()> {
        while let Some(mut entry) = self.pending.first_entry() {
            let c = *entry.key();
            let p = entry.get_mut();
            let ready = self
                .parts
                .iter()
                .enumerate()
                .all(|(i, part)| p.contributed[i] || part.ended.is_some());
            if !ready {
                break;
            }
            for (i, part) in self.parts.iter().enumerate() {
                if let (false, Some(Some(meta))) = (p.contributed[i], &part.ended) {
                    p.writer
                        .put_meta(&meta_name(&part.name, part.instance), meta);
                }
            }
            let Some((_, p)) = self.pending.pop_first() else {
                break;
            };
            let bytes = p.writer.bytes as u64;
            crate::metrics::with_current(|m, _| m.checkpoint_written(c, bytes));
            let mut fields = self.fields.clone();
            fields.epoch = c;
            self.background.send(Job::Commit(p.writer, fields))?;
            self.queued = Some(c);
            self.uncompleted.push(c);
            if let Some(a) = &self.ack {
                a.activate();
            }
        }
        Ok(())
    }

    /// Newest checkpoint this worker wrote to its store.
    fn committed(&self) -> Option<u64> {
        self.background.committed()
    }

    fn all_ended(&self) -> bool {
        self.sealed
            && self.parts.iter().all(|p| p.ended.is_some())
            && self.pending.is_empty()
            && self.committed() == self.queued
    }

    /// Every worker committed everything up to `upto`: promote, retain, commit sinks.
    fn complete(&mut self, upto: Option<u64>) -> Result<()> {
        let Some(newest) = self.committed() else {
            return Ok(());
        };
        let target = upto.map_or(newest, |u| u.min(newest));
        if self.completed.is_some_and(|c| c >= target) {
            return Ok(());
        }
        // Versions committed here but not promoted yet, up to the target.
        let fresh: Vec<u64> = self
            .uncompleted
            .iter()
            .copied()
            .filter(|&c| c <= target)
            .collect();
        self.uncompleted.retain(|&c| c > target);
        self.background
            .send(Job::Promote(fresh.clone(), self.retained))?;
        self.completed = Some(target);
        if let Some(&c) = fresh.last() {
            // The metrics hook logs the one line per checkpoint and process.
            if crate::metrics::with_current(|m, _| m.checkpoint_completed(c)).is_none() {
                tracing::info!(checkpoint = c, "checkpoint complete");
            }
        }
        for &c in &fresh {
            for commit in self.committers.iter_mut() {
                commit(c)?;
            }
        }
        Ok(())
    }
}

/// A worker's checkpoint coordinator: `None` inside when checkpoints are off.
#[derive(Clone, Default)]
pub struct Checkpoints(Option<Rc<RefCell<Shared>>>);

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Checkpoints(off)"),
            Some(s) => {
                let s = s.borrow();
                write!(
                    f,
                    "Checkpoints(every {} ticks, restored {:?}, committed {:?})",
                    s.every,
                    s.restored,
                    s.committed()
                )
            }
        }
    }
}

/// What one worker offers when the workers agree on the checkpoint to restore.
pub type Offer = Vec<u64>;

/// The newest checkpoint every worker that has state stored: the restore point. Workers
/// with an empty store host no state (or lost it; restoring then fails on that worker).
pub fn agree(offers: &[Offer]) -> Option<u64> {
    let with_state: Vec<&Offer> = offers.iter().filter(|o| !o.is_empty()).collect();
    let first = with_state.first()?;
    first
        .iter()
        .rev()
        .copied()
        .find(|c| with_state.iter().all(|o| o.contains(c)))
}

impl Checkpoints {
    /// Checkpoints off.
    pub fn off() -> Self {
        Checkpoints(None)
    }

    /// Whether checkpoints are taken.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Open worker `worker`'s store under `cfg.dir` and list what it can offer for restore.
    pub fn open(
        cfg: &CheckpointConfig,
        epoch: Duration,
        worker: usize,
        job: &str,
        plan_fingerprint: u64,
        max_parallelism: u32,
    ) -> Result<(Self, Offer)> {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| {
            RuntimeError::user(format!(
                "cannot create the checkpoint directory {}: {e}; set --checkpoint-dir to a writable directory",
                cfg.dir.display()
            ))
        })?;
        let mut store = CheckpointStore::open(&cfg.dir, worker)?;
        let mut offer = Vec::new();
        let savepoint = match &cfg.savepoint {
            Some(dir) => Some(crate::savepoints::open_shared(dir, job, max_parallelism)?),
            None => None,
        };
        if cfg.restore || savepoint.is_some() {
            // Offer only versions of this job's plan whose data matches their manifest's
            // counts and checksums: a damaged newest checkpoint makes the cluster fall back
            // to the previous one.
            for v in store.versions()? {
                let checked = store
                    .manifest(v.checkpoint)
                    .and_then(|m| m.check_compatible(job, plan_fingerprint))
                    .and_then(|()| store.verify(v.checkpoint));
                match checked {
                    Ok(()) => offer.push(v.checkpoint),
                    Err(e) => tracing::warn!(
                        worker,
                        checkpoint = v.checkpoint,
                        error = %e,
                        "checkpoint cannot be restored; falling back to an older one"
                    ),
                }
            }
        } else {
            let dropped = store.rollback_to(None)?;
            if !dropped.is_empty() {
                tracing::info!(
                    worker,
                    checkpoints = dropped.len(),
                    "starting without state (--restore none): dropped the stored checkpoints"
                );
            }
        }
        let copies = cfg
            .copy_dir
            .as_ref()
            .map(|d| d.join(format!("worker-{worker}")));
        if let (Some(dir), true) = (&copies, cfg.restore) {
            // Copies of checkpoints this store lost (a replaced disk or node).
            for c in copied(dir) {
                if !offer.contains(&c) {
                    offer.push(c);
                }
            }
            offer.sort_unstable();
        }
        if let Some(sp) = &savepoint {
            // The savepoint, or a checkpoint this run took after starting from it.
            let c = sp.info.checkpoint;
            offer.retain(|&v| v > c);
            offer.insert(0, c);
        }
        let store = Arc::new(Mutex::new(store));
        crate::savepoints::register_store(&store);
        let background = Background::start(Arc::clone(&store), worker, copies.clone())?;
        let shared = Shared {
            store,
            background,
            queued: None,
            uncompleted: Vec::new(),
            max_parallelism,
            fields: ManifestFields {
                job: job.to_string(),
                plan_fingerprint,
                epoch: 0,
                key_groups: BTreeMap::new(),
            },
            every: cfg.every(epoch),
            retained: cfg.retained.max(1),
            restored: None,
            parts: Vec::new(),
            pending: BTreeMap::new(),
            completed: None,
            committers: Vec::new(),
            ack: None,
            sealed: false,
            savepoint,
            source: RestoreSource::Store,
            copies,
            allow_non_restored_state: cfg.allow_non_restored_state,
        };
        Ok((Checkpoints(Some(Rc::new(RefCell::new(shared)))), offer))
    }

    /// Roll the store back to the agreed checkpoint (or to nothing) before participants
    /// register.
    pub fn restore_to(&self, agreed: Option<u64>) -> Result<()> {
        let Some(s) = &self.0 else { return Ok(()) };
        let mut s = s.borrow_mut();
        let from_savepoint = match (&s.savepoint, agreed) {
            (Some(sp), Some(c)) if sp.info.checkpoint == c => Some(sp.dir.clone()),
            _ => None,
        };
        if let (Some(dir), Some(c)) = (from_savepoint, agreed) {
            lock(&s.store)?.rollback_to(None)?;
            s.resume_after(c);
            s.restored = Some(c);
            s.source = RestoreSource::Savepoint;
            tracing::info!(checkpoint = c, savepoint = %dir.display(), "restoring from savepoint");
            return Ok(());
        }
        let from_copy = match (&s.copies, agreed) {
            (Some(dir), Some(c)) => {
                let have = lock(&s.store)?.versions()?;
                let path = copy_path(dir, c);
                (!have.iter().any(|v| v.checkpoint == c) && path.is_dir()).then_some(path)
            }
            _ => None,
        };
        if let (Some(path), Some(c)) = (from_copy, agreed) {
            let copy = crate::state::open_savepoint(&path)?;
            lock(&s.store)?.rollback_to(None)?;
            s.resume_after(c);
            s.restored = Some(c);
            s.source = RestoreSource::Copy(copy);
            tracing::info!(checkpoint = c, copy = %path.display(), "restoring from checkpoint (from its copy: this worker's store lacks it)");
            return Ok(());
        }
        let target = {
            let mut store = lock(&s.store)?;
            let have = store.versions()?;
            let target = agreed.filter(|c| have.iter().any(|v| v.checkpoint == *c));
            store.rollback_to(target)?;
            if let Some(c) = target {
                // Every worker stored it, so it is complete even if this one never heard so.
                store.promote(c)?;
            }
            target
        };
        if let Some(c) = target {
            s.resume_after(c);
            tracing::info!(checkpoint = c, "restoring from checkpoint");
        }
        s.restored = agreed;
        Ok(())
    }

    /// The checkpoint this run restored from.
    pub fn restored(&self) -> Option<u64> {
        self.0.as_ref().and_then(|s| s.borrow().restored)
    }

    /// Register a participant: operator `name`'s instance `instance` owning `key_groups`.
    /// `None` when checkpoints are off.
    pub fn participant(
        &self,
        name: &str,
        instance: usize,
        key_groups: Range<u32>,
    ) -> Result<Option<Participant>> {
        let Some(shared) = &self.0 else {
            return Ok(None);
        };
        let mut s = shared.borrow_mut();
        if s.sealed {
            return Err(RuntimeError::internal(
                "a checkpoint participant registered after the dataflow was built",
            ));
        }
        let id = s.parts.len();
        s.parts.push(Part {
            name: name.to_string(),
            instance,
            ended: None,
        });
        for p in s.pending.values_mut() {
            p.contributed.push(false);
        }
        s.fields
            .key_groups
            .insert(meta_name(name, instance), key_groups.clone());
        let restored = s.restored;
        Ok(Some(Participant {
            shared: Rc::clone(shared),
            id,
            name: name.to_string(),
            instance,
            key_groups,
            last: restored,
            every: s.every,
        }))
    }

    /// No more participants: called once the dataflow is built.
    pub fn seal(&self) {
        if let Some(s) = &self.0 {
            s.borrow_mut().sealed = true;
        }
    }

    /// After a restore from a savepoint: refuse when it holds state of an operator this job
    /// (whose operators are `operators`) does not have, unless allowed, since that state
    /// would be lost silently.
    pub fn check_savepoint_coverage<'a>(
        &self,
        operators: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        let Some(s) = &self.0 else { return Ok(()) };
        let s = s.borrow();
        let (RestoreSource::Savepoint, Some(sp)) = (&s.source, &s.savepoint) else {
            return Ok(());
        };
        let ours: std::collections::HashSet<&str> = operators.into_iter().collect();
        let missing = sp.instances.keys().find(|op| !ours.contains(op.as_str()));
        match missing {
            Some(op) if !s.allow_non_restored_state => Err(RuntimeError::user(format!(
                "savepoint {} holds state of operator `{op}`, which this job does not have (state is matched to operators by name); give the operator that name again, or pass --allow-non-restored-state to drop its state",
                sp.dir.display()
            ))),
            Some(op) => {
                tracing::warn!(operator = %op, "the savepoint's state of operator `{op}` is dropped: the job has no operator of that name (--allow-non-restored-state)");
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Call `commit(c)` whenever checkpoint `c` completes on every worker.
    pub fn on_complete(&self, commit: Committer) {
        if let Some(s) = &self.0 {
            s.borrow_mut().committers.push(commit);
        }
    }

    /// The acknowledgement operator's view: the capability time to hold (`None`: drop it).
    pub fn ack_time(&self) -> Option<u64> {
        let s = self.0.as_ref()?;
        let s = s.borrow();
        if s.all_ended() {
            return None;
        }
        Some(s.committed().map_or(0, |c| c + 1))
    }

    /// Whether a checkpoint is still being written in the background (the acknowledgement
    /// operator then looks again soon).
    pub fn writing(&self) -> bool {
        self.0.as_ref().is_some_and(|s| {
            let s = s.borrow();
            s.committed() != s.queued
        })
    }

    /// A failure of the background writer, if any (fatal for the job).
    pub fn background_error(&self) -> Option<RuntimeError> {
        self.0.as_ref().and_then(|s| s.borrow().background.error())
    }

    /// Wait until the background writer did everything handed to it (tests, shutdown).
    pub fn flush(&self) {
        if let Some(s) = &self.0 {
            s.borrow().background.sync();
        }
    }

    /// Where the acknowledgement operator is woken when this worker commits.
    pub fn set_ack_activator(&self, a: Activator) {
        if let Some(s) = &self.0 {
            s.borrow_mut().ack = Some(a);
        }
    }

    /// The acknowledgement frontier moved: every worker committed every checkpoint below
    /// `frontier` (`None`: everything).
    pub fn globally_committed_below(&self, frontier: Option<u64>) -> Result<()> {
        let Some(s) = &self.0 else { return Ok(()) };
        let upto = match frontier {
            Some(0) => return Ok(()),
            Some(f) => Some(f - 1),
            None => None,
        };
        s.borrow_mut().complete(upto)
    }

    /// Checkpoints completed on every worker so far (the newest).
    pub fn completed(&self) -> Option<u64> {
        self.0.as_ref().and_then(|s| s.borrow().completed)
    }
}

/// One stateful operator, source or sink instance taking part in checkpoints.
pub struct Participant {
    shared: Rc<RefCell<Shared>>,
    id: usize,
    name: String,
    instance: usize,
    key_groups: Range<u32>,
    /// The newest checkpoint it contributed to (or restored from).
    last: Option<u64>,
    every: u64,
}

impl Participant {
    /// Load `state` from the restored checkpoint, if the run restored one.
    pub fn restore<S: Checkpointed + ?Sized>(&self, state: &mut S) -> Result<()> {
        let shared = self.shared.borrow();
        let Some(c) = shared.restored else {
            return Ok(());
        };
        let cannot = |e: RuntimeError| {
            RuntimeError::user(format!(
                "cannot restore `{}` instance {} from checkpoint {c}: {e}",
                self.name, self.instance
            ))
        };
        // Where to read: every worker's copy of a savepoint, this worker's copy of a
        // checkpoint its store lost, or its store.
        let store;
        let (readers, savepoint_instances, incremental) =
            if let (RestoreSource::Savepoint, Some(sp)) = (&shared.source, &shared.savepoint) {
                let readers = sp
                    .parts
                    .iter()
                    .map(|p| p.reader())
                    .collect::<Result<Vec<_>>>();
                let n = sp.instances.get(&self.name).copied().unwrap_or(0);
                (readers.map_err(cannot)?, Some(n), false)
            } else if let RestoreSource::Copy(copy) = &shared.source {
                (vec![copy.reader().map_err(cannot)?], None, false)
            } else {
                store = lock(&shared.store)?;
                (vec![store.reader(c).map_err(cannot)?], None, true)
            };
        let from = StateReader {
            readers: &readers,
            operator: &self.name,
            instance: self.instance,
            key_groups: self.key_groups.clone(),
            savepoint_instances,
            incremental,
        };
        state
            .restore(c, &from)
            .map_err(|e| e.in_operator(self.name.clone()))
    }

    /// Every record of epochs `≤ done` was applied and none of later epochs: contribute to
    /// each checkpoint in between (the first gets the changes, the others see none).
    pub fn epoch_done<S: Checkpointed + ?Sized>(&mut self, done: u64, state: &mut S) -> Result<()> {
        let mut c = next_checkpoint(self.last, self.every);
        if c > done {
            return Ok(());
        }
        while c <= done {
            self.contribute(c, state)?;
            c = next_checkpoint(Some(c), self.every);
        }
        self.shared.borrow_mut().commit_ready()
    }

    /// The input ended: contribute the final changes to the next checkpoint; this state
    /// stands for every later one.
    pub fn end<S: Checkpointed + ?Sized>(&mut self, state: &mut S) -> Result<()> {
        let c = next_checkpoint(self.last, self.every);
        let meta = self.contribute(c, state)?;
        let mut s = self.shared.borrow_mut();
        s.parts[self.id].ended = Some(meta);
        s.commit_ready()
    }

    fn contribute<S: Checkpointed + ?Sized>(
        &mut self,
        c: u64,
        state: &mut S,
    ) -> Result<Option<Vec<u8>>> {
        let mut s = self.shared.borrow_mut();
        let s = &mut *s;
        if s.queued.is_some_and(|k| k >= c) {
            return Err(RuntimeError::internal(format!(
                "`{}` contributed to checkpoint {c} after it was committed",
                self.name
            )));
        }
        let n = s.parts.len();
        if !s.pending.contains_key(&c) {
            let writer = Writer::new(c);
            s.pending.insert(
                c,
                Pending {
                    writer,
                    contributed: vec![false; n],
                },
            );
        }
        let Some(p) = s.pending.get_mut(&c) else {
            return Err(RuntimeError::internal("a pending checkpoint vanished"));
        };
        let mut out = StateWriter {
            writer: &mut p.writer,
            operator: &self.name,
            instance: self.instance,
            max_parallelism: s.max_parallelism,
        };
        state
            .snapshot(c, &mut out)
            .map_err(|e| e.in_operator(self.name.clone()))?;
        p.contributed[self.id] = true;
        self.last = Some(c);
        let meta = p
            .writer
            .meta_of(&meta_name(&self.name, self.instance))
            .map(<[u8]>::to_vec);
        Ok(meta)
    }

    /// The checkpoint interval in epochs.
    pub fn every(&self) -> u64 {
        self.every
    }
}

/// Remove the checkpoint stores of `workers`, and their copies (a job that finished, or
/// one that starts from a savepoint).
pub fn remove_checkpoints(cfg: &CheckpointConfig, workers: Range<usize>) {
    remove_stores(&cfg.dir, workers.clone());
    if let Some(copies) = &cfg.copy_dir {
        remove_stores(copies, workers);
    }
}

/// Remove the stores of `workers` under `dir`.
pub fn remove_stores(dir: &Path, workers: Range<usize>) {
    for w in workers {
        let p = dir.join(format!("worker-{w}"));
        if p.exists() {
            if let Err(e) = std::fs::remove_dir_all(&p) {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove a finished job's checkpoint store");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap as Map;

    /// Keyed counts and a position, like an operator plus a source.
    #[derive(Default)]
    struct Counts {
        counts: Map<String, u64>,
        dirty: Vec<String>,
        position: u64,
        restored_from: Option<u64>,
    }

    impl Counts {
        fn add(&mut self, k: &str, n: u64) {
            *self.counts.entry(k.to_string()).or_default() += n;
            self.dirty.push(k.to_string());
            self.position += 1;
        }
    }

    impl Checkpointed for Counts {
        fn snapshot(&mut self, _c: u64, out: &mut StateWriter<'_>) -> Result<()> {
            for k in self.dirty.drain(..) {
                out.put_keyed(&k, &self.counts[&k])?;
            }
            out.put_meta(&encode("position", &self.position)?);
            Ok(())
        }
        fn restore(&mut self, c: u64, from: &StateReader<'_>) -> Result<()> {
            let counts = &mut self.counts;
            from.for_each_keyed(|k: String, v: u64| {
                counts.insert(k, v);
            })?;
            self.position = decode("position", from.meta()?.unwrap())?;
            self.restored_from = Some(c);
            Ok(())
        }
    }

    /// The last epoch of tick `t` (where its checkpoint is taken).
    fn e(t: u64) -> u64 {
        checkpoint_at_tick(t)
    }

    fn config(dir: &Path, restore: bool) -> CheckpointConfig {
        CheckpointConfig {
            interval: Duration::from_millis(200),
            restore,
            ..CheckpointConfig::for_tests(dir)
        }
    }

    fn open(dir: &Path, restore: bool) -> (Checkpoints, Offer) {
        Checkpoints::open(
            &config(dir, restore),
            Duration::from_millis(10),
            0,
            "job",
            7,
            128,
        )
        .unwrap()
    }

    #[test]
    fn a_checkpoint_commits_when_every_participant_contributed_or_ended() {
        let root = tempfile::tempdir().unwrap();
        let (ck, offer) = open(root.path(), true);
        assert!(offer.is_empty());
        ck.restore_to(None).unwrap();
        let (mut a, mut b) = (Counts::default(), Counts::default());
        let mut pa = ck.participant("a", 0, 0..128).unwrap().unwrap();
        let mut pb = ck.participant("b", 0, 0..128).unwrap().unwrap();
        ck.seal();
        ck.flush();
        assert_eq!(ck.ack_time(), Some(0));
        a.add("x", 1);
        // `a` passes checkpoints 19 and 39 at once; `b` has not reached 19: nothing commits.
        pa.epoch_done(e(45), &mut a).unwrap();
        ck.flush();
        assert_eq!(ck.ack_time(), Some(0));
        b.add("y", 2);
        pb.epoch_done(e(19), &mut b).unwrap();
        ck.flush();
        assert_eq!(ck.ack_time(), Some(e(19) + 1), "checkpoint 19 committed");
        b.add("y", 3);
        // `b` ends: its last changes go into 39, which now commits too.
        pb.end(&mut b).unwrap();
        ck.flush();
        assert_eq!(ck.ack_time(), Some(e(39) + 1));
        a.add("x", 10);
        pa.end(&mut a).unwrap();
        // Everything ended and committed: the acknowledgement capability can go.
        ck.flush();
        assert_eq!(ck.ack_time(), None);
        let committed = Rc::new(RefCell::new(Vec::new()));
        let c2 = Rc::clone(&committed);
        ck.on_complete(Box::new(move |c| {
            c2.borrow_mut().push(c);
            Ok(())
        }));
        ck.flush();
        ck.globally_committed_below(Some(e(39) + 1)).unwrap();
        assert_eq!(*committed.borrow(), [e(19), e(39)]);
        ck.flush();
        ck.globally_committed_below(None).unwrap();
        assert_eq!(*committed.borrow(), [e(19), e(39), e(59)]);
        ck.flush();
        drop((pa, pb, ck));

        // A restart restores 59 (the newest every worker has) with everyone's final state.
        let (ck, offer) = open(root.path(), true);
        assert_eq!(
            offer,
            [e(39), e(59)],
            "two complete checkpoints are retained"
        );
        ck.restore_to(agree(&[offer])).unwrap();
        let (mut a2, mut b2) = (Counts::default(), Counts::default());
        ck.participant("a", 0, 0..128)
            .unwrap()
            .unwrap()
            .restore(&mut a2)
            .unwrap();
        ck.participant("b", 0, 0..128)
            .unwrap()
            .unwrap()
            .restore(&mut b2)
            .unwrap();
        assert_eq!(a2.restored_from, Some(e(59)));
        assert_eq!(a2.counts, a.counts);
        assert_eq!(b2.counts, b.counts);
        assert_eq!((a2.position, b2.position), (a.position, b.position));
    }

    #[test]
    fn restoring_an_older_checkpoint_sees_its_state_and_drops_newer_ones() {
        let root = tempfile::tempdir().unwrap();
        let (ck, _) = open(root.path(), true);
        ck.restore_to(None).unwrap();
        let mut a = Counts::default();
        let mut pa = ck.participant("a", 0, 0..128).unwrap().unwrap();
        ck.seal();
        a.add("x", 1);
        pa.epoch_done(e(19), &mut a).unwrap();
        a.add("x", 1);
        a.add("z", 5);
        pa.epoch_done(e(39), &mut a).unwrap();
        ck.flush();
        drop((pa, ck));
        // Another worker only ever committed 19: the cluster restores 19.
        let (ck, offer) = open(root.path(), true);
        let agreed = agree(&[offer, vec![e(19)]]);
        assert_eq!(agreed, Some(e(19)));
        ck.restore_to(agreed).unwrap();
        let mut a2 = Counts::default();
        let mut p = ck.participant("a", 0, 0..128).unwrap().unwrap();
        p.restore(&mut a2).unwrap();
        assert_eq!(a2.counts, Map::from([("x".to_string(), 1)]));
        assert_eq!(a2.position, 1);
        // Later checkpoints continue after the restored one.
        a2.add("x", 1);
        ck.seal();
        p.epoch_done(e(39), &mut a2).unwrap();
        ck.flush();
        assert_eq!(ck.ack_time(), Some(e(39) + 1));
    }

    #[test]
    fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one() {
        let root = tempfile::tempdir().unwrap();
        let (ck, _) = open(root.path(), true);
        ck.restore_to(None).unwrap();
        let mut a = Counts::default();
        let mut pa = ck.participant("a", 0, 0..128).unwrap().unwrap();
        ck.seal();
        a.add("x", 1);
        pa.epoch_done(e(19), &mut a).unwrap();
        a.add("written-only-by-checkpoint-39", 5);
        pa.epoch_done(e(39), &mut a).unwrap();
        ck.flush();
        ck.globally_committed_below(Some(e(39) + 1)).unwrap();
        ck.flush();
        drop((pa, ck));
        // Flip bits of what only checkpoint 39 wrote, on disk.
        let data = root.path().join("worker-0/data.mdb");
        let mut bytes = std::fs::read(&data).unwrap();
        let needle = b"written-only-by-checkpoint-39";
        let mut hits = 0;
        for i in 0..bytes.len().saturating_sub(needle.len()) {
            if &bytes[i..i + needle.len()] == needle {
                bytes[i + 3] ^= 0x20;
                hits += 1;
            }
        }
        assert!(hits > 0);
        std::fs::write(&data, &bytes).unwrap();
        let (ck, offer) = open(root.path(), true);
        assert_eq!(offer, [e(19)], "the damaged checkpoint 39 is not offered");
        ck.restore_to(agree(&[offer])).unwrap();
        let mut a2 = Counts::default();
        ck.participant("a", 0, 0..128)
            .unwrap()
            .unwrap()
            .restore(&mut a2)
            .unwrap();
        assert_eq!(a2.restored_from, Some(e(19)));
        assert_eq!(a2.counts, Map::from([("x".to_string(), 1)]));
    }

    #[test]
    fn restore_none_drops_stored_checkpoints() {
        let root = tempfile::tempdir().unwrap();
        let (ck, _) = open(root.path(), true);
        ck.restore_to(None).unwrap();
        let mut a = Counts::default();
        let mut pa = ck.participant("a", 0, 0..128).unwrap().unwrap();
        ck.seal();
        a.add("x", 1);
        pa.epoch_done(e(19), &mut a).unwrap();
        ck.flush();
        drop((pa, ck));
        let (_, offer) = open(root.path(), false);
        assert!(offer.is_empty());
        let (_, offer) = open(root.path(), true);
        assert!(offer.is_empty(), "the checkpoints were dropped");
    }

    #[test]
    fn checkpoints_follow_the_interval() {
        let at = checkpoint_at_tick;
        assert_eq!(next_checkpoint(None, 20), at(19));
        assert_eq!(next_checkpoint(Some(at(19)), 20), at(39));
        // Any epoch (step) of ticks 20..=39 is followed by the checkpoint of tick 39.
        assert_eq!(next_checkpoint(Some(at(19) + 1), 20), at(39));
        assert_eq!(next_checkpoint(Some(at(25) - 7), 20), at(39));
        assert_eq!(next_checkpoint(Some(at(39) - 1), 20), at(39));
        assert_eq!(next_checkpoint(Some(at(39)), 20), at(59));
        assert_eq!(next_checkpoint(None, 1), at(0));
        assert_eq!(next_checkpoint(Some(at(0)), 1), at(1));
        assert!(is_checkpoint(at(19), 20) && !is_checkpoint(at(20), 20));
        assert!(
            !is_checkpoint(at(19) - 1, 20),
            "only the last step of a tick"
        );
    }

    #[test]
    fn agreement_takes_the_newest_checkpoint_every_stateful_worker_has() {
        assert_eq!(agree(&[vec![19, 39], vec![19, 39, 59], vec![]]), Some(39));
        assert_eq!(agree(&[vec![19], vec![39]]), None);
        assert_eq!(agree(&[vec![], vec![]]), None);
    }
}

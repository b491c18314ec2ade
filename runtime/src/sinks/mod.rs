//! Sinks: where records go. Each sink instance writes its own share.

mod collect;
mod discard;
mod file;
mod stdout;

pub use collect::{CollectSink, CollectWriter};
pub use discard::{DiscardSink, DiscardWriter};
pub use file::{FileSink, FileSinkWriter};
pub use stdout::{StdoutDebug, StdoutJson, StdoutSink, StdoutWriter};

use crate::error::Result;

/// Where a sink instance runs.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// Job name.
    pub job: String,
    /// The sink operator's name.
    pub operator: String,
    /// This instance's index, `0..parallelism`.
    pub instance: usize,
    /// The sink's parallelism.
    pub parallelism: usize,
}

/// The delivery guarantee a sink gives, shown by `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    /// Every record's effect is visible exactly once, also after failures.
    ExactlyOnce,
    /// Every record's effect is visible, possibly more than once after a failure.
    AtLeastOnce,
    /// Output is best-effort (e.g. printed to a terminal).
    BestEffort,
}

/// A sink as declared in the pipeline (`.sink(...)`), generic over the record type it
/// accepts. Opened once per sink instance on the worker that hosts it.
pub trait Sink<T>: 'static {
    /// An open instance.
    type Writer: SinkWriter<T>;
    /// A short description for `explain` and logs.
    fn describe(&self) -> String;
    /// What it promises.
    fn guarantee(&self) -> Guarantee;
    /// Open instance `ctx.instance` of `ctx.parallelism`.
    fn open(&self, ctx: &SinkContext) -> Result<Self::Writer>;
}

/// An open sink instance.
pub trait SinkWriter<T>: 'static {
    /// Accept one record.
    fn write(&mut self, record: T) -> Result<()>;
    /// All records of epochs up to and including `epoch` have been written.
    fn epoch_complete(&mut self, _epoch: u64) -> Result<()> {
        Ok(())
    }
    /// The input has ended: flush and make the output visible (in two-phase mode: flush
    /// only; the output becomes visible when the final checkpoint completes).
    fn close(&mut self) -> Result<()>;
    /// Switch to two-phase commits tied to checkpoints (exactly-once) and return what
    /// commits a completed checkpoint's output. `None`: the sink cannot (its guarantee then
    /// stays what [`Sink::guarantee`] says without checkpoints).
    fn two_phase(&mut self) -> Option<crate::checkpoint::Committer> {
        None
    }
    /// A checkpoint is taken after the records written so far: make them durable but not
    /// visible, and return what identifies them (stored in the checkpoint).
    fn pre_commit(&mut self, _checkpoint: u64) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }
    /// Resume from a checkpoint: commit (again, idempotently) what its pre-commit returned,
    /// and discard output written after it. `None`: a fresh start without a checkpoint
    /// (discard what a previous run left uncommitted).
    fn recover(&mut self, _checkpoint: u64, _pending: Option<&[u8]>) -> Result<()> {
        Ok(())
    }
    /// Start after a restore from a savepoint: what the savepoint's run wrote stays as it
    /// is (that run committed it), and new output goes beside it.
    fn continue_after_savepoint(&mut self) -> Result<()> {
        Ok(())
    }
}

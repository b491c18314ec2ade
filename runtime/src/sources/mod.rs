//! Sources: where records come from. Each source instance reads its own share.

mod file;
mod generator;
pub mod split;

#[cfg(feature = "kafka")]
pub(crate) use file::CsvLineParser;
pub use file::{FileFormat, FileSource, FileSourceReader};
pub use generator::{Generator, GeneratorReader};

use crate::data::Data;
use crate::error::{Result, RuntimeError};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where a source instance runs.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// Job name.
    pub job: String,
    /// The source operator's name.
    pub operator: String,
    /// This instance's index, `0..parallelism`.
    pub instance: usize,
    /// The source's parallelism.
    pub parallelism: usize,
}

/// What one call of [`SourceReader::poll`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// The budget ran out; more records are ready now.
    More,
    /// Nothing to read right now (an unbounded source, or one pacing itself); ask again later.
    Idle,
    /// This instance has read everything it ever will.
    Done,
}

/// A source of records, as declared in the pipeline (`env.source(...)`). Opened once per
/// source instance on the worker that hosts it.
pub trait Source: 'static {
    /// The records it produces.
    type Item: Data;
    /// An open instance.
    type Reader: SourceReader<Item = Self::Item>;
    /// A short description for `explain` and logs, such as `file data/orders.jsonl (json lines)`.
    fn describe(&self) -> String;
    /// Whether every instance ends by itself.
    fn is_bounded(&self) -> bool;
    /// Open instance `ctx.instance` of `ctx.parallelism`.
    fn open(&self, ctx: &SourceContext) -> Result<Self::Reader>;
}

/// An open source instance.
pub trait SourceReader: 'static {
    /// The records it produces.
    type Item;
    /// Hand at most `budget` records to `out`. Errors are fatal for the job (a malformed
    /// record under the `fail` policy, an unreadable file); the message names the source and
    /// position.
    fn poll<F: FnMut(Self::Item)>(&mut self, budget: usize, out: F) -> Result<Poll>;
    /// Records skipped under the `skip` policy, or sent to the dead-letter file, so far.
    fn bad_records(&self) -> u64 {
        0
    }
    /// Records read so far, and the total if known (for progress).
    fn progress(&self) -> (u64, Option<u64>) {
        (0, None)
    }
    /// Where the reader is, for checkpoints: after [`seek`](Self::seek) to these bytes a
    /// reader produces exactly the records this one produces from now on. `None`: the
    /// source cannot be checkpointed (a job using it cannot take checkpoints).
    fn position(&self) -> Option<Vec<u8>> {
        None
    }
    /// Continue from a position [`position`](Self::position) returned, before any `poll`.
    fn seek(&mut self, _position: &[u8]) -> Result<()> {
        Err(crate::error::RuntimeError::internal(
            "this source cannot seek to a checkpointed position",
        ))
    }
    /// Continue, before any `poll`, with this instance's share of what the instances of a
    /// savepoint's run (another parallelism) had left: `positions[i]` is what old instance
    /// `i`'s [`position`](Self::position) returned (`None`: it stored none). Sources that
    /// cannot re-split their input refuse.
    fn rescale(&mut self, positions: &[Option<Vec<u8>>]) -> Result<()> {
        Err(crate::error::RuntimeError::user(format!(
            "this source cannot change its parallelism when restoring a savepoint (it had {}); keep its parallelism, or start without the savepoint",
            positions.len()
        )))
    }
}

/// What to do with an input record that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BadRecordPolicy {
    /// Stop the job with a message naming the source and position.
    Fail,
    /// Skip the record and count it (the count is logged when the instance ends).
    #[default]
    Skip,
    /// Append the raw record with its position and the error to this file (one file per
    /// source instance: `<path>.<instance>`), and count it.
    DeadLetter(PathBuf),
}

/// `name` with every character other than ASCII letters, digits, `-`, `_` and `.` replaced by
/// `_`, for use in a file name.
pub(crate) fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A source instance's dead-letter file, `dir/dead-letter-<operator>-<instance>.jsonl`,
/// opened (for appending) on the first bad record.
#[derive(Debug, Default)]
pub(crate) struct DeadLetters {
    file: Option<(PathBuf, File)>,
}

impl DeadLetters {
    /// Append `entry` as one JSON line. `what` names the source in errors, such as
    /// "file source `orders`".
    pub(crate) fn write<E: serde::Serialize>(
        &mut self,
        what: &str,
        dir: &Path,
        operator: &str,
        instance: usize,
        entry: &E,
    ) -> Result<()> {
        if self.file.is_none() {
            let path = dir.join(format!(
                "dead-letter-{}-{instance}.jsonl",
                file_safe(operator)
            ));
            let file = std::fs::create_dir_all(dir)
                .and_then(|_| OpenOptions::new().create(true).append(true).open(&path))
                .map_err(|e| {
                    RuntimeError::external(format!(
                        "{what}: cannot open dead-letter file {}: {e}; check that the directory is writable",
                        path.display()
                    ))
                })?;
            self.file = Some((path, file));
        }
        let mut json = serde_json::to_vec(entry).map_err(|e| {
            RuntimeError::internal(format!("{what}: cannot encode a dead letter: {e}"))
        })?;
        json.push(b'\n');
        if let Some((path, out)) = self.file.as_mut() {
            out.write_all(&json).map_err(|e| {
                RuntimeError::external(format!(
                    "{what}: cannot write dead-letter file {}: {e}; check the disk",
                    path.display()
                ))
            })?;
        }
        Ok(())
    }
}

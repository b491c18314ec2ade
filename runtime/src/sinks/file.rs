//! File sink: JSON-lines or CSV part files per instance, made visible atomically — when the
//! input ends, or, with checkpoints, when the checkpoint covering them completes.

use super::{Guarantee, Sink, SinkContext, SinkWriter};
use crate::error::{Result, RuntimeError};
use serde::Serialize;
use std::cell::RefCell;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Size of each instance's write buffer.
const WRITE_BUFFER: usize = 256 * 1024;

/// How a [`FileSink`] encodes records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    JsonLines,
    Csv,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::JsonLines => "jsonl",
            Format::Csv => "csv",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Format::JsonLines => "json lines",
            Format::Csv => "csv",
        }
    }
}

/// A sink writing records into a directory, one file per sink instance:
/// `part-<instance>.jsonl` or `part-<instance>.csv`.
///
/// Each instance writes into a hidden `.part-<instance>.<ext>.inprogress` file and, when its
/// input ends, flushes it to disk and renames it to the final name, so a partially written
/// file is never visible under the final name (the sources skip hidden files). A previous
/// run's part file of the same name is replaced.
///
/// With checkpoints (`run --checkpoint-interval`) the sink is **exactly-once** (two-phase,
/// like Flink's `FileSink`): each instance rolls to a new part file at every checkpoint,
/// `part-<instance>-<n>.<ext>`, written hidden as `.part-<instance>-<n>.<ext>.inprogress`,
/// and renames it to its final name only when the checkpoint that covers it is complete on
/// every worker. After a failure the job resumes from the last complete checkpoint: files
/// that checkpoint covers are committed again if the rename had not happened, and files
/// written after it are deleted, so every record is in exactly one visible file.
///
/// ```text
/// stream.sink(FileSink::json_lines(env.arg("output")))
/// ```
#[derive(Debug, Clone)]
pub struct FileSink {
    dir: PathBuf,
    format: Format,
}

impl FileSink {
    /// Write each record as one line of JSON.
    pub fn json_lines(dir: impl Into<PathBuf>) -> Self {
        FileSink {
            dir: dir.into(),
            format: Format::JsonLines,
        }
    }

    /// Write CSV with a header row (the field names of the record type). Records must be
    /// flat: no nested structs, sequences or maps.
    pub fn csv(dir: impl Into<PathBuf>) -> Self {
        FileSink {
            dir: dir.into(),
            format: Format::Csv,
        }
    }

    /// The directory written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The final file of instance `instance`.
    pub fn part_path(&self, instance: usize) -> PathBuf {
        self.dir
            .join(format!("part-{instance}.{}", self.format.extension()))
    }

    /// The file instance `instance` writes to until its input ends.
    pub fn in_progress_path(&self, instance: usize) -> PathBuf {
        self.dir.join(format!(
            ".part-{instance}.{}.inprogress",
            self.format.extension()
        ))
    }
}

impl<T: Serialize + 'static> Sink<T> for FileSink {
    type Writer = FileSinkWriter;

    fn describe(&self) -> String {
        format!("file {} ({})", self.dir.display(), self.format.label())
    }

    fn guarantee(&self) -> Guarantee {
        // With checkpoints the rename is tied to them (two-phase commit).
        Guarantee::ExactlyOnce
    }

    fn open(&self, ctx: &SinkContext) -> Result<Self::Writer> {
        let tmp = self.in_progress_path(ctx.instance);
        let output = self.create(&ctx.operator, &tmp)?;
        Ok(FileSinkWriter {
            operator: ctx.operator.clone(),
            tmp,
            dest: self.part_path(ctx.instance),
            output: Some(output),
            records: 0,
            sink: self.clone(),
            instance: ctx.instance,
            rolling: None,
        })
    }
}

/// The open in-progress file.
enum Output {
    Json {
        file: BufWriter<File>,
        line: Vec<u8>,
    },
    Csv(Box<csv::Writer<File>>),
}

fn io_error(operator: &str, path: &Path, e: &dyn std::fmt::Display) -> RuntimeError {
    RuntimeError::external(format!(
        "file sink `{operator}`: cannot write {}: {e}; check free disk space and permissions",
        path.display()
    ))
}

/// An open [`FileSink`] instance.
pub struct FileSinkWriter {
    operator: String,
    tmp: PathBuf,
    dest: PathBuf,
    /// `None` once closed (two-phase: between part files).
    output: Option<Output>,
    records: u64,
    sink: FileSink,
    instance: usize,
    /// Two-phase mode (checkpoints on).
    rolling: Option<Rolling>,
}

/// Part files of one instance in two-phase mode.
struct Rolling {
    /// Number of the next part file to open.
    next: u64,
    /// Closed part files not yet covered by a checkpoint.
    closed: Vec<u64>,
    /// Part files covered by a checkpoint, waiting for it to complete: (checkpoint, part).
    pending: Rc<RefCell<Vec<(u64, u64)>>>,
}

/// What a checkpoint stores for one instance: part files to commit, and the next number.
#[derive(Serialize, serde::Deserialize)]
struct CheckpointedParts {
    next: u64,
    pending: Vec<u64>,
}

impl FileSink {
    /// Part file `n` of instance `instance` in two-phase mode: (in progress, final).
    fn rolled_paths(&self, instance: usize, n: u64) -> (PathBuf, PathBuf) {
        let ext = self.format.extension();
        (
            self.dir
                .join(format!(".part-{instance}-{n}.{ext}.inprogress")),
            self.dir.join(format!("part-{instance}-{n}.{ext}")),
        )
    }

    /// Make part file `n` visible: rename it unless that already happened.
    fn commit_part(&self, operator: &str, instance: usize, n: u64) -> Result<()> {
        let (tmp, dest) = self.rolled_paths(instance, n);
        if !tmp.exists() && dest.exists() {
            return Ok(());
        }
        fs::rename(&tmp, &dest).map_err(|e| {
            RuntimeError::external(format!(
                "file sink `{operator}`: cannot rename {} to {}: {e}; check the directory's permissions",
                tmp.display(),
                dest.display()
            ))
        })?;
        sync_dir(operator, &dest);
        Ok(())
    }

    fn create(&self, operator: &str, tmp: &Path) -> Result<Output> {
        let file = fs::create_dir_all(&self.dir)
            .and_then(|_| File::create(tmp))
            .map_err(|e| {
                RuntimeError::external(format!(
                    "file sink `{operator}`: cannot create {}: {e}; check that the directory is writable",
                    tmp.display()
                ))
            })?;
        Ok(match self.format {
            Format::JsonLines => Output::Json {
                file: BufWriter::with_capacity(WRITE_BUFFER, file),
                line: Vec::with_capacity(256),
            },
            Format::Csv => Output::Csv(Box::new(
                csv::WriterBuilder::new()
                    .buffer_capacity(WRITE_BUFFER)
                    .from_writer(file),
            )),
        })
    }
}

/// Make a rename durable; some file systems cannot sync a directory.
fn sync_dir(operator: &str, file: &Path) {
    if let Some(dir) = file.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
            tracing::debug!(operator = %operator, dir = %dir.display(), error = %e, "file sink: cannot sync the directory");
        }
    }
}

impl FileSinkWriter {
    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    fn io_error(&self, e: &dyn std::fmt::Display) -> RuntimeError {
        io_error(&self.operator, &self.tmp, e)
    }

    /// Flush the open file to disk and close it.
    fn finish_file(&mut self, output: Output) -> Result<()> {
        let file = match output {
            Output::Json { file, .. } => file.into_inner().map_err(|e| self.io_error(e.error()))?,
            Output::Csv(w) => (*w).into_inner().map_err(|e| self.io_error(e.error()))?,
        };
        file.sync_all().map_err(|e| self.io_error(&e))?;
        Ok(())
    }

    fn commit(&mut self, output: Output) -> Result<()> {
        self.finish_file(output)?;
        fs::rename(&self.tmp, &self.dest).map_err(|e| {
            RuntimeError::external(format!(
                "file sink `{}`: cannot rename {} to {}: {e}; check the directory's permissions",
                self.operator,
                self.tmp.display(),
                self.dest.display()
            ))
        })?;
        sync_dir(&self.operator, &self.dest);
        tracing::debug!(operator = %self.operator, file = %self.dest.display(), records = self.records, "file sink closed");
        Ok(())
    }
}

impl<T: Serialize> SinkWriter<T> for FileSinkWriter {
    fn write(&mut self, record: T) -> Result<()> {
        if self.output.is_none() {
            if let Some(r) = &mut self.rolling {
                // Two-phase: open the next part file on the first record after a roll.
                let (tmp, dest) = self.sink.rolled_paths(self.instance, r.next);
                r.next += 1;
                self.output = Some(self.sink.create(&self.operator, &tmp)?);
                self.tmp = tmp;
                self.dest = dest;
            }
        }
        let FileSinkWriter {
            operator,
            tmp,
            output,
            records,
            ..
        } = self;
        match output {
            Some(Output::Json { file, line }) => {
                line.clear();
                if let Err(e) = serde_json::to_writer(&mut *line, &record) {
                    return Err(RuntimeError::user(format!(
                        "file sink `{operator}`: cannot write a record as JSON: {e}; make the record type serializable as JSON (e.g. map keys must be strings)"
                    )));
                }
                line.push(b'\n');
                file.write_all(line).map_err(|e| io_error(operator, tmp, &e))?;
            }
            Some(Output::Csv(w)) => match w.serialize(&record) {
                Ok(()) => {}
                Err(e) if e.is_io_error() => return Err(io_error(operator, tmp, &e)),
                Err(e) => {
                    return Err(RuntimeError::user(format!(
                        "file sink `{operator}`: cannot write a record as CSV: {e}; CSV needs flat records (no nested structs, sequences or maps): flatten the record or use FileSink::json_lines"
                    )))
                }
            },
            None => return Err(RuntimeError::internal(format!("file sink `{operator}`: record written after close"))),
        }
        *records += 1;
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if self.rolling.is_some() {
            // The final checkpoint's pre-commit closes the last file; its commit shows it.
            return Ok(());
        }
        match self.output.take() {
            Some(output) => self.commit(output),
            None => Ok(()),
        }
    }

    fn two_phase(&mut self) -> Option<crate::checkpoint::Committer> {
        // The eagerly opened single file is not used in two-phase mode.
        if let Some(output) = self.output.take() {
            drop(output);
            if let Err(e) = fs::remove_file(&self.tmp) {
                tracing::debug!(operator = %self.operator, error = %e, "file sink: cannot remove an unused file");
            }
        }
        let pending = Rc::new(RefCell::new(Vec::new()));
        self.rolling = Some(Rolling {
            next: 0,
            closed: Vec::new(),
            pending: Rc::clone(&pending),
        });
        let (sink, operator, instance) = (self.sink.clone(), self.operator.clone(), self.instance);
        Some(Box::new(move |checkpoint: u64| {
            let mut pending = pending.borrow_mut();
            let due: Vec<u64> = pending
                .iter()
                .filter(|(c, _)| *c <= checkpoint)
                .map(|&(_, n)| n)
                .collect();
            pending.retain(|(c, _)| *c > checkpoint);
            for n in due {
                sink.commit_part(&operator, instance, n)?;
            }
            Ok(())
        }))
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Vec<u8>> {
        if let Some(output) = self.output.take() {
            self.finish_file(output)?;
            if let Some(r) = &mut self.rolling {
                r.closed.push(r.next - 1);
            }
        }
        let Some(r) = &mut self.rolling else {
            return Ok(Vec::new());
        };
        let mut pending = r.pending.borrow_mut();
        pending.extend(r.closed.drain(..).map(|n| (checkpoint, n)));
        let parts = CheckpointedParts {
            next: r.next,
            pending: pending.iter().map(|&(_, n)| n).collect(),
        };
        crate::checkpoint::encode("the file sink's pending part files", &parts)
    }

    fn continue_after_savepoint(&mut self) -> Result<()> {
        let Some(r) = &self.rolling else {
            return Ok(());
        };
        // Number new parts after any this instance's name already has in the directory.
        let mut next = r.next;
        if let Ok(entries) = fs::read_dir(&self.sink.dir) {
            for entry in entries.flatten() {
                if let Some(n) = part_number(&entry.file_name().to_string_lossy(), self.instance) {
                    next = next.max(n + 1);
                }
            }
        }
        if let Some(r) = &mut self.rolling {
            r.next = next;
        }
        Ok(())
    }

    fn recover(&mut self, _checkpoint: u64, pending: Option<&[u8]>) -> Result<()> {
        if self.rolling.is_none() {
            return Ok(());
        }
        let parts: CheckpointedParts = match pending {
            Some(bytes) => crate::checkpoint::decode("the file sink's part files", bytes)?,
            // A fresh start: the previous run's part files of this instance are replaced.
            None => CheckpointedParts {
                next: 0,
                pending: Vec::new(),
            },
        };
        // The restored checkpoint is complete: what it covers is committed (again).
        for &n in &parts.pending {
            self.sink.commit_part(&self.operator, self.instance, n)?;
        }
        // Part files begun after it hold records that will be produced again. Visible ones
        // exist only when a newer checkpoint was damaged and the job fell back to this one
        // (or on a fresh start, from a previous run).
        if let Ok(entries) = fs::read_dir(&self.sink.dir) {
            for entry in entries.flatten() {
                let n = part_number(&entry.file_name().to_string_lossy(), self.instance);
                if n.is_some_and(|n| n >= parts.next) {
                    fs::remove_file(entry.path()).map_err(|e| self.io_error(&e))?;
                }
            }
        }
        if let Some(r) = &mut self.rolling {
            r.next = parts.next;
        }
        Ok(())
    }
}

/// `n` of instance `instance`'s rolled part file `part-<instance>-<n>.jsonl`, or of its
/// hidden in-progress name.
fn part_number(file_name: &str, instance: usize) -> Option<u64> {
    let rest = file_name.strip_prefix('.').unwrap_or(file_name);
    rest.strip_prefix(&format!("part-{instance}-"))
        .and_then(|rest| rest.split('.').next())
        .and_then(|d| d.parse().ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::error::ErrorDomain;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Order {
        id: u64,
        item: String,
        amount: f64,
    }

    fn ctx(instance: usize) -> SinkContext {
        SinkContext {
            job: "test".into(),
            operator: "out".into(),
            instance,
            parallelism: 2,
        }
    }

    fn orders(n: u64) -> Vec<Order> {
        (0..n)
            .map(|id| Order {
                id,
                item: format!("item, \"{id}\""),
                amount: id as f64 / 4.0,
            })
            .collect()
    }

    use crate::testing::read_json_lines;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn two_phase_writer(sink: &FileSink) -> (FileSinkWriter, crate::checkpoint::Committer) {
        let mut w = <FileSink as Sink<Order>>::open(sink, &ctx(1)).unwrap();
        let commit = <FileSinkWriter as SinkWriter<Order>>::two_phase(&mut w).unwrap();
        (w, commit)
    }

    #[test]
    fn two_phase_parts_become_visible_when_their_checkpoint_completes() {
        let root = tempfile::tempdir().unwrap();
        let sink = FileSink::json_lines(root.path());
        let (mut w, mut commit) = two_phase_writer(&sink);
        <FileSinkWriter as SinkWriter<Order>>::recover(&mut w, 0, None).unwrap();
        for o in orders(10) {
            w.write(o).unwrap();
        }
        let _ = <FileSinkWriter as SinkWriter<Order>>::pre_commit(&mut w, 9).unwrap();
        assert_eq!(names(root.path()), [".part-1-0.jsonl.inprogress"]);
        for o in orders(5) {
            w.write(o).unwrap();
        }
        let _ = <FileSinkWriter as SinkWriter<Order>>::pre_commit(&mut w, 19).unwrap();
        // Checkpoint 9 completes: only its part becomes visible.
        commit(9).unwrap();
        assert_eq!(
            names(root.path()),
            [".part-1-1.jsonl.inprogress", "part-1-0.jsonl"]
        );
        assert_eq!(
            read_json_lines(&root.path().join("part-1-0.jsonl")).len(),
            10
        );
        commit(19).unwrap();
        assert_eq!(names(root.path()), ["part-1-0.jsonl", "part-1-1.jsonl"]);
        // Nothing written since: a checkpoint adds no empty part file.
        let _ = <FileSinkWriter as SinkWriter<Order>>::pre_commit(&mut w, 29).unwrap();
        commit(29).unwrap();
        assert_eq!(names(root.path()), ["part-1-0.jsonl", "part-1-1.jsonl"]);
    }

    #[test]
    fn recovery_commits_the_checkpoint_and_drops_later_output() {
        let root = tempfile::tempdir().unwrap();
        let sink = FileSink::json_lines(root.path());
        let (mut w, _commit) = two_phase_writer(&sink);
        for o in orders(10) {
            w.write(o).unwrap();
        }
        // Checkpoint 9 covers part 0, but the job dies before the rename.
        let state = <FileSinkWriter as SinkWriter<Order>>::pre_commit(&mut w, 9).unwrap();
        for o in orders(3) {
            w.write(o).unwrap();
        }
        let _ = <FileSinkWriter as SinkWriter<Order>>::pre_commit(&mut w, 19).unwrap();
        for o in orders(2) {
            w.write(o).unwrap();
        }
        drop(w);
        // Restore from checkpoint 9: its part is committed, parts 1 and 2 are dropped, and
        // writing goes on with part 1.
        let (mut w, mut commit) = two_phase_writer(&sink);
        <FileSinkWriter as SinkWriter<Order>>::recover(&mut w, 9, Some(&state)).unwrap();
        assert_eq!(names(root.path()), ["part-1-0.jsonl"]);
        // Committing again is harmless.
        <FileSinkWriter as SinkWriter<Order>>::recover(&mut w, 9, Some(&state)).unwrap();
        for o in orders(4) {
            w.write(o).unwrap();
        }
        let _ = <FileSinkWriter as SinkWriter<Order>>::pre_commit(&mut w, 29).unwrap();
        commit(29).unwrap();
        assert_eq!(names(root.path()), ["part-1-0.jsonl", "part-1-1.jsonl"]);
        assert_eq!(
            read_json_lines(&root.path().join("part-1-1.jsonl")).len(),
            4
        );
    }

    #[test]
    fn falling_back_past_a_committed_checkpoint_withdraws_its_parts() {
        let root = tempfile::tempdir().unwrap();
        let sink = FileSink::json_lines(root.path());
        let (mut w, mut commit) = two_phase_writer(&sink);
        for o in orders(10) {
            w.write(o).unwrap();
        }
        let state = <FileSinkWriter as SinkWriter<Order>>::pre_commit(&mut w, 9).unwrap();
        for o in orders(3) {
            w.write(o).unwrap();
        }
        let _ = <FileSinkWriter as SinkWriter<Order>>::pre_commit(&mut w, 19).unwrap();
        commit(19).unwrap();
        assert_eq!(names(root.path()), ["part-1-0.jsonl", "part-1-1.jsonl"]);
        drop(w);
        // Checkpoint 19 turns out damaged: the job resumes from 9 and produces part 1's
        // records again, so part 1 must go.
        let (mut w, _) = two_phase_writer(&sink);
        <FileSinkWriter as SinkWriter<Order>>::recover(&mut w, 9, Some(&state)).unwrap();
        assert_eq!(names(root.path()), ["part-1-0.jsonl"]);
    }

    #[test]
    fn a_fresh_two_phase_start_replaces_a_previous_runs_parts() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("part-1-7.jsonl"), "{}\n").unwrap();
        fs::write(root.path().join("part-0-7.jsonl"), "{}\n").unwrap();
        let sink = FileSink::json_lines(root.path());
        let (mut w, _) = two_phase_writer(&sink);
        <FileSinkWriter as SinkWriter<Order>>::recover(&mut w, 0, None).unwrap();
        // Only this instance's files are its to replace.
        assert_eq!(names(root.path()), ["part-0-7.jsonl"]);
    }

    #[test]
    fn json_lines_become_visible_on_close() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out/nested");
        let sink = FileSink::json_lines(&dir);
        assert_eq!(
            <FileSink as Sink<Order>>::guarantee(&sink),
            Guarantee::ExactlyOnce
        );
        let mut w = <FileSink as Sink<Order>>::open(&sink, &ctx(1)).unwrap();
        for o in orders(1000) {
            w.write(o).unwrap();
        }
        assert_eq!(w.records(), 1000);
        let (tmp, part) = (
            dir.join(".part-1.jsonl.inprogress"),
            dir.join("part-1.jsonl"),
        );
        assert!(tmp.exists());
        assert!(!part.exists(), "the final file appears only on close");
        SinkWriter::<Order>::close(&mut w).unwrap();
        assert!(!tmp.exists());
        let text = fs::read_to_string(&part).unwrap();
        let back: Vec<Order> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, orders(1000));
        // Closing again changes nothing; writing after close is a bug.
        SinkWriter::<Order>::close(&mut w).unwrap();
        assert_eq!(fs::read_to_string(&part).unwrap(), text);
        assert_eq!(
            w.write(orders(1)[0].clone()).unwrap_err().domain,
            ErrorDomain::Internal
        );
    }

    #[test]
    fn csv_writes_header_once_and_replaces_old_output() {
        let root = tempfile::tempdir().unwrap();
        let sink = FileSink::csv(root.path());
        fs::write(root.path().join("part-0.csv"), "stale\n").unwrap();
        let mut w = <FileSink as Sink<Order>>::open(&sink, &ctx(0)).unwrap();
        for o in orders(3) {
            w.write(o).unwrap();
        }
        SinkWriter::<Order>::close(&mut w).unwrap();
        let text = fs::read_to_string(root.path().join("part-0.csv")).unwrap();
        assert_eq!(
            text,
            "id,item,amount\n0,\"item, \"\"0\"\"\",0.0\n1,\"item, \"\"1\"\"\",0.25\n2,\"item, \"\"2\"\"\",0.5\n"
        );
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let back: Vec<Order> = reader.deserialize().map(|r| r.unwrap()).collect();
        assert_eq!(back, orders(3));
    }

    #[test]
    fn instances_write_separate_files() {
        let root = tempfile::tempdir().unwrap();
        let sink = FileSink::json_lines(root.path());
        let mut writers: Vec<FileSinkWriter> = (0..2)
            .map(|i| <FileSink as Sink<u64>>::open(&sink, &ctx(i)).unwrap())
            .collect();
        for n in 0..10u64 {
            writers[(n % 2) as usize].write(n).unwrap();
        }
        for w in &mut writers {
            SinkWriter::<u64>::close(w).unwrap();
        }
        assert_eq!(
            fs::read_to_string(root.path().join("part-0.jsonl")).unwrap(),
            "0\n2\n4\n6\n8\n"
        );
        assert_eq!(
            fs::read_to_string(root.path().join("part-1.jsonl")).unwrap(),
            "1\n3\n5\n7\n9\n"
        );
        let mut names: Vec<String> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["part-0.jsonl", "part-1.jsonl"]);
    }

    #[test]
    fn nested_records_cannot_be_csv() {
        #[derive(Serialize)]
        struct Nested {
            id: u64,
            tags: std::collections::BTreeMap<String, u8>,
        }
        let root = tempfile::tempdir().unwrap();
        let sink = FileSink::csv(root.path());
        let mut w = <FileSink as Sink<Nested>>::open(&sink, &ctx(0)).unwrap();
        let err = w
            .write(Nested {
                id: 1,
                tags: [("a".to_string(), 1)].into(),
            })
            .unwrap_err();
        assert_eq!(err.domain, ErrorDomain::User);
        assert!(
            err.message.contains("file sink `out`") && err.message.contains("json_lines"),
            "{}",
            err.message
        );
    }

    #[test]
    fn unwritable_directory_is_an_external_error_naming_the_path() {
        let root = tempfile::tempdir().unwrap();
        let blocker = root.path().join("file");
        fs::write(&blocker, "x").unwrap();
        let sink = FileSink::json_lines(blocker.join("out"));
        let err = <FileSink as Sink<u64>>::open(&sink, &ctx(0)).err().unwrap();
        assert_eq!(err.domain, ErrorDomain::External);
        assert!(
            err.message
                .contains(&blocker.join("out").display().to_string()),
            "{}",
            err.message
        );
    }

    #[test]
    fn describe_and_paths() {
        let sink = FileSink::json_lines("out");
        assert_eq!(
            <FileSink as Sink<u64>>::describe(&sink),
            "file out (json lines)"
        );
        assert_eq!(
            <FileSink as Sink<u64>>::describe(&FileSink::csv("o")),
            "file o (csv)"
        );
        assert_eq!(sink.part_path(3), Path::new("out/part-3.jsonl"));
        assert_eq!(
            sink.in_progress_path(3),
            Path::new("out/.part-3.jsonl.inprogress")
        );
        assert_eq!(sink.dir(), Path::new("out"));
    }
}

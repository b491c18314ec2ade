//! File sink: one JSON-lines or CSV part file per instance, made visible atomically when the input ends.

use super::{Guarantee, Sink, SinkContext, SinkWriter};
use crate::error::{Result, RuntimeError};
use serde::Serialize;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

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
        // Exactly-once needs the rename tied to checkpoints (two-phase commit): not yet.
        Guarantee::AtLeastOnce
    }

    fn open(&self, ctx: &SinkContext) -> Result<Self::Writer> {
        let tmp = self.in_progress_path(ctx.instance);
        let file = fs::create_dir_all(&self.dir)
            .and_then(|_| File::create(&tmp))
            .map_err(|e| {
                RuntimeError::external(format!(
                    "file sink `{}`: cannot create {}: {e}; check that the directory is writable",
                    ctx.operator,
                    tmp.display()
                ))
            })?;
        let output = match self.format {
            Format::JsonLines => Output::Json {
                file: BufWriter::with_capacity(WRITE_BUFFER, file),
                line: Vec::with_capacity(256),
            },
            Format::Csv => Output::Csv(Box::new(
                csv::WriterBuilder::new()
                    .buffer_capacity(WRITE_BUFFER)
                    .from_writer(file),
            )),
        };
        Ok(FileSinkWriter {
            operator: ctx.operator.clone(),
            tmp,
            dest: self.part_path(ctx.instance),
            output: Some(output),
            records: 0,
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
    /// `None` once closed.
    output: Option<Output>,
    records: u64,
}

impl FileSinkWriter {
    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    fn io_error(&self, e: &dyn std::fmt::Display) -> RuntimeError {
        io_error(&self.operator, &self.tmp, e)
    }

    fn commit(&mut self, output: Output) -> Result<()> {
        let file = match output {
            Output::Json { file, .. } => file.into_inner().map_err(|e| self.io_error(e.error()))?,
            Output::Csv(w) => (*w).into_inner().map_err(|e| self.io_error(e.error()))?,
        };
        file.sync_all().map_err(|e| self.io_error(&e))?;
        drop(file);
        fs::rename(&self.tmp, &self.dest).map_err(|e| {
            RuntimeError::external(format!(
                "file sink `{}`: cannot rename {} to {}: {e}; check the directory's permissions",
                self.operator,
                self.tmp.display(),
                self.dest.display()
            ))
        })?;
        // Make the rename itself durable; some file systems cannot sync a directory.
        if let Some(dir) = self.dest.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
                tracing::debug!(operator = %self.operator, dir = %dir.display(), error = %e, "file sink: cannot sync the directory");
            }
        }
        tracing::debug!(operator = %self.operator, file = %self.dest.display(), records = self.records, "file sink closed");
        Ok(())
    }
}

impl<T: Serialize> SinkWriter<T> for FileSinkWriter {
    fn write(&mut self, record: T) -> Result<()> {
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
        match self.output.take() {
            Some(output) => self.commit(output),
            None => Ok(()),
        }
    }
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

    #[test]
    fn json_lines_become_visible_on_close() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out/nested");
        let sink = FileSink::json_lines(&dir);
        assert_eq!(
            <FileSink as Sink<Order>>::guarantee(&sink),
            Guarantee::AtLeastOnce
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

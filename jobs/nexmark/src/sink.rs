//! Where a query's results go: JSON lines in a directory, or nowhere (counted) for
//! benchmarks — chosen by the `output` argument at start-up, so one pipeline serves both.

use weir::prelude::*;
use weir::runtime::error::Result;
use weir::runtime::sinks::{DiscardWriter, FileSinkWriter, SinkContext};

/// `output=discard` (the default): drop and count; `output=DIR`: one
/// `DIR/part-<instance>.jsonl` per sink instance.
#[derive(Debug, Clone)]
pub enum QuerySink {
    /// JSON lines under a directory.
    File(FileSink),
    /// Dropped and counted.
    Discard(DiscardSink),
}

impl QuerySink {
    /// The sink that `--arg output=…` names.
    pub fn from_arg(output: impl AsRef<str>) -> Self {
        match output.as_ref() {
            "" | "discard" => QuerySink::Discard(DiscardSink::new()),
            dir => QuerySink::File(FileSink::json_lines(dir)),
        }
    }
}

/// An open [`QuerySink`] instance.
pub enum QueryWriter {
    /// Writing JSON lines.
    File(FileSinkWriter),
    /// Counting.
    Discard(DiscardWriter),
}

impl<T: Serialize + 'static> Sink<T> for QuerySink {
    type Writer = QueryWriter;

    fn describe(&self) -> String {
        match self {
            QuerySink::File(s) => <FileSink as Sink<T>>::describe(s),
            QuerySink::Discard(s) => <DiscardSink as Sink<T>>::describe(s),
        }
    }

    fn guarantee(&self) -> Guarantee {
        match self {
            QuerySink::File(s) => <FileSink as Sink<T>>::guarantee(s),
            QuerySink::Discard(s) => <DiscardSink as Sink<T>>::guarantee(s),
        }
    }

    fn open(&self, ctx: &SinkContext) -> Result<QueryWriter> {
        Ok(match self {
            QuerySink::File(s) => QueryWriter::File(<FileSink as Sink<T>>::open(s, ctx)?),
            QuerySink::Discard(s) => QueryWriter::Discard(<DiscardSink as Sink<T>>::open(s, ctx)?),
        })
    }
}

impl<T: Serialize + 'static> SinkWriter<T> for QueryWriter {
    fn write(&mut self, record: T) -> Result<()> {
        match self {
            QueryWriter::File(w) => w.write(record),
            QueryWriter::Discard(w) => SinkWriter::<T>::write(w, record),
        }
    }

    fn epoch_complete(&mut self, epoch: u64) -> Result<()> {
        match self {
            QueryWriter::File(w) => SinkWriter::<T>::epoch_complete(w, epoch),
            QueryWriter::Discard(w) => SinkWriter::<T>::epoch_complete(w, epoch),
        }
    }

    fn close(&mut self) -> Result<()> {
        match self {
            QueryWriter::File(w) => SinkWriter::<T>::close(w),
            QueryWriter::Discard(w) => SinkWriter::<T>::close(w),
        }
    }
}

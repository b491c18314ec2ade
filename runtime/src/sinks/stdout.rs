//! Stdout sink: prints records one per line, as JSON or in `Debug` form, for trying jobs out.

use super::{Guarantee, Sink, SinkContext, SinkWriter};
use crate::error::{Result, RuntimeError};
use serde::Serialize;
use std::fmt;
use std::io::{self, Write};
use std::marker::PhantomData;

/// Buffered output is written to stdout once it reaches this size.
const FLUSH_AT: usize = 64 * 1024;

/// Marker for [`StdoutSink::json`]: records are printed as JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdoutJson;

/// Marker for [`StdoutSink::debug`]: records are printed with `{:?}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdoutDebug;

/// A sink printing each record on its own line of standard output. Lines of different
/// instances never mix, but their order across instances is arbitrary.
///
/// ```text
/// stream.sink(StdoutSink::json())
/// stream.sink(StdoutSink::debug())
/// ```
pub struct StdoutSink<M> {
    _format: PhantomData<M>,
}

impl StdoutSink<StdoutJson> {
    /// Print each record as one line of JSON (the record type must be `Serialize`).
    pub fn json() -> Self {
        StdoutSink {
            _format: PhantomData,
        }
    }
}

impl StdoutSink<StdoutDebug> {
    /// Print each record with `{:?}` (the record type must be `Debug`).
    pub fn debug() -> Self {
        StdoutSink {
            _format: PhantomData,
        }
    }
}

impl<M> Clone for StdoutSink<M> {
    fn clone(&self) -> Self {
        StdoutSink {
            _format: PhantomData,
        }
    }
}

impl<M> fmt::Debug for StdoutSink<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::any::type_name::<Self>())
    }
}

impl<T: Serialize + 'static> Sink<T> for StdoutSink<StdoutJson> {
    type Writer = StdoutWriter<StdoutJson>;

    fn describe(&self) -> String {
        "stdout (json lines)".to_string()
    }

    fn guarantee(&self) -> Guarantee {
        Guarantee::BestEffort
    }

    fn open(&self, ctx: &SinkContext) -> Result<Self::Writer> {
        Ok(StdoutWriter::new(&ctx.operator))
    }
}

impl<T: fmt::Debug + 'static> Sink<T> for StdoutSink<StdoutDebug> {
    type Writer = StdoutWriter<StdoutDebug>;

    fn describe(&self) -> String {
        "stdout (debug)".to_string()
    }

    fn guarantee(&self) -> Guarantee {
        Guarantee::BestEffort
    }

    fn open(&self, ctx: &SinkContext) -> Result<Self::Writer> {
        Ok(StdoutWriter::new(&ctx.operator))
    }
}

/// An open [`StdoutSink`] instance: collects whole lines and writes them to stdout under
/// its lock, so lines of different workers never interleave.
pub struct StdoutWriter<M> {
    operator: String,
    buf: Vec<u8>,
    _format: PhantomData<M>,
}

impl<M> StdoutWriter<M> {
    fn new(operator: &str) -> Self {
        StdoutWriter {
            operator: operator.to_string(),
            buf: Vec::with_capacity(FLUSH_AT + 1024),
            _format: PhantomData,
        }
    }

    /// Write the buffered lines to `out` and empty the buffer.
    fn drain_into<W: Write>(&mut self, out: &mut W) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = out.write_all(&self.buf).and_then(|_| out.flush());
        self.buf.clear();
        result.map_err(|e| {
            RuntimeError::external(format!(
                "stdout sink `{}`: cannot write to standard output: {e}; check where the job's output goes (a closed pipe?)",
                self.operator
            ))
        })
    }

    fn flush_stdout(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let stdout = io::stdout();
        let mut lock = stdout.lock();
        self.drain_into(&mut lock)
    }

    fn line_written(&mut self) -> Result<()> {
        self.buf.push(b'\n');
        if self.buf.len() >= FLUSH_AT {
            self.flush_stdout()?;
        }
        Ok(())
    }
}

impl<T: Serialize> SinkWriter<T> for StdoutWriter<StdoutJson> {
    fn write(&mut self, record: T) -> Result<()> {
        let len = self.buf.len();
        if let Err(e) = serde_json::to_writer(&mut self.buf, &record) {
            self.buf.truncate(len);
            return Err(RuntimeError::user(format!(
                "stdout sink `{}`: cannot print a record as JSON: {e}; make the record type serializable as JSON (e.g. map keys must be strings) or use StdoutSink::debug()",
                self.operator
            )));
        }
        self.line_written()
    }

    fn epoch_complete(&mut self, _epoch: u64) -> Result<()> {
        self.flush_stdout()
    }

    fn close(&mut self) -> Result<()> {
        self.flush_stdout()
    }
}

impl<T: fmt::Debug> SinkWriter<T> for StdoutWriter<StdoutDebug> {
    fn write(&mut self, record: T) -> Result<()> {
        // Writing to a Vec fails only if `Debug` itself reports an error.
        let len = self.buf.len();
        if write!(self.buf, "{record:?}").is_err() {
            self.buf.truncate(len);
            return Err(RuntimeError::user(format!(
                "stdout sink `{}`: the record's Debug implementation failed; fix its `fmt` method",
                self.operator
            )));
        }
        self.line_written()
    }

    fn epoch_complete(&mut self, _epoch: u64) -> Result<()> {
        self.flush_stdout()
    }

    fn close(&mut self) -> Result<()> {
        self.flush_stdout()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::HashMap;

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    struct Order {
        id: u64,
        item: String,
    }

    fn ctx() -> SinkContext {
        SinkContext {
            job: "test".into(),
            operator: "print".into(),
            instance: 0,
            parallelism: 1,
        }
    }

    #[test]
    fn json_writes_one_line_per_record() {
        let sink = StdoutSink::json();
        assert_eq!(
            <StdoutSink<StdoutJson> as Sink<Order>>::guarantee(&sink),
            Guarantee::BestEffort
        );
        assert_eq!(
            <StdoutSink<StdoutJson> as Sink<Order>>::describe(&sink),
            "stdout (json lines)"
        );
        let mut w: StdoutWriter<StdoutJson> = Sink::<Order>::open(&sink, &ctx()).unwrap();
        w.write(Order {
            id: 1,
            item: "a\nb".into(),
        })
        .unwrap();
        w.write(Order {
            id: 2,
            item: "c".into(),
        })
        .unwrap();
        let mut out = Vec::new();
        w.drain_into(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"id\":1,\"item\":\"a\\nb\"}\n{\"id\":2,\"item\":\"c\"}\n"
        );
        assert!(w.buf.is_empty());
    }

    #[test]
    fn debug_writes_one_line_per_record() {
        let sink = StdoutSink::debug();
        assert_eq!(
            <StdoutSink<StdoutDebug> as Sink<(u8, &str)>>::describe(&sink),
            "stdout (debug)"
        );
        let mut w: StdoutWriter<StdoutDebug> = Sink::<(u8, &str)>::open(&sink, &ctx()).unwrap();
        w.write((1u8, "x")).unwrap();
        w.write((2u8, "y\nz")).unwrap();
        let mut out = Vec::new();
        w.drain_into(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "(1, \"x\")\n(2, \"y\\nz\")\n"
        );
    }

    #[test]
    fn unserializable_record_is_an_error_and_leaves_no_partial_line() {
        let sink = StdoutSink::json();
        let mut w: StdoutWriter<StdoutJson> =
            Sink::<HashMap<(u8, u8), u8>>::open(&sink, &ctx()).unwrap();
        w.write(Order {
            id: 1,
            item: "ok".into(),
        })
        .unwrap();
        let err = w.write(HashMap::from([((1u8, 2u8), 3u8)])).unwrap_err();
        assert!(
            err.message.contains("stdout sink `print`"),
            "{}",
            err.message
        );
        let mut out = Vec::new();
        w.drain_into(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"id\":1,\"item\":\"ok\"}\n"
        );
    }

    #[test]
    fn a_full_buffer_holds_only_whole_lines() {
        let mut w: StdoutWriter<StdoutDebug> =
            Sink::<String>::open(&StdoutSink::debug(), &ctx()).unwrap();
        let mut out = Vec::new();
        for i in 0..100 {
            w.write(format!("{i:0>100}")).unwrap();
            assert_eq!(w.buf.last(), Some(&b'\n'));
            if w.buf.len() > FLUSH_AT / 2 {
                w.drain_into(&mut out).unwrap();
            }
        }
        w.drain_into(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 100);
        assert!(text.lines().all(|l| l.len() == 102));
    }

    struct BrokenPipe;
    impl Write for BrokenPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_are_external() {
        let mut w: StdoutWriter<StdoutDebug> =
            Sink::<u8>::open(&StdoutSink::debug(), &ctx()).unwrap();
        w.write(1u8).unwrap();
        let err = w.drain_into(&mut BrokenPipe).unwrap_err();
        assert_eq!(err.domain, crate::error::ErrorDomain::External);
        assert!(err.message.contains("`print`"), "{}", err.message);
    }
}

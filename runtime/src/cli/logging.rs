//! Log lines on stderr (never stdout: that is the job's output), tagged with job and process.
//!
//! Text: `2025-01-01T12:00:00.000000Z  INFO job{name=wordcount process=1 worker=2}: target:
//! message k=v`. JSON, one object a line: `{"timestamp", "level", "job", "process" (or
//! "launcher_node"), "worker" (on worker threads), "target", "message", "fields": {...},
//! "spans": [...]}`. Level from `RUST_LOG`, default
//! `info`. The job and process are written by the formatter, so lines logged on timely's
//! worker threads carry them too.

use super::args::LogFormat;
use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Which process of a job is logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A process running workers, by global index.
    Process(usize),
    /// The launcher of a node.
    Launcher {
        /// The node.
        node: usize,
    },
}

/// Whether a subscriber of ours is installed (the panic hook falls back to stderr if not).
static READY: AtomicBool = AtomicBool::new(false);

/// Whether `run` draws a progress line on the terminal: text lines then clear it first (it
/// is drawn again at its next update).
pub static PROGRESS_LINE: AtomicBool = AtomicBool::new(false);

/// Install the global subscriber (once; later calls are no-ops).
pub fn init(format: LogFormat, job: &str, role: Role) {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let tag = Tag {
        job: job.to_string(),
        role,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let ok = match format {
        LogFormat::Text => {
            let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder
                .with_ansi(ansi)
                .event_format(TextFormat { tag })
                .try_init()
                .is_ok()
        }
        LogFormat::Json => builder
            .with_ansi(false)
            .event_format(JsonFormat { tag })
            .try_init()
            .is_ok(),
    };
    if ok {
        READY.store(true, Ordering::SeqCst);
    }
}

/// Job name and role, written on every line.
#[derive(Debug, Clone)]
struct Tag {
    job: String,
    role: Role,
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.role {
            Role::Process(p) => match crate::metrics::current_worker() {
                Some(w) => write!(f, "job{{name={} process={p} worker={w}}}", self.job),
                None => write!(f, "job{{name={} process={p}}}", self.job),
            },
            Role::Launcher { node } => write!(f, "launcher{{name={} node={node}}}", self.job),
        }
    }
}

/// Human-readable lines.
struct TextFormat {
    tag: Tag,
}

fn level_color(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "\x1b[31m",
        Level::WARN => "\x1b[33m",
        Level::INFO => "\x1b[32m",
        Level::DEBUG => "\x1b[34m",
        Level::TRACE => "\x1b[35m",
    }
}

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if PROGRESS_LINE.load(Ordering::Relaxed) {
            w.write_str("\r\x1b[2K")?;
        }
        if w.has_ansi_escapes() {
            w.write_str("\x1b[2m")?;
            SystemTime.format_time(&mut w)?;
            write!(
                w,
                "\x1b[0m {}{:>5}\x1b[0m ",
                level_color(meta.level()),
                meta.level()
            )?;
        } else {
            SystemTime.format_time(&mut w)?;
            write!(w, " {:>5} ", meta.level())?;
        }
        write!(w, "{}", self.tag)?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                write!(w, ":{}", span.name())?;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(w, "{{{fields}}}")?;
                    }
                }
            }
        }
        write!(w, ": {}: ", meta.target())?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// One JSON object per line.
struct JsonFormat {
    tag: Tag,
}

/// Collects an event's fields as JSON values.
#[derive(Default)]
struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), serde_json::json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut ts = String::new();
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let mut fields = fields.0;
        // Keys in a fixed order (serde_json's map would sort them).
        let mut obj: Vec<(&str, serde_json::Value)> = vec![
            ("timestamp", ts.into()),
            ("level", meta.level().as_str().into()),
            ("job", self.tag.job.clone().into()),
        ];
        match self.tag.role {
            Role::Process(p) => {
                obj.push(("process", p.into()));
                if let Some(w) = crate::metrics::current_worker() {
                    obj.push(("worker", w.into()));
                }
            }
            Role::Launcher { node } => obj.push(("launcher_node", node.into())),
        };
        obj.push(("target", meta.target().into()));
        obj.push(("message", fields.remove("message").unwrap_or_default()));
        if !fields.is_empty() {
            obj.push(("fields", fields.into()));
        }
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<serde_json::Value> = scope
                .from_root()
                .map(|span| {
                    let ext = span.extensions();
                    match ext.get::<FormattedFields<N>>() {
                        Some(f) if !f.is_empty() => format!("{}{{{f}}}", span.name()).into(),
                        _ => span.name().into(),
                    }
                })
                .collect();
            if !spans.is_empty() {
                obj.push(("spans", spans.into()));
            }
        }
        let mut line = String::from("{");
        for (i, (k, v)) in obj.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&serde_json::to_string(k).map_err(|_| fmt::Error)?);
            line.push(':');
            line.push_str(&serde_json::to_string(v).map_err(|_| fmt::Error)?);
        }
        line.push('}');
        writeln!(w, "{line}")
    }
}

/// Panics that only follow from another failure (a lost connection, a dead worker): logged
/// at debug level so that the first cause stands out.
fn is_cascade(msg: &str) -> bool {
    [
        "MergeQueue poisoned",
        "Worker panic",
        "Send thread panic",
        "Recv thread panic",
        "Failed to receive MergeQueue",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Log panics as one line (thread, message, location) instead of the default report,
/// unless `RUST_BACKTRACE` is set, when the default hook (with backtrace) stays.
pub fn install_panic_hook() {
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let msg = panic_message(info.payload());
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = msg.replace('\n', " ");
        if !READY.load(Ordering::SeqCst) {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "thread '{thread}' panicked at {at}: {msg}"
            );
        } else if is_cascade(&msg) {
            tracing::debug!(thread, at, "panic: {msg}");
        } else if let Some(peer) = thread
            .strip_prefix("timely:recv-")
            .or_else(|| thread.strip_prefix("timely:send-"))
        {
            tracing::error!("lost the connection to process {peer}: {msg}");
        } else {
            tracing::error!(thread, at, "panic: {msg}");
        }
    }));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    fn capture(format: LogFormat, role: Role, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let tag = Tag {
            job: "wordcount".into(),
            role,
        };
        let b = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false);
        match format {
            LogFormat::Text => {
                tracing::subscriber::with_default(b.event_format(TextFormat { tag }).finish(), f)
            }
            LogFormat::Json => {
                tracing::subscriber::with_default(b.event_format(JsonFormat { tag }).finish(), f)
            }
        }
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_lines_carry_job_and_process() {
        let out = capture(LogFormat::Text, Role::Process(3), || {
            let span = tracing::info_span!("source", name = "lines");
            let _g = span.enter();
            tracing::info!(records = 5u64, "done");
        });
        assert_eq!(out.lines().count(), 1);
        assert!(out.contains(" INFO job{name=wordcount process=3}:source{name=\"lines\"}: weir_runtime::cli::logging::tests: done records=5\n"), "{out}");
    }

    #[test]
    fn json_lines_carry_job_and_process() {
        let out = capture(LogFormat::Json, Role::Launcher { node: 1 }, || {
            tracing::warn!(records = 5u64, ok = true, "done")
        });
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["job"], "wordcount");
        assert_eq!(v["launcher_node"], 1);
        assert_eq!(v["message"], "done");
        assert_eq!(v["fields"]["records"], 5);
        assert_eq!(v["fields"]["ok"], true);
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(out.starts_with("{\"timestamp\":"), "{out}");
        assert!(
            out.contains(
                "\"level\":\"WARN\",\"job\":\"wordcount\",\"launcher_node\":1,\"target\":"
            ),
            "{out}"
        );
        let out = capture(LogFormat::Json, Role::Process(0), || tracing::info!("hi"));
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["process"], 0);
        assert!(v.get("fields").is_none());
    }

    #[test]
    fn lines_of_worker_threads_carry_the_worker() {
        let out = std::thread::spawn(|| {
            crate::metrics::set_current(crate::metrics::ProcessMetrics::new("wordcount", 1), 5);
            let text = capture(LogFormat::Text, Role::Process(1), || tracing::info!("hi"));
            let json = capture(LogFormat::Json, Role::Process(1), || tracing::info!("hi"));
            (text, json)
        })
        .join()
        .unwrap();
        assert!(
            out.0
                .contains(" INFO job{name=wordcount process=1 worker=5}: "),
            "{}",
            out.0
        );
        let v: serde_json::Value = serde_json::from_str(out.1.trim()).unwrap();
        assert_eq!(
            (v["process"].as_u64(), v["worker"].as_u64()),
            (Some(1), Some(5))
        );
    }

    #[test]
    fn panic_messages() {
        let p: Box<dyn std::any::Any + Send> = Box::new("boom");
        assert_eq!(panic_message(p.as_ref()), "boom");
        let p: Box<dyn std::any::Any + Send> = Box::new(String::from("bang"));
        assert_eq!(panic_message(p.as_ref()), "bang");
        assert!(is_cascade("MergeQueue poisoned."));
    }
}

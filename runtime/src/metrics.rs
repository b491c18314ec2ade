//! Metrics of a running job: one Prometheus registry per process (`/metrics`).
//!
//! Names are Flink's metric names in Prometheus style, `weir_<scope>_<name in snake_case>`,
//! with the labels `job`, `vertex`, `operator` and `instance` (see the list in README.md,
//! "Watching a job"). The hot path never touches an atomic per record: a vertex instance
//! counts records in locals while it runs and adds them to its counters once per activation.
//!
//! User code registers its own metrics with [`counter`], [`gauge`] and [`histogram`]; take
//! the handle once (a `let` in the job function, a field of a process function) and update
//! it per record — it is a plain atomic.

pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Label set of every metric: `[(name, value)]`.
type Labels = Vec<(&'static str, String)>;
/// A counter of seconds.
type SecondsCounter = Counter<f64, AtomicU64>;
/// A gauge holding a float.
type FloatGauge = Gauge<f64, AtomicU64>;

/// How many completed checkpoints `/api/checkpoints` lists.
pub const CHECKPOINT_HISTORY: usize = 50;

/// Environment variable the launcher sets on its processes: when the job started (ms since
/// the Unix epoch), so that uptime survives restarts.
pub const ENV_JOB_STARTED: &str = "WEIR_JOB_STARTED_MS";
/// Environment variable the launcher sets on its processes: restarts so far.
pub const ENV_RESTARTS: &str = "WEIR_RESTARTS";

/// One completed checkpoint, as this process saw it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckpointRecord {
    /// Checkpoint id (an epoch).
    pub id: u64,
    /// When it completed, ms since the Unix epoch.
    pub completed_at_ms: u64,
    /// From the first contribution of this process to completion on every worker, seconds.
    pub duration_seconds: f64,
    /// Bytes of state changes this process wrote for it.
    pub size_bytes: u64,
}

/// The metrics of one process of a job.
pub struct ProcessMetrics {
    job: String,
    process: usize,
    registry: Mutex<Registry>,
    job_started_ms: u64,
    records_in: Family<Labels, Counter>,
    records_out: Family<Labels, Counter>,
    op_records_in: Family<Labels, Counter>,
    op_records_out: Family<Labels, Counter>,
    watermark: Family<Labels, Gauge>,
    watermark_lag: Family<Labels, FloatGauge>,
    backpressured: Family<Labels, SecondsCounter>,
    busy: Family<Labels, SecondsCounter>,
    uptime: FloatGauge,
    restarts: Gauge,
    ck_completed: Counter,
    ck_failed: Counter,
    ck_last_duration: FloatGauge,
    ck_last_size: Gauge,
    ck_last_id: Gauge,
    rss: Gauge,
    cpu: FloatGauge,
    /// Watermark gauges of every task, for the lag computed at scrape time.
    tasks: Mutex<Vec<(Labels, Gauge)>>,
    /// Checkpoints in progress: first contribution, bytes so far.
    in_progress: Mutex<HashMap<u64, (Instant, u64)>>,
    /// Newest checkpoint counted as complete, plus one.
    last_completed: AtomicU64,
    history: Mutex<VecDeque<CheckpointRecord>>,
    user: Mutex<HashMap<String, UserMetric>>,
    /// Progress of this process's source instances (for `run` on a terminal).
    read: AtomicU64,
    expected: AtomicU64,
    /// Source instances opened, and how many of them are unbounded or of unknown size.
    sources: AtomicU64,
    open_ended: AtomicU64,
    unbounded: AtomicU64,
}

/// How far the sources of a process are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Records read so far.
    pub read: u64,
    /// Records they will read in all, when every source instance is bounded and knows it.
    pub total: Option<u64>,
    /// Whether every source instance ends by itself.
    pub bounded: bool,
}

impl std::fmt::Debug for ProcessMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessMetrics")
            .field("job", &self.job)
            .field("process", &self.process)
            .finish_non_exhaustive()
    }
}

/// A registered user metric (one family per name, labelled by job and worker).
#[derive(Clone)]
enum UserMetric {
    Counter(Family<Labels, Counter>),
    Gauge(Family<Labels, Gauge>),
    Histogram(Family<Labels, Histogram, fn() -> Histogram>),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

impl ProcessMetrics {
    /// The metrics of process `process` of job `job`. Uptime and restarts come from the
    /// launcher ([`ENV_JOB_STARTED`], [`ENV_RESTARTS`]) when it started this process.
    pub fn new(job: &str, process: usize) -> Arc<Self> {
        let mut r = Registry::with_prefix("weir");
        let m = ProcessMetrics {
            job: job.to_string(),
            process,
            job_started_ms: env_u64(ENV_JOB_STARTED).unwrap_or_else(now_ms),
            records_in: Family::default(),
            records_out: Family::default(),
            op_records_in: Family::default(),
            op_records_out: Family::default(),
            watermark: Family::default(),
            watermark_lag: Family::default(),
            backpressured: Family::default(),
            busy: Family::default(),
            uptime: FloatGauge::default(),
            restarts: Gauge::default(),
            ck_completed: Counter::default(),
            ck_failed: Counter::default(),
            ck_last_duration: FloatGauge::default(),
            ck_last_size: Gauge::default(),
            ck_last_id: Gauge::default(),
            rss: Gauge::default(),
            cpu: FloatGauge::default(),
            tasks: Mutex::default(),
            in_progress: Mutex::default(),
            last_completed: AtomicU64::new(0),
            history: Mutex::default(),
            user: Mutex::default(),
            read: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            sources: AtomicU64::new(0),
            open_ended: AtomicU64::new(0),
            unbounded: AtomicU64::new(0),
            registry: Mutex::new(Registry::default()),
        };
        m.restarts
            .set(env_u64(ENV_RESTARTS).unwrap_or(0).min(i64::MAX as u64) as i64);
        let job_labels = || vec![("job", job.to_string())];
        let t = r.sub_registry_with_prefix("task");
        t.register(
            "num_records_in",
            "Records a vertex instance received",
            m.records_in.clone(),
        );
        t.register(
            "num_records_out",
            "Records a vertex instance emitted to the next vertices",
            m.records_out.clone(),
        );
        t.register_with_unit(
            "back_pressured_time",
            "Time a source instance was held back by flow control",
            Unit::Seconds,
            m.backpressured.clone(),
        );
        t.register_with_unit(
            "busy_time",
            "Time a vertex instance spent processing",
            Unit::Seconds,
            m.busy.clone(),
        );
        let o = r.sub_registry_with_prefix("operator");
        o.register(
            "num_records_in",
            "Records the head operator of a vertex received",
            m.op_records_in.clone(),
        );
        o.register(
            "num_records_out",
            "Records a source operator read and emitted",
            m.op_records_out.clone(),
        );
        o.register(
            "current_input_watermark",
            "The input watermark of the head operator, ms since the Unix epoch",
            m.watermark.clone(),
        );
        o.register_with_unit(
            "watermark_lag",
            "Wall-clock time minus the input watermark",
            Unit::Seconds,
            m.watermark_lag.clone(),
        );
        let j =
            r.sub_registry_with_labels(job_labels().into_iter().map(|(k, v)| (k.into(), v.into())));
        let j = j.sub_registry_with_prefix("job");
        j.register_with_unit(
            "uptime",
            "Time since the job started (across restarts)",
            Unit::Seconds,
            m.uptime.clone(),
        );
        j.register("num_restarts", "Restarts of the job", m.restarts.clone());
        j.register(
            "number_of_completed_checkpoints",
            "Checkpoints completed",
            m.ck_completed.clone(),
        );
        j.register(
            "number_of_failed_checkpoints",
            "Checkpoints that could not be written",
            m.ck_failed.clone(),
        );
        j.register_with_unit(
            "last_checkpoint_duration",
            "Duration of the last completed checkpoint",
            Unit::Seconds,
            m.ck_last_duration.clone(),
        );
        j.register_with_unit(
            "last_checkpoint_size",
            "State bytes this process wrote for the last completed checkpoint",
            Unit::Bytes,
            m.ck_last_size.clone(),
        );
        j.register(
            "last_completed_checkpoint_id",
            "Id of the last completed checkpoint",
            m.ck_last_id.clone(),
        );
        let labels = vec![
            ("job".into(), job.to_string().into()),
            ("process".into(), process.to_string().into()),
        ];
        let p = r.sub_registry_with_labels(labels.into_iter());
        let p = p.sub_registry_with_prefix("process");
        p.register_with_unit(
            "resident_memory",
            "Resident memory of this process",
            Unit::Bytes,
            m.rss.clone(),
        );
        p.register_with_unit(
            "cpu",
            "CPU time of this process (user + system)",
            Unit::Seconds,
            m.cpu.clone(),
        );
        if let Ok(mut reg) = m.registry.lock() {
            *reg = r;
        }
        Arc::new(m)
    }

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// This process's index.
    pub fn process(&self) -> usize {
        self.process
    }

    /// When the job started, ms since the Unix epoch.
    pub fn job_started_ms(&self) -> u64 {
        self.job_started_ms
    }

    /// Restarts of the job so far.
    pub fn restarts(&self) -> u64 {
        self.restarts.get().max(0) as u64
    }

    /// The counters of one vertex instance. `head` is the name of its first operator and
    /// `source` whether that operator is a source.
    pub fn task(&self, vertex: &str, head: &str, source: bool, instance: usize) -> TaskMetrics {
        let task: Labels = vec![
            ("job", self.job.clone()),
            ("vertex", vertex.to_string()),
            ("instance", instance.to_string()),
        ];
        let op: Labels = vec![
            ("job", self.job.clone()),
            ("vertex", vertex.to_string()),
            ("operator", head.to_string()),
            ("instance", instance.to_string()),
        ];
        let watermark = self.watermark.get_or_create_owned(&op);
        watermark.set(i64::MIN);
        if let Ok(mut t) = self.tasks.lock() {
            t.push((op.clone(), watermark.clone()));
        }
        TaskMetrics {
            records_in: self.records_in.get_or_create_owned(&task),
            records_out: self.records_out.get_or_create_owned(&task),
            op_records: if source {
                self.op_records_out.get_or_create_owned(&op)
            } else {
                self.op_records_in.get_or_create_owned(&op)
            },
            watermark,
            backpressured: self.backpressured.get_or_create_owned(&task),
            busy: self.busy.get_or_create_owned(&task),
        }
    }

    /// A source instance opened: bounded or not, and the records it will read if known.
    pub fn source_opened(&self, bounded: bool, total: Option<u64>) {
        self.sources.fetch_add(1, Ordering::Relaxed);
        if !bounded {
            self.unbounded.fetch_add(1, Ordering::Relaxed);
        }
        match (bounded, total) {
            (true, Some(n)) => {
                self.expected.fetch_add(n, Ordering::Relaxed);
            }
            _ => {
                self.open_ended.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A source instance read `n` more records (once per activation).
    pub fn source_read(&self, n: u64) {
        self.read.fetch_add(n, Ordering::Relaxed);
    }

    /// How far this process's sources are.
    pub fn progress(&self) -> Progress {
        let known = self.sources.load(Ordering::Relaxed) > 0
            && self.open_ended.load(Ordering::Relaxed) == 0;
        Progress {
            read: self.read.load(Ordering::Relaxed),
            total: known.then(|| self.expected.load(Ordering::Relaxed)),
            bounded: self.unbounded.load(Ordering::Relaxed) == 0,
        }
    }

    /// A checkpoint got `bytes` of state changes from one worker of this process.
    pub fn checkpoint_written(&self, id: u64, bytes: u64) {
        if let Ok(mut p) = self.in_progress.lock() {
            p.entry(id).or_insert((Instant::now(), 0)).1 += bytes;
        }
    }

    /// A checkpoint could not be written.
    pub fn checkpoint_failed(&self) {
        self.ck_failed.inc();
    }

    /// Checkpoint `id` is complete on every worker (every worker of this process reports
    /// it; the first report counts).
    pub fn checkpoint_completed(&self, id: u64) {
        if self.last_completed.fetch_max(id + 1, Ordering::SeqCst) > id {
            return;
        }
        let (started, bytes) = self
            .in_progress
            .lock()
            .ok()
            .and_then(|mut p| {
                let r = p.remove(&id);
                p.retain(|&c, _| c > id);
                r
            })
            .unwrap_or((Instant::now(), 0));
        let took = started.elapsed().as_secs_f64();
        self.ck_completed.inc();
        self.ck_last_duration.set(took);
        self.ck_last_size.set(bytes.min(i64::MAX as u64) as i64);
        self.ck_last_id.set(id.min(i64::MAX as u64) as i64);
        tracing::info!(
            checkpoint = id,
            duration_ms = (took * 1000.0) as u64,
            size_bytes = bytes,
            "checkpoint {id} complete in {:.0} ms, {bytes} bytes of state changes in this process",
            took * 1000.0
        );
        if let Ok(mut h) = self.history.lock() {
            if h.len() == CHECKPOINT_HISTORY {
                h.pop_front();
            }
            h.push_back(CheckpointRecord {
                id,
                completed_at_ms: now_ms(),
                duration_seconds: took,
                size_bytes: bytes,
            });
        }
    }

    /// Completed checkpoints, oldest first (at most [`CHECKPOINT_HISTORY`]).
    pub fn checkpoint_history(&self) -> Vec<CheckpointRecord> {
        self.history
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Checkpoints completed and failed so far.
    pub fn checkpoint_counts(&self) -> (u64, u64) {
        (self.ck_completed.get(), self.ck_failed.get())
    }

    /// Refresh the values computed on demand (uptime, watermark lag, memory, CPU).
    fn refresh(&self) {
        let now = now_ms();
        self.uptime
            .set(now.saturating_sub(self.job_started_ms) as f64 / 1000.0);
        if let Ok(tasks) = self.tasks.lock() {
            for (labels, wm) in tasks.iter() {
                let wm = wm.get();
                if wm > 0 && wm < i64::MAX {
                    let lag = (now as i64).saturating_sub(wm) as f64 / 1000.0;
                    self.watermark_lag.get_or_create(labels).set(lag);
                }
            }
        }
        if let Some((rss, cpu)) = proc_stats() {
            self.rss.set(rss.min(i64::MAX as u64) as i64);
            self.cpu.set(cpu.as_secs_f64());
        }
    }

    /// Every metric in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        self.refresh();
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = encode(&mut out, &r);
        }
        out
    }

    /// The user metric `name`, registered on first use.
    fn user_metric(&self, name: &str, make: impl FnOnce() -> UserMetric) -> UserMetric {
        let name = sanitize(name);
        let Ok(mut user) = self.user.lock() else {
            return make();
        };
        if let Some(m) = user.get(&name) {
            return m.clone();
        }
        let m = make();
        if let Ok(mut r) = self.registry.lock() {
            let help = format!("User metric `{name}`");
            let full = format!("user_{name}");
            match &m {
                UserMetric::Counter(f) => r.register(full, help, f.clone()),
                UserMetric::Gauge(f) => r.register(full, help, f.clone()),
                UserMetric::Histogram(f) => r.register(full, help, f.clone()),
            }
        }
        user.insert(name, m.clone());
        m
    }
}

/// A metric name as Prometheus accepts it: `[a-zA-Z0-9_]`, not starting with a digit, no
/// `_total` suffix (the counter encoding adds it).
fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    while let Some(t) = s.strip_suffix("_total") {
        s = t.to_string();
    }
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

/// Resident memory (bytes) and CPU time of this process, from `/proc/self`.
fn proc_stats() -> Option<(u64, Duration)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: as above.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ticks = utime + stime;
    Some((pages * page, Duration::from_millis(ticks * 1000 / hz)))
}

/// The counters of one vertex instance. The vertex adds to them once per activation.
#[derive(Clone, Debug)]
pub struct TaskMetrics {
    /// Records received.
    pub records_in: Counter,
    /// Records emitted downstream.
    pub records_out: Counter,
    /// The head operator's records: in for an operator, out for a source.
    pub op_records: Counter,
    /// The input watermark (ms since the Unix epoch; `i64::MIN` before the first).
    pub watermark: Gauge,
    /// Seconds held back by flow control (sources).
    pub backpressured: SecondsCounter,
    /// Seconds spent processing.
    pub busy: SecondsCounter,
}

impl TaskMetrics {
    /// Counters that belong to no registry (a vertex not hosted here).
    pub fn detached() -> Self {
        TaskMetrics {
            records_in: Counter::default(),
            records_out: Counter::default(),
            op_records: Counter::default(),
            watermark: Gauge::default(),
            backpressured: SecondsCounter::default(),
            busy: SecondsCounter::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The process's metrics as seen from a worker thread (for user metrics and hooks).

thread_local! {
    static CURRENT: RefCell<Option<(Arc<ProcessMetrics>, usize)>> = const { RefCell::new(None) };
}

/// Make `metrics` the registry of this (worker) thread; `worker` is its global index.
pub fn set_current(metrics: Arc<ProcessMetrics>, worker: usize) {
    CURRENT.with(|c| *c.borrow_mut() = Some((metrics, worker)));
}

/// Run `f` with this thread's registry, if it has one.
pub fn with_current<R>(f: impl FnOnce(&ProcessMetrics, usize) -> R) -> Option<R> {
    CURRENT.with(|c| c.borrow().as_ref().map(|(m, w)| f(m, *w)))
}

/// The worker index of this thread, if it is a worker of a running job.
pub fn current_worker() -> Option<usize> {
    CURRENT.with(|c| c.borrow().as_ref().map(|(_, w)| *w))
}

fn user_labels(m: &ProcessMetrics, worker: usize) -> Labels {
    vec![("job", m.job.clone()), ("worker", worker.to_string())]
}

/// A user counter `weir_user_<name>_total{job, worker}`. Called on a worker thread (in the
/// job function, an operator's constructor or a user function) it is registered with the
/// process's registry; elsewhere (a unit test) it counts on its own.
pub fn counter(name: &str) -> Counter {
    with_current(
        |m, w| match m.user_metric(name, || UserMetric::Counter(Family::default())) {
            UserMetric::Counter(f) => f.get_or_create_owned(&user_labels(m, w)),
            _ => Counter::default(),
        },
    )
    .unwrap_or_default()
}

/// A user gauge `weir_user_<name>{job, worker}` (see [`counter`]).
pub fn gauge(name: &str) -> Gauge {
    with_current(
        |m, w| match m.user_metric(name, || UserMetric::Gauge(Family::default())) {
            UserMetric::Gauge(f) => f.get_or_create_owned(&user_labels(m, w)),
            _ => Gauge::default(),
        },
    )
    .unwrap_or_default()
}

fn default_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 16,
    ))
}

/// A user histogram `weir_user_<name>{job, worker}` with exponential buckets from 0.001 to
/// about 33 (base 2), suited to seconds (see [`counter`]).
pub fn histogram(name: &str) -> Histogram {
    with_current(|m, w| {
        match m.user_metric(name, || {
            UserMetric::Histogram(Family::new_with_constructor(
                default_histogram as fn() -> Histogram,
            ))
        }) {
            UserMetric::Histogram(f) => f.get_or_create_owned(&user_labels(m, w)),
            _ => default_histogram(),
        }
    })
    .unwrap_or_else(default_histogram)
}

// ---------------------------------------------------------------------------------------
// Reading the text format back (process 0 sums the processes' metrics for the REST API).

/// One sample of the text format: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name with its suffix (`weir_task_num_records_in_total`).
    pub name: String,
    /// Labels in order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `k`.
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of a text-format page (comments and malformed lines skipped).
pub fn parse_text(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            let labels = parse_labels(line.get(open + 1..close)?)?;
            (&line[..open], labels, &line[close + 1..])
        }
        None => {
            let sp = line.find(' ')?;
            (&line[..sp], Vec::new(), &line[sp..])
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_labels(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut val = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => val.push('\n'),
                    c => val.push(c),
                },
                '"' => break,
                c => val.push(c),
            }
        }
        out.push((key.trim().to_string(), val));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn value(text: &str, name: &str, label: (&str, &str)) -> Option<f64> {
        parse_text(text)
            .into_iter()
            .find(|s| s.name == name && s.label(label.0) == Some(label.1))
            .map(|s| s.value)
    }

    #[test]
    fn task_counters_and_job_metrics_are_encoded_with_flink_names() {
        let m = ProcessMetrics::new("wc", 0);
        let t = m.task("lines -> tokenize", "lines", true, 1);
        t.records_in.inc_by(5);
        t.records_out.inc_by(7);
        t.op_records.inc_by(5);
        t.watermark.set(now_ms() as i64 - 2000);
        m.checkpoint_written(9, 100);
        m.checkpoint_written(9, 20);
        m.checkpoint_completed(9);
        m.checkpoint_completed(9);
        let text = m.encode();
        let v = |n: &str| value(&text, n, ("job", "wc"));
        assert_eq!(v("weir_task_num_records_in_total"), Some(5.0), "{text}");
        assert_eq!(v("weir_task_num_records_out_total"), Some(7.0));
        assert_eq!(v("weir_operator_num_records_out_total"), Some(5.0));
        assert_eq!(
            v("weir_job_number_of_completed_checkpoints_total"),
            Some(1.0)
        );
        assert_eq!(v("weir_job_last_checkpoint_size_bytes"), Some(120.0));
        assert_eq!(v("weir_job_last_completed_checkpoint_id"), Some(9.0));
        let lag = v("weir_operator_watermark_lag_seconds").unwrap();
        assert!((1.5..60.0).contains(&lag), "{lag}");
        assert!(v("weir_process_resident_memory_bytes").unwrap() > 1e6);
        assert!(v("weir_job_uptime_seconds").unwrap() >= 0.0);
        let s = parse_text(&text)
            .into_iter()
            .find(|s| s.name == "weir_task_num_records_in_total")
            .unwrap();
        assert_eq!(s.label("vertex"), Some("lines -> tokenize"));
        assert_eq!(s.label("instance"), Some("1"));
        assert_eq!(m.checkpoint_history().len(), 1);
    }

    #[test]
    fn user_metrics_register_once_per_name_on_worker_threads() {
        let m = ProcessMetrics::new("wc", 0);
        std::thread::scope(|s| {
            s.spawn(|| {
                set_current(Arc::clone(&m), 3);
                counter("parsed lines_total").inc_by(2);
                counter("parsed lines").inc();
                gauge("depth").set(-4);
                histogram("latency").observe(0.01);
            });
        });
        // Off a worker thread: counts on its own, no panic.
        counter("x").inc();
        let text = m.encode();
        assert_eq!(
            value(&text, "weir_user_parsed_lines_total", ("worker", "3")),
            Some(3.0),
            "{text}"
        );
        assert_eq!(value(&text, "weir_user_depth", ("worker", "3")), Some(-4.0));
        assert_eq!(
            value(&text, "weir_user_latency_count", ("worker", "3")),
            Some(1.0)
        );
    }

    #[test]
    fn parser_reads_labels_with_escapes_and_skips_garbage() {
        let s = parse_text("# HELP x y\nfoo{a=\"b,c\",d=\"e\\\"f\"} 2.5\nbar 3\n{broken\n");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].label("a"), Some("b,c"));
        assert_eq!(s[0].label("d"), Some("e\"f"));
        assert_eq!(s[1].value, 3.0);
    }
}

//! Flow control: a source does not run away from a slow sink. Timely's channels are
//! unbounded, so without it every record the source can make piles up in memory in front
//! of the sink.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use weir::prelude::*;

static GENERATED: AtomicU64 = AtomicU64::new(0);
static CONSUMED: AtomicU64 = AtomicU64::new(0);
static MAX_IN_FLIGHT: AtomicU64 = AtomicU64::new(0);

const RECORDS: u64 = 30_000;
/// The source's rate, records per second.
const RATE: f64 = 40_000.0;

/// A sink ten times slower than the source: 1 ms of work per 4 records.
struct SlowSink;

struct SlowWriter {
    n: u64,
}

impl Sink<u64> for SlowSink {
    type Writer = SlowWriter;
    fn describe(&self) -> String {
        "slow".into()
    }
    fn guarantee(&self) -> Guarantee {
        Guarantee::BestEffort
    }
    fn open(&self, _: &SinkContext) -> weir::runtime::error::Result<SlowWriter> {
        Ok(SlowWriter { n: 0 })
    }
}

impl SinkWriter<u64> for SlowWriter {
    fn write(&mut self, _: u64) -> weir::runtime::error::Result<()> {
        let consumed = CONSUMED.fetch_add(1, Ordering::SeqCst) + 1;
        let in_flight = GENERATED.load(Ordering::SeqCst).saturating_sub(consumed);
        MAX_IN_FLIGHT.fetch_max(in_flight, Ordering::SeqCst);
        self.n += 1;
        if self.n.is_multiple_of(4) {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }
    fn close(&mut self) -> weir::runtime::error::Result<()> {
        Ok(())
    }
}

fn generate(i: u64) -> u64 {
    GENERATED.fetch_add(1, Ordering::SeqCst);
    i
}

// The sink gets a slot (so a worker thread) of its own: it must not slow the source down
// by sharing its thread, only by being slow.
#[weir::job(name = "flow", main = false, parallelism = 1)]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(RECORDS, generate).rate(RATE))
        .map(|x| x + 1)
        .sink(SlowSink)
        .slot_sharing_group("sinks");
}

/// The source makes every record within 0.75 s while the sink needs 7.5 s for them. A
/// source reads at most `records_per_step` records into one epoch and has at most
/// `MAX_EPOCHS_AHEAD` epochs in flight ahead of the slowest vertex, so the records made but
/// not yet written stay within a few steps (the sink may also hold the batch it is working
/// through) instead of approaching all of them.
#[test]
fn a_slow_sink_holds_the_source_back() {
    let step = 500;
    let metrics = weir::runtime::metrics::ProcessMetrics::new("flow", 0);
    let options = weir::runtime::worker::LocalOptions {
        epoch: Duration::from_millis(50),
        records_per_step: step,
        checkpoints: None,
        metrics: Some(std::sync::Arc::clone(&metrics)),
    };
    let summary = weir::runtime::worker::run_local_with(pipeline(), 2, &[], options).unwrap();
    assert_eq!(summary.records_in, RECORDS);
    assert_eq!(CONSUMED.load(Ordering::SeqCst), RECORDS);
    let bound = (2 * weir::runtime::worker::MAX_EPOCHS_AHEAD as usize + 4) * step;
    let max = MAX_IN_FLIGHT.load(Ordering::SeqCst);
    assert!(
        max <= bound as u64,
        "{max} records were in flight at once; flow control allows about {bound} (without it, nearly all {RECORDS})"
    );
    // The time the source was held back shows in its metrics: most of the sink's 7.5 s.
    let held: f64 = weir::runtime::metrics::parse_text(&metrics.encode())
        .iter()
        .filter(|s| s.name == "weir_task_back_pressured_time_seconds_total")
        .map(|s| s.value)
        .sum();
    assert!(
        (3.0..20.0).contains(&held),
        "the source was held back for {held} s"
    );
}

/// Records big enough that holding many of them shows in the process's memory.
type Big = ([u64; 32], [u64; 32]);

/// A sink that spends `every_us` microseconds per 16 records (0: as fast as it can).
struct PacedSink {
    every_us: u64,
}

struct PacedWriter {
    every_us: u64,
    n: u64,
}

impl Sink<Big> for PacedSink {
    type Writer = PacedWriter;
    fn describe(&self) -> String {
        "paced".into()
    }
    fn guarantee(&self) -> Guarantee {
        Guarantee::BestEffort
    }
    fn open(&self, _: &SinkContext) -> weir::runtime::error::Result<PacedWriter> {
        Ok(PacedWriter {
            every_us: self.every_us,
            n: 0,
        })
    }
}

impl SinkWriter<Big> for PacedWriter {
    fn write(&mut self, r: Big) -> weir::runtime::error::Result<()> {
        self.n += 1 + r.1[31] % 2;
        if self.every_us > 0 && self.n.is_multiple_of(16) {
            std::thread::sleep(Duration::from_micros(self.every_us));
        }
        Ok(())
    }
    fn close(&mut self) -> weir::runtime::error::Result<()> {
        Ok(())
    }
}

const BIG_RECORDS: u64 = 120_000;

#[weir::job(name = "flow-memory", main = false, parallelism = 1)]
fn paced(env: &mut Env) {
    env.source(Generator::bounded(BIG_RECORDS, |i| ([i; 32], [i; 32])).rate(300_000.0))
        .map(|mut r: Big| {
            r.1[31] += 1;
            r
        })
        .sink(PacedSink {
            every_us: env.arg_or("every_us", 0).parse().unwrap_or(0),
        })
        .slot_sharing_group("sinks");
}

/// The high-water mark of this process's resident memory, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Peak memory with a sink ten times slower than the source stays within twice that of a
/// run whose sink keeps up. The records are 512 bytes: without flow control the ~100 000
/// the slow sink lags behind (about 50 MB) would pile up in front of it.
#[test]
fn a_slow_sink_keeps_peak_memory_within_twice_a_normal_run() {
    let options = || weir::runtime::worker::LocalOptions {
        records_per_step: 2_000,
        ..Default::default()
    };
    // The source makes 300 000 records/s; the normal sink keeps up, the slow one takes
    // 540 µs per 16 records (about 30 000 records/s: 10× slower, ~4 s for all). Without
    // flow control (a step as large as the input) this test measured 52 MB against 8 MB;
    // with it, 12 MB against 9 MB.
    let normal = weir::runtime::worker::run_local_with(paced(), 2, &[], options()).unwrap();
    assert_eq!(normal.records_in, BIG_RECORDS);
    let normal_peak = peak_rss_kib();
    let slow = weir::runtime::worker::run_local_with(paced(), 2, &[("every_us", "540")], options())
        .unwrap();
    assert_eq!(slow.records_in, BIG_RECORDS);
    let slow_peak = peak_rss_kib();
    assert!(
        slow_peak <= 2 * normal_peak,
        "peak memory {slow_peak} KiB with the slow sink, {normal_peak} KiB with one that keeps up"
    );
}

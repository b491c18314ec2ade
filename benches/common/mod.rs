//! Shared by the benchmarks: the result checksum every variant computes, a weir sink that
//! computes it, and the criterion settings.
//!
//! Every variant of a benchmark ends in the same fold over its output records ([`Checksum`]):
//! a count and a wrapping sum of a mix of the fields. This keeps the benchmarks honest twice
//! over: a variant whose result differs from the plain loop's fails its assertion, and no
//! optimiser can delete the work of a `map` whose output is only counted (a counting-only sink
//! that drops its records lets LLVM remove the map entirely in the fused weir chain and the
//! plain loop, but not between timely operators, which would skew every ratio).

#![allow(dead_code)]

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput};
use std::sync::Mutex;
use std::time::Duration;
use weir::prelude::*;

/// A record of both benchmarks: two integers derived from the index.
pub type Rec = (u64, u64);

/// What every variant computes over its output records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checksum {
    /// Number of output records.
    pub count: u64,
    /// Wrapping sum of a mix of the fields of every output record.
    pub sum: u64,
    /// Wrapping sum of a mix of the first field only (the key in the keyed benchmark): still
    /// equal when a keyed operator saw a key's records out of order.
    pub keys: u64,
}

impl Checksum {
    /// Nothing yet.
    pub const ZERO: Checksum = Checksum {
        count: 0,
        sum: 0,
        keys: 0,
    };

    /// Fold one output record in (order-insensitive, so it does not matter which worker saw
    /// which record).
    #[inline(always)]
    pub fn add(&mut self, r: Rec) {
        let k = r.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.count += 1;
        self.sum = self.sum.wrapping_add(k ^ r.1);
        self.keys = self.keys.wrapping_add(k);
    }

    /// Combine the checksums of disjoint parts.
    pub fn merge(&mut self, other: Checksum) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
        self.keys = self.keys.wrapping_add(other.keys);
    }

    /// The same records per key, possibly in another order within a key.
    pub fn same_up_to_order(&self, other: &Checksum) -> bool {
        self.count == other.count && self.keys == other.keys
    }
}

/// A weir sink that folds its records into a [`Checksum`] and adds it to a shared total when
/// it closes (user code: weir's `Sink` trait, nothing private).
#[derive(Debug, Clone, Copy)]
pub struct ChecksumSink {
    total: &'static Mutex<Checksum>,
}

impl ChecksumSink {
    /// Add the instances' checksums to `total` at close.
    pub fn to(total: &'static Mutex<Checksum>) -> Self {
        ChecksumSink { total }
    }
}

/// An open [`ChecksumSink`] instance.
pub struct ChecksumWriter {
    acc: Checksum,
    total: &'static Mutex<Checksum>,
}

impl Sink<Rec> for ChecksumSink {
    type Writer = ChecksumWriter;
    fn describe(&self) -> String {
        "checksum".to_string()
    }
    fn guarantee(&self) -> Guarantee {
        Guarantee::ExactlyOnce
    }
    fn open(
        &self,
        _ctx: &weir::runtime::sinks::SinkContext,
    ) -> weir::runtime::error::Result<ChecksumWriter> {
        Ok(ChecksumWriter {
            acc: Checksum::ZERO,
            total: self.total,
        })
    }
}

impl SinkWriter<Rec> for ChecksumWriter {
    #[inline]
    fn write(&mut self, record: Rec) -> weir::runtime::error::Result<()> {
        self.acc.add(record);
        Ok(())
    }
    fn close(&mut self) -> weir::runtime::error::Result<()> {
        let acc = std::mem::take(&mut self.acc);
        self.total
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .merge(acc);
        Ok(())
    }
}

/// Take the total a sink accumulated (and reset it for the next run).
pub fn take(total: &Mutex<Checksum>) -> Checksum {
    std::mem::take(&mut *total.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Criterion settings for whole-run measurements of tens of milliseconds: few samples, so
/// that `cargo bench` of both files takes a few minutes on 2 cores.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
}

/// Process CPU time (user + system, all threads, including threads that have exited): a
/// criterion measurement that, unlike wall time, hardly moves when other processes compete
/// for the cores. Reported beside wall time; on an idle machine the two agree for one worker.
pub struct CpuTime;

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

/// `CLOCK_PROCESS_CPUTIME_ID` on Linux.
const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;

/// Nanoseconds of CPU time this process has used.
pub fn process_cpu_ns() -> u64 {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a Linux constant.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        process_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        process_cpu_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Formats CPU nanoseconds as ms and element throughput as Melem/s (of CPU time).
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        for v in values {
            *v /= 1e6;
        }
        "ms (cpu)"
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match *t {
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => n,
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Bits(n) => n,
        } as f64;
        for v in values {
            *v = n * 1e9 / *v / 1e6;
        }
        "Melem/s (cpu)"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// [`criterion`] measuring process CPU time instead of wall time.
pub fn criterion_cpu() -> Criterion<CpuTime> {
    criterion().with_measurement(CpuTime)
}

/// Profiling hook, checked before criterion starts: with `WEIR_BENCH_ONLY=<variant>` (and
/// optionally `WEIR_BENCH_RUNS=<n>`, default 20) the bench binary runs just that variant n
/// times, checks each result and exits — for `valgrind --tool=callgrind` or `perf record`.
/// Returns whether it ran.
pub fn profile_hook(
    variants: &[(&str, &dyn Fn() -> Checksum)],
    check: impl Fn(&str, Checksum),
) -> bool {
    let Ok(only) = std::env::var("WEIR_BENCH_ONLY") else {
        return false;
    };
    let runs: usize = std::env::var("WEIR_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let Some((name, run)) = variants.iter().find(|(n, _)| *n == only) else {
        let names: Vec<&str> = variants.iter().map(|(n, _)| *n).collect();
        panic!("WEIR_BENCH_ONLY={only}: no such variant; one of {names:?}");
    };
    let t = std::time::Instant::now();
    let cpu = process_cpu_ns();
    for _ in 0..runs {
        check(name, run());
    }
    let (wall, cpu) = (
        t.elapsed().as_secs_f64() / runs as f64,
        (process_cpu_ns() - cpu) as f64 / 1e9 / runs as f64,
    );
    eprintln!(
        "{name}: {runs} runs, {:.3} ms wall and {:.3} ms cpu per run",
        wall * 1e3,
        cpu * 1e3
    );
    true
}

/// Records a timely source or a weir batch hands on at once.
pub const BATCH: usize = 1024;

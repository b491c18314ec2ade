//! The cost of checkpoints (issue 4, item 10): a keyed rolling sum over 10^6 keys whose
//! updates follow a Zipf-like distribution, with and without a checkpoint every second, and
//! the time of one full checkpoint of 10^6 dirty keys (snapshot + one LMDB commit, synced).
//!
//! `cargo bench --bench checkpoint` prints a markdown table; see BENCHMARKS.md. Set
//! `WEIR_CK_RECORDS` to change the records per run (default 2·10^7) and
//! `WEIR_CK_DIR` to put the checkpoints on another disk (default: a temporary directory).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::prelude::*;
use weir::runtime::checkpoint::{
    checkpoint_at_tick, CheckpointConfig, Checkpointed, Checkpoints, StateReader, StateWriter,
};
use weir::runtime::worker::{run_local_with, LocalOptions};

/// Distinct keys.
const KEYS: u64 = 1_000_000;

fn records() -> u64 {
    std::env::var("WEIR_CK_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000_000)
}

/// A Zipf-like key for record `i` (exponent 1): `KEYS^u - 1` for `u` uniform in [0, 1) from
/// a hash of `i`, so key k is drawn with probability about 1 / ((k + 1) ln KEYS).
#[inline]
fn zipf_key(i: u64) -> u64 {
    let h = xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes());
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    ((KEYS as f64).powf(u) as u64)
        .saturating_sub(1)
        .min(KEYS - 1)
}

static OUT: std::sync::OnceLock<Arc<AtomicU64>> = std::sync::OnceLock::new();
fn out() -> Arc<AtomicU64> {
    OUT.get_or_init(|| Arc::new(AtomicU64::new(0))).clone()
}

#[weir::job(name = "bench-checkpoint", main = false)]
fn rolling_sum(env: &mut Env) {
    env.source(Generator::bounded(records(), |i| (zipf_key(i), 1u64)))
        .key_by(|(k, _)| *k)
        .reduce(|(k, a), (_, b)| (k, a + b))
        .sink(DiscardSink::with_counter(out()));
}

fn run(workers: usize, checkpoints: Option<CheckpointConfig>) -> Duration {
    out().store(0, Ordering::SeqCst);
    let started = Instant::now();
    let options = LocalOptions {
        checkpoints,
        ..LocalOptions::default()
    };
    let s = run_local_with(rolling_sum(), workers, &[], options).expect("run");
    let took = started.elapsed();
    assert_eq!(s.records_in, records());
    assert_eq!(out().load(Ordering::SeqCst), records());
    took
}

/// Every key dirty: what the first checkpoint of a large state writes.
struct Dirty(Vec<(u64, u64)>);

impl Checkpointed for Dirty {
    fn snapshot(&mut self, _: u64, out: &mut StateWriter<'_>) -> weir::runtime::error::Result<()> {
        for (k, v) in &self.0 {
            out.put_keyed(k, v)?;
        }
        Ok(())
    }
    fn restore(&mut self, _: u64, _: &StateReader<'_>) -> weir::runtime::error::Result<()> {
        Ok(())
    }
}

fn full_checkpoint(dir: &std::path::Path) -> Duration {
    let cfg = CheckpointConfig {
        restore: false,
        ..CheckpointConfig::new(dir, Duration::from_secs(1))
    };
    let (ck, _) =
        Checkpoints::open(&cfg, Duration::from_secs(1), 0, "bench", 1, 128).expect("open");
    ck.restore_to(None).expect("restore");
    let mut p = ck
        .participant("sum", 0, 0..128)
        .expect("participant")
        .expect("on");
    ck.seal();
    let mut state = Dirty((0..KEYS).map(|k| (k, k * 3)).collect());
    let started = Instant::now();
    p.epoch_done(checkpoint_at_tick(0), &mut state)
        .expect("checkpoint");
    // The commit runs on the worker's background thread: wait for it.
    ck.flush();
    let took = started.elapsed();
    if let Some(e) = ck.background_error() {
        panic!("the checkpoint failed: {e}");
    }
    assert_eq!(ck.ack_time(), Some(checkpoint_at_tick(0) + 1), "committed");
    black_box(&state);
    took
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let base = std::env::var_os("WEIR_CK_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let n = records();
    println!("| workers | checkpoints | seconds (best of 3) | M records/s | ratio |");
    println!("|---|---|---|---|---|");
    for workers in [1, 2] {
        let plain = (0..3).map(|_| run(workers, None)).min().unwrap_or_default();
        let mut with = Duration::MAX;
        for _ in 0..3 {
            let dir = tempfile::tempdir_in(&base).expect("tempdir");
            let cfg = CheckpointConfig {
                restore: false,
                ..CheckpointConfig::new(
                    &dir.path().join("bench-checkpoint"),
                    Duration::from_secs(1),
                )
            };
            with = with.min(run(workers, Some(cfg)));
        }
        for (label, t) in [("none", plain), ("every 1 s", with)] {
            println!(
                "| {workers} | {label} | {:.2} | {:.1} | {:.3} |",
                t.as_secs_f64(),
                n as f64 / t.as_secs_f64() / 1e6,
                t.as_secs_f64() / plain.as_secs_f64()
            );
        }
    }
    let dir = tempfile::tempdir_in(&base).expect("tempdir");
    let t = full_checkpoint(dir.path());
    println!();
    println!(
        "full checkpoint of {KEYS} dirty keys: {:.2} s ({:.2} µs per key)",
        t.as_secs_f64(),
        t.as_secs_f64() * 1e6 / KEYS as f64
    );
}

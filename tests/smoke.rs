// Generated code must not trip lints on the user's line (a flat_map returning Option).
#![deny(for_loops_over_fallibles)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use weir::prelude::*;

static COUNT: std::sync::OnceLock<Arc<AtomicU64>> = std::sync::OnceLock::new();
fn counter() -> Arc<AtomicU64> {
    COUNT.get_or_init(|| Arc::new(AtomicU64::new(0))).clone()
}

#[weir::job(name = "smoke", main = false)]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(100_000, |i| i))
        .filter(|x| x % 2 == 0)
        .map(|x| (x % 10, 1u64))
        .key_by(|(k, _)| *k)
        .reduce(|(k, a), (_, b)| (k, a + b))
        .parallelism(3)
        .sink(DiscardSink::with_counter(counter()));
}

#[test]
fn smoke() {
    let s = weir::runtime::worker::run_local(pipeline(), 4, &[]).unwrap();
    assert_eq!(s.records_in, 100_000);
    assert_eq!(counter().load(Ordering::SeqCst), 50_000);
}

static CHAINED: std::sync::OnceLock<Arc<AtomicU64>> = std::sync::OnceLock::new();
fn chained_counter() -> Arc<AtomicU64> {
    CHAINED.get_or_init(|| Arc::new(AtomicU64::new(0))).clone()
}

// source -> filter -> map -> sink chain into one vertex with no outputs at all: the source
// vertex then holds no capabilities and must still run to the end.
#[weir::job(name = "fully-chained", main = false)]
fn fully_chained(env: &mut Env) {
    env.source(Generator::bounded(100_000, |i| i))
        .filter(|x| x % 2 == 0)
        .map(|x| x + 1)
        .sink(DiscardSink::with_counter(chained_counter()));
}

#[test]
fn a_fully_chained_job_runs_to_the_end() {
    let plan = fully_chained().plan;
    assert_eq!(
        plan.vertices.len(),
        1,
        "source, filter, map and sink chain into one vertex"
    );
    weir::runtime::worker::run_local(fully_chained(), 2, &[]).unwrap();
    assert_eq!(chained_counter().load(Ordering::SeqCst), 50_000);
}

static OPTIONAL: std::sync::OnceLock<Arc<AtomicU64>> = std::sync::OnceLock::new();
fn optional_counter() -> Arc<AtomicU64> {
    OPTIONAL.get_or_init(|| Arc::new(AtomicU64::new(0))).clone()
}

// A flat_map closure may return an `Option` (zero or one record), as in Flink's
// `flatMap` with a collector; the generated loop takes it through `IntoIterator`.
#[weir::job(name = "optional-flat-map", main = false)]
fn optional_flat_map(env: &mut Env) {
    env.source(Generator::bounded(1_000, |i| i))
        .flat_map(|x| if x % 4 == 0 { Some(x) } else { None })
        .sink(DiscardSink::with_counter(optional_counter()));
}

#[test]
fn flat_map_may_return_an_option() {
    weir::runtime::worker::run_local(optional_flat_map(), 2, &[]).unwrap();
    assert_eq!(optional_counter().load(Ordering::SeqCst), 250);
}

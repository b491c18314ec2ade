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

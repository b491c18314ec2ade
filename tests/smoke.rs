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

//! Keyed rolling reduce over 10^5 keys: N records `(key = i * 7919 % 100_000, value = i)`,
//! partitioned by key, a running sum per key emitted for every record, folded into a
//! checksum. weir (`key_by(..).reduce(..)`) and hand-written timely (exchange by key hash →
//! unary operator with a `HashMap<key, sum>` → sink) on 1 and 2 workers, and a plain loop.
//!
//! All three keep per-key state in a hash map with foldhash's fixed-seed hasher, the hasher
//! of weir's keyed state (`weir::runtime::key::StateMap`), so the comparison is about the
//! framework and not the hash function. The timely exchange hashes the key with XXH3 like
//! weir's key groups.
//!
//! `cargo bench --bench keyed`; see BENCHMARKS.md.

mod common;

use common::{Checksum, ChecksumSink, Rec};
use criterion::measurement::Measurement;
use criterion::{criterion_group, Criterion, Throughput};
use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::Operator;
use weir::prelude::*;

/// Records per run.
const N: u64 = 1_000_000;
/// Distinct keys.
const KEYS: u64 = 100_000;

/// Per-key sums of the hand-written variants: `std`'s map with foldhash, as weir's state.
type Sums = std::collections::HashMap<u64, u64, foldhash::fast::FixedState>;

/// Record `i`. All records of a key have indices of the same parity (KEYS is even), so with
/// strided sources on 1 or 2 workers each key's records come from one source instance in
/// index order, and the running sums — hence the checksum — are deterministic.
#[inline(always)]
fn gen(i: u64) -> Rec {
    (i * 7919 % KEYS, i)
}

// ---------------------------------------------------------------------------------------
// weir

static OUT: Mutex<Checksum> = Mutex::new(Checksum::ZERO);

#[weir::job(name = "bench-keyed", main = false)]
fn weir_keyed(env: &mut Env) {
    env.source(Generator::bounded(N, gen))
        .key_by(|(k, _)| *k)
        .reduce(|(k, a), (_, b)| (k, a + b))
        .sink(ChecksumSink::to(&OUT));
}

#[inline(never)]
fn run_weir(workers: usize) -> Checksum {
    let s = weir::runtime::worker::run_local(weir_keyed(), workers, &[]).expect("weir run");
    assert_eq!(s.records_in, N);
    common::take(&OUT)
}

// ---------------------------------------------------------------------------------------
// hand-written timely

#[inline(never)]
fn run_timely(workers: usize) -> Checksum {
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let out = Rc::new(Cell::new(Checksum::ZERO));
        let o = Rc::clone(&out);
        worker.dataflow::<u64, _, _>(|scope| {
            let (index, peers) = (scope.index() as u64, scope.peers() as u64);
            let records = source::<_, timely::container::CapacityContainerBuilder<Vec<Rec>>, _, _>(
                scope,
                "Generate",
                move |cap, info| {
                    let activator = scope.activator_for(info.address);
                    let mut cap = Some(cap);
                    let mut next = index;
                    move |output| {
                        let Some(c) = cap.as_ref() else { return };
                        let mut session = output.session(c);
                        for _ in 0..4 {
                            let mut batch = Vec::with_capacity(common::BATCH);
                            while next < N && batch.len() < common::BATCH {
                                batch.push(gen(next));
                                next += peers;
                            }
                            if batch.is_empty() {
                                break;
                            }
                            session.give_container(&mut batch);
                        }
                        drop(session);
                        if next >= N {
                            cap = None;
                        } else {
                            activator.activate();
                        }
                    }
                },
            );
            let exchange = Exchange::new(|r: &Rec| xxhash_rust::xxh3::xxh3_64(&r.0.to_le_bytes()));
            let sums = records
                .unary::<timely::container::CapacityContainerBuilder<Vec<Rec>>, _, _, _>(
                    exchange,
                    "RollingSum",
                    |_cap, _info| {
                        let mut state = Sums::default();
                        move |input, output| {
                            input.for_each(|time, data| {
                                output.session(&time).give_iterator(data.drain(..).map(
                                    |(k, v)| {
                                        let sum = state.entry(k).or_insert(0);
                                        *sum += v;
                                        (k, *sum)
                                    },
                                ));
                            });
                        }
                    },
                );
            sums.sink(Pipeline, "Checksum", move |(input, _frontier)| {
                let mut acc = o.get();
                input.for_each(|_time, data| {
                    for r in data.drain(..) {
                        acc.add(r);
                    }
                });
                o.set(acc);
            });
        });
        while worker.step_or_park(None) {}
        out.get()
    })
    .expect("timely");
    let mut total = Checksum::ZERO;
    for r in guards.join() {
        total.merge(r.expect("timely worker"));
    }
    total
}

// ---------------------------------------------------------------------------------------
// plain loop

#[inline(never)]
fn run_loop(n: u64) -> Checksum {
    let mut state = Sums::default();
    let mut acc = Checksum::ZERO;
    for i in 0..n {
        let (k, v) = gen(i);
        let sum = state.entry(k).or_insert(0);
        *sum += v;
        acc.add((k, *sum));
    }
    acc
}

// ---------------------------------------------------------------------------------------

/// Check a run's result against the loop's. Every variant must emit exactly the loop's running
/// sums: a key's records processed out of order (the stash bug fixed in b751287, which the
/// first runs of this benchmark hit on 2 workers in up to 40 % of the runs) fail the run.
fn check(variant: &str, got: Checksum, expected: Checksum) {
    if got == expected {
        return;
    }
    let why = if got.same_up_to_order(&expected) {
        "the right records and keys, but a key's running sums differ: its records were processed out of order"
    } else {
        "wrong records"
    };
    panic!("{variant}: {why}; result {got:?}, expected {expected:?}");
}

/// The expected result, after checking every variant once against the loop.
fn expected() -> Checksum {
    static CHECKED: OnceLock<Checksum> = OnceLock::new();
    *CHECKED.get_or_init(|| {
        let expected = run_loop(black_box(N));
        assert_eq!(expected.count, N);
        for w in [1, 2] {
            check(&format!("weir/{w}"), run_weir(w), expected);
            check(&format!("timely/{w}"), run_timely(w), expected);
        }
        expected
    })
}

fn bench<M: Measurement>(c: &mut Criterion<M>, suffix: &str) {
    let expected = expected();
    let mut g = c.benchmark_group(format!("keyed{suffix}"));
    g.throughput(Throughput::Elements(N));
    for w in [1, 2] {
        let (weir, timely) = (format!("weir/{w}"), format!("timely/{w}"));
        g.bench_function(&weir, |b| b.iter(|| check(&weir, run_weir(w), expected)));
        g.bench_function(&timely, |b| {
            b.iter(|| check(&timely, run_timely(w), expected))
        });
    }
    g.bench_function("loop", |b| {
        b.iter(|| check("loop", run_loop(black_box(N)), expected))
    });
    g.finish();
}

fn wall(c: &mut Criterion) {
    bench(c, "");
}

fn cpu(c: &mut Criterion<common::CpuTime>) {
    bench(c, "-cpu");
}

criterion_group! {
    name = wall_time;
    config = common::criterion();
    targets = wall
}
criterion_group! {
    name = cpu_time;
    config = common::criterion_cpu();
    targets = cpu
}

fn main() {
    let variants: [(&str, &dyn Fn() -> Checksum); 5] = [
        ("weir1", &|| run_weir(1)),
        ("weir2", &|| run_weir(2)),
        ("timely1", &|| run_timely(1)),
        ("timely2", &|| run_timely(2)),
        ("loop", &|| run_loop(black_box(N))),
    ];
    let expected = run_loop(N);
    let variant = |name: &str| name.replace("weir", "weir/").replace("timely", "timely/");
    if common::profile_hook(&variants, |name, got| check(&variant(name), got, expected)) {
        return;
    }
    wall_time();
    cpu_time();
    Criterion::default().configure_from_args().final_summary();
}

//! Stateless pipeline: generate N records, filter (keep half), map, fold into a checksum —
//! as a weir job, as a hand-written timely program and as a plain loop, all on ONE worker
//! thread. Also the generator alone (generate + fold) in weir, timely and a loop, so the
//! source's own cost is reported apart.
//!
//! `cargo bench --bench pipeline`; see BENCHMARKS.md.

mod common;

use common::{Checksum, ChecksumSink, Rec, BATCH};
use criterion::measurement::Measurement;
use criterion::{criterion_group, Criterion, Throughput};
use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use weir::prelude::*;

/// Records generated per run.
const N: u64 = 1_000_000;

/// Record `i`.
#[inline(always)]
fn gen(i: u64) -> Rec {
    (i, i * 7 % 1000)
}

/// Keeps the records with an even second field: exactly half (those with an even index).
#[inline(always)]
fn keep(r: &Rec) -> bool {
    r.1 % 2 == 0
}

/// Some arithmetic.
#[inline(always)]
fn transform(r: Rec) -> Rec {
    (r.0 * 3 + r.1, (r.1 << 4) ^ (r.0 >> 1))
}

// ---------------------------------------------------------------------------------------
// (a) weir
//
// Written as a user writes it: source, filter, map and sink chain into one vertex, so the
// records never leave the source's operator (the hand-written timely program has one
// forward edge to its sink).

static PIPELINE_OUT: Mutex<Checksum> = Mutex::new(Checksum::ZERO);
static GENERATOR_OUT: Mutex<Checksum> = Mutex::new(Checksum::ZERO);

#[weir::job(name = "bench-pipeline", main = false)]
fn weir_pipeline(env: &mut Env) {
    env.source(Generator::bounded(N, gen))
        .filter(keep)
        .map(transform)
        .sink(ChecksumSink::to(&PIPELINE_OUT));
}

#[weir::job(name = "bench-generator", main = false)]
fn weir_generator(env: &mut Env) {
    env.source(Generator::bounded(N, gen))
        .sink(ChecksumSink::to(&GENERATOR_OUT));
}

/// One record through source → sink: what starting and stopping a job costs.
#[weir::job(name = "bench-startup", main = false)]
fn weir_startup(env: &mut Env) {
    env.source(Generator::bounded(1, gen))
        .sink(ChecksumSink::to(&STARTUP_OUT));
}

static STARTUP_OUT: Mutex<Checksum> = Mutex::new(Checksum::ZERO);

#[inline(never)]
fn run_weir_startup() -> Checksum {
    let s = weir::runtime::worker::run_local(weir_startup(), 1, &[]).expect("weir run");
    assert_eq!(s.records_in, 1);
    common::take(&STARTUP_OUT)
}

#[inline(never)]
fn run_weir_pipeline() -> Checksum {
    let s = weir::runtime::worker::run_local(weir_pipeline(), 1, &[]).expect("weir run");
    assert_eq!(s.records_in, N);
    common::take(&PIPELINE_OUT)
}

#[inline(never)]
fn run_weir_generator() -> Checksum {
    let s = weir::runtime::worker::run_local(weir_generator(), 1, &[]).expect("weir run");
    assert_eq!(s.records_in, N);
    common::take(&GENERATOR_OUT)
}

// ---------------------------------------------------------------------------------------
// (b) hand-written timely: a source operator emitting batches of generated records, one
// operator doing filter + map, a sink operator folding the checksum.

/// A timely source of `gen(i)` for this worker's indices (strided, like weir's generator),
/// `BATCH` records per container and at most `budget` records per activation.
fn timely_source<'s>(scope: timely::dataflow::Scope<'s, u64>, n: u64) -> Stream<'s, u64, Vec<Rec>> {
    let (index, peers) = (scope.index() as u64, scope.peers() as u64);
    source::<_, timely::container::CapacityContainerBuilder<Vec<Rec>>, _, _>(
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
                    let mut batch = Vec::with_capacity(BATCH);
                    while next < n && batch.len() < BATCH {
                        batch.push(gen(next));
                        next += peers;
                    }
                    if batch.is_empty() {
                        break;
                    }
                    session.give_container(&mut batch);
                }
                drop(session);
                if next >= n {
                    cap = None;
                } else {
                    activator.activate();
                }
            }
        },
    )
}

/// Fold a stream into a checksum shared with the worker closure.
fn timely_checksum_sink(stream: Stream<'_, u64, Vec<Rec>>, out: Rc<Cell<Checksum>>) {
    stream.sink(Pipeline, "Checksum", move |(input, _frontier)| {
        let mut acc = out.get();
        input.for_each(|_time, data| {
            for r in data.drain(..) {
                acc.add(r);
            }
        });
        out.set(acc);
    });
}

/// Run a timely dataflow on `workers` threads and sum the workers' checksums.
fn timely_run<B>(workers: usize, build: B) -> Checksum
where
    B: for<'s> Fn(timely::dataflow::Scope<'s, u64>, Rc<Cell<Checksum>>) + Send + Sync + 'static,
{
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let out = Rc::new(Cell::new(Checksum::ZERO));
        let o = Rc::clone(&out);
        worker.dataflow::<u64, _, _>(|scope| build(scope, o));
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

#[inline(never)]
fn run_timely_pipeline() -> Checksum {
    timely_run(1, |scope, out| {
        let filtered = timely_source(scope, N)
            .unary::<timely::container::CapacityContainerBuilder<Vec<Rec>>, _, _, _>(
                Pipeline,
                "FilterMap",
                |_cap, _info| {
                    move |input, output| {
                        input.for_each(|time, data| {
                            output
                                .session(&time)
                                .give_iterator(data.drain(..).filter(keep).map(transform));
                        });
                    }
                },
            );
        timely_checksum_sink(filtered, out);
    })
}

#[inline(never)]
fn run_timely_startup() -> Checksum {
    timely_run(1, |scope, out| {
        timely_checksum_sink(timely_source(scope, 1), out)
    })
}

#[inline(never)]
fn run_timely_generator() -> Checksum {
    timely_run(1, |scope, out| {
        timely_checksum_sink(timely_source(scope, N), out)
    })
}

// ---------------------------------------------------------------------------------------
// (c) plain loops

#[inline(never)]
fn loop_pipeline(n: u64) -> Checksum {
    let mut acc = Checksum::ZERO;
    for i in 0..n {
        let r = gen(i);
        if keep(&r) {
            acc.add(transform(r));
        }
    }
    acc
}

#[inline(never)]
fn loop_generator(n: u64) -> Checksum {
    let mut acc = Checksum::ZERO;
    for i in 0..n {
        acc.add(gen(i));
    }
    acc
}

// ---------------------------------------------------------------------------------------

/// The expected results, after checking every variant once against the loops.
fn expected() -> (Checksum, Checksum) {
    static CHECKED: OnceLock<(Checksum, Checksum)> = OnceLock::new();
    *CHECKED.get_or_init(|| {
        let expected = loop_pipeline(black_box(N));
        assert_eq!(expected.count, N / 2);
        assert_eq!(run_weir_pipeline(), expected, "weir pipeline result");
        assert_eq!(run_timely_pipeline(), expected, "timely pipeline result");
        let expected_gen = loop_generator(black_box(N));
        assert_eq!(expected_gen.count, N);
        assert_eq!(run_weir_generator(), expected_gen, "weir generator result");
        assert_eq!(
            run_timely_generator(),
            expected_gen,
            "timely generator result"
        );
        assert_eq!(run_weir_startup(), loop_generator(1), "weir startup result");
        assert_eq!(
            run_timely_startup(),
            loop_generator(1),
            "timely startup result"
        );
        (expected, expected_gen)
    })
}

fn bench<M: Measurement>(c: &mut Criterion<M>, suffix: &str) {
    let (expected, expected_gen) = expected();

    let mut g = c.benchmark_group(format!("pipeline{suffix}"));
    g.throughput(Throughput::Elements(N));
    g.bench_function("weir/1", |b| {
        b.iter(|| assert_eq!(run_weir_pipeline(), expected))
    });
    g.bench_function("timely/1", |b| {
        b.iter(|| assert_eq!(run_timely_pipeline(), expected))
    });
    g.bench_function("loop", |b| {
        b.iter(|| assert_eq!(loop_pipeline(black_box(N)), expected))
    });
    g.finish();

    let mut g = c.benchmark_group(format!("generator{suffix}"));
    g.throughput(Throughput::Elements(N));
    g.bench_function("weir/1", |b| {
        b.iter(|| assert_eq!(run_weir_generator(), expected_gen))
    });
    g.bench_function("timely/1", |b| {
        b.iter(|| assert_eq!(run_timely_generator(), expected_gen))
    });
    g.bench_function("loop", |b| {
        b.iter(|| assert_eq!(loop_generator(black_box(N)), expected_gen))
    });
    g.finish();

    // Fixed cost of a run (threads, plan, dataflow construction, shutdown): one record.
    let one = loop_generator(1);
    let mut g = c.benchmark_group(format!("startup{suffix}"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("weir/1", |b| b.iter(|| assert_eq!(run_weir_startup(), one)));
    g.bench_function("timely/1", |b| {
        b.iter(|| assert_eq!(run_timely_startup(), one))
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
    let variants: [(&str, &dyn Fn() -> Checksum); 8] = [
        ("weir_pipeline", &run_weir_pipeline),
        ("timely_pipeline", &run_timely_pipeline),
        ("loop_pipeline", &|| loop_pipeline(black_box(N))),
        ("weir_generator", &run_weir_generator),
        ("timely_generator", &run_timely_generator),
        ("loop_generator", &|| loop_generator(black_box(N))),
        ("weir_startup", &run_weir_startup),
        ("timely_startup", &run_timely_startup),
    ];
    let (pipeline, generator) = (loop_pipeline(N), loop_generator(N));
    let one = loop_generator(1);
    let expect = |name: &str| {
        if name.ends_with("_pipeline") {
            pipeline
        } else if name.ends_with("_startup") {
            one
        } else {
            generator
        }
    };
    if common::profile_hook(&variants, |name, got| {
        assert_eq!(got, expect(name), "{name}")
    }) {
        return;
    }
    wall_time();
    cpu_time();
    Criterion::default().configure_from_args().final_summary();
}

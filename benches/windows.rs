//! Event time: keyed event-time windows over N events with 200 ms bounded out-of-orderness,
//! 10^4 keys, on ONE worker thread —
//!
//! - **tumbling**: 1 s tumbling windows, count + max per (key, window);
//! - **session**: 100 ms-gap session windows over keys that are active in bursts, count +
//!   max per session;
//!
//! each as a weir job (`.watermarks(..).key_by(..).window(..).aggregate(CountMax)`), as a
//! hand-written timely program and as a plain loop. Every variant folds the fired windows
//! into a [`Checksum`] (number of windows and a mix of key, count, max and the window's
//! first and last event time), which must equal the loop's.
//!
//! The hand-written timely program is what an expert writes directly on timely: the source
//! emits batches of events and carries the watermark in its capability (it holds its
//! capability at `max_seen − 200`, a lower bound on the event time of everything it will
//! still send), events are exchanged by key, and the window operator reads its watermark off
//! its input frontier (`frontier − 1`). The window operator keeps per-(key, window)
//! accumulators in a `HashMap` and, per window end, the keys to fire in a `BTreeMap`
//! (sessions: per-key session lists, merged on insert); it fires when the watermark reaches
//! `end − 1` (Flink's rule, as weir does) and sends the results to a checksum sink operator.
//! The plain loop runs the same window code ([`TumblingState`], [`SessionState`]) without
//! timely, advancing the watermark every 4096 events (as often as weir's and the timely
//! source do: once per source activation).
//!
//! Modes of the bench binary (`cargo bench --bench windows`, see BENCHMARKS.md):
//!
//! - default: (1) a **memory table**: every variant runs in its own child process (this
//!   binary, re-executed with `WEIR_BENCH_VARIANT=<variant>`) at N/10 and N events, and
//!   reports its wall and CPU time, its result and its peak RSS (`VmHWM` of
//!   `/proc/self/status`), so memory is attributable to one variant; results are checked
//!   against the loop's; then (2) **criterion** (wall time, 10 samples of one run each) of
//!   all six variants at N events, checked on every iteration.
//! - `WEIR_BENCH_EVENTS=<n>`: N (default 10^7; `1e6` or `1_000_000` also parse);
//!   `WEIR_BENCH_PHASES=rss|criterion` runs only one phase; `WEIR_BENCH_KEYS=<k>` changes the
//!   number of keys (default 10^4, must be prime to 7919), e.g. 100 for ~10 events per
//!   tumbling window instead of one.
//! - `WEIR_BENCH_VARIANT=<variant> [WEIR_BENCH_RUNS=<r>]`: run one variant r times (once by
//!   default) in this process and print its `RESULT` line with the best run (the child side
//!   of the memory table; also for `valgrind --tool=callgrind` and `perf`).
//!   `WEIR_BENCH_ONLY=<variant>` does the same through the shared profiling hook of the
//!   other benchmarks, checking each result against the loop's.

mod common;

use common::{Checksum, ChecksumSink, Rec, BATCH};
use criterion::{Criterion, SamplingMode, Throughput};
use std::cell::Cell;
use std::collections::btree_map::BTreeMap;
use std::collections::hash_map::{Entry, HashMap};
use std::hint::black_box;
use std::process::Command;
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::Operator;
use weir::prelude::*;

/// An event: (key, value, event time in ms).
type Ev = (u64, u64, i64);
/// A window's accumulator and result: (key, count, max value, first event time, last event
/// time). The key and times ride along so that the result identifies the window.
type Acc = (u64, u64, u64, i64, i64);

/// Distinct keys unless `WEIR_BENCH_KEYS` says otherwise.
const DEFAULT_KEYS: u64 = 10_000;
/// Bounded out-of-orderness of the watermarks, ms. The generators stay strictly within it,
/// so no event is ever late.
const BOUND_MS: i64 = 200;
/// Tumbling window size, ms.
const WINDOW_MS: i64 = 1_000;
/// Session gap, ms.
const GAP_MS: i64 = 100;
/// Events per run unless `WEIR_BENCH_EVENTS` says otherwise.
const DEFAULT_EVENTS: u64 = 10_000_000;
/// Events between watermark updates of the loop: a timely or weir source activation (4
/// batches of 1024 here, `SOURCE_BUDGET` = 4096 in weir).
const WATERMARK_EVERY: u64 = 4 * BATCH as u64;

/// N: `WEIR_BENCH_EVENTS` (digits, `_` allowed, or `1e7`), default 10^7.
fn events() -> u64 {
    static N: OnceLock<u64> = OnceLock::new();
    *N.get_or_init(|| match std::env::var("WEIR_BENCH_EVENTS") {
        Ok(s) => parse_count(&s).unwrap_or_else(|| panic!("WEIR_BENCH_EVENTS={s}: not a count")),
        Err(_) => DEFAULT_EVENTS,
    })
}

/// Distinct keys: `WEIR_BENCH_KEYS` (must be prime to 7919), default 10^4.
#[inline(always)]
fn keys() -> u64 {
    static K: OnceLock<u64> = OnceLock::new();
    *K.get_or_init(|| match std::env::var("WEIR_BENCH_KEYS") {
        Ok(s) => parse_count(&s)
            .filter(|&k| k > 0 && k % 7919 != 0)
            .unwrap_or_else(|| panic!("WEIR_BENCH_KEYS={s}: not a key count prime to 7919")),
        Err(_) => DEFAULT_KEYS,
    })
}

fn parse_count(s: &str) -> Option<u64> {
    let s = s.trim().replace('_', "");
    if let Some((m, e)) = s.split_once(['e', 'E']) {
        return Some(m.parse::<u64>().ok()? * 10u64.checked_pow(e.parse().ok()?)?);
    }
    s.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Events

/// Deterministic disorder of event `i`: 0..200 ms.
#[inline(always)]
fn jitter(i: u64) -> i64 {
    ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % BOUND_MS as u64) as i64
}

/// Event time of event `i`: ~1 ms per event, `i + 1 ..= i + 200`. An event `j > i` is at
/// most `i + 200 − (j + 1) ≤ 198` ms older than event `i`, so with the watermark at
/// `max_seen − 201` no event is late.
#[inline(always)]
fn event_time(i: u64) -> i64 {
    i as i64 + BOUND_MS - jitter(i)
}

#[inline(always)]
fn value(i: u64) -> u64 {
    i.wrapping_mul(0xD6E8_FEB8_6659_FD93) >> 40
}

/// Tumbling benchmark, event `i`: key `i * 7919 % 10^4`. (7919 is prime to 10^4, so any
/// 10^4 consecutive events have distinct keys: with 10^4 keys every (key, 1 s window) holds
/// exactly one event and ~N windows fire — the benchmark measures per-window cost.)
#[inline(always)]
fn tumbling_event(i: u64) -> Ev {
    (i * 7919 % keys(), value(i), event_time(i))
}

/// Session benchmark, event `i`: keys are active in bursts. Each block of 256 events
/// (~256 ms) cycles through 16 keys, so each of them gets 16 events ~16 ms apart (± the
/// jitter): mostly one session per key and block, split where the jitter happens to open a
/// gap of more than 100 ms. The next blocks use other keys; with 10^4 keys a key comes back
/// after 625 blocks (~160 s).
#[inline(always)]
fn session_event(i: u64) -> Ev {
    let key_index = i / 256 * 16 + i % 16;
    (key_index * 7919 % keys(), value(i), event_time(i))
}

// ---------------------------------------------------------------------------------------
// Count + max

/// The accumulator of no event.
const ACC0: Acc = (0, 0, 0, i64::MAX, i64::MIN);

#[inline(always)]
fn acc_add(a: Acc, e: Ev) -> Acc {
    (e.0, a.1 + 1, a.2.max(e.1), a.3.min(e.2), a.4.max(e.2))
}

#[inline(always)]
fn acc_merge(a: Acc, b: Acc) -> Acc {
    (
        if a.1 > 0 { a.0 } else { b.0 },
        a.1 + b.1,
        a.2.max(b.2),
        a.3.min(b.3),
        a.4.max(b.4),
    )
}

/// What every variant folds into its checksum per fired window.
#[inline(always)]
fn window_rec(a: Acc) -> Rec {
    (
        a.0,
        (a.1 << 40) ^ a.2 ^ ((a.3 as u64) << 20) ^ (a.4 as u64).rotate_left(44),
    )
}

/// Count and max of a window (weir's `Aggregator`, Flink's `AggregateFunction`).
struct CountMax;

impl Aggregator<Ev> for CountMax {
    type Acc = Acc;
    type Out = Acc;
    #[inline]
    fn create_accumulator(&self) -> Acc {
        ACC0
    }
    #[inline]
    fn add(&self, acc: Acc, e: Ev) -> Acc {
        acc_add(acc, e)
    }
    #[inline]
    fn merge(&self, a: Acc, b: Acc) -> Acc {
        acc_merge(a, b)
    }
    #[inline]
    fn result(&self, acc: Acc) -> Acc {
        acc
    }
}

// ---------------------------------------------------------------------------------------
// (a) weir

static TUMBLING_OUT: Mutex<Checksum> = Mutex::new(Checksum::ZERO);
static SESSION_OUT: Mutex<Checksum> = Mutex::new(Checksum::ZERO);

#[weir::job(name = "bench-tumbling", main = false)]
fn weir_tumbling(env: &mut Env) {
    env.source(Generator::bounded(events(), tumbling_event))
        .watermarks(BoundedOutOfOrderness::millis(BOUND_MS as u64), |e| e.2)
        .key_by(|e| e.0)
        .window(Tumbling::seconds(1))
        .aggregate(CountMax)
        .map(window_rec)
        .sink(ChecksumSink::to(&TUMBLING_OUT));
}

#[weir::job(name = "bench-session", main = false)]
fn weir_session(env: &mut Env) {
    env.source(Generator::bounded(events(), session_event))
        .watermarks(BoundedOutOfOrderness::millis(BOUND_MS as u64), |e| e.2)
        .key_by(|e| e.0)
        .window(Session::millis(GAP_MS as u64))
        .aggregate(CountMax)
        .map(window_rec)
        .sink(ChecksumSink::to(&SESSION_OUT));
}

#[inline(never)]
fn run_weir_tumbling() -> Checksum {
    let s = weir::runtime::worker::run_local(weir_tumbling(), 1, &[]).expect("weir run");
    assert_eq!(s.records_in, events());
    common::take(&TUMBLING_OUT)
}

#[inline(never)]
fn run_weir_session() -> Checksum {
    let s = weir::runtime::worker::run_local(weir_session(), 1, &[]).expect("weir run");
    assert_eq!(s.records_in, events());
    common::take(&SESSION_OUT)
}

// ---------------------------------------------------------------------------------------
// The window code of the hand-written variants (timely and loop).

/// Keyed windows as an expert writes them for one operator instance.
trait Windows: Default + 'static {
    /// Add an event (never late: the generators stay within the bound).
    fn add(&mut self, e: Ev);
    /// Fire every window with `end − 1 ≤ wm`, dropping its state.
    fn fire(&mut self, wm: i64, emit: impl FnMut(Acc));
}

/// Tumbling windows: per-(key, window start) accumulators; per window start, the keys that
/// have state in it.
#[derive(Default)]
struct TumblingState {
    accs: HashMap<(u64, i64), Acc>,
    keys: BTreeMap<i64, Vec<u64>>,
}

impl Windows for TumblingState {
    #[inline]
    fn add(&mut self, e: Ev) {
        let start = e.2 - e.2.rem_euclid(WINDOW_MS);
        match self.accs.entry((e.0, start)) {
            Entry::Occupied(mut o) => {
                let a = o.get_mut();
                *a = acc_add(*a, e);
            }
            Entry::Vacant(v) => {
                v.insert(acc_add(ACC0, e));
                self.keys.entry(start).or_default().push(e.0);
            }
        }
    }

    #[inline]
    fn fire(&mut self, wm: i64, mut emit: impl FnMut(Acc)) {
        while let Some(entry) = self.keys.first_entry() {
            let start = *entry.key();
            if start + WINDOW_MS - 1 > wm {
                break;
            }
            for k in entry.remove() {
                if let Some(a) = self.accs.remove(&(k, start)) {
                    emit(a);
                }
            }
        }
    }
}

/// Session windows: per key its live sessions `(start, end, acc)` (pairwise apart by more
/// than touching, merged on insert); per session end, the keys to look at (entries of
/// sessions that grew since are stale and find nothing).
#[derive(Default)]
struct SessionState {
    sessions: HashMap<u64, Vec<(i64, i64, Acc)>>,
    ends: BTreeMap<i64, Vec<u64>>,
}

impl Windows for SessionState {
    #[inline]
    fn add(&mut self, e: Ev) {
        let (mut start, mut end, mut acc) = (e.2, e.2 + GAP_MS, acc_add(ACC0, e));
        let live = self.sessions.entry(e.0).or_default();
        let mut i = 0;
        while i < live.len() {
            let (s, t, a) = live[i];
            if s <= end && start <= t {
                live.swap_remove(i);
                start = start.min(s);
                end = end.max(t);
                acc = acc_merge(acc, a);
            } else {
                i += 1;
            }
        }
        live.push((start, end, acc));
        self.ends.entry(end).or_default().push(e.0);
    }

    #[inline]
    fn fire(&mut self, wm: i64, mut emit: impl FnMut(Acc)) {
        while let Some(entry) = self.ends.first_entry() {
            if *entry.key() - 1 > wm {
                break;
            }
            for k in entry.remove() {
                let Entry::Occupied(mut o) = self.sessions.entry(k) else {
                    continue;
                };
                o.get_mut().retain(|&(_, end, a)| {
                    let due = end - 1 <= wm;
                    if due {
                        emit(a);
                    }
                    !due
                });
                if o.get().is_empty() {
                    o.remove();
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// (b) hand-written timely

#[inline(never)]
fn run_timely<W: Windows>(gen: fn(u64) -> Ev) -> Checksum {
    let n = events();
    let guards = timely::execute(timely::Config::process(1), move |worker| {
        let out = Rc::new(Cell::new(Checksum::ZERO));
        let o = Rc::clone(&out);
        worker.dataflow::<u64, _, _>(|scope| {
            let (index, peers) = (scope.index() as u64, scope.peers() as u64);
            // Timely time = a lower bound on the event time of what the source still sends.
            let events = source::<_, timely::container::CapacityContainerBuilder<Vec<Ev>>, _, _>(
                scope,
                "Generate",
                move |cap, info| {
                    let activator = scope.activator_for(info.address);
                    let mut cap = Some(cap);
                    let mut next = index;
                    let mut max_seen = i64::MIN;
                    move |output| {
                        let Some(c) = cap.as_mut() else { return };
                        let mut session = output.session(c);
                        for _ in 0..4 {
                            let mut batch = Vec::with_capacity(BATCH);
                            while next < n && batch.len() < BATCH {
                                let e = gen(next);
                                max_seen = max_seen.max(e.2);
                                batch.push(e);
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
                            // Watermark max_seen − bound − 1: everything later is ≥ max_seen − bound.
                            let low = (max_seen - BOUND_MS).max(0) as u64;
                            if low > *c.time() {
                                c.downgrade(&low);
                            }
                            activator.activate();
                        }
                    }
                },
            );
            let exchange = Exchange::new(|e: &Ev| xxhash_rust::xxh3::xxh3_64(&e.0.to_le_bytes()));
            let fired = events
                .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<Rec>>, _, _, _>(
                    exchange,
                    "Windows",
                    |cap, _info| {
                        let mut cap = Some(cap);
                        let mut state = W::default();
                        move |(input, frontier), output| {
                            input.for_each(|_time, data| {
                                for e in data.drain(..) {
                                    state.add(e);
                                }
                            });
                            let Some(c) = cap.as_mut() else { return };
                            match frontier.frontier().first().copied() {
                                Some(f) if f > *c.time() => {
                                    let mut session = output.session(c);
                                    state.fire(f as i64 - 1, |a| session.give(window_rec(a)));
                                    drop(session);
                                    c.downgrade(&f);
                                }
                                Some(_) => {}
                                None => {
                                    let mut session = output.session(c);
                                    state.fire(i64::MAX, |a| session.give(window_rec(a)));
                                    drop(session);
                                    cap = None;
                                }
                            }
                        }
                    },
                );
            fired.sink(Pipeline, "Checksum", move |(input, _frontier)| {
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
// (c) plain loop

#[inline(never)]
fn run_loop<W: Windows>(gen: fn(u64) -> Ev, n: u64) -> Checksum {
    let mut state = W::default();
    let mut acc = Checksum::ZERO;
    let mut max_seen = i64::MIN;
    for i in 0..n {
        let e = gen(i);
        max_seen = max_seen.max(e.2);
        state.add(e);
        if (i + 1) % WATERMARK_EVERY == 0 {
            state.fire(max_seen - BOUND_MS - 1, |a| acc.add(window_rec(a)));
        }
    }
    state.fire(i64::MAX, |a| acc.add(window_rec(a)));
    acc
}

// ---------------------------------------------------------------------------------------
// Variants, child processes and the memory table

/// A variant: its name and what it runs.
type Variant = (&'static str, Box<dyn Fn() -> Checksum>);

/// Every variant.
fn variants() -> Vec<Variant> {
    vec![
        ("tumbling-weir", Box::new(run_weir_tumbling)),
        (
            "tumbling-timely",
            Box::new(|| run_timely::<TumblingState>(tumbling_event)),
        ),
        (
            "tumbling-loop",
            Box::new(|| run_loop::<TumblingState>(tumbling_event, black_box(events()))),
        ),
        ("session-weir", Box::new(run_weir_session)),
        (
            "session-timely",
            Box::new(|| run_timely::<SessionState>(session_event)),
        ),
        (
            "session-loop",
            Box::new(|| run_loop::<SessionState>(session_event, black_box(events()))),
        ),
        // The process without any run: what the binary itself occupies.
        ("baseline", Box::new(|| Checksum::ZERO)),
    ]
}

/// The loop's result for the benchmark of `variant`.
fn expected_for(variant: &str) -> Checksum {
    static T: OnceLock<Checksum> = OnceLock::new();
    static S: OnceLock<Checksum> = OnceLock::new();
    if variant.starts_with("tumbling") {
        *T.get_or_init(|| run_loop::<TumblingState>(tumbling_event, events()))
    } else if variant.starts_with("session") {
        *S.get_or_init(|| run_loop::<SessionState>(session_event, events()))
    } else {
        Checksum::ZERO
    }
}

/// This process's peak resident set size in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What a child reports.
#[derive(Debug, Clone)]
struct Report {
    variant: String,
    events: u64,
    wall_s: f64,
    cpu_s: f64,
    result: Checksum,
    peak_rss_kib: u64,
}

impl Report {
    fn line(&self) -> String {
        format!(
            "RESULT variant={} events={} wall_s={:.4} cpu_s={:.4} windows={} sum={} keys={} vmhwm_kib={}",
            self.variant, self.events, self.wall_s, self.cpu_s, self.result.count, self.result.sum, self.result.keys, self.peak_rss_kib
        )
    }

    fn parse(line: &str) -> Option<Report> {
        let rest = line.strip_prefix("RESULT ")?;
        let f: HashMap<&str, &str> = rest
            .split(' ')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        Some(Report {
            variant: f.get("variant")?.to_string(),
            events: f.get("events")?.parse().ok()?,
            wall_s: f.get("wall_s")?.parse().ok()?,
            cpu_s: f.get("cpu_s")?.parse().ok()?,
            result: Checksum {
                count: f.get("windows")?.parse().ok()?,
                sum: f.get("sum")?.parse().ok()?,
                keys: f.get("keys")?.parse().ok()?,
            },
            peak_rss_kib: f.get("vmhwm_kib")?.parse().ok()?,
        })
    }
}

/// Child side: run `variant` `WEIR_BENCH_RUNS` times (default 1), print the best run.
fn child(variant: &str) {
    let runs: usize = std::env::var("WEIR_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .max(1);
    let all = variants();
    let Some((name, run)) = all.iter().find(|(n, _)| *n == variant) else {
        let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
        panic!("WEIR_BENCH_VARIANT={variant}: no such variant; one of {names:?}");
    };
    let (mut best_wall, mut best_cpu, mut result) = (f64::MAX, f64::MAX, Checksum::ZERO);
    for _ in 0..runs {
        let (t, cpu) = (Instant::now(), common::process_cpu_ns());
        let r = run();
        let (wall, cpu) = (
            t.elapsed().as_secs_f64(),
            (common::process_cpu_ns() - cpu) as f64 / 1e9,
        );
        best_wall = best_wall.min(wall);
        best_cpu = best_cpu.min(cpu);
        result = r;
    }
    let report = Report {
        variant: name.to_string(),
        events: events(),
        wall_s: best_wall,
        cpu_s: best_cpu,
        result,
        peak_rss_kib: peak_rss_kib(),
    };
    println!("{}", report.line());
}

/// Parent side: run `variant` with `n` events in a child process.
fn spawn(variant: &str, n: u64) -> Report {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .env("WEIR_BENCH_VARIANT", variant)
        .env("WEIR_BENCH_EVENTS", n.to_string())
        .env("WEIR_BENCH_RUNS", "1")
        .env_remove("WEIR_BENCH_ONLY")
        .output()
        .expect("spawn the bench binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{variant} with {n} events failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(Report::parse)
        .unwrap_or_else(|| panic!("{variant}: no RESULT line in {stdout:?}"))
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// The memory table: each variant in a child process at N/10 and N events.
fn memory_table() {
    let n = events();
    let sizes = if n >= 10 { vec![n / 10, n] } else { vec![n] };
    let names: Vec<&str> = variants().into_iter().map(|(n, _)| n).collect();
    let mut rows: Vec<Report> = Vec::new();
    for &size in &sizes {
        for name in &names {
            let r = spawn(name, size);
            eprintln!("{}", r.line());
            rows.push(r);
        }
    }
    // Check every variant against the loop of its benchmark at the same size.
    for r in &rows {
        let bench = r.variant.split('-').next().unwrap_or("");
        if let Some(lp) = rows
            .iter()
            .find(|l| l.events == r.events && l.variant == format!("{bench}-loop"))
        {
            assert_eq!(
                r.result, lp.result,
                "{} with {} events: result differs from the loop's",
                r.variant, r.events
            );
        }
    }
    let base = |size: u64| {
        rows.iter()
            .find(|r| r.events == size && r.variant == "baseline")
            .map_or(0, |r| r.peak_rss_kib)
    };
    println!(
        "\n### Event-time windows, one run per child process (1 worker, {} keys)\n",
        keys()
    );
    println!("| benchmark | variant | events | fired windows (= loop) | wall s | M events/s (wall) | CPU s | M events/s (CPU) | peak RSS MiB | RSS − baseline MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows.iter().filter(|r| r.variant != "baseline") {
        let (bench, v) = r.variant.split_once('-').unwrap_or((&r.variant, ""));
        println!(
            "| {bench} | {v} | {} | {} | {:.3} | {:.2} | {:.3} | {:.2} | {} | {} |",
            r.events,
            r.result.count,
            r.wall_s,
            r.events as f64 / r.wall_s / 1e6,
            r.cpu_s,
            r.events as f64 / r.cpu_s / 1e6,
            mib(r.peak_rss_kib),
            mib(r.peak_rss_kib.saturating_sub(base(r.events)))
        );
    }
    println!(
        "\nbaseline (this bench binary started, no run): peak RSS {} MiB",
        mib(base(n))
    );
    println!("\n| benchmark | events | weir / timely (wall) | weir / timely (CPU) | weir / loop (wall) | timely / loop (wall) |");
    println!("|---|---|---|---|---|---|");
    for &size in &sizes {
        for bench in ["tumbling", "session"] {
            let get = |v: &str| {
                rows.iter()
                    .find(|r| r.events == size && r.variant == format!("{bench}-{v}"))
                    .cloned()
            };
            if let (Some(w), Some(t), Some(l)) = (get("weir"), get("timely"), get("loop")) {
                println!(
                    "| {bench} | {size} | {:.2} | {:.2} | {:.2} | {:.2} |",
                    w.wall_s / t.wall_s,
                    w.cpu_s / t.cpu_s,
                    w.wall_s / l.wall_s,
                    t.wall_s / l.wall_s
                );
            }
        }
    }
    println!();
}

// ---------------------------------------------------------------------------------------
// Criterion

/// Check a run's result against the loop's.
fn check(variant: &str, got: Checksum) {
    let expected = expected_for(variant);
    assert_eq!(got, expected, "{variant}: result differs from the loop's");
}

fn bench(c: &mut Criterion) {
    let n = events();
    let all = variants();
    for bench in ["tumbling", "session"] {
        let expected = expected_for(bench);
        assert!(expected.count > 0);
        let mut g = c.benchmark_group(format!("windows-{bench}"));
        g.throughput(Throughput::Elements(n));
        // Runs of seconds: 10 samples of one run each.
        g.sampling_mode(SamplingMode::Flat);
        for (name, run) in all.iter().filter(|(v, _)| v.starts_with(bench)) {
            let id = match name.rsplit('-').next() {
                Some("loop") => "loop".to_string(),
                Some(v) => format!("{v}/1"),
                None => unreachable!(),
            };
            g.bench_function(&id, |b| b.iter(|| check(name, run())));
        }
        g.finish();
    }
}

fn main() {
    if let Ok(v) = std::env::var("WEIR_BENCH_VARIANT") {
        child(&v);
        return;
    }
    let all = variants();
    let hooks: Vec<(&str, &dyn Fn() -> Checksum)> =
        all.iter().map(|(n, f)| (*n, f.as_ref())).collect();
    if common::profile_hook(&hooks, check) {
        return;
    }
    drop(all);
    let phases = std::env::var("WEIR_BENCH_PHASES").unwrap_or_else(|_| "rss,criterion".to_string());
    // `cargo bench -- --list` and friends: criterion only.
    let listing = std::env::args().any(|a| a == "--list" || a == "--test");
    if phases.contains("rss") && !listing {
        memory_table();
    }
    if phases.contains("criterion") {
        let mut c = common::criterion().configure_from_args();
        bench(&mut c);
        c.final_summary();
    }
}

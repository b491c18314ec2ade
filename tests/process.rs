//! Keyed process functions end to end, in process: per-key state, event-time and
//! processing-time timers, typed side outputs.

use std::sync::OnceLock;
use weir::prelude::*;
use weir::runtime::worker::run_local;

/// A card transaction.
#[weir::record]
struct Txn {
    card: u32,
    amount: i64,
    ts: i64,
}

const SMALL_THEN_LARGE: OutputTag<(u32, i64)> = OutputTag::new("small-then-large");

/// Flink's fraud-detection walkthrough: a small transaction followed within 60 s by a large
/// one raises an alert (side output); every card's spend is summarised 100 s after its
/// first transaction (event-time timer).
struct Detector {
    small_at: ValueState<i64>,
    spent: ValueState<i64>,
    timer_set: ValueState<bool>,
}

impl KeyedProcessFunction<u32, Txn> for Detector {
    type Out = (u32, i64);
    fn process_element(&mut self, t: Txn, ctx: &mut Context<'_, u32, (u32, i64)>) {
        if let Some(at) = ctx.value(&self.small_at) {
            if t.amount > 500 && t.ts - at <= 60_000 {
                ctx.output(&SMALL_THEN_LARGE, (t.card, t.ts));
            }
            ctx.clear(&self.small_at);
        }
        if t.amount < 10 {
            ctx.update(&self.small_at, t.ts);
        }
        ctx.update(&self.spent, ctx.value(&self.spent).unwrap_or(0) + t.amount);
        if ctx.value(&self.timer_set).is_none() {
            ctx.register_event_time_timer(t.ts + 100_000);
            ctx.update(&self.timer_set, true);
        }
    }
    fn on_timer(&mut self, _: EventTime, _: TimeDomain, ctx: &mut Context<'_, u32, (u32, i64)>) {
        let spent = ctx.value(&self.spent).unwrap_or(0);
        ctx.emit((*ctx.key(), spent));
        ctx.clear(&self.spent);
        ctx.clear(&self.timer_set);
    }
}

const TXNS: [(u32, i64, i64); 8] = [
    (1, 5, 1_000),
    (1, 900, 30_000), // alert: small then large within 60 s
    (2, 5, 2_000),
    (2, 900, 90_000), // no alert: 88 s later
    (3, 700, 5_000),
    (1, 20, 200_000), // after card 1's summary at 101 s: a new period
    (3, 1, 210_000),
    (3, 600, 220_000), // alert
];

fn summaries() -> &'static CollectSink<(u32, i64)> {
    static S: OnceLock<CollectSink<(u32, i64)>> = OnceLock::new();
    S.get_or_init(CollectSink::new)
}
fn alerts() -> &'static CollectSink<(u32, i64)> {
    static S: OnceLock<CollectSink<(u32, i64)>> = OnceLock::new();
    S.get_or_init(CollectSink::new)
}

#[weir::job(name = "fraud", main = false)]
fn fraud(env: &mut Env) {
    let checked = env
        .source(Generator::bounded(TXNS.len() as u64, |i| {
            let (card, amount, ts) = TXNS[i as usize];
            Txn { card, amount, ts }
        }))
        .parallelism(1)
        // A watermark after every record, so when timers fire is determined.
        .watermarks(Punctuated::new(|_: &Txn, ts| Some(ts)), |t| t.ts)
        .parallelism(1)
        .key_by(|t| t.card)
        .process(Detector {
            small_at: ValueState::new("small-at"),
            spent: ValueState::new("spent"),
            timer_set: ValueState::new("timer-set"),
        })
        .name("detector");
    checked.sink(summaries().clone());
    checked.side_output(SMALL_THEN_LARGE).sink(alerts().clone());
}

#[test]
fn state_event_time_timers_and_side_outputs() {
    run_local(fraud(), 3, &[]).unwrap();
    let mut s = summaries().records();
    s.sort();
    // The watermark stays at 90 s until card 1's record at 200 s, which is processed before
    // the watermark it carries (as in Flink): card 1's timer (101 s) then sees 5 + 900 + 20.
    // Card 2's (102 s): 905. Card 3's (105 s): 700; its next period (1 + 600) is summarised
    // by the final watermark at the end of the input.
    assert_eq!(s, vec![(1, 925), (2, 905), (3, 601), (3, 700)]);
    let mut a = alerts().records();
    a.sort();
    assert_eq!(a, vec![(1, 30_000), (3, 220_000)]);
}

/// Emits each key's count when a processing-time timer 20 ms after its first record fires.
struct CountWithin {
    count: ValueState<u64>,
}

impl KeyedProcessFunction<u64, u64, ProcessingTimeOnly> for CountWithin {
    type Out = (u64, u64);
    fn process_element(
        &mut self,
        _: u64,
        ctx: &mut Context<'_, u64, (u64, u64), ProcessingTimeOnly>,
    ) {
        let n = ctx.value(&self.count).unwrap_or(0);
        if n == 0 {
            let at = ctx.current_processing_time() + 20;
            ctx.register_processing_time_timer(at);
        }
        ctx.update(&self.count, n + 1);
    }
    fn on_timer(
        &mut self,
        _: EventTime,
        d: TimeDomain,
        ctx: &mut Context<'_, u64, (u64, u64), ProcessingTimeOnly>,
    ) {
        assert_eq!(d, TimeDomain::ProcessingTime);
        let n = ctx.value(&self.count).unwrap_or(0);
        ctx.emit((*ctx.key(), n));
        ctx.clear(&self.count);
    }
}

fn counts() -> &'static CollectSink<(u64, u64)> {
    static S: OnceLock<CollectSink<(u64, u64)>> = OnceLock::new();
    S.get_or_init(CollectSink::new)
}

#[weir::job(name = "processing-timers", main = false)]
fn processing_timers(env: &mut Env) {
    env.source(Generator::bounded(2_000, |i| i % 4).rate(4_000.0))
        .key_by(|k| *k)
        .process(CountWithin {
            count: ValueState::new("count"),
        })
        .sink(counts().clone());
}

#[test]
fn processing_time_timers_fire_on_the_clock() {
    run_local(processing_timers(), 2, &[]).unwrap();
    let got = counts().records();
    // 0.5 s of input, counts flushed every 20 ms per key: several emissions per key (even
    // when a loaded machine delays the source and it catches up in a burst), and the counts
    // emitted so far add up to what arrived before the last timers fired.
    let per_key = |k| got.iter().filter(|r| r.0 == k).count();
    assert!((0..4).all(|k| per_key(k) >= 2), "{got:?}");
    assert!(got.iter().map(|r| r.1).sum::<u64>() <= 2_000);
    assert!(got.iter().all(|r| r.1 > 0));
}

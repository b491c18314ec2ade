//! Two-input operators end to end, in process: connect + co-process with shared keyed state,
//! broadcast state, window join and interval join.

use std::sync::OnceLock;
use weir::prelude::*;
use weir::runtime::worker::run_local;

// --- connect + co-process: enrich clicks with the user's profile (a feature store). -------

/// Keeps each user's tier; clicks that arrive before the profile wait for it.
struct Enrich {
    tier: ValueState<String>,
    waiting: ListState<String>,
}

// The inputs have no watermarks: the function says so (no event-time timers).
impl KeyedCoProcessFunction<u32, (u32, String), (u32, String), ProcessingTimeOnly> for Enrich {
    type Out = (u32, String, String);
    fn process_element1(
        &mut self,
        profile: (u32, String),
        ctx: &mut Context<'_, u32, Self::Out, ProcessingTimeOnly>,
    ) {
        for page in ctx.list(&self.waiting) {
            ctx.emit((profile.0, page, profile.1.clone()));
        }
        ctx.clear_list(&self.waiting);
        ctx.update(&self.tier, profile.1);
    }
    fn process_element2(
        &mut self,
        click: (u32, String),
        ctx: &mut Context<'_, u32, Self::Out, ProcessingTimeOnly>,
    ) {
        match ctx.value(&self.tier) {
            Some(tier) => ctx.emit((click.0, click.1, tier)),
            None => ctx.add(&self.waiting, click.1),
        }
    }
}

fn enriched() -> &'static CollectSink<(u32, String, String)> {
    static S: OnceLock<CollectSink<(u32, String, String)>> = OnceLock::new();
    S.get_or_init(CollectSink::new)
}

#[weir::job(name = "feature-store", main = false)]
fn feature_store(env: &mut Env) {
    let profiles = env
        .source(Generator::bounded(20, |u| {
            (
                u as u32,
                if u % 3 == 0 {
                    "gold".to_string()
                } else {
                    "basic".to_string()
                },
            )
        }))
        .key_by(|p| p.0);
    let clicks = env
        .source(Generator::bounded(200, |i| {
            ((i % 20) as u32, format!("/page/{i}"))
        }))
        .key_by(|c| c.0);
    profiles
        .connect(clicks)
        .process(Enrich {
            tier: ValueState::new("tier"),
            waiting: ListState::new("waiting"),
        })
        .sink(enriched().clone());
}

#[test]
fn co_process_shares_keyed_state_between_inputs() {
    run_local(feature_store(), 3, &[]).unwrap();
    let mut got = enriched().records();
    got.sort();
    let mut expected: Vec<_> = (0..200u64)
        .map(|i| {
            (
                (i % 20) as u32,
                format!("/page/{i}"),
                if (i % 20) % 3 == 0 {
                    "gold".to_string()
                } else {
                    "basic".to_string()
                },
            )
        })
        .collect();
    expected.sort();
    assert_eq!(got, expected);
}

// --- broadcast state: every instance sees every rule. -------------------------------------

/// Alerts on amounts above the limit of their category; rules are broadcast.
struct Limits {
    amounts: ListState<(String, i64)>,
}

impl KeyedBroadcastProcessFunction<u32, (u32, String, i64, i64), (String, i64)> for Limits {
    type Out = (u32, usize, Vec<i64>);
    type State = std::collections::BTreeMap<String, i64>;
    fn process_element(
        &mut self,
        t: (u32, String, i64, i64),
        _: &Self::State,
        ctx: &mut Context<'_, u32, Self::Out>,
    ) {
        ctx.add(&self.amounts, (t.1, t.2));
        // Decide at the end of input, when every rule has arrived.
        ctx.register_event_time_timer(i64::MAX - 1);
    }
    fn process_broadcast_element(&mut self, rule: (String, i64), state: &mut Self::State) {
        state.insert(rule.0, rule.1);
    }
    fn on_timer(
        &mut self,
        _: EventTime,
        _: TimeDomain,
        rules: &Self::State,
        ctx: &mut Context<'_, u32, Self::Out>,
    ) {
        let over: Vec<i64> = ctx
            .list(&self.amounts)
            .into_iter()
            .filter(|(c, a)| rules.get(c).is_some_and(|l| a > l))
            .map(|(_, a)| a)
            .collect();
        ctx.emit((*ctx.key(), rules.len(), over));
        ctx.clear_list(&self.amounts);
    }
}

fn limit_alerts() -> &'static CollectSink<(u32, usize, Vec<i64>)> {
    static S: OnceLock<CollectSink<(u32, usize, Vec<i64>)>> = OnceLock::new();
    S.get_or_init(CollectSink::new)
}

const RULES: [(&str, i64); 3] = [("food", 50), ("travel", 500), ("games", 20)];

#[weir::job(name = "broadcast-rules", main = false)]
fn broadcast_rules(env: &mut Env) {
    let rules = env
        .source(Generator::bounded(3, |i| {
            (RULES[i as usize].0.to_string(), RULES[i as usize].1)
        }))
        .watermarks(Monotonous::new(), |_| 0);
    env.source(Generator::bounded(60, |i| {
        (
            (i % 6) as u32,
            ["food", "travel", "games"][(i % 3) as usize].to_string(),
            (i * 13 % 700) as i64,
            i as i64,
        )
    }))
    .watermarks(Monotonous::new(), |t| t.3)
    .key_by(|t| t.0)
    .connect(rules.broadcast())
    .process(Limits {
        amounts: ListState::new("amounts"),
    })
    .sink(limit_alerts().clone());
}

#[test]
fn broadcast_state_reaches_every_instance() {
    run_local(broadcast_rules(), 3, &[]).unwrap();
    let mut got = limit_alerts().records();
    got.sort();
    let mut expected = Vec::new();
    for k in 0..6u32 {
        let over: Vec<i64> = (0..60i64)
            .filter(|i| (i % 6) as u32 == k)
            .filter(|i| (i * 13 % 700) > RULES[(i % 3) as usize].1)
            .map(|i| i * 13 % 700)
            .collect();
        expected.push((k, 3, over));
    }
    assert_eq!(got, expected);
}

// --- window join and interval join. ------------------------------------------------------

fn window_pairs() -> &'static CollectSink<(u32, i64, i64)> {
    static S: OnceLock<CollectSink<(u32, i64, i64)>> = OnceLock::new();
    S.get_or_init(CollectSink::new)
}
fn interval_pairs() -> &'static CollectSink<(u32, i64, i64)> {
    static S: OnceLock<CollectSink<(u32, i64, i64)>> = OnceLock::new();
    S.get_or_init(CollectSink::new)
}

const LEFT: [(u32, i64); 6] = [
    (1, 1_000),
    (1, 9_500),
    (2, 3_000),
    (1, 12_000),
    (2, 25_000),
    (3, 4_000),
];
const RIGHT: [(u32, i64); 6] = [
    (1, 2_000),
    (2, 9_999),
    (1, 10_500),
    (1, 13_000),
    (2, 26_000),
    (4, 4_000),
];

#[weir::job(name = "joins", main = false)]
fn joins(env: &mut Env) {
    let left = env
        .source(Generator::bounded(6, |i| LEFT[i as usize]))
        .watermarks(Monotonous::new(), |r| r.1)
        .key_by(|r| r.0);
    let right = env
        .source(Generator::bounded(6, |i| RIGHT[i as usize]))
        .watermarks(BoundedOutOfOrderness::seconds(10), |r| r.1)
        .key_by(|r| r.0);
    left.join(right)
        .window(Tumbling::seconds(10))
        .apply(|l, r| (l.0, l.1, r.1))
        .sink(window_pairs().clone());
    left.interval_join(right)
        .between(-1_000, 1_500)
        .process(|l, r| (l.0, l.1, r.1))
        .sink(interval_pairs().clone());
}

#[test]
fn window_and_interval_joins_pair_matching_records() {
    run_local(joins(), 2, &[]).unwrap();
    let mut w = window_pairs().records();
    w.sort();
    // Same key and same 10 s window.
    let mut expected_w = Vec::new();
    for l in LEFT {
        for r in RIGHT {
            if l.0 == r.0 && l.1.div_euclid(10_000) == r.1.div_euclid(10_000) {
                expected_w.push((l.0, l.1, r.1));
            }
        }
    }
    expected_w.sort();
    assert_eq!(w, expected_w);
    assert_eq!(
        w,
        vec![
            (1, 1_000, 2_000),
            (1, 9_500, 2_000),
            (1, 12_000, 10_500),
            (1, 12_000, 13_000),
            (2, 3_000, 9_999),
            (2, 25_000, 26_000)
        ]
    );
    let mut i = interval_pairs().records();
    i.sort();
    // Right time within [left − 1 s, left + 1.5 s].
    let mut expected_i = Vec::new();
    for l in LEFT {
        for r in RIGHT {
            if l.0 == r.0 && r.1 >= l.1 - 1_000 && r.1 <= l.1 + 1_500 {
                expected_i.push((l.0, l.1, r.1));
            }
        }
    }
    expected_i.sort();
    assert_eq!(i, expected_i);
    assert!(!i.is_empty());
}

// --- updating join and aggregation: results retracted and re-emitted as inputs change. ----

/// Total amount per customer name, with retractions.
struct TotalByName;
impl RetractingAggregator<(String, i64)> for TotalByName {
    type Acc = (String, i64);
    type Out = (String, i64);
    fn create_accumulator(&self) -> (String, i64) {
        (String::new(), 0)
    }
    fn add(&self, a: (String, i64), v: (String, i64)) -> (String, i64) {
        (v.0, a.1 + v.1)
    }
    fn retract(&self, a: (String, i64), v: (String, i64)) -> (String, i64) {
        (v.0, a.1 - v.1)
    }
    fn result(&self, a: &(String, i64)) -> (String, i64) {
        a.clone()
    }
}

fn totals_changelog() -> &'static CollectSink<Change<(String, i64)>> {
    static S: OnceLock<CollectSink<Change<(String, i64)>>> = OnceLock::new();
    S.get_or_init(CollectSink::new)
}

/// Customers (id, name) as a CDC stream: inserts, one rename (update before/after), one delete.
fn customers(i: u64) -> Change<(u32, String)> {
    match i {
        0 => Change::Insert((1, "ann".to_string())),
        1 => Change::Insert((2, "bob".to_string())),
        2 => Change::Insert((3, "cy".to_string())),
        3 => Change::UpdateBefore((1, "ann".to_string())),
        4 => Change::UpdateAfter((1, "anna".to_string())),
        _ => Change::Delete((3, "cy".to_string())),
    }
}

#[weir::job(name = "cdc", main = false)]
fn cdc(env: &mut Env) {
    let people = env
        .source(Generator::bounded(6, customers))
        .parallelism(1)
        .key_by(|c| c.value().0);
    let orders = env
        .source(Generator::bounded(30, |i| {
            Change::Insert(((i % 4) as u32, i as i64))
        }))
        .key_by(|c| c.value().0);
    people
        .updating_join(orders)
        .apply(|p, o| (p.1.clone(), o.1))
        .key_by(|c| c.value().0.clone())
        .updating_aggregate(TotalByName)
        .sink(totals_changelog().clone());
}

#[test]
fn updating_join_and_aggregate_converge_to_the_final_tables() {
    run_local(cdc(), 3, &[]).unwrap();
    let mut table = Materialized::new();
    for c in totals_changelog().records() {
        table.apply(c);
    }
    // Final tables: customers {1: anna, 2: bob}; orders of customer k are the i with i % 4 == k.
    let total = |k: u64| (0..30u64).filter(|i| i % 4 == k).sum::<u64>() as i64;
    assert_eq!(
        table.rows().unwrap(),
        vec![
            ("anna".to_string(), total(1)),
            ("bob".to_string(), total(2))
        ]
    );
}

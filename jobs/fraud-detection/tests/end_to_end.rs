//! End-to-end tests of the `fraud-detection` binary: the alerts (side output) and the scored
//! transactions (main output) in every cluster shape, equal to what plain Rust computes from
//! the two input files; the plan; argument errors.
//!
//! The reference below is written from the job's documented rules, not from its code: per
//! account, in (event time, txn_id) order, check the category limits in force, the mean of
//! the earlier transactions and the small-then-large pattern. The inputs are never out of
//! order by the 5 s bound or more, so no transaction is late and the job's results must not
//! depend on the shape or the timing.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use weir_runtime::plan::{Partitioning, PhysicalPlan};
use weir_runtime::testing::{
    assert_all_succeeded, fast_checkpoint_flags, kill_child_process, read_parts,
    read_rolled_records, wait_for_a_complete_checkpoint, JobBinary, LocalCluster, Output, Shape,
    TempDir,
};

fn job() -> JobBinary {
    JobBinary::new(env!("CARGO_BIN_EXE_fraud-detection"))
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

fn io_args(transactions: &Path, rules: &Path, out: &Path) -> Vec<String> {
    [
        format!("transactions={}", transactions.display()),
        format!("rules={}", rules.display()),
        format!("scored={}", out.join("scored").display()),
        format!("alerts={}", out.join("alerts").display()),
    ]
    .into_iter()
    .flat_map(|a| ["--arg".to_string(), a])
    .collect()
}

// ---------------------------------------------------------------------------------------
// The reference
// ---------------------------------------------------------------------------------------

/// The job's constants, as documented.
const SMALL: i64 = 100;
const LARGE: i64 = 50_000;
const PATTERN_MS: i64 = 60_000;
const MIN_HISTORY: i64 = 5;
const BOUND_MS: i64 = 5_000;

#[derive(Debug, Clone)]
struct Txn {
    id: u64,
    account: String,
    amount: i64,
    category: String,
    time: i64,
}

#[derive(Debug, Clone)]
struct Rule {
    id: u64,
    category: String,
    max: i64,
    time: i64,
}

/// What plain Rust makes of the two files.
#[derive(Debug, Default)]
struct Expected {
    /// txn_id → the scored record.
    scored: BTreeMap<u64, Value>,
    /// Every alert, canonical JSON, sorted.
    alerts: Vec<String>,
    /// Lines that are not transactions (bad JSON, a missing or mistyped field).
    undecodable: usize,
    /// Transactions with an amount that is not positive.
    invalid: usize,
    /// The largest `max(earlier event times) − event time` over the valid transactions, in
    /// file order.
    max_disorder: i64,
}

fn parse_txns(text: &str) -> (Vec<Txn>, usize, i64) {
    let (mut txns, mut bad, mut max_seen, mut disorder) = (Vec::new(), 0, i64::MIN, 0);
    for line in text.lines() {
        let t = serde_json::from_str::<Value>(line).ok().and_then(|v| {
            Some(Txn {
                id: v.get("txn_id")?.as_u64()?,
                account: v.get("account")?.as_str()?.to_string(),
                amount: v.get("amount_cents")?.as_i64()?,
                category: v.get("merchant_category")?.as_str()?.to_string(),
                time: v.get("event_time")?.as_i64()?,
            })
        });
        match t {
            Some(t) => {
                // Watermarks are assigned after the validity filter.
                if t.amount > 0 {
                    disorder = disorder.max(max_seen.saturating_sub(t.time));
                    max_seen = max_seen.max(t.time);
                }
                txns.push(t);
            }
            None => bad += 1,
        }
    }
    (txns, bad, disorder)
}

fn parse_rules(text: &str) -> Vec<Rule> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("bad rule {l}: {e}"));
            Rule {
                id: v["rule_id"].as_u64().unwrap(),
                category: v["merchant_category"].as_str().unwrap().to_string(),
                max: v["max_amount_cents"].as_i64().unwrap(),
                time: v.get("event_time").map_or(0, |t| t.as_i64().unwrap()),
            }
        })
        .collect()
}

/// The (rule id, limit) of every rule in force for `category` at `time`: per rule id, its
/// versions at or before `time`, the latest of them, the lowest limit among equals.
fn limits_at(rules: &[Rule], category: &str, time: i64) -> Vec<(u64, i64)> {
    let ids: BTreeSet<u64> = rules.iter().map(|r| r.id).collect();
    ids.into_iter()
        .filter_map(|id| {
            let versions: Vec<&Rule> = rules
                .iter()
                .filter(|r| r.id == id && r.time <= time)
                .collect();
            let latest = versions.iter().map(|r| r.time).max()?;
            let current = versions
                .iter()
                .filter(|r| r.time == latest)
                .min_by_key(|r| (r.max, r.category.clone()))?;
            (current.category == category).then_some((id, current.max))
        })
        .collect()
}

/// Sort object keys, recursively: a canonical string for comparing JSON values.
fn canon(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect::<BTreeMap<_, _>>()
                    .into_iter()
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

impl Expected {
    fn of(transactions: &str, rules: &str) -> Expected {
        let (all, undecodable, max_disorder) = parse_txns(transactions);
        let rules = parse_rules(rules);
        let invalid = all.iter().filter(|t| t.amount <= 0).count();
        let mut accounts: BTreeMap<&str, Vec<&Txn>> = BTreeMap::new();
        for t in all.iter().filter(|t| t.amount > 0) {
            accounts.entry(&t.account).or_default().push(t);
        }
        let mut e = Expected {
            undecodable,
            invalid,
            max_disorder,
            ..Expected::default()
        };
        for txns in accounts.values_mut() {
            txns.sort_by_key(|t| (t.time, t.id));
            let (mut count, mut total, mut small): (i64, i64, Option<&Txn>) = (0, 0, None);
            for t in txns.iter() {
                let alert = |reason: &str,
                             rule: Option<u64>,
                             threshold: i64,
                             small: Option<u64>| {
                    json!({
                        "txn_id": t.id, "account": t.account, "event_time": t.time, "amount_cents": t.amount,
                        "merchant_category": t.category, "reason": reason, "rule_id": rule,
                        "threshold_cents": threshold, "small_txn_id": small,
                    })
                };
                let (mut score, mut reasons, mut alerts) = (0u32, Vec::new(), Vec::new());
                let broken: Vec<(u64, i64)> = limits_at(&rules, &t.category, t.time)
                    .into_iter()
                    .filter(|&(_, max)| t.amount > max)
                    .collect();
                for &(id, max) in &broken {
                    alerts.push(alert("category-limit", Some(id), max, None));
                }
                if !broken.is_empty() {
                    score += 50;
                    reasons.push("category-limit");
                }
                if count >= MIN_HISTORY {
                    if t.amount * count > 10 * total {
                        alerts.push(alert("far-above-mean", None, 10 * total / count, None));
                        score += 30;
                        reasons.push("far-above-mean");
                    } else if t.amount * count > 3 * total {
                        score += 10;
                        reasons.push("above-mean");
                    }
                }
                if let Some(s) = small.take() {
                    if t.amount > LARGE && t.time - s.time <= PATTERN_MS {
                        alerts.push(alert("small-then-large", None, LARGE, Some(s.id)));
                        score += 40;
                        reasons.push("small-then-large");
                    }
                }
                if t.amount < SMALL {
                    small = Some(t);
                }
                let mean_before = if count == 0 { 0 } else { total / count };
                count += 1;
                total += t.amount;
                let scored = json!({
                    "txn_id": t.id, "account": t.account, "amount_cents": t.amount, "merchant_category": t.category,
                    "event_time": t.time, "risk_score": score.min(100), "reasons": reasons,
                    "account_txns": count, "mean_before_cents": mean_before,
                });
                assert!(
                    e.scored.insert(t.id, scored).is_none(),
                    "txn_id {} twice in the input",
                    t.id
                );
                e.alerts.extend(alerts.iter().map(canon));
            }
        }
        e.alerts.sort();
        e
    }

    fn alerts_with(&self, reason: &str) -> Vec<Value> {
        self.alerts
            .iter()
            .map(|a| serde_json::from_str::<Value>(a).unwrap())
            .filter(|a| a["reason"] == reason)
            .collect()
    }

    fn reasons_of(&self, account: &str) -> Vec<String> {
        self.alerts
            .iter()
            .map(|a| serde_json::from_str::<Value>(a).unwrap())
            .filter(|a| a["account"] == account)
            .map(|a| a["reason"].as_str().unwrap().to_string())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Running the job
// ---------------------------------------------------------------------------------------

/// What one run produced.
struct Results {
    /// txn_id → scored record (each txn_id once: checked).
    scored: BTreeMap<u64, Value>,
    /// Alerts, canonical JSON, sorted.
    alerts: Vec<String>,
    /// Part files of (scored, alerts).
    parts: (usize, usize),
}

fn results(shape: Shape, out: &Path) -> Results {
    let scored_parts = read_parts(&out.join("scored"));
    let alert_parts = read_parts(&out.join("alerts"));
    let mut scored = BTreeMap::new();
    for r in scored_parts.values().flatten() {
        let id = r["txn_id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{shape}: no txn_id: {r}"));
        if let Some(prev) = scored.insert(id, r.clone()) {
            panic!("{shape}: transaction {id} scored twice:\n{prev}\n{r}");
        }
    }
    let mut alerts: Vec<String> = alert_parts.values().flatten().map(canon).collect();
    alerts.sort();
    Results {
        scored,
        alerts,
        parts: (scored_parts.len(), alert_parts.len()),
    }
}

/// What differs between two sorted lists of alerts.
fn alert_diff(want: &[String], got: &[String]) -> String {
    let (w, g): (BTreeSet<&String>, BTreeSet<&String>) =
        (want.iter().collect(), got.iter().collect());
    let mut lines: Vec<String> = w.difference(&g).map(|a| format!("missing   {a}")).collect();
    lines.extend(g.difference(&w).map(|a| format!("unexpected {a}")));
    if lines.is_empty() && want.len() != got.len() {
        lines.push(format!(
            "same alerts, but {} vs {} of them: duplicates",
            want.len(),
            got.len()
        ));
    }
    let n = lines.len();
    lines.truncate(20);
    format!("{n} differences:\n{}", lines.join("\n"))
}

fn scored_diff(want: &BTreeMap<u64, Value>, got: &BTreeMap<u64, Value>) -> String {
    let mut lines = Vec::new();
    for (id, w) in want {
        match got.get(id) {
            None => lines.push(format!("{id}: missing, expected {w}")),
            Some(g) if g != w => lines.push(format!(
                "{id}: expected {w}\n{:>width$}got      {g}",
                "",
                width = id.to_string().len() + 2
            )),
            _ => {}
        }
    }
    lines.extend(
        got.keys()
            .filter(|id| !want.contains_key(id))
            .map(|id| format!("{id}: unexpected {}", got[id])),
    );
    let n = lines.len();
    lines.truncate(20);
    format!("{n} differences:\n{}", lines.join("\n"))
}

/// Run on the two files in every shape; check that the alerts and the scored transactions
/// equal plain Rust's in each (so they are the same in all), with one part file per sink
/// instance. Returns every run's outputs, by shape.
fn check_shapes(
    job: &JobBinary,
    transactions: &Path,
    rules: &Path,
    shapes: &[Shape],
) -> Vec<(Shape, Vec<Output>)> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
    };
    let expected = Expected::of(&read(transactions), &read(rules));
    assert!(
        expected.max_disorder < BOUND_MS,
        "the input is {} ms out of order: transactions may be late and results depend on timing",
        expected.max_disorder
    );
    assert!(
        !expected.alerts.is_empty(),
        "no alerts expected: the test would prove little"
    );
    let mut runs = Vec::new();
    let mut first: Option<(Shape, Results)> = None;
    for &shape in shapes {
        let dir = TempDir::new("fraud");
        let out = dir.join("out");
        let outputs = job.run_shape(shape, dir.path(), &io_args(transactions, rules, &out));
        assert_all_succeeded(&outputs);
        let got = results(shape, &out);
        // The sinks take the default parallelism: every slot.
        assert_eq!(
            got.parts,
            (shape.slots(), shape.slots()),
            "{shape}: one part file per sink instance"
        );
        assert!(
            got.alerts == expected.alerts,
            "{shape}: alerts differ from plain Rust's: {}",
            alert_diff(&expected.alerts, &got.alerts)
        );
        assert!(
            got.scored == expected.scored,
            "{shape}: scored transactions differ from plain Rust's: {}",
            scored_diff(&expected.scored, &got.scored)
        );
        match &first {
            None => first = Some((shape, got)),
            Some((s0, r0)) => assert!(
                r0.alerts == got.alerts,
                "{shape} and {s0} raise different alerts: {}",
                alert_diff(&r0.alerts, &got.alerts)
            ),
        }
        runs.push((shape, outputs));
    }
    runs
}

// ---------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------

/// The sample holds what the other tests rely on: a few hundred transactions, 5 rules at
/// time 0, up to 4.8 s of disorder, two undecodable lines and two non-positive amounts, and
/// the planted patterns — each kind of alert, and near misses that must raise none.
#[test]
fn sample_holds_the_planted_patterns() {
    let txns = std::fs::read_to_string(data("transactions.jsonl")).unwrap();
    let rules_text = std::fs::read_to_string(data("rules.jsonl")).unwrap();
    let rules = parse_rules(&rules_text);
    assert_eq!(rules.len(), 5);
    assert!(
        rules.iter().all(|r| r.time == 0),
        "the sample's rules all apply from the start"
    );
    let e = Expected::of(&txns, &rules_text);
    assert_eq!(
        (e.scored.len(), e.undecodable, e.invalid),
        (409, 2, 2),
        "the sample changed: update the test"
    );
    assert!(
        (4_000..BOUND_MS).contains(&e.max_disorder),
        "disorder {} ms: want close to but below the bound",
        e.max_disorder
    );
    let accounts: BTreeSet<&str> = e
        .scored
        .values()
        .map(|r| r["account"].as_str().unwrap())
        .collect();
    assert!(accounts.len() >= 25, "{} accounts", accounts.len());
    let limit = e.alerts_with("category-limit");
    let mean = e.alerts_with("far-above-mean");
    let pattern = e.alerts_with("small-then-large");
    assert_eq!(limit.len(), 8, "{limit:?}");
    assert!(mean.len() >= 5, "{mean:?}");
    assert_eq!(pattern.len(), 4, "{pattern:?}");
    assert_eq!(
        limit
            .iter()
            .map(|a| a["rule_id"].as_u64().unwrap())
            .collect::<BTreeSet<_>>(),
        (1..=5).collect(),
        "every rule is broken"
    );
    // The very first line breaks a rule: rules must be in place before it is checked.
    let first: Value = serde_json::from_str(txns.lines().next().unwrap()).unwrap();
    assert!(
        limit.iter().any(|a| a["txn_id"] == first["txn_id"]),
        "{first}"
    );
    // Read out of order (the large one first): still small then large.
    assert!(e
        .reasons_of("acct-08")
        .contains(&"small-then-large".to_string()));
    // The same millisecond: the small one has the lower txn_id, so it is checked first.
    assert!(e
        .reasons_of("acct-17")
        .contains(&"small-then-large".to_string()));
    // Near misses: 61 s later; an ordinary transaction in between; exactly at a limit; an
    // amount 5× the mean (above it, not far above).
    for (account, reason) in [
        ("acct-21", "small-then-large"),
        ("acct-06", "small-then-large"),
        ("acct-11", "category-limit"),
        ("acct-25", "far-above-mean"),
    ] {
        assert!(
            !e.reasons_of(account).contains(&reason.to_string()),
            "{account}: {:?}",
            e.reasons_of(account)
        );
    }
    assert!(e
        .scored
        .values()
        .any(|r| r["account"] == "acct-25" && r["reasons"] == json!(["above-mean"])));
    assert!(
        e.scored.values().any(|r| r["risk_score"] == 100),
        "no transaction scores 100"
    );
}

/// The sample in one process of 1 and of 4 workers, one node of 2 processes × 2 workers,
/// and 2 nodes × 1 process × 2 workers: the alerts and scores plain Rust computes, every
/// valid transaction exactly once; the undecodable lines are skipped and counted.
#[test]
fn sample_alerts_and_scores_are_the_same_in_every_shape_and_match_plain_rust() {
    let runs = check_shapes(
        &job(),
        &data("transactions.jsonl"),
        &data("rules.jsonl"),
        &[
            Shape::single(1),
            Shape::single(4),
            Shape::procs(2, 2),
            Shape::nodes(2, 1, 2),
        ],
    );
    let single = &runs[0].1[0];
    assert!(
        single
            .stderr
            .lines()
            .any(|l| l.contains("finished") && l.contains("2 bad records")),
        "no summary counting the 2 bad records:\n{single}"
    );
}

/// Generated transactions (`n` of them, JSON lines, arrival order) and rules (see the
/// test below for what they hold). Time `T0 + s * 1000` is `at(s)`.
fn generated_input(n: i64) -> (String, String) {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let categories = [
        "grocery",
        "restaurants",
        "online",
        "travel",
        "electronics",
        "jewelry",
        "gambling",
        "fuel",
    ];
    let mut lines: Vec<(i64, String)> = Vec::new();
    for i in 0..n {
        let account = if next(2) == 0 {
            "hot".to_string()
        } else {
            format!("acct-{}", next(80))
        };
        let amount = match next(100) {
            0..=5 => 1 + next(99) as i64,
            6..=8 => 50_001 + next(400_000) as i64,
            9 => 0,
            _ => 500 + next(9_000) as i64,
        };
        let t = T0 + i * 200 + next(400) as i64;
        let arrival = t + if next(3) == 0 { next(4_700) as i64 } else { 0 };
        let cat = categories[next(categories.len() as u64) as usize];
        lines.push((arrival, format!(r#"{{"txn_id": {}, "account": "{account}", "amount_cents": {amount}, "merchant_category": "{cat}", "event_time": {t}}}"#, 10_000 + i)));
    }
    lines.sort_by_key(|l| l.0);
    let text: String = lines.into_iter().map(|(_, l)| l + "\n").collect();
    let rules = [
        r#"{"rule_id": 2, "merchant_category": "gambling", "max_amount_cents": 50000}"#.to_string(),
        r#"{"rule_id": 1, "merchant_category": "electronics", "max_amount_cents": 150000, "event_time": 0}"#.to_string(),
        r#"{"rule_id": 4, "merchant_category": "travel", "max_amount_cents": 300000, "event_time": 0}"#.to_string(),
        format!(r#"{{"rule_id": 1, "merchant_category": "electronics", "max_amount_cents": 120000, "event_time": {}}}"#, at(300)),
        format!(r#"{{"rule_id": 1, "merchant_category": "electronics", "max_amount_cents": 90000, "event_time": {}}}"#, at(300)),
        format!(r#"{{"rule_id": 3, "merchant_category": "jewelry", "max_amount_cents": 200000, "event_time": {}}}"#, at(500)),
        format!(r#"{{"rule_id": 4, "merchant_category": "online", "max_amount_cents": 250000, "event_time": {}}}"#, at(600)),
    ]
    .join("\n");
    (text, rules)
}

const T0: i64 = 1_700_000_000_000;

fn at(s: i64) -> i64 {
    T0 + s * 1_000
}

/// A generated input: a hot account (half the transactions: its instance gets more than a
/// batch from every source instance), disorder up to 4.9 s, small and large transactions at
/// random, and rules with versions — a limit lowered later on, two versions at one time
/// (the lower limit applies), a rule that starts later, a rule moved to another category, a
/// rule without `event_time`. Rules are in time order within the 5 s bound.
#[test]
fn generated_input_with_rule_versions_gives_the_same_results_in_every_shape() {
    let (text, rules) = generated_input(5_000);
    let e = Expected::of(&text, &rules);
    assert_eq!(e.undecodable, 0);
    assert!(e.invalid > 0);
    // The rule versions matter: rule 1 alerts at both limits, rule 3 only after 500 s, rule
    // 4 on travel before 600 s and on online after.
    let limit = e.alerts_with("category-limit");
    let of = |id: u64| limit.iter().filter(move |a| a["rule_id"] == id);
    let thresholds: BTreeSet<i64> = of(1)
        .map(|a| a["threshold_cents"].as_i64().unwrap())
        .collect();
    assert_eq!(thresholds, BTreeSet::from([90_000, 150_000]));
    assert!(of(3).count() > 0 && of(3).all(|a| a["event_time"].as_i64().unwrap() >= at(500)));
    assert!(
        of(4).any(|a| a["merchant_category"] == "travel")
            && of(4).any(|a| a["merchant_category"] == "online")
    );
    assert!(of(4)
        .all(|a| (a["merchant_category"] == "online")
            == (a["event_time"].as_i64().unwrap() >= at(600))));
    assert!(of(2).count() > 0);
    assert!(
        e.alerts_with("small-then-large").len() > 5 && e.alerts_with("far-above-mean").len() > 5
    );

    let dir = TempDir::new("fraud-input");
    let (txns, rules_file) = (dir.join("transactions.jsonl"), dir.join("rules.jsonl"));
    std::fs::write(&txns, text).unwrap();
    std::fs::write(&rules_file, rules).unwrap();
    check_shapes(
        &job().with_timeout(Duration::from_secs(30)),
        &txns,
        &rules_file,
        &[Shape::single(1), Shape::single(4), Shape::procs(2, 2)],
    );
}

/// Process functions across a crash: the detector's keyed state (map, value states and
/// event-time timers), its broadcast rule book and the splitter's state are checkpointed
/// every 200 ms on one node of 2 processes × 2 workers; once a checkpoint is complete,
/// process 1 is killed with SIGKILL. After the restart every valid transaction is scored
/// exactly once and the alerts are plain Rust's — none lost, none twice.
#[test]
fn a_killed_process_resumes_process_functions_from_the_last_checkpoint_exactly_once() {
    // Enough input for several steps of 64 Ki records, so that checkpoints complete while
    // the job still runs (one step holds everything of a smaller input).
    let (text, rules) = generated_input(120_000);
    let expected = Expected::of(&text, &rules);
    let dir = TempDir::new("fraud-ck");
    let (txns, rules_file) = (dir.join("transactions.jsonl"), dir.join("rules.jsonl"));
    std::fs::write(&txns, text).unwrap();
    std::fs::write(&rules_file, rules).unwrap();
    let out = dir.join("out");
    let mut args = io_args(&txns, &rules_file, &out);
    args.extend(fast_checkpoint_flags(&dir.join("ck")));
    let cluster = LocalCluster::new(dir.path(), 1, 2);
    let mut launcher = job().spawn_node(&cluster, 0, 2, &args);
    wait_for_a_complete_checkpoint(&out.join("scored"), &mut launcher);
    kill_child_process(&launcher, 2, 1);
    let output = launcher.wait(Duration::from_secs(240));
    output.assert_success();
    assert!(
        output.stderr.contains("restoring from checkpoint"),
        "{output}"
    );
    let mut scored = BTreeMap::new();
    for r in read_rolled_records(&out.join("scored")) {
        let id = r["txn_id"].as_u64().expect("no txn_id");
        if let Some(prev) = scored.insert(id, r.clone()) {
            panic!("transaction {id} scored twice:\n{prev}\n{r}");
        }
    }
    assert!(
        scored == expected.scored,
        "scored transactions differ from plain Rust's: {}",
        scored_diff(&expected.scored, &scored)
    );
    let mut alerts: Vec<String> = read_rolled_records(&out.join("alerts"))
        .iter()
        .map(canon)
        .collect();
    alerts.sort();
    assert!(
        alerts == expected.alerts,
        "alerts differ from plain Rust's: {}",
        alert_diff(&expected.alerts, &alerts)
    );
}

// ---------------------------------------------------------------------------------------
// Plan and errors
// ---------------------------------------------------------------------------------------

/// The sources chain with their watermarks (transactions with the validity filter before
/// them); transactions reach the detector by a hash of
/// the account and rules by broadcast; the alert splitter follows by hash, with both sinks
/// and the side output chained to it.
#[test]
fn explain_shows_hash_and_broadcast_inputs_and_the_side_output() {
    let v = job().explain_json(&Shape::procs(2, 2).explain_args());
    assert_eq!(v["job"], "fraud-detection");
    let plan: PhysicalPlan = serde_json::from_value(v["plan"].clone()).unwrap();
    let ops: Vec<Vec<&str>> = plan
        .vertices
        .iter()
        .map(|v| v.operators.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        ops,
        vec![
            vec!["rules", "rule-time"],
            vec!["transactions", "valid", "transaction-time"],
            vec!["detector"],
            vec!["split-alerts", "scored-out", "alerts", "alerts-out"]
        ]
    );
    assert!(plan.vertices.iter().all(|v| v.parallelism == 4));
    let edges: HashSet<(usize, usize, Partitioning)> = plan
        .edges
        .iter()
        .map(|e| (e.from_vertex, e.to_vertex, e.partitioning))
        .collect();
    assert_eq!(
        edges,
        HashSet::from([
            (0, 2, Partitioning::Broadcast),
            (1, 2, Partitioning::Hash),
            (2, 3, Partitioning::Hash)
        ])
    );
    let kinds: BTreeMap<&str, &str> = v["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["name"].as_str().unwrap(), o["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds["detector"], "broadcast_process");
    assert_eq!(kinds["split-alerts"], "process");
    assert_eq!(kinds["alerts"], "side_output");
}

#[test]
fn missing_rules_argument_is_exit_2_naming_it() {
    let dir = TempDir::new("fraud");
    let mut args: Vec<String> = ["run", "--workers", "1"].map(String::from).to_vec();
    let all = io_args(
        &data("transactions.jsonl"),
        &data("rules.jsonl"),
        &dir.join("out"),
    );
    args.extend(
        all.chunks(2)
            .filter(|a| !a[1].starts_with("rules="))
            .flatten()
            .cloned(),
    );
    let out = job().run(&args);
    let line = out.assert_one_line_error(2);
    assert!(line.contains("`rules`"), "{out}");
    assert!(
        !dir.join("out").exists(),
        "nothing runs without the argument"
    );
}

//! Fraud detection (Flink's fraud-detection walkthrough, extended): card transactions in,
//! every transaction scored for risk out, and an alert for each suspicious one on a side
//! output.
//!
//! ```text
//! cargo run --release -p fraud-detection -- run --workers 4 \
//!     --arg transactions=jobs/fraud-detection/data/transactions.jsonl \
//!     --arg rules=jobs/fraud-detection/data/rules.jsonl \
//!     --arg scored=out/fraud/scored --arg alerts=out/fraud/alerts
//! ```
//!
//! **Inputs.** Transactions, JSON lines `{"txn_id", "account", "amount_cents",
//! "merchant_category", "event_time"}` (event time in ms since the Unix epoch), at most 5 s out
//! of order. A line that does not decode is skipped and counted (the file source's default
//! policy); a transaction whose amount is not positive is not valid and is dropped. Rules,
//! JSON lines `{"rule_id", "merchant_category", "max_amount_cents", "event_time"}` from a
//! second file (`event_time` may be left out: it defaults to 0, "valid from the start").
//!
//! **Checks.** Per account (transactions are keyed by `account`), in event-time order:
//!
//! - *category limit*: the amount is above the limit of a rule for the transaction's merchant
//!   category (`amount_cents > max_amount_cents`); one alert per rule broken;
//! - *far above the mean*: the account has at least [`MIN_HISTORY`] earlier transactions and
//!   the amount is more than [`FAR_ABOVE_MEAN`] times their mean;
//! - *small then large* (the walkthrough's pattern): the account's previous transaction was
//!   small (below [`SMALL_CENTS`]) and this one is large (above [`LARGE_CENTS`]) and at most
//!   [`SMALL_THEN_LARGE_MS`] later. Any transaction ends the pattern, as in Flink's version.
//!
//! Every valid transaction goes to the main output (`scored`) with its risk score (0–100)
//! and the reasons behind it; every alert goes to the side output [`ALERTS`] (`alerts`).
//!
//! The detector itself emits a [`Decision`] (the scored transaction and its alerts), and a
//! stateless keyed process function after it, [`SplitAlerts`], writes the alerts to the side
//! output: weir does not yet accept `.side_output(TAG)` after a two-input `.process(...)`
//! (the compiler says nothing writes it, though the runtime would deliver it). When it does,
//! the detector can write `ctx.output(&ALERTS, …)` itself and the second step goes away.
//!
//! **State.** Per account: the running count and sum of its amounts (the mean, exactly:
//! integers, so no rounding depends on the order of additions) and the time and id of its
//! last small transaction, in `ValueState`; transactions waiting for the watermark in a
//! `MapState` from event time to the transactions at that time. The rules are broadcast
//! state: every instance of the detector receives every rule and holds the same
//! [`RuleBook`]; the keyed side only reads it.
//!
//! **Why every check waits for the watermark.** Rules arrive on their own stream, so when a
//! transaction arrives, whether the rules it must meet have arrived yet depends on timing —
//! on the shape of the cluster, on which file a source instance happens to read first. And
//! an account's transactions may arrive out of order, so "the mean of the earlier
//! transactions" and "the previous transaction" must mean earlier in event time, not in
//! arrival. So the detector never decides on arrival: it buffers each transaction and
//! registers an event-time timer at its event time, and decides when the watermark passes
//! it. Rules carry an event time too, and a transaction at `t` is checked against every
//! rule version with a time `≤ t` (the latest version of each `rule_id`). The detector's
//! watermark is the minimum over both inputs, so when it passes `t`, every transaction of the
//! account at or before `t` and every rule at or before `t` has arrived (neither stream is
//! out of order by more than its bound): the result is a function of the two files alone.
//! Timers fire in time order, and transactions of one account at the same millisecond are
//! checked in `txn_id` order. The sample's rules are all at time 0, so every instance holds
//! every rule before it checks anything.
//!
//! The price is latency: a transaction is decided once the watermark passes it, 5 s (the
//! out-of-orderness bound) after a later transaction of the same source instance arrived.
//! A transaction that arrives behind the watermark (more than 5 s out of order) is checked
//! at once against the account's current state, out of event-time order; the sample has
//! none. Two versions of one rule with the same `rule_id` and `event_time` keep the lower
//! limit, so that arrival order does not matter either.
//!
//! Invalid transactions are dropped before watermarks are assigned, so that a broken record
//! cannot move event time. Layout: the two sources (each chained with its watermarks;
//! transactions also with the validity filter) feed the detector, transactions by a hash of the account and rules by
//! broadcast; the alert splitter follows by a hash of the account again (so each decision
//! stays on its worker), and both sinks chain to it. Every operator takes the launch default
//! parallelism, so the job runs on any cluster.

use std::collections::BTreeMap;
use weir::prelude::*;

/// A card transaction, as it arrives.
#[weir::record]
#[derive(PartialEq, Eq)]
pub struct Transaction {
    /// Unique id.
    pub txn_id: u64,
    /// The card account: the key.
    pub account: String,
    /// The amount in cents.
    pub amount_cents: i64,
    /// The merchant's category, such as `"electronics"`.
    pub merchant_category: String,
    /// When it happened (ms since the Unix epoch): the event time.
    pub event_time: i64,
}

/// A limit on the amount of one transaction in a merchant category.
#[weir::record]
#[derive(PartialEq, Eq)]
pub struct Rule {
    /// The rule; a later version (a greater `event_time`) replaces an earlier one.
    pub rule_id: u32,
    /// The category it applies to.
    pub merchant_category: String,
    /// Amounts above this break the rule.
    pub max_amount_cents: i64,
    /// From when this version applies (ms since the Unix epoch; 0: from the start).
    #[serde(default)]
    pub event_time: i64,
}

/// A suspicious transaction, with the reason (one alert per reason and rule).
#[weir::record]
#[derive(PartialEq, Eq)]
pub struct Alert {
    /// The transaction.
    pub txn_id: u64,
    /// Its account.
    pub account: String,
    /// Its event time.
    pub event_time: i64,
    /// Its amount in cents.
    pub amount_cents: i64,
    /// Its merchant category.
    pub merchant_category: String,
    /// `"category-limit"`, `"far-above-mean"` or `"small-then-large"`.
    pub reason: String,
    /// The rule broken (category limit only).
    pub rule_id: Option<u32>,
    /// The amount the transaction exceeded: the rule's limit, [`FAR_ABOVE_MEAN`] times the
    /// mean (rounded down), or [`LARGE_CENTS`].
    pub threshold_cents: i64,
    /// The small transaction before (small then large only).
    pub small_txn_id: Option<u64>,
}

/// A valid transaction with its risk score: the main output.
#[weir::record]
#[derive(PartialEq, Eq)]
pub struct ScoredTransaction {
    /// The transaction.
    pub txn_id: u64,
    /// Its account.
    pub account: String,
    /// Its amount in cents.
    pub amount_cents: i64,
    /// Its merchant category.
    pub merchant_category: String,
    /// Its event time.
    pub event_time: i64,
    /// 0 (nothing unusual) to 100: the sum of the scores of its reasons, at most 100.
    pub risk_score: u32,
    /// What raised the score: the alert reasons, and `"above-mean"` for an amount more than
    /// [`ABOVE_MEAN`] times the account's mean that raises no alert.
    pub reasons: Vec<String>,
    /// The account's transactions up to and including this one.
    pub account_txns: u64,
    /// The mean amount of the account's earlier transactions, in cents (rounded down; 0
    /// for its first).
    pub mean_before_cents: i64,
}

/// What the detector decided about one transaction.
#[weir::record]
#[derive(PartialEq, Eq)]
pub struct Decision {
    /// The transaction with its score.
    pub scored: ScoredTransaction,
    /// Its alerts (none for most).
    pub alerts: Vec<Alert>,
}

/// Below this a transaction is small (Flink's walkthrough: $1.00).
pub const SMALL_CENTS: i64 = 100;
/// Above this a transaction is large (the walkthrough's $500.00).
pub const LARGE_CENTS: i64 = 50_000;
/// A large transaction at most this long after a small one raises an alert.
pub const SMALL_THEN_LARGE_MS: i64 = 60_000;
/// Earlier transactions an account needs before its mean counts.
pub const MIN_HISTORY: u64 = 5;
/// More than this many times the mean: an alert.
pub const FAR_ABOVE_MEAN: i64 = 10;
/// More than this many times the mean (and not far above it): a higher score, no alert.
pub const ABOVE_MEAN: i64 = 3;

/// Score of a broken category limit (however many rules).
pub const SCORE_CATEGORY_LIMIT: u32 = 50;
/// Score of a small-then-large pattern.
pub const SCORE_SMALL_THEN_LARGE: u32 = 40;
/// Score of an amount far above the mean.
pub const SCORE_FAR_ABOVE_MEAN: u32 = 30;
/// Score of an amount above (not far above) the mean.
pub const SCORE_ABOVE_MEAN: u32 = 10;

/// The alerts side output.
pub const ALERTS: OutputTag<Alert> = OutputTag::new("alerts");

/// The rules every instance knows: every version of every rule, by `rule_id` and time.
/// Serializable, so that checkpoints hold it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "weir::serde")]
pub struct RuleBook {
    versions: BTreeMap<u32, BTreeMap<i64, Rule>>,
}

impl RuleBook {
    /// Add a rule version. The result does not depend on the order versions are added in:
    /// two versions of a rule at the same time keep the lower limit.
    pub fn insert(&mut self, rule: Rule) {
        let versions = self.versions.entry(rule.rule_id).or_default();
        match versions.get(&rule.event_time) {
            Some(old)
                if (old.max_amount_cents, &old.merchant_category)
                    <= (rule.max_amount_cents, &rule.merchant_category) => {}
            _ => {
                versions.insert(rule.event_time, rule);
            }
        }
    }

    /// The rules in force at `time` for `category`: of every rule, its latest version at or
    /// before `time`, if that version is about `category`. In `rule_id` order.
    pub fn in_force<'a>(
        &'a self,
        category: &'a str,
        time: i64,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.versions
            .values()
            .filter_map(move |v| v.range(..=time).next_back().map(|(_, r)| r))
            .filter(move |r| r.merchant_category == category)
    }

    /// Rule versions held.
    pub fn len(&self) -> usize {
        self.versions.values().map(BTreeMap::len).sum()
    }

    /// Whether it holds no rule.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }
}

/// An account's running amounts.
#[weir::record]
#[derive(Default, PartialEq, Eq)]
pub struct Behaviour {
    /// Transactions so far.
    pub count: u64,
    /// Their sum in cents (the mean is `total_cents / count`).
    pub total_cents: i64,
}

/// The account's last transaction, if it was small.
#[weir::record]
#[derive(PartialEq, Eq)]
pub struct SmallTxn {
    /// Its id.
    pub txn_id: u64,
    /// Its event time.
    pub event_time: i64,
}

/// Check one transaction against its account's state and the rules in force; update the
/// state. Returns the scored transaction and its alerts.
pub fn evaluate(
    txn: &Transaction,
    behaviour: &mut Behaviour,
    last_small: &mut Option<SmallTxn>,
    rules: &RuleBook,
) -> (ScoredTransaction, Vec<Alert>) {
    let mut alerts = Vec::new();
    let mut reasons = Vec::new();
    let mut score = 0;
    let alert = |reason: &str, rule_id, threshold_cents, small_txn_id| Alert {
        txn_id: txn.txn_id,
        account: txn.account.clone(),
        event_time: txn.event_time,
        amount_cents: txn.amount_cents,
        merchant_category: txn.merchant_category.clone(),
        reason: reason.to_string(),
        rule_id,
        threshold_cents,
        small_txn_id,
    };

    let broken: Vec<&Rule> = rules
        .in_force(&txn.merchant_category, txn.event_time)
        .filter(|r| txn.amount_cents > r.max_amount_cents)
        .collect();
    for r in &broken {
        alerts.push(alert(
            "category-limit",
            Some(r.rule_id),
            r.max_amount_cents,
            None,
        ));
    }
    if !broken.is_empty() {
        score += SCORE_CATEGORY_LIMIT;
        reasons.push("category-limit".to_string());
    }

    if behaviour.count >= MIN_HISTORY {
        // amount > k × total / count, without dividing.
        let scaled = i128::from(txn.amount_cents) * i128::from(behaviour.count);
        let total = i128::from(behaviour.total_cents);
        if scaled > i128::from(FAR_ABOVE_MEAN) * total {
            let threshold = i128::from(FAR_ABOVE_MEAN) * total / i128::from(behaviour.count);
            alerts.push(alert(
                "far-above-mean",
                None,
                i64::try_from(threshold).unwrap_or(i64::MAX),
                None,
            ));
            score += SCORE_FAR_ABOVE_MEAN;
            reasons.push("far-above-mean".to_string());
        } else if scaled > i128::from(ABOVE_MEAN) * total {
            score += SCORE_ABOVE_MEAN;
            reasons.push("above-mean".to_string());
        }
    }

    if let Some(small) = last_small.take() {
        if txn.amount_cents > LARGE_CENTS
            && txn.event_time - small.event_time <= SMALL_THEN_LARGE_MS
        {
            alerts.push(alert(
                "small-then-large",
                None,
                LARGE_CENTS,
                Some(small.txn_id),
            ));
            score += SCORE_SMALL_THEN_LARGE;
            reasons.push("small-then-large".to_string());
        }
    }
    if txn.amount_cents < SMALL_CENTS {
        *last_small = Some(SmallTxn {
            txn_id: txn.txn_id,
            event_time: txn.event_time,
        });
    }

    let mean_before_cents = if behaviour.count == 0 {
        0
    } else {
        behaviour.total_cents / behaviour.count as i64
    };
    behaviour.count += 1;
    behaviour.total_cents += txn.amount_cents;
    let scored = ScoredTransaction {
        txn_id: txn.txn_id,
        account: txn.account.clone(),
        amount_cents: txn.amount_cents,
        merchant_category: txn.merchant_category.clone(),
        event_time: txn.event_time,
        risk_score: score.min(100),
        reasons,
        account_txns: behaviour.count,
        mean_before_cents,
    };
    (scored, alerts)
}

/// The keyed side of the detector: per-account state, transactions buffered until the
/// watermark passes them; the broadcast side: the rule book.
pub struct FraudDetector {
    /// Transactions waiting for the watermark, by event time.
    pending: MapState<i64, Vec<Transaction>>,
    /// Count and sum of the account's amounts.
    behaviour: ValueState<Behaviour>,
    /// The account's last transaction, if it was small.
    last_small: ValueState<SmallTxn>,
}

impl FraudDetector {
    /// A detector with its state descriptors.
    pub fn new() -> Self {
        FraudDetector {
            pending: MapState::new("pending"),
            behaviour: ValueState::new("behaviour"),
            last_small: ValueState::new("last-small"),
        }
    }

    /// Check `txns` (one account's, in order) and write the results.
    fn decide(
        &self,
        txns: Vec<Transaction>,
        rules: &RuleBook,
        ctx: &mut Context<'_, String, Decision>,
    ) {
        let mut behaviour = ctx.value(&self.behaviour).unwrap_or_default();
        let mut last_small = ctx.value(&self.last_small);
        for txn in &txns {
            let (scored, alerts) = evaluate(txn, &mut behaviour, &mut last_small, rules);
            ctx.emit(Decision { scored, alerts });
        }
        ctx.update(&self.behaviour, behaviour);
        match last_small {
            Some(s) => ctx.update(&self.last_small, s),
            None => ctx.clear(&self.last_small),
        }
    }
}

impl Default for FraudDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyedBroadcastProcessFunction<String, Transaction, Rule> for FraudDetector {
    type Out = Decision;
    type State = RuleBook;

    fn process_element(
        &mut self,
        txn: Transaction,
        rules: &RuleBook,
        ctx: &mut Context<'_, String, Decision>,
    ) {
        let t = txn.event_time;
        if t <= ctx.current_watermark() {
            // Late: its timer would only fire after later transactions were decided.
            self.decide(vec![txn], rules, ctx);
            return;
        }
        let mut at_t = ctx.get(&self.pending, &t).unwrap_or_default();
        at_t.push(txn);
        ctx.put(&self.pending, t, at_t);
        ctx.register_event_time_timer(t);
    }

    fn process_broadcast_element(&mut self, rule: Rule, rules: &mut RuleBook) {
        rules.insert(rule);
    }

    fn on_timer(
        &mut self,
        time: EventTime,
        _: TimeDomain,
        rules: &RuleBook,
        ctx: &mut Context<'_, String, Decision>,
    ) {
        let Some(mut due) = ctx.get(&self.pending, &time) else {
            return;
        };
        ctx.remove(&self.pending, &time);
        due.sort_by_key(|t| t.txn_id);
        self.decide(due, rules, ctx);
    }
}

/// Passes the scored transaction on and writes the alerts to the [`ALERTS`] side output.
pub struct SplitAlerts;

impl KeyedProcessFunction<String, Decision> for SplitAlerts {
    type Out = ScoredTransaction;

    fn process_element(&mut self, d: Decision, ctx: &mut Context<'_, String, ScoredTransaction>) {
        for a in d.alerts {
            ctx.output(&ALERTS, a);
        }
        ctx.emit(d.scored);
    }
}

#[weir::job(name = "fraud-detection")]
fn pipeline(env: &mut Env) {
    let rules = env
        .source(FileSource::json_lines::<Rule>(env.arg("rules")))
        .name("rules")
        .watermarks(BoundedOutOfOrderness::seconds(5), |r| r.event_time)
        .name("rule-time");
    let scored = env
        .source(FileSource::json_lines::<Transaction>(
            env.arg("transactions"),
        ))
        .name("transactions")
        .filter(|t| t.amount_cents > 0)
        .name("valid")
        .watermarks(BoundedOutOfOrderness::seconds(5), |t| t.event_time)
        .name("transaction-time")
        .key_by(|t| t.account.clone())
        .connect(rules.broadcast())
        .process(FraudDetector::new())
        .name("detector")
        .key_by(|d| d.scored.account.clone())
        .process(SplitAlerts)
        .name("split-alerts");
    scored
        .sink(FileSink::json_lines(env.arg("scored")))
        .name("scored-out");
    scored
        .side_output(ALERTS)
        .name("alerts")
        .sink(FileSink::json_lines(env.arg("alerts")))
        .name("alerts-out");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(txn_id: u64, amount_cents: i64, category: &str, event_time: i64) -> Transaction {
        Transaction {
            txn_id,
            account: "a".into(),
            amount_cents,
            merchant_category: category.into(),
            event_time,
        }
    }

    fn rule(rule_id: u32, category: &str, max: i64, event_time: i64) -> Rule {
        Rule {
            rule_id,
            merchant_category: category.into(),
            max_amount_cents: max,
            event_time,
        }
    }

    fn reasons(alerts: &[Alert]) -> Vec<&str> {
        alerts.iter().map(|a| a.reason.as_str()).collect()
    }

    #[test]
    fn rule_versions_apply_from_their_time_in_any_insertion_order() {
        let versions = [
            rule(1, "travel", 100, 0),
            rule(1, "travel", 50, 1_000),
            rule(2, "travel", 80, 0),
            rule(1, "travel", 70, 1_000),
            rule(3, "food", 10, 0),
        ];
        let mut a = RuleBook::default();
        let mut b = RuleBook::default();
        for r in versions.iter().cloned() {
            a.insert(r);
        }
        for r in versions.iter().rev().cloned() {
            b.insert(r);
        }
        assert_eq!(a, b);
        assert_eq!(a.len(), 4);
        let limits = |t| {
            a.in_force("travel", t)
                .map(|r| (r.rule_id, r.max_amount_cents))
                .collect::<Vec<_>>()
        };
        assert_eq!(limits(999), vec![(1, 100), (2, 80)]);
        assert_eq!(
            limits(1_000),
            vec![(1, 50), (2, 80)],
            "same time: the lower limit wins"
        );
        assert_eq!(limits(-1), vec![]);
    }

    #[test]
    fn category_limits_mean_and_small_then_large() {
        let mut rules = RuleBook::default();
        rules.insert(rule(7, "electronics", 100_000, 0));
        let (mut b, mut small) = (Behaviour::default(), None);
        let mut run = |t: Transaction| evaluate(&t, &mut b, &mut small, &rules);
        for i in 0..5 {
            let (s, a) = run(txn(i, 2_000, "grocery", i as i64 * 1_000));
            assert!(a.is_empty() && s.risk_score == 0, "{s:?}");
        }
        // Mean 2000: 7000 is above 3×, not above 10×.
        let (s, a) = run(txn(5, 7_000, "grocery", 10_000));
        assert_eq!(
            (s.risk_score, s.reasons.clone(), a.len()),
            (10, vec!["above-mean".to_string()], 0)
        );
        assert_eq!(s.mean_before_cents, 2_000);
        let (_, a) = run(txn(6, 50, "online", 20_000));
        assert!(a.is_empty());
        // Small then large 60 s later, over the limit and far above the mean.
        let (s, a) = run(txn(7, 150_000, "electronics", 80_000));
        assert_eq!(
            reasons(&a),
            vec!["category-limit", "far-above-mean", "small-then-large"]
        );
        assert_eq!(s.risk_score, 100);
        assert_eq!((a[0].rule_id, a[0].threshold_cents), (Some(7), 100_000));
        assert_eq!(a[2].small_txn_id, Some(6));
        // The pattern ends with the next transaction; 60.001 s is too late anyway.
        let (_, a) = run(txn(8, 60, "online", 90_000));
        assert!(a.is_empty());
        let (s, a) = run(txn(9, 60_000, "travel", 150_001));
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(s.reasons, vec!["above-mean".to_string()]);
    }
}

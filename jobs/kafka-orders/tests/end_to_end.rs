//! End-to-end tests of the `kafka-orders` binary against a real Kafka-protocol broker
//! (tansu on 127.0.0.1, started by `.ci/run` or by the test helper; a missing broker fails
//! these tests): orders produced into a topic of 6 partitions, the job run bounded in one
//! process of 4 workers and in 2 processes × 2 workers, and the two output topics compared
//! with what plain Rust computes from the same orders.
//!
//! Each partition's orders are in event-time order up to 2 s (the job's bound is 5 s), but
//! a source instance reading two partitions gets them in fetched batches of thousands of
//! records, one partition's hours ahead of the other's: only per-partition watermarks keep
//! every order on time, so the per-minute totals equal plain Rust's only if they work. (With
//! the assigner's split lookup disabled, this test fails: 1 × 4 workers lost orders as late.)

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use weir_runtime::kafka::partition_for_key;
use weir_runtime::testing::kafka::{
    brokers, create_topic, produce, read_topic, unique_topic, Message,
};
use weir_runtime::testing::{assert_all_succeeded, run_with_timeout, JobBinary, Shape, TempDir};

fn job() -> JobBinary {
    JobBinary::new(env!("CARGO_BIN_EXE_kafka-orders"))
}

const PARTITIONS: i32 = 6;
const ORDERS: u64 = 48_000;
const BASE: i64 = 1_700_000_000_000;

/// `(partition, order)` for order `i`: partition `i mod 6`; in its partition, times rise by
/// 1.5 s per order with up to 1.9 s of jitter; customers `c0`..`c22`; amounts from −100 to
/// 899 cents (some not positive).
fn order(i: u64) -> (i32, Value) {
    let partition = (i % PARTITIONS as u64) as i32;
    let t = BASE + (i / PARTITIONS as u64) as i64 * 1_500 + (i * 7_919 % 1_900) as i64;
    let o = serde_json::json!({
        "order_id": i,
        "customer": format!("c{}", i * 7 % 23),
        "amount_cents": (i * 37 % 1_000) as i64 - 100,
        "event_time": t,
    });
    (partition, o)
}

/// Malformed messages put into partition 2 after the order with this index in it.
const BAD_AFTER: [usize; 3] = [10, 4_000, 7_999];
const BAD: [&str; 3] = [
    "not json",
    r#"{"order_id":"seven"}"#,
    r#"{"order_id":1,"customer":"c1"}"#,
];

/// A message to produce: its key and value.
type KeyValue = (Option<Vec<u8>>, Vec<u8>);

/// The orders topic; returns the offsets of the malformed messages.
fn fill_orders(b: &str, topic: &str) -> Vec<i64> {
    create_topic(b, topic, PARTITIONS);
    let mut per: BTreeMap<i32, Vec<KeyValue>> = BTreeMap::new();
    let mut bad_offsets = Vec::new();
    for i in 0..ORDERS {
        let (p, o) = order(i);
        let msgs = per.entry(p).or_default();
        msgs.push((None, o.to_string().into_bytes()));
        if p == 2 {
            if let Some(k) = BAD_AFTER
                .iter()
                .position(|&n| n + 1 == msgs.len() + bad_offsets.len())
            {
                bad_offsets.push(msgs.len() as i64);
                msgs.push((None, BAD[k].as_bytes().to_vec()));
            }
        }
    }
    for (p, msgs) in per {
        produce(b, topic, p, msgs);
    }
    bad_offsets
}

fn json(m: &Message) -> Value {
    let bytes = m.value.as_deref().unwrap_or_default();
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// `(order_id, customer, amount, with tax)` of every order with a positive amount.
fn expected_sales() -> Vec<(u64, String, i64, i64)> {
    (0..ORDERS)
        .map(|i| order(i).1)
        .filter(|o| o["amount_cents"].as_i64().unwrap_or(0) > 0)
        .map(|o| {
            let cents = o["amount_cents"].as_i64().unwrap_or(0);
            (
                o["order_id"].as_u64().unwrap_or(0),
                o["customer"].as_str().unwrap_or("").to_string(),
                cents,
                cents * 6 / 5,
            )
        })
        .collect()
}

/// `(customer, minute) → (sales, cents)` over every order with a positive amount.
fn expected_totals() -> BTreeMap<(String, i64), (u64, i64)> {
    let mut out: BTreeMap<(String, i64), (u64, i64)> = BTreeMap::new();
    for o in (0..ORDERS).map(|i| order(i).1) {
        let cents = o["amount_cents"].as_i64().unwrap_or(0);
        if cents <= 0 {
            continue;
        }
        let t = o["event_time"].as_i64().unwrap_or(0);
        let e = out
            .entry((
                o["customer"].as_str().unwrap_or("").to_string(),
                t - t.rem_euclid(60_000),
            ))
            .or_default();
        e.0 += 1;
        e.1 += cents;
    }
    out
}

fn run(shape: Shape, b: &str, orders: &str, dir: &Path) -> (Vec<Message>, Vec<Message>) {
    let (sales, totals) = (unique_topic("sales"), unique_topic("totals"));
    create_topic(b, &sales, 4);
    create_topic(b, &totals, 3);
    let args: Vec<String> = [
        format!("brokers={b}"),
        format!("orders={orders}"),
        format!("sales={sales}"),
        format!("totals={totals}"),
        "bounded=true".into(),
        format!("dead_letter={}", dir.join("dead").display()),
    ]
    .into_iter()
    .flat_map(|a| ["--arg".to_string(), a])
    .collect();
    let runs = job().run_shape(shape, dir, &args);
    assert_all_succeeded(&runs);
    (read_topic(b, &sales), read_topic(b, &totals))
}

#[test]
fn kafka_to_kafka_matches_plain_rust_in_every_shape() {
    let b = brokers();
    let orders = unique_topic("orders");
    let bad_offsets = fill_orders(&b, &orders);
    assert_eq!(bad_offsets.len(), 3);
    let mut want_sales = expected_sales();
    want_sales.sort();
    let want_totals = expected_totals();
    assert!(want_totals.len() > 200, "too few windows to prove much");

    for shape in [Shape::single(4), Shape::procs(2, 2)] {
        let dir = TempDir::new("kafka-orders");
        let (sales, totals) = run(shape, &b, &orders, dir.path());

        // Sales: every positive order exactly once (an uninterrupted run), keyed by customer
        // and in the partition Kafka's default partitioner gives the key.
        let mut got_sales = Vec::new();
        for m in &sales {
            let s = json(m);
            let customer = s["customer"].as_str().unwrap_or_default().to_string();
            assert_eq!(m.key.as_deref(), Some(customer.as_bytes()), "{shape}: key");
            assert_eq!(
                m.partition as usize,
                partition_for_key(customer.as_bytes(), 4),
                "{shape}: partition of {customer}"
            );
            got_sales.push((
                s["order_id"].as_u64().unwrap_or(u64::MAX),
                customer,
                s["amount_cents"].as_i64().unwrap_or(0),
                s["with_tax_cents"].as_i64().unwrap_or(0),
            ));
        }
        got_sales.sort();
        assert!(
            got_sales == want_sales,
            "{shape}: {} sales, want {}",
            got_sales.len(),
            want_sales.len()
        );

        // Totals: one per customer and minute, with every sale of it — none was late.
        let mut got_totals = BTreeMap::new();
        for m in &totals {
            let t = json(m);
            let key = (
                t["customer"].as_str().unwrap_or_default().to_string(),
                t["minute"].as_i64().unwrap_or(0),
            );
            let prev = got_totals.insert(
                key.clone(),
                (
                    t["sales"].as_u64().unwrap_or(0),
                    t["cents"].as_i64().unwrap_or(0),
                ),
            );
            assert_eq!(prev, None, "{shape}: {key:?} fired twice");
        }
        let missing: Vec<_> = want_totals
            .iter()
            .filter(|(k, v)| got_totals.get(*k) != Some(*v))
            .take(5)
            .collect();
        assert!(
            got_totals == want_totals,
            "{shape}: per-minute totals differ from plain Rust's ({} vs {}); first differences (want): {missing:?}",
            got_totals.len(),
            want_totals.len()
        );

        // Malformed messages: in the dead-letter files with their partition and offset.
        let mut dead = Vec::new();
        for entry in std::fs::read_dir(dir.join("dead"))
            .map(|d| d.flatten().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).unwrap_or_default();
                assert_eq!(v["topic"], orders.as_str());
                dead.push((
                    v["partition"].as_i64().unwrap_or(-1),
                    v["offset"].as_i64().unwrap_or(-1),
                    v["raw"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        dead.sort();
        let want_dead: Vec<(i64, i64, String)> = bad_offsets
            .iter()
            .zip(BAD)
            .map(|(&o, raw)| (2, o, raw.to_string()))
            .collect();
        assert_eq!(dead, want_dead, "{shape}: dead letters");
    }
}

/// `KafkaSource`'s errors are the job's one error line at start (after the run's log lines).
fn last_error_line(cmd: std::process::Command) -> String {
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    assert_eq!(out.code(), Some(1), "{out}");
    out.stderr_lines()
        .last()
        .copied()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn brokers_come_from_the_environment_and_a_missing_topic_is_one_clear_error() {
    let b = brokers();
    let topics = [
        "--arg",
        "orders=no-such-orders-topic",
        "--arg",
        "sales=x",
        "--arg",
        "totals=y",
        "--arg",
        "bounded=true",
    ];
    let mut args = vec!["run", "--workers", "2"];
    args.extend(topics);
    // No `--arg brokers`: KAFKA_BROKERS is used, and reaches the broker.
    let mut cmd = job().command(&args);
    cmd.env("KAFKA_BROKERS", &b);
    let line = last_error_line(cmd);
    assert!(
        line.starts_with(&format!(
            "error: operator `orders`: kafka source `orders`: topic `no-such-orders-topic` does not exist on {b}"
        )),
        "{line}"
    );
    // Neither: an empty broker list, named.
    let mut cmd = job().command(&args);
    cmd.env_remove("KAFKA_BROKERS");
    let line = last_error_line(cmd);
    assert!(
        line.contains("kafka source `orders`: the broker list is empty"),
        "{line}"
    );
}

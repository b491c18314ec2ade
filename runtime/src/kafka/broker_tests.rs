//! The source and sink against a real Kafka-protocol broker (tansu on 127.0.0.1; see
//! `crate::testing::kafka`). A missing broker fails these tests.

use super::sink::partition_for_key;
use super::*;
use crate::error::ErrorDomain;
use crate::sinks::{Sink, SinkContext, SinkWriter};
use crate::sources::{BadRecordPolicy, Poll, Source, SourceContext, SourceReader};
use crate::testing::kafka::{brokers, create_topic, produce, produce_at, read_topic, unique_topic};
use crate::testing::TempDir;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
}

fn sctx(instance: usize, parallelism: usize) -> SourceContext {
    SourceContext {
        job: "test".into(),
        operator: "orders".into(),
        instance,
        parallelism,
    }
}

fn order_json(id: u64) -> Vec<u8> {
    serde_json::to_vec(&Order {
        id,
        customer: format!("c{}", id % 7),
    })
    .unwrap_or_default()
}

/// A topic of `partitions` partitions holding orders `0..n`, order `i` in partition
/// `i mod partitions`.
fn orders_topic(b: &str, partitions: i32, n: u64) -> String {
    let topic = unique_topic("orders");
    create_topic(b, &topic, partitions);
    for p in 0..partitions {
        let values = (0..n)
            .filter(|i| (i % partitions as u64) as i32 == p)
            .map(|i| (None, order_json(i)))
            .collect();
        produce(b, &topic, p, values);
    }
    topic
}

/// Poll until done (bounded) or until `want` records arrived; panics after 20 s.
fn drain<R: SourceReader>(
    reader: &mut R,
    want: Option<usize>,
) -> crate::error::Result<Vec<R::Item>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "the source did not finish in time"
        );
        let before = out.len();
        let p = reader.poll(7, |r| out.push(r))?;
        assert!(out.len() - before <= 7, "more records than the budget");
        if want.is_some_and(|w| out.len() >= w) || p == Poll::Done {
            return Ok(out);
        }
        if p == Poll::Idle {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[test]
fn bounded_source_reads_every_partition_once_across_instances() {
    let b = brokers();
    let topic = orders_topic(&b, 5, 300);
    let src = KafkaSource::json::<Order>(b.clone(), topic.clone())
        .bounded()
        .on_bad_record(BadRecordPolicy::Fail);
    for parallelism in [1, 2, 3, 7] {
        let mut all = Vec::new();
        for i in 0..parallelism {
            let mut reader = src.open(&sctx(i, parallelism)).unwrap();
            let want: Vec<i32> = (0..5).filter(|p| *p as usize % parallelism == i).collect();
            assert_eq!(reader.partitions(), want);
            let got = drain(&mut reader, None).unwrap();
            // Within a partition, records arrive in offset order.
            let mut by_partition: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            for o in &got {
                by_partition.entry(o.id % 5).or_default().push(o.id);
            }
            for ids in by_partition.values() {
                assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
            }
            // Positions: the end of each partition (60 records each).
            assert_eq!(
                reader.positions(),
                want.iter().map(|&p| (p, 60)).collect::<Vec<_>>()
            );
            assert_eq!(reader.progress().0, got.len() as u64);
            all.extend(got);
        }
        all.sort();
        let expected: Vec<Order> = (0..300)
            .map(|i| Order {
                id: i,
                customer: format!("c{}", i % 7),
            })
            .collect();
        assert_eq!(all, expected, "parallelism {parallelism}");
    }
}

#[test]
fn start_from_offsets_resumes_where_positions_left_off() {
    let b = brokers();
    let topic = orders_topic(&b, 2, 40);
    let src = KafkaSource::json::<Order>(b.clone(), topic.clone()).bounded();
    let mut reader = src.open(&sctx(0, 1)).unwrap();
    let first = drain(&mut reader, Some(7)).unwrap();
    let positions = reader.positions();
    drop(reader);
    let consumed: i64 = positions.iter().map(|(_, o)| o).sum();
    assert_eq!(consumed, first.len() as i64);
    let rest = drain(
        &mut src
            .clone()
            .start(StartFrom::Offsets(positions))
            .open(&sctx(0, 1))
            .unwrap(),
        None,
    )
    .unwrap();
    let mut ids: Vec<u64> = first.iter().chain(&rest).map(|o| o.id).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..40).collect::<Vec<_>>(),
        "nothing lost, nothing twice"
    );
}

/// A savepoint's offsets from 2 instances, restored on 3 (and on 1): each new instance
/// reads its partitions from where their old readers were — nothing lost, nothing twice.
#[test]
fn positions_of_two_instances_rescale_to_three_and_to_one_exactly() {
    let b = brokers();
    let topic = orders_topic(&b, 5, 100);
    let src = KafkaSource::json::<Order>(b.clone(), topic.clone()).bounded();
    let mut before = Vec::new();
    let mut positions = Vec::new();
    for (i, take) in [(0, 13), (1, 4)] {
        let mut reader = src.open(&sctx(i, 2)).unwrap();
        before.extend(drain(&mut reader, Some(take)).unwrap());
        positions.push(reader.position());
    }
    for new in [3, 1] {
        let mut ids: Vec<u64> = before.iter().map(|o| o.id).collect();
        for i in 0..new {
            let mut reader = src.open(&sctx(i, new)).unwrap();
            reader.rescale(&positions).unwrap();
            ids.extend(drain(&mut reader, None).unwrap().iter().map(|o| o.id));
        }
        ids.sort_unstable();
        assert_eq!(
            ids,
            (0..100).collect::<Vec<_>>(),
            "from 2 to {new} instances: nothing lost, nothing twice"
        );
    }
}

/// What a checkpoint stores of a Kafka source (its offsets) resumes it exactly: a reader
/// opened afresh and sought to a stored position reads the rest, nothing twice — what the
/// restore after a crash does.
#[test]
fn a_checkpointed_position_resumes_the_source_exactly() {
    let b = brokers();
    let topic = orders_topic(&b, 3, 60);
    let src = KafkaSource::json::<Order>(b.clone(), topic.clone()).bounded();
    let mut reader = src.open(&sctx(0, 1)).unwrap();
    let first = drain(&mut reader, Some(11)).unwrap();
    let position = reader
        .position()
        .expect("a kafka source records its position");
    // More is read after the checkpoint, then the job dies.
    let lost = drain(&mut reader, Some(9)).unwrap();
    assert!(!lost.is_empty());
    drop(reader);
    let mut restored = src.open(&sctx(0, 1)).unwrap();
    restored.seek(&position).unwrap();
    let rest = drain(&mut restored, None).unwrap();
    let mut ids: Vec<u64> = first.iter().chain(&rest).map(|o| o.id).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..60).collect::<Vec<_>>(),
        "nothing lost, nothing twice"
    );
}

#[test]
fn latest_reads_only_what_is_produced_after_the_start() {
    let b = brokers();
    let topic = orders_topic(&b, 2, 10);
    let src = KafkaSource::json::<Order>(b.clone(), topic.clone())
        .start(StartFrom::Latest)
        .fetch_max_wait(Duration::from_millis(50));
    assert!(!src.is_bounded());
    let mut reader = src.open(&sctx(0, 1)).unwrap();
    assert_eq!(reader.positions(), [(0, 5), (1, 5)]);
    produce(
        &b,
        &topic,
        1,
        vec![(None, order_json(100)), (None, order_json(101))],
    );
    let got = drain(&mut reader, Some(2)).unwrap();
    assert_eq!(got.iter().map(|o| o.id).collect::<Vec<_>>(), [100, 101]);
    assert_eq!(reader.positions(), [(0, 5), (1, 7)]);
    // Unbounded: nothing more is idle, not done.
    assert_eq!(reader.poll(10, |_| {}).unwrap(), Poll::Idle);
}

#[test]
fn bad_records_follow_the_policy_naming_topic_partition_and_offset() {
    let b = brokers();
    let topic = unique_topic("bad");
    create_topic(&b, &topic, 2);
    produce(
        &b,
        &topic,
        1,
        vec![
            (None, order_json(1)),
            (None, b"{not json".to_vec()),
            (None, order_json(3)),
            (None, br#"{"id":"four","customer":"x"}"#.to_vec()),
        ],
    );
    produce(&b, &topic, 0, vec![(None, order_json(0))]);
    let src = KafkaSource::json::<Order>(b.clone(), topic.clone()).bounded();

    let err = drain(
        &mut src
            .clone()
            .on_bad_record(BadRecordPolicy::Fail)
            .open(&sctx(0, 1))
            .unwrap(),
        None,
    )
    .unwrap_err();
    assert_eq!(err.domain, ErrorDomain::User);
    let want = format!(
        "kafka source `orders`: cannot decode topic `{topic}` partition 1 offset 1: invalid JSON"
    );
    assert!(err.message.starts_with(&want), "{}", err.message);
    assert!(
        err.message
            .contains(".on_bad_record(BadRecordPolicy::Skip)"),
        "{}",
        err.message
    );

    let mut skip = src.open(&sctx(0, 1)).unwrap();
    let mut ids: Vec<u64> = drain(&mut skip, None)
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [0, 1, 3]);
    assert_eq!(skip.bad_records(), 2);
    assert_eq!(
        skip.positions(),
        [(0, 1), (1, 4)],
        "bad records count as read"
    );

    let dir = TempDir::new("kafka-dead");
    let mut dead = src
        .clone()
        .on_bad_record(BadRecordPolicy::DeadLetter(dir.join("dl")))
        .open(&sctx(1, 2))
        .unwrap();
    assert_eq!(drain(&mut dead, None).unwrap().len(), 2);
    assert_eq!(dead.bad_records(), 2);
    let text = std::fs::read_to_string(dir.join("dl/dead-letter-orders-1.jsonl")).unwrap();
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["topic"], topic.as_str());
    assert_eq!(entries[0]["partition"], 1);
    assert_eq!(entries[0]["offset"], 1);
    assert_eq!(entries[0]["raw"], "{not json");
    assert_eq!(entries[1]["offset"], 3);
    assert!(entries[1]["error"]
        .as_str()
        .unwrap()
        .contains("invalid type: string \"four\""));
}

#[test]
fn missing_topic_and_bad_broker_list_fail_at_open() {
    let b = brokers();
    let err = KafkaSource::json::<Order>(b.clone(), "no-such-topic-weir")
        .open(&sctx(0, 1))
        .err()
        .unwrap();
    assert_eq!(err.domain, ErrorDomain::User);
    assert!(
        err.message
            .contains("topic `no-such-topic-weir` does not exist"),
        "{}",
        err.message
    );
    let err = KafkaSink::json::<Order>(b.clone(), "no-such-topic-weir")
        .open(&SinkContext {
            job: "t".into(),
            operator: "out".into(),
            instance: 0,
            parallelism: 1,
        })
        .err()
        .unwrap();
    assert!(
        err.message
            .starts_with("kafka sink `out`: topic `no-such-topic-weir` does not exist"),
        "{}",
        err.message
    );
}

#[test]
fn unreachable_broker_fails_after_the_retry_timeout() {
    // A port nothing listens on.
    let port = crate::testing::free_port();
    let started = Instant::now();
    let err = KafkaSource::json::<Order>(format!("127.0.0.1:{port}"), "t")
        .retry_timeout(Duration::from_secs(1))
        .open(&sctx(0, 1))
        .err()
        .unwrap();
    assert_eq!(err.domain, ErrorDomain::External);
    assert!(
        err.message.contains("cannot reach the Kafka brokers"),
        "{}",
        err.message
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn sink_partitions_by_key_like_kafka_or_round_robin() {
    let b = brokers();
    let keyed = unique_topic("keyed");
    create_topic(&b, &keyed, 4);
    let ctx = |instance| SinkContext {
        job: "t".into(),
        operator: "out".into(),
        instance,
        parallelism: 2,
    };
    let sink = KafkaSink::json::<Order>(b.clone(), keyed.clone()).key_by(|o| o.customer.clone());
    assert_eq!(sink.guarantee(), crate::sinks::Guarantee::AtLeastOnce);
    let mut w0 = sink.open(&ctx(0)).unwrap();
    let mut w1 = sink.open(&ctx(1)).unwrap();
    for i in 0..100u64 {
        let o = Order {
            id: i,
            customer: format!("c{}", i % 7),
        };
        if i % 2 == 0 {
            w0.write(o).unwrap()
        } else {
            w1.write(o).unwrap()
        }
    }
    w0.epoch_complete(1).unwrap();
    assert_eq!(w0.written(), 50);
    w0.close().unwrap();
    w1.close().unwrap();
    let msgs = read_topic(&b, &keyed);
    assert_eq!(msgs.len(), 100);
    for m in &msgs {
        let key = m.key.clone().unwrap();
        assert_eq!(m.partition as usize, partition_for_key(&key, 4));
        let o: Order = serde_json::from_slice(m.value.as_deref().unwrap()).unwrap();
        assert_eq!(key, o.customer.as_bytes());
    }

    let spread = unique_topic("spread");
    create_topic(&b, &spread, 3);
    let mut w = KafkaSink::text(b.clone(), spread.clone())
        .open(&ctx(0))
        .unwrap();
    for i in 0..30 {
        w.write(format!("line {i}")).unwrap();
    }
    w.close().unwrap();
    let msgs = read_topic(&b, &spread);
    let mut per: BTreeMap<i32, usize> = BTreeMap::new();
    for m in &msgs {
        assert_eq!(m.key, None);
        *per.entry(m.partition).or_default() += 1;
    }
    assert_eq!(per, BTreeMap::from([(0, 10), (1, 10), (2, 10)]));
}

#[test]
fn csv_text_and_bytes_round_trip_through_a_topic() {
    let b = brokers();
    let topic = unique_topic("csv");
    create_topic(&b, &topic, 1);
    let sctx1 = SinkContext {
        job: "t".into(),
        operator: "out".into(),
        instance: 0,
        parallelism: 1,
    };
    let mut w = KafkaSink::csv::<Order>(b.clone(), topic.clone())
        .open(&sctx1)
        .unwrap();
    let orders: Vec<Order> = (0..5)
        .map(|i| Order {
            id: i,
            customer: format!("a, \"b\" {i}"),
        })
        .collect();
    for o in &orders {
        w.write(o.clone()).unwrap();
    }
    w.close().unwrap();
    let back = drain(
        &mut KafkaSource::csv::<Order>(b.clone(), topic.clone())
            .bounded()
            .on_bad_record(BadRecordPolicy::Fail)
            .open(&sctx(0, 1))
            .unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(back, orders);
    let text = drain(
        &mut KafkaSource::text(b.clone(), topic.clone())
            .bounded()
            .open(&sctx(0, 1))
            .unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(text[0], "0,\"a, \"\"b\"\" 0\"");
    let bytes = drain(
        &mut KafkaSource::bytes(b.clone(), topic.clone())
            .bounded()
            .open(&sctx(0, 1))
            .unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(bytes[0], text[0].as_bytes());
}

#[test]
fn empty_partitions_end_at_once_when_bounded() {
    let b = brokers();
    let topic = unique_topic("empty");
    create_topic(&b, &topic, 3);
    produce(&b, &topic, 1, vec![(None, order_json(9))]);
    let mut reader = KafkaSource::json::<Order>(b.clone(), topic.clone())
        .bounded()
        .open(&sctx(0, 1))
        .unwrap();
    let got = drain(&mut reader, None).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(reader.positions(), [(0, 0), (1, 1), (2, 0)]);
}

#[test]
fn start_from_a_timestamp_skips_older_records() {
    let b = brokers();
    let topic = unique_topic("time");
    create_topic(&b, &topic, 1);
    // Three batches, so that the broker can tell their times apart.
    for (id, ts) in [(1, 1_000_000), (2, 2_000_000), (3, 3_000_000)] {
        produce_at(&b, &topic, 0, vec![(None, order_json(id), ts)]);
    }
    let read = |start| {
        let src = KafkaSource::json::<Order>(b.clone(), topic.clone())
            .bounded()
            .start(start);
        drain(&mut src.open(&sctx(0, 1)).unwrap(), None)
            .unwrap()
            .iter()
            .map(|o| o.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(read(StartFrom::Timestamp(1_500_000)), [2, 3]);
    assert_eq!(read(StartFrom::Timestamp(3_000_000)), [3]);
    assert_eq!(read(StartFrom::Timestamp(9_000_000)), Vec::<u64>::new());
    assert_eq!(read(StartFrom::Earliest), [1, 2, 3]);
}

//! The source and sink against a real NATS server with JetStream (127.0.0.1:4222, see
//! `crate::testing::nats`; private servers on spare ports for credentials). A missing
//! server fails these tests.

use super::*;
use crate::error::ErrorDomain;
use crate::sinks::{Sink, SinkContext, SinkWriter};
use crate::sources::{BadRecordPolicy, Poll, Source, SourceContext, SourceReader};
use crate::testing::nats::{
    create_stream, delete_stream, duplicate_window, publish, read_stream, unique_name, url,
    PrivateServer,
};
use crate::testing::proxy::Proxy;
use crate::testing::TempDir;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
}

fn order(id: u64) -> Order {
    Order {
        id,
        customer: format!("c{}", id % 7),
    }
}

fn order_json(id: u64) -> Vec<u8> {
    serde_json::to_vec(&order(id)).unwrap()
}

fn sctx(instance: usize, parallelism: usize) -> SourceContext {
    SourceContext {
        job: "test".into(),
        operator: "orders".into(),
        instance,
        parallelism,
    }
}

fn kctx(instance: usize) -> SinkContext {
    SinkContext {
        job: "test".into(),
        operator: "out".into(),
        instance,
        parallelism: 1,
    }
}

/// A stream `<name>` on subject `<name>.orders` holding orders `0..n`.
fn orders_stream(u: &str, n: u64) -> String {
    let name = unique_name("ORDERS");
    create_stream(u, &name, &[&format!("{name}.>")], None);
    let payloads: Vec<Vec<u8>> = (0..n).map(order_json).collect();
    publish(u, &format!("{name}.orders"), &payloads);
    name
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
        let p = reader.poll(7, |r| out.push(r))?;
        if want.is_some_and(|w| out.len() >= w) || p == Poll::Done {
            return Ok(out);
        }
        if p == Poll::Idle {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[test]
fn bounded_source_reads_the_stream_once_in_order_and_ends_at_its_last_sequence() {
    let u = url();
    let name = orders_stream(&u, 2_500);
    let src = NatsSource::json::<Order>(u.clone(), name.clone())
        .bounded()
        .on_bad_record(BadRecordPolicy::Fail);
    let mut reader = src.open(&sctx(0, 2)).unwrap();
    // Published after the start: beyond the bounded end.
    publish(&u, &format!("{name}.orders"), &[order_json(9_999)]);
    let got = drain(&mut reader, None).unwrap();
    assert_eq!(got, (0..2_500).map(order).collect::<Vec<_>>());
    assert_eq!(reader.next_sequence(), 2_501);
    assert_eq!(reader.progress().0, 2_500);
    // The other instance has no share of a stream and ends at once.
    let mut other = src.open(&sctx(1, 2)).unwrap();
    assert!(drain(&mut other, None).unwrap().is_empty());
    // An empty stream (or filter) ends at once.
    let empty = NatsSource::json::<Order>(u.clone(), name.clone())
        .filter_subject(format!("{name}.nothing"))
        .bounded();
    assert!(drain(&mut empty.open(&sctx(0, 1)).unwrap(), None)
        .unwrap()
        .is_empty());
    delete_stream(&u, &name);
}

#[test]
fn a_checkpointed_position_replays_from_the_stored_sequence_with_the_first_runs_end() {
    let u = url();
    let name = orders_stream(&u, 1_000);
    let src = NatsSource::json::<Order>(u.clone(), name.clone()).bounded();
    let mut first = src.open(&sctx(0, 1)).unwrap();
    let head = drain(&mut first, Some(321)).unwrap();
    let position = first.position().unwrap();
    drop(first);
    // More messages arrive before the restore: the restored reader keeps the first run's
    // end, so a bounded job reads the same input however often it restarts.
    publish(
        &u,
        &format!("{name}.orders"),
        &[order_json(5_000), order_json(5_001)],
    );
    let mut restored = src.open(&sctx(0, 1)).unwrap();
    restored.seek(&position).unwrap();
    let tail = drain(&mut restored, None).unwrap();
    let mut all = head;
    all.extend(tail);
    assert_eq!(
        all,
        (0..1_000).map(order).collect::<Vec<_>>(),
        "each order exactly once"
    );
    assert_eq!(restored.progress().0, 1_000, "the count continues too");
    delete_stream(&u, &name);
}

#[test]
fn unbounded_source_follows_new_messages_of_its_filter_from_a_start_sequence() {
    let u = url();
    let name = orders_stream(&u, 10);
    let src = NatsSource::json::<Order>(u.clone(), name.clone())
        .filter_subject(format!("{name}.orders"))
        .start(NatsStart::Sequence(6));
    let mut reader = src.open(&sctx(0, 1)).unwrap();
    publish(&u, &format!("{name}.other"), &[order_json(77)]);
    publish(
        &u,
        &format!("{name}.orders"),
        &[order_json(10), order_json(11)],
    );
    let got = drain(&mut reader, Some(7)).unwrap();
    assert_eq!(got, (5..12).map(order).collect::<Vec<_>>());
    let new = NatsSource::json::<Order>(u.clone(), name.clone()).start(NatsStart::New);
    let mut reader = new.open(&sctx(0, 1)).unwrap();
    assert_eq!(reader.poll(10, |_| {}).unwrap(), Poll::Idle);
    publish(&u, &format!("{name}.orders"), &[order_json(12)]);
    assert_eq!(drain(&mut reader, Some(1)).unwrap(), [order(12)]);
    delete_stream(&u, &name);
}

#[test]
fn bad_records_follow_the_policy_naming_stream_and_sequence() {
    let u = url();
    let name = unique_name("BAD");
    let subject = format!("{name}.in");
    create_stream(&u, &name, &[&subject], None);
    publish(
        &u,
        &subject,
        &[order_json(1), b"not json".to_vec(), order_json(2)],
    );
    let src = |p: BadRecordPolicy| {
        NatsSource::json::<Order>(u.clone(), name.clone())
            .bounded()
            .on_bad_record(p)
    };
    let e = drain(
        &mut src(BadRecordPolicy::Fail).open(&sctx(0, 1)).unwrap(),
        None,
    )
    .unwrap_err();
    assert_eq!(e.domain, ErrorDomain::User);
    assert!(
        e.message.starts_with(&format!(
            "nats source `orders`: cannot decode stream `{name}` sequence 2 (subject `{subject}`): invalid JSON"
        )),
        "{}",
        e.message
    );
    let mut skip = src(BadRecordPolicy::Skip).open(&sctx(0, 1)).unwrap();
    assert_eq!(drain(&mut skip, None).unwrap(), [order(1), order(2)]);
    assert_eq!(skip.bad_records(), 1);
    let dir = TempDir::new("nats-dead");
    let mut dead = src(BadRecordPolicy::DeadLetter(dir.path().to_path_buf()))
        .open(&sctx(0, 1))
        .unwrap();
    assert_eq!(drain(&mut dead, None).unwrap(), [order(1), order(2)]);
    let text = std::fs::read_to_string(dir.join("dead-letter-orders-0.jsonl")).unwrap();
    let entry: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(entry["stream"], name.as_str());
    assert_eq!(entry["subject"], subject.as_str());
    assert_eq!(entry["sequence"], 2);
    assert_eq!(entry["raw"], "not json");
    delete_stream(&u, &name);
}

#[test]
fn a_missing_stream_or_subject_is_one_clear_error_at_open() {
    let u = url();
    let name = unique_name("NONE");
    let e = NatsSource::json::<Order>(u.clone(), name.clone())
        .open(&sctx(0, 1))
        .err()
        .unwrap();
    assert_eq!(e.domain, ErrorDomain::User);
    assert!(
        e.message.starts_with(&format!(
            "nats source `orders`: JetStream stream `{name}` does not exist on {u}"
        )),
        "{}",
        e.message
    );
    let e = NatsSink::json::<Order>(u.clone(), format!("{name}.x"))
        .open(&kctx(0))
        .err()
        .unwrap();
    assert_eq!(e.domain, ErrorDomain::User);
    assert!(
        e.message.starts_with(&format!(
            "nats sink `out`: no JetStream stream captures subject `{name}.x` on {u}"
        )),
        "{}",
        e.message
    );
    assert!(!e.message.contains('\n'));
}

#[test]
fn wrong_credentials_are_one_clear_error_at_open_and_right_ones_work() {
    let server = PrivateServer::start(Some(("weir", "s3cret")));
    let good = server.url(Some(("weir", "s3cret")));
    let name = unique_name("AUTH");
    create_stream(&good, &name, &[&format!("{name}.>")], None);
    let bad = server.url(Some(("weir", "wrong")));
    let started = Instant::now();
    let e = NatsSource::json::<Order>(bad.clone(), name.clone())
        .open(&sctx(0, 1))
        .err()
        .unwrap();
    assert_eq!(e.domain, ErrorDomain::User);
    assert!(
        e.message.starts_with(&format!(
            "nats source `orders`: the NATS server at nats://weir:***@127.0.0.1:{} rejected the credentials",
            server.port()
        )),
        "{}",
        e.message
    );
    assert!(
        !e.message.contains("wrong"),
        "no password in messages: {}",
        e.message
    );
    let e = NatsSink::json::<Order>(server.url(None), format!("{name}.x"))
        .open(&kctx(0))
        .err()
        .unwrap();
    assert!(
        e.message.contains("rejected the credentials"),
        "{}",
        e.message
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "credentials are not retried"
    );
    // Credentials on the builder instead of in the URL.
    let mut w = NatsSink::json::<Order>(server.url(None), format!("{name}.x"))
        .user_and_password("weir", "s3cret")
        .open(&kctx(0))
        .unwrap();
    w.write(order(1)).unwrap();
    w.close().unwrap();
    assert_eq!(read_stream(&good, &name).len(), 1);
}

#[test]
fn two_phase_sink_publishes_at_commit_and_a_recovery_is_deduplicated_by_the_server() {
    let u = url();
    let name = unique_name("OUT");
    let subject = format!("{name}.sales");
    create_stream(&u, &name, &[&subject], None);
    let sink = NatsSink::json::<Order>(u.clone(), subject.clone());
    let mut w = sink.open(&kctx(0)).unwrap();
    let mut commit = w.two_phase().unwrap();
    w.recover(0, None).unwrap();
    for i in 0..300 {
        w.write(order(i)).unwrap();
    }
    w.epoch_complete(5).unwrap();
    let meta_a = w.pre_commit(4_095).unwrap();
    for i in 300..500 {
        w.write(order(i)).unwrap();
    }
    let meta_b = w.pre_commit(8_191).unwrap();
    assert!(
        read_stream(&u, &name).is_empty(),
        "nothing is visible before the commit"
    );
    commit(4_095).unwrap();
    assert_eq!(read_stream(&u, &name).len(), 300);
    // The process dies here, before checkpoint 8191's commit ran. The restarted job
    // restores 8191 and publishes its pending messages (with 4095's, already published).
    drop((w, commit));
    let mut again = sink.open(&kctx(0)).unwrap();
    let _commit = again.two_phase().unwrap();
    again.recover(8_191, Some(&meta_b)).unwrap();
    // Checkpoint 4095's messages were still pending when 8191 was taken: sent again, dropped.
    assert_eq!(again.published(), (200, 300));
    // A restore of 4095 instead (8191 never completed): the server drops all of it.
    let mut older = sink.open(&kctx(0)).unwrap();
    let _c = older.two_phase().unwrap();
    older.recover(4_095, Some(&meta_a)).unwrap();
    assert_eq!(older.published(), (0, 300));
    let stored = read_stream(&u, &name);
    let mut ids: Vec<u64> = stored
        .iter()
        .map(|m| serde_json::from_slice::<Order>(&m.payload).unwrap().id)
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..500).collect::<Vec<_>>(),
        "every record exactly once"
    );
    let msg_ids: BTreeSet<&str> = stored.iter().filter_map(|m| m.id.as_deref()).collect();
    assert_eq!(msg_ids.len(), 500);
    assert!(msg_ids.iter().all(|id| id.starts_with("weir:test:out:0:")));
    delete_stream(&u, &name);
}

#[test]
fn fresh_runs_are_not_taken_for_duplicates_of_each_other() {
    let u = url();
    let name = unique_name("RUNS");
    let subject = format!("{name}.x");
    create_stream(&u, &name, &[&subject], None);
    let sink = NatsSink::text(u.clone(), subject.clone());
    for _run in 0..2 {
        let mut w = sink.open(&kctx(0)).unwrap();
        for i in 0..50 {
            w.write(format!("r{i}")).unwrap();
        }
        w.epoch_complete(1).unwrap();
        w.close().unwrap();
    }
    assert_eq!(read_stream(&u, &name).len(), 100, "two runs, two copies");
    delete_stream(&u, &name);
}

#[test]
fn duplicate_window_is_raised_when_asked_for() {
    let u = url();
    let name = unique_name("WIN");
    let subject = format!("{name}.x");
    create_stream(&u, &name, &[&subject], Some(Duration::from_secs(30)));
    let sink = NatsSink::text(u.clone(), subject.clone());
    drop(sink.open(&kctx(0)).unwrap());
    assert_eq!(
        duplicate_window(&u, &name),
        Duration::from_secs(30),
        "left alone unless asked"
    );
    let sink = sink.duplicate_window(Duration::from_secs(600));
    drop(sink.open(&kctx(0)).unwrap());
    assert_eq!(duplicate_window(&u, &name), Duration::from_secs(600));
    delete_stream(&u, &name);
}

#[test]
fn source_and_sink_ride_out_a_connection_cut_off_for_seconds() {
    let u = url();
    let name = orders_stream(&u, 3_000);
    let out = unique_name("CUTOUT");
    create_stream(&u, &out, &[&format!("{out}.x")], None);
    let target: std::net::SocketAddr = u.trim_start_matches("nats://").parse().unwrap();
    let proxy = Proxy::start(target);
    let via = format!("nats://127.0.0.1:{}", proxy.port());
    let src = NatsSource::json::<Order>(via.clone(), name.clone());
    let mut reader = src.open(&sctx(0, 1)).unwrap();
    let mut writer = NatsSink::json::<Order>(via.clone(), format!("{out}.x"))
        .open(&kctx(0))
        .unwrap();
    let mut got = drain(&mut reader, Some(3_000)).unwrap();
    for o in &got[..1_500] {
        writer.write(o.clone()).unwrap();
    }
    writer.epoch_complete(1).unwrap();
    proxy.cut();
    let cut = Instant::now();
    // While the job is cut off, the stream grows (published directly).
    let more: Vec<Vec<u8>> = (3_000..5_000).map(order_json).collect();
    publish(&u, &format!("{name}.orders"), &more);
    let mut during = Vec::new();
    while cut.elapsed() < Duration::from_secs(3) {
        reader.poll(1_000, |o| during.push(o)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy.restore();
    got.extend(during);
    let rest = 5_000 - got.len();
    got.extend(drain(&mut reader, Some(rest)).unwrap());
    assert_eq!(
        got,
        (0..5_000).map(order).collect::<Vec<_>>(),
        "nothing lost or twice"
    );
    // The writer's connection died with the cut: its next batch goes out after reconnecting.
    for o in &got[1_500..] {
        writer.write(o.clone()).unwrap();
    }
    writer.close().unwrap();
    assert!(
        cut.elapsed() < Duration::from_secs(30),
        "recovered in {:?}",
        cut.elapsed()
    );
    let mut written: Vec<u64> = read_stream(&u, &out)
        .iter()
        .map(|m| serde_json::from_slice::<Order>(&m.payload).unwrap().id)
        .collect();
    written.sort_unstable();
    assert_eq!(written, (0..5_000).collect::<Vec<_>>());
    delete_stream(&u, &name);
    delete_stream(&u, &out);
}

/// The sink publishing while the connection is cut: the batch is retried with the same ids
/// until the connection is back, and the stream holds every record once.
#[test]
fn a_batch_published_during_a_cut_is_retried_and_stored_once() {
    let u = url();
    let out = unique_name("CUTPUB");
    create_stream(&u, &out, &[&format!("{out}.x")], None);
    let target: std::net::SocketAddr = u.trim_start_matches("nats://").parse().unwrap();
    let proxy = Proxy::start(target);
    let mut writer = NatsSink::json::<Order>(
        format!("nats://127.0.0.1:{}", proxy.port()),
        format!("{out}.x"),
    )
    .open(&kctx(0))
    .unwrap();
    for i in 0..2_000 {
        writer.write(order(i)).unwrap();
    }
    proxy.cut();
    let restorer = std::thread::spawn({
        let cut = std::sync::Arc::new(());
        move || {
            std::thread::sleep(Duration::from_secs(3));
            drop(cut);
        }
    });
    // Restore from another thread while this one is blocked publishing.
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_secs(3));
            proxy.restore();
        });
        writer.epoch_complete(1).unwrap();
    });
    restorer.join().unwrap();
    assert!(started.elapsed() >= Duration::from_secs(3));
    let stored = read_stream(&u, &out);
    let ids: BTreeSet<u64> = stored
        .iter()
        .map(|m| serde_json::from_slice::<Order>(&m.payload).unwrap().id)
        .collect();
    assert_eq!(stored.len(), 2_000, "no duplicates");
    assert_eq!(ids, (0..2_000).collect());
    delete_stream(&u, &out);
}

#[test]
fn an_unreachable_server_fails_after_the_retry_timeout_naming_it() {
    let port = crate::testing::free_port_block(1);
    let started = Instant::now();
    let e = NatsSource::json::<Order>(format!("nats://127.0.0.1:{port}"), "S")
        .retry_timeout(Duration::from_secs(1))
        .open(&sctx(0, 1))
        .err()
        .unwrap();
    assert_eq!(e.domain, ErrorDomain::External);
    assert!(
        e.message.starts_with(&format!(
            "nats source `orders`: cannot reach the NATS server at nats://127.0.0.1:{port} within 1 s"
        )),
        "{}",
        e.message
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

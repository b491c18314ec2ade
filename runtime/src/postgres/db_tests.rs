//! The sink and source against the real PostgreSQL server on 127.0.0.1 (see
//! `crate::testing::postgres`; `WEIR_TEST_PG` overrides the address). A missing server
//! fails these tests. Every test uses tables of its own.

use super::*;
use crate::changelog::Change;
use crate::checkpoint::Committer;
use crate::error::ErrorDomain;
use crate::sinks::Guarantee;
use crate::sinks::{Sink, SinkContext, SinkWriter};
use crate::sources::{BadRecordPolicy, Poll, Source, SourceContext, SourceReader};
use crate::testing::postgres::{port, server_addr, unique_table, url, url_at, Db};
use crate::testing::proxy::Proxy;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sale {
    id: i64,
    customer: String,
    cents: i64,
    rate: f64,
    tags: Vec<String>,
}

fn sale(id: i64) -> Sale {
    Sale {
        id,
        customer: format!("c{}", id % 3),
        cents: id * 100,
        rate: id as f64 / 4.0,
        tags: vec![format!("t{id}")],
    }
}

fn ctx(instance: usize) -> SinkContext {
    SinkContext {
        job: "db-tests".into(),
        operator: "sales".into(),
        instance,
        parallelism: 2,
    }
}

/// A table for [`Sale`]s, with `id` as primary key or without a key.
fn sales_table(db: &Db, label: &str, primary_key: bool) -> String {
    let t = unique_table(label);
    let pk = if primary_key { " PRIMARY KEY" } else { "" };
    db.exec(&format!(
        "CREATE TABLE \"{t}\" (id bigint{pk}, customer text NOT NULL, cents bigint NOT NULL, rate double precision, tags jsonb, note text DEFAULT 'none')"
    ));
    t
}

/// The rows of a [`Sale`] table (`rate` as a float, whatever its JSON form).
fn table_rows(db: &Db, t: &str) -> Vec<serde_json::Value> {
    let mut rows = db.rows(&format!(
        "SELECT id, customer, cents, rate, tags, note FROM \"{t}\" ORDER BY id, cents"
    ));
    for r in &mut rows {
        r["rate"] = json!(r["rate"].as_f64());
    }
    rows
}

fn expected_row(s: &Sale) -> serde_json::Value {
    json!({"id": s.id, "customer": s.customer, "cents": s.cents, "rate": s.rate, "tags": s.tags, "note": "none"})
}

/// Progress of the test sink's instance 0, if any.
fn progress(db: &Db, job: &str) -> Vec<serde_json::Value> {
    db.rows(&format!(
        "SELECT instance, checkpoint FROM weir_sink_progress WHERE job = '{job}' ORDER BY instance"
    ))
}

#[test]
fn inserts_go_out_in_batches_of_rows_and_on_close() {
    let db = Db::test();
    let t = sales_table(&db, "ins", false);
    let sink = PostgresSink::insert::<Sale>(url(), &t).batch_rows(5);
    assert_eq!(sink.guarantee(), Guarantee::ExactlyOnce);
    assert!(
        Sink::<Sale>::describe(&sink).contains("at-least-once"),
        "{}",
        Sink::<Sale>::describe(&sink)
    );
    let mut w = sink.open(&ctx(0)).unwrap();
    for id in 0..12 {
        w.write(sale(id)).unwrap();
    }
    // Two full batches are in; two rows wait.
    assert_eq!(db.count(&format!("SELECT count(*) FROM \"{t}\"")), 10);
    w.close().unwrap();
    let want: Vec<_> = (0..12).map(|i| expected_row(&sale(i))).collect();
    assert_eq!(table_rows(&db, &t), want);
    assert_eq!(w.rows_written(), 12);
    db.drop_table(&t);
}

#[test]
fn buffered_rows_go_out_once_the_batch_interval_passed() {
    let db = Db::test();
    let t = sales_table(&db, "interval", false);
    let sink = PostgresSink::insert::<Sale>(url(), &t).batch_interval(Duration::from_millis(50));
    let mut w = sink.open(&ctx(0)).unwrap();
    w.write(sale(1)).unwrap();
    w.epoch_complete(1).unwrap();
    assert_eq!(db.count(&format!("SELECT count(*) FROM \"{t}\"")), 0);
    std::thread::sleep(Duration::from_millis(80));
    w.epoch_complete(2).unwrap();
    assert_eq!(table_rows(&db, &t), vec![expected_row(&sale(1))]);
    db.drop_table(&t);
}

#[test]
fn upserts_overwrite_by_primary_key_and_renamed_columns_are_written() {
    #[derive(Serialize)]
    struct Total {
        customer_id: i64,
        window_start: i64,
        total: i64,
        debug: String,
    }
    let db = Db::test();
    let t = unique_table("totals");
    db.exec(&format!(
        "CREATE TABLE \"{t}\" (customer_id bigint, window_start bigint, total_cents bigint, PRIMARY KEY (customer_id, window_start))"
    ));
    let sink = PostgresSink::upsert::<Total>(url(), &t)
        .column("total_cents", "total")
        .ignore_field("debug");
    let mut w = sink.open(&ctx(0)).unwrap();
    for (c, ws, total) in [(1, 0, 10), (1, 300, 5), (2, 0, 7), (1, 0, 12)] {
        w.write(Total {
            customer_id: c,
            window_start: ws,
            total,
            debug: "x".into(),
        })
        .unwrap();
    }
    w.close().unwrap();
    // A later batch overwrites too.
    let mut w = sink.open(&ctx(0)).unwrap();
    w.write(Total {
        customer_id: 2,
        window_start: 0,
        total: 8,
        debug: String::new(),
    })
    .unwrap();
    w.close().unwrap();
    assert_eq!(
        db.rows(&format!(
            "SELECT * FROM \"{t}\" ORDER BY customer_id, window_start"
        )),
        vec![
            json!({"customer_id": 1, "window_start": 0, "total_cents": 12}),
            json!({"customer_id": 1, "window_start": 300, "total_cents": 5}),
            json!({"customer_id": 2, "window_start": 0, "total_cents": 8}),
        ]
    );
    db.drop_table(&t);
}

#[test]
fn a_changelog_is_applied_by_key_with_deletes() {
    let db = Db::test();
    let t = sales_table(&db, "changes", true);
    let sink = PostgresSink::changelog::<Sale>(url(), &t).batch_rows(2);
    let mut w = sink.open(&ctx(0)).unwrap();
    let updated = Sale {
        cents: 999,
        ..sale(2)
    };
    for c in [
        Change::Insert(sale(1)),
        Change::Insert(sale(2)),
        Change::Insert(sale(3)),
        Change::UpdateBefore(sale(2)),
        Change::UpdateAfter(updated.clone()),
        Change::Delete(sale(1)),
        Change::Insert(sale(4)),
        Change::Delete(sale(4)),
    ] {
        w.write(c).unwrap();
    }
    w.close().unwrap();
    assert_eq!(
        table_rows(&db, &t),
        vec![expected_row(&updated), expected_row(&sale(3))]
    );
    db.drop_table(&t);
}

/// A two-phase writer as the runtime sets it up on a fresh start.
fn two_phase(sink: &PostgresSink<Sale>, c: &SinkContext) -> (PostgresSinkWriter<Sale>, Committer) {
    let mut w = sink.open(c).unwrap();
    let commit = w.two_phase().unwrap();
    (w, commit)
}

#[test]
fn with_checkpoints_rows_appear_with_their_checkpoint_id_once_it_completes() {
    let db = Db::test();
    let t = sales_table(&db, "twophase", false);
    let job = unique_table("job");
    let c = SinkContext {
        job: job.clone(),
        ..ctx(1)
    };
    let sink = PostgresSink::insert::<Sale>(url(), &t).batch_rows(3);
    let (mut w, mut commit) = two_phase(&sink, &c);
    w.recover(0, None).unwrap();
    for id in 0..10 {
        w.write(sale(id)).unwrap();
    }
    let _ = w.pre_commit(4095).unwrap();
    for id in 10..15 {
        w.write(sale(id)).unwrap();
    }
    let _ = w.pre_commit(8191).unwrap();
    // Neither batch size nor time writes anything before completion.
    assert_eq!(db.count(&format!("SELECT count(*) FROM \"{t}\"")), 0);
    commit(4095).unwrap();
    assert_eq!(db.count(&format!("SELECT count(*) FROM \"{t}\"")), 10);
    assert_eq!(
        progress(&db, &job),
        vec![json!({"instance": 1, "checkpoint": 4095})]
    );
    commit(8191).unwrap();
    let want: Vec<_> = (0..15).map(|i| expected_row(&sale(i))).collect();
    assert_eq!(table_rows(&db, &t), want);
    assert_eq!(
        progress(&db, &job),
        vec![json!({"instance": 1, "checkpoint": 8191})]
    );
    // A checkpoint without rows changes nothing.
    let _ = w.pre_commit(12287).unwrap();
    commit(12287).unwrap();
    assert_eq!(table_rows(&db, &t), want);
    db.drop_table(&t);
}

#[test]
fn recovery_commits_a_restored_checkpoints_rows_exactly_once() {
    let db = Db::test();
    let t = sales_table(&db, "recover", false);
    let job = unique_table("job");
    let c = SinkContext {
        job: job.clone(),
        ..ctx(0)
    };
    let sink = PostgresSink::insert::<Sale>(url(), &t);
    let (mut w, _commit) = two_phase(&sink, &c);
    w.recover(0, None).unwrap();
    for id in 0..4 {
        w.write(sale(id)).unwrap();
    }
    // Checkpoint 4095 is taken; the process dies before it completes here, after rows of
    // the next checkpoint were written.
    let state = w.pre_commit(4095).unwrap();
    w.write(sale(99)).unwrap();
    drop(w);
    assert_eq!(db.count(&format!("SELECT count(*) FROM \"{t}\"")), 0);
    // The restart restores 4095 (complete on every worker): its rows are committed.
    let (mut w, _) = two_phase(&sink, &c);
    w.recover(4095, Some(&state)).unwrap();
    let want: Vec<_> = (0..4).map(|i| expected_row(&sale(i))).collect();
    assert_eq!(table_rows(&db, &t), want);
    // It dies again and restores 4095 once more: the progress table says it is in.
    drop(w);
    let (mut w2, mut commit2) = two_phase(&sink, &c);
    w2.recover(4095, Some(&state)).unwrap();
    assert_eq!(table_rows(&db, &t), want);
    // Writing goes on; the next checkpoint's commit adds exactly its rows.
    w2.write(sale(4)).unwrap();
    let _ = w2.pre_commit(8191).unwrap();
    commit2(8191).unwrap();
    let want: Vec<_> = (0..5).map(|i| expected_row(&sale(i))).collect();
    assert_eq!(table_rows(&db, &t), want);
    assert_eq!(
        progress(&db, &job),
        vec![json!({"instance": 0, "checkpoint": 8191})]
    );
    db.drop_table(&t);
}

#[test]
fn a_fresh_start_forgets_a_previous_runs_progress() {
    let db = Db::test();
    let t = sales_table(&db, "fresh", false);
    let job = unique_table("job");
    let c = SinkContext {
        job: job.clone(),
        ..ctx(0)
    };
    let sink = PostgresSink::insert::<Sale>(url(), &t);
    let (mut w, mut commit) = two_phase(&sink, &c);
    w.recover(0, None).unwrap();
    w.write(sale(1)).unwrap();
    let _ = w.pre_commit(40_959).unwrap();
    commit(40_959).unwrap();
    assert_eq!(progress(&db, &job).len(), 1);
    // A new run of the job starts without a checkpoint: its checkpoint ids start low again
    // and must not be taken for committed.
    let (mut w, mut commit) = two_phase(&sink, &c);
    w.recover(0, None).unwrap();
    assert!(progress(&db, &job).is_empty());
    w.write(sale(2)).unwrap();
    let _ = w.pre_commit(4095).unwrap();
    commit(4095).unwrap();
    assert_eq!(
        table_rows(&db, &t),
        vec![expected_row(&sale(1)), expected_row(&sale(2))]
    );
    db.drop_table(&t);
}

#[test]
fn a_missing_table_is_one_user_error_naming_it() {
    let t = unique_table("missing");
    let err = PostgresSink::insert::<Sale>(url(), &t)
        .open(&ctx(0))
        .err()
        .unwrap();
    assert_eq!(err.domain, ErrorDomain::User);
    assert!(
        err.message.starts_with("postgres sink `sales`: table `")
            && err.message.contains(&t)
            && err.message.contains("does not exist")
            && !err.message.contains('\n'),
        "{}",
        err.message
    );
    let err = PostgresSource::table::<Sale>(url(), &t)
        .open(&SourceContext {
            job: "j".into(),
            operator: "in".into(),
            instance: 0,
            parallelism: 1,
        })
        .err()
        .unwrap();
    assert_eq!(err.domain, ErrorDomain::User);
    assert!(
        err.message.starts_with("postgres source `in`:") && err.message.contains(&t),
        "{}",
        err.message
    );
}

#[test]
fn a_field_without_a_column_is_a_user_error_saying_how_to_map_it() {
    #[derive(Serialize)]
    struct Wrong {
        id: i64,
        colour: String,
    }
    let db = Db::test();
    let t = sales_table(&db, "wrongfield", true);
    let mut w = PostgresSink::upsert::<Wrong>(url(), &t)
        .open(&ctx(0))
        .unwrap();
    let err = w
        .write(Wrong {
            id: 1,
            colour: "red".into(),
        })
        .unwrap_err();
    assert_eq!(err.domain, ErrorDomain::User);
    assert!(
        err.message.contains("no column `colour`")
            && err.message.contains(".ignore_field(\"colour\")"),
        "{}",
        err.message
    );
    // Upserting a table without a primary key needs key columns, of a unique index.
    let plain = sales_table(&db, "nokey", false);
    let err = PostgresSink::upsert::<Sale>(url(), &plain)
        .open(&ctx(0))
        .err()
        .unwrap();
    assert!(
        err.message.contains("has no primary key"),
        "{}",
        err.message
    );
    let err = PostgresSink::upsert::<Sale>(url(), &plain)
        .key(["customer"])
        .open(&ctx(0))
        .err()
        .unwrap();
    assert_eq!(err.domain, ErrorDomain::User);
    assert!(
        err.message.contains("no unique index of table") && err.message.contains("(customer)"),
        "{}",
        err.message
    );
    db.exec(&format!("CREATE UNIQUE INDEX ON \"{plain}\" (customer)"));
    let mut w = PostgresSink::upsert::<Sale>(url(), &plain)
        .key(["customer"])
        .open(&ctx(0))
        .unwrap();
    for id in 0..6 {
        w.write(sale(id)).unwrap();
    }
    w.close().unwrap();
    assert_eq!(
        table_rows(&db, &plain),
        (3..6).map(|i| expected_row(&sale(i))).collect::<Vec<_>>(),
        "one row per customer, the newest"
    );
    // A value the column cannot hold fails the job as the user's mistake, naming it.
    #[derive(Serialize)]
    struct BadType {
        id: String,
        customer: String,
        cents: i64,
    }
    let mut w = PostgresSink::insert::<BadType>(url(), &plain)
        .open(&ctx(0))
        .unwrap();
    w.write(BadType {
        id: "seven".into(),
        customer: "c".into(),
        cents: 1,
    })
    .unwrap();
    let err = w.close().unwrap_err();
    assert_eq!(err.domain, ErrorDomain::User);
    assert!(
        err.message.contains("writing a batch (1 rows) failed") && err.message.contains("bigint"),
        "{}",
        err.message
    );
    db.drop_table(&t);
    db.drop_table(&plain);
}

#[test]
fn an_unknown_role_is_one_login_error_at_start() {
    let bad = url_at(port(), Some(&unique_table("nobody")));
    let started = Instant::now();
    let err = PostgresSink::insert::<Sale>(bad, "t")
        .open(&ctx(0))
        .err()
        .unwrap();
    assert_eq!(err.domain, ErrorDomain::User);
    assert!(
        err.message
            .starts_with("postgres sink `sales`: PostgreSQL at ")
            && err.message.contains("refused the login")
            && err
                .message
                .contains("check the user, password and database"),
        "{}",
        err.message
    );
    // Not retried: no retry can fix a login.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn an_unreachable_server_is_retried_then_one_error() {
    let port = crate::testing::free_port();
    let started = Instant::now();
    let err =
        PostgresSink::insert::<Sale>(format!("postgres://postgres@127.0.0.1:{port}/test"), "t")
            .retry_timeout(Duration::from_secs(1))
            .open(&ctx(0))
            .err()
            .unwrap();
    assert_eq!(err.domain, ErrorDomain::External);
    assert!(
        err.message
            .contains("cannot reach PostgreSQL at postgres@127.0.0.1:")
            && err.message.contains("within 1 s"),
        "{}",
        err.message
    );
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "retried for a while"
    );
}

/// The test server through `proxy`.
fn proxied_url(proxy: &Proxy) -> String {
    url_at(proxy.port(), None)
}

#[test]
fn a_commit_during_an_outage_is_retried_until_the_server_is_back() {
    let db = Db::test();
    let t = sales_table(&db, "outage", false);
    let job = unique_table("job");
    let c = SinkContext {
        job: job.clone(),
        ..ctx(0)
    };
    let proxy = Proxy::start(server_addr());
    let sink = PostgresSink::insert::<Sale>(proxied_url(&proxy), &t);
    let (mut w, mut commit) = two_phase(&sink, &c);
    w.recover(0, None).unwrap();
    for id in 0..100 {
        w.write(sale(id)).unwrap();
    }
    let _ = w.pre_commit(4095).unwrap();
    // The server goes away for 2 s; the commit waits for it and succeeds once.
    proxy.cut();
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_secs(2));
            proxy.restore();
        });
        commit(4095).unwrap();
    });
    assert!(started.elapsed() >= Duration::from_secs(2));
    let want: Vec<_> = (0..100).map(|i| expected_row(&sale(i))).collect();
    assert_eq!(table_rows(&db, &t), want);
    // Without checkpoints a batch is retried the same way.
    let mut plain = PostgresSink::insert::<Sale>(proxied_url(&proxy), &t)
        .open(&ctx(0))
        .unwrap();
    plain.write(sale(100)).unwrap();
    proxy.cut();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(1500));
            proxy.restore();
        });
        plain.close().unwrap();
    });
    assert_eq!(table_rows(&db, &t).len(), 101);
    db.drop_table(&t);
}

#[test]
fn an_outage_longer_than_the_retry_timeout_fails_the_commit_and_keeps_the_rows() {
    let db = Db::test();
    let t = sales_table(&db, "longoutage", false);
    let job = unique_table("job");
    let c = SinkContext {
        job: job.clone(),
        ..ctx(0)
    };
    let proxy = Proxy::start(server_addr());
    let sink =
        PostgresSink::insert::<Sale>(proxied_url(&proxy), &t).retry_timeout(Duration::from_secs(1));
    let (mut w, mut commit) = two_phase(&sink, &c);
    w.recover(0, None).unwrap();
    w.write(sale(7)).unwrap();
    let state = w.pre_commit(4095).unwrap();
    proxy.cut();
    let err = commit(4095).unwrap_err();
    assert_eq!(err.domain, ErrorDomain::External);
    assert!(
        err.message
            .starts_with("postgres sink `sales`: committing checkpoint 4095 failed")
            && err.message.contains("within 1 s"),
        "{}",
        err.message
    );
    // The job fails and restarts from checkpoint 4095, which commits the rows.
    proxy.restore();
    let (mut w, _) = two_phase(&sink, &c);
    w.recover(4095, Some(&state)).unwrap();
    assert_eq!(table_rows(&db, &t), vec![expected_row(&sale(7))]);
    db.drop_table(&t);
}

// ---------------------------------------------------------------------------------------
// Source
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Customer {
    id: i64,
    name: String,
    city: Option<String>,
}

fn sctx(instance: usize, parallelism: usize) -> SourceContext {
    SourceContext {
        job: "j".into(),
        operator: "customers".into(),
        instance,
        parallelism,
    }
}

/// A table of `n` customers; every 10th has no city, and (when `bad`) every 25th no name.
fn customers_table(db: &Db, n: i64, bad: bool) -> String {
    let t = unique_table("customers");
    db.exec(&format!(
        "CREATE TABLE \"{t}\" (id bigint PRIMARY KEY, name text, city text);
         INSERT INTO \"{t}\" SELECT i, CASE WHEN {bad} AND i % 25 = 0 THEN NULL ELSE 'n' || i END, CASE WHEN i % 10 = 0 THEN NULL ELSE 'city' || (i % 7) END FROM generate_series(0, {}) AS i",
        n - 1
    ));
    t
}

fn customer(i: i64) -> Customer {
    Customer {
        id: i,
        name: format!("n{i}"),
        city: (i % 10 != 0).then(|| format!("city{}", i % 7)),
    }
}

fn drain<R: SourceReader>(r: &mut R, limit: Option<usize>) -> Vec<R::Item> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    loop {
        let budget = limit.map_or(1000, |l| (l - out.len()).min(1000));
        if budget == 0 {
            return out;
        }
        match r.poll(budget, |x| out.push(x)).unwrap() {
            Poll::Done => return out,
            Poll::More => {}
            Poll::Idle => std::thread::sleep(Duration::from_millis(2)),
        }
        assert!(Instant::now() < deadline, "the source did not finish");
    }
}

#[test]
fn a_table_snapshot_is_split_across_instances_and_decoded() {
    let db = Db::test();
    let t = customers_table(&db, 5000, false);
    let source = PostgresSource::table::<Customer>(url(), &t).split_by("id");
    assert!(source.is_bounded());
    let mut all = Vec::new();
    for i in 0..3 {
        let mut r = source.open(&sctx(i, 3)).unwrap();
        let got = drain(&mut r, None);
        assert!(got.len() > 1000, "instance {i} read {} rows", got.len());
        assert!(
            got.windows(2).all(|w| w[0].id < w[1].id),
            "ordered by the split column"
        );
        all.extend(got);
    }
    all.sort();
    let want: Vec<_> = (0..5000).map(customer).collect();
    assert_eq!(all, want);
    // Without a split column, instance 0 reads everything.
    let q = PostgresSource::query::<Customer>(
        url(),
        format!("SELECT id, name, city FROM \"{t}\" WHERE id < 30"),
    );
    let mut got = drain(&mut q.open(&sctx(0, 2)).unwrap(), None);
    got.sort();
    assert_eq!(got, (0..30).map(customer).collect::<Vec<_>>());
    assert!(drain(&mut q.open(&sctx(1, 2)).unwrap(), None).is_empty());
    db.drop_table(&t);
}

#[test]
fn a_restored_position_resumes_after_the_rows_handed_on() {
    let db = Db::test();
    let t = customers_table(&db, 3000, false);
    let source = PostgresSource::table::<Customer>(url(), &t).split_by("id");
    let mut r = source.open(&sctx(1, 2)).unwrap();
    let first = drain(&mut r, Some(777));
    let pos = r.position().unwrap();
    drop(r);
    let mut r = source.open(&sctx(1, 2)).unwrap();
    r.seek(&pos).unwrap();
    let rest = drain(&mut r, None);
    let mut whole = drain(&mut source.open(&sctx(1, 2)).unwrap(), None);
    assert_eq!(first.len(), 777);
    let mut joined = first;
    joined.extend(rest);
    assert_eq!(joined, whole);
    whole.dedup();
    assert_eq!(joined.len(), whole.len());
    db.drop_table(&t);
}

#[test]
fn rows_the_record_type_cannot_hold_follow_the_bad_record_policy() {
    let db = Db::test();
    let t = customers_table(&db, 100, true);
    // Skipped and counted (the default).
    let mut r = PostgresSource::table::<Customer>(url(), &t)
        .split_by("id")
        .open(&sctx(0, 1))
        .unwrap();
    let got = drain(&mut r, None);
    assert_eq!(got.len(), 96);
    assert_eq!(r.bad_records(), 4);
    // Dead letters name the row.
    let dir = crate::testing::TempDir::new("pg-dead");
    let mut r = PostgresSource::table::<Customer>(url(), &t)
        .split_by("id")
        .on_bad_record(BadRecordPolicy::DeadLetter(dir.path().to_path_buf()))
        .open(&sctx(0, 1))
        .unwrap();
    assert_eq!(drain(&mut r, None).len(), 96);
    let letters = crate::testing::read_json_lines(&dir.join("dead-letter-customers-0.jsonl"));
    assert_eq!(letters.len(), 4);
    assert_eq!(letters[0]["row"], 0);
    assert!(letters[1]["raw"].as_str().unwrap().contains("\"id\":25"));
    // Or fail the job naming the row.
    let mut r = PostgresSource::table::<Customer>(url(), &t)
        .split_by("id")
        .on_bad_record(BadRecordPolicy::Fail)
        .open(&sctx(0, 1))
        .unwrap();
    let mut n = 0;
    let err = loop {
        match r.poll(1000, |_| n += 1) {
            Err(e) => break e,
            Ok(Poll::Done) => panic!("no error"),
            Ok(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    assert_eq!(err.domain, ErrorDomain::User);
    assert!(
        err.message.contains("row 0 cannot be decoded"),
        "{}",
        err.message
    );
    db.drop_table(&t);
}

#[test]
fn a_snapshot_read_survives_a_connection_cut_mid_read() {
    let db = Db::test();
    let t = customers_table(&db, 20_000, false);
    let proxy = Proxy::start(server_addr());
    let source = PostgresSource::table::<Customer>(url_at(proxy.port(), None), &t).split_by("id");
    let mut r = source.open(&sctx(0, 1)).unwrap();
    // Some rows are read; the reading thread is ahead by a few chunks, then blocked.
    let mut got = drain(&mut r, Some(1_000));
    std::thread::sleep(Duration::from_millis(200));
    proxy.cut();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_secs(1));
            proxy.restore();
        });
        got.extend(drain(&mut r, None));
    });
    assert_eq!(
        got,
        (0..20_000).map(customer).collect::<Vec<_>>(),
        "every row once, in order"
    );
    db.drop_table(&t);
}

#[test]
fn a_server_down_at_start_is_waited_for_within_the_retry_timeout() {
    let db = Db::test();
    let t = sales_table(&db, "downatstart", false);
    let proxy = Proxy::start(server_addr());
    proxy.cut();
    let sink = PostgresSink::insert::<Sale>(url_at(proxy.port(), None), &t);
    let started = Instant::now();
    let mut w = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(1500));
            proxy.restore();
        });
        sink.open(&ctx(0)).unwrap()
    });
    assert!(started.elapsed() >= Duration::from_millis(1500));
    w.write(sale(1)).unwrap();
    w.close().unwrap();
    assert_eq!(table_rows(&db, &t), vec![expected_row(&sale(1))]);
    db.drop_table(&t);
}

//! The sink against a real Redis server (127.0.0.1:6379, see `crate::testing::redis`;
//! private servers on spare ports for credentials). A missing server fails these tests.

use super::*;
use crate::error::ErrorDomain;
use crate::testing::proxy::Proxy;
use crate::testing::redis::{
    command, delete_prefix, hashes, pttl, strings, unique_prefix, url, PrivateServer,
};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Total {
    customer: String,
    minute: i64,
    cents: i64,
}

fn total(i: i64) -> Total {
    Total {
        customer: format!("c{}", i % 5),
        minute: (i % 3) * 60_000,
        cents: i,
    }
}

fn ctx() -> SinkContext {
    SinkContext {
        job: "test".into(),
        operator: "cache".into(),
        instance: 0,
        parallelism: 1,
    }
}

fn json(t: &Total) -> String {
    serde_json::to_string(t).unwrap()
}

/// The final value per key that plain Rust computes: the last record of each key wins.
fn last_per_key(records: &[Total], key: impl Fn(&Total) -> String) -> BTreeMap<String, String> {
    records.iter().map(|t| (key(t), json(t))).collect()
}

#[test]
fn set_writes_the_last_record_per_key_and_a_replay_leaves_the_same_state() {
    let u = url();
    let prefix = unique_prefix("set");
    let p = prefix.clone();
    let sink = RedisSink::<Total>::set(u.clone(), move |t| format!("{p}{}", t.customer));
    let records: Vec<Total> = (0..2_500).map(total).collect();
    let mut w = Sink::<Total>::open(&sink, &ctx()).unwrap();
    for r in &records {
        SinkWriter::<Total>::write(&mut w, r.clone()).unwrap();
    }
    SinkWriter::<Total>::epoch_complete(&mut w, 1).unwrap();
    let expected = last_per_key(&records, |t| format!("{prefix}{}", t.customer));
    assert_eq!(strings(&u, &prefix), expected);
    // A restart replays part of the input (from a checkpoint): same final state.
    let mut again = Sink::<Total>::open(&sink, &ctx()).unwrap();
    for r in &records[1_000..] {
        SinkWriter::<Total>::write(&mut again, r.clone()).unwrap();
    }
    SinkWriter::<Total>::close(&mut again).unwrap();
    assert_eq!(strings(&u, &prefix), expected);
    assert_eq!(again.written(), 1_500);
    delete_prefix(&u, &prefix);
}

#[test]
fn hash_by_fields_with_ttl_writes_fields_and_expires_the_hash() {
    let u = url();
    let prefix = unique_prefix("hash");
    let sink = RedisSink::<Total>::hash_by_fields(u.clone(), prefix.clone(), "customer", "minute")
        .ttl(Duration::from_secs(600));
    let records: Vec<Total> = (0..100).map(total).collect();
    let mut w = Sink::<Total>::open(&sink, &ctx()).unwrap();
    for r in &records {
        SinkWriter::<Total>::write(&mut w, r.clone()).unwrap();
    }
    SinkWriter::<Total>::close(&mut w).unwrap();
    let mut expected: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for t in &records {
        expected
            .entry(format!("{prefix}{}", t.customer))
            .or_default()
            .insert(t.minute.to_string(), json(t));
    }
    assert_eq!(hashes(&u, &prefix), expected);
    for key in expected.keys() {
        let ttl = pttl(&u, key);
        assert!(ttl > 590_000 && ttl <= 600_000, "{key}: {ttl}");
    }
    // Key/value with a TTL: `SET … PX`.
    let kv = RedisSink::<Total>::set_by_field(u.clone(), format!("{prefix}kv:"), "cents")
        .ttl(Duration::from_millis(1_500));
    let mut w = Sink::<Total>::open(&kv, &ctx()).unwrap();
    SinkWriter::<Total>::write(&mut w, total(42)).unwrap();
    SinkWriter::<Total>::close(&mut w).unwrap();
    let ttl = pttl(&u, &format!("{prefix}kv:42"));
    assert!(ttl > 0 && ttl <= 1_500, "{ttl}");
    delete_prefix(&u, &prefix);
}

#[test]
fn an_updating_stream_upserts_and_deletes_keys_and_fields() {
    let u = url();
    let prefix = unique_prefix("changes");
    let p = prefix.clone();
    let kv = RedisSink::<Total>::set(u.clone(), move |t| format!("{p}kv:{}", t.customer));
    let p = prefix.clone();
    let hash = RedisSink::<Total>::hash(
        u.clone(),
        move |t| format!("{p}h:{}", t.customer),
        |t| t.minute.to_string(),
    );
    let changes = vec![
        Change::Insert(total(0)),
        Change::Insert(total(1)),
        Change::UpdateBefore(total(0)),
        Change::UpdateAfter(Total {
            cents: 99,
            ..total(0)
        }),
        Change::Delete(total(1)),
        Change::Insert(total(7)),
    ];
    for sink in [&kv, &hash] {
        let mut w = Sink::<Change<Total>>::open(sink, &ctx()).unwrap();
        for c in &changes {
            SinkWriter::<Change<Total>>::write(&mut w, c.clone()).unwrap();
        }
        SinkWriter::<Change<Total>>::close(&mut w).unwrap();
    }
    let upserted = Total {
        cents: 99,
        ..total(0)
    };
    assert_eq!(
        strings(&u, &format!("{prefix}kv:")),
        BTreeMap::from([
            (format!("{prefix}kv:c0"), json(&upserted)),
            (format!("{prefix}kv:c2"), json(&total(7))),
        ]),
        "c1 was deleted"
    );
    let hash_state = hashes(&u, &format!("{prefix}h:"));
    assert_eq!(
        hash_state,
        BTreeMap::from([
            (
                format!("{prefix}h:c0"),
                BTreeMap::from([("0".to_string(), json(&upserted))])
            ),
            (
                format!("{prefix}h:c2"),
                BTreeMap::from([("60000".to_string(), json(&total(7)))])
            ),
        ]),
        "the deleted hash field is gone (and with it the empty hash)"
    );
    delete_prefix(&u, &prefix);
}

#[test]
fn wrong_credentials_are_one_clear_error_at_open() {
    let server = PrivateServer::start(Some("s3cret"));
    let prefix = unique_prefix("auth");
    let p = prefix.clone();
    let sink = |url: String| {
        RedisSink::<Total>::set(url, {
            let p = p.clone();
            move |t| format!("{p}{}", t.customer)
        })
    };
    for bad in [server.url(Some("wrong")), server.url(None)] {
        let started = std::time::Instant::now();
        let e = Sink::<Total>::open(&sink(bad), &ctx()).err().unwrap();
        assert_eq!(e.domain, ErrorDomain::User);
        assert!(
            e.message
                .starts_with("redis sink `cache`: the Redis server at redis://")
                && e.message.contains("rejected the credentials"),
            "{}",
            e.message
        );
        assert!(
            !e.message.contains("wrong"),
            "no password in messages: {}",
            e.message
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "credentials are not retried"
        );
    }
    let mut w = Sink::<Total>::open(&sink(server.url(Some("s3cret"))), &ctx()).unwrap();
    SinkWriter::<Total>::write(&mut w, total(3)).unwrap();
    SinkWriter::<Total>::close(&mut w).unwrap();
    assert_eq!(strings(&server.url(Some("s3cret")), &prefix).len(), 1);
}

#[test]
fn a_wrong_key_type_and_a_bad_url_are_clear_errors() {
    let u = url();
    let prefix = unique_prefix("type");
    command(&u, &["SET", &format!("{prefix}c0"), "a string"]);
    let p = prefix.clone();
    let sink = RedisSink::<Total>::hash(
        u.clone(),
        move |t| format!("{p}{}", t.customer),
        |t| t.minute.to_string(),
    );
    let mut w = Sink::<Total>::open(&sink, &ctx()).unwrap();
    SinkWriter::<Total>::write(&mut w, total(0)).unwrap();
    let e = SinkWriter::<Total>::close(&mut w).unwrap_err();
    assert_eq!(e.domain, ErrorDomain::User);
    assert!(
        e.message.contains("refused a write") && e.message.contains("WRONGTYPE"),
        "{}",
        e.message
    );
    let e = Sink::<Total>::open(
        &RedisSink::<Total>::set("http://x", |t| t.customer.clone()),
        &ctx(),
    )
    .err()
    .unwrap();
    assert!(
        e.message
            .starts_with("redis sink `cache`: cannot use the Redis URL http://x"),
        "{}",
        e.message
    );
    delete_prefix(&u, &prefix);
}

#[test]
fn writes_ride_out_a_connection_cut_off_for_seconds() {
    let u = url();
    let prefix = unique_prefix("cut");
    let target: std::net::SocketAddr = u.trim_start_matches("redis://").parse().unwrap();
    let proxy = Proxy::start(target);
    let p = prefix.clone();
    let sink = RedisSink::<Total>::set(format!("redis://127.0.0.1:{}", proxy.port()), move |t| {
        format!("{p}{}", t.cents)
    });
    let mut w = Sink::<Total>::open(&sink, &ctx()).unwrap();
    for i in 0..500 {
        SinkWriter::<Total>::write(&mut w, total(i)).unwrap();
    }
    SinkWriter::<Total>::epoch_complete(&mut w, 1).unwrap();
    for i in 500..1_000 {
        SinkWriter::<Total>::write(&mut w, total(i)).unwrap();
    }
    proxy.cut();
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_secs(3));
            proxy.restore();
        });
        SinkWriter::<Total>::epoch_complete(&mut w, 2).unwrap();
    });
    assert!(started.elapsed() >= Duration::from_secs(3));
    let expected: BTreeMap<String, String> = (0..1_000)
        .map(|i| (format!("{prefix}{i}"), json(&total(i))))
        .collect();
    assert_eq!(strings(&u, &prefix), expected);
    delete_prefix(&u, &prefix);
}

#[test]
fn an_unreachable_server_fails_after_the_retry_timeout_naming_it() {
    let port = crate::testing::free_port_block(1);
    let sink = RedisSink::<Total>::set(format!("redis://127.0.0.1:{port}"), |t| t.customer.clone())
        .retry_timeout(Duration::from_secs(1));
    let e = Sink::<Total>::open(&sink, &ctx()).err().unwrap();
    assert_eq!(e.domain, ErrorDomain::External);
    assert!(
        e.message.starts_with(&format!(
            "redis sink `cache`: cannot reach the Redis server at redis://127.0.0.1:{port} within 1 s"
        )),
        "{}",
        e.message
    );
}

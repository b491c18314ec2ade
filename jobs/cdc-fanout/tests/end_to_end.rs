//! End-to-end tests of the `cdc-fanout` and `nats-archive` binaries against the real NATS
//! (JetStream, 127.0.0.1:4222) and Redis (127.0.0.1:6379) servers; private servers and a
//! loopback proxy on spare ports for credentials and outages. Missing servers fail these
//! tests.
//!
//! The kill tests run one node of two processes × two workers with a checkpoint every
//! 200 ms and SIGKILL a random process at random moments; the launcher restarts both from
//! the last complete checkpoint. The NATS stream must then hold exactly the messages of an
//! uninterrupted run (as a multiset, without duplicates) and Redis the same final keys.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use weir_runtime::testing::nats::{self, create_stream, delete_stream, read_stream, unique_name};
use weir_runtime::testing::proxy::Proxy;
use weir_runtime::testing::redis::{self as redis_t, delete_prefix, strings, unique_prefix};
use weir_runtime::testing::{
    kill_job_process, wait_for_restart, JobBinary, LocalCluster, Output, Spawned, TempDir,
};

fn fanout() -> JobBinary {
    JobBinary::new(env!("CARGO_BIN_EXE_cdc-fanout")).with_timeout(Duration::from_secs(240))
}

fn archive() -> JobBinary {
    JobBinary::new(env!("CARGO_BIN_EXE_nats-archive")).with_timeout(Duration::from_secs(240))
}

/// Change `i` of `n` over `rows` rows: versions rise with `i`; every 13th change of a row
/// is a delete (the row may come back later).
fn change(i: u64, rows: u64) -> Value {
    serde_json::json!({
        "id": i % rows,
        "op": if (i / rows) % 13 == 12 { "delete" } else { "upsert" },
        "version": i,
        "customer": format!("c{}", i % 23),
        "amount_cents": (i * 37 % 10_000) as i64,
    })
}

/// The input file of `n` changes over `rows` rows, plus a malformed line (skipped).
fn write_input(dir: &TempDir, n: u64, rows: u64) -> (PathBuf, Vec<Value>) {
    let changes: Vec<Value> = (0..n).map(|i| change(i, rows)).collect();
    let mut text = String::with_capacity(n as usize * 90);
    for (i, c) in changes.iter().enumerate() {
        text.push_str(&c.to_string());
        text.push('\n');
        if i == 10 {
            text.push_str("{not json\n");
        }
    }
    let path = dir.join("changes.jsonl");
    std::fs::write(&path, text).unwrap();
    (path, changes)
}

/// What Redis must hold: the newest change of every row, as a row, unless it is a delete.
fn expected_cache(changes: &[Value], prefix: &str) -> BTreeMap<String, Value> {
    let mut newest: BTreeMap<u64, &Value> = BTreeMap::new();
    for c in changes {
        newest.insert(c["id"].as_u64().unwrap(), c);
    }
    newest
        .into_iter()
        .filter(|(_, c)| c["op"] != "delete")
        .map(|(id, c)| {
            let row = serde_json::json!({
                "id": id,
                "version": c["version"],
                "customer": c["customer"],
                "amount_cents": c["amount_cents"],
            });
            (format!("{prefix}{id}"), row)
        })
        .collect()
}

fn cache(url: &str, prefix: &str) -> BTreeMap<String, Value> {
    strings(url, prefix)
        .into_iter()
        .map(|(k, v)| (k, serde_json::from_str(&v).unwrap()))
        .collect()
}

/// The payloads of a stream as a sorted multiset, after checking that every message has
/// its own id.
fn stream_multiset(url: &str, stream: &str) -> Vec<String> {
    let messages = read_stream(url, stream);
    let mut ids: Vec<&str> = messages.iter().filter_map(|m| m.id.as_deref()).collect();
    assert_eq!(ids.len(), messages.len(), "every message has a Nats-Msg-Id");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), messages.len(), "no message id twice");
    let mut out: Vec<String> = messages
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            v.to_string()
        })
        .collect();
    out.sort();
    out
}

fn sorted_json(values: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = values.iter().map(Value::to_string).collect();
    out.sort();
    out
}

/// One run's names: a stream with its subject, and a Redis key prefix.
struct Target {
    stream: String,
    subject: String,
    prefix: String,
}

impl Target {
    fn new(label: &str) -> Target {
        let stream = unique_name(&label.to_uppercase());
        let subject = format!("{stream}.changes");
        create_stream(&nats::url(), &stream, &[&subject], None);
        Target {
            stream,
            subject,
            prefix: unique_prefix(label),
        }
    }

    fn args(&self, input: &std::path::Path, nats: &str, redis: &str) -> Vec<String> {
        [
            "--arg".to_string(),
            format!("input={}", input.display()),
            "--arg".into(),
            format!("subject={}", self.subject),
            "--arg".into(),
            format!("key_prefix={}", self.prefix),
            "--arg".into(),
            format!("nats={nats}"),
            "--arg".into(),
            format!("redis={redis}"),
        ]
        .to_vec()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            delete_stream(&nats::url(), &self.stream);
            delete_prefix(&redis_t::url(), &self.prefix);
        }
    }
}

fn checkpoint_args(dir: &TempDir) -> Vec<String> {
    [
        "--checkpoint-interval",
        "200ms",
        "--checkpoint-dir",
        &dir.join("checkpoints").display().to_string(),
        "--restart-delay",
        "100ms",
        "--restart-attempts",
        "10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn fanout_writes_every_change_to_nats_and_the_newest_rows_to_redis() {
    let (nu, ru) = (nats::url(), redis_t::url());
    let dir = TempDir::new("cdc-once");
    let (input, changes) = write_input(&dir, 20_000, 1_500);
    let t = Target::new("once");
    let out = fanout().run_single(4, &t.args(&input, &nu, &ru));
    out.assert_success();
    assert_eq!(stream_multiset(&nu, &t.stream), sorted_json(&changes));
    assert_eq!(cache(&ru, &t.prefix), expected_cache(&changes, &t.prefix));
}

/// Wait until `ready()` (a sign that a checkpoint completed), failing if the job ends first.
fn wait_until(launcher: &mut Spawned, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !ready() {
        assert!(launcher.is_running(), "the job ended before {what}");
        assert!(Instant::now() < deadline, "no {what} within 90 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL a random process `kills` times at random moments (each within 0.4 s after the
/// previous restart), then wait for the job to finish.
fn kill_randomly(launcher: &mut Spawned, kills: usize, seed: u64) {
    let mut rng = seed;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for kill in 0..kills {
        std::thread::sleep(Duration::from_millis(50 + next(350)));
        assert!(
            launcher.is_running(),
            "the job finished after {kill} kills; give it a longer input"
        );
        let victim = kill_job_process(launcher.pid(), 2, next(2) as usize);
        wait_for_restart(launcher.pid(), 2, victim);
    }
}

fn stream_len(url: &str, stream: &str) -> usize {
    read_stream(url, stream).len()
}

fn assert_restarted(out: &Output, kills: usize) {
    out.assert_success();
    assert!(
        out.stderr
            .matches("restarting the processes of node 0")
            .count()
            >= kills,
        "{out}"
    );
    assert!(out.stderr.contains("restoring from checkpoint"), "{out}");
}

#[test]
fn random_kills_leave_nats_exactly_once_and_redis_equal_to_an_uninterrupted_run() {
    let (nu, ru) = (nats::url(), redis_t::url());
    let dir = TempDir::new("cdc-kill");
    let (input, changes) = write_input(&dir, 400_000, 4_000);
    // The uninterrupted run.
    let clean = Target::new("clean");
    let clean_dir = TempDir::new("cdc-clean");
    let mut args = clean.args(&input, &nu, &ru);
    args.extend(checkpoint_args(&clean_dir));
    let cluster = LocalCluster::new(clean_dir.path(), 1, 2);
    fanout()
        .spawn_node(&cluster, 0, 2, &args)
        .wait(Duration::from_secs(240))
        .assert_success();
    let clean_stream = stream_multiset(&nu, &clean.stream);
    let clean_cache = cache(&ru, &clean.prefix);
    assert_eq!(clean_stream, sorted_json(&changes));
    assert_eq!(clean_cache, expected_cache(&changes, &clean.prefix));
    // The run killed at random moments.
    let killed = Target::new("killed");
    let mut args = killed.args(&input, &nu, &ru);
    args.extend(checkpoint_args(&dir));
    let cluster = LocalCluster::new(dir.path(), 1, 2);
    let mut launcher = fanout().spawn_node(&cluster, 0, 2, &args);
    // Messages are published once their checkpoint completed.
    wait_until(&mut launcher, "a complete checkpoint", || {
        stream_len(&nu, &killed.stream) > 0
    });
    kill_randomly(&mut launcher, 4, 0x5eed_0f_cdc);
    let out = launcher.wait(Duration::from_secs(240));
    assert_restarted(&out, 4);
    assert_eq!(
        stream_multiset(&nu, &killed.stream),
        clean_stream,
        "NATS: every change exactly once"
    );
    let strip = |m: BTreeMap<String, Value>, p: &str| -> BTreeMap<String, Value> {
        m.into_iter()
            .map(|(k, v)| (k[p.len()..].to_string(), v))
            .collect()
    };
    assert_eq!(
        strip(cache(&ru, &killed.prefix), &killed.prefix),
        strip(clean_cache, &clean.prefix),
        "Redis: the same final rows"
    );
}

#[test]
fn nats_archive_replays_from_the_checkpointed_sequence_exactly_once_across_kills() {
    let nu = nats::url();
    let stream = unique_name("ARCHIVE");
    let subject = format!("{stream}.changes");
    create_stream(&nu, &stream, &[&subject], None);
    let changes: Vec<Value> = (0..200_000).map(|i| change(i, 5_000)).collect();
    let payloads: Vec<Vec<u8>> = changes.iter().map(|c| c.to_string().into_bytes()).collect();
    for chunk in payloads.chunks(20_000) {
        nats::publish(&nu, &subject, chunk);
    }
    let dir = TempDir::new("nats-archive");
    let out_dir = dir.join("out");
    let mut args = vec![
        "--arg".to_string(),
        format!("stream={stream}"),
        "--arg".into(),
        format!("output={}", out_dir.display()),
        "--arg".into(),
        format!("nats={nu}"),
    ];
    args.extend(checkpoint_args(&dir));
    let cluster = LocalCluster::new(dir.path(), 1, 2);
    let mut launcher = archive().spawn_node(&cluster, 0, 2, &args);
    weir_runtime::testing::wait_for_a_complete_checkpoint(&out_dir, &mut launcher);
    kill_randomly(&mut launcher, 3, 0xa5c4_17e);
    let out = launcher.wait(Duration::from_secs(240));
    assert_restarted(&out, 3);
    let archived = weir_runtime::testing::read_rolled_records(&out_dir);
    assert_eq!(
        sorted_json(&archived),
        sorted_json(&changes),
        "every message exactly once"
    );
    delete_stream(&nu, &stream);
}

#[test]
fn servers_cut_off_mid_run_for_seconds_and_the_job_recovers_exactly() {
    let (nu, ru) = (nats::url(), redis_t::url());
    let dir = TempDir::new("cdc-cut");
    let (input, changes) = write_input(&dir, 100_000, 3_000);
    let t = Target::new("cut");
    let nats_proxy = Proxy::start(nu.trim_start_matches("nats://").parse().unwrap());
    let redis_proxy = Proxy::start(ru.trim_start_matches("redis://").parse().unwrap());
    let mut args = t.args(
        &input,
        &format!("nats://127.0.0.1:{}", nats_proxy.port()),
        &format!("redis://127.0.0.1:{}", redis_proxy.port()),
    );
    args.extend(checkpoint_args(&dir));
    let cluster = LocalCluster::new(dir.path(), 1, 2);
    let mut launcher = fanout().spawn_node(&cluster, 0, 2, &args);
    wait_until(&mut launcher, "a complete checkpoint", || {
        stream_len(&nu, &t.stream) > 0
    });
    nats_proxy.cut();
    redis_proxy.cut();
    std::thread::sleep(Duration::from_secs(4));
    assert!(launcher.is_running(), "the job keeps going while cut off");
    nats_proxy.restore();
    redis_proxy.restore();
    let out = launcher.wait(Duration::from_secs(240));
    out.assert_success();
    assert!(
        out.stderr.contains("retrying"),
        "the outage is logged:\n{out}"
    );
    assert_eq!(stream_multiset(&nu, &t.stream), sorted_json(&changes));
    assert_eq!(cache(&ru, &t.prefix), expected_cache(&changes, &t.prefix));
}

/// The error line a failed start ends with (the job's last stderr line); the run fails at
/// once, without retrying.
fn start_error(out: Output) -> String {
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(out.elapsed < Duration::from_secs(10), "not retried:\n{out}");
    let last = out
        .stderr_lines()
        .last()
        .copied()
        .unwrap_or_default()
        .to_string();
    assert!(last.starts_with("error: operator `"), "{out}");
    last
}

#[test]
fn wrong_credentials_and_a_missing_stream_are_one_line_at_start() {
    let (nu, ru) = (nats::url(), redis_t::url());
    let dir = TempDir::new("cdc-auth");
    let (input, _) = write_input(&dir, 10, 5);
    let t = Target::new("auth");
    // NATS with a user: the wrong password.
    let server = nats::PrivateServer::start(Some(("weir", "s3cret")));
    let line = start_error(
        fanout().run_single(1, &t.args(&input, &server.url(Some(("weir", "nope"))), &ru)),
    );
    assert!(
        line.contains("nats sink `changelog`: the NATS server at nats://weir:***@127.0.0.1:")
            && line.contains("rejected the credentials"),
        "{line}"
    );
    assert!(!line.contains("nope"));
    // Redis with a password: none given.
    let redis = redis_t::PrivateServer::start(Some("s3cret"));
    let line = start_error(fanout().run_single(1, &t.args(&input, &nu, &redis.url(Some("nope")))));
    assert!(
        line.contains("redis sink `cache`: the Redis server at redis://:***@127.0.0.1:")
            && line.contains("rejected the credentials"),
        "{line}"
    );
    // A subject no stream captures.
    let mut args = t.args(&input, &nu, &ru);
    let missing = unique_name("NOSTREAM");
    args[3] = format!("subject={missing}.x");
    let line = start_error(fanout().run_single(1, &args));
    assert!(
        line.contains(&format!(
            "nats sink `changelog`: no JetStream stream captures subject `{missing}.x`"
        )),
        "{line}"
    );
    // A stream that does not exist, for the archive.
    let out = archive().run_single(
        1,
        &[
            "--arg".to_string(),
            format!("stream={missing}"),
            "--arg".into(),
            format!("output={}", dir.join("o").display()),
            "--arg".into(),
            format!("nats={nu}"),
        ],
    );
    let line = start_error(out);
    assert!(
        line.contains(&format!(
            "nats source `changes`: JetStream stream `{missing}` does not exist"
        )),
        "{line}"
    );
}

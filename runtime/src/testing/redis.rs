//! A Redis client for tests, and private servers for credential tests.
//!
//! Tests find the shared server at `WEIR_REDIS_URL` (default [`DEFAULT_URL`]). Keys are
//! shared by every test talking to it: put each test's keys under a [`unique_prefix`].

use super::{free_port_block, unique_seed, Spawned, TempDir};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

/// Where tests look for Redis when `WEIR_REDIS_URL` is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The shared server's URL; panics, saying what to do, when nothing answers there.
pub fn url() -> String {
    let url = std::env::var("WEIR_REDIS_URL").unwrap_or_else(|_| DEFAULT_URL.into());
    let ok = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        .is_ok();
    assert!(
        ok,
        "no Redis server at {url}: start one (`redis-server --bind 127.0.0.1 --port 6379`, as .ci/run does) or set WEIR_REDIS_URL"
    );
    url
}

/// A key prefix no other test run uses: `<label>:<unique>:`.
pub fn unique_prefix(label: &str) -> String {
    format!(
        "weir-test:{label}:{:012x}:",
        unique_seed() & 0xffff_ffff_ffff
    )
}

fn connection(url: &str) -> redis::Connection {
    match redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
    {
        Ok(c) => c,
        Err(e) => panic!("cannot connect to Redis at {url}: {e}"),
    }
}

fn keys(conn: &mut redis::Connection, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = match redis::cmd("KEYS").arg(format!("{prefix}*")).query(conn) {
        Ok(k) => k,
        Err(e) => panic!("KEYS {prefix}* failed: {e}"),
    };
    keys.sort();
    keys
}

/// Every string key under `prefix` with its value.
pub fn strings(url: &str, prefix: &str) -> BTreeMap<String, String> {
    let mut conn = connection(url);
    keys(&mut conn, prefix)
        .into_iter()
        .map(|k| {
            let v: String = redis::cmd("GET")
                .arg(&k)
                .query(&mut conn)
                .unwrap_or_else(|e| panic!("GET {k} failed: {e}"));
            (k, v)
        })
        .collect()
}

/// Every hash under `prefix` with its fields.
pub fn hashes(url: &str, prefix: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut conn = connection(url);
    keys(&mut conn, prefix)
        .into_iter()
        .map(|k| {
            let v: BTreeMap<String, String> = redis::cmd("HGETALL")
                .arg(&k)
                .query(&mut conn)
                .unwrap_or_else(|e| panic!("HGETALL {k} failed: {e}"));
            (k, v)
        })
        .collect()
}

/// The remaining time to live of `key` in milliseconds (`-1`: none, `-2`: no such key).
pub fn pttl(url: &str, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query(&mut connection(url))
        .unwrap_or_else(|e| panic!("PTTL {key} failed: {e}"))
}

/// Run one command (test set-up).
pub fn command(url: &str, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    if let Err(e) = cmd.exec(&mut connection(url)) {
        panic!("{args:?} failed: {e}");
    }
}

/// Delete every key under `prefix`.
pub fn delete_prefix(url: &str, prefix: &str) {
    let mut conn = connection(url);
    for k in keys(&mut conn, prefix) {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&k).exec(&mut conn);
    }
}

/// A private `redis-server` on a spare port of 127.0.0.1 (no persistence), optionally with
/// a password; stopped when dropped.
#[derive(Debug)]
pub struct PrivateServer {
    port: u16,
    process: Option<Spawned>,
    _dir: TempDir,
}

impl PrivateServer {
    /// Start one (`password`: require it).
    pub fn start(password: Option<&str>) -> PrivateServer {
        let dir = TempDir::new("redis-server");
        let port = free_port_block(1);
        let mut cmd = Command::new(
            std::env::var("WEIR_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()),
        );
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ])
        .arg(dir.path());
        if let Some(p) = password {
            cmd.args(["--requirepass", p]);
        }
        let process = Spawned::spawn(cmd);
        super::wait_for_port(port, "redis-server");
        PrivateServer {
            port,
            process: Some(process),
            _dir: dir,
        }
    }

    /// `redis://[:password@]127.0.0.1:<port>`.
    pub fn url(&self, password: Option<&str>) -> String {
        match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill_group();
        }
    }
}

//! Redis connector (cargo feature `redis`): [`RedisSink`] caches a stream's latest results
//! for an application — key/value (`SET key json [PX ttl]`) or hash (`HSET key field json`,
//! `PEXPIRE key ttl`) writes, pipelined in batches. Writes are idempotent (the last write of
//! a key wins), so replays after a recovery leave the same final state; an updating
//! stream's deletes remove the key or field.
//!
//! The synchronous client is used: the sink writes from its worker thread at every
//! completed epoch, the same point at which the Kafka sink waits for acknowledgements.

use crate::changelog::Change;
use crate::error::{Result, RuntimeError};
use crate::sinks::{Guarantee, Sink, SinkContext, SinkWriter};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long to retry reaching the server (at start and for every batch) before the job
/// fails.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// Write once this many commands are buffered (and at every completed epoch).
const BATCH_COMMANDS: usize = 1_000;

/// A key or field of a record: computed by a closure, or one of its fields.
enum Part<T> {
    Closure(Arc<dyn Fn(&T) -> String>),
    /// A top-level field of the record's JSON object (strings as they are, other values as
    /// JSON), after a prefix.
    Field {
        prefix: String,
        name: String,
    },
}

impl<T> Clone for Part<T> {
    fn clone(&self) -> Self {
        match self {
            Part::Closure(f) => Part::Closure(Arc::clone(f)),
            Part::Field { prefix, name } => Part::Field {
                prefix: prefix.clone(),
                name: name.clone(),
            },
        }
    }
}

impl<T> Part<T> {
    fn label(&self) -> String {
        match self {
            Part::Closure(_) => "by function".to_string(),
            Part::Field { prefix, name } => format!("{prefix}{{{name}}}"),
        }
    }

    /// The key or field of `record`, whose JSON object is `json`.
    fn of(&self, record: &T, json: &serde_json::Value) -> std::result::Result<String, String> {
        match self {
            Part::Closure(f) => Ok(f(record)),
            Part::Field { prefix, name } => match json.get(name) {
                Some(serde_json::Value::String(s)) => Ok(format!("{prefix}{s}")),
                Some(serde_json::Value::Null) | None => {
                    Err(format!("the record has no field `{name}` (or it is null)"))
                }
                Some(v) => Ok(format!("{prefix}{v}")),
            },
        }
    }

    fn needs_json(&self) -> bool {
        matches!(self, Part::Field { .. })
    }
}

/// What a [`RedisSink`] writes per record.
enum Layout<T> {
    /// `SET key value`.
    KeyValue { key: Part<T> },
    /// `HSET key field value`.
    Hash { key: Part<T>, field: Part<T> },
}

impl<T> Clone for Layout<T> {
    fn clone(&self) -> Self {
        match self {
            Layout::KeyValue { key } => Layout::KeyValue { key: key.clone() },
            Layout::Hash { key, field } => Layout::Hash {
                key: key.clone(),
                field: field.clone(),
            },
        }
    }
}

/// A sink caching records in Redis as JSON values: under a key (`SET`) or a field of a hash
/// (`HSET`), both derived from the record by closures or named record fields, optionally
/// with a time to live.
///
/// **At-least-once delivery, idempotent writes: the final state is exact.** Each instance
/// sends its buffered commands as one pipeline at every completed epoch (and every 1,000
/// commands) and waits for the replies. After a failure the job restarts from its last
/// checkpoint (or from the start) and writes the replayed records again; since a write
/// replaces the key's (or field's) value, the keys end up exactly as after a run without
/// failure — only a reader polling in between can see an older value for a moment. For the
/// last write to be the newest, all records of one key must reach the same sink instance in
/// order: `key_by` the stream on the Redis key (or run the sink with parallelism 1).
///
/// Updating streams (`Change<T>` records, e.g. of an updating aggregate) are applied as
/// upserts: `Insert` and `UpdateAfter` write, `Delete` removes the key (`DEL`) or hash field
/// (`HDEL`), and `UpdateBefore` is skipped (the `UpdateAfter` that follows replaces it).
///
/// With a TTL, `SET` gets `PX <ms>`, and a hash write is followed by `PEXPIRE key <ms>` (the
/// whole hash expires `ttl` after its last write).
///
/// If the server goes away, a batch is retried with backoff (logging once) for
/// [`retry_timeout`](RedisSink::retry_timeout); then the job fails. Rejected credentials
/// (in the URL: `redis://user:password@host:6379/db`) are an error at start.
///
/// ```text
/// totals.sink(RedisSink::<Total>::hash(env.arg("redis"), |t| format!("totals:{}", t.customer), |t| t.minute.to_string()).ttl(Duration::from_secs(3600)))
/// orders.sink(RedisSink::<Order>::set_by_field(env.arg("redis"), "order:", "order_id"))
/// ```
pub struct RedisSink<T> {
    url: String,
    layout: Layout<T>,
    ttl: Option<Duration>,
    retry_timeout: Duration,
}

impl<T: Serialize + 'static> RedisSink<T> {
    fn with(url: String, layout: Layout<T>) -> Self {
        RedisSink {
            url,
            layout,
            ttl: None,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
        }
    }

    /// `SET key(record) json(record)`: `RedisSink::<Order>::set(url, |o| format!("order:{}", o.id))`.
    pub fn set<K: Into<String>, F: Fn(&T) -> K + 'static>(url: impl Into<String>, key: F) -> Self {
        let key = Part::Closure(Arc::new(move |r: &T| key(r).into()));
        RedisSink::with(url.into(), Layout::KeyValue { key })
    }

    /// `SET <prefix><record.field> json(record)`: the key is the record's field `field`
    /// after `prefix`.
    pub fn set_by_field(
        url: impl Into<String>,
        prefix: impl Into<String>,
        field: impl Into<String>,
    ) -> Self {
        let key = Part::Field {
            prefix: prefix.into(),
            name: field.into(),
        };
        RedisSink::with(url.into(), Layout::KeyValue { key })
    }

    /// `HSET key(record) field(record) json(record)`.
    pub fn hash<K: Into<String>, F: Into<String>>(
        url: impl Into<String>,
        key: impl Fn(&T) -> K + 'static,
        field: impl Fn(&T) -> F + 'static,
    ) -> Self {
        let key = Part::Closure(Arc::new(move |r: &T| key(r).into()));
        let field = Part::Closure(Arc::new(move |r: &T| field(r).into()));
        RedisSink::with(url.into(), Layout::Hash { key, field })
    }

    /// `HSET <prefix><record.key_field> <record.field> json(record)`.
    pub fn hash_by_fields(
        url: impl Into<String>,
        prefix: impl Into<String>,
        key_field: impl Into<String>,
        field: impl Into<String>,
    ) -> Self {
        let key = Part::Field {
            prefix: prefix.into(),
            name: key_field.into(),
        };
        let field = Part::Field {
            prefix: String::new(),
            name: field.into(),
        };
        RedisSink::with(url.into(), Layout::Hash { key, field })
    }
}

impl<T> RedisSink<T> {
    /// Let written keys expire `ttl` after their last write (millisecond precision).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How long to keep retrying an unreachable server (at start and for every batch) before
    /// the job fails (default 30 s).
    pub fn retry_timeout(mut self, timeout: Duration) -> Self {
        self.retry_timeout = timeout;
        self
    }
}

impl<T> Clone for RedisSink<T> {
    fn clone(&self) -> Self {
        RedisSink {
            url: self.url.clone(),
            layout: self.layout.clone(),
            ttl: self.ttl,
            retry_timeout: self.retry_timeout,
        }
    }
}

impl<T> fmt::Debug for RedisSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSink")
            .field("url", &redact(&self.url))
            .field("layout", &self.layout_label())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl<T> RedisSink<T> {
    fn layout_label(&self) -> String {
        match &self.layout {
            Layout::KeyValue { key } => format!("SET key {}", key.label()),
            Layout::Hash { key, field } => {
                format!("HSET key {} field {}", key.label(), field.label())
            }
        }
    }

    fn describe_sink(&self) -> String {
        format!(
            "redis {} ({}{}, json, at-least-once with idempotent writes: the final state is exact)",
            redact(&self.url),
            self.layout_label(),
            self.ttl
                .map(|t| format!(", ttl {} ms", t.as_millis()))
                .unwrap_or_default()
        )
    }

    fn open_writer(&self, ctx: &SinkContext) -> Result<RedisSinkWriter<T>> {
        let what = format!("redis sink `{}`", ctx.operator);
        let client = redis::Client::open(self.url.as_str()).map_err(|e| {
            RuntimeError::user(format!(
                "{what}: cannot use the Redis URL {} ({e}); pass it as redis://[user:password@]host:port[/db]",
                redact(&self.url)
            ))
        })?;
        let mut conn = Connection {
            what: what.clone(),
            url: self.url.clone(),
            client,
            conn: None,
            retry_timeout: self.retry_timeout,
        };
        conn.connected()?;
        if ctx.instance == 0 {
            tracing::info!(operator = %ctx.operator, "{}", self.describe_sink());
        }
        Ok(RedisSinkWriter {
            what,
            layout: self.layout.clone(),
            ttl_ms: self
                .ttl
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)),
            conn,
            pipe: redis::pipe(),
            commands: 0,
            written: 0,
            json: Vec::with_capacity(256),
        })
    }
}

/// `url` with its password replaced by `***`.
fn redact(url: &str) -> String {
    let Some(i) = url.find("://") else {
        return url.to_string();
    };
    let (scheme, rest) = (&url[..i + 3], &url[i + 3..]);
    match rest.rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{scheme}{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_string(),
    }
}

impl<T: Serialize + 'static> Sink<T> for RedisSink<T> {
    type Writer = RedisSinkWriter<T>;

    fn describe(&self) -> String {
        self.describe_sink()
    }

    fn guarantee(&self) -> Guarantee {
        // Delivery is at-least-once; the writes are idempotent, so the final state is exact.
        Guarantee::AtLeastOnce
    }

    fn open(&self, ctx: &SinkContext) -> Result<Self::Writer> {
        self.open_writer(ctx)
    }
}

impl<T: Serialize + 'static> Sink<Change<T>> for RedisSink<T> {
    type Writer = RedisSinkWriter<T>;

    fn describe(&self) -> String {
        format!("{}, deletes applied", self.describe_sink())
    }

    fn guarantee(&self) -> Guarantee {
        Guarantee::AtLeastOnce
    }

    fn open(&self, ctx: &SinkContext) -> Result<Self::Writer> {
        self.open_writer(ctx)
    }
}

/// A connection made on demand and dropped when it fails.
struct Connection {
    what: String,
    url: String,
    client: redis::Client,
    conn: Option<redis::Connection>,
    retry_timeout: Duration,
}

/// Whether `e` means the server refused the credentials.
fn is_auth_error(e: &redis::RedisError) -> bool {
    matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
}

/// Whether `e` is about the connection (worth reconnecting and retrying).
fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal()
}

impl Connection {
    /// Try once: connect and check the connection (and credentials) with `PING`.
    fn try_connect(&self) -> redis::RedisResult<redis::Connection> {
        let mut conn = self
            .client
            .get_connection_with_timeout(Duration::from_secs(5))?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        conn.set_write_timeout(Some(Duration::from_secs(10)))?;
        redis::cmd("PING").query::<()>(&mut conn)?;
        Ok(conn)
    }

    /// The connection, made (with retries and backoff) if there is none.
    fn connected(&mut self) -> Result<&mut redis::Connection> {
        if self.conn.is_none() {
            let started = Instant::now();
            let mut delay = Duration::from_millis(100);
            let conn = loop {
                match self.try_connect() {
                    Ok(c) => break c,
                    Err(e) if is_auth_error(&e) => {
                        return Err(RuntimeError::user(format!(
                            "{}: the Redis server at {} rejected the credentials ({e}); check the user and password in the URL (redis://user:password@host:port)",
                            self.what,
                            redact(&self.url)
                        )))
                    }
                    Err(e) => {
                        if started.elapsed() >= self.retry_timeout {
                            return Err(RuntimeError::external(format!(
                                "{}: cannot reach the Redis server at {} within {} s: {e}; check that it runs and the address is right",
                                self.what,
                                redact(&self.url),
                                self.retry_timeout.as_secs()
                            )));
                        }
                        if delay == Duration::from_millis(100) {
                            tracing::warn!("{}: cannot reach the Redis server at {} ({e}); retrying with backoff for up to {} s", self.what, redact(&self.url), self.retry_timeout.as_secs());
                        }
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                }
            };
            self.conn = Some(conn);
        }
        match &mut self.conn {
            Some(c) => Ok(c),
            None => Err(RuntimeError::internal(format!(
                "{}: lost its connection",
                self.what
            ))),
        }
    }

    /// Send `pipe`, reconnecting and sending it again while the connection fails (the
    /// commands are idempotent, so a batch applied in part and then again is harmless).
    fn send(&mut self, pipe: &redis::Pipeline) -> Result<()> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let result = pipe.exec(self.connected()?);
            match result {
                Ok(()) => {
                    if delay > Duration::from_millis(100) {
                        tracing::info!("{}: writing to {} works again", self.what, redact(&self.url));
                    }
                    return Ok(());
                }
                Err(e) if is_connection_error(&e) => {
                    self.conn = None;
                    if started.elapsed() >= self.retry_timeout {
                        return Err(RuntimeError::external(format!(
                            "{}: cannot write to the Redis server at {} for {} s: {e}; check that it runs",
                            self.what,
                            redact(&self.url),
                            self.retry_timeout.as_secs()
                        )));
                    }
                    if delay == Duration::from_millis(100) {
                        tracing::warn!("{}: lost the connection to {} ({e}); writing the batch again with backoff for up to {} s", self.what, redact(&self.url), self.retry_timeout.as_secs());
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) if is_auth_error(&e) => {
                    return Err(RuntimeError::user(format!(
                        "{}: the Redis server at {} rejected the credentials ({e}); check the user and password in the URL",
                        self.what,
                        redact(&self.url)
                    )))
                }
                Err(e) => {
                    return Err(RuntimeError::user(format!(
                        "{}: the Redis server at {} refused a write: {e}; check that the keys hold the type the sink writes (strings for set, hashes for hash)",
                        self.what,
                        redact(&self.url)
                    )))
                }
            }
        }
    }
}

/// An open [`RedisSink`] instance.
pub struct RedisSinkWriter<T> {
    what: String,
    layout: Layout<T>,
    ttl_ms: Option<u64>,
    conn: Connection,
    pipe: redis::Pipeline,
    commands: usize,
    written: u64,
    json: Vec<u8>,
}

impl<T: Serialize> RedisSinkWriter<T> {
    /// Records written (and acknowledged) so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The key and field of `record`, and its JSON encoding in `self.json`.
    fn locate(&mut self, record: &T) -> Result<(String, Option<String>)> {
        self.json.clear();
        serde_json::to_writer(&mut self.json, record).map_err(|e| {
            RuntimeError::user(format!(
                "{}: cannot encode a record as JSON: {e}",
                self.what
            ))
        })?;
        let needs_json = match &self.layout {
            Layout::KeyValue { key } => key.needs_json(),
            Layout::Hash { key, field } => key.needs_json() || field.needs_json(),
        };
        let value = if needs_json {
            serde_json::from_slice(&self.json).unwrap_or(serde_json::Value::Null)
        } else {
            serde_json::Value::Null
        };
        let what = &self.what;
        let fail = |e: String| RuntimeError::user(format!("{what}: cannot derive the key: {e}"));
        Ok(match &self.layout {
            Layout::KeyValue { key } => (key.of(record, &value).map_err(fail)?, None),
            Layout::Hash { key, field } => (
                key.of(record, &value).map_err(fail)?,
                Some(field.of(record, &value).map_err(fail)?),
            ),
        })
    }

    fn upsert(&mut self, record: &T) -> Result<()> {
        let (key, field) = self.locate(record)?;
        match (field, self.ttl_ms) {
            (None, None) => self.pipe.cmd("SET").arg(&key).arg(&self.json[..]).ignore(),
            (None, Some(ms)) => self
                .pipe
                .cmd("SET")
                .arg(&key)
                .arg(&self.json[..])
                .arg("PX")
                .arg(ms)
                .ignore(),
            (Some(field), ttl) => {
                self.pipe
                    .cmd("HSET")
                    .arg(&key)
                    .arg(field)
                    .arg(&self.json[..])
                    .ignore();
                if let Some(ms) = ttl {
                    self.pipe.cmd("PEXPIRE").arg(&key).arg(ms).ignore();
                }
                &mut self.pipe
            }
        };
        self.queued()
    }

    fn delete(&mut self, record: &T) -> Result<()> {
        match self.locate(record)? {
            (key, None) => self.pipe.cmd("DEL").arg(key).ignore(),
            (key, Some(field)) => self.pipe.cmd("HDEL").arg(key).arg(field).ignore(),
        };
        self.queued()
    }

    fn queued(&mut self) -> Result<()> {
        self.commands += 1;
        if self.commands >= BATCH_COMMANDS {
            self.flush()?;
        }
        Ok(())
    }

    /// Send the buffered commands and wait for the replies.
    fn flush(&mut self) -> Result<()> {
        if self.commands == 0 {
            return Ok(());
        }
        self.conn.send(&self.pipe)?;
        self.written += self.commands as u64;
        self.pipe.clear();
        self.commands = 0;
        Ok(())
    }
}

impl<T: Serialize + 'static> SinkWriter<T> for RedisSinkWriter<T> {
    fn write(&mut self, record: T) -> Result<()> {
        self.upsert(&record)
    }

    fn epoch_complete(&mut self, _epoch: u64) -> Result<()> {
        self.flush()
    }

    fn close(&mut self) -> Result<()> {
        self.flush()
    }
}

impl<T: Serialize + 'static> SinkWriter<Change<T>> for RedisSinkWriter<T> {
    fn write(&mut self, change: Change<T>) -> Result<()> {
        match change {
            Change::Insert(r) | Change::UpdateAfter(r) => self.upsert(&r),
            // The UpdateAfter that follows overwrites the value.
            Change::UpdateBefore(_) => Ok(()),
            Change::Delete(r) => self.delete(&r),
        }
    }

    fn epoch_complete(&mut self, _epoch: u64) -> Result<()> {
        self.flush()
    }

    fn close(&mut self) -> Result<()> {
        self.flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[derive(Serialize, Clone)]
    struct Total {
        customer: String,
        minute: i64,
        cents: i64,
    }

    #[test]
    fn describe_states_layout_ttl_and_guarantee_without_secrets() {
        let s = RedisSink::<Total>::hash_by_fields(
            "redis://u:pw@127.0.0.1:6379/0",
            "t:",
            "customer",
            "minute",
        )
        .ttl(Duration::from_secs(60));
        assert_eq!(
            Sink::<Total>::describe(&s),
            "redis redis://u:***@127.0.0.1:6379/0 (HSET key t:{customer} field {minute}, ttl 60000 ms, json, at-least-once with idempotent writes: the final state is exact)"
        );
        assert_eq!(Sink::<Total>::guarantee(&s), Guarantee::AtLeastOnce);
        let s = RedisSink::<Total>::set("redis://127.0.0.1:6379", |t| t.customer.clone());
        assert!(Sink::<Change<Total>>::describe(&s).ends_with("deletes applied"));
    }

    #[test]
    fn fields_give_keys_or_say_what_is_missing() {
        let t = Total {
            customer: "c7".into(),
            minute: 60_000,
            cents: 5,
        };
        let json = serde_json::to_value(&t).unwrap();
        let key: Part<Total> = Part::Field {
            prefix: "t:".into(),
            name: "customer".into(),
        };
        assert_eq!(key.of(&t, &json).unwrap(), "t:c7");
        let minute: Part<Total> = Part::Field {
            prefix: String::new(),
            name: "minute".into(),
        };
        assert_eq!(minute.of(&t, &json).unwrap(), "60000");
        let missing: Part<Total> = Part::Field {
            prefix: String::new(),
            name: "region".into(),
        };
        assert_eq!(
            missing.of(&t, &json).unwrap_err(),
            "the record has no field `region` (or it is null)"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod server_tests;

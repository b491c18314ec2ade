//! PostgreSQL source: a bounded snapshot of a table or query, rows decoded into the record
//! type through their JSON form, split across instances by a hash of a column.

use super::{quote_ident, quote_name, Conn, PgFuture, DEFAULT_RETRY_TIMEOUT};
use crate::data::Data;
use crate::error::{Result, RuntimeError};
use crate::sources::{BadRecordPolicy, DeadLetters, Poll, Source, SourceContext, SourceReader};
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// Rows fetched per round trip.
const FETCH_ROWS: i32 = 2_000;

/// Fetched chunks waiting for the worker (backpressure beyond this).
const CHANNEL_CHUNKS: usize = 4;

/// What is read.
#[derive(Debug, Clone)]
enum Query {
    Table(String),
    Sql(String),
}

/// A bounded source reading a snapshot of a PostgreSQL table or query once.
///
/// Every row becomes one record: the row is turned into a JSON object by the server
/// (`row_to_json`, column name → value) and decoded into the record type with serde, so a
/// `#[weir::record]` struct whose fields are named like the columns reads it (fields of
/// `Option` type accept NULL; numeric columns arrive as JSON numbers, timestamps as ISO
/// 8601 strings). A row the record type cannot decode follows the
/// [bad-record policy](Self::on_bad_record): skipped and counted by default.
///
/// Instances: with [`split_by`](Self::split_by) each instance reads the rows whose column
/// hashes to it (`hashtext(column::text)` modulo the parallelism), ordered by that column;
/// without it instance 0 reads everything and the others nothing.
///
/// Checkpoints: with `split_by` on a unique column (a primary key) the position is the
/// number of rows an instance handed on, and a restored job skips that many rows of the
/// same ordered query, so nothing is read twice — provided the table does not change
/// while the job runs (the source reads a snapshot; re-reading after a restart sees the
/// table as it is then). Without `split_by` the order is not stable and the source cannot
/// be checkpointed.
///
/// The reading runs on a thread of the instance's own with one connection inside one
/// read-only `REPEATABLE READ` transaction; the worker only takes fetched rows. The server
/// is retried with backoff for [`retry_timeout`](Self::retry_timeout). A connection lost
/// while reading is retried the same way with `split_by` (reading on after the rows already
/// fetched, in a new transaction); without it, the job fails (and restarts from its last
/// checkpoint if it has one).
///
/// ```text
/// env.source(PostgresSource::table::<Customer>(env.arg("pg"), "customers").split_by("id"))
/// ```
pub struct PostgresSource<T> {
    url: String,
    query: Query,
    split_by: Option<String>,
    policy: BadRecordPolicy,
    retry_timeout: Duration,
    _t: PhantomData<fn() -> T>,
}

impl PostgresSource<()> {
    /// Every row of `table` (`schema.table` or `table`, case-sensitive).
    pub fn table<T: Data>(url: impl Into<String>, table: impl Into<String>) -> PostgresSource<T> {
        PostgresSource::with(url.into(), Query::Table(table.into()))
    }

    /// Every row a `SELECT` returns (without a trailing semicolon).
    pub fn query<T: Data>(url: impl Into<String>, sql: impl Into<String>) -> PostgresSource<T> {
        PostgresSource::with(url.into(), Query::Sql(sql.into()))
    }
}

impl<T> PostgresSource<T> {
    fn with(url: String, query: Query) -> Self {
        PostgresSource {
            url,
            query,
            split_by: None,
            policy: BadRecordPolicy::Skip,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            _t: PhantomData,
        }
    }

    /// Split the rows across instances by a hash of this column, and read them ordered by
    /// it (a unique column makes the source checkpointable).
    pub fn split_by(mut self, column: impl Into<String>) -> Self {
        self.split_by = Some(column.into());
        self
    }

    /// What to do with a row the record type cannot decode (default: skip and count).
    pub fn on_bad_record(mut self, policy: BadRecordPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How long to keep retrying an unreachable server or a lost connection (default 30 s).
    pub fn retry_timeout(mut self, timeout: Duration) -> Self {
        self.retry_timeout = timeout;
        self
    }

    /// The statement instance `instance` of `parallelism` runs: `$1` is the number of rows
    /// to skip.
    fn statement(&self, instance: usize, parallelism: usize) -> String {
        let base = match &self.query {
            Query::Table(t) => format!("SELECT * FROM {}", quote_name(t)),
            Query::Sql(sql) => sql.clone(),
        };
        let mut s = format!("SELECT row_to_json(weir_q)::text FROM ({base}) AS weir_q");
        if let Some(col) = &self.split_by {
            let col = quote_ident(col);
            if parallelism > 1 {
                let p = parallelism;
                s.push_str(&format!(
                    " WHERE ((hashtext(weir_q.{col}::text)::bigint % {p}) + {p}) % {p} = {instance}"
                ));
            }
            s.push_str(&format!(" ORDER BY weir_q.{col}"));
        }
        s.push_str(" OFFSET $1");
        s
    }
}

impl<T> Clone for PostgresSource<T> {
    fn clone(&self) -> Self {
        PostgresSource {
            url: self.url.clone(),
            query: self.query.clone(),
            split_by: self.split_by.clone(),
            policy: self.policy.clone(),
            retry_timeout: self.retry_timeout,
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for PostgresSource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSource")
            .field("query", &self.query)
            .field("split_by", &self.split_by)
            .finish_non_exhaustive()
    }
}

/// Check that the statement is valid (the table exists, the column too) without running it.
fn prepare<'c>(client: &'c mut Client, sql: &'c str) -> PgFuture<'c, ()> {
    Box::pin(async move { client.prepare(sql).await.map(|_| ()) })
}

impl<T: Data> Source for PostgresSource<T> {
    type Item = T;
    type Reader = PostgresSourceReader<T>;

    fn describe(&self) -> String {
        let what = match &self.query {
            Query::Table(t) => format!("table `{t}`"),
            Query::Sql(_) => "query".to_string(),
        };
        match &self.split_by {
            Some(c) => format!("postgres {what} (bounded snapshot, split by `{c}`)"),
            None => format!("postgres {what} (bounded snapshot, read by instance 0)"),
        }
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn open(&self, ctx: &SourceContext) -> Result<Self::Reader> {
        let what = format!("postgres source `{}`", ctx.operator);
        let reads = self.split_by.is_some() || ctx.instance == 0;
        let sql = self.statement(ctx.instance, ctx.parallelism);
        let conn = if reads {
            let mut conn = Conn::open(&self.url, what.clone(), self.retry_timeout)?;
            conn.run("checking the query", sql.as_str(), prepare)?;
            Some(conn)
        } else {
            None
        };
        Ok(PostgresSourceReader {
            what,
            operator: ctx.operator.clone(),
            instance: ctx.instance,
            sql,
            conn,
            rx: None,
            rows: VecDeque::new(),
            skip: 0,
            position: 0,
            records: 0,
            bad: 0,
            finished: false,
            // An instance with nothing to read is trivially checkpointable.
            checkpointable: self.split_by.is_some() || !reads,
            policy: self.policy.clone(),
            dead_letter: DeadLetters::default(),
            _t: PhantomData,
        })
    }
}

/// What the reading thread sends.
enum Fetched {
    Rows(Vec<String>),
    End,
    Failed(RuntimeError),
}

/// One dead-letter entry.
#[derive(Serialize)]
struct DeadLetterEntry<'a> {
    source: &'a str,
    row: u64,
    error: &'a str,
    raw: &'a str,
}

/// An open [`PostgresSource`] instance.
pub struct PostgresSourceReader<T> {
    what: String,
    operator: String,
    instance: usize,
    sql: String,
    /// The connection, until the reading thread takes it (`None`: nothing to read).
    conn: Option<Conn>,
    rx: Option<mpsc::Receiver<Fetched>>,
    rows: VecDeque<String>,
    /// Rows to skip (restored position) when the thread starts.
    skip: u64,
    /// Rows handed on (or skipped as bad) so far, counting restored ones.
    position: u64,
    records: u64,
    bad: u64,
    finished: bool,
    checkpointable: bool,
    policy: BadRecordPolicy,
    dead_letter: DeadLetters,
    _t: PhantomData<fn() -> T>,
}

/// Read every row of `sql` after `skip` into `tx`, chunk by chunk.
async fn read_all(
    client: &mut Client,
    sql: &str,
    skip: i64,
    tx: &mpsc::SyncSender<Fetched>,
    sent: &mut i64,
) -> std::result::Result<bool, tokio_postgres::Error> {
    let t = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let portal = t.bind(sql, &[&skip]).await?;
    loop {
        let chunk = t.query_portal(&portal, FETCH_ROWS).await?;
        let done = chunk.len() < FETCH_ROWS as usize;
        let rows = chunk
            .iter()
            .map(|r| {
                r.try_get::<_, Option<String>>(0)
                    .map(Option::unwrap_or_default)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let n = rows.len() as i64;
        if n > 0 && tx.send(Fetched::Rows(rows)).is_err() {
            // The reader is gone (the job stops).
            return Ok(false);
        }
        *sent += n;
        if done {
            break;
        }
    }
    t.commit().await?;
    Ok(true)
}

/// The reading thread: read every row after `skip` into `tx`. When the rows come in a
/// stable order (`resumable`), a broken connection is retried with backoff for the retry
/// timeout, continuing after the rows already sent.
fn read_thread(
    mut conn: Conn,
    sql: &str,
    mut skip: i64,
    resumable: bool,
    tx: &mpsc::SyncSender<Fetched>,
) {
    let mut delay = Duration::from_millis(100);
    let mut deadline: Option<Instant> = None;
    let last = loop {
        if let Err(e) = conn.client() {
            break Fetched::Failed(e);
        }
        let Conn { rt, client, .. } = &mut conn;
        let Some(client) = client.as_mut() else {
            continue;
        };
        let mut sent = 0;
        let error = match rt.block_on(read_all(client, sql, skip, tx, &mut sent)) {
            Ok(true) => break Fetched::End,
            Ok(false) => return,
            Err(e) => e,
        };
        skip += sent;
        if sent > 0 {
            // Progress since the last failure: a new outage gets the whole timeout.
            deadline = None;
            delay = Duration::from_millis(100);
        }
        let until = *deadline.get_or_insert(Instant::now() + conn.retry_timeout);
        if !resumable || !super::is_transient(&error) || Instant::now() + delay >= until {
            break Fetched::Failed(RuntimeError::external(format!(
                "{}: reading failed on {}: {}; the job restarts from its last checkpoint if it has one",
                conn.what,
                conn.target(),
                super::describe_error(&error)
            )));
        }
        tracing::warn!(connector = %conn.what, server = %conn.target(), error = %super::describe_error(&error), retry_in_ms = delay.as_millis() as u64, "reading failed; reconnecting and retrying");
        conn.client = None;
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(2));
    };
    let _ = tx.send(last);
}

impl<T> PostgresSourceReader<T> {
    fn start(&mut self) -> Result<()> {
        let Some(conn) = self.conn.take() else {
            self.finished = true;
            return Ok(());
        };
        let (tx, rx) = mpsc::sync_channel(CHANNEL_CHUNKS);
        let sql = self.sql.clone();
        let skip = i64::try_from(self.skip).unwrap_or(i64::MAX);
        let resumable = self.checkpointable;
        std::thread::Builder::new()
            .name(format!("weir-pg-{}-{}", self.operator, self.instance))
            .spawn(move || read_thread(conn, &sql, skip, resumable, &tx))
            .map_err(|e| {
                RuntimeError::external(format!(
                    "{}: cannot start its reading thread: {e}",
                    self.what
                ))
            })?;
        self.rx = Some(rx);
        Ok(())
    }

    fn bad_record(&mut self, raw: &str, error: &str) -> Result<()> {
        self.bad += 1;
        match &self.policy {
            BadRecordPolicy::Fail => Err(RuntimeError::user(format!(
                "{}: row {} cannot be decoded: {error}; fix the row or the record type, or skip such rows with .on_bad_record(BadRecordPolicy::Skip)",
                self.what, self.position
            ))),
            BadRecordPolicy::Skip => Ok(()),
            BadRecordPolicy::DeadLetter(dir) => {
                let entry = DeadLetterEntry {
                    source: &self.operator,
                    row: self.position,
                    error,
                    raw,
                };
                let dir = dir.clone();
                self.dead_letter
                    .write(&self.what, &dir, &self.operator, self.instance, &entry)
            }
        }
    }
}

impl<T: Data> SourceReader for PostgresSourceReader<T> {
    type Item = T;

    fn poll<F: FnMut(T)>(&mut self, budget: usize, mut out: F) -> Result<Poll> {
        if self.finished {
            return Ok(Poll::Done);
        }
        if self.rx.is_none() {
            self.start()?;
            if self.finished {
                return Ok(Poll::Done);
            }
        }
        let mut handled = 0;
        while handled < budget {
            if let Some(raw) = self.rows.pop_front() {
                handled += 1;
                match serde_json::from_str::<T>(&raw) {
                    Ok(record) => {
                        self.records += 1;
                        out(record);
                    }
                    Err(e) => self.bad_record(&raw, &e.to_string())?,
                }
                self.position += 1;
                continue;
            }
            let Some(rx) = &self.rx else {
                return Ok(Poll::Done);
            };
            match rx.try_recv() {
                Ok(Fetched::Rows(rows)) => self.rows.extend(rows),
                Ok(Fetched::End) => {
                    self.finished = true;
                    if self.bad > 0 {
                        tracing::warn!(connector = %self.what, bad = self.bad, "rows that could not be decoded were skipped");
                    }
                    return Ok(if handled > 0 { Poll::More } else { Poll::Done });
                }
                Ok(Fetched::Failed(e)) => return Err(e),
                Err(mpsc::TryRecvError::Empty) => {
                    return Ok(if handled > 0 { Poll::More } else { Poll::Idle });
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(RuntimeError::internal(format!(
                        "{}: its reading thread stopped",
                        self.what
                    )))
                }
            }
        }
        Ok(Poll::More)
    }

    fn bad_records(&self) -> u64 {
        self.bad
    }

    fn progress(&self) -> (u64, Option<u64>) {
        (self.records, None)
    }

    fn position(&self) -> Option<Vec<u8>> {
        if !self.checkpointable {
            return None;
        }
        crate::checkpoint::encode(
            "the postgres source's position",
            &(self.position, self.records, self.bad),
        )
        .ok()
    }

    fn seek(&mut self, position: &[u8]) -> Result<()> {
        let (rows, records, bad): (u64, u64, u64) =
            crate::checkpoint::decode("the postgres source's position", position)?;
        if self.rx.is_some() {
            return Err(RuntimeError::internal(format!(
                "{}: seek after reading began",
                self.what
            )));
        }
        self.skip = rows;
        self.position = rows;
        self.records = records;
        self.bad = bad;
        Ok(())
    }
}

//! PostgreSQL sink: records as rows of a table, inserted or upserted on a key (deletes of an
//! updating stream delete by key); exactly-once with checkpoints, at-least-once without.

use super::{quote_ident, quote_name, Conn, PgFuture, DEFAULT_RETRY_TIMEOUT};
use crate::changelog::Change;
use crate::checkpoint::Committer;
use crate::error::{Result, RuntimeError};
use crate::sinks::{Guarantee, Sink, SinkContext, SinkWriter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// The table where exactly-once sinks record the newest checkpoint each instance committed.
pub const DEFAULT_PROGRESS_TABLE: &str = "weir_sink_progress";

/// Rows per statement, and (without checkpoints) rows buffered before a write.
const DEFAULT_BATCH_ROWS: usize = 5_000;

/// Without checkpoints: the longest a buffered row waits before it is written.
const DEFAULT_BATCH_INTERVAL: Duration = Duration::from_secs(1);

/// How rows reach the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `INSERT`: every record is a new row.
    Insert,
    /// `INSERT … ON CONFLICT (key) DO UPDATE`: the newest record of a key is its row.
    Upsert,
}

/// What one record asks of the table.
enum Op {
    /// Insert or upsert this row (columns → values).
    Write(Map<String, Value>),
    /// Delete the row with this row's key.
    Delete(Map<String, Value>),
    /// Nothing (an `UpdateBefore`: the `UpdateAfter` that follows replaces the row).
    Skip,
}

/// Turns a record into an [`Op`]; the error says what the record is instead of a row.
type EncodeFn<T> = fn(T) -> std::result::Result<Op, String>;

fn json_row<T: Serialize>(record: T) -> std::result::Result<Map<String, Value>, String> {
    match serde_json::to_value(record) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "a record serializes as {} instead of an object of named fields",
            kind_of(&other)
        )),
        Err(e) => Err(format!("cannot serialize a record: {e}")),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "an object",
    }
}

fn encode_record<T: Serialize>(record: T) -> std::result::Result<Op, String> {
    json_row(record).map(Op::Write)
}

fn encode_change<T: Serialize>(change: Change<T>) -> std::result::Result<Op, String> {
    match change {
        Change::Insert(v) | Change::UpdateAfter(v) => json_row(v).map(Op::Write),
        Change::Delete(v) => json_row(v).map(Op::Delete),
        Change::UpdateBefore(_) => Ok(Op::Skip),
    }
}

/// A sink writing records as rows of one PostgreSQL table.
///
/// Each record (a `#[weir::record]` struct) becomes one row: every serde field goes to the
/// column of the same name (rename with [`column`](Self::column), leave out with
/// [`ignore_field`](Self::ignore_field)). Values are converted by PostgreSQL itself from
/// their JSON form (`json_populate_recordset`), so numbers fit `integer`/`bigint`/`numeric`/
/// `double precision` columns, strings fit `text`, `date`, `timestamptz` (ISO 8601) and
/// enum columns, and nested structs fit `json`/`jsonb` columns. Columns the record does not
/// have keep their defaults.
///
/// - [`insert`](PostgresSink::insert): every record is a new row.
/// - [`upsert`](PostgresSink::upsert): `INSERT … ON CONFLICT (key) DO UPDATE`, the key
///   being the table's primary key unless [`key`](Self::key) names other columns (of a
///   unique index): the newest record of a key is its row, so a window that fires again
///   overwrites its earlier result.
/// - [`changelog`](PostgresSink::changelog): an updating stream of [`Change`]s applied by
///   key: `Insert`/`UpdateAfter` upsert, `Delete` deletes the key's row, `UpdateBefore` is
///   skipped (the `UpdateAfter` that follows replaces the row).
///
/// The table must exist when the job starts (the sink checks it and its columns, and says
/// so once if not); the job never creates or alters it.
///
/// **Guarantee: exactly-once with checkpoints, at-least-once without.**
///
/// - *With checkpoints* (`run --checkpoint-interval`), each instance keeps the rows of a
///   checkpoint (in memory and in the checkpoint itself) and writes them only once the
///   checkpoint is complete on every worker, in **one transaction** together with the
///   checkpoint id in a progress table (`weir_sink_progress(job, operator, instance,
///   target_table, checkpoint)`, created if missing; see
///   [`progress_table`](Self::progress_table)). After
///   a crash the job resumes from its last complete checkpoint: the rows that checkpoint
///   holds are committed then unless the progress table shows they already were, and rows
///   of later, incomplete checkpoints are produced again and written once their checkpoint
///   completes. No `PREPARE TRANSACTION` is needed. Rows become visible at checkpoint
///   completion, so the checkpoint interval is the output's latency; a checkpoint's rows
///   are held in memory until then (upserts keep only the newest row per key). Progress is
///   kept per job name, operator, instance and table: two running copies of one job must
///   not write the same table.
/// - *Without checkpoints*, rows are written in batches — when [`batch_rows`](Self::batch_rows)
///   rows are buffered, when the oldest buffered row has waited
///   [`batch_interval`](Self::batch_interval), and when the input ends — each batch in one
///   transaction. A failed job run again from the start writes its rows again: inserts can
///   then be duplicated (upserts cannot).
///
/// A server that cannot be reached, or a connection that breaks, is retried with backoff
/// (reconnecting) for [`retry_timeout`](Self::retry_timeout) before the job fails; a wrong
/// user, password or database fails the job at start with one line.
///
/// ```text
/// stream.sink(PostgresSink::upsert::<WindowTotal>(env.arg("pg"), "customer_totals"))
/// ```
pub struct PostgresSink<T> {
    url: String,
    table: String,
    mode: Mode,
    changelog: bool,
    key: Option<Vec<String>>,
    renames: Vec<(String, String)>,
    ignored: Vec<String>,
    batch_rows: usize,
    batch_interval: Duration,
    retry_timeout: Duration,
    progress_table: String,
    encode: EncodeFn<T>,
    _t: PhantomData<fn(T)>,
}

impl PostgresSink<()> {
    /// Insert every record as a new row of `table`:
    /// `PostgresSink::insert::<Order>(env.arg("pg"), "orders")`.
    pub fn insert<T: Serialize>(
        url: impl Into<String>,
        table: impl Into<String>,
    ) -> PostgresSink<T> {
        PostgresSink::with(
            url.into(),
            table.into(),
            Mode::Insert,
            false,
            encode_record::<T>,
        )
    }

    /// Upsert every record on the table's primary key (or [`key`](PostgresSink::key)).
    pub fn upsert<T: Serialize>(
        url: impl Into<String>,
        table: impl Into<String>,
    ) -> PostgresSink<T> {
        PostgresSink::with(
            url.into(),
            table.into(),
            Mode::Upsert,
            false,
            encode_record::<T>,
        )
    }

    /// Apply an updating stream's changes by key: upsert inserts and updates, delete
    /// deletions.
    pub fn changelog<T: Serialize>(
        url: impl Into<String>,
        table: impl Into<String>,
    ) -> PostgresSink<Change<T>> {
        PostgresSink::with(
            url.into(),
            table.into(),
            Mode::Upsert,
            true,
            encode_change::<T>,
        )
    }
}

impl<T> PostgresSink<T> {
    fn with(url: String, table: String, mode: Mode, changelog: bool, encode: EncodeFn<T>) -> Self {
        PostgresSink {
            url,
            table,
            mode,
            changelog,
            key: None,
            renames: Vec::new(),
            ignored: Vec::new(),
            batch_rows: DEFAULT_BATCH_ROWS,
            batch_interval: DEFAULT_BATCH_INTERVAL,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            progress_table: DEFAULT_PROGRESS_TABLE.to_string(),
            encode,
            _t: PhantomData,
        }
    }

    /// Upsert on these columns instead of the primary key (they must form a unique index).
    pub fn key<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.key = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// Write the record field `field` into the column `column`.
    pub fn column(mut self, column: impl Into<String>, field: impl Into<String>) -> Self {
        self.renames.push((field.into(), column.into()));
        self
    }

    /// Do not write the record field `field`.
    pub fn ignore_field(mut self, field: impl Into<String>) -> Self {
        self.ignored.push(field.into());
        self
    }

    /// Rows per statement; without checkpoints also the rows buffered before a batch is
    /// written (default 5,000).
    pub fn batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    /// Without checkpoints: write buffered rows once the oldest has waited this long
    /// (default 1 s).
    pub fn batch_interval(mut self, interval: Duration) -> Self {
        self.batch_interval = interval;
        self
    }

    /// How long to keep retrying an unreachable server or a broken connection (at start and
    /// for every batch or commit) before the job fails (default 30 s).
    pub fn retry_timeout(mut self, timeout: Duration) -> Self {
        self.retry_timeout = timeout;
        self
    }

    /// The table recording committed checkpoints (default `weir_sink_progress`; created if
    /// missing, with columns `job, operator, instance, target_table, checkpoint`).
    pub fn progress_table(mut self, table: impl Into<String>) -> Self {
        self.progress_table = table.into();
        self
    }

    /// The table written.
    pub fn table(&self) -> &str {
        &self.table
    }
}

impl<T> Clone for PostgresSink<T> {
    fn clone(&self) -> Self {
        PostgresSink {
            url: self.url.clone(),
            table: self.table.clone(),
            mode: self.mode,
            changelog: self.changelog,
            key: self.key.clone(),
            renames: self.renames.clone(),
            ignored: self.ignored.clone(),
            batch_rows: self.batch_rows,
            batch_interval: self.batch_interval,
            retry_timeout: self.retry_timeout,
            progress_table: self.progress_table.clone(),
            encode: self.encode,
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for PostgresSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection string may hold a password: not shown.
        f.debug_struct("PostgresSink")
            .field("table", &self.table)
            .field("mode", &self.mode)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The rows of one batch or checkpoint.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Rows {
    /// Insert mode: rows (JSON objects) in arrival order.
    append: Vec<String>,
    /// Upsert mode: the newest change per key (JSON of the key's values): `(delete, row)`.
    keyed: BTreeMap<String, (bool, String)>,
}

impl Rows {
    fn len(&self) -> usize {
        self.append.len() + self.keyed.len()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a checkpoint stores for one sink instance: the rows of checkpoints not yet known to
/// be committed, by checkpoint.
#[derive(Serialize)]
struct PendingRef<'a> {
    columns: &'a Option<Vec<String>>,
    groups: &'a [(u64, Rows)],
}

/// [`PendingRef`], read back.
#[derive(Deserialize)]
struct PendingOwned {
    columns: Option<Vec<String>>,
    groups: Vec<(u64, Rows)>,
}

/// The statements for a table and the columns the records fill.
#[derive(Debug, Clone)]
struct Statements {
    insert: String,
    delete: String,
}

/// Where an exactly-once instance records its progress.
#[derive(Debug, Clone)]
struct Progress {
    /// `SELECT checkpoint … FOR UPDATE`.
    select: String,
    /// Upsert the checkpoint.
    set: String,
    job: String,
    operator: String,
    instance: i32,
    /// The table written (two sinks of one job may write two tables).
    target: String,
}

/// One transaction's work, for [`apply`].
struct Work<'a> {
    statements: &'a Statements,
    groups: &'a [(u64, Rows)],
    progress: Option<&'a Progress>,
    chunk: usize,
}

/// Write `work` in one transaction; with progress, skip groups of checkpoints already
/// committed and record the newest. Returns the rows written.
fn apply<'c>(client: &'c mut Client, work: &'c Work<'_>) -> PgFuture<'c, u64> {
    Box::pin(async move {
        let tx = client.transaction().await?;
        let mut done: Option<i64> = None;
        if let Some(p) = work.progress {
            let row = tx
                .query_opt(&p.select, &[&p.job, &p.operator, &p.instance, &p.target])
                .await?;
            done = match row {
                Some(r) => Some(r.try_get(0)?),
                None => None,
            };
        }
        let mut written = 0;
        let mut newest = None;
        for (c, rows) in work.groups {
            let c = *c as i64;
            if done.is_some_and(|d| c <= d) {
                continue;
            }
            newest = Some(c);
            let (deletes, writes): (Vec<&String>, Vec<&String>) = if rows.keyed.is_empty() {
                (Vec::new(), rows.append.iter().collect())
            } else {
                let (d, w): (Vec<_>, Vec<_>) = rows.keyed.values().partition(|(del, _)| *del);
                (
                    d.into_iter().map(|(_, r)| r).collect(),
                    w.into_iter().map(|(_, r)| r).collect(),
                )
            };
            for (sql, list) in [
                (&work.statements.delete, deletes),
                (&work.statements.insert, writes),
            ] {
                for chunk in list.chunks(work.chunk) {
                    let mut json =
                        String::with_capacity(chunk.iter().map(|r| r.len() + 1).sum::<usize>() + 2);
                    json.push('[');
                    for (i, r) in chunk.iter().enumerate() {
                        if i > 0 {
                            json.push(',');
                        }
                        json.push_str(r);
                    }
                    json.push(']');
                    tx.execute(sql.as_str(), &[&json]).await?;
                    written += chunk.len() as u64;
                }
            }
        }
        if let (Some(p), Some(c)) = (work.progress, newest) {
            tx.execute(&p.set, &[&p.job, &p.operator, &p.instance, &p.target, &c])
                .await?;
        }
        tx.commit().await?;
        Ok(written)
    })
}

/// Create the progress table unless it exists (two instances may race: the loser's error
/// about the existing table is fine).
fn create_progress<'c>(client: &'c mut Client, sql: &'c str) -> PgFuture<'c, ()> {
    Box::pin(async move {
        match client.batch_execute(sql).await {
            Err(e)
                if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                    || e.code() == Some(&SqlState::DUPLICATE_TABLE) =>
            {
                Ok(())
            }
            r => r,
        }
    })
}

/// Run one statement with the instance's progress key (`$1..$4`) and optionally a
/// checkpoint (`$5`); returns the rows affected.
fn progress_statement<'c>(
    client: &'c mut Client,
    args: &'c (String, Progress, Option<i64>),
) -> PgFuture<'c, u64> {
    Box::pin(async move {
        let (sql, p, c) = args;
        match c {
            Some(c) => {
                client
                    .execute(
                        sql.as_str(),
                        &[&p.job, &p.operator, &p.instance, &p.target, c],
                    )
                    .await
            }
            None => {
                client
                    .execute(sql.as_str(), &[&p.job, &p.operator, &p.instance, &p.target])
                    .await
            }
        }
    })
}

/// What the sink needs to know about its table.
struct TableShape {
    /// Column names, in order.
    columns: Vec<String>,
    /// The primary key's columns (empty: none).
    primary: Vec<String>,
    /// The column sets of its unique indexes (without predicates), the primary key's too.
    unique: Vec<Vec<String>>,
}

/// The table's shape, or `None` if it does not exist.
fn table_shape<'c>(client: &'c mut Client, quoted: &'c String) -> PgFuture<'c, Option<TableShape>> {
    Box::pin(async move {
        let exists = client
            .query_one("SELECT to_regclass($1)::text", &[quoted])
            .await?;
        if exists.try_get::<_, Option<String>>(0)?.is_none() {
            return Ok(None);
        }
        let columns = client
            .query(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                &[quoted],
            )
            .await?
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut shape = TableShape {
            columns,
            primary: Vec::new(),
            unique: Vec::new(),
        };
        for r in client
            .query(
                "SELECT i.indisprimary, array_agg(a.attname::text ORDER BY a.attnum) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL GROUP BY i.indexrelid, i.indisprimary",
                &[quoted],
            )
            .await?
        {
            let cols: Vec<String> = r.try_get(1)?;
            if r.try_get::<_, bool>(0)? {
                shape.primary = cols.clone();
            }
            shape.unique.push(cols);
        }
        Ok(Some(shape))
    })
}

impl<T: 'static> Sink<T> for PostgresSink<T> {
    type Writer = PostgresSinkWriter<T>;

    fn describe(&self) -> String {
        let mode = match (self.mode, self.changelog, &self.key) {
            (Mode::Insert, ..) => "insert".to_string(),
            (Mode::Upsert, cl, key) => format!(
                "{} on {}",
                if cl {
                    "changelog upsert/delete"
                } else {
                    "upsert"
                },
                key.as_ref()
                    .map_or_else(|| "the primary key".to_string(), |k| k.join(", "))
            ),
        };
        format!(
            "postgres table `{}` ({mode}; exactly-once with checkpoints, else at-least-once)",
            self.table
        )
    }

    fn guarantee(&self) -> Guarantee {
        // With checkpoints rows are committed with the checkpoint id in one transaction.
        Guarantee::ExactlyOnce
    }

    fn open(&self, ctx: &SinkContext) -> Result<Self::Writer> {
        let what = format!("postgres sink `{}`", ctx.operator);
        let mut conn = Conn::open(&self.url, what.clone(), self.retry_timeout)?;
        let quoted = quote_name(&self.table);
        let Some(TableShape {
            columns,
            primary,
            unique,
        }) = conn.run(
            &format!("reading table `{}`", self.table),
            &quoted,
            table_shape,
        )?
        else {
            return Err(RuntimeError::user(format!(
                "{what}: table `{}` does not exist in {}; create it before starting the job (names are case-sensitive; qualify it as schema.table if it is not on the search path)",
                self.table,
                conn.target()
            )));
        };
        let key = match (self.mode, &self.key) {
            (Mode::Insert, _) => Vec::new(),
            (Mode::Upsert, Some(k)) if !k.is_empty() => k.clone(),
            (Mode::Upsert, _) if !primary.is_empty() => primary,
            (Mode::Upsert, _) => {
                return Err(RuntimeError::user(format!(
                    "{what}: table `{}` has no primary key to upsert on; add one, or name the key columns (of a unique index) with .key([...])",
                    self.table
                )))
            }
        };
        if let Some(missing) = key.iter().find(|k| !columns.contains(k)) {
            return Err(RuntimeError::user(format!(
                "{what}: the key column `{missing}` is not a column of table `{}` (its columns: {})",
                self.table,
                columns.join(", ")
            )));
        }
        let same_set =
            |cols: &Vec<String>| cols.len() == key.len() && cols.iter().all(|c| key.contains(c));
        if !key.is_empty() && !unique.iter().any(same_set) {
            return Err(RuntimeError::user(format!(
                "{what}: no unique index of table `{}` has exactly the key columns ({}), which upserts (ON CONFLICT) need; create one (CREATE UNIQUE INDEX … ({})) or name the columns of an existing one with .key([...])",
                self.table,
                key.join(", "),
                key.join(", ")
            )));
        }
        let shared = Shared {
            conn,
            quoted,
            table: self.table.clone(),
            table_columns: columns,
            key,
            statements: None,
            columns: None,
            chunk: self.batch_rows,
            progress: None,
            progress_table: self.progress_table.clone(),
            pending: Vec::new(),
        };
        Ok(PostgresSinkWriter {
            shared: Rc::new(RefCell::new(shared)),
            what,
            job: ctx.job.clone(),
            operator: ctx.operator.clone(),
            instance: ctx.instance,
            encode: self.encode,
            mode: self.mode,
            renames: self.renames.clone(),
            ignored: self.ignored.clone(),
            batch_rows: self.batch_rows,
            batch_interval: self.batch_interval,
            current: Rows::default(),
            since: None,
            two_phase: false,
            records: 0,
            written: Rc::new(std::cell::Cell::new(0)),
            _t: PhantomData,
        })
    }
}

/// What the writer and its committer share.
struct Shared {
    conn: Conn,
    /// The table name, quoted.
    quoted: String,
    /// The table name as given.
    table: String,
    table_columns: Vec<String>,
    /// Upsert key columns (empty: insert).
    key: Vec<String>,
    statements: Option<Statements>,
    /// The columns the records fill, known from the first record (or a checkpoint).
    columns: Option<Vec<String>>,
    chunk: usize,
    /// Set in two-phase mode once the progress table is there.
    progress: Option<Progress>,
    progress_table: String,
    /// Pre-committed rows waiting for their checkpoint to complete.
    pending: Vec<(u64, Rows)>,
}

impl Shared {
    /// Fix the columns the records fill and build the statements.
    fn set_columns(&mut self, columns: Vec<String>, what: &str) -> Result<()> {
        if let Some(bad) = columns.iter().find(|c| !self.table_columns.contains(c)) {
            return Err(RuntimeError::user(format!(
                "{what}: table `{}` has no column `{bad}` for the record field of that name (its columns: {}); add the column, write the field into another column with .column(\"column\", \"{bad}\"), or leave it out with .ignore_field(\"{bad}\")",
                self.table,
                self.table_columns.join(", ")
            )));
        }
        if let Some(missing) = self.key.iter().find(|k| !columns.contains(k)) {
            return Err(RuntimeError::user(format!(
                "{what}: the records have no field for the key column `{missing}` of table `{}`; add the field or map one to it with .column(\"{missing}\", \"field\")",
                self.table
            )));
        }
        let t = &self.quoted;
        let cols = columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let source = format!("json_populate_recordset(NULL::{t}, $1::text::json)");
        let mut insert = format!("INSERT INTO {t} ({cols}) SELECT {cols} FROM {source}");
        if !self.key.is_empty() {
            let keys = self
                .key
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ");
            let updates: Vec<String> = columns
                .iter()
                .filter(|c| !self.key.contains(c))
                .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
                .collect();
            if updates.is_empty() {
                insert.push_str(&format!(" ON CONFLICT ({keys}) DO NOTHING"));
            } else {
                insert.push_str(&format!(
                    " ON CONFLICT ({keys}) DO UPDATE SET {}",
                    updates.join(", ")
                ));
            }
        }
        let matches = self
            .key
            .iter()
            .map(|c| format!("weir_t.{0} = weir_d.{0}", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let delete = format!("DELETE FROM {t} AS weir_t USING {source} AS weir_d WHERE {matches}");
        self.statements = Some(Statements { insert, delete });
        self.columns = Some(columns);
        Ok(())
    }

    /// Write `groups` in one transaction (with progress: only those not committed yet).
    fn write(&mut self, groups: &[(u64, Rows)], doing: &str) -> Result<u64> {
        if groups.iter().all(|(_, r)| r.is_empty()) {
            return Ok(0);
        }
        let Some(statements) = &self.statements else {
            return Err(RuntimeError::internal(format!(
                "postgres sink for `{}`: rows without statements",
                self.table
            )));
        };
        let work = Work {
            statements,
            groups,
            progress: self.progress.as_ref(),
            chunk: self.chunk,
        };
        self.conn.run(doing, &work, apply)
    }

    /// Commit the pending rows of checkpoints up to `checkpoint`.
    fn commit(&mut self, checkpoint: u64) -> Result<u64> {
        let due = self
            .pending
            .iter()
            .take_while(|(c, _)| *c <= checkpoint)
            .count();
        if due == 0 {
            return Ok(0);
        }
        let groups: Vec<(u64, Rows)> = self.pending.drain(..due).collect();
        let r = self.write(&groups, &format!("committing checkpoint {checkpoint}"));
        if r.is_err() {
            // Kept for the checkpoint that restores them after the failure.
            let rest = std::mem::take(&mut self.pending);
            self.pending = groups;
            self.pending.extend(rest);
        }
        r
    }
}

/// An open [`PostgresSink`] instance.
pub struct PostgresSinkWriter<T> {
    shared: Rc<RefCell<Shared>>,
    what: String,
    job: String,
    operator: String,
    instance: usize,
    encode: EncodeFn<T>,
    mode: Mode,
    renames: Vec<(String, String)>,
    ignored: Vec<String>,
    batch_rows: usize,
    batch_interval: Duration,
    /// Rows since the last batch (or checkpoint).
    current: Rows,
    /// When the oldest row of `current` arrived.
    since: Option<Instant>,
    two_phase: bool,
    records: u64,
    /// Rows written to the table so far (also by the committer).
    written: Rc<std::cell::Cell<u64>>,
    _t: PhantomData<fn(T)>,
}

impl<T> PostgresSinkWriter<T> {
    /// Records accepted so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Rows written to the table so far (statements committed).
    pub fn rows_written(&self) -> u64 {
        self.written.get()
    }

    /// Apply the field mapping to a row.
    fn map_row(&self, mut row: Map<String, Value>) -> Map<String, Value> {
        for f in &self.ignored {
            row.remove(f);
        }
        for (field, column) in &self.renames {
            if let Some(v) = row.remove(field) {
                row.insert(column.clone(), v);
            }
        }
        row
    }

    fn add(&mut self, delete: bool, row: Map<String, Value>) -> Result<()> {
        let row = self.map_row(row);
        let mut shared = self.shared.borrow_mut();
        if shared.columns.is_none() {
            shared.set_columns(row.keys().cloned().collect(), &self.what)?;
        }
        let text = serde_json::to_string(&row).map_err(|e| {
            RuntimeError::internal(format!("{}: cannot encode a row: {e}", self.what))
        })?;
        match self.mode {
            Mode::Insert if delete => {
                return Err(RuntimeError::user(format!(
                    "{}: a delete reached an insert-only sink; write updating streams with PostgresSink::changelog",
                    self.what
                )))
            }
            Mode::Insert => self.current.append.push(text),
            Mode::Upsert => {
                let key: Vec<&Value> = shared
                    .key
                    .iter()
                    .map(|k| row.get(k).unwrap_or(&Value::Null))
                    .collect();
                let key = serde_json::to_string(&key).map_err(|e| {
                    RuntimeError::internal(format!("{}: cannot encode a key: {e}", self.what))
                })?;
                self.current.keyed.insert(key, (delete, text));
            }
        }
        if self.since.is_none() {
            self.since = Some(Instant::now());
        }
        Ok(())
    }

    /// Without checkpoints: write the buffered rows in one transaction.
    fn flush(&mut self) -> Result<()> {
        self.since = None;
        if self.current.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.current);
        let n = rows.len();
        let written = self
            .shared
            .borrow_mut()
            .write(&[(0, rows)], &format!("writing a batch ({n} rows)"))?;
        self.written.set(self.written.get() + written);
        Ok(())
    }

    fn progress_key(&self) -> Result<(String, i32)> {
        let instance = i32::try_from(self.instance).map_err(|_| {
            RuntimeError::internal(format!(
                "{}: instance {} out of range",
                self.what, self.instance
            ))
        })?;
        Ok((self.operator.clone(), instance))
    }

    /// Make sure the progress table exists and the statements on it are ready.
    fn ensure_progress(&mut self) -> Result<Progress> {
        if let Some(p) = &self.shared.borrow().progress {
            return Ok(p.clone());
        }
        let (operator, instance) = self.progress_key()?;
        let mut shared = self.shared.borrow_mut();
        let t = quote_name(&shared.progress_table);
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {t} (job text NOT NULL, operator text NOT NULL, instance integer NOT NULL, target_table text NOT NULL, checkpoint bigint NOT NULL, committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job, operator, instance, target_table))"
        );
        shared.conn.run(
            "creating the progress table",
            create.as_str(),
            create_progress,
        )?;
        let p = Progress {
            select: format!(
                "SELECT checkpoint FROM {t} WHERE job = $1 AND operator = $2 AND instance = $3 AND target_table = $4 FOR UPDATE"
            ),
            set: format!(
                "INSERT INTO {t} (job, operator, instance, target_table, checkpoint) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job, operator, instance, target_table) DO UPDATE SET checkpoint = EXCLUDED.checkpoint, committed_at = now()"
            ),
            job: self.job.clone(),
            operator,
            instance,
            target: shared.table.clone(),
        };
        shared.progress = Some(p.clone());
        Ok(p)
    }
}

impl<T: 'static> SinkWriter<T> for PostgresSinkWriter<T> {
    fn write(&mut self, record: T) -> Result<()> {
        let op = (self.encode)(record).map_err(|e| {
            RuntimeError::user(format!(
                "{}: {e}; write records that are structs with named fields (#[weir::record])",
                self.what
            ))
        })?;
        match op {
            Op::Write(row) => self.add(false, row)?,
            Op::Delete(row) => self.add(true, row)?,
            Op::Skip => return Ok(()),
        }
        self.records += 1;
        if !self.two_phase && self.current.len() >= self.batch_rows {
            self.flush()?;
        }
        Ok(())
    }

    fn epoch_complete(&mut self, _epoch: u64) -> Result<()> {
        if !self.two_phase
            && self
                .since
                .is_some_and(|s| s.elapsed() >= self.batch_interval)
        {
            self.flush()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if self.two_phase {
            // The final checkpoint's commit writes the last rows.
            return Ok(());
        }
        self.flush()?;
        tracing::debug!(connector = %self.what, records = self.records, rows = self.written.get(), "postgres sink closed");
        Ok(())
    }

    fn two_phase(&mut self) -> Option<Committer> {
        self.two_phase = true;
        let shared = Rc::clone(&self.shared);
        let written = Rc::clone(&self.written);
        Some(Box::new(move |checkpoint: u64| {
            let n = shared.borrow_mut().commit(checkpoint)?;
            written.set(written.get() + n);
            Ok(())
        }))
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Vec<u8>> {
        self.since = None;
        let mut shared = self.shared.borrow_mut();
        if !self.current.is_empty() {
            shared
                .pending
                .push((checkpoint, std::mem::take(&mut self.current)));
        }
        crate::checkpoint::encode(
            "the postgres sink's pending rows",
            &PendingRef {
                columns: &shared.columns,
                groups: &shared.pending,
            },
        )
    }

    fn recover(&mut self, checkpoint: u64, pending: Option<&[u8]>) -> Result<()> {
        let p = self.ensure_progress()?;
        self.current = Rows::default();
        self.since = None;
        let mut shared = self.shared.borrow_mut();
        shared.pending.clear();
        let Some(bytes) = pending else {
            // A fresh start: a previous run's progress does not apply to this run's
            // checkpoints.
            let sql = format!(
                "DELETE FROM {} WHERE job = $1 AND operator = $2 AND instance = $3 AND target_table = $4",
                quote_name(&shared.progress_table)
            );
            shared.conn.run(
                "resetting the progress table",
                &(sql, p, None),
                progress_statement,
            )?;
            return Ok(());
        };
        let restored: PendingOwned =
            crate::checkpoint::decode("the postgres sink's pending rows", bytes)?;
        if shared.columns.is_none() {
            if let Some(columns) = restored.columns {
                shared.set_columns(columns, &self.what)?;
            }
        }
        // The restored checkpoint is complete: its rows are committed unless they were.
        let n = shared.write(
            &restored.groups,
            &format!("committing the rows of restored checkpoint {checkpoint}"),
        )?;
        self.written.set(self.written.get() + n);
        // Rows of newer checkpoints committed before a fall-back to this one are in the
        // table already; the checkpoints that follow reuse their ids.
        let sql = format!(
            "UPDATE {} SET checkpoint = $5 WHERE job = $1 AND operator = $2 AND instance = $3 AND target_table = $4 AND checkpoint > $5",
            quote_name(&shared.progress_table)
        );
        let c = i64::try_from(checkpoint).map_err(|_| {
            RuntimeError::internal(format!(
                "{}: checkpoint {checkpoint} out of range",
                self.what
            ))
        })?;
        let lowered = shared.conn.run(
            "updating the progress table",
            &(sql, p, Some(c)),
            progress_statement,
        )?;
        if lowered > 0 {
            tracing::warn!(connector = %self.what, checkpoint, "rows of checkpoints after the restored one were committed already and will be written again (inserts may repeat; upserts are unaffected)");
        }
        Ok(())
    }
}

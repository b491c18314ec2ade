//! The records and the logic of the `cdc-fanout` and `nats-archive` jobs, shared by both
//! binaries and their tests.

use weir::prelude::*;

/// One change of a row of an `orders` table, as a change-data-capture tool emits it.
#[weir::record]
pub struct RowChange {
    /// The row's primary key.
    pub id: u64,
    /// `"upsert"` (insert or update) or `"delete"`.
    pub op: String,
    /// The row's version: every change of a row has a higher one.
    pub version: u64,
    /// Who ordered.
    pub customer: String,
    /// Amount in cents.
    pub amount_cents: i64,
}

/// A row as the cache holds it.
#[weir::record]
pub struct Row {
    /// The primary key.
    pub id: u64,
    /// The version the cache holds.
    pub version: u64,
    /// Who ordered.
    pub customer: String,
    /// Amount in cents.
    pub amount_cents: i64,
}

/// The newer of two changes of one row (changes may arrive out of order from a source
/// read in parallel splits).
pub fn newest(a: RowChange, b: RowChange) -> RowChange {
    if b.version >= a.version {
        b
    } else {
        a
    }
}

/// The change to apply to the cache: an upsert writes the row, a delete removes it.
pub fn to_change(c: RowChange) -> Change<Row> {
    let delete = c.op == "delete";
    let row = Row {
        id: c.id,
        version: c.version,
        customer: c.customer,
        amount_cents: c.amount_cents,
    };
    if delete {
        Change::Delete(row)
    } else {
        Change::Insert(row)
    }
}

/// The NATS server: `--arg nats=…`, else `NATS_URL`, else the local default.
pub fn nats_url(given: String) -> String {
    if !given.is_empty() {
        return given;
    }
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// The Redis server: `--arg redis=…`, else `REDIS_URL`, else the local default.
pub fn redis_url(given: String) -> String {
    if !given.is_empty() {
        return given;
    }
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

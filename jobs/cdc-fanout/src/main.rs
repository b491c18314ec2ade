//! A change stream of an `orders` table fanned out to two systems:
//!
//! - every change, as it comes, to a NATS JetStream subject (the change log other services
//!   consume) — exactly-once with checkpoints, through de-duplicated message ids;
//! - the current version of every row to Redis (`SET <prefix><id> <row as JSON>`), a cache
//!   an application reads; a deleted row's key is removed. The newest version per row is
//!   kept by a keyed reduce, so the cache ends up exact whatever the order of arrival and
//!   however often the job restarts.
//!
//! The changes come from a JSON-lines file (`--arg input=…`), as a CDC tool would export
//! them; malformed lines are skipped and counted.
//!
//! ```text
//! nats stream add ORDERS_CHANGES --subjects 'orders.changes' --defaults
//! cargo run --release -p cdc-fanout --bin cdc-fanout -- run --workers 4 \
//!     --checkpoint-interval 1s --arg input=changes.jsonl --arg subject=orders.changes \
//!     --arg nats=nats://127.0.0.1:4222 --arg redis=redis://127.0.0.1:6379 --arg key_prefix=order:
//! ```

use cdc_fanout::{nats_url, newest, redis_url, to_change, Row, RowChange};
use weir::prelude::*;

#[weir::job(name = "cdc-fanout")]
fn pipeline(env: &mut Env) {
    let nats = nats_url(env.arg_or("nats", ""));
    let redis = redis_url(env.arg_or("redis", ""));
    let changes = env
        .source(FileSource::json_lines::<RowChange>(env.arg("input")))
        .name("changes");
    changes
        .sink(NatsSink::json::<RowChange>(nats, env.arg("subject")))
        .name("changelog");
    changes
        .key_by(|c| c.id)
        .reduce(newest)
        .name("latest")
        .map(to_change)
        .name("to-change")
        .sink(RedisSink::<Row>::set_by_field(
            redis,
            env.arg_or("key_prefix", "order:"),
            "id",
        ))
        .name("cache");
}

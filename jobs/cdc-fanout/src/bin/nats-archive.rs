//! A NATS JetStream stream archived to JSON-lines part files: read (bounded) up to the
//! stream's last message at start, with the stream sequence checkpointed, so that a job
//! restarted after a failure replays from exactly the message after its last checkpoint
//! and the archive holds every message once.
//!
//! ```text
//! cargo run --release -p cdc-fanout --bin nats-archive -- run --workers 2 \
//!     --checkpoint-interval 1s --arg stream=ORDERS_CHANGES --arg output=/tmp/archive
//! ```

use cdc_fanout::{nats_url, RowChange};
use weir::prelude::*;

#[weir::job(name = "nats-archive")]
fn pipeline(env: &mut Env) {
    let nats = nats_url(env.arg_or("nats", ""));
    let bounded = env.arg_or("bounded", "true") == "true";
    env.source(NatsSource::json::<RowChange>(nats, env.arg("stream")).bounded_if(bounded))
        .name("changes")
        .sink(FileSink::json_lines(env.arg("output")))
        .name("archive");
}

//! Nexmark, the standard streaming benchmark, as weir jobs.
//!
//! - [`NexmarkSource`]: the `nexmark` crate's deterministic generator as a weir source
//!   (fixed base time, configurable event rate, split across instances by offset and step).
//! - [`queries`]: one `#[weir::job]` per query; the `nexmark` binary runs the one named by
//!   `--arg query=qN`.
//!
//! ```text
//! cargo run --release -p weir-nexmark -- run --workers 4 --arg query=q5 \
//!     --arg events=1000000 --arg event_rate=10000 --arg output=out/q5
//! ```

pub mod bench;
pub mod event;
pub mod queries;
pub mod sink;
pub mod source;
pub mod timely_ref;

pub use event::{Auction, Bid, Event, Person};
pub use sink::QuerySink;
pub use source::{GeneratorConfig, NexmarkSource};

/// A query's job, as `#[weir::job]` generates it.
pub type JobFn = fn() -> weir::runtime::job::Job;

/// The queries this crate implements, by name.
pub const QUERIES: &[(&str, JobFn)] = &[
    ("q0", queries::q0),
    ("q1", queries::q1),
    ("q2", queries::q2),
    ("q3", queries::q3),
    ("q4", queries::q4),
    ("q5", queries::q5),
    ("q7", queries::q7),
    ("q8", queries::q8),
    ("q11", queries::q11),
    ("q12", queries::q12),
    ("q14", queries::q14),
    ("q17", queries::q17),
    ("q18", queries::q18),
    ("q19", queries::q19),
    ("q20", queries::q20),
    ("q21", queries::q21),
    ("q22", queries::q22),
];

/// The job of query `name`, if this crate implements it.
pub fn query(name: &str) -> Option<weir::runtime::job::Job> {
    QUERIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, job)| job())
}

/// The value of `--arg query=…` (or `--arg=query=…`) on a command line.
pub fn query_arg(args: &[std::ffi::OsString]) -> Option<String> {
    let mut it = args.iter().map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        let pair = if a == "--arg" {
            it.next().map(|v| v.into_owned())
        } else {
            a.strip_prefix("--arg=").map(str::to_string)
        };
        if let Some(q) = pair.as_deref().and_then(|p| p.strip_prefix("query=")) {
            return Some(q.to_string());
        }
    }
    None
}

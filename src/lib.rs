//! **weir**: stream processing that is compiled. Declare a Flink-style pipeline with
//! `#[weir::job]`; `cargo build --release` validates, chains and places it and produces one
//! static binary that runs on one worker or on many processes across nodes.
//!
//! ```no_run
//! use weir::prelude::*;
//!
//! #[weir::job(name = "wordcount")]
//! fn pipeline(env: &mut Env) {
//!     env.source(FileSource::text_lines(env.arg("input")))
//!         .flat_map(|line| line.split_whitespace().map(|w| (w.to_lowercase(), 1u64)).collect::<Vec<_>>())
//!         .key_by(|(word, _)| word.clone())
//!         .reduce(|(w, a), (_, b)| (w, a + b))
//!         .sink(FileSink::json_lines(env.arg("output")));
//! }
//! ```

pub use weir_macros::{job, record};
pub use weir_runtime as runtime;
/// The serde weir uses: derive `Serialize`/`Deserialize` (from the prelude) on a type that is
/// not a `#[weir::record]` — a broadcast state, an accumulator — with
/// `#[serde(crate = "weir::serde")]`, so the job crate needs no serde dependency of its own.
pub use weir_runtime::serde;

mod build_info;
pub use build_info::BUILD_INFO;

/// User-defined metrics, served with the job's own on `/metrics` as `weir_user_<name>`:
/// take a handle once (a `let` in the job function, a field of a process function) and
/// update it per record.
///
/// ```no_run
/// use weir::prelude::*;
///
/// #[weir::job(name = "evens")]
/// fn pipeline(env: &mut Env) {
///     let odd = weir::metrics::counter("odd_numbers");
///     env.source(Generator::bounded(1000, |i| i))
///         .filter(move |x| {
///             if x % 2 == 1 {
///                 odd.inc();
///             }
///             x % 2 == 0
///         })
///         .sink(DiscardSink::new());
/// }
/// ```
pub mod metrics {
    pub use weir_runtime::metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
}

/// Everything a pipeline file needs.
pub mod prelude {
    pub use weir_runtime::prelude::*;
}

/// What generated code calls. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use weir_runtime::changelog::{updating_aggregate, updating_join};
    pub use weir_runtime::cli;
    pub use weir_runtime::data::{Epoch, EventTime, Witness};
    pub use weir_runtime::job::{Env, Job, JobMeta};
    pub use weir_runtime::process::{keyed_process, keyed_process_processing_time, side_witness};
    pub use weir_runtime::serde;
    pub use weir_runtime::sinks::SinkWriter;
    pub use weir_runtime::timely::dataflow::Scope;
    pub use weir_runtime::two_input::{
        broadcast_keys, broadcast_process, co_process, co_process_processing_time, interval_join,
        left, right, two_keys, two_witness, window_join,
    };
    pub use weir_runtime::vertex::{
        chain, ck_end, ck_epoch_done, edge, filter, flat_map, key_by, map, no_key,
        not_checkpointable, open_sink, participate, participate_or_refuse, participate_sink,
        reduce, sink_close_ck, sink_epoch_ck, source_vertex, source_witness, unary_vertex,
        witness_of, Ck, CkNo, CkYes, Event, Port, VertexCtx, VertexSpec,
    };
    pub use weir_runtime::watermarks::{watermarks, Mark};
    pub use weir_runtime::windows::{drop_late, window_aggregate, window_process, window_reduce};
    pub use weir_runtime::worker::WorkerCtx;
}

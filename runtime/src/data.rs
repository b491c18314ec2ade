//! What flows on weir's streams: records with their event time, and in-band watermarks.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

/// What a record type needs so weir can move it between workers and processes:
/// derive `Clone, Serialize, Deserialize` on your type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot travel between workers or be stored in a checkpoint",
    label = "records and state must be `Clone + Send + Serialize + Deserialize`",
    note = "declare the type with `#[weir::record]`, or derive `Clone, Serialize, Deserialize` on it with `#[serde(crate = \"weir::serde\")]`"
)]
pub trait Data: Clone + Send + Serialize + DeserializeOwned + 'static {}
// `do_not_recommend`: a missing `Data` is reported as such, with the message above, not as
// a missing `Serialize` followed by a list of serde's impls (which changes with the crates
// in the build).
#[diagnostic::do_not_recommend]
impl<T: Clone + Send + Serialize + DeserializeOwned + 'static> Data for T {}

/// Event time in milliseconds since the Unix epoch (Flink's convention).
pub type EventTime = i64;

/// A record without an event timestamp carries this (Flink's "no timestamp").
pub const NO_TIMESTAMP: EventTime = i64::MIN;

/// The timely timestamp of weir's dataflows: an epoch. Epochs advance with processing
/// time in *ticks* (`--epoch-ms`), and within a tick a source takes a further *step* after
/// every `records_per_step` records it read: `epoch = tick · STEPS_PER_TICK + step`. Steps
/// bound the records of one epoch, which is what flow control counts in; checkpoints fall
/// on tick boundaries only.
pub type Epoch = u64;

/// Steps a tick is split into (see [`Epoch`]).
pub const STEPS_PER_TICK: u64 = 1 << 12;

/// The tick of an epoch.
#[inline]
pub fn tick_of(e: Epoch) -> u64 {
    e / STEPS_PER_TICK
}

/// One element of a stream between vertices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Msg<T> {
    /// A record and its event time ([`NO_TIMESTAMP`] if none was assigned).
    Rec(EventTime, T),
    /// A watermark from upstream instance `from`: no later record from it has an event time
    /// at or below `wm`.
    Watermark {
        /// Index of the sending instance.
        from: u32,
        /// The watermark.
        wm: EventTime,
    },
    /// Upstream instance `from` is idle and must not hold the watermark back.
    Idle {
        /// Index of the sending instance.
        from: u32,
    },
}

/// A zero-sized token naming a stream's record type, threaded through generated code so that
/// user closures get their argument types without annotations.
pub struct Witness<T>(PhantomData<fn() -> T>);

impl<T> Witness<T> {
    /// A witness for `T`.
    pub fn new() -> Self {
        Witness(PhantomData)
    }
}

impl<T> Default for Witness<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Witness<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Witness<T> {}

//! Keyed process functions (Flink's `KeyedProcessFunction`): per-key state, event-time and
//! processing-time timers, and typed side outputs.
//!
//! State is reached through descriptors the function owns (`ValueState<T>`,
//! `ListState<T>`, `MapState<K, V>`) and the context of the current call, which is bound to
//! the current key. Reads return owned values and writes are explicit (`update`, `add`,
//! `put`): there is never a `&mut` into the store, so the same API can be served from LMDB.

use crate::checkpoint::{Checkpointed, DirtyKeys, StateReader, StateWriter};
use crate::data::{Data, EventTime, Witness};
use crate::error::{Result, RuntimeError};
use crate::key::Key;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::marker::PhantomData;

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeDomain {
    /// Fires when the watermark reaches it.
    EventTime,
    /// Fires when the wall clock reaches it.
    ProcessingTime,
}

/// A typed name for a side output: `const ALERTS: OutputTag<Alert> = OutputTag::new("alerts");`
pub struct OutputTag<T> {
    name: &'static str,
    _t: PhantomData<fn() -> T>,
}

impl<T> OutputTag<T> {
    /// A tag called `name`.
    pub const fn new(name: &'static str) -> Self {
        OutputTag {
            name,
            _t: PhantomData,
        }
    }
    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for OutputTag<T> {}

macro_rules! descriptor {
    ($(#[$m:meta])* $name:ident < $($p:ident),+ >) => {
        $(#[$m])*
        pub struct $name<$($p),+> {
            name: &'static str,
            ttl_ms: i64,
            _t: PhantomData<fn() -> ($($p,)+)>,
        }
        impl<$($p),+> $name<$($p),+> {
            /// A state called `name` (unique within the function).
            pub const fn new(name: &'static str) -> Self {
                $name { name, ttl_ms: 0, _t: PhantomData }
            }
            /// Expire the state `ttl` of processing time after it was last written (Flink's
            /// `StateTtlConfig` with `OnCreateAndWrite` and `NeverReturnExpired`): reads
            /// never see an expired state, and it is dropped when its key is next touched,
            /// at the next sweep (every 10 s) or checkpoint. The whole state of a key
            /// expires at once (for a list or map: all its entries). Zero: no expiry.
            pub const fn with_ttl(mut self, ttl: std::time::Duration) -> Self {
                let ms = ttl.as_millis();
                self.ttl_ms = if ms > i64::MAX as u128 { i64::MAX } else { ms as i64 };
                self
            }
            /// Its name.
            pub const fn name(&self) -> &'static str {
                self.name
            }
        }
    };
}

descriptor!(
    /// One value per key.
    ValueState<T>
);
descriptor!(
    /// A list per key.
    ListState<T>
);
descriptor!(
    /// A map per key.
    MapState<K, V>
);

/// One value per key, folded from the values added with a reduce function (Flink's
/// `ReducingState`): `ReducingState::new("max", |a: u64, b| a.max(b))`.
pub struct ReducingState<T> {
    inner: ValueState<T>,
    reduce: fn(T, T) -> T,
}

impl<T> ReducingState<T> {
    /// A state called `name` that folds added values with `reduce`.
    pub const fn new(name: &'static str, reduce: fn(T, T) -> T) -> Self {
        ReducingState {
            inner: ValueState::new(name),
            reduce,
        }
    }
    /// Expire it `ttl` after its last write (see [`ValueState::with_ttl`]).
    pub const fn with_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.inner = self.inner.with_ttl(ttl);
        self
    }
}

/// One accumulator per key, fed by an [`Aggregator`](crate::windows::Aggregator) (Flink's
/// `AggregatingState`): values are added, the result is read.
pub struct AggregatingState<T, A: crate::windows::Aggregator<T>> {
    inner: ValueState<A::Acc>,
    agg: A,
    _t: PhantomData<fn(T)>,
}

impl<T, A: crate::windows::Aggregator<T>> AggregatingState<T, A> {
    /// A state called `name` aggregated by `agg`.
    pub const fn new(name: &'static str, agg: A) -> Self {
        AggregatingState {
            inner: ValueState::new(name),
            agg,
            _t: PhantomData,
        }
    }
    /// Expire it `ttl` after its last write (see [`ValueState::with_ttl`]).
    pub fn with_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.inner = self.inner.with_ttl(ttl);
        self
    }
}

/// A value held in a [`KeyState`]: any serializable state, reached by type.
trait Slot: Any {
    fn any(&self) -> &dyn Any;
    fn any_mut(&mut self) -> &mut dyn Any;
    fn encode(&self) -> Result<Vec<u8>>;
}

impl<S: Serialize + 'static> Slot for S {
    fn any(&self) -> &dyn Any {
        self
    }
    fn any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn encode(&self) -> Result<Vec<u8>> {
        crate::checkpoint::encode("process function state", self)
    }
}

/// A state as the function left it, or as a checkpoint holds it (decoded on first use,
/// when its type is known).
enum Stored {
    Live(Box<dyn Slot>),
    Raw(Vec<u8>),
}

struct Entry {
    name: Cow<'static, str>,
    value: Stored,
    /// Processing time at which it expires (descriptors with a TTL).
    expires: Option<EventTime>,
}

impl Entry {
    fn expired(&self, now: &mut Option<EventTime>) -> bool {
        match self.expires {
            None => false,
            Some(t) => t <= *now.get_or_insert_with(crate::time::now_millis),
        }
    }
}

/// The state of one key: every state the function declared, by name, and the key's timers.
#[derive(Default)]
pub struct KeyState {
    entries: Vec<Entry>,
    /// The key's pending timers (also indexed by time in [`Timers`]), so that a checkpoint
    /// writes a key's timers with its state.
    timers: Vec<(TimeDomain, EventTime)>,
    /// Some entry has a TTL.
    ttl: bool,
}

/// A key's state as a checkpoint stores it.
#[derive(Serialize, Deserialize)]
struct StoredKey {
    /// `(name, expires, encoded value)`.
    states: Vec<(String, Option<EventTime>, Vec<u8>)>,
    /// `(event time?, time)`.
    timers: Vec<(bool, EventTime)>,
}

/// The first problem met while reading or writing state (a checkpointed state that no
/// longer decodes as the declared type, or one name declared with two types); it fails
/// the job after the call.
type Problem = RefCell<Option<String>>;

fn complain(problem: &Problem, message: String) {
    let mut p = problem.borrow_mut();
    if p.is_none() {
        *p = Some(message);
    }
}

impl KeyState {
    fn find(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Call `f` on the state `name` read as `S`, unless absent or expired.
    fn read<S: DeserializeOwned + 'static, R>(
        &self,
        name: &str,
        problem: &Problem,
        f: impl FnOnce(&S) -> R,
    ) -> Option<R> {
        let e = self.find(name)?;
        if e.expired(&mut None) {
            return None;
        }
        match &e.value {
            Stored::Live(b) => match b.any().downcast_ref::<S>() {
                Some(s) => Some(f(s)),
                None => {
                    complain(problem, mixed_types(name));
                    None
                }
            },
            Stored::Raw(bytes) => match crate::checkpoint::decode::<S>("state", bytes) {
                Ok(s) => Some(f(&s)),
                Err(e) => {
                    complain(problem, undecodable(name, &e.message));
                    None
                }
            },
        }
    }

    /// The state `name` as `S` to change, created empty when absent or expired; its
    /// expiry restarts when `ttl_ms > 0`.
    fn write<S: Serialize + DeserializeOwned + Default + 'static>(
        &mut self,
        name: &'static str,
        ttl_ms: i64,
        problem: &Problem,
    ) -> Option<&mut S> {
        let mut now = None;
        let i = match self.entries.iter().position(|e| e.name == name) {
            Some(i) => {
                let e = &mut self.entries[i];
                if e.expired(&mut now) {
                    e.value = Stored::Live(Box::new(S::default()));
                } else if let Stored::Raw(bytes) = &e.value {
                    let s = crate::checkpoint::decode::<S>("state", bytes).unwrap_or_else(|e| {
                        complain(problem, undecodable(name, &e.message));
                        S::default()
                    });
                    e.value = Stored::Live(Box::new(s));
                }
                i
            }
            None => {
                self.entries.push(Entry {
                    name: Cow::Borrowed(name),
                    value: Stored::Live(Box::new(S::default())),
                    expires: None,
                });
                self.entries.len() - 1
            }
        };
        let e = &mut self.entries[i];
        if ttl_ms > 0 {
            let now = *now.get_or_insert_with(crate::time::now_millis);
            e.expires = Some(now.saturating_add(ttl_ms));
            self.ttl = true;
        }
        match &mut e.value {
            Stored::Live(b) => match b.any_mut().downcast_mut::<S>() {
                Some(s) => Some(s),
                None => {
                    complain(problem, mixed_types(name));
                    None
                }
            },
            Stored::Raw(_) => None,
        }
    }

    fn remove(&mut self, name: &str) {
        self.entries.retain(|e| e.name != name);
    }

    /// Drop expired states.
    fn expire(&mut self, now: &mut Option<EventTime>) {
        if self.ttl {
            self.entries.retain(|e| !e.expired(now));
            self.ttl = self.entries.iter().any(|e| e.expires.is_some());
        }
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.timers.is_empty()
    }

    fn to_stored(&self, now: &mut Option<EventTime>) -> Result<StoredKey> {
        let mut states = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            if e.expired(now) {
                continue;
            }
            let bytes = match &e.value {
                Stored::Live(b) => b.encode()?,
                Stored::Raw(bytes) => bytes.clone(),
            };
            states.push((e.name.to_string(), e.expires, bytes));
        }
        let timers = self
            .timers
            .iter()
            .map(|&(d, t)| (d == TimeDomain::EventTime, t))
            .collect();
        Ok(StoredKey { states, timers })
    }

    fn from_stored(s: StoredKey) -> Self {
        let ttl = s.states.iter().any(|(_, e, _)| e.is_some());
        KeyState {
            entries: s
                .states
                .into_iter()
                .map(|(name, expires, bytes)| Entry {
                    name: Cow::Owned(name),
                    value: Stored::Raw(bytes),
                    expires,
                })
                .collect(),
            timers: s
                .timers
                .into_iter()
                .map(|(event, t)| {
                    let d = if event {
                        TimeDomain::EventTime
                    } else {
                        TimeDomain::ProcessingTime
                    };
                    (d, t)
                })
                .collect(),
            ttl,
        }
    }
}

fn mixed_types(name: &str) -> String {
    format!(
        "state `{name}` is used with two different types; give each state descriptor its own name"
    )
}

fn undecodable(name: &str, why: &str) -> String {
    format!("state `{name}` in the checkpoint does not match its declared type ({why})")
}

/// Timers of one operator instance.
pub struct Timers<K> {
    event: BTreeMap<EventTime, HashSet<K>>,
    processing: BTreeMap<EventTime, HashSet<K>>,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            event: BTreeMap::new(),
            processing: BTreeMap::new(),
        }
    }
}

/// Marks a process function on a stream with watermarks: it may use event-time timers.
pub struct WithEventTime;
/// Marks a process function on a stream without watermarks: processing-time timers only.
pub struct ProcessingTimeOnly;

/// What a process function can do while handling one record or timer. `M` says whether
/// event-time timers are available ([`WithEventTime`], the default) or not.
pub struct Context<'a, K, O, M = WithEventTime> {
    key: &'a K,
    timestamp: Option<EventTime>,
    watermark: EventTime,
    state: &'a mut KeyState,
    timers: &'a mut Timers<K>,
    out: &'a mut Vec<(EventTime, O)>,
    side: &'a mut HashMap<&'static str, Box<dyn Any>>,
    problem: &'a Problem,
    _mode: PhantomData<M>,
}

impl<'a, K: Key, O> Context<'a, K, O, WithEventTime> {
    /// Fire `on_timer` for this key when the watermark reaches `time`.
    pub fn register_event_time_timer(&mut self, time: EventTime) {
        self.register(TimeDomain::EventTime, time);
    }
    /// Cancel an event-time timer of this key.
    pub fn delete_event_time_timer(&mut self, time: EventTime) {
        self.delete(TimeDomain::EventTime, time);
    }
}

impl<'a, K: Key, O, M> Context<'a, K, O, M> {
    fn register(&mut self, domain: TimeDomain, time: EventTime) {
        let by_time = match domain {
            TimeDomain::EventTime => &mut self.timers.event,
            TimeDomain::ProcessingTime => &mut self.timers.processing,
        };
        if by_time.entry(time).or_default().insert(self.key.clone()) {
            self.state.timers.push((domain, time));
        }
    }
    fn delete(&mut self, domain: TimeDomain, time: EventTime) {
        let by_time = match domain {
            TimeDomain::EventTime => &mut self.timers.event,
            TimeDomain::ProcessingTime => &mut self.timers.processing,
        };
        if let Some(ks) = by_time.get_mut(&time) {
            if ks.remove(self.key) {
                if ks.is_empty() {
                    by_time.remove(&time);
                }
                self.state.timers.retain(|&x| x != (domain, time));
            }
        }
    }
    /// The current key.
    pub fn key(&self) -> &K {
        self.key
    }
    /// The event time of the current record (or the firing time of a timer), if any.
    pub fn timestamp(&self) -> Option<EventTime> {
        self.timestamp
    }
    /// The operator's current input watermark.
    pub fn current_watermark(&self) -> EventTime {
        self.watermark
    }
    /// The wall clock (ms since the Unix epoch).
    pub fn current_processing_time(&self) -> EventTime {
        crate::time::now_millis()
    }
    /// Emit a record downstream, carrying the current timestamp.
    pub fn emit(&mut self, record: O) {
        let ts = self.timestamp.unwrap_or(crate::data::NO_TIMESTAMP);
        self.out.push((ts, record));
    }
    /// Emit a record to a side output (read with `.side_output(TAG)` in the pipeline).
    pub fn output<T: 'static>(&mut self, tag: &OutputTag<T>, value: T) {
        let ts = self.timestamp.unwrap_or(crate::data::NO_TIMESTAMP);
        if let Some(v) = self
            .side
            .entry(tag.name)
            .or_insert_with(|| Box::new(Vec::<(EventTime, T)>::new()))
            .downcast_mut::<Vec<(EventTime, T)>>()
        {
            v.push((ts, value));
        }
    }
    /// Fire `on_timer` for this key when the wall clock reaches `time`.
    pub fn register_processing_time_timer(&mut self, time: EventTime) {
        self.register(TimeDomain::ProcessingTime, time);
    }
    /// Cancel a processing-time timer of this key.
    pub fn delete_processing_time_timer(&mut self, time: EventTime) {
        self.delete(TimeDomain::ProcessingTime, time);
    }

    /// The current key's value of `state`.
    pub fn value<T: Data>(&self, state: &ValueState<T>) -> Option<T> {
        self.state
            .read::<Option<T>, _>(state.name, self.problem, Option::clone)
            .flatten()
    }
    /// Set the current key's value of `state`.
    pub fn update<T: Data>(&mut self, state: &ValueState<T>, value: T) {
        if let Some(slot) = self
            .state
            .write::<Option<T>>(state.name, state.ttl_ms, self.problem)
        {
            *slot = Some(value);
        }
    }
    /// Clear the current key's value of `state`.
    pub fn clear<T: 'static>(&mut self, state: &ValueState<T>) {
        self.state.remove(state.name);
    }
    /// Fold `value` into the current key's reducing state.
    pub fn reduce<T: Data>(&mut self, state: &ReducingState<T>, value: T) {
        let (reduce, s) = (state.reduce, &state.inner);
        if let Some(slot) = self
            .state
            .write::<Option<T>>(s.name, s.ttl_ms, self.problem)
        {
            *slot = Some(match slot.take() {
                Some(old) => reduce(old, value),
                None => value,
            });
        }
    }
    /// The current key's folded value.
    pub fn reduced<T: Data>(&self, state: &ReducingState<T>) -> Option<T> {
        self.value(&state.inner)
    }
    /// Clear the current key's reducing state.
    pub fn clear_reducing<T: 'static>(&mut self, state: &ReducingState<T>) {
        self.state.remove(state.inner.name);
    }
    /// Add `value` to the current key's aggregating state.
    pub fn aggregate<T, A>(&mut self, state: &AggregatingState<T, A>, value: T)
    where
        A: crate::windows::Aggregator<T>,
        A::Acc: Data,
    {
        let s = &state.inner;
        if let Some(slot) = self
            .state
            .write::<Option<A::Acc>>(s.name, s.ttl_ms, self.problem)
        {
            let acc = slot
                .take()
                .unwrap_or_else(|| state.agg.create_accumulator());
            *slot = Some(state.agg.add(acc, value));
        }
    }
    /// The current key's aggregate result, if anything was added.
    pub fn aggregated<T, A>(&self, state: &AggregatingState<T, A>) -> Option<A::Out>
    where
        A: crate::windows::Aggregator<T>,
        A::Acc: Data,
    {
        self.value(&state.inner).map(|acc| state.agg.result(acc))
    }
    /// Clear the current key's aggregating state.
    pub fn clear_aggregating<T, A: crate::windows::Aggregator<T>>(
        &mut self,
        state: &AggregatingState<T, A>,
    ) {
        self.state.remove(state.inner.name);
    }
    /// The current key's list (a copy).
    pub fn list<T: Data>(&self, state: &ListState<T>) -> Vec<T> {
        self.state
            .read::<Vec<T>, _>(state.name, self.problem, Vec::clone)
            .unwrap_or_default()
    }
    /// Append to the current key's list.
    pub fn add<T: Data>(&mut self, state: &ListState<T>, value: T) {
        if let Some(v) = self
            .state
            .write::<Vec<T>>(state.name, state.ttl_ms, self.problem)
        {
            v.push(value);
        }
    }
    /// Replace the current key's list (an empty list clears it).
    pub fn update_list<T: Data>(&mut self, state: &ListState<T>, values: Vec<T>) {
        if values.is_empty() {
            self.state.remove(state.name);
        } else if let Some(v) = self
            .state
            .write::<Vec<T>>(state.name, state.ttl_ms, self.problem)
        {
            *v = values;
        }
    }
    /// Clear the current key's list.
    pub fn clear_list<T: 'static>(&mut self, state: &ListState<T>) {
        self.state.remove(state.name);
    }
    /// The value of `k` in the current key's map.
    pub fn get<MK: Key, MV: Data>(&self, state: &MapState<MK, MV>, k: &MK) -> Option<MV> {
        self.state
            .read::<HashMap<MK, MV>, _>(state.name, self.problem, |m| m.get(k).cloned())
            .flatten()
    }
    /// Set `k` in the current key's map.
    pub fn put<MK: Key, MV: Data>(&mut self, state: &MapState<MK, MV>, k: MK, v: MV) {
        if let Some(m) = self
            .state
            .write::<HashMap<MK, MV>>(state.name, state.ttl_ms, self.problem)
        {
            m.insert(k, v);
        }
    }
    /// Remove `k` from the current key's map (the map's last entry clears it).
    pub fn remove<MK: Key, MV: Data>(&mut self, state: &MapState<MK, MV>, k: &MK) {
        if self.state.find(state.name).is_none() {
            return;
        }
        // Removing is not a write for the TTL: keep the expiry.
        let now_empty = match self
            .state
            .write::<HashMap<MK, MV>>(state.name, 0, self.problem)
        {
            Some(m) => {
                m.remove(k);
                m.is_empty()
            }
            None => false,
        };
        if now_empty {
            self.state.remove(state.name);
        }
    }
    /// Clear the current key's map.
    pub fn clear_map<MK: 'static, MV: 'static>(&mut self, state: &MapState<MK, MV>) {
        self.state.remove(state.name);
    }
    /// All entries of the current key's map (a copy).
    pub fn entries<MK: Key, MV: Data>(&self, state: &MapState<MK, MV>) -> Vec<(MK, MV)> {
        self.state
            .read::<HashMap<MK, MV>, _>(state.name, self.problem, |m| {
                m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            })
            .unwrap_or_default()
    }
}

/// A function over a keyed stream with state and timers (Flink's `KeyedProcessFunction`).
///
/// Implement `KeyedProcessFunction<K, I>` for a stream with watermarks (event-time timers
/// available), or `KeyedProcessFunction<K, I, ProcessingTimeOnly>` for one without.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a process function for this stream",
    label = "this stream needs a `KeyedProcessFunction<_, _, {M}>`",
    note = "a stream without watermarks takes `impl KeyedProcessFunction<K, I, ProcessingTimeOnly>` (no event-time timers); to use event-time timers add `.watermarks(...)` upstream"
)]
pub trait KeyedProcessFunction<K, I, M = WithEventTime>: 'static {
    /// What it emits.
    type Out;
    /// Handle one record of the current key.
    fn process_element(&mut self, record: I, ctx: &mut Context<'_, K, Self::Out, M>);
    /// A timer of the current key fired at `time`.
    fn on_timer(
        &mut self,
        _time: EventTime,
        _domain: TimeDomain,
        _ctx: &mut Context<'_, K, Self::Out, M>,
    ) {
    }
}

/// The operator running a keyed process function on one instance.
pub struct KeyedProcessOp<K, I, KF, M, P: KeyedProcessFunction<K, I, M>> {
    key: KF,
    func: P,
    state: crate::key::StateMap<K, KeyState>,
    timers: Timers<K>,
    pub(crate) watermark: EventTime,
    out: Vec<(EventTime, P::Out)>,
    side: HashMap<&'static str, Box<dyn Any>>,
    problem: Problem,
    dirty: DirtyKeys<K>,
    /// Processing time of the last sweep for expired state.
    swept: EventTime,
    _i: PhantomData<fn(I, M)>,
}

/// How often expired state of keys nobody touches is dropped (processing time, ms).
const SWEEP_EVERY_MS: EventTime = 10_000;

fn new_op<K, I, KF, M, P: KeyedProcessFunction<K, I, M>>(
    key: KF,
    func: P,
) -> KeyedProcessOp<K, I, KF, M, P> {
    KeyedProcessOp {
        key,
        func,
        state: Default::default(),
        timers: Timers::default(),
        watermark: EventTime::MIN,
        out: Vec::new(),
        side: HashMap::new(),
        problem: RefCell::new(None),
        dirty: DirtyKeys::default(),
        swept: crate::time::now_millis(),
        _i: PhantomData,
    }
}

/// `key_by(k).process(f)` on a stream with watermarks, for generated code.
pub fn keyed_process<I, K, KF, P>(
    _: Witness<I>,
    key: &KF,
    func: P,
) -> (KeyedProcessOp<K, I, KF, WithEventTime, P>, Witness<P::Out>)
where
    K: Key,
    KF: Fn(&I) -> K + Clone,
    P: KeyedProcessFunction<K, I, WithEventTime>,
{
    (new_op(key.clone(), func), Witness::new())
}

/// `key_by(k).process(f)` on a stream without watermarks, for generated code.
pub fn keyed_process_processing_time<I, K, KF, P>(
    _: Witness<I>,
    key: &KF,
    func: P,
) -> (
    KeyedProcessOp<K, I, KF, ProcessingTimeOnly, P>,
    Witness<P::Out>,
)
where
    K: Key,
    KF: Fn(&I) -> K + Clone,
    P: KeyedProcessFunction<K, I, ProcessingTimeOnly>,
{
    (new_op(key.clone(), func), Witness::new())
}

/// The record type of a side output, for generated code.
pub fn side_witness<T>(_: &OutputTag<T>) -> Witness<T> {
    Witness::new()
}

impl<K: Key, I, KF: Fn(&I) -> K, M, P: KeyedProcessFunction<K, I, M>>
    KeyedProcessOp<K, I, KF, M, P>
{
    /// Run `f` for `key`; `fired` is the timer that fires, if any.
    fn call<F>(
        &mut self,
        key: &K,
        timestamp: Option<EventTime>,
        fired: Option<(TimeDomain, EventTime)>,
        f: F,
    ) -> Result<()>
    where
        F: FnOnce(&mut P, &mut Context<'_, K, P::Out, M>),
    {
        let state = self.state.entry(key.clone()).or_default();
        if let Some(t) = fired {
            state.timers.retain(|&x| x != t);
        }
        let mut ctx = Context {
            key,
            timestamp,
            watermark: self.watermark,
            state,
            timers: &mut self.timers,
            out: &mut self.out,
            side: &mut self.side,
            problem: &self.problem,
            _mode: PhantomData,
        };
        f(&mut self.func, &mut ctx);
        ctx.state.expire(&mut None);
        if ctx.state.is_empty() {
            self.state.remove(key);
        }
        self.dirty.touch(key);
        match self.problem.borrow_mut().take() {
            None => Ok(()),
            Some(p) => Err(RuntimeError::user(format!(
                "{p}; if the state's type changed since the checkpoint, start without it (run --restore none)"
            ))),
        }
    }

    fn drain<O: FnMut(EventTime, P::Out) -> Result<()>>(&mut self, out: &mut O) -> Result<()> {
        for (ts, o) in self.out.drain(..) {
            out(ts, o)?;
        }
        Ok(())
    }

    /// Handle a record; emitted records go to `out`.
    pub fn on_record<O: FnMut(EventTime, P::Out) -> Result<()>>(
        &mut self,
        ts: EventTime,
        record: I,
        out: &mut O,
    ) -> Result<()> {
        let k = (self.key)(&record);
        let timestamp = (ts != crate::data::NO_TIMESTAMP).then_some(ts);
        self.call(&k, timestamp, None, |f, ctx| f.process_element(record, ctx))?;
        self.drain(out)
    }

    /// The watermark advanced: fire due event-time timers in time order.
    pub fn on_watermark<O: FnMut(EventTime, P::Out) -> Result<()>>(
        &mut self,
        wm: EventTime,
        out: &mut O,
    ) -> Result<()> {
        if wm <= self.watermark {
            return Ok(());
        }
        self.watermark = wm;
        while let Some(entry) = self.timers.event.first_entry() {
            if *entry.key() > wm {
                break;
            }
            let (t, keys) = entry.remove_entry();
            let mut keys: Vec<K> = keys.into_iter().collect();
            keys.sort_by_key(|k| k.key_hash());
            for k in keys {
                self.call(&k, Some(t), Some((TimeDomain::EventTime, t)), |f, ctx| {
                    f.on_timer(t, TimeDomain::EventTime, ctx)
                })?;
                self.drain(out)?;
            }
        }
        Ok(())
    }

    /// The wall clock advanced: fire due processing-time timers, and now and then drop
    /// expired state.
    pub fn on_tick<O: FnMut(EventTime, P::Out) -> Result<()>>(
        &mut self,
        now: EventTime,
        out: &mut O,
    ) -> Result<()> {
        while let Some(entry) = self.timers.processing.first_entry() {
            if *entry.key() > now {
                break;
            }
            let (t, keys) = entry.remove_entry();
            let mut keys: Vec<K> = keys.into_iter().collect();
            keys.sort_by_key(|k| k.key_hash());
            for k in keys {
                self.call(
                    &k,
                    Some(t),
                    Some((TimeDomain::ProcessingTime, t)),
                    |f, ctx| f.on_timer(t, TimeDomain::ProcessingTime, ctx),
                )?;
                self.drain(out)?;
            }
        }
        if now >= self.swept.saturating_add(SWEEP_EVERY_MS) {
            self.swept = now;
            self.sweep(now);
        }
        Ok(())
    }

    /// Drop every expired state; keys left without state or timers go.
    fn sweep(&mut self, now: EventTime) {
        let mut now = Some(now);
        let dirty = &mut self.dirty;
        self.state.retain(|k, s| {
            if !s.ttl {
                return true;
            }
            let before = s.entries.len();
            s.expire(&mut now);
            if s.entries.len() != before {
                dirty.touch(k);
            }
            !s.is_empty()
        });
    }

    /// Hand the records written to side output `tag` since the last call to `out`.
    pub fn drain_side<T: 'static, O: FnMut(EventTime, T) -> Result<()>>(
        &mut self,
        tag: &OutputTag<T>,
        out: &mut O,
    ) -> Result<()> {
        if let Some(v) = self
            .side
            .get_mut(tag.name)
            .and_then(|b| b.downcast_mut::<Vec<(EventTime, T)>>())
        {
            for (ts, x) in v.drain(..) {
                out(ts, x)?;
            }
        }
        Ok(())
    }

    /// Drop side output records nobody reads (called after the declared ones were drained).
    pub fn discard_unread_sides(&mut self) {
        self.side.clear();
    }

    /// The user's function.
    pub fn func_mut(&mut self) -> &mut P {
        &mut self.func
    }

    /// Keys with state (for tests and metrics).
    pub fn keys_with_state(&self) -> usize {
        self.state.len()
    }
}

impl<K: Key, I, KF: Fn(&I) -> K, M, P: KeyedProcessFunction<K, I, M>>
    KeyedProcessOp<K, I, KF, M, P>
{
    /// Write the state of every key changed since the last call (the first: every key).
    pub(crate) fn snapshot_keys(&mut self, out: &mut StateWriter<'_>) -> Result<()> {
        let (state, mut now) = (&self.state, None);
        self.dirty.write(out, state.keys(), |k| {
            state.get(k).map(|s| s.to_stored(&mut now)).transpose()
        })
    }

    /// Load the keys of a checkpoint and re-arm their timers.
    pub(crate) fn restore_keys(&mut self, from: &StateReader<'_>) -> Result<()> {
        let (state, timers) = (&mut self.state, &mut self.timers);
        from.for_each_keyed(|k: K, stored: StoredKey| {
            let s = KeyState::from_stored(stored);
            for &(d, t) in &s.timers {
                let by_time = match d {
                    TimeDomain::EventTime => &mut timers.event,
                    TimeDomain::ProcessingTime => &mut timers.processing,
                };
                by_time.entry(t).or_default().insert(k.clone());
            }
            state.insert(k, s);
        })?;
        self.dirty.restored(from);
        Ok(())
    }
}

/// The keyed state (with its timers and TTLs) and the watermark of a process function, a
/// co-process function or the keyed side of a broadcast process function.
impl<K: Key, I, KF: Fn(&I) -> K, M, P: KeyedProcessFunction<K, I, M>> Checkpointed
    for KeyedProcessOp<K, I, KF, M, P>
{
    fn snapshot(&mut self, _checkpoint: u64, out: &mut StateWriter<'_>) -> Result<()> {
        out.put_meta(&crate::checkpoint::encode("watermark", &self.watermark)?);
        self.snapshot_keys(out)
    }
    fn restore(&mut self, _checkpoint: u64, from: &StateReader<'_>) -> Result<()> {
        if let Some(m) = from.meta()? {
            self.watermark = crate::checkpoint::decode("watermark", m)?;
        }
        self.restore_keys(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts per key and emits the count 10 ms (event time) after the last record.
    struct CountThenFlush {
        count: ValueState<u64>,
        seen: ListState<i64>,
    }
    const ODD: OutputTag<i64> = OutputTag::new("odd");

    impl KeyedProcessFunction<u32, (u32, i64)> for CountThenFlush {
        type Out = (u32, u64, Vec<i64>);
        fn process_element(&mut self, r: (u32, i64), ctx: &mut Context<'_, u32, Self::Out>) {
            let n = ctx.value(&self.count).unwrap_or(0) + 1;
            ctx.update(&self.count, n);
            ctx.add(&self.seen, r.1);
            if r.1 % 2 == 1 {
                ctx.output(&ODD, r.1);
            }
            if let Some(ts) = ctx.timestamp() {
                ctx.register_event_time_timer(ts + 10);
            }
        }
        fn on_timer(
            &mut self,
            _t: EventTime,
            _d: TimeDomain,
            ctx: &mut Context<'_, u32, Self::Out>,
        ) {
            let n = ctx.value(&self.count).unwrap_or(0);
            let seen = ctx.list(&self.seen);
            ctx.emit((*ctx.key(), n, seen));
            ctx.clear(&self.count);
            ctx.clear_list(&self.seen);
        }
    }

    #[test]
    fn state_timers_and_side_outputs() {
        let kf = |r: &(u32, i64)| r.0;
        let f = CountThenFlush {
            count: ValueState::new("count"),
            seen: ListState::new("seen"),
        };
        let (mut op, _) = keyed_process(Witness::<(u32, i64)>::new(), &kf, f);
        let mut out = Vec::new();
        let mut odd = Vec::new();
        for (ts, r) in [(1, (1, 1)), (2, (2, 2)), (5, (1, 3))] {
            op.on_record(ts, r, &mut |t, o| {
                out.push((t, o));
                Ok(())
            })
            .unwrap();
            op.drain_side(&ODD, &mut |_, v| {
                odd.push(v);
                Ok(())
            })
            .unwrap();
        }
        op.on_watermark(11, &mut |t, o| {
            out.push((t, o));
            Ok(())
        })
        .unwrap();
        // Key 1's timers at 11 and 15; key 2's at 12: only key 1's first timer is due.
        assert_eq!(out, vec![(11, (1, 2, vec![1, 3]))]);
        op.on_watermark(100, &mut |t, o| {
            out.push((t, o));
            Ok(())
        })
        .unwrap();
        assert_eq!(out[1..], [(12, (2, 1, vec![2])), (15, (1, 0, vec![]))]);
        assert_eq!(odd, vec![1, 3]);
        assert_eq!(op.keys_with_state(), 0, "cleared state is dropped");
    }

    struct Maps {
        m: MapState<u32, i64>,
        l: ListState<i64>,
    }
    impl KeyedProcessFunction<u32, (u32, i64)> for Maps {
        type Out = ();
        fn process_element(&mut self, r: (u32, i64), ctx: &mut Context<'_, u32, ()>) {
            if r.1 > 0 {
                ctx.put(&self.m, 7, r.1);
                ctx.add(&self.l, r.1);
            } else {
                ctx.remove(&self.m, &7);
                ctx.update_list(&self.l, Vec::new());
            }
        }
    }

    #[test]
    fn emptied_maps_and_lists_release_the_key() {
        let kf = |r: &(u32, i64)| r.0;
        let (mut op, _) = keyed_process(
            Witness::<(u32, i64)>::new(),
            &kf,
            Maps {
                m: MapState::new("m"),
                l: ListState::new("l"),
            },
        );
        let mut out = |_: EventTime, _: ()| Ok(());
        op.on_record(0, (1, 5), &mut out).unwrap();
        assert_eq!(op.keys_with_state(), 1);
        op.on_record(0, (1, -1), &mut out).unwrap();
        assert_eq!(op.keys_with_state(), 0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod checkpoint_tests {
    use super::*;
    use crate::checkpoint::{checkpoint_at_tick, CheckpointConfig, Checkpoints};
    use std::time::Duration;

    /// Per key: a count, the values since the last timer, how often each value was seen;
    /// a timer 10 ms after each record emits and clears the list.
    struct Summary {
        count: ValueState<u64>,
        since: ListState<i64>,
        seen: MapState<i64, u32>,
    }

    fn summary() -> Summary {
        Summary {
            count: ValueState::new("count"),
            since: ListState::new("since"),
            seen: MapState::new("seen"),
        }
    }

    type Out = (u32, u64, i64, usize);

    impl KeyedProcessFunction<u32, (u32, i64)> for Summary {
        type Out = Out;
        fn process_element(&mut self, r: (u32, i64), ctx: &mut Context<'_, u32, Out>) {
            let n = ctx.value(&self.count).unwrap_or(0) + 1;
            ctx.update(&self.count, n);
            ctx.add(&self.since, r.1);
            let m = ctx.get(&self.seen, &(r.1 % 7)).unwrap_or(0);
            ctx.put(&self.seen, r.1 % 7, m + 1);
            if let Some(ts) = ctx.timestamp() {
                ctx.register_event_time_timer(ts + 10);
            }
        }
        fn on_timer(&mut self, _t: EventTime, _d: TimeDomain, ctx: &mut Context<'_, u32, Out>) {
            let n = ctx.value(&self.count).unwrap_or(0);
            let sum = ctx.list(&self.since).iter().sum();
            let distinct = ctx.entries(&self.seen).len();
            ctx.emit((*ctx.key(), n, sum, distinct));
            ctx.clear_list(&self.since);
        }
    }

    type Op = KeyedProcessOp<u32, (u32, i64), fn(&(u32, i64)) -> u32, WithEventTime, Summary>;

    fn new_summary() -> Op {
        let kf: fn(&(u32, i64)) -> u32 = |r| r.0;
        keyed_process(Witness::<(u32, i64)>::new(), &kf, summary()).0
    }

    /// Records at increasing times with a watermark after every fifth.
    fn feed(op: &mut Op, events: &[(i64, u32)], out: &mut Vec<(EventTime, Out)>) {
        for &(t, k) in events {
            op.on_record(t, (k, t), &mut |ts, o| {
                out.push((ts, o));
                Ok(())
            })
            .unwrap();
            if t % 5 == 0 {
                op.on_watermark(t - 3, &mut |ts, o| {
                    out.push((ts, o));
                    Ok(())
                })
                .unwrap();
            }
        }
    }

    #[test]
    fn state_and_timers_survive_a_restore_exactly() {
        let events: Vec<(i64, u32)> = (0..400).map(|i| (i * 3, (i % 11) as u32)).collect();
        let mut whole = new_summary();
        let mut expected = Vec::new();
        feed(&mut whole, &events, &mut expected);
        assert!(expected.len() > 100, "{}", expected.len());

        let root = tempfile::tempdir().unwrap();
        let cfg = CheckpointConfig::for_tests(root.path());
        let epoch = Duration::from_millis(10);
        let (ck, _) = Checkpoints::open(&cfg, epoch, 0, "job", 1, 128).unwrap();
        ck.restore_to(None).unwrap();
        let mut first = new_summary();
        let mut p = ck.participant("p", 0, 0..128).unwrap().unwrap();
        ck.seal();
        let mut got = Vec::new();
        // A full first checkpoint, then an incremental one after more keys changed.
        feed(&mut first, &events[..150], &mut got);
        p.epoch_done(checkpoint_at_tick(0), &mut first).unwrap();
        feed(&mut first, &events[150..230], &mut got);
        p.epoch_done(checkpoint_at_tick(1), &mut first).unwrap();
        ck.globally_committed_below(Some(checkpoint_at_tick(1) + 1))
            .unwrap();
        drop((p, ck));
        // The operator dies after more input; what it emitted then is replayed.
        feed(&mut first, &events[230..300], &mut Vec::new());

        let (ck, offer) = Checkpoints::open(&cfg, epoch, 0, "job", 1, 128).unwrap();
        ck.restore_to(crate::checkpoint::agree(&[offer])).unwrap();
        let mut restored = new_summary();
        let p = ck.participant("p", 0, 0..128).unwrap().unwrap();
        p.restore(&mut restored).unwrap();
        assert_eq!(restored.watermark, first_watermark_at(&events[..230]));
        feed(&mut restored, &events[230..], &mut got);
        assert_eq!(got, expected);
    }

    fn first_watermark_at(events: &[(i64, u32)]) -> EventTime {
        events
            .iter()
            .filter(|(t, _)| t % 5 == 0)
            .map(|(t, _)| t - 3)
            .max()
            .unwrap()
    }

    struct Remember {
        last: ValueState<i64>,
    }
    impl KeyedProcessFunction<u32, (u32, i64), ProcessingTimeOnly> for Remember {
        type Out = Option<i64>;
        fn process_element(
            &mut self,
            r: (u32, i64),
            ctx: &mut Context<'_, u32, Option<i64>, ProcessingTimeOnly>,
        ) {
            ctx.emit(ctx.value(&self.last));
            if r.1 >= 0 {
                ctx.update(&self.last, r.1);
            }
        }
    }

    #[test]
    fn state_with_a_ttl_expires_after_its_last_write() {
        let kf = |r: &(u32, i64)| r.0;
        let f = Remember {
            last: ValueState::new("last").with_ttl(Duration::from_millis(150)),
        };
        let (mut op, _) = keyed_process_processing_time(Witness::new(), &kf, f);
        let mut out = Vec::new();
        let mut push = |_: EventTime, o: Option<i64>| {
            out.push(o);
            Ok(())
        };
        op.on_record(0, (1, 5), &mut push).unwrap();
        op.on_record(0, (1, -1), &mut push).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        op.on_record(0, (1, -1), &mut push).unwrap();
        assert_eq!(
            out,
            [None, Some(5), None],
            "read after the TTL sees nothing"
        );
        assert_eq!(op.keys_with_state(), 0, "the expired key is dropped");

        // Untouched keys are dropped by the sweep.
        let mut out = |_: EventTime, _: Option<i64>| Ok(());
        op.on_record(0, (2, 7), &mut out).unwrap();
        assert_eq!(op.keys_with_state(), 1);
        let now = crate::time::now_millis();
        op.on_tick(now, &mut out).unwrap();
        assert_eq!(op.keys_with_state(), 1, "not expired yet");
        op.on_tick(now + 2 * SWEEP_EVERY_MS, &mut out).unwrap();
        assert_eq!(op.keys_with_state(), 0);
    }

    struct Folds {
        max: ReducingState<i64>,
        mean: AggregatingState<i64, Mean>,
    }
    struct Mean;
    impl crate::windows::Aggregator<i64> for Mean {
        type Acc = (i64, u32);
        type Out = i64;
        fn create_accumulator(&self) -> (i64, u32) {
            (0, 0)
        }
        fn add(&self, (s, n): (i64, u32), v: i64) -> (i64, u32) {
            (s + v, n + 1)
        }
        fn merge(&self, a: (i64, u32), b: (i64, u32)) -> (i64, u32) {
            (a.0 + b.0, a.1 + b.1)
        }
        fn result(&self, (s, n): (i64, u32)) -> i64 {
            s / i64::from(n.max(1))
        }
    }
    impl KeyedProcessFunction<u32, (u32, i64), ProcessingTimeOnly> for Folds {
        type Out = (Option<i64>, Option<i64>);
        fn process_element(
            &mut self,
            r: (u32, i64),
            ctx: &mut Context<'_, u32, Self::Out, ProcessingTimeOnly>,
        ) {
            if r.1 < 0 {
                ctx.clear_reducing(&self.max);
                ctx.clear_aggregating(&self.mean);
            } else {
                ctx.reduce(&self.max, r.1);
                ctx.aggregate(&self.mean, r.1);
            }
            ctx.emit((ctx.reduced(&self.max), ctx.aggregated(&self.mean)));
        }
    }

    #[test]
    fn reducing_and_aggregating_state_fold_what_is_added() {
        let kf = |r: &(u32, i64)| r.0;
        let f = Folds {
            max: ReducingState::new("max", |a: i64, b| a.max(b)),
            mean: AggregatingState::new("mean", Mean),
        };
        let (mut op, _) = keyed_process_processing_time(Witness::new(), &kf, f);
        let mut out = Vec::new();
        for r in [(1, 4), (1, 10), (2, 3), (1, 1), (1, -1), (1, 6)] {
            op.on_record(0, r, &mut |_, o| {
                out.push(o);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(
            out,
            [
                (Some(4), Some(4)),
                (Some(10), Some(7)),
                (Some(3), Some(3)),
                (Some(10), Some(5)),
                (None, None),
                (Some(6), Some(6)),
            ]
        );
    }

    struct Confused {
        a: ValueState<i64>,
        b: ValueState<String>,
    }
    impl KeyedProcessFunction<u32, (u32, i64), ProcessingTimeOnly> for Confused {
        type Out = ();
        fn process_element(
            &mut self,
            r: (u32, i64),
            ctx: &mut Context<'_, u32, (), ProcessingTimeOnly>,
        ) {
            ctx.update(&self.a, r.1);
            ctx.update(&self.b, r.1.to_string());
        }
    }

    #[test]
    fn one_name_with_two_types_fails_with_the_name() {
        let kf = |r: &(u32, i64)| r.0;
        let f = Confused {
            a: ValueState::new("x"),
            b: ValueState::new("x"),
        };
        let (mut op, _) = keyed_process_processing_time(Witness::new(), &kf, f);
        let e = op.on_record(0, (1, 5), &mut |_, ()| Ok(())).unwrap_err();
        assert!(
            e.message
                .contains("state `x` is used with two different types"),
            "{}",
            e.message
        );
    }
}

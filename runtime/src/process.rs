//! Keyed process functions (Flink's `KeyedProcessFunction`): per-key state, event-time and
//! processing-time timers, and typed side outputs.
//!
//! State is reached through descriptors the function owns (`ValueState<T>`,
//! `ListState<T>`, `MapState<K, V>`) and the context of the current call, which is bound to
//! the current key. Reads return owned values and writes are explicit (`update`, `add`,
//! `put`): there is never a `&mut` into the store, so the same API can be served from LMDB.

use crate::data::{EventTime, Witness};
use crate::error::Result;
use crate::key::Key;
use std::any::Any;
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
            _t: PhantomData<fn() -> ($($p,)+)>,
        }
        impl<$($p),+> $name<$($p),+> {
            /// A state called `name` (unique within the function).
            pub const fn new(name: &'static str) -> Self {
                $name { name, _t: PhantomData }
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

/// The state of one key: every state the function declared, by name.
#[derive(Default)]
pub struct KeyState {
    values: HashMap<&'static str, Box<dyn Any>>,
}

impl KeyState {
    fn slot<T: 'static, D: Default + 'static>(&mut self, name: &'static str) -> Option<&mut D> {
        let _ = PhantomData::<T>;
        self.values
            .entry(name)
            .or_insert_with(|| Box::new(D::default()))
            .downcast_mut::<D>()
    }
    fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
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
    _mode: PhantomData<M>,
}

impl<'a, K: Key, O> Context<'a, K, O, WithEventTime> {
    /// Fire `on_timer` for this key when the watermark reaches `time`.
    pub fn register_event_time_timer(&mut self, time: EventTime) {
        self.timers
            .event
            .entry(time)
            .or_default()
            .insert(self.key.clone());
    }
    /// Cancel an event-time timer of this key.
    pub fn delete_event_time_timer(&mut self, time: EventTime) {
        if let Some(ks) = self.timers.event.get_mut(&time) {
            ks.remove(self.key);
        }
    }
}

impl<'a, K: Key, O, M> Context<'a, K, O, M> {
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
        self.timers
            .processing
            .entry(time)
            .or_default()
            .insert(self.key.clone());
    }
    /// Cancel a processing-time timer of this key.
    pub fn delete_processing_time_timer(&mut self, time: EventTime) {
        if let Some(ks) = self.timers.processing.get_mut(&time) {
            ks.remove(self.key);
        }
    }

    /// The current key's value of `state`.
    pub fn value<T: Clone + 'static>(&self, state: &ValueState<T>) -> Option<T> {
        self.state
            .values
            .get(state.name)
            .and_then(|b| b.downcast_ref::<Option<T>>())
            .and_then(|v| v.clone())
    }
    /// Set the current key's value of `state`.
    pub fn update<T: Clone + 'static>(&mut self, state: &ValueState<T>, value: T) {
        if let Some(slot) = self.state.slot::<T, Option<T>>(state.name) {
            *slot = Some(value);
        }
    }
    /// Clear the current key's value of `state`.
    pub fn clear<T: 'static>(&mut self, state: &ValueState<T>) {
        self.state.values.remove(state.name);
    }
    /// The current key's list (a copy).
    pub fn list<T: Clone + 'static>(&self, state: &ListState<T>) -> Vec<T> {
        self.state
            .values
            .get(state.name)
            .and_then(|b| b.downcast_ref::<Vec<T>>())
            .cloned()
            .unwrap_or_default()
    }
    /// Append to the current key's list.
    pub fn add<T: 'static>(&mut self, state: &ListState<T>, value: T) {
        if let Some(v) = self.state.slot::<T, Vec<T>>(state.name) {
            v.push(value);
        }
    }
    /// Replace the current key's list (an empty list clears it).
    pub fn update_list<T: 'static>(&mut self, state: &ListState<T>, values: Vec<T>) {
        if values.is_empty() {
            self.state.values.remove(state.name);
        } else if let Some(v) = self.state.slot::<T, Vec<T>>(state.name) {
            *v = values;
        }
    }
    /// Clear the current key's list.
    pub fn clear_list<T: 'static>(&mut self, state: &ListState<T>) {
        self.state.values.remove(state.name);
    }
    /// The value of `k` in the current key's map.
    pub fn get<MK: Key, MV: Clone + 'static>(
        &self,
        state: &MapState<MK, MV>,
        k: &MK,
    ) -> Option<MV> {
        self.state
            .values
            .get(state.name)
            .and_then(|b| b.downcast_ref::<HashMap<MK, MV>>())
            .and_then(|m| m.get(k).cloned())
    }
    /// Set `k` in the current key's map.
    pub fn put<MK: Key, MV: 'static>(&mut self, state: &MapState<MK, MV>, k: MK, v: MV) {
        if let Some(m) = self.state.slot::<MK, HashMap<MK, MV>>(state.name) {
            m.insert(k, v);
        }
    }
    /// Remove `k` from the current key's map (the map's last entry clears it).
    pub fn remove<MK: Key, MV: 'static>(&mut self, state: &MapState<MK, MV>, k: &MK) {
        let now_empty = match self
            .state
            .values
            .get_mut(state.name)
            .and_then(|b| b.downcast_mut::<HashMap<MK, MV>>())
        {
            Some(m) => {
                m.remove(k);
                m.is_empty()
            }
            None => false,
        };
        if now_empty {
            self.state.values.remove(state.name);
        }
    }
    /// Clear the current key's map.
    pub fn clear_map<MK: 'static, MV: 'static>(&mut self, state: &MapState<MK, MV>) {
        self.state.values.remove(state.name);
    }
    /// All entries of the current key's map (a copy).
    pub fn entries<MK: Key, MV: Clone + 'static>(&self, state: &MapState<MK, MV>) -> Vec<(MK, MV)> {
        self.state
            .values
            .get(state.name)
            .and_then(|b| b.downcast_ref::<HashMap<MK, MV>>())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
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
    watermark: EventTime,
    out: Vec<(EventTime, P::Out)>,
    side: HashMap<&'static str, Box<dyn Any>>,
    _i: PhantomData<fn(I, M)>,
}

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
    fn call<F>(&mut self, key: &K, timestamp: Option<EventTime>, f: F)
    where
        F: FnOnce(&mut P, &mut Context<'_, K, P::Out, M>),
    {
        let state = self.state.entry(key.clone()).or_default();
        let mut ctx = Context {
            key,
            timestamp,
            watermark: self.watermark,
            state,
            timers: &mut self.timers,
            out: &mut self.out,
            side: &mut self.side,
            _mode: PhantomData,
        };
        f(&mut self.func, &mut ctx);
        if self.state.get(key).is_some_and(KeyState::is_empty) {
            self.state.remove(key);
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
        self.call(&k, timestamp, |f, ctx| f.process_element(record, ctx));
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
                self.call(&k, Some(t), |f, ctx| {
                    f.on_timer(t, TimeDomain::EventTime, ctx)
                });
                self.drain(out)?;
            }
        }
        Ok(())
    }

    /// The wall clock advanced: fire due processing-time timers.
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
                self.call(&k, Some(t), |f, ctx| {
                    f.on_timer(t, TimeDomain::ProcessingTime, ctx)
                });
                self.drain(out)?;
            }
        }
        Ok(())
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

//! Two-input operators: `connect` + keyed co-process functions (shared keyed state),
//! broadcast state, window joins and interval joins.
//!
//! A two-input vertex is an ordinary vertex whose records are [`Two`]`<L, R>`: each input is
//! lifted into `Two::Left` / `Two::Right` before the exchange, and one key function routes
//! both sides — which is also why both sides must be keyed by the same key type (rustc
//! reports a mismatch at the user's `connect`/`join`). The vertex's watermark is the minimum
//! over both inputs' instances, as in Flink.

use crate::checkpoint::{Checkpointed, DirtyKeys, StateReader, StateWriter};
use crate::data::{Data, Epoch, EventTime, Msg, Witness};
use crate::error::Result;
use crate::key::Key;
use crate::process::{
    Context, KeyedProcessFunction, ProcessingTimeOnly, TimeDomain, WithEventTime,
};
use crate::time::WindowKind;
use crate::vertex::MsgStream;
use crate::windows::{WindowFunction, WindowOp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

/// A record of the first (`Left`) or second (`Right`) input of a two-input operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Two<L, R> {
    /// From the first input.
    Left(L),
    /// From the second input.
    Right(R),
}

fn lift<'s, T: Data, U: Data>(s: &MsgStream<'s, T>, name: &str, f: fn(T) -> U) -> MsgStream<'s, U> {
    s.clone().unary(Pipeline, name, move |_, _| {
        move |input, output| {
            input.for_each(|cap, data| {
                let mut out: Vec<Msg<U>> = data
                    .drain(..)
                    .map(|m| match m {
                        Msg::Rec(ts, r) => Msg::Rec(ts, f(r)),
                        Msg::Watermark { from, wm } => Msg::Watermark { from, wm },
                        Msg::Idle { from } => Msg::Idle { from },
                    })
                    .collect();
                output.session(&cap).give_container(&mut out);
            });
        }
    })
}

/// Lift the first input of a two-input vertex.
pub fn left<'s, L: Data, R: Data>(s: &MsgStream<'s, L>, _: Witness<R>) -> MsgStream<'s, Two<L, R>> {
    lift(s, "Left", Two::Left)
}

/// Lift the second input of a two-input vertex.
pub fn right<'s, L: Data, R: Data>(
    s: &MsgStream<'s, R>,
    _: Witness<L>,
) -> MsgStream<'s, Two<L, R>> {
    lift(s, "Right", Two::Right)
}

/// The record type of a two-input vertex.
pub fn two_witness<L, R>(_: Witness<L>, _: Witness<R>) -> Witness<Two<L, R>> {
    Witness::new()
}

/// One key function for both sides; both must produce the same key type `K`.
pub fn two_keys<
    L,
    R,
    K: Key,
    KL: Fn(&L) -> K + Clone + 'static,
    KR: Fn(&R) -> K + Clone + 'static,
>(
    kl: KL,
    kr: KR,
) -> impl Fn(&Two<L, R>) -> K + Clone + 'static {
    move |t: &Two<L, R>| match t {
        Two::Left(l) => kl(l),
        Two::Right(r) => kr(r),
    }
}

/// A keyed function over two connected streams sharing keyed state (Flink's
/// `KeyedCoProcessFunction`). As for process functions, `M` is [`WithEventTime`] (the
/// default; both inputs have watermarks) or [`ProcessingTimeOnly`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a co-process function for these streams",
    label = "these streams need a `KeyedCoProcessFunction<_, _, _, {M}>`",
    note = "streams without watermarks take `impl KeyedCoProcessFunction<K, L, R, ProcessingTimeOnly>` (no event-time timers); to use event-time timers add `.watermarks(...)` upstream of both inputs"
)]
pub trait KeyedCoProcessFunction<K, L, R, M = WithEventTime>: 'static {
    /// What it emits.
    type Out;
    /// A record of the first input.
    fn process_element1(&mut self, record: L, ctx: &mut Context<'_, K, Self::Out, M>);
    /// A record of the second input.
    fn process_element2(&mut self, record: R, ctx: &mut Context<'_, K, Self::Out, M>);
    /// A timer of the current key fired.
    fn on_timer(
        &mut self,
        _time: EventTime,
        _domain: TimeDomain,
        _ctx: &mut Context<'_, K, Self::Out, M>,
    ) {
    }
}

/// Runs a co-process function as a process function over [`Two`].
pub struct CoProcess<F>(pub F);

impl<K, L, R, M: 'static, F: KeyedCoProcessFunction<K, L, R, M>>
    KeyedProcessFunction<K, Two<L, R>, M> for CoProcess<F>
{
    type Out = F::Out;
    #[inline]
    fn process_element(&mut self, record: Two<L, R>, ctx: &mut Context<'_, K, F::Out, M>) {
        match record {
            Two::Left(l) => self.0.process_element1(l, ctx),
            Two::Right(r) => self.0.process_element2(r, ctx),
        }
    }
    fn on_timer(&mut self, t: EventTime, d: TimeDomain, ctx: &mut Context<'_, K, F::Out, M>) {
        self.0.on_timer(t, d, ctx)
    }
}

/// `a.connect(b).process(f)` on inputs with watermarks, for generated code.
pub fn co_process<L, R, K, KF, F>(
    w: Witness<Two<L, R>>,
    key: &KF,
    f: F,
) -> (
    crate::process::KeyedProcessOp<K, Two<L, R>, KF, WithEventTime, CoProcess<F>>,
    Witness<F::Out>,
)
where
    K: Key,
    KF: Fn(&Two<L, R>) -> K + Clone,
    F: KeyedCoProcessFunction<K, L, R, WithEventTime>,
{
    let (op, _) = crate::process::keyed_process(w, key, CoProcess(f));
    (op, Witness::new())
}

/// `a.connect(b).process(f)` on inputs without watermarks, for generated code.
pub fn co_process_processing_time<L, R, K, KF, F>(
    w: Witness<Two<L, R>>,
    key: &KF,
    f: F,
) -> (
    crate::process::KeyedProcessOp<K, Two<L, R>, KF, ProcessingTimeOnly, CoProcess<F>>,
    Witness<F::Out>,
)
where
    K: Key,
    KF: Fn(&Two<L, R>) -> K + Clone,
    F: KeyedCoProcessFunction<K, L, R, ProcessingTimeOnly>,
{
    let (op, _) = crate::process::keyed_process_processing_time(w, key, CoProcess(f));
    (op, Witness::new())
}

// ---------------------------------------------------------------------------------------
// Broadcast state.

/// Read-only access to the broadcast state from the keyed side.
pub struct BroadcastView<'a, S> {
    state: &'a S,
}

impl<S> BroadcastView<'_, S> {
    /// The broadcast state.
    pub fn get(&self) -> &S {
        self.state
    }
}

/// A keyed stream connected to a broadcast stream (Flink's `KeyedBroadcastProcessFunction`):
/// every instance receives every broadcast record and keeps the same broadcast state `S`;
/// keyed records read it.
pub trait KeyedBroadcastProcessFunction<K, I, B>: 'static {
    /// What it emits.
    type Out;
    /// The broadcast state, identical on every instance.
    type State: Default + 'static;
    /// A record of the keyed input; the broadcast state is read-only here.
    fn process_element(
        &mut self,
        record: I,
        state: &Self::State,
        ctx: &mut Context<'_, K, Self::Out>,
    );
    /// A record of the broadcast input: update the broadcast state (deterministically, so
    /// every instance holds the same state).
    fn process_broadcast_element(&mut self, record: B, state: &mut Self::State);
    /// A timer of the current key fired.
    fn on_timer(
        &mut self,
        _time: EventTime,
        _domain: TimeDomain,
        _state: &Self::State,
        _ctx: &mut Context<'_, K, Self::Out>,
    ) {
    }
}

/// The operator of a keyed-broadcast process function on one instance.
pub struct BroadcastOp<
    K: 'static,
    I: 'static,
    B: 'static,
    KF,
    F: KeyedBroadcastProcessFunction<K, I, B>,
> {
    inner: crate::process::KeyedProcessOp<K, I, KF, WithEventTime, Adapter<F, K, I, B>>,
}

/// Wraps the user's function so the keyed side runs through the process-function machinery
/// with the broadcast state at hand.
pub struct Adapter<F: KeyedBroadcastProcessFunction<K, I, B>, K, I, B> {
    f: F,
    state: F::State,
    _t: std::marker::PhantomData<fn(K, I, B)>,
}

impl<F: KeyedBroadcastProcessFunction<K, I, B>, K: 'static, I: 'static, B: 'static>
    KeyedProcessFunction<K, I, WithEventTime> for Adapter<F, K, I, B>
{
    type Out = F::Out;
    fn process_element(&mut self, record: I, ctx: &mut Context<'_, K, F::Out>) {
        self.f.process_element(record, &self.state, ctx)
    }
    fn on_timer(&mut self, t: EventTime, d: TimeDomain, ctx: &mut Context<'_, K, F::Out>) {
        self.f.on_timer(t, d, &self.state, ctx)
    }
}

/// `keyed.connect(rules.broadcast()).process(f)` for generated code. The vertex's records
/// are `Two<I, B>`; the key function is only called on the keyed side.
pub fn broadcast_process<I, B, K, KF, F>(
    _: Witness<Two<I, B>>,
    key: &KF,
    f: F,
) -> (BroadcastOp<K, I, B, KF, F>, Witness<F::Out>)
where
    K: Key,
    KF: Fn(&I) -> K + Clone,
    F: KeyedBroadcastProcessFunction<K, I, B>,
    I: 'static,
    B: 'static,
{
    let adapter = Adapter {
        f,
        state: F::State::default(),
        _t: std::marker::PhantomData,
    };
    let (inner, _) = crate::process::keyed_process(Witness::<I>::new(), key, adapter);
    (BroadcastOp { inner }, Witness::new())
}

/// The routing key of a keyed-broadcast vertex: broadcast records are not routed by key.
pub fn broadcast_keys<I, B, K: Key + Default, KF: Fn(&I) -> K + Clone + 'static>(
    kf: KF,
) -> impl Fn(&Two<I, B>) -> K + Clone + 'static {
    move |t: &Two<I, B>| match t {
        Two::Left(i) => kf(i),
        Two::Right(_) => K::default(),
    }
}

impl<
        K: Key,
        I: 'static,
        B: 'static,
        KF: Fn(&I) -> K,
        F: KeyedBroadcastProcessFunction<K, I, B>,
    > BroadcastOp<K, I, B, KF, F>
{
    /// A record of either input.
    pub fn on_record<O: FnMut(EventTime, F::Out) -> Result<()>>(
        &mut self,
        ts: EventTime,
        record: Two<I, B>,
        out: &mut O,
    ) -> Result<()> {
        match record {
            Two::Left(i) => self.inner.on_record(ts, i, out),
            Two::Right(b) => {
                let a = self.inner.func_mut();
                a.f.process_broadcast_element(b, &mut a.state);
                Ok(())
            }
        }
    }
    /// The watermark advanced.
    pub fn on_watermark<O: FnMut(EventTime, F::Out) -> Result<()>>(
        &mut self,
        wm: EventTime,
        out: &mut O,
    ) -> Result<()> {
        self.inner.on_watermark(wm, out)
    }
    /// The wall clock advanced.
    pub fn on_tick<O: FnMut(EventTime, F::Out) -> Result<()>>(
        &mut self,
        now: EventTime,
        out: &mut O,
    ) -> Result<()> {
        self.inner.on_tick(now, out)
    }
    /// Side outputs written by the keyed side.
    pub fn drain_side<T: 'static, O: FnMut(EventTime, T) -> Result<()>>(
        &mut self,
        tag: &crate::process::OutputTag<T>,
        out: &mut O,
    ) -> Result<()> {
        self.inner.drain_side(tag, out)
    }
    /// Drop side output records nobody reads.
    pub fn discard_unread_sides(&mut self) {
        self.inner.discard_unread_sides()
    }
}

/// The broadcast state (when its type is serializable; the same on every instance, each
/// stores its copy) beside the keyed state of the keyed side.
impl<K, I, B, KF, F> Checkpointed for BroadcastOp<K, I, B, KF, F>
where
    K: Key,
    I: 'static,
    B: 'static,
    KF: Fn(&I) -> K,
    F: KeyedBroadcastProcessFunction<K, I, B>,
    F::State: serde::Serialize + serde::de::DeserializeOwned,
{
    fn snapshot(&mut self, _checkpoint: u64, out: &mut StateWriter<'_>) -> Result<()> {
        let meta = (self.inner.watermark, &self.inner.func_mut().state);
        out.put_meta(&crate::checkpoint::encode("broadcast state", &meta)?);
        self.inner.snapshot_keys(out)
    }
    fn restore(&mut self, _checkpoint: u64, from: &StateReader<'_>) -> Result<()> {
        if let Some(m) = from.meta()? {
            let (wm, state) = crate::checkpoint::decode("broadcast state", m)?;
            self.inner.watermark = wm;
            self.inner.func_mut().state = state;
        }
        self.inner.restore_keys(from)
    }
}

// ---------------------------------------------------------------------------------------
// Window join.

/// The window function of a window join: every pair of one window's left and right records.
pub struct JoinFn<F>(F);

impl<K, L: Clone + 'static, R: Clone + 'static, O, F: FnMut(&L, &R) -> O + 'static>
    WindowFunction<K, Two<L, R>> for JoinFn<F>
{
    type Acc = (Vec<L>, Vec<R>);
    type Out = O;
    fn add(&mut self, acc: Option<Self::Acc>, value: Two<L, R>) -> Self::Acc {
        let mut acc = acc.unwrap_or_default();
        match value {
            Two::Left(l) => acc.0.push(l),
            Two::Right(r) => acc.1.push(r),
        }
        acc
    }
    fn merge(&mut self, mut a: Self::Acc, b: &Self::Acc) -> Self::Acc {
        a.0.extend(b.0.iter().cloned());
        a.1.extend(b.1.iter().cloned());
        a
    }
    fn emit<E: FnMut(EventTime, O) -> Result<()>>(
        &mut self,
        _: &K,
        w: crate::time::Window,
        acc: Self::Acc,
        out: &mut E,
    ) -> Result<()> {
        for l in &acc.0 {
            for r in &acc.1 {
                out(w.max_timestamp(), (self.0)(l, r))?;
            }
        }
        Ok(())
    }
}

/// `a.key_by(ka).join(b.key_by(kb)).window(w).apply(f)` for generated code.
pub fn window_join<L, R, K, KF, O, F>(
    _: Witness<Two<L, R>>,
    key: &KF,
    assigner: impl Into<WindowKind>,
    lateness: Duration,
    f: F,
) -> (WindowOp<K, Two<L, R>, KF, JoinFn<F>>, Witness<O>)
where
    L: Clone + 'static,
    R: Clone + 'static,
    K: Key,
    KF: Fn(&Two<L, R>) -> K + Clone,
    F: FnMut(&L, &R) -> O + 'static,
{
    let (op, _) = crate::windows::window_with(key, assigner, lateness, JoinFn(f));
    (op, Witness::new())
}

// ---------------------------------------------------------------------------------------
// Interval join.

/// Interval join of two keyed streams (Flink's `intervalJoin(...).between(lower, upper)`):
/// a left record at `t` joins every right record of its key with a time in
/// `[t + lower, t + upper]`. State is dropped once the watermark makes a match impossible.
pub struct IntervalJoin<K, L, R, KF, F> {
    key: KF,
    lower: i64,
    upper: i64,
    f: F,
    left: HashMap<K, BTreeMap<EventTime, Vec<L>>>,
    right: HashMap<K, BTreeMap<EventTime, Vec<R>>>,
    watermark: EventTime,
    dirty: DirtyKeys<K>,
}

/// `a.key_by(ka).interval_join(b.key_by(kb)).between(lower, upper).process(f)` for generated code.
/// Bounds are milliseconds relative to the left record's time (`lower` may be negative).
pub fn interval_join<L, R, K, KF, O, F>(
    _: Witness<Two<L, R>>,
    key: &KF,
    lower: i64,
    upper: i64,
    f: F,
) -> (IntervalJoin<K, L, R, KF, F>, Witness<O>)
where
    K: Key,
    KF: Fn(&Two<L, R>) -> K + Clone,
    F: FnMut(&L, &R) -> O,
{
    (
        IntervalJoin {
            key: key.clone(),
            lower,
            upper,
            f,
            left: HashMap::new(),
            right: HashMap::new(),
            watermark: EventTime::MIN,
            dirty: DirtyKeys::default(),
        },
        Witness::new(),
    )
}

impl<K: Key, L: Clone, R: Clone, KF: Fn(&Two<L, R>) -> K, O, F: FnMut(&L, &R) -> O>
    IntervalJoin<K, L, R, KF, F>
{
    /// A record of either side: join it with the other side's buffered records.
    pub fn on_record<E: FnMut(EventTime, O) -> Result<()>>(
        &mut self,
        ts: EventTime,
        record: Two<L, R>,
        out: &mut E,
    ) -> Result<()> {
        let k = (self.key)(&record);
        self.dirty.touch(&k);
        match record {
            Two::Left(l) => {
                if let Some(rs) = self.right.get(&k) {
                    for (&rt, v) in
                        rs.range(ts.saturating_add(self.lower)..=ts.saturating_add(self.upper))
                    {
                        for r in v {
                            out(ts.max(rt), (self.f)(&l, r))?;
                        }
                    }
                }
                if ts.saturating_add(self.upper) > self.watermark {
                    self.left
                        .entry(k)
                        .or_default()
                        .entry(ts)
                        .or_default()
                        .push(l);
                }
            }
            Two::Right(r) => {
                if let Some(ls) = self.left.get(&k) {
                    for (&lt, v) in
                        ls.range(ts.saturating_sub(self.upper)..=ts.saturating_sub(self.lower))
                    {
                        for l in v {
                            out(ts.max(lt), (self.f)(l, &r))?;
                        }
                    }
                }
                if ts.saturating_sub(self.lower) > self.watermark {
                    self.right
                        .entry(k)
                        .or_default()
                        .entry(ts)
                        .or_default()
                        .push(r);
                }
            }
        }
        Ok(())
    }

    /// The watermark advanced: drop records that can no longer match.
    pub fn on_watermark<E: FnMut(EventTime, O) -> Result<()>>(
        &mut self,
        wm: EventTime,
        _out: &mut E,
    ) -> Result<()> {
        self.watermark = self.watermark.max(wm);
        let (lower, upper) = (self.lower, self.upper);
        // A left record at t can still match rights up to t + upper: keep while t + upper > wm.
        prune(&mut self.left, &mut self.dirty, |t| {
            t.saturating_add(upper) > wm
        });
        // A right record at t can still match lefts down to t − upper … up to t − lower.
        prune(&mut self.right, &mut self.dirty, |t| {
            t.saturating_sub(lower) > wm
        });
        Ok(())
    }

    /// Buffered records (for tests and metrics).
    pub fn buffered(&self) -> usize {
        self.left
            .values()
            .map(|m| m.values().map(Vec::len).sum::<usize>())
            .sum::<usize>()
            + self
                .right
                .values()
                .map(|m| m.values().map(Vec::len).sum::<usize>())
                .sum::<usize>()
    }
}

/// Drop the buffered records for which `keep` is false (and keys left with none), noting
/// the keys that changed.
fn prune<K: Key, T>(
    buffers: &mut HashMap<K, BTreeMap<EventTime, Vec<T>>>,
    dirty: &mut DirtyKeys<K>,
    keep: impl Fn(EventTime) -> bool,
) {
    buffers.retain(|k, m| {
        // Buffers are ordered by time and `keep` is monotone in it: look at the oldest first.
        if m.first_key_value().is_some_and(|(&t, _)| !keep(t)) {
            m.retain(|&t, _| keep(t));
            dirty.touch(k);
        }
        !m.is_empty()
    });
}

/// A key's buffered records of both sides, as a checkpoint stores them.
type Buffers<L, R> = (BTreeMap<EventTime, Vec<L>>, BTreeMap<EventTime, Vec<R>>);

/// The buffered records of both sides and the watermark.
impl<K: Key, L: Data, R: Data, KF: Fn(&Two<L, R>) -> K, O, F: FnMut(&L, &R) -> O> Checkpointed
    for IntervalJoin<K, L, R, KF, F>
{
    fn snapshot(&mut self, _checkpoint: u64, out: &mut StateWriter<'_>) -> Result<()> {
        out.put_meta(&crate::checkpoint::encode("watermark", &self.watermark)?);
        let (left, right) = (&self.left, &self.right);
        let empty = (BTreeMap::new(), BTreeMap::new());
        self.dirty.write(out, left.keys().chain(right.keys()), |k| {
            Ok(match (left.get(k), right.get(k)) {
                (None, None) => None,
                (l, r) => Some((l.unwrap_or(&empty.0), r.unwrap_or(&empty.1))),
            })
        })
    }
    fn restore(&mut self, _checkpoint: u64, from: &StateReader<'_>) -> Result<()> {
        if let Some(m) = from.meta()? {
            self.watermark = crate::checkpoint::decode("watermark", m)?;
        }
        let (left, right) = (&mut self.left, &mut self.right);
        from.for_each_keyed(|k: K, (l, r): Buffers<L, R>| {
            if !l.is_empty() {
                left.insert(k.clone(), l);
            }
            if !r.is_empty() {
                right.insert(k, r);
            }
        })?;
        self.dirty.restored(from);
        Ok(())
    }
}

/// Keep `Epoch` in scope for the docs of this module's generated-code entry points.
pub type EpochOf = Epoch;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_join_buffers_and_watermark_survive_a_checkpoint() {
        let kf = two_keys(|l: &(u32, i64)| l.0, |r: &(u32, i64)| r.0);
        let new = || {
            interval_join(
                Witness::<Two<(u32, i64), (u32, i64)>>::new(),
                &kf,
                -2,
                3,
                |l: &(u32, i64), r: &(u32, i64)| (l.1, r.1),
            )
            .0
        };
        type J<KF, F> = IntervalJoin<u32, (u32, i64), (u32, i64), KF, F>;
        fn feed<
            KF: Fn(&Two<(u32, i64), (u32, i64)>) -> u32,
            F: FnMut(&(u32, i64), &(u32, i64)) -> (i64, i64),
        >(
            j: &mut J<KF, F>,
            rs: &[(i64, Two<(u32, i64), (u32, i64)>)],
        ) -> Vec<(i64, i64)> {
            let mut out = Vec::new();
            for (t, r) in rs {
                j.on_record(*t, r.clone(), &mut |_, o| {
                    out.push(o);
                    Ok(())
                })
                .unwrap();
            }
            j.on_watermark(rs.last().map_or(0, |r| r.0) - 5, &mut |_, o| {
                out.push(o);
                Ok(())
            })
            .unwrap();
            out
        }
        let mut j = new();
        feed(
            &mut j,
            &[
                (10, Two::Left((1, 10))),
                (8, Two::Right((1, 8))),
                (30, Two::Left((2, 30))),
            ],
        );
        let mut restored = crate::checkpoint::through_a_checkpoint(&mut j, new());
        assert_eq!(restored.buffered(), j.buffered());
        let more = [
            (31, Two::Right((2, 31))),
            (32, Two::Right((2, 29))),
            (40, Two::Left((1, 40))),
        ];
        let want = feed(&mut j, &more);
        assert_eq!(want, [(30, 31), (30, 29)]);
        assert_eq!(feed(&mut restored, &more), want);
        assert_eq!(restored.buffered(), j.buffered());
    }

    #[test]
    fn interval_join_matches_within_bounds_and_forgets_old_records() {
        let kf = two_keys(|l: &(u32, i64)| l.0, |r: &(u32, i64)| r.0);
        let (mut j, _) = interval_join(
            Witness::<Two<(u32, i64), (u32, i64)>>::new(),
            &kf,
            -2,
            3,
            |l: &(u32, i64), r: &(u32, i64)| (l.1, r.1),
        );
        let mut out = Vec::new();
        let mut push = |t: EventTime, o: (i64, i64)| {
            out.push((t, o));
            Ok(())
        };
        j.on_record(10, Two::Left((1, 10)), &mut push).unwrap();
        j.on_record(8, Two::Right((1, 8)), &mut push).unwrap(); // 8 in [8, 13]
        j.on_record(14, Two::Right((1, 14)), &mut push).unwrap(); // not in [8, 13]
        j.on_record(7, Two::Right((2, 7)), &mut push).unwrap(); // other key
        j.on_record(13, Two::Right((1, 13)), &mut push).unwrap();
        j.on_record(12, Two::Left((1, 12)), &mut push).unwrap(); // [10, 15]: 13, 14
        j.on_watermark(100, &mut push).unwrap();
        assert_eq!(
            out.iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![(10, 8), (10, 13), (12, 13), (12, 14)]
        );
        assert_eq!(j.buffered(), 0);
    }
}

//! Keyed event-time windows: tumbling, sliding (by panes) and session windows with a
//! reduce, aggregate or process-window function, allowed lateness and late data.
//!
//! Semantics are Flink's: a window `[start, end)` fires when the watermark reaches
//! `end − 1`; a record is late for a window when `end − 1 + allowed_lateness ≤ watermark`;
//! a record late for all its windows goes to the late-data output; a late record within the
//! allowed lateness updates its window, which fires again at once with the new result.
//! Results carry the window's `end − 1` as event time.
//!
//! Sliding windows keep one partial result per *pane* (`gcd(size, slide)` long): each
//! record is added to exactly one pane, and a firing window combines its panes — no copy of
//! a record per window.

use crate::checkpoint::{decode, encode, Checkpointed, StateReader, StateWriter};
use crate::data::{EventTime, Witness, NO_TIMESTAMP};
use crate::error::Result;
use crate::key::Key;
use crate::time::{now_millis, Window, WindowAssigner, WindowKind};
use std::collections::hash_map::Entry;
use std::collections::BTreeMap;
use std::time::Duration;

/// Incremental aggregation with an accumulator (Flink's `AggregateFunction`).
pub trait Aggregator<T>: 'static {
    /// The running state of one window.
    type Acc: Clone + 'static;
    /// What the window emits.
    type Out;
    /// A fresh accumulator.
    fn create_accumulator(&self) -> Self::Acc;
    /// Add one record.
    fn add(&self, acc: Self::Acc, value: T) -> Self::Acc;
    /// Combine two accumulators (panes of a sliding window, merged sessions).
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
    /// The window's result.
    fn result(&self, acc: Self::Acc) -> Self::Out;
}

/// What a window operator does with a window's records.
pub trait WindowFunction<K, T>: 'static {
    /// Per-pane (or per-session) state.
    type Acc: Clone + 'static;
    /// Output records.
    type Out;
    /// Add a record to the state.
    fn add(&mut self, acc: Option<Self::Acc>, value: T) -> Self::Acc;
    /// Combine two states.
    fn merge(&mut self, a: Self::Acc, b: &Self::Acc) -> Self::Acc;
    /// Emit the window's result(s).
    fn emit<O: FnMut(EventTime, Self::Out) -> Result<()>>(
        &mut self,
        key: &K,
        window: Window,
        acc: Self::Acc,
        out: &mut O,
    ) -> Result<()>;
}

/// `window(...).reduce(f)`.
pub struct ReduceFn<F>(F);

impl<K, T: Clone + 'static, F: FnMut(T, T) -> T + 'static> WindowFunction<K, T> for ReduceFn<F> {
    type Acc = T;
    type Out = T;
    #[inline]
    fn add(&mut self, acc: Option<T>, value: T) -> T {
        match acc {
            Some(a) => (self.0)(a, value),
            None => value,
        }
    }
    fn merge(&mut self, a: T, b: &T) -> T {
        (self.0)(a, b.clone())
    }
    fn emit<O: FnMut(EventTime, T) -> Result<()>>(
        &mut self,
        _: &K,
        w: Window,
        acc: T,
        out: &mut O,
    ) -> Result<()> {
        out(w.max_timestamp(), acc)
    }
}

/// `window(...).aggregate(aggregator)`.
pub struct AggregateFn<A>(A);

impl<K, T, A: Aggregator<T>> WindowFunction<K, T> for AggregateFn<A> {
    type Acc = A::Acc;
    type Out = A::Out;
    #[inline]
    fn add(&mut self, acc: Option<A::Acc>, value: T) -> A::Acc {
        let acc = acc.unwrap_or_else(|| self.0.create_accumulator());
        self.0.add(acc, value)
    }
    fn merge(&mut self, a: A::Acc, b: &A::Acc) -> A::Acc {
        self.0.merge(a, b.clone())
    }
    fn emit<O: FnMut(EventTime, A::Out) -> Result<()>>(
        &mut self,
        _: &K,
        w: Window,
        acc: A::Acc,
        out: &mut O,
    ) -> Result<()> {
        out(w.max_timestamp(), self.0.result(acc))
    }
}

/// `window(...).process(|key, window, records| outputs)`: sees every record of the window.
pub struct ProcessFn<F>(F);

impl<K, T: Clone + 'static, I: IntoIterator, F: FnMut(&K, Window, Vec<T>) -> I + 'static>
    WindowFunction<K, T> for ProcessFn<F>
{
    type Acc = Vec<T>;
    type Out = I::Item;
    #[inline]
    fn add(&mut self, acc: Option<Vec<T>>, value: T) -> Vec<T> {
        let mut v = acc.unwrap_or_default();
        v.push(value);
        v
    }
    fn merge(&mut self, mut a: Vec<T>, b: &Vec<T>) -> Vec<T> {
        a.extend(b.iter().cloned());
        a
    }
    fn emit<O: FnMut(EventTime, I::Item) -> Result<()>>(
        &mut self,
        key: &K,
        w: Window,
        acc: Vec<T>,
        out: &mut O,
    ) -> Result<()> {
        for o in (self.0)(key, w, acc) {
            out(w.max_timestamp(), o)?;
        }
        Ok(())
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A keyed window operator instance.
pub struct WindowOp<K, T, KF, WF: WindowFunction<K, T>> {
    key: KF,
    assigner: WindowAssigner,
    /// Processing-time windows follow the wall clock; count windows count.
    processing_time: bool,
    count: Option<u64>,
    counts: crate::key::StateMap<K, (u64, WF::Acc)>,
    lateness: i64,
    func: WF,
    watermark: EventTime,
    /// Non-merging windows: (key, pane start) → state (`None` only while being updated).
    panes: crate::key::StateMap<(K, EventTime), Option<WF::Acc>>,
    /// Sessions: per key, the live windows.
    sessions: crate::key::StateMap<K, Vec<(Window, WF::Acc)>>,
    /// Windows to fire: max timestamp → keys, registered once per (key, window) for panes;
    /// for sessions once per record that moved a session's end (stale entries find nothing).
    fire: BTreeMap<EventTime, Vec<K>>,
    /// Panes to drop: time → (key, pane start), once per pane. Not used for tumbling windows
    /// without lateness: their pane is taken when the window fires.
    cleanup: BTreeMap<EventTime, Vec<(K, EventTime)>>,
    /// Sessions to drop (only with allowed lateness): time → keys.
    cleanup_sessions: BTreeMap<EventTime, Vec<K>>,
    scratch: Vec<Window>,
    dropped_late: u64,
    /// What changed since the last checkpoint (tracked once checkpoints started).
    dirty: Option<Dirty<K>>,
    _t: std::marker::PhantomData<fn(T)>,
}

/// Window state changed since the last checkpoint.
struct Dirty<K> {
    panes: std::collections::HashSet<(K, EventTime), foldhash::fast::FixedState>,
    keys: std::collections::HashSet<K, foldhash::fast::FixedState>,
}

impl<K> Default for Dirty<K> {
    fn default() -> Self {
        Dirty {
            panes: Default::default(),
            keys: Default::default(),
        }
    }
}

/// One stored entry of a window operator's keyed state.
#[derive(serde::Serialize, serde::Deserialize)]
enum WindowEntry<A> {
    /// A pane of a tumbling or sliding window: its start and state.
    Pane(EventTime, A),
    /// A key's live sessions.
    Sessions(Vec<(Window, A)>),
    /// A key's open count window: records so far and state.
    Count(u64, A),
}

fn new_op<K, T, KF, WF: WindowFunction<K, T>>(
    key: KF,
    kind: impl Into<WindowKind>,
    lateness: Duration,
    func: WF,
) -> WindowOp<K, T, KF, WF> {
    let kind = kind.into();
    let (assigner, processing_time, count) = match kind {
        WindowKind::EventTime(a) => (a, false, None),
        WindowKind::ProcessingTime(a) => (a, true, None),
        WindowKind::Count(n) => (
            WindowAssigner::Tumbling { size: 1, offset: 0 },
            false,
            Some(n.max(1)),
        ),
    };
    WindowOp {
        key,
        assigner,
        processing_time,
        count,
        counts: Default::default(),
        lateness: millis(lateness),
        func,
        watermark: EventTime::MIN,
        panes: Default::default(),
        sessions: Default::default(),
        fire: BTreeMap::new(),
        cleanup: BTreeMap::new(),
        cleanup_sessions: BTreeMap::new(),
        scratch: Vec::new(),
        dirty: None,
        dropped_late: 0,
        _t: std::marker::PhantomData,
    }
}

/// A window operator with any window function (window joins use it).
pub fn window_with<K, T, KF: Clone, WF: WindowFunction<K, T>>(
    key: &KF,
    kind: impl Into<WindowKind>,
    lateness: Duration,
    func: WF,
) -> (WindowOp<K, T, KF, WF>, Witness<WF::Out>) {
    (new_op(key.clone(), kind, lateness, func), Witness::new())
}

/// The late-data handler of a window whose `late_data()` nobody reads.
pub fn drop_late<T>(_: EventTime, _: T) -> Result<()> {
    Ok(())
}

/// `window(a).allowed_lateness(l).reduce(f)` for generated code.
pub fn window_reduce<T, K, KF, F>(
    _: Witness<T>,
    key: &KF,
    assigner: impl Into<WindowKind>,
    lateness: Duration,
    f: F,
) -> (WindowOp<K, T, KF, ReduceFn<F>>, Witness<T>)
where
    T: Clone + 'static,
    K: Key,
    KF: Fn(&T) -> K + Clone,
    F: FnMut(T, T) -> T + 'static,
{
    (
        new_op(key.clone(), assigner, lateness, ReduceFn(f)),
        Witness::new(),
    )
}

/// `window(a).allowed_lateness(l).aggregate(agg)` for generated code.
pub fn window_aggregate<T, K, KF, A>(
    _: Witness<T>,
    key: &KF,
    assigner: impl Into<WindowKind>,
    lateness: Duration,
    agg: A,
) -> (WindowOp<K, T, KF, AggregateFn<A>>, Witness<A::Out>)
where
    K: Key,
    KF: Fn(&T) -> K + Clone,
    A: Aggregator<T>,
{
    (
        new_op(key.clone(), assigner, lateness, AggregateFn(agg)),
        Witness::new(),
    )
}

/// `window(a).allowed_lateness(l).process(f)` for generated code.
pub fn window_process<T, K, KF, I, F>(
    _: Witness<T>,
    key: &KF,
    assigner: impl Into<WindowKind>,
    lateness: Duration,
    f: F,
) -> (WindowOp<K, T, KF, ProcessFn<F>>, Witness<I::Item>)
where
    T: Clone + 'static,
    K: Key,
    KF: Fn(&T) -> K + Clone,
    I: IntoIterator,
    F: FnMut(&K, Window, Vec<T>) -> I + 'static,
{
    (
        new_op(key.clone(), assigner, lateness, ProcessFn(f)),
        Witness::new(),
    )
}

impl<K: Key, T, KF: Fn(&T) -> K, WF: WindowFunction<K, T>> WindowOp<K, T, KF, WF> {
    fn is_late(&self, w: &Window) -> bool {
        // In processing time a record is assigned by the clock when it arrives: never late.
        !self.processing_time && w.max_timestamp().saturating_add(self.lateness) <= self.watermark
    }

    /// Records late beyond the allowed lateness (sent to the late-data output, or dropped).
    pub fn dropped_late(&self) -> u64 {
        self.dropped_late
    }

    /// Add a record; fires windows that are already past the watermark (late updates),
    /// sends records late for all their windows to `late`.
    pub fn on_record<O, L>(
        &mut self,
        ts: EventTime,
        record: T,
        out: &mut O,
        late: &mut L,
    ) -> Result<()>
    where
        O: FnMut(EventTime, WF::Out) -> Result<()>,
        L: FnMut(EventTime, T) -> Result<()>,
    {
        if let Some(n) = self.count {
            return self.on_count_record(record, n, out);
        }
        // Processing time: the clock at arrival, but never in a window that already fired.
        let ts = if self.processing_time {
            now_millis().max(self.watermark.saturating_add(1))
        } else {
            ts
        };
        if ts == NO_TIMESTAMP {
            self.dropped_late += 1;
            return late(ts, record);
        }
        if self.assigner.is_merging() {
            return self.on_session_record(ts, record, out, late);
        }
        let mut windows = std::mem::take(&mut self.scratch);
        self.assigner.assign(ts, &mut windows);
        if windows.iter().all(|w| self.is_late(w)) {
            self.scratch = windows;
            self.dropped_late += 1;
            return late(ts, record);
        }
        let Some(pane) = self.assigner.pane(ts) else {
            self.scratch = windows;
            return Ok(());
        };
        let k = (self.key)(&record);
        let new_pane = match self.panes.entry((k.clone(), pane.start)) {
            Entry::Occupied(mut o) => {
                let slot = o.get_mut();
                *slot = Some(self.func.add(slot.take(), record));
                false
            }
            Entry::Vacant(v) => {
                v.insert(Some(self.func.add(None, record)));
                true
            }
        };
        self.touch_pane(&k, pane.start);
        if new_pane && !self.takes_panes() {
            // The pane can go once the last window containing it is past lateness.
            let last_end = windows.iter().map(|w| w.end).max().unwrap_or(pane.end);
            self.cleanup
                .entry((last_end - 1).saturating_add(self.lateness))
                .or_default()
                .push((k.clone(), pane.start));
        }
        let pane_len = pane.end - pane.start;
        for w in windows.iter().copied() {
            if self.is_late(&w) {
                continue;
            }
            if w.max_timestamp() <= self.watermark {
                // Late but within the allowed lateness: fire again with the update.
                self.fire_window(&k, w, out)?;
            } else if new_pane && !self.has_other_pane(&k, w, pane.start, pane_len) {
                // The key's first pane in this window: the window fires for the key.
                self.fire
                    .entry(w.max_timestamp())
                    .or_default()
                    .push(k.clone());
            }
        }
        self.scratch = windows;
        Ok(())
    }

    fn on_count_record<O: FnMut(EventTime, WF::Out) -> Result<()>>(
        &mut self,
        record: T,
        n: u64,
        out: &mut O,
    ) -> Result<()> {
        let k = (self.key)(&record);
        self.touch_key(&k);
        let entry = self.counts.remove(&k);
        let (c, acc) = match entry {
            Some((c, acc)) => (c + 1, self.func.add(Some(acc), record)),
            None => (1, self.func.add(None, record)),
        };
        if c >= n {
            // A count window has no time bounds; it is reported as [0, n).
            self.func.emit(
                &k,
                Window {
                    start: 0,
                    end: n as i64,
                },
                acc,
                out,
            )
        } else {
            self.counts.insert(k, (c, acc));
            Ok(())
        }
    }

    /// Processing time advanced to `now`: fire processing-time windows that ended.
    pub fn on_tick<O: FnMut(EventTime, WF::Out) -> Result<()>>(
        &mut self,
        now: EventTime,
        out: &mut O,
    ) -> Result<()> {
        if !self.processing_time {
            return Ok(());
        }
        self.advance(now, out)
    }

    /// End of input: processing-time windows fire now (a bounded job emits everything);
    /// count windows report what they could not complete.
    pub fn on_end<O: FnMut(EventTime, WF::Out) -> Result<()>>(
        &mut self,
        out: &mut O,
    ) -> Result<()> {
        if self.processing_time {
            self.advance(EventTime::MAX, out)?;
        }
        Ok(())
    }

    fn touch_pane(&mut self, k: &K, start: EventTime) {
        if let Some(d) = &mut self.dirty {
            d.panes.insert((k.clone(), start));
        }
    }

    fn touch_key(&mut self, k: &K) {
        if let Some(d) = &mut self.dirty {
            d.keys.insert(k.clone());
        }
    }

    /// After a restore: the timers of the restored state (each window of each key once).
    fn rebuild_timers(&mut self) {
        self.fire.clear();
        self.cleanup.clear();
        self.cleanup_sessions.clear();
        let wm = self.watermark;
        let mut seen: std::collections::HashSet<(EventTime, K)> = Default::default();
        let mut fire: Vec<(EventTime, u64, K)> = Vec::new();
        let mut windows = Vec::new();
        for (k, start) in self.panes.keys() {
            windows.clear();
            self.assigner.assign(*start, &mut windows);
            let pane_end = self.assigner.pane(*start).map_or(*start + 1, |p| p.end);
            for w in &windows {
                if w.max_timestamp() > wm && seen.insert((w.max_timestamp(), k.clone())) {
                    fire.push((w.max_timestamp(), k.key_hash(), k.clone()));
                }
            }
            if !self.takes_panes() {
                let last_end = windows.iter().map(|w| w.end).max().unwrap_or(pane_end);
                self.cleanup
                    .entry((last_end - 1).saturating_add(self.lateness))
                    .or_default()
                    .push((k.clone(), *start));
            }
        }
        for (k, ws) in &self.sessions {
            for (w, _) in ws {
                if w.max_timestamp() > wm && seen.insert((w.max_timestamp(), k.clone())) {
                    fire.push((w.max_timestamp(), k.key_hash(), k.clone()));
                }
                if self.lateness > 0 {
                    self.cleanup_sessions
                        .entry(w.max_timestamp().saturating_add(self.lateness))
                        .or_default()
                        .push(k.clone());
                }
            }
        }
        // Each (window end, key) once, keys in hash order (deterministic).
        fire.sort_by_key(|(t, h, _)| (*t, *h));
        for (t, _, k) in fire {
            self.fire.entry(t).or_default().push(k);
        }
    }

    /// Tumbling windows without lateness: a pane is one window and goes when it fires.
    fn takes_panes(&self) -> bool {
        matches!(self.assigner, WindowAssigner::Tumbling { .. }) && self.lateness == 0
    }

    /// Whether key `k` has state in a pane of `w` other than the one starting at `except`.
    fn has_other_pane(&self, k: &K, w: Window, except: EventTime, pane_len: i64) -> bool {
        let mut s = w.start;
        while s < w.end {
            if s != except && self.panes.contains_key(&(k.clone(), s)) {
                return true;
            }
            s += pane_len;
        }
        false
    }

    fn fire_window<O: FnMut(EventTime, WF::Out) -> Result<()>>(
        &mut self,
        k: &K,
        w: Window,
        out: &mut O,
    ) -> Result<()> {
        if self.takes_panes() && w.max_timestamp() <= self.watermark {
            self.touch_pane(k, w.start);
            return match self.panes.remove(&(k.clone(), w.start)).flatten() {
                Some(a) => self.func.emit(k, w, a, out),
                None => Ok(()),
            };
        }
        let pane_len = match self.assigner {
            WindowAssigner::Sliding { size, slide, .. } => crate::time::gcd(size, slide),
            _ => w.end - w.start,
        };
        let mut acc: Option<WF::Acc> = None;
        let mut s = w.start;
        while s < w.end {
            if let Some(Some(p)) = self.panes.get(&(k.clone(), s)) {
                acc = Some(match acc {
                    None => p.clone(),
                    Some(a) => self.func.merge(a, p),
                });
            }
            s += pane_len;
        }
        match acc {
            Some(a) => self.func.emit(k, w, a, out),
            None => Ok(()),
        }
    }

    fn on_session_record<O, L>(
        &mut self,
        ts: EventTime,
        record: T,
        out: &mut O,
        late: &mut L,
    ) -> Result<()>
    where
        O: FnMut(EventTime, WF::Out) -> Result<()>,
        L: FnMut(EventTime, T) -> Result<()>,
    {
        let WindowAssigner::Session { gap } = self.assigner else {
            return Ok(());
        };
        let k = (self.key)(&record);
        let mut merged = Window {
            start: ts,
            end: ts.saturating_add(gap),
        };
        self.touch_key(&k);
        let windows = self.sessions.entry(k.clone()).or_default();
        let mut acc: Option<WF::Acc> = None;
        let mut i = 0;
        while i < windows.len() {
            if windows[i].0.intersects(&merged) {
                let (w, a) = windows.swap_remove(i);
                merged = merged.cover(&w);
                acc = Some(match acc {
                    None => a,
                    Some(x) => self.func.merge(x, &a),
                });
            } else {
                i += 1;
            }
        }
        let late_window = !self.processing_time
            && merged.max_timestamp().saturating_add(self.lateness) <= self.watermark;
        if late_window {
            // Put the merged state back untouched; the record is late.
            if let Some(a) = acc {
                windows.push((merged, a));
            }
            self.dropped_late += 1;
            return late(ts, record);
        }
        let acc = self.func.add(acc, record);
        windows.push((merged, acc));
        if self.lateness > 0 {
            self.cleanup_sessions
                .entry(merged.max_timestamp().saturating_add(self.lateness))
                .or_default()
                .push(k.clone());
        }
        if merged.max_timestamp() <= self.watermark {
            self.fire_session(&k, merged, out)?;
        } else {
            self.fire.entry(merged.max_timestamp()).or_default().push(k);
        }
        Ok(())
    }

    fn fire_session<O: FnMut(EventTime, WF::Out) -> Result<()>>(
        &mut self,
        k: &K,
        w: Window,
        out: &mut O,
    ) -> Result<()> {
        let Some(acc) = self
            .sessions
            .get(k)
            .and_then(|ws| ws.iter().find(|(x, _)| *x == w))
            .map(|(_, a)| a.clone())
        else {
            return Ok(());
        };
        self.func.emit(k, w, acc, out)
    }

    /// The input watermark advanced: fire every window it passed, drop expired state.
    /// (Processing-time and count windows ignore watermarks, as in Flink.)
    pub fn on_watermark<O: FnMut(EventTime, WF::Out) -> Result<()>>(
        &mut self,
        wm: EventTime,
        out: &mut O,
    ) -> Result<()> {
        if self.processing_time || self.count.is_some() {
            return Ok(());
        }
        self.advance(wm, out)
    }

    fn advance<O: FnMut(EventTime, WF::Out) -> Result<()>>(
        &mut self,
        wm: EventTime,
        out: &mut O,
    ) -> Result<()> {
        if wm <= self.watermark {
            return Ok(());
        }
        self.watermark = wm;
        while let Some(entry) = self.fire.first_entry() {
            if *entry.key() > wm {
                break;
            }
            let (t, keys) = entry.remove_entry();
            // Panes register a key once per window, in arrival order (deterministic for a
            // deterministic input); sessions may register a key more than once.
            let keys = if self.assigner.is_merging() {
                sorted_unique(keys)
            } else {
                keys
            };
            for k in keys {
                match self.assigner {
                    WindowAssigner::Session { .. } => {
                        let lateness = self.lateness;
                        if let Some(d) = &mut self.dirty {
                            d.keys.insert(k.clone());
                        }
                        let Some(ws) = self.sessions.get_mut(&k) else {
                            continue;
                        };
                        let mut i = 0;
                        while i < ws.len() {
                            if ws[i].0.max_timestamp() != t {
                                i += 1;
                                continue;
                            }
                            let w = ws[i].0;
                            if lateness == 0 {
                                // Fired and expired at once: no clone, no cleanup entry.
                                let (_, a) = ws.swap_remove(i);
                                self.func.emit(&k, w, a, out)?;
                            } else {
                                let a = ws[i].1.clone();
                                self.func.emit(&k, w, a, out)?;
                                i += 1;
                            }
                        }
                        if ws.is_empty() {
                            self.sessions.remove(&k);
                        }
                    }
                    WindowAssigner::Tumbling { size, .. }
                    | WindowAssigner::Sliding { size, .. } => {
                        let end = t.saturating_add(1);
                        self.fire_window(
                            &k,
                            Window {
                                start: end - size,
                                end,
                            },
                            out,
                        )?;
                    }
                }
            }
        }
        while let Some(entry) = self.cleanup.first_entry() {
            if *entry.key() > wm {
                break;
            }
            for key_pane in entry.remove() {
                self.panes.remove(&key_pane);
                if let Some(d) = &mut self.dirty {
                    d.panes.insert(key_pane);
                }
            }
        }
        while let Some(entry) = self.cleanup_sessions.first_entry() {
            if *entry.key() > wm {
                break;
            }
            for k in sorted_unique(entry.remove()) {
                self.purge(&k);
            }
        }
        Ok(())
    }

    fn purge(&mut self, k: &K) {
        self.touch_key(k);
        let wm = self.watermark;
        let lateness = self.lateness;
        match self.assigner {
            WindowAssigner::Session { .. } => {
                if let Some(ws) = self.sessions.get_mut(k) {
                    ws.retain(|(w, _)| w.max_timestamp().saturating_add(lateness) > wm);
                    if ws.is_empty() {
                        self.sessions.remove(k);
                    }
                }
            }
            // Panes are dropped one by one from `cleanup`.
            WindowAssigner::Tumbling { .. } | WindowAssigner::Sliding { .. } => {}
        }
    }

    /// End of input: say how many late records were dropped, if no `late_data()` output
    /// read them (Flink drops them silently; weir says so).
    pub fn finish(&self, operator: &str, late_output_read: bool) {
        let partial: u64 = self.counts.values().map(|(c, _)| *c).sum();
        if partial > 0 {
            tracing::warn!(
                operator,
                records = partial,
                "count windows still open at the end of the input were not emitted (as in Flink)"
            );
        }
        if self.dropped_late > 0 && !late_output_read {
            tracing::warn!(operator, dropped = self.dropped_late, "window dropped records that arrived later than its allowed lateness; read them with `.late_data()`");
        }
    }

    /// Keys with window state (for tests and metrics).
    pub fn live_keys(&self) -> usize {
        let pane_keys: std::collections::HashSet<&K> = self.panes.keys().map(|(k, _)| k).collect();
        pane_keys.len() + self.sessions.len()
    }
}

const SUB_SESSIONS: &[u8] = &[1];
const SUB_COUNT: &[u8] = &[2];

fn sub_pane(start: EventTime) -> [u8; 9] {
    let mut b = [0u8; 9];
    b[1..].copy_from_slice(&start.to_be_bytes());
    b
}

impl<K, T, KF, WF> Checkpointed for WindowOp<K, T, KF, WF>
where
    K: Key,
    KF: Fn(&T) -> K,
    WF: WindowFunction<K, T>,
    WF::Acc: serde::Serialize + serde::de::DeserializeOwned,
{
    fn snapshot(&mut self, _checkpoint: u64, out: &mut StateWriter<'_>) -> Result<()> {
        out.put_meta(&encode(
            "the window's watermark",
            &(self.watermark, self.dropped_late),
        )?);
        match self.dirty.take() {
            // The first checkpoint of a fresh run writes everything.
            None => {
                for ((k, start), acc) in &self.panes {
                    if let Some(a) = acc {
                        out.put_keyed_sub(k, &sub_pane(*start), &WindowEntry::Pane(*start, a))?;
                    }
                }
                for (k, ws) in &self.sessions {
                    out.put_keyed_sub(k, SUB_SESSIONS, &WindowEntry::Sessions(ws.clone()))?;
                }
                for (k, (c, a)) in &self.counts {
                    out.put_keyed_sub(k, SUB_COUNT, &WindowEntry::Count(*c, a))?;
                }
            }
            Some(d) => {
                for (k, start) in d.panes {
                    match self.panes.get(&(k.clone(), start)) {
                        Some(Some(a)) => {
                            out.put_keyed_sub(&k, &sub_pane(start), &WindowEntry::Pane(start, a))?
                        }
                        _ => out.delete_keyed_sub(&k, &sub_pane(start)),
                    }
                }
                for k in d.keys {
                    match self.sessions.get(&k) {
                        Some(ws) => {
                            out.put_keyed_sub(&k, SUB_SESSIONS, &WindowEntry::Sessions(ws.clone()))?
                        }
                        None => out.delete_keyed_sub(&k, SUB_SESSIONS),
                    }
                    match self.counts.get(&k) {
                        Some((c, a)) => {
                            out.put_keyed_sub(&k, SUB_COUNT, &WindowEntry::Count(*c, a))?
                        }
                        None => out.delete_keyed_sub(&k, SUB_COUNT),
                    }
                }
            }
        }
        self.dirty = Some(Dirty::default());
        Ok(())
    }

    fn restore(&mut self, _checkpoint: u64, from: &StateReader<'_>) -> Result<()> {
        if let Some(meta) = from.meta()? {
            let (wm, dropped): (EventTime, u64) = decode("the window's watermark", meta)?;
            self.watermark = wm;
            self.dropped_late = dropped;
        }
        let (panes, sessions, counts) = (&mut self.panes, &mut self.sessions, &mut self.counts);
        from.for_each_keyed(|k: K, e: WindowEntry<WF::Acc>| match e {
            WindowEntry::Pane(start, a) => {
                panes.insert((k, start), Some(a));
            }
            WindowEntry::Sessions(ws) => {
                sessions.insert(k, ws);
            }
            WindowEntry::Count(c, a) => {
                counts.insert(k, (c, a));
            }
        })?;
        self.rebuild_timers();
        self.dirty = from.incremental().then(Dirty::default);
        Ok(())
    }
}

/// Keys in the order of their key hash (deterministic across runs and processes), each once.
fn sorted_unique<K: Key>(keys: Vec<K>) -> Vec<K> {
    if keys.len() <= 1 {
        return keys;
    }
    let mut hashed: Vec<(u64, K)> = keys.into_iter().map(|k| (k.key_hash(), k)).collect();
    hashed.sort_by_key(|(h, _)| *h);
    let mut out: Vec<K> = Vec::with_capacity(hashed.len());
    let mut run_start = 0;
    let mut run_hash = None;
    for (h, k) in hashed {
        if run_hash != Some(h) {
            run_hash = Some(h);
            run_start = out.len();
        }
        // Equal keys have equal hashes: look for a duplicate within this hash's run only.
        if !out[run_start..].contains(&k) {
            out.push(k);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    type Out = Vec<(EventTime, (u32, i64))>;

    fn run(
        assigner: WindowAssigner,
        lateness: u64,
        events: &[Result<(i64, u32, i64), i64>],
    ) -> (Out, Vec<(u32, i64)>) {
        let kf = |r: &(u32, i64)| r.0;
        let (mut op, _) = window_reduce(
            Witness::<(u32, i64)>::new(),
            &kf,
            assigner,
            Duration::from_millis(lateness),
            |a: (u32, i64), b: (u32, i64)| (a.0, a.1 + b.1),
        );
        let mut out = Vec::new();
        let mut late = Vec::new();
        for e in events {
            match *e {
                Ok((ts, k, v)) => op
                    .on_record(
                        ts,
                        (k, v),
                        &mut |t, r| {
                            out.push((t, r));
                            Ok(())
                        },
                        &mut |_, r| {
                            late.push(r);
                            Ok(())
                        },
                    )
                    .unwrap(),
                Err(wm) => op
                    .on_watermark(wm, &mut |t, r| {
                        out.push((t, r));
                        Ok(())
                    })
                    .unwrap(),
            }
        }
        (out, late)
    }

    type Op = WindowOp<
        u32,
        (u32, i64),
        fn(&(u32, i64)) -> u32,
        ReduceFn<fn((u32, i64), (u32, i64)) -> (u32, i64)>,
    >;

    fn new_reduce(assigner: WindowAssigner, lateness: u64) -> Op {
        fn kf(r: &(u32, i64)) -> u32 {
            r.0
        }
        fn sum(a: (u32, i64), b: (u32, i64)) -> (u32, i64) {
            (a.0, a.1 + b.1)
        }
        let kf: fn(&(u32, i64)) -> u32 = kf;
        window_reduce(
            Witness::<(u32, i64)>::new(),
            &kf,
            assigner,
            Duration::from_millis(lateness),
            sum as fn((u32, i64), (u32, i64)) -> (u32, i64),
        )
        .0
    }

    fn feed(op: &mut Op, events: &[Result<(i64, u32, i64), i64>], out: &mut Out) {
        for e in events {
            let mut emit = |t, r| {
                out.push((t, r));
                Ok(())
            };
            match *e {
                Ok((ts, k, v)) => op
                    .on_record(ts, (k, v), &mut emit, &mut |_, _| Ok(()))
                    .unwrap(),
                Err(wm) => op.on_watermark(wm, &mut emit).unwrap(),
            }
        }
    }

    /// Window state taken at a checkpoint and restored into a new operator (as after a
    /// crash) gives the same results as an operator that never stopped: panes of sliding
    /// windows, sessions, lateness, and the timers rebuilt from the state. The second
    /// checkpoint writes only what changed.
    #[test]
    fn window_state_survives_a_checkpoint_and_restore() {
        use crate::checkpoint::{checkpoint_at_tick, CheckpointConfig, Checkpoints};
        let events: Vec<Result<(i64, u32, i64), i64>> = (0..400)
            .map(|i| {
                if i % 25 == 24 {
                    Err(i * 7)
                } else {
                    Ok((i * 7 + (i % 5) * 3, (i % 6) as u32, i))
                }
            })
            .chain([Err(i64::MAX)])
            .collect();
        let cases = [
            (WindowAssigner::tumbling(Duration::from_millis(50)), 0),
            (WindowAssigner::tumbling(Duration::from_millis(50)), 40),
            (
                WindowAssigner::sliding(Duration::from_millis(60), Duration::from_millis(20)),
                0,
            ),
            (WindowAssigner::session(Duration::from_millis(9)), 30),
        ];
        for (assigner, lateness) in cases {
            let mut whole = new_reduce(assigner, lateness);
            let mut expected = Vec::new();
            feed(&mut whole, &events, &mut expected);

            let root = tempfile::tempdir().unwrap();
            let cfg = CheckpointConfig::for_tests(root.path());
            let epoch = Duration::from_millis(10);
            let (ck, _) = Checkpoints::open(&cfg, epoch, 0, "job", 1, 128).unwrap();
            ck.restore_to(None).unwrap();
            let mut first = new_reduce(assigner, lateness);
            let mut p = ck.participant("w", 0, 0..128).unwrap().unwrap();
            ck.seal();
            let mut got = Vec::new();
            feed(&mut first, &events[..150], &mut got);
            p.epoch_done(checkpoint_at_tick(0), &mut first).unwrap();
            feed(&mut first, &events[150..230], &mut got);
            p.epoch_done(checkpoint_at_tick(1), &mut first).unwrap();
            ck.globally_committed_below(Some(checkpoint_at_tick(1) + 1))
                .unwrap();
            drop((p, ck));
            // Output up to the checkpoint stays; the operator dies after more input.
            let mut replay = Vec::new();
            feed(&mut first, &events[230..300], &mut replay);

            let (ck, offer) = Checkpoints::open(&cfg, epoch, 0, "job", 1, 128).unwrap();
            ck.restore_to(crate::checkpoint::agree(&[offer])).unwrap();
            let mut restored = new_reduce(assigner, lateness);
            let p = ck.participant("w", 0, 0..128).unwrap().unwrap();
            p.restore(&mut restored).unwrap();
            feed(&mut restored, &events[230..], &mut got);
            let sorted = |mut v: Out| {
                v.sort_unstable();
                v
            };
            assert_eq!(
                sorted(got),
                sorted(expected.clone()),
                "{assigner:?} lateness {lateness}"
            );
        }
    }

    #[test]
    fn tumbling_fires_at_end_minus_one_and_handles_lateness() {
        let t = WindowAssigner::tumbling(Duration::from_millis(10));
        let (out, late) = run(
            t,
            5,
            &[
                Ok((1, 1, 1)),
                Ok((9, 1, 2)),
                Ok((12, 1, 4)),
                Err(8),          // not yet
                Err(9),          // [0,10) fires: 3
                Ok((3, 1, 10)),  // late, within lateness (9 + 5 > 9): fires again: 13
                Err(14),         // 9 + 5 <= 14: [0,10) expired
                Ok((4, 1, 100)), // beyond lateness: late output
                Err(19),         // [10,20) fires: 4
            ],
        );
        assert_eq!(out, vec![(9, (1, 3)), (9, (1, 13)), (19, (1, 4))]);
        assert_eq!(late, vec![(1, 100)]);
    }

    #[test]
    fn sliding_windows_combine_panes() {
        let s = WindowAssigner::sliding(Duration::from_millis(10), Duration::from_millis(5));
        let (out, _) = run(
            s,
            0,
            &[Ok((1, 1, 1)), Ok((6, 1, 2)), Ok((11, 1, 4)), Err(100)],
        );
        // Windows [-5,5) [0,10) [5,15) [10,20)
        assert_eq!(
            out,
            vec![(4, (1, 1)), (9, (1, 3)), (14, (1, 6)), (19, (1, 4))]
        );
    }

    #[test]
    fn sessions_merge_and_fire_after_gap() {
        let s = WindowAssigner::session(Duration::from_millis(10));
        let (out, late) = run(
            s,
            0,
            &[
                Ok((0, 1, 1)),
                Ok((5, 1, 2)),
                Ok((30, 1, 4)),
                Ok((14, 1, 8)),
                Err(24),
                Err(100),
                Ok((1, 1, 1)),
            ],
        );
        // [0,10)+[5,15)+[14,24) merge into [0,24); [30,40) alone.
        assert_eq!(out, vec![(23, (1, 11)), (39, (1, 4))]);
        assert_eq!(late, vec![(1, 1)]);
    }

    #[test]
    fn count_windows_fire_every_n_records_per_key() {
        let kf = |r: &(u32, i64)| r.0;
        let (mut op, _) = window_reduce(
            Witness::<(u32, i64)>::new(),
            &kf,
            crate::time::CountWindow::of(2),
            Duration::ZERO,
            |a: (u32, i64), b: (u32, i64)| (a.0, a.1 + b.1),
        );
        let mut out = Vec::new();
        for (k, v) in [(1, 1), (2, 5), (1, 2), (1, 4), (2, 6), (1, 8)] {
            op.on_record(
                0,
                (k, v),
                &mut |_, r| {
                    out.push(r);
                    Ok(())
                },
                &mut |_, _| Ok(()),
            )
            .unwrap();
        }
        assert_eq!(out, vec![(1, 3), (2, 11), (1, 12)]);
    }

    #[test]
    fn processing_time_windows_fire_on_the_clock_and_at_end() {
        let kf = |r: &(u32, i64)| r.0;
        let (mut op, _) = window_reduce(
            Witness::<(u32, i64)>::new(),
            &kf,
            crate::time::TumblingProcessingTime::seconds(3600),
            Duration::ZERO,
            |a: (u32, i64), b: (u32, i64)| (a.0, a.1 + b.1),
        );
        let mut out = Vec::new();
        for v in [1, 2, 3] {
            op.on_record(
                NO_TIMESTAMP,
                (7, v),
                &mut |_, r| {
                    out.push(r);
                    Ok(())
                },
                &mut |_, _| Ok(()),
            )
            .unwrap();
        }
        op.on_watermark(EventTime::MAX, &mut |_, r| {
            out.push(r);
            Ok(())
        })
        .unwrap();
        assert!(
            out.is_empty(),
            "watermarks do not fire processing-time windows"
        );
        op.on_end(&mut |_, r| {
            out.push(r);
            Ok(())
        })
        .unwrap();
        // All three arrived within one hour-long window, unless the test straddled an hour.
        assert_eq!(out.iter().map(|r| r.1).sum::<i64>(), 6);
    }

    #[test]
    fn state_is_dropped_after_lateness() {
        let t = WindowAssigner::tumbling(Duration::from_millis(10));
        let kf = |r: &(u32, i64)| r.0;
        let (mut op, _) = window_reduce(
            Witness::<(u32, i64)>::new(),
            &kf,
            t,
            Duration::from_millis(5),
            |a: (u32, i64), b: (u32, i64)| (a.0, a.1 + b.1),
        );
        let mut sink = |_: EventTime, _: (u32, i64)| Ok(());
        let mut late = |_: EventTime, _: (u32, i64)| Ok(());
        for k in 0..100 {
            op.on_record(3, (k, 1), &mut sink, &mut late).unwrap();
        }
        op.on_watermark(9, &mut sink).unwrap();
        assert_eq!(op.live_keys(), 100);
        op.on_watermark(14, &mut sink).unwrap();
        assert_eq!(op.live_keys(), 0);
    }
}

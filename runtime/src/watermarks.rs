//! Watermark strategies and the timestamp/watermark assigner operator (`.watermarks(...)`).
//!
//! An assigner takes each record's event time from a user function and generates watermarks
//! per operator instance: periodically (after every batch it processed) for
//! [`BoundedOutOfOrderness`] and [`Monotonous`], or per record for [`Punctuated`] and for
//! user-defined [`WatermarkGenerator`]s. It ignores upstream watermarks (as Flink's
//! assigner does), and at the end of its input emits the final watermark `i64::MAX`, which
//! fires every remaining event-time window.

use crate::data::{EventTime, Witness};
use std::time::{Duration, Instant};

/// Generates watermarks for one instance from the records it sees.
pub trait WatermarkGenerator<T>: 'static {
    /// A record with event time `ts` passed; return a watermark to emit at once (punctuated
    /// generators), or `None`.
    fn on_event(&mut self, record: &T, ts: EventTime) -> Option<EventTime>;
    /// Called after every batch: return the current watermark (periodic generators), or
    /// `None`. Emitting the same or a lower value again is harmless.
    fn on_periodic_emit(&mut self) -> Option<EventTime>;
}

/// How to generate watermarks for a stream: declared in the pipeline with
/// `.watermarks(strategy, |r| r.event_time)`.
pub trait WatermarkStrategy<T>: 'static {
    /// The per-instance generator.
    type Generator: WatermarkGenerator<T>;
    /// A fresh generator for one instance.
    fn create_generator(&self) -> Self::Generator;
    /// After how long without records an instance counts as idle.
    fn idleness(&self) -> Option<Duration>;
}

/// Records arrive at most `bound` out of order: watermark = `max_seen − bound − 1` (Flink's
/// `forBoundedOutOfOrderness`).
#[derive(Debug, Clone, Copy)]
pub struct BoundedOutOfOrderness {
    bound: i64,
    idleness: Option<Duration>,
}

impl BoundedOutOfOrderness {
    /// Disorder of at most `bound`.
    pub fn of(bound: Duration) -> Self {
        BoundedOutOfOrderness {
            bound: i64::try_from(bound.as_millis()).unwrap_or(i64::MAX),
            idleness: None,
        }
    }
    /// Disorder of at most `ms` milliseconds.
    pub fn millis(ms: u64) -> Self {
        Self::of(Duration::from_millis(ms))
    }
    /// Disorder of at most `s` seconds.
    pub fn seconds(s: u64) -> Self {
        Self::of(Duration::from_secs(s))
    }
    /// An instance without records for `timeout` stops holding the watermark back.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idleness = Some(timeout);
        self
    }
}

/// Timestamps never decrease (Flink's `forMonotonousTimestamps`: bounded with bound 0).
#[derive(Debug, Clone, Copy, Default)]
pub struct Monotonous {
    idleness: Option<Duration>,
}

impl Monotonous {
    /// Monotonous timestamps.
    pub fn new() -> Self {
        Monotonous { idleness: None }
    }
    /// An instance without records for `timeout` stops holding the watermark back.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idleness = Some(timeout);
        self
    }
}

/// The running state of a bounded-out-of-orderness generator.
#[derive(Debug, Clone)]
pub struct BoundedGenerator {
    bound: i64,
    max_seen: Option<EventTime>,
}

impl<T> WatermarkGenerator<T> for BoundedGenerator {
    #[inline]
    fn on_event(&mut self, _: &T, ts: EventTime) -> Option<EventTime> {
        if self.max_seen.is_none_or(|m| ts > m) {
            self.max_seen = Some(ts);
        }
        None
    }
    fn on_periodic_emit(&mut self) -> Option<EventTime> {
        self.max_seen
            .map(|m| m.saturating_sub(self.bound).saturating_sub(1))
    }
}

impl<T> WatermarkStrategy<T> for BoundedOutOfOrderness {
    type Generator = BoundedGenerator;
    fn create_generator(&self) -> BoundedGenerator {
        BoundedGenerator {
            bound: self.bound,
            max_seen: None,
        }
    }
    fn idleness(&self) -> Option<Duration> {
        self.idleness
    }
}

impl<T> WatermarkStrategy<T> for Monotonous {
    type Generator = BoundedGenerator;
    fn create_generator(&self) -> BoundedGenerator {
        BoundedGenerator {
            bound: 0,
            max_seen: None,
        }
    }
    fn idleness(&self) -> Option<Duration> {
        self.idleness
    }
}

/// A user function decides per record: `|record, ts| Some(watermark)` or `None`.
#[derive(Clone)]
pub struct Punctuated<F> {
    f: F,
    idleness: Option<Duration>,
}

impl<F> Punctuated<F> {
    /// Watermarks from `f(record, event_time)`.
    pub fn new(f: F) -> Self {
        Punctuated { f, idleness: None }
    }
    /// An instance without records for `timeout` stops holding the watermark back.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idleness = Some(timeout);
        self
    }
}

/// The generator of a [`Punctuated`] strategy.
pub struct PunctuatedGenerator<F>(F);

impl<T, F: FnMut(&T, EventTime) -> Option<EventTime> + 'static> WatermarkGenerator<T>
    for PunctuatedGenerator<F>
{
    #[inline]
    fn on_event(&mut self, record: &T, ts: EventTime) -> Option<EventTime> {
        (self.0)(record, ts)
    }
    fn on_periodic_emit(&mut self) -> Option<EventTime> {
        None
    }
}

impl<T, F: FnMut(&T, EventTime) -> Option<EventTime> + Clone + 'static> WatermarkStrategy<T>
    for Punctuated<F>
{
    type Generator = PunctuatedGenerator<F>;
    fn create_generator(&self) -> Self::Generator {
        PunctuatedGenerator(self.f.clone())
    }
    fn idleness(&self) -> Option<Duration> {
        self.idleness
    }
}

/// A strategy from your own generator: `Custom::new(|| MyGenerator::default())`.
#[derive(Clone)]
pub struct Custom<C> {
    create: C,
    idleness: Option<Duration>,
}

impl<C> Custom<C> {
    /// Use `create()` for every instance.
    pub fn new(create: C) -> Self {
        Custom {
            create,
            idleness: None,
        }
    }
    /// An instance without records for `timeout` stops holding the watermark back.
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idleness = Some(timeout);
        self
    }
}

impl<T, G: WatermarkGenerator<T>, C: Fn() -> G + 'static> WatermarkStrategy<T> for Custom<C> {
    type Generator = G;
    fn create_generator(&self) -> G {
        (self.create)()
    }
    fn idleness(&self) -> Option<Duration> {
        self.idleness
    }
}

/// What an assigner wants to emit downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A new watermark.
    Watermark(EventTime),
    /// The instance became idle.
    Idle,
}

/// The `.watermarks(...)` operator of one instance.
///
/// When it is chained to a source that reads splits (Kafka partitions; see
/// [`crate::sources::split`]), it keeps one generator per split and emits the minimum of
/// their watermarks, leaving out splits idle for the idleness timeout: a partition that lags
/// behind does not have its records made late by a faster one, and a quiet partition does
/// not hold event time back once idle (Flink's per-split watermarks).
pub struct Assigner<T, G, E> {
    extract: E,
    generator: G,
    idleness: Option<Duration>,
    emitted: Option<EventTime>,
    pending: Option<EventTime>,
    seen: bool,
    idle: bool,
    last_record: Instant,
    /// A fresh generator for a new split.
    create: Box<dyn Fn() -> G>,
    /// Per-split state, once the source said which split its records come from.
    splits: Vec<SplitMark<G>>,
    /// A split's generator emitted a watermark for the record just stamped.
    split_event: bool,
    _t: std::marker::PhantomData<fn(&T)>,
}

/// The watermark state of one split.
struct SplitMark<G> {
    generator: G,
    /// The largest watermark the split's generator produced.
    wm: Option<EventTime>,
    seen: bool,
    idle: bool,
    last_record: Instant,
}

/// `.watermarks(strategy, extractor)`: typed constructor for generated code.
pub fn watermarks<T, S: WatermarkStrategy<T>, E: FnMut(&T) -> EventTime>(
    w: Witness<T>,
    strategy: S,
    extract: E,
) -> (Assigner<T, S::Generator, E>, Witness<T>) {
    let generator = strategy.create_generator();
    let idleness = strategy.idleness();
    (
        Assigner {
            extract,
            generator,
            idleness,
            emitted: None,
            pending: None,
            seen: false,
            idle: false,
            last_record: Instant::now(),
            create: Box::new(move || strategy.create_generator()),
            splits: Vec::new(),
            split_event: false,
            _t: std::marker::PhantomData,
        },
        w,
    )
}

impl<T, G: WatermarkGenerator<T>, E: FnMut(&T) -> EventTime> Assigner<T, G, E> {
    /// The record's event time; feeds the generator.
    #[inline]
    pub fn stamp(&mut self, record: &T) -> EventTime {
        let ts = (self.extract)(record);
        self.seen = true;
        if let Some((index, count)) = crate::sources::split::current() {
            self.stamp_split(record, ts, index as usize, count as usize);
        } else if let Some(wm) = self.generator.on_event(record, ts) {
            self.pending = Some(self.pending.map_or(wm, |p| p.max(wm)));
        }
        ts
    }

    /// A record of split `index` of `count`.
    #[inline(never)]
    fn stamp_split(&mut self, record: &T, ts: EventTime, index: usize, count: usize) {
        if self.splits.len() != count {
            let now = Instant::now();
            self.splits.truncate(count);
            while self.splits.len() < count {
                self.splits.push(SplitMark {
                    generator: (self.create)(),
                    wm: None,
                    seen: false,
                    idle: false,
                    last_record: now,
                });
            }
        }
        let s = &mut self.splits[index];
        s.seen = true;
        if let Some(wm) = s.generator.on_event(record, ts) {
            s.wm = Some(s.wm.map_or(wm, |w| w.max(wm)));
            self.split_event = true;
        }
    }

    /// The minimum watermark over the splits that are not idle (`None` while one of them
    /// has none yet, or when all are idle).
    fn split_minimum(&self) -> Option<EventTime> {
        let mut min = None;
        for s in self.splits.iter().filter(|s| !s.idle) {
            let wm = s.wm?;
            min = Some(min.map_or(wm, |m: EventTime| m.min(wm)));
        }
        min
    }

    /// `flush` for an assigner whose records come from splits.
    fn flush_splits(&mut self) -> Option<Mark> {
        let now = Instant::now();
        for s in &mut self.splits {
            if s.seen {
                s.seen = false;
                s.idle = false;
                s.last_record = now;
            } else if let Some(t) = self.idleness {
                if !s.idle && now.duration_since(s.last_record) >= t {
                    s.idle = true;
                }
            }
            if let Some(wm) = s.generator.on_periodic_emit() {
                s.wm = Some(s.wm.map_or(wm, |w| w.max(wm)));
            }
        }
        self.seen = false;
        let was_idle = self.idle;
        if self.splits.iter().all(|s| s.idle) {
            self.idle = true;
            return (!was_idle).then_some(Mark::Idle);
        }
        self.idle = false;
        match self.split_minimum() {
            Some(wm) if self.emitted.is_none_or(|e| wm > e) => {
                self.emitted = Some(wm);
                Some(Mark::Watermark(wm))
            }
            _ if was_idle => self.emitted.map(Mark::Watermark),
            _ => None,
        }
    }

    /// Right after the record that produced it: a punctuated watermark, if one is due
    /// (emitted after the record, as in Flink).
    #[inline]
    pub fn take_event_mark(&mut self) -> Option<Mark> {
        if self.split_event {
            self.split_event = false;
            let wm = self.split_minimum()?;
            if self.emitted.is_none_or(|e| wm > e) {
                self.emitted = Some(wm);
                return Some(Mark::Watermark(wm));
            }
            return None;
        }
        let wm = self.pending.take()?;
        if self.emitted.is_none_or(|e| wm > e) {
            self.emitted = Some(wm);
            Some(Mark::Watermark(wm))
        } else {
            None
        }
    }

    /// After a batch: the watermark or idleness marker to emit, if any.
    pub fn flush(&mut self) -> Option<Mark> {
        if !self.splits.is_empty() {
            return self.flush_splits();
        }
        let was_idle = self.idle;
        if self.seen {
            self.seen = false;
            self.idle = false;
            if self.idleness.is_some() {
                self.last_record = Instant::now();
            }
        } else if let Some(t) = self.idleness {
            if !self.idle && self.last_record.elapsed() >= t {
                self.idle = true;
                return Some(Mark::Idle);
            }
        }
        let candidate = match (self.pending.take(), self.generator.on_periodic_emit()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        match candidate {
            Some(wm) if self.emitted.is_none_or(|e| wm > e) => {
                self.emitted = Some(wm);
                Some(Mark::Watermark(wm))
            }
            // Coming back from idleness: say where we are again.
            _ if was_idle && !self.idle => self.emitted.map(Mark::Watermark),
            _ => None,
        }
    }

    /// End of input: the final watermark.
    pub fn end(&mut self) -> Mark {
        self.emitted = Some(EventTime::MAX);
        Mark::Watermark(EventTime::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_out_of_orderness_is_max_minus_bound_minus_one() {
        let (mut a, _) = watermarks(
            Witness::<i64>::new(),
            BoundedOutOfOrderness::millis(200),
            |r: &i64| *r,
        );
        assert_eq!(a.flush(), None);
        a.stamp(&1000);
        assert_eq!(a.flush(), Some(Mark::Watermark(799)));
        a.stamp(&900);
        assert_eq!(a.flush(), None);
        a.stamp(&1500);
        assert_eq!(a.flush(), Some(Mark::Watermark(1299)));
        assert_eq!(a.end(), Mark::Watermark(i64::MAX));
    }

    #[test]
    fn punctuated_emits_what_the_function_says() {
        let (mut a, _) = watermarks(
            Witness::<(i64, bool)>::new(),
            Punctuated::new(|r: &(i64, bool), ts| r.1.then_some(ts)),
            |r: &(i64, bool)| r.0,
        );
        a.stamp(&(10, false));
        assert_eq!(a.take_event_mark(), None);
        a.stamp(&(20, true));
        assert_eq!(a.take_event_mark(), Some(Mark::Watermark(20)));
        a.stamp(&(30, false));
        assert_eq!(a.take_event_mark(), None);
        assert_eq!(a.flush(), None);
    }

    #[test]
    fn idle_after_timeout_and_back() {
        let (mut a, _) = watermarks(
            Witness::<i64>::new(),
            Monotonous::new().with_idleness(Duration::from_millis(20)),
            |r: &i64| *r,
        );
        a.stamp(&5);
        assert_eq!(a.flush(), Some(Mark::Watermark(4)));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(a.flush(), Some(Mark::Idle));
        assert_eq!(a.flush(), None);
        a.stamp(&5);
        assert_eq!(a.flush(), Some(Mark::Watermark(4)));
    }

    #[test]
    fn per_split_watermark_is_the_minimum_over_splits() {
        use crate::sources::split::from_split;
        let (mut a, _) = watermarks(
            Witness::<i64>::new(),
            BoundedOutOfOrderness::millis(0),
            |r: &i64| *r,
        );
        // Split 0 runs ahead; split 1 has sent nothing yet: no watermark.
        from_split(0, 2, || a.stamp(&10_000));
        assert_eq!(a.flush(), None);
        from_split(1, 2, || a.stamp(&2_000));
        assert_eq!(a.flush(), Some(Mark::Watermark(1_999)));
        // A record of split 1 at 3 s is not late although split 0 is at 10 s.
        from_split(1, 2, || a.stamp(&5_000));
        assert_eq!(a.flush(), Some(Mark::Watermark(4_999)));
        from_split(1, 2, || a.stamp(&20_000));
        assert_eq!(a.flush(), Some(Mark::Watermark(9_999)));
        assert_eq!(a.end(), Mark::Watermark(i64::MAX));
    }

    #[test]
    fn an_idle_split_does_not_hold_the_watermark_back() {
        use crate::sources::split::from_split;
        let (mut a, _) = watermarks(
            Witness::<i64>::new(),
            Monotonous::new().with_idleness(Duration::from_millis(20)),
            |r: &i64| *r,
        );
        from_split(0, 2, || a.stamp(&100));
        from_split(1, 2, || a.stamp(&50));
        assert_eq!(a.flush(), Some(Mark::Watermark(49)));
        std::thread::sleep(Duration::from_millis(30));
        // Split 0 keeps sending, split 1 went quiet: it is left out once idle.
        from_split(0, 2, || a.stamp(&200));
        assert_eq!(a.flush(), Some(Mark::Watermark(199)));
        std::thread::sleep(Duration::from_millis(30));
        // Both quiet: the instance is idle.
        assert_eq!(a.flush(), Some(Mark::Idle));
        assert_eq!(a.flush(), None);
        // Split 1 comes back behind: the watermark does not go back.
        from_split(1, 2, || a.stamp(&60));
        assert_eq!(a.flush(), Some(Mark::Watermark(199)));
    }

    #[test]
    fn punctuated_per_split() {
        use crate::sources::split::from_split;
        let (mut a, _) = watermarks(
            Witness::<i64>::new(),
            Punctuated::new(|r: &i64, ts| (r % 2 == 0).then_some(ts)),
            |r: &i64| *r,
        );
        from_split(0, 2, || a.stamp(&10));
        assert_eq!(a.take_event_mark(), None);
        from_split(1, 2, || a.stamp(&4));
        assert_eq!(a.take_event_mark(), Some(Mark::Watermark(4)));
        from_split(1, 2, || a.stamp(&12));
        assert_eq!(a.take_event_mark(), Some(Mark::Watermark(10)));
    }
}

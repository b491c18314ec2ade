//! Which split of its source (a Kafka partition, …) the record being handed downstream comes
//! from, so that a watermark assigner chained to the source keeps one watermark per split
//! (Flink's per-partition watermarks): a source reader wraps each hand-over in
//! [`from_split`], and the assigner, which runs inside that call when it is chained to the
//! source, reads [`current`].
//!
//! Records handed over outside [`from_split`] (every other source, or an assigner that is not
//! chained to its source and so runs in another activation) carry no split.

use std::cell::Cell;

thread_local! {
    /// `(split index, number of splits)` of the record being handed over; 0 splits = none.
    static CURRENT: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

/// Run `f` (which hands one record downstream) as coming from split `index` of `count`
/// splits this source instance reads. Indices are local to the instance: `0..count`.
#[inline]
pub fn from_split<R>(index: u32, count: u32, f: impl FnOnce() -> R) -> R {
    CURRENT.with(|c| c.set((index, count)));
    let r = f();
    CURRENT.with(|c| c.set((0, 0)));
    r
}

/// The split of the record being handed over, as `(index, count)`, if its source said.
#[inline]
pub fn current() -> Option<(u32, u32)> {
    let (index, count) = CURRENT.with(Cell::get);
    (count > 0 && index < count).then_some((index, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_set_only_inside_the_call() {
        assert_eq!(current(), None);
        assert_eq!(from_split(2, 3, current), Some((2, 3)));
        assert_eq!(current(), None);
        assert_eq!(from_split(3, 3, current), None);
    }
}

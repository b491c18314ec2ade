//! Updating streams: change kinds, and the updating (non-windowed) aggregation and join whose
//! results are retracted and re-emitted as their inputs change — what Flink SQL's regular
//! joins, GROUP BY aggregations and CDC tables produce.
//!
//! A changelog stream carries [`Change`]s. A sink of such a stream must honour the kinds: an
//! upsert sink writes `Insert`/`UpdateAfter` and deletes on `Delete`; `UpdateBefore` tells an
//! append-only consumer which earlier row the next `UpdateAfter` replaces.
//! [`Materialized`] applies a changelog to an in-memory table, which is also how tests check
//! one.

use crate::checkpoint::{Checkpointed, DirtyKeys, StateReader, StateWriter};
use crate::data::{Data, EventTime, Witness};
use crate::error::Result;
use crate::key::Key;
use crate::two_input::Two;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One change of an updating stream (Flink's `RowKind`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Change<T> {
    /// A new row.
    Insert(T),
    /// The row as it was before an update (a retraction).
    UpdateBefore(T),
    /// The row as it is after an update.
    UpdateAfter(T),
    /// A row removed (a retraction).
    Delete(T),
}

impl<T> Change<T> {
    /// The row.
    pub fn value(&self) -> &T {
        match self {
            Change::Insert(v)
            | Change::UpdateBefore(v)
            | Change::UpdateAfter(v)
            | Change::Delete(v) => v,
        }
    }
    /// The row, owned.
    pub fn into_value(self) -> T {
        match self {
            Change::Insert(v)
            | Change::UpdateBefore(v)
            | Change::UpdateAfter(v)
            | Change::Delete(v) => v,
        }
    }
    /// Whether this change takes a row away (`UpdateBefore`, `Delete`).
    pub fn is_retraction(&self) -> bool {
        matches!(self, Change::UpdateBefore(_) | Change::Delete(_))
    }
}

/// A table built by applying a changelog (rows as a multiset).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Materialized<T: Eq + std::hash::Hash> {
    rows: HashMap<T, i64>,
}

impl<T: Eq + std::hash::Hash + Clone + Ord> Materialized<T> {
    /// An empty table.
    pub fn new() -> Self {
        Materialized {
            rows: HashMap::new(),
        }
    }
    /// Apply one change.
    pub fn apply(&mut self, c: Change<T>) {
        let retract = c.is_retraction();
        let v = c.into_value();
        let n = self.rows.entry(v.clone()).or_insert(0);
        *n += if retract { -1 } else { 1 };
        if *n == 0 {
            self.rows.remove(&v);
        }
    }
    /// The rows, sorted; a row present k times appears k times. Negative counts (a retraction
    /// of something never inserted) show as an error.
    pub fn rows(&self) -> std::result::Result<Vec<T>, String> {
        let mut out = Vec::new();
        for (v, &n) in &self.rows {
            if n < 0 {
                return Err(format!(
                    "a row was retracted more often than inserted ({n})"
                ));
            }
            out.extend(std::iter::repeat_n(v.clone(), n as usize));
        }
        out.sort();
        Ok(out)
    }
}

/// An aggregation that can take values back out (for updating aggregations).
pub trait RetractingAggregator<T>: 'static {
    /// The running state of one key.
    type Acc: Clone + 'static;
    /// The key's result.
    type Out: Clone + PartialEq;
    /// A fresh accumulator.
    fn create_accumulator(&self) -> Self::Acc;
    /// Add a value.
    fn add(&self, acc: Self::Acc, value: T) -> Self::Acc;
    /// Take a value back out.
    fn retract(&self, acc: Self::Acc, value: T) -> Self::Acc;
    /// The result.
    fn result(&self, acc: &Self::Acc) -> Self::Out;
}

/// The updating aggregation operator of one instance.
pub struct UpdatingAggregate<K, T, KF, A: RetractingAggregator<T>> {
    key: KF,
    agg: A,
    /// Per key: rows counted in, the accumulator, the result last emitted.
    state: HashMap<K, (i64, A::Acc, Option<A::Out>)>,
    dirty: DirtyKeys<K>,
}

/// `key_by(k).updating_aggregate(agg)` on a changelog stream, for generated code.
pub fn updating_aggregate<T, K, KF, A>(
    _: Witness<Change<T>>,
    key: &KF,
    agg: A,
) -> (UpdatingAggregate<K, T, KF, A>, Witness<Change<A::Out>>)
where
    K: Key,
    KF: Fn(&Change<T>) -> K + Clone,
    A: RetractingAggregator<T>,
{
    (
        UpdatingAggregate {
            key: key.clone(),
            agg,
            state: HashMap::new(),
            dirty: DirtyKeys::default(),
        },
        Witness::new(),
    )
}

impl<K: Key, T, KF: Fn(&Change<T>) -> K, A: RetractingAggregator<T>>
    UpdatingAggregate<K, T, KF, A>
{
    /// Apply one change and emit what changed in the key's result: `Insert` for a new key,
    /// `UpdateBefore` + `UpdateAfter` for a changed result, `Delete` when the key's last row
    /// is retracted.
    pub fn on_record<O: FnMut(EventTime, Change<A::Out>) -> Result<()>>(
        &mut self,
        ts: EventTime,
        change: Change<T>,
        out: &mut O,
    ) -> Result<()> {
        let k = (self.key)(&change);
        self.dirty.touch(&k);
        let retract = change.is_retraction();
        let (count, acc, last) = self
            .state
            .remove(&k)
            .unwrap_or_else(|| (0, self.agg.create_accumulator(), None));
        let v = change.into_value();
        let (count, acc) = if retract {
            (count - 1, self.agg.retract(acc, v))
        } else {
            (count + 1, self.agg.add(acc, v))
        };
        if count <= 0 {
            if let Some(old) = last {
                out(ts, Change::Delete(old))?;
            }
            return Ok(());
        }
        let new = self.agg.result(&acc);
        match &last {
            None => out(ts, Change::Insert(new.clone()))?,
            Some(old) if *old != new => {
                out(ts, Change::UpdateBefore(old.clone()))?;
                out(ts, Change::UpdateAfter(new.clone()))?;
            }
            Some(_) => {}
        }
        self.state.insert(k, (count, acc, Some(new)));
        Ok(())
    }
}

/// The updating (regular, non-windowed) inner join of two changelog streams on one instance.
pub struct UpdatingJoin<K, L, R, KF, F> {
    key: KF,
    f: F,
    rows: HashMap<K, (Vec<L>, Vec<R>)>,
    dirty: DirtyKeys<K>,
}

/// `a.updating_join(b).apply(f)` for generated code.
pub fn updating_join<L, R, K, KF, O, F>(
    _: Witness<Two<Change<L>, Change<R>>>,
    key: &KF,
    f: F,
) -> (UpdatingJoin<K, L, R, KF, F>, Witness<Change<O>>)
where
    K: Key,
    KF: Fn(&Two<Change<L>, Change<R>>) -> K + Clone,
    F: FnMut(&L, &R) -> O,
{
    (
        UpdatingJoin {
            key: key.clone(),
            f,
            rows: HashMap::new(),
            dirty: DirtyKeys::default(),
        },
        Witness::new(),
    )
}

impl<
        K: Key,
        L: PartialEq,
        R: PartialEq,
        KF: Fn(&Two<Change<L>, Change<R>>) -> K,
        O,
        F: FnMut(&L, &R) -> O,
    > UpdatingJoin<K, L, R, KF, F>
{
    /// Apply a change of either side: an added row joins every matching row of the other
    /// side (`Insert`s), a retracted row retracts those results (`Delete`s).
    pub fn on_record<E: FnMut(EventTime, Change<O>) -> Result<()>>(
        &mut self,
        ts: EventTime,
        change: Two<Change<L>, Change<R>>,
        out: &mut E,
    ) -> Result<()> {
        let k = (self.key)(&change);
        self.dirty.touch(&k);
        let (ls, rs) = self.rows.entry(k.clone()).or_default();
        match change {
            Two::Left(c) => {
                let retract = c.is_retraction();
                let l = c.into_value();
                if retract {
                    let Some(i) = ls.iter().position(|x| *x == l) else {
                        return Ok(());
                    };
                    ls.swap_remove(i);
                    for r in rs.iter() {
                        out(ts, Change::Delete((self.f)(&l, r)))?;
                    }
                } else {
                    for r in rs.iter() {
                        out(ts, Change::Insert((self.f)(&l, r)))?;
                    }
                    ls.push(l);
                }
            }
            Two::Right(c) => {
                let retract = c.is_retraction();
                let r = c.into_value();
                if retract {
                    let Some(i) = rs.iter().position(|x| *x == r) else {
                        return Ok(());
                    };
                    rs.swap_remove(i);
                    for l in ls.iter() {
                        out(ts, Change::Delete((self.f)(l, &r)))?;
                    }
                } else {
                    for l in ls.iter() {
                        out(ts, Change::Insert((self.f)(l, &r)))?;
                    }
                    rs.push(r);
                }
            }
        }
        if self
            .rows
            .get(&k)
            .is_some_and(|(l, r)| l.is_empty() && r.is_empty())
        {
            self.rows.remove(&k);
        }
        Ok(())
    }
}

/// Per key: the row count, the accumulator and the last result (when the aggregator's
/// types are serializable).
impl<K: Key, T, KF: Fn(&Change<T>) -> K, A: RetractingAggregator<T>> Checkpointed
    for UpdatingAggregate<K, T, KF, A>
where
    A::Acc: Serialize + DeserializeOwned,
    A::Out: Serialize + DeserializeOwned,
{
    fn snapshot(&mut self, _checkpoint: u64, out: &mut StateWriter<'_>) -> Result<()> {
        let state = &self.state;
        self.dirty.write(out, state.keys(), |k| Ok(state.get(k)))
    }
    fn restore(&mut self, _checkpoint: u64, from: &StateReader<'_>) -> Result<()> {
        let state = &mut self.state;
        from.for_each_keyed(|k: K, v| {
            state.insert(k, v);
        })?;
        self.dirty.restored(from);
        Ok(())
    }
}

/// Per key: the rows of both sides.
impl<K: Key, L: Data, R: Data, KF, O, F> Checkpointed for UpdatingJoin<K, L, R, KF, F>
where
    KF: Fn(&Two<Change<L>, Change<R>>) -> K,
    F: FnMut(&L, &R) -> O,
{
    fn snapshot(&mut self, _checkpoint: u64, out: &mut StateWriter<'_>) -> Result<()> {
        let rows = &self.rows;
        self.dirty.write(out, rows.keys(), |k| Ok(rows.get(k)))
    }
    fn restore(&mut self, _checkpoint: u64, from: &StateReader<'_>) -> Result<()> {
        let rows = &mut self.rows;
        from.for_each_keyed(|k: K, v| {
            rows.insert(k, v);
        })?;
        self.dirty.restored(from);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sum;
    impl RetractingAggregator<(u32, i64)> for Sum {
        type Acc = (u32, i64);
        type Out = (u32, i64);
        fn create_accumulator(&self) -> (u32, i64) {
            (0, 0)
        }
        fn add(&self, a: (u32, i64), v: (u32, i64)) -> (u32, i64) {
            (v.0, a.1 + v.1)
        }
        fn retract(&self, a: (u32, i64), v: (u32, i64)) -> (u32, i64) {
            (v.0, a.1 - v.1)
        }
        fn result(&self, a: &(u32, i64)) -> (u32, i64) {
            *a
        }
    }

    /// Counts, accumulators and last results survive a checkpoint: the restored operator
    /// goes on exactly as the original does.
    #[test]
    fn updating_aggregate_state_survives_a_checkpoint() {
        let kf = |c: &Change<(u32, i64)>| c.value().0;
        let feed = |op: &mut UpdatingAggregate<_, _, _, Sum>, cs: &[Change<(u32, i64)>]| {
            let mut out = Vec::new();
            for c in cs {
                op.on_record(0, c.clone(), &mut |_, o| {
                    out.push(o);
                    Ok(())
                })
                .unwrap();
            }
            out
        };
        let (mut op, _) = updating_aggregate(Witness::new(), &kf, Sum);
        feed(
            &mut op,
            &[
                Change::Insert((1, 5)),
                Change::Insert((2, 7)),
                Change::Insert((1, 3)),
            ],
        );
        let fresh = updating_aggregate(Witness::new(), &kf, Sum).0;
        let mut restored = crate::checkpoint::through_a_checkpoint(&mut op, fresh);
        let more = [
            Change::Delete((1, 5)),
            Change::Insert((2, 1)),
            Change::Delete((2, 7)),
        ];
        let want = feed(&mut op, &more);
        assert_eq!(feed(&mut restored, &more), want);
        assert_eq!(
            want[..2],
            [Change::UpdateBefore((1, 8)), Change::UpdateAfter((1, 3))]
        );
    }

    #[test]
    fn updating_aggregate_emits_insert_updates_and_delete() {
        let kf = |c: &Change<(u32, i64)>| c.value().0;
        let (mut op, _) = updating_aggregate(Witness::new(), &kf, Sum);
        let mut out = Vec::new();
        for c in [
            Change::Insert((1, 5)),
            Change::Insert((1, 3)),
            Change::Delete((1, 5)),
            Change::Delete((1, 3)),
        ] {
            op.on_record(0, c, &mut |_, o| {
                out.push(o);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(
            out,
            vec![
                Change::Insert((1, 5)),
                Change::UpdateBefore((1, 5)),
                Change::UpdateAfter((1, 8)),
                Change::UpdateBefore((1, 8)),
                Change::UpdateAfter((1, 3)),
                Change::Delete((1, 3))
            ]
        );
    }

    #[test]
    fn updating_join_inserts_and_retracts_pairs() {
        let kf = |t: &Two<Change<(u32, String)>, Change<(u32, i64)>>| match t {
            Two::Left(c) => c.value().0,
            Two::Right(c) => c.value().0,
        };
        let (mut j, _) = updating_join(Witness::new(), &kf, |l: &(u32, String), r: &(u32, i64)| {
            (l.1.clone(), r.1)
        });
        let mut changes = Vec::new();
        let s = |x: &str| x.to_string();
        let steps = vec![
            Two::Left(Change::Insert((1, s("ann")))),
            Two::Right(Change::Insert((1, 10))),
            Two::Right(Change::Insert((1, 20))),
            Two::Left(Change::Insert((2, s("bob")))),
            Two::Right(Change::Delete((1, 10))),
            Two::Left(Change::UpdateBefore((1, s("ann")))),
            Two::Left(Change::UpdateAfter((1, s("anna")))),
        ];
        for step in steps {
            j.on_record(0, step, &mut |_, c| {
                changes.push(c);
                Ok(())
            })
            .unwrap();
        }
        let mut table = Materialized::new();
        for c in changes {
            table.apply(c);
        }
        assert_eq!(table.rows().unwrap(), vec![(s("anna"), 20)]);
    }
}

//! Generator source: records computed from their index, bounded or unbounded, optionally paced.

use super::{Poll, Source, SourceContext, SourceReader};
use crate::data::Data;
use crate::error::{Result, RuntimeError};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A source that computes record `i` as `f(i)` for the indices `0..count` (bounded) or
/// `0..` (unbounded).
///
/// Instance `k` of `p` generates the indices `i` with `i % p == k`, in increasing order, so
/// the instances together generate every index exactly once (like the Nexmark generator's
/// offset and step).
///
/// ```text
/// env.source(Generator::bounded(1_000_000, |i| Order { id: i, amount: (i % 100) as f64 }))
/// env.source(Generator::unbounded(|i| i).rate(5000.0))
/// ```
pub struct Generator<T, F> {
    count: Option<u64>,
    rate: Option<f64>,
    f: Arc<F>,
    _item: PhantomData<fn() -> T>,
}

impl<T, F> Generator<T, F>
where
    F: Fn(u64) -> T + 'static,
{
    /// Generate `f(0), f(1), …, f(count - 1)`, then end.
    pub fn bounded(count: u64, f: F) -> Self {
        Generator {
            count: Some(count),
            rate: None,
            f: Arc::new(f),
            _item: PhantomData,
        }
    }

    /// Generate `f(0), f(1), …` without end.
    pub fn unbounded(f: F) -> Self {
        Generator {
            count: None,
            rate: None,
            f: Arc::new(f),
            _item: PhantomData,
        }
    }

    /// Pace the whole source at `per_second` records per second (each of `p` instances at
    /// `per_second / p`). Must be a positive, finite number; the job refuses to start
    /// otherwise.
    pub fn rate(mut self, per_second: f64) -> Self {
        self.rate = Some(per_second);
        self
    }
}

impl<T, F> Clone for Generator<T, F> {
    fn clone(&self) -> Self {
        Generator {
            count: self.count,
            rate: self.rate,
            f: Arc::clone(&self.f),
            _item: PhantomData,
        }
    }
}

impl<T, F> fmt::Debug for Generator<T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generator")
            .field("count", &self.count)
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

/// How many of the indices `0..count` instance `k` of `p` owns (those with `i % p == k`).
fn share(count: u64, k: u64, p: u64) -> u64 {
    if count <= k {
        0
    } else {
        (count - 1 - k) / p + 1
    }
}

impl<T, F> Source for Generator<T, F>
where
    T: Data,
    F: Fn(u64) -> T + 'static,
{
    type Item = T;
    type Reader = GeneratorReader<T, F>;

    fn describe(&self) -> String {
        match (self.count, self.rate) {
            (Some(n), None) => format!("generator (bounded {n})"),
            (Some(n), Some(r)) => format!("generator (bounded {n}, {r}/s)"),
            (None, None) => "generator (unbounded)".to_string(),
            (None, Some(r)) => format!("generator (unbounded, {r}/s)"),
        }
    }

    fn is_bounded(&self) -> bool {
        self.count.is_some()
    }

    fn open(&self, ctx: &SourceContext) -> Result<Self::Reader> {
        if ctx.parallelism == 0 || ctx.instance >= ctx.parallelism {
            return Err(RuntimeError::internal(format!(
                "generator source `{}`: opened as instance {} of {}",
                ctx.operator, ctx.instance, ctx.parallelism
            )));
        }
        let p = ctx.parallelism as u64;
        let k = ctx.instance as u64;
        let pace = match self.rate {
            None => None,
            Some(r) if r.is_finite() && r > 0.0 => Some(Pace {
                start: Instant::now(),
                per_second: r / p as f64,
            }),
            Some(r) => {
                return Err(RuntimeError::user(format!(
                "generator source `{}`: rate {r} is not a positive number of records per second; \
                     fix the argument of .rate(...)",
                ctx.operator
            )))
            }
        };
        let (limit, total) = match self.count {
            Some(n) => (share(n, k, p), Some(share(n, k, p))),
            // Effectively endless; stops before the index would overflow.
            None => ((u64::MAX - k) / p, None),
        };
        Ok(GeneratorReader {
            f: Arc::clone(&self.f),
            next: k,
            step: p,
            generated: 0,
            limit,
            total,
            pace,
            _item: PhantomData,
        })
    }
}

/// Pacing of one instance.
#[derive(Debug, Clone, Copy)]
struct Pace {
    start: Instant,
    per_second: f64,
}

/// An open [`Generator`] instance.
pub struct GeneratorReader<T, F> {
    f: Arc<F>,
    /// The next index to generate.
    next: u64,
    /// The distance between this instance's indices (the parallelism).
    step: u64,
    /// Records generated so far.
    generated: u64,
    /// How many records this instance generates in all.
    limit: u64,
    /// `limit` if the source is bounded.
    total: Option<u64>,
    pace: Option<Pace>,
    _item: PhantomData<fn() -> T>,
}

impl<T, F> SourceReader for GeneratorReader<T, F>
where
    T: 'static,
    F: Fn(u64) -> T + 'static,
{
    type Item = T;

    fn poll<O: FnMut(T)>(&mut self, budget: usize, mut out: O) -> Result<Poll> {
        let remaining = self.limit - self.generated;
        if remaining == 0 {
            return Ok(Poll::Done);
        }
        let mut n = remaining.min(u64::try_from(budget).unwrap_or(u64::MAX));
        let mut paced = false;
        if let Some(pace) = self.pace {
            // Allow one record at once, then `per_second` more for every second since open.
            let due = (pace.start.elapsed().as_secs_f64() * pace.per_second) as u64;
            let allowed = due.saturating_add(1).saturating_sub(self.generated);
            if allowed < n {
                n = allowed;
                paced = true;
            }
        }
        let f = &*self.f;
        let step = self.step;
        let mut i = self.next;
        for _ in 0..n {
            out(f(i));
            i = i.wrapping_add(step);
        }
        self.next = i;
        self.generated += n;
        Ok(if self.generated == self.limit {
            Poll::Done
        } else if paced {
            Poll::Idle
        } else {
            Poll::More
        })
    }

    fn progress(&self) -> (u64, Option<u64>) {
        (self.generated, self.total)
    }

    fn position(&self) -> Option<Vec<u8>> {
        crate::checkpoint::encode("the generator's position", &(self.next, self.generated)).ok()
    }

    fn seek(&mut self, position: &[u8]) -> Result<()> {
        let (next, generated): (u64, u64) =
            crate::checkpoint::decode("the generator's position", position)?;
        if generated > self.limit {
            return Err(crate::error::RuntimeError::user(format!(
                "the checkpoint says this generator instance made {generated} records, but it makes only {}; the job changed since the checkpoint was taken — start without it (run --restore none)",
                self.limit
            )));
        }
        self.next = next;
        self.generated = generated;
        if let Some(p) = &mut self.pace {
            // Pace the rest from now, as if the generated records had been made at the rate.
            let ahead = Duration::from_secs_f64(generated as f64 / p.per_second);
            p.start = Instant::now()
                .checked_sub(ahead)
                .unwrap_or_else(Instant::now);
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ctx(instance: usize, parallelism: usize) -> SourceContext {
        SourceContext {
            job: "test".into(),
            operator: "gen".into(),
            instance,
            parallelism,
        }
    }

    fn drain<S: Source>(
        src: &S,
        instance: usize,
        parallelism: usize,
        budget: usize,
    ) -> Vec<S::Item> {
        let mut reader = src.open(&ctx(instance, parallelism)).unwrap();
        let mut items = Vec::new();
        for _ in 0..100_000 {
            let before = items.len();
            let state = reader.poll(budget, |x| items.push(x)).unwrap();
            assert!(
                items.len() - before <= budget,
                "poll handed out more than the budget"
            );
            if state == Poll::Done {
                return items;
            }
            assert_eq!(
                state,
                Poll::More,
                "an unpaced bounded generator is never idle"
            );
        }
        panic!("generator did not finish");
    }

    #[test]
    fn instances_partition_the_indices_strided() {
        for count in [0u64, 1, 5, 100, 1001] {
            for p in 1..=7usize {
                let src = Generator::bounded(count, |i| i * 10);
                let mut all = Vec::new();
                for k in 0..p {
                    let items = drain(&src, k, p, 3);
                    let expected: Vec<u64> = (0..count)
                        .filter(|i| i % p as u64 == k as u64)
                        .map(|i| i * 10)
                        .collect();
                    assert_eq!(items, expected, "count {count}, instance {k} of {p}");
                    all.extend(items);
                }
                all.sort_unstable();
                assert_eq!(
                    all,
                    (0..count).map(|i| i * 10).collect::<Vec<_>>(),
                    "count {count}, p {p}"
                );
            }
        }
    }

    #[test]
    fn progress_and_done_for_bounded() {
        let src = Generator::bounded(10, |i| format!("r{i}"));
        assert!(src.is_bounded());
        let mut reader = src.open(&ctx(1, 3)).unwrap();
        assert_eq!(reader.progress(), (0, Some(3)));
        let mut got = Vec::new();
        assert_eq!(reader.poll(2, |x| got.push(x)).unwrap(), Poll::More);
        assert_eq!(got, ["r1", "r4"]);
        assert_eq!(reader.progress(), (2, Some(3)));
        assert_eq!(reader.poll(2, |x| got.push(x)).unwrap(), Poll::Done);
        assert_eq!(got, ["r1", "r4", "r7"]);
        assert_eq!(reader.poll(2, |x| got.push(x)).unwrap(), Poll::Done);
        assert_eq!(reader.progress(), (3, Some(3)));
        assert_eq!(reader.bad_records(), 0);
    }

    #[test]
    fn unbounded_never_ends() {
        let src = Generator::unbounded(|i| i);
        assert!(!src.is_bounded());
        let mut reader = src.open(&ctx(2, 4)).unwrap();
        let mut got = Vec::new();
        for _ in 0..10 {
            assert_eq!(reader.poll(5, |x| got.push(x)).unwrap(), Poll::More);
        }
        assert_eq!(got, (0..50).map(|n| 2 + 4 * n).collect::<Vec<u64>>());
        assert_eq!(reader.progress(), (50, None));
    }

    #[test]
    fn describe_names_kind_and_rate() {
        assert_eq!(
            Generator::bounded(1_000_000, |i| i).describe(),
            "generator (bounded 1000000)"
        );
        assert_eq!(
            Generator::unbounded(|i| i).rate(5000.0).describe(),
            "generator (unbounded, 5000/s)"
        );
        assert_eq!(
            Generator::unbounded(|i| i).describe(),
            "generator (unbounded)"
        );
        assert_eq!(
            Generator::bounded(7, |i| i).rate(2.5).describe(),
            "generator (bounded 7, 2.5/s)"
        );
    }

    #[test]
    fn rate_paces_each_instance_at_its_share() {
        // 2000/s over 2 instances: 1000/s for this one.
        let src = Generator::unbounded(|i| i).rate(2000.0);
        let before_open = Instant::now();
        let mut reader = src.open(&ctx(0, 2)).unwrap();
        let mut got = 0u64;
        let state = reader.poll(1_000_000, |_| got += 1).unwrap();
        assert_eq!(state, Poll::Idle, "ahead of schedule right after open");
        assert!(
            got as f64 <= before_open.elapsed().as_secs_f64() * 1000.0 + 1.0,
            "generated {got} records at once"
        );
        std::thread::sleep(Duration::from_millis(200));
        let state = reader.poll(1_000_000, |_| got += 1).unwrap();
        let since_open = before_open.elapsed().as_secs_f64();
        assert_eq!(state, Poll::Idle);
        // At least 200 records are due; never more than the schedule allows.
        assert!(got >= 200, "only {got} records after 200ms at 1000/s");
        assert!(
            got as f64 <= since_open * 1000.0 + 1.0,
            "{got} records after {since_open}s is ahead of schedule"
        );
        assert_eq!(reader.poll(1_000_000, |_| got += 1).unwrap(), Poll::Idle);
    }

    #[test]
    fn paced_bounded_generator_ends() {
        let src = Generator::bounded(3, |i| i).rate(1_000_000.0);
        let mut reader = src.open(&ctx(0, 1)).unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while reader.poll(100, |x| got.push(x)).unwrap() != Poll::Done {
            assert!(Instant::now() < deadline, "never finished");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got, [0, 1, 2]);
    }

    #[test]
    fn invalid_rate_is_a_user_error_at_open() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = Generator::unbounded(|i| i)
                .rate(bad)
                .open(&ctx(0, 1))
                .err()
                .unwrap();
            assert_eq!(err.domain, crate::error::ErrorDomain::User);
            assert!(
                err.message.contains("`gen`") && err.message.contains(".rate("),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn bad_instance_is_an_internal_error() {
        let err = Generator::bounded(3, |i| i).open(&ctx(3, 3)).err().unwrap();
        assert_eq!(err.domain, crate::error::ErrorDomain::Internal);
    }
}

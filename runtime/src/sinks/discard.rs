//! Discard sink: drops every record and counts it, for benchmarks and tests.

use super::{Guarantee, Sink, SinkContext, SinkWriter};
use crate::error::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A sink that drops its records, counting them. With [`DiscardSink::with_counter`] the
/// counts of all its instances are also added to a shared counter (at every completed epoch
/// and at close).
///
/// ```text
/// stream.sink(DiscardSink::new())
/// ```
#[derive(Debug, Clone, Default)]
pub struct DiscardSink {
    counter: Option<Arc<AtomicU64>>,
}

impl DiscardSink {
    /// Drop and count records.
    pub fn new() -> Self {
        DiscardSink { counter: None }
    }

    /// Drop and count records, also adding the counts to `counter`.
    pub fn with_counter(counter: Arc<AtomicU64>) -> Self {
        DiscardSink {
            counter: Some(counter),
        }
    }
}

impl<T: 'static> Sink<T> for DiscardSink {
    type Writer = DiscardWriter;

    fn describe(&self) -> String {
        "discard".to_string()
    }

    fn guarantee(&self) -> Guarantee {
        // Nothing is emitted, so nothing can be emitted twice.
        Guarantee::ExactlyOnce
    }

    fn open(&self, ctx: &SinkContext) -> Result<Self::Writer> {
        Ok(DiscardWriter {
            records: 0,
            reported: 0,
            counter: self.counter.as_ref().map(Arc::clone),
            operator: ctx.operator.clone(),
            instance: ctx.instance,
            closed: false,
        })
    }
}

/// An open [`DiscardSink`] instance.
#[derive(Debug)]
pub struct DiscardWriter {
    records: u64,
    /// How much of `records` was added to `counter` already.
    reported: u64,
    counter: Option<Arc<AtomicU64>>,
    operator: String,
    instance: usize,
    closed: bool,
}

impl DiscardWriter {
    /// Records dropped by this instance so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    fn report(&mut self) {
        if let Some(counter) = &self.counter {
            counter.fetch_add(self.records - self.reported, Ordering::Relaxed);
            self.reported = self.records;
        }
    }
}

impl<T> SinkWriter<T> for DiscardWriter {
    #[inline]
    fn write(&mut self, _record: T) -> Result<()> {
        self.records += 1;
        Ok(())
    }

    fn epoch_complete(&mut self, _epoch: u64) -> Result<()> {
        self.report();
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.report();
        if !self.closed {
            self.closed = true;
            tracing::info!(operator = %self.operator, instance = self.instance, records = self.records, "discard sink closed");
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ctx(instance: usize) -> SinkContext {
        SinkContext {
            job: "test".into(),
            operator: "sink".into(),
            instance,
            parallelism: 2,
        }
    }

    #[test]
    fn counts_records_per_instance() {
        let sink = DiscardSink::new();
        assert_eq!(
            <DiscardSink as Sink<String>>::guarantee(&sink),
            Guarantee::ExactlyOnce
        );
        assert_eq!(<DiscardSink as Sink<String>>::describe(&sink), "discard");
        let mut w = <DiscardSink as Sink<String>>::open(&sink, &ctx(0)).unwrap();
        for i in 0..5 {
            w.write(format!("{i}")).unwrap();
        }
        assert_eq!(w.records(), 5);
        SinkWriter::<String>::close(&mut w).unwrap();
        assert_eq!(w.records(), 5);
    }

    #[test]
    fn shared_counter_sums_instances_without_double_counting() {
        let counter = Arc::new(AtomicU64::new(0));
        let sink = DiscardSink::with_counter(Arc::clone(&counter));
        let mut a = <DiscardSink as Sink<u64>>::open(&sink, &ctx(0)).unwrap();
        let mut b = <DiscardSink as Sink<u64>>::open(&sink, &ctx(1)).unwrap();
        for i in 0..7u64 {
            a.write(i).unwrap();
        }
        assert_eq!(
            counter.load(Ordering::Relaxed),
            0,
            "counts are added at epoch ends and close"
        );
        SinkWriter::<u64>::epoch_complete(&mut a, 0).unwrap();
        assert_eq!(counter.load(Ordering::Relaxed), 7);
        a.write(7).unwrap();
        b.write(8).unwrap();
        b.write(9).unwrap();
        SinkWriter::<u64>::close(&mut a).unwrap();
        SinkWriter::<u64>::close(&mut b).unwrap();
        SinkWriter::<u64>::close(&mut b).unwrap();
        assert_eq!(counter.load(Ordering::Relaxed), 10);
    }
}

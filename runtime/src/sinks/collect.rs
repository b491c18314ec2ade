//! A sink that collects records in memory, shared with the code that built the job: for
//! tests of pipelines run in process (`run_local`).

use super::{Guarantee, Sink, SinkContext, SinkWriter};
use crate::error::Result;
use std::sync::{Arc, Mutex};

/// Collects every record of every instance into one shared vector.
pub struct CollectSink<T> {
    records: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for CollectSink<T> {
    fn clone(&self) -> Self {
        CollectSink {
            records: Arc::clone(&self.records),
        }
    }
}

impl<T> Default for CollectSink<T> {
    fn default() -> Self {
        CollectSink {
            records: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<T: Clone> CollectSink<T> {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }
    /// What was collected so far.
    pub fn records(&self) -> Vec<T> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// An open [`CollectSink`] instance.
pub struct CollectWriter<T> {
    buffer: Vec<T>,
    records: Arc<Mutex<Vec<T>>>,
}

impl<T: 'static> CollectWriter<T> {
    fn publish(&mut self) {
        if let Ok(mut r) = self.records.lock() {
            r.append(&mut self.buffer);
        }
    }
}

impl<T: Send + 'static> Sink<T> for CollectSink<T> {
    type Writer = CollectWriter<T>;
    fn describe(&self) -> String {
        "collect (in memory)".into()
    }
    fn guarantee(&self) -> Guarantee {
        Guarantee::ExactlyOnce
    }
    fn open(&self, _: &SinkContext) -> Result<CollectWriter<T>> {
        Ok(CollectWriter {
            buffer: Vec::new(),
            records: Arc::clone(&self.records),
        })
    }
}

impl<T: Send + 'static> SinkWriter<T> for CollectWriter<T> {
    fn write(&mut self, record: T) -> Result<()> {
        self.buffer.push(record);
        Ok(())
    }
    fn epoch_complete(&mut self, _: u64) -> Result<()> {
        self.publish();
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        self.publish();
        Ok(())
    }
}

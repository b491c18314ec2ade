//! Kafka sink: records encoded as JSON / CSV / text / bytes, partitioned by key (Kafka's
//! default partitioner) or round-robin; at-least-once.

use super::format::{self, EncodeFn, KafkaFormat};
use super::{connect, parse_brokers, partitions_of, runtime, DEFAULT_RETRY_TIMEOUT};
use crate::error::{Result, RuntimeError};
use crate::sinks::{Guarantee, Sink, SinkContext, SinkWriter};
use rskafka::chrono::{DateTime, Utc};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Produce once this many records are buffered (and at every completed epoch).
const BATCH_RECORDS: usize = 10_000;
/// Produce once this many value bytes are buffered.
const BATCH_BYTES: usize = 4 << 20;

/// Chooses no key: records go to the partitions in turn.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobin;

/// Chooses each record's key with a function; the partition is Kafka's default for the key.
#[derive(Clone)]
pub struct KeyFn<F>(F);

/// How a [`KafkaSink`] picks each record's key (and so its partition).
pub trait Partitioner<T>: 'static {
    /// The record's key, or `None` to spread records round-robin.
    fn key(&self, record: &T) -> Option<Vec<u8>>;
    /// For `explain` and logs.
    fn label(&self) -> &'static str;
}

impl<T> Partitioner<T> for RoundRobin {
    #[inline]
    fn key(&self, _: &T) -> Option<Vec<u8>> {
        None
    }
    fn label(&self) -> &'static str {
        "round-robin"
    }
}

impl<T, K: Into<Vec<u8>>, F: Fn(&T) -> K + 'static> Partitioner<T> for KeyFn<F> {
    #[inline]
    fn key(&self, record: &T) -> Option<Vec<u8>> {
        Some((self.0)(record).into())
    }
    fn label(&self) -> &'static str {
        "by key"
    }
}

/// A sink writing to one Kafka topic.
///
/// **At-least-once.** Each instance buffers records and produces them at every completed
/// epoch (and when 10,000 records or 4 MiB are buffered), waiting for the broker's
/// acknowledgement; a record is therefore in Kafka once its epoch has completed. Kafka
/// transactions are not used (the pure-Rust client has none), so after a failure and
/// restart records produced since the last checkpoint are produced again: consumers see
/// duplicates, never gaps. Make downstream processing idempotent (e.g. by key) if that
/// matters.
///
/// Partitions: with `.key_by(|r| …)` each record gets that key (`String`, `Vec<u8>`, `&str`,
/// …) and the partition Kafka's default partitioner gives it (murmur2 of the key modulo the
/// partition count, as Java producers do), so records of a key stay in order in one
/// partition; without a key, records go round-robin over the partitions.
///
/// ```text
/// stream.sink(KafkaSink::json::<Alert>(env.arg("brokers"), "alerts").key_by(|a| a.account.to_string()))
/// ```
pub struct KafkaSink<T, P = RoundRobin> {
    brokers: String,
    topic: String,
    format: KafkaFormat,
    encode: EncodeFn<T>,
    partitioner: Arc<P>,
    retry_timeout: Duration,
    _t: PhantomData<fn(&T)>,
}

impl KafkaSink<String> {
    /// Each record as one JSON value per message: `KafkaSink::json::<Alert>(brokers, topic)`.
    pub fn json<T: Serialize>(
        brokers: impl Into<String>,
        topic: impl Into<String>,
    ) -> KafkaSink<T> {
        KafkaSink::with(
            brokers.into(),
            topic.into(),
            KafkaFormat::Json,
            format::encode_json::<T>,
        )
    }

    /// Each record as one CSV line per message, no header, fields in declaration order.
    pub fn csv<T: Serialize>(brokers: impl Into<String>, topic: impl Into<String>) -> KafkaSink<T> {
        KafkaSink::with(
            brokers.into(),
            topic.into(),
            KafkaFormat::Csv,
            format::encode_csv::<T>,
        )
    }

    /// `String` records as UTF-8 values.
    pub fn text(brokers: impl Into<String>, topic: impl Into<String>) -> KafkaSink<String> {
        KafkaSink::with(
            brokers.into(),
            topic.into(),
            KafkaFormat::Text,
            format::encode_text,
        )
    }

    /// `Vec<u8>` records as values, as they are.
    pub fn bytes(brokers: impl Into<String>, topic: impl Into<String>) -> KafkaSink<Vec<u8>> {
        KafkaSink::with(
            brokers.into(),
            topic.into(),
            KafkaFormat::Bytes,
            format::encode_bytes,
        )
    }
}

impl<T> KafkaSink<T> {
    fn with(brokers: String, topic: String, format: KafkaFormat, encode: EncodeFn<T>) -> Self {
        KafkaSink {
            brokers,
            topic,
            format,
            encode,
            partitioner: Arc::new(RoundRobin),
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            _t: PhantomData,
        }
    }

    /// Key every record with `key(&record)`; the key picks the partition.
    pub fn key_by<K: Into<Vec<u8>>, F: Fn(&T) -> K + 'static>(
        self,
        key: F,
    ) -> KafkaSink<T, KeyFn<F>> {
        KafkaSink {
            brokers: self.brokers,
            topic: self.topic,
            format: self.format,
            encode: self.encode,
            partitioner: Arc::new(KeyFn(key)),
            retry_timeout: self.retry_timeout,
            _t: PhantomData,
        }
    }
}

impl<T, P> KafkaSink<T, P> {
    /// How long to keep retrying an unreachable broker (at start and for every batch) before
    /// the job fails (default 30 s).
    pub fn retry_timeout(mut self, timeout: Duration) -> Self {
        self.retry_timeout = timeout;
        self
    }

    /// The topic written.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl<T, P> Clone for KafkaSink<T, P> {
    fn clone(&self) -> Self {
        KafkaSink {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            format: self.format,
            encode: self.encode,
            partitioner: Arc::clone(&self.partitioner),
            retry_timeout: self.retry_timeout,
            _t: PhantomData,
        }
    }
}

impl<T, P> fmt::Debug for KafkaSink<T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSink")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("format", &self.format)
            .finish()
    }
}

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`).
pub(crate) fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition (index into `0..partitions`) Kafka's default partitioner gives `key`, and
/// so [`KafkaSink::key_by`]: `murmur2(key) & 0x7fffffff mod partitions`, as the Java client.
pub fn partition_for_key(key: &[u8], partitions: usize) -> usize {
    (murmur2(key) & 0x7fff_ffff) as usize % partitions.max(1)
}

impl<T: 'static, P: Partitioner<T>> Sink<T> for KafkaSink<T, P> {
    type Writer = KafkaSinkWriter<T, P>;

    fn describe(&self) -> String {
        format!(
            "kafka topic `{}` at {} ({}, {}, at-least-once)",
            self.topic,
            self.brokers,
            self.format.label(),
            self.partitioner.label()
        )
    }

    fn guarantee(&self) -> Guarantee {
        Guarantee::AtLeastOnce
    }

    fn open(&self, ctx: &SinkContext) -> Result<Self::Writer> {
        let what = format!("kafka sink `{}`", ctx.operator);
        let brokers = parse_brokers(&self.brokers, &what)?;
        let rt = runtime(&what)?;
        let (retry, topic) = (self.retry_timeout, self.topic.clone());
        let clients = rt.block_on(async {
            let client = connect(&brokers, retry, &what).await?;
            let partitions = partitions_of(&client, &topic, &brokers, &what).await?;
            let mut clients = Vec::with_capacity(partitions.len());
            for p in partitions {
                let pc = client
                    .partition_client(topic.clone(), p, UnknownTopicHandling::Retry)
                    .await
                    .map_err(|e| {
                        RuntimeError::external(format!(
                            "{what}: cannot reach the leader of topic `{topic}` partition {p}: {e}"
                        ))
                    })?;
                clients.push(Arc::new(pc));
            }
            Ok::<_, RuntimeError>(clients)
        })?;
        let n = clients.len();
        if ctx.instance == 0 {
            // `explain` does not show sinks' guarantees yet; the log says it at start.
            tracing::info!(operator = %ctx.operator, partitions = n, "{} — {}", Sink::<T>::describe(self), "at-least-once: records since the last completed epoch may be produced again after a failure");
        }
        Ok(KafkaSinkWriter {
            what,
            encode: self.encode,
            partitioner: Arc::clone(&self.partitioner),
            rt,
            buffers: vec![Vec::new(); n],
            clients,
            buffered: 0,
            bytes: 0,
            // Instances start at different partitions so that round-robin spreads evenly.
            next: ctx.instance % n.max(1),
            written: 0,
            _t: PhantomData,
        })
    }
}

/// An open [`KafkaSink`] instance.
pub struct KafkaSinkWriter<T, P> {
    what: String,
    encode: EncodeFn<T>,
    partitioner: Arc<P>,
    rt: tokio::runtime::Runtime,
    /// One client per partition, in partition order.
    clients: Vec<Arc<PartitionClient>>,
    /// Records waiting to be produced, per partition.
    buffers: Vec<Vec<Record>>,
    buffered: usize,
    bytes: usize,
    /// The next round-robin partition.
    next: usize,
    written: u64,
    _t: PhantomData<fn(&T)>,
}

impl<T, P> KafkaSinkWriter<T, P> {
    /// Records acknowledged by the broker so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Produce every buffered record and wait for the acknowledgements.
    fn flush(&mut self) -> Result<()> {
        if self.buffered == 0 {
            return Ok(());
        }
        let batches: Vec<(Arc<PartitionClient>, Vec<Record>)> = self
            .clients
            .iter()
            .zip(self.buffers.iter_mut())
            .filter(|(_, b)| !b.is_empty())
            .map(|(c, b)| (Arc::clone(c), std::mem::take(b)))
            .collect();
        let what = self.what.clone();
        let produced = self.rt.block_on(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for (client, records) in batches {
                tasks.spawn(async move {
                    let n = records.len() as u64;
                    client
                        .produce(records, Compression::NoCompression)
                        .await
                        .map(|_| n)
                        .map_err(|e| {
                            format!(
                                "cannot produce to topic `{}` partition {}: {e}",
                                client.topic(),
                                client.partition()
                            )
                        })
                });
            }
            let mut total = 0;
            while let Some(done) = tasks.join_next().await {
                match done {
                    Ok(Ok(n)) => total += n,
                    Ok(Err(e)) => return Err(RuntimeError::external(format!("{what}: {e}"))),
                    Err(e) => {
                        return Err(RuntimeError::internal(format!(
                            "{what}: a produce task failed: {e}"
                        )))
                    }
                }
            }
            Ok(total)
        })?;
        self.written += produced;
        self.buffered = 0;
        self.bytes = 0;
        Ok(())
    }
}

fn now() -> DateTime<Utc> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

impl<T: 'static, P: Partitioner<T>> SinkWriter<T> for KafkaSinkWriter<T, P> {
    fn write(&mut self, record: T) -> Result<()> {
        let n = self.clients.len();
        if n == 0 {
            return Err(RuntimeError::internal(format!(
                "{}: the topic has no partitions",
                self.what
            )));
        }
        let mut value = Vec::new();
        (self.encode)(&record, &mut value)
            .map_err(|e| RuntimeError::user(format!("{}: {e}", self.what)))?;
        let key = self.partitioner.key(&record);
        let partition = match &key {
            Some(k) => partition_for_key(k, n),
            None => {
                let p = self.next;
                self.next = (p + 1) % n;
                p
            }
        };
        self.bytes += value.len() + key.as_ref().map_or(0, Vec::len);
        self.buffers[partition].push(Record {
            key,
            value: Some(value),
            headers: BTreeMap::new(),
            timestamp: now(),
        });
        self.buffered += 1;
        if self.buffered >= BATCH_RECORDS || self.bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn epoch_complete(&mut self, _epoch: u64) -> Result<()> {
        self.flush()
    }

    fn close(&mut self) -> Result<()> {
        self.flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Kafka's own test vectors (clients' UtilsTest).
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }

    #[test]
    fn key_partition_is_stable_and_in_range() {
        for n in 1..9 {
            for k in ["a", "customer-17", ""] {
                let p = partition_for_key(k.as_bytes(), n);
                assert!(p < n);
                assert_eq!(p, partition_for_key(k.as_bytes(), n));
            }
        }
    }

    #[test]
    fn describe_states_the_guarantee() {
        #[derive(Serialize)]
        struct A {
            account: u64,
        }
        let s = KafkaSink::json::<A>("127.0.0.1:9092", "alerts").key_by(|a| a.account.to_string());
        assert_eq!(
            Sink::<A>::describe(&s),
            "kafka topic `alerts` at 127.0.0.1:9092 (json, by key, at-least-once)"
        );
        assert_eq!(Sink::<A>::guarantee(&s), Guarantee::AtLeastOnce);
        let s = KafkaSink::text("b:1", "t");
        assert_eq!(
            Sink::<String>::describe(&s),
            "kafka topic `t` at b:1 (text, round-robin, at-least-once)"
        );
    }
}

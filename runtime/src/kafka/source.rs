//! Kafka source: partitions assigned across instances, positions kept by weir, JSON / CSV /
//! text / bytes values, bounded or unbounded.

use super::format::{self, DecodeFn, KafkaFormat};
use super::{connect, parse_brokers, partition_end, partitions_of, runtime, DEFAULT_RETRY_TIMEOUT};
use crate::data::EventTime;
use crate::error::{Result, RuntimeError};
use crate::sources::{
    split, BadRecordPolicy, CsvLineParser, DeadLetters, Poll, Source, SourceContext, SourceReader,
};
use rskafka::chrono::{DateTime, Utc};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::time::Duration;
use tokio::sync::mpsc;

/// Fetched batches buffered between the fetch thread and the worker (per instance).
const CHANNEL_BATCHES: usize = 16;

/// Where each partition starts reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    /// The earliest record the broker still keeps.
    Earliest,
    /// Only records produced after the source started.
    Latest,
    /// The first record whose timestamp is at or after this time (ms since the Unix epoch);
    /// partitions with none start at their end. The broker's answer is checked (and, if it
    /// is too early, corrected by reading forward) at start.
    Timestamp(EventTime),
    /// The given next offset per partition, e.g. positions a checkpoint stored
    /// ([`KafkaSourceReader::positions`]); a partition not listed starts at its earliest.
    Offsets(Vec<(i32, i64)>),
}

impl fmt::Display for StartFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartFrom::Earliest => f.write_str("from earliest"),
            StartFrom::Latest => f.write_str("from latest"),
            StartFrom::Timestamp(t) => write!(f, "from timestamp {t}"),
            StartFrom::Offsets(o) => write!(f, "from given offsets of {} partitions", o.len()),
        }
    }
}

/// A source reading one Kafka topic.
///
/// Instance `i` of `p` reads the partitions `q` with `q mod p = i`, so a source with more
/// instances than partitions leaves some idle. No consumer group is involved and no offset
/// is committed to Kafka: [`KafkaSourceReader::positions`] gives the next offset of every
/// partition an instance reads, for checkpoints, and [`StartFrom::Offsets`] starts there.
///
/// Values are decoded as JSON, CSV (one record per message, columns in field order, no
/// header), UTF-8 text or raw bytes. A value that cannot be decoded — or a message without
/// one — follows the [`BadRecordPolicy`] (default: skip and count); `Fail` names the topic,
/// partition and offset.
///
/// Bounded (`.bounded()`): each partition is read up to its end as it was when the source
/// started (its high watermark), then the instance ends — for tests and batch runs.
/// Unbounded (the default): it keeps reading.
///
/// A `.watermarks(…)` assigner chained right after the source keeps one watermark per
/// partition and emits their minimum, so that a partition that lags behind does not see
/// its records made late by another; with `.with_idleness(d)` a partition without records
/// for `d` stops holding the watermark back (Flink's per-partition watermarks).
///
/// ```text
/// env.source(KafkaSource::json::<Order>(env.arg("brokers"), env.arg("topic")).start(StartFrom::Earliest))
/// env.source(KafkaSource::text(env.arg("brokers"), "lines").bounded())
/// ```
pub struct KafkaSource<T> {
    brokers: String,
    topic: String,
    format: KafkaFormat,
    decode: DecodeFn<T>,
    start: StartFrom,
    bounded: bool,
    policy: BadRecordPolicy,
    retry_timeout: Duration,
    fetch_max_bytes: i32,
    fetch_max_wait: Duration,
}

impl KafkaSource<String> {
    /// Each message value is one JSON value of type `T`:
    /// `KafkaSource::json::<Order>(brokers, topic)`. `brokers` is `host:port[,host:port…]`.
    pub fn json<T: DeserializeOwned>(
        brokers: impl Into<String>,
        topic: impl Into<String>,
    ) -> KafkaSource<T> {
        KafkaSource::with(
            brokers.into(),
            topic.into(),
            KafkaFormat::Json,
            format::decode_json::<T>,
        )
    }

    /// Each message value is one CSV record of type `T`, without a header: columns in the
    /// order of `T`'s fields.
    pub fn csv<T: DeserializeOwned>(
        brokers: impl Into<String>,
        topic: impl Into<String>,
    ) -> KafkaSource<T> {
        KafkaSource::with(
            brokers.into(),
            topic.into(),
            KafkaFormat::Csv,
            format::decode_csv::<T>,
        )
    }

    /// Each message value as a `String` (invalid UTF-8 is a bad record).
    pub fn text(brokers: impl Into<String>, topic: impl Into<String>) -> KafkaSource<String> {
        KafkaSource::with(
            brokers.into(),
            topic.into(),
            KafkaFormat::Text,
            format::decode_text,
        )
    }

    /// Each message value's bytes, as they are.
    pub fn bytes(brokers: impl Into<String>, topic: impl Into<String>) -> KafkaSource<Vec<u8>> {
        KafkaSource::with(
            brokers.into(),
            topic.into(),
            KafkaFormat::Bytes,
            format::decode_bytes,
        )
    }
}

impl<T> KafkaSource<T> {
    fn with(brokers: String, topic: String, format: KafkaFormat, decode: DecodeFn<T>) -> Self {
        KafkaSource {
            brokers,
            topic,
            format,
            decode,
            start: StartFrom::Earliest,
            bounded: false,
            policy: BadRecordPolicy::default(),
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            fetch_max_bytes: 1 << 20,
            fetch_max_wait: Duration::from_millis(200),
        }
    }

    /// Where each partition starts (default: [`StartFrom::Earliest`]).
    pub fn start(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// Read every partition up to its end as of the start, then end.
    pub fn bounded(mut self) -> Self {
        self.bounded = true;
        self
    }

    /// [`KafkaSource::bounded`] when `bounded` is true (e.g. from a job argument), else keep
    /// reading.
    pub fn bounded_if(mut self, bounded: bool) -> Self {
        self.bounded = bounded;
        self
    }

    /// What to do with a message that cannot be decoded (default: [`BadRecordPolicy::Skip`]).
    /// Dead letters go to `<dir>/dead-letter-<operator>-<instance>.jsonl`, one JSON object per
    /// message: `{"source", "topic", "partition", "offset", "error", "raw"}`.
    pub fn on_bad_record(mut self, policy: BadRecordPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How long to keep retrying an unreachable broker (at start and on every fetch) before
    /// the job fails (default 30 s).
    pub fn retry_timeout(mut self, timeout: Duration) -> Self {
        self.retry_timeout = timeout;
        self
    }

    /// How long a fetch waits at the broker for new records (default 200 ms).
    pub fn fetch_max_wait(mut self, wait: Duration) -> Self {
        self.fetch_max_wait = wait;
        self
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// How values are decoded.
    pub fn format(&self) -> KafkaFormat {
        self.format
    }
}

impl<T> Clone for KafkaSource<T> {
    fn clone(&self) -> Self {
        KafkaSource {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            format: self.format,
            decode: self.decode,
            start: self.start.clone(),
            bounded: self.bounded,
            policy: self.policy.clone(),
            retry_timeout: self.retry_timeout,
            fetch_max_bytes: self.fetch_max_bytes,
            fetch_max_wait: self.fetch_max_wait,
        }
    }
}

impl<T> fmt::Debug for KafkaSource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSource")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("format", &self.format)
            .field("start", &self.start)
            .field("bounded", &self.bounded)
            .field("policy", &self.policy)
            .finish()
    }
}

/// The partition `p` of `partitions` that instance `instance` of `parallelism` reads.
pub(crate) fn assigned(partitions: &[i32], instance: usize, parallelism: usize) -> Vec<i32> {
    partitions
        .iter()
        .copied()
        .filter(|&p| usize::try_from(p).is_ok_and(|p| p % parallelism.max(1) == instance))
        .collect()
}

/// One partition an instance reads.
#[derive(Debug, Clone)]
struct Split {
    partition: i32,
    /// The offset of the next record to hand downstream.
    next: i64,
    /// Bounded: the partition's end at start.
    end: Option<i64>,
    done: bool,
}

/// A message's offset and value.
type OffsetValue = (i64, Option<Vec<u8>>);

/// What the fetch thread sends the reader.
enum Fetched {
    /// Records of split `split`, in offset order: `(offset, value)`.
    Batch {
        split: usize,
        records: Vec<OffsetValue>,
    },
    /// Split `split` reached its end (bounded).
    Done { split: usize },
    /// Fetching failed beyond the retries.
    Failed(RuntimeError),
}

impl<T: crate::data::Data + DeserializeOwned> Source for KafkaSource<T> {
    type Item = T;
    type Reader = KafkaSourceReader<T>;

    fn describe(&self) -> String {
        format!(
            "kafka topic `{}` at {} ({}, {}{})",
            self.topic,
            self.brokers,
            self.format.label(),
            self.start,
            if self.bounded { ", bounded" } else { "" }
        )
    }

    fn is_bounded(&self) -> bool {
        self.bounded
    }

    fn open(&self, ctx: &SourceContext) -> Result<Self::Reader> {
        let what = format!("kafka source `{}`", ctx.operator);
        let brokers = parse_brokers(&self.brokers, &what)?;
        let fetch = FetchConfig {
            what: what.clone(),
            brokers,
            topic: self.topic.clone(),
            start: self.start.clone(),
            bounded: self.bounded,
            retry_timeout: self.retry_timeout,
            max_bytes: self.fetch_max_bytes,
            max_wait_ms: i32::try_from(self.fetch_max_wait.as_millis()).unwrap_or(i32::MAX),
            instance: ctx.instance,
            parallelism: ctx.parallelism,
        };
        let (splits, rx) = start_fetch(&ctx.operator, fetch.clone())?;
        if ctx.instance == 0 {
            tracing::info!(operator = %ctx.operator, "{}", Source::describe(self));
        }
        tracing::debug!(operator = %ctx.operator, instance = ctx.instance, partitions = ?splits.iter().map(|s| s.partition).collect::<Vec<_>>(), "kafka source opened");
        Ok(KafkaSourceReader {
            operator: ctx.operator.clone(),
            instance: ctx.instance,
            topic: self.topic.clone(),
            bounded: self.bounded,
            policy: self.policy.clone(),
            decode: self.decode,
            csv: CsvLineParser::new(),
            splits,
            rx,
            batch: None,
            dead_letter: DeadLetters::default(),
            records: 0,
            bad: 0,
            finished: false,
            fetch,
        })
    }
}

/// Start an instance's fetch thread; returns its partitions and where each starts.
fn start_fetch(
    operator: &str,
    fetch: FetchConfig,
) -> Result<(Vec<Split>, mpsc::Receiver<Fetched>)> {
    let what = fetch.what.clone();
    let (setup_tx, setup_rx) = std::sync::mpsc::channel::<Result<Vec<Split>>>();
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    std::thread::Builder::new()
        .name(format!("weir-kafka-{operator}-{}", fetch.instance))
        .spawn(move || fetch_thread(fetch, setup_tx, tx))
        .map_err(|e| {
            RuntimeError::external(format!("{what}: cannot start its fetch thread: {e}"))
        })?;
    let splits = setup_rx.recv().map_err(|_| {
        RuntimeError::internal(format!("{what}: the fetch thread stopped during start-up"))
    })??;
    Ok((splits, rx))
}

#[derive(Clone)]
struct FetchConfig {
    what: String,
    brokers: Vec<String>,
    topic: String,
    start: StartFrom,
    bounded: bool,
    retry_timeout: Duration,
    max_bytes: i32,
    max_wait_ms: i32,
    instance: usize,
    parallelism: usize,
}

/// The fetch thread of one instance: set up, report, then fetch every partition
/// concurrently until the reader goes away (or, bounded, every partition reached its end).
fn fetch_thread(
    cfg: FetchConfig,
    setup_tx: std::sync::mpsc::Sender<Result<Vec<Split>>>,
    tx: mpsc::Sender<Fetched>,
) {
    let rt = match runtime(&cfg.what) {
        Ok(rt) => rt,
        Err(e) => {
            let _ = setup_tx.send(Err(e));
            return;
        }
    };
    rt.block_on(async move {
        let (clients, splits) = match setup(&cfg).await {
            Ok(x) => x,
            Err(e) => {
                let _ = setup_tx.send(Err(e));
                return;
            }
        };
        if setup_tx.send(Ok(splits.clone())).is_err() {
            return;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (client, split)) in clients.into_iter().zip(splits).enumerate() {
            let task = PartitionFetch {
                what: cfg.what.clone(),
                client,
                split: i,
                next: split.next,
                end: split.end,
                max_bytes: cfg.max_bytes,
                max_wait_ms: cfg.max_wait_ms,
                tx: tx.clone(),
            };
            tasks.spawn(task.run());
        }
        drop(tx);
        while tasks.join_next().await.is_some() {}
    });
}

/// Connect, find the instance's partitions and where each starts (and, bounded, ends).
async fn setup(cfg: &FetchConfig) -> Result<(Vec<PartitionClient>, Vec<Split>)> {
    let what = &cfg.what;
    let client = connect(&cfg.brokers, cfg.retry_timeout, what).await?;
    let partitions = partitions_of(&client, &cfg.topic, &cfg.brokers, what).await?;
    let mine = assigned(&partitions, cfg.instance, cfg.parallelism);
    let (mut clients, mut splits) = (Vec::new(), Vec::new());
    for partition in mine {
        let offset_error = |e: rskafka::client::error::Error| {
            RuntimeError::external(format!(
                "{what}: cannot look up offsets of topic `{}` partition {partition}: {e}",
                cfg.topic
            ))
        };
        let pc = client
            .partition_client(cfg.topic.clone(), partition, UnknownTopicHandling::Retry)
            .await
            .map_err(offset_error)?;
        let latest = partition_end(&pc).await.map_err(offset_error)?;
        let next = match &cfg.start {
            StartFrom::Earliest => pc
                .get_offset(OffsetAt::Earliest)
                .await
                .map_err(offset_error)?,
            StartFrom::Latest => latest,
            StartFrom::Timestamp(ms) => {
                let at = DateTime::<Utc>::from_timestamp_millis(*ms).ok_or_else(|| {
                    RuntimeError::user(format!("{what}: start timestamp {ms} is out of range"))
                })?;
                let listed = match pc
                    .get_offset(OffsetAt::Timestamp(at))
                    .await
                    .map_err(offset_error)?
                {
                    // No record at or after the time.
                    o if o < 0 => latest,
                    o => o.min(latest),
                };
                first_at_or_after(&pc, listed, latest, *ms)
                    .await
                    .map_err(offset_error)?
            }
            StartFrom::Offsets(given) => match given.iter().find(|(p, _)| *p == partition) {
                Some(&(_, o)) => o,
                None => pc
                    .get_offset(OffsetAt::Earliest)
                    .await
                    .map_err(offset_error)?,
            },
        };
        let end = cfg.bounded.then_some(latest);
        splits.push(Split {
            partition,
            next,
            end,
            done: false,
        });
        clients.push(pc);
    }
    Ok((clients, splits))
}

/// The offset of the first record at or after `from` whose timestamp is at least `ms`, or
/// `end` if there is none before it. Brokers answer a timestamp lookup with that offset;
/// checking it costs one fetch, and it corrects brokers that answer too early (tansu 0.6
/// answers the earliest offset), by scanning forward.
async fn first_at_or_after(
    pc: &PartitionClient,
    mut from: i64,
    end: i64,
    ms: EventTime,
) -> rskafka::client::error::Result<i64> {
    while from < end {
        let (records, _) = pc.fetch_records(from, 1..1 << 20, 10).await?;
        let mut last = None;
        for r in records.iter().filter(|r| r.offset >= from) {
            if r.record.timestamp.timestamp_millis() >= ms {
                return Ok(r.offset);
            }
            last = Some(r.offset);
        }
        match last {
            Some(o) => from = o + 1,
            // Nothing more to read below `end`.
            None => break,
        }
    }
    Ok(end)
}

/// Fetches one partition.
struct PartitionFetch {
    what: String,
    client: PartitionClient,
    split: usize,
    next: i64,
    end: Option<i64>,
    max_bytes: i32,
    max_wait_ms: i32,
    tx: mpsc::Sender<Fetched>,
}

impl PartitionFetch {
    async fn run(mut self) {
        loop {
            if self.end.is_some_and(|end| self.next >= end) {
                let _ = self.tx.send(Fetched::Done { split: self.split }).await;
                return;
            }
            if self.tx.is_closed() {
                return;
            }
            let fetched = self
                .client
                .fetch_records(self.next, 1..self.max_bytes.max(2), self.max_wait_ms)
                .await;
            let records = match fetched {
                Ok((records, _high_watermark)) => records,
                Err(e) => {
                    let message = format!(
                        "{}: cannot fetch topic `{}` partition {} at offset {}: {e}",
                        self.what,
                        self.client.topic(),
                        self.client.partition(),
                        self.next
                    );
                    let _ = self
                        .tx
                        .send(Fetched::Failed(RuntimeError::external(message)))
                        .await;
                    return;
                }
            };
            let (next, end) = (self.next, self.end);
            let mut last = None;
            let batch: Vec<OffsetValue> = records
                .into_iter()
                .filter(|r| r.offset >= next)
                .inspect(|r| last = Some(r.offset))
                .filter(|r| end.is_none_or(|e| r.offset < e))
                .map(|r| (r.offset, r.record.value))
                .collect();
            if let Some(last) = last {
                self.next = last + 1;
            }
            if !batch.is_empty()
                && self
                    .tx
                    .send(Fetched::Batch {
                        split: self.split,
                        records: batch,
                    })
                    .await
                    .is_err()
            {
                return;
            }
        }
    }
}

/// One dead-letter entry.
#[derive(Serialize)]
struct DeadLetterEntry<'a> {
    source: &'a str,
    topic: &'a str,
    partition: i32,
    offset: i64,
    error: &'a str,
    raw: &'a str,
}

/// An open [`KafkaSource`] instance.
pub struct KafkaSourceReader<T> {
    operator: String,
    instance: usize,
    topic: String,
    bounded: bool,
    policy: BadRecordPolicy,
    decode: DecodeFn<T>,
    csv: CsvLineParser,
    splits: Vec<Split>,
    rx: mpsc::Receiver<Fetched>,
    /// The batch being handed downstream: its split and the records left.
    batch: Option<(usize, std::vec::IntoIter<OffsetValue>)>,
    dead_letter: DeadLetters,
    records: u64,
    bad: u64,
    finished: bool,
    /// How the fetch thread was started (to restart it at checkpointed offsets).
    fetch: FetchConfig,
}

impl<T> KafkaSourceReader<T> {
    /// Restart the fetch thread at `offsets` (partitions without one start as configured);
    /// the old one stops when its channel closes.
    fn restart_at(&mut self, offsets: Vec<(i32, i64)>) -> Result<()> {
        let mut fetch = self.fetch.clone();
        fetch.start = StartFrom::Offsets(offsets);
        let (splits, rx) = start_fetch(&self.operator, fetch)?;
        self.splits = splits;
        self.rx = rx;
        self.batch = None;
        Ok(())
    }

    /// The next offset to read of every partition this instance reads, as
    /// `(partition, offset)`: everything before it has been handed downstream (or counted as
    /// a bad record). Start a source there with [`StartFrom::Offsets`].
    pub fn positions(&self) -> Vec<(i32, i64)> {
        self.splits.iter().map(|s| (s.partition, s.next)).collect()
    }

    /// The partitions this instance reads.
    pub fn partitions(&self) -> Vec<i32> {
        self.splits.iter().map(|s| s.partition).collect()
    }

    /// Apply the bad-record policy to the message at `offset` of split `split`.
    fn bad_record(
        &mut self,
        split: usize,
        offset: i64,
        raw: Option<&[u8]>,
        error: &str,
    ) -> Result<()> {
        let partition = self.splits[split].partition;
        match &self.policy {
            BadRecordPolicy::Fail => Err(RuntimeError::user(format!(
                "kafka source `{}`: cannot decode topic `{}` partition {partition} offset {offset}: {error}; fix the input or use .on_bad_record(BadRecordPolicy::Skip) to skip bad records",
                self.operator, self.topic
            ))),
            BadRecordPolicy::Skip => {
                if self.bad == 0 {
                    tracing::warn!(operator = %self.operator, instance = self.instance, topic = %self.topic, partition, offset, error = %error, "kafka source: skipping bad records (the first one is this one)");
                }
                self.bad += 1;
                Ok(())
            }
            BadRecordPolicy::DeadLetter(dir) => {
                let dir = dir.clone();
                self.dead_letter(&dir, partition, offset, raw, error)?;
                self.bad += 1;
                Ok(())
            }
        }
    }

    fn dead_letter(
        &mut self,
        dir: &std::path::Path,
        partition: i32,
        offset: i64,
        raw: Option<&[u8]>,
        error: &str,
    ) -> Result<()> {
        let raw = raw.map(String::from_utf8_lossy).unwrap_or_default();
        let entry = DeadLetterEntry {
            source: &self.operator,
            topic: &self.topic,
            partition,
            offset,
            error,
            raw: &raw,
        };
        let what = format!("kafka source `{}`", self.operator);
        self.dead_letter
            .write(&what, dir, &self.operator, self.instance, &entry)
    }

    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.bad > 0 {
            tracing::warn!(operator = %self.operator, instance = self.instance, records = self.records, bad_records = self.bad, "kafka source finished; bad records were skipped or dead-lettered");
        } else {
            tracing::debug!(operator = %self.operator, instance = self.instance, records = self.records, "kafka source finished");
        }
    }
}

impl<T: DeserializeOwned + 'static> SourceReader for KafkaSourceReader<T> {
    type Item = T;

    fn poll<F: FnMut(T)>(&mut self, budget: usize, mut out: F) -> Result<Poll> {
        let count = u32::try_from(self.splits.len()).unwrap_or(u32::MAX);
        let mut handled = 0;
        while handled < budget {
            let next = match &mut self.batch {
                Some((split, records)) => records.next().map(|r| (*split, r)),
                None => None,
            };
            if let Some((split, (offset, value))) = next {
                handled += 1;
                self.splits[split].next = offset + 1;
                let decoded = match value.as_deref() {
                    Some(v) => (self.decode)(v, &mut self.csv),
                    None => Err("the message has no value (a tombstone)".to_string()),
                };
                match decoded {
                    Ok(record) => {
                        self.records += 1;
                        // Indices fit: `count` is the number of splits.
                        split::from_split(split as u32, count, || out(record));
                    }
                    Err(error) => self.bad_record(split, offset, value.as_deref(), &error)?,
                }
                continue;
            }
            self.batch = None;
            match self.rx.try_recv() {
                Ok(Fetched::Batch { split, records }) => {
                    self.batch = Some((split, records.into_iter()));
                }
                Ok(Fetched::Done { split }) => {
                    if let Some(s) = self.splits.get_mut(split) {
                        s.done = true;
                        if let Some(end) = s.end {
                            s.next = s.next.max(end);
                        }
                    }
                }
                Ok(Fetched::Failed(e)) => return Err(e),
                Err(mpsc::error::TryRecvError::Empty) => {
                    return Ok(if handled > 0 { Poll::More } else { Poll::Idle });
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    if self.bounded && self.splits.iter().all(|s| s.done) {
                        self.finish();
                        return Ok(Poll::Done);
                    }
                    if self.splits.is_empty() {
                        // Unbounded with no partition to read: stay (idle) until stopped.
                        return Ok(Poll::Idle);
                    }
                    return Err(RuntimeError::internal(format!(
                        "kafka source `{}`: its fetch thread stopped",
                        self.operator
                    )));
                }
            }
        }
        Ok(Poll::More)
    }

    fn bad_records(&self) -> u64 {
        self.bad
    }

    fn progress(&self) -> (u64, Option<u64>) {
        (self.records, None)
    }

    /// The next offset of every partition: with checkpoints, offsets live in weir's
    /// checkpoint (no consumer group), so a restore reads from exactly there.
    fn position(&self) -> Option<Vec<u8>> {
        let p = (self.positions(), self.records, self.bad);
        crate::checkpoint::encode("the kafka source's offsets", &p).ok()
    }

    fn seek(&mut self, position: &[u8]) -> Result<()> {
        let (offsets, records, bad): (Vec<(i32, i64)>, u64, u64) =
            crate::checkpoint::decode("the kafka source's offsets", position)?;
        self.restart_at(offsets)?;
        self.records = records;
        self.bad = bad;
        Ok(())
    }

    /// Partitions are assigned by partition number, so re-splitting is taking every old
    /// instance's offsets: this instance reads its partitions from where their old readers
    /// were.
    fn rescale(&mut self, positions: &[Option<Vec<u8>>]) -> Result<()> {
        let mut all = Vec::new();
        for p in positions.iter().flatten() {
            let (offsets, _, _): (Vec<(i32, i64)>, u64, u64) =
                crate::checkpoint::decode("the kafka source's offsets", p)?;
            all.extend(offsets);
        }
        self.restart_at(all)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn partitions_go_round_robin_to_instances() {
        let parts: Vec<i32> = (0..7).collect();
        assert_eq!(assigned(&parts, 0, 3), [0, 3, 6]);
        assert_eq!(assigned(&parts, 1, 3), [1, 4]);
        assert_eq!(assigned(&parts, 2, 3), [2, 5]);
        // Every partition exactly once, whatever the parallelism.
        for p in 1..10 {
            let mut all: Vec<i32> = (0..p).flat_map(|i| assigned(&parts, i, p)).collect();
            all.sort_unstable();
            assert_eq!(all, parts, "parallelism {p}");
        }
        // More instances than partitions: the rest read nothing.
        assert!(assigned(&parts[..2], 5, 8).is_empty());
    }

    #[test]
    fn describe_says_topic_format_and_start() {
        #[derive(serde::Deserialize, Serialize, Clone)]
        struct O {
            id: u64,
        }
        let s = KafkaSource::json::<O>("127.0.0.1:9092", "orders").bounded();
        assert_eq!(
            Source::describe(&s),
            "kafka topic `orders` at 127.0.0.1:9092 (json, from earliest, bounded)"
        );
        assert!(s.is_bounded());
        let s = KafkaSource::text("b:1", "t").start(StartFrom::Timestamp(5));
        assert_eq!(
            Source::describe(&s),
            "kafka topic `t` at b:1 (text, from timestamp 5)"
        );
        assert!(!s.is_bounded());
    }
}

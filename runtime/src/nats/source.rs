//! NATS JetStream source: one stream read from a stream sequence, JSON or text payloads,
//! bounded or unbounded; sequences are the checkpointed positions.

use super::DEFAULT_RETRY_TIMEOUT;
use super::{connect, context, missing_stream, redact, runtime, Auth, Backoff};
use crate::error::{Result, RuntimeError};
use crate::sources::{BadRecordPolicy, DeadLetters, Poll, Source, SourceContext, SourceReader};
use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer, DeliverPolicy};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::time::Duration;
use tokio::sync::mpsc;

/// Fetched batches buffered between the fetch thread and the worker.
const CHANNEL_BATCHES: usize = 16;

/// Decodes one message payload; the error says why it cannot be decoded.
type DecodeFn<T> = fn(&[u8]) -> std::result::Result<T, String>;

fn decode_json<T: DeserializeOwned>(payload: &[u8]) -> std::result::Result<T, String> {
    serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))
}

fn decode_text(payload: &[u8]) -> std::result::Result<String, String> {
    std::str::from_utf8(payload)
        .map(str::to_owned)
        .map_err(|e| format!("invalid UTF-8: {e}"))
}

/// Where a [`NatsSource`] starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NatsStart {
    /// The first message the stream still keeps.
    #[default]
    First,
    /// Only messages published after the source started.
    New,
    /// The message with this stream sequence (or the first after it that the stream keeps).
    Sequence(u64),
}

impl fmt::Display for NatsStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsStart::First => f.write_str("from the first message"),
            NatsStart::New => f.write_str("new messages only"),
            NatsStart::Sequence(s) => write!(f, "from sequence {s}"),
        }
    }
}

/// A source reading one NATS JetStream stream (optionally only the subjects of a filter).
///
/// A stream is one sequence of messages, so one instance reads it: instance 0 of the
/// source; further instances read nothing (give the source `.parallelism(1)` and spread the
/// records with a rebalance or a key). No durable consumer is created: the source reads
/// through short-lived ephemeral pull consumers from the stream sequence it needs, and
/// that sequence is its position — with checkpoints it lives in weir's checkpoint, and a
/// restored job replays from exactly the message after the last one the checkpoint covers.
///
/// Payloads are decoded as JSON (`NatsSource::json::<T>`) or UTF-8 text
/// (`NatsSource::text`). A payload that cannot be decoded follows the [`BadRecordPolicy`]
/// (default: skip and count); `Fail` names the stream and sequence.
///
/// Bounded (`.bounded()`): the source reads up to the stream's last sequence as it was when
/// the job first started (a restored job keeps that end), then ends. Unbounded (default):
/// it keeps reading.
///
/// If the server goes away, the source retries with backoff (logging once) for
/// [`retry_timeout`](NatsSource::retry_timeout), then the job fails and, with checkpoints,
/// restarts from the last one.
///
/// ```text
/// env.source(NatsSource::json::<Order>(env.arg("nats"), "ORDERS").bounded()).parallelism(1)
/// ```
pub struct NatsSource<T> {
    url: String,
    stream: String,
    filter: Option<String>,
    decode: DecodeFn<T>,
    format: &'static str,
    start: NatsStart,
    bounded: bool,
    policy: BadRecordPolicy,
    auth: Auth,
    retry_timeout: Duration,
    batch: usize,
}

impl NatsSource<String> {
    /// Each message payload is one JSON value of type `T`:
    /// `NatsSource::json::<Order>("nats://127.0.0.1:4222", "ORDERS")`.
    pub fn json<T: DeserializeOwned>(
        url: impl Into<String>,
        stream: impl Into<String>,
    ) -> NatsSource<T> {
        NatsSource::with(url.into(), stream.into(), decode_json::<T>, "json")
    }

    /// Each message payload as a `String` (invalid UTF-8 is a bad record).
    pub fn text(url: impl Into<String>, stream: impl Into<String>) -> NatsSource<String> {
        NatsSource::with(url.into(), stream.into(), decode_text, "text")
    }
}

impl<T> NatsSource<T> {
    fn with(url: String, stream: String, decode: DecodeFn<T>, format: &'static str) -> Self {
        NatsSource {
            url,
            stream,
            filter: None,
            decode,
            format,
            start: NatsStart::First,
            bounded: false,
            policy: BadRecordPolicy::default(),
            auth: Auth::Url,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            batch: 1_000,
        }
    }

    /// Read only messages whose subject matches `subject` (wildcards allowed).
    pub fn filter_subject(mut self, subject: impl Into<String>) -> Self {
        self.filter = Some(subject.into());
        self
    }

    /// Where reading starts (default: [`NatsStart::First`]); a restored job starts at its
    /// checkpoint instead.
    pub fn start(mut self, start: NatsStart) -> Self {
        self.start = start;
        self
    }

    /// Read up to the stream's last message as of the start, then end.
    pub fn bounded(self) -> Self {
        self.bounded_if(true)
    }

    /// [`NatsSource::bounded`] when `bounded` is true (e.g. from a job argument).
    pub fn bounded_if(mut self, bounded: bool) -> Self {
        self.bounded = bounded;
        self
    }

    /// What to do with a payload that cannot be decoded (default: [`BadRecordPolicy::Skip`]).
    /// Dead letters go to `<dir>/dead-letter-<operator>-<instance>.jsonl`, one JSON object per
    /// message: `{"source", "stream", "subject", "sequence", "error", "raw"}`.
    pub fn on_bad_record(mut self, policy: BadRecordPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Authenticate with a user and password (instead of credentials in the URL).
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.auth = Auth::UserPassword(user.into(), password.into());
        self
    }

    /// Authenticate with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.auth = Auth::Token(token.into());
        self
    }

    /// How long to keep retrying an unreachable server (at start and while reading) before
    /// the job fails (default 30 s).
    pub fn retry_timeout(mut self, timeout: Duration) -> Self {
        self.retry_timeout = timeout;
        self
    }

    /// The stream read.
    pub fn stream(&self) -> &str {
        &self.stream
    }
}

impl<T> Clone for NatsSource<T> {
    fn clone(&self) -> Self {
        NatsSource {
            url: self.url.clone(),
            stream: self.stream.clone(),
            filter: self.filter.clone(),
            decode: self.decode,
            format: self.format,
            start: self.start,
            bounded: self.bounded,
            policy: self.policy.clone(),
            auth: self.auth.clone(),
            retry_timeout: self.retry_timeout,
            batch: self.batch,
        }
    }
}

impl<T> fmt::Debug for NatsSource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSource")
            .field("url", &redact(&self.url))
            .field("stream", &self.stream)
            .field("filter", &self.filter)
            .field("start", &self.start)
            .field("bounded", &self.bounded)
            .field("policy", &self.policy)
            .finish()
    }
}

/// What the fetch thread sends the reader.
enum Fetched {
    /// Messages in sequence order: `(sequence, subject, payload)`.
    Batch(Vec<(u64, String, Vec<u8>)>),
    /// Bounded: everything up to the end was sent.
    Done,
    /// Reading failed beyond the retries.
    Failed(RuntimeError),
}

/// Where the fetch thread starts, after set-up: the next sequence and (bounded) the last.
#[derive(Debug, Clone, Copy)]
struct Range {
    next: u64,
    end: Option<u64>,
}

#[derive(Clone)]
struct FetchConfig {
    what: String,
    url: String,
    auth: Auth,
    stream: String,
    filter: Option<String>,
    start: NatsStart,
    bounded: bool,
    /// A restored bounded reader's end (the first run's).
    end: Option<u64>,
    retry_timeout: Duration,
    batch: usize,
}

impl<T: crate::data::Data + DeserializeOwned> Source for NatsSource<T> {
    type Item = T;
    type Reader = NatsSourceReader<T>;

    fn describe(&self) -> String {
        format!(
            "nats stream `{}`{} at {} ({}, {}{})",
            self.stream,
            self.filter
                .as_ref()
                .map(|f| format!(" subjects `{f}`"))
                .unwrap_or_default(),
            redact(&self.url),
            self.format,
            self.start,
            if self.bounded { ", bounded" } else { "" }
        )
    }

    fn is_bounded(&self) -> bool {
        self.bounded
    }

    fn open(&self, ctx: &SourceContext) -> Result<Self::Reader> {
        let what = format!("nats source `{}`", ctx.operator);
        let fetch = FetchConfig {
            what: what.clone(),
            url: self.url.clone(),
            auth: self.auth.clone(),
            stream: self.stream.clone(),
            filter: self.filter.clone(),
            start: self.start,
            bounded: self.bounded,
            end: None,
            retry_timeout: self.retry_timeout,
            batch: self.batch.max(1),
        };
        let reads = ctx.instance == 0;
        let (range, rx) = if reads {
            let (range, rx) = start_fetch(&ctx.operator, fetch.clone())?;
            tracing::info!(operator = %ctx.operator, next = range.next, end = ?range.end, "{}", Source::describe(self));
            (range, Some(rx))
        } else {
            if ctx.instance == 1 {
                tracing::info!(operator = %ctx.operator, parallelism = ctx.parallelism, "nats source: a stream is read by instance 0 only; the other instances stay idle (give the source .parallelism(1))");
            }
            (Range { next: 0, end: None }, None)
        };
        Ok(NatsSourceReader {
            operator: ctx.operator.clone(),
            instance: ctx.instance,
            stream: self.stream.clone(),
            bounded: self.bounded,
            policy: self.policy.clone(),
            decode: self.decode,
            range,
            rx,
            batch: Vec::new().into_iter(),
            dead_letter: DeadLetters::default(),
            records: 0,
            bad: 0,
            finished: false,
            fetch,
        })
    }
}

/// Start the fetch thread; returns where it reads and its channel.
fn start_fetch(operator: &str, fetch: FetchConfig) -> Result<(Range, mpsc::Receiver<Fetched>)> {
    let what = fetch.what.clone();
    let (setup_tx, setup_rx) = std::sync::mpsc::channel::<Result<Range>>();
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    std::thread::Builder::new()
        .name(format!("weir-nats-{operator}"))
        .spawn(move || fetch_thread(fetch, setup_tx, tx))
        .map_err(|e| {
            RuntimeError::external(format!("{what}: cannot start its fetch thread: {e}"))
        })?;
    let range = setup_rx.recv().map_err(|_| {
        RuntimeError::internal(format!("{what}: the fetch thread stopped during start-up"))
    })??;
    Ok((range, rx))
}

fn fetch_thread(
    cfg: FetchConfig,
    setup_tx: std::sync::mpsc::Sender<Result<Range>>,
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
        let (js, range) = match setup(&cfg).await {
            Ok(x) => x,
            Err(e) => {
                let _ = setup_tx.send(Err(e));
                return;
            }
        };
        if setup_tx.send(Ok(range)).is_err() {
            return;
        }
        if let Err(e) = fetch_loop(&cfg, &js, range, &tx).await {
            let _ = tx.send(Fetched::Failed(e)).await;
        }
    });
}

/// Connect, check the stream, and decide where reading starts and (bounded) ends.
async fn setup(cfg: &FetchConfig) -> Result<(async_nats::jetstream::Context, Range)> {
    let what = &cfg.what;
    let client = connect(&cfg.url, &cfg.auth, cfg.retry_timeout, what).await?;
    let js = context(client);
    let mut stream = js
        .get_stream(&cfg.stream)
        .await
        .map_err(|e| missing_stream(what, &cfg.url, &cfg.stream, &e))?;
    let info = stream.info().await.map_err(|e| {
        RuntimeError::external(format!(
            "{what}: cannot read the state of stream `{}`: {e}",
            cfg.stream
        ))
    })?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let next = match cfg.start {
        NatsStart::First => first.max(1),
        NatsStart::New => last + 1,
        NatsStart::Sequence(s) => s.max(1),
    };
    let end = match (cfg.bounded, cfg.end) {
        (false, _) => None,
        (true, Some(end)) => Some(end),
        (true, None) => Some(last),
    };
    Ok((js, Range { next, end }))
}

/// Read from `range.next` until the reader goes away or (bounded) the end is reached;
/// connection trouble is retried with backoff for `retry_timeout`.
async fn fetch_loop(
    cfg: &FetchConfig,
    js: &async_nats::jetstream::Context,
    range: Range,
    tx: &mpsc::Sender<Fetched>,
) -> Result<()> {
    let what = &cfg.what;
    let mut next = range.next;
    let mut consumer: Option<Consumer<pull::Config>> = None;
    let mut backoff = Backoff::new();
    loop {
        if range.end.is_some_and(|end| next > end) {
            let _ = tx.send(Fetched::Done).await;
            return Ok(());
        }
        if tx.is_closed() {
            return Ok(());
        }
        let attempt = async {
            if consumer.is_none() {
                let c = create_consumer(cfg, js, next).await?;
                if range.end.is_some() && c.cached_info().num_pending == 0 {
                    // Nothing (matching the filter) between `next` and the end.
                    return Ok::<_, String>((Vec::new(), true, None));
                }
                consumer = Some(c);
            }
            let Some(c) = &consumer else {
                return Err("no consumer".to_string());
            };
            let mut messages = c
                .batch()
                .max_messages(cfg.batch)
                .expires(Duration::from_millis(500))
                .messages()
                .await
                .map_err(|e| e.to_string())?;
            let mut batch = Vec::new();
            let mut caught_up = false;
            while let Some(m) = messages.next().await {
                let m = m.map_err(|e| e.to_string())?;
                let info = m.info().map_err(|e| e.to_string())?;
                let (seq, pending) = (info.stream_sequence, info.pending);
                if seq < next {
                    continue;
                }
                if range.end.is_some_and(|end| seq > end) {
                    caught_up = true;
                    break;
                }
                next = seq + 1;
                batch.push((seq, m.subject.to_string(), m.payload.to_vec()));
                if pending == 0 {
                    caught_up = true;
                }
            }
            Ok((batch, caught_up, Some(next)))
        };
        match attempt.await {
            Ok((batch, caught_up, _)) => {
                if !backoff.first() {
                    tracing::info!(
                        "{what}: reading stream `{}` again at sequence {next}",
                        cfg.stream
                    );
                }
                backoff.reset();
                if !batch.is_empty() && tx.send(Fetched::Batch(batch)).await.is_err() {
                    return Ok(());
                }
                if caught_up && range.end.is_some() {
                    let _ = tx.send(Fetched::Done).await;
                    return Ok(());
                }
            }
            Err(e) => {
                // Start over with a fresh consumer at the next sequence.
                consumer = None;
                if backoff.first() {
                    tracing::warn!("{what}: cannot read stream `{}` at sequence {next} ({e}); retrying with backoff for up to {} s", cfg.stream, cfg.retry_timeout.as_secs());
                }
                if !backoff.wait(cfg.retry_timeout).await {
                    return Err(RuntimeError::external(format!(
                        "{what}: cannot read stream `{}` at sequence {next} from {} for {} s: {e}; check that the server runs and the stream exists",
                        cfg.stream,
                        redact(&cfg.url),
                        cfg.retry_timeout.as_secs()
                    )));
                }
            }
        }
    }
}

/// An ephemeral pull consumer delivering from `next` on, without acknowledgements.
async fn create_consumer(
    cfg: &FetchConfig,
    js: &async_nats::jetstream::Context,
    next: u64,
) -> std::result::Result<Consumer<pull::Config>, String> {
    let stream = js
        .get_stream_no_info(&cfg.stream)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: next,
            },
            ack_policy: AckPolicy::None,
            filter_subject: cfg.filter.clone().unwrap_or_default(),
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())
}

/// One dead-letter entry.
#[derive(Serialize)]
struct DeadLetterEntry<'a> {
    source: &'a str,
    stream: &'a str,
    subject: &'a str,
    sequence: u64,
    error: &'a str,
    raw: &'a str,
}

/// An open [`NatsSource`] instance.
pub struct NatsSourceReader<T> {
    operator: String,
    instance: usize,
    stream: String,
    bounded: bool,
    policy: BadRecordPolicy,
    decode: DecodeFn<T>,
    /// The next sequence to hand downstream, and the end (bounded).
    range: Range,
    /// `None` on instances that read nothing.
    rx: Option<mpsc::Receiver<Fetched>>,
    batch: std::vec::IntoIter<(u64, String, Vec<u8>)>,
    dead_letter: DeadLetters,
    records: u64,
    bad: u64,
    finished: bool,
    fetch: FetchConfig,
}

/// What a checkpoint stores: next sequence, bounded end, records and bad records so far.
type Position = (u64, Option<u64>, u64, u64);

impl<T> NatsSourceReader<T> {
    /// The stream sequence of the next message to read: everything before it has been
    /// handed downstream (or counted as a bad record). Start a source there with
    /// [`NatsStart::Sequence`].
    pub fn next_sequence(&self) -> u64 {
        self.range.next
    }

    fn bad_record(&mut self, seq: u64, subject: &str, raw: &[u8], error: &str) -> Result<()> {
        match &self.policy {
            BadRecordPolicy::Fail => Err(RuntimeError::user(format!(
                "nats source `{}`: cannot decode stream `{}` sequence {seq} (subject `{subject}`): {error}; fix the input or use .on_bad_record(BadRecordPolicy::Skip) to skip bad records",
                self.operator, self.stream
            ))),
            BadRecordPolicy::Skip => {
                if self.bad == 0 {
                    tracing::warn!(operator = %self.operator, stream = %self.stream, sequence = seq, error = %error, "nats source: skipping bad records (the first one is this one)");
                }
                self.bad += 1;
                Ok(())
            }
            BadRecordPolicy::DeadLetter(dir) => {
                let dir = dir.clone();
                let raw = String::from_utf8_lossy(raw);
                let entry = DeadLetterEntry {
                    source: &self.operator,
                    stream: &self.stream,
                    subject,
                    sequence: seq,
                    error,
                    raw: &raw,
                };
                let what = format!("nats source `{}`", self.operator);
                self.dead_letter
                    .write(&what, &dir, &self.operator, self.instance, &entry)?;
                self.bad += 1;
                Ok(())
            }
        }
    }

    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.bad > 0 {
            tracing::warn!(operator = %self.operator, records = self.records, bad_records = self.bad, "nats source finished; bad records were skipped or dead-lettered");
        } else {
            tracing::debug!(operator = %self.operator, records = self.records, "nats source finished");
        }
    }
}

impl<T: DeserializeOwned + 'static> SourceReader for NatsSourceReader<T> {
    type Item = T;

    fn poll<F: FnMut(T)>(&mut self, budget: usize, mut out: F) -> Result<Poll> {
        let mut handled = 0;
        while handled < budget {
            if let Some((seq, subject, payload)) = self.batch.next() {
                handled += 1;
                self.range.next = seq + 1;
                match (self.decode)(&payload) {
                    Ok(record) => {
                        self.records += 1;
                        out(record);
                    }
                    Err(error) => self.bad_record(seq, &subject, &payload, &error)?,
                }
                continue;
            }
            let Some(rx) = &mut self.rx else {
                // An instance without a share of the stream.
                if self.bounded {
                    self.finish();
                    return Ok(Poll::Done);
                }
                return Ok(Poll::Idle);
            };
            match rx.try_recv() {
                Ok(Fetched::Batch(batch)) => self.batch = batch.into_iter(),
                Ok(Fetched::Done) => {
                    self.rx = None;
                    if let Some(end) = self.range.end {
                        self.range.next = self.range.next.max(end + 1);
                    }
                    self.finish();
                    return Ok(Poll::Done);
                }
                Ok(Fetched::Failed(e)) => return Err(e),
                Err(mpsc::error::TryRecvError::Empty) => {
                    return Ok(if handled > 0 { Poll::More } else { Poll::Idle });
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Err(RuntimeError::internal(format!(
                        "nats source `{}`: its fetch thread stopped",
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

    /// The next stream sequence (and the bounded end): with checkpoints it lives in weir's
    /// checkpoint, so a restore replays from exactly there.
    fn position(&self) -> Option<Vec<u8>> {
        let p: Position = (self.range.next, self.range.end, self.records, self.bad);
        crate::checkpoint::encode("the nats source's sequence", &p).ok()
    }

    fn seek(&mut self, position: &[u8]) -> Result<()> {
        let (next, end, records, bad): Position =
            crate::checkpoint::decode("the nats source's sequence", position)?;
        self.records = records;
        self.bad = bad;
        self.batch = Vec::new().into_iter();
        if self.instance != 0 {
            return Ok(());
        }
        // Restart the fetch thread at the stored sequence; the old one stops when its
        // channel closes.
        let mut fetch = self.fetch.clone();
        fetch.start = NatsStart::Sequence(next);
        fetch.end = end;
        let (range, rx) = start_fetch(&self.operator, fetch)?;
        self.range = range;
        self.rx = Some(rx);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn describe_says_stream_format_and_start_without_secrets() {
        #[derive(serde::Deserialize, Serialize, Clone)]
        struct O {
            id: u64,
        }
        let s = NatsSource::json::<O>("nats://u:pw@127.0.0.1:4222", "ORDERS").bounded();
        assert_eq!(
            Source::describe(&s),
            "nats stream `ORDERS` at nats://u:***@127.0.0.1:4222 (json, from the first message, bounded)"
        );
        assert!(s.is_bounded());
        let s = NatsSource::text("h:1", "S")
            .filter_subject("s.>")
            .start(NatsStart::Sequence(5));
        assert_eq!(
            Source::describe(&s),
            "nats stream `S` subjects `s.>` at h:1 (text, from sequence 5)"
        );
    }

    #[test]
    fn payloads_decode_or_say_why_not() {
        assert_eq!(decode_json::<Vec<u32>>(b"[1,2]").unwrap(), [1, 2]);
        assert!(decode_json::<u32>(b"x")
            .unwrap_err()
            .starts_with("invalid JSON"));
        assert!(decode_text(b"\xff")
            .unwrap_err()
            .starts_with("invalid UTF-8"));
    }
}

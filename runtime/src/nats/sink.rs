//! NATS JetStream sink: JSON or text payloads published to one subject with JetStream
//! acknowledgements and deterministic message ids; exactly-once within the stream's
//! duplicate window with checkpoints, at-least-once without.

use super::{connect, context, redact, runtime, Auth, Backoff, DEFAULT_RETRY_TIMEOUT};
use crate::checkpoint::Committer;
use crate::error::{Result, RuntimeError};
use crate::sinks::{Guarantee, Sink, SinkContext, SinkWriter};
use async_nats::jetstream::message::PublishMessage;
use serde::Serialize;
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Publish once this many records are buffered (without checkpoints).
const BATCH_RECORDS: usize = 10_000;
/// Publishes in flight before their acknowledgements are awaited.
const IN_FLIGHT: usize = 1_024;
/// JetStream's default duplicate window.
const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Appends the encoding of one record to the buffer.
type EncodeFn<T> = fn(&T, &mut Vec<u8>) -> std::result::Result<(), String>;

fn encode_json<T: Serialize>(record: &T, out: &mut Vec<u8>) -> std::result::Result<(), String> {
    serde_json::to_writer(out, record).map_err(|e| format!("cannot encode as JSON: {e}"))
}

// The signature is `EncodeFn<String>`'s.
#[allow(clippy::ptr_arg)]
fn encode_text(record: &String, out: &mut Vec<u8>) -> std::result::Result<(), String> {
    out.extend_from_slice(record.as_bytes());
    Ok(())
}

/// A sink publishing every record to one NATS subject that a JetStream stream captures.
///
/// **Exactly-once with checkpoints, within the stream's duplicate window.** With
/// checkpoints (`run --checkpoint-interval`) each instance keeps the records of a checkpoint
/// interval (in memory and, at the checkpoint, in the checkpoint itself) and publishes them
/// only when that checkpoint is complete on every worker, waiting for JetStream's
/// acknowledgement of each. Every message carries a `Nats-Msg-Id` made of the job, the sink
/// operator, the instance, a run id kept in the checkpoint, the checkpoint and the record's
/// index within it — the same id whenever the same record is published again. After a
/// failure the job restores the last complete checkpoint and publishes its records again
/// (the failure may have hit half-way through); the server drops the ones it already has,
/// because JetStream de-duplicates messages by id **within the stream's duplicate window
/// (2 minutes unless the stream is configured otherwise)**. A recovery that takes longer than
/// the window can therefore duplicate the records of the last checkpoint: set
/// [`duplicate_window`](NatsSink::duplicate_window) to more than your restart time. Records
/// become visible one checkpoint interval late.
///
/// **At-least-once without checkpoints**: records are published at every completed epoch (and
/// when 10,000 are buffered), with ids that de-duplicate the sink's own retries, but a
/// restarted job starts over and publishes again.
///
/// If the server goes away, publishing is retried with the same ids (so nothing is stored
/// twice) with backoff for [`retry_timeout`](NatsSink::retry_timeout); then the job fails and,
/// with checkpoints, restarts from the last one. The subject must belong to a stream: a
/// subject no stream captures is an error at start.
///
/// ```text
/// stream.sink(NatsSink::json::<Alert>(env.arg("nats"), "alerts.fraud").duplicate_window(Duration::from_secs(600)))
/// ```
pub struct NatsSink<T> {
    url: String,
    subject: String,
    encode: EncodeFn<T>,
    format: &'static str,
    auth: Auth,
    retry_timeout: Duration,
    duplicate_window: Option<Duration>,
}

impl NatsSink<String> {
    /// Each record as one JSON value per message: `NatsSink::json::<Alert>(url, subject)`.
    pub fn json<T: Serialize>(url: impl Into<String>, subject: impl Into<String>) -> NatsSink<T> {
        NatsSink::with(url.into(), subject.into(), encode_json::<T>, "json")
    }

    /// `String` records as UTF-8 payloads.
    pub fn text(url: impl Into<String>, subject: impl Into<String>) -> NatsSink<String> {
        NatsSink::with(url.into(), subject.into(), encode_text, "text")
    }
}

impl<T> NatsSink<T> {
    fn with(url: String, subject: String, encode: EncodeFn<T>, format: &'static str) -> Self {
        NatsSink {
            url,
            subject,
            encode,
            format,
            auth: Auth::Url,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            duplicate_window: None,
        }
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

    /// How long to keep retrying an unreachable server (at start and for every batch)
    /// before the job fails (default 30 s).
    pub fn retry_timeout(mut self, timeout: Duration) -> Self {
        self.retry_timeout = timeout;
        self
    }

    /// Make sure the stream's duplicate window is at least `window`: at start the sink
    /// reads the stream's configuration and, if its window is shorter, raises it (which
    /// needs permission to update the stream; a refusal is an error at start). The window
    /// bounds how long a recovery may take while staying exactly-once.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = Some(window);
        self
    }

    /// The subject published to.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

impl<T> Clone for NatsSink<T> {
    fn clone(&self) -> Self {
        NatsSink {
            url: self.url.clone(),
            subject: self.subject.clone(),
            encode: self.encode,
            format: self.format,
            auth: self.auth.clone(),
            retry_timeout: self.retry_timeout,
            duplicate_window: self.duplicate_window,
        }
    }
}

impl<T> fmt::Debug for NatsSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSink")
            .field("url", &redact(&self.url))
            .field("subject", &self.subject)
            .field("format", &self.format)
            .field("duplicate_window", &self.duplicate_window)
            .finish()
    }
}

/// A run id: differs between fresh starts, so that a job run twice within the duplicate
/// window does not have its second run's messages dropped as duplicates of the first's.
fn run_id(instance: usize) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = nanos ^ (u64::from(std::process::id()) << 32) ^ (instance as u64).rotate_left(48);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The message id of record `index` of batch `batch` (a checkpoint id, or `b<n>` without
/// checkpoints) of the sink instance whose ids start with `base`.
fn message_id(base: &str, run: u64, batch: &str, index: usize) -> String {
    format!("{base}:{run:016x}:{batch}:{index}")
}

/// Connects, publishes batches and waits for their acknowledgements; shared by a writer and
/// its committer.
struct Publisher {
    what: String,
    url: String,
    subject: String,
    rt: tokio::runtime::Runtime,
    js: async_nats::jetstream::Context,
    retry_timeout: Duration,
    /// Messages the server stored, and ones it dropped as duplicates.
    stored: u64,
    duplicates: u64,
}

impl Publisher {
    /// Publish `payloads` with ids `message_id(base, run, batch, i)`, retrying what failed
    /// (with the same ids) until every one is acknowledged or the retry time is over.
    fn publish(&mut self, base: &str, run: u64, batch: &str, payloads: &Payloads) -> Result<()> {
        if payloads.is_empty() {
            return Ok(());
        }
        let Publisher {
            what,
            url,
            subject,
            rt,
            js,
            retry_timeout,
            stored,
            duplicates,
        } = self;
        let mut todo: Vec<usize> = (0..payloads.len()).collect();
        rt.block_on(async {
            let mut backoff = Backoff::new();
            loop {
                let mut failed = Vec::new();
                let mut last_error = String::new();
                for chunk in todo.chunks(IN_FLIGHT) {
                    let mut acks = Vec::with_capacity(chunk.len());
                    for &i in chunk {
                        let message = PublishMessage::build()
                            .payload(payloads.get(i).to_vec().into())
                            .message_id(message_id(base, run, batch, i));
                        match js.send_publish(subject.clone(), message).await {
                            Ok(ack) => acks.push((i, ack)),
                            Err(e) => {
                                last_error = e.to_string();
                                failed.push(i);
                            }
                        }
                    }
                    // Awaited together: each acknowledgement's timeout starts when it is
                    // first polled, so messages lost with a connection cost one timeout
                    // per chunk, not one each.
                    let (indices, acks): (Vec<usize>, Vec<_>) = acks.into_iter().unzip();
                    let acked = futures_util::future::join_all(
                        acks.into_iter().map(std::future::IntoFuture::into_future),
                    )
                    .await;
                    for (i, ack) in indices.into_iter().zip(acked) {
                        match ack {
                            Ok(ack) if ack.duplicate => *duplicates += 1,
                            Ok(_) => *stored += 1,
                            Err(e) => {
                                last_error = e.to_string();
                                failed.push(i);
                            }
                        }
                    }
                }
                if failed.is_empty() {
                    if !backoff.first() {
                        tracing::info!("{what}: publishing to subject `{subject}` works again");
                    }
                    return Ok(());
                }
                if backoff.first() {
                    tracing::warn!("{what}: cannot publish {} messages to subject `{subject}` at {} ({last_error}); retrying them with the same message ids, with backoff for up to {} s", failed.len(), redact(url), retry_timeout.as_secs());
                }
                if !backoff.wait(*retry_timeout).await {
                    return Err(RuntimeError::external(format!(
                        "{what}: cannot publish to subject `{subject}` at {} for {} s: {last_error}; check that the server runs and that a stream captures the subject",
                        redact(url),
                        retry_timeout.as_secs()
                    )));
                }
                failed.sort_unstable();
                todo = failed;
            }
        })
    }
}

/// Encoded records in one buffer: record `i` is `bytes[ends[i - 1]..ends[i]]` (one
/// allocation per batch, and copied into a checkpoint as a whole).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Payloads {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Payloads {
    fn len(&self) -> usize {
        self.ends.len()
    }
    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
    /// Append one record, encoded by `encode`.
    fn push_with(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), String>,
    ) -> std::result::Result<(), String> {
        let before = self.bytes.len();
        if let Err(e) = encode(&mut self.bytes) {
            self.bytes.truncate(before);
            return Err(e);
        }
        self.ends.push(self.bytes.len());
        Ok(())
    }
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// Records pre-committed with a checkpoint, waiting for it to complete: `(checkpoint,
/// payloads)`, oldest first.
type PendingBatches = Vec<(u64, Payloads)>;

/// What a checkpoint stores for one sink instance: the run id, then per pending batch its
/// checkpoint, its record ends and its bytes (little-endian u64 lengths). Written by hand
/// rather than through serde: a batch is megabytes of small records, which a generic
/// encoder would walk byte by byte.
fn encode_pending(run: u64, pending: &PendingBatches) -> Vec<u8> {
    let size: usize = pending
        .iter()
        .map(|(_, p)| 24 + p.ends.len() * 8 + p.bytes.len())
        .sum();
    let mut out = Vec::with_capacity(16 + size);
    out.extend_from_slice(&run.to_le_bytes());
    out.extend_from_slice(&(pending.len() as u64).to_le_bytes());
    for (checkpoint, p) in pending {
        out.extend_from_slice(&checkpoint.to_le_bytes());
        out.extend_from_slice(&(p.ends.len() as u64).to_le_bytes());
        for &end in &p.ends {
            out.extend_from_slice(&(end as u64).to_le_bytes());
        }
        out.extend_from_slice(&(p.bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&p.bytes);
    }
    out
}

/// The first `n` bytes of `rest`, which moves past them.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

fn take_u64(rest: &mut &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(take(rest, 8)?.try_into().ok()?))
}

/// The inverse of [`encode_pending`]; `None` if the bytes are not such an encoding.
fn decode_pending(bytes: &[u8]) -> Option<(u64, PendingBatches)> {
    let mut rest = bytes;
    let run = take_u64(&mut rest)?;
    let batches = take_u64(&mut rest)?;
    let mut pending = Vec::new();
    for _ in 0..batches {
        let checkpoint = take_u64(&mut rest)?;
        let n = usize::try_from(take_u64(&mut rest)?).ok()?;
        let mut ends = Vec::with_capacity(n.min(rest.len() / 8));
        for _ in 0..n {
            ends.push(usize::try_from(take_u64(&mut rest)?).ok()?);
        }
        let len = usize::try_from(take_u64(&mut rest)?).ok()?;
        let data = take(&mut rest, len)?.to_vec();
        let ordered = ends.windows(2).all(|w| w[0] <= w[1]);
        if !ordered || ends.last().is_some_and(|&e| e > data.len()) {
            return None;
        }
        pending.push((checkpoint, Payloads { bytes: data, ends }));
    }
    rest.is_empty().then_some((run, pending))
}

impl<T: 'static> Sink<T> for NatsSink<T> {
    type Writer = NatsSinkWriter<T>;

    fn describe(&self) -> String {
        format!(
            "nats subject `{}` at {} ({}, exactly-once with checkpoints within the stream's duplicate window, else at-least-once)",
            self.subject,
            redact(&self.url),
            self.format
        )
    }

    fn guarantee(&self) -> Guarantee {
        // With checkpoints; within the duplicate window (see the type's docs).
        Guarantee::ExactlyOnce
    }

    fn open(&self, ctx: &SinkContext) -> Result<Self::Writer> {
        let what = format!("nats sink `{}`", ctx.operator);
        let rt = runtime(&what)?;
        let (js, window) = rt.block_on(self.check_stream(&what))?;
        if ctx.instance == 0 {
            tracing::info!(operator = %ctx.operator, duplicate_window_s = window.as_secs(), "{} — a recovery must finish within the duplicate window to stay exactly-once", Sink::<T>::describe(self));
        }
        let publisher = Publisher {
            what: what.clone(),
            url: self.url.clone(),
            subject: self.subject.clone(),
            rt,
            js,
            retry_timeout: self.retry_timeout,
            stored: 0,
            duplicates: 0,
        };
        Ok(NatsSinkWriter {
            what,
            encode: self.encode,
            publisher: Rc::new(RefCell::new(publisher)),
            base: format!("weir:{}:{}:{}", ctx.job, ctx.operator, ctx.instance),
            run: Rc::new(RefCell::new(run_id(ctx.instance))),
            current: Payloads::default(),
            pending: None,
            flushes: 0,
        })
    }
}

impl<T> NatsSink<T> {
    /// Connect, find the stream that captures the subject, and check (or raise) its
    /// duplicate window; returns the context and the window.
    async fn check_stream(&self, what: &str) -> Result<(async_nats::jetstream::Context, Duration)> {
        let client = connect(&self.url, &self.auth, self.retry_timeout, what).await?;
        let js = context(client);
        let name = js.stream_by_subject(self.subject.clone()).await.map_err(|e| {
            RuntimeError::user(format!(
                "{what}: no JetStream stream captures subject `{}` on {} ({e}); create a stream for it (e.g. `nats stream add --subjects '{}'`) or check the subject",
                self.subject,
                redact(&self.url),
                self.subject
            ))
        })?;
        let mut stream = js
            .get_stream(&name)
            .await
            .map_err(|e| super::missing_stream(what, &self.url, &name, &e))?;
        let info = stream.info().await.map_err(|e| {
            RuntimeError::external(format!(
                "{what}: cannot read the configuration of stream `{name}`: {e}"
            ))
        })?;
        let mut config = info.config.clone();
        let window = if config.duplicate_window.is_zero() {
            DEFAULT_DUPLICATE_WINDOW
        } else {
            config.duplicate_window
        };
        match self.duplicate_window {
            Some(want) if want > window => {
                config.duplicate_window = want;
                js.update_stream(config).await.map_err(|e| {
                    RuntimeError::user(format!(
                        "{what}: cannot raise the duplicate window of stream `{name}` from {} s to {} s: {e}; update the stream yourself (`nats stream edit {name} --dupe-window {}s`) or ask for a shorter window",
                        window.as_secs(),
                        want.as_secs(),
                        want.as_secs()
                    ))
                })?;
                tracing::info!(
                    "{what}: raised the duplicate window of stream `{name}` from {} s to {} s",
                    window.as_secs(),
                    want.as_secs()
                );
                Ok((js, want))
            }
            _ => Ok((js, window)),
        }
    }
}

/// An open [`NatsSink`] instance.
pub struct NatsSinkWriter<T> {
    what: String,
    encode: EncodeFn<T>,
    publisher: Rc<RefCell<Publisher>>,
    /// `weir:<job>:<operator>:<instance>`, the start of every message id.
    base: String,
    /// The run id (shared with the committer; a restore replaces it with the checkpoint's).
    run: Rc<RefCell<u64>>,
    /// Encoded records not yet published (or, two-phase, not yet pre-committed).
    current: Payloads,
    /// Two-phase mode: batches waiting for their checkpoint to complete.
    pending: Option<Rc<RefCell<PendingBatches>>>,
    /// Batches published without checkpoints.
    flushes: u64,
}

impl<T> NatsSinkWriter<T> {
    /// Messages the server stored so far, and ones it dropped as duplicates of messages it
    /// already had (published again after a recovery).
    pub fn published(&self) -> (u64, u64) {
        let p = self.publisher.borrow();
        (p.stored, p.duplicates)
    }

    /// Without checkpoints: publish what is buffered.
    fn flush(&mut self) -> Result<()> {
        if self.current.is_empty() {
            return Ok(());
        }
        let batch = format!("b{}", self.flushes);
        let run = *self.run.borrow();
        self.publisher
            .borrow_mut()
            .publish(&self.base, run, &batch, &self.current)?;
        self.flushes += 1;
        self.current.clear();
        Ok(())
    }
}

/// Publish every batch of `pending` whose checkpoint is at most `upto`, oldest first, and
/// drop them from the list.
fn publish_due(
    publisher: &RefCell<Publisher>,
    pending: &RefCell<PendingBatches>,
    base: &str,
    run: u64,
    upto: u64,
) -> Result<()> {
    loop {
        let due = {
            let p = pending.borrow();
            match p.first() {
                Some((c, _)) if *c <= upto => *c,
                _ => return Ok(()),
            }
        };
        {
            let p = pending.borrow();
            if let Some((_, payloads)) = p.first() {
                publisher
                    .borrow_mut()
                    .publish(base, run, &due.to_string(), payloads)?;
            }
        }
        pending.borrow_mut().remove(0);
    }
}

impl<T: 'static> SinkWriter<T> for NatsSinkWriter<T> {
    fn write(&mut self, record: T) -> Result<()> {
        let encode = self.encode;
        self.current
            .push_with(|out| encode(&record, out))
            .map_err(|e| RuntimeError::user(format!("{}: {e}", self.what)))?;
        if self.pending.is_none() && self.current.len() >= BATCH_RECORDS {
            self.flush()?;
        }
        Ok(())
    }

    fn epoch_complete(&mut self, _epoch: u64) -> Result<()> {
        if self.pending.is_some() {
            // Two-phase: records wait for their checkpoint.
            return Ok(());
        }
        self.flush()
    }

    fn close(&mut self) -> Result<()> {
        if self.pending.is_some() {
            // The final checkpoint's pre-commit takes the last records; its completion
            // publishes them.
            return Ok(());
        }
        self.flush()?;
        let (stored, duplicates) = self.published();
        tracing::debug!(sink = %self.what, stored, duplicates, "nats sink closed");
        Ok(())
    }

    fn two_phase(&mut self) -> Option<Committer> {
        let pending = Rc::new(RefCell::new(PendingBatches::new()));
        self.pending = Some(Rc::clone(&pending));
        let (publisher, base, run) = (
            Rc::clone(&self.publisher),
            self.base.clone(),
            Rc::clone(&self.run),
        );
        Some(Box::new(move |checkpoint: u64| {
            let run = *run.borrow();
            publish_due(&publisher, &pending, &base, run, checkpoint)
        }))
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Vec<u8>> {
        let Some(pending) = &self.pending else {
            return Ok(Vec::new());
        };
        let mut pending = pending.borrow_mut();
        if !self.current.is_empty() {
            pending.push((checkpoint, std::mem::take(&mut self.current)));
        }
        Ok(encode_pending(*self.run.borrow(), &pending))
    }

    fn recover(&mut self, checkpoint: u64, pending: Option<&[u8]>) -> Result<()> {
        let Some(list) = &self.pending else {
            return Ok(());
        };
        // A fresh start keeps its new run id: nothing of a previous run is pending.
        let Some(bytes) = pending else {
            return Ok(());
        };
        let (run, batches) = decode_pending(bytes).ok_or_else(|| {
            RuntimeError::user(format!(
                "{}: checkpoint {checkpoint} holds no pending messages this sink can read; start without it (run --restore none)",
                self.what
            ))
        })?;
        *self.run.borrow_mut() = run;
        *list.borrow_mut() = batches;
        // The restored checkpoint is complete: publish what it holds again — the server
        // drops what it already has (same message ids).
        publish_due(&self.publisher, list, &self.base, run, checkpoint)?;
        let (stored, duplicates) = self.published();
        tracing::info!(sink = %self.what, checkpoint, stored, duplicates, "nats sink: published the restored checkpoint's messages again; the server dropped the ones it had");
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn describe_states_the_guarantee_and_hides_secrets() {
        let s = NatsSink::text("nats://u:pw@127.0.0.1:4222", "alerts");
        assert_eq!(
            Sink::<String>::describe(&s),
            "nats subject `alerts` at nats://u:***@127.0.0.1:4222 (text, exactly-once with checkpoints within the stream's duplicate window, else at-least-once)"
        );
        assert_eq!(Sink::<String>::guarantee(&s), Guarantee::ExactlyOnce);
    }

    #[test]
    fn message_ids_are_deterministic_and_distinct() {
        let a = message_id("weir:job:out:0", 0xab, "1234", 7);
        assert_eq!(a, "weir:job:out:0:00000000000000ab:1234:7");
        assert_eq!(a, message_id("weir:job:out:0", 0xab, "1234", 7));
        assert_ne!(a, message_id("weir:job:out:1", 0xab, "1234", 7));
        assert_ne!(a, message_id("weir:job:out:0", 0xac, "1234", 7));
        assert_ne!(a, message_id("weir:job:out:0", 0xab, "1235", 7));
        assert_ne!(run_id(0), run_id(0), "fresh starts get fresh run ids");
    }

    #[test]
    fn pending_batches_round_trip_through_a_checkpoint() {
        let mut a = Payloads::default();
        for r in ["x", "", "yz"] {
            a.push_with(|o| encode_text(&r.to_string(), o)).unwrap();
        }
        assert_eq!(
            (a.len(), a.get(0), a.get(1), a.get(2)),
            (3, &b"x"[..], &b""[..], &b"yz"[..])
        );
        let pending = vec![(4_095, a), (8_191, Payloads::default())];
        let bytes = encode_pending(7, &pending);
        assert_eq!(decode_pending(&bytes), Some((7, pending)));
        assert_eq!(decode_pending(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_pending(b"junk"), None);
    }
}

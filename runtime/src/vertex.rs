//! Physical vertices: the timely operators that `#[weir::job]` generates, one per chain.
//!
//! Generated code hands each vertex its input streams, a tuple of output [`Port`]s and a
//! *chain constructor*: a closure that, on a worker hosting an instance of the vertex, opens
//! the chain's sinks and state and returns the chain's logic — straight-line code over one
//! record at a time ([`Event::Rec`]), plus the epoch and end notifications. Everything
//! timely-specific (capabilities, frontiers, routing, watermarks) lives here, once.

use crate::checkpoint::{Checkpointed, Checkpoints, Participant, StateReader, StateWriter};
use crate::data::{tick_of, Data, Epoch, EventTime, Msg, Witness, NO_TIMESTAMP, STEPS_PER_TICK};
use crate::error::{Result, RuntimeError};
use crate::key::Key;
use crate::sinks::{Sink, SinkContext};
use crate::sources::{Poll, Source, SourceContext, SourceReader};
use crate::worker::WorkerCtx;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use timely::communication::Push;
use timely::dataflow::channels::pact::DistributorPact;
use timely::dataflow::channels::pushers::exchange::Distributor;
use timely::dataflow::channels::pushers::Output;
use timely::dataflow::channels::Message;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::{Capability, CapabilityTrait};
use timely::dataflow::{Scope, Stream};
use timely::progress::frontier::MutableAntichain;
use timely::progress::Stamp;
use weir_compiler::plan::{instance_for_key_group, key_group, Partitioning};

/// A stream between vertices.
pub type MsgStream<'s, T> = Stream<'s, Epoch, Vec<Msg<T>>>;

/// Records per container sent downstream.
const BATCH: usize = 1024;
/// Records a source instance reads per activation before yielding to other operators.
const SOURCE_BUDGET: usize = 4096;

/// What the chain logic is told.
pub enum Event<T> {
    /// A record and its event time.
    Rec(EventTime, T),
    /// The vertex instance's input watermark advanced (the minimum over its upstream
    /// instances); window operators fire. Forwarded downstream after the chain saw it.
    Watermark(EventTime),
    /// A batch of input was processed: watermark assigners emit what they generated.
    Flush,
    /// Processing time advanced to this wall-clock time (ms since the Unix epoch): only for
    /// vertices with processing-time operators, every few milliseconds.
    Tick(EventTime),
    /// Every record of epochs up to and including this one has been processed.
    EpochDone(Epoch),
    /// The input has ended for good.
    End,
}

/// Where an instance runs, as seen by a chain constructor.
#[derive(Debug, Clone)]
pub struct VertexCtx {
    /// Job name.
    pub job: String,
    /// Vertex id.
    pub vertex: usize,
    /// This instance.
    pub instance: usize,
    /// The vertex's parallelism.
    pub parallelism: usize,
    /// Global worker index.
    pub worker: usize,
    /// The key groups this instance owns (for keyed state).
    pub key_groups: std::ops::Range<u32>,
    /// The worker's checkpoints (off unless the run takes checkpoints).
    pub checkpoints: Checkpoints,
}

/// An output of a vertex: records buffered during an activation, shipped at its end.
pub struct Port<T: Data> {
    buf: Vec<Msg<T>>,
    /// Containers of BATCH messages sealed during this activation, in order before `buf`.
    full: Vec<Vec<Msg<T>>>,
    out: Option<Output<Epoch, Vec<Msg<T>>>>,
    own_watermarks: bool,
    /// Workers in the cluster: every watermark or idleness marker is emitted once per
    /// worker, so that the exchange delivers copy j to worker j. (Timely counts the items
    /// of a container to track progress: a distributor must not create copies itself.)
    peers: usize,
    /// Markers buffered since the last flush (not records, for the metrics).
    marks: usize,
    /// Records shipped since the vertex last read the count (metrics).
    sent: u64,
}

impl<T: Data> Port<T> {
    /// A port for records of the witnessed type.
    pub fn new(_: Witness<T>) -> Self {
        Port {
            buf: Vec::new(),
            full: Vec::new(),
            out: None,
            own_watermarks: false,
            peers: 1,
            marks: 0,
            sent: 0,
        }
    }
    /// A port downstream of a watermark assigner in its chain: it carries the assigner's
    /// watermarks, not the vertex's input watermark.
    pub fn own_watermarks(mut self) -> Self {
        self.own_watermarks = true;
        self
    }
    /// Emit an assigner's watermark or idleness marker, as instance `from`.
    pub fn mark(&mut self, from: usize, mark: crate::watermarks::Mark) {
        let from = from as u32;
        self.push_msg(match mark {
            crate::watermarks::Mark::Watermark(wm) => Msg::Watermark { from, wm },
            crate::watermarks::Mark::Idle => Msg::Idle { from },
        });
    }
    /// Emit a record.
    #[inline(always)]
    pub fn push(&mut self, ts: EventTime, record: T) {
        self.buf.push(Msg::Rec(ts, record));
        if self.buf.len() >= BATCH {
            self.seal();
        }
    }
    #[cold]
    fn seal(&mut self) {
        let b = std::mem::replace(&mut self.buf, Vec::with_capacity(BATCH));
        self.full.push(b);
    }
    /// A marker, once per worker (see `peers`).
    fn push_msg(&mut self, m: Msg<T>) {
        self.marks += self.peers;
        for _ in 1..self.peers {
            self.buf.push(m.clone());
        }
        self.buf.push(m);
        if self.buf.len() >= BATCH {
            self.seal();
        }
    }
    fn flush<C: CapabilityTrait<Epoch>>(&mut self, cap: &C) {
        if let Some(out) = self.out.as_mut() {
            // Counted once per flush, not per record.
            let items = self.full.iter().map(Vec::len).sum::<usize>() + self.buf.len();
            self.sent += items.saturating_sub(self.marks) as u64;
            self.marks = 0;
            for mut c in self.full.drain(..) {
                out.give(cap, &mut c);
            }
            if !self.buf.is_empty() {
                out.give(cap, &mut self.buf);
                self.buf.clear();
                if self.buf.capacity() < BATCH {
                    self.buf = Vec::with_capacity(BATCH);
                }
            }
            drop(out.activate::<Vec<Msg<T>>>());
        }
    }
}

/// The outputs of a vertex: a tuple of [`Port`]s (up to 8), or `()`.
pub trait Ports: 'static {
    /// The timely streams, one per port.
    type Streams<'s>;
    /// Create the operator's outputs.
    fn attach<'s>(
        &mut self,
        builder: &mut OperatorBuilder<'s, Epoch>,
        peers: usize,
    ) -> Self::Streams<'s>;
    /// Ship buffered records of output `i` with capability `caps[i]` (or `caps[0]` for all
    /// when only one is given).
    fn flush<C: CapabilityTrait<Epoch>>(&mut self, caps: &[C]);
    /// Forward a watermark or idleness marker to every output.
    fn broadcast(&mut self, m: &Msg<()>);
    /// Number of outputs.
    fn count(&self) -> usize;
    /// Records shipped on all outputs since the last call (for the metrics).
    fn take_sent(&mut self) -> u64;
}

impl Ports for () {
    type Streams<'s> = ();
    fn attach<'s>(&mut self, _: &mut OperatorBuilder<'s, Epoch>, _: usize) {}
    fn flush<C: CapabilityTrait<Epoch>>(&mut self, _: &[C]) {}
    fn broadcast(&mut self, _: &Msg<()>) {}
    fn count(&self) -> usize {
        0
    }
    fn take_sent(&mut self) -> u64 {
        0
    }
}

fn retype(m: &Msg<()>) -> Option<Msg<std::convert::Infallible>> {
    match *m {
        Msg::Watermark { from, wm } => Some(Msg::Watermark { from, wm }),
        Msg::Idle { from } => Some(Msg::Idle { from }),
        Msg::Rec(..) => None,
    }
}

fn lift<T>(m: Msg<std::convert::Infallible>) -> Msg<T> {
    match m {
        Msg::Watermark { from, wm } => Msg::Watermark { from, wm },
        Msg::Idle { from } => Msg::Idle { from },
        Msg::Rec(_, never) => match never {},
    }
}

macro_rules! ports_tuple {
    ($n:expr; $($T:ident $i:tt),+) => {
        impl<$($T: Data),+> Ports for ($(Port<$T>,)+) {
            type Streams<'s> = ($(MsgStream<'s, $T>,)+);
            fn attach<'s>(&mut self, builder: &mut OperatorBuilder<'s, Epoch>, peers: usize) -> Self::Streams<'s> {
                ($({
                    let (out, stream) = builder.new_output::<Vec<Msg<$T>>>();
                    self.$i.out = Some(out);
                    self.$i.peers = peers.max(1);
                    stream
                },)+)
            }
            fn flush<CT: CapabilityTrait<Epoch>>(&mut self, caps: &[CT]) {
                $(self.$i.flush(&caps[$i.min(caps.len() - 1)]);)+
            }
            fn broadcast(&mut self, m: &Msg<()>) {
                if let Some(m) = retype(m) {
                    $(if !self.$i.own_watermarks { self.$i.push_msg(lift(m.clone())); })+
                }
            }
            fn count(&self) -> usize { $n }
            fn take_sent(&mut self) -> u64 { 0 $(+ std::mem::take(&mut self.$i.sent))+ }
        }
    };
}

ports_tuple!(1; A 0);
ports_tuple!(2; A 0, B 1);
ports_tuple!(3; A 0, B 1, C 2);
ports_tuple!(4; A 0, B 1, C 2, D 3);
ports_tuple!(5; A 0, B 1, C 2, D 3, E 4);
ports_tuple!(6; A 0, B 1, C 2, D 3, E 4, F 5);
ports_tuple!(7; A 0, B 1, C 2, D 3, E 4, F 5, G 6);
ports_tuple!(8; A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

// ---------------------------------------------------------------------------------------
// Routing between vertices.

/// How the sending worker routes records of one edge.
enum Route<F> {
    /// Every record to one worker (forward edges).
    Worker(usize),
    /// Round-robin over the consumer's workers (rebalance).
    RoundRobin { workers: Vec<usize>, next: usize },
    /// By key group (hash edges): a table from key group to worker.
    Hash {
        key: F,
        max_parallelism: u32,
        table: Vec<usize>,
    },
    /// Every record to every one of these workers (broadcast edges).
    Broadcast { workers: Vec<usize> },
}

/// Distributes a vertex's output to the consumer's instances: records by the edge's route,
/// watermarks and idleness markers to every worker (so each consumer instance sees every
/// producer instance's watermark, in order with its records).
struct MsgDistributor<T, F> {
    route: Route<F>,
    buffers: Vec<Vec<Msg<T>>>,
    /// Producers emit each marker once per worker; copy j goes to worker j.
    next_mark: usize,
    /// Broadcast edges are fanned out before the exchange; copy j goes to consumer j.
    next_copy: usize,
}

impl<T, K, F> MsgDistributor<T, F>
where
    K: Key,
    F: Fn(&T) -> K,
{
    #[inline(always)]
    fn target(&mut self, record: &T) -> usize {
        match &mut self.route {
            Route::Worker(w) => *w,
            Route::RoundRobin { workers, next } => {
                *next += 1;
                if *next >= workers.len() {
                    *next = 0;
                }
                workers[*next]
            }
            Route::Hash {
                key,
                max_parallelism,
                table,
            } => table[key_group(key(record).key_hash(), *max_parallelism) as usize],
            Route::Broadcast { .. } => usize::MAX,
        }
    }
}

/// Append `m` to worker `t`'s buffer, shipping the buffer when it holds `BATCH` messages. A
/// buffer released by `relax` (or handed back empty by a pusher) gets `BATCH` capacity at
/// once instead of regrowing from empty by doubling.
#[inline(always)]
fn buffer_push<T, TS: Clone, P: Push<Message<TS, Vec<Msg<T>>>>>(
    buffers: &mut [Vec<Msg<T>>],
    t: usize,
    m: Msg<T>,
    stamp: &Stamp<TS>,
    pushers: &mut [P],
) {
    let b = &mut buffers[t];
    if b.len() == b.capacity() {
        b.reserve_exact(BATCH.saturating_sub(b.len()).max(1));
    }
    b.push(m);
    if b.len() >= BATCH {
        Message::push_at(b, stamp.clone(), &mut pushers[t]);
        // A network pusher hands the (serialized) container back full.
        b.clear();
        if b.capacity() < BATCH {
            *b = Vec::with_capacity(BATCH);
        }
    }
}

impl<T, K, F> Distributor<Vec<Msg<T>>> for MsgDistributor<T, F>
where
    T: Data,
    K: Key,
    F: Fn(&T) -> K,
{
    fn partition<TS: Clone, P: Push<Message<TS, Vec<Msg<T>>>>>(
        &mut self,
        container: &mut Vec<Msg<T>>,
        stamp: &Stamp<TS>,
        pushers: &mut [P],
    ) {
        // Every item goes to exactly one pusher: timely tracks progress by counting items.
        let last = pushers.len().saturating_sub(1);
        let peers = pushers.len().max(1);
        if let Route::Hash {
            key,
            max_parallelism,
            table,
        } = &self.route
        {
            // The per-record path of keyed edges, with the route decided once per container;
            // `h & (m - 1)` is `h % m` (the key group) for the usual power-of-two m.
            let m = u64::from(*max_parallelism).max(1);
            let mask = m.is_power_of_two().then(|| m - 1);
            for msg in container.drain(..) {
                let t = match &msg {
                    Msg::Rec(_, r) => {
                        let h = key(r).key_hash();
                        table[match mask {
                            Some(mask) => h & mask,
                            None => h % m,
                        } as usize]
                    }
                    _ => {
                        let w = self.next_mark;
                        self.next_mark = (w + 1) % peers;
                        w
                    }
                };
                buffer_push(&mut self.buffers, t.min(last), msg, stamp, pushers);
            }
            return;
        }
        for msg in container.drain(..) {
            let t = match &msg {
                Msg::Rec(_, r) => match &self.route {
                    Route::Broadcast { workers } => {
                        let w = workers.get(self.next_copy).copied().unwrap_or(0);
                        self.next_copy = (self.next_copy + 1) % workers.len().max(1);
                        w
                    }
                    _ => self.target(r),
                },
                _ => {
                    let w = self.next_mark;
                    self.next_mark = (w + 1) % peers;
                    w
                }
            };
            buffer_push(&mut self.buffers, t.min(last), msg, stamp, pushers);
        }
    }
    fn flush<TS: Clone, P: Push<Message<TS, Vec<Msg<T>>>>>(
        &mut self,
        stamp: &Stamp<TS>,
        pushers: &mut [P],
    ) {
        for (b, p) in self.buffers.iter_mut().zip(pushers.iter_mut()) {
            if !b.is_empty() {
                Message::push_at(b, stamp.clone(), p);
                b.clear();
                if b.capacity() < BATCH {
                    *b = Vec::with_capacity(BATCH);
                }
            }
        }
    }
    fn relax(&mut self) {
        for b in self.buffers.iter_mut() {
            *b = Vec::new();
        }
    }
}

/// One input edge of a vertex, as generated code hands it over: the producer's stream and
/// the producing operator's id (to find the edge in the physical plan).
pub struct InputEdge<'s, T> {
    /// The producer's output stream.
    pub stream: MsgStream<'s, T>,
    /// The producing operator.
    pub from_op: usize,
}

/// `InputEdge` constructor for generated code.
pub fn edge<'s, T>(stream: &MsgStream<'s, T>, from_op: usize) -> InputEdge<'s, T>
where
    T: Data,
{
    InputEdge {
        stream: stream.clone(),
        from_op,
    }
}

fn route_for<F: Clone>(
    ctx: &WorkerCtx,
    from_op: usize,
    to_vertex: usize,
    head_op: usize,
    key: &Option<F>,
) -> Result<Route<F>> {
    let plan = &ctx.physical;
    let e = plan
        .edges
        .iter()
        .find(|e| e.from_operator == from_op && e.to_operator == head_op)
        .ok_or_else(|| {
            RuntimeError::internal(format!(
                "no physical edge from operator {from_op} to {head_op}"
            ))
        })?;
    let consumer = &plan.vertices[to_vertex];
    let workers: Vec<usize> = consumer.instances.iter().map(|s| s.worker).collect();
    let producer_instance = plan.instance_on(e.from_vertex, ctx.worker);
    Ok(match e.partitioning {
        Partitioning::Forward => {
            let i = producer_instance
                .unwrap_or(0)
                .min(workers.len().saturating_sub(1));
            Route::Worker(workers.get(i).copied().unwrap_or(ctx.worker))
        }
        Partitioning::Rebalance => {
            // Start each producer at a different consumer so small batches still spread.
            let next = producer_instance.unwrap_or(0) % workers.len().max(1);
            Route::RoundRobin { workers, next }
        }
        Partitioning::Broadcast => Route::Broadcast { workers },
        Partitioning::Hash => {
            let key = key
                .clone()
                .ok_or_else(|| RuntimeError::internal("hash edge without a key function"))?;
            let p = consumer.parallelism;
            let table = (0..plan.max_parallelism)
                .map(|kg| workers[instance_for_key_group(kg, p, plan.max_parallelism)])
                .collect();
            Route::Hash {
                key,
                max_parallelism: plan.max_parallelism,
                table,
            }
        }
    })
}

/// Copy every record `copies` times ahead of a broadcast exchange (markers pass once: their
/// producer already made one per worker), so the exchange never creates items itself.
fn fan_out<'s, T: Data>(s: &MsgStream<'s, T>, copies: usize) -> MsgStream<'s, T> {
    use timely::dataflow::channels::pact::Pipeline;
    use timely::dataflow::operators::generic::Operator;
    s.clone().unary(Pipeline, "Broadcast", move |_, _| {
        move |input, output| {
            input.for_each(|cap, data| {
                let mut out: Vec<Msg<T>> = Vec::with_capacity(data.len() * copies);
                for m in data.drain(..) {
                    match m {
                        Msg::Rec(..) => {
                            for _ in 1..copies {
                                out.push(m.clone());
                            }
                            out.push(m);
                        }
                        other => out.push(other),
                    }
                }
                output.session(&cap).give_container(&mut out);
            });
        }
    })
}

// ---------------------------------------------------------------------------------------
// Watermarks.

/// Tracks the watermark of a vertex instance: the minimum over its upstream instances, with
/// idle instances left out (Flink's rule).
#[derive(Debug, Default)]
struct WatermarkTracker {
    inputs: HashMap<(usize, u32), (EventTime, bool)>,
    expected: usize,
    current: Option<EventTime>,
}

impl WatermarkTracker {
    fn new(expected: usize) -> Self {
        WatermarkTracker {
            inputs: HashMap::new(),
            expected,
            current: None,
        }
    }
    /// Observe a marker from input `port`; returns the new combined watermark if it advanced.
    fn observe(&mut self, port: usize, m: &Msg<impl Sized>) -> Option<Msg<()>> {
        match *m {
            Msg::Watermark { from, wm } => {
                let e = self
                    .inputs
                    .entry((port, from))
                    .or_insert((EventTime::MIN, false));
                e.0 = e.0.max(wm);
                e.1 = false;
            }
            Msg::Idle { from } => {
                self.inputs
                    .entry((port, from))
                    .or_insert((EventTime::MIN, true))
                    .1 = true;
            }
            Msg::Rec(..) => return None,
        }
        if self.inputs.len() < self.expected {
            return None;
        }
        let active = self
            .inputs
            .values()
            .filter(|(_, idle)| !idle)
            .map(|(wm, _)| *wm)
            .min();
        // All inputs idle: advance to the largest watermark any of them reached (Flink's
        // StatusWatermarkValve does the same), then report idleness.
        let all_idle_max = || self.inputs.values().map(|(wm, _)| *wm).max();
        let candidate = match active {
            Some(wm) => Some(wm),
            None => all_idle_max(),
        };
        match candidate {
            Some(wm) if wm > EventTime::MIN && self.current.is_none_or(|c| wm > c) => {
                self.current = Some(wm);
                Some(Msg::Watermark { from: 0, wm })
            }
            _ if active.is_none() => Some(Msg::Idle { from: 0 }),
            _ => None,
        }
    }
}

fn restamp(m: Msg<()>, instance: usize) -> Msg<()> {
    match m {
        Msg::Watermark { wm, .. } => Msg::Watermark {
            from: instance as u32,
            wm,
        },
        Msg::Idle { .. } => Msg::Idle {
            from: instance as u32,
        },
        other => other,
    }
}

// ---------------------------------------------------------------------------------------
// Vertex operators.

/// Static facts generated code passes about a vertex.
#[derive(Debug, Clone, Copy)]
pub struct VertexSpec {
    /// Vertex id in the plan.
    pub id: usize,
    /// Operator id of the head.
    pub head: usize,
    /// Whether the chain holds keyed state: then records are processed in epoch order, so
    /// the state after epoch e reflects exactly the inputs of epochs ≤ e.
    pub ordered: bool,
    /// Whether the chain has processing-time operators: the vertex then wakes up every
    /// [`TICK`] and holds a capability at its input frontier so it can emit on the clock.
    pub ticks: bool,
    /// Whether the chain has state, a sink or a source that take part in checkpoints: with
    /// checkpoints on, it then also processes records in epoch order (a consistent cut).
    pub checkpointed: bool,
}

/// How often a vertex with processing-time operators looks at the clock.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(5);

fn vertex_ctx(ctx: &WorkerCtx, v: usize, instance: usize) -> VertexCtx {
    let parallelism = ctx.physical.vertices[v].parallelism;
    VertexCtx {
        job: ctx.physical.job.clone(),
        vertex: v,
        instance,
        parallelism,
        worker: ctx.worker,
        key_groups: weir_compiler::plan::key_group_range(
            instance,
            parallelism,
            ctx.physical.max_parallelism,
        ),
        checkpoints: ctx.checkpoints.clone(),
    }
}

fn fail(ctx_failure: &crate::worker::Failure, e: RuntimeError, vertex: &str) {
    tracing::error!(vertex, error = %e, "job failed");
    ctx_failure.fail(e);
}

/// A vertex whose head is a source.
pub fn source_vertex<'s, S, P, B, L>(
    scope: Scope<'s, Epoch>,
    ctx: &WorkerCtx,
    spec: VertexSpec,
    op_name: &str,
    source: S,
    mut ports: P,
    constructor: B,
) -> P::Streams<'s>
where
    S: Source,
    P: Ports,
    B: FnOnce(&VertexCtx) -> Result<L>,
    L: FnMut(Event<S::Item>, &mut P) -> Result<()> + 'static,
{
    let vname = ctx.physical.vertices[spec.id].name.clone();
    let mut builder = OperatorBuilder::new(vname.clone(), scope);
    let info = builder.operator_info();
    let streams = ports.attach(&mut builder, ctx.peers);
    let activator = scope.activator_for(info.address);
    let instance = ctx.instance(spec.id);
    let failure = std::sync::Arc::clone(&ctx.failure);
    let stats = std::sync::Arc::clone(&ctx.stats);
    let (start, epoch_len) = (ctx.start, ctx.epoch);

    // Open the instance's reader and chain on the hosting worker only.
    let mut state = None;
    let source_instance = instance.unwrap_or(0);
    let tm = match instance {
        Some(i) => ctx.metrics.task(&vname, op_name, true, i),
        None => crate::metrics::TaskMetrics::detached(),
    };
    if let Some(i) = instance {
        let vctx = vertex_ctx(ctx, spec.id, i);
        let sctx = SourceContext {
            job: vctx.job.clone(),
            operator: op_name.to_string(),
            instance: i,
            parallelism: vctx.parallelism,
        };
        let opened = source
            .open(&sctx)
            .map_err(|e| e.in_operator(op_name))
            .and_then(|mut r| {
                let part = source_participant(&vctx, op_name, &mut r)?;
                constructor(&vctx).map(|l| (r, l, part))
            });
        match opened {
            Ok(triple) => {
                ctx.metrics
                    .source_opened(source.is_bounded(), triple.0.progress().1);
                state = Some(triple);
            }
            Err(e) => fail(&failure, e, &vname),
        }
    }
    let op_name = op_name.to_string();
    let base = ctx.epoch_base;
    let flow = std::rc::Rc::clone(&ctx.flow);
    let metrics = std::sync::Arc::clone(&ctx.metrics);
    builder.build_reschedule(move |caps: Vec<Capability<Epoch>>| {
        let mut caps = if state.is_some() { Some(caps) } else { None };
        let mut reported = 0u64;
        let mut current: Epoch = 0;
        // Records read in the current epoch, and the epochs this instance emitted into that
        // may still be in flight downstream (for flow control).
        let mut in_step = 0usize;
        let mut open_epochs: std::collections::VecDeque<Epoch> = Default::default();
        // Since when flow control holds this instance back (metrics).
        let mut held_since: Option<std::time::Instant> = None;
        move |_frontiers: &[MutableAntichain<Epoch>]| {
            let (Some(cs), Some((reader, logic, part))) = (caps.as_mut(), state.as_mut()) else { return false };
            if failure.failed() {
                caps = None;
                return false;
            }
            // After a restore, epochs (and so checkpoint ids) continue after the restored one.
            let tick = tick_of(base) + (start.elapsed().as_nanos() / epoch_len.as_nanos().max(1)) as u64;
            let mut epoch = tick * STEPS_PER_TICK;
            if epoch <= current {
                // The same tick: a further step once this epoch holds a step of records.
                epoch = current;
                if in_step >= flow.records_per_step && current % STEPS_PER_TICK < STEPS_PER_TICK - 1 {
                    epoch = current + 1;
                }
            }
            if current < epoch {
                in_step = 0;
                current = epoch;
                for c in cs.iter_mut() {
                    c.downgrade(&epoch);
                }
                // Every record of epochs before `epoch` was emitted and none of later ones:
                // the chain and the source's position are at a consistent cut.
                let r = logic(Event::EpochDone(epoch - 1), &mut ports).and_then(|()| match part {
                    Some(p) => p.epoch_done(epoch - 1, &mut SourceState(reader)),
                    None => Ok(()),
                });
                if let Err(e) = r {
                    fail(&failure, e, &op_name);
                }
            }
            // Flow control: wait while too many epochs this instance emitted into are still
            // incomplete at the slowest vertex.
            if let Some(slowest) = flow.slowest() {
                while open_epochs.front().is_some_and(|&e| e < slowest) {
                    open_epochs.pop_front();
                }
            } else {
                open_epochs.clear();
            }
            if open_epochs.len() > flow.ahead as usize
                || (in_step >= flow.records_per_step && open_epochs.back() == Some(&current))
            {
                let now = std::time::Instant::now();
                if let Some(t) = held_since {
                    tm.backpressured.inc_by(now.duration_since(t).as_secs_f64());
                }
                held_since = Some(now);
                activator.activate_after(std::time::Duration::from_millis(1));
                return true;
            }
            let busy_from = std::time::Instant::now();
            if let Some(t) = held_since.take() {
                tm.backpressured.inc_by(busy_from.duration_since(t).as_secs_f64());
            }
            if open_epochs.back() != Some(&current) {
                open_epochs.push_back(current);
            }
            let budget = SOURCE_BUDGET.min(flow.records_per_step.saturating_sub(in_step)).max(1);
            let mut n = 0u64;
            let mut err = None;
            let polled = reader.poll(budget, |r| {
                n += 1;
                if err.is_none() {
                    if let Err(e) = logic(Event::Rec(NO_TIMESTAMP, r), &mut ports) {
                        err = Some(e);
                    }
                }
            });
            stats.records_in.fetch_add(n, Ordering::Relaxed);
            if n > 0 {
                tm.op_records.inc_by(n);
                metrics.source_read(n);
            }
            in_step += n as usize;
            if err.is_none() {
                if let Err(e) = logic(Event::Flush, &mut ports) {
                    err = Some(e);
                }
            }
            ports.flush(cs);
            tm.records_out.inc_by(ports.take_sent());
            tm.busy.inc_by(busy_from.elapsed().as_secs_f64());
            let polled = match (polled, err) {
                (Err(e), _) | (_, Some(e)) => {
                    fail(&failure, e.in_operator(op_name.clone()), &op_name);
                    caps = None;
                    return false;
                }
                (Ok(p), None) => p,
            };
            match polled {
                Poll::More => activator.activate(),
                Poll::Idle => activator.activate_after(std::time::Duration::from_millis(1)),
                Poll::Done => {
                    let bad = reader.bad_records();
                    stats.bad_records.fetch_add(bad - reported, Ordering::Relaxed);
                    reported = bad;
                    if bad > 0 {
                        tracing::warn!(operator = %op_name, bad_records = bad, "source skipped malformed records");
                    }
                    // End of input: the final watermark fires every remaining window downstream
                    // (Flink's end-of-input Long.MAX_VALUE).
                    ports.broadcast(&Msg::Watermark { from: source_instance as u32, wm: EventTime::MAX });
                    let r = logic(Event::EpochDone(current), &mut ports)
                        .and_then(|_| logic(Event::End, &mut ports))
                        .and_then(|()| match part {
                            Some(p) => p.end(&mut SourceState(reader)),
                            None => Ok(()),
                        });
                    ports.flush(cs);
                    tm.records_out.inc_by(ports.take_sent());
                    if let Err(e) = r {
                        fail(&failure, e, &op_name);
                    }
                    caps = None;
                }
            }
            // Without outputs the source holds no capabilities: stay scheduled until done.
            caps.is_some()
        }
    });
    streams
}

/// Tell the chain that every epoch up to `d` is complete, once per epoch boundary.
fn epoch_done<I, P, L: FnMut(Event<I>, &mut P) -> Result<()>>(
    d: Epoch,
    last_done: &mut Option<Epoch>,
    logic: &mut L,
    ports: &mut P,
    result: &mut Result<()>,
) {
    if d == Epoch::MAX || last_done.is_some_and(|l| d <= l) {
        return;
    }
    *last_done = Some(d);
    if result.is_ok() {
        *result = logic(Event::EpochDone(d), ports);
    }
}

/// A vertex fed by other vertices. `key` is the `key_by` function when the inputs are hash
/// edges.
#[allow(clippy::too_many_arguments)]
pub fn unary_vertex<'s, I, K, KF, P, B, L>(
    scope: Scope<'s, Epoch>,
    ctx: &WorkerCtx,
    spec: VertexSpec,
    inputs: Vec<InputEdge<'s, I>>,
    key: Option<KF>,
    mut ports: P,
    constructor: B,
) -> P::Streams<'s>
where
    I: Data,
    K: Key,
    KF: Fn(&I) -> K + Clone + 'static,
    P: Ports,
    B: FnOnce(&VertexCtx) -> Result<L>,
    L: FnMut(Event<I>, &mut P) -> Result<()> + 'static,
{
    let vname = ctx.physical.vertices[spec.id].name.clone();
    let mut builder = OperatorBuilder::new(vname.clone(), scope);
    let failure = std::sync::Arc::clone(&ctx.failure);
    let peers = ctx.peers;
    let activator = scope.activator_for(builder.operator_info().address);

    let mut handles = Vec::new();
    let mut expected_wm_inputs = 0;
    for input in inputs {
        let route = match route_for(ctx, input.from_op, spec.id, spec.head, &key) {
            Ok(r) => r,
            Err(e) => {
                fail(&failure, e, &vname);
                Route::Worker(ctx.worker)
            }
        };
        if let Some(pv) = ctx
            .physical
            .edges
            .iter()
            .find(|e| e.from_operator == input.from_op && e.to_operator == spec.head)
        {
            expected_wm_inputs += ctx.physical.vertices[pv.from_vertex].parallelism;
        }
        let broadcast = matches!(route, Route::Broadcast { .. });
        let copies = match &route {
            Route::Broadcast { workers } => workers.len(),
            _ => 1,
        };
        let pact = DistributorPact(move |n: usize| MsgDistributor {
            route,
            buffers: (0..n.max(peers)).map(|_| Vec::new()).collect(),
            next_mark: 0,
            next_copy: 0,
        });
        let stream = if broadcast {
            fan_out(&input.stream, copies)
        } else {
            input.stream
        };
        handles.push(builder.new_input(stream, pact));
    }
    let streams = ports.attach(&mut builder, ctx.peers);
    let instance = ctx.instance(spec.id);
    let mut state = None;
    let tm = match instance {
        Some(i) => {
            let v = &ctx.physical.vertices[spec.id];
            let head = v.operators.first().map_or(vname.as_str(), String::as_str);
            ctx.metrics.task(&vname, head, false, i)
        }
        None => crate::metrics::TaskMetrics::detached(),
    };
    if let Some(i) = instance {
        match constructor(&vertex_ctx(ctx, spec.id, i)) {
            Ok(l) => state = Some((l, i)),
            Err(e) => fail(&failure, e, &vname),
        }
    }

    let ordered = spec.ordered || (spec.checkpointed && ctx.checkpoints.enabled());
    let flow = std::rc::Rc::clone(&ctx.flow);
    let flow_slot = flow.register();
    builder.build(move |_caps: Vec<Capability<Epoch>>| {
        let mut tracker = WatermarkTracker::new(expected_wm_inputs);
        // Ordered vertices stash records of epochs their input frontier has not reached:
        // whole containers, as they arrived (input port, container), so stashing moves no
        // record.
        #[allow(clippy::type_complexity)]
        let mut stash: BTreeMap<
            Epoch,
            (Vec<Capability<Epoch>>, Vec<(usize, Vec<Msg<I>>)>),
        > = BTreeMap::new();
        let mut last_done: Option<Epoch> = None;
        let mut ended = false;
        // Processing-time vertices hold a capability at their input frontier to emit on ticks.
        let mut held: Option<Vec<Capability<Epoch>>> = None;
        move |frontiers: &[MutableAntichain<Epoch>]| {
            flow.update(
                flow_slot,
                frontiers
                    .iter()
                    .filter_map(|f| f.frontier().iter().min().copied())
                    .min(),
            );
            let Some((logic, instance)) = state.as_mut() else {
                // Not hosted here: nothing is routed to this worker; drain defensively.
                for h in handles.iter_mut() {
                    h.for_each(|_, d| d.clear());
                }
                return;
            };
            if failure.failed() {
                for h in handles.iter_mut() {
                    h.for_each(|_, d| d.clear());
                }
                return;
            }
            let frontier_min = frontiers
                .iter()
                .filter_map(|f| f.frontier().iter().min().copied())
                .min();
            let busy_from = std::time::Instant::now();
            let mut tally = Tally::default();
            let mut result: Result<()> = Ok(());
            // Which epochs are complete: everything below the input frontier.
            let done = match frontier_min {
                Some(f) if f > 0 => Some(f - 1),
                Some(_) => None,
                None => Some(Epoch::MAX),
            };
            // Stashed records go first: newer input of the same epoch arrived after them.
            // Release stashed epochs the frontier has passed, in order, telling the chain at
            // every epoch boundary before it sees a record of a later epoch (so that state
            // and sinks can take a consistent cut there).
            while let Some((&t, _)) = stash.first_key_value() {
                if frontier_min.is_some_and(|f| f < t) {
                    break;
                }
                if t > 0 {
                    epoch_done(t - 1, &mut last_done, logic, &mut ports, &mut result);
                }
                let Some((_, (caps, msgs))) = stash.pop_first() else {
                    break;
                };
                for (port, mut data) in msgs {
                    feed(
                        logic,
                        &mut ports,
                        &mut tracker,
                        *instance,
                        port,
                        &mut data,
                        &mut result,
                        &mut tally,
                    );
                }
                if result.is_ok() {
                    result = logic(Event::Flush, &mut ports);
                }
                ports.flush(&caps);
            }
            if ordered {
                if let Some(d) = done {
                    epoch_done(d, &mut last_done, logic, &mut ports, &mut result);
                }
            }
            for (port, h) in handles.iter_mut().enumerate() {
                h.for_each(|cap, data| {
                    let t = *cap.stamp().iter().next().unwrap_or(&0);
                    if spec.ticks && held.is_none() {
                        held = Some((0..ports.count()).map(|o| cap.delayed(&t, o)).collect());
                    }
                    if ordered && frontier_min.is_some_and(|f| f < t) {
                        let entry = stash.entry(t).or_insert_with(|| {
                            (
                                (0..ports.count()).map(|o| cap.delayed(&t, o)).collect(),
                                Vec::new(),
                            )
                        });
                        entry.1.push((port, std::mem::take(data)));
                        return;
                    }
                    feed(
                        logic,
                        &mut ports,
                        &mut tracker,
                        *instance,
                        port,
                        data,
                        &mut result,
                        &mut tally,
                    );
                    if result.is_ok() {
                        result = logic(Event::Flush, &mut ports);
                    }
                    ports.flush(std::slice::from_ref(&cap));
                });
            }
            // Unordered chains hear of complete epochs after their input (sinks flush on it).
            if let Some(d) = done {
                epoch_done(d, &mut last_done, logic, &mut ports, &mut result);
            }
            if spec.ticks && !ended {
                if result.is_ok() {
                    result = logic(Event::Tick(crate::time::now_millis()), &mut ports);
                }
                if let (Some(caps), Some(f)) = (held.as_mut(), frontier_min) {
                    ports.flush(caps);
                    for c in caps.iter_mut() {
                        if *c.time() < f {
                            c.downgrade(&f);
                        }
                    }
                }
                activator.activate_after(TICK);
            }
            if frontier_min.is_none() && !ended {
                ended = true;
                if result.is_ok() {
                    result = logic(Event::End, &mut ports);
                }
                if let Some(caps) = held.take() {
                    ports.flush(&caps);
                }
            }
            tally.record(&tm, ports.take_sent(), busy_from);
            if let Err(e) = result {
                fail(&failure, e, &vname);
            }
        }
    });
    streams
}

/// What one activation of a vertex instance did, added to its metrics at the end.
#[derive(Default)]
struct Tally {
    records: u64,
    watermark: Option<EventTime>,
}

impl Tally {
    fn record(&self, tm: &crate::metrics::TaskMetrics, sent: u64, busy_from: std::time::Instant) {
        if self.records > 0 {
            tm.records_in.inc_by(self.records);
            tm.op_records.inc_by(self.records);
        }
        if sent > 0 {
            tm.records_out.inc_by(sent);
        }
        if let Some(wm) = self.watermark {
            tm.watermark.set(wm);
        }
        tm.busy.inc_by(busy_from.elapsed().as_secs_f64());
    }
}

/// Run one input container through a vertex's chain: records to the chain, watermarks and
/// idleness markers to the tracker (and the chain and outputs when the input watermark
/// moves). Used for fresh and for stashed input.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn feed<I, P: Ports, L: FnMut(Event<I>, &mut P) -> Result<()>>(
    logic: &mut L,
    ports: &mut P,
    tracker: &mut WatermarkTracker,
    instance: usize,
    port: usize,
    data: &mut Vec<Msg<I>>,
    result: &mut Result<()>,
    tally: &mut Tally,
) {
    let mut marks = 0u64;
    let items = data.len() as u64;
    for m in data.drain(..) {
        match m {
            Msg::Rec(ts, r) => {
                if result.is_ok() {
                    *result = logic(Event::Rec(ts, r), ports);
                }
            }
            other => {
                marks += 1;
                if let Some(w) = tracker.observe(port, &other) {
                    if let Msg::Watermark { wm, .. } = &w {
                        tally.watermark = Some(*wm);
                    }
                    if let (Msg::Watermark { wm, .. }, true) = (&w, result.is_ok()) {
                        *result = logic(Event::Watermark(*wm), ports);
                    }
                    ports.broadcast(&restamp(w, instance));
                }
            }
        }
    }
    tally.records += items - marks;
}

// ---------------------------------------------------------------------------------------
// Chained operators: typed constructors so that user closures get their argument types.

/// `map`: the closure, and the witness of its output type.
#[inline(always)]
pub fn map<T, U, F: FnMut(T) -> U>(_: Witness<T>, f: F) -> (F, Witness<U>) {
    (f, Witness::new())
}

/// `filter`.
#[inline(always)]
pub fn filter<T, F: FnMut(&T) -> bool>(w: Witness<T>, f: F) -> (F, Witness<T>) {
    (f, w)
}

/// `flat_map`: the closure returns anything iterable.
#[inline(always)]
pub fn flat_map<T, I: IntoIterator, F: FnMut(T) -> I>(
    _: Witness<T>,
    f: F,
) -> (F, Witness<I::Item>) {
    (f, Witness::new())
}

/// `key_by`: the key selector (cloned into every routing edge and keyed operator).
#[inline(always)]
pub fn key_by<T, K: Key, F: Fn(&T) -> K + Clone + 'static>(_: Witness<T>, f: F) -> F {
    f
}

/// For vertices whose inputs are not keyed.
pub fn no_key<T>(_: Witness<T>) -> Option<fn(&T)> {
    None
}

/// The item type of a source.
pub fn source_witness<S: Source>(s: S) -> (S, Witness<S::Item>) {
    (s, Witness::new())
}

/// Open a sink of a chain for this instance.
pub fn open_sink<T, S: Sink<T>>(
    _: Witness<T>,
    sink: &S,
    vctx: &VertexCtx,
    op_name: &str,
) -> Result<S::Writer> {
    sink.open(&SinkContext {
        job: vctx.job.clone(),
        operator: op_name.to_string(),
        instance: vctx.instance,
        parallelism: vctx.parallelism,
    })
    .map_err(|e| e.in_operator(op_name))
}

/// Rolling reduce per key (Flink's `KeyedStream::reduce`): the first record of a key is
/// stored and emitted as is; each later one is combined with the stored value, and the
/// result is stored and emitted.
pub struct Reduce<T, K, KF, F> {
    key: KF,
    f: F,
    /// key → latest value; iterate it with `state.iter(&key)`, fill it with
    /// `state.insert(k, v, &key)`.
    state: crate::key::RecordMap<K, T>,
    /// Keys changed since the last checkpoint (tracked only with checkpoints on).
    dirty: Option<std::collections::HashSet<K, foldhash::fast::FixedState>>,
}

/// `reduce` on a keyed stream.
pub fn reduce<T, K, KF, F>(w: Witness<T>, key: &KF, f: F) -> (Reduce<T, K, KF, F>, Witness<T>)
where
    K: Key,
    KF: Fn(&T) -> K + Clone,
    F: FnMut(T, T) -> T,
{
    (
        Reduce {
            key: key.clone(),
            f,
            state: Default::default(),
            dirty: None,
        },
        w,
    )
}

impl<T: Clone, K: Key, KF: Fn(&T) -> K, F: FnMut(T, T) -> T> Reduce<T, K, KF, F> {
    /// Fold one record into its key's value and return the new value.
    #[inline]
    pub fn apply(&mut self, record: T) -> T {
        let k = (self.key)(&record);
        if let Some(d) = &mut self.dirty {
            d.insert(k.clone());
        }
        self.state.fold(k, record, &self.key, &mut self.f)
    }
    /// Number of keys held.
    pub fn keys(&self) -> usize {
        self.state.len()
    }
}

impl<T: Data, K: Key, KF: Fn(&T) -> K, F> Checkpointed for Reduce<T, K, KF, F> {
    fn snapshot(&mut self, _checkpoint: u64, out: &mut StateWriter<'_>) -> Result<()> {
        let kf = &self.key;
        match &mut self.dirty {
            // The first checkpoint of a fresh run writes every key.
            None => {
                for (k, v) in self.state.iter(kf) {
                    out.put_keyed(&k, v)?;
                }
                self.dirty = Some(Default::default());
            }
            Some(dirty) => {
                for k in dirty.drain() {
                    match self.state.get(&k, kf) {
                        Some(v) => out.put_keyed(&k, v)?,
                        None => out.delete_keyed(&k),
                    }
                }
            }
        }
        Ok(())
    }
    fn restore(&mut self, _checkpoint: u64, from: &StateReader<'_>) -> Result<()> {
        let (state, kf) = (&mut self.state, &self.key);
        from.for_each_keyed(|k: K, v: T| {
            state.insert(k, v, kf);
        })?;
        self.dirty = from.incremental().then(Default::default);
        Ok(())
    }
}

/// Keeps generated code free of unused-import noise.
pub type Shared<T> = Rc<T>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_is_min_over_inputs_ignoring_idle() {
        let mut t = WatermarkTracker::new(2);
        assert_eq!(
            t.observe(0, &Msg::<()>::Watermark { from: 0, wm: 10 }),
            None
        );
        assert_eq!(
            t.observe(0, &Msg::<()>::Watermark { from: 1, wm: 5 }),
            Some(Msg::Watermark { from: 0, wm: 5 })
        );
        assert_eq!(
            t.observe(0, &Msg::<()>::Watermark { from: 1, wm: 20 }),
            Some(Msg::Watermark { from: 0, wm: 10 })
        );
        assert_eq!(
            t.observe(0, &Msg::<()>::Idle { from: 0 }),
            Some(Msg::Watermark { from: 0, wm: 20 })
        );
        // All idle: the largest watermark any input reached.
        let mut t = WatermarkTracker::new(2);
        assert_eq!(
            t.observe(0, &Msg::<()>::Watermark { from: 0, wm: 30 }),
            None
        );
        assert_eq!(t.observe(0, &Msg::<()>::Idle { from: 0 }), None);
        assert_eq!(
            t.observe(0, &Msg::<()>::Idle { from: 1 }),
            Some(Msg::Watermark { from: 0, wm: 30 })
        );
    }

    struct Collect(Vec<Vec<Msg<u64>>>);
    impl Push<Message<u64, Vec<Msg<u64>>>> for Collect {
        fn push(&mut self, m: &mut Option<Message<u64, Vec<Msg<u64>>>>) {
            if let Some(m) = m.take() {
                self.0.push(m.data);
            }
        }
    }

    // Timely tracks progress by counting items: the exchange must deliver exactly the items
    // it was given, one marker copy per worker.
    #[test]
    fn distributor_preserves_the_item_count_and_delivers_a_marker_to_each_worker() {
        use timely::Accountable;
        let mut d = MsgDistributor::<u64, fn(&u64) -> u64> {
            route: Route::RoundRobin {
                workers: vec![0, 1, 2, 3],
                next: 0,
            },
            buffers: (0..4).map(|_| Vec::new()).collect(),
            next_mark: 0,
            next_copy: 0,
        };
        let mut pushers: Vec<Collect> = (0..4).map(|_| Collect(Vec::new())).collect();
        let mut port = Port::new(Witness::<u64>::new());
        port.peers = 4;
        port.push(1, 10);
        port.push(2, 20);
        port.mark(0, crate::watermarks::Mark::Watermark(i64::MAX));
        let mut input = std::mem::take(&mut port.buf);
        let produced = input.record_count();
        let stamp = Stamp::from_elem(0u64);
        d.partition(&mut input, &stamp, &mut pushers);
        d.flush(&stamp, &mut pushers);
        let consumed: i64 = pushers
            .iter()
            .flat_map(|p| p.0.iter())
            .map(|c| c.record_count())
            .sum();
        assert_eq!(consumed, produced);
        for p in &pushers {
            let marks =
                p.0.iter()
                    .flatten()
                    .filter(|m| matches!(m, Msg::Watermark { .. }))
                    .count();
            assert_eq!(marks, 1, "every worker gets the watermark once");
        }
    }

    // Keyed edges route each record to the worker owning its key group, for power-of-two
    // max parallelism (the masked path) and any other; markers still reach every worker once.
    #[test]
    fn hash_route_sends_each_record_to_the_owner_of_its_key_group() {
        fn ident(r: &u64) -> u64 {
            *r
        }
        for mp in [128u32, 100, 1] {
            let workers = 3usize;
            let table: Vec<usize> = (0..mp)
                .map(|kg| instance_for_key_group(kg, workers, mp))
                .collect();
            let mut d = MsgDistributor::<u64, fn(&u64) -> u64> {
                route: Route::Hash {
                    key: ident,
                    max_parallelism: mp,
                    table: table.clone(),
                },
                buffers: (0..workers).map(|_| Vec::new()).collect(),
                next_mark: 0,
                next_copy: 0,
            };
            let mut pushers: Vec<Collect> = (0..workers).map(|_| Collect(Vec::new())).collect();
            let mut port = Port::new(Witness::<u64>::new());
            port.peers = workers;
            for k in 0..5000u64 {
                port.push(0, k);
            }
            port.mark(0, crate::watermarks::Mark::Watermark(7));
            let mut input = std::mem::take(&mut port.buf);
            for c in port.full.drain(..) {
                let mut c = c;
                d.partition(&mut c, &Stamp::from_elem(0u64), &mut pushers);
            }
            let stamp = Stamp::from_elem(0u64);
            d.partition(&mut input, &stamp, &mut pushers);
            d.flush(&stamp, &mut pushers);
            let mut records = 0;
            for (w, p) in pushers.iter().enumerate() {
                let mut marks = 0;
                for m in p.0.iter().flatten() {
                    match m {
                        Msg::Rec(_, k) => {
                            records += 1;
                            assert_eq!(
                                w,
                                table[key_group(k.key_hash(), mp) as usize],
                                "key {k}, max parallelism {mp}"
                            );
                        }
                        _ => marks += 1,
                    }
                }
                assert_eq!(marks, 1, "worker {w} gets the watermark once");
            }
            assert_eq!(records, 5000);
        }
    }

    #[test]
    fn rolling_reduce_emits_running_value() {
        let w: Witness<(u32, u64)> = Witness::new();
        let kf = |r: &(u32, u64)| r.0;
        let (mut r, _) = reduce(w, &kf, |a, b| (a.0, a.1 + b.1));
        assert_eq!(r.apply((1, 5)), (1, 5));
        assert_eq!(r.apply((2, 1)), (2, 1));
        assert_eq!(r.apply((1, 7)), (1, 12));
        assert_eq!(r.keys(), 2);
    }
}

/// A witness of a value's type (for the ports tuple of a vertex).
pub fn witness_of<P>(_: &P) -> Witness<P> {
    Witness::new()
}

/// Fix the signature of a chain's logic so its closure parameters need no annotations.
#[inline(always)]
pub fn chain<I, P, L: FnMut(Event<I>, &mut P) -> Result<()>>(
    _: Witness<I>,
    _: Witness<P>,
    logic: L,
) -> L {
    logic
}

// ---------------------------------------------------------------------------------------
// Checkpoints: what generated code calls for each stateful operator and sink of a chain.

/// A source reader as a checkpoint participant: its position is its state.
struct SourceState<'a, R>(&'a mut R);

impl<R: SourceReader> Checkpointed for SourceState<'_, R> {
    fn snapshot(&mut self, _checkpoint: u64, out: &mut StateWriter<'_>) -> Result<()> {
        match self.0.position() {
            Some(p) => {
                out.put_meta(&p);
                Ok(())
            }
            None => Err(RuntimeError::user(
                "this source cannot record its position in a checkpoint; run without --checkpoint-interval",
            )),
        }
    }
    fn restore(&mut self, checkpoint: u64, from: &StateReader<'_>) -> Result<()> {
        match from.meta()? {
            Some(p) => self.0.seek(p),
            None => Err(RuntimeError::user(format!(
                "checkpoint {checkpoint} holds no position for this source instance; the job's sources changed since it was taken — start without it (run --restore none)"
            ))),
        }
    }
}

/// Restores a source instance: its own position, or — from a savepoint taken with another
/// parallelism — its share of what every old instance had left.
struct SourceRestore<'a, R>(&'a mut R, usize);

impl<R: SourceReader> Checkpointed for SourceRestore<'_, R> {
    fn snapshot(&mut self, checkpoint: u64, out: &mut StateWriter<'_>) -> Result<()> {
        SourceState(&mut *self.0).snapshot(checkpoint, out)
    }
    fn restore(&mut self, checkpoint: u64, from: &StateReader<'_>) -> Result<()> {
        match from.rescaled_from(self.1) {
            Some(_) => self.0.rescale(&from.all_meta()?),
            None => SourceState(&mut *self.0).restore(checkpoint, from),
        }
    }
}

fn source_participant<R: SourceReader>(
    vctx: &VertexCtx,
    name: &str,
    reader: &mut R,
) -> Result<Option<Participant>> {
    if !vctx.checkpoints.enabled() {
        return Ok(None);
    }
    if reader.position().is_none() {
        return Err(RuntimeError::user(format!(
            "source `{name}` cannot record its position in a checkpoint, so the job cannot take checkpoints; run without --checkpoint-interval"
        )));
    }
    let p = vctx.checkpoints.participant(name, vctx.instance, 0..0)?;
    if let Some(p) = &p {
        p.restore(&mut SourceRestore(reader, vctx.parallelism))?;
    }
    Ok(p)
}

/// How generated code reaches an operator's [`Checkpointed`] impl without adding compile
/// errors of its own: `(&mut Ck(&mut op)).ck()` is `Some` when the operator's types satisfy
/// the impl and `None` otherwise — which happens only when the user's code already has a
/// type error (a key that is not a `Key`), reported at the user's line.
pub struct Ck<'a, S>(pub &'a mut S);

/// See [`Ck`]: chosen when the operator is checkpointable.
pub trait CkYes {
    /// The operator as a checkpoint participant.
    fn ck(&mut self) -> Option<&mut dyn Checkpointed>;
}

impl<S: Checkpointed> CkYes for Ck<'_, S> {
    #[inline]
    fn ck(&mut self) -> Option<&mut dyn Checkpointed> {
        Some(&mut *self.0)
    }
}

/// See [`Ck`]: the fallback.
pub trait CkNo {
    /// Nothing to checkpoint.
    fn ck(&mut self) -> Option<&mut dyn Checkpointed> {
        None
    }
}

impl<S> CkNo for &mut Ck<'_, S> {}

/// Register a chained stateful operator for checkpoints and restore its state.
pub fn participate(
    vctx: &VertexCtx,
    name: &str,
    state: Option<&mut dyn Checkpointed>,
) -> Result<Option<Participant>> {
    let Some(state) = state else { return Ok(None) };
    let p = vctx
        .checkpoints
        .participant(name, vctx.instance, vctx.key_groups.clone())?;
    if let Some(p) = &p {
        p.restore(state)?;
    }
    Ok(p)
}

/// [`participate`] for an operator whose state is checkpointable only when its types are
/// (a window's accumulator must be serializable): refuse to run with checkpoints otherwise.
pub fn participate_or_refuse(
    vctx: &VertexCtx,
    name: &str,
    state: Option<&mut dyn Checkpointed>,
    what: &str,
) -> Result<Option<Participant>> {
    match state {
        Some(state) => participate(vctx, name, Some(state)),
        None => not_checkpointable(vctx, name, what).map(|()| None),
    }
}

/// An operator whose state cannot be checkpointed yet: refuse to run with checkpoints.
pub fn not_checkpointable(vctx: &VertexCtx, name: &str, what: &str) -> Result<()> {
    if vctx.checkpoints.enabled() {
        return Err(RuntimeError::user(format!(
            "operator `{name}`: {what} cannot be checkpointed yet, so this job cannot take checkpoints; run without --checkpoint-interval"
        )));
    }
    Ok(())
}

/// Every record of epochs up to `epoch` was applied: contribute to due checkpoints.
#[inline]
pub fn ck_epoch_done(
    p: &mut Option<Participant>,
    epoch: Epoch,
    state: Option<&mut dyn Checkpointed>,
) -> Result<()> {
    match (p, state) {
        (Some(p), Some(state)) => p.epoch_done(epoch, state),
        _ => Ok(()),
    }
}

/// The chain's input ended: contribute the final state.
pub fn ck_end(p: &mut Option<Participant>, state: Option<&mut dyn Checkpointed>) -> Result<()> {
    match (p, state) {
        (Some(p), Some(state)) => p.end(state),
        _ => Ok(()),
    }
}

/// A sink writer as a checkpoint participant (two-phase sinks only).
struct SinkState<'a, T, W>(&'a mut W, std::marker::PhantomData<fn(T)>);

impl<T, W: crate::sinks::SinkWriter<T>> Checkpointed for SinkState<'_, T, W> {
    fn snapshot(&mut self, checkpoint: u64, out: &mut StateWriter<'_>) -> Result<()> {
        let pending = self.0.pre_commit(checkpoint)?;
        out.put_meta(&pending);
        Ok(())
    }
    fn restore(&mut self, checkpoint: u64, from: &StateReader<'_>) -> Result<()> {
        // From a savepoint, the output the savepoint's run made is its own (committed by
        // it): continue beside it.
        if from.from_savepoint() {
            return self.0.continue_after_savepoint();
        }
        match from.meta()? {
            Some(pending) => self.0.recover(checkpoint, Some(pending)),
            None => Err(RuntimeError::user(format!(
                "checkpoint {checkpoint} holds nothing for this sink instance; the job changed since it was taken — start without it (run --restore none)"
            ))),
        }
    }
}

/// Register a chained sink for checkpoints: two-phase sinks commit their output only when
/// the checkpoint covering it is complete. Others (at-least-once, best effort) take no part.
pub fn participate_sink<T, W: crate::sinks::SinkWriter<T>>(
    _: Witness<T>,
    vctx: &VertexCtx,
    name: &str,
    writer: &mut W,
) -> Result<Option<Participant>> {
    if !vctx.checkpoints.enabled() {
        return Ok(None);
    }
    let Some(committer) = writer.two_phase() else {
        return Ok(None);
    };
    vctx.checkpoints.on_complete(committer);
    let p = vctx.checkpoints.participant(name, vctx.instance, 0..0)?;
    if let Some(p) = &p {
        if vctx.checkpoints.restored().is_some() {
            p.restore(&mut SinkState(writer, std::marker::PhantomData))?;
        } else {
            // A fresh start: the sink replaces what a previous run left.
            writer.recover(0, None)?;
        }
    }
    Ok(p)
}

/// Tell a chained sink that an epoch is complete, and pre-commit it at checkpoints.
#[inline]
pub fn sink_epoch_ck<T, W: crate::sinks::SinkWriter<T>>(
    _: Witness<T>,
    p: &mut Option<Participant>,
    writer: &mut W,
    epoch: Epoch,
) -> Result<()> {
    writer.epoch_complete(epoch)?;
    match p {
        Some(p) => p.epoch_done(epoch, &mut SinkState(writer, std::marker::PhantomData)),
        None => Ok(()),
    }
}

/// Close a chained sink at the end of its input; a two-phase sink's last output becomes
/// visible when the final checkpoint completes.
pub fn sink_close_ck<T, W: crate::sinks::SinkWriter<T>>(
    _: Witness<T>,
    p: &mut Option<Participant>,
    writer: &mut W,
) -> Result<()> {
    writer.close()?;
    match p {
        Some(p) => p.end(&mut SinkState(writer, std::marker::PhantomData)),
        None => Ok(()),
    }
}

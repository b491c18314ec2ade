//! Running the job's dataflow on timely workers: one per slot of this process.

use crate::checkpoint::{CheckpointConfig, Checkpoints};
use crate::error::{Result, RuntimeError};
use crate::job::{Env, Job};
use crate::metrics::ProcessMetrics;
use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::communication::allocator::AllocatorBuilder;
use weir_compiler::plan::PhysicalPlan;

/// How to run the dataflow in this process.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The physical plan for the whole cluster (every process computes the same one).
    pub physical: PhysicalPlan,
    /// Job arguments.
    pub env: Env,
    /// Length of an epoch (processing-time tick) — the unit of progress tracking.
    pub epoch: Duration,
    /// Checkpoints, if the run takes them.
    pub checkpoints: Option<CheckpointConfig>,
    /// Flow control: how many epochs a source may run ahead of the slowest vertex's input.
    pub max_epochs_ahead: u64,
    /// Records a source instance reads into one epoch before it takes a step to the next
    /// (see [`Epoch`](crate::data::Epoch)).
    pub records_per_step: usize,
    /// This process's metrics (what `/metrics` serves).
    pub metrics: Arc<ProcessMetrics>,
    /// Set from outside (the REST API's cancel) to stop the workers.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// The error a cancelled run ends with.
pub const CANCELLED: &str = "the job was cancelled (POST /api/cancel)";

/// Default for [`RunConfig::max_epochs_ahead`].
pub const MAX_EPOCHS_AHEAD: u64 = 4;
/// Default for [`RunConfig::records_per_step`].
pub const RECORDS_PER_STEP: usize = 64 * 1024;

/// Flow control: the input frontier of every non-source vertex, as this worker sees it.
/// Timely's progress tracking is global, so the minimum is the slowest vertex of the whole
/// job; sources stop reading while they are more than `ahead` epochs past it (timely's
/// channels are unbounded, so this is what bounds memory under a slow sink).
#[derive(Debug, Default)]
pub struct FlowControl {
    frontiers: std::cell::RefCell<Vec<Option<crate::data::Epoch>>>,
    /// Epochs a source may have in flight.
    pub ahead: u64,
    /// Records a source reads into one epoch.
    pub records_per_step: usize,
}

impl FlowControl {
    /// A slot for one vertex.
    pub fn register(&self) -> usize {
        let mut f = self.frontiers.borrow_mut();
        f.push(Some(0));
        f.len() - 1
    }
    /// Vertex `slot`'s input frontier moved (`None`: its input ended).
    pub fn update(&self, slot: usize, frontier: Option<crate::data::Epoch>) {
        if let Some(f) = self.frontiers.borrow_mut().get_mut(slot) {
            *f = frontier;
        }
    }
    /// The input frontier of the slowest vertex (`None`: every vertex's input ended).
    pub fn slowest(&self) -> Option<crate::data::Epoch> {
        self.frontiers.borrow().iter().flatten().min().copied()
    }
}

/// What a finished run reports.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Records read by the sources of this process.
    pub records_in: u64,
    /// Malformed records skipped or dead-lettered by the sources of this process.
    pub bad_records: u64,
}

/// Shared by the workers of one process: the first fatal error stops them all.
#[derive(Default, Debug)]
pub struct Failure {
    flag: AtomicBool,
    error: Mutex<Option<RuntimeError>>,
}

impl Failure {
    /// Record a fatal error (the first one wins) and ask every worker to stop.
    pub fn fail(&self, e: RuntimeError) {
        if let Ok(mut slot) = self.error.lock() {
            if slot.is_none() {
                *slot = Some(e);
            }
        }
        self.flag.store(true, Ordering::SeqCst);
    }
    /// Whether a worker failed.
    pub fn failed(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
    /// The first error, if any.
    pub fn take(&self) -> Option<RuntimeError> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }
}

/// What the generated dataflow builder sees of its worker.
pub struct WorkerCtx {
    /// The job's arguments.
    pub env: Arc<Env>,
    /// The physical plan.
    pub physical: Arc<PhysicalPlan>,
    /// Global index of this worker.
    pub worker: usize,
    /// Total workers in the cluster.
    pub peers: usize,
    /// Process-wide failure flag.
    pub failure: Arc<Failure>,
    /// Epoch length.
    pub epoch: Duration,
    /// When the job started (epoch 0).
    pub start: Instant,
    /// Per-process counters.
    pub stats: Arc<Stats>,
    /// This worker's checkpoints (off unless configured).
    pub checkpoints: Checkpoints,
    /// The first epoch of this run: after a restore from checkpoint `c`, `c + 1`, so that
    /// checkpoint ids keep increasing across restarts.
    pub epoch_base: u64,
    /// Flow control between this worker's sources and the job's slowest vertex.
    pub flow: std::rc::Rc<FlowControl>,
    /// This process's metrics.
    pub metrics: Arc<ProcessMetrics>,
}

/// Process-wide counters summed over workers.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records read by sources.
    pub records_in: std::sync::atomic::AtomicU64,
    /// Bad records skipped or dead-lettered.
    pub bad_records: std::sync::atomic::AtomicU64,
}

impl WorkerCtx {
    /// The job's arguments (what `env` is inside the pipeline).
    pub fn env(&self) -> &Env {
        &self.env
    }
    /// The instance of vertex `v` this worker hosts, if any.
    pub fn instance(&self, v: usize) -> Option<usize> {
        self.physical.instance_on(v, self.worker)
    }
}

/// Run the job's dataflow on the workers that `builders` describe (one per local worker
/// thread), until every source is exhausted or a worker fails.
pub fn run(
    job: Arc<Job>,
    cfg: RunConfig,
    builders: Vec<AllocatorBuilder>,
    others: Box<dyn Any + Send>,
) -> Result<RunSummary> {
    let failure = Arc::new(Failure::default());
    let stats = Arc::new(Stats::default());
    let physical = Arc::new(cfg.physical);
    let env = Arc::new(cfg.env);
    let start = Instant::now();
    let epoch = cfg.epoch;
    let ck_cfg = cfg.checkpoints.clone();
    let max_ahead = cfg.max_epochs_ahead;
    let records_per_step = cfg.records_per_step;
    let fingerprint = job.plan.fingerprint();
    let metrics = cfg.metrics;
    let cancel = cfg.cancel;
    let (f2, s2) = (Arc::clone(&failure), Arc::clone(&stats));
    let guards = timely::execute::execute_from(
        builders,
        others,
        timely::WorkerConfig::default(),
        move |worker| {
            let index = worker.index();
            crate::metrics::set_current(Arc::clone(&metrics), index);
            let checkpoints = match &ck_cfg {
                None => Checkpoints::off(),
                Some(c) => match open_checkpoints(worker, c, epoch, &physical, fingerprint, &f2) {
                    Ok(ck) => ck,
                    Err(e) => {
                        tracing::error!(worker = index, error = %e, "cannot open the checkpoint store");
                        f2.fail(e);
                        return;
                    }
                },
            };
            let epoch_base = checkpoints.restored().map_or(0, |c| c + 1);
            let ctx = WorkerCtx {
                env: Arc::clone(&env),
                physical: Arc::clone(&physical),
                worker: index,
                peers: worker.peers(),
                failure: Arc::clone(&f2),
                epoch,
                start,
                stats: Arc::clone(&s2),
                checkpoints,
                epoch_base,
                flow: std::rc::Rc::new(FlowControl {
                    frontiers: Default::default(),
                    ahead: max_ahead,
                    records_per_step,
                }),
                metrics: Arc::clone(&metrics),
            };
            let build = job.build;
            worker.dataflow::<crate::data::Epoch, _, _>(|scope| {
                build(scope, &ctx);
                if ctx.checkpoints.enabled() {
                    acknowledge(scope, &ctx);
                }
            });
            ctx.checkpoints.seal();
            while worker.step_or_park(Some(Duration::from_millis(20))) {
                if cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                    ctx.failure.fail(RuntimeError::user(CANCELLED));
                }
                if ctx.failure.failed() {
                    break;
                }
            }
        },
    )
    .map_err(|e| RuntimeError::external(format!("cannot start workers: {e}")))?;
    let results = guards.join();
    if let Some(e) = failure.take() {
        return Err(e);
    }
    for r in results {
        if let Err(e) = r {
            return Err(RuntimeError::internal(format!(
                "a worker thread panicked: {e}"
            )));
        }
    }
    Ok(RunSummary {
        records_in: stats.records_in.load(Ordering::Relaxed),
        bad_records: stats.bad_records.load(Ordering::Relaxed),
    })
}

/// Open this worker's checkpoint store and agree with every other worker on the checkpoint
/// to restore (a one-round exchange in a dataflow of its own).
fn open_checkpoints(
    worker: &mut timely::worker::Worker,
    cfg: &CheckpointConfig,
    epoch: Duration,
    physical: &PhysicalPlan,
    fingerprint: u64,
    failure: &Failure,
) -> Result<Checkpoints> {
    use std::cell::RefCell;
    use std::rc::Rc;
    use timely::dataflow::operators::vec::{Broadcast, ToStream};
    use timely::dataflow::operators::{Inspect, Probe};
    let (ck, offer) = Checkpoints::open(
        cfg,
        epoch,
        worker.index(),
        &physical.job,
        fingerprint,
        physical.max_parallelism,
    )?;
    let offers = Rc::new(RefCell::new(Vec::new()));
    let o2 = Rc::clone(&offers);
    let probe = worker.dataflow::<u64, _, _>(move |scope| {
        let (probe, _) = vec![offer]
            .to_stream(scope)
            .broadcast()
            .inspect(move |o: &Vec<u64>| o2.borrow_mut().push(o.clone()))
            .probe();
        probe
    });
    while !probe.done() {
        // A worker that could not open its store offers nothing: stop rather than wait.
        if failure.failed() {
            return Err(RuntimeError::external(
                "another worker could not open its checkpoint store",
            ));
        }
        worker.step_or_park(Some(Duration::from_millis(5)));
    }
    let agreed = crate::checkpoint::agree(&offers.borrow());
    ck.restore_to(agreed)?;
    ck.check_savepoint_coverage(
        physical
            .vertices
            .iter()
            .flat_map(|v| v.operators.iter().map(String::as_str)),
    )?;
    Ok(ck)
}

/// The checkpoint acknowledgement: every worker holds a capability at "newest checkpoint
/// it committed + 1"; timely's frontier of that stream, seen by every worker, is the
/// global minimum, so a checkpoint below it is complete everywhere.
fn acknowledge<'s>(scope: timely::dataflow::Scope<'s, crate::data::Epoch>, ctx: &WorkerCtx) {
    use timely::dataflow::channels::pact::Pipeline;
    use timely::dataflow::operators::generic::operator::source;
    use timely::dataflow::operators::generic::Operator;
    let (ck, ck2) = (ctx.checkpoints.clone(), ctx.checkpoints.clone());
    let (failure, f2) = (Arc::clone(&ctx.failure), Arc::clone(&ctx.failure));
    let acks = source::<_, timely::container::CapacityContainerBuilder<Vec<()>>, _, _>(
        scope,
        "checkpoint-ack",
        move |cap, info| {
            let activator = scope.activator_for(info.address);
            ck.set_ack_activator(activator.clone());
            let mut cap = Some(cap);
            move |_output| {
                if let Some(e) = ck.background_error() {
                    crate::metrics::with_current(|m, _| m.checkpoint_failed());
                    tracing::error!(error = %e, "cannot write a checkpoint");
                    failure.fail(e);
                }
                if failure.failed() {
                    cap = None;
                    return;
                }
                let Some(c) = cap.as_mut() else { return };
                // A checkpoint is being written in the background: look again soon.
                if ck.writing() {
                    activator.activate_after(Duration::from_millis(1));
                }
                match ck.ack_time() {
                    Some(t) => {
                        if *c.time() < t {
                            c.downgrade(&t);
                        }
                    }
                    None => cap = None,
                }
            }
        },
    );
    acks.sink(Pipeline, "checkpoint-complete", move |(input, frontier)| {
        input.for_each(|_, _| {});
        let f = frontier.frontier().iter().min().copied();
        if let Err(e) = ck2.globally_committed_below(f) {
            tracing::error!(error = %e, "cannot complete a checkpoint");
            f2.fail(e);
        }
    });
}

/// Run a job inside this process with `workers` threads: for tests, benchmarks and tools.
/// `args` are the job arguments (`--arg name=value` on the command line).
pub fn run_local(job: Job, workers: usize, args: &[(&str, &str)]) -> Result<RunSummary> {
    run_local_with(job, workers, args, LocalOptions::default())
}

/// Settings of [`run_local_with`].
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Length of a tick (`run --epoch-ms`).
    pub epoch: Duration,
    /// See [`RunConfig::records_per_step`].
    pub records_per_step: usize,
    /// Checkpoints, if the run takes them.
    pub checkpoints: Option<CheckpointConfig>,
    /// Where the run's metrics go (a fresh registry when `None`).
    pub metrics: Option<Arc<ProcessMetrics>>,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            epoch: Duration::from_millis(50),
            records_per_step: RECORDS_PER_STEP,
            checkpoints: None,
            metrics: None,
        }
    }
}

/// [`run_local`] with other epoch settings.
pub fn run_local_with(
    job: Job,
    workers: usize,
    args: &[(&str, &str)],
    options: LocalOptions,
) -> Result<RunSummary> {
    let epoch = options.epoch;
    let physical = weir_compiler::plan::resolve(
        &job.plan,
        weir_compiler::plan::ClusterShape::single(workers),
        None,
    )
    .map_err(|e| RuntimeError::user(e.to_string()))?;
    let pairs: Vec<(String, String)> = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env = Env::from_pairs(&job.plan, &pairs)?;
    let (builders, others) = timely::CommunicationConfig::Process(workers)
        .try_build()
        .map_err(RuntimeError::external)?;
    let metrics = options
        .metrics
        .unwrap_or_else(|| ProcessMetrics::new(&job.plan.name, 0));
    run(
        Arc::new(job),
        RunConfig {
            physical,
            env,
            epoch,
            checkpoints: options.checkpoints,
            max_epochs_ahead: MAX_EPOCHS_AHEAD,
            records_per_step: options.records_per_step,
            metrics,
            cancel: None,
        },
        builders,
        others,
    )
}

/// Run a job as `processes` timely processes of `workers` threads each, all inside this OS
/// process and connected over TCP on 127.0.0.1 exactly as separate processes are: for tests
/// that need records and watermarks to cross process boundaries while still inspecting the
/// output in memory. `job` builds the job (the function `#[weir::job]` generated).
pub fn run_cluster_local(
    job: fn() -> Job,
    processes: usize,
    workers: usize,
    args: &[(&str, &str)],
) -> Result<Vec<RunSummary>> {
    use crate::cluster::hosts::ProcessAddr;
    use crate::cluster::net::{connect_all, start_networking, Mesh};
    use weir_compiler::plan::ClusterShape;
    let shape = ClusterShape {
        nodes: 1,
        procs_per_node: processes,
        workers,
    };
    let plan = job().plan;
    let physical = weir_compiler::plan::resolve(&plan, shape, None)
        .map_err(|e| RuntimeError::user(e.to_string()))?;
    let pairs: Vec<(String, String)> = args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env = Env::from_pairs(&plan, &pairs)?;
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for p in 0..processes {
        let l = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| RuntimeError::external(format!("cannot bind a loopback port: {e}")))?;
        let addr = l
            .local_addr()
            .map_err(|e| RuntimeError::external(e.to_string()))?;
        addrs.push(ProcessAddr {
            process: p,
            node: 0,
            local: p,
            addr,
        });
        listeners.push(l);
    }
    let fingerprint = plan.fingerprint();
    let handles: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(me, listener)| {
            let mesh = Mesh {
                job: plan.name.clone(),
                fingerprint,
                shape,
                processes: addrs.clone(),
                me,
            };
            let cfg = RunConfig {
                physical: physical.clone(),
                env: env.clone(),
                epoch: Duration::from_millis(50),
                checkpoints: None,
                max_epochs_ahead: MAX_EPOCHS_AHEAD,
                records_per_step: RECORDS_PER_STEP,
                metrics: ProcessMetrics::new(&plan.name, me),
                cancel: None,
            };
            std::thread::spawn(move || -> Result<RunSummary> {
                let sockets = connect_all(&mesh, listener, Duration::from_secs(30))?;
                let (builders, others) = start_networking(sockets, me, workers)?;
                run(Arc::new(job()), cfg, builders, others)
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(
            h.join()
                .map_err(|_| RuntimeError::internal("a process thread panicked"))??,
        );
    }
    Ok(out)
}

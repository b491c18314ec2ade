//! `run`: one process, the launcher of a cluster node, and one process of a cluster.

use super::args::{ExplainArgs, ExplainFormat, ProcessArgs, RestartStrategy, Restore, RunArgs};
use super::{explain, logging, CliError};
use crate::checkpoint::CheckpointConfig;
use crate::cluster::heartbeat::{HeartbeatConfig, Heartbeats};
use crate::cluster::launcher::{self, ChildSpec, NoPeers, Outcome, PeerWatch, Supervision};
use crate::cluster::net::{self, Mesh, Networked};
use crate::cluster::{count, describe_shape, Hosts, ProcessAddr};
use crate::error::RuntimeError;
use crate::job::{Env, Job};
use crate::metrics::ProcessMetrics;
use crate::worker::{self, RunConfig};
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_compiler::plan::{resolve, ClusterShape, PhysicalPlan};

/// The `/metrics` port of process 0 unless `--http-port` says otherwise; process K uses
/// this port + K.
pub const DEFAULT_HTTP_PORT: u16 = 8081;
/// Environment variable holding the REST API's token (as `--http-token`).
pub const ENV_HTTP_TOKEN: &str = "WEIR_HTTP_TOKEN";

/// Where this process serves HTTP and where the others do (process 0 reads their metrics).
#[cfg_attr(not(feature = "http"), allow(dead_code))]
struct Monitoring {
    process: usize,
    /// Every process's `/metrics` address, by global index (`None`: HTTP is off).
    addrs: Option<Vec<(usize, std::net::SocketAddr)>>,
    /// Whether the job runs as this process alone, without a launcher (then it can be
    /// cancelled).
    alone: bool,
}

impl Monitoring {
    /// `processes`: (global index, node, the process's own address) of every process.
    fn new(
        a: &RunArgs,
        me: usize,
        my_node: usize,
        processes: &[(usize, usize, std::net::IpAddr)],
    ) -> Self {
        let base = if a.no_http {
            0
        } else {
            a.http_port.unwrap_or(DEFAULT_HTTP_PORT)
        };
        let addrs = (base != 0).then(|| {
            processes
                .iter()
                .filter_map(|&(k, node, ip)| {
                    let port = u16::try_from(usize::from(base) + k).ok()?;
                    // Same node: where it binds; another node: its address in the hosts file.
                    let ip = match (node == my_node, a.http_bind.is_unspecified()) {
                        (true, true) => std::net::IpAddr::from([127, 0, 0, 1]),
                        (true, false) => a.http_bind,
                        (false, _) => ip,
                    };
                    Some((k, std::net::SocketAddr::new(ip, port)))
                })
                .collect()
        });
        Monitoring {
            process: me,
            addrs,
            // A launcher would restart a process that stopped on a cancel.
            alone: processes.len() == 1 && a.hosts.is_none(),
        }
    }
}

fn plan_error(e: weir_compiler::plan::PlanError) -> CliError {
    CliError::usage(e.to_string())
}

/// Write text to stdout; a closed pipe (`| head`) is not an error.
pub(super) fn print_stdout(s: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::failed(format!("cannot write to stdout: {e}"))),
    }
}

fn write_plan(path: &Path, physical: &PhysicalPlan) -> Result<(), CliError> {
    let json = serde_json::to_string_pretty(physical)
        .map_err(|e| CliError::failed(format!("cannot serialize the plan: {e}")))?;
    std::fs::write(path, json + "\n").map_err(|e| {
        CliError::usage(format!(
            "cannot write the plan to `{}` (--plan-out): {e}",
            path.display()
        ))
    })
}

/// `explain`.
pub(super) fn explain(job: &Job, a: &ExplainArgs) -> Result<u8, CliError> {
    let nodes = match &a.hosts {
        Some(path) => {
            let hosts = Hosts::load(path)?;
            hosts.processes(a.procs_per_node)?;
            hosts.len()
        }
        None => a.nodes,
    };
    let shape = ClusterShape {
        nodes,
        procs_per_node: a.procs_per_node,
        workers: a.workers,
    };
    let physical = resolve(&job.plan, shape, a.parallelism).map_err(plan_error)?;
    let out = match a.format {
        ExplainFormat::Text => explain::text(&job.plan, &physical),
        ExplainFormat::Json => explain::json(&job.plan, &physical)
            .map_err(|e| CliError::failed(format!("cannot serialize the plan: {e}")))?,
        ExplainFormat::Dot => explain::dot(&job.plan, &physical),
    };
    print_stdout(&out)?;
    Ok(0)
}

/// `run` without `--hosts`: this process alone, `--workers` threads.
pub(super) fn run_single(job: Job, a: &RunArgs) -> Result<u8, CliError> {
    let shape = ClusterShape::single(a.workers);
    let physical = resolve(&job.plan, shape, a.parallelism).map_err(plan_error)?;
    let env = Env::from_pairs(&job.plan, &a.args)?;
    if let Some(path) = &a.plan_out {
        write_plan(path, &physical)?;
    }
    let comm = timely::CommunicationConfig::Process(a.workers)
        .try_build()
        .map_err(|e| CliError::failed(format!("cannot start the workers: {e}")))?;
    let ck = checkpoint_config(&job, a);
    prepare_savepoint_start(ck.as_ref(), a, 0..a.workers)?;
    let metrics = ProcessMetrics::new(&job.plan.name, 0);
    let mon = Monitoring::new(a, 0, 0, &[(0, 0, std::net::IpAddr::from([127, 0, 0, 1]))]);
    let code = execute(
        job,
        physical,
        env,
        Duration::from_millis(a.epoch_ms),
        comm,
        ck.clone(),
        metrics,
        (a, mon),
    )?;
    // A finished job keeps no checkpoints (Flink discards them when a job finishes).
    if let Some(ck) = ck {
        crate::checkpoint::remove_checkpoints(&ck, 0..a.workers);
    }
    Ok(code)
}

/// Everything `run --hosts` and `__process` check before doing anything.
struct ClusterSetup {
    hosts: Hosts,
    processes: Vec<ProcessAddr>,
    node: usize,
    physical: PhysicalPlan,
    env: Env,
}

fn cluster_setup(job: &Job, a: &RunArgs) -> Result<ClusterSetup, CliError> {
    let path = a
        .hosts
        .as_deref()
        .ok_or_else(|| CliError::usage("--hosts FILE is required for a process of a cluster"))?;
    let node = a
        .node
        .ok_or_else(|| CliError::usage("--node N is required with --hosts"))?;
    let hosts = Hosts::load(path)?;
    hosts.check_node(node)?;
    let procs_per_node = a.procs_per_node.unwrap_or(1);
    let processes = hosts.processes(procs_per_node)?;
    let shape = ClusterShape {
        nodes: hosts.len(),
        procs_per_node,
        workers: a.workers,
    };
    let physical = resolve(&job.plan, shape, a.parallelism).map_err(plan_error)?;
    let env = Env::from_pairs(&job.plan, &a.args)?;
    Ok(ClusterSetup {
        hosts,
        processes,
        node,
        physical,
        env,
    })
}

/// The command line of the hidden `__process` subcommand for process `process`.
pub fn child_args(a: &RunArgs, process: usize) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec!["__process".into()];
    if let Some(h) = &a.hosts {
        let mut s = OsString::from("--hosts=");
        s.push(h.as_os_str());
        v.push(s);
    }
    if let Some(n) = a.node {
        v.push(format!("--node={n}").into());
    }
    v.push(format!("--procs-per-node={}", a.procs_per_node.unwrap_or(1)).into());
    v.push(format!("--workers={}", a.workers).into());
    v.push(format!("--process={process}").into());
    if let Some(p) = a.parallelism {
        v.push(format!("--parallelism={p}").into());
    }
    for (k, val) in &a.args {
        v.push(format!("--arg={k}={val}").into());
    }
    v.push(format!("--epoch-ms={}", a.epoch_ms).into());
    v.push(format!("--log-format={}", a.log_format.as_str()).into());
    v.push(format!("--connect-timeout={}", a.connect_timeout).into());
    v.push(format!("--heartbeat-interval={}ms", a.heartbeat_interval).into());
    v.push(format!("--heartbeat-timeout={}ms", a.heartbeat_timeout).into());
    if let Some(ms) = a.checkpoint_interval {
        v.push(format!("--checkpoint-interval={ms}ms").into());
    }
    let mut dir = OsString::from("--checkpoint-dir=");
    dir.push(a.checkpoint_dir.as_os_str());
    v.push(dir);
    v.push(format!("--checkpoints-retained={}", a.checkpoints_retained).into());
    v.push(format!("--restore={}", a.restore.as_str()).into());
    if let Some(n) = a.restart_attempts {
        v.push(format!("--restart-attempts={n}").into());
    }
    if let Some(dir) = &a.from_savepoint {
        let mut flag = OsString::from("--from-savepoint=");
        flag.push(dir.as_os_str());
        v.push(flag);
    }
    if a.allow_non_restored_state {
        v.push("--allow-non-restored-state".into());
    }
    if let Some(dir) = &a.checkpoint_copy_dir {
        let mut flag = OsString::from("--checkpoint-copy-dir=");
        flag.push(dir.as_os_str());
        v.push(flag);
    }
    v.push(format!("--restart-delay={}ms", a.restart_delay).into());
    v.push(format!("--restart-strategy={}", a.restart_strategy.as_str()).into());
    v.push(format!("--failure-rate-interval={}ms", a.failure_rate_interval).into());
    match (a.no_http, a.http_port) {
        (true, _) => v.push("--no-http".into()),
        (false, Some(p)) => v.push(format!("--http-port={p}").into()),
        (false, None) => {}
    }
    v.push(format!("--http-bind={}", a.http_bind).into());
    // The token goes to the processes through the environment (see `run_launcher`), not
    // their command line, which every user of the machine can read.
    v
}

/// The checkpoint settings of a run: the flag, else the job's attribute, else none.
fn checkpoint_config(job: &Job, a: &RunArgs) -> Option<CheckpointConfig> {
    let ms = a.checkpoint_interval.or(job.plan.checkpoint_interval_ms)?;
    Some(CheckpointConfig {
        dir: a.checkpoint_dir.join(&job.plan.name),
        interval: Duration::from_millis(ms),
        retained: a.checkpoints_retained,
        restore: a.restore == Restore::Latest,
        savepoint: a.from_savepoint.clone(),
        allow_non_restored_state: a.allow_non_restored_state,
        copy_dir: a
            .checkpoint_copy_dir
            .as_ref()
            .map(|d| d.join(&job.plan.name)),
    })
}

/// `savepoint`: copy the newest checkpoint complete on every worker of this node.
pub(super) fn savepoint(job: &Job, a: &super::args::SavepointArgs) -> Result<u8, CliError> {
    let job_dir = a.checkpoint_dir.join(&job.plan.name);
    let info = crate::savepoints::take(
        &job_dir,
        &job.plan.name,
        job.plan.max_parallelism,
        &a.target,
        a.checkpoint,
    )?;
    print_stdout(&format!(
        "savepoint of checkpoint {} ({} worker stores) written to {}\n",
        info.checkpoint,
        info.workers.len(),
        a.target.display()
    ))?;
    Ok(0)
}

/// `--from-savepoint` needs checkpoints on (they carry the restore), and the node's own
/// stores are dropped at the first start so that the savepoint, not an older run's
/// checkpoints, is where the run begins.
fn prepare_savepoint_start(
    ck: Option<&CheckpointConfig>,
    a: &RunArgs,
    workers: std::ops::Range<usize>,
) -> Result<(), CliError> {
    let Some(dir) = &a.from_savepoint else {
        return Ok(());
    };
    let Some(ck) = ck else {
        return Err(CliError::usage(
            "--from-savepoint needs checkpoints: add --checkpoint-interval (e.g. 10s)",
        ));
    };
    if !dir.join(crate::savepoints::SAVEPOINT_FILE).is_file() {
        return Err(CliError::usage(format!(
            "--from-savepoint {}: not a savepoint (no {}); give a directory `savepoint` wrote",
            dir.display(),
            crate::savepoints::SAVEPOINT_FILE
        )));
    }
    crate::checkpoint::remove_checkpoints(ck, workers);
    Ok(())
}

/// `run --hosts`: check everything, start this node's processes, supervise them.
pub(super) fn run_launcher(job: &Job, a: &RunArgs) -> Result<u8, CliError> {
    let s = cluster_setup(job, a)?;
    if s.node == 0 {
        if let Some(path) = &a.plan_out {
            write_plan(path, &s.physical)?;
        }
    }
    let mine: Vec<ProcessAddr> = s
        .processes
        .iter()
        .filter(|p| p.node == s.node)
        .copied()
        .collect();
    net::check_bindable(&mine, s.hosts.origin())?;
    // Watch the other nodes' launchers, so that a silent node (a cut link) restarts too.
    let heartbeats = Heartbeats::start(
        &s.hosts,
        s.node,
        job.plan.fingerprint(),
        HeartbeatConfig {
            interval: Duration::from_millis(a.heartbeat_interval),
            timeout: Duration::from_millis(a.heartbeat_timeout),
        },
    )?;
    let peers: &dyn PeerWatch = match &heartbeats {
        Some(h) => h,
        None => &NoPeers,
    };
    let exe = std::env::current_exe().map_err(|e| {
        CliError::failed(format!(
            "cannot find this program's path to start its processes: {e}"
        ))
    })?;
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let specs = |attempt: u32| -> Vec<ChildSpec> {
        mine.iter()
            .map(|pa| {
                let mut command = Command::new(&exe);
                command.args(child_args(a, pa.process));
                // Uptime and restarts of the job, for the processes' metrics.
                command.env(crate::metrics::ENV_JOB_STARTED, started_ms.to_string());
                command.env(crate::metrics::ENV_RESTARTS, attempt.to_string());
                if let Some(t) = &a.http_token {
                    command.env(ENV_HTTP_TOKEN, t);
                }
                ChildSpec {
                    process: pa.process,
                    node: pa.node,
                    addr: pa.addr,
                    command,
                }
            })
            .collect()
    };
    let ck = checkpoint_config(job, a);
    let first_worker = mine.first().map_or(0, |p| p.process * a.workers);
    prepare_savepoint_start(
        ck.as_ref(),
        a,
        first_worker..first_worker + mine.len() * a.workers,
    )?;
    let p = &s.physical;
    tracing::info!(
        "starting {} of node {} (cluster {}; the plan uses {} of {} slots)",
        count(mine.len(), "process", "processes"),
        s.node,
        describe_shape(&p.cluster),
        p.slots_needed,
        p.cluster.slots()
    );
    launcher::install_signal_handlers();
    let n = mine.len();
    let mut attempt = 0u32;
    // Flink's defaults: no restarts without checkpoints (the job would start over).
    let attempts = a
        .restart_attempts
        .unwrap_or(if ck.is_some() { 3 } else { 0 });
    let mut policy = RestartPolicy::new(
        a.restart_strategy,
        attempts,
        Duration::from_millis(a.failure_rate_interval),
    );
    loop {
        let outcome = launcher::supervise_watching(
            specs(attempt),
            &Supervision::default(),
            &launcher::take_signal,
            peers,
        );
        match outcome {
            Ok(Outcome::Failed { .. } | Outcome::PeerLost(_)) if policy.restart(Instant::now()) => {
                attempt += 1;
                if let Some(h) = &heartbeats {
                    h.restarted();
                }
                let failure = outcome
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                tracing::warn!(
                    attempt,
                    attempts,
                    "{failure}; restarting the processes of node {} in {} ms ({})",
                    s.node,
                    a.restart_delay,
                    match &ck {
                        Some(_) => "from the last complete checkpoint",
                        None => "without checkpoints: from the beginning",
                    }
                );
                std::thread::sleep(Duration::from_millis(a.restart_delay));
                if launcher::take_signal().is_some() {
                    return Ok(130);
                }
                continue;
            }
            other => {
                return launch_outcome(other, n, s.node, attempt, ck.as_ref(), &mine, a.workers)
            }
        }
    }
}

/// Whether to restart after a failure (Flink's fixed-delay and failure-rate strategies).
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    strategy: RestartStrategy,
    attempts: u32,
    interval: Duration,
    /// When the failures so far happened (failure-rate: only those within the interval).
    failures: std::collections::VecDeque<Instant>,
    restarts: u32,
}

impl RestartPolicy {
    /// `attempts` restarts in all (fixed-delay) or failures per `interval` (failure-rate).
    pub fn new(strategy: RestartStrategy, attempts: u32, interval: Duration) -> Self {
        RestartPolicy {
            strategy,
            attempts,
            interval,
            failures: Default::default(),
            restarts: 0,
        }
    }

    /// A failure happened at `now`: restart?
    pub fn restart(&mut self, now: Instant) -> bool {
        let ok = match self.strategy {
            RestartStrategy::FixedDelay => self.restarts < self.attempts,
            RestartStrategy::FailureRate => {
                while self
                    .failures
                    .front()
                    .is_some_and(|&t| now.duration_since(t) >= self.interval)
                {
                    self.failures.pop_front();
                }
                self.failures.push_back(now);
                self.failures.len() as u64 <= u64::from(self.attempts)
            }
        };
        if ok {
            self.restarts += 1;
        }
        ok
    }
}

/// What the launcher reports once it stops restarting.
fn launch_outcome(
    outcome: std::io::Result<Outcome>,
    n: usize,
    node: usize,
    attempts: u32,
    ck: Option<&CheckpointConfig>,
    mine: &[ProcessAddr],
    workers: usize,
) -> Result<u8, CliError> {
    match outcome {
        Ok(Outcome::Succeeded) => {
            tracing::info!(
                "all {} of node {node} finished",
                count(n, "process", "processes"),
            );
            // A finished job keeps no checkpoints (Flink discards them when a job finishes).
            if let Some(ck) = ck {
                for pa in mine {
                    let first = pa.process * workers;
                    crate::checkpoint::remove_checkpoints(ck, first..first + workers);
                }
            }
            Ok(0)
        }
        Ok(failed @ (Outcome::Failed { .. } | Outcome::PeerLost(_))) if attempts > 0 => {
            Err(CliError::failed(format!(
                "{failed}, after {attempts} restart{}; the last complete checkpoint is kept{}",
                if attempts == 1 { "" } else { "s" },
                ck.map(|c| format!(" in {}", c.dir.display()))
                    .unwrap_or_default()
            )))
        }
        Ok(failed @ (Outcome::Failed { .. } | Outcome::PeerLost(_))) => {
            Err(CliError::failed(failed.to_string()))
        }
        Ok(Outcome::Interrupted { signal }) => {
            tracing::warn!(
                "{}; stopped the processes of node {node}",
                Outcome::Interrupted { signal },
            );
            Ok(u8::try_from(128 + signal).unwrap_or(1))
        }
        Err(e) => Err(CliError::failed(e.to_string())),
    }
}

/// `__process`: one process of a cluster, started by the launcher.
pub(super) fn run_process(job: Job, p: &ProcessArgs) -> Result<u8, CliError> {
    let a = &p.run;
    let s = cluster_setup(&job, a)?;
    let me = *s.processes.get(p.process).ok_or_else(|| {
        CliError::usage(format!(
            "--process {} is out of range: the cluster has {} processes",
            p.process,
            s.processes.len()
        ))
    })?;
    if me.node != s.node {
        return Err(CliError::usage(format!(
            "process {} runs on node {}, not on node {}",
            p.process, me.node, s.node
        )));
    }
    let shape = s.physical.cluster;
    let comm: Networked = if shape.processes() == 1 {
        timely::CommunicationConfig::Process(a.workers)
            .try_build()
            .map_err(|e| CliError::failed(format!("cannot start the workers: {e}")))?
    } else {
        let listener = net::bind(&me, s.hosts.origin())?;
        let mesh = Mesh {
            job: job.plan.name.clone(),
            fingerprint: job.plan.fingerprint(),
            shape,
            processes: s.processes.clone(),
            me: p.process,
        };
        tracing::info!(
            "listening on {}; connecting to the other {}",
            me.addr,
            count(shape.processes() - 1, "process", "processes")
        );
        let sockets = net::connect_all(&mesh, listener, Duration::from_secs(a.connect_timeout))?;
        net::start_networking(sockets, p.process, a.workers)?
    };
    let ck = checkpoint_config(&job, a);
    let metrics = ProcessMetrics::new(&job.plan.name, p.process);
    let all: Vec<(usize, usize, std::net::IpAddr)> = s
        .processes
        .iter()
        .map(|pa| (pa.process, pa.node, pa.addr.ip()))
        .collect();
    let mon = Monitoring::new(a, p.process, me.node, &all);
    execute(
        job,
        s.physical,
        s.env,
        Duration::from_millis(a.epoch_ms),
        comm,
        ck,
        metrics,
        (a, mon),
    )
}

/// A line on an interactive terminal showing how far the bounded sources are (`run` of one
/// process with text logs on a terminal), redrawn twice a second, cleared at the end.
struct ProgressLine {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressLine {
    fn start(metrics: Arc<ProcessMetrics>, a: &RunArgs) -> Option<Self> {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() || a.log_format != super::args::LogFormat::Text {
            return None;
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        logging::PROGRESS_LINE.store(true, std::sync::atomic::Ordering::Relaxed);
        let thread = std::thread::Builder::new()
            .name("weir-progress".into())
            .spawn(move || {
                let started = Instant::now();
                // (time, records read) half a second apart, for the rate over the last 2 s.
                let mut window: std::collections::VecDeque<(Instant, u64)> = Default::default();
                while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(500));
                    let p = metrics.progress();
                    if !p.bounded {
                        continue;
                    }
                    let now = Instant::now();
                    window.push_back((now, p.read));
                    while window.len() > 5 {
                        window.pop_front();
                    }
                    let rate = match (window.front(), window.back()) {
                        (Some(&(t0, r0)), Some(&(t1, r1))) if t1 > t0 => {
                            (r1 - r0) as f64 / (t1 - t0).as_secs_f64()
                        }
                        _ => 0.0,
                    };
                    let line = progress_line(p.read, p.total, rate, started.elapsed());
                    let _ = write!(std::io::stderr().lock(), "\r\x1b[2K{line}");
                }
                let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
                logging::PROGRESS_LINE.store(false, std::sync::atomic::Ordering::Relaxed);
            })
            .ok()?;
        Some(ProgressLine {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A count for people: 1234 → `1234`, 12345 → `12.3 k`, 1234567 → `1.23 M`.
fn human(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.2} G", n / 1e9),
        n if n >= 1e6 => format!("{:.2} M", n / 1e6),
        n if n >= 1e4 => format!("{:.1} k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

/// The progress line: records read (of the total), rate, and the time left when the total
/// is known.
fn progress_line(read: u64, total: Option<u64>, rate: f64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    let t = format!("{}:{:02}", secs / 60, secs % 60);
    match total {
        Some(total) if total > 0 => {
            let pct = (read as f64 / total as f64 * 100.0).min(100.0);
            let eta = if rate > 0.0 {
                let left = (total.saturating_sub(read) as f64 / rate).ceil() as u64;
                format!("{}:{:02} left", left / 60, left % 60)
            } else {
                "time left unknown".to_string()
            };
            format!(
                "{t} {} of {} records read ({pct:.0} %), {}/s, {eta}",
                human(read as f64),
                human(total as f64),
                human(rate)
            )
        }
        _ => format!("{t} {} records read, {}/s", human(read as f64), human(rate)),
    }
}

/// Start the HTTP server of this process, if it serves one: a busy default port only
/// warns, a port the user chose is an error.
#[cfg(feature = "http")]
fn start_http(
    job: &Job,
    physical: &PhysicalPlan,
    a: &RunArgs,
    mon: &Monitoring,
    metrics: &Arc<ProcessMetrics>,
    checkpoints: Option<&CheckpointConfig>,
    control: &Control,
) -> Result<Option<crate::http::Server>, CliError> {
    use crate::http::JobView;
    let Some(addrs) = &mon.addrs else {
        return Ok(None);
    };
    let Some(port) = addrs
        .iter()
        .find(|(k, _)| *k == mon.process)
        .map(|(_, s)| s.port())
    else {
        return Err(CliError::usage(format!(
            "--http-port {} + process {} is past port 65535: choose a lower --http-port",
            a.http_port.unwrap_or(DEFAULT_HTTP_PORT),
            mon.process
        )));
    };
    let view = (mon.process == 0).then(|| JobView {
        plan: job.plan.clone(),
        physical: physical.clone(),
        peers: addrs.iter().filter(|(k, _)| *k != 0).copied().collect(),
        token: a
            .http_token
            .clone()
            .or_else(|| std::env::var(ENV_HTTP_TOKEN).ok())
            .filter(|t| !t.is_empty()),
        cancel: mon.alone.then(|| Arc::clone(&control.cancel)),
        status: Arc::clone(&control.status),
        checkpoint_interval_ms: checkpoints.map(|c| c.interval.as_millis() as u64),
        savepoint_from: checkpoints
            .filter(|_| physical.cluster.nodes <= 1)
            .map(|c| c.dir.clone()),
    });
    let addr = std::net::SocketAddr::new(a.http_bind, port);
    let serves_api = view.is_some();
    match crate::http::start(addr, Arc::clone(metrics), view) {
        Ok(server) => {
            if serves_api {
                tracing::info!(
                    "dashboard on http://{}/ (REST API under /api, metrics on /metrics)",
                    server.addr()
                );
            } else {
                tracing::info!("metrics on http://{}/metrics", server.addr());
            }
            Ok(Some(server))
        }
        Err(e) if a.http_port.is_none() => {
            tracing::warn!(
                "cannot serve metrics on {addr} ({e}); the job runs without them: choose a port with --http-port, or --no-http"
            );
            Ok(None)
        }
        Err(e) => Err(CliError::usage(format!(
            "cannot serve HTTP on {addr} (--http-port): {e}; choose another port, or --no-http"
        ))),
    }
}

/// What the REST API shares with the run: the cancel flag and the job's state.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
#[derive(Default)]
struct Control {
    cancel: Arc<std::sync::atomic::AtomicBool>,
    #[cfg(feature = "http")]
    status: Arc<std::sync::Mutex<crate::http::JobStatus>>,
}

/// Run the workers of this process to the end and log the summary.
#[allow(clippy::too_many_arguments)]
fn execute(
    job: Job,
    physical: PhysicalPlan,
    env: Env,
    epoch: Duration,
    (builders, others): Networked,
    checkpoints: Option<CheckpointConfig>,
    metrics: Arc<ProcessMetrics>,
    (a, mon): (&RunArgs, Monitoring),
) -> Result<u8, CliError> {
    let started = Instant::now();
    let control = Control::default();
    #[cfg(feature = "http")]
    let server = start_http(
        &job,
        &physical,
        a,
        &mon,
        &metrics,
        checkpoints.as_ref(),
        &control,
    )?;
    #[cfg(not(feature = "http"))]
    if mon.addrs.is_some() && a.http_port.is_some() {
        tracing::warn!("this job was built without weir's `http` feature: --http-port is ignored");
    }
    tracing::info!(
        "running {} with {} in this process; the job has {} in {} of {} slots",
        count(physical.vertices.len(), "vertex", "vertices"),
        count(builders.len(), "worker thread", "worker threads"),
        count(physical.tasks, "task", "tasks"),
        physical.slots_needed,
        physical.cluster.slots()
    );
    // The progress line of a run without launcher (whose stderr is the user's terminal).
    let progress = if a.hosts.is_none() {
        ProgressLine::start(Arc::clone(&metrics), a)
    } else {
        None
    };
    let cfg = RunConfig {
        physical,
        env,
        epoch,
        checkpoints,
        max_epochs_ahead: worker::MAX_EPOCHS_AHEAD,
        records_per_step: worker::RECORDS_PER_STEP,
        metrics,
        cancel: Some(Arc::clone(&control.cancel)),
    };
    let job = Arc::new(job);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        worker::run(job, cfg, builders, others)
    }));
    drop(progress);
    let cancelled = control.cancel.load(std::sync::atomic::Ordering::SeqCst);
    #[cfg(feature = "http")]
    {
        use crate::http::JobStatus;
        if let Ok(mut st) = control.status.lock() {
            *st = match &result {
                _ if cancelled => JobStatus::Canceled,
                Ok(Ok(_)) => JobStatus::Finished,
                _ => JobStatus::Failed,
            };
        }
        drop(server);
    }
    if cancelled {
        tracing::warn!("cancelled after {:.1?}", started.elapsed());
        return Err(CliError::failed(worker::CANCELLED));
    }
    match result {
        Ok(Ok(summary)) => {
            let took = started.elapsed();
            let rate = summary.records_in as f64 / took.as_secs_f64().max(1e-9);
            tracing::info!(
                records_in = summary.records_in,
                bad_records = summary.bad_records,
                "finished in {took:.1?}: {} records read ({}/s), {} bad records",
                summary.records_in,
                human(rate),
                summary.bad_records
            );
            Ok(0)
        }
        Ok(Err(e)) => Err(CliError::failed(e.to_string())),
        Err(panic) => Err(CliError::failed(panic_error(&logging::panic_message(
            panic.as_ref(),
        )))),
    }
}

/// The one-line error for a panic that reached the top of a run.
pub(super) fn panic_error(msg: &str) -> String {
    let lost = [
        "Send thread panic",
        "Recv thread panic",
        "MergeQueue poisoned",
        "timely communication error",
    ];
    if lost.iter().any(|m| msg.contains(m)) {
        "lost the connection to another process of the job; see the log above and the other processes' errors".to_string()
    } else {
        format!("a thread panicked: {msg}")
    }
}

impl From<RuntimeError> for CliError {
    /// Errors while setting up (before workers run): the user's → exit 2, others → exit 1.
    fn from(e: RuntimeError) -> Self {
        match e.domain {
            crate::error::ErrorDomain::User => CliError::usage(e.to_string()),
            _ => CliError::failed(e.to_string()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::args::{parse, Command as Sub};
    use super::*;

    #[test]
    fn child_args_round_trip_through_the_parser() {
        let argv: Vec<OsString> = [
            "wc",
            "run",
            "--hosts",
            "my hosts.txt",
            "--node",
            "1",
            "--procs-per-node",
            "2",
            "--workers",
            "3",
            "--parallelism",
            "4",
            "--arg",
            "input=a b=c",
            "--arg",
            "x=-1",
            "--epoch-ms",
            "7",
            "--log-format",
            "json",
            "--connect-timeout",
            "9",
            "--plan-out",
            "p.json",
            "--http-port",
            "9000",
            "--http-bind",
            "0.0.0.0",
            "--http-token",
            "secret",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let Sub::Run(run) = parse("wordcount", "0", &argv).unwrap().command else {
            panic!("not run")
        };
        assert_eq!(run.hosts.as_deref(), Some(Path::new("my hosts.txt")));
        assert_eq!(run.args[0], ("input".to_string(), "a b=c".to_string()));
        let mut child: Vec<OsString> = vec!["wc".into()];
        child.extend(child_args(&run, 3));
        let Sub::Process(p) = parse("wordcount", "0", &child).unwrap().command else {
            panic!("not __process")
        };
        assert_eq!(p.process, 3);
        // The token reaches the processes through their environment, not their command line.
        assert!(!child.iter().any(|a| a.to_string_lossy().contains("secret")));
        assert_eq!(
            p.run,
            RunArgs {
                plan_out: None,
                http_token: None,
                ..run.clone()
            }
        );
    }

    #[test]
    fn process_k_serves_http_on_port_plus_k_and_process_0_reads_the_others_there() {
        let argv =
            |s: &str| -> Vec<OsString> { s.split_whitespace().map(OsString::from).collect() };
        let run = |s: &str| match parse("wc", "0", &argv(s)).unwrap().command {
            Sub::Run(r) => r,
            _ => panic!("not run"),
        };
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let procs = [
            (0, 0, ip("10.0.0.1")),
            (1, 0, ip("10.0.0.1")),
            (2, 1, ip("10.0.0.2")),
        ];
        let shown = |m: &Monitoring| -> Vec<String> {
            let addrs = m.addrs.as_deref().unwrap_or_default();
            addrs.iter().map(|(_, a)| a.to_string()).collect()
        };
        let m = Monitoring::new(&run("wc run --workers 1"), 0, 0, &procs);
        let addrs = shown(&m);
        // Loopback on this node; another node at its hosts-file address.
        assert_eq!(addrs, ["127.0.0.1:8081", "127.0.0.1:8082", "10.0.0.2:8083"]);
        let m = Monitoring::new(
            &run("wc run --workers 1 --http-port 9000 --http-bind 0.0.0.0"),
            2,
            1,
            &procs,
        );
        let addrs = shown(&m);
        assert_eq!(addrs, ["10.0.0.1:9000", "10.0.0.1:9001", "127.0.0.1:9002"]);
        assert!(!m.alone);
        let one = [(0, 0, ip("10.0.0.1"))];
        assert!(Monitoring::new(&run("wc run --workers 1"), 0, 0, &one).alone);
        let child = run("wc run --workers 1 --hosts h.txt --node 0");
        assert!(
            !Monitoring::new(&child, 0, 0, &one).alone,
            "launched: no cancel"
        );
        assert!(
            Monitoring::new(&run("wc run --workers 1 --no-http"), 0, 0, &procs)
                .addrs
                .is_none()
        );
        assert!(
            Monitoring::new(&run("wc run --workers 1 --http-port 0"), 0, 0, &procs)
                .addrs
                .is_none()
        );
        let m = Monitoring::new(&run("wc run --workers 1 --http-port 65535"), 0, 0, &procs);
        assert_eq!(m.addrs.unwrap().len(), 1, "ports past 65535 are left out");
    }

    #[test]
    fn progress_lines_show_the_share_the_rate_and_the_time_left() {
        let s = Duration::from_secs;
        assert_eq!(
            progress_line(500_000, Some(2_000_000), 100_000.0, s(5)),
            "0:05 500.0 k of 2.00 M records read (25 %), 100.0 k/s, 0:15 left"
        );
        assert_eq!(
            progress_line(12, Some(100), 0.0, s(61)),
            "1:01 12 of 100 records read (12 %), 0/s, time left unknown"
        );
        assert_eq!(
            progress_line(1_500, None, 300.0, s(1)),
            "0:01 1500 records read, 300/s"
        );
    }

    #[test]
    fn fixed_delay_allows_a_number_of_restarts_in_all() {
        let t0 = Instant::now();
        let mut p = RestartPolicy::new(RestartStrategy::FixedDelay, 2, Duration::from_secs(60));
        assert!(p.restart(t0));
        assert!(p.restart(t0 + Duration::from_secs(3600)));
        assert!(!p.restart(t0 + Duration::from_secs(7200)));
        let mut none = RestartPolicy::new(RestartStrategy::FixedDelay, 0, Duration::from_secs(60));
        assert!(!none.restart(t0));
    }

    #[test]
    fn failure_rate_allows_a_number_of_failures_per_interval() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = RestartPolicy::new(RestartStrategy::FailureRate, 2, s(60));
        assert!(p.restart(t0));
        assert!(p.restart(t0 + s(10)));
        // A third failure within 60 s of the first: give up.
        assert!(!p.restart(t0 + s(20)));
        // Failures spread out are restarted for ever.
        let mut p = RestartPolicy::new(RestartStrategy::FailureRate, 2, s(60));
        for i in 0..10 {
            assert!(p.restart(t0 + s(40 * i)), "failure {i}");
        }
    }

    #[test]
    fn panics_become_one_line_errors() {
        assert_eq!(panic_error("boom"), "a thread panicked: boom");
        assert!(panic_error("Recv thread panic: Any { .. }")
            .starts_with("lost the connection to another process"));
    }
}

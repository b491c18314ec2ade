//! The per-node launcher: start this node's processes, watch them, stop them all together.
//!
//! If one process fails (non-zero exit or a signal), the others are killed and the failure
//! is reported; if the launcher is asked to stop (SIGINT, SIGTERM), it passes SIGTERM on,
//! waits a grace period, then kills. Children die with the launcher even if it is killed
//! with SIGKILL (Linux `PR_SET_PDEATHSIG`).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

pub use super::heartbeat::PeerLoss;

/// What the launcher learns about the other nodes while it supervises (their launchers'
/// heartbeats, [`super::heartbeat::Heartbeats`]).
pub trait PeerWatch {
    /// A process of this node finished (exit 0): the job is ending.
    fn finishing(&self);
    /// Whether another node is lost; polled with the children.
    fn lost(&self) -> Option<PeerLoss>;
}

/// No other nodes to watch.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPeers;

impl PeerWatch for NoPeers {
    fn finishing(&self) {}
    fn lost(&self) -> Option<PeerLoss> {
        None
    }
}

/// One process for the launcher to start.
#[derive(Debug)]
pub struct ChildSpec {
    /// Global process index.
    pub process: usize,
    /// Node index.
    pub node: usize,
    /// The address the process listens on (for messages).
    pub addr: SocketAddr,
    /// How to start it (program, arguments, environment; stdio is inherited).
    pub command: Command,
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

impl ChildExit {
    /// From a standard exit status.
    pub fn from_status(status: ExitStatus) -> ChildExit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(c), _) => ChildExit::Code(c),
            (None, Some(s)) => ChildExit::Signal(s),
            (None, None) => ChildExit::Code(-1),
        }
    }

    /// Whether it exited with code 0.
    pub fn success(self) -> bool {
        self == ChildExit::Code(0)
    }
}

/// A signal's conventional name, when it is a common one.
pub fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => return None,
    })
}

impl fmt::Display for ChildExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ChildExit::Code(c) => write!(f, "exit code {c}"),
            ChildExit::Signal(s) => match signal_name(s) {
                Some(name) => write!(f, "killed by signal {s} ({name})"),
                None => write!(f, "killed by signal {s}"),
            },
        }
    }
}

/// How a launch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every process exited with code 0.
    Succeeded,
    /// A process failed; the others were killed.
    Failed {
        /// Global index of the first process seen failing.
        process: usize,
        /// Its node.
        node: usize,
        /// Its address.
        addr: SocketAddr,
        /// How it ended.
        exit: ChildExit,
    },
    /// The launcher was asked to stop by this signal; the processes were stopped.
    Interrupted {
        /// The signal number.
        signal: i32,
    },
    /// Another node was lost (see [`super::heartbeat`]); this node's processes were killed.
    PeerLost(PeerLoss),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Succeeded => f.write_str("every process finished"),
            Outcome::Failed {
                process,
                node,
                addr,
                exit,
            } => write!(f, "process {process} (node {node}, {addr}) failed: {exit}"),
            Outcome::Interrupted { signal } => match signal_name(*signal) {
                Some(name) => write!(f, "stopped by {name}"),
                None => write!(f, "stopped by signal {signal}"),
            },
            Outcome::PeerLost(loss) => loss.fmt(f),
        }
    }
}

/// How to supervise.
#[derive(Debug, Clone)]
pub struct Supervision {
    /// How often to look at the children.
    pub poll: Duration,
    /// After asking the children to stop (SIGTERM), how long to wait before killing them.
    pub grace: Duration,
    /// Make each child die when the launcher dies (Linux only).
    pub die_with_launcher: bool,
    /// After a first failure, how long to watch the other processes before choosing whom
    /// to blame and killing the rest.
    pub settle: Duration,
}

impl Default for Supervision {
    fn default() -> Self {
        Supervision {
            poll: Duration::from_millis(50),
            grace: Duration::from_secs(5),
            die_with_launcher: true,
            settle: Duration::from_millis(250),
        }
    }
}

/// A started child.
struct Running {
    process: usize,
    node: usize,
    addr: SocketAddr,
    child: Child,
    exit: Option<ChildExit>,
}

/// Start every child, then wait until all exit 0, one fails, or `interrupted` returns a
/// signal number. Errors are failures to start a child (those already started are killed).
/// `interrupted` is polled every `sup.poll`; pass [`take_signal`] after
/// [`install_signal_handlers`], or `|| None`.
pub fn supervise(
    specs: Vec<ChildSpec>,
    sup: &Supervision,
    interrupted: &dyn Fn() -> Option<i32>,
) -> io::Result<Outcome> {
    supervise_watching(specs, sup, interrupted, &NoPeers)
}

/// [`supervise`], also ending with [`Outcome::PeerLost`] (this node's processes killed)
/// when `peers` reports another node lost while no process of this node failed or finished.
pub fn supervise_watching(
    specs: Vec<ChildSpec>,
    sup: &Supervision,
    interrupted: &dyn Fn() -> Option<i32>,
    peers: &dyn PeerWatch,
) -> io::Result<Outcome> {
    let mut running: Vec<Running> = Vec::with_capacity(specs.len());
    for mut spec in specs {
        if sup.die_with_launcher {
            die_with_parent(&mut spec.command);
        }
        match spec.command.spawn() {
            Ok(child) => {
                tracing::debug!(process = spec.process, pid = child.id(), addr = %spec.addr, "started");
                running.push(Running {
                    process: spec.process,
                    node: spec.node,
                    addr: spec.addr,
                    child,
                    exit: None,
                });
            }
            Err(e) => {
                kill_all(&mut running);
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot start process {}: {e}", spec.process),
                ));
            }
        }
    }
    // Failures seen so far: (poll round, process position, how it ended).
    let mut failures: Vec<(u64, usize, ChildExit)> = Vec::new();
    let mut first_failure: Option<Instant> = None;
    // Once a process finished, the job's dataflow is complete: other nodes' silence no
    // longer matters.
    let mut finishing = false;
    let mut round = 0u64;
    loop {
        if let Some(signal) = interrupted() {
            tracing::info!(
                "stopping {} process{} ({})",
                running.len(),
                if running.len() == 1 { "" } else { "es" },
                Outcome::Interrupted { signal }
            );
            stop_all(&mut running, sup, interrupted);
            return Ok(Outcome::Interrupted { signal });
        }
        round += 1;
        for (i, r) in running
            .iter_mut()
            .enumerate()
            .filter(|(_, r)| r.exit.is_none())
        {
            match r.child.try_wait() {
                Ok(Some(status)) => {
                    let exit = ChildExit::from_status(status);
                    r.exit = Some(exit);
                    if exit.success() {
                        tracing::debug!(process = r.process, "process finished");
                        finishing = true;
                        peers.finishing();
                    } else {
                        failures.push((round, i, exit));
                        first_failure.get_or_insert_with(Instant::now);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(process = r.process, "cannot check on the process: {e}");
                }
            }
        }
        let all_done = running.iter().all(|r| r.exit.is_some());
        if let Some(since) = first_failure {
            // One failure makes the other processes fail soon after (lost connections):
            // give them a moment, then blame a death by signal first, else the first seen.
            if all_done || since.elapsed() >= sup.settle {
                // A Ctrl-C reaches the children too: if the launcher was signalled as
                // well, that is the story, not the children's deaths.
                if let Some(signal) = interrupted() {
                    stop_all(&mut running, sup, interrupted);
                    return Ok(Outcome::Interrupted { signal });
                }
                kill_all(&mut running);
                let blamed = failures.iter().min_by_key(|(round, i, exit)| {
                    (!matches!(exit, ChildExit::Signal(_)), *round, *i)
                });
                if let Some(&(_, i, exit)) = blamed {
                    let r = &running[i];
                    return Ok(Outcome::Failed {
                        process: r.process,
                        node: r.node,
                        addr: r.addr,
                        exit,
                    });
                }
            }
        } else if all_done {
            return Ok(Outcome::Succeeded);
        } else if let Some(loss) = (!finishing).then(|| peers.lost()).flatten() {
            // The processes are blocked on connections that will never break: kill them.
            kill_all(&mut running);
            return Ok(Outcome::PeerLost(loss));
        }
        std::thread::sleep(sup.poll);
    }
}

/// Kill (SIGKILL) every child still running and reap them all.
fn kill_all(running: &mut [Running]) {
    for r in running.iter_mut().filter(|r| r.exit.is_none()) {
        let _ = r.child.kill();
    }
    for r in running.iter_mut().filter(|r| r.exit.is_none()) {
        if let Ok(status) = r.child.wait() {
            r.exit = Some(ChildExit::from_status(status));
        }
    }
}

/// Ask every child still running to stop (SIGTERM), wait up to the grace period (or a
/// second signal), then kill what is left.
fn stop_all(running: &mut [Running], sup: &Supervision, interrupted: &dyn Fn() -> Option<i32>) {
    for r in running.iter_mut().filter(|r| r.exit.is_none()) {
        terminate(&r.child);
    }
    let until = Instant::now() + sup.grace;
    while Instant::now() < until && interrupted().is_none() {
        let mut all = true;
        for r in running.iter_mut().filter(|r| r.exit.is_none()) {
            match r.child.try_wait() {
                Ok(Some(status)) => r.exit = Some(ChildExit::from_status(status)),
                _ => all = false,
            }
        }
        if all {
            return;
        }
        std::thread::sleep(sup.poll);
    }
    kill_all(running);
}

#[cfg(unix)]
fn terminate(child: &Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid is async-signal-safe; it is read before forking.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe functions (prctl, getppid) without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The launcher may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// The last SIGINT/SIGTERM received since [`install_signal_handlers`], 0 if none.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

/// Catch SIGINT and SIGTERM (and SIGHUP) so that the launcher can stop its processes
/// before exiting; see [`take_signal`].
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as *const () as libc::sighandler_t,
            );
        }
    }
}

/// The signal caught since the last call, if any.
pub fn take_signal() -> Option<i32> {
    match SIGNAL.swap(0, Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn sh(process: usize, script: &str) -> ChildSpec {
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(script);
        ChildSpec {
            process,
            node: 0,
            addr: format!("127.0.0.1:{}", 7000 + process).parse().unwrap(),
            command,
        }
    }

    fn fast() -> Supervision {
        Supervision {
            poll: Duration::from_millis(10),
            grace: Duration::from_secs(2),
            die_with_launcher: true,
            settle: Duration::from_millis(250),
        }
    }

    #[test]
    fn all_succeed() {
        let out = supervise(
            vec![sh(0, "exit 0"), sh(1, "sleep 0.2; exit 0")],
            &fast(),
            &|| None,
        )
        .unwrap();
        assert_eq!(out, Outcome::Succeeded);
    }

    #[test]
    fn a_failure_kills_the_others() {
        let started = Instant::now();
        let out = supervise(
            vec![
                sh(0, "sleep 30"),
                sh(1, "sleep 0.2; exit 3"),
                sh(2, "sleep 30"),
            ],
            &fast(),
            &|| None,
        )
        .unwrap();
        assert_eq!(
            out,
            Outcome::Failed {
                process: 1,
                node: 0,
                addr: "127.0.0.1:7001".parse().unwrap(),
                exit: ChildExit::Code(3)
            }
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            out.to_string(),
            "process 1 (node 0, 127.0.0.1:7001) failed: exit code 3"
        );
    }

    #[test]
    fn a_death_by_signal_is_blamed_before_the_exits_it_causes() {
        // Process 1 is killed; process 0 notices a moment later and exits 1.
        let out = supervise(
            vec![
                sh(0, "sleep 0.3; exit 1"),
                sh(1, "sleep 0.2; kill -9 $$"),
                sh(2, "sleep 30"),
            ],
            &fast(),
            &|| None,
        )
        .unwrap();
        assert_eq!(
            out.to_string(),
            "process 1 (node 0, 127.0.0.1:7001) failed: killed by signal 9 (SIGKILL)"
        );
        // Without a signal, the first failure seen is blamed.
        let out = supervise(
            vec![
                sh(0, "sleep 0.4; exit 1"),
                sh(1, "sleep 0.2; exit 2"),
                sh(2, "sleep 30"),
            ],
            &fast(),
            &|| None,
        )
        .unwrap();
        assert_eq!(
            out.to_string(),
            "process 1 (node 0, 127.0.0.1:7001) failed: exit code 2"
        );
    }

    #[test]
    fn death_by_signal_is_reported() {
        let out = supervise(vec![sh(0, "kill -9 $$")], &fast(), &|| None).unwrap();
        assert_eq!(
            out.to_string(),
            "process 0 (node 0, 127.0.0.1:7000) failed: killed by signal 9 (SIGKILL)"
        );
    }

    #[test]
    fn interruption_stops_everyone() {
        let started = Instant::now();
        let fired = AtomicBool::new(false);
        let interrupted = || {
            if started.elapsed() > Duration::from_millis(200) && !fired.swap(true, Ordering::SeqCst)
            {
                Some(15)
            } else {
                None
            }
        };
        let out = supervise(
            vec![sh(0, "sleep 30"), sh(1, "sleep 30")],
            &fast(),
            &interrupted,
        )
        .unwrap();
        assert_eq!(out, Outcome::Interrupted { signal: 15 });
        assert_eq!(out.to_string(), "stopped by SIGTERM");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_child_that_cannot_start_is_an_error() {
        let mut bad = sh(1, "");
        bad.command = Command::new("/nonexistent/weir-job");
        let e = supervise(vec![sh(0, "sleep 30"), bad], &fast(), &|| None).unwrap_err();
        assert!(e.to_string().starts_with("cannot start process 1: "), "{e}");
    }

    /// Reports a lost node after a delay; counts the finished processes it was told of.
    struct LoseAfter {
        at: Instant,
        finished: std::sync::atomic::AtomicUsize,
    }

    impl LoseAfter {
        fn in_ms(ms: u64) -> LoseAfter {
            LoseAfter {
                at: Instant::now() + Duration::from_millis(ms),
                finished: Default::default(),
            }
        }

        fn supervise(&self, specs: Vec<ChildSpec>) -> Outcome {
            supervise_watching(specs, &fast(), &|| None, self).unwrap()
        }
    }

    impl PeerWatch for LoseAfter {
        fn finishing(&self) {
            self.finished.fetch_add(1, Ordering::SeqCst);
        }
        fn lost(&self) -> Option<PeerLoss> {
            (Instant::now() >= self.at).then(|| PeerLoss::Silent {
                node: 1,
                addr: "10.200.0.2:7000".parse().unwrap(),
                silent_for: Duration::from_secs(10),
                timeout: Duration::from_secs(10),
            })
        }
    }

    #[test]
    fn a_lost_node_kills_this_nodes_processes() {
        let started = Instant::now();
        let watch = LoseAfter::in_ms(200);
        let out = watch.supervise(vec![sh(0, "sleep 30"), sh(1, "sleep 30")]);
        assert!(
            matches!(out, Outcome::PeerLost(PeerLoss::Silent { node: 1, .. })),
            "{out}"
        );
        assert!(
            out.to_string()
                .starts_with("node 1 (10.200.0.2:7000) is silent"),
            "{out}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_finished_process_ends_the_watch_and_a_failure_wins_over_a_lost_node() {
        // Process 0 finishes before the node is lost: the launcher waits for process 1.
        let watch = LoseAfter::in_ms(200);
        let out = watch.supervise(vec![sh(0, "exit 0"), sh(1, "sleep 0.5; exit 0")]);
        assert_eq!(out, Outcome::Succeeded);
        assert_eq!(watch.finished.load(Ordering::SeqCst), 2);
        // A process failure seen first is what is reported.
        let watch = LoseAfter::in_ms(150);
        let out = watch.supervise(vec![sh(0, "sleep 0.05; exit 4"), sh(1, "sleep 30")]);
        assert_eq!(
            out.to_string(),
            "process 0 (node 0, 127.0.0.1:7000) failed: exit code 4"
        );
    }

    #[test]
    fn exit_descriptions() {
        assert_eq!(ChildExit::Code(2).to_string(), "exit code 2");
        assert_eq!(ChildExit::Signal(64).to_string(), "killed by signal 64");
        assert!(ChildExit::Code(0).success());
    }
}

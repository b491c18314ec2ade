//! Helpers for tests that run job binaries end to end.
//!
//! A job crate's integration tests get the binary from Cargo
//! (`env!("CARGO_BIN_EXE_<name>")`) and drive it through [`JobBinary`]:
//!
//! ```no_run
//! use weir_runtime::testing::{JobBinary, Shape, TempDir, read_parts};
//!
//! let job = JobBinary::new("/path/to/wordcount");
//! let dir = TempDir::new("wordcount");
//! let out = dir.join("out");
//! let args = ["--arg".to_string(), format!("output={}", out.display()), "--arg".into(), "input=data.txt".into()];
//! // One process of 4 workers; 1 node × 2 processes × 2 workers; 2 nodes × 1 process × 2 workers.
//! for shape in [Shape::single(4), Shape::procs(2, 2), Shape::nodes(2, 1, 2)] {
//!     let runs = job.run_shape(shape, dir.path(), &args);
//!     weir_runtime::testing::assert_all_succeeded(&runs);
//!     let parts = read_parts(&out);
//! }
//! ```
//!
//! Every process a helper starts runs under a hard timeout ([`PROCESS_TIMEOUT`] unless told
//! otherwise): a hung job is killed with its whole process group and the test fails with
//! what the job printed, instead of blocking CI. Started processes also die with the test
//! (Linux `PR_SET_PDEATHSIG`), so an aborted test leaves no job running.
//!
//! This is test support: the helpers panic with a clear message instead of returning errors.

#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod proxy;
#[cfg(feature = "redis")]
pub mod redis;

use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long any one process started by these helpers may run before it is killed and the
/// test fails.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

/// A counter making names and random seeds unique within the test process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64 of the mix, so that consecutive calls land far apart.
    let mut z =
        nanos ^ (u64::from(std::process::id()) << 32) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------------------
// Scratch directories
// ---------------------------------------------------------------------------------------

/// A fresh directory under the system temp directory, removed when dropped — unless the
/// test is panicking, then it is kept (and its path printed) for inspection if it holds at
/// most 64 MiB.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Create `weir-test-<label>-<unique>` in the system temp directory.
    pub fn new(label: &str) -> TempDir {
        let base = std::env::temp_dir();
        for _ in 0..100 {
            let path = base.join(format!(
                "weir-test-{label}-{}-{:016x}",
                std::process::id(),
                unique_seed()
            ));
            match fs::create_dir(&path) {
                Ok(()) => return TempDir { path },
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create a temp directory {}: {e}", path.display()),
            }
        }
        panic!(
            "cannot create a unique temp directory under {}",
            base.display()
        )
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }
}

/// A failed test's directory larger than this is removed anyway (a job gone wrong can write
/// gigabytes).
const KEEP_AT_MOST: u64 = 64 << 20;

fn disk_usage(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::read_dir(path).map_or(0, |it| {
            it.filter_map(Result::ok)
                .map(|e| disk_usage(&e.path()))
                .sum()
        }),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let size = disk_usage(&self.path);
            if size <= KEEP_AT_MOST {
                eprintln!(
                    "test failed: keeping {} for inspection",
                    self.path.display()
                );
                return;
            }
            eprintln!(
                "test failed: removing {} anyway, it holds {} MiB",
                self.path.display(),
                size >> 20
            );
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------------
// Ports and hosts files
// ---------------------------------------------------------------------------------------

/// A free TCP port on 127.0.0.1: bind port 0, read the port the kernel chose, release it.
///
/// The port is in the kernel's ephemeral range, which outgoing connections use too: for
/// ports that job processes will listen on, prefer [`free_port_block`].
pub fn free_port() -> u16 {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"),
    }
}

/// Whether `port` can be bound on 127.0.0.1 right now, over TCP (job processes) and UDP
/// (a node's launcher takes its heartbeat port on its base port number).
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        && std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// The kernel's ephemeral port range (`/proc/sys/net/ipv4/ip_local_port_range`), or Linux's
/// default.
fn ephemeral_range() -> (u16, u16) {
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .filter_map(|s| s.parse::<u16>().ok());
    match (it.next(), it.next()) {
        (Some(lo), Some(hi)) if lo <= hi => (lo, hi),
        _ => (32768, 60999),
    }
}

/// Blocks handed out by this test process, so that tests running in parallel threads never
/// get overlapping ports.
static CLAIMED: Mutex<Vec<(u16, u16)>> = Mutex::new(Vec::new());

/// The first of `len` consecutive ports on 127.0.0.1 that are all free now.
///
/// Ports are chosen at run time, at a random place outside the kernel's ephemeral range
/// (where the job processes' own outgoing connections, and those of tests running in
/// parallel, take their ports), checked by binding each one, and never handed out twice
/// by this process. Tests in other processes (nextest) start at other random places;
/// the remaining window (between this check and the job binding) is small.
pub fn free_port_block(len: u16) -> u16 {
    assert!(len >= 1, "free_port_block: ask for at least one port");
    let (eph_lo, eph_hi) = ephemeral_range();
    // The widest window outside the ephemeral range, above the well-known/registered zone.
    let below = (10_000u16, eph_lo.saturating_sub(1));
    let above = (eph_hi.saturating_add(1), u16::MAX);
    let span = |(lo, hi): (u16, u16)| if hi > lo { usize::from(hi - lo) } else { 0 };
    let (lo, hi) = if span(below) >= span(above) {
        below
    } else {
        above
    };
    let (lo, hi) = if span((lo, hi)) > usize::from(len) * 16 {
        (lo, hi)
    } else {
        (1024, u16::MAX)
    };
    let slots = (usize::from(hi - lo) + 1) / usize::from(len);
    let mut claimed = match CLAIMED.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    for _ in 0..2000 {
        let slot = (unique_seed() % slots as u64) as usize;
        let Ok(base) = u16::try_from(usize::from(lo) + slot * usize::from(len)) else {
            continue;
        };
        let Some(last) = base.checked_add(len - 1) else {
            continue;
        };
        if claimed.iter().any(|&(b, l)| base <= l && b <= last) {
            continue;
        }
        if (base..=last).all(port_is_free) {
            claimed.push((base, last));
            return base;
        }
    }
    panic!("cannot find {len} consecutive free ports on 127.0.0.1 between {lo} and {hi}")
}

/// Write a hosts file: one `IP:PORT` line per node, after a comment line.
pub fn write_hosts_file(path: &Path, nodes: &[SocketAddr]) {
    let mut text = String::from("# written by weir_runtime::testing\n");
    for n in nodes {
        text.push_str(&format!("{n}\n"));
    }
    if let Err(e) = fs::write(path, text) {
        panic!("cannot write hosts file {}: {e}", path.display());
    }
}

/// The shape of a run: `nodes × procs_per_node` processes of `workers` threads.
///
/// [`Shape::single`] runs `run --workers W` (one process, no hosts file); any other shape
/// runs one launcher per node (`run --hosts … --node n --procs-per-node P --workers W`), all
/// nodes on 127.0.0.1 with their own base ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Nodes (lines of the hosts file; one launcher each).
    pub nodes: usize,
    /// Processes per node.
    pub procs_per_node: usize,
    /// Worker threads per process.
    pub workers: usize,
}

impl Shape {
    /// One process with `workers` threads, started without a hosts file.
    pub fn single(workers: usize) -> Shape {
        Shape {
            nodes: 0,
            procs_per_node: 1,
            workers,
        }
    }

    /// One node (one launcher) starting `procs` processes of `workers` threads.
    pub fn procs(procs: usize, workers: usize) -> Shape {
        Shape {
            nodes: 1,
            procs_per_node: procs,
            workers,
        }
    }

    /// `nodes` launchers on 127.0.0.1, each starting `procs_per_node` processes.
    pub fn nodes(nodes: usize, procs_per_node: usize, workers: usize) -> Shape {
        Shape {
            nodes,
            procs_per_node,
            workers,
        }
    }

    /// Whether this is a single process started without a hosts file.
    pub fn is_single(&self) -> bool {
        self.nodes == 0
    }

    /// Nodes of the cluster (1 for a single process).
    pub fn cluster_nodes(&self) -> usize {
        self.nodes.max(1)
    }

    /// Total worker slots.
    pub fn slots(&self) -> usize {
        self.cluster_nodes() * self.procs_per_node * self.workers
    }

    /// Total processes.
    pub fn processes(&self) -> usize {
        self.cluster_nodes() * self.procs_per_node
    }

    /// The flags that make `explain` resolve the plan for this shape.
    pub fn explain_args(&self) -> Vec<String> {
        vec![
            "--nodes".into(),
            self.cluster_nodes().to_string(),
            "--procs-per-node".into(),
            self.procs_per_node.to_string(),
            "--workers".into(),
            self.workers.to_string(),
        ]
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "1 process × {} workers (no hosts file)", self.workers)
        } else {
            write!(
                f,
                "{} nodes × {} processes × {} workers",
                self.nodes, self.procs_per_node, self.workers
            )
        }
    }
}

/// A cluster on 127.0.0.1: a hosts file whose nodes have non-overlapping port ranges.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    /// Base address of every node, as written in the hosts file.
    pub nodes: Vec<SocketAddr>,
    /// Processes per node (node `n`'s process `k` listens on `nodes[n]` port + k).
    pub procs_per_node: usize,
    /// The hosts file.
    pub hosts_file: PathBuf,
}

impl LocalCluster {
    /// Reserve ports for `nodes × procs_per_node` processes and write `dir/hosts.txt`.
    pub fn new(dir: &Path, nodes: usize, procs_per_node: usize) -> LocalCluster {
        LocalCluster::with_hosts_file(dir.join("hosts.txt"), nodes, procs_per_node)
    }

    /// As [`LocalCluster::new`], writing the hosts file at `hosts_file`.
    pub fn with_hosts_file(
        hosts_file: PathBuf,
        nodes: usize,
        procs_per_node: usize,
    ) -> LocalCluster {
        assert!(
            nodes >= 1 && procs_per_node >= 1,
            "a cluster needs at least one node and one process per node"
        );
        let total = u16::try_from(nodes * procs_per_node)
            .unwrap_or_else(|_| panic!("too many processes: {nodes} × {procs_per_node}"));
        let base = free_port_block(total);
        let nodes: Vec<SocketAddr> = (0..nodes)
            .map(|n| {
                // Fits: the whole block was checked to lie below 65536.
                let port = base + u16::try_from(n * procs_per_node).unwrap_or(0);
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
            })
            .collect();
        write_hosts_file(&hosts_file, &nodes);
        LocalCluster {
            nodes,
            procs_per_node,
            hosts_file,
        }
    }

    /// Where global process `process` listens.
    pub fn process_addr(&self, process: usize) -> SocketAddr {
        let node = process / self.procs_per_node;
        let local = process % self.procs_per_node;
        let mut addr = self.nodes[node];
        addr.set_port(addr.port() + u16::try_from(local).unwrap_or(0));
        addr
    }

    /// Total processes.
    pub fn processes(&self) -> usize {
        self.nodes.len() * self.procs_per_node
    }
}

// ---------------------------------------------------------------------------------------
// Processes with a hard timeout
// ---------------------------------------------------------------------------------------

/// What a finished process did.
#[derive(Debug)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything it wrote to stderr (lossy UTF-8).
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl Output {
    /// The exit code, or `None` if a signal ended it.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The non-blank lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// Panic (showing everything it printed) unless it exited with code 0.
    pub fn assert_success(&self) -> &Output {
        assert!(self.success(), "expected success:\n{self}");
        self
    }

    /// Panic unless it exited with `code` and wrote exactly one line to stderr, starting
    /// with `error: `; return that line.
    pub fn assert_one_line_error(&self, code: i32) -> &str {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit code {code}:\n{self}"
        );
        let lines = self.stderr_lines();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line on stderr:\n{self}"
        );
        assert!(
            lines[0].starts_with("error: "),
            "expected the stderr line to start with `error: `:\n{self}"
        );
        lines[0]
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}", self.command)?;
        writeln!(
            f,
            "{} after {:.1} s",
            self.status,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

/// A command line as a shell would show it (for messages).
pub fn display_command(cmd: &Command) -> String {
    let quote = |s: &OsStr| {
        let s = s.to_string_lossy();
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@+".contains(c))
        {
            s.into_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

fn reader(mut from: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = from.read_to_end(&mut buf);
        buf
    })
}

/// A process started by [`Spawned::spawn`], in its own process group, with stdout and
/// stderr captured.
///
/// Wait for it from the thread that started it: the process is killed when that thread
/// ends (`PR_SET_PDEATHSIG` follows the spawning thread).
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    command: String,
    started: Instant,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Spawned {
    /// Start `cmd` (stdin closed, stdout and stderr captured) in a new process group.
    pub fn spawn(mut cmd: Command) -> Spawned {
        use std::os::unix::process::CommandExt;
        let command = display_command(&cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        die_with_test(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
        let stdout = child.stdout.take().map(reader);
        let stderr = child.stderr.take().map(reader);
        Spawned {
            child,
            command,
            started: Instant::now(),
            stdout,
            stderr,
        }
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The command line.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait until it exits; if it is still running after `timeout`, kill its process group
    /// and panic with what it printed.
    pub fn wait(self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        self.wait_until(deadline)
    }

    /// [`Spawned::wait`] with an absolute deadline.
    pub fn wait_until(mut self, deadline: Instant) -> Output {
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    self.kill_group();
                    let status = self.child.wait().ok();
                    let out = self.collect(status);
                    match out {
                        Some(out) => panic!(
                            "timed out: killed the process group after {:.1} s\n{out}",
                            out.elapsed.as_secs_f64()
                        ),
                        None => panic!("timed out: killed `{}`", self.command),
                    }
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("cannot wait for `{}`: {e}", self.command),
            }
        };
        // The process exited; anything it left running in its group (a launcher's children)
        // would keep the pipes open: give them a moment, then kill them.
        let grace = Instant::now() + Duration::from_secs(5);
        while !self.readers_done() && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !self.readers_done() {
            self.kill_group();
        }
        match self.collect(Some(status)) {
            Some(out) => out,
            None => panic!("lost the exit status of `{}`", self.command),
        }
    }

    fn readers_done(&self) -> bool {
        self.stdout.as_ref().is_none_or(JoinHandle::is_finished)
            && self.stderr.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// SIGKILL the whole process group (the process and whatever it started).
    pub fn kill_group(&mut self) {
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group we created for our own child.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
    }

    fn collect(&mut self, status: Option<ExitStatus>) -> Option<Output> {
        let text = |h: Option<JoinHandle<Vec<u8>>>| {
            h.and_then(|h| h.join().ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let stdout = text(self.stdout.take());
        let stderr = text(self.stderr.take());
        status.map(|status| Output {
            command: self.command.clone(),
            status,
            stdout,
            stderr,
            elapsed: self.started.elapsed(),
        })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // Never leave a job running behind a failed test.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill_group();
            let _ = self.child.wait();
        }
    }
}

#[cfg(target_os = "linux")]
fn die_with_test(cmd: &mut Command) {
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
            if libc::getppid() != parent {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_test(_cmd: &mut Command) {}

/// Run `cmd` to the end under a hard `timeout` (see [`Spawned::wait`]).
pub fn run_with_timeout(cmd: Command, timeout: Duration) -> Output {
    Spawned::spawn(cmd).wait(timeout)
}

/// Panic, showing every process's output, unless every one exited with code 0.
pub fn assert_all_succeeded(outputs: &[Output]) {
    if outputs.iter().all(Output::success) {
        return;
    }
    let all = outputs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n\n");
    panic!("expected every process to succeed:\n{all}");
}

/// The ids of the processes whose parent is `pid` (from `/proc/*/stat`).
pub fn child_pids(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|&p| parent_pid(p) == Some(pid))
        .collect();
    out.sort_unstable();
    out
}

/// The parent of process `pid`, from `/proc/<pid>/stat` (the field after `(comm)`).
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

/// Whether process `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X"),
        Err(_) => false,
    }
}

/// Wait until `pid` has at least `n` children, and return them; panic after `timeout`.
pub fn wait_for_children(pid: u32, n: usize, timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let kids = child_pids(pid);
        if kids.len() >= n {
            return kids;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} has {} children after {timeout:?}, expected {n}",
            kids.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kill job process `index` of a node's launcher (pid `launcher`, running `procs` job
/// processes) with SIGKILL, then wait until the launcher runs `procs` processes again, none
/// of them the killed one; returns the killed pid. Panics after 30 s.
pub fn kill_and_wait_for_restart(launcher: u32, procs: usize, index: usize) -> u32 {
    let victim = kill_job_process(launcher, procs, index);
    wait_for_restart(launcher, procs, victim);
    victim
}

/// The global process index a job process was started as (`__process --process=K`).
pub fn process_index(pid: u32) -> Option<usize> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    args.iter()
        .find_map(|a| a.strip_prefix("--process="))
        .and_then(|k| k.parse().ok())
}

/// The flags of the checkpoint kill tests: a checkpoint every 200 ms into `checkpoints`,
/// restarts after 100 ms.
pub fn fast_checkpoint_flags(checkpoints: &Path) -> Vec<String> {
    vec![
        "--checkpoint-interval".to_string(),
        "200ms".into(),
        "--checkpoint-dir".into(),
        checkpoints.display().to_string(),
        "--restart-delay".into(),
        "100ms".into(),
    ]
}

/// SIGKILL the child of `launcher` that runs as process `process` (waiting until the
/// launcher started `children` processes).
pub fn kill_child_process(launcher: &Spawned, children: usize, process: usize) {
    kill_job_process(launcher.pid(), children, process);
}

/// SIGKILL the job process that launcher `launcher_pid` runs as process `index` (waiting
/// until it runs `processes` of them); returns the killed pid.
pub fn kill_job_process(launcher_pid: u32, processes: usize, index: usize) -> u32 {
    // A child just forked still shows the launcher's command line until it has exec'd.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let victim = wait_for_children(launcher_pid, processes, Duration::from_secs(20))
            .into_iter()
            .find(|&k| process_index(k) == Some(index));
        if let Some(victim) = victim {
            send_signal(victim, 9);
            return victim;
        }
        assert!(
            Instant::now() < deadline,
            "no child runs as process {index}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait until launcher `launcher_pid` runs `processes` job processes again, none of them
/// `gone`; panics after 30 s.
pub fn wait_for_restart(launcher_pid: u32, processes: usize, gone: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let kids = child_pids(launcher_pid);
        if kids.len() == processes
            && !kids.contains(&gone)
            && kids.iter().all(|&k| process_index(k).is_some())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the launcher did not restart its processes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait until something accepts connections on 127.0.0.1:`port` (a server a test started);
/// panics after 20 s naming `what`.
pub fn wait_for_port(port: u16, what: &str) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until a checkpointing file sink made a part file visible, which happens only once
/// a checkpoint is complete on every worker.
pub fn wait_for_a_complete_checkpoint(out_dir: &Path, launcher: &mut Spawned) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let visible = std::fs::read_dir(out_dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().starts_with("part-"))
            })
            .unwrap_or(false);
        if visible {
            return;
        }
        assert!(
            launcher.is_running(),
            "the job ended before its first checkpoint completed"
        );
        assert!(
            Instant::now() < deadline,
            "no checkpoint completed within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Send `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: i32) {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        panic!("pid {pid} out of range")
    };
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(p, signal) };
    assert_eq!(
        rc,
        0,
        "cannot send signal {signal} to process {pid}: {}",
        io::Error::last_os_error()
    );
}

// ---------------------------------------------------------------------------------------
// Job binaries
// ---------------------------------------------------------------------------------------

/// A job binary and how to run it in tests.
#[derive(Debug, Clone)]
pub struct JobBinary {
    path: PathBuf,
    timeout: Duration,
}

impl JobBinary {
    /// The binary at `path` (usually `env!("CARGO_BIN_EXE_<name>")`), with
    /// [`PROCESS_TIMEOUT`] per process.
    pub fn new(path: impl Into<PathBuf>) -> JobBinary {
        JobBinary {
            path: path.into(),
            timeout: PROCESS_TIMEOUT,
        }
    }

    /// Use another hard timeout per process.
    pub fn with_timeout(mut self, timeout: Duration) -> JobBinary {
        self.timeout = timeout;
        self
    }

    /// The binary.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The hard timeout per process.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A command running the binary with `args`; logs uncoloured at the default level
    /// (`RUST_LOG` and `NO_COLOR` of the test's environment do not leak in).
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.path);
        cmd.args(args).env_remove("RUST_LOG").env("NO_COLOR", "1");
        cmd
    }

    /// Run the binary with `args` to the end (under the timeout).
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_with_timeout(self.command(args), self.timeout)
    }

    /// Start the binary with `args` without waiting.
    pub fn spawn<I, S>(&self, args: I) -> Spawned
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Spawned::spawn(self.command(args))
    }

    /// `run --workers W <extra>`: one process, no hosts file.
    pub fn run_single<S: AsRef<OsStr>>(&self, workers: usize, extra: &[S]) -> Output {
        let mut args: Vec<std::ffi::OsString> =
            vec!["run".into(), "--workers".into(), workers.to_string().into()];
        args.extend(extra.iter().map(|s| s.as_ref().to_os_string()));
        self.run(args)
    }

    /// The arguments of node `node`'s launcher in `cluster`: `run --hosts F --node n
    /// --procs-per-node P --workers W <extra>`.
    pub fn node_args<S: AsRef<OsStr>>(
        &self,
        cluster: &LocalCluster,
        node: usize,
        workers: usize,
        extra: &[S],
    ) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "run".into(),
            "--hosts".into(),
            cluster.hosts_file.clone().into_os_string(),
            "--node".into(),
            node.to_string().into(),
            "--procs-per-node".into(),
            cluster.procs_per_node.to_string().into(),
            "--workers".into(),
            workers.to_string().into(),
        ];
        args.extend(extra.iter().map(|s| s.as_ref().to_os_string()));
        args
    }

    /// Start node `node`'s launcher without waiting.
    pub fn spawn_node<S: AsRef<OsStr>>(
        &self,
        cluster: &LocalCluster,
        node: usize,
        workers: usize,
        extra: &[S],
    ) -> Spawned {
        self.spawn(self.node_args(cluster, node, workers, extra))
    }

    /// Start every node's launcher of `cluster` at once and wait for all of them (one
    /// deadline for all); `per_node(n)` adds node `n`'s own flags after `extra`. Returns
    /// the outputs by node.
    pub fn run_cluster_with<S: AsRef<OsStr>>(
        &self,
        cluster: &LocalCluster,
        workers: usize,
        extra: &[S],
        per_node: &dyn Fn(usize) -> Vec<String>,
    ) -> Vec<Output> {
        let spawned: Vec<Spawned> = (0..cluster.nodes.len())
            .map(|n| {
                let mut args = self.node_args(cluster, n, workers, extra);
                args.extend(per_node(n).into_iter().map(Into::into));
                self.spawn(args)
            })
            .collect();
        let deadline = Instant::now() + self.timeout;
        spawned
            .into_iter()
            .map(|s| s.wait_until(deadline))
            .collect()
    }

    /// Start every node's launcher of `cluster` at once and wait for all of them.
    pub fn run_cluster<S: AsRef<OsStr>>(
        &self,
        cluster: &LocalCluster,
        workers: usize,
        extra: &[S],
    ) -> Vec<Output> {
        self.run_cluster_with(cluster, workers, extra, &|_| Vec::new())
    }

    /// Run in `shape`: [`JobBinary::run_single`] for [`Shape::single`], otherwise a
    /// [`LocalCluster`] (hosts file in `scratch`) and every node's launcher. Returns one
    /// output per started launcher (or the single process). Does not check success.
    pub fn run_shape<S: AsRef<OsStr>>(
        &self,
        shape: Shape,
        scratch: &Path,
        extra: &[S],
    ) -> Vec<Output> {
        if shape.is_single() {
            return vec![self.run_single(shape.workers, extra)];
        }
        let hosts = scratch.join(format!("hosts-{:x}.txt", unique_seed()));
        let cluster = LocalCluster::with_hosts_file(hosts, shape.nodes, shape.procs_per_node);
        self.run_cluster(&cluster, shape.workers, extra)
    }

    /// `explain --format json <args>`: the parsed JSON (panics unless it exits 0 with JSON
    /// on stdout).
    pub fn explain_json<S: AsRef<OsStr>>(&self, args: &[S]) -> Value {
        let mut all: Vec<std::ffi::OsString> =
            vec!["explain".into(), "--format".into(), "json".into()];
        all.extend(args.iter().map(|s| s.as_ref().to_os_string()));
        let out = self.run(all);
        out.assert_success();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("explain did not print JSON ({e}):\n{out}"))
    }
}

// ---------------------------------------------------------------------------------------
// Output files
// ---------------------------------------------------------------------------------------

/// The visible part files `part-<instance>.jsonl` of a file sink's directory, by instance.
/// Panics on a file in the directory that is neither a part file nor hidden.
pub fn part_files(dir: &Path) -> BTreeMap<usize, PathBuf> {
    let entries = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list output directory {}: {e}", dir.display()));
    let mut out = BTreeMap::new();
    for entry in entries {
        let entry =
            entry.unwrap_or_else(|e| panic!("cannot list output directory {}: {e}", dir.display()));
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let instance = name
            .strip_prefix("part-")
            .and_then(|r| r.strip_suffix(".jsonl"))
            .and_then(|i| i.parse::<usize>().ok())
            .unwrap_or_else(|| {
                panic!(
                    "unexpected file {name} in output directory {}",
                    dir.display()
                )
            });
        out.insert(instance, entry.path());
    }
    out
}

/// The visible part files of a file sink that took checkpoints, `part-<instance>-<n>.jsonl`
/// (one per instance and checkpoint), as `((instance, n), path)` in order. Panics on a
/// visible file of another name.
pub fn rolled_part_files(dir: &Path) -> BTreeMap<(usize, u64), PathBuf> {
    let entries = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list output directory {}: {e}", dir.display()));
    let mut out = BTreeMap::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let id = name
            .strip_prefix("part-")
            .and_then(|r| r.strip_suffix(".jsonl"))
            .and_then(|r| r.split_once('-'))
            .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<u64>().ok()?)))
            .unwrap_or_else(|| {
                panic!(
                    "unexpected file {name} in output directory {}",
                    dir.display()
                )
            });
        out.insert(id, entry.path());
    }
    out
}

/// Every record of a checkpointing file sink's visible part files (instance by instance,
/// in the order written); panics if unfinished files are left.
pub fn read_rolled_records(dir: &Path) -> Vec<Value> {
    let hidden = hidden_files(dir);
    assert!(
        hidden.is_empty(),
        "unfinished files left in {}: {hidden:?}",
        dir.display()
    );
    rolled_part_files(dir)
        .into_values()
        .flat_map(|p| read_json_lines(&p))
        .collect()
}

/// The hidden files of a directory (a file sink's unfinished `.part-N.jsonl.inprogress`).
pub fn hidden_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    v.sort();
    v
}

/// Every line of a JSON-lines file, parsed (panics naming file and line on bad JSON).
pub fn read_json_lines(path: &Path) -> Vec<Value> {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}:{}: not JSON ({e}): {l}", path.display(), i + 1))
        })
        .collect()
}

/// The records of every part file of a file sink's directory, by instance; panics if an
/// unfinished (hidden) part file is left.
pub fn read_parts(dir: &Path) -> BTreeMap<usize, Vec<Value>> {
    let hidden = hidden_files(dir);
    assert!(
        hidden.is_empty(),
        "unfinished files left in {}: {hidden:?}",
        dir.display()
    );
    part_files(dir)
        .into_iter()
        .map(|(i, p)| (i, read_json_lines(&p)))
        .collect()
}

/// All records of a file sink's directory, part file after part file.
pub fn read_all_records(dir: &Path) -> Vec<Value> {
    read_parts(dir).into_values().flatten().collect()
}

// ---------------------------------------------------------------------------------------
// Static linking
// ---------------------------------------------------------------------------------------

/// The ELF program interpreter (`PT_INTERP`, the dynamic loader) of the executable at
/// `path`, or `None` for a statically linked one. Errors if the file is not a 64-bit
/// little-endian ELF file.
pub fn elf_interpreter(path: &Path) -> io::Result<Option<String>> {
    let bytes = fs::read(path)?;
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    if bytes.len() < 64 || bytes[0..4] != *b"\x7fELF" {
        return Err(bad("not an ELF file"));
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err(bad("not a 64-bit little-endian ELF file"));
    }
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    let phoff = u64_at(0x20)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| bad("truncated header"))?;
    let phentsize = usize::from(u16_at(0x36).ok_or_else(|| bad("truncated header"))?);
    let phnum = usize::from(u16_at(0x38).ok_or_else(|| bad("truncated header"))?);
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(ph).ok_or_else(|| bad("truncated program headers"))? != PT_INTERP {
            continue;
        }
        let off = u64_at(ph + 8)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| bad("truncated program header"))?;
        let size = u64_at(ph + 32)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| bad("truncated program header"))?;
        let raw = bytes
            .get(off..off.saturating_add(size))
            .ok_or_else(|| bad("PT_INTERP outside the file"))?;
        return Ok(Some(
            String::from_utf8_lossy(raw)
                .trim_end_matches('\0')
                .to_string(),
        ));
    }
    Ok(None)
}

/// What `ldd` prints for `path` (stdout and stderr together), or `None` if there is no
/// `ldd` to run.
pub fn ldd(path: &Path) -> Option<Output> {
    let mut cmd = Command::new("ldd");
    cmd.arg(path);
    match cmd.stdin(Stdio::null()).output() {
        Ok(o) => Some(Output {
            command: display_command(&cmd),
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            elapsed: Duration::ZERO,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run ldd: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------

/// The lines of `--log-format json` output that parse as JSON objects.
pub fn json_log_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect()
}

/// Distinct values, for messages about sets.
pub fn distinct<T: Ord + Clone>(items: &[T]) -> Vec<T> {
    let mut v = items.to_vec();
    v.sort();
    v.dedup();
    v
}

/// Whether `items` has no repeated element.
pub fn all_distinct<T: std::hash::Hash + Eq>(items: impl IntoIterator<Item = T>) -> bool {
    let mut seen = HashSet::new();
    items.into_iter().all(|i| seen.insert(i))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_hung_process_is_killed_and_fails_the_test() {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg("echo started >&2; sleep 30");
        let started = Instant::now();
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_with_timeout(cmd, Duration::from_millis(500))
        }))
        .unwrap_err();
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.starts_with("timed out"), "{msg}");
        assert!(msg.contains("started"), "{msg}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn the_whole_group_is_killed_on_timeout() {
        // The shell starts a grandchild holding stderr; the timeout must not wait for it.
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg("sleep 30 & wait");
        let started = Instant::now();
        assert!(
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_with_timeout(
                cmd,
                Duration::from_millis(300)
            )))
            .is_err()
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn output_is_captured() {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg("echo out; echo 'error: bad' >&2; exit 2");
        let out = run_with_timeout(cmd, Duration::from_secs(10));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.assert_one_line_error(2), "error: bad");
    }

    #[test]
    fn port_blocks_are_free_and_disjoint() {
        let a = free_port_block(4);
        let b = free_port_block(4);
        assert!(a + 3 < b || b + 3 < a, "{a} {b}");
        let (lo, hi) = ephemeral_range();
        assert!(
            !(lo..=hi).contains(&a),
            "{a} in the ephemeral range {lo}-{hi}"
        );
        for p in a..a + 4 {
            assert!(port_is_free(p));
        }
    }

    #[test]
    fn local_cluster_writes_a_hosts_file() {
        let dir = TempDir::new("unit");
        let c = LocalCluster::new(dir.path(), 2, 3);
        let text = fs::read_to_string(&c.hosts_file).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, vec![c.nodes[0].to_string(), c.nodes[1].to_string()]);
        assert_eq!(c.nodes[1].port(), c.nodes[0].port() + 3);
        assert_eq!(c.process_addr(4).port(), c.nodes[1].port() + 1);
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn elf_interpreter_of_a_dynamic_program() {
        // /bin/sh is dynamically linked on every usual distribution.
        let interp = elf_interpreter(Path::new("/bin/sh")).unwrap();
        assert!(interp.is_some_and(|i| i.contains("ld-")));
        assert!(
            elf_interpreter(Path::new("/etc/hostname")).is_err()
                || !Path::new("/etc/hostname").exists()
        );
    }

    #[test]
    fn part_files_are_read_by_instance() {
        let dir = TempDir::new("unit");
        fs::write(dir.join("part-1.jsonl"), "[\"b\",1]\n").unwrap();
        fs::write(dir.join("part-0.jsonl"), "[\"a\",1]\n[\"a\",2]\n").unwrap();
        let parts = read_parts(dir.path());
        assert_eq!(parts.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(parts[&0].len(), 2);
        fs::write(dir.join(".part-2.jsonl.inprogress"), "").unwrap();
        assert!(std::panic::catch_unwind(|| read_parts(dir.path())).is_err());
    }

    #[test]
    fn process_tree() {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg("sleep 30 & sleep 30 & wait");
        let mut s = Spawned::spawn(cmd);
        let kids = wait_for_children(s.pid(), 2, Duration::from_secs(10));
        assert!(kids
            .iter()
            .all(|&k| parent_pid(k) == Some(s.pid()) && is_alive(k)));
        s.kill_group();
        let out = s.wait(Duration::from_secs(10));
        assert!(!out.success());
    }
}

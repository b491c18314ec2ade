//! Connections between the processes of a job: listen, connect, handshake, hand to timely.
//!
//! Every pair of processes shares one TCP connection: process `i` accepts connections from
//! the processes with higher indices on its own address and connects to the lower ones,
//! retrying while they start. The first bytes each way are a [`Hello`]: both ends check
//! that the other runs the same build of the same job (plan fingerprint) for the same
//! cluster shape before timely gets the sockets.

use super::hosts::ProcessAddr;
use crate::error::{Result, RuntimeError};
use std::any::Any;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
use timely::communication::Hooks;
use weir_compiler::plan::ClusterShape;

/// First bytes of every connection between weir processes.
pub const MAGIC: [u8; 4] = *b"WEIR";
/// Version of the handshake and of what follows it; processes must agree on it.
pub const PROTOCOL_VERSION: u16 = 1;
/// Length in bytes of an encoded [`Hello`].
pub const HELLO_LEN: usize = 36;

/// How long one side waits for the other's [`Hello`] once connected.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts to reach a process that is not listening yet.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(100);
/// How often the acceptor polls its listener.
const ACCEPT_POLL: Duration = Duration::from_millis(20);
/// How often a process still waiting for others says so at info level.
const WAIT_REPORT: Duration = Duration::from_secs(5);

/// The handshake each end of a connection sends first (big-endian, [`HELLO_LEN`] bytes):
/// magic `WEIR`, protocol version (u16), reserved (u16), plan fingerprint (u64), sender
/// process (u32), intended receiver process (u32), nodes, processes per node and workers
/// per process (u32 each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The sender's [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The sender's `JobPlan::fingerprint()`.
    pub fingerprint: u64,
    /// The sender's global process index.
    pub from: u32,
    /// The process index the sender believes it is talking to.
    pub to: u32,
    /// The cluster shape the sender was started for.
    pub shape: ClusterShape,
}

/// Why bytes received are not a [`Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloError {
    /// The magic is wrong: the peer is not a weir process.
    NotWeir,
    /// A field does not fit this machine's integers.
    Malformed,
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Hello {
    /// The hello process `from` sends to process `to` in `mesh`.
    pub fn new(mesh: &Mesh, from: usize, to: usize) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            fingerprint: mesh.fingerprint,
            from: u32_of(from),
            to: u32_of(to),
            shape: mesh.shape,
        }
    }

    /// The wire form.
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&self.version.to_be_bytes());
        // 6..8 reserved, zero.
        b[8..16].copy_from_slice(&self.fingerprint.to_be_bytes());
        b[16..20].copy_from_slice(&self.from.to_be_bytes());
        b[20..24].copy_from_slice(&self.to.to_be_bytes());
        b[24..28].copy_from_slice(&u32_of(self.shape.nodes).to_be_bytes());
        b[28..32].copy_from_slice(&u32_of(self.shape.procs_per_node).to_be_bytes());
        b[32..36].copy_from_slice(&u32_of(self.shape.workers).to_be_bytes());
        b
    }

    /// Read the wire form.
    pub fn decode(b: &[u8; HELLO_LEN]) -> std::result::Result<Hello, HelloError> {
        if b[0..4] != MAGIC {
            return Err(HelloError::NotWeir);
        }
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut fp = [0u8; 8];
        fp.copy_from_slice(&b[8..16]);
        let usize_at = |i: usize| usize::try_from(u32_at(i)).map_err(|_| HelloError::Malformed);
        Ok(Hello {
            version: u16_at(4),
            fingerprint: u64::from_be_bytes(fp),
            from: u32_at(16),
            to: u32_at(20),
            shape: ClusterShape {
                nodes: usize_at(24)?,
                procs_per_node: usize_at(28)?,
                workers: usize_at(32)?,
            },
        })
    }
}

/// What one process knows about the cluster it connects.
#[derive(Debug, Clone)]
pub struct Mesh {
    /// The job's name (for messages).
    pub job: String,
    /// The job plan's fingerprint.
    pub fingerprint: u64,
    /// The cluster shape.
    pub shape: ClusterShape,
    /// Every process's address, by global process index.
    pub processes: Vec<ProcessAddr>,
    /// This process's index.
    pub me: usize,
}

impl Mesh {
    /// This process's address.
    pub fn my_addr(&self) -> Result<&ProcessAddr> {
        self.processes.get(self.me).ok_or_else(|| {
            RuntimeError::user(format!(
                "process {} is out of range: the cluster has {} processes",
                self.me,
                self.processes.len()
            ))
        })
    }

    fn describe(&self, p: usize) -> String {
        match self.processes.get(p) {
            Some(pa) => pa.to_string(),
            None => format!("process {p}"),
        }
    }

    /// Check a hello received from `peer` (the socket's remote address). `expected` is the
    /// process we connected to, or `None` when we accepted the connection.
    pub fn check_hello(
        &self,
        h: &Hello,
        peer: SocketAddr,
        expected: Option<usize>,
    ) -> Result<usize> {
        let from = usize::try_from(h.from).unwrap_or(usize::MAX);
        let who = match expected {
            Some(p) => self.describe(p),
            None if from < self.processes.len() => self.describe(from),
            None => format!("the process at {peer}"),
        };
        if h.version != PROTOCOL_VERSION {
            return Err(RuntimeError::user(format!(
                "{who} speaks weir protocol version {}, this process version {PROTOCOL_VERSION}: run the same build of job `{}` on every node",
                h.version, self.job
            )));
        }
        if h.fingerprint != self.fingerprint {
            return Err(RuntimeError::user(format!(
                "{who} runs a different build of job `{}` (plan fingerprint {:016x}, this process {:016x}): deploy the same binary on every node",
                self.job, h.fingerprint, self.fingerprint
            )));
        }
        if h.shape != self.shape {
            return Err(RuntimeError::user(format!(
                "{who} was started for a cluster of {}, this process for {}: use the same hosts file, --procs-per-node and --workers on every node",
                super::describe_shape(&h.shape),
                super::describe_shape(&self.shape)
            )));
        }
        let to = usize::try_from(h.to).unwrap_or(usize::MAX);
        if to != self.me {
            return Err(RuntimeError::user(format!(
                "{who} wanted to reach process {to} but reached process {} at {}: the hosts files differ between nodes",
                self.me,
                self.processes.get(self.me).map(|p| p.addr.to_string()).unwrap_or_default()
            )));
        }
        match expected {
            Some(p) if from != p => Err(RuntimeError::user(format!(
                "{} answered as process {from}: the hosts files differ between nodes, or --node is wrong on one of them",
                self.describe(p)
            ))),
            None if from <= self.me || from >= self.processes.len() => Err(RuntimeError::user(format!(
                "the process at {peer} connected as process {from}, but only processes {} to {} connect to process {}: the hosts files differ between nodes, or --node is wrong on one of them",
                self.me + 1,
                self.processes.len().saturating_sub(1),
                self.me
            ))),
            _ => Ok(from),
        }
    }
}

/// Bind this process's listening address. A port in use or an address that is not on this
/// machine is a user error saying what to change.
pub fn bind(pa: &ProcessAddr, hosts_origin: &str) -> Result<TcpListener> {
    TcpListener::bind(pa.addr).map_err(|e| bind_error(pa, hosts_origin, &e))
}

fn bind_error(pa: &ProcessAddr, hosts_origin: &str, e: &io::Error) -> RuntimeError {
    let (addr, p, n) = (pa.addr, pa.process, pa.node);
    match e.kind() {
        io::ErrorKind::AddrInUse => RuntimeError::user(format!(
            "address {addr} (process {p} on node {n}) is in use; pick another base port in {hosts_origin}"
        )),
        io::ErrorKind::AddrNotAvailable => RuntimeError::user(format!(
            "cannot listen on {addr} (process {p} on node {n}): {e}; is --node {n} this machine's line of {hosts_origin}?"
        )),
        io::ErrorKind::PermissionDenied => RuntimeError::user(format!(
            "cannot listen on {addr} (process {p} on node {n}): {e}; use a base port of 1024 or above in {hosts_origin}"
        )),
        _ => RuntimeError::external(format!("cannot listen on {addr} (process {p} on node {n}): {e}")),
    }
}

/// Check that every address in `mine` can be listened on now (the launcher does this before
/// starting its processes, so a port in use is a configuration error reported at once).
pub fn check_bindable(mine: &[ProcessAddr], hosts_origin: &str) -> Result<()> {
    let mut held = Vec::with_capacity(mine.len());
    for pa in mine {
        held.push(bind(pa, hosts_origin)?);
    }
    Ok(())
}

fn read_hello(stream: &mut TcpStream) -> io::Result<[u8; HELLO_LEN]> {
    let mut buf = [0u8; HELLO_LEN];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

/// Why a connection attempt failed: try again, or give up.
#[derive(Debug)]
enum Attempt {
    Retry(String),
    Fatal(RuntimeError),
}

fn prepare(stream: &TcpStream, timeout: Duration) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
}

fn finish(stream: &TcpStream) -> io::Result<()> {
    stream.set_read_timeout(None)
}

/// The connecting side of the handshake, on a freshly connected stream to process `to`:
/// send our hello, read and check the peer's.
pub fn handshake_connect(mesh: &Mesh, stream: &mut TcpStream, to: usize) -> Result<()> {
    match connect_handshake(mesh, stream, to, HANDSHAKE_TIMEOUT) {
        Ok(()) => Ok(()),
        Err(Attempt::Fatal(e)) => Err(e),
        Err(Attempt::Retry(m)) => Err(RuntimeError::external(format!(
            "handshake with {} failed: {m}",
            mesh.describe(to)
        ))),
    }
}

fn connect_handshake(
    mesh: &Mesh,
    stream: &mut TcpStream,
    to: usize,
    timeout: Duration,
) -> std::result::Result<(), Attempt> {
    let io_err = |e: io::Error| Attempt::Retry(e.to_string());
    prepare(stream, timeout).map_err(io_err)?;
    let peer = stream.peer_addr().map_err(io_err)?;
    stream
        .write_all(&Hello::new(mesh, mesh.me, to).encode())
        .map_err(io_err)?;
    let buf = read_hello(stream).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            Attempt::Retry("the connection was closed during the handshake".into())
        }
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            Attempt::Retry("no handshake received".into())
        }
        _ => Attempt::Retry(e.to_string()),
    })?;
    let hello = Hello::decode(&buf)
        .map_err(|_| Attempt::Retry(format!("{peer} answered, but it is not a weir process")))?;
    mesh.check_hello(&hello, peer, Some(to))
        .map_err(Attempt::Fatal)?;
    finish(stream).map_err(io_err)
}

/// The accepting side of the handshake: read and check the peer's hello, answer with ours
/// (even when refusing, so that the peer reports the mismatch too). Returns the peer's
/// process index. `Ok(None)` means the connection was not from a weir process and was
/// dropped.
pub fn handshake_accept(mesh: &Mesh, stream: &mut TcpStream) -> Result<Option<usize>> {
    match accept_handshake(mesh, stream, HANDSHAKE_TIMEOUT) {
        Ok(p) => Ok(Some(p)),
        Err(Attempt::Fatal(e)) => Err(e),
        Err(Attempt::Retry(m)) => {
            tracing::warn!("ignored a connection: {m}");
            Ok(None)
        }
    }
}

fn accept_handshake(
    mesh: &Mesh,
    stream: &mut TcpStream,
    timeout: Duration,
) -> std::result::Result<usize, Attempt> {
    let peer = stream
        .peer_addr()
        .map_err(|e| Attempt::Retry(e.to_string()))?;
    let io_err = |e: io::Error| Attempt::Retry(format!("connection from {peer}: {e}"));
    prepare(stream, timeout).map_err(io_err)?;
    let buf = read_hello(stream).map_err(io_err)?;
    let hello =
        Hello::decode(&buf).map_err(|_| Attempt::Retry(format!("{peer} is not a weir process")))?;
    let checked = mesh.check_hello(&hello, peer, None);
    let from = usize::try_from(hello.from).unwrap_or(usize::MAX);
    // Answer in any case so that the peer can report a mismatch from its side too.
    let answer = stream.write_all(&Hello::new(mesh, mesh.me, from).encode());
    let from = checked.map_err(Attempt::Fatal)?;
    answer.map_err(io_err)?;
    finish(stream).map_err(io_err)?;
    Ok(from)
}

/// Connect this process (`mesh.me`) to every other process of the mesh: accept the higher
/// indices on `listener`, connect to the lower ones (retrying every 50–100 ms while they
/// start), handshake with each. Returns one socket per process in process order, `None` at
/// `mesh.me` — what timely's `initialize_networking_from_sockets` wants. Gives up after
/// `timeout` with an error naming the processes that could not be reached.
pub fn connect_all(
    mesh: &Mesh,
    listener: TcpListener,
    timeout: Duration,
) -> Result<Vec<Option<TcpStream>>> {
    let n = mesh.processes.len();
    if mesh.me >= n {
        return Err(RuntimeError::user(format!(
            "process {} is out of range: the cluster has {n} processes",
            mesh.me
        )));
    }
    let deadline = Instant::now() + timeout;
    let stop = AtomicBool::new(false);
    let (lower, higher) = thread::scope(|s| {
        let acceptor = thread::Builder::new()
            .name("weir:accept".into())
            .spawn_scoped(s, || {
                let r = accept_higher(mesh, &listener, deadline, timeout, &stop);
                if r.is_err() {
                    stop.store(true, Ordering::SeqCst);
                }
                r
            })
            .map_err(|e| {
                Stop::Failed(RuntimeError::external(format!(
                    "cannot start a thread: {e}"
                )))
            });
        let lower = connect_lower(mesh, deadline, timeout, &stop);
        if lower.is_err() {
            stop.store(true, Ordering::SeqCst);
        }
        let higher = match acceptor {
            Ok(h) => h.join().unwrap_or_else(|_| {
                Err(Stop::Failed(RuntimeError::internal(
                    "the thread accepting connections panicked",
                )))
            }),
            Err(e) => Err(e),
        };
        (lower, higher)
    });
    // A real failure on one side makes the other side stop early with `Stopped`: report
    // the real one.
    let (lower, higher) = match (lower, higher) {
        (Ok(l), Ok(h)) => (l, h),
        (Err(Stop::Failed(e)), _) | (_, Err(Stop::Failed(e))) => return Err(e),
        (Err(Stop::Stopped), _) | (_, Err(Stop::Stopped)) => {
            return Err(RuntimeError::internal(
                "connecting processes stopped without a reason",
            ))
        }
    };
    let mut sockets: Vec<Option<TcpStream>> = lower.into_iter().map(Some).collect();
    sockets.push(None);
    sockets.extend(higher.into_iter().map(Some));
    tracing::info!(
        "connected to the {} other process{}",
        n - 1,
        if n == 2 { "" } else { "es" }
    );
    Ok(sockets)
}

/// `60 s`, `0.3 s`.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// How one side of [`connect_all`] ended without its sockets.
enum Stop {
    Failed(RuntimeError),
    Stopped,
}

impl From<RuntimeError> for Stop {
    fn from(e: RuntimeError) -> Self {
        Stop::Failed(e)
    }
}

fn connect_lower(
    mesh: &Mesh,
    deadline: Instant,
    timeout: Duration,
    stop: &AtomicBool,
) -> std::result::Result<Vec<TcpStream>, Stop> {
    let mut out = Vec::with_capacity(mesh.me);
    for to in 0..mesh.me {
        let addr = mesh.processes[to].addr;
        let mut pause = RETRY_MIN;
        let mut last_report = Instant::now();
        let mut attempts = 0u64;
        loop {
            if stop.load(Ordering::SeqCst) {
                return Err(Stop::Stopped);
            }
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let result = match TcpStream::connect_timeout(
                &addr,
                left.clamp(Duration::from_millis(1), Duration::from_secs(2)),
            ) {
                Ok(mut stream) => {
                    connect_handshake(mesh, &mut stream, to, left.min(HANDSHAKE_TIMEOUT))
                        .map(|()| stream)
                }
                Err(e) => Err(Attempt::Retry(e.to_string())),
            };
            match result {
                Ok(stream) => {
                    tracing::debug!(peer = to, %addr, attempts, "connected");
                    out.push(stream);
                    break;
                }
                Err(Attempt::Fatal(e)) => return Err(e.into()),
                Err(Attempt::Retry(why)) => {
                    if Instant::now() >= deadline {
                        return Err(RuntimeError::external(format!(
                            "cannot reach {} within {}: {why}; is it running, with the same hosts file, and can this machine reach that port?",
                            mesh.describe(to),
                            seconds(timeout)
                        ))
                        .into());
                    }
                    if last_report.elapsed() >= WAIT_REPORT {
                        tracing::info!("waiting for {} ({why})", mesh.describe(to));
                        last_report = Instant::now();
                    } else {
                        tracing::trace!("{} not reachable yet: {why}", mesh.describe(to));
                    }
                    thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }
    Ok(out)
}

fn accept_higher(
    mesh: &Mesh,
    listener: &TcpListener,
    deadline: Instant,
    timeout: Duration,
    stop: &AtomicBool,
) -> std::result::Result<Vec<TcpStream>, Stop> {
    let n = mesh.processes.len();
    let mut slots: Vec<Option<TcpStream>> = (mesh.me + 1..n).map(|_| None).collect();
    if slots.is_empty() {
        return Ok(Vec::new());
    }
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    listener
        .set_nonblocking(true)
        .map_err(|e| RuntimeError::external(format!("cannot poll the listener on {local}: {e}")))?;
    let mut last_report = Instant::now();
    while slots.iter().any(Option::is_none) {
        if stop.load(Ordering::SeqCst) {
            return Err(Stop::Stopped);
        }
        match listener.accept() {
            Ok((mut stream, _)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match accept_handshake(
                    mesh,
                    &mut stream,
                    left.clamp(Duration::from_millis(100), HANDSHAKE_TIMEOUT),
                ) {
                    Ok(from) => {
                        let slot = &mut slots[from - mesh.me - 1];
                        if slot.is_some() {
                            return Err(RuntimeError::user(format!(
                                "two processes connected as process {from}: the hosts files differ between nodes, or two nodes were started with the same --node"
                            ))
                            .into());
                        }
                        tracing::debug!(peer = from, "accepted");
                        *slot = Some(stream);
                    }
                    Err(Attempt::Fatal(e)) => return Err(e.into()),
                    Err(Attempt::Retry(why)) => {
                        tracing::warn!("ignored a connection to {local}: {why}")
                    }
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                let missing = || {
                    slots
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.is_none())
                        .map(|(i, _)| mesh.describe(mesh.me + 1 + i))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                if Instant::now() >= deadline {
                    return Err(RuntimeError::external(format!(
                        "timed out after {} waiting for {} to connect to {local}; are they running, with the same hosts file, and can they reach this machine?",
                        seconds(timeout),
                        missing()
                    ))
                    .into());
                }
                if last_report.elapsed() >= WAIT_REPORT {
                    tracing::info!("waiting for {} to connect", missing());
                    last_report = Instant::now();
                }
                thread::sleep(ACCEPT_POLL);
            }
            Err(e) => {
                return Err(RuntimeError::external(format!(
                    "cannot accept connections on {local}: {e}"
                ))
                .into())
            }
        }
    }
    Ok(slots.into_iter().flatten().collect())
}

/// What timely's workers need to run in this process of a cluster: one allocator builder
/// per local worker thread (`AllocatorBuilder::Tcp`), and the guard of the network threads
/// (pass it as `others` to `worker::run`; dropping it joins them).
pub type Networked = (Vec<AllocatorBuilder>, Box<dyn Any + Send>);

/// Start timely's send and receive threads on the connected `sockets` (from
/// [`connect_all`]) for `workers` worker threads in this process.
pub fn start_networking(
    sockets: Vec<Option<TcpStream>>,
    me: usize,
    workers: usize,
) -> Result<Networked> {
    let hooks = Hooks::default();
    let local =
        ProcessBuilder::new_typed_vector(workers, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) = initialize_networking_from_sockets(local, sockets, me, workers, hooks)
        .map_err(|e| RuntimeError::external(format!("cannot start the network threads: {e}")))?;
    Ok((
        builders.into_iter().map(AllocatorBuilder::Tcp).collect(),
        Box::new(guard),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn mesh_of(addrs: &[SocketAddr], me: usize, fingerprint: u64) -> Mesh {
        Mesh {
            job: "wordcount".into(),
            fingerprint,
            shape: ClusterShape {
                nodes: addrs.len(),
                procs_per_node: 1,
                workers: 2,
            },
            processes: addrs
                .iter()
                .enumerate()
                .map(|(i, &addr)| ProcessAddr {
                    process: i,
                    node: i,
                    local: 0,
                    addr,
                })
                .collect(),
            me,
        }
    }

    fn listeners(n: usize) -> (Vec<TcpListener>, Vec<SocketAddr>) {
        let ls: Vec<_> = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs = ls.iter().map(|l| l.local_addr().unwrap()).collect();
        (ls, addrs)
    }

    #[test]
    fn hello_round_trips() {
        let h = Hello {
            version: PROTOCOL_VERSION,
            fingerprint: 0x0123_4567_89ab_cdef,
            from: 3,
            to: 1,
            shape: ClusterShape {
                nodes: 2,
                procs_per_node: 2,
                workers: 8,
            },
        };
        let b = h.encode();
        assert_eq!(&b[0..4], b"WEIR");
        assert_eq!(Hello::decode(&b), Ok(h));
        let mut bad = b;
        bad[0] = b'X';
        assert_eq!(Hello::decode(&bad), Err(HelloError::NotWeir));
    }

    /// One connection over loopback; the acceptor runs `mesh_a`, the connector `mesh_c`.
    fn handshake_pair(
        mesh_a: Mesh,
        mesh_c: Mesh,
        listener: TcpListener,
    ) -> (Result<Option<usize>>, Result<()>) {
        let addr = listener.local_addr().unwrap();
        let acceptor = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            handshake_accept(&mesh_a, &mut s)
        });
        let mut s = TcpStream::connect(addr).unwrap();
        let c = handshake_connect(&mesh_c, &mut s, 0);
        (acceptor.join().unwrap(), c)
    }

    #[test]
    fn handshake_accepts_the_same_build() {
        let (mut ls, addrs) = listeners(2);
        let (a, c) = handshake_pair(mesh_of(&addrs, 0, 7), mesh_of(&addrs, 1, 7), ls.remove(0));
        assert_eq!(a.unwrap(), Some(1));
        c.unwrap();
    }

    #[test]
    fn handshake_refuses_another_build_on_both_sides() {
        let (mut ls, addrs) = listeners(2);
        let (a, c) = handshake_pair(mesh_of(&addrs, 0, 7), mesh_of(&addrs, 1, 8), ls.remove(0));
        let a = a.unwrap_err().to_string();
        let c = c.unwrap_err().to_string();
        assert!(a.starts_with("process 1 (node 1, 127.0.0.1:"), "{a}");
        assert!(a.contains("runs a different build of job `wordcount` (plan fingerprint 0000000000000008, this process 0000000000000007)"), "{a}");
        assert!(c.starts_with("process 0 (node 0, 127.0.0.1:"), "{c}");
        assert!(
            c.contains("runs a different build of job `wordcount`"),
            "{c}"
        );
    }

    #[test]
    fn handshake_refuses_another_cluster_shape() {
        let (mut ls, addrs) = listeners(2);
        let mut other = mesh_of(&addrs, 1, 7);
        other.shape.workers = 4;
        let (a, c) = handshake_pair(mesh_of(&addrs, 0, 7), other, ls.remove(0));
        let a = a.unwrap_err().to_string();
        assert!(a.contains("was started for a cluster of 2 nodes × 1 process × 4 workers, this process for 2 nodes × 1 process × 2 workers"), "{a}");
        assert!(c.is_err());
    }

    #[test]
    fn handshake_ignores_strangers() {
        let (mut ls, addrs) = listeners(1);
        let listener = ls.remove(0);
        let mesh = mesh_of(&addrs, 0, 7);
        let acceptor = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            handshake_accept(&mesh, &mut s)
        });
        let mut s = TcpStream::connect(addrs[0]).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: example.invalid\r\nAccept: */*\r\n\r\n")
            .unwrap();
        assert_eq!(acceptor.join().unwrap().unwrap(), None);
    }

    #[test]
    fn three_processes_connect_in_order() {
        let (ls, addrs) = listeners(3);
        let handles: Vec<_> = ls
            .into_iter()
            .enumerate()
            .map(|(me, l)| {
                let mesh = mesh_of(&addrs, me, 42);
                thread::spawn(move || {
                    let mut sockets = connect_all(&mesh, l, Duration::from_secs(20)).unwrap();
                    assert_eq!(sockets.len(), 3);
                    assert!(sockets[me].is_none());
                    // Tell every peer who we are, then check that each socket leads to the
                    // process of its position.
                    for s in sockets.iter_mut().flatten() {
                        s.write_all(&[me as u8]).unwrap();
                    }
                    for (i, s) in sockets.iter_mut().enumerate() {
                        if let Some(s) = s {
                            let mut b = [0u8; 1];
                            s.read_exact(&mut b).unwrap();
                            assert_eq!(
                                b[0] as usize, i,
                                "process {me}: socket {i} leads to process {}",
                                b[0]
                            );
                            assert!(s.read_timeout().unwrap().is_none());
                            assert!(s.nodelay().unwrap());
                        }
                    }
                    sockets
                })
            })
            .collect();
        let all: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn processes_started_late_are_waited_for() {
        let (mut ls, addrs) = listeners(2);
        let l1 = ls.pop().unwrap();
        let l0 = ls.pop().unwrap();
        // Process 0 is not listening yet: close its listener and bind again later.
        drop(l0);
        let mesh1 = mesh_of(&addrs, 1, 1);
        let p1 = thread::spawn(move || connect_all(&mesh1, l1, Duration::from_secs(20)));
        thread::sleep(Duration::from_millis(300));
        let l0 = TcpListener::bind(addrs[0]).unwrap();
        let s0 = connect_all(&mesh_of(&addrs, 0, 1), l0, Duration::from_secs(20)).unwrap();
        let s1 = p1.join().unwrap().unwrap();
        assert!(s0[1].is_some() && s1[0].is_some());
    }

    #[test]
    fn unreachable_process_times_out_with_its_address() {
        let (mut ls, addrs) = listeners(2);
        let l1 = ls.pop().unwrap();
        drop(ls);
        let e = connect_all(&mesh_of(&addrs, 1, 1), l1, Duration::from_millis(300)).unwrap_err();
        let m = e.to_string();
        assert!(
            m.starts_with(&format!(
                "cannot reach process 0 (node 0, {}) within 0.3 s: ",
                addrs[0]
            )),
            "{m}"
        );
        assert_eq!(e.domain, crate::error::ErrorDomain::External);

        let (mut ls, addrs) = listeners(2);
        let l0 = ls.remove(0);
        let e = connect_all(&mesh_of(&addrs, 0, 1), l0, Duration::from_millis(300)).unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "waiting for process 1 (node 1, {}) to connect",
                addrs[1]
            )),
            "{e}"
        );
    }

    #[test]
    fn port_in_use_is_a_user_error() {
        let (ls, addrs) = listeners(1);
        let pa = ProcessAddr {
            process: 1,
            node: 0,
            local: 1,
            addr: addrs[0],
        };
        let e = check_bindable(&[pa], "hosts.txt").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "address {} (process 1 on node 0) is in use; pick another base port in hosts.txt",
                addrs[0]
            )
        );
        assert_eq!(e.domain, crate::error::ErrorDomain::User);
        drop(ls);
    }

    #[test]
    fn networking_starts_for_two_processes() {
        let (ls, addrs) = listeners(2);
        let handles: Vec<_> = ls
            .into_iter()
            .enumerate()
            .map(|(me, l)| {
                let mesh = mesh_of(&addrs, me, 5);
                thread::spawn(move || {
                    let sockets = connect_all(&mesh, l, Duration::from_secs(20)).unwrap();
                    let (builders, guard) = start_networking(sockets, me, 2).unwrap();
                    assert_eq!(builders.len(), 2);
                    assert!(builders
                        .iter()
                        .all(|b| matches!(b, AllocatorBuilder::Tcp(_))));
                    // Run an empty computation so that the network threads shut down cleanly.
                    let guards = timely::execute::execute_from(
                        builders,
                        guard,
                        timely::WorkerConfig::default(),
                        |w| w.index(),
                    )
                    .unwrap();
                    let mut idx: Vec<usize> =
                        guards.join().into_iter().map(|r| r.unwrap()).collect();
                    idx.sort();
                    idx
                })
            })
            .collect();
        let r: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(r, vec![vec![0, 1], vec![2, 3]]);
    }
}

//! Heartbeats between the launchers of a cluster's nodes, so that a silent node is noticed.
//!
//! A cut link sends no TCP reset: the processes on both sides stay blocked in timely for
//! ever. So every launcher sends a small UDP datagram to every other launcher every
//! `--heartbeat-interval` and restarts its own processes (the normal restart path) when a
//! node it heard from during the current attempt has been silent for `--heartbeat-timeout`.
//!
//! **Where.** Node `n`'s launcher listens on **UDP** at the node's own `IP:PORT` from the
//! hosts file. Processes listen on TCP (`PORT..PORT+P`), and TCP and UDP ports are separate,
//! so this can never collide with a process of any node; the hosts file already gives every
//! node its own `IP:PORT`. Datagrams are accepted only from that address of a node of the
//! same hosts file and with the same job plan fingerprint.
//!
//! **Generations.** Every heartbeat carries the sender's restart generation. A launcher
//! that restarts its processes moves to `max(own + 1, highest generation heard)`, so nodes
//! restarting for the same failure land on the same number. A peer whose generation rises
//! above ours while our processes run restarted its processes without ours noticing (their
//! connections may be half-open after a cut): ours restart too, and join its generation.
//!
//! **What is not a loss.** A node not heard from since our processes (re)started: the
//! processes are still connecting and `--connect-timeout` covers that. A node that said it
//! is done (its processes finished, or its launcher is exiting). Any silence once one of
//! our own processes finished: the job's dataflow is complete and only shutdown is left.

use super::hosts::Hosts;
use crate::error::{Result, RuntimeError};
use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The first bytes of every heartbeat datagram (name and format version).
const MAGIC: [u8; 8] = *b"WEIRHB01";
/// The length of a heartbeat datagram.
pub const MESSAGE_LEN: usize = 32;
/// Flag: the sender no longer needs to be watched (its processes finished, or it exits).
const FLAG_DONE: u32 = 1;
/// How long the receiving thread blocks at most, so that stopping is prompt.
const RECV_SLICE: Duration = Duration::from_millis(100);

/// One heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    /// The job plan's fingerprint (heartbeats of another job are ignored).
    pub fingerprint: u64,
    /// The sending node.
    pub node: u32,
    /// The sender's restart generation.
    pub generation: u64,
    /// The sender's processes finished, or its launcher exits: stop watching it.
    pub done: bool,
}

impl Message {
    /// The datagram.
    pub fn encode(&self) -> [u8; MESSAGE_LEN] {
        let mut b = [0u8; MESSAGE_LEN];
        b[..8].copy_from_slice(&MAGIC);
        b[8..16].copy_from_slice(&self.fingerprint.to_le_bytes());
        b[16..20].copy_from_slice(&self.node.to_le_bytes());
        let flags = if self.done { FLAG_DONE } else { 0 };
        b[20..24].copy_from_slice(&flags.to_le_bytes());
        b[24..32].copy_from_slice(&self.generation.to_le_bytes());
        b
    }

    /// Read a datagram; `None` if it is not a heartbeat of this format.
    pub fn decode(b: &[u8]) -> Option<Message> {
        if b.len() != MESSAGE_LEN || b[..8] != MAGIC {
            return None;
        }
        let u64_at = |i: usize| b[i..i + 8].try_into().ok().map(u64::from_le_bytes);
        let u32_at = |i: usize| b[i..i + 4].try_into().ok().map(u32::from_le_bytes);
        Some(Message {
            fingerprint: u64_at(8)?,
            node: u32_at(16)?,
            done: u32_at(20)? & FLAG_DONE != 0,
            generation: u64_at(24)?,
        })
    }
}

/// Why a launcher restarts its processes because of another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerLoss {
    /// The node sent no heartbeat for `silent_for` (at least the timeout).
    Silent {
        /// The silent node.
        node: usize,
        /// Its address in the hosts file.
        addr: SocketAddr,
        /// How long it has been silent.
        silent_for: Duration,
        /// The timeout (`--heartbeat-timeout`).
        timeout: Duration,
    },
    /// The node's launcher restarted its processes (its generation rose above ours).
    Restarted {
        /// The node.
        node: usize,
        /// Its address in the hosts file.
        addr: SocketAddr,
        /// Its new generation.
        generation: u64,
    },
}

impl fmt::Display for PeerLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerLoss::Silent {
                node,
                addr,
                silent_for,
                timeout,
            } => write!(
                f,
                "node {node} ({addr}) is silent: no heartbeat for {:.1} s (--heartbeat-timeout {:.1} s); its link or machine may be down",
                silent_for.as_secs_f64(),
                timeout.as_secs_f64()
            ),
            PeerLoss::Restarted {
                node,
                addr,
                generation,
            } => write!(
                f,
                "node {node} ({addr}) restarted its processes (generation {generation})"
            ),
        }
    }
}

/// What this launcher knows about one other node.
#[derive(Debug, Clone, Copy, Default)]
struct Peer {
    /// When it was last heard during the current attempt.
    heard: Option<Instant>,
    /// Its generation as last heard during the current attempt.
    attempt_generation: Option<u64>,
    /// Its generation as last heard ever.
    generation: Option<u64>,
    /// It said it is done during the current attempt.
    done: bool,
}

/// The heartbeat state machine of one launcher (no I/O: the caller passes the time).
#[derive(Debug, Clone)]
pub struct Tracker {
    me: usize,
    addrs: Vec<SocketAddr>,
    timeout: Duration,
    generation: u64,
    finishing: bool,
    peers: Vec<Peer>,
    pending: Option<PeerLoss>,
}

impl Tracker {
    /// Node `me` of a cluster whose nodes have these addresses.
    pub fn new(me: usize, addrs: Vec<SocketAddr>, timeout: Duration) -> Tracker {
        let peers = vec![Peer::default(); addrs.len()];
        Tracker {
            me,
            addrs,
            timeout,
            generation: 0,
            finishing: false,
            peers,
            pending: None,
        }
    }

    /// This launcher's generation (what its heartbeats carry).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether this node's heartbeats say it is done.
    pub fn done(&self) -> bool {
        self.finishing
    }

    /// A process of this node finished: the job is ending; stop watching the others and
    /// tell them to stop watching this node.
    pub fn finishing(&mut self) {
        self.finishing = true;
    }

    /// A heartbeat from `node` arrived at `now`.
    pub fn heard(&mut self, node: usize, generation: u64, done: bool, now: Instant) {
        if node == self.me {
            return;
        }
        let Some(p) = self.peers.get_mut(node) else {
            return;
        };
        let rose = p.attempt_generation.is_some_and(|g| generation > g);
        p.heard = Some(now);
        p.attempt_generation = Some(generation);
        p.generation = Some(p.generation.map_or(generation, |g| g.max(generation)));
        p.done |= done;
        if rose && generation > self.generation && self.pending.is_none() {
            self.pending = Some(PeerLoss::Restarted {
                node,
                addr: self.addrs[node],
                generation,
            });
        }
    }

    /// Whether another node is lost at `now` (and this node should restart its processes).
    pub fn check(&self, now: Instant) -> Option<PeerLoss> {
        if self.finishing {
            return None;
        }
        if let Some(loss) = &self.pending {
            return Some(loss.clone());
        }
        self.peers
            .iter()
            .enumerate()
            .filter(|&(node, p)| node != self.me && !p.done)
            .filter_map(|(node, p)| {
                let silent_for = now.saturating_duration_since(p.heard?);
                (silent_for >= self.timeout).then_some((node, silent_for))
            })
            .max_by_key(|&(node, silent_for)| (silent_for, std::cmp::Reverse(node)))
            .map(|(node, silent_for)| PeerLoss::Silent {
                node,
                addr: self.addrs[node],
                silent_for,
                timeout: self.timeout,
            })
    }

    /// This node restarts its processes: a new generation, and the others are watched
    /// again only once heard from (the new processes first wait for them to connect).
    pub fn restarted(&mut self) {
        let highest = self.peers.iter().filter_map(|p| p.generation).max();
        self.generation = highest.unwrap_or(0).max(self.generation + 1);
        self.finishing = false;
        self.pending = None;
        for p in &mut self.peers {
            p.heard = None;
            p.attempt_generation = None;
            p.done = false;
        }
    }
}

/// Heartbeat settings (`--heartbeat-interval`, `--heartbeat-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// How often to send.
    pub interval: Duration,
    /// How long a node may be silent before it is lost.
    pub timeout: Duration,
}

impl HeartbeatConfig {
    /// Check the settings: the timeout must cover at least two intervals, so that one late
    /// or lost datagram never restarts the job.
    pub fn check(&self) -> Result<()> {
        if self.interval.is_zero() {
            return Err(RuntimeError::user(
                "--heartbeat-interval must be positive (e.g. 1s)",
            ));
        }
        if self.timeout < self.interval * 2 {
            return Err(RuntimeError::user(format!(
                "--heartbeat-timeout {} ms is too short for --heartbeat-interval {} ms: give a timeout of at least two intervals (default 10s with 1s)",
                self.timeout.as_millis(),
                self.interval.as_millis()
            )));
        }
        Ok(())
    }
}

/// The running heartbeats of one launcher: a thread that sends and receives, and the
/// shared [`Tracker`]. Dropping it stops the thread and tells the others this node is done.
pub struct Heartbeats {
    tracker: Arc<Mutex<Tracker>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    socket: Arc<UdpSocket>,
    peers: Vec<SocketAddr>,
    fingerprint: u64,
    me: u32,
}

impl fmt::Debug for Heartbeats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heartbeats")
            .field("me", &self.me)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl Heartbeats {
    /// Bind node `me`'s heartbeat socket (UDP, the node's address in the hosts file) and
    /// start. `None` for a cluster of one node (nobody to watch).
    pub fn start(
        hosts: &Hosts,
        me: usize,
        fingerprint: u64,
        cfg: HeartbeatConfig,
    ) -> Result<Option<Heartbeats>> {
        cfg.check()?;
        if hosts.len() < 2 {
            return Ok(None);
        }
        let addrs: Vec<SocketAddr> = hosts.nodes().iter().map(|n| n.addr).collect();
        let mine = *addrs.get(me).ok_or_else(|| {
            RuntimeError::user(format!(
                "node {me} is not in hosts file `{}`",
                hosts.origin()
            ))
        })?;
        let socket = UdpSocket::bind(mine).map_err(|e| {
            RuntimeError::user(format!(
                "cannot bind the heartbeat socket of node {me} on UDP {mine} ({}): {e}; is another launcher of this node running, or is that UDP port taken?",
                hosts.origin()
            ))
        })?;
        socket.set_read_timeout(Some(RECV_SLICE)).map_err(|e| {
            RuntimeError::external(format!("cannot set up the heartbeat socket: {e}"))
        })?;
        let socket = Arc::new(socket);
        let tracker = Arc::new(Mutex::new(Tracker::new(me, addrs.clone(), cfg.timeout)));
        let stop = Arc::new(AtomicBool::new(false));
        let peers: Vec<SocketAddr> = addrs
            .iter()
            .enumerate()
            .filter(|&(n, _)| n != me)
            .map(|(_, a)| *a)
            .collect();
        let me32 = u32::try_from(me)
            .map_err(|_| RuntimeError::user(format!("node {me} is out of range")))?;
        let thread = {
            let run = Loop {
                tracker: Arc::clone(&tracker),
                stop: Arc::clone(&stop),
                socket: Arc::clone(&socket),
                peers: peers.clone(),
                addrs,
                fingerprint,
                me: me32,
                interval: cfg.interval,
            };
            std::thread::Builder::new()
                .name("weir-heartbeat".into())
                .spawn(move || run.run())
                .map_err(|e| {
                    RuntimeError::external(format!("cannot start the heartbeat thread: {e}"))
                })?
        };
        Ok(Some(Heartbeats {
            tracker,
            stop,
            thread: Some(thread),
            socket,
            peers,
            fingerprint,
            me: me32,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Tracker> {
        lock(&self.tracker)
    }

    /// This node restarts its processes (see [`Tracker::restarted`]).
    pub fn restarted(&self) {
        self.lock().restarted();
    }

    /// This node's generation.
    pub fn generation(&self) -> u64 {
        self.lock().generation()
    }
}

impl super::launcher::PeerWatch for Heartbeats {
    fn finishing(&self) {
        self.lock().finishing();
    }

    fn lost(&self) -> Option<PeerLoss> {
        self.lock().check(Instant::now())
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Tell the others not to wait for this node's heartbeats any more (a few times:
        // datagrams may be lost; a peer that misses them all sees a silent node).
        let bye = Message {
            fingerprint: self.fingerprint,
            node: self.me,
            generation: self.lock().generation(),
            done: true,
        }
        .encode();
        for _ in 0..3 {
            for to in &self.peers {
                let _ = self.socket.send_to(&bye, to);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn lock(m: &Mutex<Tracker>) -> MutexGuard<'_, Tracker> {
    // The tracker holds no invariant a panic could break half-way.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The heartbeat thread.
struct Loop {
    tracker: Arc<Mutex<Tracker>>,
    stop: Arc<AtomicBool>,
    socket: Arc<UdpSocket>,
    peers: Vec<SocketAddr>,
    addrs: Vec<SocketAddr>,
    fingerprint: u64,
    me: u32,
    interval: Duration,
}

impl Loop {
    fn run(self) {
        let mut next_send = Instant::now();
        let mut buf = [0u8; 64];
        let mut foreign_reported = false;
        while !self.stop.load(Ordering::SeqCst) {
            if Instant::now() >= next_send {
                self.send();
                next_send = Instant::now() + self.interval;
            }
            // Wake up for the next send, and often enough to notice the stop.
            let wait = next_send
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), RECV_SLICE);
            if let Err(e) = self.socket.set_read_timeout(Some(wait)) {
                tracing::debug!("cannot set the heartbeat receive timeout: {e}");
            }
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let msg = buf.get(..n).and_then(Message::decode);
                    match msg.and_then(|m| self.sender(&m, from).map(|node| (m, node))) {
                        Some((m, node)) => {
                            lock(&self.tracker).heard(node, m.generation, m.done, Instant::now())
                        }
                        None if !foreign_reported => {
                            foreign_reported = true;
                            tracing::warn!(
                                %from,
                                "ignoring a datagram on the heartbeat port that is not a heartbeat of this job and hosts file (reported once)"
                            );
                        }
                        None => {}
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => {
                    tracing::debug!("heartbeat receive failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// The node a heartbeat comes from, if it is one of this job's other nodes sending
    /// from its address in the hosts file.
    fn sender(&self, m: &Message, from: SocketAddr) -> Option<usize> {
        let node = usize::try_from(m.node).ok()?;
        (m.fingerprint == self.fingerprint
            && m.node != self.me
            && self.addrs.get(node) == Some(&from))
        .then_some(node)
    }

    fn send(&self) {
        let (generation, done) = {
            let t = lock(&self.tracker);
            (t.generation(), t.done())
        };
        let msg = Message {
            fingerprint: self.fingerprint,
            node: self.me,
            generation,
            done,
        }
        .encode();
        for to in &self.peers {
            // A cut link shows as an error here (no route) or as silence: the other side's
            // silence is what counts, so errors are only logged.
            if let Err(e) = self.socket.send_to(&msg, to) {
                tracing::trace!(%to, "heartbeat not sent: {e}");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| format!("10.200.0.{}:7000", i + 1).parse().unwrap())
            .collect()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Two nodes' trackers at generation 0 that heard each other at the returned instant.
    fn two_running_nodes() -> (Instant, Tracker, Tracker) {
        let t0 = Instant::now();
        let mut a = Tracker::new(0, addrs(2), secs(10));
        let mut b = Tracker::new(1, addrs(2), secs(10));
        a.heard(1, 0, false, t0);
        b.heard(0, 0, false, t0);
        (t0, a, b)
    }

    #[test]
    fn messages_round_trip_and_foreign_datagrams_are_refused() {
        let m = Message {
            fingerprint: 0xdead_beef_0123_4567,
            node: 3,
            generation: 42,
            done: true,
        };
        assert_eq!(Message::decode(&m.encode()), Some(m));
        let mut bad = m.encode();
        bad[0] = b'X';
        assert_eq!(Message::decode(&bad), None);
        assert_eq!(Message::decode(&m.encode()[..31]), None);
    }

    #[test]
    fn a_node_heard_then_silent_for_the_timeout_is_lost() {
        let t0 = Instant::now();
        let mut t = Tracker::new(0, addrs(3), secs(10));
        t.heard(1, 0, false, t0);
        t.heard(2, 0, false, t0);
        assert_eq!(t.check(t0 + secs(9)), None);
        t.heard(1, 0, false, t0 + secs(8));
        // Node 2 has been silent for 10 s, node 1 for 2 s.
        let loss = t.check(t0 + secs(10)).unwrap();
        assert_eq!(
            loss,
            PeerLoss::Silent {
                node: 2,
                addr: "10.200.0.3:7000".parse().unwrap(),
                silent_for: secs(10),
                timeout: secs(10)
            }
        );
        assert_eq!(
            loss.to_string(),
            "node 2 (10.200.0.3:7000) is silent: no heartbeat for 10.0 s (--heartbeat-timeout 10.0 s); its link or machine may be down"
        );
    }

    #[test]
    fn a_node_never_heard_is_left_to_the_connect_timeout() {
        let t0 = Instant::now();
        let t = Tracker::new(1, addrs(2), secs(10));
        assert_eq!(t.check(t0 + secs(3600)), None);
    }

    #[test]
    fn after_a_restart_nodes_are_watched_again_only_once_heard() {
        let t0 = Instant::now();
        let mut t = Tracker::new(0, addrs(2), secs(10));
        t.heard(1, 0, false, t0);
        assert!(t.check(t0 + secs(10)).is_some());
        t.restarted();
        assert_eq!(t.generation(), 1);
        // Still cut: the new processes wait for the connect timeout, no restart loop.
        assert_eq!(t.check(t0 + secs(60)), None);
        t.heard(1, 1, false, t0 + secs(61));
        assert_eq!(t.check(t0 + secs(70)), None);
        assert!(t.check(t0 + secs(71)).is_some());
    }

    #[test]
    fn a_node_that_is_done_or_our_own_finish_stops_the_watch() {
        let t0 = Instant::now();
        let mut t = Tracker::new(0, addrs(3), secs(10));
        t.heard(1, 0, true, t0);
        t.heard(2, 0, false, t0);
        let loss = t.check(t0 + secs(20)).unwrap();
        assert!(matches!(loss, PeerLoss::Silent { node: 2, .. }), "{loss}");
        assert!(!t.done());
        t.finishing();
        assert!(t.done());
        assert_eq!(t.check(t0 + secs(20)), None);
        // A restart watches everyone again.
        t.restarted();
        t.heard(1, 1, false, t0 + secs(21));
        assert!(t.check(t0 + secs(31)).is_some());
    }

    #[test]
    fn a_peer_restarting_under_running_processes_restarts_ours_once() {
        let (t0, mut a, mut b) = two_running_nodes();
        // A's processes fail; it restarts into generation 1.
        a.restarted();
        assert_eq!(a.generation(), 1);
        b.heard(0, 1, false, t0 + secs(1));
        let loss = b.check(t0 + secs(1)).unwrap();
        assert_eq!(
            loss.to_string(),
            "node 0 (10.200.0.1:7000) restarted its processes (generation 1)"
        );
        b.restarted();
        assert_eq!(b.generation(), 1, "joins A's generation");
        assert_eq!(b.check(t0 + secs(1)), None);
        // A hears B's new generation: not above its own, no second restart.
        a.heard(1, 0, false, t0 + secs(1));
        a.heard(1, 1, false, t0 + secs(2));
        assert_eq!(a.check(t0 + secs(2)), None);
    }

    #[test]
    fn concurrent_restarts_for_one_failure_agree_and_stale_peers_are_not_followed() {
        let (t0, mut a, mut b) = two_running_nodes();
        // Both notice the same cut and restart, each on its own.
        a.restarted();
        b.restarted();
        a.heard(1, 1, false, t0 + secs(1));
        b.heard(0, 1, false, t0 + secs(1));
        assert_eq!((a.check(t0 + secs(2)), b.check(t0 + secs(2))), (None, None));
        // A launcher restarted by systemd starts again at generation 0: a newer peer's
        // heartbeats first heard in an attempt are not a restart...
        let mut fresh = Tracker::new(1, addrs(2), secs(10));
        fresh.heard(0, 1, false, t0);
        assert_eq!(fresh.check(t0), None);
        // ...and its next restart joins the peer's generation rather than lagging.
        fresh.restarted();
        assert_eq!(fresh.generation(), 1);
        // A peer at a lower generation (it lags) is not followed.
        let mut c = Tracker::new(0, addrs(2), secs(10));
        c.restarted();
        c.restarted();
        c.heard(1, 0, false, t0);
        c.heard(1, 1, false, t0);
        assert_eq!(c.check(t0), None);
    }

    #[test]
    fn settings_need_a_timeout_of_two_intervals() {
        let ok = HeartbeatConfig {
            interval: secs(1),
            timeout: secs(10),
        };
        assert!(ok.check().is_ok());
        let short = HeartbeatConfig {
            interval: secs(1),
            timeout: Duration::from_millis(1500),
        };
        assert!(short
            .check()
            .unwrap_err()
            .to_string()
            .contains("--heartbeat-timeout 1500 ms is too short"));
    }

    #[test]
    fn two_launchers_hear_each_other_over_udp() {
        use super::super::launcher::PeerWatch;
        let ports: Vec<u16> = (0..2)
            .map(|_| {
                UdpSocket::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            })
            .collect();
        let text = format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1]);
        let hosts = Hosts::parse(&text, "test").unwrap();
        let cfg = HeartbeatConfig {
            interval: Duration::from_millis(20),
            timeout: Duration::from_millis(500),
        };
        let a = Heartbeats::start(&hosts, 0, 7, cfg).unwrap().unwrap();
        let b = Heartbeats::start(&hosts, 1, 7, cfg).unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!((a.lost(), b.lost()), (None, None), "both are heard");
        assert!(a.lock().peers[1].heard.is_some(), "A heard B");
        // B's launcher exits: it says so, and A does not count its silence.
        drop(b);
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(a.lost(), None, "a node that said goodbye is not lost");
        // A restarts; node 1's address then sends two heartbeats and falls silent.
        a.restarted();
        let fake = UdpSocket::bind(hosts.nodes()[1].addr).unwrap();
        let beat = Message {
            fingerprint: 7,
            node: 1,
            generation: 1,
            done: false,
        };
        for _ in 0..2 {
            fake.send_to(&beat.encode(), hosts.nodes()[0].addr).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        // Another job's heartbeats (another fingerprint) are not heard.
        let other = Message {
            fingerprint: 8,
            ..beat
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let loss = loop {
            fake.send_to(&other.encode(), hosts.nodes()[0].addr)
                .unwrap();
            if let Some(loss) = a.lost() {
                break loss;
            }
            assert!(Instant::now() < deadline, "the silent node was not noticed");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(matches!(loss, PeerLoss::Silent { node: 1, .. }), "{loss}");
    }
}

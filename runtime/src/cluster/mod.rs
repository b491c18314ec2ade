//! Clusters of processes: hosts files, connections between processes, the per-node launcher.
//!
//! A cluster is `nodes × procs_per_node` processes of `workers` timely worker threads each.
//! The hosts file ([`hosts`]) gives every node's base address; on each node a launcher
//! ([`launcher`]) starts that node's processes from the job binary itself; the processes
//! connect to each other and check they run the same build ([`net`]) before timely takes
//! the sockets over. The launchers of different nodes watch each other with UDP
//! heartbeats ([`heartbeat`]), so that a silent node also restarts the job.

pub mod heartbeat;
pub mod hosts;
pub mod launcher;
pub mod net;

pub use heartbeat::{HeartbeatConfig, Heartbeats, PeerLoss};
pub use hosts::{Hosts, Node, ProcessAddr};
pub use launcher::{ChildExit, ChildSpec, Outcome, Supervision};
pub use net::{connect_all, start_networking, Hello, Mesh};

use weir_compiler::plan::ClusterShape;

/// `n` and the noun, plural unless `n == 1`: `1 node`, `2 processes`.
pub fn count(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// A cluster shape for people: `2 nodes × 2 processes × 4 workers`.
pub fn describe_shape(c: &ClusterShape) -> String {
    format!(
        "{} × {} × {}",
        count(c.nodes, "node", "nodes"),
        count(c.procs_per_node, "process", "processes"),
        count(c.workers, "worker", "workers")
    )
}

//! The job plan: what the compiler decides at build time (operators, edges, chains) and what
//! the job binary resolves at start-up for a cluster shape (parallelism, partitioning, slots).
//!
//! This module has no syn/quote dependency: the runtime links it so that `explain` and `run`
//! compute the physical plan with the very same function.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Default number of key groups (Flink's default max parallelism is 128 too).
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;
/// Largest accepted max parallelism (Flink's upper bound is 2^15).
pub const MAX_MAX_PARALLELISM: u32 = 32768;
/// Name of the slot sharing group operators belong to unless they say otherwise.
pub const DEFAULT_SLOT_SHARING_GROUP: &str = "default";

/// What the compiler produced for one job: embedded in the binary as JSON.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct JobPlan {
    /// Job name (`#[weir::job(name = ...)]`, default: the function name).
    pub name: String,
    /// Number of key groups; upper bound for every operator's parallelism.
    pub max_parallelism: u32,
    /// Job-level default parallelism from the attribute, if any.
    pub default_parallelism: Option<u32>,
    /// Every logical operator, indexed by `id`.
    pub operators: Vec<Operator>,
    /// Logical edges between operators.
    pub edges: Vec<Edge>,
    /// Physical vertices: chains of operators fused at compile time, head first.
    pub vertices: Vec<Vertex>,
    /// Names of the job arguments the pipeline reads (`env.arg("name")`).
    pub args: Vec<ArgSpec>,
    /// Checkpoint interval from the attribute (`checkpoint_interval = "10s"`), in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_interval_ms: Option<u64>,
}

/// A duration in milliseconds: `500ms`, `10s`, `2m`, or a bare number of milliseconds (the
/// job attribute's and the command line's syntax).
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "ms"),
    };
    let scale = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" | "min" => 60_000,
        _ => {
            return Err(format!(
                "`{s}` is not a duration: write it as 500ms, 10s or 2m"
            ))
        }
    };
    match num.parse::<u64>() {
        Ok(n) if n > 0 && n.checked_mul(scale).is_some() => Ok(n * scale),
        _ => Err(format!(
            "`{s}` is not a positive duration: write it as 500ms, 10s or 2m"
        )),
    }
}

/// A job argument read with `env.arg` / `env.arg_or`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ArgSpec {
    /// The argument's name, given as `--arg name=value`.
    pub name: String,
    /// Whether the pipeline supplies a default (`env.arg_or`).
    pub has_default: bool,
}

/// The kinds of logical operator.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Produces records.
    Source,
    /// One record in, one out.
    Map,
    /// Keeps records for which a predicate holds.
    Filter,
    /// One record in, zero or more out.
    FlatMap,
    /// Rolling per-key reduce on a keyed stream.
    Reduce,
    /// Consumes records.
    Sink,
    /// Assigns event timestamps and generates watermarks.
    Watermarks,
    /// A keyed event-time window with its window function.
    Window,
    /// The late records of a window operator.
    LateData,
    /// A keyed process function (state, timers, side outputs).
    Process,
    /// A side output of a process function.
    SideOutput,
    /// A keyed co-process function over two connected keyed streams.
    CoProcess,
    /// A keyed stream connected to a broadcast stream.
    BroadcastProcess,
    /// An interval join of two keyed streams.
    IntervalJoin,
    /// A keyed aggregation of a changelog stream that emits updates and retractions.
    UpdatingAggregate,
    /// A regular (non-windowed) inner join of two keyed changelog streams.
    UpdatingJoin,
}

impl OpKind {
    /// The DSL method name of this operator.
    pub fn method(self) -> &'static str {
        match self {
            OpKind::Source => "source",
            OpKind::Map => "map",
            OpKind::Filter => "filter",
            OpKind::FlatMap => "flat_map",
            OpKind::Reduce => "reduce",
            OpKind::Sink => "sink",
            OpKind::Watermarks => "watermarks",
            OpKind::Window => "window",
            OpKind::LateData => "late_data",
            OpKind::Process => "process",
            OpKind::SideOutput => "side_output",
            OpKind::CoProcess => "co_process",
            OpKind::BroadcastProcess => "broadcast_process",
            OpKind::IntervalJoin => "interval_join",
            OpKind::UpdatingAggregate => "updating_aggregate",
            OpKind::UpdatingJoin => "updating_join",
        }
    }
    /// Whether the operator keeps keyed state (and so must run after `key_by`).
    pub fn is_keyed(self) -> bool {
        matches!(
            self,
            OpKind::Reduce
                | OpKind::Window
                | OpKind::Process
                | OpKind::CoProcess
                | OpKind::BroadcastProcess
                | OpKind::IntervalJoin
                | OpKind::UpdatingAggregate
                | OpKind::UpdatingJoin
        )
    }
}

/// A parallelism as written: a literal, or the job default resolved at start-up.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Par {
    /// No `parallelism(n)`: the job's default.
    Default,
    /// `parallelism(n)` with a literal.
    Fixed(u32),
}

/// Chaining hints (Flink's `disableChaining`, `startNewChain`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub enum Chaining {
    /// Chain when possible.
    #[default]
    Default,
    /// Never chain with the predecessor or the successors.
    Disabled,
    /// Start a new chain here; successors may chain to this operator.
    NewChain,
}

/// A logical operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Operator {
    /// Index in `JobPlan::operators`.
    pub id: usize,
    /// What it does.
    pub kind: OpKind,
    /// Unique name; also the stable identity of its state.
    pub name: String,
    /// As written.
    pub parallelism: Par,
    /// Slot sharing group.
    pub slot_sharing_group: String,
    /// Chaining hint.
    pub chaining: Chaining,
    /// Where the user wrote it (`file:line:column`).
    pub location: String,
    /// A short description (the source/sink expression, the closure's text).
    pub detail: String,
}

/// How records travel along a logical edge.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// No key: forward when both ends have the same parallelism and slots, otherwise rebalance.
    Unkeyed,
    /// After `key_by`: routed by key group.
    Hash,
    /// `.broadcast()`: every record to every instance.
    Broadcast,
}

/// A logical edge.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Edge {
    /// Producing operator.
    pub from: usize,
    /// Consuming operator.
    pub to: usize,
    /// Partitioning kind.
    pub kind: EdgeKind,
    /// Whether the edge is inside a vertex (fused, no channel).
    pub chained: bool,
}

/// A physical vertex: operators fused into one timely operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Vertex {
    /// Index in `JobPlan::vertices`.
    pub id: usize,
    /// Operator ids, head first, in topological order.
    pub operators: Vec<usize>,
    /// Parallelism of every operator in it.
    pub parallelism: Par,
    /// Slot sharing group of every operator in it.
    pub slot_sharing_group: String,
}

impl JobPlan {
    /// The vertex that holds operator `op`.
    pub fn vertex_of(&self, op: usize) -> Option<usize> {
        self.vertices.iter().position(|v| v.operators.contains(&op))
    }

    /// A display name for a vertex: its operators' names joined as Flink does.
    pub fn vertex_name(&self, v: usize) -> String {
        self.vertices[v]
            .operators
            .iter()
            .map(|&o| self.operators[o].name.as_str())
            .collect::<Vec<_>>()
            .join(" -> ")
    }

    /// A fingerprint of the plan's shape (operators, edges, chains), stable across builds
    /// of the same pipeline. Used to refuse restoring incompatible state.
    pub fn fingerprint(&self) -> u64 {
        // FNV-1a over the canonical JSON: simple, documented, stable.
        let json = serde_json::to_string(self).unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in json.as_bytes() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
}

/// The cluster a job runs on: `nodes × procs_per_node` processes of `workers` threads each.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterShape {
    /// Number of nodes (lines of the hosts file).
    pub nodes: usize,
    /// Processes started on every node.
    pub procs_per_node: usize,
    /// Worker threads per process.
    pub workers: usize,
}

impl ClusterShape {
    /// One process with `workers` threads.
    pub fn single(workers: usize) -> Self {
        ClusterShape {
            nodes: 1,
            procs_per_node: 1,
            workers,
        }
    }
    /// Total worker slots.
    pub fn slots(&self) -> usize {
        self.nodes * self.procs_per_node * self.workers
    }
    /// Total processes.
    pub fn processes(&self) -> usize {
        self.nodes * self.procs_per_node
    }
    /// The `k`-th slot in placement order. Consecutive slots alternate between nodes first,
    /// then between the processes of a node, then between worker threads, so that the
    /// instances of one vertex spread across nodes and processes.
    pub fn slot_in_order(&self, k: usize) -> Slot {
        let node = k % self.nodes;
        let rest = k / self.nodes;
        let local_process = rest % self.procs_per_node;
        let local_worker = rest / self.procs_per_node;
        let process = node * self.procs_per_node + local_process;
        Slot {
            node,
            process,
            local_worker,
            worker: process * self.workers + local_worker,
        }
    }
}

/// Where one operator instance runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    /// Node index (line of the hosts file).
    pub node: usize,
    /// Global process index (`node * procs_per_node + local process`).
    pub process: usize,
    /// Worker thread index within the process.
    pub local_worker: usize,
    /// Global timely worker index (`process * workers + local_worker`).
    pub worker: usize,
}

/// How records travel along a physical edge at run time.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Partitioning {
    /// Instance i sends to instance i (same parallelism).
    Forward,
    /// Round-robin over the consumer's instances (parallelism changes, no key).
    Rebalance,
    /// By key group: `xxh3_64(key bytes) % max_parallelism`, then Flink's range assignment.
    Hash,
    /// Every record to every instance of the consumer.
    Broadcast,
}

impl fmt::Display for Partitioning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Partitioning::Forward => "FORWARD",
            Partitioning::Rebalance => "REBALANCE",
            Partitioning::Hash => "HASH",
            Partitioning::Broadcast => "BROADCAST",
        })
    }
}

/// A vertex resolved for a cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PhysicalVertex {
    /// Vertex id (same as in the `JobPlan`).
    pub id: usize,
    /// Display name: chained operator names joined by " -> ".
    pub name: String,
    /// Names of the chained operators, head first.
    pub operators: Vec<String>,
    /// Resolved parallelism.
    pub parallelism: usize,
    /// Slot sharing group.
    pub slot_sharing_group: String,
    /// Slot of every instance, by instance index.
    pub instances: Vec<Slot>,
}

/// An edge between vertices, resolved for a cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PhysicalEdge {
    /// Producing vertex.
    pub from_vertex: usize,
    /// Consuming vertex.
    pub to_vertex: usize,
    /// Producing operator (inside `from_vertex`).
    pub from_operator: usize,
    /// Consuming operator (the head of `to_vertex`).
    pub to_operator: usize,
    /// Resolved partitioning.
    pub partitioning: Partitioning,
    /// Whether records stay on their worker (forward between instances in one slot).
    pub local: bool,
}

/// The plan for one cluster shape: what `explain` prints and `run` executes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PhysicalPlan {
    /// Job name.
    pub job: String,
    /// The cluster shape it was resolved for.
    pub cluster: ClusterShape,
    /// Number of key groups.
    pub max_parallelism: u32,
    /// Default parallelism used for operators without their own.
    pub default_parallelism: usize,
    /// Slots the plan occupies (sum over slot sharing groups of their largest parallelism).
    pub slots_needed: usize,
    /// Total operator instances (tasks).
    pub tasks: usize,
    /// Vertices with placement.
    pub vertices: Vec<PhysicalVertex>,
    /// Edges between vertices.
    pub edges: Vec<PhysicalEdge>,
}

/// Why a plan cannot run on a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// Zero nodes, processes or workers.
    EmptyCluster,
    /// A parallelism of zero or above max parallelism.
    BadParallelism {
        /// Vertex display name.
        vertex: String,
        /// The parallelism.
        parallelism: usize,
        /// The max parallelism.
        max: u32,
    },
    /// More slots needed than the cluster has.
    NotEnoughSlots {
        /// Slots the plan needs.
        needed: usize,
        /// Slots the cluster has.
        available: usize,
        /// Per group: name and size.
        groups: Vec<(String, usize)>,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::EmptyCluster => {
                write!(f, "the cluster has no slots: nodes, processes per node and workers must all be at least 1")
            }
            PlanError::BadParallelism { vertex, parallelism, max } => write!(
                f,
                "vertex `{vertex}` has parallelism {parallelism}, but it must be between 1 and the job's max parallelism {max}; lower it with --parallelism or raise max_parallelism"
            ),
            PlanError::NotEnoughSlots { needed, available, groups } => {
                let detail = groups.iter().map(|(g, n)| format!("{n} for group `{g}`")).collect::<Vec<_>>().join(" + ");
                write!(
                    f,
                    "the plan needs {needed} slots ({detail}) but the cluster has {available} (nodes × procs-per-node × workers); add workers or processes, or lower parallelism"
                )
            }
        }
    }
}

impl std::error::Error for PlanError {}

/// Key group of a key hash: `hash % max_parallelism`.
#[inline]
pub fn key_group(hash: u64, max_parallelism: u32) -> u32 {
    (hash % u64::from(max_parallelism)) as u32
}

/// The instance that owns a key group (Flink's `keyGroup * parallelism / maxParallelism`):
/// contiguous ranges of key groups per instance, so rescaling moves whole ranges.
#[inline]
pub fn instance_for_key_group(key_group: u32, parallelism: usize, max_parallelism: u32) -> usize {
    (key_group as usize * parallelism) / max_parallelism as usize
}

/// The key groups owned by `instance` out of `parallelism` (inverse of
/// [`instance_for_key_group`]).
pub fn key_group_range(
    instance: usize,
    parallelism: usize,
    max_parallelism: u32,
) -> std::ops::Range<u32> {
    let m = max_parallelism as usize;
    let start = (instance * m).div_ceil(parallelism);
    let end = ((instance + 1) * m).div_ceil(parallelism);
    start as u32..end as u32
}

/// Resolve a compiled plan for a cluster: parallelism, edge partitioning and slot placement.
///
/// `default_parallelism` is what the launcher was told (`--parallelism`); the job attribute
/// wins over it (Flink's rule: the environment's setting in code wins), and without either
/// the default is every slot of the cluster.
pub fn resolve(
    plan: &JobPlan,
    cluster: ClusterShape,
    default_parallelism: Option<usize>,
) -> Result<PhysicalPlan, PlanError> {
    let available = cluster.slots();
    if available == 0 {
        return Err(PlanError::EmptyCluster);
    }
    let default = plan
        .default_parallelism
        .map(|p| p as usize)
        .or(default_parallelism)
        .unwrap_or(available);

    let par_of = |p: Par| match p {
        Par::Default => default,
        Par::Fixed(n) => n as usize,
    };

    // Slot sharing groups in order of first appearance; a group needs as many slots as its
    // widest vertex.
    let mut groups: Vec<(String, usize)> = Vec::new();
    for v in &plan.vertices {
        let p = par_of(v.parallelism);
        if p == 0 || p > plan.max_parallelism as usize {
            return Err(PlanError::BadParallelism {
                vertex: plan.vertex_name(v.id),
                parallelism: p,
                max: plan.max_parallelism,
            });
        }
        match groups.iter_mut().find(|(g, _)| *g == v.slot_sharing_group) {
            Some((_, n)) => *n = (*n).max(p),
            None => groups.push((v.slot_sharing_group.clone(), p)),
        }
    }
    let needed: usize = groups.iter().map(|(_, n)| n).sum();
    if needed > available {
        return Err(PlanError::NotEnoughSlots {
            needed,
            available,
            groups,
        });
    }
    let offset_of = |group: &str| {
        let mut off = 0;
        for (g, n) in &groups {
            if g == group {
                return off;
            }
            off += n;
        }
        off
    };

    let vertices: Vec<PhysicalVertex> = plan
        .vertices
        .iter()
        .map(|v| {
            let p = par_of(v.parallelism);
            let off = offset_of(&v.slot_sharing_group);
            PhysicalVertex {
                id: v.id,
                name: plan.vertex_name(v.id),
                operators: v
                    .operators
                    .iter()
                    .map(|&o| plan.operators[o].name.clone())
                    .collect(),
                parallelism: p,
                slot_sharing_group: v.slot_sharing_group.clone(),
                instances: (0..p).map(|i| cluster.slot_in_order(off + i)).collect(),
            }
        })
        .collect();

    let mut edges = Vec::new();
    for e in plan.edges.iter().filter(|e| !e.chained) {
        let (Some(fv), Some(tv)) = (plan.vertex_of(e.from), plan.vertex_of(e.to)) else {
            continue;
        };
        let (pf, pt) = (&vertices[fv], &vertices[tv]);
        let partitioning = match e.kind {
            EdgeKind::Hash => Partitioning::Hash,
            EdgeKind::Broadcast => Partitioning::Broadcast,
            EdgeKind::Unkeyed if pf.parallelism == pt.parallelism => Partitioning::Forward,
            EdgeKind::Unkeyed => Partitioning::Rebalance,
        };
        let local = partitioning == Partitioning::Forward && pf.instances == pt.instances;
        edges.push(PhysicalEdge {
            from_vertex: fv,
            to_vertex: tv,
            from_operator: e.from,
            to_operator: e.to,
            partitioning,
            local,
        });
    }

    Ok(PhysicalPlan {
        job: plan.name.clone(),
        cluster,
        max_parallelism: plan.max_parallelism,
        default_parallelism: default,
        slots_needed: needed,
        tasks: vertices.iter().map(|v| v.parallelism).sum(),
        vertices,
        edges,
    })
}

impl PhysicalPlan {
    /// The instance of vertex `v` that runs on global worker `worker`, if any.
    pub fn instance_on(&self, v: usize, worker: usize) -> Option<usize> {
        self.vertices[v]
            .instances
            .iter()
            .position(|s| s.worker == worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_group_ranges_partition_all_groups() {
        for p in 1..=20 {
            let mut next = 0;
            for i in 0..p {
                let r = key_group_range(i, p, 128);
                assert_eq!(r.start, next);
                for kg in r.clone() {
                    assert_eq!(instance_for_key_group(kg, p, 128), i);
                }
                next = r.end;
            }
            assert_eq!(next, 128);
        }
    }

    #[test]
    fn slots_alternate_nodes_then_processes() {
        let c = ClusterShape {
            nodes: 2,
            procs_per_node: 2,
            workers: 2,
        };
        let order: Vec<_> = (0..8).map(|k| c.slot_in_order(k)).collect();
        assert_eq!(order[0].node, 0);
        assert_eq!(order[1].node, 1);
        assert_eq!((order[2].node, order[2].process), (0, 1));
        let mut workers: Vec<_> = order.iter().map(|s| s.worker).collect();
        workers.sort();
        assert_eq!(workers, (0..8).collect::<Vec<_>>());
    }
}

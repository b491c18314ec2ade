//! `explain`: the physical plan as text for people, as JSON for tools, as Graphviz DOT.

use crate::cluster::{count, describe_shape};
use serde::Serialize;
use std::fmt::Write as _;
use weir_compiler::plan::{JobPlan, OpKind, Operator, PhysicalPlan};

/// What `explain --format json` prints: `{"job": name, "plan": PhysicalPlan, "operators":
/// [Operator]}` (field order as here).
#[derive(Serialize, Debug)]
pub struct ExplainJson<'a> {
    /// The job's name.
    pub job: &'a str,
    /// The resolved physical plan.
    pub plan: &'a PhysicalPlan,
    /// The compiled plan's logical operators, by id.
    pub operators: &'a [Operator],
}

/// An operator as Flink shows it in a chain: `Source: lines`, `filter`, `Sink: out`.
pub fn operator_label(op: &Operator) -> String {
    let prefix = match op.kind {
        OpKind::Source => "Source: ",
        OpKind::Sink => "Sink: ",
        _ => "",
    };
    if op.name.starts_with(prefix) {
        op.name.clone()
    } else {
        format!("{prefix}{}", op.name)
    }
}

fn chain_label(plan: &JobPlan, v: usize) -> String {
    plan.vertices
        .get(v)
        .map(|vx| {
            vx.operators
                .iter()
                .filter_map(|&o| plan.operators.get(o))
                .map(operator_label)
                .collect::<Vec<_>>()
                .join(" -> ")
        })
        .unwrap_or_default()
}

fn op_name(plan: &JobPlan, o: usize) -> &str {
    plan.operators
        .get(o)
        .map(|op| op.name.as_str())
        .unwrap_or("?")
}

/// The text form: a header, every vertex with its operators and instance slots, the edges.
pub fn text(plan: &JobPlan, physical: &PhysicalPlan) -> String {
    let mut s = String::new();
    let c = &physical.cluster;
    let _ = writeln!(
        s,
        "Job `{}`: {}, {}, {} of {} slots, cluster {}, max parallelism {}, default parallelism {}",
        physical.job,
        count(physical.vertices.len(), "vertex", "vertices"),
        count(physical.tasks, "task", "tasks"),
        physical.slots_needed,
        c.slots(),
        describe_shape(c),
        physical.max_parallelism,
        physical.default_parallelism
    );
    for v in &physical.vertices {
        let _ = writeln!(s);
        let _ = writeln!(s, "Vertex {}: {}", v.id, chain_label(plan, v.id));
        let _ = writeln!(
            s,
            "  parallelism {}, slot sharing group `{}`",
            v.parallelism, v.slot_sharing_group
        );
        let ops: Vec<&Operator> = plan
            .vertices
            .get(v.id)
            .map(|vx| {
                vx.operators
                    .iter()
                    .filter_map(|&o| plan.operators.get(o))
                    .collect()
            })
            .unwrap_or_default();
        let width = ops.iter().map(|o| o.name.len()).max().unwrap_or(0);
        let kwidth = ops.iter().map(|o| o.kind.method().len()).max().unwrap_or(0);
        let _ = writeln!(s, "  operators:");
        for op in ops {
            let _ = writeln!(
                s,
                "    {:<width$}  {:<kwidth$}  {}",
                op.name,
                op.kind.method(),
                op.location
            );
            // Event time at a glance: watermark strategies, window assigners, side outputs.
            if matches!(
                op.kind,
                OpKind::Watermarks
                    | OpKind::Window
                    | OpKind::LateData
                    | OpKind::SideOutput
                    | OpKind::IntervalJoin
            ) && !op.detail.is_empty()
            {
                let _ = writeln!(s, "      {}", op.detail);
            }
        }
        let _ = writeln!(s, "  instances:");
        let iw = v.instances.len().saturating_sub(1).to_string().len();
        for (i, slot) in v.instances.iter().enumerate() {
            let _ = writeln!(
                s,
                "    #{i:<iw$}  node {}, process {}, worker {} (thread {})",
                slot.node, slot.process, slot.worker, slot.local_worker
            );
        }
    }
    let _ = writeln!(s);
    if physical.edges.is_empty() {
        let _ = writeln!(s, "Edges: none");
    } else {
        let _ = writeln!(s, "Edges:");
        for e in &physical.edges {
            let _ = writeln!(
                s,
                "  vertex {} -> vertex {} ({} -> {}): {}{}",
                e.from_vertex,
                e.to_vertex,
                op_name(plan, e.from_operator),
                op_name(plan, e.to_operator),
                e.partitioning,
                if e.local { ", local" } else { "" }
            );
        }
    }
    s
}

/// The JSON form ([`ExplainJson`]), pretty-printed.
pub fn json(plan: &JobPlan, physical: &PhysicalPlan) -> serde_json::Result<String> {
    let mut s = serde_json::to_string_pretty(&ExplainJson {
        job: &plan.name,
        plan: physical,
        operators: &plan.operators,
    })?;
    s.push('\n');
    Ok(s)
}

fn dot_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The Graphviz form: a `subgraph cluster_<v>` per vertex holding its operators, chained
/// edges dashed inside, edges between vertices labelled with their partitioning.
pub fn dot(plan: &JobPlan, physical: &PhysicalPlan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph {} {{", dot_str(&physical.job));
    let _ = writeln!(s, "  rankdir=LR;");
    let _ = writeln!(s, "  node [shape=box];");
    for v in &physical.vertices {
        let _ = writeln!(s, "  subgraph cluster_{} {{", v.id);
        let _ = writeln!(
            s,
            "    label={};",
            dot_str(&format!(
                "vertex {}: parallelism {}, group {}",
                v.id, v.parallelism, v.slot_sharing_group
            ))
        );
        let ops = plan
            .vertices
            .get(v.id)
            .map(|vx| vx.operators.as_slice())
            .unwrap_or(&[]);
        for &o in ops {
            if let Some(op) = plan.operators.get(o) {
                let _ = writeln!(
                    s,
                    "    op{o} [label={}];",
                    dot_str(&format!("{}\n{}", operator_label(op), op.location))
                );
            }
        }
        for e in plan
            .edges
            .iter()
            .filter(|e| e.chained && ops.contains(&e.from) && ops.contains(&e.to))
        {
            let _ = writeln!(
                s,
                "    op{} -> op{} [style=dashed, label=\"chained\"];",
                e.from, e.to
            );
        }
        let _ = writeln!(s, "  }}");
    }
    for e in &physical.edges {
        let label = if e.local {
            format!("{} (local)", e.partitioning)
        } else {
            e.partitioning.to_string()
        };
        let _ = writeln!(
            s,
            "  op{} -> op{} [label={}];",
            e.from_operator,
            e.to_operator,
            dot_str(&label)
        );
    }
    let _ = writeln!(s, "}}");
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use weir_compiler::plan::{
        resolve, ArgSpec, Chaining, ClusterShape, Edge, EdgeKind, Par, Vertex,
    };

    fn op(id: usize, kind: OpKind, name: &str, par: Par, group: &str) -> Operator {
        Operator {
            id,
            kind,
            name: name.into(),
            parallelism: par,
            slot_sharing_group: group.into(),
            chaining: Chaining::Default,
            location: format!("src/main.rs:{}:9", 10 + id),
            detail: String::new(),
        }
    }

    /// lines -> filter -> map =HASH=> sum -> print (parallelism 1, own group).
    pub(crate) fn sample() -> JobPlan {
        JobPlan {
            name: "wordcount".into(),
            max_parallelism: 128,
            default_parallelism: None,
            operators: vec![
                op(0, OpKind::Source, "lines", Par::Default, "default"),
                op(1, OpKind::Filter, "filter", Par::Default, "default"),
                op(2, OpKind::Map, "map", Par::Default, "default"),
                op(3, OpKind::Reduce, "sum", Par::Default, "default"),
                op(4, OpKind::Sink, "print", Par::Fixed(1), "sinks"),
            ],
            edges: vec![
                Edge {
                    from: 0,
                    to: 1,
                    kind: EdgeKind::Unkeyed,
                    chained: true,
                },
                Edge {
                    from: 1,
                    to: 2,
                    kind: EdgeKind::Unkeyed,
                    chained: true,
                },
                Edge {
                    from: 2,
                    to: 3,
                    kind: EdgeKind::Hash,
                    chained: false,
                },
                Edge {
                    from: 3,
                    to: 4,
                    kind: EdgeKind::Unkeyed,
                    chained: false,
                },
            ],
            vertices: vec![
                Vertex {
                    id: 0,
                    operators: vec![0, 1, 2],
                    parallelism: Par::Default,
                    slot_sharing_group: "default".into(),
                },
                Vertex {
                    id: 1,
                    operators: vec![3],
                    parallelism: Par::Default,
                    slot_sharing_group: "default".into(),
                },
                Vertex {
                    id: 2,
                    operators: vec![4],
                    parallelism: Par::Fixed(1),
                    slot_sharing_group: "sinks".into(),
                },
            ],
            args: vec![
                ArgSpec {
                    name: "input".into(),
                    has_default: false,
                },
                ArgSpec {
                    name: "sep".into(),
                    has_default: true,
                },
            ],
            checkpoint_interval_ms: None,
        }
    }

    fn physical(plan: &JobPlan) -> PhysicalPlan {
        resolve(
            plan,
            ClusterShape {
                nodes: 2,
                procs_per_node: 1,
                workers: 2,
            },
            Some(2),
        )
        .unwrap()
    }

    #[test]
    fn text_shows_header_vertices_instances_and_edges() {
        let plan = sample();
        let t = text(&plan, &physical(&plan));
        let expected = "\
Job `wordcount`: 3 vertices, 5 tasks, 3 of 4 slots, cluster 2 nodes × 1 process × 2 workers, max parallelism 128, default parallelism 2

Vertex 0: Source: lines -> filter -> map
  parallelism 2, slot sharing group `default`
  operators:
    lines   source  src/main.rs:10:9
    filter  filter  src/main.rs:11:9
    map     map     src/main.rs:12:9
  instances:
    #0  node 0, process 0, worker 0 (thread 0)
    #1  node 1, process 1, worker 2 (thread 0)

Vertex 1: sum
  parallelism 2, slot sharing group `default`
  operators:
    sum  reduce  src/main.rs:13:9
  instances:
    #0  node 0, process 0, worker 0 (thread 0)
    #1  node 1, process 1, worker 2 (thread 0)

Vertex 2: Sink: print
  parallelism 1, slot sharing group `sinks`
  operators:
    print  sink  src/main.rs:14:9
  instances:
    #0  node 0, process 0, worker 1 (thread 1)

Edges:
  vertex 0 -> vertex 1 (map -> sum): HASH
  vertex 1 -> vertex 2 (sum -> print): REBALANCE
";
        assert_eq!(t, expected);
    }

    #[test]
    fn text_shows_event_time_details() {
        let mut plan = sample();
        plan.operators[2].kind = OpKind::Watermarks;
        plan.operators[2].detail =
            "BoundedOutOfOrderness::seconds(30), timestamps |o| o.event_time".into();
        plan.operators[3].kind = OpKind::Window;
        plan.operators[3].detail =
            "Tumbling::minutes(5), allowed lateness Duration::from_secs(60), aggregate Sales"
                .into();
        let physical = resolve(&plan, ClusterShape::single(3), Some(2)).unwrap();
        let t = text(&plan, &physical);
        assert!(
            t.contains("      BoundedOutOfOrderness::seconds(30), timestamps |o| o.event_time\n"),
            "{t}"
        );
        assert!(t.contains("      Tumbling::minutes(5), allowed lateness Duration::from_secs(60), aggregate Sales\n"), "{t}");
    }

    #[test]
    fn text_marks_local_forward_edges() {
        let mut plan = sample();
        plan.edges[2].kind = EdgeKind::Unkeyed;
        let t = text(&plan, &physical(&plan));
        assert!(
            t.contains("  vertex 0 -> vertex 1 (map -> sum): FORWARD, local\n"),
            "{t}"
        );
    }

    #[test]
    fn json_wraps_the_physical_plan() {
        let plan = sample();
        let p = physical(&plan);
        let j = json(&plan, &p).unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["job"], "wordcount");
        let back: PhysicalPlan = serde_json::from_value(v["plan"].clone()).unwrap();
        assert_eq!(back, p);
        assert_eq!(v["operators"][3]["kind"], "reduce");
        assert_eq!(v["plan"]["edges"][0]["partitioning"], "hash");
        let keys: Vec<&str> = j
            .lines()
            .filter(|l| l.starts_with("  \""))
            .map(|l| l.trim().split('"').nth(1).unwrap())
            .collect();
        assert_eq!(keys, ["job", "plan", "operators"]);
    }

    #[test]
    fn dot_has_a_cluster_per_vertex() {
        let plan = sample();
        let d = dot(&plan, &physical(&plan));
        assert!(d.starts_with("digraph \"wordcount\" {\n"));
        assert!(d.contains(
            "  subgraph cluster_0 {\n    label=\"vertex 0: parallelism 2, group default\";\n"
        ));
        assert!(d.contains("    op0 [label=\"Source: lines\\nsrc/main.rs:10:9\"];\n"));
        assert!(d.contains("    op0 -> op1 [style=dashed, label=\"chained\"];\n"));
        assert!(d.contains("  op2 -> op3 [label=\"HASH\"];\n"));
        assert!(d.contains("  op3 -> op4 [label=\"REBALANCE\"];\n"));
        assert_eq!(d.matches("subgraph cluster_").count(), 3);
        assert!(d.ends_with("}\n"));
        assert_eq!(dot_str("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }
}

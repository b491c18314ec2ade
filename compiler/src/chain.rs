//! Operator chaining: fuse forward edges between operators of equal parallelism and slot
//! sharing group into one physical vertex (Flink's rules), honouring the chaining hints.

use crate::lower::Graph;
use crate::validate::chain_blocker;

/// The vertex of every operator, and each vertex's operators in topological order.
pub struct Chains {
    /// `vertex_of[op]`.
    #[allow(dead_code)]
    pub vertex_of: Vec<usize>,
    /// Operators of each vertex, head first.
    pub vertices: Vec<Vec<usize>>,
    /// Whether each edge is inside a vertex.
    pub chained_edge: Vec<bool>,
}

/// Decide the chains. Operators come in program order, which is topological, so one pass
/// suffices: an operator joins its predecessor's vertex when nothing blocks the chain.
pub fn chain(g: &Graph) -> Chains {
    let mut vertex_of = vec![usize::MAX; g.ops.len()];
    let mut vertices: Vec<Vec<usize>> = Vec::new();
    let mut chained_edge = vec![false; g.edges.len()];
    for o in &g.ops {
        match (chain_blocker(g, o.id), o.inputs.as_slice()) {
            (None, [e]) => {
                let v = vertex_of[g.edges[*e].from];
                vertex_of[o.id] = v;
                vertices[v].push(o.id);
                chained_edge[*e] = true;
            }
            _ => {
                vertex_of[o.id] = vertices.len();
                vertices.push(vec![o.id]);
            }
        }
    }
    Chains {
        vertex_of,
        vertices,
        chained_edge,
    }
}

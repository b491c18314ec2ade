//! Graph-wide checks, each a named rule. Checks local to one call happen while lowering.

use crate::diag::Diagnostics;
use crate::lower::Graph;
use crate::plan::{OpKind, DEFAULT_SLOT_SHARING_GROUP};
use crate::symbol::*;

/// Run every rule; also resolves slot sharing groups (inheritance) on the way.
pub fn check(g: &mut Graph, cx: &Diagnostics) {
    check_duplicate_names(g, cx);
    check_late_data_settings(g, cx);
    resolve_groups(g);
    check_chain_with_previous(g, cx);
}

// Operator names are the stable identity of their state (Flink's uid): two operators named
// alike would share it. `.name("parse")` twice is an error on the second.
fn check_duplicate_names(g: &Graph, cx: &Diagnostics) {
    for (i, o) in g.ops.iter().enumerate() {
        let Some((name, span)) = &o.name else {
            continue;
        };
        if let Some(first) = g.ops[..i]
            .iter()
            .find(|p| p.name.as_ref().is_some_and(|(n, _)| n == name))
        {
            cx.error(*span, format!("duplicate operator name `{name}` (first used at {}): operator names identify state and must be unique", first.location));
        }
    }
}

// The late-data output of a window runs inside the window's instances: it takes the
// window's parallelism and group and cannot be moved or split off.
fn check_late_data_settings(g: &mut Graph, cx: &Diagnostics) {
    for i in 0..g.ops.len() {
        if !matches!(g.ops[i].kind, OpKind::LateData | OpKind::SideOutput) {
            continue;
        }
        let o = &g.ops[i];
        for span in [
            o.parallelism.map(|p| p.1),
            o.group.as_ref().map(|g| g.1),
            o.disable_chaining,
            o.start_new_chain,
        ]
        .into_iter()
        .flatten()
        {
            cx.error(span, "a side output runs inside the instances of the operator that writes it: set parallelism, slot sharing group and chaining on that operator, not here");
        }
        let Some(&e) = g.ops[i].inputs.first() else {
            continue;
        };
        let w = g.edges[e].from;
        g.ops[i].parallelism = g.ops[w].parallelism;
        g.ops[i].group = g.ops[w].group.clone();
    }
}

// Flink's rule: an operator without `slot_sharing_group` takes its inputs' group when they
// all agree, otherwise `default`. Sources start in `default`.
fn resolve_groups(g: &mut Graph) {
    for i in 0..g.ops.len() {
        let group = match &g.ops[i].group {
            Some((n, _)) => n.clone(),
            None => {
                let inputs: Vec<String> = g.ops[i]
                    .inputs
                    .iter()
                    .map(|&e| g.ops[g.edges[e].from].resolved_group.clone())
                    .collect();
                match inputs.first() {
                    Some(first) if inputs.iter().all(|x| x == first) => first.clone(),
                    _ => DEFAULT_SLOT_SHARING_GROUP.to_string(),
                }
            }
        };
        g.ops[i].resolved_group = group;
    }
}

/// Why operator `to` cannot chain to its single predecessor, if it cannot.
pub fn chain_blocker(g: &Graph, to: usize) -> Option<String> {
    let o = &g.ops[to];
    if matches!(o.kind, OpKind::LateData | OpKind::SideOutput) {
        return None; // always part of the vertex of the operator that writes it
    }
    let [e] = o.inputs.as_slice() else {
        return Some(format!(
            "it has {} inputs (only an operator with one input chains)",
            o.inputs.len()
        ));
    };
    let edge = &g.edges[*e];
    let p = &g.ops[edge.from];
    if edge.key.is_some() {
        return Some("its input comes through `key_by`, which repartitions records by key".into());
    }
    if p.parallelism.map(|x| x.0) != o.parallelism.map(|x| x.0) {
        return Some("its parallelism differs from its predecessor's".into());
    }
    if p.resolved_group != o.resolved_group {
        return Some(format!(
            "its slot sharing group `{}` differs from its predecessor's `{}`, and a group boundary breaks the chain",
            o.resolved_group, p.resolved_group
        ));
    }
    if p.disable_chaining.is_some() {
        return Some("its predecessor has `disable_chaining()`".into());
    }
    if p.kind == OpKind::Sink {
        return Some("its predecessor is a sink".into());
    }
    if o.disable_chaining.is_some() || o.start_new_chain.is_some() {
        return Some("it has a chaining hint that starts a new chain".into());
    }
    None
}

// `chain_with_previous()` promises that the operator is fused with its predecessor; a slot
// sharing group boundary, a key_by, a parallelism change or fan-in contradicts it.
fn check_chain_with_previous(g: &Graph, cx: &Diagnostics) {
    for o in &g.ops {
        let Some(span) = o.chain_with_previous else {
            continue;
        };
        if o.disable_chaining.is_some() || o.start_new_chain.is_some() {
            continue; // already reported as contradictory hints
        }
        if let Some(why) = chain_blocker(g, o.id) {
            cx.error(span, format!("`{CHAIN_WITH_PREVIOUS}()` cannot hold: {why}; remove the hint or make the two operators chainable"));
        }
    }
}

//! Compile representative pipelines without a proc-macro context: check the plan, the
//! chaining, the placement, and snapshot the plan and the generated code.

use quote::quote;
use weir_compiler::compile_job;
use weir_compiler::plan::{resolve, ClusterShape, Partitioning};

fn sales(filter_hint: proc_macro2::TokenStream) -> weir_compiler::Compiled {
    compile_job(
        quote!(name = "sales-analytics", parallelism = 4),
        quote! {
            fn pipeline(env: &mut Env) {
                env.source(FileSource::json_lines::<Order>(env.arg("input")))
                    .name("orders")
                    .filter(|o| o.amount > 100.0)
                    .name("large-orders")
                    #filter_hint
                    .map(to_total)
                    .name("to-cents")
                    .key_by(|t| t.customer_id)
                    .reduce(|a, b| merge(a, b))
                    .name("customer-totals")
                    .parallelism(8)
                    .sink(FileSink::json_lines(env.arg("output")))
                    .name("totals")
                    .parallelism(2);
            }
        },
    )
}

fn explain_text(plan: &weir_compiler::plan::PhysicalPlan) -> String {
    let mut s = format!("tasks {} slots {}\n", plan.tasks, plan.slots_needed);
    for v in &plan.vertices {
        s += &format!(
            "vertex {} [{}] p={} group={}\n",
            v.id,
            v.operators.join(" -> "),
            v.parallelism,
            v.slot_sharing_group
        );
        for (i, slot) in v.instances.iter().enumerate() {
            s += &format!(
                "  #{i} node {} process {} worker {}\n",
                slot.node, slot.process, slot.worker
            );
        }
    }
    for e in &plan.edges {
        s += &format!(
            "edge {} -> {} {}{}\n",
            e.from_vertex,
            e.to_vertex,
            e.partitioning,
            if e.local { " local" } else { "" }
        );
    }
    s
}

#[test]
fn sales_analytics_chains_into_14_tasks_on_8_slots() {
    let c = sales(quote!());
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    let plan = c.plan.unwrap();
    assert_eq!(plan.vertices.len(), 3);
    let phys = resolve(
        &plan,
        ClusterShape {
            nodes: 2,
            procs_per_node: 1,
            workers: 4,
        },
        None,
    )
    .unwrap();
    assert_eq!(phys.tasks, 14);
    assert_eq!(phys.slots_needed, 8);
    assert_eq!(
        phys.vertices[0].operators,
        vec!["orders", "large-orders", "to-cents"]
    );
    assert_eq!(phys.vertices[0].parallelism, 4);
    assert_eq!(phys.vertices[1].parallelism, 8);
    assert_eq!(phys.vertices[2].parallelism, 2);
    assert_eq!(phys.edges[0].partitioning, Partitioning::Hash);
    assert_eq!(phys.edges[1].partitioning, Partitioning::Rebalance);
    // Instances of a vertex spread across both nodes.
    let nodes: std::collections::BTreeSet<_> =
        phys.vertices[0].instances.iter().map(|s| s.node).collect();
    assert_eq!(nodes.len(), 2);
    insta::assert_snapshot!("sales_analytics_2x1x4", explain_text(&phys));
}

#[test]
fn start_new_chain_on_filter_gives_flinks_18_tasks() {
    let c = sales(quote!(.start_new_chain()));
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    let phys = resolve(
        &c.plan.unwrap(),
        ClusterShape {
            nodes: 2,
            procs_per_node: 1,
            workers: 4,
        },
        None,
    )
    .unwrap();
    assert_eq!(phys.vertices.len(), 4);
    assert_eq!(phys.tasks, 18);
    assert_eq!(phys.vertices[1].operators, vec!["large-orders", "to-cents"]);
    // The new chain is connected forward, and stays in the same slots.
    assert_eq!(phys.edges[0].partitioning, Partitioning::Forward);
    assert!(phys.edges[0].local);
}

#[test]
fn too_few_slots_is_an_error_saying_how_many() {
    let c = sales(quote!());
    let err = resolve(
        &c.plan.unwrap(),
        ClusterShape {
            nodes: 1,
            procs_per_node: 1,
            workers: 4,
        },
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("needs 8 slots"), "{err}");
}

#[test]
fn slot_sharing_groups_take_their_own_slots_and_break_chains() {
    let c = compile_job(
        quote!(),
        quote! {
            fn pipeline(env: &mut Env) {
                env.source(Generator::bounded(10, |i| i))
                    .map(|x| x + 1)
                    .slot_sharing_group("heavy")
                    .sink(DiscardSink::new());
            }
        },
    );
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    let plan = c.plan.unwrap();
    // source | map -> sink (the sink inherits the map's group)
    assert_eq!(plan.vertices.len(), 2);
    let phys = resolve(&plan, ClusterShape::single(4), Some(2)).unwrap();
    assert_eq!(phys.slots_needed, 4);
    let a: Vec<_> = phys.vertices[0]
        .instances
        .iter()
        .map(|s| s.worker)
        .collect();
    let b: Vec<_> = phys.vertices[1]
        .instances
        .iter()
        .map(|s| s.worker)
        .collect();
    assert!(
        a.iter().all(|w| !b.contains(w)),
        "groups must not share slots: {a:?} {b:?}"
    );
    assert_eq!(phys.edges[0].partitioning, Partitioning::Forward);
    assert!(!phys.edges[0].local);
}

#[test]
fn union_and_branching_make_multi_input_and_multi_output_vertices() {
    let c = compile_job(
        quote!(name = "branches"),
        quote! {
            fn pipeline(env: &mut Env) {
                let a = env.source(Generator::bounded(10, |i| i)).name("a");
                let b = env.source(Generator::bounded(10, |i| i * 2)).name("b");
                let both = a.union(b);
                both.filter(|x| x % 2 == 0).sink(DiscardSink::new());
                both.map(|x| x + 1).disable_chaining().sink(StdoutSink::json());
            }
        },
    );
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    let plan = c.plan.unwrap();
    let names: Vec<_> = (0..plan.vertices.len())
        .map(|v| plan.vertex_name(v))
        .collect();
    assert_eq!(names, vec!["a", "b", "filter -> sink", "map", "sink-2"]);
    let code = prettyplease::unparse(&syn::parse2(c.tokens).unwrap());
    insta::assert_snapshot!("branches_code", code);
}

#[test]
fn job_arguments_are_collected_with_defaults() {
    let c = compile_job(
        quote!(),
        quote! {
            fn pipeline(env: &mut Env) {
                let limit: u64 = env.arg_or("limit", 10).parse().unwrap_or(10);
                env.source(Generator::bounded(limit, |i| i)).sink(FileSink::json_lines(env.arg("out")));
            }
        },
    );
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    let args: Vec<_> = c
        .plan
        .unwrap()
        .args
        .into_iter()
        .map(|a| (a.name, a.has_default))
        .collect();
    assert_eq!(
        args,
        vec![("limit".to_string(), true), ("out".to_string(), false)]
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let c = compile_job(
        quote!(max_parallelism = 16),
        quote! {
            fn pipeline(env: &mut Env) {
                let s = env.source(Generator::bounded(10, |i| i)).parallelism(0);
                s.mapp(|x| x).reduce(|a, b| a + b).parallelism(32).sink(DiscardSink::new());
                let unused = env.source(Generator::bounded(1, |i| i));
                for i in 0..3 {}
            }
        },
    );
    let all = c.errors.join("\n");
    assert!(all.contains("parallelism must be between 1"), "{all}");
    assert!(all.contains("did you mean `map`"), "{all}");
    assert!(all.contains("`reduce` needs a keyed stream"), "{all}");
    assert!(all.contains("stream `unused` goes nowhere"), "{all}");
    assert!(all.contains("`for` loop is not allowed"), "{all}");
    assert_eq!(c.errors.len(), 6, "{all}");
}

#[test]
fn operator_details_show_whole_expressions() {
    let c = compile_job(
        quote!(),
        quote! {
            fn pipeline(env: &mut Env) {
                env.source(Generator::bounded(10, |i| (i, i as i64)))
                    .watermarks(BoundedOutOfOrderness::seconds(10), |c| c.1)
                    .key_by(|c| c.0)
                    .window(Session::minutes(30))
                    .process(|k, w, rs| vec![(*k, w.start, rs.len())])
                    .sink(DiscardSink::new());
            }
        },
    );
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    let plan = c.plan.unwrap();
    let detail = |kind| {
        plan.operators
            .iter()
            .find(|o| o.kind == kind)
            .unwrap()
            .detail
            .clone()
    };
    assert_eq!(
        detail(weir_compiler::plan::OpKind::Watermarks),
        "BoundedOutOfOrderness::seconds(10), timestamps |c| c.1"
    );
    assert_eq!(
        detail(weir_compiler::plan::OpKind::Window),
        "Session::minutes(30), process |k, w, rs| vec![(* k, w.start, rs.len())]"
    );
}

/// `checkpoint_interval = "…"` in the job attribute reaches the plan (the run's default
/// interval); jobs without it carry none, so their plan (and fingerprint) is unchanged.
#[test]
fn checkpoint_interval_attribute_is_in_the_plan() {
    let body = quote! {
        fn pipeline(env: &mut Env) {
            env.source(Generator::bounded(10, |i| i)).sink(DiscardSink::new());
        }
    };
    let with = compile_job(quote!(checkpoint_interval = "1500ms"), body.clone());
    assert_eq!(
        with.plan.as_ref().unwrap().checkpoint_interval_ms,
        Some(1500)
    );
    let minutes = compile_job(quote!(checkpoint_interval = "2m"), body.clone());
    assert_eq!(
        minutes.plan.as_ref().unwrap().checkpoint_interval_ms,
        Some(120_000)
    );
    let without = compile_job(quote!(), body);
    let plan = without.plan.as_ref().unwrap();
    assert_eq!(plan.checkpoint_interval_ms, None);
    let json = serde_json::to_string(plan).unwrap();
    assert!(!json.contains("checkpoint"), "{json}");
}

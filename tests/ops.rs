//! Operating a running job: metric values against known record counts, the REST API and
//! the HTTP server under load.

use std::sync::Arc;
use weir::prelude::*;
use weir::runtime::metrics::{parse_text, ProcessMetrics, Sample};
use weir::runtime::worker::{run_local_with, LocalOptions};

/// Records the source generates.
const N: u64 = 10_000;

#[weir::job(name = "ops-counts", main = false)]
fn counts(env: &mut Env) {
    let odd = weir::metrics::counter("odd_numbers");
    env.source(Generator::bounded(N, |i| i))
        .name("numbers")
        .filter(move |x| {
            if x % 2 == 1 {
                odd.inc();
            }
            x % 2 == 0
        })
        .flat_map(|x| [(x % 7, 1u64), (x % 5, 1u64)])
        .key_by(|(k, _)| *k)
        .reduce(|(k, a), (_, b)| (k, a + b))
        .name("sum")
        .parallelism(3)
        .sink(DiscardSink::new());
}

/// The sum of a metric's samples whose labels include `labels`.
fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

#[test]
fn metrics_count_the_records_of_every_vertex_and_operator() {
    let metrics = ProcessMetrics::new("ops-counts", 0);
    let opts = LocalOptions {
        metrics: Some(Arc::clone(&metrics)),
        ..LocalOptions::default()
    };
    let summary = run_local_with(counts(), 4, &[], opts).unwrap();
    assert_eq!(summary.records_in, N);
    let text = metrics.encode();
    let s = parse_text(&text);
    let plan = counts().plan;
    let source_vertex = plan.vertex_name(0);
    let sum_vertex = plan.vertex_name(1);
    // The source reads N records; its vertex keeps the N/2 even ones and emits two each.
    assert_eq!(
        sum(
            &s,
            "weir_operator_num_records_out_total",
            &[("operator", "numbers")]
        ),
        N as f64,
        "{text}"
    );
    assert_eq!(
        sum(
            &s,
            "weir_task_num_records_out_total",
            &[("vertex", &source_vertex)]
        ),
        N as f64
    );
    // The keyed vertex receives them all over its 3 instances and emits nothing (sink).
    assert_eq!(
        sum(
            &s,
            "weir_task_num_records_in_total",
            &[("vertex", &sum_vertex)]
        ),
        N as f64
    );
    assert_eq!(
        sum(
            &s,
            "weir_operator_num_records_in_total",
            &[("operator", "sum")]
        ),
        N as f64
    );
    let instances: Vec<&str> = s
        .iter()
        .filter(|x| {
            x.name == "weir_task_num_records_in_total" && x.label("vertex") == Some(&sum_vertex)
        })
        .filter_map(|x| x.label("instance"))
        .collect();
    assert_eq!(instances.len(), 3, "one series per instance: {instances:?}");
    // A rolling reduce emits one record per input, to the sink (parallelism 4: a vertex of
    // its own), which emits nothing.
    assert_eq!(plan.vertices.len(), 3);
    let sink_vertex = plan.vertex_name(2);
    assert_eq!(
        sum(
            &s,
            "weir_task_num_records_out_total",
            &[("vertex", &sum_vertex)]
        ),
        N as f64
    );
    assert_eq!(
        sum(
            &s,
            "weir_task_num_records_in_total",
            &[("vertex", &sink_vertex)]
        ),
        N as f64
    );
    assert_eq!(
        sum(
            &s,
            "weir_task_num_records_out_total",
            &[("vertex", &sink_vertex)]
        ),
        0.0
    );
    // The user's counter, summed over the workers that ran the filter.
    assert_eq!(
        sum(&s, "weir_user_odd_numbers_total", &[("job", "ops-counts")]),
        (N / 2) as f64
    );
    assert!(sum(&s, "weir_process_cpu_seconds", &[]) > 0.0);
}

//! The `nexmark` binary as a user meets it: choosing the query, explaining its plan,
//! refusing what it cannot run with one clear line.

use weir_runtime::plan::PhysicalPlan;
use weir_runtime::testing::{elf_interpreter, JobBinary};

fn job() -> JobBinary {
    JobBinary::new(env!("CARGO_BIN_EXE_nexmark"))
}

#[test]
fn without_a_query_it_lists_the_queries() {
    let o = job().run(["run", "--workers", "1"]);
    let line = o.assert_one_line_error(2);
    assert!(line.contains("--arg query=NAME"), "{line}");
    for q in weir_nexmark::QUERIES.iter().map(|(n, _)| *n) {
        assert!(line.contains(q), "{line}");
    }
}

#[test]
fn an_unknown_query_is_refused() {
    let o = job().run(["run", "--workers", "1", "--arg", "query=q6"]);
    let line = o.assert_one_line_error(2);
    assert!(line.contains("query=q6") && line.contains("q22"), "{line}");
}

#[test]
fn a_bad_generator_argument_names_itself() {
    let o = job().run([
        "run",
        "--workers",
        "1",
        "--arg",
        "query=q1",
        "--arg",
        "events=many",
    ]);
    assert!(!o.success(), "{o}");
    assert!(
        o.stderr
            .contains("--arg events=many: expected a number of events"),
        "{o}"
    );
}

/// q5's plan: the source, its watermarks and the split into bids chain into one vertex per
/// worker; the sliding window is keyed by auction; the global max runs once.
#[test]
fn explain_shows_the_chosen_query_plan() {
    let v = job().explain_json(&[
        "--procs-per-node",
        "2",
        "--workers",
        "2",
        "--arg",
        "query=q5",
    ]);
    assert_eq!(v["job"], "nexmark-q5");
    let plan: PhysicalPlan = serde_json::from_value(v["plan"].clone()).unwrap();
    let vertices: Vec<(Vec<&str>, usize)> = plan
        .vertices
        .iter()
        .map(|v| {
            (
                v.operators.iter().map(String::as_str).collect(),
                v.parallelism,
            )
        })
        .collect();
    assert_eq!(
        vertices,
        vec![
            (vec!["events", "event-time", "bids"], 4),
            (vec!["bids-per-auction"], 4),
            (vec!["hottest"], 1),
            (vec!["out"], 4),
        ]
    );
}

#[test]
fn every_query_explains() {
    for (name, _) in weir_nexmark::QUERIES {
        let v = job().explain_json(&["--workers", "2", "--arg", &format!("query={name}")]);
        assert_eq!(v["job"], format!("nexmark-{name}"));
    }
}

#[test]
fn version_and_static_linking() {
    let o = job().run(["--version"]);
    o.assert_success();
    assert!(o.stdout.contains("weir-nexmark"), "{o}");
    assert_eq!(elf_interpreter(job().path()).unwrap(), None);
}

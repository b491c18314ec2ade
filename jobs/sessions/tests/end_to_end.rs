//! End-to-end tests of the `sessions` binary: the same sessions in one process of 1 and of 4
//! workers and in 2 processes × 2 workers, equal to sessions computed in plain Rust; the
//! plan; the binary.
//!
//! The inputs are out of order, but by less than the job's 10 s bound: then no click is
//! late, whatever the shape and the timing, and every session is emitted exactly once with
//! all its clicks.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use weir_runtime::plan::{Partitioning, PhysicalPlan};
use weir_runtime::testing::{
    assert_all_succeeded, elf_interpreter, read_parts, JobBinary, Output, Shape, TempDir,
};

/// The job's session gap and out-of-orderness bound.
const GAP_MS: i64 = 30 * 60_000;
const BOUND_MS: i64 = 10_000;

fn job() -> JobBinary {
    JobBinary::new(env!("CARGO_BIN_EXE_sessions"))
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/clicks.jsonl")
}

fn io_args(input: &Path, output: &Path) -> Vec<String> {
    vec![
        "--arg".into(),
        format!("input={}", input.display()),
        "--arg".into(),
        format!("output={}", output.display()),
    ]
}

/// One session as the job reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Sess {
    user: String,
    start: i64,
    end: i64,
    events: u64,
    pages: u64,
    duration_ms: i64,
}

/// A click: (user, page, event time).
type Click = (String, String, i64);

fn parse_clicks(text: &str) -> Vec<Click> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}"));
            (
                v["user"].as_str().unwrap().to_string(),
                v["page"].as_str().unwrap().to_string(),
                v["event_time"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Sessions in plain Rust: sort each user's clicks by time and cut where the next click
/// comes more than the gap after the previous one. (Flink merges the windows
/// `[t, t + gap)` of the clicks when they overlap or touch, so clicks exactly one gap apart
/// are one session; the window ends one gap after the last click.)
fn reference(clicks: &[Click]) -> BTreeSet<Sess> {
    let mut by_user: BTreeMap<&str, Vec<(i64, &str)>> = BTreeMap::new();
    for (user, page, t) in clicks {
        by_user.entry(user).or_default().push((*t, page));
    }
    let mut out = BTreeSet::new();
    for (user, mut cs) in by_user {
        cs.sort();
        let mut session: Vec<(i64, &str)> = Vec::new();
        let mut close = |s: &mut Vec<(i64, &str)>| {
            if let (Some(first), Some(last)) = (s.first(), s.last()) {
                out.insert(Sess {
                    user: user.to_string(),
                    start: first.0,
                    end: last.0 + GAP_MS,
                    events: s.len() as u64,
                    pages: s.iter().map(|c| c.1).collect::<BTreeSet<_>>().len() as u64,
                    duration_ms: last.0 - first.0,
                });
            }
            s.clear();
        };
        for c in cs {
            if session.last().is_some_and(|l| c.0 - l.0 > GAP_MS) {
                close(&mut session);
            }
            session.push(c);
        }
        close(&mut session);
    }
    out
}

/// The largest `max(earlier event times) − event time` over the input, in input order.
fn max_disorder(clicks: &[Click]) -> i64 {
    let mut max_seen = i64::MIN;
    let mut worst = 0;
    for c in clicks {
        worst = worst.max(max_seen.saturating_sub(c.2));
        max_seen = max_seen.max(c.2);
    }
    worst
}

/// The output records as sessions; panics on unexpected fields and on a session emitted
/// twice (no click is late, so every session window fires exactly once).
fn sessions_of(records: &[Value]) -> BTreeSet<Sess> {
    let mut out = BTreeSet::new();
    for r in records {
        let obj = r
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {r}"));
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["duration_ms", "end", "events", "pages", "start", "user"],
            "unexpected fields: {r}"
        );
        let s = Sess {
            user: r["user"]
                .as_str()
                .unwrap_or_else(|| panic!("mistyped: {r}"))
                .to_string(),
            start: r["start"]
                .as_i64()
                .unwrap_or_else(|| panic!("mistyped: {r}")),
            end: r["end"].as_i64().unwrap_or_else(|| panic!("mistyped: {r}")),
            events: r["events"]
                .as_u64()
                .unwrap_or_else(|| panic!("mistyped: {r}")),
            pages: r["pages"]
                .as_u64()
                .unwrap_or_else(|| panic!("mistyped: {r}")),
            duration_ms: r["duration_ms"]
                .as_i64()
                .unwrap_or_else(|| panic!("mistyped: {r}")),
        };
        assert_eq!(
            s.end - s.start,
            s.duration_ms + GAP_MS,
            "window ≠ clicks + gap: {r}"
        );
        assert!(out.insert(s), "session emitted twice: {r}");
    }
    out
}

fn diff(want: &BTreeSet<Sess>, got: &BTreeSet<Sess>) -> String {
    let mut lines: Vec<String> = want
        .difference(got)
        .map(|s| format!("missing    {s:?}"))
        .collect();
    lines.extend(got.difference(want).map(|s| format!("unexpected {s:?}")));
    let n = lines.len();
    lines.truncate(20);
    format!("{n} differences:\n{}", lines.join("\n"))
}

/// Run on `input` in every shape; the sessions must be the same in every shape and equal
/// plain Rust's, and no process may report late clicks.
fn check_shapes(job: &JobBinary, input: &Path, shapes: &[Shape]) -> BTreeSet<Sess> {
    let text = std::fs::read_to_string(input)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", input.display()));
    let clicks = parse_clicks(&text);
    assert!(
        max_disorder(&clicks) < BOUND_MS,
        "the input is out of order by {} ms, beyond the job's bound: clicks may be late and \
         the results depend on timing",
        max_disorder(&clicks)
    );
    let want = reference(&clicks);
    let mut results: Vec<(Shape, BTreeSet<Sess>)> = Vec::new();
    for &shape in shapes {
        let dir = TempDir::new("sessions");
        let out = dir.join("out");
        let runs = job.run_shape(shape, dir.path(), &io_args(input, &out));
        assert_all_succeeded(&runs);
        assert_no_late_clicks(shape, &runs);
        let records: Vec<Value> = read_parts(&out).into_values().flatten().collect();
        let got = sessions_of(&records);
        assert!(
            got == want,
            "{shape}: sessions differ from plain Rust's: {}",
            diff(&want, &got)
        );
        results.push((shape, got));
    }
    for (shape, got) in &results[1..] {
        assert!(
            *got == results[0].1,
            "{shape} and {} differ: {}",
            results[0].0,
            diff(&results[0].1, got)
        );
    }
    want
}

fn assert_no_late_clicks(shape: Shape, runs: &[Output]) {
    for o in runs {
        assert!(
            !o.stderr.contains("later than its allowed lateness"),
            "{shape}: the window dropped late clicks, though none is late:\n{o}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------

/// The sample holds what the results test relies on: several users with several sessions
/// each over hours, clicks out of order by less than the bound, and the boundary cases.
#[test]
fn sample_has_several_sessions_per_user_and_disorder_within_the_bound() {
    let clicks = parse_clicks(&std::fs::read_to_string(sample()).unwrap());
    assert!(
        (200..1000).contains(&clicks.len()),
        "{} clicks",
        clicks.len()
    );
    let sessions = reference(&clicks);
    let mut per_user: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &sessions {
        *per_user.entry(&s.user).or_default() += 1;
    }
    assert!(per_user.len() >= 8, "{per_user:?}");
    assert!(
        per_user.values().filter(|&&n| n >= 3).count() >= 6,
        "{per_user:?}"
    );
    let times: Vec<i64> = clicks.iter().map(|c| c.2).collect();
    let span = times.iter().max().unwrap() - times.iter().min().unwrap();
    assert!(span > 4 * 3_600_000, "spans only {span} ms");
    let disorder = max_disorder(&clicks);
    assert!((1..BOUND_MS).contains(&disorder), "disorder {disorder} ms");
    let out_of_order = clicks
        .iter()
        .scan(i64::MIN, |m, c| {
            let late = c.2 < *m;
            *m = (*m).max(c.2);
            Some(late)
        })
        .filter(|&l| l)
        .count();
    assert!(
        out_of_order >= 10,
        "only {out_of_order} clicks out of order"
    );
    // ivan: two clicks exactly one gap apart, one session; judy: one gap and 1 ms, two.
    let of = |u: &str| {
        sessions
            .iter()
            .filter(|s| s.user == u)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(of("ivan").len(), 1, "{:?}", of("ivan"));
    assert_eq!(of("ivan")[0].events, 4);
    assert_eq!(of("judy").len(), 2, "{:?}", of("judy"));
    assert!(of("judy")
        .iter()
        .all(|s| s.events == 1 && s.duration_ms == 0));
}

/// The sample in one process of 1 and of 4 workers and in 2 processes × 2 workers: the
/// sessions plain Rust computes, each once.
#[test]
fn sample_sessions_are_the_same_in_every_shape_and_match_plain_rust() {
    let sessions = check_shapes(
        &job(),
        &sample(),
        &[Shape::single(1), Shape::single(4), Shape::procs(2, 2)],
    );
    assert!(sessions.len() > 30);
}

/// A generated input: 40 users, clicks at gaps around the session gap (exactly the gap,
/// 1 ms more or less), out of order by up to 9.999 s, in more shapes.
#[test]
fn generated_clicks_give_the_same_sessions_in_every_shape() {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let base: i64 = 1_700_000_000_000;
    let mut clicks: Vec<(i64, Click)> = Vec::new();
    for u in 0..40u64 {
        let user = format!("user-{u}");
        let mut t = base + next(3_600_000) as i64;
        for _ in 0..(20 + next(40)) {
            let page = format!("/p/{}", next(12));
            // Emit in order of event time plus a delay below the bound.
            let delay = if next(2) == 0 {
                next(BOUND_MS as u64) as i64
            } else {
                0
            };
            clicks.push((t + delay, (user.clone(), page, t)));
            t += match next(10) {
                0 => GAP_MS,
                1 => GAP_MS + 1,
                2 => GAP_MS - 1,
                3 => GAP_MS + next(3_600_000) as i64,
                _ => next(600_000) as i64,
            };
        }
    }
    clicks.sort();
    let clicks: Vec<Click> = clicks.into_iter().map(|c| c.1).collect();
    let text: String = clicks
        .iter()
        .map(|(u, p, t)| format!("{{\"user\": \"{u}\", \"page\": \"{p}\", \"event_time\": {t}}}\n"))
        .collect();
    let dir = TempDir::new("sessions-input");
    let input = dir.join("clicks.jsonl");
    std::fs::write(&input, &text).unwrap();
    let sessions = check_shapes(
        &job().with_timeout(Duration::from_secs(30)),
        &input,
        &[
            Shape::single(1),
            Shape::single(4),
            Shape::procs(2, 2),
            Shape::nodes(2, 1, 3),
        ],
    );
    assert!(sessions.len() > 100, "{} sessions", sessions.len());
}

// ---------------------------------------------------------------------------------------
// Plan and binary
// ---------------------------------------------------------------------------------------

/// Source and watermarks chain (same parallelism: each source instance generates its own
/// watermarks); the session window and the sink chain after the hash edge on the user.
#[test]
fn explain_chains_watermarks_with_the_source_and_the_sink_with_the_window() {
    let v = job().explain_json(&Shape::procs(2, 2).explain_args());
    let plan: PhysicalPlan = serde_json::from_value(v["plan"].clone()).unwrap();
    let ops: Vec<Vec<&str>> = plan
        .vertices
        .iter()
        .map(|v| v.operators.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        ops,
        vec![
            vec!["clicks", "click-time"],
            vec!["user-sessions", "sessions"]
        ]
    );
    assert!(plan.vertices.iter().all(|v| v.parallelism == 4));
    let edges: Vec<(usize, usize, Partitioning)> = plan
        .edges
        .iter()
        .map(|e| (e.from_vertex, e.to_vertex, e.partitioning))
        .collect();
    assert_eq!(edges, vec![(0, 1, Partitioning::Hash)]);
    let kinds: Vec<(&str, &str)> = v["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["name"].as_str().unwrap(), o["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("clicks", "source"),
            ("click-time", "watermarks"),
            ("user-sessions", "window"),
            ("sessions", "sink")
        ]
    );
}

#[test]
fn version_and_static_linking() {
    let o = job().run(["--version"]);
    o.assert_success();
    assert!(o.stdout.starts_with("sessions "), "{o}");
    assert!(o.stdout.contains("statically linked"), "{o}");
    assert_eq!(elf_interpreter(job().path()).unwrap(), None);
}

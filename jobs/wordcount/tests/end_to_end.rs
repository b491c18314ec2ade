//! End-to-end tests of the `wordcount` binary: results in every cluster shape, the plan it
//! runs, `--version` and static linking, and the CLI's errors.

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use weir_runtime::plan::PhysicalPlan;
use weir_runtime::testing::{
    assert_all_succeeded, child_pids, elf_interpreter, fast_checkpoint_flags, free_port_block,
    is_alive, ldd, part_files, process_index, read_parts, read_rolled_records, send_signal,
    wait_for_a_complete_checkpoint, wait_for_children, write_hosts_file, JobBinary, LocalCluster,
    Shape, TempDir,
};

fn job() -> JobBinary {
    JobBinary::new(env!("CARGO_BIN_EXE_wordcount"))
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample.txt")
}

fn io_args(input: &Path, output: &Path) -> Vec<String> {
    vec![
        "--arg".into(),
        format!("input={}", input.display()),
        "--arg".into(),
        format!("output={}", output.display()),
    ]
}

/// The expected final counts, computed without weir: split every line on characters that
/// are not alphanumeric, lower-case the words, count.
fn expected_counts(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        for word in line
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            *counts.entry(word.to_lowercase()).or_insert(0u64) += 1;
        }
    }
    counts
}

/// Check that the records are a valid rolling count — every record is `["word", n]` and the
/// counts of each word are exactly 1, 2, …, final, each once — and return the final counts.
fn final_counts(records: &[Value]) -> BTreeMap<String, u64> {
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in records {
        let (Some(word), Some(count)) = (
            r.get(0).and_then(Value::as_str),
            r.get(1).and_then(Value::as_u64),
        ) else {
            panic!("not a [\"word\", count] record: {r}")
        };
        assert_eq!(
            r.as_array().map(Vec::len),
            Some(2),
            "not a [\"word\", count] record: {r}"
        );
        seen.entry(word.to_string()).or_default().push(count);
    }
    seen.into_iter()
        .map(|(word, mut counts)| {
            counts.sort_unstable();
            let n = counts.len() as u64;
            assert!(
                counts.iter().copied().eq(1..=n),
                "`{word}`: a rolling count emits 1..={n} once each, got {counts:?}"
            );
            (word, n)
        })
        .collect()
}

/// What differs between two count maps (for readable failures).
fn diff(expected: &BTreeMap<String, u64>, got: &BTreeMap<String, u64>) -> String {
    let mut lines = Vec::new();
    for (w, n) in expected {
        match got.get(w) {
            None => lines.push(format!("missing `{w}` (expected {n})")),
            Some(g) if g != n => lines.push(format!("`{w}`: expected {n}, got {g}")),
            _ => {}
        }
    }
    for (w, g) in got {
        if !expected.contains_key(w) {
            lines.push(format!("unexpected `{w}` = {g}"));
        }
    }
    lines.truncate(20);
    lines.join("\n")
}

/// The resolved plan `explain` prints for a shape (with optional extra flags).
fn explain_plan(shape: Shape, extra: &[&str]) -> PhysicalPlan {
    let mut args = shape.explain_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let v = job().explain_json(&args);
    assert_eq!(v["job"], "wordcount");
    serde_json::from_value(v["plan"].clone())
        .unwrap_or_else(|e| panic!("explain's plan is not a PhysicalPlan: {e}\n{v}"))
}

fn sink_parallelism(plan: &PhysicalPlan) -> usize {
    let sink = plan
        .vertices
        .iter()
        .find(|v| v.operators.iter().any(|o| o == "counts"));
    sink.unwrap_or_else(|| panic!("no vertex holds the sink `counts`: {plan:?}"))
        .parallelism
}

/// Run the job on `input` in every shape; check each run's output is a valid rolling count
/// with one part file per sink instance, the same in every shape, and equal to the counts
/// computed without weir.
fn check_shapes(job: &JobBinary, input: &Path, shapes: &[Shape]) {
    let text = std::fs::read_to_string(input)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", input.display()));
    let expected = expected_counts(&text);
    assert!(
        !expected.is_empty(),
        "the input has no words: the test would prove nothing"
    );
    let mut results: Vec<(Shape, BTreeMap<String, u64>)> = Vec::new();
    for &shape in shapes {
        let dir = TempDir::new("wordcount");
        let out = dir.join("out");
        let runs = job.run_shape(shape, dir.path(), &io_args(input, &out));
        assert_eq!(runs.len(), shape.cluster_nodes());
        assert_all_succeeded(&runs);
        let parts = read_parts(&out);
        let sinks = sink_parallelism(&explain_plan(shape, &[]));
        assert_eq!(
            parts.keys().copied().collect::<Vec<_>>(),
            (0..sinks).collect::<Vec<_>>(),
            "{shape}: one part file per sink instance"
        );
        let records: Vec<Value> = parts.into_values().flatten().collect();
        let counts = final_counts(&records);
        assert!(
            counts == expected,
            "{shape}: counts differ from plain Rust's:\n{}",
            diff(&expected, &counts)
        );
        results.push((shape, counts));
    }
    for (shape, counts) in &results[1..] {
        assert!(
            *counts == results[0].1,
            "{shape} and {} differ:\n{}",
            results[0].0,
            diff(&results[0].1, counts)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------

/// The sample gives the same counts in one process of 1 and of 4 workers, 2 processes of 2
/// workers on one node (one launcher) and on two nodes (two launchers): the counts plain
/// Rust computes.
#[test]
fn sample_counts_are_the_same_in_every_shape_and_match_plain_rust() {
    check_shapes(
        &job(),
        &sample(),
        &[
            Shape::single(1),
            Shape::single(4),
            Shape::procs(2, 2),
            Shape::nodes(2, 1, 2),
        ],
    );
}

/// A generated input with more lines than workers, non-ASCII words (whose lower-casing
/// changes bytes), blank and punctuation-only lines and no final newline: the byte-range
/// split of the file across source instances must lose and duplicate no line.
#[test]
fn generated_unicode_input_gives_the_same_counts_in_every_shape() {
    let vocab = [
        "Straße",
        "STRASSE",
        "ÉCOLE",
        "école",
        "naïve",
        "日本語",
        "Ünïcödé",
        "42",
        "x7",
        "Foo-Bar",
        "it's",
        "the",
        "The",
        "THE",
        "a",
        "river",
        "Río",
        "Ωmega",
        "ß",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut text = String::new();
    for i in 0..1500 {
        match i % 97 {
            0 => text.push('\n'),
            1 => text.push_str(" ... ;; --\n"),
            _ => {
                let words: Vec<&str> = (0..1 + next(12))
                    .map(|_| vocab[next(vocab.len())])
                    .collect();
                text.push_str(&words.join([" ", ", ", "; ", "\t", " — "][next(5)]));
                text.push('\n');
            }
        }
    }
    text.push_str("last line without a newline Straße");
    let dir = TempDir::new("wordcount-input");
    let input = dir.join("generated.txt");
    std::fs::write(&input, &text).unwrap();
    // A correct run takes well under a second; records duplicated between processes grow
    // the output much faster than the input, so fail early rather than fill the disk.
    let job = job().with_timeout(Duration::from_secs(30));
    check_shapes(
        &job,
        &input,
        &[
            Shape::single(1),
            Shape::single(3),
            Shape::procs(3, 1),
            Shape::nodes(2, 2, 1),
        ],
    );
}

/// `run --plan-out` writes the plan explain prints for the same flags, and the run follows
/// it: `--parallelism 2` on 4 workers gives 2 sink instances, so 2 part files.
#[test]
fn run_uses_the_plan_explain_prints() {
    let dir = TempDir::new("wordcount");
    let out = dir.join("out");
    let plan_file = dir.join("plan.json");
    let mut args = io_args(&sample(), &out);
    args.extend([
        "--parallelism".to_string(),
        "2".into(),
        "--plan-out".into(),
        plan_file.display().to_string(),
    ]);
    job().run_single(4, &args).assert_success();
    let written: PhysicalPlan =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    let explained = explain_plan(Shape::single(4), &["--parallelism", "2"]);
    assert_eq!(written, explained);
    assert_eq!(written.default_parallelism, 2);
    assert_eq!(sink_parallelism(&written), 2);
    assert_eq!(
        part_files(&out).keys().copied().collect::<Vec<_>>(),
        vec![0, 1]
    );
}

// ---------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------

/// `--version`: job name and version, weir's version and commit, target, static linking.
#[test]
fn version_names_the_job_weir_its_commit_and_static_linking() {
    let out = job().run(["--version"]);
    out.assert_success();
    let text = &out.stdout;
    assert!(text.starts_with("wordcount "), "{out}");
    let weir = text
        .lines()
        .find(|l| l.starts_with("weir "))
        .unwrap_or_else(|| panic!("no `weir …` line:\n{out}"));
    let commit = weir
        .split("commit ")
        .nth(1)
        .map(|c| c.trim_end_matches(')').trim())
        .unwrap_or_else(|| panic!("no commit on the weir line:\n{out}"));
    assert!(
        (7..=40).contains(&commit.len()) && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "`{commit}` is not a git commit:\n{out}"
    );
    assert!(text.contains("x86_64-unknown-linux-gnu"), "{out}");
    assert!(
        text.contains("statically linked") && !text.contains("dynamically"),
        "{out}"
    );
}

/// The binary needs no dynamic loader: `ldd` says so, and the ELF file has no PT_INTERP.
#[test]
fn binary_is_statically_linked() {
    let path = job().path().to_path_buf();
    assert_eq!(
        elf_interpreter(&path).unwrap(),
        None,
        "{} asks for a dynamic loader",
        path.display()
    );
    if let Some(out) = ldd(&path) {
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains("not a dynamic executable") || text.contains("statically linked"),
            "{out}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_flag_is_exit_2_with_one_line() {
    let out = job().run(["run", "--workers", "1", "--frobnicate"]);
    let line = out.assert_one_line_error(2);
    assert!(line.contains("--frobnicate"), "{out}");
}

#[test]
fn missing_input_argument_is_exit_2_naming_it() {
    let dir = TempDir::new("wordcount");
    let out = job().run([
        "run",
        "--workers",
        "1",
        "--arg",
        &format!("output={}", dir.join("out").display()),
    ]);
    let line = out.assert_one_line_error(2);
    assert!(line.contains("`input`"), "{out}");
    assert!(
        !dir.join("out").exists(),
        "nothing runs without the argument"
    );
}

#[test]
fn malformed_or_missing_hosts_file_is_exit_2_naming_file_and_line() {
    let dir = TempDir::new("wordcount");
    let hosts = dir.join("hosts.txt");
    std::fs::write(&hosts, "# two nodes\n127.0.0.1:7000\nnode-b:7000\n").unwrap();
    let mut args: Vec<String> = [
        "run",
        "--hosts",
        &hosts.display().to_string(),
        "--node",
        "0",
        "--workers",
        "1",
    ]
    .map(String::from)
    .to_vec();
    args.extend(io_args(&sample(), &dir.join("out")));
    let out = job().run(&args);
    let line = out.assert_one_line_error(2);
    assert!(
        line.contains(&format!("{}:3", hosts.display())),
        "the error names the file and line 3:\n{out}"
    );
    assert!(line.contains("node-b:7000"), "{out}");

    let missing = dir.join("no-such-hosts.txt");
    args[2] = missing.display().to_string();
    let out = job().run(&args);
    let line = out.assert_one_line_error(2);
    assert!(line.contains(&missing.display().to_string()), "{out}");
    assert!(!dir.join("out").exists());
}

/// A port one of the node's processes should listen on is taken (the first or the second
/// process's): the launcher refuses to start, exit 2, naming the address.
#[test]
fn port_in_use_is_exit_2_naming_the_address() {
    for local in [0u16, 1] {
        let dir = TempDir::new("wordcount");
        let (base, _held) = (0..10)
            .find_map(|_| {
                let base = free_port_block(2);
                TcpListener::bind(("127.0.0.1", base + local))
                    .ok()
                    .map(|l| (base, l))
            })
            .expect("cannot hold a port");
        let hosts = dir.join("hosts.txt");
        write_hosts_file(&hosts, &[format!("127.0.0.1:{base}").parse().unwrap()]);
        let mut args: Vec<String> = [
            "run",
            "--hosts",
            &hosts.display().to_string(),
            "--node",
            "0",
            "--procs-per-node",
            "2",
            "--workers",
            "1",
        ]
        .map(String::from)
        .to_vec();
        args.extend(io_args(&sample(), &dir.join("out")));
        let out = job().run(&args);
        let line = out.assert_one_line_error(2);
        assert!(
            line.contains(&format!("127.0.0.1:{}", base + local)) && line.contains("in use"),
            "{out}"
        );
        assert!(!dir.join("out").exists(), "no process may start");
    }
}

/// One node, two processes, an input that does not exist: the processes fail, the launcher
/// exits 1 naming the failed process, and no part file becomes visible.
#[test]
fn failing_process_makes_the_launcher_fail_naming_it() {
    let dir = TempDir::new("wordcount");
    let cluster = LocalCluster::new(dir.path(), 1, 2);
    let out_dir = dir.join("out");
    let runs = job().run_cluster(
        &cluster,
        2,
        &io_args(&dir.join("does-not-exist.txt"), &out_dir),
    );
    let out = &runs[0];
    assert_eq!(out.code(), Some(1), "{out}");
    let last = *out.stderr_lines().last().unwrap();
    let named = (0..2).any(|p| {
        last.starts_with(&format!(
            "error: process {p} (node 0, {})",
            cluster.process_addr(p)
        ))
    });
    assert!(
        named && last.contains("failed"),
        "the last line names the failed process:\n{out}"
    );
    assert!(
        out.stderr.contains("does-not-exist.txt"),
        "the processes' errors reach the launcher's stderr:\n{out}"
    );
    if out_dir.exists() {
        assert!(
            part_files(&out_dir).is_empty(),
            "a failed run made part files visible"
        );
    }
}

/// Start node 0 of a two-node cluster alone: its processes wait for node 1 and stay up.
fn start_waiting_node(dir: &TempDir) -> (LocalCluster, weir_runtime::testing::Spawned, Vec<u32>) {
    let cluster = LocalCluster::new(dir.path(), 2, 2);
    let mut extra = io_args(&sample(), &dir.join("out"));
    extra.extend(["--connect-timeout".to_string(), "40".into()]);
    let launcher = job().spawn_node(&cluster, 0, 1, &extra);
    let kids = wait_for_children(launcher.pid(), 2, Duration::from_secs(20));
    assert_eq!(kids.len(), 2, "node 0 starts 2 processes");
    (cluster, launcher, kids)
}

/// A process killed by a signal: the launcher stops the other one and exits 1 naming the
/// killed process and the signal.
#[test]
fn killed_process_makes_the_launcher_fail_naming_it() {
    let dir = TempDir::new("wordcount");
    let (cluster, launcher, kids) = start_waiting_node(&dir);
    let victim = kids
        .iter()
        .copied()
        .find(|&k| process_index(k) == Some(1))
        .expect("no child runs as process 1");
    let other = kids.iter().copied().find(|&k| k != victim).unwrap();
    let started = Instant::now();
    send_signal(victim, 9);
    let out = launcher.wait(Duration::from_secs(30));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the launcher noticed the death late:\n{out}"
    );
    assert_eq!(out.code(), Some(1), "{out}");
    let last = *out.stderr_lines().last().unwrap();
    assert!(
        last.starts_with(&format!(
            "error: process 1 (node 0, {})",
            cluster.process_addr(1)
        )),
        "{out}"
    );
    assert!(last.contains("signal 9"), "{out}");
    assert!(
        !is_alive(other),
        "the launcher left process 0 (pid {other}) running"
    );
}

/// SIGTERM to a launcher stops its processes; it exits 128 + 15.
#[test]
fn sigterm_stops_the_launcher_and_its_processes() {
    let dir = TempDir::new("wordcount");
    let (_cluster, launcher, kids) = start_waiting_node(&dir);
    let pid = launcher.pid();
    send_signal(pid, 15);
    let out = launcher.wait(Duration::from_secs(30));
    assert_eq!(out.code(), Some(143), "{out}");
    for k in kids {
        assert!(!is_alive(k), "process pid {k} survived its launcher");
    }
    assert!(child_pids(pid).is_empty());
}

// ---------------------------------------------------------------------------------------
// Checkpoints and recovery
// ---------------------------------------------------------------------------------------

/// A text long enough that a run outlasts its first checkpoints: `lines` lines of words
/// from a small vocabulary (deterministic).
fn long_text(lines: usize) -> String {
    let vocab = [
        "alpha", "beta", "gamma", "delta", "Epsilon", "zeta", "eta", "theta", "iota", "kappa",
        "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut text = String::with_capacity(lines * 40);
    for _ in 0..lines {
        for w in 0..6 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if w > 0 {
                text.push(' ');
            }
            text.push_str(vocab[(state % vocab.len() as u64) as usize]);
        }
        text.push('\n');
    }
    text
}

/// Kill process `index` of the node's launcher with SIGKILL; returns its pid.
fn kill_process(launcher_pid: u32, index: usize) -> u32 {
    let kids = wait_for_children(launcher_pid, 2, Duration::from_secs(20));
    let victim = kids
        .iter()
        .copied()
        .find(|&k| process_index(k) == Some(index))
        .unwrap_or_else(|| panic!("no child runs as process {index}"));
    send_signal(victim, 9);
    victim
}

/// Wait until the launcher runs two processes again, none of them `gone`.
fn wait_for_restart(launcher_pid: u32, gone: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let kids = child_pids(launcher_pid);
        if kids.len() == 2
            && !kids.contains(&gone)
            && kids.iter().all(|&k| process_index(k).is_some())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the launcher did not restart its processes"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A node of two processes × two workers running wordcount over a long generated text
/// with a checkpoint every 200 ms into its own directory.
struct CheckpointedRun {
    dir: TempDir,
    text: String,
    args: Vec<String>,
}

impl CheckpointedRun {
    fn new(lines: usize, flags: &[&str]) -> Self {
        let dir = TempDir::new("wordcount-ck");
        let input = dir.join("long.txt");
        let text = long_text(lines);
        std::fs::write(&input, &text).unwrap();
        let mut args = io_args(&input, &dir.join("out"));
        args.extend(fast_checkpoint_flags(&dir.join("checkpoints")));
        args.extend(flags.iter().map(|f| f.to_string()));
        CheckpointedRun { dir, text, args }
    }

    fn start(&self) -> weir_runtime::testing::Spawned {
        let cluster = LocalCluster::new(self.dir.path(), 1, 2);
        job().spawn_node(&cluster, 0, 2, &self.args)
    }

    fn out_dir(&self) -> PathBuf {
        self.dir.join("out")
    }

    fn stores(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.join("checkpoints/wordcount"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

/// Exactly-once across repeated crashes: one node of two processes × two workers takes a
/// checkpoint every 200 ms; a random process is killed with SIGKILL at a random moment,
/// five times in one run. Each time the launcher restarts both processes from the last
/// complete checkpoint and the sources rewind; the visible output is exactly that of a run
/// without failure — every running count of every word once, none lost, none twice — and
/// the finished job leaves no checkpoints behind.
#[test]
fn random_kills_restart_from_the_last_checkpoint_with_exactly_once_output() {
    // Long enough that five kills (each within 0.3 s of the restart before it) come well
    // before the end even on a fast machine; a slow one only takes longer.
    let run = CheckpointedRun::new(600_000, &["--restart-attempts", "10"]);
    let mut launcher = run.start();
    wait_for_a_complete_checkpoint(&run.out_dir(), &mut launcher);
    let mut rng: u64 = 0x5eed_1234_abcd_ef01;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for kill in 0..5 {
        std::thread::sleep(Duration::from_millis(20 + next(280)));
        assert!(
            launcher.is_running(),
            "the job finished after {kill} kills; give it a longer input"
        );
        let victim = kill_process(launcher.pid(), next(2) as usize);
        wait_for_restart(launcher.pid(), victim);
    }
    let out = launcher.wait(Duration::from_secs(180));
    out.assert_success();
    assert_eq!(
        out.stderr.matches("restoring from checkpoint").count() % 4,
        0,
        "every worker restores:\n{out}"
    );
    assert!(
        out.stderr
            .matches("restarting the processes of node 0")
            .count()
            >= 5,
        "{out}"
    );
    let records = weir_runtime::testing::read_rolled_records(&run.out_dir());
    let got = final_counts(&records);
    let expected = expected_counts(&run.text);
    assert!(got == expected, "{}", diff(&expected, &got));
    assert!(
        run.stores().is_empty(),
        "a finished job keeps no checkpoints: {:?}",
        run.stores()
    );
}

/// When the restart attempts run out, the launcher stops with one line naming the failure
/// and the attempts, and keeps the last complete checkpoint for a later run; running the job
/// again resumes from it and completes the output exactly once.
#[test]
fn exhausted_restarts_stop_the_job_keep_the_checkpoint_and_a_rerun_resumes() {
    let run = CheckpointedRun::new(150_000, &["--restart-attempts", "1"]);
    let mut launcher = run.start();
    wait_for_a_complete_checkpoint(&run.out_dir(), &mut launcher);
    let first = kill_process(launcher.pid(), 1);
    wait_for_restart(launcher.pid(), first);
    kill_process(launcher.pid(), 1);
    let out = launcher.wait(Duration::from_secs(60));
    assert_eq!(out.code(), Some(1), "{out}");
    let last = *out.stderr_lines().last().unwrap();
    assert!(
        last.starts_with("error: process 1 (node 0, ")
            && last.contains("after 1 restart")
            && last.contains("last complete checkpoint is kept"),
        "{out}"
    );
    assert_eq!(run.stores().len(), 4, "one store per worker slot is kept");
    // The same command again resumes (`--restore latest` is the default).
    let out = run.start().wait(Duration::from_secs(120));
    out.assert_success();
    assert!(out.stderr.contains("restoring from checkpoint"), "{out}");
    let got = final_counts(&weir_runtime::testing::read_rolled_records(&run.out_dir()));
    let expected = expected_counts(&run.text);
    assert!(got == expected, "{}", diff(&expected, &got));
}

/// A node that loses its disk: with `--checkpoint-copy-dir`, completed checkpoints are
/// also copied to a second place. The launcher is killed (its processes die with it), the
/// local checkpoint directory is deleted, and the same command again resumes from the
/// copies, completing the output exactly once; the finished job removes the copies too.
#[test]
fn a_lost_checkpoint_directory_resumes_from_the_copies_exactly_once() {
    let copies = TempDir::new("wordcount-copies");
    let copy_flag = copies.path().display().to_string();
    let run = CheckpointedRun::new(300_000, &["--checkpoint-copy-dir", &copy_flag]);
    let mut launcher = run.start();
    wait_for_a_complete_checkpoint(&run.out_dir(), &mut launcher);
    // Wait until every worker has a copy.
    let deadline = Instant::now() + Duration::from_secs(30);
    let copied = |w: usize| {
        std::fs::read_dir(copies.join(format!("wordcount/worker-{w}")))
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().starts_with("checkpoint-"))
            })
            .unwrap_or(false)
    };
    while !(0..4).all(copied) {
        assert!(Instant::now() < deadline, "no copies within 30 s");
        assert!(
            launcher.is_running(),
            "the job ended before its checkpoints were copied"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    send_signal(launcher.pid(), 9);
    let _ = launcher.wait(Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_dir_all(run.dir.join("checkpoints")).unwrap();
    let out = run.start().wait(Duration::from_secs(120));
    out.assert_success();
    assert!(out.stderr.contains("from its copy"), "{out}");
    let got = final_counts(&weir_runtime::testing::read_rolled_records(&run.out_dir()));
    let expected = expected_counts(&run.text);
    assert!(got == expected, "{}", diff(&expected, &got));
    assert!(
        !(0..4).any(copied),
        "the finished job leaves no copies behind"
    );
}

/// Two nodes, one launcher each: a process killed on node 1 makes node 0's process lose
/// its connections and fail too; both launchers restart their processes, which reconnect,
/// agree on the last complete checkpoint and finish with exactly-once output.
#[test]
fn a_process_killed_on_another_node_restarts_the_whole_cluster_exactly_once() {
    let run = CheckpointedRun::new(150_000, &[]);
    let cluster = LocalCluster::new(run.dir.path(), 2, 1);
    let mut node0 = job().spawn_node(&cluster, 0, 2, &run.args);
    let node1 = job().spawn_node(&cluster, 1, 2, &run.args);
    wait_for_a_complete_checkpoint(&run.out_dir(), &mut node0);
    let victim = wait_for_children(node1.pid(), 1, Duration::from_secs(20))[0];
    send_signal(victim, 9);
    let deadline = Instant::now() + Duration::from_secs(120);
    let outs = [node0.wait_until(deadline), node1.wait_until(deadline)];
    for out in &outs {
        out.assert_success();
        assert!(out.stderr.contains("restoring from checkpoint"), "{out}");
    }
    assert!(
        outs[1]
            .stderr
            .contains("restarting the processes of node 1"),
        "{}",
        outs[1]
    );
    let got = final_counts(&weir_runtime::testing::read_rolled_records(&run.out_dir()));
    let expected = expected_counts(&run.text);
    assert!(got == expected, "{}", diff(&expected, &got));
}

/// For a run restored from a savepoint: every word's running counts are `k+1 ..= final`,
/// each once (`k`: its count in the savepoint). Returns the final counts and the `k`s.
fn counts_after_savepoint(records: &[Value]) -> (BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in records {
        let (Some(word), Some(count)) = (
            r.get(0).and_then(Value::as_str),
            r.get(1).and_then(Value::as_u64),
        ) else {
            panic!("not a [\"word\", count] record: {r}")
        };
        seen.entry(word.to_string()).or_default().push(count);
    }
    let (mut finals, mut before) = (BTreeMap::new(), BTreeMap::new());
    for (word, mut counts) in seen {
        counts.sort_unstable();
        let (first, last) = (counts[0], counts[counts.len() - 1]);
        assert!(
            counts.iter().copied().eq(first..=last),
            "`{word}`: counts after the savepoint are not {first}..={last} once each"
        );
        finals.insert(word.clone(), last);
        before.insert(word, first - 1);
    }
    (finals, before)
}

/// Savepoints and rescaling: a savepoint is taken while the job runs on 2 processes × 2
/// workers (4 instances of every operator); the job is then stopped and restored from it
/// on one process of 2 workers and on one of 8. Each restored run counts on from the
/// savepoint's state — key groups move to their new owners, and the file source's
/// remaining input is re-split over the new instances — to exactly the counts of an
/// uninterrupted run: nothing counted twice, nothing lost.
#[test]
fn a_savepoint_taken_at_4_restores_at_2_and_at_8_with_exact_counts() {
    let dir = TempDir::new("wordcount-sp");
    let input = dir.join("long.txt");
    let mut text = long_text(400_000);
    // Every word once more at the very end, so a restored run emits every word's total.
    text.push_str(
        &expected_counts(&text)
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(" "),
    );
    text.push('\n');
    std::fs::write(&input, &text).unwrap();
    let expected = expected_counts(&text);

    let mut args = io_args(&input, &dir.join("out-first"));
    args.extend(fast_checkpoint_flags(&dir.join("ck-first")));
    let cluster = LocalCluster::new(dir.path(), 1, 2);
    let mut launcher = job().spawn_node(&cluster, 0, 2, &args);
    wait_for_a_complete_checkpoint(&dir.join("out-first"), &mut launcher);
    let sp = dir.join("savepoint");
    let taken = job().run([
        "savepoint".to_string(),
        "--checkpoint-dir".into(),
        dir.join("ck-first").display().to_string(),
        "--target".into(),
        sp.display().to_string(),
    ]);
    taken.assert_success();
    assert!(taken.stdout.contains("written to"), "{taken}");
    assert!(
        launcher.is_running(),
        "the job finished before the savepoint; give it a longer input"
    );
    send_signal(launcher.pid(), 9);
    let first = launcher.wait(Duration::from_secs(30));
    assert!(
        !first.stderr.contains("restarting"),
        "the first run restarted before it was stopped:\n{first}"
    );

    for workers in [2, 8] {
        let out = dir.join(format!("out-{workers}"));
        let mut args = io_args(&input, &out);
        args.extend(fast_checkpoint_flags(&dir.join(format!("ck-{workers}"))));
        args.extend(["--from-savepoint".to_string(), sp.display().to_string()]);
        let run = job()
            .with_timeout(Duration::from_secs(120))
            .run_single(workers, &args);
        run.assert_success();
        assert!(run.stderr.contains("restoring from savepoint"), "{run}");
        let (got, before) = counts_after_savepoint(&read_rolled_records(&out));
        assert!(
            got == expected,
            "restored on {workers} workers: counts differ from an uninterrupted run: {}",
            diff(&expected, &got)
        );
        assert!(
            before.values().all(|&k| k > 0),
            "restored on {workers} workers: some word started from zero, so the savepoint's state was not used: {before:?}"
        );
    }
}

/// `--from-savepoint` with a directory that holds no savepoint, or without checkpoints, is
/// a one-line usage error saying what to do.
#[test]
fn a_missing_savepoint_or_no_checkpoints_is_refused_clearly() {
    let dir = TempDir::new("wordcount-sp-bad");
    let input = dir.join("in.txt");
    std::fs::write(&input, "a b\n").unwrap();
    let mut args = io_args(&input, &dir.join("out"));
    args.extend(fast_checkpoint_flags(&dir.join("ck")));
    args.extend([
        "--from-savepoint".to_string(),
        dir.join("nothing-here").display().to_string(),
    ]);
    let run = job().run_single(1, &args);
    assert_eq!(run.code(), Some(2), "{run}");
    assert!(run.stderr.contains("not a savepoint"), "{run}");
    // Without checkpoints a savepoint cannot be restored.
    let mut args = io_args(&input, &dir.join("out"));
    args.extend([
        "--from-savepoint".to_string(),
        dir.path().display().to_string(),
    ]);
    let run = job().run_single(1, &args);
    assert_eq!(run.code(), Some(2), "{run}");
    assert!(run.stderr.contains("add --checkpoint-interval"), "{run}");
}

/// Two network namespaces joined by a veth pair, each with its own address: two "nodes"
/// on one machine whose link can be cut. Removed (with the veth pair) when dropped, also
/// when the test fails; namespaces left by a killed earlier run are removed first.
struct TwoNodeNet {
    names: [String; 2],
    links: [String; 2],
    addrs: [std::net::Ipv4Addr; 2],
}

/// Run `ip ARGS`, panicking with its error output when it fails.
fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed (the test needs root and network namespaces): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

const NETNS_PREFIX: &str = "weirhb";

impl TwoNodeNet {
    fn new() -> TwoNodeNet {
        Self::remove_stale();
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tag = format!("{pid}x{}", nanos % 1000);
        // Interface names have at most 15 bytes; the subnet only has to differ from the
        // host's own, which these namespaces never see.
        let subnet = 1 + nanos % 250;
        let net = TwoNodeNet {
            names: [0, 1].map(|n| format!("{NETNS_PREFIX}-{tag}-{n}")),
            links: [0, 1].map(|n| format!("whb{}{n}", &tag[tag.len().saturating_sub(10)..])),
            addrs: [1, 2].map(|h| std::net::Ipv4Addr::new(10, 200, subnet as u8, h)),
        };
        for name in &net.names {
            ip(&["netns", "add", name]);
        }
        ip(&[
            "link",
            "add",
            &net.links[0],
            "netns",
            &net.names[0],
            "type",
            "veth",
            "peer",
            "name",
            &net.links[1],
            "netns",
            &net.names[1],
        ]);
        for n in 0..2 {
            let cidr = format!("{}/24", net.addrs[n]);
            ip(&[
                "-n",
                &net.names[n],
                "addr",
                "add",
                &cidr,
                "dev",
                &net.links[n],
            ]);
            ip(&["-n", &net.names[n], "link", "set", "lo", "up"]);
            net.set_link(n, true);
        }
        net
    }

    /// Namespaces of this test whose creating process is gone.
    fn remove_stale() {
        let Ok(out) = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
        else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let pid = name
                .strip_prefix(NETNS_PREFIX)
                .and_then(|r| r.strip_prefix('-'))
                .and_then(|r| r.split('x').next())
                .and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !is_alive(p)) {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", name])
                    .status();
            }
        }
    }

    /// Take node `n`'s end of the link down (no reset, no FIN: a cut cable) or up again.
    fn set_link(&self, n: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.names[n], "link", "set", &self.links[n], state]);
    }

    /// Start node `n`'s launcher of `cluster` inside its namespace.
    fn spawn_node(
        &self,
        cluster: &LocalCluster,
        n: usize,
        extra: &[String],
    ) -> weir_runtime::testing::Spawned {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.names[n]])
            .arg(job().path())
            .args(job().node_args(cluster, n, 2, extra))
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1");
        weir_runtime::testing::Spawned::spawn(cmd)
    }
}

impl Drop for TwoNodeNet {
    fn drop(&mut self) {
        // Deleting a namespace also deletes its end of the veth pair, and with it the other.
        for name in &self.names {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", name])
                .status();
        }
    }
}

/// A cut link sends no reset, so nothing breaks: the launchers' heartbeats notice. Two
/// nodes in their own network namespaces run wordcount with a checkpoint every 200 ms;
/// node 1's link goes down for three heartbeat timeouts, then comes back. Both launchers
/// name the other node as silent and restart their processes, which reconnect once the
/// link is back, restore the last complete checkpoint and finish with exactly-once output.
#[test]
fn a_cut_link_between_nodes_restarts_the_job_from_the_last_checkpoint_exactly_once() {
    let net = TwoNodeNet::new();
    let timeout = Duration::from_secs(1);
    let dir = TempDir::new("wordcount-cut-link");
    let input = dir.join("long.txt");
    let text = long_text(600_000);
    std::fs::write(&input, &text).unwrap();
    let out_dir = dir.join("out");
    let nodes: Vec<std::net::SocketAddr> = net
        .addrs
        .iter()
        .map(|&a| std::net::SocketAddr::from((a, 7000)))
        .collect();
    let hosts_file = dir.join("hosts.txt");
    write_hosts_file(&hosts_file, &nodes);
    let cluster = LocalCluster {
        nodes,
        procs_per_node: 1,
        hosts_file,
    };
    // Each node its own checkpoint directory, as on two machines.
    let per_node = |n: usize| {
        let mut args = io_args(&input, &out_dir);
        args.extend(fast_checkpoint_flags(&dir.join(format!("checkpoints-{n}"))));
        args.extend(
            ["--heartbeat-interval", "100ms", "--heartbeat-timeout", "1s"].map(String::from),
        );
        args
    };
    let mut node0 = net.spawn_node(&cluster, 0, &per_node(0));
    let mut node1 = net.spawn_node(&cluster, 1, &per_node(1));
    wait_for_a_complete_checkpoint(&out_dir, &mut node0);
    net.set_link(1, false);
    std::thread::sleep(timeout * 3);
    assert!(
        node0.is_running() && node1.is_running(),
        "a launcher stopped while the link was down; give the job a longer input"
    );
    net.set_link(1, true);
    let deadline = Instant::now() + Duration::from_secs(180);
    let outs = [node0.wait_until(deadline), node1.wait_until(deadline)];
    for (n, out) in outs.iter().enumerate() {
        out.assert_success();
        let other = 1 - n;
        let silent = format!("node {other} ({}) is silent", cluster.nodes[other]);
        let restart = format!("restarting the processes of node {n}");
        assert!(
            out.stderr
                .lines()
                .any(|l| l.contains(&silent) && l.contains(&restart)),
            "node {n} names node {other} as silent and restarts:\n{out}"
        );
        assert!(out.stderr.contains("restoring from checkpoint"), "{out}");
    }
    let got = final_counts(&weir_runtime::testing::read_rolled_records(&out_dir));
    let expected = expected_counts(&text);
    assert!(got == expected, "{}", diff(&expected, &got));
}

/// Heartbeat settings that would restart the job on one late datagram, and a heartbeat
/// port (UDP, the node's IP:PORT) held by another program, are start-up errors: exit 2,
/// one line naming the flag or the address.
#[test]
fn bad_heartbeat_settings_or_a_taken_heartbeat_port_are_exit_2_naming_them() {
    let dir = TempDir::new("wordcount-heartbeat-flags");
    let cluster = LocalCluster::new(dir.path(), 2, 1);
    let io = io_args(&sample(), &dir.join("out"));
    let mut args = io.clone();
    args.extend(
        [
            "--heartbeat-interval",
            "1s",
            "--heartbeat-timeout",
            "1500ms",
        ]
        .map(String::from),
    );
    let out = job().run(job().node_args(&cluster, 0, 1, &args));
    let line = out.assert_one_line_error(2);
    assert!(
        line.contains("--heartbeat-timeout 1500 ms is too short"),
        "{out}"
    );
    let _taken = std::net::UdpSocket::bind(cluster.nodes[0]).unwrap();
    let out = job().run(job().node_args(&cluster, 0, 1, &io));
    let line = out.assert_one_line_error(2);
    assert!(
        line.contains(&format!(
            "heartbeat socket of node 0 on UDP {}",
            cluster.nodes[0]
        )),
        "{out}"
    );
}

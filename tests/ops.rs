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
    assert!(
        s.iter().any(|x| x.name == "weir_process_cpu_seconds"),
        "{text}"
    );
    assert!(sum(&s, "weir_process_resident_memory_bytes", &[]) > 1e6);
}

// ---------------------------------------------------------------------------------------
// The HTTP server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weir::runtime::http::{self, JobStatus, JobView};

/// One HTTP/1.0 request: (status, body).
fn request(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).unwrap();
    let mut buf = String::new();
    c.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// `POST /api/cancel` with the bearer `token`: (status, body).
fn cancel_with(addr: SocketAddr, token: &str) -> (u16, String) {
    let auth = format!("Authorization: Bearer {token}");
    request(addr, "POST", "/api/cancel", &[&auth])
}

fn get_json(addr: SocketAddr, path: &str) -> weir::runtime::serde_json::Value {
    let (status, body) = request(addr, "GET", path, &[]);
    assert_eq!(status, 200, "GET {path}: {body}");
    weir::runtime::serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn view(peers: Vec<(usize, SocketAddr)>, token: Option<&str>, cancel: Arc<AtomicBool>) -> JobView {
    let plan = counts().plan;
    let physical =
        weir::runtime::plan::resolve(&plan, weir::runtime::plan::ClusterShape::single(4), None)
            .unwrap();
    JobView {
        plan,
        physical,
        peers,
        token: token.map(str::to_string),
        cancel: Some(cancel),
        status: Arc::new(Mutex::new(JobStatus::Running)),
        checkpoint_interval_ms: None,
        savepoint_from: None,
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn rest_api_reports_the_job_and_sums_the_processes_metrics() {
    let metrics = ProcessMetrics::new("ops-counts", 0);
    // Another process of the job: its metrics reach process 0 through its /metrics.
    let other = ProcessMetrics::new("ops-counts", 1);
    let plan = counts().plan;
    other
        .task(&plan.vertex_name(1), "sum", false, 0)
        .records_in
        .inc_by(1000);
    let other_server = http::start(loopback(), Arc::clone(&other), None).unwrap();
    // A process that does not answer.
    let dead = std::net::TcpListener::bind(loopback()).unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let cancel = Arc::new(AtomicBool::new(false));
    let server = http::start(
        loopback(),
        Arc::clone(&metrics),
        Some(view(
            vec![(1, other_server.addr()), (2, dead_addr)],
            Some("s3cret"),
            Arc::clone(&cancel),
        )),
    )
    .unwrap();
    let addr = server.addr();
    let opts = LocalOptions {
        metrics: Some(Arc::clone(&metrics)),
        ..LocalOptions::default()
    };
    run_local_with(counts(), 4, &[], opts).unwrap();

    let health = get_json(addr, "/health");
    assert_eq!(health["status"], "UP");
    let job = get_json(addr, "/api/job");
    assert_eq!(job["name"], "ops-counts");
    assert_eq!(job["state"], "RUNNING");
    assert_eq!(job["restarts"], 0);
    assert_eq!(job["cluster"]["workers_per_process"], 4);
    let plan_json = get_json(addr, "/api/plan");
    let vertices = plan_json["plan"]["vertices"].as_array().unwrap();
    assert_eq!(vertices.len(), 3);
    assert_eq!(vertices[1]["instances"].as_array().unwrap().len(), 3);
    let v = get_json(addr, "/api/vertices");
    let vs = v["vertices"].as_array().unwrap();
    assert_eq!(vs[0]["records_read"], N as f64);
    assert_eq!(vs[0]["records_out"], N as f64);
    // This process's N plus the other process's 1000.
    assert_eq!(vs[1]["records_in"], (N + 1000) as f64, "{v}");
    assert_eq!(vs[2]["records_in"], N as f64);
    assert_eq!(vs[1]["parallelism"], 3);
    let unreachable = v["unreachable_processes"].as_array().unwrap();
    assert_eq!(unreachable.len(), 1, "{v}");
    assert_eq!(unreachable[0]["process"], 2);
    let ck = get_json(addr, "/api/checkpoints?limit=5");
    assert_eq!(ck["completed"], 0);
    assert!(ck["history"].as_array().unwrap().is_empty());
    let (status, body) = request(addr, "GET", "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(body.contains("weir_task_num_records_in_total{"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    // Other processes serve /metrics only.
    let (status, _) = request(other_server.addr(), "GET", "/api/job", &[]);
    assert_eq!(status, 404);
    assert!(!cancel.load(Ordering::SeqCst));
}

#[test]
fn rest_api_refuses_without_the_token_and_answers_malformed_requests_with_json() {
    let cancel = Arc::new(AtomicBool::new(false));
    let metrics = ProcessMetrics::new("ops-counts", 0);
    let server = http::start(
        loopback(),
        Arc::clone(&metrics),
        Some(view(vec![], Some("s3cret"), Arc::clone(&cancel))),
    )
    .unwrap();
    let addr = server.addr();
    let error_of = |status: u16, body: &str, expected: u16| {
        assert_eq!(status, expected, "{body}");
        let v: weir::runtime::serde_json::Value =
            weir::runtime::serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(v["status"], expected);
        v["error"].as_str().unwrap().to_string()
    };
    let (s, b) = request(addr, "POST", "/api/cancel", &[]);
    assert!(error_of(s, &b, 401).contains("Authorization: Bearer"));
    let (s, b) = cancel_with(addr, "wrong");
    error_of(s, &b, 401);
    let (s, b) = request(addr, "POST", "/api/cancel", &["Authorization: s3cret"]);
    error_of(s, &b, 401);
    assert!(
        !cancel.load(Ordering::SeqCst),
        "refused requests change nothing"
    );
    let (s, b) = request(addr, "GET", "/api/cancel", &[]);
    error_of(s, &b, 405);
    let (s, b) = request(addr, "DELETE", "/api/job", &[]);
    error_of(s, &b, 405);
    let (s, b) = request(addr, "GET", "/api/nothing", &[]);
    assert!(error_of(s, &b, 404).contains("/api/nothing"));
    let (s, b) = request(addr, "GET", "/api/checkpoints?limit=many", &[]);
    error_of(s, &b, 400);
    // Not HTTP at all: the connection gets a 400 or is closed, and the server goes on.
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
    assert_eq!(get_json(addr, "/health")["status"], "UP");
    // With the token: accepted, and the job is asked to stop.
    let (s, b) = cancel_with(addr, "s3cret");
    assert_eq!(s, 202, "{b}");
    assert!(cancel.load(Ordering::SeqCst));
    assert_eq!(get_json(addr, "/api/job")["state"], "CANCELLING");
    let (s, b) = cancel_with(addr, "s3cret");
    error_of(s, &b, 409);
    // No token configured: mutating requests are off.
    let server2 = http::start(
        loopback(),
        metrics,
        Some(view(vec![], None, Arc::new(AtomicBool::new(false)))),
    )
    .unwrap();
    let (s, b) = request(
        server2.addr(),
        "POST",
        "/api/cancel",
        &["Authorization: Bearer "],
    );
    assert!(error_of(s, &b, 403).contains("--http-token"));
}

#[weir::job(name = "ops-load", main = false)]
fn load(env: &mut Env) {
    env.source(Generator::bounded(u64::MAX / 2, |i| i))
        .map(|x| {
            let mut h = x;
            for _ in 0..20 {
                h = h
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
            }
            (h % 1000, 1u64)
        })
        .key_by(|(k, _)| *k)
        .reduce(|(k, a), (_, b)| (k, a + b))
        .sink(DiscardSink::new());
}

fn records_read(addr: SocketAddr) -> f64 {
    get_json(addr, "/api/vertices")["vertices"][0]["records_read"]
        .as_f64()
        .unwrap()
}

#[test]
fn a_burst_of_requests_is_answered_while_the_job_runs_at_full_load_and_cancel_stops_it() {
    let (run, addr) = start_cli(load, "ops-load");
    let first = records_read(addr);
    std::thread::sleep(Duration::from_millis(300));
    let second = records_read(addr);
    assert!(
        second > first,
        "the job makes progress: {first} then {second}"
    );
    // 16 clients × 8 requests at once, while both workers are busy.
    let started = Instant::now();
    let clients: Vec<_> = (0..16)
        .map(|c| {
            std::thread::spawn(move || {
                let paths = ["/metrics", "/api/vertices", "/api/job", "/health"];
                for i in 0..8 {
                    let path = paths[(c + i) % paths.len()];
                    let t = Instant::now();
                    let (status, body) = request(addr, "GET", path, &[]);
                    assert_eq!(status, 200, "{path}: {body}");
                    assert!(
                        t.elapsed() < Duration::from_secs(5),
                        "{path} took {:?}",
                        t.elapsed()
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(!run.is_finished(), "the job still runs");
    let (status, body) = cancel_with(addr, "t0ken");
    assert_eq!(status, 202, "{body}");
    let code = run.join().unwrap();
    assert_eq!(
        code,
        std::process::ExitCode::from(1),
        "a cancelled run fails"
    );
    assert!(
        TcpStream::connect(addr).is_err(),
        "the server stops with the job"
    );
}

/// Records of the slow bounded job: it reads about 20 k records a second (each of the two
/// source instances sleeps 10 ms every 100 of its records).
const SLOW: u64 = 2_000_000;

#[weir::job(name = "ops-slow", main = false)]
fn slow(env: &mut Env) {
    env.source(Generator::bounded(SLOW, |i| {
        if i % 200 < 2 {
            std::thread::sleep(Duration::from_millis(10));
        }
        i
    }))
    .name("numbers")
    .map(|x| (x % 100, 1u64))
    .key_by(|(k, _)| *k)
    .reduce(|(k, a), (_, b)| (k, a + b))
    .name("count")
    .sink(DiscardSink::new());
}

/// Start `job` through the job binary's CLI (`run --workers 2 --http-port … --http-token …`)
/// on a thread; returns the run and the dashboard's address once it answers.
fn start_cli(
    job: fn() -> weir::runtime::job::Job,
    name: &str,
) -> (std::thread::JoinHandle<std::process::ExitCode>, SocketAddr) {
    start_cli_with(job, name, &[])
}

/// [`start_cli`] with more flags.
fn start_cli_with(
    job: fn() -> weir::runtime::job::Job,
    name: &str,
    extra: &[&str],
) -> (std::thread::JoinHandle<std::process::ExitCode>, SocketAddr) {
    let port = weir::runtime::testing::free_port_block(1);
    let argv: Vec<std::ffi::OsString> = [
        name,
        "run",
        "--workers",
        "2",
        "--http-port",
        &port.to_string(),
        "--http-token",
        "t0ken",
    ]
    .iter()
    .chain(extra)
    .map(Into::into)
    .collect();
    let run = std::thread::spawn(move || {
        weir::runtime::cli::main_with_args(job(), weir::BUILD_INFO, argv)
    });
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        assert!(!run.is_finished(), "the job ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    (run, addr)
}

#[test]
fn the_dashboard_draws_the_job_graph_and_live_numbers_in_a_browser() {
    let (run, addr) = start_cli(slow, "ops-slow");
    let vertices = slow().plan.vertices.len();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard/check.js");
    let out = std::process::Command::new("node")
        .arg(&script)
        .arg(format!("http://{addr}/?poll=200"))
        .arg(vertices.to_string())
        .output()
        .expect("node (Node.js) is needed for the dashboard test; .ci/run installs it");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser check failed (needs Debian's chromium and playwright-core in ~/.cache/weir/node: see .ci/run):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("\"ok\":true"), "{stdout}");
    assert!(
        !run.is_finished(),
        "the slow job was still running during the check"
    );
    let (status, body) = cancel_with(addr, "t0ken");
    assert_eq!(status, 202, "{body}");
    assert_eq!(run.join().unwrap(), std::process::ExitCode::from(1));
}

/// `POST /api/savepoint?target=DIR` on a running job with checkpoints: refused without the
/// token or a target; with them, a savepoint of the newest complete checkpoint is written
/// (the directory a restore takes). `stop=true` is not exercised: cancelling a job that
/// takes checkpoints sometimes hangs (an open bug, see the session note).
#[test]
fn a_savepoint_is_taken_through_the_rest_api() {
    let dir = weir::runtime::testing::TempDir::new("ops-savepoint");
    let ck = dir.join("ck").display().to_string();
    let (run, addr) = start_cli_with(
        slow,
        "ops-slow",
        &["--checkpoint-interval", "200ms", "--checkpoint-dir", &ck],
    );
    let sp = dir.join("sp");
    let path = format!("/api/savepoint?target={}", sp.display());
    let (status, body) = request(addr, "POST", &path, &[]);
    assert_eq!(status, 401, "no token: {body}");
    let auth = "Authorization: Bearer t0ken";
    let (status, body) = request(addr, "POST", "/api/savepoint", &[auth]);
    assert_eq!(status, 400, "no target: {body}");
    assert!(body.contains("target=DIR"), "{body}");
    // The first checkpoint completes within a second or so; the request waits for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, body) = loop {
        let (status, body) = request(addr, "POST", &path, &[auth]);
        if status == 200 || Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 200, "{body}");
    let answer: weir::runtime::serde_json::Value =
        weir::runtime::serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["workers"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    let info = std::fs::read_to_string(sp.join("savepoint.json")).unwrap();
    assert!(info.contains("\"ops-slow\""), "{info}");
    assert!(
        !run.is_finished(),
        "the job goes on after a savepoint without stop"
    );
}

#[weir::job(name = "ops-checkpointed", main = false)]
fn checkpointed(env: &mut Env) {
    env.source(Generator::bounded(N, |i| {
        if i % 500 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        (i, i as i64)
    }))
    .name("events")
    .watermarks(BoundedOutOfOrderness::millis(0), |e: &(u64, i64)| e.1)
    .map(|e| (e.0 % 10, 1u64))
    .key_by(|(k, _)| *k)
    .reduce(|(k, a), (_, b)| (k, a + b))
    .name("count")
    .sink(DiscardSink::new());
}

#[test]
fn metrics_report_checkpoints_and_watermarks() {
    let dir = weir::runtime::testing::TempDir::new("ops-checkpoints");
    let metrics = ProcessMetrics::new("ops-checkpointed", 0);
    let opts = LocalOptions {
        metrics: Some(Arc::clone(&metrics)),
        checkpoints: Some(weir::runtime::checkpoint::CheckpointConfig {
            restore: false,
            ..weir::runtime::checkpoint::CheckpointConfig::new(
                dir.path(),
                Duration::from_millis(100),
            )
        }),
        ..LocalOptions::default()
    };
    run_local_with(checkpointed(), 2, &[], opts).unwrap();
    let text = metrics.encode();
    let s = parse_text(&text);
    let (completed, failed) = metrics.checkpoint_counts();
    assert!(completed >= 1, "at least the final checkpoint: {text}");
    assert_eq!(failed, 0);
    assert_eq!(
        sum(&s, "weir_job_number_of_completed_checkpoints_total", &[]),
        completed as f64
    );
    let history = metrics.checkpoint_history();
    assert_eq!(history.len() as u64, completed.min(50));
    let ids: Vec<u64> = history.iter().map(|c| c.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
    // The keyed counts are state: the first checkpoint after them writes them.
    assert!(history.iter().any(|c| c.size_bytes > 0), "{history:?}");
    assert!(sum(&s, "weir_job_last_checkpoint_duration_seconds", &[]) >= 0.0);
    // The keyed vertex's input watermark: the final one (end of input) or the events' time.
    let wm: Vec<f64> = s
        .iter()
        .filter(|x| {
            x.name == "weir_operator_current_input_watermark"
                && x.label("operator") == Some("count")
        })
        .map(|x| x.value)
        .collect();
    assert_eq!(wm.len(), 2, "{text}");
    assert!(wm.iter().all(|&w| w >= (N - 1) as f64), "{wm:?}");
}

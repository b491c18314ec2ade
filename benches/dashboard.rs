//! The cost of being watched: a keyed job's throughput with nobody looking and with the
//! dashboard's requests (`/api/vertices`, `/api/job`, `/metrics`) every 100 ms, on the same
//! 2 worker threads. Target: under 5 % apart.
//!
//! `cargo bench --bench dashboard` (prints both rates and the difference; `WEIR_BENCH_RUNS`
//! sets the runs per variant, default 7, and the median is reported).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir::prelude::*;
use weir::runtime::http::{self, JobStatus, JobView};
use weir::runtime::metrics::ProcessMetrics;
use weir::runtime::worker::{run_local_with, LocalOptions};

/// Records per run: about a second of work, so that a run sees ten polls.
const N: u64 = 150_000_000;
const WORKERS: usize = 2;

#[weir::job(name = "bench-dashboard", main = false)]
fn job(env: &mut Env) {
    env.source(Generator::bounded(N, |i| (i, i * 7 % 1000)))
        .filter(|r| r.1 % 2 == 0)
        .map(|r| (r.0 % 4096, r.1 + 1))
        .key_by(|r| r.0)
        .reduce(|a, b| (a.0, a.1.wrapping_add(b.1)))
        .sink(DiscardSink::new());
}

fn get(addr: SocketAddr, path: &str) -> usize {
    let Ok(mut c) = TcpStream::connect(addr) else {
        return 0;
    };
    let _ = c.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes());
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    buf.len()
}

/// Seconds for one run, polled every 100 ms when `poll`.
fn run(poll: bool) -> f64 {
    let metrics = ProcessMetrics::new("bench-dashboard", 0);
    let plan = job().plan;
    let physical = weir::runtime::plan::resolve(
        &plan,
        weir::runtime::plan::ClusterShape::single(WORKERS),
        None,
    )
    .expect("the plan resolves");
    let view = JobView {
        plan,
        physical,
        peers: vec![],
        token: None,
        cancel: None,
        status: Arc::new(Mutex::new(JobStatus::Running)),
        checkpoint_interval_ms: None,
    };
    let server = http::start(
        "127.0.0.1:0".parse().expect("an address"),
        Arc::clone(&metrics),
        Some(view),
    )
    .expect("the server starts");
    let addr = server.addr();
    let done = Arc::new(AtomicBool::new(false));
    let poller = poll.then(|| {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut bytes = 0;
            while !done.load(Ordering::Relaxed) {
                for p in ["/api/vertices", "/api/job", "/metrics"] {
                    bytes += get(addr, p);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            bytes
        })
    });
    let opts = LocalOptions {
        metrics: Some(metrics),
        ..LocalOptions::default()
    };
    let t = Instant::now();
    run_local_with(job(), WORKERS, &[], opts).expect("the job runs");
    let took = t.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    if let Some(p) = poller {
        assert!(
            p.join().expect("the poller") > 0,
            "the dashboard got answers"
        );
    }
    took
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo test --benches` passes `--bench`-less flags: run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runs: usize = std::env::var("WEIR_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    run(false);
    // Alternate the variants so that load from elsewhere hits both alike.
    let (mut quiet, mut watched) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        quiet.push(run(false));
        watched.push(run(true));
    }
    let (q, w) = (median(quiet), median(watched));
    let rate = |s: f64| N as f64 / s / 1e6;
    println!(
        "dashboard: {:.1} M records/s unwatched, {:.1} M records/s polled every 100 ms: throughput {:+.1} % ({} runs each, median, {WORKERS} workers)",
        rate(q),
        rate(w),
        (rate(w) / rate(q) - 1.0) * 100.0,
        runs
    );
}

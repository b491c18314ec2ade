//! Watching a cluster run of the `wordcount` binary: every process serves `/metrics` on
//! the HTTP port plus its index, and process 0's REST API sums them.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use weir_runtime::testing::{
    child_pids, free_port_block, process_index, send_signal, wait_for_children, JobBinary,
    LocalCluster, Spawned, TempDir,
};

/// GET `path` on `addr`: the body on status 200.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut c = TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    c.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = String::new();
    c.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    // hyper answers an HTTP/1.0 request in HTTP/1.0.
    let status = head.split_whitespace().nth(1)?;
    (status == "200").then(|| body.to_string())
}

/// Start one node of two processes × one worker over `lines` lines, serving HTTP from a
/// free port on; `extra` flags follow.
fn start(dir: &TempDir, lines: usize, extra: &[&str]) -> (Spawned, u16) {
    let input = dir.path().join("input.txt");
    let line = "the quick brown fox jumps over the lazy dog again and again\n";
    std::fs::write(&input, line.repeat(lines)).unwrap();
    let cluster = LocalCluster::new(dir.path(), 1, 2);
    let port = free_port_block(2);
    let job = JobBinary::new(env!("CARGO_BIN_EXE_wordcount"));
    let mut args = vec![
        "--http-port".to_string(),
        port.to_string(),
        "--arg".to_string(),
        format!("input={}", input.display()),
        "--arg".to_string(),
        format!("output={}", dir.path().join("out").display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    (job.spawn_node(&cluster, 0, 1, &args), port)
}

fn get_json(addr: SocketAddr, path: &str) -> Option<Value> {
    get(addr, path).and_then(|b| serde_json::from_str(&b).ok())
}

#[test]
fn process_0_sums_the_metrics_of_every_process_of_a_cluster() {
    let dir = TempDir::new("wordcount-watching");
    // Enough input to keep two processes busy for a few seconds.
    let (mut launcher, port) = start(&dir, 600_000, &[]);
    let p0: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let p1: SocketAddr = format!("127.0.0.1:{}", port + 1).parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Until the keyed vertex's instances on both processes have counted records.
    let seen = loop {
        assert!(Instant::now() < deadline, "no metrics from both processes");
        assert!(
            launcher.is_running(),
            "the job ended before it was seen running"
        );
        let v = get_json(p0, "/api/vertices");
        if let Some(v) = v {
            let count = &v["vertices"][1];
            let busy: Vec<u64> = count["instances"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["records_in"].as_f64().unwrap_or(0.0) > 0.0)
                .map(|i| i["process"].as_u64().unwrap())
                .collect();
            if busy.contains(&0) && busy.contains(&1) {
                assert_eq!(
                    v["unreachable_processes"].as_array().unwrap().len(),
                    0,
                    "{v}"
                );
                break v;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(seen["job"], "wordcount");
    // Process 1 serves its own metrics on the next port, and only those.
    let m1 = get(p1, "/metrics").expect("process 1 serves /metrics");
    assert!(
        m1.contains("weir_process_resident_memory_bytes{job=\"wordcount\",process=\"1\"}"),
        "{m1}"
    );
    assert!(get(p1, "/api/job").is_none(), "the REST API is process 0's");
    let out = launcher.wait(Duration::from_secs(120));
    assert!(out.success(), "{out}");
    assert!(
        out.stderr
            .contains(&format!("dashboard on http://127.0.0.1:{port}/")),
        "{out}"
    );
}

/// After a process is killed, the launcher restarts both from the last checkpoint; the new
/// process 0 reports the restart, the job's uptime from its first start, and the
/// checkpoints it completes.
#[test]
fn a_restart_shows_in_the_job_overview_and_the_uptime_goes_on() {
    let dir = TempDir::new("wordcount-watching-restart");
    let ck = dir.path().join("checkpoints").display().to_string();
    let (mut launcher, port) = start(
        &dir,
        600_000,
        &[
            "--checkpoint-interval",
            "200ms",
            "--checkpoint-dir",
            &ck,
            "--restart-delay",
            "100ms",
        ],
    );
    let p0: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        assert!(Instant::now() < deadline, "no checkpoint completed");
        assert!(launcher.is_running(), "the job ended before a checkpoint");
        if let Some(ck) = get_json(p0, "/api/checkpoints") {
            if ck["completed"].as_u64().unwrap_or(0) >= 1 {
                assert!(ck["latest"]["id"].as_u64().is_some(), "{ck}");
                break get_json(p0, "/api/job").unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(first["restarts"], 0, "{first}");
    let kids = wait_for_children(launcher.pid(), 2, Duration::from_secs(20));
    let victim = kids
        .iter()
        .copied()
        .find(|&k| process_index(k) == Some(1))
        .unwrap();
    send_signal(victim, 9);
    let again = loop {
        assert!(Instant::now() < deadline, "no restarted process 0 answered");
        assert!(
            launcher.is_running(),
            "the job ended before the restart was seen"
        );
        let restarted = !child_pids(launcher.pid()).contains(&victim);
        if let Some(job) = get_json(p0, "/api/job").filter(|j| restarted && j["restarts"] == 1) {
            break job;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(again["started_at_ms"], first["started_at_ms"], "{again}");
    assert!(again["uptime_seconds"].as_f64() >= first["uptime_seconds"].as_f64());
    let out = launcher.wait(Duration::from_secs(120));
    assert!(out.success(), "{out}");
}

//! `nexmark bench`: run every query (or those named) on a fixed number of events and print
//! throughput and peak memory per query, beside the generator's own cost.
//!
//! Each measurement runs in a child process of its own (`nexmark __bench-one NAME …`), so
//! that its peak RSS is its own: the child runs the query in-process on `--workers` threads
//! (`weir::runtime::worker::run_local`, results discarded), times it and reports
//! `VmHWM` from `/proc/self/status`. The generator's cost is measured the same way by
//! generating the same events on the same number of threads without a dataflow, and q1 and
//! q5 also run as hand-written timely programs (`timely-q1`, `timely-q5`, see
//! [`crate::timely_ref`]).

use crate::source::GeneratorConfig;
use std::ffi::OsString;
use std::process::{Command, ExitCode};
use std::time::Instant;

/// What one child measured.
#[derive(Debug, Clone, Copy)]
struct Measure {
    seconds: f64,
    peak_rss_kb: u64,
}

struct Options {
    events: u64,
    workers: usize,
    event_rate: u64,
    queries: Vec<String>,
}

fn usage() -> String {
    "usage: nexmark bench [--events N] [--workers W] [--event-rate R] [--queries q0,q1,...]"
        .to_string()
}

fn parse(args: &[OsString]) -> Result<Options, String> {
    let mut o = Options {
        events: 10_000_000,
        workers: 1,
        event_rate: 10_000,
        queries: crate::QUERIES
            .iter()
            .map(|(n, _)| n.to_string())
            .filter(|n| n != "q12") // processing time: its figure says nothing
            .collect(),
    };
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value; {}", usage()))
        };
        match flag.as_str() {
            "--events" => {
                o.events = value()?
                    .parse()
                    .map_err(|_| format!("--events: a number; {}", usage()))?
            }
            "--workers" => {
                o.workers = value()?
                    .parse()
                    .ok()
                    .filter(|w| *w > 0)
                    .ok_or_else(|| format!("--workers: a positive number; {}", usage()))?
            }
            "--event-rate" => {
                o.event_rate = value()?
                    .parse()
                    .ok()
                    .filter(|r| *r > 0)
                    .ok_or_else(|| format!("--event-rate: a positive number; {}", usage()))?
            }
            "--queries" => {
                o.queries = value()?.split(',').map(str::to_string).collect();
                if let Some(q) = o.queries.iter().find(|q| crate::query(q).is_none()) {
                    return Err(format!("--queries: no query {q} here"));
                }
            }
            _ => return Err(format!("unknown flag {flag}; {}", usage())),
        }
    }
    Ok(o)
}

/// `nexmark bench …` (arguments after `bench`).
pub fn main(args: &[OsString]) -> ExitCode {
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let used = o.workers.min(cores);
    println!(
        "nexmark bench: {} events ({} per second of event time), {} worker thread(s), {} of {} core(s); results discarded",
        o.events, o.event_rate, o.workers, used, cores
    );
    let gen = match child(&o, "generator") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let rate = |m: &Measure| o.events as f64 / m.seconds;
    println!(
        "{:<10} {:>9} {:>14} {:>14} {:>18} {:>10}",
        "query", "seconds", "events/s", "per core", "per core, net", "peak RSS"
    );
    println!(
        "{:<10} {:>9.3} {:>14.0} {:>14.0} {:>18} {:>7} MB",
        "generator",
        gen.seconds,
        rate(&gen),
        rate(&gen) / used as f64,
        "-",
        gen.peak_rss_kb / 1024
    );
    let mut failed = false;
    let mut runs: Vec<String> = Vec::new();
    for q in &o.queries {
        runs.push(q.clone());
        if q == "q1" || q == "q5" {
            // The same query written by hand on timely, for comparison.
            runs.push(format!("timely-{q}"));
        }
    }
    for q in &runs {
        match child(&o, q) {
            Ok(m) => {
                // Net of the generator: the time the query spent beyond generating (none
                // measurable when the run was not slower than generating alone).
                let net = m.seconds - gen.seconds;
                let net = if net > 0.05 * gen.seconds {
                    format!("{:.0}", o.events as f64 / net / used as f64)
                } else {
                    "(≈ generator)".to_string()
                };
                println!(
                    "{:<10} {:>9.3} {:>14.0} {:>14.0} {:>18} {:>7} MB",
                    q,
                    m.seconds,
                    rate(&m),
                    rate(&m) / used as f64,
                    net,
                    m.peak_rss_kb / 1024
                );
            }
            Err(e) => {
                failed = true;
                println!("{q:<10} failed: {e}");
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn child(o: &Options, name: &str) -> Result<Measure, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let out = Command::new(exe)
        .args([
            "__bench-one",
            name,
            &o.events.to_string(),
            &o.workers.to_string(),
            &o.event_rate.to_string(),
        ])
        .output()
        .map_err(|e| format!("cannot start the measurement of {name}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{name}: {}; {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut fields = text.split_whitespace();
    let seconds = fields.next().and_then(|s| s.parse().ok());
    let peak = fields.next().and_then(|s| s.parse().ok());
    match (seconds, peak) {
        (Some(seconds), Some(peak_rss_kb)) => Ok(Measure {
            seconds,
            peak_rss_kb,
        }),
        _ => Err(format!("{name}: unexpected report {text:?}")),
    }
}

/// `nexmark __bench-one NAME EVENTS WORKERS EVENT_RATE`: measure one thing in this process
/// and print `SECONDS PEAK_RSS_KB`.
pub fn one(args: &[OsString]) -> ExitCode {
    let a: Vec<String> = args
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let (Some(name), Some(events), Some(workers), Some(rate)) = (
        a.first(),
        a.get(1).and_then(|s| s.parse::<u64>().ok()),
        a.get(2).and_then(|s| s.parse::<usize>().ok()),
        a.get(3).and_then(|s| s.parse::<u64>().ok()),
    ) else {
        eprintln!("error: __bench-one NAME EVENTS WORKERS EVENT_RATE");
        return ExitCode::from(2);
    };
    let start = Instant::now();
    let cfg = GeneratorConfig {
        events: Some(events),
        event_rate: rate,
        ..GeneratorConfig::default()
    };
    if name == "generator" {
        generate(events, workers.max(1), rate);
    } else if name == "timely-q1" {
        std::hint::black_box(crate::timely_ref::q1(&cfg, workers.max(1)));
    } else if name == "timely-q5" {
        std::hint::black_box(crate::timely_ref::q5(&cfg, workers.max(1)));
    } else {
        let Some(job) = crate::query(name) else {
            eprintln!("error: no query {name}");
            return ExitCode::from(2);
        };
        let (events_s, rate_s) = (events.to_string(), rate.to_string());
        let args = [
            ("query", name.as_str()),
            ("events", events_s.as_str()),
            ("event_rate", rate_s.as_str()),
            ("output", "discard"),
        ];
        if let Err(e) = weir::runtime::worker::run_local(job, workers, &args) {
            eprintln!("error: {}", e.message);
            return ExitCode::from(1);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("{seconds} {}", peak_rss_kb());
    ExitCode::SUCCESS
}

/// Generate the events on `workers` threads as the source instances would (offset, step),
/// touching each so that nothing is optimized away.
fn generate(events: u64, workers: usize, rate: u64) {
    let cfg = GeneratorConfig {
        events: Some(events),
        event_rate: rate,
        ..GeneratorConfig::default()
    };
    let p = workers as u64;
    let threads: Vec<_> = (0..p)
        .map(|k| {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let share = if events <= k {
                    0
                } else {
                    (events - 1 - k) / p + 1
                };
                let mut sum = 0i64;
                for e in cfg.iter(k, p).take(share as usize) {
                    sum = sum.wrapping_add(std::hint::black_box(e).date_time());
                }
                sum
            })
        })
        .collect();
    for t in threads {
        let _ = std::hint::black_box(t.join());
    }
}

/// This process's peak resident set (kB), from `/proc/self/status`; 0 if unknown.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

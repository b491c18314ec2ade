//! The `nexmark` binary: every query of the crate in one job binary. The query is a job
//! argument, so that the processes a launcher starts (which get the same `--arg`s) run the
//! same one:
//!
//! ```text
//! nexmark run --workers 4 --arg query=q5 --arg events=1000000 --arg output=out/q5
//! nexmark explain --workers 4 --arg query=q5
//! nexmark bench --events 10000000 --workers 2          # every query, throughput and memory
//! ```

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    match argv.get(1).map(|a| a.to_string_lossy()) {
        Some(c) if c == "bench" => return weir_nexmark::bench::main(&argv[2..]),
        Some(c) if c == "__bench-one" => return weir_nexmark::bench::one(&argv[2..]),
        _ => {}
    }
    let names: Vec<&str> = weir_nexmark::QUERIES.iter().map(|(n, _)| *n).collect();
    let Some(name) = weir_nexmark::query_arg(&argv) else {
        if argv
            .iter()
            .any(|a| a == "--help" || a == "-h" || a == "--version")
        {
            // Help and version are the same for every query: show q0's.
            return weir::runtime::cli::main(weir_nexmark::queries::q0(), weir::BUILD_INFO);
        }
        let _ = writeln!(
            std::io::stderr(),
            "error: say which query to run with --arg query=NAME, one of: {}",
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    let Some(job) = weir_nexmark::query(&name) else {
        let _ = writeln!(
            std::io::stderr(),
            "error: --arg query={name}: no such query here; implemented: {}",
            names.join(", ")
        );
        return ExitCode::from(2);
    };
    // `explain` takes no job arguments: the query argument only chose the job.
    if argv.get(1).is_some_and(|c| c == "explain") {
        argv = strip_query(argv);
    }
    weir::runtime::cli::logging::install_panic_hook();
    weir::runtime::cli::main_with_args(job, weir::BUILD_INFO, argv)
}

/// `argv` without its `--arg query=…`.
fn strip_query(argv: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(argv.len());
    let mut it = argv.into_iter().peekable();
    while let Some(a) = it.next() {
        if a == "--arg"
            && it
                .peek()
                .is_some_and(|v| v.to_string_lossy().starts_with("query="))
        {
            it.next();
            continue;
        }
        if a.to_string_lossy().starts_with("--arg=query=") {
            continue;
        }
        out.push(a);
    }
    out
}

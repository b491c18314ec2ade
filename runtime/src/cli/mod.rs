//! The job binary's command line: `run`, `explain`, `--version`, and the launcher's `__process`.
//!
//! Exit codes: 0 success; 1 the job failed at run time; 2 a usage or configuration error
//! (bad flag, hosts file, port in use, job argument, a plan that does not fit the cluster),
//! reported as one `error: …` line on stderr. A launcher stopped by SIGINT/SIGTERM exits
//! with 128 + the signal number after stopping its processes.

pub mod args;
pub mod explain;
pub mod logging;
pub mod run;

use crate::job::Job;
use args::{Cli, Command, LogFormat};
use logging::Role;
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

/// Facts about the weir build a job binary was linked with (see `weir::BUILD_INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildInfo {
    /// Version of the `weir` crate.
    pub weir_version: &'static str,
    /// Short git commit of the weir sources, or `unknown`.
    pub weir_commit: &'static str,
    /// Target triple the job was built for.
    pub target: &'static str,
    /// Whether the C runtime is linked statically (`+crt-static`).
    pub static_binary: bool,
}

/// A failure to report on stderr, with the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// 1 (run time) or 2 (usage or configuration).
    pub code: u8,
    /// What went wrong and how to fix it (printed after `error: `).
    pub message: String,
}

impl CliError {
    /// A usage or configuration error: exit code 2.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: 2,
            message: message.into(),
        }
    }
    /// A failure at run time: exit code 1.
    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            code: 1,
            message: message.into(),
        }
    }
}

/// The text `--version` prints after the job's name.
fn version_body(job: &Job, build: &BuildInfo) -> String {
    format!(
        "{} (job crate {} {})\nweir {} (commit {})\ntarget {}, {}",
        job.meta.crate_version,
        job.meta.crate_name,
        job.meta.crate_version,
        build.weir_version,
        build.weir_commit,
        build.target,
        if build.static_binary {
            "statically linked"
        } else {
            "dynamically linked"
        }
    )
}

/// What `--version` prints (three lines: job, weir, target).
pub fn version_text(job: &Job, build: &BuildInfo) -> String {
    format!("{} {}", job.plan.name, version_body(job, build))
}

/// Join the lines of a message so that it stays one line.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn print_error(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", one_line(line));
}

/// The job binary's `main`: parse the command line, run the command, return the exit code.
/// The `fn main` that `#[weir::job]` generates calls this.
pub fn main(job: Job, build: BuildInfo) -> ExitCode {
    logging::install_panic_hook();
    main_with_args(job, build, std::env::args_os().collect())
}

/// [`main`] with explicit arguments (the first is the program's name), for tests. Unlike
/// `main` it leaves the panic hook alone.
pub fn main_with_args(job: Job, build: BuildInfo, argv: Vec<OsString>) -> ExitCode {
    let bin = args::bin_name(&argv, &job.plan.name);
    let cli = match args::parse(&job.plan.name, &version_body(&job, &build), &argv) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            print_error(&args::render_error(&e, &argv, &bin));
            return ExitCode::from(2);
        }
    };
    let (format, role) = match &cli.command {
        Command::Run(r) => (
            r.log_format,
            r.node
                .filter(|_| r.hosts.is_some())
                .map_or(Role::Process(0), |node| Role::Launcher { node }),
        ),
        Command::Process(p) => (p.run.log_format, Role::Process(p.process)),
        Command::Explain(_) | Command::Savepoint(_) => (LogFormat::Text, Role::Process(0)),
    };
    let is_child = matches!(cli.command, Command::Process(_));
    logging::init(format, &job.plan.name, role);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(job, cli)));
    match outcome {
        Ok(Ok(code)) => ExitCode::from(code),
        Ok(Err(e)) => {
            if is_child {
                // The launcher prints the one `error:` line; this one goes to the log, tagged
                // with the process.
                tracing::error!("{}", one_line(&e.message));
            } else {
                print_error(&format!("error: {}", e.message));
            }
            ExitCode::from(e.code)
        }
        Err(panic) => {
            print_error(&format!(
                "error: {}",
                run::panic_error(&logging::panic_message(panic.as_ref()))
            ));
            ExitCode::from(1)
        }
    }
}

fn dispatch(job: Job, cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        Command::Explain(a) => run::explain(&job, &a),
        Command::Savepoint(a) => run::savepoint(&job, &a),
        Command::Run(a) if a.hosts.is_some() => run::run_launcher(&job, &a),
        Command::Run(a) => run::run_single(job, &a),
        Command::Process(p) => run::run_process(job, &p),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::job::JobMeta;

    fn job() -> Job {
        Job {
            plan: explain::tests::sample(),
            build: |_, _| {},
            meta: JobMeta {
                crate_name: "wordcount-job",
                crate_version: "0.3.1",
            },
        }
    }

    const BUILD: BuildInfo = BuildInfo {
        weir_version: "0.1.0",
        weir_commit: "1a2b3c4",
        target: "x86_64-unknown-linux-gnu",
        static_binary: true,
    };

    #[test]
    fn version_has_three_lines() {
        assert_eq!(
            version_text(&job(), &BUILD),
            "wordcount 0.3.1 (job crate wordcount-job 0.3.1)\nweir 0.1.0 (commit 1a2b3c4)\ntarget x86_64-unknown-linux-gnu, statically linked"
        );
        let e = args::parse(
            "wordcount",
            &version_body(&job(), &BUILD),
            &["wc".into(), "--version".into()],
        )
        .unwrap_err();
        assert_eq!(e.render().to_string(), version_text(&job(), &BUILD) + "\n");
    }

    #[test]
    fn messages_stay_on_one_line() {
        assert_eq!(one_line("error: a\n\n  b\n"), "error: a; b");
    }

    fn code(args: &str) -> ExitCode {
        main_with_args(
            job(),
            BUILD,
            args.split_whitespace().map(OsString::from).collect(),
        )
    }

    #[test]
    fn exit_codes() {
        assert_eq!(
            code("wc explain --workers 3 --parallelism 2"),
            ExitCode::SUCCESS
        );
        assert_eq!(
            code("wc explain --workers 3 --parallelism 2 --format json"),
            ExitCode::SUCCESS
        );
        assert_eq!(code("wc explain --workers 2"), ExitCode::from(2));
        assert_eq!(code("wc --version"), ExitCode::SUCCESS);
        assert_eq!(code("wc run --help"), ExitCode::SUCCESS);
        assert_eq!(code("wc run --workers 0"), ExitCode::from(2));
        // The sample plan needs 3 slots (2 + 1 for the `sinks` group).
        assert_eq!(
            code("wc explain --workers 2 --parallelism 1"),
            ExitCode::SUCCESS
        );
        assert_eq!(
            code("wc explain --workers 1 --parallelism 2"),
            ExitCode::from(2)
        );
        // Missing job argument `input`.
        assert_eq!(
            code("wc run --workers 4 --parallelism 2"),
            ExitCode::from(2)
        );
        assert_eq!(
            code("wc run --workers 4 --parallelism 2 --arg input=x --arg nope=1"),
            ExitCode::from(2)
        );
        assert_eq!(code("wc run --workers 4 --parallelism 2 --hosts /nonexistent/hosts.txt --node 0 --arg input=x"), ExitCode::from(2));
    }

    #[test]
    fn config_errors_are_exit_2_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts.txt");
        std::fs::write(&hosts, "127.0.0.1:7000\n").unwrap();
        let job = job();
        let run = |extra: &str| -> Result<u8, CliError> {
            let argv: Vec<OsString> = format!("wc run --hosts {} {extra}", hosts.display())
                .split_whitespace()
                .map(OsString::from)
                .collect();
            let cli = args::parse("wordcount", "0", &argv).unwrap();
            let Command::Run(a) = cli.command else {
                panic!("not run")
            };
            run::run_launcher(&job, &a)
        };
        assert_eq!(
            run("--workers 4 --parallelism 2 --node 1 --arg input=x").unwrap_err(),
            CliError::usage(format!("--node 1 is out of range: hosts file `{}` lists 1 node (0 to 0); pass the index of this machine's line", hosts.display()))
        );
        let e = run("--workers 4 --parallelism 2 --node 0").unwrap_err();
        assert_eq!(e.code, 2);
        assert!(
            e.message.starts_with("missing job argument `input`"),
            "{e:?}"
        );
        let e = run("--node 0 --workers 4 --arg input=x --parallelism 4").unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.contains("the plan needs 5 slots"), "{e:?}");
        // A port in use.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::fs::write(&hosts, format!("127.0.0.1:{port}\n")).unwrap();
        let e = run("--workers 4 --parallelism 2 --node 0 --arg input=x").unwrap_err();
        assert_eq!(
            e,
            CliError::usage(format!(
                "address 127.0.0.1:{port} (process 0 on node 0) is in use; pick another base port in {}",
                hosts.display()
            ))
        );
    }
}

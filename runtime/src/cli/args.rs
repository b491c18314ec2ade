//! The job binary's flags (clap derive) and the one-line rendering of clap's errors.

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The job binary's command line.
#[derive(Parser, Debug, Clone)]
#[command(
    about = "A weir job: a stream processing pipeline compiled into this binary.",
    subcommand_required = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run the job: one process with --workers threads, or, with --hosts, the processes of
    /// one node of a cluster (start it on every node with that node's --node).
    Run(RunArgs),
    /// Show where every operator instance would run on a cluster, without running.
    Explain(ExplainArgs),
    /// Write a savepoint: the newest checkpoint every worker of this node completed, copied
    /// to one portable directory that `run --from-savepoint` restores on any cluster shape.
    /// Works while the job runs.
    Savepoint(SavepointArgs),
    /// One process of a cluster, started by the launcher (`run --hosts`).
    #[command(name = "__process", hide = true)]
    Process(ProcessArgs),
}

/// Flags of `savepoint`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct SavepointArgs {
    /// The running (or stopped) job's checkpoint directory, as given to `run`.
    #[arg(long, value_name = "DIR", default_value = "weir-checkpoints")]
    pub checkpoint_dir: PathBuf,
    /// Where to write the savepoint: a new directory.
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    /// Copy this checkpoint rather than the newest complete one (to assemble one savepoint
    /// from several nodes into a shared directory: the same id on every node).
    #[arg(long, value_name = "ID")]
    pub checkpoint: Option<u64>,
}

/// Flags of `run`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// Worker threads per process.
    #[arg(long, value_name = "W", value_parser = parse_count)]
    pub workers: usize,
    /// Parallelism of operators that set none (default: every slot of the cluster; a
    /// parallelism set in the job's attribute wins).
    #[arg(long, value_name = "P", value_parser = parse_count)]
    pub parallelism: Option<usize>,
    /// A job argument (what `env.arg("name")` reads); repeat for several.
    #[arg(long = "arg", value_name = "NAME=VALUE", value_parser = parse_job_arg)]
    pub args: Vec<(String, String)>,
    /// Length of an epoch, the unit of progress tracking, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 50, value_parser = parse_millis)]
    pub epoch_ms: u64,
    /// Write the resolved physical plan as JSON to FILE before running (node 0 only).
    #[arg(long, value_name = "FILE")]
    pub plan_out: Option<PathBuf>,
    /// Format of the log lines on stderr (level: RUST_LOG, default info).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Serve `/metrics` on this port (process K of a cluster: PORT+K); process 0 also serves
    /// the REST API and the dashboard. 0 turns the server off [default: 8081, and a busy
    /// default port only logs a warning].
    #[arg(long, value_name = "PORT", help_heading = "Monitoring")]
    pub http_port: Option<u16>,
    /// Serve no HTTP at all (as --http-port 0).
    #[arg(long, conflicts_with = "http_port", help_heading = "Monitoring")]
    pub no_http: bool,
    /// The address the HTTP server binds (0.0.0.0: every interface).
    #[arg(
        long,
        value_name = "IP",
        default_value = "127.0.0.1",
        help_heading = "Monitoring"
    )]
    pub http_bind: std::net::IpAddr,
    /// The token that mutating REST requests (POST /api/cancel) must send as
    /// `Authorization: Bearer TOKEN` (or set WEIR_HTTP_TOKEN); without one they are refused.
    #[arg(long, value_name = "TOKEN", help_heading = "Monitoring")]
    pub http_token: Option<String>,
    /// Run as one node of a cluster: the file lists one IP:PORT per node.
    #[arg(long, value_name = "FILE", requires = "node", help_heading = "Cluster")]
    pub hosts: Option<PathBuf>,
    /// This machine's node: its line in the hosts file, from 0 (comments and blank lines
    /// not counted).
    #[arg(long, value_name = "N", requires = "hosts", help_heading = "Cluster")]
    pub node: Option<usize>,
    /// Processes on every node [default: 1]; node N's process k listens on the node's
    /// IP and PORT+k.
    #[arg(long, value_name = "P", requires = "hosts", value_parser = parse_count, help_heading = "Cluster")]
    pub procs_per_node: Option<usize>,
    /// How long a process waits for the others to be reachable, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = parse_secs, help_heading = "Cluster")]
    pub connect_timeout: u64,
    /// How often the launcher sends a heartbeat to every other node's launcher (UDP, on
    /// the node's IP:PORT from the hosts file).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration_ms, help_heading = "Cluster")]
    pub heartbeat_interval: u64,
    /// After how long without a heartbeat another node counts as lost: the launcher then
    /// restarts its processes from the last complete checkpoint (at least two intervals).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration_ms, help_heading = "Cluster")]
    pub heartbeat_timeout: u64,
    /// Take a checkpoint this often (e.g. 10s, 500ms; whole epochs): state, source
    /// positions and sink output are then exactly-once across failures [default: the
    /// job's `checkpoint_interval`, else none].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms, help_heading = "Checkpoints")]
    pub checkpoint_interval: Option<u64>,
    /// Where checkpoints are kept: one store per worker slot under DIR/<job>/.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "weir-checkpoints",
        help_heading = "Checkpoints"
    )]
    pub checkpoint_dir: PathBuf,
    /// Copy every completed checkpoint into DIR/<job>/worker-<slot>/ too (a shared mount),
    /// so that a node's state survives the loss of its disk; a restore uses a copy when
    /// the local store lacks the checkpoint.
    #[arg(long, value_name = "DIR", help_heading = "Checkpoints")]
    pub checkpoint_copy_dir: Option<PathBuf>,
    /// How many complete checkpoints to keep (the newest).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = parse_count, help_heading = "Checkpoints")]
    pub checkpoints_retained: usize,
    /// Resume from the newest checkpoint every worker completed (`latest`), or start
    /// without state and drop the stored checkpoints (`none`).
    #[arg(long, value_enum, value_name = "FROM", default_value_t = Restore::Latest, help_heading = "Checkpoints")]
    pub restore: Restore,
    /// How often the launcher restarts the job's processes after a failure, from the last
    /// complete checkpoint, before giving up [default: 3 with checkpoints, else 0].
    #[arg(long, value_name = "N", help_heading = "Checkpoints")]
    pub restart_attempts: Option<u32>,
    /// How the launcher decides to restart: `fixed-delay` allows --restart-attempts restarts
    /// in all; `failure-rate` allows --restart-attempts failures within any
    /// --failure-rate-interval (Flink's two strategies).
    #[arg(long, value_enum, value_name = "STRATEGY", default_value_t = RestartStrategy::FixedDelay, help_heading = "Checkpoints")]
    pub restart_strategy: RestartStrategy,
    /// The window of the failure-rate strategy (e.g. 5m).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration_ms, help_heading = "Checkpoints")]
    pub failure_rate_interval: u64,
    /// Start from a savepoint (a directory `savepoint` wrote), on this or any other cluster
    /// shape: state is redistributed by key group. Needs checkpoints on. After a failure the
    /// run resumes from its own newer checkpoints.
    #[arg(long, value_name = "DIR", help_heading = "Checkpoints")]
    pub from_savepoint: Option<PathBuf>,
    /// With --from-savepoint: start even when the savepoint holds state of an operator this
    /// job has no longer (by name); that state is dropped.
    #[arg(long, help_heading = "Checkpoints")]
    pub allow_non_restored_state: bool,
    /// How long the launcher waits before a restart (e.g. 1s, 200ms).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration_ms, help_heading = "Checkpoints")]
    pub restart_delay: u64,
}

/// The launcher's restart strategies.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartStrategy {
    /// A fixed number of restarts in all.
    FixedDelay,
    /// A number of failures within a sliding window of time.
    FailureRate,
}

impl RestartStrategy {
    /// The flag's value.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartStrategy::FixedDelay => "fixed-delay",
            RestartStrategy::FailureRate => "failure-rate",
        }
    }
}

/// Where a run starts from.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    /// The newest checkpoint that every worker completed, if any.
    Latest,
    /// No state: drop the stored checkpoints.
    None,
}

impl Restore {
    /// The flag's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Restore::Latest => "latest",
            Restore::None => "none",
        }
    }
}

/// Flags of the hidden `__process` subcommand: `run`'s, and which process this is.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ProcessArgs {
    /// The run options the launcher was given.
    #[command(flatten)]
    pub run: RunArgs,
    /// Global index of this process.
    #[arg(long, value_name = "K")]
    pub process: usize,
}

/// Flags of `explain`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ExplainArgs {
    /// Nodes in the cluster.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_count, conflicts_with = "hosts")]
    pub nodes: usize,
    /// Processes on every node.
    #[arg(long, value_name = "P", default_value_t = 1, value_parser = parse_count)]
    pub procs_per_node: usize,
    /// Worker threads per process.
    #[arg(long, value_name = "W", default_value_t = 1, value_parser = parse_count)]
    pub workers: usize,
    /// Parallelism of operators that set none (as for `run`).
    #[arg(long, value_name = "P", value_parser = parse_count)]
    pub parallelism: Option<usize>,
    /// Take the number of nodes from a hosts file (as `run --hosts`) instead of --nodes.
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = ExplainFormat::Text)]
    pub format: ExplainFormat,
}

/// Formats of `explain`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExplainFormat {
    /// For people.
    Text,
    /// The physical plan as JSON: `{"job", "plan", "operators"}`.
    Json,
    /// Graphviz: one cluster per vertex.
    Dot,
}

/// Formats of the log lines.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

fn parse_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number of at least 1".into()),
    }
}

fn parse_millis(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if (1..=3_600_000).contains(&n) => Ok(n),
        _ => Err("expected milliseconds between 1 and 3600000".into()),
    }
}

fn parse_duration_ms(s: &str) -> Result<u64, String> {
    weir_compiler::plan::parse_duration_ms(s)
}

fn parse_secs(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if (1..=86_400).contains(&n) => Ok(n),
        _ => Err("expected seconds between 1 and 86400".into()),
    }
}

fn parse_job_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err("expected NAME=VALUE, as in --arg input=orders.csv".into()),
    }
}

/// The clap command for a job called `name`, with the `--version` text `version` (what
/// follows the name).
pub fn command(name: &str, version: &str) -> clap::Command {
    Cli::command()
        .name(name.to_string())
        .display_name(name.to_string())
        .version(version.to_string())
        .long_version(version.to_string())
        .arg_required_else_help(false)
}

/// Parse `args` (the first is the program) for a job called `name`.
pub fn parse(name: &str, version: &str, args: &[OsString]) -> Result<Cli, clap::Error> {
    let mut cmd = command(name, version);
    let matches = cmd.try_get_matches_from_mut(args.iter().cloned())?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

/// The program name to show in messages: the file name of `args[0]`.
pub fn bin_name(args: &[OsString], fallback: &str) -> String {
    args.first()
        .and_then(|a| Path::new(a).file_name())
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| fallback.to_string())
}

/// A clap error as one line: clap's first line (`error: …`), then where to read more.
pub fn render_error(err: &clap::Error, args: &[OsString], bin: &str) -> String {
    if err.kind() == clap::error::ErrorKind::MissingSubcommand {
        // clap's message would list the hidden `__process`.
        return format!(
            "error: no command given: use `{bin} run` or `{bin} explain`; see `{bin} --help`"
        );
    }
    // clap's first paragraph: usually one line, but a list of missing arguments follows its
    // first line indented.
    let rendered = err.render().to_string();
    let first: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    let first = if first.is_empty() {
        "error: invalid command line".to_string()
    } else {
        first.join(" ")
    };
    let first = first.trim_end_matches('.').to_string();
    let sub = args
        .iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .find(|a| !a.starts_with('-'))
        .filter(|a| ["run", "explain", "__process"].contains(a));
    match sub {
        Some(sub) => format!("{first}; see `{bin} {sub} --help`"),
        None => format!("{first}; see `{bin} --help`"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    fn ok(s: &str) -> Cli {
        match parse("wordcount", "0.1.0", &argv(s)) {
            Ok(c) => c,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn err_line(s: &str) -> String {
        let a = argv(s);
        match parse("wordcount", "0.1.0", &a) {
            Ok(c) => panic!("{s}: parsed {c:?}"),
            Err(e) => render_error(&e, &a, &bin_name(&a, "wordcount")),
        }
    }

    #[test]
    fn run_single_process() {
        let Command::Run(r) = ok("/opt/jobs/wc run --workers 4 --parallelism 2 --arg input=a.csv --arg x=y=z --epoch-ms 20 --plan-out p.json --log-format json").command else {
            panic!("not run")
        };
        assert_eq!(r.workers, 4);
        assert_eq!(r.parallelism, Some(2));
        assert_eq!(
            r.args,
            vec![("input".into(), "a.csv".into()), ("x".into(), "y=z".into())]
        );
        assert_eq!(r.epoch_ms, 20);
        assert_eq!(r.plan_out, Some(PathBuf::from("p.json")));
        assert_eq!(r.log_format, LogFormat::Json);
        assert_eq!(
            (r.hosts, r.node, r.procs_per_node, r.connect_timeout),
            (None, None, None, 60)
        );
    }

    #[test]
    fn run_defaults() {
        let Command::Run(r) = ok("wc run --workers 1").command else {
            panic!("not run")
        };
        assert_eq!(
            (r.epoch_ms, r.log_format, r.parallelism),
            (50, LogFormat::Text, None)
        );
        assert!(r.args.is_empty());
        // Monitoring: the default port, loopback only, no token.
        assert_eq!(
            (
                r.http_port,
                r.no_http,
                r.http_bind.to_string(),
                r.http_token
            ),
            (None, false, "127.0.0.1".to_string(), None)
        );
    }

    #[test]
    fn run_monitoring_flags() {
        let Command::Run(r) =
            ok("wc run --workers 1 --http-port 9100 --http-bind 0.0.0.0 --http-token abc").command
        else {
            panic!("not run")
        };
        assert_eq!(
            (
                r.http_port,
                r.http_bind.to_string(),
                r.http_token.as_deref()
            ),
            (Some(9100), "0.0.0.0".to_string(), Some("abc"))
        );
        let Command::Run(r) = ok("wc run --workers 1 --no-http").command else {
            panic!("not run")
        };
        assert!(r.no_http);
        assert!(
            err_line("wc run --workers 1 --no-http --http-port 1").contains("cannot be used with")
        );
        assert!(err_line("wc run --workers 1 --http-bind localhost")
            .starts_with("error: invalid value 'localhost' for '--http-bind <IP>'"));
    }

    #[test]
    fn run_cluster() {
        let Command::Run(r) =
            ok("wc run --hosts h.txt --node 1 --procs-per-node 2 --workers 3 --connect-timeout 5")
                .command
        else {
            panic!("not run")
        };
        assert_eq!(
            (
                r.hosts,
                r.node,
                r.procs_per_node,
                r.workers,
                r.connect_timeout
            ),
            (Some("h.txt".into()), Some(1), Some(2), 3, 5)
        );
    }

    #[test]
    fn hidden_process_subcommand() {
        let Command::Process(p) =
            ok("wc __process --hosts h.txt --node 0 --workers 2 --process 1").command
        else {
            panic!("not __process")
        };
        assert_eq!(p.process, 1);
        assert_eq!(p.run.workers, 2);
    }

    #[test]
    fn explain_defaults_and_flags() {
        let Command::Explain(e) = ok("wc explain").command else {
            panic!("not explain")
        };
        assert_eq!(
            (
                e.nodes,
                e.procs_per_node,
                e.workers,
                e.parallelism,
                e.format
            ),
            (1, 1, 1, None, ExplainFormat::Text)
        );
        let Command::Explain(e) =
            ok("wc explain --nodes 2 --procs-per-node 3 --workers 4 --parallelism 5 --format dot")
                .command
        else {
            panic!("not explain")
        };
        assert_eq!(
            (
                e.nodes,
                e.procs_per_node,
                e.workers,
                e.parallelism,
                e.format
            ),
            (2, 3, 4, Some(5), ExplainFormat::Dot)
        );
    }

    #[test]
    fn errors_are_one_line() {
        assert_eq!(err_line("/x/wc run"), "error: the following required arguments were not provided: --workers <W>; see `wc run --help`");
        assert_eq!(
            err_line("wc run --workers 0"),
            "error: invalid value '0' for '--workers <W>': must be at least 1; see `wc run --help`"
        );
        assert_eq!(
            err_line("wc run --workers 1 --arg novalue"),
            "error: invalid value 'novalue' for '--arg <NAME=VALUE>': expected NAME=VALUE, as in --arg input=orders.csv; see `wc run --help`"
        );
        assert_eq!(
            err_line("wc run --workers 1 --frobnicate"),
            "error: unexpected argument '--frobnicate' found; see `wc run --help`"
        );
        assert_eq!(
            err_line("wc run --workers 1 --node 1"),
            "error: the following required arguments were not provided: --hosts <FILE>; see `wc run --help`"
        );
        assert_eq!(err_line("wc explain --format yaml").lines().count(), 1);
        assert!(err_line("wc explain --format yaml")
            .starts_with("error: invalid value 'yaml' for '--format <FORMAT>'"));
        assert!(err_line("wc explain --hosts h --nodes 2").contains("cannot be used with"));
        assert_eq!(
            err_line("wc"),
            "error: no command given: use `wc run` or `wc explain`; see `wc --help`"
        );
        assert!(!err_line("wc lanch").contains("__process"));
        assert_eq!(
            err_line("wc launch"),
            "error: unrecognized subcommand 'launch'; see `wc --help`"
        );
    }

    #[test]
    fn help_and_version_are_not_errors() {
        let e = parse(
            "wordcount",
            "0.1.0 (job crate wc 0.1.0)\nweir 0.1.0",
            &argv("wc --version"),
        )
        .unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayVersion);
        assert_eq!(
            e.render().to_string(),
            "wordcount 0.1.0 (job crate wc 0.1.0)\nweir 0.1.0\n"
        );
        let e = parse("wordcount", "0.1.0", &argv("wc run --help")).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(!e.render().to_string().contains("__process"));
        let e = parse("wordcount", "0.1.0", &argv("wc --help")).unwrap_err();
        assert!(!e.render().to_string().contains("__process"));
    }
}

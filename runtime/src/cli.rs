//! The job binary's command line: `run`, `explain`, `--version`.

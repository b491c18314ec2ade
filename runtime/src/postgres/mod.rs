//! PostgreSQL connector (cargo feature `postgres`): [`PostgresSink`] (insert or upsert,
//! exactly-once with checkpoints) and [`PostgresSource`] (a bounded snapshot of a table or
//! query), on tokio-postgres without TLS.
//!
//! Each open sink or source instance has its own connection, driven by its own
//! current-thread tokio runtime: the sink's on the worker thread while it writes a batch or
//! commits a checkpoint, the source's on a reader thread of its own, so the worker never
//! waits on the network while reading.
//!
//! The connection string (`postgres://user:password@host:port/db` or
//! `host=… user=… dbname=…`) is always given by the job, typically from `--arg` or the
//! environment; nothing about the server is built in.

mod sink;
mod source;

pub use sink::{PostgresSink, PostgresSinkWriter, DEFAULT_PROGRESS_TABLE};
pub use source::{PostgresSource, PostgresSourceReader};

use crate::error::{Result, RuntimeError};
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

/// How long to retry reaching the server (at start, and for every batch or commit) before
/// failing.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest an operation (a batch, a commit) may take before it counts as hung.
const MIN_OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Parse a connection string; `what` names the connector in errors.
fn parse_config(url: &str, what: &str) -> Result<Config> {
    if url.trim().is_empty() {
        return Err(RuntimeError::user(format!(
            "{what}: the connection string is empty; pass one such as --arg pg=postgres://user@127.0.0.1:5432/db (or set the job's environment variable)"
        )));
    }
    let mut config: Config = url.parse().map_err(|e| {
        RuntimeError::user(format!(
            "{what}: cannot parse the connection string: {e}; use `postgres://user:password@host:port/db` or `host=… port=… user=… dbname=…`"
        ))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("weir");
    }
    Ok(config)
}

/// Where a configuration points, without its password: `user@host:port/db`.
fn target(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().or(config.get_user()).unwrap_or("?")
    )
}

/// The server's message for an error, or the client's.
fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                source = inner.source();
            }
            s
        }
    }
}

/// Whether an error may go away by reconnecting and trying again (the connection broke, the
/// server restarts or is overloaded) rather than being a mistake in the job or the table.
fn is_transient(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::TOO_MANY_CONNECTIONS,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                ]
                .contains(code)
        }
    }
}

/// Whether an error is about the data or the schema (SQLSTATE classes 22 data exception, 23
/// integrity constraint violation, 42 syntax error or access rule violation): a mistake in
/// the job or the table that no retry or restart fixes.
fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        ["22", "23", "42"]
            .iter()
            .any(|class| c.code().starts_with(class))
    })
}

/// Whether a connection error is about who logs in (role, password, database), which no
/// retry can fix.
fn is_login_error(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| c.code().starts_with("28") || *c == SqlState::UNDEFINED_DATABASE)
}

/// A current-thread runtime for one connector instance.
fn runtime(what: &str) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RuntimeError::external(format!("{what}: cannot start an I/O runtime: {e}")))
}

/// Quote a possibly schema-qualified name, part by part: `sales.totals` →
/// `"sales"."totals"` (names are taken as written, case-sensitive).
fn quote_name(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// Quote one identifier.
fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A connection of one connector instance that reconnects and retries with backoff.
struct Conn {
    rt: tokio::runtime::Runtime,
    config: Config,
    client: Option<Client>,
    /// Names the connector in errors and logs: "postgres sink `totals`".
    what: String,
    retry_timeout: Duration,
}

impl Conn {
    /// Connect now (retrying for the retry timeout), so that a wrong address or wrong
    /// credentials are reported at start.
    fn open(url: &str, what: String, retry_timeout: Duration) -> Result<Conn> {
        let config = parse_config(url, &what)?;
        let rt = runtime(&what)?;
        let mut conn = Conn {
            rt,
            config,
            client: None,
            what,
            retry_timeout,
        };
        conn.connect(Instant::now() + retry_timeout, None)?;
        Ok(conn)
    }

    fn target(&self) -> String {
        target(&self.config)
    }

    /// The open client, connecting first if there is none (or it broke).
    fn client(&mut self) -> Result<&mut Client> {
        self.connect(Instant::now() + self.retry_timeout, None)
    }

    /// The open client, connecting first if there is none (or it broke), retrying until
    /// `deadline`; `doing` is what the connection is for, in errors.
    fn connect(&mut self, deadline: Instant, doing: Option<&str>) -> Result<&mut Client> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            let failed = doing.map(|d| format!("{d} failed: ")).unwrap_or_default();
            let mut delay = Duration::from_millis(100);
            let mut attempt = 0u32;
            let client = loop {
                attempt += 1;
                match self.rt.block_on(self.config.connect(NoTls)) {
                    Ok((client, connection)) => {
                        let what = self.what.clone();
                        self.rt.spawn(async move {
                            if let Err(e) = connection.await {
                                tracing::debug!(connector = %what, error = %describe_error(&e), "postgres connection closed");
                            }
                        });
                        if attempt > 1 {
                            tracing::info!(connector = %self.what, server = %self.target(), "reconnected to PostgreSQL");
                        }
                        break client;
                    }
                    Err(e) if is_login_error(&e) => {
                        return Err(RuntimeError::user(format!(
                            "{}: PostgreSQL at {} refused the login: {}; check the user, password and database in the connection string",
                            self.what,
                            self.target(),
                            describe_error(&e)
                        )));
                    }
                    Err(e) if Instant::now() + delay < deadline => {
                        tracing::warn!(connector = %self.what, server = %self.target(), error = %describe_error(&e), retry_in_ms = delay.as_millis() as u64, "cannot reach PostgreSQL; retrying");
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                    Err(e) => {
                        return Err(RuntimeError::external(format!(
                            "{}: {failed}cannot reach PostgreSQL at {} within {} s: {}; check that the server runs and the connection string is right",
                            self.what,
                            self.target(),
                            self.retry_timeout.as_secs(),
                            describe_error(&e)
                        )));
                    }
                }
            };
            self.client = Some(client);
        }
        match self.client.as_mut() {
            Some(c) => Ok(c),
            None => Err(RuntimeError::internal(format!(
                "{}: no connection after connecting",
                self.what
            ))),
        }
    }

    /// Run `op` on `data` (it must be safe to repeat: a whole transaction, or a read),
    /// reconnecting and retrying with backoff while errors are transient, for at most the
    /// retry timeout. `doing` says what it was for errors ("commit checkpoint 9").
    fn run<D: ?Sized, R>(
        &mut self,
        doing: &str,
        data: &D,
        op: for<'c> fn(&'c mut Client, &'c D) -> PgFuture<'c, R>,
    ) -> Result<R> {
        let deadline = Instant::now() + self.retry_timeout;
        let mut delay = Duration::from_millis(100);
        let limit = self.retry_timeout.max(MIN_OPERATION_TIMEOUT);
        loop {
            self.connect(deadline.max(Instant::now() + delay), Some(doing))?;
            let Conn { rt, client, .. } = self;
            let Some(client) = client.as_mut() else {
                continue;
            };
            let attempt =
                rt.block_on(async { tokio::time::timeout(limit, op(client, data)).await });
            let error = match attempt {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(e)) if is_data_error(&e) => {
                    return Err(RuntimeError::user(format!(
                        "{}: {doing} failed on {}: {}; fix the job or the table (names, types, constraints, permissions): retrying will not help",
                        self.what,
                        self.target(),
                        describe_error(&e)
                    )));
                }
                Ok(Err(e)) if !is_transient(&e) => {
                    return Err(RuntimeError::external(format!(
                        "{}: {doing} failed on {}: {}",
                        self.what,
                        self.target(),
                        describe_error(&e)
                    )));
                }
                Ok(Err(e)) => describe_error(&e),
                Err(_) => format!("no answer within {} s", limit.as_secs()),
            };
            self.client = None;
            if Instant::now() + delay >= deadline {
                return Err(RuntimeError::external(format!(
                    "{}: {doing} failed on {} and kept failing for {} s: {error}; check that the server runs and is reachable",
                    self.what,
                    self.target(),
                    self.retry_timeout.as_secs(),
                )));
            }
            tracing::warn!(connector = %self.what, server = %self.target(), error = %error, retry_in_ms = delay.as_millis() as u64, "{doing} failed; reconnecting and retrying");
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}

/// A database operation borrowing a client and its input, for [`Conn::run`].
type PgFuture<'c, R> = std::pin::Pin<
    Box<dyn std::future::Future<Output = std::result::Result<R, tokio_postgres::Error>> + 'c>,
>;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::error::ErrorDomain;

    #[test]
    fn names_are_quoted_part_by_part() {
        assert_eq!(quote_name("totals"), "\"totals\"");
        assert_eq!(quote_name("s.Totals"), "\"s\".\"Totals\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn connection_strings_are_checked_and_shown_without_password() {
        let e = parse_config(" ", "postgres sink `t`").unwrap_err();
        assert_eq!(e.domain, ErrorDomain::User);
        assert!(e
            .message
            .starts_with("postgres sink `t`: the connection string is empty"));
        let e = parse_config("postgres://a:b@h:notaport/db", "x").unwrap_err();
        assert!(
            e.message.contains("cannot parse the connection string"),
            "{}",
            e.message
        );
        let c = parse_config("postgres://alice:secret@10.0.0.1:6543/shop", "x").unwrap();
        let shown = target(&c);
        assert_eq!(shown, "alice@10.0.0.1:6543/shop");
        assert!(!shown.contains("secret"));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod db_tests;

//! PostgreSQL for tests: the server's address, unique table names, a small synchronous
//! client to set tables up and read them back, and a loopback proxy that can cut the
//! connections to the server for a while.
//!
//! Tests find the server at `WEIR_TEST_PG` (a connection string; default [`DEFAULT_URL`],
//! the development and CI machines' server with trust authentication). A server that does
//! not answer fails the test; it is never skipped.

use super::unique_seed;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// Where tests look for PostgreSQL when `WEIR_TEST_PG` is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test server's connection string.
pub fn url() -> String {
    std::env::var("WEIR_TEST_PG").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// The test server's port (from [`url`]; 5432 if it names none).
pub fn port() -> u16 {
    url()
        .parse::<tokio_postgres::Config>()
        .ok()
        .and_then(|c| c.get_ports().first().copied())
        .unwrap_or(5432)
}

/// The test server's address on 127.0.0.1.
pub fn server_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port()))
}

/// A connection string for the test server's user and database, but at 127.0.0.1:`port`
/// (a proxy in front of the server) and with `user` instead if given.
pub fn url_at(port: u16, user: Option<&str>) -> String {
    let c: tokio_postgres::Config = url()
        .parse()
        .unwrap_or_else(|e| panic!("WEIR_TEST_PG is not a connection string: {e}"));
    format!(
        "postgres://{}@127.0.0.1:{port}/{}",
        user.or(c.get_user()).unwrap_or("postgres"),
        c.get_dbname().unwrap_or("test")
    )
}

/// A table name no other test (run) uses: `<label>_<random>`, lower case.
pub fn unique_table(label: &str) -> String {
    format!("{label}_{:016x}", unique_seed())
}

/// A synchronous connection for setting tables up and checking them.
pub struct Db {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Db {
    /// Connect to `url` (panics, saying how to get a server, if it cannot).
    pub fn connect(url: &str) -> Db {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start a runtime: {e}"));
        let (client, connection) = rt
            .block_on(tokio_postgres::connect(url, tokio_postgres::NoTls))
            .unwrap_or_else(|e| {
                panic!("cannot connect to PostgreSQL at {url}: {e}; start the server (.ci/run does) or set WEIR_TEST_PG")
            });
        rt.spawn(async move {
            let _ = connection.await;
        });
        Db { rt, client }
    }

    /// Connect to the test server ([`url`]).
    pub fn test() -> Db {
        Db::connect(&url())
    }

    /// Run statements (separated by `;`), panicking on an error.
    pub fn exec(&self, sql: &str) {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("`{sql}` failed: {e:?}"));
    }

    /// The rows of a query as JSON objects (column → value), in the query's order.
    pub fn rows(&self, query: &str) -> Vec<Value> {
        let sql = format!("SELECT row_to_json(q)::text FROM ({query}) AS q");
        self.rt
            .block_on(self.client.query(sql.as_str(), &[]))
            .unwrap_or_else(|e| panic!("`{sql}` failed: {e:?}"))
            .iter()
            .map(|r| {
                let text: String = r.get(0);
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad row {text}: {e}"))
            })
            .collect()
    }

    /// One number a query returns (`SELECT count(*) …`).
    pub fn count(&self, query: &str) -> i64 {
        let sql = format!("SELECT ({query})::bigint");
        self.rt
            .block_on(self.client.query_one(sql.as_str(), &[]))
            .unwrap_or_else(|e| panic!("`{sql}` failed: {e:?}"))
            .get(0)
    }

    /// Drop `table` if it exists.
    pub fn drop_table(&self, table: &str) {
        self.exec(&format!("DROP TABLE IF EXISTS \"{table}\""));
    }
}

/// A private PostgreSQL server for one test: its own data directory (under a [`TempDir`](super::TempDir)),
/// on a free port of 127.0.0.1, with password (SCRAM) authentication for one superuser.
/// Stopped (immediately) when dropped. Started as the `postgres` user through `runuser`
/// when the test runs as root, since PostgreSQL refuses to run as root.
///
/// The binaries are found in `WEIR_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`.
pub struct PrivateServer {
    dir: super::TempDir,
    bin: std::path::PathBuf,
    port: u16,
    user: String,
}

impl PrivateServer {
    /// Initialise and start a server whose superuser `user` logs in with `password`.
    pub fn with_password(user: &str, password: &str) -> PrivateServer {
        let bin = pg_bin();
        let dir = super::TempDir::new("pg-private");
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, format!("{password}\n"))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", pwfile.display()));
        let as_root = is_root();
        if as_root {
            chown_to_postgres(dir.path());
            chown_to_postgres(&pwfile);
        }
        let data = dir.join("data");
        let port = super::free_port();
        let run = |args: Vec<String>| {
            let mut cmd = if as_root {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"]);
                c
            } else {
                std::process::Command::new(bin.join(&args[0]))
            };
            if as_root {
                cmd.arg(bin.join(&args[0]));
            }
            cmd.args(&args[1..]);
            let out = super::run_with_timeout(cmd, Duration::from_secs(60));
            assert!(out.success(), "{out}");
        };
        run(vec![
            "initdb".into(),
            "-D".into(),
            data.display().to_string(),
            "-U".into(),
            user.into(),
            "--auth=scram-sha-256".into(),
            format!("--pwfile={}", pwfile.display()),
            "--no-sync".into(),
            "-E".into(),
            "UTF8".into(),
        ]);
        run(vec![
            "pg_ctl".into(),
            "-D".into(),
            data.display().to_string(),
            "-o".into(),
            format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                dir.path().display()
            ),
            "-l".into(),
            dir.join("log").display().to_string(),
            "-w".into(),
            "start".into(),
        ]);
        PrivateServer {
            dir,
            bin,
            port,
            user: user.to_string(),
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string for its database `postgres` with this password.
    pub fn url(&self, password: &str) -> String {
        format!(
            "postgres://{}:{password}@127.0.0.1:{}/postgres",
            self.user, self.port
        )
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let mut cmd = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            std::process::Command::new(self.bin.join("pg_ctl"))
        };
        cmd.arg("-D").arg(&data).args(["-m", "immediate", "stop"]);
        let _ = super::run_with_timeout(cmd, Duration::from_secs(30));
    }
}

/// Whether this process runs as root.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn chown_to_postgres(path: &std::path::Path) {
    let out = std::process::Command::new("chown")
        .arg("postgres")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run chown: {e}"));
    assert!(
        out.status.success(),
        "chown postgres {} failed",
        path.display()
    );
}

/// The directory of PostgreSQL's server binaries.
fn pg_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("WEIR_PG_BIN") {
        return p.into();
    }
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql; install the server or set WEIR_PG_BIN"))
}

//! End-to-end tests of the `pg-sales` binary against the PostgreSQL server on 127.0.0.1
//! (`WEIR_TEST_PG` overrides it): exactly-once output across SIGKILLs, a server cut off
//! mid-run, and the start-up errors for a wrong login and a missing table.

use serde_json::Value;
use std::time::{Duration, Instant};
use weir_runtime::testing::postgres::{
    port, server_addr, unique_table, url, url_at, Db, PrivateServer,
};
use weir_runtime::testing::{kill_and_wait_for_restart, JobBinary, LocalCluster, Spawned, TempDir};

fn job() -> JobBinary {
    JobBinary::new(env!("CARGO_BIN_EXE_pg-sales"))
}

/// A pair of fresh tables for one run: raw orders and window totals.
struct Tables {
    orders: String,
    totals: String,
}

impl Tables {
    fn create(db: &Db, label: &str) -> Tables {
        let t = Tables {
            orders: unique_table(&format!("{label}_orders")),
            totals: unique_table(&format!("{label}_totals")),
        };
        db.exec(&format!(
            "CREATE TABLE \"{}\" (order_id bigint, customer_id bigint, cents bigint, event_time bigint);
             CREATE TABLE \"{}\" (customer_id bigint, window_start bigint, window_end bigint, orders bigint, total_cents bigint, PRIMARY KEY (customer_id, window_start))",
            t.orders, t.totals
        ));
        t
    }

    fn args(&self, pg: &str, orders: u64, rate: u64, dir: &TempDir) -> Vec<String> {
        [
            format!("pg={pg}"),
            format!("orders={orders}"),
            format!("rate={rate}"),
            format!("orders_table={}", self.orders),
            format!("totals_table={}", self.totals),
        ]
        .into_iter()
        .flat_map(|a| ["--arg".to_string(), a])
        .chain(
            [
                "--checkpoint-interval",
                "200ms",
                "--restart-delay",
                "100ms",
                "--restart-attempts",
                "10",
                "--checkpoint-dir",
            ]
            .map(String::from),
        )
        .chain([dir.join("ck").display().to_string()])
        .collect()
    }

    /// Every raw row, sorted (a multiset: duplicates stay).
    fn orders(&self, db: &Db) -> Vec<Value> {
        db.rows(&format!(
            "SELECT order_id, customer_id, cents, event_time FROM \"{}\" ORDER BY order_id, cents",
            self.orders
        ))
    }

    fn totals(&self, db: &Db) -> Vec<Value> {
        db.rows(&format!(
            "SELECT * FROM \"{}\" ORDER BY customer_id, window_start",
            self.totals
        ))
    }

    /// Totals recomputed from the raw rows by SQL: what the window operator must have
    /// upserted if every order is in exactly once.
    fn totals_from_orders(&self, db: &Db) -> Vec<Value> {
        db.rows(&format!(
            "SELECT customer_id, event_time - mod(event_time, 300000) AS window_start, event_time - mod(event_time, 300000) + 300000 AS window_end, count(*) AS orders, sum(cents)::bigint AS total_cents FROM \"{}\" GROUP BY 1, 2, 3 ORDER BY 1, 2",
            self.orders
        ))
    }

    /// Checkpoints the raw-orders sink committed so far (rows of the progress table).
    fn committed(&self, db: &Db) -> i64 {
        db.count(&format!(
            "SELECT count(*) FROM weir_sink_progress WHERE target_table = '{}'",
            self.orders
        ))
    }

    fn drop(&self, db: &Db) {
        db.drop_table(&self.orders);
        db.drop_table(&self.totals);
        db.exec(&format!(
            "DELETE FROM weir_sink_progress WHERE target_table IN ('{}', '{}')",
            self.orders, self.totals
        ));
    }
}

/// Wait until a checkpoint's rows are committed (its progress row is there).
fn wait_for_a_committed_checkpoint(db: &Db, tables: &Tables, launcher: &mut Spawned) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tables.committed(db) == 0 {
        assert!(
            launcher.is_running(),
            "the job ended before a checkpoint was committed"
        );
        assert!(
            Instant::now() < deadline,
            "no checkpoint committed within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Check one run's tables: every order exactly once, totals as the orders give them.
fn assert_exactly_once(db: &Db, tables: &Tables, orders: u64) -> (Vec<Value>, Vec<Value>) {
    let rows = tables.orders(db);
    let ids: Vec<u64> = rows
        .iter()
        .map(|r| r["order_id"].as_u64().unwrap_or(u64::MAX))
        .collect();
    let missing = (0..orders)
        .filter(|i| ids.binary_search(i).is_err())
        .count();
    let repeated = ids.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(
        ids.len() as u64 == orders && missing == 0 && repeated == 0,
        "{} raw rows for {orders} orders: {missing} missing, {repeated} repeated",
        ids.len()
    );
    let totals = tables.totals(db);
    assert_eq!(
        totals,
        tables.totals_from_orders(db),
        "window totals do not match the orders"
    );
    (rows, totals)
}

/// Exactly-once into PostgreSQL across crashes: one node of two processes × two workers,
/// checkpoints every 200 ms, orders paced so the run lasts several seconds. After the first
/// committed checkpoint a random process is killed with SIGKILL at a random moment, four
/// times; the launcher restarts both from the last complete checkpoint each time. The raw
/// table (inserts) and the totals table (upserts) end up equal to an uninterrupted run's:
/// no order lost or repeated, every window total right.
#[test]
fn random_kills_leave_the_tables_as_an_uninterrupted_run_does() {
    const ORDERS: u64 = 60_000;
    let db = Db::test();
    let dir = TempDir::new("pg-sales-kill");
    let calm = Tables::create(&db, "calm");
    let cluster = LocalCluster::new(dir.path(), 1, 2);
    let calm_dir = TempDir::new("pg-sales-calm");
    let out = job()
        .spawn_node(&cluster, 0, 2, &calm.args(&url(), ORDERS, 0, &calm_dir))
        .wait(Duration::from_secs(120));
    out.assert_success();
    let (calm_orders, calm_totals) = assert_exactly_once(&db, &calm, ORDERS);
    assert!(calm_totals.len() > 100, "{} totals", calm_totals.len());

    let killed = Tables::create(&db, "killed");
    let mut launcher = job().spawn_node(&cluster, 0, 2, &killed.args(&url(), ORDERS, 8_000, &dir));
    wait_for_a_committed_checkpoint(&db, &killed, &mut launcher);
    let mut rng: u64 = 0x5eed_0000_0000_0001 ^ u64::from(std::process::id());
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for kill in 0..4 {
        std::thread::sleep(Duration::from_millis(100 + next(700)));
        assert!(
            launcher.is_running(),
            "the job finished after {kill} kills; make it longer"
        );
        kill_and_wait_for_restart(launcher.pid(), 2, next(2) as usize);
    }
    let out = launcher.wait(Duration::from_secs(180));
    out.assert_success();
    assert!(
        out.stderr
            .matches("restarting the processes of node 0")
            .count()
            >= 4,
        "{out}"
    );
    let (orders, totals) = assert_exactly_once(&db, &killed, ORDERS);
    assert!(
        orders == calm_orders,
        "the raw rows differ from the uninterrupted run's"
    );
    assert!(
        totals == calm_totals,
        "the totals differ from the uninterrupted run's"
    );
    calm.drop(&db);
    killed.drop(&db);
}

/// The server cut off mid-run (through a loopback proxy that drops every connection and
/// refuses new ones for 3 s): the sinks retry with backoff, reconnect, and the job finishes
/// with every order exactly once.
#[test]
fn a_server_cut_off_for_seconds_mid_run_is_survived_exactly_once() {
    const ORDERS: u64 = 30_000;
    let db = Db::test();
    let dir = TempDir::new("pg-sales-cut");
    let tables = Tables::create(&db, "cut");
    let proxy = weir_runtime::testing::proxy::Proxy::start(server_addr());
    let config = url_at(proxy.port(), None);
    let cluster = LocalCluster::new(dir.path(), 1, 2);
    let mut launcher = job().spawn_node(&cluster, 0, 2, &tables.args(&config, ORDERS, 6_000, &dir));
    wait_for_a_committed_checkpoint(&db, &tables, &mut launcher);
    proxy.cut();
    std::thread::sleep(Duration::from_secs(3));
    proxy.restore();
    let out = launcher.wait(Duration::from_secs(180));
    out.assert_success();
    assert!(
        out.stderr.contains("retrying"),
        "the outage was not noticed:\n{out}"
    );
    assert_exactly_once(&db, &tables, ORDERS);
    tables.drop(&db);
}

/// The one error line a failed run ends with (exit code 1: every error a worker meets while
/// opening its operators; the log lines before it are the workers' reports).
fn final_error(out: &weir_runtime::testing::Output) -> String {
    assert_eq!(out.code(), Some(1), "{out}");
    let errors: Vec<&str> = out
        .stderr_lines()
        .into_iter()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line:\n{out}");
    assert_eq!(out.stderr_lines().last(), errors.first(), "{out}");
    errors[0].to_string()
}

/// A login the server refuses is one error line at start, naming the sink and what
/// to check — no retries, no restarts. (The shared server trusts local logins, so the
/// refusal is for a role that does not exist; a wrong password gives the same message
/// through the same code path, PostgreSQL's SQLSTATE class 28.)
#[test]
fn a_refused_login_is_one_clear_error_at_start() {
    let db = Db::test();
    let dir = TempDir::new("pg-sales-login");
    let tables = Tables::create(&db, "login");
    let bad = url_at(port(), Some(&format!("{}:secret", unique_table("nobody"))));
    let out = job().run(
        ["run", "--workers", "2"]
            .into_iter()
            .map(String::from)
            .chain(tables.args(&bad, 10, 0, &dir).into_iter().take(10)),
    );
    let line = final_error(&out);
    assert!(
        line.contains("postgres sink `")
            && line.contains("refused the login")
            && line.contains("check the user, password and database in the connection string")
            && !line.contains("secret"),
        "{out}"
    );
    tables.drop(&db);
}

/// Wrong credentials against a private server with password authentication (initdb on a
/// free port): one error line at start saying the password was refused; the right
/// password gets past the login (and then finds no tables in that fresh server).
#[test]
fn a_wrong_password_is_one_clear_error_at_start() {
    let server = PrivateServer::with_password("weir", "right-password");
    let dir = TempDir::new("pg-sales-password");
    let tables = Tables {
        orders: "orders".into(),
        totals: "totals".into(),
    };
    let run = |pg: &str| {
        job().run(
            ["run", "--workers", "2"]
                .into_iter()
                .map(String::from)
                .chain(tables.args(pg, 10, 0, &dir).into_iter().take(10)),
        )
    };
    let out = run(&server.url("wrong-password"));
    let line = final_error(&out);
    assert!(
        line.contains("postgres sink `")
            && line.contains(&format!(
                "PostgreSQL at weir@127.0.0.1:{}/postgres refused the login",
                server.port()
            ))
            && line.contains("password authentication failed")
            && line.contains("check the user, password and database in the connection string")
            && !line.contains("wrong-password"),
        "{out}"
    );
    let out = run(&server.url("right-password"));
    let line = final_error(&out);
    assert!(
        line.contains("table `") && line.contains("does not exist"),
        "{out}"
    );
}

/// A table that does not exist is one line at start, naming it.
#[test]
fn a_missing_table_is_one_clear_error_at_start() {
    let db = Db::test();
    let dir = TempDir::new("pg-sales-missing");
    let tables = Tables::create(&db, "present");
    let missing = unique_table("absent");
    let mut args = tables.args(&url(), 10, 0, &dir);
    let at = args
        .iter()
        .position(|a| a.starts_with("totals_table="))
        .unwrap_or(0);
    args[at] = format!("totals_table={missing}");
    let out = job().run(
        ["run", "--workers", "2"]
            .into_iter()
            .map(String::from)
            .chain(args.into_iter().take(10)),
    );
    let line = final_error(&out);
    assert!(
        line.contains("postgres sink `totals`")
            && line.contains(&format!("table `{missing}` does not exist"))
            && line.contains("create it before starting the job"),
        "{out}"
    );
    tables.drop(&db);
}

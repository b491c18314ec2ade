//! Orders into PostgreSQL. A deterministic generator makes orders (customer, amount, event
//! time up to 10 s out of order); every order is inserted as a raw row into one table, and
//! the orders are summed per customer per 5-minute window of event time, upserted into a
//! second table on `(customer_id, window_start)`.
//!
//! With checkpoints (`run --checkpoint-interval 1s`) both sinks are exactly-once: rows are
//! committed together with the checkpoint id after the checkpoint completes, so a crash and
//! restart neither loses nor repeats an order or a total. The tables must exist:
//!
//! ```text
//! psql "$PG_URL" -c 'CREATE TABLE pg_sales_orders (order_id bigint, customer_id bigint,
//!     cents bigint, event_time bigint)'
//! psql "$PG_URL" -c 'CREATE TABLE pg_sales_totals (customer_id bigint, window_start bigint,
//!     window_end bigint, orders bigint, total_cents bigint, PRIMARY KEY (customer_id, window_start))'
//! PG_URL=postgres://postgres@127.0.0.1:5432/test cargo run --release -p pg-sales -- run \
//!     --workers 4 --checkpoint-interval 1s --arg orders=100000
//! ```
//!
//! Arguments: `pg` (connection string; default: the environment's `PG_URL`), `orders`
//! (how many, default 100,000), `rate` (orders per second, default unpaced), `orders_table`
//! and `totals_table` (default `pg_sales_orders` / `pg_sales_totals`).

use weir::prelude::*;

/// An order.
#[weir::record]
pub struct Order {
    /// Order id (`0..orders`).
    pub order_id: u64,
    /// Who ordered.
    pub customer_id: u64,
    /// Amount in cents.
    pub cents: i64,
    /// When it was placed (ms since the Unix epoch): the event time.
    pub event_time: i64,
}

/// What one customer bought in one window.
#[weir::record]
pub struct WindowTotal {
    /// The customer.
    pub customer_id: u64,
    /// First millisecond of the window.
    pub window_start: i64,
    /// First millisecond after the window.
    pub window_end: i64,
    /// Orders in the window.
    pub orders: u64,
    /// Their total, in cents.
    pub total_cents: i64,
}

/// Number of customers.
pub const CUSTOMERS: u64 = 40;

/// Window length in minutes.
const WINDOW_MINUTES: u64 = 5;

/// Window length in milliseconds.
pub const WINDOW_MS: i64 = WINDOW_MINUTES as i64 * 60_000;

/// Order `i`: one every 20 ms of event time, up to 10 s late.
pub fn order(i: u64) -> Order {
    let mixed = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 17;
    Order {
        order_id: i,
        customer_id: mixed % CUSTOMERS,
        cents: (mixed % 10_000) as i64 + 1,
        event_time: 1_700_000_000_000 + i as i64 * 20 - (mixed % 10_000) as i64,
    }
}

/// The window `[start, start + 5 min)` holding `t`.
pub fn window_start(t: i64) -> i64 {
    t - t.rem_euclid(WINDOW_MS)
}

/// Counts and sums one customer's orders in one window.
pub struct TotalPerWindow;

impl Aggregator<Order> for TotalPerWindow {
    type Acc = WindowTotal;
    type Out = WindowTotal;

    fn create_accumulator(&self) -> WindowTotal {
        WindowTotal {
            customer_id: 0,
            window_start: 0,
            window_end: 0,
            orders: 0,
            total_cents: 0,
        }
    }

    fn add(&self, acc: WindowTotal, o: Order) -> WindowTotal {
        let start = window_start(o.event_time);
        WindowTotal {
            customer_id: o.customer_id,
            window_start: start,
            window_end: start + WINDOW_MS,
            orders: acc.orders + 1,
            total_cents: acc.total_cents + o.cents,
        }
    }

    fn merge(&self, a: WindowTotal, b: WindowTotal) -> WindowTotal {
        let named = if a.orders > 0 { &a } else { &b };
        WindowTotal {
            orders: a.orders + b.orders,
            total_cents: a.total_cents + b.total_cents,
            ..named.clone()
        }
    }

    fn result(&self, acc: WindowTotal) -> WindowTotal {
        acc
    }
}

#[weir::job(name = "pg-sales", parallelism = 2)]
fn pipeline(env: &mut Env) {
    // `--arg pg=…`, else the environment's PG_URL (an empty one is an error at start
    // naming the sink).
    let pg = env.arg_or("pg", std::env::var("PG_URL").unwrap_or_default());
    let count: u64 = env.arg_or("orders", "100000").parse().unwrap_or(100_000);
    let rate: f64 = env.arg_or("rate", "0").parse().unwrap_or(0.0);
    let generator = if rate > 0.0 {
        Generator::bounded(count, order).rate(rate)
    } else {
        Generator::bounded(count, order)
    };
    let orders = env
        .source(generator)
        .name("orders")
        .watermarks(BoundedOutOfOrderness::seconds(30), |o| o.event_time)
        .name("order-time");
    orders
        .sink(PostgresSink::insert::<Order>(
            pg.clone(),
            env.arg_or("orders_table", "pg_sales_orders"),
        ))
        .name("raw-orders");
    orders
        .key_by(|o| o.customer_id)
        .window(Tumbling::minutes(WINDOW_MINUTES))
        .aggregate(TotalPerWindow)
        .name("customer-totals")
        .sink(PostgresSink::upsert::<WindowTotal>(
            pg.clone(),
            env.arg_or("totals_table", "pg_sales_totals"),
        ))
        .name("totals");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_at_most_10_s_late_and_windows_align() {
        let mut newest = order(0).event_time;
        for i in 0..10_000 {
            let o = order(i);
            assert!(o.event_time > newest - 10_000);
            newest = newest.max(o.event_time);
            assert!(o.customer_id < CUSTOMERS && o.cents > 0);
        }
        assert_eq!(window_start(WINDOW_MS + 5), WINDOW_MS);
        assert_eq!(window_start(-1), -WINDOW_MS);
    }
}

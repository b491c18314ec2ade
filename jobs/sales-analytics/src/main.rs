//! Sales analytics: orders as JSON lines in; large orders kept, converted to cents and
//! summed per customer; a running total per customer out.
//!
//! Layout (job default parallelism 4): source, filter and map chain into 4 instances, the
//! keyed aggregation runs 8 instances, the sink 2 — 14 tasks in 8 slots. See
//! `sales-analytics explain --nodes 2 --procs-per-node 1 --workers 4`.

use weir::prelude::*;

/// An order as it arrives.
#[weir::record]
pub struct Order {
    /// Order id.
    pub order_id: u64,
    /// Who ordered.
    pub customer_id: u64,
    /// Amount in currency units.
    pub amount: f64,
    /// Product category.
    pub category: String,
    /// When it was placed (milliseconds since the Unix epoch).
    pub event_time: i64,
}

/// The running total of one customer.
#[weir::record]
pub struct CustomerTotal {
    /// The customer.
    pub customer_id: u64,
    /// Number of large orders so far.
    pub orders: u64,
    /// Their total, in cents (integers, so totals do not depend on arrival order).
    pub total_cents: i64,
}

/// Orders above this amount count.
const MIN_AMOUNT: f64 = 100.0;

fn to_total(o: Order) -> CustomerTotal {
    CustomerTotal { customer_id: o.customer_id, orders: 1, total_cents: (o.amount * 100.0).round() as i64 }
}

#[weir::job(name = "sales-analytics", parallelism = 4)]
fn pipeline(env: &mut Env) {
    env.source(FileSource::json_lines::<Order>(env.arg("input")))
        .name("orders")
        .filter(|o| o.amount > MIN_AMOUNT)
        .name("large-orders")
        .map(to_total)
        .name("to-cents")
        .key_by(|t| t.customer_id)
        .reduce(|a, b| CustomerTotal { customer_id: a.customer_id, orders: a.orders + b.orders, total_cents: a.total_cents + b.total_cents })
        .name("customer-totals")
        .parallelism(8)
        .sink(FileSink::json_lines(env.arg("output")))
        .name("totals")
        .parallelism(2);
}

//! Sales analytics: orders as JSON lines in; large orders kept, converted to cents and
//! summed per customer per 5-minute window of *event time* (when the order was placed, not
//! when it is read); one record per customer and window out:
//! `{"customer_id", "window_start", "window_end", "orders", "total_cents"}`.
//!
//! Event time: orders arrive up to 30 s out of order, so watermarks trail the largest event
//! time seen by 30 s (bounded out-of-orderness), generated per source instance right after
//! the source. A window `[start, end)` fires once the watermark reaches `end − 1`; an order
//! that still arrives within 1 minute after that (the allowed lateness) updates its window,
//! which fires again with the new total; a later one is dropped and counted in the log. At
//! the end of the input the final watermark fires every remaining window.
//!
//! Layout (job default parallelism 4): source, watermarks, filter and map chain into 4
//! instances, the keyed window runs 8 instances, the sink 2 — 14 tasks in 8 slots. See
//! `sales-analytics explain --nodes 2 --procs-per-node 1 --workers 4`.
//!
//! ```text
//! cargo run --release -p sales-analytics -- run --workers 8 \
//!     --arg input=jobs/sales-analytics/data/orders.jsonl --arg output=out/sales
//! ```

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
    /// When it was placed (milliseconds since the Unix epoch): the event time.
    pub event_time: i64,
}

/// A large order, in cents (integers, so totals do not depend on arrival order).
#[weir::record]
pub struct Sale {
    /// Who ordered.
    pub customer_id: u64,
    /// The amount in cents.
    pub cents: i64,
    /// When it was placed (ms since the Unix epoch).
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
    /// Number of large orders in the window.
    pub orders: u64,
    /// Their total, in cents.
    pub total_cents: i64,
}

/// Orders above this amount count.
const MIN_AMOUNT: f64 = 100.0;

/// Window length in minutes.
const WINDOW_MINUTES: u64 = 5;

/// Window length in milliseconds.
const WINDOW_MS: i64 = WINDOW_MINUTES as i64 * 60_000;

fn to_sale(o: Order) -> Sale {
    Sale {
        customer_id: o.customer_id,
        cents: (o.amount * 100.0).round() as i64,
        event_time: o.event_time,
    }
}

/// Counts and sums a customer's sales in one window, incrementally (one accumulator per
/// customer and window, not a list of its sales).
///
/// An `Aggregator`'s result does not see the window, so the accumulator derives it from its
/// sales' event times: every sale of a tumbling window starts the same window
/// (`t − t mod 5 min`, aligned to the epoch as the window assigner aligns it).
pub struct TotalPerWindow;

impl Aggregator<Sale> for TotalPerWindow {
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

    fn add(&self, acc: WindowTotal, sale: Sale) -> WindowTotal {
        let window_start = sale.event_time - sale.event_time.rem_euclid(WINDOW_MS);
        WindowTotal {
            customer_id: sale.customer_id,
            window_start,
            window_end: window_start + WINDOW_MS,
            orders: acc.orders + 1,
            total_cents: acc.total_cents + sale.cents,
        }
    }

    fn merge(&self, a: WindowTotal, b: WindowTotal) -> WindowTotal {
        // An empty accumulator knows no customer or window yet.
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

#[weir::job(name = "sales-analytics", parallelism = 4)]
fn pipeline(env: &mut Env) {
    env.source(FileSource::json_lines::<Order>(env.arg("input")))
        .name("orders")
        .watermarks(BoundedOutOfOrderness::seconds(30), |o| o.event_time)
        .name("order-time")
        .filter(|o| o.amount > MIN_AMOUNT)
        .name("large-orders")
        .map(to_sale)
        .name("to-cents")
        .key_by(|s| s.customer_id)
        .window(Tumbling::minutes(WINDOW_MINUTES))
        .allowed_lateness(Duration::from_secs(60))
        .aggregate(TotalPerWindow)
        .name("customer-totals")
        .parallelism(8)
        .sink(FileSink::json_lines(env.arg("output")))
        .name("totals")
        .parallelism(2);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale(customer_id: u64, cents: i64, event_time: i64) -> Sale {
        Sale {
            customer_id,
            cents,
            event_time,
        }
    }

    #[test]
    fn aggregator_counts_sums_and_names_the_window() {
        let a = TotalPerWindow;
        let acc = a.add(
            a.add(a.create_accumulator(), sale(7, 150, 600_001)),
            sale(7, 250, 899_999),
        );
        let other = a.add(a.create_accumulator(), sale(7, 1, 600_000));
        let all = a.result(a.merge(a.create_accumulator(), a.merge(acc, other)));
        assert_eq!(
            (
                all.customer_id,
                all.window_start,
                all.window_end,
                all.orders,
                all.total_cents
            ),
            (7, 600_000, 900_000, 3, 401)
        );
    }

    #[test]
    fn windows_align_to_the_epoch_also_before_it() {
        let a = TotalPerWindow;
        let w = a.result(a.add(a.create_accumulator(), sale(1, 1, -1)));
        assert_eq!((w.window_start, w.window_end), (-WINDOW_MS, 0));
    }
}

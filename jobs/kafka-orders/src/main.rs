//! Orders from Kafka to Kafka. Orders arrive as JSON in a topic of several partitions; each
//! valid order with a positive amount becomes a sale with tax, written to a second topic
//! keyed by customer (so one customer's sales stay in order in one partition), and every
//! customer's sales are summed per minute of *event time* into a third topic.
//!
//! Event time comes from the order; watermarks trail the largest time seen by 5 s and are
//! kept per Kafka partition (the assigner chains to the source), so a partition read ahead
//! of another never makes the other's orders late; a partition without orders for 10 s
//! stops holding event time back. Malformed messages are skipped and counted, or written to
//! `--arg dead_letter=DIR` with their partition and offset.
//!
//! Brokers and topics are job arguments (`--arg brokers=host:port,…`, or the environment
//! variable `KAFKA_BROKERS`); with `--arg bounded=true` the job reads each partition up to its end at start and stops (a batch
//! run), otherwise it keeps reading.
//!
//! ```text
//! cargo run --release -p kafka-orders -- run --workers 4 --arg brokers=127.0.0.1:19092 \
//!     --arg orders=orders --arg sales=sales --arg totals=totals
//! ```

use weir::prelude::*;

/// An order as it arrives.
#[weir::record]
pub struct Order {
    /// Order id.
    pub order_id: u64,
    /// Who ordered.
    pub customer: String,
    /// Amount in cents (refunds are negative).
    pub amount_cents: i64,
    /// When it was placed (milliseconds since the Unix epoch): the event time.
    pub event_time: i64,
}

/// A sale: an order with a positive amount, with tax.
#[weir::record]
pub struct Sale {
    /// Order id.
    pub order_id: u64,
    /// Who bought.
    pub customer: String,
    /// Amount in cents.
    pub amount_cents: i64,
    /// Amount with 20 % tax, in cents (rounded down).
    pub with_tax_cents: i64,
}

/// One customer's sales in one minute of event time.
#[weir::record]
pub struct MinuteTotal {
    /// Who bought.
    pub customer: String,
    /// First millisecond of the minute.
    pub minute: i64,
    /// Number of sales.
    pub sales: u64,
    /// Their amounts, in cents.
    pub cents: i64,
}

/// The sale for an order.
pub fn to_sale(o: &Order) -> Sale {
    Sale {
        order_id: o.order_id,
        customer: o.customer.clone(),
        amount_cents: o.amount_cents,
        with_tax_cents: o.amount_cents * 6 / 5,
    }
}

/// The first millisecond of the minute holding `t`.
pub fn minute_of(t: i64) -> i64 {
    t - t.rem_euclid(60_000)
}

/// Skip bad messages, or write them to `dir` when it is given.
fn bad_records(dir: String) -> BadRecordPolicy {
    if dir.is_empty() {
        BadRecordPolicy::Skip
    } else {
        BadRecordPolicy::DeadLetter(dir.into())
    }
}

#[weir::job(name = "kafka-orders")]
fn pipeline(env: &mut Env) {
    // `--arg brokers=…`, else the environment's KAFKA_BROKERS (an empty list is an error at
    // start naming the operator).
    let brokers = env.arg_or(
        "brokers",
        std::env::var("KAFKA_BROKERS").unwrap_or_default(),
    );
    let bounded = env.arg_or("bounded", "false") == "true";
    let sales = env
        .source(
            KafkaSource::json::<Order>(brokers.clone(), env.arg("orders"))
                .start(StartFrom::Earliest)
                .bounded_if(bounded)
                .on_bad_record(bad_records(env.arg_or("dead_letter", ""))),
        )
        .name("orders")
        .watermarks(
            BoundedOutOfOrderness::seconds(5).with_idleness(Duration::from_secs(10)),
            |o| o.event_time,
        )
        .filter(|o| o.amount_cents > 0)
        .name("positive");
    sales
        .map(|o| to_sale(&o))
        .name("with-tax")
        .sink(
            KafkaSink::json::<Sale>(brokers.clone(), env.arg("sales"))
                .key_by(|s| s.customer.clone()),
        )
        .name("sales");
    sales
        .map(|o| MinuteTotal {
            customer: o.customer,
            minute: minute_of(o.event_time),
            sales: 1,
            cents: o.amount_cents,
        })
        .name("to-total")
        .key_by(|t| t.customer.clone())
        .window(Tumbling::minutes(1))
        .reduce(|a, b| MinuteTotal {
            customer: a.customer,
            minute: a.minute,
            sales: a.sales + b.sales,
            cents: a.cents + b.cents,
        })
        .name("per-minute")
        .sink(
            KafkaSink::json::<MinuteTotal>(brokers.clone(), env.arg("totals"))
                .key_by(|t| t.customer.clone()),
        )
        .name("totals");
}

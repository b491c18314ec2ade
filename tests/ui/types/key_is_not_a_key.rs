use weir::prelude::*;

#[weir::record]
struct Order {
    customer_id: u64,
    amount: f64,
}

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| Order { customer_id: i % 3, amount: i as f64 }))
        .key_by(|o| o.amount)
        .reduce(|a, b| Order { customer_id: a.customer_id, amount: a.amount + b.amount })
        .sink(DiscardSink::new());
}

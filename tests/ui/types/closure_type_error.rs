use weir::prelude::*;

#[weir::record]
struct Order {
    customer_id: u64,
    amount: f64,
}

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| Order { customer_id: i % 3, amount: i as f64 }))
        .filter(|o| o.amount > "100")
        .sink(DiscardSink::new());
}

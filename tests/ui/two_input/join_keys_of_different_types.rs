use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    let orders = env.source(Generator::bounded(10, |i| (i, i * 2))).watermarks(Monotonous::new(), |r| r.1 as i64).key_by(|r| r.0);
    let users = env.source(Generator::bounded(10, |i| (format!("user-{i}"), i))).watermarks(Monotonous::new(), |r| r.1 as i64).key_by(|r| r.0.clone());
    orders.join(users).window(Tumbling::seconds(10)).apply(|o, u| (o.0, u.1)).sink(DiscardSink::new());
}

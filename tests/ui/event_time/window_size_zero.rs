use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| (i % 3, i as i64)))
        .watermarks(BoundedOutOfOrderness::seconds(1), |r| r.1)
        .key_by(|r| r.0)
        .window(Session::with_gap(Duration::from_secs(0)))
        .reduce(|a, b| (a.0, a.1 + b.1))
        .sink(DiscardSink::new());
}

use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| (i % 3, i as i64)))
        .watermarks(Monotonous::new(), |r| r.1)
        .key_by(|r| r.0)
        .allowed_lateness(Duration::from_secs(60))
        .reduce(|a, b| (a.0, a.1 + b.1))
        .sink(DiscardSink::new());
}

use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| (i % 3, i)))
        .key_by(|r| r.0)
        .window(TumblingProcessingTime::seconds(10))
        .allowed_lateness(Duration::from_secs(60))
        .reduce(|a, b| (a.0, a.1 + b.1))
        .sink(DiscardSink::new());
}

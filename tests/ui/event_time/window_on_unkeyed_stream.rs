use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| i as i64))
        .watermarks(Monotonous::new(), |r| *r)
        .window(Tumbling::seconds(10))
        .reduce(|a, b| a + b)
        .sink(DiscardSink::new());
}

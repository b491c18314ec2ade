use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| (i % 3, i)))
        .key_by(|(k, _)| *k)
        .parallelism(2)
        .reduce(|(k, a), (_, b)| (k, a + b))
        .sink(DiscardSink::new());
}

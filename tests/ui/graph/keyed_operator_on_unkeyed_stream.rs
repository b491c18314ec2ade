use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| i))
        .reduce(|a, b| a + b)
        .sink(DiscardSink::new());
}

use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| i))
        .map(|x| x + 1)
        .parallelism(0)
        .sink(DiscardSink::new());
}

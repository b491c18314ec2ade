use weir::prelude::*;

#[weir::job(max_parallelism = 16)]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| i))
        .map(|x| x + 1)
        .parallelism(32)
        .sink(DiscardSink::new());
}

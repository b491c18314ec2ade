use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| i))
        .sink(DiscardSink::new())
        .map(|x| x + 1);
}

use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| i))
        .fliter(|x| x % 2 == 0)
        .sink(DiscardSink::new());
}

use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| i))
        .name("numbers")
        .map(|x| x + 1)
        .name("numbers")
        .sink(DiscardSink::new());
}

use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| i))
        .map(|x| x + 1)
        .disable_chaining()
        .start_new_chain()
        .sink(DiscardSink::new());
}

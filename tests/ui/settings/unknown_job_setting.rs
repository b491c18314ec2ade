use weir::prelude::*;

#[weir::job(max_paralelism = 64)]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| i)).sink(DiscardSink::new());
}

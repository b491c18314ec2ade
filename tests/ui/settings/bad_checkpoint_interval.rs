use weir::prelude::*;

#[weir::job(checkpoint_interval = "10 seconds")]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| i)).sink(DiscardSink::new());
}

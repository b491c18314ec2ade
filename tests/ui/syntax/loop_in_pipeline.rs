use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    for width in 1..3 {
        env.source(Generator::bounded(10, |i| i)).sink(DiscardSink::new());
    }
}

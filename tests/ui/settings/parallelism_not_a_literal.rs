use weir::prelude::*;

const WIDTH: u32 = 4;

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| i))
        .parallelism(WIDTH)
        .sink(DiscardSink::new());
}

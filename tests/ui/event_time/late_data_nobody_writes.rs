use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    let doubled = env.source(Generator::bounded(10, |i| i)).map(|x| x * 2);
    doubled.sink(DiscardSink::new());
    doubled.late_data().sink(DiscardSink::new());
}

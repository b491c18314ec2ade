use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    let numbers = env.source(Generator::bounded(10, |i| i));
    let doubled = numbers.map(|x| x * 2);
    numbers.sink(DiscardSink::new());
}

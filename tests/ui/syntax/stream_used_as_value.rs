use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    let numbers = env.source(Generator::bounded(10, |i| i));
    let copy = std::convert::identity(numbers);
    numbers.sink(DiscardSink::new());
}

use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    let numbers = env.source(Generator::bounded(10, |i| i));
    numbers.map(|x| x * 2).sink(DiscardSink::new());
    numbers.filter(|x| x % 2 == 0);
}

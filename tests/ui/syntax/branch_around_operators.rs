use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    let numbers = env.source(Generator::bounded(10, |i| i));
    if env.arg_or("double", "no") == "yes" {
        numbers.map(|x| x * 2).sink(DiscardSink::new());
    }
}

use weir::prelude::*;

const ODD: OutputTag<u64> = OutputTag::new("odd");

#[weir::job]
fn pipeline(env: &mut Env) {
    let numbers = env.source(Generator::bounded(10, |i| i)).map(|x| x + 1);
    numbers.sink(DiscardSink::new());
    numbers.side_output(ODD).sink(DiscardSink::new());
}

use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| i))
        .map(|x| x + 1)
        .slot_sharing_group("heavy")
        .chain_with_previous()
        .sink(DiscardSink::new());
}

use weir::prelude::*;

// Not serializable: process-function state goes into checkpoints, so this cannot be state.
#[derive(Clone)]
struct Seen {
    count: u64,
}

struct Count {
    seen: ValueState<Seen>,
}

impl KeyedProcessFunction<u64, u64, ProcessingTimeOnly> for Count {
    type Out = u64;
    fn process_element(&mut self, r: u64, ctx: &mut Context<'_, u64, u64, ProcessingTimeOnly>) {
        let count = ctx.value(&self.seen).map_or(0, |s| s.count) + 1;
        ctx.update(&self.seen, Seen { count });
        ctx.emit(r + count);
    }
}

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| i))
        .key_by(|r| *r)
        .process(Count { seen: ValueState::new("seen") })
        .sink(DiscardSink::new());
}

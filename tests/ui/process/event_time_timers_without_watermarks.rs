use weir::prelude::*;

struct Expire;

impl KeyedProcessFunction<u64, u64> for Expire {
    type Out = u64;
    fn process_element(&mut self, r: u64, ctx: &mut Context<'_, u64, u64>) {
        ctx.register_event_time_timer(1_000);
        ctx.emit(r);
    }
}

#[weir::job]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(10, |i| i))
        .key_by(|r| *r)
        .process(Expire)
        .sink(DiscardSink::new());
}

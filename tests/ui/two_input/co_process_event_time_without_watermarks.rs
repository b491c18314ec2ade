use weir::prelude::*;

struct Expire;

impl KeyedCoProcessFunction<u64, u64, u64> for Expire {
    type Out = u64;
    fn process_element1(&mut self, r: u64, ctx: &mut Context<'_, u64, u64>) {
        ctx.register_event_time_timer(10);
        ctx.emit(r);
    }
    fn process_element2(&mut self, r: u64, ctx: &mut Context<'_, u64, u64>) {
        ctx.emit(r);
    }
}

#[weir::job]
fn pipeline(env: &mut Env) {
    let a = env.source(Generator::bounded(10, |i| i)).key_by(|r| *r);
    let b = env.source(Generator::bounded(10, |i| i)).key_by(|r| *r);
    a.connect(b).process(Expire).sink(DiscardSink::new());
}

use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    let numbers = env.source(Generator::bounded(10, |i| i));
    let _copy = numbers.map(|x| x + 1);
}

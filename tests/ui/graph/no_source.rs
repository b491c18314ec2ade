use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    let _limit = env.arg_or("limit", 10);
}

use weir::prelude::*;

#[weir::job]
fn pipeline(env: &mut Env) {
    let key = "output";
    env.source(Generator::bounded(10, |i| i)).sink(FileSink::json_lines(env.arg(key)));
}

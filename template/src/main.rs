//! A weir job. Build: `cargo build --release`; the static binary is
//! `target/x86_64-unknown-linux-gnu/release/my-job`.

use weir::prelude::*;

/// A record: `#[weir::record]` derives what weir needs to move it between processes.
#[weir::record]
struct Reading {
    sensor: u32,
    value: i64,
}

#[weir::job(name = "my-job")]
fn pipeline(env: &mut Env) {
    env.source(Generator::bounded(1_000, |i| Reading { sensor: (i % 10) as u32, value: i as i64 }))
        .name("readings")
        .key_by(|r| r.sensor)
        .reduce(|a, b| Reading { sensor: a.sensor, value: a.value.max(b.value) })
        .name("max-per-sensor")
        .sink(FileSink::json_lines(env.arg_or("output", "out")))
        .name("maxima");
}

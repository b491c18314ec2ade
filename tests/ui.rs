//! Compile-fail cases: one mistake a user can make per file, each with the exact message
//! and the user's line it points at (`.stderr` next to it). Regenerate with
//! `TRYBUILD=overwrite cargo test --test ui` after changing a message.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
}

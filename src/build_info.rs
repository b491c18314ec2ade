//! Facts about this build of weir, shown by every job binary's `--version`.

/// `"true"` → true, anything else → false, at compile time.
const fn is_true(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 4 && b[0] == b't' && b[1] == b'r' && b[2] == b'u' && b[3] == b'e'
}

/// The weir version, git commit, target triple and linking of this build (set by
/// `build.rs`); the generated `main` of every job passes it to the runtime's CLI.
pub const BUILD_INFO: weir_runtime::cli::BuildInfo = weir_runtime::cli::BuildInfo {
    weir_version: env!("CARGO_PKG_VERSION"),
    weir_commit: env!("WEIR_GIT_COMMIT"),
    target: env!("WEIR_TARGET"),
    static_binary: is_true(env!("WEIR_STATIC")),
};

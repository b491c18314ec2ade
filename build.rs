//! Build facts for `weir::BUILD_INFO`: git commit, target triple, static linking.

use std::path::Path;
use std::process::Command;

/// `git <args>` in `dir`, trimmed stdout, or `None` if git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let dir = Path::new(&dir);
    // Only our own checkout: a weir vendored into another repository is "unknown".
    let commit = if dir.join(".git").exists() {
        git(dir, &["rev-parse", "--short", "HEAD"])
    } else {
        None
    };
    if commit.is_some() {
        // Rebuild when HEAD moves: HEAD itself (checkout) and the branch it points to (commit).
        let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
        watch.extend(git(dir, &["symbolic-ref", "-q", "HEAD"]));
        for f in watch {
            if let Some(p) = git(
                dir,
                &["rev-parse", "--path-format=absolute", "--git-path", &f],
            ) {
                if Path::new(&p).exists() {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
        }
    }
    println!(
        "cargo:rustc-env=WEIR_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!(
        "cargo:rustc-env=WEIR_TARGET={}",
        std::env::var("TARGET").unwrap_or_else(|_| "unknown".into())
    );
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    println!(
        "cargo:rustc-env=WEIR_STATIC={}",
        features.split(',').any(|f| f == "crt-static")
    );
}

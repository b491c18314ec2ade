//! The job template builds, outside this workspace, into a static binary that runs:
//! what a user does with their own job crate.

use std::path::{Path, PathBuf};
use std::process::Command;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn job_template_builds_a_static_binary_outside_the_workspace() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = std::env::temp_dir().join(format!("weir-template-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let job = work.join("my-job");
    copy_dir(&repo.join("template"), &job);
    // Point the template at this checkout, and start from this workspace's lock file so the
    // build reuses the same dependency versions.
    let manifest = std::fs::read_to_string(job.join("Cargo.toml")).unwrap();
    let manifest = manifest.replace(
        "weir = { path = \"../\" }",
        &format!("weir = {{ path = {:?} }}", repo.display().to_string()),
    );
    std::fs::write(job.join("Cargo.toml"), manifest).unwrap();
    std::fs::copy(repo.join("Cargo.lock"), job.join("Cargo.lock")).unwrap();

    // A target directory of its own (cargo locks a target directory per build), kept next to
    // the workspace's so repeated runs are incremental.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"))
        .join("template-build");
    let out = Command::new(env!("CARGO"))
        .args(["build", "--quiet"])
        .current_dir(&job)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "template build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The template's cargo configuration makes the binary static, with no flags to remember.
    let bin = target.join("x86_64-unknown-linux-gnu/debug/my-job");
    assert!(bin.exists(), "expected the binary at {}", bin.display());
    let ldd = Command::new("ldd").arg(&bin).output().unwrap();
    let ldd_text =
        String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    assert!(
        ldd_text.contains("not a dynamic executable") || ldd_text.contains("statically linked"),
        "not static: {ldd_text}"
    );

    let output = work.join("out");
    let run = Command::new(&bin)
        .args(["run", "--workers", "2", "--arg"])
        .arg(format!("output={}", output.display()))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // Rolling max per sensor: the last value of sensor s is the largest index with i % 10 == s.
    let mut max = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&output).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let v: (u64, i64) = {
                let s = line.trim_matches(|c| c == '{' || c == '}');
                let mut sensor = 0;
                let mut value = 0;
                for kv in s.split(',') {
                    let (k, v) = kv.split_once(':').unwrap();
                    match k.trim_matches('"') {
                        "sensor" => sensor = v.parse().unwrap(),
                        "value" => value = v.parse().unwrap(),
                        other => panic!("unexpected field {other}"),
                    }
                }
                (sensor, value)
            };
            let e = max.entry(v.0).or_insert(i64::MIN);
            *e = (*e).max(v.1);
        }
    }
    let expected: std::collections::BTreeMap<u64, i64> =
        (0..10).map(|s| (s, 990 + s as i64)).collect();
    assert_eq!(max, expected);
    let _ = std::fs::remove_dir_all(&work);
}

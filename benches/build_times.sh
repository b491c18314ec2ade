#!/usr/bin/env bash
# Build times a user waits for, measured on a fresh copy of a commit (default HEAD) with a
# fresh target directory, so neither the shared target cache nor anyone's uncommitted work
# in the checkout affects (or is affected by) the measurement:
#
#   1. cold `cargo build --release -p wordcount`                        (target: < 4 min)
#   2. cold `cargo build --profile fastdev -p wordcount`                (for reference)
#   3. edit one closure of the pipeline in jobs/wordcount/src/main.rs, then
#      `cargo build --profile fastdev -p wordcount`                     (target: < 15 s)
#   4. revert the edit and rebuild again (a second sample of 3)
#
#   benches/build_times.sh [COMMIT]
#
# Environment: WORK (scratch directory, default /tmp/weir-coldbuild; deleted at the end).
# The registry sources must already be downloaded (~/.cargo/registry); nothing else is shared.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
commit="${1:-HEAD}"
work="${WORK:-/tmp/weir-coldbuild}"
rm -rf "$work"
mkdir -p "$work/src"
trap 'rm -rf "$work"' EXIT
git -C "$repo" archive "$commit" | tar -x -C "$work/src"
export CARGO_TARGET_DIR="$work/target"
unset RUSTFLAGS CARGO_BUILD_JOBS CARGO_INCREMENTAL || true
cd "$work/src"

echo "commit:    $(git -C "$repo" rev-parse --short "$commit")"
echo "machine:   $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -g | awk '/^Mem:/ {print $2 " GiB RAM"}')"
echo "toolchain: $(cargo --version), $(rustc --version)"
echo

step() {
    local label="$1"
    shift
    local load_before t0 t1
    load_before="$(cut -d' ' -f1 /proc/loadavg)"
    t0=$(date +%s.%N)
    "$@" >"$work/last.log" 2>&1 || { cat "$work/last.log"; exit 1; }
    t1=$(date +%s.%N)
    printf '%-58s %7.1f s   (1-min load before: %s, after: %s)\n' "$label" "$(echo "$t1 - $t0" | bc)" "$load_before" "$(cut -d' ' -f1 /proc/loadavg)"
    local compiled
    compiled="$(awk '$1 == "Compiling" {print $2}' "$work/last.log")"
    if [ "$(echo "$compiled" | grep -c .)" -le 5 ]; then
        echo "     compiled: ${compiled:-nothing}" | tr '\n' ' '; echo
    else
        echo "     compiled: $(echo "$compiled" | grep -c .) crates"
    fi
}

main=jobs/wordcount/src/main.rs
# The edit: the reduce closure of the pipeline, `(word, a + b)` -> `(word, b + a)`.
grep -q '(word, a + b)' "$main" || { echo "cannot find the reduce closure to edit in $main" >&2; exit 1; }

step "1. cold: cargo build --release -p wordcount" cargo build --release -p wordcount
step "2. cold: cargo build --profile fastdev -p wordcount" cargo build --profile fastdev -p wordcount
sed -i 's/(word, a + b)/(word, b + a)/' "$main"
step "3. edit reduce closure; cargo build --profile fastdev" cargo build --profile fastdev -p wordcount
sed -i 's/(word, b + a)/(word, a + b)/' "$main"
step "4. revert the edit;     cargo build --profile fastdev" cargo build --profile fastdev -p wordcount
touch "$main"
step "5. touch only;          cargo build --profile fastdev" cargo build --profile fastdev -p wordcount
echo
ls -l "$CARGO_TARGET_DIR"/x86_64-unknown-linux-gnu/release/wordcount | awk '{print "release binary: " $5 " bytes"}'

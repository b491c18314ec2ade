#!/usr/bin/env bash
# Instructions executed per run of every benchmark variant, counted by callgrind: unlike
# time, the count does not move when other processes share the cores, so the weir / timely
# ratios it gives are reproducible on a busy machine (they leave out cache misses and
# waiting, which the criterion figures include).
#
#   export CARGO_TARGET_DIR=/work/target
#   benches/instructions.sh            # builds the bench binaries (bench profile) if needed
#   benches/instructions.sh keyed      # only the variants of one benchmark (pipeline|keyed)
#
# Each variant runs once and three times (WEIR_BENCH_ONLY / WEIR_BENCH_RUNS, see
# benches/common/mod.rs); (I(3) - I(1)) / 2 is the count of one run without the process's
# fixed start-up. Needs valgrind. Takes a few minutes (callgrind runs ~50x slower).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind not found" >&2; exit 1; }
only="${1:-}"
case "$only" in "" | pipeline | keyed) ;; *) echo "usage: $0 [pipeline|keyed]" >&2; exit 2 ;; esac
build=(--bench pipeline --bench keyed); [ -n "$only" ] && build=(--bench "$only")
bins="$(cargo bench --no-run "${build[@]}" 2>&1 | sed -n 's/.*Executable benches\/\([a-z]*\)\.rs (\(.*\))/\1 \2/p')"
pipeline="$(echo "$bins" | awk '$1 == "pipeline" {print $2}')"
keyed="$(echo "$bins" | awk '$1 == "keyed" {print $2}')"
for b in pipeline keyed; do
    [ -n "$only" ] && [ "$b" != "$only" ] && continue
    [ -x "${!b}" ] || { echo "bench binaries not found: $bins" >&2; exit 1; }
done
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

count() { # binary variant runs -> instructions
    WEIR_BENCH_ONLY="$2" WEIR_BENCH_RUNS="$3" valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$1" >"$out/log" 2>&1 \
        || { cat "$out/log" >&2; exit 1; }
    grep -m1 'Collected' "$out/log" | awk '{print $NF}'
}

echo "| benchmark | variant | instructions per run (M) |"
echo "|---|---|---|"
declare -A ir
for spec in "pipeline weir_pipeline" "pipeline timely_pipeline" "pipeline loop_pipeline" \
            "pipeline weir_generator" "pipeline timely_generator" "pipeline loop_generator" \
            "keyed weir1" "keyed timely1" "keyed weir2" "keyed timely2" "keyed loop"; do
    set -- $spec
    [ -z "$only" ] || [ "$1" = "$only" ] || continue
    bin="$pipeline"; [ "$1" = keyed ] && bin="$keyed"
    one="$(count "$bin" "$2" 1)"; three="$(count "$bin" "$2" 3)"
    per=$(( (three - one) / 2 ))
    ir["$1/$2"]=$per
    printf '| %s | %s | %.1f |\n' "$1" "$2" "$(echo "$per / 1000000" | bc -l)"
done
echo
echo "| benchmark | weir / timely | weir / loop |"
echo "|---|---|---|"
r() { [ -n "${1:-}" ] && [ -n "${2:-}" ] || { printf '–'; return; }; printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
echo "| pipeline (1 worker) | $(r "${ir[pipeline/weir_pipeline]:-}" "${ir[pipeline/timely_pipeline]:-}") | $(r "${ir[pipeline/weir_pipeline]:-}" "${ir[pipeline/loop_pipeline]:-}") |"
echo "| generator (1 worker) | $(r "${ir[pipeline/weir_generator]:-}" "${ir[pipeline/timely_generator]:-}") | $(r "${ir[pipeline/weir_generator]:-}" "${ir[pipeline/loop_generator]:-}") |"
echo "| keyed, 1 worker | $(r "${ir[keyed/weir1]:-}" "${ir[keyed/timely1]:-}") | $(r "${ir[keyed/weir1]:-}" "${ir[keyed/loop]:-}") |"
echo "| keyed, 2 workers (total over both) | $(r "${ir[keyed/weir2]:-}" "${ir[keyed/timely2]:-}") | $(r "${ir[keyed/weir2]:-}" "${ir[keyed/loop]:-}") |"

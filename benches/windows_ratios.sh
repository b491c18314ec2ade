#!/usr/bin/env bash
# Summarise the last criterion run of `cargo bench --bench windows` as markdown: time per run
# and throughput of every variant, and the ratios weir / hand-written timely and weir / loop.
#
#   export CARGO_TARGET_DIR=/work/target
#   cargo bench --bench windows
#   benches/windows_ratios.sh      # reads $CARGO_TARGET_DIR/criterion (default: target/criterion)
#
# Times are criterion's estimates (slope if present, else mean) with their 95% confidence
# intervals, in seconds per run of N events (N as recorded by criterion's throughput).
set -euo pipefail
dir="${1:-${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}/criterion}"
[ -d "$dir" ] || { echo "no criterion results in $dir; run cargo bench --bench windows first" >&2; exit 1; }

python3 - "$dir" <<'EOF'
import json, os, sys

root = sys.argv[1]
groups = ("windows-tumbling", "windows-session")
order = ["weir/1", "timely/1", "loop"]
res = {}
for group in groups:
    gdir = os.path.join(root, group)
    if not os.path.isdir(gdir):
        continue
    for d in sorted(os.listdir(gdir)):
        new = os.path.join(gdir, d, "new")
        try:
            bench = json.load(open(os.path.join(new, "benchmark.json")))
            est = json.load(open(os.path.join(new, "estimates.json")))
        except (FileNotFoundError, NotADirectoryError):
            continue
        e = est.get("slope") or est["mean"]
        ci = e["confidence_interval"]
        n = bench["throughput"]["Elements"]
        res[(group, bench["function_id"])] = (e["point_estimate"], ci["lower_bound"], ci["upper_bound"], n)

if not res:
    sys.exit("no windows-tumbling/windows-session results under " + root)

print("| benchmark | variant | events | s per run [95% CI] | M events/s |")
print("|---|---|---|---|---|")
for k in sorted(res, key=lambda k: (groups.index(k[0]), order.index(k[1]) if k[1] in order else 99)):
    t, lo, hi, n = res[k]
    print(f"| {k[0].removeprefix('windows-')} | {k[1]} | {n:.0e} | {t/1e9:.3f} [{lo/1e9:.3f}, {hi/1e9:.3f}] | {n / t * 1e3:.2f} |")
print()
print("| benchmark | weir / timely | target | weir / loop | timely / loop |")
print("|---|---|---|---|---|")
for g in groups:
    w, t, l = (res.get((g, v)) for v in order)
    if not (w and t and l):
        continue
    r = w[0] / t[0]
    print(f"| {g.removeprefix('windows-')} | {r:.2f} | ≤ 1.10 {'✔' if r <= 1.10 else '✘'} | {w[0] / l[0]:.2f} | {t[0] / l[0]:.2f} |")
EOF

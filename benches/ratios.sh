#!/usr/bin/env bash
# Summarise the last `cargo bench --bench pipeline --bench keyed` run as markdown tables:
# time per run and throughput of every variant, then the ratios weir / hand-written timely
# and weir / plain loop, for wall time and for process CPU time.
#
#   export CARGO_TARGET_DIR=/work/target
#   cargo bench --bench pipeline --bench keyed
#   benches/ratios.sh            # reads $CARGO_TARGET_DIR/criterion (default: target/criterion)
#
# Times are criterion's slope estimates (the middle figure it prints) with their 95%
# confidence intervals, in milliseconds per run of 10^6 input records.
set -euo pipefail
dir="${1:-${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}/criterion}"
[ -d "$dir" ] || { echo "no criterion results in $dir; run cargo bench first" >&2; exit 1; }

python3 - "$dir" <<'EOF'
import json, os, sys

root = sys.argv[1]
res = {}
groups = ("pipeline", "generator", "keyed", "startup")
for group in groups:
    for kind, suffix in (("wall", ""), ("cpu", "-cpu")):
        gdir = os.path.join(root, group + suffix)
        if not os.path.isdir(gdir):
            continue
        for d in sorted(os.listdir(gdir)):
            new = os.path.join(gdir, d, "new")
            try:
                bench = json.load(open(os.path.join(new, "benchmark.json")))
                est = json.load(open(os.path.join(new, "estimates.json")))
            except FileNotFoundError:
                continue
            e = est.get("slope") or est["mean"]
            ci = e["confidence_interval"]
            n = bench["throughput"]["Elements"]
            res[(group, kind, bench["function_id"])] = (e["point_estimate"], ci["lower_bound"], ci["upper_bound"], n)

if not res:
    sys.exit("no pipeline/generator/keyed/startup results found under " + root)

def ms(ns):
    return f"{ns / 1e6:.2f}"

order = ["weir/1", "timely/1", "weir/2", "timely/2", "loop"]
for kind, title in (("wall", "wall-clock time"), ("cpu", "process CPU time (all threads)")):
    rows = sorted((k for k in res if k[1] == kind), key=lambda k: (groups.index(k[0]), order.index(k[2]) if k[2] in order else 99))
    if not rows:
        continue
    print(f"### Per run, {title}\n")
    print("| benchmark | variant | ms per run [95% CI] | M records/s |")
    print("|---|---|---|---|")
    for k in rows:
        t, lo, hi, n = res[k]
        rate = f"{n / t * 1e3:.1f}" if k[0] != "startup" else "(1 record)"
        print(f"| {k[0]} | {k[2]} | {ms(t)} [{ms(lo)}, {ms(hi)}] | {rate} |")
    print()
    print(f"### Ratios, {title} (time of weir / time of the other; lower is better)\n")
    print("| benchmark | workers | weir / timely | target | weir / loop | target |")
    print("|---|---|---|---|---|---|")
    for group in ("pipeline", "generator", "keyed"):
        for w in ("1", "2"):
            weir = res.get((group, kind, f"weir/{w}"))
            if not weir:
                continue
            tim = res.get((group, kind, f"timely/{w}"))
            loop = res.get((group, kind, "loop"))
            r_t = f"{weir[0] / tim[0]:.2f}" if tim else "–"
            r_l = f"{weir[0] / loop[0]:.2f}" if loop else "–"
            t_t = "≤ 1.10" + (" ✔" if tim and weir[0] / tim[0] <= 1.10 else " ✘") if tim else ""
            t_l = ("≤ 2.0" + (" ✔" if weir[0] / loop[0] <= 2.0 else " ✘")) if group == "pipeline" and loop else ""
            print(f"| {group} | {w} | {r_t} | {t_t} | {r_l} | {t_l} |")
    print()
EOF

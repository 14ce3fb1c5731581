#!/usr/bin/env bash
# The main job from nothing, timed: for each seed, an empty folder, then `avssl-train ave-net`
# (building the built-in set included: what the README's first command runs after the install).
# Usage: bash benchmarks/main_job.sh OUT [SEED ...]   (default seeds 0 1 2)
# Prints one line per seed (wall seconds, held-out correspondence, pointing game, 'match' said to
# silent / mismatched sound) and writes them to OUT/main_job.txt. About 4 minutes a seed on 2
# quiet cores; run it on a quiet machine, the figure it checks is the wall time.
set -euo pipefail
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
shift
SEEDS=${*:-0 1 2}
: > "$OUT/main_job.txt"
for s in $SEEDS; do
    d="$OUT/seed$s"
    rm -rf "$d" && mkdir -p "$d"
    t0=$(date +%s.%N)
    (cd "$d" && AVSSL_DATA="$d/avssl-data" avssl-train ave-net --set "seed=$s" > train.json 2> train.log)
    t1=$(date +%s.%N)
    python - "$d/train.json" "$s" "$t0" "$t1" >> "$OUT/main_job.txt" <<'PY'
import json, sys
m = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
wall = float(sys.argv[4]) - float(sys.argv[3])
print(f"seed {sys.argv[2]}: {wall:.0f} s from nothing; correspondence {100 * m['val_acc']:.1f}%, "
      f"pointing game {100 * m['loc_pointing_matched']:.1f}% (chance "
      f"{100 * m['loc_chance_pointing']:.1f}%); 'match' to silent / mismatched sound "
      f"{100 * m['loc_match_rate_silent']:.1f}% / {100 * m['loc_match_rate_mismatched']:.1f}%")
PY
    tail -1 "$OUT/main_job.txt"
done

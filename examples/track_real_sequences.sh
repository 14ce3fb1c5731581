#!/usr/bin/env bash
# Score the trained colourisation tracker and its baselines against the real ground truth of
# ../shared/data/tracking and draw one sheet per sequence (docs/tracking.md, "Real ground truth").
#
#   examples/track_real_sequences.sh [RUN]      # default: runs/ct_real
#
# RUN is a colorization_tracking run, e.g. the one configs/colorization_tracking_real.yaml
# trains on the real clips of ../shared/data (not on these sequences):
#   mkdir real40 && for f in ../shared/data/{real-motion,video-clips,av-clips}/*; do case $f in
#     *.md|*.csv|*.wav) ;; *) ln -s "$(realpath "$f")" "real40/$(basename "$(dirname "$f")")__$(basename "$f")";; esac; done
#   avssl-prep folder real40 --out prep/real40
#   avssl-train colorization-tracking --config configs/colorization_tracking_real.yaml --out runs/ct_real
# Models scored (copy-first-frame is scored in every run): RUN, random:RUN (the same network at
# random initialisation), lab-pixels and pixels (raw colour / grey cells). SIZE=PX sets the input
# short side (default 240: the sequences' own height; 64 loses the small objects), TRACKING=DIR
# another folder of sequences. Writes examples/out/tracking_real/<model>/tracking_bench.json and
# pictures/<sequence>.png: the given first frame and 4 scored frames, the tracked mask tinted,
# the ground truth outlined in white. About 4 minutes per model at 240 px on 2 cores.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${1:-runs/ct_real}"
DATA="${TRACKING:-$ROOT/../shared/data/tracking}"
OUT="$ROOT/examples/out/tracking_real"
SIZE="${SIZE:-240}"

if [[ ! -e "$RUN/checkpoint.pt" && ! -f "$RUN" ]]; then
    echo "no checkpoint in $RUN: train one first (see the top of $0)" >&2
    exit 2
fi
if [[ ! -d "$DATA" ]]; then
    echo "no tracking sequences at $DATA: set TRACKING=DIR" >&2
    exit 2
fi
for model in "$RUN" "random:$RUN" lab-pixels pixels; do
    name="$(basename "${model#random:}")"
    [[ "$model" == random:* ]] && name="random-$name"
    avssl-eval tracking "$model" --davis "$DATA" --vot "$DATA" --size "$SIZE" \
        --out "$OUT/$name" --pictures 8
done
echo "sheets in $OUT/*/pictures/"

#!/usr/bin/env bash
# Sound-source heatmaps of an audio-visual run on a few real clips (trains nothing).
#
#   examples/localize_av_clips.sh [RUN_DIR]        # default: runs/ave_net
#
# RUN_DIR is an ave_net / l3_net / avol_net / av_sync run (e.g. from `avssl-train ave-net`).
# Writes examples/out/<clip>/: heatmaps.npy, scores.csv, frames/*.png and <clip>_heatmap.mp4
# (the clip with the heatmap on top and its own sound). Set EVERY=K to compute every K-th frame
# (default 2: well under a minute on 2 CPU cores) and AV_CLIPS=DIR for another folder of clips.
#
# Caveat: a model trained on the built-in synthetic set (moving shapes and tones) has never
# seen footage like this. The heatmaps show what the pipeline produces on real video, not a
# claim about the model's quality; for numbers, use `avssl-eval localization` on trials with
# ground-truth boxes (docs/evaluation.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${1:-runs/ave_net}"
CLIPS="${AV_CLIPS:-$ROOT/../shared/data/av-clips}"
CLIPS="$(cd "$CLIPS" 2>/dev/null && pwd || echo "$CLIPS")"
OUT="$ROOT/examples/out"
EVERY="${EVERY:-2}"

if [[ ! -e "$RUN/checkpoint.pt" && ! -f "$RUN" ]]; then
    echo "no checkpoint in $RUN: train one first (avssl-train ave-net) or pass a run dir" >&2
    exit 2
fi

videos=()
for name in mmaction2__test_ucf101_ApplyEyeMakeup.avi moviepy__chaplin.mp4 \
            decord__flipping_a_pancake.mkv torchcodec__nasa_13013.mp4; do
    if [[ -f "$CLIPS/$name" ]]; then
        videos+=("$CLIPS/$name")
    else
        echo "skipping $name: not in $CLIPS" >&2
    fi
done
if [[ ${#videos[@]} -eq 0 ]]; then
    echo "no clips found in $CLIPS (set AV_CLIPS)" >&2
    exit 2
fi

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
start=$SECONDS
status=0
avssl-localize "$RUN" "${videos[@]}" --out "$OUT" --every "$EVERY" --png-every 5 || status=$?
echo
echo "done in $((SECONDS - start)) s; pictures and videos in $OUT:"
for v in "${videos[@]}"; do
    stem="$(basename "${v%.*}")"
    if [[ -d "$OUT/$stem" ]]; then
        echo "  $OUT/$stem/frames/*.png  $OUT/$stem/${stem}_heatmap.mp4"
    fi
done
exit "$status"

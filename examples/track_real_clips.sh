#!/usr/bin/env bash
# Propagate hand-placed first-frame boxes through real clips of ../shared/data (trains nothing).
#
#   examples/track_real_clips.sh [CHECKPOINT]      # default: runs/colorization_tracking
#
# CHECKPOINT is a colorization_tracking run (avssl-train colorization-tracking --config
# configs/colorization_tracking_synth.yaml --out runs/colorization_tracking), or a baseline:
# pixels, lab-pixels, random:RUN. The raw-pixel baseline runs alongside for comparison.
# The boxes were placed by hand on frame 0 (examples/track_boxes/<clip>.json: pixels of the
# clip's frames). Writes examples/out/track/<model>/<clip>/: boxes.json, masks.npz,
# frames/*.png (every 10th frame) and <clip>_track.mp4. SIZE=PX sets the network's input short
# side (default 128), MAX_FRAMES=N the clip length (default 150: about a minute on one core),
# REAL_CLIPS=DIR another folder holding the clips.
#
# Caveat: a model trained on the built-in synthetic set (flat shapes falling on a dark sky) has
# never seen footage like this; the overlays show what the pipeline does on real video, not a
# measured quality. The measured comparison is avssl-eval tracking (docs/tracking.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODEL="${1:-runs/colorization_tracking}"
DATA="${REAL_CLIPS:-$ROOT/../shared/data}"
OUT="$ROOT/examples/out/track"
SIZE="${SIZE:-128}"
MAX_FRAMES="${MAX_FRAMES:-150}"

case "$MODEL" in
    pixels*|lab-pixels*|random:*) ;;
    *) if [[ ! -e "$MODEL/checkpoint.pt" && ! -f "$MODEL" ]]; then
           echo "no checkpoint in $MODEL: train one first or pass a run dir / pixels" >&2
           exit 2
       fi ;;
esac

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
start=$SECONDS
status=0
for clip in av-clips/moviepy__chaplin.mp4 video-clips/mmaction2__demo_kinetics_arm_wrestling.mp4 \
            video-clips/imageio__cockatoo_silent_audio.mp4; do
    video="$DATA/$clip"
    stem="$(basename "${clip%.*}")"
    if [[ ! -f "$video" ]]; then
        echo "skipping $clip: not in $DATA" >&2
        continue
    fi
    for model in "$MODEL" pixels; do
        name="$(basename "$model" | tr ':/' '__')"
        avssl-track "$model" "$video" --init "$ROOT/examples/track_boxes/$stem.json" \
            --out "$OUT/$name/$stem" --size "$SIZE" --max-frames "$MAX_FRAMES" || status=$?
    done
done
echo
echo "done in $((SECONDS - start)) s; overlays in $OUT/<model>/<clip>/frames/*.png and *_track.mp4"
exit "$status"

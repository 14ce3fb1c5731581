#!/usr/bin/env bash
# Figures that are deterministic for a seed, for comparing two versions of avssl (a refactor must
# leave them identical). Usage: bash benchmarks/fixed_figures.sh OUT [SHARED_DATA]
# Runs, from the folder OUT (the built-in data lands in OUT/avssl-data):
#   1. the main job: avssl-train ave-net (held-out correspondence, localization)
#   2. a short digits run: avssl-prep digits + rotation for 2 epochs + linear probe
#   3. a fine-tune on the built-in set: random:convnet_tiny, configs/finetune_demo.yaml, 3 epochs
#   4. an ESC-50 protocol eval: MFCC features of FSDD (3,000 clips, 5 folds), linear SVM
# and prints the figures into OUT/figures.txt (a step whose result exists is not run again). About 10 minutes on 2 cores.
set -euo pipefail
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${2:-$REPO/../shared/data}
cd "$OUT"
export AVSSL_DATA="$OUT/avssl-data"
fig() { python - "$@" <<'PY'
import json, sys
path, keys = sys.argv[1], sys.argv[2:]
text = open(path).read().strip()
try:
    obj = json.loads(text)
except json.JSONDecodeError:  # a .jsonl: its last line
    obj = json.loads(text.splitlines()[-1])
def get(o, k):
    for p in k.split("."):
        o = o[p]
    return o
print(json.dumps({"file": path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1], **{k: get(obj, k) for k in keys}}))
PY
}
{
  [ -f runs/ave/localization.json ] || avssl-train ave-net --out runs/ave > ave.log 2>&1
  tail -n 3 ave.log
  [ -f evals/rot_linear.json ] || {
  avssl-prep digits "$SHARED/digits/opencv-doc__digits.png" --out avssl-data/digits > digits.log 2>&1
  avssl-train rotation --config "$REPO/configs/rotation_digits.yaml" --set optim.epochs=2 \
      --set data.manifest=avssl-data/digits/images.jsonl --out runs/rot >> digits.log 2>&1
  avssl-eval linear runs/rot --manifest avssl-data/digits/images.jsonl --out evals/rot_linear.json >> digits.log 2>&1
  }
  tail -n 2 runs/rot/metrics.jsonl
  fig evals/rot_linear.json metrics
  avssl-eval finetune random:convnet_tiny --config "$REPO/configs/finetune_demo.yaml" \
      --set optim.epochs=3 --out runs/ft > ft.log 2>&1
  tail -n 2 runs/ft/metrics.jsonl
  avssl-prep audio-folder "$SHARED/fsdd/recordings" --pattern '{label}_{speaker}_{take}' \
      --fold-field take --num-folds 5 --out prep/fsdd > fsdd.log 2>&1
  avssl-eval esc50 mfcc --manifest prep/fsdd/clips.jsonl --out evals/fsdd_mfcc.json >> fsdd.log 2>&1
  fig evals/fsdd_mfcc.json metrics
} | tee figures.txt

#!/usr/bin/env bash
# One prepared GPU check (about 5-8 minutes on one H100/H200; not run yet): training throughput on the GPU and
# whether the CPU side keeps it fed. Run from the repository root on the GPU machine:
#
#   here, once:  bash benchmarks/gpu_check.sh --fetch-wheels   # PyAV etc. for the GPU's Python
#   there:       bash benchmarks/gpu_check.sh                  # (the device tool: carry .whl)
#
# Results land in $OUT (or bench-out/): training-cuda.json, train_throughput-cuda.json,
# nvdec.json, doctor.json, gpu_check.log, nvidia-smi.txt.
# Steps: (1) the built-in set (avssl-prep synth --temporal, 16 workers); (2) benchmarks/training.py
# --device cuda for the three temporal tasks -- compute-only bound, cold and warm frame cache,
# 0 / 4 / 8 loader workers; (2b) benchmarks/train_throughput.py --device cuda (Shuffle & Learn,
# AVE-Net, SimCLR; bf16) and benchmarks/nvdec.py (torchcodec CUDA vs CPU decoding, skipped with a
# message when torchcodec or NVDEC is missing); (3) one short end-to-end run of the
# arrow-of-time demo on cuda with bf16 autocast and channels_last, resumed once, so the GPU path
# of avssl-train is exercised.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(av==18.1.0)  # what the GPU image lacks (it has torch, numpy, opencv, scipy, pyyaml)
if [[ "${1:-}" == "--fetch-wheels" ]]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${WHEELS[@]}"
  # optional: torchcodec for the NVDEC comparison (benchmarks/nvdec.py skips, saying so, when it
  # is absent or does not match the GPU image's torch)
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl torchcodec || echo "torchcodec wheel not fetched: the NVDEC step will be skipped"
  exit 0
fi

OUT="${OUT:-bench-out}"
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"  # the repo itself, no install needed
nvidia-smi >"$OUT/nvidia-smi.txt" || true
python3 -c "import torch, av; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'av', av.__version__)"
# the install as avssl sees it: decoders, FFmpeg builds, exact-frame self-test, GPU and NVDEC
python3 -m avssl.doctor doctor --json >"$OUT/doctor.json" || echo "avssl doctor: a backend failed its self-test"

export AVSSL_DATA="${AVSSL_DATA:-/tmp/avssl-data}"
time python3 -m data_prep.cli synth --temporal --workers 16

time python3 -m benchmarks.training --device cuda --steps 50 --workers 0 4 8 --out "$OUT"

# Per task family, bf16 autocast: Shuffle & Learn (temporal) and AVE-Net (pair) training rates,
# compute-only vs loader-fed (the "x compute" column: the GPU's share of the wall time), decode
# rate per worker and the data-bound / compute-bound diagnosis -> $OUT/train_throughput-cuda.json.
# A family whose data cannot be built here (av-digits needs ../shared/data) is skipped, said so.
time python3 -m benchmarks.train_throughput --device cuda --steps 30 --workers 0 4 8 \
  --families temporal pair image --set run.amp=true --out "$OUT" || echo "train_throughput failed"
# torchcodec on CUDA (NVDEC) against torchcodec on the CPU, same files, and random 3-frame
# tuples through NVDEC vs avssl's CPU reader (reference chains, issue 25) -> $OUT/nvdec.json
time python3 -m benchmarks.nvdec --files 8 --frames 32 --out "$OUT" || echo "nvdec check failed"

RUN=/tmp/gpu-arrow
time python3 -m avssl.cli train arrow_of_time --config configs/demo_arrow_of_time.yaml --out "$RUN" \
  --set run.device=cuda --set run.channels_last=true --set optim.epochs=2 \
  --set run.crash_at_step=150 || echo "crash drill: killed at step 150 as asked"
time python3 -m avssl.cli train arrow_of_time --config configs/demo_arrow_of_time.yaml --out "$RUN" \
  --set run.device=cuda --set run.channels_last=true --set optim.epochs=2 --resume
cp "$RUN/metrics.jsonl" "$OUT/gpu_arrow_metrics.jsonl"

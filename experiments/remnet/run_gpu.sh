#!/usr/bin/env bash
# REMNet on one GPU (issue 8), sized for under 5 minutes on one H200:
#   1. REMNet-128 with the published final training (preset remnet-final, 20 epochs), 1 seed
#   2. REMNet-256, the same
#   3. a shortened `remnet` search: regularized evolution, population 20, sample 5, 60 trials of
#      1 epoch at width 64 on the training split, fitness on the validation split
# Options used: precision and channels-last chosen by measurement on the GPU (`auto`: fp32, TF32,
# bf16 or fp16 with a gradient scaler; the published runs were
# fp32), batches copied to the GPU from in-memory tensors.
#
# For a bare, offline machine with any Python and a CUDA build of torch: installs nasforge from
# this checkout without dependencies (falls back to PYTHONPATH=src), installs only a missing
# numpy/pyyaml (needs a network or local wheels), reads Fashion-MNIST from the folder copied
# beside this script (experiments/remnet/fashion-mnist/, never committed), NASFORGE_DATA_DIR, or
# /usr/share/datasets/fashion-mnist.
#
#   experiments/remnet/run_gpu.sh [--dry-run]
#
# Output goes to the terminal and to $OUT/gpu_run.log (OUT defaults to this folder); study
# files and weights to a temporary folder.
# --dry-run checks the script on a machine without a GPU: the same commands with a few steps.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-python3}"
DRY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "run_gpu.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$DRY" = 1 ]; then OUT="${OUT:-$(mktemp -d)}"; else OUT="${OUT:-$HERE}"; fi
mkdir -p "$OUT"
LOG="$OUT/gpu_run.log"
exec > >(tee "$LOG") 2>&1

echo "== nasforge REMNet GPU run, $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
source "$REPO/experiments/gpu/prepare.sh"
nf_prepare run_gpu.sh
"$PY" -c "import torch; print('GPU:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
if [ "$DRY" = 0 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "run_gpu.sh: no usable GPU; use --dry-run to check the script on a CPU" >&2
    exit 2
fi
nf_data_dir run_gpu.sh "$HERE/fashion-mnist" /usr/share/datasets/fashion-mnist
NF=("$PY" -m nasforge)
SPEED=(--precision auto --channels-last auto)  # measured on the GPU: fp32/TF32/bf16/fp16
SHORT=()
SEARCH_SHORT=()
WIDTHS=(128 256)
if [ "$DRY" = 1 ]; then  # the same commands, a few steps, narrow nets
    SHORT=(--max-steps 3 --epochs 1)
    SEARCH_SHORT=(--set budget.max_steps=3 --set budget.width=8 --max-evals 6)
    WIDTHS=(8 16)
fi
# study files and weights go to a scratch folder; only the log is kept in $OUT
WORK="$(mktemp -d)"
cd "$REPO"
"${NF[@]}" data check

for width in "${WIDTHS[@]}"; do
    echo "== REMNet-$width, remnet-final, 1 seed"
    start=$(date +%s)
    "${NF[@]}" train "$HERE/remnet_genome.json" --preset remnet-final --width "$width" --seeds 1 \
        "${SPEED[@]}" "${SHORT[@]}" --storage "$WORK/final_w$width.db"
    echo "REMNet-$width wall: $(( $(date +%s) - start )) s"
done

echo "== shortened remnet search (population 20, sample 5, 60 trials, 1 epoch, width 64)"
start=$(date +%s)
"${NF[@]}" search remnet --storage "$WORK/search.db" --no-final --time-limit 150 \
    --set strategy.settings="{population: 20, sample: 5}" --set budget.epochs=1 \
    --set budget.precision=auto --set budget.channels_last=auto --max-evals 60 \
    "${SEARCH_SHORT[@]}"
echo "search wall: $(( $(date +%s) - start )) s"
"${NF[@]}" best "$WORK/search.db" --k 3

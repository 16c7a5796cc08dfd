#!/usr/bin/env bash
# One GPU run (H200, about 5 minutes) for issues 15 and 8:
#   1. REMNet-128 and REMNet-256 with the published final training (preset remnet-final,
#      20 epochs, 1 seed each), precision and memory format chosen by measurement on the GPU
#      (`auto`: fp32, TF32, bf16 or fp16 with a gradient scaler; the choice is printed); they
#      run beside step 2, so their wall times are not speed figures, their accuracies are.
#   2. experiments/gpu/quick_recipes.py: final-training recipes for the networks `quick`
#      picked, validation accuracy only, many trainings at once.
#
#   experiments/gpu/session6a.sh [--dry-run]
#
# Logs go to $OUT (default: a temporary folder): remnet128.log, remnet256.log, quick_recipes.log.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-python3}"
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
source "$REPO/experiments/gpu/prepare.sh"
nf_prepare session6a.sh 2>&1 | tee "$OUT/prepare.log"
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
nf_data_dir session6a.sh "$HERE/fashion-mnist" /usr/share/datasets/fashion-mnist
WORK="$(mktemp -d)"
cd "$REPO"
export PYTHONUNBUFFERED=1
SHORT=()
WIDTHS=(128 256)
SWEEP=(--procs 12 --deadline 170)
if [ "$DRY" = 1 ]; then SHORT=(--max-steps 3 --epochs 1); WIDTHS=(8 16); SWEEP=(--dry-run --procs 2); fi
lscpu | grep -E "Model name|^CPU\(s\)" | tee "$OUT/machine.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$OUT/machine.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/machine.txt"

for width in "${WIDTHS[@]}"; do
    (
        start=$(date +%s)
        OMP_NUM_THREADS=2 timeout 330 "$PY" -m nasforge train "$REPO/experiments/remnet/remnet_genome.json" \
            --preset remnet-final --width "$width" --seeds 1 --precision auto --channels-last auto \
            "${SHORT[@]}" --storage "$WORK/final_w$width.db"
        echo "rc=$? REMNet-$width wall: $(( $(date +%s) - start )) s (beside the recipe sweep)"
    ) > "$OUT/remnet$width.log" 2>&1 &
done

OMP_NUM_THREADS=1 timeout 260 "$PY" "$HERE/quick_recipes.py" "$HERE/quick_genomes.json" "${SWEEP[@]}" \
    2>&1 | tee "$OUT/quick_recipes.log"
wait
for width in "${WIDTHS[@]}"; do echo "== REMNet-$width"; tail -n 12 "$OUT/remnet$width.log"; done

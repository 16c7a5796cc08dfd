#!/usr/bin/env bash
# GPU check of worker isolation (issue 5), sized for under 5 minutes on one GPU.
#
# Two workers share the GPU(s); each reports its device (CUDA_VISIBLE_DEVICES, and from each
# evaluation child torch.cuda.current_device()/name); the driver-reported memory
# (nvidia-smi --query-gpu=memory.used) goes back to the baseline after each evaluation because
# its child exits; an evaluation that allocates more than the card becomes a failed trial
# "out-of-memory" and the search goes on. Details: check_workers.py beside this script.
#
# For a bare, offline machine with any Python and torch: installs nasforge from this checkout
# (pip install --no-deps -e, no download; falls back to PYTHONPATH=src), installs only a
# missing numpy/pyyaml (that needs a network or a local wheel), uses the synthetic data set by
# default (no files) or, with --fashion-mnist, the Fashion-MNIST folder copied beside this
# script at run time (experiments/gpu/fashion-mnist/, never committed) or NASFORGE_DATA_DIR.
#
#   experiments/gpu/check_workers.sh [--dry-run] [--fashion-mnist] [--devices 0,1] [--evals N]
#
# Output goes to the terminal and to $OUT/check_workers.log (OUT defaults to this folder; for
# --dry-run to a temporary one).
# --dry-run checks the logic on a machine without a GPU (CPU evaluations, no nvidia-smi).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-python3}"
LIMIT="${CHECK_TIMEOUT:-280}"
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --fashion-mnist) ARGS+=(--dataset fashion-mnist) ;;
        --dry-run) ARGS+=(--dry-run) ;;
        --devices|--evals|--steps) ARGS+=("$1" "$2"); shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "check_workers.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
case " ${ARGS[*]:-} " in
    *" --dry-run "*) OUT="${OUT:-$(mktemp -d)}" ;;   # a dry run's log is not worth keeping
    *) OUT="${OUT:-$HERE}" ;;                          # a GPU run's log is committed beside us
esac
mkdir -p "$OUT"
LOG="$OUT/check_workers.log"
exec > >(tee "$LOG") 2>&1

echo "== nasforge GPU worker check, $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
source "$HERE/prepare.sh"
nf_prepare check_workers.sh

case " ${ARGS[*]:-} " in
    *" fashion-mnist "*) nf_data_dir check_workers.sh "$HERE/fashion-mnist" /usr/share/datasets/fashion-mnist ;;
esac

cd "$REPO"
timeout "$LIMIT" "$PY" "$HERE/check_workers.py" "${ARGS[@]}"

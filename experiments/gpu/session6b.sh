#!/usr/bin/env bash
# The second GPU run of session 6 (H200, under 5 minutes), each part alone on the GPU:
#   1. experiments/gpu/step_profile.py: REMNet-128 trainer step against a bare loop (issue 15)
#   2. experiments/gpu/remnet128_step.py: REMNet-128 step time, one GPU and the 1-rank NCCL
#      data-parallel path (issue 22)
#   3. experiments/gpu/darts_published.py: DARTS' published search settings, time a step and
#      the extrapolated 50-epoch search (issue 21)
#   experiments/gpu/session6b.sh [--dry-run]       logs to $OUT (default: a temporary folder)
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-python3}"
DRY=()
[ "${1:-}" = "--dry-run" ] && DRY=(--dry-run)
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
source "$REPO/experiments/gpu/prepare.sh"
nf_prepare session6b.sh > "$OUT/prepare.log" 2>&1
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nf_data_dir session6b.sh "$HERE/fashion-mnist" /usr/share/datasets/fashion-mnist
cd "$REPO"
S1=(--steps 100); S2=(--steps 200); S3=(--steps 20 --warmup 5 --budget-s 90)
[ ${#DRY[@]} -gt 0 ] && { S1=(); S2=(); S3=(); }
timeout 90 "$PY" "$HERE/step_profile.py" "${DRY[@]}" "${S1[@]}" > "$OUT/step_profile.log" 2>&1; echo "step_profile rc=$?"
timeout 90 "$PY" "$HERE/remnet128_step.py" "${DRY[@]}" "${S2[@]}" > "$OUT/remnet128_step.log" 2>&1; echo "remnet128_step rc=$?"
timeout 120 "$PY" "$HERE/darts_published.py" "${DRY[@]}" "${S3[@]}" > "$OUT/darts_published.log" 2>&1; echo "darts_published rc=$?"
for f in step_profile remnet128_step darts_published; do echo "== $f"; tail -n 25 "$OUT/$f.log"; done

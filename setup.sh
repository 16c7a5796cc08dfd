#!/usr/bin/env bash
# One-command set-up: system packages (Debian), then nasforge with every extra into the
# current Python. Safe to re-run. Usage: ./setup.sh   (PYTHON=python3.12 ./setup.sh to pick one)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
APT_PACKAGES=(dataset-fashion-mnist openmpi-bin libopenmpi-dev graphviz)

if [ "$(id -u)" = 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    SUDO=(none)
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: no apt-get here; install these system packages yourself: ${APT_PACKAGES[*]}" >&2
elif [ "${SUDO[0]:-}" = none ]; then
    echo "setup: not root and no password-less sudo; ask an administrator to run:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${APT_PACKAGES[*]}" >&2
    echo "setup: continuing with the Python part" >&2
else
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}"
fi

PIP=("$PYTHON" -m pip install --disable-pip-version-check)
if [ "$(id -u)" = 0 ]; then PIP+=(--root-user-action=ignore); fi
# Keep a torch the user already has (a CUDA build, say); otherwise take the CPU build.
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    "${PIP[@]}" "torch==2.13.0"
fi
# every extra, statsmodels (the bohb strategy) included, so CI runs the bohb tests
"${PIP[@]}" -e ".[all]"
# Optional: the NAS-Bench-201 CIFAR-10 table for `nasforge bench` and its tests. --no-deps on
# purpose: nasforge never imports that package (it needs pkg_resources and pandas), it only
# reads the package's data file, sha256-checked. The package states no licence: its data is
# read in place, never copied into this repository.
if ! "${PIP[@]}" --no-deps "analog-nasbench==0.1.3" >/dev/null 2>&1; then
    echo "setup: optional NAS-Bench-201 table not installed (pip install --no-deps analog-nasbench==0.1.3 failed); only nasforge bench needs it" >&2
fi
"$PYTHON" -c "import nasforge, torch; print(f'setup: nasforge {nasforge.__version__} with torch {torch.__version__} ready')"

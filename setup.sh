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
"${PIP[@]}" -e ".[all]"
"$PYTHON" -c "import nasforge, torch; print(f'setup: nasforge {nasforge.__version__} with torch {torch.__version__} ready')"

# Sourced by the GPU scripts (experiments/gpu/check_workers.sh, experiments/remnet/run_gpu.sh):
# prepares a bare, offline machine with any Python and torch to run nasforge from this checkout.
#   nf_prepare NAME   checks torch, prints versions and GPUs, installs only a missing
#                     numpy/pyyaml, installs nasforge from $REPO without dependencies (or falls
#                     back to PYTHONPATH=$REPO/src)
#   nf_data_dir NAME DIR...   exports NASFORGE_DATA_DIR: the first existing DIR unless set
# Expects PY (the Python) and REPO (the checkout) to be set.

nf_prepare() {
    local name="$1"
    if ! "$PY" -c "import torch" 2>/dev/null; then
        echo "$name: $PY has no torch; install a CUDA build of torch first" >&2
        exit 2
    fi
    "$PY" -c "import torch, sys; print('python', sys.version.split()[0], '| torch', torch.__version__, '| CUDA build', torch.version.cuda)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name,memory.used,memory.total,driver_version --format=csv || echo "nvidia-smi: not found"
    # only what is missing (nasforge's search and train paths need numpy and pyyaml besides torch)
    local missing=()
    "$PY" -c "import numpy" 2>/dev/null || missing+=(numpy)
    "$PY" -c "import yaml" 2>/dev/null || missing+=(pyyaml)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing missing: ${missing[*]}"
        "$PY" -m pip install -q "${missing[@]}" || { echo "$name: cannot install ${missing[*]} (offline?); bring their wheels and pip install them" >&2; exit 2; }
    fi
    # nasforge itself from this checkout, without touching torch or any other package
    local found
    found="$(cd / && "$PY" -c "import nasforge, os; print(os.path.realpath(nasforge.__file__))" 2>/dev/null || true)"
    if [ "${found#"$(realpath "$REPO")/src/"}" != "$found" ]; then
        echo "nasforge already installed from this checkout ($REPO)"
    elif "$PY" -m pip install -q --no-deps --no-build-isolation -e "$REPO" >/dev/null 2>&1; then
        echo "nasforge installed from $REPO (pip install --no-deps -e)"
    else
        echo "pip install -e failed here (old pip/setuptools?); using PYTHONPATH=$REPO/src"
    fi
    export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
    export NASFORGE_CACHE_DIR="${NASFORGE_CACHE_DIR:-$(mktemp -d)}"
}

nf_data_dir() {
    local name="$1" dir
    shift
    if [ -z "${NASFORGE_DATA_DIR:-}" ]; then
        for dir in "$@"; do
            if [ -d "$dir" ]; then export NASFORGE_DATA_DIR="$dir"; break; fi
        done
    fi
    if [ -z "${NASFORGE_DATA_DIR:-}" ]; then
        echo "$name: copy the four Fashion-MNIST .gz files to $1 or set NASFORGE_DATA_DIR" >&2
        exit 2
    fi
    echo "Fashion-MNIST from $NASFORGE_DATA_DIR"
}

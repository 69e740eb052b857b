#!/usr/bin/env bash
# Creates the virtual environment (when missing) and installs the project with its pinned
# dependencies. Idempotent and fast on a second run: a stamp keyed on the dependency files
# turns it into a no-op until they change.
#
# torch is installed first, on its own, because the right build depends on the machine:
#   - TORCH_INDEX set          -> torch==$TORCH_VERSION from that index (e.g. a CUDA or CPU wheel index)
#   - nvidia-smi present       -> torch==$TORCH_VERSION from PyPI (the CUDA build)
#   - otherwise (CPU machine)  -> the CPU build: a local wheel on pip's find-links if there is one,
#                                 else PyTorch's CPU index. The multi-GB CUDA build is never pulled.
# Once a torch of the pinned version is present, the project's own `torch==` pin is satisfied and
# pip installs nothing more for it.
set -euo pipefail

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_INDEX=${TORCH_INDEX:-}
EXTRAS=${EXTRAS-dev}   # optional dependency groups, comma-separated; the cluster image sets EXTRAS=server
CPU_TORCH_INDEX=https://download.pytorch.org/whl/cpu

cd "$(dirname "$0")/.."
stamp="$VENV/.vljepa-installed"
key=$(cat pyproject.toml constraints.txt infra/setup_venv.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade "pip>=24" >/dev/null

have_torch() {
  "$VENV/bin/python" - "$TORCH_VERSION" <<'PY' 2>/dev/null
import sys, torch
sys.exit(0 if torch.__version__.split("+")[0] == sys.argv[1] else 1)
PY
}

if have_torch; then
  echo "torch $TORCH_VERSION already installed"
elif [ -n "$TORCH_INDEX" ]; then
  echo "installing torch $TORCH_VERSION from $TORCH_INDEX"
  "${pip[@]}" install "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple
elif command -v nvidia-smi >/dev/null 2>&1; then
  echo "GPU machine: installing the CUDA build of torch $TORCH_VERSION from PyPI"
  "${pip[@]}" install "torch==$TORCH_VERSION"
else
  echo "CPU machine: installing the CPU build of torch $TORCH_VERSION"
  # --no-index: only a wheel already on disk (pip's find-links) may satisfy this step.
  if "${pip[@]}" install -q --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null; then
    "${pip[@]}" install -q -c constraints.txt "torch==$TORCH_VERSION"   # its small pure-Python deps
  else
    "${pip[@]}" install "torch==$TORCH_VERSION" --index-url "$CPU_TORCH_INDEX" --extra-index-url https://pypi.org/simple
  fi
fi

echo "installing vl-jepa and its pinned dependencies into $VENV"
if [ -n "$EXTRAS" ]; then
  "${pip[@]}" install -q -c constraints.txt -e ".[$EXTRAS]"
else
  "${pip[@]}" install -q -c constraints.txt -e .
fi
# Ray puts the driver's working directory on its workers' sys.path. With setuptools' editable
# install alone (an import hook consulted only after sys.path), a directory there named like one of
# our packages shadows it: run a verb where an exported model called `model/` lies, and the workers'
# `import model.x_encoder` finds that model's x_encoder/ weights folder. A sys.path entry for the
# source tree makes the real packages win: Python prefers a regular package (with __init__.py)
# anywhere on sys.path to a bare directory. (setuptools warns of this at install; the warning is
# answered here. tests/unit/cli/test_source_on_path.py)
purelib=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
pwd > "$purelib/vljepa-source.pth"
echo "$key" > "$stamp"
echo "environment ready: $VENV"

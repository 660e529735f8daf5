#!/bin/sh
# Install trainpipe into a virtualenv, in two steps so that Docker caches torch apart from the code:
#   docker/install.sh torch VENV       torch alone, from TORCH_INDEX (default: PyTorch's CPU wheels)
#   docker/install.sh trainpipe VENV   this source tree with EXTRAS, every other package pinned by constraints.txt
# The Dockerfile's build stage runs exactly this, and so does docker/check.sh (in a plain virtualenv).
set -eu
step=$1
venv=$2
: "${TORCH_VERSION:=2.13.0}"
: "${TORCH_INDEX=https://download.pytorch.org/whl/cpu}"  # CUDA 12.8: https://download.pytorch.org/whl/cu128
: "${EXTRAS:=cpu}"

[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
pip="$venv/bin/pip --no-cache-dir --disable-pip-version-check"
case $step in
  torch)
    # An empty TORCH_INDEX means the default index (a machine that mirrors the wheels there).
    $pip install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "torch==$TORCH_VERSION" ;;
  trainpipe)
    $pip install -c constraints.txt ".[$EXTRAS]"
    $pip check ;;
  *)
    echo "usage: $0 torch|trainpipe VENV" >&2
    exit 2 ;;
esac

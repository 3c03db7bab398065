#!/usr/bin/env bash
# Creates ./.venv if needed and installs tbfast (editable, native modules built) with the
# test and benchmark extras, so that the README's two commands share one install. Safe
# to re-run, and cheap: the editable install runs again only when the build inputs
# (setup.py, pyproject.toml, csrc/, the TBFAST_* build switches) changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
extras=test,bench
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first, pinned to the CPU build on this machine's disk: a bare "torch" requirement
# would otherwise resolve to a multi-GB CUDA build. tbfast itself accepts any torch >= 2.0.
.venv/bin/python -c "import torch" 2>/dev/null || {
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/pip install -q torch==2.13.0
}
# TBFAST_CUDA=auto builds what =on builds when nvcc is found (setup.py's _find_nvcc), so
# both share one stamp: .ci/run (=on) and the README commands (auto) reuse each other's build.
cuda=${TBFAST_CUDA:-auto}
if [ "$cuda" = auto ]; then
  nvcc_home=${CUDA_HOME:-${CUDA_PATH:-}}
  if { [ -n "$nvcc_home" ] && [ -e "$nvcc_home/bin/nvcc" ]; } || command -v nvcc >/dev/null; then cuda=on; else cuda=off; fi
fi
stamp=$( { echo "extras=$extras cuda=$cuda archs=${TBFAST_CUDA_ARCHS:-} native=${TBFAST_NATIVE:-on}"
           cat setup.py pyproject.toml; find csrc -type f | LC_ALL=C sort | xargs cat; } | sha256sum | cut -c1-16)
if [ "$(cat .venv/.tbfast-build 2>/dev/null)" = "$stamp" ] && .venv/bin/python -c "import tbfast" 2>/dev/null; then
  echo "tbfast: build inputs unchanged, native modules reused"
else
  .venv/bin/pip install -q -e ".[$extras]"
  echo "$stamp" > .venv/.tbfast-build
fi
# The oldest protobuf runtime we support, installed aside for tests/test_proto.py.
[ -d .ci/protobuf4/google/protobuf ] || .venv/bin/pip install -q --target .ci/protobuf4 protobuf==4.25.9
.venv/bin/python -m tbfast info

#!/usr/bin/env bash
# Creates ./.venv if needed and installs tbfast (editable, native modules built) with the
# test and benchmark dependencies. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned to the CPU build on this machine's disk: a bare "torch" requirement
# would otherwise resolve to a multi-GB CUDA build. tbfast itself accepts any torch >= 2.0.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[test]"
# The oldest protobuf runtime we support, installed aside for tests/test_proto.py.
[ -d .ci/protobuf4/google/protobuf ] || .venv/bin/pip install -q --target .ci/protobuf4 protobuf==4.25.9
.venv/bin/python -m tbfast info

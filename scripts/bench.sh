#!/usr/bin/env bash
# Installs tbfast (scripts/install.sh), then runs the benchmark harness: correctness
# checks first, then tbfast side by side with torch, tensorboardX, NumPy and torch.histc.
# Default: the quick suite, results in benchmarks/out/, a TensorBoard log dir in runs/quick.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/pip install -q -e ".[test,bench]"
exec .venv/bin/python -m benchmarks "${@:-quick}"

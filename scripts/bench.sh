#!/usr/bin/env bash
# Installs tbfast with the test and benchmark extras (scripts/install.sh; one editable
# install, skipped when nothing it builds from changed), then runs the benchmark harness:
# correctness checks first, then tbfast side by side with torch, tensorboardX, NumPy,
# torch.histc and torchmetrics, every figure also as a multiple of the time to read the
# data once. Default: the quick suite; results and plots in benchmarks/out/, a TensorBoard
# log dir in runs/quick.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m benchmarks "${@:-quick}"

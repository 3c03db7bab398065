#!/usr/bin/env bash
# Installs what the tests need (scripts/install.sh), then runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 tests "$@"

#!/usr/bin/env bash
# Set up everything on a fresh machine, then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
exec .venv/bin/python -m pytest -q -rs "$@"

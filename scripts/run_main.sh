#!/usr/bin/env bash
# Set up everything on a fresh machine, then run the main job on Fashion-MNIST with this
# machine's CPU as the device. Extra arguments go to the job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/nni-lightnas demo --preset fashion_mnist "$@"

#!/usr/bin/env bash
# Set up everything on a fresh machine, then run the main job: the quick pipeline on Fashion-MNIST
# with this machine's CPU as the device (profile -> LightNAS search -> BTE evolution -> training ->
# ONNX export -> measurement -> report). Results and report.html go to runs/fashion_mnist_quick/.
# Extra arguments go to `nni-lightnas pipeline` (e.g. --from search). Drop --quick for real results.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/nni-lightnas pipeline --config examples/fashion_mnist/pipeline.yml --quick "$@"

#!/usr/bin/env bash
# Set up everything on a fresh machine, then run the main job on Fashion-MNIST with this
# machine's CPU as the device: profile the device (latency LUT, resumable), then one LightNAS
# search toward a latency target. Results go to runs/main/. Extra arguments go to the search.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
run_dir=${RUN_DIR:-runs/main}
mkdir -p "$run_dir"
.venv/bin/nni-lightnas profile --preset fashion_mnist --device local --output "$run_dir/lut.csv"
.venv/bin/nni-lightnas search --preset fashion_mnist --latency "$run_dir/lut.csv" --target-quantile 0.4 \
    --epochs 8 --warmup-epochs 2 --output "$run_dir/search" "$@"
echo "results in $run_dir/search (summary.json, arch.json, history.csv)"

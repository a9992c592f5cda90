"""How finely can an argmax move? The latency change of swapping one layer's op, relative to targets.

A settled alpha changes its argmax one layer at a time, so how close the plain argmax can land
on a target depends on the latency steps that single-layer swaps make. For a LUT and targets at
given quantiles of its range, prints JSON::

    {"targets_ms": [...], "per_target": [{"target_ms", "median_swap_pct", "share_within_2pct",
     "min_gap_pct_per_layer": {...}}], "lut": "..."}

``median_swap_pct`` is the median over all layers and op pairs of |l_i - l_j| / T (calibrated);
``share_within_2pct`` the share of those swaps that change the latency by at most 2 % of T.

Usage::

    python benchmarks/landing_granularity.py --lut runs/bench/lut_fashion_mnist_calibrated24.csv \
        --output docs/landing_granularity.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--lut', required=True)
    parser.add_argument('--preset', default='fashion_mnist')
    parser.add_argument('--quantiles', default='0.25,0.5,0.75')
    parser.add_argument('--output', default=None)
    args = parser.parse_args(argv)
    from nni_lightnas.latency.lut import LatencyLUT
    lut = LatencyLUT.load(args.lut, space=args.preset)
    fastest_ms, slowest_ms = lut.latency_range()
    per_target = []
    for quantile in (float(q) for q in args.quantiles.split(',')):
        target_ms = fastest_ms + quantile * (slowest_ms - fastest_ms)
        swaps, gaps = [], {}
        for label in lut.labels:
            values = np.sort(lut.layer_latencies(label).numpy() * lut.scale)
            swaps += [abs(a - b) / target_ms * 100 for a, b in itertools.combinations(values, 2)]
            gaps[label] = float(np.diff(values).min() / target_ms * 100)
        per_target.append({'quantile': quantile, 'target_ms': target_ms, 'median_swap_pct': float(np.median(swaps)),
                           'share_within_2pct': float(np.mean(np.asarray(swaps) <= 2.0)),
                           'min_gap_pct_per_layer': gaps})
    summary = {'per_target': per_target, 'range_ms': [fastest_ms, slowest_ms], 'lut': args.lut,
               'layers': len(lut.labels)}
    text = json.dumps(summary, indent=2)
    if args.output:
        Path(args.output).write_text(text)
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())

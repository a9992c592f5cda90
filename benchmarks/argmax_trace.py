"""How does the plain argmax move in one search? Its latency at every alpha step, with and without a setting.

Runs the quick target_hit search (6 epochs, 1 warm-up, 4,000 images, batch 64; landing off) at
one target of the ``fashion_mnist`` range for each option set given, and prints JSON::

    {"target_ms", "quantile", "lut", "budget", "runs": [{"search_options", "argmax_ms",
      "argmax_rel_error", "alpha_entropy_fraction", "distinct_argmax_rel_error_last_half",
      "steps": [{"arch_step", "epoch", "lambda", "expected_ms", "argmax_ms",
      "alpha_entropy_fraction", "arc_lr"}, ...]}], "seconds"}

``distinct_argmax_rel_error_last_half`` lists the argmax latencies visited in the second half of
the alpha steps, relative to the target (``LAT / T - 1``): a settled argmax that jumps over the
target and back visits a few values on both sides.

Usage::

    python benchmarks/argmax_trace.py --quantile 0.3 \\
        --variants '[{"strategy_options": {"squared_error_weight": 0}}, {}]' --output docs/argmax_trace.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--lut', default=str(REPO / 'runs' / 'bench' / 'lut_fashion_mnist_calibrated24.csv'),
                        help='a (calibrated) LUT of the preset, e.g. the one target_hit.py writes')
    parser.add_argument('--preset', default='fashion_mnist')
    parser.add_argument('--quantile', type=float, default=0.3, help='target at this share of the latency range')
    parser.add_argument('--variants', default='[{}]', metavar='JSON',
                        help='a JSON list of SearchConfig settings, one search each')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--output', default=None)
    args = parser.parse_args(argv)
    if not 0 <= args.quantile <= 1:
        parser.error(f'--quantile must be in [0, 1], got {args.quantile}')
    variants = json.loads(args.variants)
    if not (isinstance(variants, list) and all(isinstance(v, dict) for v in variants)):
        parser.error(f'--variants must be a JSON list of objects, got {args.variants!r}')
    warnings.filterwarnings('ignore')
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger('nni').setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)

    from json_stdout import json_only_stdout
    from nni_lightnas.latency.lut import LatencyLUT
    from nni_lightnas.search import SearchConfig, run_search

    lut = LatencyLUT.load(args.lut, space=args.preset)
    fastest_ms, slowest_ms = lut.latency_range()
    target_ms = fastest_ms + args.quantile * (slowest_ms - fastest_ms)
    started = time.perf_counter()
    runs = []
    with json_only_stdout() as stdout:
        for options in variants:
            config = dataclasses.replace(
                SearchConfig(preset=args.preset, target_ms=target_ms, epochs=6, warmup_epochs=1, batch_size=64,
                             train_limit=4000, landing_tolerance=None), **options)
            summary = run_search(config, lut)
            steps = summary['strategy'].step_history()
            last_half = steps['argmax_ms'].iloc[len(steps) // 2:]
            runs.append({'search_options': options, 'argmax_ms': summary['argmax_ms'],
                         'argmax_rel_error': summary['argmax_relative_error'],
                         'alpha_entropy_fraction': summary['alpha_entropy_fraction'],
                         'distinct_argmax_rel_error_last_half': sorted({round(v / target_ms - 1, 4)
                                                                        for v in last_half}),
                         'steps': steps.to_dict('records')})
        result = {'target_ms': target_ms, 'quantile': args.quantile, 'lut': args.lut,
                  'budget': {'epochs': 6, 'warmup_epochs': 1, 'train_limit': 4000, 'batch_size': 64},
                  'runs': runs, 'seconds': time.perf_counter() - started}
        if args.output:
            Path(args.output).write_text(json.dumps(result, indent=1, default=float))
        stdout.write(json.dumps(result, default=float) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

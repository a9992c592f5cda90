"""Comfort Zone scaling: how much wider can a searched LightNet get at (almost) the same measured latency?

For each LightNet (default: three nets of the ``fashion_mnist`` preset, fast to slow), run
:func:`~nni_lightnas.strategies.comfort_zone_scale` on ``local`` (widen a stage by
``width_step`` channels per step, optionally deepen, while the measured latency stays within
``tolerance`` of the original), then train the original and the scaled net from scratch with
the same budget on a Fashion-MNIST slice and report both test accuracies.

Prints one JSON object (the last line of stdout)::

    {"nets": [{"arch", "original_widths", "scaled_widths", "original_ms", "scaled_ms", "latency_ratio",
               "macs_ratio", "accuracy_before", "accuracy_after", ...}, ...], "budget": {...}, "device": {...}}

The local device uses the CPU-time clock (``clock='cpu'``), robust to other processes on a
shared machine; a CPU is rarely "underused" by a small net the way a GPU or NPU is, so expect
small gains here (channel counts that fill SIMD lanes), larger ones on accelerators.

Usage::

    python benchmarks/comfort_zone.py --quick
    python benchmarks/comfort_zone.py --archs MBK3E6-skip-... --tolerance 0.02 --output runs/bench/cz.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import torch

DEFAULT_ARCHS = (
    'MBK3E3-skip-MBK3E3-skip-MBK3E3-skip-MBK3E3-skip',
    'MBK3E6-MBK3E3-MBK5E6-MBK3E3-MBK5E6-skip-MBK3E6-MBK3E3',
    'MBK5E6-MBK5E6-MBK7E6-MBK5E6-MBK7E6-MBK5E6-MBK7E6-MBK7E6',
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='one net, small training budget')
    parser.add_argument('--preset', default='fashion_mnist')
    parser.add_argument('--archs', default=None, help='comma-separated LightNets (default: three built-in nets)')
    parser.add_argument('--tolerance', type=float, default=0.02)
    parser.add_argument('--width-step', type=int, default=8)
    parser.add_argument('--max-steps', type=int, default=8)
    parser.add_argument('--depth', action='store_true', help='also try one more layer per stage')
    parser.add_argument('--runs', type=int, default=100, help='timed runs per measurement')
    parser.add_argument('--rounds', type=int, default=3, help='interleaved rounds per step')
    parser.add_argument('--batch', type=int, default=None, help='measured batch (default 32 for 28x28)')
    parser.add_argument('--train-steps', type=int, default=None, help='training steps of each net (same for both)')
    parser.add_argument('--train-limit', type=int, default=20000)
    parser.add_argument('--test-limit', type=int, default=2000)
    parser.add_argument('--output', default=None, help='also write the JSON here')
    args = parser.parse_args(argv)
    json_out = os.fdopen(os.dup(1), 'w')
    sys.stdout.flush()
    os.dup2(2, 1)
    warnings.filterwarnings('ignore')
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s: %(message)s')
    torch.set_num_threads(1)  # 2 shared cores: one thread is faster than two contending ones

    from nni_lightnas.data import load_fashion_mnist
    from nni_lightnas.latency import LocalDevice
    from nni_lightnas.strategies.comfort_zone import comfort_zone_scale, compare_accuracy

    archs = args.archs.split(',') if args.archs else list(DEFAULT_ARCHS[1:2] if args.quick else DEFAULT_ARCHS)
    train_steps = args.train_steps or (300 if args.quick else 1500)
    device = LocalDevice(num_runs=args.runs, num_warmup_runs=10, threads=1, clock='cpu')
    train = load_fashion_mnist('train', limit=args.train_limit)
    test = load_fashion_mnist('test', limit=args.test_limit)
    started = time.perf_counter()
    nets = []
    for arch in archs:
        result = comfort_zone_scale(arch, args.preset, device, tolerance=args.tolerance, width_step=args.width_step,
                                    max_steps=args.max_steps, depth=args.depth, batch=args.batch,
                                    rounds=args.rounds)
        entry = result.summary()
        before, after = compare_accuracy([result.original, result.scaled], train, test, steps=train_steps)
        entry.update(accuracy_before=before, accuracy_after=after, accuracy_gain=after - before,
                     candidates_measured=len(result.history))
        nets.append(entry)
        print(f"{arch}: {entry['original_widths']} -> {entry['scaled_widths']} x{entry['latency_ratio']:.4f} "
              f"latency, acc {before:.4f} -> {after:.4f}", file=sys.stderr)
    summary = {
        'nets': nets,
        'budget': {'train_steps': train_steps, 'batch_size': 64, 'train_examples': args.train_limit,
                   'test_examples': args.test_limit, 'quick': args.quick},
        'settings': {'tolerance': args.tolerance, 'width_step': args.width_step, 'max_steps': args.max_steps,
                     'depth': args.depth, 'rounds': args.rounds},
        'device': {'name': device.name, 'clock': device.clock, 'threads': device.threads, 'num_runs': device.num_runs},
        'seconds': time.perf_counter() - started,
    }
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(summary, indent=2, default=float))
    print(json.dumps(summary, default=float), file=json_out, flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

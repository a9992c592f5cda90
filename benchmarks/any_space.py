"""LightNAS on spaces that are not ours: profile, search at 25/50/75% of the range, measure each export.

For each space (the user-written keyword-spotting space of ``examples/nni_spaces/kws_space.py``,
NNI's ``NasBench201`` hub space, and NNI's ``ProxylessNAS`` hub space with its ``Repeat`` depth
choices, at a width small enough for a CPU; see docs/your_own_space.md):

1. profile it on ``local`` (:func:`~nni_lightnas.latency.space_lut.build_space_lut`, resumable),
   then fit a whole-network linear calibration on ``--calibrate`` random architectures;
2. run one search per target (25, 50 and 75% of the calibrated latency range) on generated data;
3. measure every export and its argmax as whole exported networks, interleaved, over ``--rounds``.

Prints (and with ``--output`` writes) one JSON object::

    {"spaces": {name: [{"target_ms", "predicted_ms", "measured_ms", "argmax_ms", ...}, ...]},
     "device": {...}, "budget": {...}}

``predicted_ms`` and ``argmax_ms`` are the calibrated LUT's predictions of the export and of the
plain argmax; ``measured_ms`` is the export measured (median of the rounds' medians, with
``measured_iqr_ms``). The goal: the export within 1% of the target predicted and 3% measured.
Timings are only comparable on an otherwise idle machine: do not run it beside other benchmarks.

Usage::

    python benchmarks/any_space.py --quick                     # smoke run, small widths
    python benchmarks/any_space.py --output docs/any_space.json
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'examples' / 'nni_spaces'))

QUANTILES = (0.25, 0.5, 0.75)


def spaces(quick: bool) -> dict[str, dict[str, Any]]:
    """name -> factory of the space, example input shape, data set."""
    from kws_space import NUM_FRAMES, NUM_MELS, KWSSpace, generated_kws_features
    from nasbench201 import generated_images
    from nni.nas.hub.pytorch import NasBench201, ProxylessNAS
    examples = 512 if quick else 8192
    kws_args = {'channels': 16 if quick else 64, 'num_blocks': 4}
    nb_args = {'stem_out_channels': 8, 'num_modules_per_stack': 1 if quick else 3}
    proxyless_args = {'width_mult': 0.25 if quick else 0.5, 'num_labels': 10}
    return {
        'kws_user_space': {'factory': lambda: KWSSpace(**kws_args), 'input_shape': (8, NUM_MELS, NUM_FRAMES),
                           'dataset': lambda: generated_kws_features(examples, seed=0)},
        'nasbench201': {'factory': lambda: NasBench201(**nb_args), 'input_shape': (8, 3, 32, 32),
                        'dataset': lambda: generated_images(examples, seed=0)},
        'proxylessnas': {'factory': lambda: ProxylessNAS(**proxyless_args), 'input_shape': (8, 3, 32, 32),
                         'dataset': lambda: generated_images(examples, seed=0)},
    }


def run_space(name: str, factory: Callable, input_shape: tuple[int, ...], dataset, *, output: Path, device,
              calibrate: int, epochs: int, warmup_epochs: int, rounds: int) -> list[dict[str, Any]]:
    from nni_lightnas.latency.calibration import fit_linear_calibration
    from nni_lightnas.latency.lut_build import build_lut
    from nni_lightnas.latency.space_lut import measure_space_archs
    from nni_lightnas.search import SearchConfig, run_search
    lut = build_lut(factory(), device, example_input=torch.zeros(input_shape), path=output / name / 'lut.csv')
    rng = random.Random(1)
    archs = [{label: rng.choice(ops) for label, ops in lut.candidates.items()} for _ in range(calibrate)]
    if archs:
        measured = measure_space_archs(factory(), archs, device, example_input=input_shape)
        lut = fit_linear_calibration(lut, archs, [result.median_ms for result in measured])
    fastest_ms, slowest_ms = lut.latency_range()
    rows = []
    for quantile in QUANTILES:
        target_ms = fastest_ms + quantile * (slowest_ms - fastest_ms)
        config = SearchConfig(target_ms=target_ms, epochs=epochs, warmup_epochs=warmup_epochs, batch_size=64)
        summary = run_search(config, lut, output / name / f'search_q{int(100 * quantile)}', space=factory(),
                             dataset=dataset)
        strategy = summary['strategy']
        rows.append({'quantile': quantile, 'target_ms': target_ms, 'predicted_ms': summary['predicted_ms'],
                     'argmax_ms': summary['argmax_ms'], 'arch': summary['arch'],
                     'within_tolerance': summary['within_tolerance'], 'nearest_feasible': summary['nearest_feasible'],
                     '_export': summary['sample'], '_argmax': strategy.oneshot_module.argmax_arch()})
    nets = [row['_export'] for row in rows] + [row['_argmax'] for row in rows]
    medians: list[list[float]] = [[] for _ in nets]
    iqrs: list[float] = [0.0] * len(nets)
    for round_index in range(rounds):
        results = measure_space_archs(factory(), nets, device, example_input=input_shape)
        for index, result in enumerate(results):
            medians[index].append(result.median_ms)
            if round_index == 0:
                iqrs[index] = result.iqr_ms
    for index, row in enumerate(rows):
        export_index, argmax_index = index, index + len(rows)
        row['measured_ms'] = statistics.median(medians[export_index])
        row['measured_iqr_ms'] = iqrs[export_index]
        row['argmax_measured_ms'] = statistics.median(medians[argmax_index])
        row['predicted_rel_error'] = row['predicted_ms'] / row['target_ms'] - 1
        row['measured_rel_error'] = row['measured_ms'] / row['target_ms'] - 1
        del row['_export'], row['_argmax']
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='small widths, few epochs and runs')
    parser.add_argument('--output', default=None, help='JSON file to write')
    parser.add_argument('--work-dir', default='runs/any_space', help='LUTs (resumable) and search directories')
    parser.add_argument('--calibrate', type=int, default=None, help='calibration nets (default 20, quick 6)')
    parser.add_argument('--rounds', type=int, default=None, help='measurement rounds of the exports (default 5)')
    parser.add_argument('--only', default=None, help='one space name')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    from nni_lightnas.latency import LocalDevice
    device = LocalDevice(num_runs=30 if args.quick else 200, num_warmup_runs=5 if args.quick else 20, threads=1)
    budget = {'epochs': 3 if args.quick else 12, 'warmup_epochs': 1 if args.quick else 2,
              'calibrate': args.calibrate if args.calibrate is not None else (6 if args.quick else 20),
              'rounds': args.rounds if args.rounds is not None else (2 if args.quick else 5)}
    result: dict[str, Any] = {'spaces': {}, 'budget': budget, 'quick': args.quick,
                              'device': {'name': device.name, 'threads': device.threads, 'num_runs': device.num_runs,
                                         'num_warmup_runs': device.num_warmup_runs}}
    start = time.perf_counter()
    for name, space in spaces(args.quick).items():
        if args.only and name != args.only:
            continue
        result['spaces'][name] = run_space(name, space['factory'], space['input_shape'], space['dataset'](),
                                           output=Path(args.work_dir), device=device, **budget)
    result['seconds'] = time.perf_counter() - start
    text = json.dumps(result, indent=2, default=float)
    if args.output:
        Path(args.output).write_text(text + '\n')
    print(text)
    return result


if __name__ == '__main__':
    main()

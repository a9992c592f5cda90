"""BBSSP: does searching the profiled, reduced space pay off against the full LightNAS space?

1. Profile block families on ``local`` (:func:`~nni_lightnas.strategies.profile_search_space`):
   train SSBN_0 of each family briefly, fine-tune every one-layer swap, measure them all,
   select per layer the ``selection_size`` lowest-cost ops of the best family.
2. Measure a LUT of the full space (7 ops per layer) and of the reduced space, same device
   and settings.
3. Run one LightNAS search on each space toward the SAME target (a point of the range both
   spaces can reach), with the same budget.
4. Measure both searched nets as whole exported networks (interleaved, several rounds), and
   train both from scratch with one budget; report test accuracy on a Fashion-MNIST slice.

Prints one JSON object::

    {"profiling": {"family", "candidates", "reduced_space_size", "full_space_size", "seconds", ...},
     "target_ms": ..., "full": {"arch", "search_seconds", "predicted_ms", "measured_ms", "accuracy", ...},
     "reduced": {...}, "budget": {...}, "device": {...}}

Timings on a shared machine are disturbed by other processes; the local device uses the CPU
time clock (``clock='cpu'``) to limit that, and the spread is reported with each figure.

Usage::

    python benchmarks/bbssp_profiling.py --quick          # about 15-25 min on 2 loaded cores
    python benchmarks/bbssp_profiling.py --output runs/bench/bbssp.json
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

REPO = Path(__file__).resolve().parents[1]


def search_on_space(space, lut, *, target_ms: float, epochs: int, train_limit: int, seed: int = 0) -> dict:
    """One LightNAS search on ``space`` with the benchmark's budget."""
    from nni_lightnas.search import SearchConfig, run_search
    config = SearchConfig(preset=space.config.name, target_ms=target_ms, epochs=epochs,
                          warmup_epochs=max(1, epochs // 5), batch_size=64, train_limit=train_limit, seed=seed)
    summary = run_search(config, lut, space=space)
    return {'arch': summary['arch'], 'predicted_ms': summary['predicted_ms'], 'search_seconds': summary['seconds'],
            'lambda': summary['lambda'], 'epochs': epochs, 'train_limit': train_limit}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='small budget (tens of minutes on 2 loaded cores)')
    parser.add_argument('--preset', default='fashion_mnist')
    parser.add_argument('--families', default='inverted_residual,residual')
    parser.add_argument('--selection-size', type=int, default=3)
    parser.add_argument('--lam', type=float, default=1.0)
    parser.add_argument('--finetune-lr', type=float, default=0.01)
    parser.add_argument('--base-steps', type=int, default=None)
    parser.add_argument('--finetune-steps', type=int, default=None)
    parser.add_argument('--epochs', type=int, default=None, help='search epochs of each space')
    parser.add_argument('--search-train-limit', type=int, default=None)
    parser.add_argument('--train-steps', type=int, default=None, help='final training steps of each searched net')
    parser.add_argument('--target-quantile', type=float, default=0.4,
                        help='target = this point of the latency range both spaces reach (default 0.4)')
    parser.add_argument('--runs', type=int, default=50, help='timed runs per measurement')
    parser.add_argument('--rounds', type=int, default=3, help='measurement rounds of the searched nets')
    parser.add_argument('--output', default=None, help='also write the JSON here')
    parser.add_argument('--profile-dir', default=str(REPO / 'runs' / 'bench' / 'bbssp_profile'),
                        help='where the profiling report (report.csv, candidates.json, summary.json) goes')
    args = parser.parse_args(argv)
    # NNI logs to stdout (also at exit): keep stdout for the JSON line alone.
    json_out = os.fdopen(os.dup(1), 'w')
    sys.stdout.flush()
    os.dup2(2, 1)
    warnings.filterwarnings('ignore')
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger('nni').setLevel(logging.ERROR)
    torch.set_num_threads(1)  # 2 shared cores: one thread is faster than two contending ones

    from nni_lightnas.data import load_fashion_mnist
    from nni_lightnas.latency import LocalDevice
    from nni_lightnas.latency.lut_build import build_lut
    from nni_lightnas.latency.whole_network import measure_archs
    from nni_lightnas.search_spaces import LightNASSpace
    from nni_lightnas.strategies import ProfilingConfig, profile_search_space
    from nni_lightnas.strategies._training import evaluate_accuracy, train_steps

    quick = args.quick
    base_steps = args.base_steps or (60 if quick else 300)
    finetune_steps = args.finetune_steps or (8 if quick else 30)
    epochs = args.epochs or (3 if quick else 10)
    search_train_limit = args.search_train_limit or (2000 if quick else 10000)
    train_steps_final = args.train_steps or (150 if quick else 1000)
    device = LocalDevice(num_runs=args.runs, num_warmup_runs=5, threads=1, clock='cpu')
    started = time.perf_counter()

    config = ProfilingConfig(preset=args.preset, families=tuple(args.families.split(',')),
                             selection_size=args.selection_size, lam=args.lam, base_steps=base_steps,
                             finetune_steps=finetune_steps, finetune_learning_rate=args.finetune_lr,
                             train_limit=3000 if quick else 10000,
                             val_limit=1000 if quick else 2000)
    profile = profile_search_space(config, device)
    profile.save(args.profile_dir)
    print(f'profiled in {profile.seconds:.0f} s: {profile.family} {profile.candidates}', file=sys.stderr)

    full_space = LightNASSpace(args.preset)
    reduced_space = profile.space()
    lut_start = time.perf_counter()
    full_lut = build_lut(full_space, device)
    full_lut_seconds = time.perf_counter() - lut_start
    lut_start = time.perf_counter()
    reduced_lut = build_lut(reduced_space, device)
    reduced_lut_seconds = time.perf_counter() - lut_start
    full_range, reduced_range = full_lut.latency_range(), reduced_lut.latency_range()
    low, high = max(full_range[0], reduced_range[0]), min(full_range[1], reduced_range[1])
    if low >= high:
        raise SystemExit(f'the two spaces share no latency range: full {full_range}, reduced {reduced_range}')
    target_ms = float(low + args.target_quantile * (high - low))
    print(f'target {target_ms:.4f} ms (full {full_range}, reduced {reduced_range})', file=sys.stderr)

    results = {}
    for name, space, lut in (('full', full_space, full_lut), ('reduced', reduced_space, reduced_lut)):
        results[name] = search_on_space(space, lut, target_ms=target_ms, epochs=epochs,
                                        train_limit=search_train_limit)
        print(f"{name}: {results[name]['arch']} predicted {results[name]['predicted_ms']:.4f} ms in "
              f"{results[name]['search_seconds']:.0f} s", file=sys.stderr)
    results['full']['space_size'] = profile.full_size()
    results['reduced']['space_size'] = profile.reduced_size()
    results['full']['lut_seconds'] = full_lut_seconds
    results['reduced']['lut_seconds'] = reduced_lut_seconds

    measured = measure_archs(args.preset, [results['full']['arch'], results['reduced']['arch']], device,
                             batch=int(full_lut.metadata['batch']), rounds=args.rounds, group_size=None)
    train = load_fashion_mnist('train', limit=20000)
    test = load_fashion_mnist('test', limit=2000)
    from nni_lightnas.search_spaces import LightNet
    for name, measurement in zip(('full', 'reduced'), measured):
        entry = results[name]
        entry.update(measured_ms=measurement['median_ms'], measured_p25_ms=measurement['p25_ms'],
                     measured_p75_ms=measurement['p75_ms'],
                     measured_rel_error=measurement['median_ms'] / target_ms - 1)
        torch.manual_seed(0)
        net = LightNet(entry['arch'], args.preset)
        train_steps(net, train, steps=train_steps_final, batch_size=64, learning_rate=0.05, seed=0)
        entry['accuracy'] = evaluate_accuracy(net, test)
    summary = {
        'profiling': {key: value for key, value in profile.summary().items() if key != 'config'},
        'target_ms': target_ms,
        'full': results['full'], 'reduced': results['reduced'],
        'search_time_ratio_full_over_reduced': results['full']['search_seconds'] / results['reduced']['search_seconds'],
        'latency_ranges_ms': {'full': list(full_range), 'reduced': list(reduced_range)},
        'budget': {'quick': quick, 'base_steps': base_steps, 'finetune_steps': finetune_steps,
                   'search_epochs': epochs, 'search_train_limit': search_train_limit,
                   'final_train_steps': train_steps_final, 'final_train_examples': 20000, 'test_examples': 2000},
        'device': {'name': device.name, 'clock': device.clock, 'threads': device.threads, 'num_runs': device.num_runs,
                   'batch': int(full_lut.metadata['batch']), 'runtime': full_lut.metadata.get('runtime')},
        'seconds': time.perf_counter() - started,
    }
    text = json.dumps(summary, default=float)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(summary, indent=2, default=float))
    print(text, file=json_out, flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

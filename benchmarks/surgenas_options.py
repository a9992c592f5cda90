"""SurgeNAS options of the LightNAS strategy, by the numbers: which should be defaults?

On the ``fashion_mnist`` preset and one latency model (the calibrated LUT of
``benchmarks/target_hit.py`` when present, else the plain LUT), for 3 targets spread over the
space's latency range, run one search per variant with one budget:

* ``bilevel``: the default (alternating alpha / weight steps, one Gumbel path);
* ``identity``: the same with SurgeNAS identity mapping regularisation (``identity_eta``);
* ``one_level``: SurgeNAS one-level optimisation (weights and alpha from one batch);
* ``ordered``: SurgeNAS ordered sampling (every op of every layer once per batch).

Each exported architecture is then trained from scratch for ``--train-steps`` SGD steps on a
Fashion-MNIST slice and scored on the 10,000 test images. Per run: skip share of the argmax
and of the exported arch, argmax and exported target error, test accuracy, search seconds.
Finished runs are journaled (``--journal``) and not rerun. Prints one JSON object::

    {"runs": [{"variant", "target_ms", "skip_share", "argmax_skip_share", "rel_error",
               "argmax_rel_error", "test_acc", "search_seconds", ...}, ...],
     "summary": {"bilevel": {"skip_share", "argmax_skip_share", "mean_abs_argmax_rel_error",
                             "mean_test_acc", "mean_search_seconds"}, ...},
     "setting": {...}}

Usage::

    python benchmarks/surgenas_options.py --output docs/surgenas_options.json   # ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

VARIANTS = {
    'bilevel': {},
    'identity': {'identity_eta': 0.5},
    'one_level': {'optimization': 'one_level'},
    'ordered': {'sampling': 'ordered'},
}


def _default_lut() -> str:
    calibrated = REPO / 'runs' / 'bench' / 'lut_fashion_mnist_calibrated24.csv'
    return str(calibrated if calibrated.is_file() else REPO / 'runs' / 'bench' / 'lut_fashion_mnist.csv')


def train_and_test(arch: str, preset: str, *, steps: int, train_limit: int, seed: int) -> float:
    """Test accuracy of ``arch`` trained from scratch for ``steps`` SGD steps."""
    from nni_lightnas.data import load_fashion_mnist
    from nni_lightnas.search_spaces import LightNet
    from nni_lightnas.strategies._training import evaluate_accuracy, train_steps
    torch.manual_seed(seed)
    net = LightNet(arch, preset)
    train_steps(net, load_fashion_mnist('train', limit=train_limit), steps=steps, batch_size=128, seed=seed)
    return evaluate_accuracy(net, load_fashion_mnist('test'))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--preset', default='fashion_mnist')
    parser.add_argument('--lut', default=_default_lut())
    parser.add_argument('--variants', default=','.join(VARIANTS))
    parser.add_argument('--quantiles', default='0.2,0.45,0.7', help='targets as positions in the latency range')
    parser.add_argument('--ordered-quantiles', default='0.45',
                        help='targets for the ordered variant (about 7x the search time per step)')
    parser.add_argument('--epochs', type=int, default=6)
    parser.add_argument('--search-limit', type=int, default=4000, help='training examples of the search')
    parser.add_argument('--train-steps', type=int, default=400)
    parser.add_argument('--train-limit', type=int, default=20000)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--journal', default=str(REPO / 'runs' / 'bench' / 'surgenas_options_journal.jsonl'))
    parser.add_argument('--threads', type=int, default=2, help='torch threads')
    parser.add_argument('--output', default=None)
    args = parser.parse_args(argv)
    warnings.filterwarnings('ignore')
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger('nni').setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)

    from nni_lightnas.latency.loading import latency_model_from_path
    from nni_lightnas.search import SearchConfig, run_search
    lut = latency_model_from_path(args.lut, space=args.preset)
    fastest_ms, slowest_ms = lut.latency_range()

    def targets(quantiles: str) -> list[float]:
        return [float(fastest_ms + float(q) * (slowest_ms - fastest_ms)) for q in quantiles.split(',') if q]

    journal = Path(args.journal)
    journal.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if journal.is_file():
        for line in journal.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                done[(record['variant'], round(record['target_ms'], 6), record['epochs'], record['lut'])] = record

    runs = []
    for variant in args.variants.split(','):
        if variant not in VARIANTS:
            raise SystemExit(f'unknown variant {variant!r}; accepted: {", ".join(VARIANTS)}')
        for target_ms in targets(args.ordered_quantiles if variant == 'ordered' else args.quantiles):
            key = (variant, round(target_ms, 6), args.epochs, args.lut)
            if key not in done:
                config = SearchConfig(preset=args.preset, target_ms=target_ms, epochs=args.epochs,
                                      warmup_epochs=max(1, args.epochs // 5), batch_size=64,
                                      train_limit=args.search_limit, seed=args.seed,
                                      strategy_options=dict(VARIANTS[variant]))
                summary = run_search(config, lut)
                arch, argmax = summary['arch'], summary['argmax_arch']
                started = time.perf_counter()
                accuracy = train_and_test(arch, args.preset, steps=args.train_steps, train_limit=args.train_limit,
                                          seed=args.seed)
                record = {'variant': variant, 'target_ms': target_ms, 'epochs': args.epochs, 'lut': args.lut,
                          'arch': arch, 'argmax_arch': argmax,
                          'skip_share': arch.split('-').count('skip') / len(arch.split('-')),
                          'argmax_skip_share': argmax.split('-').count('skip') / len(argmax.split('-')),
                          'predicted_ms': summary['predicted_ms'], 'rel_error': summary['relative_error'],
                          'argmax_ms': summary['argmax_ms'], 'argmax_rel_error': summary['argmax_relative_error'],
                          'landed': summary['landed'], 'test_acc': accuracy,
                          'search_seconds': summary['seconds'], 'train_seconds': time.perf_counter() - started}
                with journal.open('a') as handle:
                    handle.write(json.dumps(record) + '\n')
                done[key] = record
            runs.append(done[key])
            record = done[key]
            print(f"{variant} T={target_ms:.4f}: skip {record['argmax_skip_share']:.2f} "
                  f"argmax err {100 * record['argmax_rel_error']:+.1f}% acc {record['test_acc']:.4f}", file=sys.stderr)

    summary = {}
    for variant in VARIANTS:
        rows = [run for run in runs if run['variant'] == variant]
        if rows:
            summary[variant] = {
                'runs': len(rows),
                'skip_share': float(np.mean([r['skip_share'] for r in rows])),
                'argmax_skip_share': float(np.mean([r['argmax_skip_share'] for r in rows])),
                'mean_abs_rel_error': float(np.mean([abs(r['rel_error']) for r in rows])),
                'mean_abs_argmax_rel_error': float(np.mean([abs(r['argmax_rel_error']) for r in rows])),
                'mean_test_acc': float(np.mean([r['test_acc'] for r in rows])),
                'mean_search_seconds': float(np.mean([r['search_seconds'] for r in rows]))}
    result = {'runs': runs, 'summary': summary,
              'setting': {'preset': args.preset, 'lut': args.lut, 'epochs': args.epochs,
                          'search_limit': args.search_limit, 'train_steps': args.train_steps,
                          'train_limit': args.train_limit, 'seed': args.seed, 'identity_eta': 0.5,
                          'device': f'cpu, {args.threads} torch threads'}}
    text = json.dumps(result, default=float)
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2, default=float))
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())

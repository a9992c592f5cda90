"""Search cost: peak memory and seconds per epoch of LightNAS against NNI's one-shot strategies.

Each strategy runs in its own process (so peak RSS is its own) on the same space
(``fashion_mnist``), data (a Fashion-MNIST slice), batch and epochs, with no warm-up, so
every timed epoch is a search epoch. Seconds per epoch is the median over the timed epochs
after the first (which pays start-up costs). ``peak_rss_mb`` is the process's peak resident
memory (``VmHWM``), which includes Python, torch and the data; ``search_rss_mb`` is that peak
minus the resident memory just before the search starts, i.e. what the search itself adds
(supernet activations, gradients, optimizer state). Prints one JSON object::

    {"LightNAS": {"peak_rss_mb": ..., "search_rss_mb": ..., "sec_per_epoch": ...},
     "LightNAS-ordered": {...}, "DARTS": {...}, "GumbelDARTS": {...}, "Proxyless": {...},
     "RandomOneShot": {...}, "ratios": {"LightNAS:peak_rss_mb_vs_DARTS": ..., ...}, "setting": {...}}

Usage::

    python benchmarks/search_cost.py [--epochs 3] [--train-limit 4096] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

STRATEGIES = ('LightNAS', 'LightNAS-ordered', 'LightNAS-one_level', 'DARTS', 'GumbelDARTS', 'Proxyless', 'RandomOneShot')

#: LightNAS variants: name suffix -> strategy keyword arguments.
LIGHTNAS_VARIANTS = {'': {}, '-ordered': {'sampling': 'ordered'}, '-one_level': {'optimization': 'one_level'}}


def _rss_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc, in MiB."""
    with open('/proc/self/status') as handle:
        for line in handle:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f'{field} not in /proc/self/status')


def worker(args: argparse.Namespace) -> dict:
    import logging

    import torch
    from nni.nas.experiment import NasExperiment
    from pytorch_lightning.callbacks import Callback

    from nni_lightnas.search import SearchConfig, _data_loaders, make_search_evaluator
    from nni_lightnas.search_spaces import LightNASSpace
    warnings.filterwarnings('ignore')
    logging.getLogger('nni').setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    class EpochTimer(Callback):
        def __init__(self):
            self.seconds: list[float] = []
            self._start = 0.0

        def on_train_epoch_start(self, trainer, module):
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            self.seconds.append(time.perf_counter() - self._start)

    config = SearchConfig(preset=args.preset, epochs=args.epochs, warmup_epochs=0, batch_size=args.batch_size,
                          train_limit=args.train_limit)
    train_loader, arch_loader = _data_loaders(config)
    space = LightNASSpace(args.preset)
    if args.worker.startswith('LightNAS'):
        from nni_lightnas.latency.loading import latency_model_from_path
        from nni_lightnas.strategies import LightNAS
        lut = latency_model_from_path(args.lut, space=args.preset)
        fastest, slowest = lut.latency_range()
        strategy = LightNAS(target_latency_ms=(fastest + slowest) / 2, latency_model=lut, warmup_epochs=0,
                            **LIGHTNAS_VARIANTS[args.worker[len('LightNAS'):]])
    else:
        import nni.nas.strategy as nni_strategies
        strategy = getattr(nni_strategies, args.worker)()
    timer = EpochTimer()
    evaluator = make_search_evaluator(train_loader, arch_loader, max_epochs=args.epochs, callbacks=[timer])
    before_mb = _rss_mb('VmRSS')
    NasExperiment(space, evaluator, strategy).run()
    peak_mb = _rss_mb('VmHWM')
    timed = timer.seconds[1:] or timer.seconds
    return {'peak_rss_mb': peak_mb, 'search_rss_mb': peak_mb - before_mb, 'rss_before_search_mb': before_mb,
            'sec_per_epoch': statistics.median(timed), 'epoch_seconds': timer.seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--preset', default='fashion_mnist')
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--train-limit', type=int, default=4096)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--lut', default='runs/bench/lut_fashion_mnist.csv',
                        help='LUT for LightNAS (build one with `nni-lightnas profile`)')
    parser.add_argument('--strategies', default=','.join(STRATEGIES))
    parser.add_argument('--output', default=None)
    parser.add_argument('--merge', action='store_true',
                        help='keep the other strategies already in --output (rerun only --strategies)')
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    results = {}
    if args.merge and args.output and os.path.isfile(args.output):
        with open(args.output) as handle:
            results = {name: value for name, value in json.load(handle).items() if name not in ('ratios', 'setting')}
    for name in args.strategies.split(','):
        command = [sys.executable, __file__, '--worker', name, '--preset', args.preset, '--epochs', str(args.epochs),
                   '--train-limit', str(args.train_limit), '--batch-size', str(args.batch_size),
                   '--threads', str(args.threads), '--lut', args.lut]
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0:
            results[name] = {'error': completed.stderr[-2000:]}
            continue
        results[name] = json.loads(completed.stdout.strip().splitlines()[-1])
        print(f'{name}: {results[name]}', file=sys.stderr)
    ratios = {}
    for mine in (name for name in results if name.startswith('LightNAS') and 'peak_rss_mb' in results[name]):
        for other in ('RandomOneShot', 'DARTS'):
            if 'peak_rss_mb' in results.get(other, {}):
                for key in ('peak_rss_mb', 'search_rss_mb', 'sec_per_epoch'):
                    ratios[f'{mine}:{key}_vs_{other}'] = results[mine][key] / results[other][key]
    summary = {**results, 'ratios': ratios,
               'setting': {'preset': args.preset, 'epochs': args.epochs, 'train_limit': args.train_limit,
                           'batch_size': args.batch_size, 'threads': args.threads, 'device': 'cpu'}}
    if args.output:
        with open(args.output, 'w') as handle:
            json.dump(summary, handle, indent=2)
    print(json.dumps(summary))
    return 0


if __name__ == '__main__':
    sys.exit(main())

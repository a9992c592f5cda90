"""Leave-one-device-out validation of latency predictors on the public edge-device data.

For every device column of both CSV files in ``shared/data/latency`` (NAS-Bench-201: 7 devices,
FBNet: 6), the column is the unseen *target*: the ``transfer`` kind pre-trains on the other
columns of the same file (all rows; the target column never), then every kind is fitted on N
random target architectures and tested on all the others, for each seed. Kinds:

* ``transfer`` (= ``best`` when pretraining data are given), ``additive`` (per-op least squares),
  ``gbt`` (scikit-learn ``HistGradientBoostingRegressor`` on the one-hot ops, log latency) at
  every N and seed;
* ``ensemble`` (``best`` without pretraining data), ``mlp`` and ``gnn``: slower, so only at
  ``--neural-sizes`` and ``--neural-seeds`` (defaults below) to keep the run within the CPU budget.

The pre-trained network is fitted once per target device with seed 0 and shared by the three
seeds (the seeds vary the training rows and the adaptation), as a user would pre-train once.

Usage::

    python benchmarks/predictor_transfer.py [--sizes 10,20,50,100,300,900] [--seeds 0,1,2]
        [--neural-sizes 100,900] [--neural-seeds 0] [--output docs/predictor_transfer.json]

Prints the JSON and writes it to ``--output``; ``--markdown`` writes the docs table too.
Accuracies are deterministic (fixed seeds, one thread); times depend on the machine's load.
"""

from __future__ import annotations

import os

os.environ.setdefault('OMP_NUM_THREADS', '1')  # scikit-learn's OpenMP: one thread, before it loads

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nni_lightnas.latency.datasets import read_latency_csv, split_train_test  # noqa: E402
from nni_lightnas.latency.predictors import make_predictor, pretrain_source_model, read_pretrain_table  # noqa: E402
from nni_lightnas.latency.predictors.evaluation import accuracy_metrics  # noqa: E402
from nni_lightnas.latency.predictors.tree_baseline import TreeBaseline  # noqa: E402

DATA_CANDIDATES = [ROOT / 'shared' / 'data' / 'latency', ROOT.parent / 'shared' / 'data' / 'latency']
FILES = ('nasbench201_edge_latency_ms.csv', 'fbnet_latency_ms.csv')
METRICS = ('acc10', 'acc5', 'mape', 'spearman')


def data_dir() -> Path:
    for candidate in DATA_CANDIDATES:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f'no latency data in {[str(c) for c in DATA_CANDIDATES]}')


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(',') if v.strip()]


def run_device(csv: Path, column: str, *, sizes: list[int], seeds: list[int], neural_sizes: list[int],
               neural_seeds: list[int], neural_kinds: list[str]) -> list[dict[str, Any]]:
    """Every kind at every size and seed with ``column`` held out; one record per fit."""
    data = read_latency_csv(csv, column)
    table = read_pretrain_table(csv, exclude=[column], space=data.space)
    start = time.process_time()
    source = pretrain_source_model(table, seed=0)
    pretrain_cpu_s = time.process_time() - start
    records = []
    for seed in seeds:
        for size in sizes:
            train, test = split_train_test(data, size, seed=seed)
            train_archs = [data.archs[i] for i in train]
            test_archs = [data.archs[i] for i in test]
            kinds = ['transfer', 'additive', 'gbt']
            if size in neural_sizes and seed in neural_seeds:
                kinds += neural_kinds
            for kind in kinds:
                start = time.process_time()
                if kind == 'gbt':
                    model = TreeBaseline(data.space, seed=seed)
                elif kind == 'transfer':
                    model = make_predictor('transfer', data.space, seed=seed, pretrain=source)
                else:
                    model = make_predictor(kind, data.space, seed=seed)
                model.fit(train_archs, data.latency_ms[train])
                predicted = model.predict(test_archs)
                cpu_s = time.process_time() - start
                record = {'file': csv.name, 'column': column, 'kind': kind, 'n_train': int(size),
                          'n_test': int(len(test)), 'seed': seed, **accuracy_metrics(predicted, data.latency_ms[test]),
                          'cpu_s': round(cpu_s, 2)}
                if kind == 'transfer':
                    info = model.fit_info
                    record['fit_info'] = {key: info[key] for key in ('embed_gain', 'feature_gain', 'num_members',
                                                                     'residual_scale')}
                records.append(record)
            print(f'{column} seed {seed} N={size}: ' + ', '.join(
                f"{r['kind']} {r['acc10']:.1f}" for r in records if r['n_train'] == size and r['seed'] == seed),
                file=sys.stderr, flush=True)
    for record in records:
        record['pretrain_cpu_s'] = round(pretrain_cpu_s, 1)
    return records


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per kind and N: mean over devices of the per-device seed means, and the worst device."""
    rows = []
    for kind in sorted({r['kind'] for r in records}):
        for size in sorted({r['n_train'] for r in records if r['kind'] == kind}):
            chosen = [r for r in records if r['kind'] == kind and r['n_train'] == size]
            devices = sorted({r['column'] for r in chosen})
            per_device = {device: {metric: float(np.mean([r[metric] for r in chosen if r['column'] == device]))
                                   for metric in METRICS} for device in devices}
            worst10 = min(devices, key=lambda d: per_device[d]['acc10'])
            worst_rho = min(devices, key=lambda d: per_device[d]['spearman'])
            rows.append({'kind': kind, 'n_train': size, 'devices': len(devices),
                         'seeds': len({r['seed'] for r in chosen}),
                         **{f'mean_{m}': round(float(np.mean([per_device[d][m] for d in devices])), 4) for m in METRICS},
                         'worst_acc10': round(per_device[worst10]['acc10'], 2), 'worst_acc10_device': worst10,
                         'worst_spearman': round(per_device[worst_rho]['spearman'], 4),
                         'worst_spearman_device': worst_rho,
                         'per_device': {d: {m: round(v, 4) for m, v in values.items()}
                                        for d, values in per_device.items()}})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', type=_ints, default=[10, 20, 50, 100, 300, 900])
    parser.add_argument('--seeds', type=_ints, default=[0, 1, 2])
    parser.add_argument('--neural-sizes', type=_ints, default=[20, 100, 900])
    parser.add_argument('--neural-seeds', type=_ints, default=[0])
    parser.add_argument('--neural-kinds', default='ensemble,mlp,gnn')
    parser.add_argument('--columns', default='', help='only these device columns (default: all)')
    parser.add_argument('--output', default=str(ROOT / 'docs' / 'predictor_transfer.json'))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    directory = data_dir()
    only = {c for c in args.columns.split(',') if c}
    neural_kinds = [k for k in args.neural_kinds.split(',') if k]
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    records: list[dict[str, Any]] = []
    for name in FILES:
        csv = directory / name
        columns = read_pretrain_table(csv).columns
        for column in columns:
            if only and column not in only:
                continue
            records += run_device(csv, column, sizes=args.sizes, seeds=args.seeds, neural_sizes=args.neural_sizes,
                                  neural_seeds=args.neural_seeds, neural_kinds=neural_kinds)
    result = {
        'meta': {'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
                 'machine': platform.machine(), 'cpus': os.cpu_count(), 'torch_threads': 1,
                 'command': 'python benchmarks/predictor_transfer.py ' + ' '.join(argv if argv is not None
                                                                                  else sys.argv[1:]),
                 'protocol': 'leave-one-device-out; transfer pre-trains on the other columns of the same file '
                             '(seed 0), every kind trains on N random target rows and tests on all others',
                 'sizes': args.sizes, 'seeds': args.seeds, 'neural_sizes': args.neural_sizes,
                 'neural_seeds': args.neural_seeds, 'neural_kinds': neural_kinds,
                 'wall_s': round(time.perf_counter() - start_wall, 1),
                 'cpu_s': round(time.process_time() - start_cpu, 1)},
        'summary': summarise(records),
        'records': records,
    }
    text = json.dumps(result, indent=1)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text + '\n')
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())

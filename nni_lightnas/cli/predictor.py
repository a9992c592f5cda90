"""``nni-lightnas predictor``: evaluate or fit a latency predictor on measured architectures.

``evaluate`` prints one JSON object (the contract other tools read)::

    {"kind": ..., "n_train": ..., "n_test": ..., "acc10": ..., "acc5": ..., "mape": ...,
     "spearman": ..., "baseline": {"kind": "additive", "acc10": ..., "acc5": ..., "mape": ..., "spearman": ...}}

``fit`` writes a predictor directory that ``--latency DIR`` options load.
"""

from __future__ import annotations

import argparse
import json

KINDS = ('additive', 'mlp', 'gnn', 'ensemble', 'best')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest='action', metavar='ACTION')
    actions.required = True
    evaluate = actions.add_parser('evaluate', help='train on N random rows, test on the rest; print one JSON object')
    _data_arguments(evaluate)
    evaluate.add_argument('--train-size', type=int, required=True, help='number of training architectures')
    evaluate.add_argument('--kind', choices=KINDS, default='best', help='predictor kind (default best)')
    evaluate.add_argument('--seed', type=int, default=0, help='seed of the split and of the fit (default 0)')
    fit = actions.add_parser('fit', help='fit a predictor on every row and save it to a directory')
    _data_arguments(fit)
    fit.add_argument('--kind', choices=KINDS, default='best', help='predictor kind (default best)')
    fit.add_argument('--seed', type=int, default=0, help='seed of the fit (default 0)')
    fit.add_argument('--output', '-o', required=True, help='predictor directory to write')


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--data', required=True,
                        help='CSV (or JSON records): an arch column (first column or "arch"), then latency columns')
    parser.add_argument('--column', default=None,
                        help='latency column (ms); default for our measured tables: latency_ms, median_ms or '
                             'measured_ms')
    parser.add_argument('--preset', default=None,
                        help='LightNAS preset of LightNet strings (default: the preset with that many layers)')
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1)')


def _read(args: argparse.Namespace):
    from nni_lightnas.latency.datasets import read_latency_csv, read_measured_table
    if args.column is None:
        return read_measured_table(args.data, preset=args.preset)
    return read_latency_csv(args.data, args.column, preset=args.preset)


def run(args: argparse.Namespace) -> int:
    import torch

    from nni_lightnas.latency.predictors import make_predictor
    from nni_lightnas.latency.predictors.evaluation import evaluate_predictor
    torch.set_num_threads(max(1, args.threads))
    data = _read(args)
    if args.action == 'evaluate':
        result = evaluate_predictor(data, train_size=args.train_size, kind=args.kind, seed=args.seed)
        print(json.dumps(result))
        return 0
    valid = data.valid.nonzero()[0]
    predictor = make_predictor(args.kind, data.space, seed=args.seed)
    predictor.fit([data.archs[i] for i in valid], data.latency_ms[valid])
    directory = predictor.save(args.output)
    print(json.dumps({'output': str(directory), 'kind': predictor.kind, 'space': data.space.name,
                      'column': data.column, 'n_train': int(len(valid)), 'fit_info': predictor.fit_info}))
    return 0

"""``nni-lightnas predictor``: evaluate or fit a latency predictor on measured architectures.

``evaluate`` prints one JSON object (the contract other tools read)::

    {"kind": ..., "n_train": ..., "n_test": ..., "acc10": ..., "acc5": ..., "mape": ...,
     "spearman": ..., "baseline": {"kind": "additive", "acc10": ..., "acc5": ..., "mape": ..., "spearman": ...}}

``fit`` writes a predictor directory that ``--latency DIR`` options load.

``--kind transfer`` pre-trains on every latency column of ``--pretrain-data CSV`` (other
devices, same architecture encoding; the ``--column`` target is left out when the file holds
it) and adapts to the target's rows; ``--kind best`` is ``transfer`` when ``--pretrain-data``
is given, ``ensemble`` otherwise.
"""

from __future__ import annotations

import argparse
import json

KINDS = ('additive', 'mlp', 'gnn', 'ensemble', 'transfer', 'best')


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
    parser.add_argument('--pretrain-data', default=None, metavar='CSV',
                        help='other devices measured on the same architecture encoding (arch column, one latency '
                             'column per device): what --kind transfer pre-trains on')
    parser.add_argument('--pretrain-columns', default=None, metavar='A,B',
                        help='pre-train on these columns only (default: every latency column but --column)')


def _read(args: argparse.Namespace):
    from nni_lightnas.latency.datasets import read_latency_csv, read_measured_table
    if args.column is None:
        return read_measured_table(args.data, preset=args.preset)
    return read_latency_csv(args.data, args.column, preset=args.preset)


def _pretrain(args: argparse.Namespace, data):
    """The pretraining table of ``--pretrain-data`` (target column left out), or ``None``."""
    from nni_lightnas.latency.predictors import read_pretrain_table
    if args.pretrain_data is None:
        if args.kind == 'transfer':
            raise ValueError('--kind transfer needs --pretrain-data CSV (other devices '
                             'measured on the same architectures); without it use --kind best or ensemble')
        if args.pretrain_columns:
            raise ValueError('--pretrain-columns needs --pretrain-data CSV')
        return None
    if args.kind not in ('transfer', 'best'):
        raise ValueError(f'--pretrain-data is used by --kind transfer or best, not '
                         f'{args.kind!r}')
    columns = [c for c in args.pretrain_columns.split(',') if c] if args.pretrain_columns else None
    return read_pretrain_table(args.pretrain_data, exclude=[data.column], columns=columns, space=data.space)


def run(args: argparse.Namespace) -> int:
    import torch

    from nni_lightnas.latency.predictors import make_predictor
    from nni_lightnas.latency.predictors.evaluation import evaluate_predictor
    torch.set_num_threads(max(1, args.threads))
    data = _read(args)
    pretrain = _pretrain(args, data)
    if args.action == 'evaluate':
        result = evaluate_predictor(data, train_size=args.train_size, kind=args.kind, seed=args.seed,
                                    pretrain=pretrain)
        print(json.dumps(result))
        return 0
    valid = data.valid.nonzero()[0]
    options = {'pretrain': pretrain} if pretrain is not None else {}
    predictor = make_predictor(args.kind, data.space, seed=args.seed, **options)
    predictor.fit([data.archs[i] for i in valid], data.latency_ms[valid])
    directory = predictor.save(args.output)
    print(json.dumps({'output': str(directory), 'kind': predictor.kind, 'space': data.space.name,
                      'column': data.column, 'n_train': int(len(valid)), 'fit_info': predictor.fit_info}))
    return 0

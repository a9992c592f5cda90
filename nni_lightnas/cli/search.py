"""``nni-lightnas search``: one LightNAS search toward a latency target (a preset, or any NNI space: ``--space``)."""

from __future__ import annotations

import argparse
import json

from ..strategies.defaults import DEFAULT_LANDING_TOLERANCE, PAPER_ARC_LEARNING_RATE, PAPER_LAMBDA_LR
from .space_option import add_data_arguments, add_space_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--preset', default='fashion_mnist', help='search space preset (Fashion-MNIST shaped)')
    target = parser.add_mutually_exclusive_group()
    target.add_argument('--target-ms', type=float, help='latency target in ms')
    target.add_argument('--target-quantile', type=float,
                        help='target as a position in the space\'s latency range: fastest + Q * (slowest - fastest)')
    parser.add_argument('--target-energy-mj', type=float, default=None,
                        help='energy target per inference in mJ, alone or with a latency target (then the export '
                             'lands on latency and reports energy); --latency must be a LUT with an energy_mj column')
    parser.add_argument('--latency', required=True,
                        help='latency model: a LUT (.csv/.parquet, plain or corrected) or a predictor directory')
    parser.add_argument('--epochs', type=int, default=10, help='search epochs (default 10)')
    parser.add_argument('--warmup-epochs', type=int, default=2, help='fair warm-up epochs (default 2)')
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--train-limit', type=int, default=10_000,
                        help='training examples used (default 10000; 0 = all 60000)')
    parser.add_argument('--lambda-lr', type=float, default=PAPER_LAMBDA_LR,
                        help=f"step of the lambda ascent at the paper's budget (default {PAPER_LAMBDA_LR:g}), scaled "
                             "to this search's planned alpha steps unless --schedule fixed")
    parser.add_argument('--arc-lr', type=float, default=PAPER_ARC_LEARNING_RATE,
                        help="Adam learning rate of alpha at the paper's budget "
                             f'(default {PAPER_ARC_LEARNING_RATE:g}), scaled likewise')
    parser.add_argument('--schedule', choices=('budget', 'fixed'), default='budget',
                        help='budget: schedules sized by the planned alpha steps (default); fixed: constants as given')
    parser.add_argument('--arch-gradient', choices=('reinforce', 'gumbel'), default='reinforce',
                        help='how the cross-entropy reaches alpha (default reinforce; gumbel: straight-through)')
    parser.add_argument('--landing-tolerance', type=float, default=DEFAULT_LANDING_TOLERANCE,
                        help='export the most probable arch within this relative error of the target when the '
                             f'argmax misses it (default {DEFAULT_LANDING_TOLERANCE:g}; 0: always the argmax)')
    parser.add_argument('--rank-candidates', type=int, default=0,
                        help='export the best, by supernet accuracy, of up to N at-target architectures drawn from '
                             'the final alpha (default 0: the landed argmax)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--data-dir', default=None, help='Fashion-MNIST directory (default: Debian package)')
    parser.add_argument('--output', required=True, help='directory for arch.json, history.csv, summary.json')
    parser.add_argument('--progress', action='store_true', help="show Lightning's progress bar")
    add_space_arguments(parser, input_shape=False)
    add_data_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from nni_lightnas.atomic import check_output_path
    from nni_lightnas.latency.loading import latency_model_from_path
    check_output_path(args.output, what='--output', directory=True)
    from nni_lightnas.search import SearchConfig, run_search
    # with --space, the LUT is checked against the space (fingerprint, layers) when the search starts
    if args.target_ms is None and args.target_quantile is None and args.target_energy_mj is None:
        raise ValueError('a search needs a budget: --target-ms, --target-quantile or --target-energy-mj (or a '
                         'latency target and --target-energy-mj together)')
    latency_model = latency_model_from_path(args.latency, space=None if args.space else args.preset)
    if args.target_energy_mj is not None:
        from nni_lightnas.search import energy_model_of
        energy_model_of(latency_model, args.target_energy_mj)  # refused before any data is read
    target_ms = args.target_ms
    if target_ms is None and args.target_quantile is not None:
        if not 0 < args.target_quantile < 1:
            raise ValueError(f'--target-quantile must be in (0, 1), got {args.target_quantile}')
        fastest_ms, slowest_ms = latency_model.latency_range()
        target_ms = latency_model.target_at(args.target_quantile)
        print(f'target {target_ms:.4f} ms ({args.target_quantile:g} of the range [{fastest_ms:.4f}, {slowest_ms:.4f}] ms)')
    config = SearchConfig(preset=args.preset, target_ms=target_ms, target_energy_mj=args.target_energy_mj,
                          epochs=args.epochs,
                          warmup_epochs=args.warmup_epochs, batch_size=args.batch_size,
                          train_limit=args.train_limit or None, lambda_lr=args.lambda_lr,
                          arc_learning_rate=args.arc_lr, seed=args.seed, data_dir=args.data_dir,
                          landing_tolerance=args.landing_tolerance or None,
                          strategy_options={'schedule': args.schedule, 'arch_gradient': args.arch_gradient,
                                            'rank_candidates': args.rank_candidates})
    if args.space:
        from .space_option import search_any_space
        summary = search_any_space(args, config, latency_model)
    else:
        summary = run_search(config, latency_model, args.output, enable_progress_bar=args.progress)
    print(summary['history'].drop(columns=['arch']).to_string(index=False, float_format=lambda v: f'{v:.4g}'))
    printable = {key: value for key, value in summary.items() if key not in ('history', 'strategy', 'config')}
    print(json.dumps(printable, default=float))
    return 0

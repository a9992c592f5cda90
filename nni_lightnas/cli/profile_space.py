"""``nni-lightnas profile-space``: BBSSP search space profiling (pick block family and per-layer candidates)."""

from __future__ import annotations

import argparse
import json

from .device_options import add_measurement_arguments, device_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--preset', default='fashion_mnist', help='imagenet, cifar10, fashion_mnist or tiny')
    parser.add_argument('--output', '-o', required=True,
                        help='directory for report.csv (one row per base network), candidates.json, summary.json')
    parser.add_argument('--families', default='inverted_residual,residual',
                        help='comma-separated block families: inverted_residual, residual, plain '
                             '(default inverted_residual,residual)')
    parser.add_argument('--theta', type=float, default=None,
                        help='accuracy (fraction) where the cost\'s accuracy term is 1 (default: median accuracy)')
    parser.add_argument('--s', type=float, default=0.05, help='accuracy scale of the cost (default 0.05)')
    parser.add_argument('--lambda', dest='lam', type=float, default=1.0,
                        help='weight of the latency term -1/latency_ms (default 1.0)')
    parser.add_argument('--selection-size', type=int, default=3, help='ops kept per layer (default 3)')
    parser.add_argument('--mix-families', action='store_true',
                        help='keep the lowest-cost ops of all families together instead of one family')
    parser.add_argument('--base-steps', type=int, default=200, help='training steps of SSBN_0 (default 200)')
    parser.add_argument('--finetune-steps', type=int, default=20,
                        help='fine-tuning steps of each base network from SSBN_0 (default 20)')
    parser.add_argument('--batch-size', type=int, default=64, help='training batch (default 64)')
    parser.add_argument('--train-limit', type=int, default=5000, help='Fashion-MNIST training examples (default 5000)')
    parser.add_argument('--val-limit', type=int, default=1000,
                        help='held-out training examples that give the accuracies (default 1000)')
    parser.add_argument('--data-dir', default=None, help='Fashion-MNIST directory (default: the Debian package\'s)')
    parser.add_argument('--device', default='local', help="'local' or 'ssh://[user@]host[:port]' (default local)")
    parser.add_argument('--batch', type=int, default=None,
                        help='batch of the measured networks (default 32 for 28x28/32x32 presets, else 1)')
    add_measurement_arguments(parser)
    parser.add_argument('--rounds', type=int, default=1, help='interleaved measurement rounds (default 1)')
    parser.add_argument('--seed', type=int, default=0, help='seed of initialisation and batch order')


def run(args: argparse.Namespace) -> int:
    from nni_lightnas.atomic import check_output_path
    from nni_lightnas.strategies.space_profiling import ProfilingConfig, profile_search_space

    check_output_path(args.output, what='--output', directory=True)

    config = ProfilingConfig(
        preset=args.preset, families=tuple(name.strip() for name in args.families.split(',') if name.strip()),
        theta=args.theta, s=args.s, lam=args.lam, selection_size=args.selection_size,
        mix_families=args.mix_families, base_steps=args.base_steps, finetune_steps=args.finetune_steps,
        batch_size=args.batch_size, train_limit=args.train_limit, val_limit=args.val_limit,
        latency_batch=args.batch, rounds=args.rounds, seed=args.seed)
    device = device_from_args(args)
    result = profile_search_space(config, device, data_root=args.data_dir)
    output = result.save(args.output)
    summary = result.summary()
    print(json.dumps({'output': str(output), 'family': summary['family'], 'candidates': summary['candidates'],
                      'reduced_space_size': summary['reduced_space_size'],
                      'full_space_size': summary['full_space_size'], 'theta': summary['theta'],
                      'num_networks': summary['num_networks'], 'seconds': summary['seconds']}))
    return 0

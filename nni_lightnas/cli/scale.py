"""``nni-lightnas scale``: Comfort Zone scaling of a searched LightNet (wider/deeper at the same latency)."""

from __future__ import annotations

import argparse
import json

from .device_options import add_measurement_arguments, device_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('arch', help="the searched LightNet, e.g. 'MBK3E6-skip-MBK7E3', or an arch.json of a search")
    parser.add_argument('--preset', default='fashion_mnist', help='imagenet, cifar10, fashion_mnist or tiny')
    parser.add_argument('--output', '-o', default=None, help='directory for summary.json and history.csv')
    parser.add_argument('--tolerance', type=float, default=0.02,
                        help='allowed relative latency increase over the original (default 0.02 = 2%%)')
    parser.add_argument('--width-step', type=int, default=8, help='channels added to one stage per step (default 8)')
    parser.add_argument('--max-steps', type=int, default=8, help='scaling steps at most (default 8)')
    parser.add_argument('--depth', action='store_true', help='also try one more layer per stage')
    parser.add_argument('--max-extra-layers', type=int, default=1, help='extra layers per stage at most (default 1)')
    parser.add_argument('--device', default='local', help="'local' or 'ssh://[user@]host[:port]' (default local)")
    parser.add_argument('--batch', type=int, default=None,
                        help='batch of the measured input (default 32 for 28x28/32x32 presets, else 1)')
    add_measurement_arguments(parser)
    parser.add_argument('--rounds', type=int, default=3, help='interleaved measurement rounds per step (default 3)')
    parser.add_argument('--train-steps', type=int, default=0,
                        help='if > 0, train original and scaled nets this many steps on Fashion-MNIST and '
                             'report both test accuracies (default 0: no training)')
    parser.add_argument('--train-limit', type=int, default=10000, help='training examples (default 10000)')
    parser.add_argument('--test-limit', type=int, default=2000, help='test examples (default 2000)')
    parser.add_argument('--batch-size', type=int, default=64, help='training batch (default 64)')
    parser.add_argument('--data-dir', default=None, help='Fashion-MNIST directory (default: the Debian package\'s)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the training runs')


def _read_arch(value: str) -> str:
    from pathlib import Path
    path = Path(value)
    if value.endswith('.json') and path.is_file():
        data = json.loads(path.read_text())
        return data.get('lightnet') or data['arch']
    return value


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nni_lightnas.atomic import check_output_path
    from nni_lightnas.strategies.comfort_zone import comfort_zone_scale, compare_accuracy

    if args.output:
        check_output_path(args.output, what='--output', directory=True)
    device = device_from_args(args)
    result = comfort_zone_scale(_read_arch(args.arch), args.preset, device, tolerance=args.tolerance,
                                width_step=args.width_step, max_steps=args.max_steps, depth=args.depth,
                                max_extra_layers=args.max_extra_layers, batch=args.batch, rounds=args.rounds)
    summary = result.summary()
    if args.train_steps > 0:
        from nni_lightnas.data import load_fashion_mnist
        train = load_fashion_mnist('train', args.data_dir, limit=args.train_limit)
        test = load_fashion_mnist('test', args.data_dir, limit=args.test_limit)
        before, after = compare_accuracy([result.original, result.scaled], train, test, steps=args.train_steps,
                                         batch_size=args.batch_size, seed=args.seed)
        summary.update(accuracy_before=before, accuracy_after=after, train_steps=args.train_steps)
    if args.output:
        from nni_lightnas.atomic import atomic_write, atomic_write_json
        output = Path(args.output)
        output.mkdir(parents=True, exist_ok=True)
        atomic_write_json(output / 'summary.json', summary, default=float)
        with atomic_write(output / 'history.csv', newline='') as file:
            result.history.to_csv(file, index=False)
        summary['output'] = str(output)
    print(json.dumps(summary, default=float))
    return 0

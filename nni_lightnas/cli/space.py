"""``nni-lightnas space show``: print a preset's layers and candidates."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest='action', metavar='ACTION')
    actions.required = True
    show = actions.add_parser('show', help='print the layers of a preset')
    show.add_argument('--preset', default='fashion_mnist', help='imagenet, cifar10, fashion_mnist or tiny')
    show.add_argument('--width-mult', type=float, default=None, help='channel width multiplier')
    show.add_argument('--json', action='store_true', help='print one JSON object instead of a table')


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from nni_lightnas.search_spaces import OP_NAMES, get_preset, layer_specs
    config = get_preset(args.preset, width_mult=args.width_mult)
    specs = layer_specs(config)
    table = pd.DataFrame([{'label': s.label, 'stage': s.stage, 'in_chs': s.in_chs, 'out_chs': s.out_chs,
                           'stride': s.stride, 'input_size': s.input_size} for s in specs])
    summary = {'preset': config.name, 'input': [config.in_chans, config.input_size, config.input_size],
               'num_classes': config.num_classes, 'num_layers': len(specs), 'ops': list(OP_NAMES),
               'num_architectures': len(OP_NAMES) ** len(specs), 'fingerprint': config.fingerprint()}
    if args.json:
        print(json.dumps({**summary, 'layers': table.to_dict(orient='records')}))
        return 0
    print(f"preset {config.name}: input {config.in_chans}x{config.input_size}x{config.input_size}, "
          f"{config.num_classes} classes, width x{config.width_mult}, fingerprint {summary['fingerprint']}")
    print(f"stem 3x3 s{config.stem_stride} -> {config.channels(config.stem_chs)}, fixed {config.first_block}")
    print(table.to_string(index=False))
    print(f"candidates per layer: {', '.join(OP_NAMES)}")
    print(f"{len(OP_NAMES)}^{len(specs)} = {summary['num_architectures']:.3g} architectures")
    return 0

"""``nni-lightnas export``: a LightNet to ONNX, checked against PyTorch."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--preset', default='fashion_mnist', help='imagenet, cifar10, fashion_mnist or tiny')
    parser.add_argument('--arch', required=True, help="LightNet: op names joined by '-' (e.g. MBK3E6-skip-...)")
    parser.add_argument('--batch', type=int, default=1, help='batch size of the exported input (default 1)')
    parser.add_argument('--width-mult', type=float, default=None, help='channel width multiplier')
    parser.add_argument('-o', '--output', required=True, help='ONNX file to write')


def run(args: argparse.Namespace) -> int:
    from nni_lightnas.export import check_onnx_parity, export_onnx
    from nni_lightnas.search_spaces import LightNet
    from nni_lightnas.atomic import check_output_path
    if args.batch < 1:
        raise ValueError(f'--batch must be a positive integer, got {args.batch}')
    check_output_path(args.output, what='--output')
    net = LightNet(args.arch, args.preset, width_mult=args.width_mult)
    input_shape = (args.batch, *net.input_shape)
    path = export_onnx(net, args.output, input_shape)
    difference = check_onnx_parity(net, path, input_shape)
    print(json.dumps({'output': str(path), 'preset': net.config.name, 'arch': '-'.join(net.arch),
                      'input_shape': list(input_shape), 'params': sum(p.numel() for p in net.parameters()),
                      'max_abs_diff': difference}))
    return 0

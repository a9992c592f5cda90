"""``nni-lightnas demo``: the space, one sampled LightNet, its ONNX export and its latency here."""

from __future__ import annotations

import argparse
import json
import random


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--preset', default='fashion_mnist', help='imagenet, cifar10, fashion_mnist or tiny')
    parser.add_argument('--seed', type=int, default=0, help='seed of the sampled architecture')
    parser.add_argument('--batch', type=int, default=32, help='batch of the timed input (default 32)')
    parser.add_argument('--output', default='runs/demo', help='directory for the ONNX file')


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nni_lightnas.export import check_onnx_parity, export_onnx
    from nni_lightnas.latency.local import LocalDevice
    from nni_lightnas.search_spaces import LightNASSpace, encode_arch

    space = LightNASSpace(args.preset)
    rng = random.Random(args.seed)
    sample = {label: rng.choice(space.candidates[label]) for label in space.labels}
    arch = encode_arch([sample[label] for label in space.labels])
    net = space.freeze(sample)
    input_shape = (args.batch, space.config.in_chans, space.config.input_size, space.config.input_size)
    path = export_onnx(net, Path(args.output) / 'sampled.onnx', input_shape)
    difference = check_onnx_parity(net, path, input_shape)
    result = LocalDevice().measure(path)
    print(f'space {space.config.name}: {len(space.labels)} searchable layers x 7 ops')
    print(f'sampled LightNet: {arch}')
    print(f'exported {path} (max |onnx - torch| = {difference:.2e})')
    print(json.dumps({'arch': arch, 'onnx': str(path), **result.to_dict()}))
    return 0

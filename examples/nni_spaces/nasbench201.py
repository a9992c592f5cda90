"""NNI's NAS-Bench-201 hub space, profiled and searched with LightNAS (no subclassing).

NAS-Bench-201 cells share their six edge labels (``cell/0_1`` ... ``cell/2_3``): one choice
decides that edge in every cell. The LUT sums each (label, op) over all the cells it decides
(its ``instances`` column), and the search draws one op per label. Inputs are generated
3x32x32 images (10 classes) so the example needs no download; the width is small for a CPU.

Run from the repository root::

    python examples/nni_spaces/nasbench201.py --output runs/nb201 --quick
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from nni.nas.hub.pytorch import NasBench201
from torch.utils.data import TensorDataset

from nni_lightnas.latency import LocalDevice
from nni_lightnas.latency.lut_build import build_lut
from nni_lightnas.search import SearchConfig, run_search


def generated_images(num_examples: int, *, seed: int = 0, num_classes: int = 10) -> TensorDataset:
    """Class-dependent colour blobs on noise: a learnable 10-class set of 3x32x32 images."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (num_examples,), generator=generator)
    images = 0.5 * torch.randn(num_examples, 3, 32, 32, generator=generator)
    for cls in range(num_classes):
        row, col = divmod(cls, 4)
        images[labels == cls, cls % 3, 8 * row:8 * row + 8, 8 * col:8 * col + 8] += 1.5
    return TensorDataset(images, labels)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output', default='runs/nb201')
    parser.add_argument('--quick', action='store_true', help='one cell per stack, few examples and epochs')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    space_args = {'stem_out_channels': 8, 'num_modules_per_stack': 1 if args.quick else 3}
    lut = build_lut(NasBench201(**space_args), LocalDevice(num_runs=20 if args.quick else 100),
                    example_input=torch.zeros(8, 3, 32, 32), path=Path(args.output) / 'lut.csv')
    print(json.dumps({'instances': lut.metadata['instances'], 'range_ms': lut.latency_range(),
                      'whole_net_check': lut.metadata['whole_net_check']}))
    fastest_ms, slowest_ms = lut.latency_range()
    config = SearchConfig(target_ms=fastest_ms + 0.5 * (slowest_ms - fastest_ms), epochs=3 if args.quick else 12,
                          warmup_epochs=1 if args.quick else 2, batch_size=64)
    summary = run_search(config, lut, Path(args.output) / 'search', space=NasBench201(**space_args),
                         dataset=generated_images(512 if args.quick else 8192))
    print(json.dumps({key: summary[key] for key in ('target_ms', 'predicted_ms', 'arch', 'argmax_ms',
                                                     'within_tolerance', 'nearest_feasible')}))


if __name__ == '__main__':
    main()

"""NNI's ProxylessNAS hub space, profiled and searched with LightNAS (no subclassing).

ProxylessNAS chooses, in each of stages 2-6, a depth of 1-4 blocks (``Repeat``, labels
``s2_depth`` ... ``s6_depth``) and each block's kernel size and expansion (``LayerChoice``, labels
``s2_i0`` ... ``s7_i0``, ops ``k3e3`` ... ``k7e6``). The LUT times every block's candidates as
its own ONNX model and records the depths as gates: a block past its stage's chosen depth
counts 0, in the prediction, the expected latency the search penalises and the landing. The
search samples one depth per stage and one op per block (single path). Inputs are generated
3x32x32 images (10 classes) so the example needs no download; the width (``--width-mult``) is
small for a CPU.

Run from the repository root::

    python examples/nni_spaces/proxylessnas.py --output runs/proxyless --quick

It writes ``lut.csv`` (resumable) and one search directory per target (25, 50 and 75% of the
latency range), and prints one JSON line for the table and one per target.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from nni.nas.hub.pytorch import ProxylessNAS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nasbench201 import generated_images  # noqa: E402

from nni_lightnas.latency import LocalDevice  # noqa: E402
from nni_lightnas.latency.lut_build import build_lut  # noqa: E402
from nni_lightnas.search import SearchConfig, run_search  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output', default='runs/proxyless')
    parser.add_argument('--width-mult', type=float, default=0.25, help="ProxylessNAS's width multiplier")
    parser.add_argument('--quick', action='store_true', help='few timing runs, examples and epochs')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    space_args = {'width_mult': args.width_mult, 'num_labels': 10}
    output = Path(args.output)
    lut = build_lut(ProxylessNAS(**space_args), LocalDevice(num_runs=20 if args.quick else 100),
                    example_input=torch.zeros(8, 3, 32, 32), path=output / 'lut.csv')
    print(json.dumps({'depths': {gate.label: gate.ops for gate in lut.depth_gates}, 'range_ms': lut.latency_range(),
                      'whole_net_check': lut.metadata['whole_net_check']}))
    dataset = generated_images(512 if args.quick else 8192)
    fastest_ms, slowest_ms = lut.latency_range()
    for quantile in (0.25, 0.5, 0.75):
        config = SearchConfig(target_ms=fastest_ms + quantile * (slowest_ms - fastest_ms),
                              epochs=3 if args.quick else 12, warmup_epochs=1 if args.quick else 2, batch_size=64,
                              seed=0)
        summary = run_search(config, lut, output / f'search_q{int(100 * quantile)}',
                             space=ProxylessNAS(**space_args), dataset=dataset)
        print(json.dumps({key: summary[key] for key in ('target_ms', 'predicted_ms', 'arch', 'argmax_ms',
                                                         'within_tolerance', 'nearest_feasible')}))


if __name__ == '__main__':
    main()

"""NNI trial of stage 2: build a LightNet at the tuner's widths, score it with BTE, report latency.

Run by an experiment config (``examples/fashion_mnist/evolve.yml``)::

    python -m nni_lightnas.trials.bte --lightnet ARCH --preset fashion_mnist --latency flops

It reads the widths with ``nni.get_next_parameter()`` (or ``--params JSON`` outside NNI),
trains for ``--batches`` batches (:func:`~nni_lightnas.bte.batchwise_training_estimation`,
inheriting weights from ``--supernet`` when given), and reports one final result::

    {"default": BTE score, "bte_accuracy": ..., "bte_loss": ..., "latency_ms": ...,
     "latency_source": "device", "latency_device": "ssh://...", "params_m": ..., "flops_m": ...,
     "bte_seconds": ...}

``latency_ms`` is in ms rounded to the microsecond; ``latency_source`` says where it came
from: ``device`` (measured on ``latency_device``, the pipeline's default), ``flops`` (a MACs
line), ``measured`` (timed on this host) or ``model`` (another model).

so NNI's web UI shows every number (its table and its "default metric" plot use
``default``). ``latency_ms`` comes from the same latency model as the tuner's budget
check (``--latency`` and ``--latency-args``, as in the tuner's ``classArgs``); with
``--measure`` the net is also timed on this machine (``measured_latency_ms``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from typing import Any, Sequence

__all__ = ['build_parser', 'run_trial', 'main']

_logger = logging.getLogger(__name__)

#: Score reported when training diverged (finite, so NNI's JSON and web UI accept it).
DIVERGED_SCORE = -1000.0


def build_parser() -> argparse.ArgumentParser:
    from nni_lightnas import bte
    parser = argparse.ArgumentParser(prog='python -m nni_lightnas.trials.bte', description=__doc__.split('\n\n')[0])
    parser.add_argument('--lightnet', required=True, help='the LightNet whose widths are searched (ops joined by -)')
    parser.add_argument('--preset', default='fashion_mnist', help='preset of the LightNet (default fashion_mnist)')
    parser.add_argument('--params', default=None, help='widths as JSON (instead of nni.get_next_parameter())')
    parser.add_argument('--data', default='fashion_mnist', choices=('fashion_mnist', 'cifar10', 'imagenet', 'synthetic'),
                        help='training data of BTE (synthetic: random tensors, for smoke tests)')
    parser.add_argument('--data-dir', default=None, help='dataset directory (default: where it is installed)')
    parser.add_argument('--data-limit', type=int, default=None, help='use only the first N training examples')
    parser.add_argument('--batches', type=int, default=bte.DEFAULT_BATCHES, help='BTE training batches B')
    parser.add_argument('--last', type=int, default=bte.DEFAULT_LAST, help='score over the last K batches')
    parser.add_argument('--batch-size', type=int, default=bte.DEFAULT_BATCH_SIZE)
    parser.add_argument('--optimizer', default=bte.DEFAULT_OPTIMIZER, choices=bte.OPTIMIZERS)
    parser.add_argument('--lr', type=float, default=bte.DEFAULT_LR)
    parser.add_argument('--metric', default=bte.DEFAULT_METRIC, choices=bte.METRICS)
    parser.add_argument('--seed', type=int, default=0, help='seed of initialisation and batch order')
    parser.add_argument('--supernet', default=None, help='state dict (torch.save) of a wider net to inherit from')
    parser.add_argument('--latency', default='flops', help="'flops', 'measured', a JSON path or module:factory")
    parser.add_argument('--latency-args', default='{}', help='JSON keyword arguments of the latency model')
    parser.add_argument('--measure', action='store_true', help='also time the net on this machine (ONNX Runtime)')
    parser.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    return parser


def _dataset(args: argparse.Namespace, config):
    import torch
    if args.data == 'synthetic':
        generator = torch.Generator().manual_seed(args.seed)
        size = args.data_limit or 512
        shape = (size, config.in_chans, config.input_size, config.input_size)
        return torch.utils.data.TensorDataset(torch.randn(shape, generator=generator),
                                              torch.randint(0, config.num_classes, (size,), generator=generator))
    expected_shape = {'fashion_mnist': (1, 28), 'cifar10': (3, 32)}.get(args.data)
    if expected_shape is not None and (config.in_chans, config.input_size) != expected_shape:
        raise ValueError(f'--data {args.data} needs a {expected_shape[1]}x{expected_shape[1]}x{expected_shape[0]} '
                         f'preset; {config.name} takes {config.input_size}x{config.input_size}x{config.in_chans}')
    if args.data == 'imagenet' and config.in_chans != 3:
        raise ValueError(f'--data imagenet needs an RGB preset; {config.name} has {config.in_chans} channels')
    from nni_lightnas.data import load_for_preset
    return load_for_preset(config, 'train', args.data_dir, limit=args.data_limit)


def run_trial(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    """Build, score and time one candidate; returns the final-result dict (not reported)."""
    import torch

    from nni_lightnas.bte import batchwise_training_estimation
    from nni_lightnas.flops import count_macs_params
    from nni_lightnas.latency.channel import make_channel_latency_model

    torch.set_num_threads(args.threads)
    latency_model = make_channel_latency_model(args.latency, args.lightnet, args.preset,
                                               **json.loads(args.latency_args))
    torch.manual_seed(args.seed)
    net = latency_model.build(params)
    cost = count_macs_params(net, latency_model.input_shape[1:])
    supernet_state = None
    if args.supernet:
        supernet_state = torch.load(args.supernet, map_location='cpu', weights_only=True)
        if isinstance(supernet_state, dict) and 'state_dict' in supernet_state:
            supernet_state = supernet_state['state_dict']
    dataset = _dataset(args, latency_model.config)
    result = batchwise_training_estimation(net, dataset, batches=args.batches, last=args.last,
                                           batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                                           metric=args.metric, seed=args.seed, supernet_state=supernet_state)
    score = result.score if math.isfinite(result.score) else DIVERGED_SCORE
    metrics: dict[str, Any] = {
        'default': score,
        'bte_accuracy': result.accuracy,
        'bte_loss': result.loss if math.isfinite(result.loss) else None,
        'latency_ms': round(float(latency_model(params)), 3),  # ms to the microsecond: what a device resolves
        'latency_source': _latency_source(args.latency, latency_model),
        'params_m': cost.params_m,
        'flops_m': cost.flops_m,
        'bte_seconds': result.seconds,
        'bte_batches': result.batches,
        'inherited_tensors': result.inherited,
    }
    if args.measure:
        from nni_lightnas.latency.local import LocalDevice
        measured = LocalDevice(num_runs=50, num_warmup_runs=5).measure(net, latency_model.input_shape)
        metrics['measured_latency_ms'] = round(measured.median_ms, 3)
    device = getattr(latency_model, 'device', None)
    if device is not None:
        metrics['latency_device'] = device.name
    return metrics


def _latency_source(spec: str, latency_model: Any) -> str:
    """``flops``, ``measured`` (timed on this host), ``device`` (timed on the model's device) or ``model``."""
    from nni_lightnas.latency.channel import MeasuredChannelLatency
    if spec in ('flops', 'measured'):
        return spec
    return 'device' if isinstance(latency_model, MeasuredChannelLatency) else 'model'


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    import nni
    start = time.perf_counter()
    if args.params is not None:
        params = json.loads(args.params)
    else:
        params = nni.get_next_parameter() or {}
    _logger.info('widths: %s', params)
    metrics = run_trial(args, params)
    metrics['trial_seconds'] = time.perf_counter() - start
    nni.report_final_result(metrics)
    print(json.dumps(metrics), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

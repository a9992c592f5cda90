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
import shlex
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Sequence

from nni_lightnas import bte

__all__ = ['BteTrialConfig', 'build_parser', 'run_trial', 'main']

_logger = logging.getLogger(__name__)

#: Score reported when training diverged (finite, so NNI's JSON and web UI accept it).
DIVERGED_SCORE = -1000.0
#: Training data a trial accepts (synthetic: random tensors, for smoke tests).
DATA_CHOICES = ('fashion_mnist', 'cifar10', 'imagenet', 'synthetic')


@dataclass
class BteTrialConfig:
    """Settings of one stage-2 trial: the LightNet, its BTE training and its latency model.

    Attributes
    ----------
    lightnet, preset
        The LightNet whose widths the tuner proposes, and its preset.
    data, data_dir, data_limit
        BTE's training data (``DATA_CHOICES``), its directory (default: where it is installed)
        and how many of its first examples are used (``None``: all).
    batches, last, batch_size, optimizer, lr, metric
        :func:`~nni_lightnas.bte.batchwise_training_estimation`'s.
    seed
        Seed of the initialisation and the batch order.
    supernet
        State dict (``torch.save``) of a wider net to inherit weights from.
    latency, latency_args
        The latency model of the reported ``latency_ms``, the tuner's own
        (:func:`~nni_lightnas.latency.channel.make_channel_latency_model`).
    measure
        Also time the net on this machine (ONNX Runtime), reported as ``measured_latency_ms``.
    threads
        Torch threads of the training.

    Examples
    --------
    >>> config = BteTrialConfig(lightnet='MBK3E3-skip-MBK5E6', preset='tiny', data='synthetic', batches=4, last=2)
    >>> BteTrialConfig.from_args(build_parser().parse_args(config.flags())) == config
    True
    """

    lightnet: str
    preset: str = 'fashion_mnist'
    data: str = 'fashion_mnist'
    data_dir: str | None = None
    data_limit: int | None = None
    batches: int = bte.DEFAULT_BATCHES
    last: int = bte.DEFAULT_LAST
    batch_size: int = bte.DEFAULT_BATCH_SIZE
    optimizer: str = bte.DEFAULT_OPTIMIZER
    lr: float = bte.DEFAULT_LR
    metric: str = bte.DEFAULT_METRIC
    seed: int = 0
    supernet: str | None = None
    latency: str = 'flops'
    latency_args: dict[str, Any] = field(default_factory=dict)
    measure: bool = False
    threads: int = 1

    def __post_init__(self) -> None:
        choices = {'data': DATA_CHOICES, 'optimizer': bte.OPTIMIZERS, 'metric': bte.METRICS}
        for name, accepted in choices.items():
            if getattr(self, name) not in accepted:
                raise ValueError(f'{name} must be one of {", ".join(accepted)}, got {getattr(self, name)!r}')
        for name in ('batches', 'last', 'batch_size', 'threads'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
        if self.last > self.batches:
            raise ValueError(f'last must be at most batches={self.batches}, got {self.last}')
        if self.data_limit is not None and (isinstance(self.data_limit, bool) or not isinstance(self.data_limit, int)
                                            or self.data_limit < 1):
            raise ValueError(f'data_limit must be an integer >= 1 or None, got {self.data_limit!r}')
        if not isinstance(self.latency_args, dict):
            raise ValueError(f'latency_args must be a dict of keyword arguments, got {self.latency_args!r}')

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BteTrialConfig:
        """The config of the parsed command line (:func:`build_parser`)."""
        values = {item.name: getattr(args, item.name) for item in fields(cls)}
        try:
            values['latency_args'] = json.loads(args.latency_args) if isinstance(args.latency_args, str) \
                else dict(args.latency_args or {})
        except json.JSONDecodeError as error:
            raise ValueError(f'--latency-args must be a JSON object, got {args.latency_args!r} ({error})') from None
        return cls(**values)

    def flags(self) -> list[str]:
        """The command-line flags of this config (defaults left out), for ``python -m nni_lightnas.trials.bte``."""
        defaults = {item.name: item.default for item in fields(self) if item.default is not MISSING}
        parts: list[str] = []
        for name, value in asdict(self).items():
            if value is None or value is False or (name in defaults and value == defaults[name]) \
                    or (name == 'latency_args' and not value):
                continue
            parts.append('--' + name.replace('_', '-'))
            if value is not True:
                parts.append(json.dumps(value) if isinstance(value, dict) else str(value))
        return parts

    def command(self, python: str) -> str:
        """The shell command that runs this trial under NNI (``trialCommand``)."""
        return ' '.join(shlex.quote(part) for part in [python, '-m', 'nni_lightnas.trials.bte', *self.flags()])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m nni_lightnas.trials.bte', description=__doc__.split('\n\n')[0])
    parser.add_argument('--lightnet', required=True, help='the LightNet whose widths are searched (ops joined by -)')
    parser.add_argument('--preset', default='fashion_mnist', help='preset of the LightNet (default fashion_mnist)')
    parser.add_argument('--params', default=None, help='widths as JSON (instead of nni.get_next_parameter())')
    parser.add_argument('--data', default='fashion_mnist', choices=DATA_CHOICES,
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


def _dataset(config: BteTrialConfig, space_config):
    import torch
    if config.data == 'synthetic':
        generator = torch.Generator().manual_seed(config.seed)
        size = config.data_limit or 512
        shape = (size, space_config.in_chans, space_config.input_size, space_config.input_size)
        return torch.utils.data.TensorDataset(torch.randn(shape, generator=generator),
                                              torch.randint(0, space_config.num_classes, (size,), generator=generator))
    expected_shape = {'fashion_mnist': (1, 28), 'cifar10': (3, 32)}.get(config.data)
    if expected_shape is not None and (space_config.in_chans, space_config.input_size) != expected_shape:
        raise ValueError(f'data {config.data} needs a {expected_shape[1]}x{expected_shape[1]}x{expected_shape[0]} '
                         f'preset; {space_config.name} takes {space_config.input_size}x{space_config.input_size}x'
                         f'{space_config.in_chans}')
    if config.data == 'imagenet' and space_config.in_chans != 3:
        raise ValueError(f'data imagenet needs an RGB preset; {space_config.name} has {space_config.in_chans} channels')
    from nni_lightnas.data import load_for_preset
    return load_for_preset(space_config, 'train', config.data_dir, limit=config.data_limit)


def run_trial(config: BteTrialConfig, params: dict[str, Any]) -> dict[str, Any]:
    """Build, score and time one candidate; returns the final-result dict (not reported).

    Runs with ``config.threads`` torch threads and the seed ``config.seed``; the caller's thread
    count and random state are restored afterwards (the pipeline runs trials in its own process).

    Examples
    --------
    >>> config = BteTrialConfig(lightnet='MBK3E3-skip-MBK5E6', preset='tiny', data='synthetic', data_limit=64,
    ...                         batches=2, last=1, latency_args={'intercept_ms': 0.0, 'ms_per_mmac': 0.2})
    >>> metrics = run_trial(config, {'stage0_out_chs': 8})
    >>> metrics['latency_source'], metrics['latency_ms'] > 0
    ('flops', True)
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with torch.random.fork_rng(devices=[]):
            return _score(config, params)
    finally:
        torch.set_num_threads(threads)


def _score(config: BteTrialConfig, params: dict[str, Any]) -> dict[str, Any]:
    import torch

    from nni_lightnas.bte import batchwise_training_estimation
    from nni_lightnas.flops import count_macs_params
    from nni_lightnas.latency.channel import make_channel_latency_model

    latency_model = make_channel_latency_model(config.latency, config.lightnet, config.preset,
                                               **config.latency_args)
    torch.manual_seed(config.seed)
    net = latency_model.build(params)
    cost = count_macs_params(net, latency_model.input_shape[1:])
    supernet_state = None
    if config.supernet:
        supernet_state = torch.load(config.supernet, map_location='cpu', weights_only=True)
        if isinstance(supernet_state, dict) and 'state_dict' in supernet_state:
            supernet_state = supernet_state['state_dict']
    dataset = _dataset(config, latency_model.config)
    result = batchwise_training_estimation(net, dataset, batches=config.batches, last=config.last,
                                           batch_size=config.batch_size, optimizer=config.optimizer, lr=config.lr,
                                           metric=config.metric, seed=config.seed, supernet_state=supernet_state)
    score = result.score if math.isfinite(result.score) else DIVERGED_SCORE
    metrics: dict[str, Any] = {
        'default': score,
        'bte_accuracy': result.accuracy,
        'bte_loss': result.loss if math.isfinite(result.loss) else None,
        'latency_ms': round(float(latency_model(params)), 3),  # ms to the microsecond: what a device resolves
        'latency_source': _latency_source(config.latency, latency_model),
        'params_m': cost.params_m,
        'flops_m': cost.flops_m,
        'bte_seconds': result.seconds,
        'bte_batches': result.batches,
        'inherited_tensors': result.inherited,
    }
    if config.measure:
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
    config = BteTrialConfig.from_args(args)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    import nni
    start = time.perf_counter()
    if args.params is not None:
        params = json.loads(args.params)
    else:
        params = nni.get_next_parameter() or {}
    _logger.info('widths: %s', params)
    metrics = run_trial(config, params)
    metrics['trial_seconds'] = time.perf_counter() - start
    nni.report_final_result(metrics)
    print(json.dumps(metrics), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

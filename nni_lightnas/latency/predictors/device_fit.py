"""A device's latency model from a few measured networks: ``nni-lightnas profile --predictor KIND``.

Instead of a per-op table, measure ``num_samples`` whole networks of a preset on the device,
chosen spread over the space's cost range (:func:`~.spread.spread_architectures`), and fit a
predictor on them. With ``kind='transfer'`` the predictor is pre-trained on other devices'
measurements of the same space (``pretrain_data``, default the shipped table in the space's
encoding, :func:`~.pretrain.shipped_pretrain_table`), which is what makes 20 measurements
enough. The result is saved as a predictor directory, which ``nni-lightnas search --latency DIR``
and :func:`~nni_lightnas.latency.loading.load_latency_model` load as the search's
differentiable latency model, with two more files beside ``predictor.json``:

* ``measured.csv``: the measured networks (``arch``, ``median_ms``, ``p25_ms``, ``p75_ms``),
  also a column another board's ``--pretrain-data`` can use;
* ``profile.json``: preset, device, batch, kind, sample count, pretraining columns, and the
  accuracy to expect on an unseen device from the leave-one-device-out benchmark
  (:func:`~.expected_accuracy.expected_accuracy`).

Examples
--------
>>> from nni_lightnas.latency.device_pool import make_device  # doctest: +SKIP
>>> config = DevicePredictorConfig(preset='fashion_mnist', kind='transfer', num_samples=20,
...                                pretrain_data='runs/other_boards.csv')  # doctest: +SKIP
>>> result = fit_device_predictor(config, make_device('local'))  # doctest: +SKIP
>>> result.save('runs/predictor')  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ..device import Device
from ..graphs import LightNetGraphSpace
from .base import PRETRAINED_PREDICTORS, _known_kinds, make_predictor
from .expected_accuracy import expected_accuracy
from .latency_model import PredictorLatencyModel
from .pretrain import PretrainTable, read_pretrain_table, shipped_pretrain_table
from .spread import spread_architectures

__all__ = ['DevicePredictorConfig', 'DevicePredictorResult', 'fit_device_predictor', 'MEASURED_FILE',
           'PROFILE_FILE']

_logger = logging.getLogger(__name__)

MEASURED_FILE = 'measured.csv'
PROFILE_FILE = 'profile.json'


@dataclass(frozen=True)
class DevicePredictorConfig:
    """What :func:`fit_device_predictor` measures and fits.

    Attributes
    ----------
    preset
        LightNAS preset whose networks are measured.
    kind
        Predictor kind (``transfer``, ``ensemble``, ``additive``, ``mlp``, ``gnn`` or ``best``:
        ``transfer`` with pretraining data, ``ensemble`` without).
    num_samples
        Networks measured on the device, at least 2 (the cheapest and the dearest).
    batch
        Batch of every measured input (default: :func:`~nni_lightnas.latency.lut_build.default_batch`).
    rounds
        Interleaved repeats of the measurements (median over rounds).
    seed
        Seed of the spread networks and of the fit.
    pretrain_data
        CSV of other devices measured on this preset's LightNet strings (``transfer``, ``best``);
        default for ``transfer``: the shipped table in the space's encoding, if any.
    pretrain_columns
        Pre-train on these columns only (default every latency column).
    options
        Predictor options (see each kind), e.g. ``{'pretrain_epochs': 200}``.

    Examples
    --------
    >>> DevicePredictorConfig(num_samples=0)
    Traceback (most recent call last):
    ...
    ValueError: num_samples must be an integer >= 2 (the cheapest and the dearest network), got num_samples=0
    """

    preset: str = 'fashion_mnist'
    kind: str = 'transfer'
    num_samples: int = 20
    batch: int | None = None
    rounds: int = 1
    seed: int = 0
    pretrain_data: str | None = None
    pretrain_columns: tuple[str, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, int) or self.num_samples < 2:
            raise ValueError(f'num_samples must be an integer >= 2 (the cheapest and the dearest network), '
                             f'got num_samples={self.num_samples!r}')
        kinds = _known_kinds() + ['best']
        if self.kind not in kinds:
            raise ValueError(f'unknown predictor kind {self.kind!r}; accepted: {", ".join(kinds)}')
        if self.batch is not None and self.batch < 1:
            raise ValueError(f'batch must be >= 1, got batch={self.batch}')
        if self.rounds < 1:
            raise ValueError(f'rounds must be >= 1, got rounds={self.rounds}')
        if self.pretrain_data is not None and self.kind not in (*PRETRAINED_PREDICTORS, 'best'):
            raise ValueError(f'pretrain_data is used by kind transfer or best, not {self.kind!r}')
        if self.pretrain_columns and self.pretrain_data is None and self.kind not in PRETRAINED_PREDICTORS:
            raise ValueError('pretrain_columns needs pretrain_data (or kind transfer, which reads the shipped table)')


@dataclass
class DevicePredictorResult:
    """A fitted device predictor, the networks it was fitted on, and what accuracy to expect.

    Attributes
    ----------
    model
        The predictor as the search's latency model.
    measured
        One row per measured network: ``arch``, ``median_ms``, ``p25_ms``, ``p75_ms``.
    profile
        Preset, device, batch, kind, sample count, pretraining source and ``expected_accuracy``
        (``None`` for a kind the benchmark did not validate).
    """

    model: PredictorLatencyModel
    measured: pd.DataFrame
    profile: dict[str, Any]

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the predictor directory, ``measured.csv`` and ``profile.json``."""
        directory = self.model.predictor.save(directory)
        self.measured.to_csv(directory / MEASURED_FILE, index=False)
        (directory / PROFILE_FILE).write_text(json.dumps(self.profile, indent=1, default=float) + '\n')
        return directory


def _pretraining(config: DevicePredictorConfig, space: LightNetGraphSpace) -> PretrainTable | None:
    columns = list(config.pretrain_columns) if config.pretrain_columns else None
    if config.pretrain_data is not None:
        return read_pretrain_table(config.pretrain_data, columns=columns, space=space)
    if config.kind in PRETRAINED_PREDICTORS:
        return shipped_pretrain_table(space, columns=columns)
    return None


def fit_device_predictor(config: DevicePredictorConfig, device: Device) -> DevicePredictorResult:
    """Measure ``config.num_samples`` spread networks on ``device`` and fit the predictor on them.

    The pretraining table is read (and checked) before anything is measured, so a missing or
    foreign table costs no device time.
    """
    from ..lut_build import default_batch
    from ..whole_network import measure_archs
    space = LightNetGraphSpace(config.preset)
    pretrain = _pretraining(config, space)
    options = dict(config.options)
    if pretrain is not None:
        options['pretrain'] = pretrain
    predictor = make_predictor(config.kind, space, seed=config.seed, **options)
    archs = spread_architectures(space, config.num_samples, seed=config.seed)
    batch = default_batch(config.preset) if config.batch is None else int(config.batch)
    _logger.info('measuring %d networks of %s on %s (batch %d)', len(archs), config.preset, device.name, batch)
    rows = measure_archs(config.preset, archs, device, batch=batch, rounds=config.rounds)
    measured = pd.DataFrame([{key: row[key] for key in ('arch', 'median_ms', 'p25_ms', 'p75_ms')} for row in rows])
    predictor.fit(list(measured['arch']), measured['median_ms'].to_numpy())
    model = PredictorLatencyModel(predictor)
    profile = {'preset': config.preset, 'device': device.name, 'batch': batch, 'threads': device.threads,
               'num_runs': device.num_runs, 'num_warmup_runs': device.num_warmup_runs, 'rounds': config.rounds,
               'kind': predictor.kind, 'num_samples': len(measured), 'seed': config.seed,
               'pretrain_data': str(pretrain.source) if pretrain is not None else None,
               'pretrain_columns': list(pretrain.columns) if pretrain is not None else None,
               'expected_accuracy': expected_accuracy(predictor.kind, len(measured)),
               'config': {key: value for key, value in asdict(config).items() if key != 'options'}}
    return DevicePredictorResult(model, measured, profile)

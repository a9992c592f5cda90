"""Latency of width configurations of one LightNet (the stage-2 channel space).

A per-op table of stage 1 does not cover the channel space (widths change every op's
cost), so stage 2 asks a :class:`ChannelLatencyModel`: a callable from a channel sample
(``{'stage0_out_chs': 24, 'layer00_mid_chs': 48, ...}``, labels of
:func:`~nni_lightnas.search_spaces.channel_space.channel_choices`) to milliseconds.

* :class:`MeasuredChannelLatency` exports the LightNet at those widths and times it on a
  :class:`~nni_lightnas.latency.device.Device`; every measurement is appended to a JSON-lines
  cache, so nothing measured is lost and concurrent trials share it.
* :class:`FlopsChannelLatency`: ``intercept_ms + ms_per_mmac * MMACs``, given or calibrated
  from a few measurements (smallest, base and largest widths). Cheap, for tests and for a
  first screen.

:func:`make_channel_latency_model` builds one from the strings of a tuner config
(``'measured'``, ``'flops'``, a saved model's JSON path, or ``'package.module:factory'``).
"""

from __future__ import annotations

import abc
import importlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from nni_lightnas.search_spaces.architecture import ArchLike, decode_arch, encode_arch
from nni_lightnas.search_spaces.channel_space import channel_choices, widths_from_sample
from nni_lightnas.search_spaces.lightnas_space import LightNet, resolve_config
from nni_lightnas.search_spaces.presets import SpaceConfig

from .device import Device

__all__ = ['ChannelLatencyModel', 'FlopsChannelLatency', 'MeasuredChannelLatency', 'make_channel_latency_model',
           'LATENCY_KINDS']

_logger = logging.getLogger(__name__)

#: Names accepted by :func:`make_channel_latency_model` besides a JSON path and ``module:factory``.
LATENCY_KINDS = ('measured', 'flops')


class ChannelLatencyModel(abc.ABC):
    """Latency (ms) of a LightNet at given widths.

    Parameters
    ----------
    arch
        The fixed LightNet (ops).
    preset
        Its preset name or :class:`SpaceConfig`.
    batch_size
        Batch of the timed input (1: one image at a time, the embedded case).
    """

    def __init__(self, arch: ArchLike, preset: str | SpaceConfig = 'fashion_mnist', *, batch_size: int = 1):
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f'batch_size must be a positive integer, got {batch_size!r}')
        self.config = resolve_config(preset)
        self.arch = decode_arch(arch, self.config)
        self.batch_size = batch_size
        self.choices = channel_choices(self.arch, self.config)

    @abc.abstractmethod
    def __call__(self, sample: Mapping[str, Any]) -> float:
        """Latency in ms of the LightNet at the widths of ``sample`` (missing labels: base width)."""

    def build(self, sample: Mapping[str, Any]) -> LightNet:
        """The LightNet at the widths of ``sample``."""
        mid_chs, stage_out_chs = widths_from_sample(self.arch, self.config, _channels(sample))
        return LightNet(self.arch, self.config, mid_chs=mid_chs, stage_out_chs=stage_out_chs)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch_size, self.config.in_chans, self.config.input_size, self.config.input_size)

    def corner_samples(self) -> list[dict[str, int]]:
        """The narrowest, middle and widest samples of the channel space."""
        return [{label: values[pick(len(values))] for label, values in self.choices.items()}
                for pick in (lambda n: 0, lambda n: n // 2, lambda n: n - 1)]

    def describe(self) -> dict[str, Any]:
        """What the model is, for logs and saved tuner state."""
        return {'type': type(self).__name__, 'arch': encode_arch(self.arch), 'preset': self.config.name,
                'batch_size': self.batch_size}

    def __repr__(self) -> str:
        return f'{type(self).__name__}({", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "type")})'


def _channels(sample: Mapping[str, Any]) -> dict[str, int]:
    """Only the channel labels of a sample (NNI may add bookkeeping keys)."""
    return {key: int(value) for key, value in sample.items()
            if key.endswith('_chs') and isinstance(value, (int, float))}


class FlopsChannelLatency(ChannelLatencyModel):
    """``latency_ms = intercept_ms + ms_per_mmac * MMACs`` (MACs of one example times the batch).

    Parameters
    ----------
    arch, preset, batch_size
        See :class:`ChannelLatencyModel`.
    intercept_ms, ms_per_mmac
        The linear model; :meth:`calibrate` fits them from measurements.

    Examples
    --------
    >>> model = FlopsChannelLatency('MBK3E3-skip-MBK5E6', 'tiny', intercept_ms=0.5, ms_per_mmac=0.1)
    >>> narrow, _, wide = model.corner_samples()
    >>> model(narrow) < model(wide)
    True
    """

    def __init__(self, arch: ArchLike, preset: str | SpaceConfig = 'fashion_mnist', *, intercept_ms: float = 0.0,
                 ms_per_mmac: float = 0.1, batch_size: int = 1):
        super().__init__(arch, preset, batch_size=batch_size)
        if not ms_per_mmac > 0:
            raise ValueError(f'ms_per_mmac must be > 0, got {ms_per_mmac!r}')
        self.intercept_ms = float(intercept_ms)
        self.ms_per_mmac = float(ms_per_mmac)
        self._macs_cache: dict[str, float] = {}

    def mmacs(self, sample: Mapping[str, Any]) -> float:
        """Millions of multiply-accumulates of the whole batch."""
        key = json.dumps(_channels(sample), sort_keys=True)
        if key not in self._macs_cache:
            from nni_lightnas.flops import count_macs_params
            self._macs_cache[key] = count_macs_params(self.build(sample), self.input_shape[1:]).macs / 1e6
        return self._macs_cache[key] * self.batch_size

    def __call__(self, sample: Mapping[str, Any]) -> float:
        return self.intercept_ms + self.ms_per_mmac * self.mmacs(sample)

    @classmethod
    def calibrate(cls, arch: ArchLike, preset: str | SpaceConfig = 'fashion_mnist', *,
                  device: Device | ChannelLatencyModel | None = None, samples: Sequence[Mapping[str, Any]] | None = None,
                  batch_size: int = 1) -> 'FlopsChannelLatency':
        """Fit the line to measurements (default: narrowest, middle, widest widths on a fresh local device).

        ``device`` may be a :class:`MeasuredChannelLatency` (its cache is reused).
        """
        model = cls(arch, preset, batch_size=batch_size)
        samples = list(samples) if samples is not None else model.corner_samples()
        if len(samples) < 2:
            raise ValueError(f'calibration needs at least 2 samples, got {len(samples)}')
        if not isinstance(device, ChannelLatencyModel):
            device = MeasuredChannelLatency(arch, preset, device=device, batch_size=batch_size)
        xs = [model.mmacs(sample) for sample in samples]
        ys = [device(sample) for sample in samples]
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        var = sum((x - mean_x) ** 2 for x in xs)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var if var > 0 else 0.0
        if slope <= 0:  # latency not explained by MACs here: fall back to proportional
            slope = mean_y / mean_x
        model.ms_per_mmac, model.intercept_ms = slope, mean_y - slope * mean_x
        _logger.info('calibrated %r from %d measurements', model, len(samples))
        return model

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), 'intercept_ms': self.intercept_ms, 'ms_per_mmac': self.ms_per_mmac}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model as JSON; :func:`make_channel_latency_model` reads it back from the path."""
        from nni_lightnas.atomic import atomic_write_json
        return atomic_write_json(path, {**self.describe(), 'preset_config': self.config.to_dict()}, indent=1)


class MeasuredChannelLatency(ChannelLatencyModel):
    """Export the LightNet at the sampled widths and time it on a device; cache every result.

    Parameters
    ----------
    arch, preset, batch_size
        See :class:`ChannelLatencyModel`.
    device
        Where to measure; default :class:`~nni_lightnas.latency.local.LocalDevice` with 50 runs.
    cache_path
        JSON-lines file of measurements (one record per line: key, sample, latency result),
        appended under a file lock; ``None`` keeps the cache in memory only.

    Examples
    --------
    >>> model = MeasuredChannelLatency('MBK3E3-skip-MBK5E6', 'tiny', cache_path=None)  # doctest: +SKIP
    >>> model(model.corner_samples()[0])  # doctest: +SKIP
    0.08
    """

    def __init__(self, arch: ArchLike, preset: str | SpaceConfig = 'fashion_mnist', *, device: Device | None = None,
                 cache_path: str | os.PathLike | None = None, batch_size: int = 1):
        super().__init__(arch, preset, batch_size=batch_size)
        if device is None:
            from .local import LocalDevice
            device = LocalDevice(num_runs=50, num_warmup_runs=5)
        self.device = device
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self._cache: dict[str, dict[str, Any]] = {}
        self._read_cache()

    def key(self, sample: Mapping[str, Any]) -> str:
        """Cache key: LightNet, space fingerprint, device, threads, batch and the widths."""
        return json.dumps({'arch': encode_arch(self.arch), 'space': self.config.fingerprint(),
                           'device': self.device.name, 'threads': self.device.threads, 'batch': self.batch_size,
                           'widths': _channels(sample)}, sort_keys=True)

    def _read_cache(self) -> None:
        if self.cache_path is None or not self.cache_path.is_file():
            return
        for number, line in enumerate(self.cache_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                self._cache[record['key']] = record
            except (ValueError, KeyError):
                _logger.warning('%s:%d: skipping a line that is not a measurement record', self.cache_path, number)

    def lookup(self, sample: Mapping[str, Any]) -> dict[str, Any] | None:
        """The cached record of ``sample`` (re-reading the file for other processes' measurements), or None."""
        key = self.key(sample)
        if key not in self._cache:
            self._read_cache()
        return self._cache.get(key)

    def __call__(self, sample: Mapping[str, Any]) -> float:
        record = self.lookup(sample)
        if record is None:
            record = self._measure(sample)
        return float(record['latency_ms'])

    def _measure(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        result = self.device.measure(self.build(sample), self.input_shape)
        record = {'key': self.key(sample), 'arch': encode_arch(self.arch), 'preset': self.config.name,
                  'widths': _channels(sample), 'latency_ms': result.median_ms, 'result': result.to_dict()}
        self._cache[record['key']] = record
        if self.cache_path is not None:
            from filelock import FileLock
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.cache_path) + '.lock'):
                with open(self.cache_path, 'a') as handle:
                    handle.write(json.dumps(record) + '\n')
        _logger.info('measured %s: %.3f ms', record['widths'], result.median_ms)
        return record

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), 'device': repr(self.device),
                'cache_path': str(self.cache_path) if self.cache_path else None}


#: ``module:factory`` specs of earlier releases, still accepted in saved configs.
RENAMED_FACTORIES = {'nni_lightnas.latency.devices:measured_channel_latency':
                     'nni_lightnas.latency.channel:measured_channel_latency'}


def make_channel_latency_model(spec: str | ChannelLatencyModel, arch: ArchLike,
                               preset: str | SpaceConfig = 'fashion_mnist', **kwargs: Any) -> ChannelLatencyModel:
    """A channel latency model from a config string.

    Parameters
    ----------
    spec
        ``'measured'`` (:class:`MeasuredChannelLatency`; kwargs ``cache_path``, ``batch_size``,
        ``num_runs``, ``threads``), ``'flops'`` (:class:`FlopsChannelLatency`; kwargs
        ``intercept_ms`` and ``ms_per_mmac``, else calibrated on the local device, with
        ``cache_path`` for those measurements), a JSON file saved by
        :meth:`FlopsChannelLatency.save`, or ``'package.module:factory'`` called as
        ``factory(arch=..., preset=..., **kwargs)``. A model instance is returned as is.
    arch, preset
        The LightNet.

    Examples
    --------
    >>> model = make_channel_latency_model('flops', 'MBK3E3-skip-MBK5E6', 'tiny', intercept_ms=0.2, ms_per_mmac=0.05)
    >>> type(model).__name__
    'FlopsChannelLatency'
    """
    if isinstance(spec, ChannelLatencyModel):
        return spec
    if not isinstance(spec, str) or not spec:
        raise ValueError(f'latency must be one of {LATENCY_KINDS}, a JSON path or "module:factory", got {spec!r}')
    batch_size = int(kwargs.pop('batch_size', 1))
    if spec in LATENCY_KINDS:
        device_args = {key: kwargs.pop(key) for key in ('num_runs', 'num_warmup_runs', 'threads') if key in kwargs}
        cache_path = kwargs.pop('cache_path', None)
        if spec == 'flops' and {'ms_per_mmac'} <= set(kwargs):
            model: ChannelLatencyModel = FlopsChannelLatency(arch, preset, batch_size=batch_size, **kwargs)
            return model
        if kwargs:
            raise ValueError(f'unknown arguments for latency={spec!r}: {sorted(kwargs)}')
        device = None
        if device_args:
            from .local import LocalDevice
            device = LocalDevice(**{'num_runs': 50, 'num_warmup_runs': 5, **device_args})
        measured = MeasuredChannelLatency(arch, preset, device=device, cache_path=cache_path, batch_size=batch_size)
        if spec == 'measured':
            return measured
        return FlopsChannelLatency.calibrate(arch, preset, device=measured, batch_size=batch_size)
    if ':' in spec and not Path(spec).exists():
        spec = RENAMED_FACTORIES.get(spec, spec)
        module_name, _, attribute = spec.partition(':')
        factory = getattr(importlib.import_module(module_name), attribute)
        model = factory(arch=arch, preset=preset, batch_size=batch_size, **kwargs)
        if not callable(model):
            raise ValueError(f'{spec} returned {type(model).__name__}, not a callable latency model')
        return model
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ValueError(f'latency must be one of {LATENCY_KINDS}, a JSON path or "module:factory"; '
                         f'{spec!r} is none of these (no such file)')
    data = json.loads(path.read_text())
    if data.get('type') != 'FlopsChannelLatency':
        raise ValueError(f'{path}: type {data.get("type")!r} is not a saved channel latency model '
                         f'(accepted: FlopsChannelLatency)')
    config = SpaceConfig.from_dict(data['preset_config']) if 'preset_config' in data else preset
    if encode_arch(decode_arch(arch, resolve_config(config))) != data['arch']:
        raise ValueError(f'{path} models LightNet {data["arch"]}, not {encode_arch(decode_arch(arch))}')
    return FlopsChannelLatency(arch, config, intercept_ms=data['intercept_ms'], ms_per_mmac=data['ms_per_mmac'],
                               batch_size=int(data.get('batch_size', batch_size)))


def measured_channel_latency(*, arch: Any, preset: Any = 'fashion_mnist', batch_size: int = 1,
                             device: str | Sequence[str] | Device = 'local',
                             cache_path: str | os.PathLike | None = None, **device_options: Any):
    """Channel latency model of the evolution tuner that measures on any device (an SSH board, a pool).

    For the tuner's ``latency: nni_lightnas.latency.channel:measured_channel_latency`` with
    ``latency_args: {device: 'ssh://nvidia@jetson', remote_python: ..., cache_path: ...}``;
    ``device_options`` go to :func:`make_device` (``num_runs``, ``identity_file``, ...).

    Examples
    --------
    >>> model = measured_channel_latency(arch='MBK3E3-skip-MBK5E6', preset='tiny',
    ...                                  device='ssh://nvidia@jetson', remote_python='/usr/bin/python3')
    >>> model.device.name
    'ssh://nvidia@jetson'
    """
    from .device_pool import make_device
    board = make_device(device, **{'num_runs': 50, 'num_warmup_runs': 5, **device_options})
    return MeasuredChannelLatency(arch, preset, device=board, cache_path=cache_path, batch_size=batch_size)

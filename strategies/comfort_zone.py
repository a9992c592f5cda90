"""Comfort Zone scaling (SurgeNAS, Luo et al. 2023): widen (and deepen) a searched net for free.

Small networks often leave the hardware underused: a few more channels (or one more layer)
may cost no measurable time. After the search, :func:`comfort_zone_scale` grows the
LightNet step by step and keeps each step only while the *measured* latency stays within
``tolerance`` (default 2%) of the original:

1. candidates of one step: the current net with one stage ``width_step`` channels wider
   (the expanded width of inverted residuals follows, ``in_chs * e``), and, with
   ``depth=True``, the current net with one more layer in a stage (a copy of the stage's
   last non-skip op, stride 1, so it keeps the shape);
2. the original, the current net and every candidate are measured together, their runs
   interleaved (:meth:`~nni_lightnas.latency.device.Device.measure_group`), ``rounds`` times;
   the latency ratio of a candidate is the median over rounds of ``candidate / original``
   within a round, so slow drift of a shared machine cancels;
3. among the candidates with ratio <= 1 + tolerance, the one with the most MACs is taken;
   the search stops when none fits or after ``max_steps`` steps;
4. the final net is measured against the original once more (``final_rounds``); while it is
   over the tolerance (a lucky measurement let it through), the last step is undone. When no
   step is left, the result is the original with ratio 1.

:func:`compare_accuracy` trains the original and the scaled net with one budget on a
Fashion-MNIST slice and reports both accuracies.

Examples
--------
>>> from nni_lightnas.latency import LocalDevice
>>> result = comfort_zone_scale('MBK3E6-skip-MBK7E3', 'tiny',  # doctest: +SKIP
...                             LocalDevice(num_runs=50, clock='cpu'))
>>> result.scaled.stage_out_chs, result.latency_ratio  # doctest: +SKIP
((24, 32), 1.012)
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd
import torch
from torch.utils.data import Dataset

from ._training import evaluate_accuracy, train_steps

__all__ = ['ScaledNet', 'ComfortZoneResult', 'comfort_zone_scale', 'compare_accuracy']

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScaledNet:
    """A LightNet with its stage widths and per-stage extra layers.

    Attributes
    ----------
    arch
        Op names of the original searchable layers.
    preset
        The original preset (name or ``SpaceConfig``).
    stage_out_chs
        Output channels of every stage.
    extra_layers
        Layers added at the end of every stage (copies of its last non-skip op).

    Examples
    --------
    >>> net = ScaledNet(('MBK3E6', 'skip', 'MBK7E3'), 'tiny', (16, 32), (0, 1))
    >>> net.ops()
    ('MBK3E6', 'skip', 'MBK7E3', 'MBK7E3')
    >>> net.build()(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])
    """

    arch: tuple[str, ...]
    preset: Any
    stage_out_chs: tuple[int, ...]
    extra_layers: tuple[int, ...]

    def _config(self):
        from nni_lightnas.search_spaces import resolve_config
        return resolve_config(self.preset)

    def config(self):
        """The ``SpaceConfig`` with the extra layers added to its stages."""
        base = self._config()
        stages = tuple(dataclasses.replace(stage, num_layers=stage.num_layers + extra)
                       for stage, extra in zip(base.stages, self.extra_layers))
        return dataclasses.replace(base, stages=stages)

    def ops(self) -> tuple[str, ...]:
        """Op names of all searchable layers, extra layers included."""
        base = self._config()
        ops: list[str] = []
        position = 0
        for stage, extra in zip(base.stages, self.extra_layers):
            stage_ops = list(self.arch[position:position + stage.num_layers])
            position += stage.num_layers
            ops.extend(stage_ops)
            if extra:
                ops.extend([_repeat_op(stage_ops)] * extra)
        return tuple(ops)

    def build(self):
        """The network (a ``LightNet`` of the deepened config with these stage widths)."""
        from nni_lightnas.search_spaces import LightNet
        return LightNet(self.ops(), self.config(), stage_out_chs=list(self.stage_out_chs))

    def describe(self) -> str:
        return f'widths={list(self.stage_out_chs)} extra_layers={list(self.extra_layers)}'


def _repeat_op(stage_ops: Sequence[str]) -> str | None:
    for op in reversed(stage_ops):
        if op != 'skip':
            return op
    return None


def _macs(net: ScaledNet, input_shape: Sequence[int]) -> int:
    from nni_lightnas.flops import count_macs_params
    return count_macs_params(net.build().eval(), (1, *input_shape[1:])).macs


@dataclass
class ComfortZoneResult:
    """What :func:`comfort_zone_scale` found.

    Attributes
    ----------
    original, scaled
        The searched net and the scaled one.
    original_ms, scaled_ms
        Median latencies of both from the final interleaved measurement.
    latency_ratio
        Median over rounds of scaled / original in the final measurement.
    original_macs, scaled_macs
        MACs of one example.
    history
        One row per measured candidate: step, move, widths, extra layers, MACs, ratio, accepted.
    tolerance, input_shape, seconds
        Settings and wall time.
    """

    original: ScaledNet
    scaled: ScaledNet
    original_ms: float
    scaled_ms: float
    latency_ratio: float
    original_macs: int
    scaled_macs: int
    history: pd.DataFrame
    tolerance: float
    input_shape: tuple[int, ...]
    seconds: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {'arch': '-'.join(self.original.arch), 'original_widths': list(self.original.stage_out_chs),
                'scaled_widths': list(self.scaled.stage_out_chs), 'extra_layers': list(self.scaled.extra_layers),
                'scaled_ops': '-'.join(self.scaled.ops()),
                'original_ms': self.original_ms, 'scaled_ms': self.scaled_ms, 'latency_ratio': self.latency_ratio,
                'tolerance': self.tolerance, 'original_macs': self.original_macs, 'scaled_macs': self.scaled_macs,
                'macs_ratio': self.scaled_macs / self.original_macs if self.original_macs else None,
                'steps_accepted': int(self.history['accepted'].sum()) if len(self.history) else 0,
                'input_shape': list(self.input_shape), 'seconds': self.seconds, 'facts': self.facts}


def _measure_ratios(device, nets: Sequence[ScaledNet], input_shape: Sequence[int], rounds: int
                    ) -> tuple[list[float], list[float]]:
    """Median latency and median ratio to ``nets[0]`` of every net, over interleaved rounds."""
    from nni_lightnas.export import onnx_bytes
    models = [onnx_bytes(net.build().eval(), tuple(input_shape)) for net in nets]
    per_round: list[list[float]] = []
    for _ in range(rounds):
        per_round.append([r.median_ms for r in device.measure_group(models, tuple(input_shape))])
    medians = [statistics.median(values[i] for values in per_round) for i in range(len(nets))]
    ratios = [statistics.median(values[i] / values[0] for values in per_round) for i in range(len(nets))]
    return medians, ratios


def comfort_zone_scale(arch: Any, preset: Any, device, *, tolerance: float = 0.02, width_step: int = 8,
                       max_steps: int = 8, depth: bool = False, max_extra_layers: int = 1,
                       batch: int | None = None, rounds: int = 3, final_rounds: int | None = None,
                       stage_out_chs: Sequence[int] | None = None) -> ComfortZoneResult:
    """Grow a LightNet's stage widths (and depth) while measured latency stays within ``tolerance``.

    Parameters
    ----------
    arch
        The searched LightNet (string, op list or NNI sample).
    preset
        Its preset name or ``SpaceConfig``.
    device
        Where to measure (``LocalDevice(clock='cpu')`` on a shared machine).
    tolerance
        Allowed relative latency increase (0.02: at most 2% slower than the original).
    width_step
        Channels added to one stage per step.
    max_steps
        Steps at most.
    depth
        Also try one more layer per stage (up to ``max_extra_layers`` per stage).
    batch
        Batch of the measured input; default 32 for the small presets, else 1.
    rounds, final_rounds
        Interleaved measurement rounds per step, and for the final check (default ``2 * rounds``).
    stage_out_chs
        Starting widths (default: the preset's).

    Returns
    -------
    ComfortZoneResult
    """
    from nni_lightnas.latency.lut_build import default_batch
    from nni_lightnas.search_spaces import decode_arch, resolve_config
    if not 0 <= tolerance < 1:
        raise ValueError(f'tolerance must be in [0, 1), got {tolerance=}')
    if not (isinstance(width_step, int) and width_step >= 1):
        raise ValueError(f'width_step must be a positive integer, got {width_step=}')
    if max_steps < 0 or rounds < 1 or max_extra_layers < 0:
        raise ValueError(f'need max_steps >= 0, rounds >= 1, max_extra_layers >= 0; got {max_steps=}, '
                         f'{rounds=}, {max_extra_layers=}')
    config = resolve_config(preset)
    ops = decode_arch(arch, config)
    widths = tuple(int(w) for w in (stage_out_chs or [stage.out_chs for stage in config.stages]))
    if len(widths) != len(config.stages):
        raise ValueError(f'stage_out_chs needs one entry per stage ({len(config.stages)}), got {list(widths)}')
    batch = default_batch(config) if batch is None else int(batch)
    input_shape = (batch, config.in_chans, config.input_size, config.input_size)
    original = ScaledNet(ops, preset, widths, (0,) * len(widths))
    start = time.perf_counter()
    accepted: list[ScaledNet] = [original]
    macs = {original: _macs(original, input_shape)}
    rows: list[dict[str, Any]] = []
    for step in range(1, max_steps + 1):
        current = accepted[-1]
        moves: list[tuple[str, ScaledNet]] = []
        for stage in range(len(widths)):
            wider = list(current.stage_out_chs)
            wider[stage] += width_step
            moves.append((f'widen stage {stage}', dataclasses.replace(current, stage_out_chs=tuple(wider))))
            if depth and current.extra_layers[stage] < max_extra_layers:
                first = sum(s.num_layers for s in config.stages[:stage])
                if _repeat_op(ops[first:first + config.stages[stage].num_layers]) is not None:
                    extra = list(current.extra_layers)
                    extra[stage] += 1
                    moves.append((f'deepen stage {stage}', dataclasses.replace(current, extra_layers=tuple(extra))))
        for _, net in moves:
            macs.setdefault(net, _macs(net, input_shape))
        medians, ratios = _measure_ratios(device, [original] + [net for _, net in moves], input_shape, rounds)
        fitting = [i for i in range(len(moves)) if ratios[i + 1] <= 1 + tolerance]
        best = max(fitting, key=lambda i: (macs[moves[i][1]], -ratios[i + 1])) if fitting else None
        for i, (move, net) in enumerate(moves):
            rows.append({'step': step, 'move': move, 'widths': list(net.stage_out_chs),
                         'extra_layers': list(net.extra_layers), 'macs': macs[net], 'median_ms': medians[i + 1],
                         'original_ms': medians[0], 'ratio': ratios[i + 1], 'accepted': i == best})
        if best is None:
            _logger.info('step %d: no candidate within %.1f%% (best ratio %.4f); stopping', step, 100 * tolerance,
                         min(ratios[1:]))
            break
        _logger.info('step %d: %s (ratio %.4f, %d MACs)', step, moves[best][0], ratios[best + 1],
                     macs[moves[best][1]])
        accepted.append(moves[best][1])
    # Final check: undo steps while the scaled net is over the tolerance.
    final_rounds = 2 * rounds if final_rounds is None else int(final_rounds)
    while True:
        scaled = accepted[-1]
        if len(accepted) == 1:  # nothing fitted: the original alone
            medians, _ = _measure_ratios(device, [original], input_shape, final_rounds)
            medians, ratios = medians * 2, [1.0, 1.0]
            break
        medians, ratios = _measure_ratios(device, [original, scaled], input_shape, final_rounds)
        if ratios[1] <= 1 + tolerance:
            break
        _logger.info('final check: %s is %.2f%% slower; undoing the last step', scaled.describe(),
                     100 * (ratios[1] - 1))
        accepted.pop()
    history = pd.DataFrame(rows, columns=['step', 'move', 'widths', 'extra_layers', 'macs', 'median_ms',
                                          'original_ms', 'ratio', 'accepted'])
    facts = {'rounds': rounds, 'final_rounds': final_rounds, 'num_runs': getattr(device, 'num_runs', None),
             'clock': getattr(device, 'clock', 'wall'), 'device': getattr(device, 'name', type(device).__name__),
             'width_step': width_step, 'depth': depth}
    return ComfortZoneResult(original=original, scaled=accepted[-1], original_ms=medians[0], scaled_ms=medians[1],
                             latency_ratio=ratios[1], original_macs=macs[original], scaled_macs=macs[accepted[-1]],
                             history=history, tolerance=tolerance, input_shape=input_shape,
                             seconds=time.perf_counter() - start, facts=facts)


def compare_accuracy(nets: Sequence[ScaledNet], train_data: Dataset, test_data: Dataset, *, steps: int = 300,
                     batch_size: int = 64, learning_rate: float = 0.05, seed: int = 0) -> list[float]:
    """Train each net from scratch with the same budget and seed; their test accuracies (fractions).

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))
    >>> net = ScaledNet(('skip', 'skip', 'skip'), 'tiny', (16, 24), (0, 0))
    >>> len(compare_accuracy([net], data, data, steps=1, batch_size=4))
    1
    """
    accuracies = []
    done: dict[ScaledNet, float] = {}
    for net in nets:
        if net in done:  # same net, same seed: same accuracy (a scaling that found no room)
            accuracies.append(done[net])
            continue
        torch.manual_seed(seed)
        model = net.build()
        train_steps(model, train_data, steps=steps, batch_size=batch_size, learning_rate=learning_rate, seed=seed)
        accuracies.append(evaluate_accuracy(model, test_data))
        done[net] = accuracies[-1]
        _logger.info('%s: accuracy %.4f after %d steps', net.describe(), accuracies[-1], steps)
    return accuracies

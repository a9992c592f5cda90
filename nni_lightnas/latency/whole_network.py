"""Whole networks measured on a device: the ground truth that LUTs and predictors are checked against.

:func:`measure_archs` exports each architecture of one of our presets as a whole ONNX
network and measures them in interleaved groups (block by block, see
:meth:`~nni_lightnas.latency.device.Device.measure_group`), over several rounds.

Examples
--------
>>> from nni_lightnas.latency import LocalDevice
>>> rows = measure_archs('tiny', ['MBK3E6-skip-MBK7E3'], LocalDevice(num_runs=5), batch=2)  # doctest: +SKIP
>>> rows[0]['median_ms'] > 0  # doctest: +SKIP
True
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import pandas as pd

from ..search_spaces.resolve import resolve_space
from .device import Device, LatencyResult

__all__ = ['measure_archs']


def measure_archs(space: Any, archs: Iterable[Any], device: Device, *, batch: int, rounds: int = 1,
                  group_size: int | None = 16, reference: Any = None,
                  on_result: Callable[[int, LatencyResult], None] | None = None) -> list[dict[str, Any]]:
    """Measure whole exported networks, interleaved, ``rounds`` times.

    The architectures are measured in groups of ``group_size`` whose timed runs alternate
    (:meth:`~nni_lightnas.latency.device.Device.measure_group`; ``None``: all in one group),
    and with ``rounds > 1`` the whole list is measured again (groups reshuffled), so slow
    drift of the machine is spread over all architectures rather than biasing some.
    Returns one dict per architecture: ``arch``, ``median_ms`` (median over rounds of the
    per-round medians), ``p25_ms``, ``p75_ms`` (of the first round), ``round_medians_ms``.

    With ``reference`` (an architecture), every group also measures it, and each result
    gets ``reference_ms``, the reference's median in the same groups, per round: the ratio
    ``round_medians_ms / reference_ms`` is free of the machine's slow drift.
    """
    import random

    from nni_lightnas.export import onnx_bytes
    from nni_lightnas.search_spaces import LightNet, decode_arch, encode_arch
    config, _ = resolve_space(space)
    archs = [decode_arch(arch, config) for arch in archs]
    input_shape = (batch, config.in_chans, config.input_size, config.input_size)
    nets = [onnx_bytes(LightNet(arch, config), input_shape) for arch in archs]
    reference_net = None if reference is None else \
        onnx_bytes(LightNet(decode_arch(reference, config), config), input_shape)
    results: list[list[LatencyResult]] = [[] for _ in archs]
    reference_ms: list[list[float]] = [[] for _ in archs]
    size = len(archs) if group_size is None else max(1, int(group_size))
    rng = random.Random(0)
    for round_index in range(max(1, rounds)):
        order = list(range(len(archs)))
        if round_index:
            rng.shuffle(order)
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            group = [nets[i] for i in chunk] + ([reference_net] if reference_net is not None else [])
            measured = device.measure_group(group, input_shape)
            for index, result in zip(chunk, measured):
                results[index].append(result)
                if reference_net is not None:
                    reference_ms[index].append(measured[-1].median_ms)
                if on_result is not None:
                    on_result(index, result)
    summary = []
    for arch, measured, references in zip(archs, results, reference_ms):
        medians = [r.median_ms for r in measured]
        summary.append({'arch': encode_arch(arch), 'median_ms': float(pd.Series(medians).median()),
                        'p25_ms': measured[0].p25_ms, 'p75_ms': measured[0].p75_ms,
                        'round_medians_ms': medians})
        if reference_net is not None:
            summary[-1]['reference_ms'] = references
    return summary

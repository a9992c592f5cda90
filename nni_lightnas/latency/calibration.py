"""Whole-network linear correction of a LUT, and the accuracy figures of latency models.

:func:`fit_linear_calibration` fits ``measured = scale * predicted + offset`` on measured
whole networks (least squares) and returns the LUT with that calibration recorded in its
metadata, so it stays a :class:`~nni_lightnas.latency.lut.LatencyLUT` (and an NNI
expression profiler). It corrects what is common to all architectures (a share of the call
overhead counted wrongly, a uniform speed-up from fusion); BBSSP
(:mod:`~nni_lightnas.latency.bbssp`) corrects per layer and op. Both can be combined:
calibrate the BBSSP-corrected table.

:func:`prediction_metrics` gives the figures every latency model is judged by: MAPE,
the share within +-5 % and +-10 % of measured, Spearman's rho.

:func:`correct_on_landings` adds the pipeline's closed loop to a calibration: the final nets
measured after export, each paired with the stage-1 architecture it came from, scale the
calibration by one factor fitted on them (the device as it is at the end of the run, at the
target, where the landing is judged).

Examples
--------
>>> prediction_metrics([1.0, 2.0, 3.1], [1.0, 2.1, 3.0])['acc5']
100.0
"""

from __future__ import annotations

import logging
import random
from typing import Any, Sequence

import numpy as np

from .device import Device
from .lut import LatencyLUT
from .whole_network import measure_archs
from nni_lightnas.search_spaces.resolve import resolve_space

__all__ = ['calibrate_on_device', 'correct_on_landings', 'fit_linear_calibration', 'prediction_metrics',
           'random_archs', 'spread_archs']

_logger = logging.getLogger(__name__)


def prediction_metrics(predicted_ms: Sequence[float], measured_ms: Sequence[float]) -> dict[str, float]:
    """MAPE (%), share within 5 % / 10 % of measured (%), Spearman rho and the mean signed error (%).

    Examples
    --------
    >>> metrics = prediction_metrics([1.0, 2.0, 4.0], [1.0, 2.0, 5.0])
    >>> round(metrics['mape'], 2), round(metrics['acc10'], 2), metrics['spearman']
    (6.67, 66.67, 1.0)
    """
    predicted = np.asarray(predicted_ms, dtype=float)
    measured = np.asarray(measured_ms, dtype=float)
    if predicted.shape != measured.shape or predicted.ndim != 1 or len(predicted) == 0:
        raise ValueError(f'need two equally long, non-empty 1-d sequences, got shapes {predicted.shape} '
                         f'and {measured.shape}')
    if np.any(measured <= 0):
        raise ValueError('measured latencies must be positive')
    relative = (predicted - measured) / measured
    from scipy.stats import spearmanr
    rho = float(spearmanr(predicted, measured).statistic) if len(predicted) > 2 else float('nan')
    return {
        'n': int(len(predicted)),
        'mape': float(100 * np.mean(np.abs(relative))),
        'acc5': float(100 * np.mean(np.abs(relative) <= 0.05)),
        'acc10': float(100 * np.mean(np.abs(relative) <= 0.10)),
        'spearman': rho,
        'bias': float(100 * np.mean(relative)),
    }


def fit_linear_calibration(lut: LatencyLUT, archs: Sequence[Any], measured_ms: Sequence[float], *,
                           fit_offset: bool = True, relative: bool = True) -> LatencyLUT:
    """Fit ``measured = scale * lut_sum + offset`` on measured architectures.

    With ``relative`` (the default) the fit minimises the squared *relative* error (residuals
    weighted by 1 / measured), since latency targets are judged relatively; a plain least-squares
    fit would let the slowest nets dominate and miss the fastest by more.

    Parameters
    ----------
    lut
        A plain or BBSSP-corrected LUT (a previous calibration is replaced).
    archs
        Architectures (LightNet strings, op lists or samples).
    measured_ms
        Their measured whole-network latencies, on the LUT's device and batch.
    fit_offset
        Fit an offset too; otherwise (or when the fit gives a non-positive scale, or
        fewer than 3 architectures) a pure scale through the origin.
    relative
        Weight residuals by 1 / measured (least squares on relative errors).

    Returns
    -------
    LatencyLUT
        A copy whose :meth:`~LatencyLUT.predict` and expected latency include the calibration.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({'kind': ['op'] * 3, 'layer': ['layer00'] * 3, 'op': ['skip', 'MBK3E3', 'MBK5E3'],
    ...                       'latency_ms': [1.0, 2.0, 3.0]})
    >>> calibrated = fit_linear_calibration(LatencyLUT(table, {}), ['skip', 'MBK3E3', 'MBK5E3'], [1.5, 2.5, 3.5])
    >>> round(calibrated.predict('MBK3E3'), 6)
    2.5
    """
    uncalibrated = lut.without_calibration()
    raw = np.array([uncalibrated.predict(arch) for arch in archs], dtype=float)
    measured = np.asarray(measured_ms, dtype=float)
    if raw.shape != measured.shape or len(raw) == 0:
        raise ValueError(f'archs ({len(raw)}) and measured_ms ({len(measured)}) must be equally long and non-empty')
    weights = 1.0 / measured if relative else np.ones_like(measured)
    scale, offset = float('nan'), 0.0
    if fit_offset and len(raw) >= 3 and np.ptp(raw) > 0:
        scale, offset = (float(v) for v in np.polyfit(raw, measured, 1, w=weights))
    if not (np.isfinite(scale) and scale > 0):
        weighted_raw = raw * weights
        scale, offset = float(np.dot(weighted_raw, measured * weights) / np.dot(weighted_raw, weighted_raw)), 0.0
    residual = measured - (scale * raw + offset)
    _logger.info('linear calibration: measured = %.4f * lut + %.4f ms (rms residual %.4f ms over %d nets)',
                 scale, offset, float(np.sqrt(np.mean(residual ** 2))), len(raw))
    return lut.with_calibration(scale, offset, num_archs=int(len(raw)),
                                rms_residual_ms=float(np.sqrt(np.mean(residual ** 2))),
                                max_abs_rel_residual=float(np.max(np.abs(residual / measured))),
                                fit='relative' if relative else 'absolute')


def correct_on_landings(lut: LatencyLUT, archs: Sequence[Any], measured_ms: Sequence[float]) -> LatencyLUT:
    """The LUT's calibration times one factor ``k`` fitted on landed nets: ``measured ~ k * lut.predict(arch)``.

    Each point pairs a stage-1 export (``archs``, as the LUT predicts it) with the final net
    measured after export (``measured_ms``): stage 2's widths, the training and any drift of
    the device since the profile are in the measurement, so the corrected LUT predicts what
    the pipeline ends with near the target. ``k`` minimises the squared relative error
    (``k = sum(p / m) / sum((p / m)**2)`` over predictions ``p`` and measurements ``m``); the
    LUT's own calibration (``scale``, ``offset_ms``; 1 and 0 without one) is scaled by it, and
    ``k`` is recorded as ``landing_factor`` (with ``landing_points``) in its metadata. Pass the
    LUT of the profile and every point so far: a correction is never stacked on another.

    Raises
    ------
    ValueError
        No points, unequal lengths, or a measurement that is not positive.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({'kind': ['op'] * 2, 'layer': ['layer00'] * 2, 'op': ['MBK3E3', 'MBK5E3'],
    ...                       'latency_ms': [1.0, 2.0]})
    >>> corrected = correct_on_landings(LatencyLUT(table, {}), ['MBK5E3'], [2.3])
    >>> round(corrected.predict('MBK5E3'), 6), round(corrected.metadata['calibration']['landing_factor'], 6)
    (2.3, 1.15)
    """
    predicted = np.array([lut.predict(arch) for arch in archs], dtype=float)
    measured = np.asarray(measured_ms, dtype=float)
    if predicted.shape != measured.shape or len(predicted) == 0:
        raise ValueError(f'archs ({len(predicted)}) and measured_ms ({len(measured)}) must be equally long and '
                         f'non-empty')
    if np.any(~np.isfinite(measured)) or np.any(measured <= 0):
        raise ValueError(f'measured_ms must be positive numbers, got {measured.tolist()}')
    ratios = predicted / measured
    factor = float(ratios.sum() / np.dot(ratios, ratios))
    info = {key: value for key, value in lut.metadata.get('calibration', {}).items()
            if key not in ('scale', 'offset_ms', 'landing_factor', 'landing_points')}
    _logger.info('landing correction: measured = %.4f x the calibrated LUT (%d landed nets)', factor, len(measured))
    return lut.with_calibration(factor * lut.scale, factor * lut.offset_ms, **info, landing_factor=factor,
                                landing_points=int(len(measured)))


def random_archs(space: Any, count: int, *, seed: int = 0) -> list[str]:
    """``count`` distinct architectures of ``space`` drawn uniformly (LightNet strings), seeded.

    Examples
    --------
    >>> random_archs('tiny', 2, seed=0) == random_archs('tiny', 2, seed=0)
    True
    """
    from nni_lightnas.search_spaces import encode_arch
    _, candidates = resolve_space(space)
    total = int(np.prod([len(ops) for ops in candidates.values()]))
    if not 0 <= count <= total:
        raise ValueError(f'count must be in [0, {total}] (the size of the space), got count={count}')
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    while len(seen) < count:
        seen.setdefault(encode_arch([rng.choice(ops) for ops in candidates.values()]), None)
    return list(seen)


def spread_archs(lut: LatencyLUT, count: int, *, seed: int = 0) -> list[str]:
    """``count`` distinct architectures whose predicted latencies spread over the whole range.

    Uniformly random architectures cluster around the middle of the latency range (a sum of
    independent per-layer choices), so a calibration fitted on them extrapolates to the
    fastest and slowest nets. Here architecture ``i`` draws, per layer, the op whose latency
    rank is near ``(i + 0.5) / count`` of the layer's candidates (Gaussian jitter of one rank),
    so the sample runs from skip-heavy to heavy nets.

    Examples
    --------
    >>> from nni_lightnas.latency.lut import LatencyLUT  # doctest: +SKIP
    >>> archs = spread_archs(lut, 16, seed=0)  # doctest: +SKIP
    """
    from nni_lightnas.search_spaces import encode_arch
    rng = random.Random(seed)
    ranked = {label: [lut.candidates[label][int(i)] for i in np.argsort(lut.layer_latencies(label).numpy(),
                                                                        kind='stable')]
              for label in lut.labels}
    total = int(np.prod([len(ops) for ops in ranked.values()]))
    if not 0 <= count <= total:
        raise ValueError(f'count must be in [0, {total}] (the size of the space), got count={count}')
    chosen: dict[str, None] = {}
    attempt = 0
    while len(chosen) < count:
        level = ((len(chosen) + 0.5) / count) if attempt < 50 * count else rng.random()
        attempt += 1
        ops = []
        for label, names in ranked.items():
            rank = int(round(level * (len(names) - 1) + rng.gauss(0.0, 1.0)))
            ops.append(names[min(max(rank, 0), len(names) - 1)])
        chosen.setdefault(encode_arch(ops), None)
    return list(chosen)


def calibrate_on_device(lut: LatencyLUT, space: Any, device: Device, *, num_archs: int, batch: int,
                        rounds: int = 2, seed: int = 0, spread: bool = True
                        ) -> tuple[LatencyLUT, list[dict[str, Any]]]:
    """Measure ``num_archs`` whole networks on ``device`` and fit the linear calibration.

    The networks are spread over the latency range (:func:`spread_archs`), or uniformly random
    with ``spread=False``; the fit weighs relative errors (:func:`fit_linear_calibration`).

    Returns the calibrated LUT and the measurements (one dict per network, as
    :func:`~nni_lightnas.latency.whole_network.measure_archs` gives them, plus ``lut_ms``, the
    uncalibrated prediction), which also serve as a parity plot of the latency model.

    Examples
    --------
    >>> from nni_lightnas.latency import LocalDevice  # doctest: +SKIP
    >>> calibrated, rows = calibrate_on_device(lut, 'fashion_mnist', LocalDevice(threads=1),
    ...                                        num_archs=16, batch=32)  # doctest: +SKIP
    """
    if num_archs < 3:
        raise ValueError(f'num_archs must be >= 3 to fit a scale and an offset, got num_archs={num_archs}')
    archs = spread_archs(lut, num_archs, seed=seed) if spread else random_archs(space, num_archs, seed=seed)
    measured = measure_archs(space, archs, device, batch=batch, rounds=rounds)
    uncalibrated = lut.without_calibration()
    for row in measured:
        row['lut_ms'] = uncalibrated.predict(row['arch'])
    calibrated = fit_linear_calibration(lut, archs, [row['median_ms'] for row in measured])
    return calibrated, measured

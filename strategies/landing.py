"""Landing on the target: the most probable architecture whose latency is within a tolerance.

A LightNAS search ends with alpha (per-layer op probabilities) and lambda near the value that
balances accuracy and latency. Its argmax architecture lands near the target; how near
depends on how long alpha had to settle (90 epochs in the paper, a handful in a quick run on
a CPU). :func:`land_on_target` turns the final alpha into an architecture that meets the target
within ``tolerance``, keeping as much of what alpha learned as possible:

    maximise   sum_l log p_l(op_l)
    subject to |LAT(arch) / T - 1| <= tolerance

* For a per-op table (:class:`~nni_lightnas.latency.lut.LatencyLUT`, plain, BBSSP-corrected or
  calibrated) the latency is a sum, and the problem is a knapsack solved exactly up to a
  latency grid by dynamic programming over the layers; candidates are then checked with the
  model's own :meth:`predict`.
* For any other model (a predictor, or a table with depth gates, whose latency is no plain sum:
  :mod:`~nni_lightnas.latency.depth_gates`), the architectures that differ from the argmax in at
  most two layers are scored with :meth:`predict`.

When no architecture lies within the tolerance (a target between two reachable latencies, or a
predictor whose neighbourhood of the argmax misses it), the *nearest* architecture is returned
instead, with a warning: for a table, the reachable latency sum nearest the target (the most
probable architecture there); for a predictor, the nearest of the argmax's neighbourhood,
improved one layer at a time while that brings it nearer. :func:`is_within` tells the caller which
case it got. ``nearest=False`` returns ``None`` instead (the caller keeps the argmax).

Nothing here is specific to time: given an energy model (a LUT's
:meth:`~nni_lightnas.latency.lut.LatencyLUT.energy_view`) and a target in mJ, it lands on an energy
target. LightNAS does so in an energy-only search; with both a latency and an energy target it
lands on the latency one and reports the energy (a window on both sums would need a
two-dimensional grid, not done here).

Examples
--------
>>> import pandas as pd, torch
>>> from nni_lightnas.latency.lut import LatencyLUT
>>> table = pd.DataFrame({'kind': 'op', 'layer': ['a', 'a', 'b', 'b'], 'op': ['x', 'y', 'x', 'y'],
...                       'latency_ms': [1.0, 2.0, 1.0, 3.0]})
>>> log_probs = {'a': torch.tensor([0.9, 0.1]).log(), 'b': torch.tensor([0.2, 0.8]).log()}
>>> land_on_target(LatencyLUT(table, {}), log_probs, target_ms=3.0, tolerance=0.01)
{'a': 'y', 'b': 'x'}
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Mapping

import numpy as np
import torch

__all__ = ['land_on_target', 'land_from_probabilities', 'is_within']

_logger = logging.getLogger(__name__)

#: Grid steps per tolerance window in the dynamic programme (rounding error <= layers / 2 steps).
_GRID_STEPS_PER_WINDOW = 400
#: Upper bound on the number of grid cells (memory: layers x cells x 2 bytes).
_MAX_GRID = 2_000_000


def land_on_target(latency_model, log_probs: Mapping[str, torch.Tensor], *, target_ms: float,
                   tolerance: float, nearest: bool = True) -> dict[str, str] | None:
    """The most probable architecture with ``|LAT / target_ms - 1| <= tolerance``, else the nearest one.

    Parameters
    ----------
    latency_model
        The search's latency model (``labels``, ``candidates``, ``predict``), or its energy model.
    log_probs
        Per layer label, log-probabilities of its candidates (in ``candidates`` order).
    target_ms
        The target, in the model's unit (ms; mJ for an energy model).
    tolerance
        Allowed relative error (0.01 = 1%).
    nearest
        When nothing lies within the tolerance, return the nearest architecture (with a
        warning); ``False``: return ``None``.

    Examples
    --------
    Nothing lies within 1% of 1.5 ms; the nearest architecture is returned:

    >>> import pandas as pd, torch
    >>> from nni_lightnas.latency.lut import LatencyLUT
    >>> table = pd.DataFrame({'kind': 'op', 'layer': ['a', 'a'], 'op': ['x', 'y'], 'latency_ms': [1.0, 1.6]})
    >>> land_on_target(LatencyLUT(table, {}), {'a': torch.tensor([0.9, 0.1]).log()}, target_ms=1.5, tolerance=0.01)
    {'a': 'y'}
    """
    if not tolerance > 0:
        raise ValueError(f'tolerance must be > 0, got tolerance={tolerance!r}')
    scores = {label: np.asarray(log_probs[label].detach().double().cpu(), dtype=float)
              for label in latency_model.labels}
    from nni_lightnas.latency.lut import LatencyLUT
    if isinstance(latency_model, LatencyLUT) and not latency_model.depth_gates:
        landed, closest = _knapsack(latency_model, scores, target_ms, tolerance)
    else:
        landed, closest = _neighbourhood(latency_model, scores, target_ms, tolerance)
        if landed is None and nearest:
            closest = _descend(latency_model, scores, closest, target_ms, tolerance)
            if is_within(latency_model.predict(closest), target_ms, tolerance):
                return closest
    if landed is not None or not nearest:
        return landed
    value = latency_model.predict(closest)
    _logger.warning('no architecture lies within %.1f%% of the target %.4f; exporting the nearest one, %.4f '
                    '(%+.1f%%)', 100 * tolerance, target_ms, value, 100 * (value / target_ms - 1.0))
    return closest


def land_from_probabilities(latency_model, probabilities: Mapping[str, Mapping[str, float]], *, target_ms: float,
                            tolerance: float) -> dict[str, str]:
    """:func:`land_on_target` from a search's saved probabilities (``alpha.json``: label -> op -> p).

    The pipeline's closed loop re-lands stage 1's export with this after correcting the latency
    model, without running the search again. Ops missing from ``probabilities`` get probability 0.

    Raises
    ------
    ValueError
        A layer of the model has no probabilities (the file belongs to another space).

    Examples
    --------
    >>> import pandas as pd
    >>> from nni_lightnas.latency.lut import LatencyLUT
    >>> table = pd.DataFrame({'kind': 'op', 'layer': ['a', 'a'], 'op': ['x', 'y'], 'latency_ms': [1.0, 2.0]})
    >>> land_from_probabilities(LatencyLUT(table, {}), {'a': {'x': 0.7, 'y': 0.3}}, target_ms=2.0, tolerance=0.01)
    {'a': 'y'}
    """
    missing = [label for label in latency_model.labels if label not in probabilities]
    if missing:
        raise ValueError(f'no probabilities for the layers {missing}; the file has {sorted(probabilities)}')
    log_probs = {label: torch.tensor([float(probabilities[label].get(op, 0.0))
                                      for op in latency_model.candidates[label]], dtype=torch.float64).log()
                 for label in latency_model.labels}
    return land_on_target(latency_model, log_probs, target_ms=target_ms, tolerance=tolerance)


def is_within(latency_ms: float, target_ms: float, tolerance: float) -> bool:
    """``|latency_ms / target_ms - 1| <= tolerance``.

    Examples
    --------
    >>> is_within(1.009, 1.0, 0.01), is_within(1.02, 1.0, 0.01)
    (True, False)
    """
    return abs(latency_ms / target_ms - 1.0) <= tolerance


_within = is_within


def _knapsack(lut, scores: dict[str, np.ndarray], target_ms: float,
              tolerance: float) -> tuple[dict[str, str] | None, dict[str, str] | None]:
    """Exact up to the grid: best log-probability per reachable (gridded) latency sum.

    Returns ``(landed, nearest)``: the most probable architecture within the window (or
    ``None``), and, when there is none, the most probable one at the reachable sum nearest the target.
    """
    labels = lut.labels
    # predict = scale * (fixed + sum) + offset  ->  window on the per-layer sum.
    low = (target_ms * (1 - tolerance) - lut.offset_ms) / lut.scale - lut.fixed_ms
    high = (target_ms * (1 + tolerance) - lut.offset_ms) / lut.scale - lut.fixed_ms
    latencies = [lut.layer_latencies(label).numpy() for label in labels]
    span = sum(float(values.max() - values.min()) for values in latencies)
    # A grid fine enough for the window, but never more than _MAX_GRID cells (a very tight
    # tolerance coarsens the grid; every candidate is checked with the table anyway).
    step = max((high - low) / _GRID_STEPS_PER_WINDOW, span / _MAX_GRID)
    # Grid costs relative to each layer's cheapest op (corrected tables may hold negative entries).
    raw_costs = [np.rint(values / step).astype(int) for values in latencies]
    base = sum(int(cost.min()) for cost in raw_costs)
    costs = [cost - cost.min() for cost in raw_costs]
    size = int(sum(int(cost.max()) for cost in costs)) + 1
    best = np.full(size, -np.inf)
    best[0] = 0.0
    choices = np.zeros((len(labels), size), dtype=np.int16)
    for layer, (label, cost) in enumerate(zip(labels, costs)):
        new = np.full(size, -np.inf)
        for op_index, (shift, score) in enumerate(zip(cost, scores[label])):
            if not math.isfinite(score):
                continue
            candidate = np.full(size, -np.inf)
            candidate[shift:] = best[:size - shift] + score
            better = candidate > new
            new[better] = candidate[better]
            choices[layer, better] = op_index
        best = new
    # Reachable sums near the window, most probable first; each checked with the model itself.
    margin = len(labels)  # rounding error bound, in grid steps
    first = max(int(math.floor(low / step)) - base - margin, 0)
    last = min(int(math.ceil(high / step)) - base + margin, size - 1)
    order = sorted((index for index in range(first, last + 1) if math.isfinite(best[index])),
                   key=lambda index: -best[index])
    for index in order:
        arch = _trace_back(lut, choices, costs, index)
        if _within(lut.predict(arch), target_ms, tolerance):
            return arch, None
    # none within: the reachable sums nearest the target (each checked with the table), the nearest one
    centre = ((low + high) / 2) / step - base
    reachable = np.flatnonzero(np.isfinite(best))
    near = reachable[np.argsort(np.abs(reachable - centre), kind='stable')[:2 * margin + 2]]
    ranked = []
    for index in near:
        arch = _trace_back(lut, choices, costs, int(index))
        ranked.append((abs(lut.predict(arch) / target_ms - 1.0), -float(best[index]), int(index), arch))
    ranked.sort(key=lambda item: item[:3])
    return None, (ranked[0][3] if ranked else None)


def _trace_back(lut, choices: np.ndarray, costs: list[np.ndarray], index: int) -> dict[str, str]:
    arch: dict[str, str] = {}
    for layer in range(len(lut.labels) - 1, -1, -1):
        label = lut.labels[layer]
        op_index = int(choices[layer, index])
        arch[label] = lut.candidates[label][op_index]
        index -= int(costs[layer][op_index])
    return {label: arch[label] for label in lut.labels}


def _neighbourhood(model, scores: dict[str, np.ndarray], target_ms: float,
                   tolerance: float) -> tuple[dict[str, str] | None, dict[str, str]]:
    """Best-scoring architecture within the tolerance among those <= 2 layers away from the argmax.

    Returns ``(landed, nearest)``: ``landed`` is ``None`` when none is within; ``nearest`` is the
    architecture of that neighbourhood nearest the target (ties: the most probable).
    """
    labels = model.labels
    argmax = {label: int(np.argmax(scores[label])) for label in labels}
    best_arch, best_score = None, -math.inf
    closest, closest_key = None, (math.inf, math.inf)
    for changed in itertools.chain([()], itertools.combinations(labels, 1), itertools.combinations(labels, 2)):
        alternatives = [[i for i in range(len(scores[label])) if i != argmax[label]] for label in changed]
        for picks in itertools.product(*alternatives):
            indices = dict(argmax, **dict(zip(changed, picks)))
            score = float(sum(scores[label][indices[label]] for label in labels))
            if score <= best_score:
                continue
            arch = {label: model.candidates[label][indices[label]] for label in labels}
            latency_ms = model.predict(arch)
            if _within(latency_ms, target_ms, tolerance):
                best_arch, best_score = arch, score
            elif best_arch is None and (abs(latency_ms / target_ms - 1.0), -score) < closest_key:
                closest, closest_key = arch, (abs(latency_ms / target_ms - 1.0), -score)
    if best_arch is None:
        _logger.info('no architecture within %.1f%% of %.4f ms within two layers of the argmax',
                     100 * tolerance, target_ms)
    return best_arch, closest


def _descend(model, scores: dict[str, np.ndarray], start: dict[str, str], target_ms: float,
             tolerance: float, max_steps: int = 1000) -> dict[str, str]:
    """From ``start``, change one layer at a time to the op that brings the latency nearest the target.

    Stops within the tolerance, or when no single change brings it nearer; ties go to the more
    probable op. Each step scores every single-layer change (layers x ops predictions).
    """
    arch = dict(start)
    distance = abs(model.predict(arch) / target_ms - 1.0)
    for _ in range(max_steps):
        if distance <= tolerance:
            break
        best = None
        for label in model.labels:
            for index, op in enumerate(model.candidates[label]):
                if op == arch[label]:
                    continue
                trial = dict(arch, **{label: op})
                key = (abs(model.predict(trial) / target_ms - 1.0), -float(scores[label][index]))
                if key[0] < distance and (best is None or key < best[0]):
                    best = (key, trial)
        if best is None:
            break
        (distance, _), arch = best
    return arch

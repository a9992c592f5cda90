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
* For any other model (a predictor), the architectures that differ from the argmax in at most
  two layers are scored with :meth:`predict`.

Returns ``None`` when nothing within the tolerance is found; the caller keeps the argmax.

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

__all__ = ['land_on_target']

_logger = logging.getLogger(__name__)

#: Grid steps per tolerance window in the dynamic programme (rounding error <= layers / 2 steps).
_GRID_STEPS_PER_WINDOW = 400
#: Upper bound on the number of grid cells (memory: layers x cells x 2 bytes).
_MAX_GRID = 2_000_000


def land_on_target(latency_model, log_probs: Mapping[str, torch.Tensor], *, target_ms: float,
                   tolerance: float) -> dict[str, str] | None:
    """The most probable architecture with ``|LAT / target_ms - 1| <= tolerance``, or ``None``.

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
    """
    if not tolerance > 0:
        raise ValueError(f'tolerance must be > 0, got tolerance={tolerance!r}')
    scores = {label: np.asarray(log_probs[label].detach().double().cpu(), dtype=float)
              for label in latency_model.labels}
    from nni_lightnas.latency.lut import LatencyLUT
    if isinstance(latency_model, LatencyLUT):
        return _knapsack(latency_model, scores, target_ms, tolerance)
    return _neighbourhood(latency_model, scores, target_ms, tolerance)


def _within(latency_ms: float, target_ms: float, tolerance: float) -> bool:
    return abs(latency_ms / target_ms - 1.0) <= tolerance


def _knapsack(lut, scores: dict[str, np.ndarray], target_ms: float, tolerance: float) -> dict[str, str] | None:
    """Exact up to the grid: best log-probability per reachable (gridded) latency sum."""
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
            return arch
    return None


def _trace_back(lut, choices: np.ndarray, costs: list[np.ndarray], index: int) -> dict[str, str]:
    arch: dict[str, str] = {}
    for layer in range(len(lut.labels) - 1, -1, -1):
        label = lut.labels[layer]
        op_index = int(choices[layer, index])
        arch[label] = lut.candidates[label][op_index]
        index -= int(costs[layer][op_index])
    return {label: arch[label] for label in lut.labels}


def _neighbourhood(model, scores: dict[str, np.ndarray], target_ms: float, tolerance: float) -> dict[str, str] | None:
    """Best-scoring architecture within the tolerance among those <= 2 layers away from the argmax."""
    labels = model.labels
    argmax = {label: int(np.argmax(scores[label])) for label in labels}
    best_arch, best_score = None, -math.inf
    for changed in itertools.chain([()], itertools.combinations(labels, 1), itertools.combinations(labels, 2)):
        alternatives = [[i for i in range(len(scores[label])) if i != argmax[label]] for label in changed]
        for picks in itertools.product(*alternatives):
            indices = dict(argmax, **dict(zip(changed, picks)))
            score = float(sum(scores[label][indices[label]] for label in labels))
            if score <= best_score:
                continue
            arch = {label: model.candidates[label][indices[label]] for label in labels}
            if _within(model.predict(arch), target_ms, tolerance):
                best_arch, best_score = arch, score
    if best_arch is None:
        _logger.warning('no architecture within %.1f%% of %.4f ms within two layers of the argmax',
                        100 * tolerance, target_ms)
    return best_arch

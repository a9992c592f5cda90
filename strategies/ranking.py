"""Choosing the export among at-target architectures drawn from the final alpha, by supernet accuracy.

A converged alpha is a distribution over architectures, not one architecture. ENAS (Pham et
al., ICML 2018) derives its final net by sampling several architectures from the learned
policy, scoring each with the shared weights on held-out data and keeping the best; random
search with weight sharing (Li & Talwalkar, UAI 2019) does the same from a uniform
distribution. LightNAS's export can do it from softmax(alpha), restricted to the latency target:

1. :func:`draw_at_target` draws architectures from softmax(alpha), layer by layer, and keeps the
   distinct ones whose latency is within ``tolerance`` of T (rejection), most probable first;
2. the search scores each with its supernet's weights on batches of the architecture split
   (:meth:`~.lightnas.LightNASLightningModule.subnet_accuracy`) and exports the best
   (:func:`best_by_accuracy`).

Only training images are read, never the test split.

Examples
--------
>>> import pandas as pd, torch
>>> from nni_lightnas.latency.lut import LatencyLUT
>>> table = pd.DataFrame({'kind': 'op', 'layer': ['a', 'a', 'b', 'b'], 'op': ['x', 'y', 'x', 'y'],
...                       'latency_ms': [1.0, 2.0, 1.0, 3.0]})
>>> log_probs = {'a': torch.tensor([0.5, 0.5]).log(), 'b': torch.tensor([0.5, 0.5]).log()}
>>> draw_at_target(LatencyLUT(table, {}), log_probs, target_ms=3.0, tolerance=0.01, count=5)
[{'a': 'y', 'b': 'x'}]
>>> supernet_accuracy = {'x': 0.6, 'y': 0.8}
>>> best_by_accuracy([{'a': 'x'}, {'a': 'y'}], lambda arch: supernet_accuracy[arch['a']])
({'a': 'y'}, [0.6, 0.8])
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping

import numpy as np
import torch

__all__ = ['draw_at_target', 'best_by_accuracy']

_logger = logging.getLogger(__name__)


def draw_at_target(latency_model, log_probs: Mapping[str, torch.Tensor], *, target_ms: float, tolerance: float,
                   count: int, seed: int = 0, draws_per_round: int = 4096,
                   max_rounds: int = 50) -> list[dict[str, str]]:
    """Up to ``count`` distinct architectures drawn from ``exp(log_probs)`` with ``|LAT / T - 1| <= tolerance``.

    Draws ``draws_per_round`` architectures per round (each layer independently, a seeded
    generator) until ``count`` distinct at-target ones are found or ``max_rounds`` rounds passed.
    Returned most probable first. Latency comes from the model's own ``predict`` (vectorised for a
    per-op table); an architecture drawn twice is predicted once.

    Parameters
    ----------
    latency_model
        The search's latency model (``labels``, ``candidates``, ``predict``), or its energy model.
    log_probs
        Per layer label, log-probabilities of its candidates (in ``candidates`` order).
    target_ms, tolerance
        The target T (the model's unit) and the allowed relative error.
    count
        How many distinct at-target architectures to return at most.
    """
    if not (isinstance(count, int) and count >= 1):
        raise ValueError(f'count must be an integer >= 1, got {count!r}')
    if not tolerance > 0:
        raise ValueError(f'tolerance must be > 0, got tolerance={tolerance!r}')
    labels = list(latency_model.labels)
    rng = np.random.default_rng(seed)
    probs = []
    for label in labels:
        p = np.exp(np.asarray(log_probs[label].detach().double().cpu(), dtype=float))
        probs.append(p / p.sum())
    scores = [np.log(np.clip(p, 1e-300, None)) for p in probs]
    from nni_lightnas.latency.lut import LatencyLUT
    vectorised = latency_model.predict_indices if isinstance(latency_model, LatencyLUT) else None
    seen: set[tuple[int, ...]] = set()
    found: dict[tuple[int, ...], float] = {}  # op indices -> log-probability
    for _ in range(max_rounds):
        choices = np.stack([rng.choice(len(p), size=draws_per_round, p=p) for p in probs], axis=1)
        choices = np.unique(choices, axis=0)
        fresh = np.asarray([row for row in choices if tuple(row) not in seen], dtype=int).reshape(-1, len(labels))
        seen.update(map(tuple, fresh))
        if len(fresh):
            if vectorised is not None:
                latency_ms = vectorised(fresh)
            else:
                latency_ms = np.asarray([latency_model.predict(
                    {label: latency_model.candidates[label][i] for label, i in zip(labels, row)}) for row in fresh])
            for row in fresh[np.abs(latency_ms / target_ms - 1.0) <= tolerance]:
                found[tuple(row)] = float(sum(score[i] for score, i in zip(scores, row)))
        if len(found) >= count:
            break
    ordered = sorted(found, key=lambda row: -found[row])[:count]
    _logger.debug('%d distinct architectures drawn, %d within %.1f%% of %.4f', len(seen), len(found),
                  100 * tolerance, target_ms)
    return [{label: latency_model.candidates[label][i] for label, i in zip(labels, row)} for row in ordered]


def best_by_accuracy(candidates: list[dict[str, str]],
                     accuracy: Callable[[dict[str, str]], float]) -> tuple[dict[str, str], list[float]]:
    """The candidate with the highest ``accuracy`` (the first on a tie) and every candidate's accuracy.

    ``candidates`` come most probable first, so a tie keeps the more probable one.
    """
    if not candidates:
        raise ValueError('best_by_accuracy needs at least one candidate')
    accuracies = [float(accuracy(arch)) for arch in candidates]
    return candidates[int(np.argmax(accuracies))], accuracies

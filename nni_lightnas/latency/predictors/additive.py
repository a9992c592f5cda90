"""The additive baseline: a per-op latency table fitted by least squares on the one-hot encoding."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from ..graphs import GraphSpace
from ._fitting import ridge_loo
from .base import LatencyPredictor, register_predictor

__all__ = ['AdditivePredictor', 'LinearHead']

_logger = logging.getLogger(__name__)


class LinearHead(nn.Module):
    """``fixed_ms + sum over slots of probs * table``: an additive latency table as a module."""

    def __init__(self, space: GraphSpace):
        super().__init__()
        self.register_buffer('table_ms', torch.zeros(space.num_slots, space.max_candidates))
        self.register_buffer('fixed_ms', torch.zeros(()))

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        return (probs * self.table_ms).sum((1, 2)) + self.fixed_ms


@register_predictor
class AdditivePredictor(LatencyPredictor):
    """Least-squares per-op table: latency = fixed part + one entry per (slot, op).

    The fit is ridge regression on the one-hot encoding with the penalty chosen by exact
    leave-one-out error (a tiny penalty when data are plentiful; it keeps the table defined
    when there are fewer architectures than table entries). This is the baseline every
    report shows beside the learned predictors.

    Examples
    --------
    >>> from nni_lightnas.latency.graphs import LightNetGraphSpace
    >>> space = LightNetGraphSpace('tiny')
    >>> predictor = AdditivePredictor(space).fit(['skip-skip-skip', 'MBK3E3-skip-skip'], [1.0, 2.0])
    >>> sorted(predictor.table()['layer00'].items())[:2]  # doctest: +ELLIPSIS
    [('MBK3E3', ...), ('MBK3E6', ...)]
    """

    kind = 'additive'

    @classmethod
    def default_options(cls) -> dict[str, Any]:
        return {'penalties': [float(v) for v in np.logspace(-6, 3, 19)]}

    def _build(self) -> nn.Module:
        return LinearHead(self.space)

    def _fit(self, probs: torch.Tensor, latency_ms: torch.Tensor) -> None:
        mask = self.space.candidate_mask().flatten().bool()
        features = probs.flatten(1)[:, mask].double().numpy()
        fit = ridge_loo(features, latency_ms.double().numpy(), penalties=self.options['penalties'])
        head = self._build()
        table = torch.zeros(mask.numel(), dtype=torch.float64)
        table[mask] = torch.from_numpy(fit.coef)
        # put the mean of every slot into the fixed part: an identifiable, readable table
        table = table.view(self.space.num_slots, self.space.max_candidates)
        fixed = fit.intercept
        for slot, names in enumerate(self.space.candidates):
            shift = float(table[slot, :len(names)].min())
            table[slot, :len(names)] -= shift
            fixed += shift
        head.table_ms.copy_(table.float())
        head.fixed_ms.fill_(fixed)
        self.module = head
        self.fit_info.update({'penalty': fit.penalty, 'loo_rmse_ms': float(np.sqrt(fit.loo_mse))})

    def table(self) -> dict[str, dict[str, float]]:
        """The fitted table: slot label -> op -> ms (the fastest op of each slot at 0)."""
        head = self._require_fitted()
        labels = getattr(self.space, 'labels', [f'slot{index:02d}' for index in range(self.space.num_slots)])
        return {label: {op: float(head.table_ms[slot, position]) for position, op in enumerate(names)}
                for slot, (label, names) in enumerate(zip(labels, self.space.candidates))}

    @property
    def fixed_ms(self) -> float:
        """The part of latency no slot explains."""
        return float(self._require_fitted().fixed_ms)

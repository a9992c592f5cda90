"""The interface every latency model of a LightNAS space offers.

A LUT (plain or BBSSP-corrected) and a learned predictor both answer three questions
for the search and the evolution:

* :meth:`LatencyModel.predict`: latency (ms) of one architecture;
* :meth:`LatencyModel.expected_latency`: differentiable latency given per-layer op
  probabilities (``softmax(alpha)``, or one-hot for a fixed arch), for the search loss;
* :meth:`LatencyModel.latency_range`: the smallest and largest latency of the space, so an
  infeasible target is refused before training.
"""

from __future__ import annotations

import abc
from typing import Mapping, Sequence

import torch

__all__ = ['LatencyModel']


class LatencyModel(abc.ABC):
    """Latency of architectures of one LightNAS space, in milliseconds.

    Subclasses set :attr:`candidates` (layer label -> op names, in the order of the
    probability vectors) and implement :meth:`expected_latency` and
    :meth:`latency_range`. :meth:`predict` defaults to ``expected_latency`` of one-hot
    probabilities.
    """

    #: layer label -> candidate op names, in order.
    candidates: dict[str, list[str]]

    @property
    def labels(self) -> list[str]:
        return list(self.candidates)

    @abc.abstractmethod
    def expected_latency(self, probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Differentiable latency (ms, 0-dim tensor) given op probabilities per layer label."""

    @abc.abstractmethod
    def latency_range(self) -> tuple[float, float]:
        """(fastest, slowest) latency in ms over the whole space."""

    def target_at(self, quantile: float) -> float:
        """The latency (ms) at ``quantile`` of the range: ``fastest + quantile * (slowest - fastest)``.

        ``quantile`` must lie in (0, 1): the ends of the range hold a single architecture each.

        >>> import pandas as pd
        >>> from nni_lightnas.latency.lut import LatencyLUT
        >>> lut = LatencyLUT(pd.DataFrame({'kind': 'op', 'layer': ['a', 'a'], 'op': ['x', 'y'],
        ...                                'latency_ms': [1.0, 3.0]}), {})
        >>> lut.target_at(0.25)
        1.5
        """
        if not (isinstance(quantile, (int, float)) and 0 < quantile < 1):
            raise ValueError(f'a target quantile must be in (0, 1), got {quantile!r}')
        fastest_ms, slowest_ms = self.latency_range()
        return fastest_ms + quantile * (slowest_ms - fastest_ms)

    def one_hot(self, arch: Mapping[str, str] | Sequence[str]) -> dict[str, torch.Tensor]:
        """One-hot probabilities for an architecture (sample dict or ops in layer order)."""
        ops = [arch[label] for label in self.labels] if isinstance(arch, Mapping) else list(arch)
        if len(ops) != len(self.labels):
            raise ValueError(f'architecture has {len(ops)} layers, the latency model {len(self.labels)}')
        probs = {}
        for label, op in zip(self.labels, ops):
            names = self.candidates[label]
            if op not in names:
                raise ValueError(f'op {op!r} of {label} is unknown to the latency model; accepted: {names}')
            vector = torch.zeros(len(names))
            vector[names.index(op)] = 1.0
            probs[label] = vector
        return probs

    def predict(self, arch: Mapping[str, str] | Sequence[str]) -> float:
        """Latency (ms) of one architecture."""
        with torch.no_grad():
            return float(self.expected_latency(self.one_hot(arch)))

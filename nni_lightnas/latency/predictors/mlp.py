"""LightNAS's latency predictor: an MLP on the flattened one-hot encoding."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from torch import nn

from ..graphs import GraphSpace
from ._fitting import train_full_batch
from .base import FeatureEncoder, LatencyPredictor, register_predictor

__all__ = ['MLPPredictor', 'MLPNet', 'make_mlp']

_logger = logging.getLogger(__name__)


def make_mlp(in_features: int, hidden: Sequence[int], *, out_features: int = 1) -> nn.Sequential:
    """``Linear -> ReLU`` per hidden width, then a linear output."""
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, int(size)), nn.ReLU()]
        width = int(size)
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class MLPNet(nn.Module):
    """Features -> MLP -> standardised target -> ms (``exp`` of it for a log-latency target)."""

    def __init__(self, space: GraphSpace, hidden: Sequence[int], *, summary_gain: float = 0.0,
                 log_target: bool = False):
        super().__init__()
        self.encoder = FeatureEncoder(space, summary_gain=summary_gain)
        self.mlp = make_mlp(self.encoder.num_features, hidden)
        self.log_target = bool(log_target)
        self.register_buffer('target_mean', torch.zeros(()))
        self.register_buffer('target_std', torch.ones(()))

    def standardised(self, probs: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.encoder(probs)).squeeze(-1)

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        value = self.standardised(probs) * self.target_std + self.target_mean
        return torch.exp(value) if self.log_target else value


@register_predictor
class MLPPredictor(LatencyPredictor):
    """LightNAS's MLP: flattened one-hot (layers x ops) -> 128 -> 64 -> 1, ReLU.

    Trained full-batch with AdamW on the standardised latency (or log-latency). With soft
    probabilities in place of the one-hot it gives the differentiable latency LightNAS's search
    loss uses.

    Options: ``hidden`` (widths, default ``[128, 64]``), ``epochs`` (600), ``lr`` (3e-3),
    ``weight_decay`` (1e-4), ``log_target`` (False), ``summary_gain`` (0: one-hot only; > 0
    appends standardised whole-network features).

    Examples
    --------
    >>> from nni_lightnas.latency.graphs import LightNetGraphSpace
    >>> predictor = MLPPredictor(LightNetGraphSpace('tiny'), epochs=50)
    >>> _ = predictor.fit(['skip-skip-skip', 'MBK3E3-skip-skip', 'MBK7E6-skip-skip'], [1.0, 2.0, 3.0])
    >>> predictor.predict(['skip-skip-skip']).shape
    (1,)
    """

    kind = 'mlp'

    @classmethod
    def default_options(cls) -> dict[str, Any]:
        return {'hidden': [128, 64], 'epochs': 600, 'lr': 3e-3, 'weight_decay': 1e-4, 'log_target': False,
                'summary_gain': 0.0}

    def _build(self) -> nn.Module:
        return MLPNet(self.space, self.options['hidden'], summary_gain=self.options['summary_gain'],
                      log_target=self.options['log_target'])

    def _fit(self, probs: torch.Tensor, latency_ms: torch.Tensor) -> None:
        net = self._build()
        net.encoder.calibrate(probs)
        target = torch.log(latency_ms) if self.options['log_target'] else latency_ms
        net.target_mean.fill_(float(target.mean()))
        net.target_std.fill_(float(target.std().clamp_min(1e-6)) if len(target) > 1 else 1.0)
        standardised = (target - net.target_mean) / net.target_std
        loss = train_full_batch(_Standardised(net), probs, standardised, epochs=self.options['epochs'],
                                lr=self.options['lr'], weight_decay=self.options['weight_decay'])
        self.module = net
        self.fit_info['train_loss'] = loss


class _Standardised(nn.Module):
    """View of a net that outputs its standardised target (what the training loss compares)."""

    def __init__(self, net: MLPNet):
        super().__init__()
        self.net = net

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        return self.net.standardised(probs)

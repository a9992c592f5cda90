"""The recommended predictor: a selected linear base (per-op table plus whole-network features)
and a cross-validated, shrunk ensemble of small MLPs on its residual."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from ..graphs import GraphSpace
from ._fitting import huber_ridge, relative_error, residual_shrink, ridge_loo, train_full_batch
from .base import FeatureEncoder, LatencyPredictor, register_predictor
from .mlp import make_mlp

__all__ = ['ResidualEnsemblePredictor', 'ResidualEnsembleNet']

_logger = logging.getLogger(__name__)


class ResidualEnsembleNet(nn.Module):
    """``target = base(features) + scale * mean(member(features))``; ms = target or ``exp(target)``."""

    def __init__(self, space: GraphSpace, *, summary_gain: float, log_target: bool, num_members: int,
                 hidden: list[int]):
        super().__init__()
        self.encoder = FeatureEncoder(space, summary_gain=summary_gain)
        self.base = nn.Linear(self.encoder.num_features, 1)
        self.residual_encoder = FeatureEncoder(space, summary_gain=1.0)
        self.members = nn.ModuleList(make_mlp(self.residual_encoder.num_features, hidden)
                                     for _ in range(num_members))
        self.log_target = bool(log_target)
        self.register_buffer('residual_scale', torch.zeros(()))
        self.register_buffer('residual_std', torch.ones(()))

    def residual(self, probs: torch.Tensor) -> torch.Tensor:
        if not len(self.members):
            return torch.zeros(probs.shape[0], dtype=probs.dtype)
        features = self.residual_encoder(probs)
        outputs = torch.stack([member(features).squeeze(-1) for member in self.members])
        return outputs.mean(0) * self.residual_std * self.residual_scale

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        value = self.base(self.encoder(probs)).squeeze(-1) + self.residual(probs)
        return torch.exp(value) if self.log_target else value


@register_predictor
class ResidualEnsemblePredictor(LatencyPredictor):
    """Selected linear base + shrunk residual MLP ensemble (the ``best`` kind).

    1. **Base**: ridge regression on the one-hot encoding plus standardised whole-network
       features of the graph space (op counts, MACs, parameters, memory; for cells also the
       ops on live input-to-output paths), scaled by a gain ``g`` (a larger gain penalises
       them less than the per-op entries). The target (ms or log ms), the gain and the ridge
       penalty are chosen together by exact leave-one-out error (relative error in ms).
    2. **Residual**: ``num_members`` MLPs, member ``k`` trained on all folds but fold ``k``
       of the base's leave-one-out residuals; their out-of-fold predictions give the
       least-squares shrink factor in [0, 1] applied to the ensemble mean (0 when the
       residual does not generalise, so few training architectures fall back to the base).

    Options: ``summary_gains`` (gains tried, 0 = one-hot only), ``targets`` (``['ms', 'log']``),
    ``num_members`` (5), ``hidden`` ([64, 64]), ``epochs`` (400), ``lr`` (3e-3),
    ``weight_decay`` (1e-3), ``min_scale`` (0.05: below it the residual is dropped), ``robust``
    (True: once target, gain and penalty are chosen, the base is refitted with a Huber loss, so
    a few wild measurements do not pull it; its leave-one-out residuals feed step 2).

    Examples
    --------
    >>> from nni_lightnas.latency.graphs import LightNetGraphSpace
    >>> predictor = ResidualEnsemblePredictor(LightNetGraphSpace('tiny'), epochs=20, num_members=2)
    >>> archs = ['skip-skip-skip', 'MBK3E3-skip-skip', 'MBK7E6-skip-skip', 'skip-MBK3E3-skip']
    >>> predictor.fit(archs, [1.0, 2.0, 3.0, 1.5]).predict(archs).shape
    (4,)
    """

    kind = 'ensemble'

    @classmethod
    def default_options(cls) -> dict[str, Any]:
        return {'summary_gains': [0.0, 1.0, 3.0, 10.0, 30.0, 100.0], 'targets': ['ms', 'log'], 'num_members': 5,
                'hidden': [64, 64], 'epochs': 400, 'lr': 3e-3, 'weight_decay': 1e-3, 'min_scale': 0.05, 'robust': True,
                'penalties': [float(v) for v in np.logspace(-4, 4, 17)]}

    def _build(self) -> nn.Module:
        info = self.fit_info
        return ResidualEnsembleNet(self.space, summary_gain=info['summary_gain'], log_target=info['target'] == 'log',
                                   num_members=info['num_members'], hidden=self.options['hidden'])

    def _fit(self, probs: torch.Tensor, latency_ms: torch.Tensor) -> None:
        options = self.options
        measured = latency_ms.double().numpy()
        unknown = set(options['targets']) - {'ms', 'log'}
        if unknown or not options['targets']:
            raise ValueError(f"targets must be a non-empty subset of ['ms', 'log'], got {options['targets']}")
        # 1. base: target x gain x penalty by leave-one-out relative error
        best = None
        for gain in options['summary_gains']:
            encoder = FeatureEncoder(self.space, summary_gain=gain)
            encoder.calibrate(probs)
            with torch.no_grad():
                features = encoder(probs).double().numpy()
            for target_name in options['targets']:
                target = np.log(measured) if target_name == 'log' else measured
                fit = ridge_loo(features, target, penalties=options['penalties'])
                loo_ms = np.exp(fit.loo_prediction) if target_name == 'log' else fit.loo_prediction
                score = float(np.mean(relative_error(loo_ms, measured) ** 2))
                if best is None or score < best[0]:
                    best = (score, gain, target_name, fit, encoder)
        assert best is not None
        score, gain, target_name, fit, encoder = best
        target = np.log(measured) if target_name == 'log' else measured
        if options['robust']:
            with torch.no_grad():
                features = encoder(probs).double().numpy()
            fit = huber_ridge(features, target, penalty=fit.penalty)
        residual = target - fit.loo_prediction
        # 2. residual ensemble, cross-fitted
        num_members = int(options['num_members']) if len(measured) >= 2 * max(2, options['num_members']) else 0
        self.fit_info.update({'summary_gain': gain, 'target': target_name, 'penalty': fit.penalty,
                              'base_loo_rms_rel': float(np.sqrt(score)), 'num_members': num_members})
        net = self._build()
        net.encoder.load_state_dict(encoder.state_dict())
        with torch.no_grad():
            net.base.weight.copy_(torch.from_numpy(fit.coef).float().unsqueeze(0))
            net.base.bias.fill_(fit.intercept)
        scale = 0.0
        if num_members:
            net.residual_encoder.calibrate(probs)
            with torch.no_grad():
                features = net.residual_encoder(probs)
            residual_std = float(residual.std()) or 1.0
            net.residual_std.fill_(residual_std)
            scaled = torch.tensor(residual / residual_std, dtype=torch.float32)
            folds = np.arange(len(measured)) % num_members
            np.random.default_rng(self.seed).shuffle(folds)
            out_of_fold = np.zeros(len(measured))
            for index, member in enumerate(net.members):
                train = torch.from_numpy(folds != index)
                torch.manual_seed(self.seed * 1000 + index)
                for layer in member:
                    if isinstance(layer, nn.Linear):
                        layer.reset_parameters()
                train_full_batch(member_head(member), features[train], scaled[train], epochs=options['epochs'],
                                 lr=options['lr'], weight_decay=options['weight_decay'])
                with torch.no_grad():
                    out_of_fold[~train.numpy()] = member(features[~train]).squeeze(-1).double().numpy() * residual_std
            scale = residual_shrink(out_of_fold, residual, min_scale=options['min_scale'])
        if num_members and scale == 0.0:
            self.fit_info['num_members'] = 0
            base_state = {k: v for k, v in net.state_dict().items() if not k.startswith('members.')}
            net = self._build()
            net.load_state_dict(base_state)
        net.residual_scale.fill_(scale)
        net.eval()
        self.module = net
        self.fit_info['residual_scale'] = scale


def member_head(member: nn.Sequential) -> nn.Module:
    """A member as a ``(batch,)`` regressor for :func:`train_full_batch`."""
    return _Squeeze(member)


class _Squeeze(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.inner(features).squeeze(-1)

"""Latency of a new device from a few measurements: a network pre-trained on other devices, adapted.

The ``transfer`` kind starts from a :class:`~nni_lightnas.latency.predictors.pretrain.SourceLatencyNet`
fitted on every source device of a pretraining table (same architectures, other boards), and
adapts to the target device in two steps:

1. **Linear probe** (any number of target measurements): ridge regression of the target's
   log-latency on three blocks of features of the pre-trained network, each with a gain
   (a larger gain penalises its block less):

   * the source devices' predicted log-latencies (gain 1): most boards are close to a
     weighted mix of other boards;
   * the shared embedding (gain ``g_e``): device-independent structure of the architecture;
   * the one-hot encoding and whole-network features (gain ``g_f``): per-op costs no source
     device shows.

   Gains and the ridge penalty are chosen together by exact leave-one-out error, with the
   one-standard-error rule: among candidates within ``selection_se`` standard errors of the
   best, the one with the smallest gains wins (with 20 measurements the choice itself would
   otherwise over-fit; with 900 the slack is small).
2. **Fine-tuned residual** (``finetune_min_train`` measurements or more): ``num_members``
   copies of the pre-trained trunk, member ``k`` fine-tuned on all folds but fold ``k`` of the
   probe's leave-one-out residuals; the out-of-fold predictions give a least-squares shrink
   factor in [0, 1] (0 when fine-tuning does not generalise, so noisy boards keep the probe).

The result is an ``nn.Module`` from op probabilities to ms like every other kind: it is
differentiable in ``softmax(alpha)``, and :meth:`~LatencyPredictor.save` stores the
pre-trained network with it.

Examples
--------
>>> import numpy as np
>>> from nni_lightnas.latency.graphs import LightNetGraphSpace
>>> from nni_lightnas.latency.predictors.pretrain import PretrainTable
>>> space = LightNetGraphSpace('tiny')
>>> archs = ['skip-skip-skip', 'MBK3E3-skip-skip', 'MBK3E6-skip-skip', 'skip-MBK5E3-skip', 'skip-skip-MBK7E6']
>>> table = PretrainTable(archs, np.array([[1.0, 2.0], [2.0, 3.0], [3.0, 5.0], [2.5, 4.0], [4.0, 7.0]]),
...                       ['board_a', 'board_b'], space)
>>> predictor = TransferPredictor(space, pretrain=table, pretrain_epochs=20, hidden=[16, 8])
>>> predictor.fit(archs[:3], [1.5, 2.5, 4.0]).predict(archs[3:]).shape
(2,)
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from ..graphs import GraphSpace
from ._fitting import residual_shrink, ridge_loo, train_full_batch
from .base import LatencyPredictor, register_predictor
from .pretrain import PretrainTable, SourceLatencyNet, pretrain_source_model

__all__ = ['TransferPredictor', 'TransferNet', 'Pretraining']

_logger = logging.getLogger(__name__)

#: What ``pretrain=`` accepts: a table of source devices, or a network already pre-trained on one.
Pretraining = Union[PretrainTable, SourceLatencyNet]


class TransferNet(nn.Module):
    """Pre-trained source network + linear probe + optional fine-tuned residual members; outputs ms.

    ``log ms = w_s . sources + w_e . (g_e * embedding / embedding_scale) + w_f . (g_f * features)
    + b + residual_scale * residual_std * mean(members)``.
    """

    def __init__(self, space: GraphSpace, *, num_sources: int, hidden: list[int], embed_gain: float,
                 feature_gain: float, num_members: int):
        super().__init__()
        self.source = SourceLatencyNet(space, num_sources=num_sources, hidden=hidden)
        self.embed_gain = float(embed_gain)
        self.feature_gain = float(feature_gain)
        self.register_buffer('embedding_scale', torch.ones(()))
        num_inputs = num_sources + self.source.embedding_size + self.source.encoder.num_features
        self.probe = nn.Linear(num_inputs, 1)
        self.members = nn.ModuleList(
            nn.Sequential(copy.deepcopy(self.source.trunk), nn.Linear(self.source.embedding_size, 1))
            for _ in range(num_members))
        self.register_buffer('residual_scale', torch.zeros(()))
        self.register_buffer('residual_std', torch.ones(()))

    def probe_features(self, probs: torch.Tensor) -> torch.Tensor:
        """``(batch, num_inputs)``: source log-latencies, scaled embedding, scaled encoder features."""
        features = self.source.encoder(probs)
        embedding = self.source.trunk(features)
        sources = self.source.heads(embedding)
        return torch.cat([sources, embedding * (self.embed_gain / self.embedding_scale),
                          features * self.feature_gain], dim=1)

    def residual(self, probs: torch.Tensor) -> torch.Tensor:
        if not len(self.members):
            return torch.zeros(probs.shape[0], dtype=probs.dtype)
        features = self.source.encoder(probs)
        outputs = torch.stack([member(features).squeeze(-1) for member in self.members])
        return outputs.mean(0) * self.residual_std * self.residual_scale

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.probe(self.probe_features(probs)).squeeze(-1) + self.residual(probs))


@register_predictor
class TransferPredictor(LatencyPredictor):
    """A predictor pre-trained on other devices' measurements and adapted to the target's.

    Parameters
    ----------
    space
        The graph space of the target architectures (the pretraining table must use the same).
    seed
        Seed of pre-training (when ``pretrain`` is a table) and of the fine-tuning folds.
    pretrain
        A :class:`~nni_lightnas.latency.predictors.pretrain.PretrainTable` (pre-trained in
        :meth:`fit`) or a :class:`~nni_lightnas.latency.predictors.pretrain.SourceLatencyNet`
        already pre-trained (reuse one for many targets or training sizes). Required for
        :meth:`fit`; a saved predictor loads without it.
    options
        ``hidden`` ([256, 128]: trunk widths, the last is the embedding), ``pretrain_epochs`` (500),
        ``pretrain_lr`` (3e-3), ``embed_gains`` and ``feature_gains`` (gains tried),
        ``selection_se`` (1.0: standard errors of leave-one-out error that buy smaller gains),
        ``penalties`` (ridge penalties tried), ``finetune_min_train`` (smallest training set
        that fine-tunes), ``num_members`` (3), ``finetune_epochs`` (300), ``finetune_lr`` (1e-3),
        ``weight_decay`` (1e-4), ``min_scale`` (0.05: smaller shrink factors drop the residual).

    Examples
    --------
    >>> from nni_lightnas.latency.graphs import FBNetGraphSpace
    >>> TransferPredictor(FBNetGraphSpace()).fit(['-'.join(['skip'] * 22)] * 2, [1.0, 1.0])
    Traceback (most recent call last):
    ...
    ValueError: the transfer predictor needs pretraining data: pass pretrain=PretrainTable or a pre-trained SourceLatencyNet (CLI: --pretrain-data CSV)
    """

    kind = 'transfer'
    needs_pretraining = True

    def __init__(self, space: GraphSpace, *, seed: int = 0, pretrain: Pretraining | None = None, **options: Any):
        super().__init__(space, seed=seed, **options)
        if pretrain is not None and not isinstance(pretrain, (PretrainTable, SourceLatencyNet)):
            raise TypeError(f'pretrain must be a PretrainTable or a SourceLatencyNet, got {type(pretrain).__name__}')
        self.pretrain = pretrain

    @classmethod
    def default_options(cls) -> dict[str, Any]:
        return {'hidden': [256, 128], 'pretrain_epochs': 500, 'pretrain_lr': 3e-3,
                'embed_gains': [0.0, 0.03, 0.1, 0.3, 1.0], 'feature_gains': [0.0, 0.03, 0.1, 0.3, 1.0],
                'selection_se': 1.0, 'penalties': [float(v) for v in np.logspace(-4, 4, 17)],
                'finetune_min_train': 100, 'num_members': 3, 'finetune_epochs': 300, 'finetune_lr': 1e-3,
                'weight_decay': 1e-4, 'min_scale': 0.05}

    def _build(self) -> nn.Module:
        info = self.fit_info
        return TransferNet(self.space, num_sources=info['num_sources'], hidden=list(self.options['hidden']),
                           embed_gain=info['embed_gain'], feature_gain=info['feature_gain'],
                           num_members=info['num_members'])

    def _source_model(self) -> tuple[SourceLatencyNet, list[str]]:
        pretrain = self.pretrain
        if pretrain is None:
            raise ValueError('the transfer predictor needs pretraining data: pass pretrain=PretrainTable or a '
                             'pre-trained SourceLatencyNet (CLI: --pretrain-data CSV)')
        if isinstance(pretrain, PretrainTable):
            if pretrain.space.to_dict() != self.space.to_dict():
                raise ValueError(f'the pretraining table is in space {pretrain.space.name!r}, the target in '
                                 f'{self.space.name!r}; both must use the same architecture encoding')
            net = pretrain_source_model(pretrain, hidden=self.options['hidden'], epochs=self.options['pretrain_epochs'],
                                        lr=self.options['pretrain_lr'], weight_decay=self.options['weight_decay'],
                                        seed=self.seed)
            return net, list(pretrain.columns)
        if pretrain.encoder.space.to_dict() != self.space.to_dict():
            raise ValueError(f'the pre-trained network is for space {pretrain.encoder.space.name!r}, the target is in '
                             f'{self.space.name!r}; both must use the same architecture encoding')
        widths = [layer.out_features for layer in pretrain.trunk if isinstance(layer, nn.Linear)]
        if widths != [int(w) for w in self.options['hidden']]:
            raise ValueError(f'the pre-trained network has trunk widths {widths}, but hidden={self.options["hidden"]}')
        return pretrain, list(getattr(pretrain, 'columns', [f'source{i}' for i in range(pretrain.num_sources)]))

    def _fit(self, probs: torch.Tensor, latency_ms: torch.Tensor) -> None:
        options = self.options
        source, columns = self._source_model()
        target = np.log(latency_ms.double().numpy())
        with torch.no_grad():
            features = source.encoder(probs)
            embedding = source.trunk(features)
            sources = source.heads(embedding).double().numpy()
        embedding_scale = float(embedding.double().std(0).mean()) or 1.0
        embedding_np = embedding.double().numpy() / embedding_scale
        features_np = features.double().numpy()
        # 1. linear probe: gains and penalty by leave-one-out error, the smallest gains within the margin
        candidates = []
        for embed_gain in options['embed_gains']:
            for feature_gain in options['feature_gains']:
                blocks = [sources] + ([embed_gain * embedding_np] if embed_gain else []) + \
                    ([feature_gain * features_np] if feature_gain else [])
                fit = ridge_loo(np.hstack(blocks), target, penalties=options['penalties'])
                candidates.append((fit.loo_mse, embed_gain + feature_gain, float(embed_gain), float(feature_gain), fit))
        best = min(candidates, key=lambda c: c[0])
        squared = (target - best[4].loo_prediction) ** 2
        slack = options['selection_se'] * float(squared.std()) / np.sqrt(len(target))
        eligible = [c for c in candidates if c[0] <= best[0] + slack]
        loo_mse, _, embed_gain, feature_gain, fit = min(eligible, key=lambda c: (c[1], c[0]))
        coef = np.zeros(sources.shape[1] + embedding_np.shape[1] + features_np.shape[1])
        used = [True] * sources.shape[1] + [bool(embed_gain)] * embedding_np.shape[1] + \
            [bool(feature_gain)] * features_np.shape[1]
        coef[np.array(used)] = fit.coef
        num_members = int(options['num_members']) if len(target) >= max(int(options['finetune_min_train']),
                                                                          2 * int(options['num_members'])) else 0
        self.fit_info.update({'source_columns': columns, 'num_sources': len(columns), 'embed_gain': embed_gain,
                              'feature_gain': feature_gain, 'penalty': fit.penalty,
                              'probe_loo_rmse_log': float(np.sqrt(loo_mse)), 'num_members': num_members})
        net = self._build()
        net.source.load_state_dict(source.state_dict())
        net.embedding_scale.fill_(embedding_scale)
        with torch.no_grad():
            net.probe.weight.copy_(torch.from_numpy(coef).float().unsqueeze(0))
            net.probe.bias.fill_(fit.intercept)
        # 2. fine-tuned residual members, cross-fitted on the probe's leave-one-out residual
        scale = 0.0
        if num_members:
            residual = target - fit.loo_prediction
            residual_std = float(residual.std()) or 1.0
            net.residual_std.fill_(residual_std)
            scaled = torch.tensor(residual / residual_std, dtype=torch.float32)
            folds = np.arange(len(target)) % num_members
            np.random.default_rng(self.seed).shuffle(folds)
            out_of_fold = np.zeros(len(target))
            for index, member in enumerate(net.members):
                train = torch.from_numpy(folds != index)
                torch.manual_seed(self.seed * 1000 + index)
                member[0].load_state_dict(source.trunk.state_dict())
                nn.init.zeros_(member[1].weight)
                nn.init.zeros_(member[1].bias)
                train_full_batch(_Squeeze(member), features[train], scaled[train], epochs=options['finetune_epochs'],
                                 lr=options['finetune_lr'], weight_decay=options['weight_decay'])
                with torch.no_grad():
                    out_of_fold[~train.numpy()] = member(features[~train]).squeeze(-1).double().numpy() * residual_std
            scale = residual_shrink(out_of_fold, residual, min_scale=options['min_scale'])
        if num_members and scale == 0.0:
            self.fit_info['num_members'] = 0
            kept = {k: v for k, v in net.state_dict().items() if not k.startswith('members.')}
            net = self._build()
            net.load_state_dict(kept)
        net.residual_scale.fill_(scale)
        net.eval()
        self.module = net
        self.fit_info['residual_scale'] = scale


class _Squeeze(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.inner(features).squeeze(-1)

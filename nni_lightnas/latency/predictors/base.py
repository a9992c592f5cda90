"""The interface every latency predictor offers, its registry, and save / load.

A predictor maps architectures of one :class:`~nni_lightnas.latency.graphs.GraphSpace` to
whole-network latency in ms. It is fitted on measured ``(architecture, latency_ms)`` pairs and
then used two ways:

* :meth:`LatencyPredictor.predict`: latency of architecture strings (numpy, no gradient);
* :meth:`LatencyPredictor.predict_probs`: latency of soft architectures, a tensor of op
  probabilities per slot (``softmax(alpha)`` during a search), differentiable.

Every predictor is an ``nn.Module`` (:attr:`LatencyPredictor.module`) from probabilities to ms,
built from JSON-able options, so :meth:`LatencyPredictor.save` writes ``predictor.json`` (kind,
space, options, what fitting chose) and ``weights.pt`` (a state dict of tensors only, read back
with ``torch.load(weights_only=True)``): no pickle of arbitrary objects.

A new kind is a subclass with ``kind``, ``_fit`` and ``_build``, registered with
:func:`register_predictor`.
"""

from __future__ import annotations

import abc
import json
import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from ..graphs import ArchGraph, GraphSpace, space_from_dict

__all__ = ['LatencyPredictor', 'PREDICTORS', 'PRETRAINED_PREDICTORS', 'BEST_KIND', 'BEST_TRANSFER_KIND', 'register_predictor', 'make_predictor',
           'load_latency_predictor',
           'FeatureEncoder', 'FORMAT']

_logger = logging.getLogger(__name__)

#: Version tag written to ``predictor.json``.
FORMAT = 'nni-lightnas-predictor/1'
CONFIG_FILE = 'predictor.json'
WEIGHTS_FILE = 'weights.pt'

#: kind -> predictor class, for kinds fitted on the target's measurements alone
PREDICTORS: dict[str, type['LatencyPredictor']] = {}
#: kind -> predictor class, for kinds that also need pretraining data (``pretrain=``; other devices)
PRETRAINED_PREDICTORS: dict[str, type['LatencyPredictor']] = {}


def _kind_class(kind: str) -> type['LatencyPredictor'] | None:
    return PREDICTORS.get(kind) or PRETRAINED_PREDICTORS.get(kind)


def _known_kinds() -> list[str]:
    return sorted({**PREDICTORS, **PRETRAINED_PREDICTORS})

ArchInput = Sequence[Any]


def register_predictor(cls: type['LatencyPredictor']) -> type['LatencyPredictor']:
    """Class decorator: make ``cls`` available under ``cls.kind``.

    A class with ``needs_pretraining = True`` goes to :data:`PRETRAINED_PREDICTORS`, others to
    :data:`PREDICTORS`; :func:`make_predictor` and :func:`load_latency_predictor` read both.
    """
    if not cls.kind:
        raise ValueError(f'{cls.__name__} has no kind')
    (PRETRAINED_PREDICTORS if cls.needs_pretraining else PREDICTORS)[cls.kind] = cls
    return cls


class FeatureEncoder(nn.Module):
    """Soft architectures -> one flat feature vector: one-hot, and standardised summary features.

    ``summary_gain`` multiplies the standardised summary features, which divides their ridge
    penalty by its square: a large gain lets the fit lean on whole-network features (counts,
    MACs, live ops) and keeps the per-op one-hot as a regularised correction.

    Parameters
    ----------
    space
        The graph space.
    summary_gain
        0 for the one-hot alone.
    """

    def __init__(self, space: GraphSpace, *, summary_gain: float = 1.0):
        super().__init__()
        self.space = space
        self.summary_gain = float(summary_gain)
        num_summary = space.summary_features(space.one_hot([[names[0] for names in space.candidates]])).shape[1]
        self.register_buffer('summary_mean', torch.zeros(num_summary))
        self.register_buffer('summary_std', torch.ones(num_summary))

    @property
    def num_features(self) -> int:
        width = self.space.num_slots * self.space.max_candidates
        return width + (len(self.summary_mean) if self.summary_gain else 0)

    def calibrate(self, probs: torch.Tensor) -> None:
        """Set the standardisation of the summary features from training probabilities."""
        with torch.no_grad():
            summary = self.space.summary_features(probs)
            self.summary_mean.copy_(summary.mean(0))
            self.summary_std.copy_(summary.std(0).clamp_min(1e-6) if len(summary) > 1 else torch.ones_like(summary[0]))

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        flat = probs.flatten(1)
        if not self.summary_gain:
            return flat
        summary = (self.space.summary_features(probs) - self.summary_mean) / self.summary_std
        return torch.cat([flat, summary * self.summary_gain], dim=1)


class LatencyPredictor(abc.ABC):
    """Whole-network latency (ms) of the architectures of one graph space.

    Subclasses set :attr:`kind`, implement :meth:`_fit` (set :attr:`module`, and
    :attr:`fit_info` with what the fit chose, JSON-able) and :meth:`_build` (an untrained
    module from options and ``fit_info``, for :meth:`load`).

    Parameters
    ----------
    space
        The :class:`~nni_lightnas.latency.graphs.GraphSpace` of the architectures.
    seed
        Seed of every random choice of the fit.
    options
        Kind-specific hyper-parameters (see each subclass).

    Examples
    --------
    >>> from nni_lightnas.latency.graphs import LightNetGraphSpace
    >>> space = LightNetGraphSpace('tiny')
    >>> predictor = make_predictor('additive', space)
    >>> archs = ['MBK3E3-skip-skip', 'MBK3E6-skip-skip', 'skip-skip-skip', 'skip-MBK5E3-skip']
    >>> _ = predictor.fit(archs, [2.0, 3.0, 1.0, 2.5])
    >>> predictor.predict(['skip-skip-skip']).round(1).tolist()
    [1.0]
    """

    kind: ClassVar[str] = ''
    #: True for kinds whose fit also needs other devices' measurements (``pretrain=``).
    needs_pretraining: ClassVar[bool] = False

    def __init__(self, space: GraphSpace, *, seed: int = 0, **options: Any):
        if not isinstance(space, GraphSpace):
            raise TypeError(f'space must be a GraphSpace, got {type(space).__name__}')
        self.space = space
        self.seed = int(seed)
        defaults = self.default_options()
        unknown = set(options) - set(defaults)
        if unknown:
            raise ValueError(f'unknown options {sorted(unknown)} for predictor {self.kind!r}; accepted: {sorted(defaults)}')
        self.options: dict[str, Any] = {**defaults, **options}
        self.fit_info: dict[str, Any] = {}
        self.module: nn.Module | None = None

    # --- to implement ------------------------------------------------------------------------------
    @classmethod
    def default_options(cls) -> dict[str, Any]:
        """Hyper-parameters and their defaults."""
        return {}

    @abc.abstractmethod
    def _fit(self, probs: torch.Tensor, latency_ms: torch.Tensor) -> None:
        """Fit on one-hot ``probs`` ``(n, slots, candidates)``; set :attr:`module` and :attr:`fit_info`."""

    @abc.abstractmethod
    def _build(self) -> nn.Module:
        """An untrained module with the structure :meth:`_fit` chose (from options and fit_info)."""

    # --- public ---------------------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.module is not None

    def fit(self, archs: ArchInput, latency_ms: Sequence[float] | np.ndarray) -> 'LatencyPredictor':
        """Fit on architectures (strings, op lists or :class:`ArchGraph`) and their latencies (ms)."""
        latency = np.asarray(latency_ms, dtype=np.float64).reshape(-1)
        if len(archs) != len(latency):
            raise ValueError(f'{len(archs)} architectures but {len(latency)} latencies')
        if len(latency) < 2:
            raise ValueError(f'need at least 2 measured architectures to fit, got {len(latency)}')
        if not np.all(np.isfinite(latency)) or np.any(latency <= 0):
            bad = [float(v) for v in latency[~np.isfinite(latency) | (latency <= 0)][:5]]
            raise ValueError(f'latencies must be positive finite numbers (ms), got {bad}')
        probs = self.space.one_hot(archs)
        torch.manual_seed(self.seed)
        self.fit_info = {}
        self._fit(probs, torch.tensor(latency, dtype=torch.float32))
        self.fit_info['num_train'] = len(latency)
        _logger.info('fitted %s predictor on %d architectures: %s', self.kind, len(latency), self.fit_info)
        return self

    def _require_fitted(self) -> nn.Module:
        if self.module is None:
            raise RuntimeError(f'the {self.kind} predictor is not fitted; call fit() or load() first')
        return self.module

    def predict_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """Latency (ms) of soft architectures, differentiable in ``probs``.

        ``probs`` is ``(slots, candidates)`` (returns a 0-dim tensor) or ``(batch, slots, candidates)``.
        """
        module = self._require_fitted()
        single = probs.dim() == 2
        batch = probs.unsqueeze(0) if single else probs
        expected = (self.space.num_slots, self.space.max_candidates)
        if tuple(batch.shape[1:]) != expected:
            raise ValueError(f'probs must have shape (batch, {expected[0]}, {expected[1]}), got {tuple(probs.shape)}')
        result = module(batch.float())
        return result[0] if single else result

    def predict(self, archs: ArchInput) -> np.ndarray:
        """Latency (ms) of architectures, as a numpy array."""
        module = self._require_fitted()
        probs = self.space.one_hot(archs)
        with torch.no_grad():
            return np.concatenate([module(chunk).double().numpy() for chunk in probs.split(4096)]) \
                if len(probs) else np.zeros(0)

    def config(self) -> dict[str, Any]:
        """Everything but the weights, JSON-able."""
        return {'format': FORMAT, 'kind': self.kind, 'seed': self.seed, 'space': self.space.to_dict(),
                'options': self.options, 'fit_info': self.fit_info}

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``predictor.json`` and ``weights.pt`` into ``directory`` (created)."""
        module = self._require_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps(self.config(), indent=1, sort_keys=True))
        torch.save({key: value.detach().clone() for key, value in module.state_dict().items()},
                   directory / WEIGHTS_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> 'LatencyPredictor':
        """Read a predictor written by :meth:`save` (any kind when called on the base class)."""
        return load_latency_predictor(directory)

    def __repr__(self) -> str:
        state = f'fitted on {self.fit_info.get("num_train")}' if self.is_fitted else 'not fitted'
        return f'{type(self).__name__}(space={self.space.name!r}, {state})'


#: The kind ``best`` stands for without pretraining data.
BEST_KIND = 'ensemble'
#: The kind ``best`` stands for when pretraining data (other devices) are given.
BEST_TRANSFER_KIND = 'transfer'


def make_predictor(kind: str, space: GraphSpace, *, seed: int = 0, **options: Any) -> LatencyPredictor:
    """A new, unfitted predictor of ``kind`` (see :data:`PREDICTORS`; ``'best'`` is the recommended one).

    ``'best'`` is :data:`BEST_TRANSFER_KIND` when ``pretrain=`` (other devices' measurements)
    is given, :data:`BEST_KIND` otherwise.

    Examples
    --------
    >>> from nni_lightnas.latency.graphs import FBNetGraphSpace
    >>> make_predictor('mlp', FBNetGraphSpace()).kind
    'mlp'
    """
    if kind == 'best':
        kind = BEST_TRANSFER_KIND if options.get('pretrain') is not None else BEST_KIND
    cls = _kind_class(kind)
    if cls is None:
        raise ValueError(f'unknown predictor kind {kind!r}; accepted: {", ".join(_known_kinds())}, best')
    return cls(space, seed=seed, **options)


def load_latency_predictor(directory: str | os.PathLike) -> LatencyPredictor:
    """Read a predictor directory written by :meth:`LatencyPredictor.save`.

    Examples
    --------
    >>> from nni_lightnas.latency.graphs import LightNetGraphSpace
    >>> from nni_lightnas.latency.predictors import AdditivePredictor
    >>> fitted = AdditivePredictor(LightNetGraphSpace('tiny')).fit(['skip-skip-skip', 'MBK3E3-skip-skip'],
    ...                                                             [1.0, 2.0])
    >>> load_latency_predictor(fitted.save('predictor'))
    AdditivePredictor(space='lightnet:b68f72a2329b', fitted on 2)
    """
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f'{directory} is not a predictor directory: {CONFIG_FILE} is missing')
    config = json.loads(config_path.read_text())
    if config.get('format') != FORMAT:
        raise ValueError(f'{config_path}: unknown format {config.get("format")!r}; expected {FORMAT!r}')
    kind = config.get('kind')
    cls = _kind_class(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f'{config_path}: unknown predictor kind {kind!r}; accepted: {_known_kinds()}')
    predictor = cls(space_from_dict(config['space']), seed=config.get('seed', 0), **config['options'])
    predictor.fit_info = dict(config.get('fit_info', {}))
    module = predictor._build()
    state = torch.load(directory / WEIGHTS_FILE, map_location='cpu', weights_only=True)
    module.load_state_dict(state)
    module.eval()
    predictor.module = module
    return predictor

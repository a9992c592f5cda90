"""A gradient-boosted tree on the one-hot op encoding: the strong non-differentiable baseline.

scikit-learn's ``HistGradientBoostingRegressor`` fitted on log-latency. It is not a predictor
kind: a tree ensemble gives no gradient in the op probabilities, so a search cannot use it.
Benchmarks report it beside the kinds (a predictor worth shipping should beat it).

Examples
--------
>>> from nni_lightnas.latency.graphs import LightNetGraphSpace
>>> space = LightNetGraphSpace('tiny')
>>> archs = ['skip-skip-skip', 'MBK3E3-skip-skip', 'MBK3E6-skip-skip', 'skip-MBK5E3-skip']
>>> tree = TreeBaseline(space).fit(archs, [1.0, 2.0, 3.0, 1.5])
>>> tree.predict(archs).shape
(4,)
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from ..graphs import GraphSpace

__all__ = ['TreeBaseline']

_logger = logging.getLogger(__name__)


class TreeBaseline:
    """``HistGradientBoostingRegressor`` on the flattened one-hot encoding, log-latency target.

    scikit-learn's defaults, except ``min_samples_leaf = clip(n_train // 10, 2, 20)`` (its
    default 20 leaves no split below 40 training architectures) and ``random_state = seed``.

    Parameters
    ----------
    space
        The graph space of the architectures.
    seed
        ``random_state`` of the regressor.
    options
        Passed on to ``HistGradientBoostingRegressor``.
    """

    kind = 'gbt'

    def __init__(self, space: GraphSpace, *, seed: int = 0, **options: Any):
        self.space = space
        self.seed = int(seed)
        self.options = dict(options)
        self._model: Any = None

    def _features(self, archs: Sequence[Any]) -> np.ndarray:
        return self.space.one_hot(archs).flatten(1).numpy()

    def fit(self, archs: Sequence[Any], latency_ms: Sequence[float] | np.ndarray) -> 'TreeBaseline':
        """Fit on architectures and their latencies (ms)."""
        from sklearn.ensemble import HistGradientBoostingRegressor
        latency = np.asarray(latency_ms, dtype=np.float64).reshape(-1)
        if len(archs) != len(latency):
            raise ValueError(f'{len(archs)} architectures but {len(latency)} latencies')
        if not np.all(np.isfinite(latency)) or np.any(latency <= 0):
            raise ValueError('latencies must be positive finite numbers (ms)')
        options = {'min_samples_leaf': int(np.clip(len(latency) // 10, 2, 20)), 'random_state': self.seed,
                   **self.options}
        self._model = HistGradientBoostingRegressor(**options).fit(self._features(archs), np.log(latency))
        return self

    def predict(self, archs: Sequence[Any]) -> np.ndarray:
        """Latency (ms) of architectures."""
        if self._model is None:
            raise RuntimeError('the tree baseline is not fitted; call fit() first')
        return np.exp(self._model.predict(self._features(archs)))

"""Predictor accuracy on held-out measured architectures, beside the additive baseline."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from ..datasets import LatencyDataset, split_train_test
from .base import make_predictor

__all__ = ['accuracy_metrics', 'evaluate_predictor']

_logger = logging.getLogger(__name__)


def accuracy_metrics(predicted_ms: np.ndarray, measured_ms: np.ndarray) -> dict[str, float]:
    """Share within +-10% and +-5% (percent), MAPE (percent) and Spearman's rho.

    Examples
    --------
    >>> accuracy_metrics(np.array([1.0, 2.2, 2.9]), np.array([1.0, 2.0, 3.0]))
    {'acc10': 100.0, 'acc5': 66.667, 'mape': 4.444, 'spearman': 1.0}
    """
    from scipy.stats import spearmanr
    predicted_ms = np.asarray(predicted_ms, dtype=float)
    measured_ms = np.asarray(measured_ms, dtype=float)
    relative = np.abs(predicted_ms / measured_ms - 1)
    rho = float(spearmanr(predicted_ms, measured_ms).correlation) if len(measured_ms) > 1 else float('nan')
    tolerance = 1e-9  # 2.2 ms for 2.0 ms measured is within 10%, whatever the rounding of 2.2 / 2.0
    return {'acc10': round(float(100 * np.mean(relative <= 0.10 + tolerance)), 3),
            'acc5': round(float(100 * np.mean(relative <= 0.05 + tolerance)), 3),
            'mape': round(float(100 * np.mean(relative)), 3), 'spearman': round(rho, 4)}


def evaluate_predictor(data: LatencyDataset, *, train_size: int, kind: str = 'best', seed: int = 0,
                       pretrain: Any = None, **options: Any) -> dict[str, Any]:
    """Fit ``kind`` on ``train_size`` random rows, test on every other row with a positive latency.

    The additive baseline is fitted on the same training rows. ``pretrain`` (a
    :class:`~nni_lightnas.latency.predictors.pretrain.PretrainTable` or a pre-trained
    :class:`~nni_lightnas.latency.predictors.pretrain.SourceLatencyNet`) is what the
    ``transfer`` kind adapts (and makes ``best`` mean ``transfer``); a table must not hold the
    target column; other kinds ignore it. Returns the CLI's JSON object:
    ``kind``, ``n_train``, ``n_test``, ``acc10``, ``acc5``, ``mape``, ``spearman`` and ``baseline``
    (the same metrics of the additive predictor), plus ``fit_s`` and ``fit_info``.

    Examples
    --------
    >>> from nni_lightnas.latency.datasets import read_latency_csv
    >>> data = read_latency_csv('shared/data/latency/fbnet_latency_ms.csv', 'gtx1080ti_b1')  # doctest: +SKIP
    >>> evaluate_predictor(data, train_size=100)['acc10']  # doctest: +SKIP
    100.0
    """
    train, test = split_train_test(data, train_size, seed=seed)
    train_archs = [data.archs[i] for i in train]
    test_archs = [data.archs[i] for i in test]
    start = time.perf_counter()
    if pretrain is not None and kind in ('transfer', 'best'):
        columns = getattr(pretrain, 'columns', [])
        if data.column in columns:
            raise ValueError(f'the pretraining data hold the target column {data.column!r}: exclude it '
                             f'(pretraining columns: {list(columns)})')
        options['pretrain'] = pretrain
    predictor = make_predictor(kind, data.space, seed=seed, **options).fit(train_archs, data.latency_ms[train])
    fit_s = time.perf_counter() - start
    result: dict[str, Any] = {'kind': predictor.kind, 'n_train': int(len(train)), 'n_test': int(len(test))}
    result.update(accuracy_metrics(predictor.predict(test_archs), data.latency_ms[test]))
    baseline = predictor if predictor.kind == 'additive' else \
        make_predictor('additive', data.space, seed=seed).fit(train_archs, data.latency_ms[train])
    result['baseline'] = {'kind': 'additive', **accuracy_metrics(baseline.predict(test_archs), data.latency_ms[test])}
    result['fit_s'] = round(fit_s, 2)
    result['fit_info'] = predictor.fit_info
    return result

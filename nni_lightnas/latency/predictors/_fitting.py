"""Numerical helpers shared by the predictors: ridge regression with leave-one-out, a training loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ['RidgeFit', 'ridge_loo', 'huber_ridge', 'train_full_batch', 'relative_error']

#: Ridge penalties tried by :func:`ridge_loo` (features are expected roughly unit-scaled).
DEFAULT_PENALTIES: tuple[float, ...] = tuple(float(v) for v in np.logspace(-4, 4, 17))


@dataclass
class RidgeFit:
    """A ridge fit: ``y ~ X @ coef + intercept``, with the leave-one-out predictions of the chosen penalty."""

    coef: np.ndarray
    intercept: float
    penalty: float
    loo_prediction: np.ndarray
    loo_mse: float


def _svd(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD through torch, which keeps to ``torch.set_num_threads`` (numpy's BLAS may start a
    thread per core and slow down 30x on a loaded machine)."""
    u, s, vt = torch.linalg.svd(torch.from_numpy(np.ascontiguousarray(matrix)), full_matrices=False)
    return u.numpy(), s.numpy(), vt.numpy()


def ridge_loo(features: np.ndarray, target: np.ndarray, *,
              penalties: Sequence[float] = DEFAULT_PENALTIES) -> RidgeFit:
    """Ridge regression (unpenalised intercept); the penalty minimises the exact leave-one-out error.

    One SVD serves every penalty: with hat matrix ``H``, the leave-one-out residual of row ``i``
    is ``r_i / (1 - H_ii)``.

    Examples
    --------
    >>> x = np.arange(10.0).reshape(-1, 1)
    >>> fit = ridge_loo(x, 2 * x[:, 0] + 1)
    >>> round(float(fit.coef[0]), 3), round(fit.intercept, 3)
    (2.0, 1.0)
    """
    features = np.asarray(features, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    num_rows = len(target)
    mean_x, mean_y = features.mean(0), target.mean()
    centered_x, centered_y = features - mean_x, target - mean_y
    u, s, vt = _svd(centered_x)
    uty = u.T @ centered_y
    best: RidgeFit | None = None
    for penalty in penalties:
        shrink = s / (s ** 2 + penalty)
        coef = vt.T @ (shrink * uty)
        leverage = (u ** 2 * (s ** 2 / (s ** 2 + penalty))).sum(1) + 1.0 / num_rows
        residual = (centered_y - centered_x @ coef) / np.clip(1 - leverage, 1e-6, None)
        mse = float((residual ** 2).mean())
        if best is None or mse < best.loo_mse - 1e-15:
            intercept = float(mean_y - mean_x @ coef)
            best = RidgeFit(coef, intercept, float(penalty), target - residual, mse)
    assert best is not None
    return best


def huber_ridge(features: np.ndarray, target: np.ndarray, *, penalty: float, iterations: int = 8,
                threshold: float = 1.345) -> RidgeFit:
    """Ridge regression with a Huber loss (iteratively reweighted least squares).

    Residuals beyond ``threshold`` robust standard deviations (MAD) get weight
    ``threshold * scale / |r|``: a few wild measurements (a phone that was hot for a while)
    stop pulling the fit. The leave-one-out predictions use the final weights.

    Examples
    --------
    >>> x = np.arange(20.0).reshape(-1, 1)
    >>> y = 2 * x[:, 0] + 1
    >>> y[3] += 100  # one outlier
    >>> round(float(huber_ridge(x, y, penalty=1e-6).coef[0]), 2)
    2.0
    """
    features = np.asarray(features, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    weights = np.ones(len(target))
    for _ in range(max(1, iterations)):
        mean_x = weights @ features / weights.sum()
        mean_y = weights @ target / weights.sum()
        root = np.sqrt(weights)
        centered_x = (features - mean_x) * root[:, None]
        centered_y = (target - mean_y) * root
        u, s, vt = _svd(centered_x)
        coef = vt.T @ (s / (s ** 2 + penalty) * (u.T @ centered_y))
        intercept = float(mean_y - mean_x @ coef)
        residual = target - features @ coef - intercept
        scale = float(np.median(np.abs(residual - np.median(residual)))) / 0.6745 + 1e-12
        ratio = np.abs(residual) / (threshold * scale)
        weights = np.where(ratio <= 1, 1.0, 1.0 / np.maximum(ratio, 1e-12))
    leverage = (u ** 2 * (s ** 2 / (s ** 2 + penalty))).sum(1) + weights / weights.sum()
    loo_residual = residual / np.clip(1 - leverage, 1e-6, None)
    return RidgeFit(coef, intercept, float(penalty), target - loo_residual, float(np.mean(loo_residual ** 2)))


def relative_error(prediction_ms: np.ndarray, latency_ms: np.ndarray) -> np.ndarray:
    """``prediction / measured - 1``."""
    return np.asarray(prediction_ms) / np.asarray(latency_ms) - 1


def train_full_batch(module: nn.Module, inputs: torch.Tensor, target: torch.Tensor, *, epochs: int,
                     lr: float, weight_decay: float, loss: str = 'mse') -> float:
    """Full-batch AdamW with cosine decay; returns the final training loss.

    ``module(inputs)`` must return a ``(batch,)`` tensor comparable with ``target``.
    """
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, epochs))
    criterion = nn.MSELoss() if loss == 'mse' else nn.HuberLoss(delta=1.0)
    module.train()
    value = float('nan')
    for _ in range(epochs):
        optimizer.zero_grad()
        error = criterion(module(inputs), target)
        error.backward()
        optimizer.step()
        scheduler.step()
        value = float(error.detach())
    module.eval()
    return value


def residual_shrink(out_of_fold: np.ndarray, residual: np.ndarray, *, min_scale: float) -> float:
    """Least-squares factor in [0, 1] on out-of-fold residual predictions; 0 below ``min_scale`` (or no signal).

    >>> residual_shrink(np.array([1.0, 2.0]), np.array([0.5, 1.0]), min_scale=0.1)
    0.5
    >>> residual_shrink(np.array([1.0, 2.0]), np.array([0.05, 0.1]), min_scale=0.1)
    0.0
    """
    denominator = float(out_of_fold @ out_of_fold)
    scale = float(np.clip((out_of_fold @ residual) / denominator, 0.0, 1.0)) if denominator > 0 else 0.0
    return 0.0 if scale < min_scale else scale

"""Short, seeded training runs on a small dataset (used by space profiling and Comfort Zone scaling).

Plain PyTorch (no Lightning): these runs are a few dozen to a few hundred steps on a slice
of Fashion-MNIST, where a trainer's start-up cost would dominate.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

__all__ = ['train_steps', 'evaluate_accuracy', 'batch_statistics_accuracy', 'dataset_tensors']

_logger = logging.getLogger(__name__)


def dataset_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, labels)`` of a ``TensorDataset`` or a ``Subset`` of one (other datasets are stacked)."""
    from torch.utils.data import Subset, TensorDataset
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0], dataset.tensors[1]
    if isinstance(dataset, Subset) and isinstance(dataset.dataset, TensorDataset):
        index = torch.as_tensor(list(dataset.indices), dtype=torch.long)
        return dataset.dataset.tensors[0][index], dataset.dataset.tensors[1][index]
    items = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
    return torch.stack([torch.as_tensor(x) for x, _ in items]), torch.as_tensor([int(y) for _, y in items])


def train_steps(model: nn.Module, dataset: Dataset, *, steps: int, batch_size: int = 64,
                learning_rate: float = 0.05, weight_decay: float = 4e-5, cosine: bool = True,
                seed: int = 0) -> float:
    """Train ``model`` in place for ``steps`` SGD steps (momentum 0.9, Nesterov); returns the mean loss.

    Batches are drawn from a permutation seeded by ``seed`` (reshuffled after each pass), so
    two runs with one seed see the same batches. ``cosine`` anneals the learning rate to 0.

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,)))
    >>> loss = train_steps(nn.Linear(4, 2), data, steps=2, batch_size=8)
    >>> loss > 0
    True
    """
    if steps < 0:
        raise ValueError(f'steps must be >= 0, got {steps=}')
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size=}')
    if steps == 0:
        return math.nan
    inputs, labels = dataset_tensors(dataset)
    if len(inputs) == 0:
        raise ValueError('cannot train on an empty dataset')
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=0.9, nesterov=True,
                                weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps) if cosine else None
    model.train()
    order = torch.randperm(len(inputs), generator=generator)
    position, total = 0, 0.0
    for _ in range(steps):
        if position + batch_size > len(order):
            order = torch.randperm(len(inputs), generator=generator)
            position = 0
        index = order[position:position + batch_size]
        position += batch_size
        loss = F.cross_entropy(model(inputs[index]), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += float(loss.detach())
    return total / steps


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, dataset: Dataset, *, batch_size: int = 500) -> float:
    """Top-1 accuracy (a fraction in [0, 1]) of ``model`` on ``dataset``, in eval mode.

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.randn(6, 4), torch.zeros(6, dtype=torch.long))
    >>> 0.0 <= evaluate_accuracy(nn.Linear(4, 2), data) <= 1.0
    True
    """
    inputs, labels = dataset_tensors(dataset)
    if len(inputs) == 0:
        raise ValueError('cannot evaluate on an empty dataset')
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(inputs), batch_size):
        logits = model(inputs[start:start + batch_size])
        correct += int((logits.argmax(1) == labels[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / len(inputs)


@torch.no_grad()
def batch_statistics_accuracy(model: nn.Module, batches, *, device: torch.device | str = 'cpu') -> float:
    """Top-1 accuracy of ``model`` on ``batches`` of ``(inputs, labels)``, batch norm on each batch's statistics.

    How a supernet scores one of its subnets: the shared running statistics belong to no single
    path, so batch norm normalises with the batch's own (training mode) at momentum 0, and the
    model's running statistics and mode are left as they were.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    >>> before = net[1].running_mean.clone()
    >>> 0.0 <= batch_statistics_accuracy(net, [(torch.randn(6, 4), torch.zeros(6, dtype=torch.long))]) <= 1.0
    True
    >>> bool((net[1].running_mean == before).all())
    True
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    was_training = model.training
    model.train()
    for norm in norms:
        norm.momentum = 0.0
    correct = total = 0
    try:
        for inputs, labels in batches:
            logits = model(inputs.to(device))
            correct += int((logits.argmax(1) == labels.to(device)).sum())
            total += len(labels)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.train(was_training)
    if total == 0:
        raise ValueError('batch_statistics_accuracy needs at least one non-empty batch')
    return correct / total

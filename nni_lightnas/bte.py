"""Batchwise training estimation (BTE): a cheap accuracy proxy for ranking candidates.

Train a candidate for ``batches`` mini-batches (from weights inherited from a supernet when
one is given, else from scratch) and score it by what it shows on the last ``last`` batches:
their mean training accuracy (``metric='accuracy'``) or minus their mean training loss
(``metric='loss'``), so a higher score is always better. Every candidate sees the same
batches in the same order (one seeded permutation), which keeps the data noise common to
all candidates and out of their ranking.

The LightNAS/SurgeNAS papers name BTE but publish no setting. The defaults below were
chosen by measurement on Fashion-MNIST (``benchmarks/bte_rank.py --quick``, numbers in
``docs/evolution.md``): over 20 width configurations of one LightNet, Adam at 1e-3 and the
loss of the last batches ranked best among the settings tried (Kendall tau 0.54 against two
epochs of training, at 3% of its cost), flat from 10 to 40 batches, while SGD at 0.1 ranked
worse (0.25-0.34). That is no better than parameter count (0.49) or synflow (0.54) on that
benchmark; see the documentation for what this does and does not show.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

__all__ = ['DEFAULT_BATCHES', 'DEFAULT_LAST', 'DEFAULT_BATCH_SIZE', 'DEFAULT_OPTIMIZER', 'DEFAULT_LR',
           'DEFAULT_METRIC', 'METRICS', 'OPTIMIZERS', 'BTEResult', 'batchwise_training_estimation',
           'inherit_weights', 'fixed_batches']

_logger = logging.getLogger(__name__)

#: Defaults, chosen with ``benchmarks/bte_rank.py`` (see ``docs/evolution.md``).
DEFAULT_BATCHES = 20
DEFAULT_LAST = 10
DEFAULT_BATCH_SIZE = 64
DEFAULT_OPTIMIZER = 'adam'
DEFAULT_LR = 1e-3
DEFAULT_METRIC = 'loss'

METRICS = ('accuracy', 'loss')
OPTIMIZERS = ('sgd', 'adam')


@dataclass
class BTEResult:
    """The outcome of one batchwise training estimation.

    Attributes
    ----------
    score
        The proxy, higher is better: mean accuracy (0..1) or minus the mean loss over the last batches.
    accuracy, loss
        Mean training accuracy and loss over the last ``last`` batches.
    batches, last, batch_size
        The setting used.
    metric
        ``'accuracy'`` or ``'loss'``: what ``score`` is.
    seconds
        Wall time of the training (data and model already in memory).
    inherited
        Number of parameter/buffer tensors taken from a supernet (0: trained from scratch).
    losses, accuracies
        Per-batch training loss and accuracy, in order.
    """

    score: float
    accuracy: float
    loss: float
    batches: int
    last: int
    batch_size: int
    metric: str
    seconds: float
    inherited: int = 0
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)

    def to_dict(self, *, history: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not history:
            data.pop('losses')
            data.pop('accuracies')
        return data


def fixed_batches(dataset: Dataset, *, batch_size: int, num_batches: int,
                  seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``num_batches`` mini-batches in one seeded order (epochs reshuffle with the same generator).

    Examples
    --------
    >>> data = TensorDataset(torch.arange(10).float(), torch.arange(10))
    >>> [y.tolist() for _, y in fixed_batches(data, batch_size=4, num_batches=2, seed=0)] == \\
    ...     [y.tolist() for _, y in fixed_batches(data, batch_size=4, num_batches=2, seed=0)]
    True
    """
    size = len(dataset)  # type: ignore[arg-type]
    if size < batch_size:
        raise ValueError(f'the dataset has {size} examples, fewer than one batch of {batch_size}')
    generator = torch.Generator().manual_seed(seed)
    if isinstance(dataset, TensorDataset):
        produced = 0
        while produced < num_batches:
            order = torch.randperm(size, generator=generator)
            for start in range(0, size - batch_size + 1, batch_size):
                if produced >= num_batches:
                    return
                index = order[start:start + batch_size]
                inputs, targets = dataset.tensors[0][index], dataset.tensors[1][index]
                produced += 1
                yield inputs, targets
        return
    produced = 0
    while produced < num_batches:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator)
        for inputs, targets in loader:
            if produced >= num_batches:
                return
            produced += 1
            yield inputs, targets


def inherit_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> int:
    """Copy the leading slice of each supernet tensor into the same-named tensor of ``model``.

    A narrower candidate takes the first channels of every weight of the widest network (as
    in once-for-all supernets): ``model.w = supernet.w[:out, :in, ...]``. Tensors whose name
    is missing, whose rank differs, or which are larger than the supernet's are left as
    initialised (logged at debug level).

    Returns
    -------
    int
        Number of tensors inherited.

    Examples
    --------
    >>> wide, narrow = nn.Linear(8, 4), nn.Linear(6, 2)
    >>> inherit_weights(narrow, wide.state_dict())
    2
    >>> bool((narrow.weight == wide.weight[:2, :6]).all())
    True
    """
    own = model.state_dict()
    inherited = 0
    with torch.no_grad():
        for name, tensor in own.items():
            source = state_dict.get(name)
            if source is None or source.dim() != tensor.dim() or any(
                    s < t for s, t in zip(source.shape, tensor.shape)):
                _logger.debug('not inherited: %s %s (supernet: %s)', name, tuple(tensor.shape),
                              None if source is None else tuple(source.shape))
                continue
            tensor.copy_(source[tuple(slice(0, t) for t in tensor.shape)])
            inherited += 1
    return inherited


def _make_optimizer(name: str, parameters, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == 'sgd':
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    if name == 'adam':
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    raise ValueError(f'optimizer must be one of {OPTIMIZERS}, got {name!r}')


def batchwise_training_estimation(model: nn.Module, dataset: Dataset, *, batches: int = DEFAULT_BATCHES,
                                  last: int = DEFAULT_LAST, batch_size: int = DEFAULT_BATCH_SIZE,
                                  optimizer: str = DEFAULT_OPTIMIZER, lr: float = DEFAULT_LR,
                                  momentum: float = 0.9, weight_decay: float = 0.0,
                                  metric: str = DEFAULT_METRIC, seed: int = 0,
                                  supernet_state: Mapping[str, torch.Tensor] | None = None,
                                  device: str | torch.device = 'cpu') -> BTEResult:
    """Score ``model`` by a short training: the BTE proxy of stage 2.

    The model is trained in place (``batches`` SGD/Adam steps, cross-entropy, a constant
    learning rate); initialise it beforehand (seed it for reproducible ranking) or give
    ``supernet_state`` to inherit weights first (:func:`inherit_weights`).

    Parameters
    ----------
    model
        The candidate, a plain ``nn.Module`` classifier.
    dataset
        Training examples ``(input, label)``; a ``TensorDataset`` is sliced directly (fast).
    batches
        Training steps B.
    last
        The score averages the last K batches (``1 <= last <= batches``).
    batch_size
        Examples per batch.
    optimizer
        ``'sgd'`` (Nesterov momentum) or ``'adam'``.
    lr, momentum, weight_decay
        Optimiser settings (``momentum`` is ignored by Adam).
    metric
        ``'accuracy'`` (score = mean training accuracy) or ``'loss'`` (score = minus mean loss).
    seed
        Seed of the batch order and of dropout; equal seeds give every candidate the same batches.
    supernet_state
        State dict of a wider network of the same family to inherit weights from.
    device
        Torch device to train on.

    Examples
    --------
    >>> from nni_lightnas.search_spaces import LightNet
    >>> data = TensorDataset(torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    >>> result = batchwise_training_estimation(LightNet('skip-skip-skip', 'tiny'), data, batches=4, last=2,
    ...                                        batch_size=16, metric='accuracy')
    >>> 0.0 <= result.score <= 1.0, len(result.losses)
    (True, 4)
    """
    if not (isinstance(batches, int) and batches >= 1):
        raise ValueError(f'batches must be a positive integer, got {batches!r}')
    if not (isinstance(last, int) and 1 <= last <= batches):
        raise ValueError(f'last must be an integer in [1, batches={batches}], got {last!r}')
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f'batch_size must be a positive integer, got {batch_size!r}')
    if metric not in METRICS:
        raise ValueError(f'metric must be one of {METRICS}, got {metric!r}')
    if optimizer not in OPTIMIZERS:
        raise ValueError(f'optimizer must be one of {OPTIMIZERS}, got {optimizer!r}')
    if not lr > 0:
        raise ValueError(f'lr must be > 0, got {lr!r}')
    inherited = inherit_weights(model, supernet_state) if supernet_state is not None else 0
    model.to(device).train()
    torch.manual_seed(seed)
    opt = _make_optimizer(optimizer, model.parameters(), lr, momentum, weight_decay)
    losses: list[float] = []
    accuracies: list[float] = []
    start = time.perf_counter()
    for inputs, targets in fixed_batches(dataset, batch_size=batch_size, num_batches=batches, seed=seed):
        inputs, targets = inputs.to(device), targets.to(device)
        logits = model(inputs)
        loss = nn.functional.cross_entropy(logits, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        accuracies.append(float((logits.detach().argmax(1) == targets).float().mean()))
    seconds = time.perf_counter() - start
    mean_loss = sum(losses[-last:]) / last
    mean_accuracy = sum(accuracies[-last:]) / last
    if not math.isfinite(mean_loss):
        _logger.warning('BTE: training diverged (mean loss %s over the last %d batches)', mean_loss, last)
        mean_loss = float('inf')
    score = mean_accuracy if metric == 'accuracy' else -mean_loss
    return BTEResult(score=score, accuracy=mean_accuracy, loss=mean_loss, batches=batches, last=last,
                     batch_size=batch_size, metric=metric, seconds=seconds, inherited=inherited,
                     losses=losses, accuracies=accuracies)

"""Parameter and multiply-accumulate counts of a network, by forward hooks.

FLOPs are counted as multiply-accumulates (MACs) of convolutions and linear layers, the
convention of the MobileNet, ProxylessNAS and LightNAS papers; BatchNorm, activations and
additions are left out (they fold into the convolutions at deployment).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

__all__ = ['ModelCost', 'count_macs_params']

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelCost:
    """MACs of one forward pass (batch 1) and the number of parameters.

    Examples
    --------
    >>> cost = ModelCost(macs=2_500_000, params=120_000)
    >>> cost.flops_m, cost.params_m
    (2.5, 0.12)
    """

    macs: int
    params: int

    @property
    def flops_m(self) -> float:
        """Millions of multiply-accumulates ("MFLOPs" in the NAS papers)."""
        return self.macs / 1e6

    @property
    def params_m(self) -> float:
        """Millions of parameters."""
        return self.params / 1e6


def _conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    kernel = module.kernel_size[0] * module.kernel_size[1]
    return int(output[0].numel() * (module.in_channels // module.groups) * kernel)


def _linear_macs(module: nn.Linear, output: torch.Tensor) -> int:
    return int(output[0].numel() * module.in_features)


def count_macs_params(model: nn.Module, input_shape: Sequence[int]) -> ModelCost:
    """Count the MACs of one example and the parameters of ``model``.

    Parameters
    ----------
    model
        A plain ``nn.Module``.
    input_shape
        Shape of one input without the batch, e.g. ``(1, 28, 28)``; a 4-d shape's batch is
        ignored (MACs are per example).

    Examples
    --------
    >>> cost = count_macs_params(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 64, 10)),
    ...                          (1, 8, 8))
    >>> cost.macs == 4 * 64 * 9 + 4 * 64 * 10, cost.params
    (True, 2610)
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 4:
        shape = shape[1:]
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f'input_shape must be (channels, height, width), got {tuple(input_shape)}')
    total = [0]

    def hook(module: nn.Module, _inputs, output) -> None:
        if isinstance(module, nn.Conv2d):
            total[0] += _conv_macs(module, output)
        elif isinstance(module, nn.Linear):
            total[0] += _linear_macs(module, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1,) + shape))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for p in model.parameters())
    return ModelCost(macs=total[0], params=params)

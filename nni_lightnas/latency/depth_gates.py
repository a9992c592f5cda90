"""Depth gates: the latency of a depth choice (NNI's ``Repeat``) in an additive per-op table.

A ``Repeat`` with a depth choice runs its first ``d`` blocks; the choices inside block ``i``
count only when ``d > i``. A per-op table keeps its rows (one per label and op) and adds one
gate per depth choice: the depth label (its ops are the depths, as strings; its rows hold the
latency of the blocks' fixed parts, 0 when every block is a ``LayerChoice``) and the labels
decided inside each block. Then

    LAT(arch)  = fixed + sum_l  active_l(arch) * lut[l, arch[l]]
    LAT(alpha) = fixed + sum_l  P(active_l) * sum_op p_l(op) * lut[l, op]

where ``active_l`` is 1 unless ``l`` sits in a block past the chosen depth, and
``P(active_l) = sum over depths d > i of p_depth(d)`` (exact: the search draws the depth and the
ops independently). Gates live in a table's metadata (``depth_gates``, a list of dicts), so a
saved, calibrated or energy view of the table keeps them.

Examples
--------
>>> import torch
>>> gate = DepthGate(label='depth', depths=(1, 2), blocks=(('b0',), ('b1',)))
>>> active_weights([gate], {'depth': '1', 'b0': 'conv', 'b1': 'conv'})
{'b0': 1.0, 'b1': 0.0}
>>> {label: float(p) for label, p in active_probabilities([gate], {'depth': torch.tensor([0.25, 0.75])}).items()}
{'b0': 1.0, 'b1': 0.75}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

__all__ = ['DepthGate', 'gates_from_metadata', 'gates_to_metadata', 'active_weights', 'active_probabilities',
           'active_mask', 'gated_range', 'check_gates']

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DepthGate:
    """One depth choice: its label, its depths (in the label's candidate order) and the labels in each block.

    Attributes
    ----------
    label
        The depth choice's label; its ops in a table are ``str(depth)``.
    depths
        The depths, in candidate order (``(1, 2, 3, 4)``).
    blocks
        For block ``i`` (0-based, up to the largest depth), the labels of the choices inside it.
    """

    label: str
    depths: tuple[int, ...]
    blocks: tuple[tuple[str, ...], ...]

    def __post_init__(self):
        if not self.depths or any(not isinstance(d, int) or d < 0 for d in self.depths):
            raise ValueError(f'depths must be non-negative integers, got depths={self.depths!r} for {self.label!r}')
        if max(self.depths) > len(self.blocks):
            raise ValueError(f'depth choice {self.label!r} reaches depth {max(self.depths)} but has '
                             f'{len(self.blocks)} blocks')

    @property
    def ops(self) -> list[str]:
        """The depth label's op names: the depths as strings."""
        return [str(d) for d in self.depths]

    def block_of(self) -> dict[str, int]:
        """Label -> the block it sits in."""
        return {label: index for index, labels in enumerate(self.blocks) for label in labels}


def gates_from_metadata(metadata: Mapping[str, Any]) -> list[DepthGate]:
    """The gates stored in a table's ``metadata['depth_gates']`` (none when absent)."""
    raw = metadata.get('depth_gates') or []
    return [DepthGate(label=str(item['label']), depths=tuple(int(d) for d in item['depths']),
                      blocks=tuple(tuple(str(label) for label in block) for block in item['blocks']))
            for item in raw]


def gates_to_metadata(gates: Sequence[DepthGate]) -> list[dict[str, Any]]:
    """The JSON form of ``gates`` (for ``metadata['depth_gates']``); :func:`gates_from_metadata` reads it back."""
    return [{'label': gate.label, 'depths': list(gate.depths), 'blocks': [list(block) for block in gate.blocks]}
            for gate in gates]


def check_gates(gates: Sequence[DepthGate], candidates: Mapping[str, Sequence[str]]) -> None:
    """Raise ``ValueError`` unless every gate's label and block labels are layers of ``candidates``."""
    seen: dict[str, str] = {}
    for gate in gates:
        if list(candidates.get(gate.label, [])) != gate.ops:
            raise ValueError(f'depth gate {gate.label!r} needs the layer {gate.label!r} with ops {gate.ops}; the table '
                             f'has {list(candidates.get(gate.label, [])) or "no such layer"}')
        for label in gate.block_of():
            if label not in candidates:
                raise ValueError(f'depth gate {gate.label!r} gates layer {label!r}, which the table lacks '
                                 f'(layers: {list(candidates)})')
            if label in seen:
                raise ValueError(f'layer {label!r} is gated twice (by {seen[label]!r} and {gate.label!r})')
            seen[label] = gate.label


def active_weights(gates: Sequence[DepthGate], arch: Mapping[str, str]) -> dict[str, float]:
    """Gated label -> 1.0 if its block runs at ``arch``'s depth, else 0.0 (ungated labels are absent)."""
    weights: dict[str, float] = {}
    for gate in gates:
        depth = int(arch[gate.label])
        for label, index in gate.block_of().items():
            weights[label] = 1.0 if index < depth else 0.0
    return weights


def active_mask(gates: Sequence[DepthGate], labels: Sequence[str], choices: np.ndarray) -> np.ndarray:
    """0/1 per (architecture, label) for rows of op indices in ``labels`` order (1 for ungated labels)."""
    mask = np.ones(choices.shape, dtype=float)
    column = {label: i for i, label in enumerate(labels)}
    for gate in gates:
        depth = np.asarray(gate.depths)[choices[:, column[gate.label]]]
        for label, index in gate.block_of().items():
            mask[:, column[label]] = (depth > index).astype(float)
    return mask


def active_probabilities(gates: Sequence[DepthGate], probs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Gated label -> probability that its block runs (differentiable in the depth probabilities)."""
    active: dict[str, torch.Tensor] = {}
    for gate in gates:
        p = probs[gate.label]
        depths = torch.tensor(gate.depths, device=p.device)
        for label, index in gate.block_of().items():
            active[label] = (p * (depths > index).to(p.dtype)).sum(-1)
    return active


def gated_range(gates: Sequence[DepthGate], values: Mapping[str, torch.Tensor]) -> tuple[float, float]:
    """(lowest, highest) over all architectures of the sum of every label's row, gates applied (no fixed part).

    ``values`` holds each label's row values (in candidate order). The gates' groups are
    independent of each other and of the ungated labels, so each is minimised on its own.
    """
    gated = {gate.label for gate in gates} | {label for gate in gates for label in gate.block_of()}
    low = sum(float(v.min()) for label, v in values.items() if label not in gated)
    high = sum(float(v.max()) for label, v in values.items() if label not in gated)
    for gate in gates:
        lows, highs = [], []
        for position, depth in enumerate(gate.depths):
            lows.append(float(values[gate.label][position])
                        + sum(float(values[label].min()) for block in gate.blocks[:depth] for label in block))
            highs.append(float(values[gate.label][position])
                         + sum(float(values[label].max()) for block in gate.blocks[:depth] for label in block))
        low += min(lows)
        high += max(highs)
    return low, high

"""Small shared pieces of the LightNAS strategy tests: a synthetic LUT and tiny data loaders."""

from __future__ import annotations

import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

from nni_lightnas.latency.lut import LatencyLUT
from nni_lightnas.search_spaces import OP_NAMES, LightNASSpace

#: Per-op latency (ms) of the synthetic table; layer i costs (1 + 0.25 i) times these.
OP_COST_MS = {'MBK3E3': 0.30, 'MBK3E6': 0.50, 'MBK5E3': 0.40, 'MBK5E6': 0.70, 'MBK7E3': 0.50, 'MBK7E6': 0.90,
              'skip': 0.05}
FIXED_MS = 1.0


def synthetic_lut(preset: str = 'tiny') -> LatencyLUT:
    """An additive latency table with known values for every (layer, op) of ``preset``."""
    space = LightNASSpace(preset)
    rows = [{'kind': 'fixed', 'layer': 'stem', 'op': 'stem', 'latency_ms': FIXED_MS}]
    for index, label in enumerate(space.labels):
        for op in OP_NAMES:
            rows.append({'kind': 'op', 'layer': label, 'op': op, 'latency_ms': OP_COST_MS[op] * (1 + 0.25 * index)})
    return LatencyLUT(pd.DataFrame(rows), {})


def synthetic_loaders(num_examples: int = 256, batch_size: int = 64, seed: int = 0):
    """Two loaders of a learnable 10-class problem on 1x28x28 inputs (class = brightest quadrant-ish)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (num_examples,), generator=generator)
    images = torch.randn(num_examples, 1, 28, 28, generator=generator) * 0.3
    for cls in range(10):
        row, col = divmod(cls, 4)
        images[labels == cls, :, row * 7:(row + 1) * 7, col * 7:(col + 1) * 7] += 1.0
    half = num_examples // 2
    train = TensorDataset(images[:half], labels[:half])
    arch = TensorDataset(images[half:], labels[half:])
    # shuffled from torch's global generator, which LightNAS checkpoints save and restore
    return (DataLoader(train, batch_size=batch_size, shuffle=True),
            DataLoader(arch, batch_size=batch_size, shuffle=True))

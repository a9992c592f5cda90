"""A user-written keyword-spotting space: 1-D convolutions over generated audio features.

Nothing here imports nni-lightnas: it is the kind of NNI model space a user already has.
The input is a log-mel feature map ``(batch, 40 mel bins, 49 frames)`` (about one second of
audio at a 20 ms hop); each of the blocks chooses between 1-D convolutions of several kernel
sizes, a depthwise-separable convolution and a skip. :func:`generated_kws_features` makes a
learnable 12-class data set of such feature maps (each keyword a spectro-temporal pattern at a
random time shift, plus noise), so the example runs without downloading speech data.

Examples
--------
>>> import torch
>>> space = KWSSpace(channels=32, num_blocks=3)
>>> space(torch.zeros(2, 40, 49)).shape
torch.Size([2, 12])
>>> features, labels = generated_kws_features(64, seed=0)[:]
>>> features.shape, int(labels.max()) < 12
(torch.Size([64, 40, 49]), True)
"""

from __future__ import annotations

import torch
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from torch import nn
from torch.utils.data import TensorDataset

__all__ = ['KWSSpace', 'generated_kws_features', 'NUM_MELS', 'NUM_FRAMES', 'NUM_KEYWORDS']

NUM_MELS, NUM_FRAMES, NUM_KEYWORDS = 40, 49, 12


def conv_bn(in_chs: int, out_chs: int, kernel_size: int, *, groups: int = 1) -> nn.Sequential:
    """Conv1d ('same' padding) -> BatchNorm1d -> ReLU."""
    return nn.Sequential(nn.Conv1d(in_chs, out_chs, kernel_size, padding=kernel_size // 2, groups=groups, bias=False),
                         nn.BatchNorm1d(out_chs), nn.ReLU())


def dw_separable(chs: int, kernel_size: int) -> nn.Sequential:
    """Depthwise conv (kernel_size) then pointwise conv, each with BN and ReLU."""
    return nn.Sequential(conv_bn(chs, chs, kernel_size, groups=chs), conv_bn(chs, chs, 1))


class KWSSpace(ModelSpace):
    """Stem conv, ``num_blocks`` searchable blocks, global average pool over time, linear classifier.

    Parameters
    ----------
    channels
        Width of every block.
    num_blocks
        Searchable blocks (labels ``block0``, ``block1``, ...).
    num_mels, num_classes
        Feature bins of the input and keywords to tell apart.
    """

    def __init__(self, channels: int = 64, num_blocks: int = 4, num_mels: int = NUM_MELS,
                 num_classes: int = NUM_KEYWORDS):
        super().__init__()
        self.stem = conv_bn(num_mels, channels, 3)
        self.blocks = nn.ModuleList([
            LayerChoice({
                'conv3': conv_bn(channels, channels, 3),
                'conv5': conv_bn(channels, channels, 5),
                'conv9': conv_bn(channels, channels, 9),
                'dwsep9': dw_separable(channels, 9),
                'skip': nn.Identity(),
            }, label=f'block{index}') for index in range(num_blocks)])
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.stem(features)
        for block in self.blocks:
            x = block(x)
        return self.classifier(x.mean(-1))


def generated_kws_features(num_examples: int = 2048, *, seed: int = 0, num_classes: int = NUM_KEYWORDS,
                           noise: float = 0.6) -> TensorDataset:
    """A learnable keyword-spotting data set of generated log-mel features ``(40, 49)``.

    Each keyword is a fixed random pattern of 6 bins x 12 frames (drawn once from a generator
    seeded by 1234, the same for every call), placed at a random frame in each example and
    buried in Gaussian noise; ``seed`` picks the examples.
    """
    patterns = torch.randn(num_classes, NUM_MELS, 12, generator=torch.Generator().manual_seed(1234))
    patterns *= (torch.rand(num_classes, NUM_MELS, 1, generator=torch.Generator().manual_seed(99)) < 0.3)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (num_examples,), generator=generator)
    features = noise * torch.randn(num_examples, NUM_MELS, NUM_FRAMES, generator=generator)
    starts = torch.randint(0, NUM_FRAMES - 12, (num_examples,), generator=generator)
    for index in range(num_examples):
        start = int(starts[index])
        features[index, :, start:start + 12] += patterns[int(labels[index])]
    return TensorDataset(features, labels)

"""Macro-structure of the LightNAS space: presets and per-layer shapes.

A :class:`SpaceConfig` is the data that fixes everything but the searched ops: input,
stem, the fixed first block, the stage table and the head. :func:`layer_specs` turns it
into one :class:`LayerSpec` per searchable layer (label, channels, stride, input size),
which the model space, the channel space and the latency table all share.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from .blocks import make_divisible

__all__ = ['StageSpec', 'SpaceConfig', 'LayerSpec', 'PRESETS', 'get_preset', 'layer_specs', 'layer_label']


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``num_layers`` searchable layers of ``out_chs`` channels, the first with ``stride``."""

    out_chs: int
    num_layers: int
    stride: int


@dataclass(frozen=True)
class SpaceConfig:
    """Everything of a LightNAS space except the searched ops.

    Attributes
    ----------
    name
        Preset name (informational).
    input_size
        Height = width of the input image.
    in_chans
        Input channels (3 for RGB, 1 for Fashion-MNIST).
    num_classes
        Classifier outputs.
    stem_chs, stem_stride
        The 3x3 stem conv.
    first_block
        The fixed block after the stem (``MBK3E1`` in LightNAS), mapping ``stem_chs`` to itself.
    stages
        The searchable stages.
    head_chs
        Width of the 1x1 conv before global pooling.
    hidden_chs
        Width of the hidden linear layer of the classifier; ``None`` for a single linear layer.
    dropout
        Dropout before the last linear layer.
    width_mult
        Multiplies every channel count (rounded to multiples of 8), not the classifier's.

    Examples
    --------
    >>> config = get_preset('imagenet')
    >>> sum(stage.num_layers for stage in config.stages)
    21
    """

    name: str
    input_size: int
    in_chans: int
    num_classes: int
    stem_chs: int
    stem_stride: int
    stages: tuple[StageSpec, ...]
    head_chs: int
    hidden_chs: int | None = None
    dropout: float = 0.0
    first_block: str = 'MBK3E1'
    width_mult: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.width_mult, (int, float)) and 0 < self.width_mult <= 4):
            raise ValueError(f'width_mult must be in (0, 4], got width_mult={self.width_mult!r}')
        if not (isinstance(self.input_size, int) and self.input_size >= 8):
            raise ValueError(f'input_size must be an integer >= 8, got input_size={self.input_size!r}')
        if not (isinstance(self.in_chans, int) and self.in_chans >= 1):
            raise ValueError(f'in_chans must be a positive integer, got in_chans={self.in_chans!r}')
        if not (isinstance(self.num_classes, int) and self.num_classes >= 2):
            raise ValueError(f'num_classes must be an integer >= 2, got num_classes={self.num_classes!r}')
        if not 0 <= self.dropout < 1:
            raise ValueError(f'dropout must be in [0, 1), got dropout={self.dropout!r}')

    @property
    def num_layers(self) -> int:
        """Number of searchable layers."""
        return sum(stage.num_layers for stage in self.stages)

    def channels(self, base_chs: int) -> int:
        """A base channel count scaled by ``width_mult``."""
        return base_chs if self.width_mult == 1 else make_divisible(base_chs * self.width_mult)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> 'SpaceConfig':
        data = dict(data)
        data['stages'] = tuple(StageSpec(**stage) if isinstance(stage, dict) else StageSpec(*stage)
                               for stage in data['stages'])
        return cls(**data)

    def fingerprint(self) -> str:
        """A short hash of the macro-structure: two configs with one fingerprint build the same space.

        Examples
        --------
        >>> get_preset('fashion_mnist').fingerprint() == get_preset('fashion_mnist').fingerprint()
        True
        >>> get_preset('fashion_mnist').fingerprint() == get_preset('fashion_mnist', width_mult=0.5).fingerprint()
        False
        """
        data = self.to_dict()
        data.pop('name')
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _stages(*rows: tuple[int, int, int]) -> tuple[StageSpec, ...]:
    return tuple(StageSpec(*row) for row in rows)


PRESETS: dict[str, SpaceConfig] = {
    # The LightNAS ImageNet space (Luo et al., DAC 2022 / TCAD 2023): 21 searchable layers.
    'imagenet': SpaceConfig(
        name='imagenet', input_size=224, in_chans=3, num_classes=1000, stem_chs=16, stem_stride=2,
        stages=_stages((24, 2, 2), (48, 3, 2), (72, 4, 2), (128, 3, 1), (160, 4, 2), (176, 4, 1), (384, 1, 1)),
        head_chs=1984, hidden_chs=1280, dropout=0.2),
    # CIFAR-10 32x32x3: same block set, 12 searchable layers, stride-1 stem.
    'cifar10': SpaceConfig(
        name='cifar10', input_size=32, in_chans=3, num_classes=10, stem_chs=16, stem_stride=1,
        stages=_stages((24, 2, 1), (40, 3, 2), (80, 3, 2), (96, 2, 1), (192, 2, 2)),
        head_chs=640, hidden_chs=None, dropout=0.1),
    # Fashion-MNIST 28x28x1: 8 searchable layers after a stride-2 stem (14x14 feature maps),
    # so a single-path step of a 128-batch stays well under a second on two CPU cores.
    'fashion_mnist': SpaceConfig(
        name='fashion_mnist', input_size=28, in_chans=1, num_classes=10, stem_chs=16, stem_stride=2,
        stages=_stages((24, 2, 2), (40, 2, 2), (64, 2, 1), (96, 2, 2)),
        head_chs=320, hidden_chs=None, dropout=0.0),
    # A 3-layer space for tests and quick experiments (Fashion-MNIST shaped).
    'tiny': SpaceConfig(
        name='tiny', input_size=28, in_chans=1, num_classes=10, stem_chs=8, stem_stride=2,
        stages=_stages((16, 1, 2), (24, 2, 2)),
        head_chs=64, hidden_chs=None, dropout=0.0),
}


def get_preset(name: str, **overrides) -> SpaceConfig:
    """Return preset ``name``, with fields replaced by ``overrides``.

    Examples
    --------
    >>> get_preset('cifar10', num_classes=100).num_classes
    100
    """
    if name not in PRESETS:
        raise ValueError(f'unknown preset {name!r}; accepted: {", ".join(sorted(PRESETS))}')
    unknown = set(overrides) - {f.name for f in dataclasses.fields(SpaceConfig)}
    if unknown:
        raise ValueError(f'unknown SpaceConfig fields {sorted(unknown)}; accepted: '
                         f'{[f.name for f in dataclasses.fields(SpaceConfig)]}')
    overrides = {key: value for key, value in overrides.items() if value is not None}
    return dataclasses.replace(PRESETS[name], **overrides)


def layer_label(index: int) -> str:
    """Label of searchable layer ``index`` (0-based): ``layer00``, ``layer01``, ..."""
    return f'layer{index:02d}'


@dataclass(frozen=True)
class LayerSpec:
    """Shape of one searchable layer.

    Attributes
    ----------
    index
        0-based position among searchable layers.
    label
        The NNI label of the layer's choice (``layer03``).
    stage
        0-based stage index.
    in_chs, out_chs, stride
        Channels and stride of the layer.
    input_size
        Height = width of the layer's input feature map.
    """

    index: int
    label: str
    stage: int
    in_chs: int
    out_chs: int
    stride: int
    input_size: int


def conv_output_size(size: int, stride: int) -> int:
    """Output size of a 'same'-padded conv with odd kernel."""
    return (size - 1) // stride + 1


def layer_specs(config: SpaceConfig) -> list[LayerSpec]:
    """One :class:`LayerSpec` per searchable layer of ``config``.

    Examples
    --------
    >>> specs = layer_specs(get_preset('imagenet'))
    >>> len(specs), specs[0].in_chs, specs[0].out_chs, specs[0].input_size
    (21, 16, 24, 112)
    """
    specs: list[LayerSpec] = []
    in_chs = config.channels(config.stem_chs)
    size = conv_output_size(config.input_size, config.stem_stride)
    for stage_index, stage in enumerate(config.stages):
        out_chs = config.channels(stage.out_chs)
        for position in range(stage.num_layers):
            stride = stage.stride if position == 0 else 1
            specs.append(LayerSpec(len(specs), layer_label(len(specs)), stage_index, in_chs, out_chs,
                                   stride, size))
            size = conv_output_size(size, stride)
            in_chs = out_chs
    return specs

"""The LightNAS model space (stage 1) and the fixed LightNet it freezes to.

:class:`LightNASSpace` is an NNI 3.0 ``ModelSpace``: stem, the fixed first block, one
``LayerChoice`` of the seven candidates per searchable layer, and the head.
:class:`LightNet` is the same network with one op per layer as a plain ``nn.Module``;
``space.freeze(sample)`` and ``LightNet`` have identical parameter names, so weights move
between them.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Mapping, Sequence

import torch
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from torch import nn

from .architecture import ArchLike, arch_to_sample, decode_arch
from .blocks import OP_NAMES, conv_bn
from .ops import build_op
from .presets import SpaceConfig, get_preset, layer_specs

__all__ = ['LightNASSpace', 'LightNet', 'build_lightnet', 'resolve_config']

_logger = logging.getLogger(__name__)


def resolve_config(preset: str | SpaceConfig, **overrides) -> SpaceConfig:
    """A :class:`SpaceConfig` from a preset name or a config, with non-``None`` overrides applied."""
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if isinstance(preset, SpaceConfig):
        return dataclasses.replace(preset, **overrides) if overrides else preset
    if not isinstance(preset, str):
        raise TypeError(f'preset must be a preset name or a SpaceConfig, got {type(preset).__name__}')
    return get_preset(preset, **overrides)


def make_stem(config: SpaceConfig) -> nn.Module:
    """3x3 stem conv + BN + ReLU6, then the fixed first block."""
    stem_chs = config.channels(config.stem_chs)
    return nn.Sequential(
        conv_bn(config.in_chans, stem_chs, 3, config.stem_stride),
        build_op(config.first_block, stem_chs, stem_chs, 1),
    )


class Head(nn.Module):
    """1x1 conv -> BN -> ReLU6 -> global average pool -> [linear -> ReLU6] -> dropout -> linear."""

    def __init__(self, config: SpaceConfig, in_chs: int):
        super().__init__()
        head_chs = config.channels(config.head_chs)
        self.conv = conv_bn(in_chs, head_chs, 1)
        if config.hidden_chs:
            self.hidden = nn.Sequential(nn.Linear(head_chs, config.hidden_chs), nn.ReLU6(inplace=True))
            classifier_in = config.hidden_chs
        else:
            self.hidden = nn.Identity()
            classifier_in = head_chs
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(classifier_in, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # mean over H, W rather than flatten: NNI's shape inference breaks on flatten.
        x = self.conv(x).mean((2, 3))
        return self.classifier(self.dropout(self.hidden(x)))


class LightNASSpace(ModelSpace):
    """LightNAS search space: one ``LayerChoice`` over :data:`OP_NAMES` per searchable layer.

    Parameters
    ----------
    preset
        ``'imagenet'`` (the paper's space, 21 layers x 7 ops), ``'cifar10'``, ``'fashion_mnist'``,
        ``'tiny'`` (3 layers, for tests), or a :class:`SpaceConfig`.
    width_mult, input_size, in_chans, num_classes
        Override the preset's values.
    op_names
        Candidates per layer; defaults to the seven LightNAS ops. A mapping from layer label
        to a list restricts each layer separately (a reduced space).

    Examples
    --------
    >>> space = LightNASSpace('tiny')
    >>> sorted(space.simplify())
    ['layer00', 'layer01', 'layer02']
    >>> net = space.freeze({'layer00': 'MBK3E6', 'layer01': 'skip', 'layer02': 'MBK7E3'})
    >>> net(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, preset: str | SpaceConfig = 'fashion_mnist', *, width_mult: float | None = None,
                 input_size: int | None = None, in_chans: int | None = None, num_classes: int | None = None,
                 op_names: Sequence[str] | Mapping[str, Sequence[str]] | None = None):
        super().__init__()
        self.config = resolve_config(preset, width_mult=width_mult, input_size=input_size,
                                     in_chans=in_chans, num_classes=num_classes)
        self.layer_specs = layer_specs(self.config)
        self.candidates = _candidates_per_layer(self.layer_specs, op_names)
        self.stem = make_stem(self.config)
        self.layers = nn.Sequential(*[
            LayerChoice({name: build_op(name, spec.in_chs, spec.out_chs, spec.stride)
                         for name in self.candidates[spec.label]}, label=spec.label)
            for spec in self.layer_specs
        ])
        self.head = Head(self.config, self.layer_specs[-1].out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))

    @property
    def labels(self) -> list[str]:
        """Labels of the searchable layers, in order."""
        return [spec.label for spec in self.layer_specs]

    def sample_of(self, arch: ArchLike) -> dict[str, str]:
        """NNI sample for a LightNet of this space (checked against the candidates)."""
        sample = arch_to_sample(arch, self.config)
        for label, op in sample.items():
            if op not in self.candidates[label]:
                raise ValueError(f'op {op!r} is not a candidate of {label}; accepted: {self.candidates[label]}')
        return sample


def _candidates_per_layer(specs, op_names) -> dict[str, list[str]]:
    if op_names is None:
        return {spec.label: list(OP_NAMES) for spec in specs}
    if isinstance(op_names, Mapping):
        unknown = set(op_names) - {spec.label for spec in specs}
        if unknown:
            raise ValueError(f'op_names names unknown layers {sorted(unknown)}; accepted: {[s.label for s in specs]}')
        result = {spec.label: list(op_names.get(spec.label, OP_NAMES)) for spec in specs}
    else:
        result = {spec.label: list(op_names) for spec in specs}
    for label, names in result.items():
        if not names:
            raise ValueError(f'layer {label} has no candidate ops')
        decode_arch(names)  # validates every name
    return result


class LightNet(nn.Module):
    """A fixed architecture of the LightNAS space as a plain ``nn.Module``.

    Parameters
    ----------
    arch
        The LightNet (see :mod:`~nni_lightnas.search_spaces.architecture`).
    preset
        Preset name or :class:`SpaceConfig`.
    mid_chs
        Optional expanded width per searchable layer (``None`` entries keep ``in_chs * e``).
    stage_out_chs
        Optional output channels per stage (stage 2, the channel search).

    Examples
    --------
    >>> net = LightNet('MBK3E6-skip-MBK7E3', 'tiny')
    >>> net(torch.zeros(1, 1, 28, 28)).shape
    torch.Size([1, 10])
    """

    def __init__(self, arch: ArchLike, preset: str | SpaceConfig = 'fashion_mnist', *,
                 mid_chs: Sequence[int | None] | None = None, stage_out_chs: Sequence[int] | None = None,
                 **overrides):
        super().__init__()
        self.config = resolve_config(preset, **overrides)
        self.arch = decode_arch(arch, self.config)
        specs = layer_specs(self.config)
        if mid_chs is not None and len(mid_chs) != len(specs):
            raise ValueError(f'mid_chs needs one entry per searchable layer ({len(specs)}), got {len(mid_chs)}')
        if stage_out_chs is not None and len(stage_out_chs) != len(self.config.stages):
            raise ValueError(f'stage_out_chs needs one entry per stage ({len(self.config.stages)}), '
                             f'got {len(stage_out_chs)}')
        self.stem = make_stem(self.config)
        layers = []
        in_chs = specs[0].in_chs
        for spec, op in zip(specs, self.arch):
            out_chs = stage_out_chs[spec.stage] if stage_out_chs is not None else spec.out_chs
            layer_mid = mid_chs[spec.index] if mid_chs is not None else None
            layers.append(build_op(op, in_chs, out_chs, spec.stride, mid_chs=layer_mid))
            in_chs = out_chs
        self.layers = nn.Sequential(*layers)
        self.head = Head(self.config, in_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one input."""
        return (self.config.in_chans, self.config.input_size, self.config.input_size)

    def extra_repr(self) -> str:
        return f'arch={"-".join(self.arch)!r}, preset={self.config.name!r}'


def build_lightnet(arch: ArchLike, preset: str | SpaceConfig = 'fashion_mnist', **overrides) -> LightNet:
    """Plain ``nn.Module`` for a LightNet; shorthand for :class:`LightNet`.

    Examples
    --------
    >>> sum(p.numel() for p in build_lightnet('skip-skip-skip', 'tiny').parameters()) > 0
    True
    """
    return LightNet(arch, preset, **overrides)

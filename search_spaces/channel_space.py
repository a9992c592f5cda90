"""Stage-2 channel space: per-block widths of a fixed LightNet.

For a LightNet (fixed ops), every inverted-residual layer gets an ``nni.choice`` over its
expanded width (``layerNN_mid_chs``) and every stage an ``nni.choice`` over its output
channels (``stageS_out_chs``). Output widths are per stage, not per layer, because the
identity residuals inside a stage force equal widths. Values are absolute channel counts,
the base width times each multiplier, rounded to multiples of 8.

The same choices are available as a plain NNI HPO search space (``{'_type': 'choice',
'_value': [...]}``), which the evolution tuner and ``nnictl`` read.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import nni
import torch
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.space import current_model, model_context

from .architecture import ArchLike, decode_arch
from .blocks import make_divisible
from .ops import parse_op_name
from .lightnas_space import LightNet, resolve_config
from .presets import SpaceConfig, layer_specs

__all__ = ['DEFAULT_WIDTH_MULTIPLIERS', 'channel_choices', 'nni_search_space', 'widths_from_sample',
           'ChannelSpace']

DEFAULT_WIDTH_MULTIPLIERS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)


def _check_multipliers(multipliers: Sequence[float]) -> tuple[float, ...]:
    multipliers = tuple(multipliers)
    if not multipliers or any(not isinstance(m, (int, float)) or not 0 < m <= 4 for m in multipliers):
        raise ValueError(f'width multipliers must be a non-empty list of numbers in (0, 4], got {multipliers!r}')
    return multipliers


def _scaled(base_chs: int, multipliers: Sequence[float]) -> list[int]:
    return sorted({make_divisible(base_chs * m) for m in multipliers})


def channel_choices(arch: ArchLike, preset: str | SpaceConfig = 'fashion_mnist',
                    multipliers: Sequence[float] = DEFAULT_WIDTH_MULTIPLIERS) -> dict[str, list[int]]:
    """The width choices of a LightNet: label -> sorted candidate channel counts.

    Examples
    --------
    >>> choices = channel_choices('MBK3E3-skip-MBK5E6', 'tiny', multipliers=(0.5, 1.0))
    >>> choices['stage0_out_chs'], choices['layer00_mid_chs']
    ([8, 16], [16, 24])
    >>> 'layer01_mid_chs' in choices  # skip has no expanded width
    False
    """
    config = resolve_config(preset)
    ops = decode_arch(arch, config)
    multipliers = _check_multipliers(multipliers)
    choices: dict[str, list[int]] = {}
    for stage_index, stage in enumerate(config.stages):
        choices[f'stage{stage_index}_out_chs'] = _scaled(config.channels(stage.out_chs), multipliers)
    for spec, op in zip(layer_specs(config), ops):
        op_spec = parse_op_name(op)
        if not op_spec.is_skip:
            choices[f'{spec.label}_mid_chs'] = _scaled(spec.in_chs * op_spec.exp_ratio, multipliers)
    return choices


def nni_search_space(arch: ArchLike, preset: str | SpaceConfig = 'fashion_mnist',
                     multipliers: Sequence[float] = DEFAULT_WIDTH_MULTIPLIERS) -> dict[str, dict[str, Any]]:
    """The channel space in NNI's HPO format, for tuners and ``nnictl`` configs.

    Examples
    --------
    >>> nni_search_space('skip-skip-skip', 'tiny', multipliers=(1.0,))['stage0_out_chs']
    {'_type': 'choice', '_value': [16]}
    """
    return {label: {'_type': 'choice', '_value': values}
            for label, values in channel_choices(arch, preset, multipliers).items()}


def widths_from_sample(arch: ArchLike, preset: str | SpaceConfig,
                       sample: Mapping[str, int]) -> tuple[list[int | None], list[int]]:
    """``(mid_chs per layer, out_chs per stage)`` for :class:`LightNet` from a channel sample.

    Labels missing from ``sample`` keep their base width.

    Examples
    --------
    >>> widths_from_sample('MBK3E3-skip-MBK5E6', 'tiny', {'stage1_out_chs': 32, 'layer02_mid_chs': 96})
    ([None, None, 96], [16, 32])
    """
    config = resolve_config(preset)
    ops = decode_arch(arch, config)
    specs = layer_specs(config)
    stage_out = [int(sample.get(f'stage{index}_out_chs', config.channels(stage.out_chs)))
                 for index, stage in enumerate(config.stages)]
    mid: list[int | None] = []
    for spec, op in zip(specs, ops):
        value = sample.get(f'{spec.label}_mid_chs')
        mid.append(None if parse_op_name(op).is_skip or value is None else int(value))
    for key, value in sample.items():
        if not (isinstance(value, (int, float)) and value >= 1):
            raise ValueError(f'channel count for {key} must be a positive integer, got {value!r}')
    return mid, stage_out


class ChannelSpace(ModelSpace):
    """NNI model space over the widths of one LightNet.

    Unfrozen, the module has the base widths; ``freeze(sample)`` builds the sampled ones.

    Parameters
    ----------
    arch
        The fixed LightNet.
    preset
        Preset name or :class:`SpaceConfig` of the LightNet.
    multipliers
        Width multipliers of the base width per choice.

    Examples
    --------
    >>> space = ChannelSpace('MBK3E3-skip-MBK5E6', 'tiny', multipliers=(0.5, 1.0))
    >>> sorted(space.simplify())
    ['layer00_mid_chs', 'layer02_mid_chs', 'stage0_out_chs', 'stage1_out_chs']
    >>> net = space.freeze({'layer00_mid_chs': 16, 'layer02_mid_chs': 72, 'stage0_out_chs': 8,
    ...                     'stage1_out_chs': 24})
    >>> net.net.layers[0].conv_pwl[0].out_channels
    8
    """

    def __init__(self, arch: ArchLike, preset: str | SpaceConfig = 'fashion_mnist', *,
                 multipliers: Sequence[float] = DEFAULT_WIDTH_MULTIPLIERS):
        super().__init__()
        self._init_arguments = (arch, preset, tuple(multipliers))
        config = resolve_config(preset)
        self.arch = decode_arch(arch, config)
        self.choices = channel_choices(self.arch, config, multipliers)
        sample = current_model()
        if sample is None:
            for label, values in self.choices.items():
                self.add_mutable(nni.choice(label, values))
            sample = {}
        else:
            sample = {label: sample[label] for label in self.choices if label in sample}
        mid_chs, stage_out_chs = widths_from_sample(self.arch, config, sample)
        self.net = LightNet(self.arch, config, mid_chs=mid_chs, stage_out_chs=stage_out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def freeze(self, sample: Mapping[str, Any]) -> 'ChannelSpace':
        """A new module with the widths of ``sample`` (fresh weights)."""
        arch, preset, multipliers = self._init_arguments
        for label, values in self.choices.items():
            if label in sample and sample[label] not in values:
                raise ValueError(f'{label}={sample[label]!r} is not a choice; accepted: {values}')
        with model_context(dict(sample)):
            return ChannelSpace(arch, preset, multipliers=multipliers)

"""What a space argument names: one of our presets (``SpaceConfig`` and candidates) or another NNI model space.

Examples
--------
>>> config, candidates = resolve_space('tiny')
>>> config.name, len(candidates), candidates['layer00'][:2]
('tiny', 3, ['MBK3E3', 'MBK3E6'])
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ['resolve_space', 'is_foreign_space']


def is_foreign_space(space: Any) -> bool:
    """Whether ``space`` is an NNI model space other than a ``LightNASSpace`` (profiled by :mod:`nni_lightnas.latency.space_lut`)."""
    from nni_lightnas.search_spaces import LightNASSpace
    return isinstance(space, nn.Module) and not isinstance(space, LightNASSpace)


def resolve_space(space: Any) -> tuple[Any, dict[str, list[str]]]:
    """``(SpaceConfig, candidates)`` from a ``LightNASSpace``, a preset name or a ``SpaceConfig``."""
    from nni_lightnas.search_spaces import OP_NAMES, LightNASSpace, SpaceConfig, layer_specs, resolve_config
    if isinstance(space, LightNASSpace):
        return space.config, {label: list(ops) for label, ops in space.candidates.items()}
    if isinstance(space, (str, SpaceConfig)):
        config = resolve_config(space)
        return config, {spec.label: list(OP_NAMES) for spec in layer_specs(config)}
    raise TypeError(f'space must be a LightNASSpace, a preset name or a SpaceConfig, got {type(space).__name__}'
                    + ('; for any other NNI model space, pass example_input= to build_lut'
                       if isinstance(space, nn.Module) else ''))

"""The one encoding of a LightNet (an architecture of the LightNAS space).

A LightNet is one op name per searchable layer, joined by ``-``::

    MBK3E6-skip-MBK5E3-MBK7E6-...

The fixed first block is not part of the string. :func:`decode_arch` also reads the
authors' published lists (``shared/data/lightnets.json``): there ``SkipConnect`` means
``skip`` and the leading ``MBK3E1`` is the fixed first block, so a list one longer than
the space whose first entry equals the fixed block is accepted.

An NNI sample (``{'layer00': 'MBK3E6', ...}``) is the same data keyed by layer label:
:func:`arch_to_sample` and :func:`sample_to_arch` convert.
"""

from __future__ import annotations

from typing import Mapping, Sequence, Union

from .ops import parse_op_name
from .presets import SpaceConfig, layer_label

__all__ = ['ArchLike', 'decode_arch', 'encode_arch', 'arch_to_sample', 'sample_to_arch']

ArchLike = Union[str, Sequence[str], Mapping[str, str]]
SEPARATOR = '-'


def encode_arch(ops: Sequence[str]) -> str:
    """Canonical string of a LightNet: op names joined by ``-``.

    Examples
    --------
    >>> encode_arch(['MBK3E6', 'SkipConnect', 'MBK7E3'])
    'MBK3E6-skip-MBK7E3'
    """
    return SEPARATOR.join(parse_op_name(op).name for op in ops)


def decode_arch(arch: ArchLike, config: SpaceConfig | None = None) -> tuple[str, ...]:
    """Parse a LightNet from a string, a list of op names, or an NNI sample dict.

    Parameters
    ----------
    arch
        ``'MBK3E6-skip-...'``, ``['MBK3E1', 'SkipConnect', ...]`` (published form, with the
        fixed first block) or ``{'layer00': 'MBK3E6', ...}``.
    config
        When given, the number of layers is checked against the space.

    Examples
    --------
    >>> decode_arch('MBK3E6-SkipConnect-MBK7E3')
    ('MBK3E6', 'skip', 'MBK7E3')
    """
    if isinstance(arch, Mapping):
        return sample_to_arch(arch, config)
    if isinstance(arch, str):
        names = [name.strip() for name in arch.strip().split(SEPARATOR)] if arch.strip() else []
    elif isinstance(arch, Sequence):
        names = list(arch)
    else:
        raise TypeError(f'arch must be a string, a list of op names or a sample dict, got {type(arch).__name__}')
    ops = [parse_op_name(name).name for name in names]
    if config is not None:
        expected = config.num_layers
        if len(ops) == expected + 1 and ops[0] == config.first_block:
            ops = ops[1:]  # published form: the fixed first block comes first
        if len(ops) != expected:
            raise ValueError(f'architecture has {len(ops)} layers, but preset {config.name!r} has {expected} '
                             f'searchable layers (or {expected + 1} with the fixed first block '
                             f'{config.first_block} in front); got {arch!r}')
    return tuple(ops)


def arch_to_sample(arch: ArchLike, config: SpaceConfig) -> dict[str, str]:
    """NNI sample (label -> op name) for a LightNet.

    Examples
    --------
    >>> from nni_lightnas.search_spaces.presets import get_preset
    >>> arch_to_sample('MBK3E3-skip-MBK5E6', get_preset('tiny'))
    {'layer00': 'MBK3E3', 'layer01': 'skip', 'layer02': 'MBK5E6'}
    """
    ops = decode_arch(arch, config)
    return {layer_label(index): op for index, op in enumerate(ops)}


def sample_to_arch(sample: Mapping[str, str], config: SpaceConfig | None = None) -> tuple[str, ...]:
    """LightNet ops from an NNI sample; labels other than ``layerNN`` are ignored.

    Examples
    --------
    >>> sample_to_arch({'layer01': 'skip', 'layer00': 'MBK3E3'})
    ('MBK3E3', 'skip')
    """
    layer_keys = sorted(key for key in sample if key.startswith('layer') and key[5:].isdigit())
    num_layers = config.num_layers if config is not None else len(layer_keys)
    missing = [layer_label(index) for index in range(num_layers) if layer_label(index) not in sample]
    if missing:
        raise ValueError(f'sample lacks layers {missing}; got keys {sorted(sample)}')
    if config is not None and len(layer_keys) != num_layers:
        raise ValueError(f'sample has {len(layer_keys)} layers, but preset {config.name!r} has {num_layers}: '
                         f'{sorted(sample)}')
    return tuple(parse_op_name(sample[layer_label(index)]).name for index in range(num_layers))

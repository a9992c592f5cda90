"""Every candidate op by name: decode (:func:`parse_op_name`) and build (:func:`build_op`).

Op names are data. Two modules define the blocks: :mod:`.blocks` the LightNAS ones
(``MBK{k}E{e}``, ``skip``) and :mod:`.families` those of the other BBSSP block families
(``RBK{k}``, ``PLK{k}``); this module, above both, dispatches a name to the one that knows it.

Examples
--------
>>> parse_op_name('MBK5E3')
OpSpec(name='MBK5E3', dw_kernel_size=5, exp_ratio=3)
>>> type(build_op('RBK3', 16, 24, 2)).__name__, family_of('PLK5')
('BasicResidual', 'plain')
"""

from __future__ import annotations

from torch import nn

from .blocks import OP_NAMES, SKIP, OpSpec, build_block, inverted_residual_spec
from .families import build_family_block, is_family_op, parse_family_op

__all__ = ['parse_op_name', 'build_op', 'family_of']


def parse_op_name(name: str) -> OpSpec:
    """Decode an op name of any family: ``MBK3E6``, ``skip``, ``RBK3``, ``PLK5``.

    Any odd kernel and positive expansion parse (the fixed first block is ``MBK3E1``);
    ``SkipConnect`` (the authors' spelling) is accepted for ``skip``. A family op has a
    kernel and no expansion ratio.

    Examples
    --------
    >>> parse_op_name('SkipConnect').is_skip, parse_op_name('RBK5')
    (True, OpSpec(name='RBK5', dw_kernel_size=5, exp_ratio=None))
    >>> parse_op_name('MBK4E3')
    Traceback (most recent call last):
    ...
    ValueError: unknown op name 'MBK4E3'; accepted: MBK3E3, MBK3E6, MBK5E3, MBK5E6, MBK7E3, MBK7E6, skip (MBK{k}E{e} with odd k, and SkipConnect for skip; RBK{k} and PLK{k} of the BBSSP block families)
    """
    if not isinstance(name, str):
        raise TypeError(f'op name must be a string, got {name!r} of type {type(name).__name__}')
    spec = inverted_residual_spec(name)
    if spec is not None:
        return spec
    if is_family_op(name):
        return OpSpec(name, parse_family_op(name).kernel_size)
    raise ValueError(f'unknown op name {name!r}; accepted: {", ".join(OP_NAMES)} '
                     f'(MBK{{k}}E{{e}} with odd k, and SkipConnect for skip; RBK{{k}} and PLK{{k}} of '
                     f'the BBSSP block families)')


def build_op(name: str, in_chs: int, out_chs: int, stride: int, mid_chs: int | None = None) -> nn.Module:
    """Build the module of op ``name`` (any family) at a layer with the given shape.

    ``mid_chs`` sets the expanded width of an inverted residual and the inner width of a
    basic residual block; a plain conv and skip ignore it.

    Examples
    --------
    >>> type(build_op('MBK7E3', 24, 24, 1)).__name__, type(build_op('PLK3', 8, 8, 1)).__name__
    ('InvertedResidual', 'PlainConv')
    """
    spec = parse_op_name(name)
    if spec.is_skip or spec.exp_ratio is not None:
        return build_block(spec, in_chs, out_chs, stride, mid_chs=mid_chs)
    return build_family_block(spec.name, in_chs, out_chs, stride, mid_chs=mid_chs)


def family_of(name: str) -> str:
    """Name of the family an op belongs to (``skip`` belongs to every family: ``'shared'``).

    Examples
    --------
    >>> family_of('MBK5E3'), family_of('RBK3'), family_of('skip')
    ('inverted_residual', 'residual', 'shared')
    """
    spec = parse_op_name(name)  # raises for unknown names
    if spec.name == SKIP:
        return 'shared'
    if is_family_op(spec.name):
        return parse_family_op(spec.name).kind
    return 'inverted_residual'

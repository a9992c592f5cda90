"""Block families for black-box search space profiling (BBSSP).

A *block family* is a set of candidate ops that fill one searchable layer of the
LightNAS macro-structure (stem, stages, head stay as they are). BBSSP (Zeng et al.,
ASP-DAC 2020) profiles several families on the target device and keeps the family and
the per-layer candidates with the lowest cost. Three families are defined:

* ``inverted_residual``: the LightNAS ops, ``MBK{k}E{e}`` (MobileNetV2 inverted residual,
  see :mod:`.blocks`) and ``skip``; typical block ``MBK3E6``.
* ``residual``: ``RBK{k}``, the ResNet basic block: two ``k x k`` convs with BN, ReLU after
  the first and after the sum, and a shortcut that is the identity when the shape is kept,
  else a 1x1 projection conv (with the layer's stride) + BN; plus ``skip``. Typical ``RBK3``.
* ``plain``: ``PLK{k}``, one ``k x k`` conv + BN + ReLU (VGG-like, no shortcut); plus
  ``skip``. Typical ``PLK3``.

Op names are data: :func:`parse_family_op` decodes ``RBK{k}`` and ``PLK{k}``,
:func:`build_family_block` builds them. :func:`~.ops.build_op` and
:func:`~.ops.parse_op_name` accept every family's names (they dispatch to this module and to
:mod:`.blocks`), so a :class:`~.lightnas_space.LightNASSpace` with ``op_names={label: [...]}``,
a :class:`~.lightnas_space.LightNet` and a latency LUT all work with family ops.

Examples
--------
>>> import torch
>>> block = build_family_block('RBK3', 16, 24, 2)
>>> block(torch.zeros(2, 16, 14, 14)).shape
torch.Size([2, 24, 7, 7])
>>> FAMILIES['residual'].op_names
('RBK3', 'RBK5', 'RBK7', 'skip')
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import torch
from torch import nn

from .blocks import OP_NAMES, SKIP

__all__ = [
    'BlockFamily', 'FAMILIES', 'FamilyOpSpec', 'BasicResidual', 'PlainConv', 'parse_family_op',
    'build_family_block', 'is_family_op', 'get_family',
]

_logger = logging.getLogger(__name__)

_FAMILY_PATTERN = re.compile(r'^(RB|PL)K([0-9]+)$')  # ASCII digits only
_KIND_OF_PREFIX = {'RB': 'residual', 'PL': 'plain'}


@dataclass(frozen=True)
class BlockFamily:
    """A named set of candidate ops with a typical block.

    Attributes
    ----------
    name
        Family name (``'inverted_residual'``, ``'residual'``, ``'plain'``).
    op_names
        The candidates of one layer, in a fixed order.
    typical_op
        The block that fills every layer of the family's base network SSBN_0.
    description
        One line for reports.
    """

    name: str
    op_names: tuple[str, ...]
    typical_op: str
    description: str = ''

    def __post_init__(self) -> None:
        if self.typical_op not in self.op_names:
            raise ValueError(f'typical_op {self.typical_op!r} of family {self.name!r} is not one of its ops '
                             f'{list(self.op_names)}')


#: The families BBSSP profiles by default, by name.
FAMILIES: dict[str, BlockFamily] = {
    'inverted_residual': BlockFamily('inverted_residual', tuple(OP_NAMES), 'MBK3E6',
                                     'MobileNetV2 inverted residuals MBK{3,5,7}E{3,6} and skip (LightNAS)'),
    'residual': BlockFamily('residual', ('RBK3', 'RBK5', 'RBK7', SKIP), 'RBK3',
                            'ResNet basic blocks RBK{3,5,7} (two kxk convs, projection shortcut) and skip'),
    'plain': BlockFamily('plain', ('PLK3', 'PLK5', 'PLK7', SKIP), 'PLK3',
                         'plain conv-BN-ReLU PLK{3,5,7} and skip'),
}


def get_family(name: str | BlockFamily) -> BlockFamily:
    """A :class:`BlockFamily` by name (or the family itself).

    Examples
    --------
    >>> get_family('plain').typical_op
    'PLK3'
    """
    if isinstance(name, BlockFamily):
        return name
    if name not in FAMILIES:
        raise ValueError(f'unknown block family {name!r}; accepted: {", ".join(FAMILIES)}')
    return FAMILIES[name]


@dataclass(frozen=True)
class FamilyOpSpec:
    """A decoded ``RBK{k}`` / ``PLK{k}`` op name.

    Attributes
    ----------
    name
        The canonical name.
    kind
        ``'residual'`` or ``'plain'``.
    kernel_size
        Kernel of the convs.
    """

    name: str
    kind: str
    kernel_size: int


def is_family_op(name: object) -> bool:
    """Whether ``name`` is an ``RBK{k}`` or ``PLK{k}`` op (odd ``k``).

    Examples
    --------
    >>> is_family_op('RBK5'), is_family_op('RBK4'), is_family_op('MBK3E6')
    (True, False, False)
    """
    if not isinstance(name, str):
        return False
    match = _FAMILY_PATTERN.match(name)
    return bool(match) and int(match.group(2)) % 2 == 1


def parse_family_op(name: str) -> FamilyOpSpec:
    """Decode ``RBK{k}`` or ``PLK{k}`` (odd ``k``).

    Examples
    --------
    >>> parse_family_op('PLK5')
    FamilyOpSpec(name='PLK5', kind='plain', kernel_size=5)
    """
    if not is_family_op(name):
        raise ValueError(f'unknown family op name {name!r}; accepted: RBK{{k}} (residual) and PLK{{k}} (plain) '
                         f'with odd k, e.g. {", ".join(FAMILIES["residual"].op_names[:3])}')
    match = _FAMILY_PATTERN.match(name)
    assert match is not None
    return FamilyOpSpec(name, _KIND_OF_PREFIX[match.group(1)], int(match.group(2)))


def _conv_bn_relu(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_chs),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicResidual(nn.Module):
    """ResNet basic block ``RBK{k}``: conv kxk (stride) + BN + ReLU, conv kxk + BN, add shortcut, ReLU.

    Parameters
    ----------
    in_chs, out_chs
        Input and output channels.
    kernel_size
        Kernel of both convs.
    stride
        Stride of the first conv (and of the projection shortcut).
    mid_chs
        Width between the two convs; defaults to ``out_chs`` (the Comfort Zone and channel
        searches may change it).

    Examples
    --------
    >>> block = BasicResidual(16, 16, kernel_size=3)
    >>> block(torch.zeros(1, 16, 7, 7)).shape, block.has_projection
    (torch.Size([1, 16, 7, 7]), False)
    """

    def __init__(self, in_chs: int, out_chs: int, *, kernel_size: int = 3, stride: int = 1,
                 mid_chs: int | None = None):
        super().__init__()
        mid_chs = out_chs if mid_chs is None else int(mid_chs)
        self.conv1 = _conv_bn_relu(in_chs, mid_chs, kernel_size, stride)
        self.conv2 = _conv_bn_relu(mid_chs, out_chs, kernel_size, act=False)
        self.has_projection = stride != 1 or in_chs != out_chs
        self.shortcut = _conv_bn_relu(in_chs, out_chs, 1, stride, act=False) if self.has_projection \
            else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class PlainConv(nn.Module):
    """Plain ``PLK{k}``: one conv kxk (stride) + BN + ReLU, no shortcut.

    Examples
    --------
    >>> PlainConv(8, 16, kernel_size=5, stride=2)(torch.zeros(1, 8, 14, 14)).shape
    torch.Size([1, 16, 7, 7])
    """

    def __init__(self, in_chs: int, out_chs: int, *, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        self.conv = _conv_bn_relu(in_chs, out_chs, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def build_family_block(name: str, in_chs: int, out_chs: int, stride: int, mid_chs: int | None = None) -> nn.Module:
    """Build an ``RBK{k}`` or ``PLK{k}`` op for a layer shape (every family's names: :func:`~.ops.build_op`).

    ``mid_chs`` sets the inner width of a basic residual block; a plain conv ignores it.

    Examples
    --------
    >>> type(build_family_block('PLK3', 8, 8, 1)).__name__, type(build_family_block('RBK5', 8, 16, 2)).__name__
    ('PlainConv', 'BasicResidual')
    """
    spec = parse_family_op(name)
    if spec.kind == 'residual':
        return BasicResidual(in_chs, out_chs, kernel_size=spec.kernel_size, stride=stride, mid_chs=mid_chs)
    return PlainConv(in_chs, out_chs, kernel_size=spec.kernel_size, stride=stride)

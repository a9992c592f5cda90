"""Candidate blocks of the LightNAS search space.

Two kinds of operation fill a searchable layer:

* ``MBK{k}E{e}``: the MobileNetV2 inverted residual ("MBConv"): 1x1 expansion to
  ``e * in_chs``, ``k x k`` depthwise conv with the layer's stride, 1x1 linear projection,
  BatchNorm after each conv and ReLU6 after the first two; an identity residual when the
  stride is 1 and ``in_chs == out_chs``.
* ``skip``: identity when shapes match, else a 1x1 conv with the layer's stride plus BN.

Op names are data: :func:`inverted_residual_spec` decodes these two kinds and :func:`build_block`
builds them; :mod:`.ops` dispatches every family's names (``parse_op_name``, ``build_op``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    'OP_NAMES', 'SKIP', 'OpSpec', 'inverted_residual_spec', 'make_divisible',
    'InvertedResidual', 'SkipOp', 'build_block',
]

SKIP = 'skip'
KERNEL_SIZES = (3, 5, 7)
EXPANSION_RATIOS = (3, 6)
#: The seven candidates of every searchable layer, in the order of the LightNAS paper.
OP_NAMES: tuple[str, ...] = tuple(
    f'MBK{kernel}E{expansion}' for kernel in KERNEL_SIZES for expansion in EXPANSION_RATIOS
) + (SKIP,)

_MB_PATTERN = re.compile(r'^MBK([0-9]+)E([0-9]+)$')  # ASCII digits only: 'MBK３E６' is refused


@dataclass(frozen=True)
class OpSpec:
    """A decoded op name.

    Attributes
    ----------
    name
        The canonical name (``MBK5E3`` or ``skip``).
    dw_kernel_size
        Depthwise kernel size; ``None`` for skip.
    exp_ratio
        Expansion ratio of the inverted residual; ``None`` for skip.
    """

    name: str
    dw_kernel_size: int | None = None
    exp_ratio: int | None = None

    @property
    def is_skip(self) -> bool:
        return self.name == SKIP


def inverted_residual_spec(name: str) -> OpSpec | None:
    """The :class:`OpSpec` of ``skip`` (or ``SkipConnect``, the authors' spelling) or ``MBK{k}E{e}``; else ``None``.

    Any odd kernel and positive expansion parse (the fixed first block is ``MBK3E1``). Op names
    of every family are decoded by :func:`~nni_lightnas.search_spaces.ops.parse_op_name`.

    Examples
    --------
    >>> inverted_residual_spec('MBK5E3')
    OpSpec(name='MBK5E3', dw_kernel_size=5, exp_ratio=3)
    >>> inverted_residual_spec('SkipConnect').is_skip, inverted_residual_spec('RBK3')
    (True, None)
    """
    if name in (SKIP, 'SkipConnect', 'Skip', 'SKIP'):
        return OpSpec(SKIP)
    match = _MB_PATTERN.match(name)
    if match:
        kernel, expansion = int(match.group(1)), int(match.group(2))
        if kernel % 2 == 1 and expansion >= 1:
            return OpSpec(name, kernel, expansion)
    return None


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10% below ``value``.

    Examples
    --------
    >>> make_divisible(16 * 0.75)
    16
    >>> make_divisible(37)
    40
    """
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def conv_bn(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, groups: int = 1,
            act: bool = True) -> nn.Sequential:
    """Conv (no bias, 'same' padding) + BatchNorm (+ ReLU6)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_chs),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual, ``MBK{k}E{e}`` (often called MBConv).

    Parameters
    ----------
    in_chs, out_chs
        Input and output channels.
    dw_kernel_size
        Kernel of the depthwise conv.
    exp_ratio
        Expansion ratio; ignored when ``mid_chs`` is given.
    stride
        Stride of the depthwise conv.
    mid_chs
        Expanded width; defaults to ``in_chs * exp_ratio``. The channel stage (stage 2) sets it.

    Examples
    --------
    >>> block = InvertedResidual(16, 16, dw_kernel_size=3, exp_ratio=6)
    >>> block(torch.zeros(2, 16, 8, 8)).shape
    torch.Size([2, 16, 8, 8])
    >>> block.has_skip
    True
    """

    def __init__(self, in_chs: int, out_chs: int, *, dw_kernel_size: int = 3, exp_ratio: float = 6,
                 stride: int = 1, mid_chs: int | None = None):
        super().__init__()
        mid_chs = mid_chs if mid_chs is not None else int(round(in_chs * exp_ratio))
        self.has_skip = stride == 1 and in_chs == out_chs
        # With expansion 1 the 1x1 expansion conv is dropped, as in MobileNetV2.
        self.conv_pw = conv_bn(in_chs, mid_chs, 1) if mid_chs != in_chs else nn.Identity()
        self.conv_dw = conv_bn(mid_chs, mid_chs, dw_kernel_size, stride, groups=mid_chs)
        self.conv_pwl = conv_bn(mid_chs, out_chs, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv_pwl(self.conv_dw(self.conv_pw(x)))
        if self.has_skip:
            x = x + shortcut
        return x


class SkipOp(nn.Module):
    """The ``skip`` candidate: identity, or 1x1 conv (with stride) + BN when the shape changes.

    Examples
    --------
    >>> SkipOp(16, 24, stride=2)(torch.zeros(1, 16, 8, 8)).shape
    torch.Size([1, 24, 4, 4])
    """

    def __init__(self, in_chs: int, out_chs: int, *, stride: int = 1):
        super().__init__()
        self.is_identity = stride == 1 and in_chs == out_chs
        self.proj = nn.Identity() if self.is_identity else conv_bn(in_chs, out_chs, 1, stride, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def build_block(spec: OpSpec, in_chs: int, out_chs: int, stride: int, mid_chs: int | None = None) -> nn.Module:
    """The module of an inverted residual or skip ``spec`` at a layer with the given shape.

    Examples
    --------
    >>> type(build_block(inverted_residual_spec('MBK7E3'), 24, 24, 1)).__name__
    'InvertedResidual'
    """
    if spec.is_skip:
        return SkipOp(in_chs, out_chs, stride=stride)
    if spec.exp_ratio is None or spec.dw_kernel_size is None:
        raise ValueError(f'{spec.name!r} is not an inverted residual or skip; build it with '
                         f'nni_lightnas.search_spaces.ops.build_op')
    return InvertedResidual(in_chs, out_chs, dw_kernel_size=spec.dw_kernel_size, exp_ratio=spec.exp_ratio,
                            stride=stride, mid_chs=mid_chs)

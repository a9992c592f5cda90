"""Model spaces of nni-lightnas in NNI 3.0's mutable API.

Examples
--------
>>> from nni_lightnas.search_spaces import LightNASSpace, LightNet
>>> space = LightNASSpace('fashion_mnist')
>>> len(space.labels)
8
"""

from .architecture import arch_to_sample, decode_arch, encode_arch, sample_to_arch
from .blocks import OP_NAMES, SKIP, InvertedResidual, SkipOp, make_divisible
from .ops import build_op, family_of, parse_op_name
from .channel_space import ChannelSpace, channel_choices
from .lightnas_space import LightNASSpace, LightNet, build_lightnet, resolve_config
from .presets import PRESETS, LayerSpec, SpaceConfig, StageSpec, get_preset, layer_label, layer_specs

__all__ = [
    'OP_NAMES', 'SKIP', 'PRESETS', 'SpaceConfig', 'StageSpec', 'LayerSpec', 'get_preset', 'layer_label',
    'layer_specs', 'InvertedResidual', 'SkipOp', 'build_op', 'family_of', 'make_divisible', 'parse_op_name',
    'encode_arch', 'decode_arch', 'arch_to_sample', 'sample_to_arch',
    'LightNASSpace', 'LightNet', 'build_lightnet', 'resolve_config', 'ChannelSpace', 'channel_choices',
]

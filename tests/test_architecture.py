"""The LightNet encoding: round trips, the published lists, bad input."""

from __future__ import annotations

import random

import pytest

from nni_lightnas.search_spaces import (OP_NAMES, arch_to_sample, decode_arch, encode_arch, get_preset,
                                        parse_op_name, sample_to_arch)


@pytest.mark.parametrize('preset', ['tiny', 'fashion_mnist', 'cifar10', 'imagenet'])
def test_encode_decode_round_trip(preset):
    config = get_preset(preset)
    rng = random.Random(preset)
    for _ in range(20):
        ops = tuple(rng.choice(OP_NAMES) for _ in range(config.num_layers))
        text = encode_arch(ops)
        assert decode_arch(text, config) == ops
        assert encode_arch(decode_arch(text, config)) == text
        sample = arch_to_sample(text, config)
        assert list(sample) == [f'layer{i:02d}' for i in range(config.num_layers)]
        assert sample_to_arch(sample, config) == ops


def test_published_lists_decode(published_lightnets):
    config = get_preset('imagenet')
    for lightnet in published_lightnets:
        ops = decode_arch(lightnet['arch'], config)
        assert len(ops) == 21
        assert 'SkipConnect' not in ops
        assert ops == tuple('skip' if op == 'SkipConnect' else op for op in lightnet['arch'][1:])


def test_parse_op_name():
    assert parse_op_name('MBK7E6').dw_kernel_size == 7
    assert parse_op_name('MBK7E6').exp_ratio == 6
    assert parse_op_name('SkipConnect').is_skip


@pytest.mark.parametrize('bad', ['MBK4E3', 'conv3x3', 'MBK3', '', 'mbk3e3'])
def test_unknown_op_name_is_refused_with_accepted_list(bad):
    with pytest.raises(ValueError, match=r"unknown op name .*accepted: MBK3E3, MBK3E6"):
        decode_arch([bad])


def test_wrong_number_of_layers_names_both_counts():
    config = get_preset('fashion_mnist')
    with pytest.raises(ValueError, match=r'has 3 layers, but preset .fashion_mnist. has 8 searchable layers'):
        decode_arch('MBK3E3-skip-MBK5E6', config)


def test_fixed_first_block_only_accepted_in_front():
    config = get_preset('tiny')
    assert decode_arch(['MBK3E1', 'skip', 'skip', 'MBK3E3'], config) == ('skip', 'skip', 'MBK3E3')
    with pytest.raises(ValueError, match='4 layers'):
        decode_arch(['MBK3E3', 'skip', 'skip', 'MBK3E3'], config)


def test_sample_missing_layer_is_refused():
    with pytest.raises(ValueError, match=r"lacks layers \['layer02'\]"):
        sample_to_arch({'layer00': 'skip', 'layer01': 'skip'}, get_preset('tiny'))

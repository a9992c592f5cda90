"""Stage-2 channel space of a fixed LightNet."""

from __future__ import annotations

import pytest
import torch

from nni_lightnas.search_spaces import ChannelSpace, LightNet, channel_choices
from nni_lightnas.search_spaces.channel_space import nni_search_space, widths_from_sample

ARCH = 'MBK3E6-skip-MBK5E3-MBK7E6-MBK3E3-MBK3E3-skip-MBK5E6'


def test_choices_cover_base_width_and_skip_has_none():
    choices = channel_choices(ARCH, 'fashion_mnist')
    assert [label for label in choices if label.startswith('stage')] == [f'stage{i}_out_chs' for i in range(4)]
    assert 'layer01_mid_chs' not in choices and 'layer06_mid_chs' not in choices
    assert 24 in choices['stage0_out_chs'] and 96 in choices['stage3_out_chs']
    assert 16 * 6 in choices['layer00_mid_chs']  # base width of MBK3E6 after the 16-channel stem
    assert all(value % 8 == 0 for values in choices.values() for value in values)
    space = nni_search_space(ARCH, 'fashion_mnist')
    assert space['stage1_out_chs']['_type'] == 'choice' and space['stage1_out_chs']['_value'] == choices['stage1_out_chs']


def test_frozen_channel_space_has_the_sampled_widths():
    space = ChannelSpace(ARCH, 'fashion_mnist')
    choices = space.choices
    sample = {label: values[0] for label, values in choices.items()}
    net = space.freeze(sample)
    assert net.net.layers[0].conv_pw[0].out_channels == choices['layer00_mid_chs'][0]
    assert net.net.layers[0].conv_pwl[0].out_channels == choices['stage0_out_chs'][0]
    assert net.net.layers[1].is_identity  # skip inside a stage stays identity at any width
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    smaller = sum(p.numel() for p in net.parameters())
    base = sum(p.numel() for p in LightNet(ARCH, 'fashion_mnist').parameters())
    assert smaller < base


def test_unfrozen_space_has_base_widths():
    space = ChannelSpace(ARCH, 'fashion_mnist')
    base = LightNet(ARCH, 'fashion_mnist')
    assert {k: v.shape for k, v in space.net.state_dict().items()} == {k: v.shape for k, v in base.state_dict().items()}


def test_bad_channel_values_are_refused():
    space = ChannelSpace(ARCH, 'fashion_mnist')
    with pytest.raises(ValueError, match=r'stage0_out_chs=7 is not a choice; accepted: \[16, 24'):
        space.freeze({'stage0_out_chs': 7})
    with pytest.raises(ValueError, match=r'width multipliers must be .* got \(0.0,\)'):
        channel_choices(ARCH, 'fashion_mnist', multipliers=(0.0,))
    with pytest.raises(ValueError, match='must be a positive integer'):
        widths_from_sample(ARCH, 'fashion_mnist', {'stage0_out_chs': -8})

"""Architecture graphs: converters round-trip, structure, soft features."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from nni_lightnas.latency.graphs import (FBNET_OPS, NB201_OPS, FBNetGraphSpace, LightNetGraphSpace,
                                         NasBench201GraphSpace, detect_space, graph_from_fbnet, graph_from_lightnet,
                                         graph_from_nasbench201, space_from_dict)
from nni_lightnas.search_spaces import OP_NAMES


def _random_nb201(rng: random.Random) -> str:
    ops = [rng.choice(NB201_OPS) for _ in range(6)]
    return f'|{ops[0]}~0|+|{ops[1]}~0|{ops[2]}~1|+|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|'


@pytest.mark.parametrize('seed', range(5))
def test_converters_round_trip(seed):
    rng = random.Random(seed)
    lightnet = '-'.join(rng.choice(OP_NAMES) for _ in range(8))
    assert graph_from_lightnet(lightnet, 'fashion_mnist').to_string() == lightnet
    fbnet = '-'.join(rng.choice(list(FBNET_OPS)) for _ in range(22))
    assert graph_from_fbnet(fbnet).to_string() == fbnet
    cell = _random_nb201(rng)
    assert graph_from_nasbench201(cell).to_string() == cell


def test_lightnet_accepts_published_form_and_samples():
    graph = graph_from_lightnet(['MBK3E1', 'SkipConnect', 'MBK5E3', 'MBK7E6'], 'tiny')
    assert graph.to_string() == 'skip-MBK5E3-MBK7E6'
    sample = {'layer00': 'MBK3E6', 'layer01': 'skip', 'layer02': 'MBK7E3'}
    assert graph_from_lightnet(sample, 'tiny').to_string() == 'MBK3E6-skip-MBK7E3'


def test_chain_graph_structure_and_features():
    graph = graph_from_lightnet('MBK3E6-skip-MBK7E3', 'tiny')
    assert graph.node_ops == ('input', 'MBK3E6', 'skip', 'MBK7E3', 'output')
    expected = np.diag(np.ones(4), 1)
    np.testing.assert_array_equal(graph.adjacency, expected)
    kernel, expansion = graph.node_features[3, 0], graph.node_features[3, 1]
    assert (kernel, expansion) == (7, 3)
    macs = graph.node_features[:, 7]
    assert macs[1] > 0 and macs[3] > 0


def test_nasbench201_none_removes_edges():
    space = NasBench201GraphSpace()
    all_conv = graph_from_nasbench201('|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+'
                                      '|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|')
    # input -> the 3 edges leaving node 0; edge (i->j) -> the edges leaving j: (0,1) -> (1,2), (1,3);
    # (0,2) -> (2,3); (1,2) -> (2,3); the 3 edges into node 3 -> output
    assert int(all_conv.adjacency.sum()) == 3 + 4 + 3
    cut = graph_from_nasbench201('|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|')
    assert int(cut.adjacency.sum()) == 1  # only conv(2->3) -> output: nothing reaches it from the input
    # the cell output is unreachable: nothing on it is live
    live = space.live_edges(space.one_hot([cut]))
    assert float(live.sum()) == 0
    chain = graph_from_nasbench201('|nor_conv_1x1~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|')
    live = space.live_edges(space.one_hot([chain]))[0].tolist()
    assert live == [1, 0, 1, 0, 0, 1]


@pytest.mark.parametrize('arch, message', [
    ('|foo~0|+|none~0|none~1|+|none~0|none~1|none~2|', 'unknown op'),
    ('|none~0|+|none~0|none~1|', '3 node groups'),
    ('|none~1|+|none~0|none~1|+|none~0|none~1|none~2|', 'bad edge'),
])
def test_nasbench201_bad_strings(arch, message):
    with pytest.raises(ValueError, match=message):
        NasBench201GraphSpace().parse(arch)


def test_fbnet_bad_strings():
    with pytest.raises(ValueError, match=r"unknown op 'k7_e6'"):
        FBNetGraphSpace().parse('-'.join(['k7_e6'] * 22))
    with pytest.raises(ValueError, match='22 slots'):
        FBNetGraphSpace().parse('k3_e1-skip')


def test_soft_features_are_differentiable():
    for space in (LightNetGraphSpace('tiny'), FBNetGraphSpace(), NasBench201GraphSpace()):
        alpha = torch.zeros(2, space.num_slots, space.max_candidates, requires_grad=True)
        probs = torch.softmax(alpha, -1)
        total = space.node_features(probs).sum() + space.adjacency(probs).sum() + space.summary_features(probs).sum()
        total.backward()
        assert alpha.grad is not None and torch.isfinite(alpha.grad).all()


def test_space_detection_and_serialisation():
    assert detect_space(['k3_e1-' * 21 + 'skip']).name == 'fbnet'
    assert detect_space(['|none~0|+|none~0|none~1|+|none~0|none~1|none~2|']).name == 'nasbench201'
    assert detect_space(['-'.join(['skip'] * 8)]).config.name == 'fashion_mnist'
    with pytest.raises(ValueError, match='cannot tell the space'):
        detect_space(['conv3x3-conv5x5'])
    space = LightNetGraphSpace('tiny', candidates={'layer00': ['skip', 'MBK3E3'], 'layer01': ['skip'],
                                                   'layer02': ['MBK5E6', 'skip']})
    rebuilt = space_from_dict(space.to_dict())
    assert rebuilt.name == space.name and rebuilt.candidates == space.candidates
    with pytest.raises(ValueError, match="unknown op 'MBK7E6' at slot 1"):
        rebuilt.parse('skip-MBK7E6-skip')

"""LightNAS on spaces with depth choices (NNI's ``Repeat``): gated latency, single-path depth sampling, NNI's ProxylessNAS.

Latencies come from :class:`ParamsDevice` with no quadratic term, so a whole network's latency is
exactly the sum of its parts and the depth gates can be checked to the last digit.
"""

from __future__ import annotations

import itertools
import logging

import pytest
import torch
from nni.nas.experiment import NasExperiment
from nni.nas.hub.pytorch import MobileNetV3Space, ProxylessNAS
from nni.nas.nn.pytorch import LayerChoice, ModelSpace, Repeat
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from latency_fakes import ParamsDevice
from nni_lightnas.latency.lut import LatencyLUT
from nni_lightnas.latency.lut_build import build_lut
from nni_lightnas.search import make_search_evaluator
from nni_lightnas.search_spaces.nni_space import (UnsupportedMutableError, depth_choices, freeze_arch,
                                                  space_candidates)
from nni_lightnas.strategies import LightNAS, SinglePathRepeat

logging.getLogger('nni').setLevel(logging.ERROR)
pytestmark = pytest.mark.usefixtures('one_torch_thread')

CHANNELS, LENGTH, CLASSES = 4, 8, 3


def conv(kernel_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(CHANNELS, CHANNELS, kernel_size, padding=kernel_size // 2), nn.ReLU())


class DepthSpace(ModelSpace):
    """A Repeat of LayerChoice blocks (labels of their own) and a Repeat of plain blocks."""

    def __init__(self):
        super().__init__()
        self.stage = Repeat(lambda index: LayerChoice({'k3': conv(3), 'k5': conv(5)}, label=f'stage_i{index}'),
                            (1, 3), label='stage_depth')
        self.tail = Repeat(lambda index: conv(3), (0, 2), label='tail_depth')
        self.head = nn.Linear(CHANNELS, CLASSES)

    def forward(self, x):
        return self.head(self.tail(self.stage(x)).mean(-1))


def example_input() -> torch.Tensor:
    return torch.zeros(2, CHANNELS, LENGTH)


def data(num_examples: int = 64, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (num_examples,), generator=generator)
    features = 0.5 * torch.randn(num_examples, CHANNELS, LENGTH, generator=generator)
    features[torch.arange(num_examples), labels] += 1.0
    return TensorDataset(features, labels)


@pytest.fixture(scope='module')
def depth_lut() -> LatencyLUT:
    return build_lut(DepthSpace(), ParamsDevice(quadratic=0.0), example_input=example_input())


def all_archs(candidates):
    labels = list(candidates)
    for ops in itertools.product(*(candidates[label] for label in labels)):
        yield dict(zip(labels, ops))


# ----------------------------------------------------------------------------- reading the space
def test_depths_are_choices_whose_candidates_are_the_depths():
    assert space_candidates(DepthSpace()) == {
        'stage_i0': ['k3', 'k5'], 'stage_i1': ['k3', 'k5'], 'stage_i2': ['k3', 'k5'],
        'stage_depth': ['1', '2', '3'], 'tail_depth': ['0', '1', '2']}
    stage, tail = depth_choices(DepthSpace())
    assert stage.block_labels == (('stage_i0',), ('stage_i1',), ('stage_i2',)) and stage.plain_blocks == []
    assert tail.depths == (0, 1, 2) and tail.plain_blocks == [0, 1]
    net = freeze_arch(DepthSpace(), {'stage_depth': '2', 'stage_i0': 'k5', 'stage_i1': 'k3', 'stage_i2': 'k3',
                                     'tail_depth': '0'})
    assert len(net.stage) == 2 and len(net.tail) == 0 and net(example_input()).shape == (2, CLASSES)


# ----------------------------------------------------------------------------- the gated table
def test_gated_table_predicts_whole_networks_of_every_depth_exactly(depth_lut):
    device = ParamsDevice(quadratic=0.0)
    rows = depth_lut.table.set_index(['layer', 'op'])['latency_ms']
    # a Repeat of LayerChoice blocks costs nothing itself; plain blocks are summed into the depth's rows
    assert [rows[('stage_depth', d)] for d in '123'] == [0.0, 0.0, 0.0]
    block_ms = device.latency_of(CHANNELS * CHANNELS * 3 + CHANNELS) - device.latency_of(0)
    assert [rows[('tail_depth', d)] for d in '012'] == pytest.approx([0.0, block_ms, 2 * block_ms])
    assert all(abs(check['relative_error']) < 1e-9 for check in depth_lut.metadata['whole_net_check'])
    shallow = {'stage_depth': '1', 'stage_i0': 'k3', 'stage_i1': 'k3', 'stage_i2': 'k3', 'tail_depth': '2'}
    from nni_lightnas.latency.space_lut import measure_space_archs
    deep = dict(shallow, stage_depth='3', stage_i2='k5')
    measured = [r.median_ms for r in measure_space_archs(DepthSpace(), [shallow, deep], device,
                                                         example_input=example_input())]
    assert [depth_lut.predict(shallow), depth_lut.predict(deep)] == pytest.approx(measured, rel=1e-9)
    # a block past the depth does not count
    assert depth_lut.predict(dict(shallow, stage_i2='k5')) == depth_lut.predict(shallow)


def test_gated_table_range_expectation_and_vectorised_predictions_agree_with_predict(depth_lut, tmp_path):
    archs = list(all_archs(depth_lut.candidates))
    values = [depth_lut.predict(arch) for arch in archs]
    assert depth_lut.latency_range() == pytest.approx((min(values), max(values)))
    indices = [[depth_lut.candidates[label].index(arch[label]) for label in depth_lut.labels] for arch in archs]
    assert depth_lut.predict_indices(indices).tolist() == pytest.approx(values)
    # the expected latency of softmax(alpha) is the mean over architectures drawn from it
    generator = torch.Generator().manual_seed(0)
    probs = {label: torch.softmax(torch.randn(len(ops), generator=generator), -1)
             for label, ops in depth_lut.candidates.items()}
    weights = [float(torch.prod(torch.stack([probs[label][depth_lut.candidates[label].index(arch[label])]
                                             for label in depth_lut.labels]))) for arch in archs]
    expected = sum(w * v for w, v in zip(weights, values))
    assert float(depth_lut.expected_latency(probs)) == pytest.approx(expected, rel=1e-6)
    # gates survive saving, loading and calibration
    loaded = LatencyLUT.load(depth_lut.save(tmp_path / 'lut.csv'), space=DepthSpace())
    calibrated = loaded.with_calibration(2.0, 0.5)
    assert loaded.depth_gates == depth_lut.depth_gates
    assert calibrated.predict(archs[5]) == pytest.approx(2.0 * depth_lut.predict(archs[5]) + 0.5)


def test_a_table_whose_gate_names_an_unknown_layer_is_refused(depth_lut):
    metadata = dict(depth_lut.metadata, depth_gates=[{'label': 'stage_depth', 'depths': [1, 2, 3],
                                                      'blocks': [['stage_i0'], ['nope'], ['stage_i2']]}])
    with pytest.raises(ValueError, match="gates layer 'nope', which the table lacks"):
        LatencyLUT(depth_lut.table, metadata)


# ----------------------------------------------------------------------------- the search
def test_depth_space_searches_lands_and_trains_every_block(depth_lut):
    torch.manual_seed(0)
    low, high = depth_lut.latency_range()
    target_ms = low + 0.5 * (high - low)
    train = DataLoader(data(), batch_size=16, shuffle=True)
    evaluator = make_search_evaluator(train, DataLoader(data(64, 1), batch_size=16), max_epochs=3,
                                      num_classes=CLASSES)
    strategy = LightNAS(target_latency_ms=target_ms, latency_model=depth_lut, warmup_epochs=1, landing_tolerance=0.05)
    space = DepthSpace()
    weights = dict(space.named_parameters())  # the supernet reuses these modules
    before = {name: weight.detach().clone() for name, weight in weights.items()}
    NasExperiment(space, evaluator, strategy).run()
    module = strategy.oneshot_module
    repeats = [m for m in module.modules() if isinstance(m, SinglePathRepeat)]
    assert [r.label for r in repeats] == ['stage_depth', 'tail_depth']
    assert sorted(strategy.probabilities()) == sorted(depth_lut.labels)
    # the fair warm-up ran every depth and op, so every block of every Repeat was trained
    for name, weight in weights.items():
        assert not torch.equal(weight.detach(), before[name]), f'{name} was never trained'
    result = strategy.export_result()
    assert result['predicted_ms'] == pytest.approx(depth_lut.predict(result['arch']))
    assert result['within_tolerance'] and abs(result['predicted_ms'] / target_ms - 1) <= 0.05
    net = freeze_arch(DepthSpace(), result['arch'])
    assert len(net.stage) == int(result['arch']['stage_depth']) and net(example_input()).shape == (2, CLASSES)


def test_single_path_repeat_runs_the_sampled_depth_and_gates_its_output():
    from nni.mutable import Categorical
    from nni.mutable.frozen import frozen_context
    blocks = [nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)]
    alpha = nn.Parameter(torch.zeros(3))
    with frozen_context():  # as a one-shot strategy builds its supernet
        repeat = SinglePathRepeat(blocks, Categorical([1, 2, 3], label='d'), alpha)
    x = torch.randn(4, 2)
    repeat.force(1)
    assert torch.allclose(repeat(x), blocks[1](blocks[0](x)))
    repeat.pin(2)
    repeat(x).sum().backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    assert repeat.export({}) == {'d': 1} and list(repeat.arch_parameters()) == [alpha]


# ----------------------------------------------------------------------------- NNI's hub spaces
def proxyless() -> ProxylessNAS:
    return ProxylessNAS(width_mult=0.25, num_labels=CLASSES)


def test_nni_proxylessnas_profiles_searches_and_lands():
    lut = build_lut(proxyless(), ParamsDevice(quadratic=0.0), example_input=torch.zeros(2, 3, 32, 32))
    assert len(lut.depth_gates) == 5 and lut.candidates['s2_depth'] == ['1', '2', '3', '4']
    assert all(abs(check['relative_error']) < 1e-9 for check in lut.metadata['whole_net_check'])
    torch.manual_seed(0)
    images, labels = torch.randn(32, 3, 32, 32), torch.randint(0, CLASSES, (32,))
    loader = DataLoader(TensorDataset(images, labels), batch_size=16)
    low, high = lut.latency_range()
    target_ms = low + 0.25 * (high - low)
    strategy = LightNAS(target_latency_ms=target_ms, latency_model=lut, warmup_epochs=1)
    NasExperiment(proxyless(), make_search_evaluator(loader, loader, max_epochs=2, num_classes=CLASSES),
                  strategy).run()
    result = strategy.export_result()
    assert result['within_tolerance'] and abs(result['predicted_ms'] / target_ms - 1) <= 0.01
    net = freeze_arch(proxyless(), result['arch']).eval()
    assert len(net.blocks[1]) == int(result['arch']['s2_depth']) and net(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


def test_nni_mobilenetv3_space_is_refused_naming_its_mutable_conv():
    with pytest.raises(UnsupportedMutableError, match=r"module 'stem.0' of type MutableConv2d holds the mutable"):
        space_candidates(MobileNetV3Space(width_multipliers=0.5, expand_ratios=(4.0, 6.0)))


class SharedLabelRepeat(ModelSpace):
    def __init__(self):
        super().__init__()
        self.body = Repeat(LayerChoice({'k3': conv(3), 'k5': conv(5)}, label='op'), (1, 2), label='depth')

    def forward(self, x):
        return self.body(x)


def test_a_repeat_whose_blocks_share_one_label_is_refused_with_the_fix():
    with pytest.raises(UnsupportedMutableError, match=r"label 'op' inside Repeat 'body' .* shared by "
                                                      r"\['body.blocks.0', 'body.blocks.1'\].*lambda index"):
        space_candidates(SharedLabelRepeat())

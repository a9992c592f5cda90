"""LightNAS on a user's own NNI model space: LUT, refusals, search through NasExperiment, nearest landing.

The space here is what a user writes: a plain ``ModelSpace`` with ``LayerChoice`` layers (1-D
convolutions, as in keyword spotting), no class of ours. Latencies come from a deterministic
fake device (a function of the ONNX model's weights), so the arithmetic is exact.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch
from nni.nas.experiment import NasExperiment
from nni.nas.nn.pytorch import LayerChoice, ModelSpace, MutableConv1d, Repeat
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from latency_fakes import ParamsDevice
from nni_lightnas.latency.lut import LatencyLUT, LUTMismatchError
from nni_lightnas.latency.lut_build import build_lut
from nni_lightnas.search import SearchConfig, make_search_evaluator, run_search
from nni_lightnas.search_spaces.nni_space import (UnsupportedMutableError, freeze_arch, probe_choices,
                                                  space_candidates, space_fingerprint)
from nni_lightnas.strategies import LightNAS

logging.getLogger('nni').setLevel(logging.ERROR)
pytestmark = pytest.mark.usefixtures('one_torch_thread')

MELS, FRAMES, CLASSES = 8, 16, 4


def conv(in_chs: int, out_chs: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(in_chs, out_chs, kernel_size, padding=kernel_size // 2, bias=False),
                         nn.BatchNorm1d(out_chs), nn.ReLU())


class UserSpace(ModelSpace):
    """A user's space: stem, two searchable blocks, a shared-label pair of blocks, classifier."""

    def __init__(self, channels: int = 8):
        super().__init__()
        self.stem = conv(MELS, channels, 3)
        self.block0 = LayerChoice({'conv3': conv(channels, channels, 3), 'conv7': conv(channels, channels, 7),
                                   'skip': nn.Identity()}, label='block0')
        self.block1 = LayerChoice({'conv3': conv(channels, channels, 3), 'conv7': conv(channels, channels, 7),
                                   'skip': nn.Identity()}, label='block1')
        self.widen = conv(channels, 2 * channels, 1)
        # two modules decided by one label, at different widths (as NAS-Bench-201 cells share their edges)
        self.shared_a = LayerChoice({'conv3': conv(2 * channels, 2 * channels, 3), 'skip': nn.Identity()},
                                    label='shared')
        self.shared_b = LayerChoice({'conv3': conv(2 * channels, 2 * channels, 3), 'skip': nn.Identity()},
                                    label='shared')
        self.classifier = nn.Linear(2 * channels, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(self.block0(self.stem(x)))
        x = self.shared_b(self.shared_a(self.widen(x)))
        return self.classifier(x.mean(-1))


def example_input(batch: int = 2) -> torch.Tensor:
    return torch.zeros(batch, MELS, FRAMES)


def keyword_data(num_examples: int = 192, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (num_examples,), generator=generator)
    features = 0.5 * torch.randn(num_examples, MELS, FRAMES, generator=generator)
    for cls in range(CLASSES):
        features[labels == cls, 2 * cls:2 * cls + 2, :] += 1.0
    return TensorDataset(features, labels)


@pytest.fixture(scope='module')
def user_lut() -> LatencyLUT:
    return build_lut(UserSpace(), ParamsDevice(), example_input=example_input())


# ----------------------------------------------------------------------------- the LUT
def test_lut_rows_sum_shared_labels_and_the_fixed_part_explains_whole_nets(user_lut):
    device = ParamsDevice()
    probe = probe_choices(UserSpace(), example_input())
    assert [call.label for call in probe.calls] == ['block0', 'block1', 'shared', 'shared']
    assert probe.calls[2].input_shape == (2, 16, FRAMES)
    assert user_lut.candidates == {'block0': ['conv3', 'conv7', 'skip'], 'block1': ['conv3', 'conv7', 'skip'],
                                   'shared': ['conv3', 'skip']}
    rows = user_lut.table.set_index(['layer', 'op'])
    assert rows.loc[('shared', 'conv3'), 'instances'] == 2
    one = device.latency_of(16 * 16 * 3 + 16) - device.latency_of(0)  # BN folded into the conv: weights + bias
    assert rows.loc[('shared', 'conv3'), 'latency_ms'] == pytest.approx(2 * one, rel=1e-6)
    assert rows.loc[('block0', 'skip'), 'latency_ms'] == pytest.approx(0.0, abs=1e-9)
    assert set(user_lut.table.loc[user_lut.table['kind'] == 'fixed', 'layer']) == {'call', 'rest'}
    check = user_lut.metadata['whole_net_check']
    assert len(check) == 3 and all(set(row) >= {'arch', 'measured_ms', 'predicted_ms'} for row in check)
    assert user_lut.metadata['instances'] == {'block0': 1, 'block1': 1, 'shared': 2}


def test_lut_saves_resumes_and_refuses_another_space(tmp_path):
    path = tmp_path / 'lut.csv'
    device = ParamsDevice()
    stop_after = 5

    def interrupt(row):
        if device.calls >= stop_after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_lut(UserSpace(), device, example_input=example_input(), path=path, on_row=interrupt)
    assert not path.exists() and (tmp_path / 'lut.csv.partial.csv').is_file()
    resumed_device = ParamsDevice()
    lut = build_lut(UserSpace(), resumed_device, example_input=example_input(), path=path)
    fresh_device = ParamsDevice()
    fresh = build_lut(UserSpace(), fresh_device, example_input=example_input())
    assert resumed_device.calls == fresh_device.calls - stop_after
    assert lut.latency_range() == pytest.approx(fresh.latency_range())
    assert not (tmp_path / 'lut.csv.partial.csv').exists()

    again = ParamsDevice()
    loaded = build_lut(UserSpace(), again, example_input=example_input(), path=path)
    assert again.calls == 0 and loaded.latency_range() == pytest.approx(lut.latency_range())
    assert LatencyLUT.load(path, space=UserSpace()).labels == lut.labels
    assert space_fingerprint(UserSpace(channels=12)) != space_fingerprint(UserSpace())
    with pytest.raises(LUTMismatchError, match='another space'):
        LatencyLUT.load(path, space=UserSpace(channels=12))
    with pytest.raises(LUTMismatchError, match='input shape'):
        build_lut(UserSpace(), ParamsDevice(), example_input=example_input(batch=4), path=path)


def test_build_lut_of_a_foreign_space_needs_an_example_input():
    with pytest.raises(ValueError, match='needs example_input='):
        build_lut(UserSpace(), ParamsDevice())


# ------------------------------------------------------------------------ refusals
class MixedRepeatSpace(ModelSpace):
    """A Repeat whose blocks mix a fixed conv and a LayerChoice: refused (each block one choice, or none)."""

    def __init__(self):
        super().__init__()
        self.body = Repeat(lambda index: nn.Sequential(conv(MELS, MELS, 3), LayerChoice(
            {'conv': conv(MELS, MELS, 3), 'skip': nn.Identity()}, label=f'op{index}')), (1, 2), label='depth')
        self.head = nn.Linear(MELS, CLASSES)

    def forward(self, x):
        return self.head(self.body(x).mean(-1))


class WidthSpace(ModelSpace):
    def __init__(self):
        super().__init__()
        import nni
        self.conv = MutableConv1d(MELS, MELS, nni.choice('kernel', [3, 5]), padding=1)
        self.block = LayerChoice({'a': nn.Identity(), 'b': conv(MELS, MELS, 3)}, label='block')
        self.head = nn.Linear(MELS, CLASSES)

    def forward(self, x):
        return self.head(self.block(self.conv(x)).mean(-1))


@pytest.mark.parametrize('space_class,message', [
    (MixedRepeatSpace, r"block 'body.blocks.0' of Repeat 'body' \(depth 'depth'\) is a Sequential holding the "
                       r"mutable\(s\) \{'1': \['op0'\]\}"),
    (WidthSpace, r"module 'conv' of type MutableConv1d holds the mutable\(s\) \['kernel'\]")])
def test_unsupported_mutables_are_refused_before_training_naming_module_and_mutable(space_class, message, user_lut):
    with pytest.raises(UnsupportedMutableError, match=message):
        space_candidates(space_class())
    with pytest.raises(UnsupportedMutableError, match=message):
        build_lut(space_class(), ParamsDevice(), example_input=example_input())
    train, arch = DataLoader(keyword_data(8), batch_size=4), DataLoader(keyword_data(8, 1), batch_size=4)
    evaluator = make_search_evaluator(train, arch, max_epochs=1, num_classes=CLASSES)
    low, high = user_lut.latency_range()
    strategy = LightNAS(target_latency_ms=(low + high) / 2, latency_model=user_lut, warmup_epochs=0)
    with pytest.raises(UnsupportedMutableError, match=message):
        NasExperiment(space_class(), evaluator, strategy).run()


@pytest.mark.parametrize('kwargs,error,match', [
    ({'target_latency_ms': 1.0, 'latency_model': None}, ValueError, 'needs latency_model, got latency_model=None'),
    ({'latency_model': None}, ValueError, 'needs a budget'),
    ({'target_latency_ms': 1.0, 'latency_model': 'lut.csv'}, TypeError,
     'latency_model must be a LatencyModel .* got str .* latency_model_from_path'),
])
def test_missing_or_wrong_latency_model_is_a_clear_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        LightNAS(**kwargs)


def test_a_mismatched_latency_model_is_refused_naming_the_layer(user_lut):
    table = user_lut.table[user_lut.table['layer'] != 'shared']
    partial = LatencyLUT(table, {})
    low, high = partial.latency_range()
    train = DataLoader(keyword_data(8), batch_size=4)
    evaluator = make_search_evaluator(train, train, max_epochs=1, num_classes=CLASSES)
    strategy = LightNAS(target_latency_ms=(low + high) / 2, latency_model=partial, warmup_epochs=0)
    with pytest.raises(ValueError, match="layer shared of the model space is unknown to the latency model"):
        NasExperiment(UserSpace(), evaluator, strategy).run()


# ------------------------------------------------------------------ the search, end to end
def test_user_space_searches_end_to_end_through_nas_experiment(user_lut):
    """No subclassing: the user's space, our LUT of it and LightNAS in a plain NasExperiment."""
    torch.manual_seed(0)
    low, high = user_lut.latency_range()
    target_ms = low + 0.5 * (high - low)
    data = keyword_data()
    train = DataLoader(torch.utils.data.Subset(data, range(0, 96)), batch_size=32, shuffle=True)
    arch = DataLoader(torch.utils.data.Subset(data, range(96, 192)), batch_size=32, shuffle=True)
    evaluator = make_search_evaluator(train, arch, max_epochs=3, num_classes=CLASSES)
    strategy = LightNAS(target_latency_ms=target_ms, latency_model=user_lut, warmup_epochs=1, identity_eta=0.5,
                        landing_tolerance=0.05)
    NasExperiment(UserSpace(), evaluator, strategy).run()
    result = strategy.export_result()
    assert set(result['arch']) == {'block0', 'block1', 'shared'}
    assert result['arch_string'] == ','.join(f'{label}={result["arch"][label]}' for label in sorted(result['arch']))
    assert result['predicted_ms'] == pytest.approx(user_lut.predict(result['arch']))
    if result['within_tolerance']:
        assert abs(result['predicted_ms'] / target_ms - 1) <= 0.05 and not result['nearest_feasible']
    else:
        assert result['nearest_feasible']
    net = freeze_arch(UserSpace(), result['arch'])
    assert net(example_input()).shape == (2, CLASSES)
    # identity regularisation found each layer's nn.Identity candidate
    layers = strategy.oneshot_module.mixed_layers()
    assert len(layers) == 4 and all(isinstance(layer.aux, nn.Identity) for layer in layers)
    # one alpha per label, however many modules it decides
    assert sorted(strategy.probabilities()) == ['block0', 'block1', 'shared']


def test_run_search_on_a_user_space_with_its_own_dataset(user_lut, tmp_path):
    low, high = user_lut.latency_range()
    config = SearchConfig(target_ms=low + 0.3 * (high - low), epochs=2, warmup_epochs=1, batch_size=32,
                          landing_tolerance=0.05)
    summary = run_search(config, user_lut, tmp_path, space=UserSpace(), dataset=keyword_data())
    written = json.loads((tmp_path / 'summary.json').read_text())
    assert written['arch'] == summary['arch_string'] and written['space'].endswith(':UserSpace')
    assert set(written['sample']) == {'block0', 'block1', 'shared'} and written['preset'] is None
    assert set(json.loads((tmp_path / 'arch.json').read_text())) == {'arch', 'arch_string'}
    assert written['within_tolerance'] in (True, False) and written['nearest_feasible'] == (not written['within_tolerance'])
    with pytest.raises(ValueError, match='needs dataset='):
        run_search(config, user_lut, space=UserSpace())


def test_a_target_no_architecture_reaches_exports_the_nearest_and_says_so(caplog):
    # ops cost 0 or 1 ms in two layers: sums 0, 1, 2 (+ 1 fixed); 2.5 ms is 20% from the nearest
    import pandas as pd
    rows = [{'kind': 'fixed', 'layer': 'rest', 'op': 'rest', 'latency_ms': 1.0}]
    for label in ('block0', 'block1'):
        rows += [{'kind': 'op', 'layer': label, 'op': op, 'latency_ms': ms}
                 for op, ms in (('conv3', 1.0), ('conv7', 1.0), ('skip', 0.0))]
    rows += [{'kind': 'op', 'layer': 'shared', 'op': op, 'latency_ms': 0.0} for op in ('conv3', 'skip')]
    lut = LatencyLUT(pd.DataFrame(rows), {})
    torch.manual_seed(0)
    train = DataLoader(keyword_data(64), batch_size=32, shuffle=True)
    evaluator = make_search_evaluator(train, DataLoader(keyword_data(64, 1), batch_size=32), max_epochs=1,
                                      num_classes=CLASSES)
    strategy = LightNAS(target_latency_ms=2.5, latency_model=lut, warmup_epochs=0, landing_tolerance=0.01)
    with caplog.at_level(logging.WARNING, logger='nni_lightnas.strategies.landing'):
        NasExperiment(UserSpace(), evaluator, strategy).run()
        result = strategy.export_result()
    assert result['nearest_feasible'] and result['within_tolerance'] is False
    assert result['predicted_ms'] in (pytest.approx(2.0), pytest.approx(3.0))
    assert 'exporting the nearest one' in caplog.text


class ListCandidates(ModelSpace):
    """Candidates given as a list: NNI names them 0, 1, ...; our tables name them '0', '1', ..."""

    def __init__(self):
        super().__init__()
        self.block = LayerChoice([conv(MELS, MELS, 3), conv(MELS, MELS, 7), nn.Identity()], label='block')
        self.head = nn.Linear(MELS, CLASSES)

    def forward(self, x):
        return self.head(self.block(x).mean(-1))


def test_list_candidates_are_searched_by_their_index_names():
    lut = build_lut(ListCandidates(), ParamsDevice(), example_input=example_input())
    assert lut.candidates == {'block': ['0', '1', '2']}
    low, high = lut.latency_range()
    train = DataLoader(keyword_data(64), batch_size=32)
    evaluator = make_search_evaluator(train, train, max_epochs=2, num_classes=CLASSES)
    strategy = LightNAS(target_latency_ms=high, latency_model=lut, warmup_epochs=1)
    NasExperiment(ListCandidates(), evaluator, strategy).run()
    result = strategy.export_result()
    assert result['arch']['block'] in ('0', '1', '2') and result['predicted_ms'] == pytest.approx(
        lut.predict(result['arch']))
    assert isinstance(freeze_arch(ListCandidates(), result['arch']).block, nn.Module)


def test_the_lut_of_a_user_space_is_an_nni_profiler(user_lut):
    from nni.nas.oneshot.pytorch.profiler import RangeProfilerFilter

    from nni_lightnas.latency.profiler import LatencyProfiler
    profiler = LatencyProfiler(UserSpace(), user_lut)
    sample = {'block0': 'conv7', 'block1': 'skip', 'shared': 'conv3'}
    assert profiler.profile(sample) == pytest.approx(user_lut.predict(sample))
    assert RangeProfilerFilter(profiler, max=user_lut.predict(sample) * 1.01)(sample)
    with pytest.raises(LUTMismatchError, match='shared'):
        LatencyProfiler(UserSpace(), LatencyLUT(user_lut.table[user_lut.table['layer'] != 'shared'], {}))

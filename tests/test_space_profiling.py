"""BBSSP search space profiling: block families, the cost, selection, a real profiling run, the CLI."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

from latency_fakes import CountingDevice, ParamsDevice
from nni_lightnas.cli import main
from nni_lightnas.data import load_fashion_mnist
from nni_lightnas.search_spaces import LightNASSpace, LightNet, build_op, family_of, parse_op_name
from nni_lightnas.search_spaces.families import (FAMILIES, BasicResidual, PlainConv, build_family_block,
                                                 parse_family_op)
from nni_lightnas.strategies import ProfilingConfig, profile_search_space
from nni_lightnas.strategies.space_profiling import bbssp_cost, select_candidates, ssbn_archs

pytestmark = pytest.mark.usefixtures('one_torch_thread')


# ----------------------------------------------------------------------------- block families
@pytest.mark.parametrize('name, stride, in_chs, out_chs', [
    ('RBK3', 1, 16, 16), ('RBK5', 2, 16, 24), ('RBK7', 1, 8, 16), ('PLK3', 2, 8, 16), ('PLK5', 1, 16, 16)])
def test_family_ops_shapes_and_gradients(name, stride, in_chs, out_chs):
    op = build_op(name, in_chs, out_chs, stride)
    assert isinstance(op, BasicResidual if name.startswith('RB') else PlainConv)
    out = op(torch.randn(2, in_chs, 14, 14))
    assert out.shape == (2, out_chs, 14 // stride, 14 // stride)
    out.mean().backward()
    for param_name, param in op.named_parameters():
        assert param.grad is not None, f'no gradient for {param_name}'


def test_basic_residual_projection_only_when_shape_changes():
    assert not BasicResidual(16, 16, kernel_size=3).has_projection
    assert BasicResidual(16, 24, kernel_size=3).has_projection
    assert BasicResidual(16, 16, kernel_size=3, stride=2).has_projection
    assert BasicResidual(16, 16, kernel_size=3, mid_chs=40).conv1[0].out_channels == 40


def test_family_op_names_parse_and_errors():
    assert parse_op_name('RBK5').dw_kernel_size == 5 and parse_op_name('RBK5').exp_ratio is None
    assert parse_family_op('PLK7').kind == 'plain'
    assert [family_of(op) for op in ('MBK3E6', 'RBK3', 'PLK5', 'skip')] == \
        ['inverted_residual', 'residual', 'plain', 'shared']
    with pytest.raises(ValueError, match=r"unknown op name 'RBK4'.*RBK\{k\} and PLK\{k\}"):
        parse_op_name('RBK4')
    with pytest.raises(ValueError, match="unknown family op name 'MBK3E6'"):
        parse_family_op('MBK3E6')
    assert type(build_op('MBK3E3', 8, 8, 1)).__name__ == 'InvertedResidual'
    assert type(build_family_block('RBK3', 8, 8, 1)).__name__ == 'BasicResidual'
    with pytest.raises(ValueError, match="unknown family op name 'MBK3E3'"):
        build_family_block('MBK3E3', 8, 8, 1)
    for family in FAMILIES.values():
        assert family.typical_op in family.op_names and 'skip' in family.op_names


def test_space_and_lightnet_accept_family_ops():
    op_names = {'layer00': ['RBK3', 'PLK5', 'skip'], 'layer01': ['MBK3E6', 'RBK5'], 'layer02': ['PLK3', 'skip']}
    space = LightNASSpace('tiny', op_names=op_names)
    assert space.candidates == op_names and space.labels == ['layer00', 'layer01', 'layer02']
    net = space.freeze({'layer00': 'PLK5', 'layer01': 'RBK5', 'layer02': 'skip'})
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    plain = LightNet('PLK5-RBK5-skip', 'tiny')
    assert set(plain.state_dict()) == set(net.state_dict())


# ----------------------------------------------------------------------------- the cost
def test_cost_values_and_sign():
    assert bbssp_cost(0.9, 2.0, theta=0.9, s=0.05, lam=1.0) == pytest.approx(1.0 - 0.5)
    assert bbssp_cost(0.85, 2.0, theta=0.9, s=0.05, lam=0.0) == pytest.approx(math.e)
    # lower cost is better: more accuracy lowers it, less latency lowers it
    assert bbssp_cost(0.91, 2.0, theta=0.9) < bbssp_cost(0.90, 2.0, theta=0.9)
    assert bbssp_cost(0.90, 1.0, theta=0.9) < bbssp_cost(0.90, 2.0, theta=0.9)
    series = bbssp_cost(pd.Series([0.8, 0.9]), pd.Series([1.0, 1.0]), theta=0.9, lam=2.0)
    assert isinstance(series, pd.Series) and series.iloc[1] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match='s must be > 0'):
        bbssp_cost(0.9, 1.0, theta=0.9, s=0)
    with pytest.raises(ValueError, match='latency_ms must be > 0'):
        bbssp_cost(0.9, 0.0, theta=0.9)


def _table():
    # two families, two layers; 'fast' family is faster but less accurate
    rows = []
    for family, ops, base_acc, base_ms in (('acc', ['a1', 'a2', 'a3', 'skip'], 0.90, 2.0),
                                           ('fast', ['f1', 'f2', 'skip'], 0.80, 1.0)):
        rows.append({'family': family, 'layer': 'base', 'op': ops[0], 'accuracy': base_acc, 'latency_ms': base_ms})
        for layer in ('layer00', 'layer01'):
            for k, op in enumerate(ops):
                rows.append({'family': family, 'layer': layer, 'op': op, 'accuracy': base_acc - 0.01 * k,
                             'latency_ms': base_ms - 0.1 * k})
    return pd.DataFrame(rows)


def test_select_candidates_lowest_cost_per_layer_and_family():
    table = _table()
    family, candidates, scores = select_candidates(table, selection_size=2, theta=0.9, s=0.05, lam=0.0)
    assert family == 'acc'  # latency ignored: the accurate family wins
    assert candidates == {'layer00': ['a1', 'a2'], 'layer01': ['a1', 'a2']}
    assert list(scores['family']) == ['acc', 'fast']
    family, candidates, _ = select_candidates(table, selection_size=2, theta=0.9, s=0.05, lam=100.0)
    assert family == 'fast'  # a heavy latency weight picks the fast family and its fastest ops
    assert candidates['layer00'] == ['skip', 'f2']
    # every kept op has a cost no higher than any dropped op of its layer
    rows = table[(table['family'] == 'fast') & (table['layer'] == 'layer00')]
    kept = rows[rows['op'].isin(candidates['layer00'])]['cost']
    assert kept.max() <= rows[~rows['op'].isin(candidates['layer00'])]['cost'].min()
    mixed_family, mixed, _ = select_candidates(table, selection_size=3, theta=0.9, lam=1.0, mix_families=True)
    assert mixed_family == 'mixed' and len(mixed['layer00']) == len(set(mixed['layer00'])) == 3
    with pytest.raises(ValueError, match="family 'plain' was not profiled"):
        select_candidates(table, theta=0.9, family='plain')
    with pytest.raises(ValueError, match='selection_size must be an integer >= 1'):
        select_candidates(table, selection_size=0)


def test_ssbn_archs_and_config_validation():
    rows = ssbn_archs('tiny', 'inverted_residual')
    assert rows[0] == ('base', 'MBK3E6', ('MBK3E6',) * 3)
    assert len(rows) == 1 + 3 * 6
    assert all(sum(a != b for a, b in zip(arch, rows[0][2])) == 1 for _, _, arch in rows[1:])
    with pytest.raises(ValueError, match="unknown block family 'resnet'; accepted: inverted_residual"):
        ProfilingConfig(families=('resnet',))
    with pytest.raises(ValueError, match='selection_size must be an integer >= 1, got selection_size=0'):
        ProfilingConfig(selection_size=0)
    with pytest.raises(ValueError, match='theta is an accuracy fraction'):
        ProfilingConfig(theta=85)


# ----------------------------------------------------------------------------- real profiling
@pytest.fixture(scope='module')
def fashion_slices():
    data = load_fashion_mnist('train', limit=192)
    x, y = data.tensors
    return TensorDataset(x[:128], y[:128]), TensorDataset(x[128:], y[128:])


@pytest.fixture(scope='module')
def profiled(fashion_slices):
    torch.manual_seed(0)
    train, val = fashion_slices
    config = ProfilingConfig(preset='tiny', families=('inverted_residual', 'residual'), selection_size=2,
                             base_steps=2, finetune_steps=1, batch_size=16, latency_batch=4)
    device = CountingDevice(num_runs=5, num_warmup_runs=1, clock='cpu', max_attempts=1)
    seen = []
    result = profile_search_space(config, device, train_data=train, val_data=val, on_network=seen.append)
    return result, seen, device


@pytest.mark.timeout(300)
def test_profile_tiny_space_on_fashion_mnist(profiled, tmp_path):
    result, seen, device = profiled
    networks = 1 + 3 * 6 + 1 + 3 * 3  # SSBN_0 and swaps of both families
    assert len(seen) == networks
    table = result.table
    assert len(table) == networks + 2 * 3  # typical op repeated under each layer
    assert table['accuracy'].between(0, 1).all() and (table['latency_ms'] > 0).all()
    assert table['cost'].notna().all()
    assert result.theta == pytest.approx(table['accuracy'].median())
    assert result.family in ('inverted_residual', 'residual')
    family_ops = set(FAMILIES[result.family].op_names)
    assert list(result.candidates) == ['layer00', 'layer01', 'layer02']
    for label, ops in result.candidates.items():
        assert len(ops) == 2 and set(ops) <= family_ops
        rows = table[(table['family'] == result.family) & (table['layer'] == label)]
        assert rows[rows['op'].isin(ops)]['cost'].max() <= rows[~rows['op'].isin(ops)]['cost'].min()
    assert result.reduced_size() == 8 and result.full_size() == 7 ** 3
    space = result.space()
    assert space.candidates == result.candidates
    arch = {label: ops[0] for label, ops in result.candidates.items()}
    assert space.freeze(arch)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    # re-selection without measuring: a huge latency weight keeps the fastest ops
    fastest = result.reselect(lam=1e4, family='residual')
    for label, ops in fastest.candidates.items():
        rows = table[(table['family'] == 'residual') & (table['layer'] == label)]
        assert ops[0] == rows.sort_values('latency_ms')['op'].iloc[0]
    output = result.save(tmp_path / 'profile')
    saved = json.loads((output / 'candidates.json').read_text())
    assert saved['op_names'] == result.candidates
    assert len(pd.read_csv(output / 'report.csv')) == len(table)
    assert json.loads((output / 'summary.json').read_text())['num_networks'] == networks


def test_reduced_space_gets_a_lut(profiled):
    from nni_lightnas.latency.lut_build import build_lut
    result, _, _ = profiled
    space = result.space()
    lut = build_lut(space, ParamsDevice(), batch=2)
    assert lut.candidates == space.candidates
    arch = '-'.join(ops[0] for ops in result.candidates.values())
    assert lut.predict(arch) > 0


@pytest.mark.timeout(300)
def test_profile_space_cli(tmp_path):
    output = tmp_path / 'bbssp'
    code = main(['profile-space', '--preset', 'tiny', '--families', 'plain', '--selection-size', '2',
                 '--base-steps', '1', '--finetune-steps', '1', '--batch-size', '8', '--train-limit', '32',
                 '--val-limit', '32', '--batch', '2', '--runs', '3', '--warmup', '1', '--clock', 'cpu',
                 '--lambda', '0.5', '-o', str(output)])
    assert code == 0
    summary = json.loads((output / 'summary.json').read_text())
    assert summary['family'] == 'plain' and summary['lam'] == 0.5
    assert summary['num_networks'] == 1 + 3 * 3
    assert all(len(ops) == 2 and set(ops) <= {'PLK3', 'PLK5', 'PLK7', 'skip'}
               for ops in summary['candidates'].values())
    assert main(['profile-space', '--preset', 'tiny', '--families', 'vgg', '-o', str(output)]) == 2


@pytest.mark.timeout(300)
def test_lightnas_searches_the_reduced_space(profiled):
    from nni.nas.experiment import NasExperiment

    from lightnas_helpers import synthetic_loaders
    from nni_lightnas.latency.lut_build import build_lut
    from nni_lightnas.search import make_search_evaluator
    from nni_lightnas.strategies import LightNAS
    result, _, _ = profiled
    space = result.space()
    lut = build_lut(space, ParamsDevice(), batch=2)
    low, high = lut.latency_range()
    torch.manual_seed(0)
    train_loader, arch_loader = synthetic_loaders(64, 32)
    strategy = LightNAS(target_latency_ms=(low + high) / 2, latency_model=lut, warmup_epochs=1)
    NasExperiment(space, make_search_evaluator(train_loader, arch_loader, max_epochs=2), strategy).run()
    found = strategy.export_result()
    assert all(found['arch'][label] in ops for label, ops in result.candidates.items())
    assert found['predicted_ms'] == pytest.approx(lut.predict(found['lightnet']))


def test_run_search_takes_the_reduced_space(profiled):
    from nni_lightnas.latency.lut_build import build_lut
    from nni_lightnas.search import SearchConfig, run_search
    result, _, _ = profiled
    space = result.space()
    lut = build_lut(space, ParamsDevice(), batch=2)
    low, high = lut.latency_range()
    summary = run_search(SearchConfig(preset='tiny', target_ms=(low + high) / 2, epochs=2, warmup_epochs=1,
                                      batch_size=32, train_limit=128), lut, space=space)
    ops = summary['arch'].split('-')
    assert all(op in result.candidates[label] for label, op in zip(result.candidates, ops))
    assert summary['predicted_ms'] == pytest.approx(lut.predict(summary['arch']))

"""Latency predictors: recovery of additive latency, gradients, save/load, the search adapter, loaders."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch

from nni_lightnas.latency.datasets import read_latency_csv, read_measured_table, split_train_test
from nni_lightnas.latency.graphs import LightNetGraphSpace, NasBench201GraphSpace
from nni_lightnas.latency.model import LatencyModel
from nni_lightnas.latency.predictors import (PREDICTORS, PredictorLatencyModel, load_latency_predictor,
                                             load_predictor, make_predictor)
from nni_lightnas.latency.predictors.evaluation import accuracy_metrics
from nni_lightnas.search_spaces import OP_NAMES

FAST = {'mlp': {'epochs': 150}, 'gnn': {'epochs': 150, 'width': 32, 'num_layers': 2},
        'ensemble': {'epochs': 100, 'num_members': 3}, 'additive': {}}


def _synthetic(space, num_archs: int, seed: int = 0):
    """Random archs of ``space`` and an additive latency with a known table."""
    rng = random.Random(seed)
    table = np.random.default_rng(seed).uniform(0.1, 1.0, (space.num_slots, space.max_candidates))
    archs = [[rng.choice(names) for names in space.candidates] for _ in range(num_archs)]
    latency = [2.0 + sum(table[s, space.candidates[s].index(op)] for s, op in enumerate(arch)) for arch in archs]
    return [space.format(arch) for arch in archs], np.array(latency), table


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def space():
    return LightNetGraphSpace('fashion_mnist')


def test_additive_recovers_table(space):
    archs, latency, table = _synthetic(space, 200)
    predictor = make_predictor('additive', space).fit(archs, latency)
    fitted = predictor.module.table_ms.numpy()
    # identifiable up to a constant per slot: compare differences to each slot's first op
    np.testing.assert_allclose(fitted - fitted[:, :1], table - table[:, :1], atol=1e-3)
    test_archs = _synthetic(space, 50, seed=1)[0]
    np.testing.assert_allclose(predictor.predict(test_archs), _additive(space, test_archs, table), rtol=1e-3)


def _additive(space, archs, table):
    return np.array([2.0 + sum(table[s, space.candidates[s].index(op)] for s, op in enumerate(space.parse(a)))
                     for a in archs])


@pytest.mark.parametrize('kind', ['mlp', 'gnn', 'ensemble'])
def test_learned_predictors_recover_additive_latency(kind):
    space = LightNetGraphSpace('tiny')
    archs, latency, table = _synthetic(space, 150)
    predictor = make_predictor(kind, space, seed=0, **FAST[kind]).fit(archs, latency)
    test_archs = _synthetic(space, 200, seed=7)[0]
    metrics = accuracy_metrics(predictor.predict(test_archs), _additive(space, test_archs, table))
    assert metrics['acc10'] >= 95, metrics
    assert metrics['spearman'] >= 0.9, metrics


@pytest.mark.parametrize('kind', sorted(PREDICTORS))
def test_soft_probabilities_give_gradients(kind):
    space = LightNetGraphSpace('tiny')
    archs, latency, _ = _synthetic(space, 40)
    options = dict(FAST[kind])
    predictor = make_predictor(kind, space, **options).fit(archs, latency)
    alpha = torch.zeros(space.num_slots, space.max_candidates, requires_grad=True)
    value = predictor.predict_probs(torch.softmax(alpha, -1))
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert alpha.grad is not None and float(alpha.grad.abs().sum()) > 0
    # one-hot probabilities give the same as predict()
    one_hot = space.one_hot(archs[:3])
    np.testing.assert_allclose(predictor.predict_probs(one_hot).detach().numpy(), predictor.predict(archs[:3]),
                               rtol=1e-5)


@pytest.mark.parametrize('kind', sorted(PREDICTORS))
def test_save_load_identical_predictions(tmp_path, kind):
    space = NasBench201GraphSpace()
    rng = random.Random(0)
    archs = [space.format([rng.choice(names) for names in space.candidates]) for _ in range(40)]
    latency = [1.0 + arch.count('conv_3x3') + 0.3 * arch.count('conv_1x1') for arch in archs]
    predictor = make_predictor(kind, space, seed=3, **FAST[kind]).fit(archs, latency)
    predictor.save(tmp_path / 'p')
    loaded = load_latency_predictor(tmp_path / 'p')
    assert type(loaded) is type(predictor) and loaded.fit_info == predictor.fit_info
    np.testing.assert_array_equal(loaded.predict(archs), predictor.predict(archs))
    # the weights file holds tensors only
    state = torch.load(tmp_path / 'p' / 'weights.pt', weights_only=True)
    assert all(isinstance(value, torch.Tensor) for value in state.values())


def test_ensemble_beats_additive_on_nonadditive_cells():
    """A cell latency that counts only live ops: no per-op sum explains it, the ensemble does."""
    space = NasBench201GraphSpace()
    rng = random.Random(1)
    archs = [space.format([rng.choice(names) for names in space.candidates]) for _ in range(400)]
    probs = space.one_hot(archs)
    live = space.live_edges(probs).numpy()
    cost = np.array([0.0, 0.1, 1.0, 3.0, 0.5])[space.indices(archs)]
    latency = 2.0 + (live * cost).sum(1)
    train, test = archs[:200], archs[200:]
    ensemble = make_predictor('best', space, **FAST['ensemble']).fit(train, latency[:200])
    additive = make_predictor('additive', space).fit(train, latency[:200])
    good = accuracy_metrics(ensemble.predict(test), latency[200:])
    base = accuracy_metrics(additive.predict(test), latency[200:])
    assert good['mape'] < base['mape'] / 2, (good, base)
    assert good['acc5'] >= 95


def test_predictor_latency_model(tmp_path, space):
    archs, latency, table = _synthetic(space, 120)
    predictor = make_predictor('ensemble', space, **FAST['ensemble']).fit(archs, latency)
    predictor.save(tmp_path / 'predictor')
    model = load_predictor(tmp_path / 'predictor')
    assert isinstance(model, LatencyModel) and model.labels == space.labels
    assert model.predict(archs[0]) == pytest.approx(float(predictor.predict(archs[:1])[0]), rel=1e-6)
    assert model.predict(model.space.parse(archs[0])) == pytest.approx(model.predict(archs[0]))
    alphas = {label: torch.zeros(len(OP_NAMES), requires_grad=True) for label in model.labels}
    value = model.expected_latency({label: torch.softmax(alpha, 0) for label, alpha in alphas.items()})
    value.backward()
    assert all(alpha.grad is not None for alpha in alphas.values())
    low, high = model.latency_range()
    true_low = 2.0 + table.min(1).sum()
    true_high = 2.0 + table.max(1).sum()
    assert low == pytest.approx(true_low, rel=0.08) and high == pytest.approx(true_high, rel=0.08)
    model.check_compatible('fashion_mnist')
    with pytest.raises(ValueError, match='fitted for preset'):
        model.check_compatible('tiny')


def test_additive_latency_range_is_exact():
    space = LightNetGraphSpace('tiny')
    archs, latency, table = _synthetic(space, 80)
    model = PredictorLatencyModel(make_predictor('additive', space).fit(archs, latency), num_random=0)
    low, high = model.latency_range()
    assert low == pytest.approx(2.0 + table.min(1).sum(), rel=1e-3)
    assert high == pytest.approx(2.0 + table.max(1).sum(), rel=1e-3)


def test_unknown_kind_and_options(space):
    with pytest.raises(ValueError, match="unknown predictor kind 'svm'"):
        make_predictor('svm', space)
    with pytest.raises(ValueError, match="unknown options \\['depth'\\]"):
        make_predictor('mlp', space, depth=3)
    with pytest.raises(ValueError, match='positive finite'):
        make_predictor('additive', space).fit(['skip-' * 7 + 'skip', 'MBK3E3-' * 7 + 'skip'], [1.0, -2.0])


# --- loaders ------------------------------------------------------------------------------------

CELL = '|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|'


def test_read_latency_csv_bad_inputs():
    with pytest.raises(ValueError, match=r"no latency column 'gpu'; columns: \['nb201_index', 'cpu'\]"):
        read_latency_csv(io.StringIO(f'arch,nb201_index,cpu\n{CELL},1,2.0\n'), 'gpu')
    with pytest.raises(ValueError, match=r"column 'cpu' must be numeric.*row 2.*'fast'"):
        read_latency_csv(io.StringIO(f'arch,cpu\n{CELL},2.0\n{CELL},fast\n'), 'cpu')
    with pytest.raises(ValueError, match=r"row 1: unknown op 'conv_7x7'"):
        read_latency_csv(io.StringIO(f'arch,cpu\n{CELL.replace("nor_conv_3x3", "conv_7x7")},2.0\n'), 'cpu')
    with pytest.raises(FileNotFoundError):
        read_latency_csv('/nonexistent/latency.csv', 'cpu')


def test_read_latency_csv_missing_values_and_split():
    data = read_latency_csv(io.StringIO(f'arch,cpu\n{CELL},2.0\n{CELL},\n{CELL},0\n{CELL},3\n{CELL},4\n'), 'cpu')
    assert data.valid.tolist() == [True, False, False, True, True]
    train, test = split_train_test(data, 2, seed=0)
    assert len(train) == 2 and len(test) == 1 and set(train) | set(test) == {0, 3, 4}
    with pytest.raises(ValueError, match='leaves no test rows'):
        split_train_test(data, 3)


def test_read_measured_table_csv_and_json():
    csv = '# preset: tiny\narch,median_ms,p25_ms\nMBK3E6-skip-MBK5E3,0.8,0.7\nskip-skip-skip,0.3,0.2\n'
    data = read_measured_table(io.StringIO(csv), preset='tiny')
    assert data.column == 'median_ms' and data.latency_ms.tolist() == [0.8, 0.3]
    json_text = '[{"arch": "MBK3E6-skip-MBK5E3", "median_ms": 0.8, "round_medians_ms": [0.8]}]'
    assert read_measured_table(io.StringIO(json_text)).space.config.name == 'tiny'
    with pytest.raises(ValueError, match='no latency column'):
        read_measured_table(io.StringIO('arch,speed\nskip-skip-skip,1\n'))

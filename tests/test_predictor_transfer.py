"""The ``transfer`` predictor: pre-training on other devices, adaptation, save/load, CLI and errors."""

from __future__ import annotations

import io
import itertools
import json
import re

import numpy as np
import pytest
import torch

from nni_lightnas.cli import main
from nni_lightnas.latency.datasets import read_latency_csv
from nni_lightnas.latency.graphs import LightNetGraphSpace
from nni_lightnas.latency.predictors import (
    PretrainTable, TransferPredictor, load_latency_predictor, make_predictor, pretrain_source_model,
    read_pretrain_table)
from nni_lightnas.latency.predictors.evaluation import evaluate_predictor
from nni_lightnas.latency.predictors.tree_baseline import TreeBaseline

pytestmark = pytest.mark.usefixtures('one_torch_thread')

SMALL = {'hidden': [32, 16], 'pretrain_epochs': 150}
SOURCES = ('board_a', 'board_b', 'board_c')


def _device_latency(space: LightNetGraphSpace, archs: list[str], compute: float, memory: float) -> np.ndarray:
    """A synthetic board: a mix of a compute cost (MACs) and a memory cost per op, plus an interaction."""
    probs = space.one_hot(archs)
    numeric = torch.einsum('bsc,scf->bsf', probs, space.tables()['numeric']).numpy()
    macs, memory_k = numeric[..., 7], numeric[..., 9]
    per_layer = compute * macs / macs.max() + memory * memory_k / memory_k.max()
    interaction = 0.3 * (per_layer[:, 0] * per_layer[:, 1])
    return 1.0 + per_layer.sum(1) + interaction


@pytest.fixture(scope='module')
def boards():
    """Every architecture of the tiny preset (343) on three source boards and a target board."""
    space = LightNetGraphSpace('tiny')
    archs = [space.format(ops) for ops in itertools.product(*space.candidates)]
    mixes = {'board_a': (1.0, 0.2), 'board_b': (0.3, 1.0), 'board_c': (0.6, 0.6), 'target': (0.8, 0.5)}
    latency = {name: _device_latency(space, archs, *mix) for name, mix in mixes.items()}
    return space, archs, latency


@pytest.fixture(scope='module')
def table(boards):
    space, archs, latency = boards
    return PretrainTable(archs, np.stack([latency[c] for c in SOURCES], axis=1), list(SOURCES), space)


@pytest.fixture(scope='module')
def source_net(table):
    return pretrain_source_model(table, hidden=SMALL['hidden'], epochs=SMALL['pretrain_epochs'], seed=0)


@pytest.fixture(scope='module')
def boards_csv(boards, tmp_path_factory):
    space, archs, latency = boards
    lines = ['arch,index,' + ','.join(SOURCES) + ',target']
    for row, arch in enumerate(archs):
        values = ','.join(f'{latency[c][row]:.5f}' for c in SOURCES + ('target',))
        lines.append(f'{arch},{row},{values}')
    path = tmp_path_factory.mktemp('boards') / 'boards.csv'
    path.write_text('\n'.join(lines) + '\n')
    return path


def _relative_errors(predictor, archs, measured):
    return np.abs(predictor.predict(archs) / measured - 1)


def test_transfer_from_ten_measurements_beats_the_additive_table(boards, source_net):
    space, archs, latency = boards
    rng = np.random.default_rng(0)
    train = rng.choice(len(archs), 10, replace=False)
    test = np.setdiff1d(np.arange(len(archs)), train)
    train_archs, test_archs = [archs[i] for i in train], [archs[i] for i in test]
    transfer = TransferPredictor(space, pretrain=source_net, **SMALL).fit(train_archs, latency['target'][train])
    additive = make_predictor('additive', space).fit(train_archs, latency['target'][train])
    transfer_error = _relative_errors(transfer, test_archs, latency['target'][test])
    additive_error = _relative_errors(additive, test_archs, latency['target'][test])
    assert np.mean(transfer_error <= 0.10) >= 0.95
    assert transfer_error.mean() < 0.5 * additive_error.mean()
    assert transfer.fit_info['source_columns'] == list(SOURCES)
    assert transfer.fit_info['num_members'] == 0  # below finetune_min_train


def test_pretraining_from_a_table_is_seeded(boards, table):
    space, archs, latency = boards
    first, second, other = (TransferPredictor(space, seed=seed, pretrain=table, **SMALL).fit(archs[:12],
                                                                                              latency['target'][:12])
                            for seed in (3, 3, 4))
    assert np.array_equal(first.predict(archs), second.predict(archs))
    assert not np.array_equal(first.predict(archs), other.predict(archs))


def test_fine_tuned_residual_and_save_load_roundtrip(boards, source_net, tmp_path):
    space, archs, latency = boards
    options = {**SMALL, 'finetune_min_train': 30, 'finetune_epochs': 30, 'num_members': 2}
    predictor = TransferPredictor(space, pretrain=source_net, seed=1, **options).fit(archs[::5], latency['target'][::5])
    assert predictor.fit_info['num_members'] in (0, 2)
    assert 0.0 <= predictor.fit_info['residual_scale'] <= 1.0
    loaded = load_latency_predictor(predictor.save(tmp_path / 'transfer'))
    assert loaded.kind == 'transfer'
    np.testing.assert_allclose(loaded.predict(archs), predictor.predict(archs), rtol=1e-6)


def test_predictions_are_differentiable_in_op_probabilities(boards, source_net):
    space, archs, latency = boards
    predictor = TransferPredictor(space, pretrain=source_net, **SMALL).fit(archs[:20], latency['target'][:20])
    probs = torch.full((space.num_slots, space.max_candidates), 1.0 / space.max_candidates, requires_grad=True)
    value = predictor.predict_probs(probs)
    value.backward()
    assert value.dim() == 0 and torch.isfinite(value)
    assert probs.grad is not None and probs.grad.abs().sum() > 0


def test_best_means_transfer_when_pretraining_data_are_given(boards, source_net):
    space = boards[0]
    assert make_predictor('best', space, pretrain=source_net).kind == 'transfer'
    assert make_predictor('best', space).kind == 'ensemble'


def test_transfer_without_pretraining_data_says_what_to_pass(boards):
    space, archs, latency = boards
    with pytest.raises(ValueError, match='needs pretraining data.*--pretrain-data'):
        TransferPredictor(space).fit(archs[:5], latency['target'][:5])


def test_read_pretrain_table_skips_indices_and_the_target(boards_csv):
    table = read_pretrain_table(boards_csv, exclude=['target'])
    assert table.columns == list(SOURCES)
    assert table.latency_ms.shape == (343, 3)


def test_pretrain_table_in_another_encoding_is_refused(boards_csv):
    target = read_latency_csv(boards_csv, 'target')
    cells = 'arch,dev\n|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|,2.5\n'
    with pytest.raises(ValueError, match="nasbench201.*target's architecture encoding"):
        read_pretrain_table(io.StringIO(cells), space=target.space)


def test_pretrain_table_holding_the_target_column_is_refused(boards_csv):
    data = read_latency_csv(boards_csv, 'target')
    table = read_pretrain_table(boards_csv)
    with pytest.raises(ValueError, match="target column 'target'"):
        evaluate_predictor(data, train_size=20, kind='transfer', pretrain=table)


def test_cli_evaluate_transfer_prints_the_json_contract(boards_csv, capsys):
    code = main(['predictor', 'evaluate', '--data', str(boards_csv), '--column', 'target', '--train-size', '20',
                 '--kind', 'transfer', '--pretrain-data', str(boards_csv), '--seed', '0'])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert {'kind', 'n_train', 'n_test', 'acc10', 'acc5', 'mape', 'spearman', 'baseline'} <= set(result)
    assert result['kind'] == 'transfer' and result['n_train'] == 20 and result['n_test'] == 323
    assert result['fit_info']['source_columns'] == list(SOURCES)
    assert result['acc10'] > result['baseline']['acc10']


@pytest.mark.parametrize('argv, message', [
    (['--kind', 'transfer'], '--kind transfer needs --pretrain-data'),
    (['--kind', 'additive', '--pretrain-data', 'PRETRAIN'], "used by --kind transfer or best, not 'additive'"),
    (['--kind', 'transfer', '--pretrain-data', 'PRETRAIN', '--pretrain-columns', 'board_z'],
     r"no columns \['board_z'\]"),
])
def test_cli_errors_name_the_bad_value(boards_csv, capsys, argv, message):
    argv = [str(boards_csv) if value == 'PRETRAIN' else value for value in argv]
    code = main(['predictor', 'evaluate', '--data', str(boards_csv), '--column', 'target', '--train-size', '20',
                 *argv])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)


def test_tree_baseline_fits_log_latency(boards):
    space, archs, latency = boards
    train = np.random.default_rng(0).permutation(len(archs))[:200]
    test = np.setdiff1d(np.arange(len(archs)), train)
    tree = TreeBaseline(space, seed=0).fit([archs[i] for i in train], latency['target'][train])
    error = _relative_errors(tree, [archs[i] for i in test], latency['target'][test])
    assert error.mean() < 0.15
    with pytest.raises(RuntimeError, match='not fitted'):
        TreeBaseline(space).predict(archs[:1])


def test_a_transfer_predictor_is_a_search_latency_model(boards, source_net):
    from nni_lightnas.latency.predictors import PredictorLatencyModel
    space, archs, latency = boards
    predictor = TransferPredictor(space, pretrain=source_net, **SMALL).fit(archs[::17], latency['target'][::17])
    model = PredictorLatencyModel(predictor, num_random=50)
    probs = {label: torch.full((7,), 1 / 7, requires_grad=True) for label in model.labels}
    model.expected_latency(probs).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in probs.values())
    low, high = model.latency_range()
    assert 0 < low < high

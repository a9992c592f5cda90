"""``nni-lightnas predictor evaluate`` / ``fit``: the JSON contract and clear errors."""

from __future__ import annotations

import json
import random

import pytest
import torch

from nni_lightnas.cli import main
from nni_lightnas.latency.graphs import NB201_OPS, NasBench201GraphSpace
from nni_lightnas.latency.predictors import load_predictor

KEYS = {'kind', 'n_train', 'n_test', 'acc10', 'acc5', 'mape', 'spearman', 'baseline'}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def cell_csv(tmp_path_factory):
    """60 NAS-Bench-201 cells with a latency that counts live ops only, an index column, and a gap."""
    space = NasBench201GraphSpace()
    rng = random.Random(0)
    lines = ['arch,nb201_index,dev_ms']
    cost = {'none': 0.0, 'skip_connect': 0.05, 'nor_conv_1x1': 0.5, 'nor_conv_3x3': 1.5, 'avg_pool_3x3': 0.3}
    for index in range(60):
        ops = [rng.choice(NB201_OPS) for _ in range(6)]
        live = space.live_edges(space.one_hot([ops]))[0].tolist()
        latency = 1.0 + sum(cost[op] * alive for op, alive in zip(ops, live))
        value = '' if index == 5 else f'{latency:.4f}'
        lines.append(f'{space.format(ops)},{index},{value}')
    path = tmp_path_factory.mktemp('data') / 'cells.csv'
    path.write_text('\n'.join(lines) + '\n')
    return path


def test_evaluate_prints_one_json_object(cell_csv, capsys):
    code = main(['predictor', 'evaluate', '--data', str(cell_csv), '--column', 'dev_ms', '--train-size', '30',
                 '--kind', 'additive', '--seed', '1'])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    result = json.loads(out[0])
    assert KEYS <= set(result)
    assert result['kind'] == 'additive' and result['n_train'] == 30 and result['n_test'] == 29  # one gap
    assert set(result['baseline']) == {'kind', 'acc10', 'acc5', 'mape', 'spearman'}
    assert result['baseline']['acc10'] == result['acc10']


def test_evaluate_best_beats_additive_on_live_op_latency(cell_csv, capsys):
    assert main(['predictor', 'evaluate', '--data', str(cell_csv), '--column', 'dev_ms', '--train-size', '40',
                 '--kind', 'best']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['kind'] == 'ensemble'
    assert result['mape'] < result['baseline']['mape']
    assert 0 <= result['acc5'] <= result['acc10'] <= 100


def test_fit_writes_a_loadable_directory(tmp_path, capsys):
    rng = random.Random(0)
    ops = ['MBK3E3', 'MBK3E6', 'MBK5E3', 'MBK5E6', 'MBK7E3', 'MBK7E6', 'skip']
    lines = ['# measured on: local', 'arch,median_ms,p25_ms']
    for _ in range(40):
        arch = [rng.choice(ops) for _ in range(3)]
        latency = 0.5 + sum(0.0 if op == 'skip' else 0.1 * int(op[3]) * int(op[5]) / 6 for op in arch)
        lines.append(f'{"-".join(arch)},{latency:.4f},{latency * 0.9:.4f}')
    data = tmp_path / 'measured.csv'
    data.write_text('\n'.join(lines) + '\n')
    assert main(['predictor', 'fit', '--data', str(data), '--preset', 'tiny', '--kind', 'additive',
                 '-o', str(tmp_path / 'predictor')]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['column'] == 'median_ms' and summary['n_train'] == 40
    model = load_predictor(tmp_path / 'predictor')
    assert model.predict('skip-skip-skip') == pytest.approx(0.5, abs=0.02)
    model.check_compatible('tiny')
    # the search's --latency option reads LUT files and predictor directories alike
    from nni_lightnas.latency import latency_model_from_path
    assert latency_model_from_path(tmp_path / 'predictor', space='tiny').predict('skip-skip-skip') == \
        pytest.approx(model.predict('skip-skip-skip'))
    with pytest.raises(ValueError, match='fitted for preset'):
        latency_model_from_path(tmp_path / 'predictor', space='fashion_mnist')


@pytest.mark.parametrize('content, column, message', [
    ('arch,cpu\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1.0\n', 'gpu', "no latency column 'gpu'"),
    ('arch,cpu\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,slow\n', 'cpu', "must be numeric"),
    ('arch,cpu\n|none~0|+|none~0|none~1|+|none~0|none~1|conv_9x9~2|,1.0\n', 'cpu', "unknown op 'conv_9x9'"),
])
def test_bad_csv_gives_one_line_error(tmp_path, capsys, content, column, message):
    path = tmp_path / 'bad.csv'
    path.write_text(content)
    code = main(['predictor', 'evaluate', '--data', str(path), '--column', column, '--train-size', '2'])
    assert code == 2
    error = capsys.readouterr().err
    assert message in error and 'Traceback' not in error


def test_train_size_too_large(cell_csv, capsys):
    assert main(['predictor', 'evaluate', '--data', str(cell_csv), '--column', 'dev_ms', '--train-size', '59']) == 2
    assert 'leaves no test rows' in capsys.readouterr().err

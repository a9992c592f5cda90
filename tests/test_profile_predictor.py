"""``nni-lightnas profile --predictor KIND --samples N``: a few measured networks -> the search's latency model.

The pretraining table is synthetic (no multi-device table of the LightNAS presets is public):
three "boards" whose latency is a known function of a network's parameters and MACs, over every
architecture of the ``tiny`` preset (7^3 = 343). The accuracy test measures on
``ParamsDevice`` (a deterministic latency from the ONNX model's weights); the CLI test measures
on this machine's ONNX Runtime and checks only what timing noise cannot break.
"""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pytest
import torch

from latency_fakes import ParamsDevice
from nni_lightnas.cli import main
from nni_lightnas.latency.graphs import NUMERIC_FEATURES, LightNetGraphSpace
from nni_lightnas.latency.loading import latency_model_from_path
from nni_lightnas.latency.whole_network import measure_archs
from nni_lightnas.latency.predictors import PredictorLatencyModel
from nni_lightnas.latency.predictors.device_fit import DevicePredictorConfig, fit_device_predictor
from nni_lightnas.latency.predictors.expected_accuracy import expected_accuracy, load_validation
from nni_lightnas.latency.predictors.pretrain import shipped_pretrain_table
from nni_lightnas.latency.predictors.spread import architecture_macs, spread_architectures
from nni_lightnas.search_spaces import OP_NAMES

pytestmark = pytest.mark.usefixtures('one_torch_thread')
SMALL = {'hidden': [32, 16], 'pretrain_epochs': 150}  # a smaller pre-trained network: seconds, not tens


@pytest.fixture(scope='module')
def pretrain_csv(tmp_path_factory):
    """Every tiny architecture on three synthetic boards: a + b * params + c * MACs (ms)."""
    space = LightNetGraphSpace('tiny')
    archs = ['-'.join(ops) for ops in itertools.product(OP_NAMES, repeat=3)]
    probs = space.one_hot(archs)
    numeric = torch.einsum('bsc,scf->bf', probs, space.tables()['numeric']).numpy()
    params_k, macs_m = numeric[:, NUMERIC_FEATURES.index('params_k')], numeric[:, NUMERIC_FEATURES.index('macs_m')]
    boards = {'board_a': (0.2, 0.010, 0.05), 'board_b': (0.5, 0.004, 0.20), 'board_c': (0.1, 0.020, 0.02)}
    lines = ['arch,' + ','.join(boards)]
    for index, arch in enumerate(archs):
        values = [a + b * params_k[index] + c * macs_m[index] for a, b, c in boards.values()]
        lines.append(arch + ',' + ','.join(f'{v:.5f}' for v in values))
    path = tmp_path_factory.mktemp('pretrain') / 'tiny_boards.csv'
    path.write_text('\n'.join(lines) + '\n')
    return path


# ------------------------------------------------------------------------ spread networks
def test_spread_networks_cover_the_cost_range_in_order():
    space = LightNetGraphSpace('tiny')
    archs = spread_architectures(space, 8, seed=0)
    macs = architecture_macs(space, space.indices(archs))
    assert len(set(archs)) == 8
    assert list(macs) == sorted(macs)
    everything = architecture_macs(space, space.indices(['-'.join(o) for o in itertools.product(OP_NAMES, repeat=3)]))
    assert macs[0] == pytest.approx(everything.min()) and macs[-1] == pytest.approx(everything.max())
    assert spread_architectures(space, 8, seed=0) == archs  # seeded


@pytest.mark.parametrize('num_archs, match', [(1, 'at least 2'), (True, 'at least 2'), (2.5, 'at least 2'),
                                              (400, 'more than the 343 distinct architectures')])
def test_spread_refuses_impossible_counts(num_archs, match):
    with pytest.raises(ValueError, match=match):
        spread_architectures(LightNetGraphSpace('tiny'), num_archs)


# ------------------------------------------------------------------ expected accuracy
def test_expected_accuracy_picks_the_largest_validated_size_not_above_n():
    at_20 = expected_accuracy('transfer', 20)
    assert at_20['validated_n_train'] == 20 and not at_20['below_validated']
    assert at_20['worst_acc10'] <= at_20['mean_acc10'] and at_20['worst_spearman'] <= at_20['mean_spearman']
    assert expected_accuracy('transfer', 99)['validated_n_train'] == 50
    few = expected_accuracy('transfer', 5)
    assert few['validated_n_train'] == 10 and few['below_validated']
    assert expected_accuracy('gnn', 100) is None
    with pytest.raises(ValueError, match='num_train must be >= 1, got num_train=0'):
        expected_accuracy('transfer', 0)


def test_packaged_validation_equals_the_docs_benchmark():
    from conftest import REPO_ROOT
    docs = REPO_ROOT / 'docs' / 'predictor_transfer.json'
    assert load_validation() == load_validation(docs) | {'source': 'docs/predictor_transfer.json'}, (
        'nni_lightnas/latency/predictors/transfer_validation.json is stale: rewrite it with '
        'summarize_validation(json.load(open("docs/predictor_transfer.json")))')


# ------------------------------------------------------------------ pretraining default
def test_no_shipped_table_for_a_lightnas_preset_says_what_to_pass(tmp_path):
    (tmp_path / 'cells.csv').write_text('arch,dev\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1.0\n')
    with pytest.raises(ValueError, match=r"preset 'tiny'.*cells.csv \(nasbench201\).*--pretrain-data CSV"):
        shipped_pretrain_table(LightNetGraphSpace('tiny'), data_dirs=[tmp_path])


def test_shipped_table_in_the_space_encoding_is_the_default(tmp_path, pretrain_csv):
    (tmp_path / 'tiny_boards.csv').write_text(pretrain_csv.read_text())
    table = shipped_pretrain_table(LightNetGraphSpace('tiny'), data_dirs=[tmp_path])
    assert table.columns == ['board_a', 'board_b', 'board_c'] and len(table) == 343


# ------------------------------------------------------------- the library: fit on a device
def test_transfer_from_ten_measured_networks_predicts_unmeasured_ones(pretrain_csv):
    device = ParamsDevice(call_ms=0.3, linear=2e-5, quadratic=0.0)
    config = DevicePredictorConfig(preset='tiny', kind='transfer', num_samples=10, batch=1,
                                   pretrain_data=str(pretrain_csv), options=SMALL)
    result = fit_device_predictor(config, device)
    assert len(result.measured) == 10 and (result.measured['median_ms'] > 0).all()
    assert result.profile['pretrain_columns'] == ['board_a', 'board_b', 'board_c']
    assert result.profile['expected_accuracy']['validated_n_train'] == 10
    unseen = [arch for arch in spread_architectures(LightNetGraphSpace('tiny'), 24, seed=7)
              if arch not in set(result.measured['arch'])][:8]
    measured = np.array([row['median_ms'] for row in measure_archs('tiny', unseen, device, batch=1)])
    predicted = np.array([result.model.predict(arch) for arch in unseen])
    assert np.abs(predicted / measured - 1).max() < 0.10, (predicted, measured)


def test_the_model_is_differentiable_and_ranges_over_the_measured(pretrain_csv):
    config = DevicePredictorConfig(preset='tiny', kind='transfer', num_samples=6, batch=1,
                                   pretrain_data=str(pretrain_csv), options=SMALL)
    model = fit_device_predictor(config, ParamsDevice(call_ms=0.3, linear=2e-5, quadratic=0.0)).model
    assert isinstance(model, PredictorLatencyModel)
    probs = {label: torch.full((7,), 1 / 7, requires_grad=True) for label in model.labels}
    model.expected_latency(probs).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in probs.values())


@pytest.mark.parametrize('kwargs, match', [
    ({'num_samples': 1}, 'num_samples must be an integer >= 2'),
    ({'num_samples': 20.0}, 'num_samples must be an integer >= 2'),
    ({'kind': 'forest'}, "unknown predictor kind 'forest'; accepted: additive, .*transfer, best"),
    ({'kind': 'additive', 'pretrain_data': 'x.csv'}, 'pretrain_data is used by kind transfer or best'),
])
def test_bad_config_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DevicePredictorConfig(**kwargs)


# ------------------------------------------------------------------------------- the CLI
def test_cli_profiles_on_the_local_device_and_search_uses_the_model(tmp_path, pretrain_csv, capsys):
    from nni_lightnas.search import SearchConfig, run_search
    output = tmp_path / 'predictor'
    assert main(['profile', '--preset', 'tiny', '--predictor', 'transfer', '--samples', '5', '--batch', '1',
                 '--runs', '5', '--warmup', '1', '--pretrain-data', str(pretrain_csv), '-o', str(output)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith('expected accuracy on an unseen device (transfer, N=10, leave-one-device-out '
                               'over 13 devices (fewer measurements than validated')
    printed = json.loads(lines[-1])
    assert printed['kind'] == 'transfer' and printed['samples'] == 5 and printed['device'] == 'local'
    assert printed['expected_accuracy']['mean_acc10'] == expected_accuracy('transfer', 10)['mean_acc10']
    assert {'predictor.json', 'weights.pt', 'measured.csv', 'profile.json'} <= {p.name for p in output.iterdir()}
    kept = json.loads((output / 'profile.json').read_text())
    assert kept['expected_accuracy'] == printed['expected_accuracy'] and kept['num_samples'] == 5
    model = latency_model_from_path(output, space='tiny')
    low, high = model.latency_range()
    assert 0 < low < high and math.isfinite(high)
    assert 0 < model.predict('MBK3E3-skip-MBK7E6') < 10 * high
    # a tiny search lands on a target inside the predictor's range
    summary = run_search(SearchConfig(preset='tiny', target_ms=(low + high) / 2, epochs=2, warmup_epochs=1,
                                      batch_size=32, train_limit=128), model)
    assert summary['predicted_ms'] == pytest.approx(model.predict(summary['arch']), rel=1e-5)
    assert low <= summary['predicted_ms'] <= high


@pytest.mark.parametrize('argv, message', [
    (['--predictor', 'transfer', '--samples', '1'], '--samples must be an integer >= 2.*got --samples 1'),
    (['--predictor', 'transfer', '--samples', 'many'], "invalid int value: 'many'"),
    (['--predictor', 'transfer', '--samples', '5000'], 'num_archs=5000 is more than the 343 distinct'),
    (['--predictor', 'transfer', '--samples', '5'], r"no shipped multi-device latency table .*preset 'tiny'"),
    (['--samples', '20'], '--samples only apply with --predictor KIND'),
    (['--predictor', 'ensemble', '--correct', 'bbssp'], '--correct bbssp corrects a LUT'),
])
def test_cli_bad_predictor_options_give_one_line_errors(tmp_path, pretrain_csv, capsys, argv, message):
    if '5000' in argv:
        argv = argv + ['--pretrain-data', str(pretrain_csv)]
    try:
        code = main(['profile', '--preset', 'tiny', '-o', str(tmp_path / 'out'), *argv])
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    assert code == 2
    assert any(re.search(message, line) for line in capsys.readouterr().err.splitlines())
    assert not (tmp_path / 'out').exists()  # refused before anything was measured or written

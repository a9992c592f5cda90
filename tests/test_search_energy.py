"""``nni-lightnas search --target-energy-mj`` and ``SearchConfig(target_energy_mj=...)``: energy as a budget.

The LUT is the synthetic one of ``test_energy_target`` (known latency and energy per op of the
``tiny`` preset), saved with the metadata of a profiled table so ``--latency FILE`` loads it.
The supernet trains on a small slice of Fashion-MNIST, as the other search tests do.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from nni_lightnas.cli import main
from nni_lightnas.latency.lut import LUT_FORMAT, LatencyLUT
from nni_lightnas.search import SearchConfig, energy_model_of
from nni_lightnas.search_spaces import resolve_config
from test_energy_target import energy_lut

pytestmark = pytest.mark.usefixtures('one_torch_thread')
TINY_SEARCH = ['--preset', 'tiny', '--epochs', '2', '--warmup-epochs', '1', '--batch-size', '32',
               '--train-limit', '128']


def _saved(lut: LatencyLUT, path) -> str:
    config = resolve_config('tiny')
    metadata = {'format': LUT_FORMAT, 'preset': 'tiny', 'space_fingerprint': config.fingerprint(),
                'input_size': config.input_size, 'in_chans': config.in_chans, 'batch': 1,
                'device': 'simulated', 'threads': 1}
    table = lut.table.copy()
    table['median_ms'] = table['latency_ms']  # as measured: one median per row
    return str(LatencyLUT(table, metadata).save(path))


@pytest.fixture(scope='module')
def energy_csv(tmp_path_factory):
    return _saved(energy_lut(), tmp_path_factory.mktemp('lut') / 'energy.csv')


def test_cli_energy_only_search_lands_on_the_energy_target(energy_csv, tmp_path, capsys):
    energy = energy_lut().energy_view()
    low, high = energy.latency_range()
    target_mj = round(low + 0.4 * (high - low), 3)
    output = tmp_path / 'search'
    assert main(['search', *TINY_SEARCH, '--latency', energy_csv, '--target-energy-mj', str(target_mj),
                 '--output', str(output)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    summary = json.loads((output / 'summary.json').read_text())
    for result in (printed, summary):
        assert result['target_energy_mj'] == target_mj and result['target_ms'] is None
        assert result['predicted_energy_mj'] == pytest.approx(energy.predict(result['arch'].split('-')))
        assert abs(result['energy_relative_error']) <= 0.01  # landed within landing_tolerance
        assert result['energy_range_mj'] == pytest.approx([low, high])
    # the latency of the export is still reported, from the latency column
    assert summary['predicted_ms'] == pytest.approx(energy_lut().predict(summary['arch'].split('-')))


def test_cli_both_budgets_land_on_latency_and_report_energy(energy_csv, tmp_path, capsys):
    lut = energy_lut()
    fastest, slowest = lut.latency_range()
    target_ms = round(fastest + 0.4 * (slowest - fastest), 3)
    low, high = lut.energy_view().latency_range()
    target_mj = round(low + 0.4 * (high - low), 3)
    assert main(['search', *TINY_SEARCH, '--latency', energy_csv, '--target-ms', str(target_ms),
                 '--target-energy-mj', str(target_mj), '--output', str(tmp_path / 'both')]) == 0
    summary = json.loads((tmp_path / 'both' / 'summary.json').read_text())
    assert summary['target_ms'] == target_ms and summary['target_energy_mj'] == target_mj
    assert abs(summary['relative_error']) <= 0.01  # the export lands on the latency target
    assert summary['predicted_energy_mj'] == pytest.approx(lut.energy_view().predict(summary['arch'].split('-')))
    assert 'energy_lambda' in summary and summary['config']['target_energy_mj'] == target_mj


def test_cli_refuses_an_energy_target_without_an_energy_column(tmp_path, capsys):
    plain = LatencyLUT(energy_lut().table.drop(columns=['energy_mj']), {})
    path = _saved(plain, tmp_path / 'plain.csv')
    output = tmp_path / 'search'
    assert main(['search', *TINY_SEARCH, '--latency', path, '--target-energy-mj', '5',
                 '--output', str(output)]) == 2
    error = capsys.readouterr().err
    assert 'target_energy_mj=5.0 needs a latency model with an energy_mj column' in error
    assert 'rows have no energy_mj' in error or 'the LUT has no energy_mj column' in error  # saved empty, or absent
    assert not output.exists()  # refused before the search started


def test_cli_refuses_a_search_without_any_budget(energy_csv, tmp_path, capsys):
    assert main(['search', *TINY_SEARCH, '--latency', energy_csv, '--output', str(tmp_path / 's')]) == 2
    assert 'needs a budget: --target-ms, --target-quantile or --target-energy-mj' in capsys.readouterr().err


def test_a_predictor_has_no_energy():
    from nni_lightnas.latency.graphs import LightNetGraphSpace
    from nni_lightnas.latency.predictors import PredictorLatencyModel, make_predictor
    predictor = make_predictor('additive', LightNetGraphSpace('tiny'))
    predictor.fit(['skip-skip-skip', 'MBK3E3-skip-skip', 'skip-MBK3E3-skip'], [1.0, 2.0, 1.5])
    with pytest.raises(ValueError, match='target_energy_mj=4.0 needs .* PredictorLatencyModel has none'):
        energy_model_of(PredictorLatencyModel(predictor), 4.0)
    lut = LatencyLUT(pd.DataFrame({'kind': ['fixed'], 'layer': ['stem'], 'op': ['stem'], 'latency_ms': [1.0],
                                   'energy_mj': [3.0]}), {})
    assert energy_model_of(lut, 4.0).predict([]) == pytest.approx(3.0)


@pytest.mark.parametrize('kwargs, match', [
    ({'target_ms': None}, 'needs a budget: target_ms, target_energy_mj or both; got neither'),
    ({'target_energy_mj': -2.0}, 'target_energy_mj must be a positive number of mj, got target_energy_mj=-2.0'),
    ({'target_ms': 0}, 'target_ms must be a positive number of ms, got target_ms=0'),
    ({'target_energy_mj': True}, 'target_energy_mj must be a positive number'),
])
def test_search_config_refuses_bad_budgets(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SearchConfig(**kwargs)

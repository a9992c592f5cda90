"""The pipeline's energy target (``target_energy_mj``) beside its latency target: config, CLI, search, rows, report.

The LUT is the synthetic one of ``test_energy_target`` (latency and energy per op of the ``tiny``
preset); the device, stage 2 and the training are the stand-ins of ``test_pipeline_closed_loop``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nni_lightnas import pipeline
from nni_lightnas.pipeline_config import PipelineConfig, PipelineConfigError
from test_pipeline_closed_loop import SETTINGS, _stand_in

pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture
def stand_ins(monkeypatch):
    return _stand_in(monkeypatch)
def _energy_profile(config: PipelineConfig, directory: Path) -> dict[str, Any]:
    """The synthetic LUT with latency and energy columns of test_energy_target, as the profile's table."""
    from test_search_energy import _saved

    from test_energy_target import energy_lut
    path = _saved(energy_lut(), directory / 'lut.csv')
    return {'lut': path, 'plain_lut': path, 'range_ms': list(energy_lut().latency_range())}


def test_the_energy_target_reaches_the_search_and_the_report(stand_ins, tmp_path):
    from test_energy_target import energy_lut
    stand_ins.setattr(pipeline, '_profile', _energy_profile)
    low, high = energy_lut().energy_view().latency_range()
    target_mj = round(low + 0.6 * (high - low), 3)
    config = PipelineConfig.from_dict({**SETTINGS, 'run_dir': str(tmp_path / 'run'), 'target_energy_mj': target_mj,
                                       'measure': {**SETTINGS['measure'], 'max_rounds': 1}})
    result = pipeline.run_pipeline(config, progress=lambda line: None)
    row, = result['rows']
    summary = json.loads((Path(row['run_dir']) / 'search' / 'summary.json').read_text())
    assert summary['config']['target_energy_mj'] == target_mj and summary['target_energy_mj'] == target_mj
    assert row['target_energy_mj'] == target_mj
    assert row['predicted_energy_mj'] == pytest.approx(energy_lut().energy_view().predict(row['arch']))
    import pandas as pd
    final = pd.read_csv(tmp_path / 'run' / 'report' / 'final.csv')
    assert final['target_energy_mj'].tolist() == [target_mj]
    assert (tmp_path / 'run' / 'report' / 'energy.png').is_file()


def test_an_energy_target_without_an_energy_column_is_refused_before_the_search(stand_ins, tmp_path):
    config = PipelineConfig.from_dict({**SETTINGS, 'run_dir': str(tmp_path / 'run'), 'target_energy_mj': 2.0})
    with pytest.raises(PipelineConfigError, match=r'target_energy_mj: .*energy_mj column'):
        pipeline.run_pipeline(config, progress=lambda line: None)
    assert not list((tmp_path / 'run').glob('T*ms/search'))


@pytest.mark.parametrize('value', [0, -1.0, 'much'])
def test_a_bad_energy_target_is_refused(value):
    with pytest.raises(PipelineConfigError, match=f'target_energy_mj: {value!r}'):
        PipelineConfig.from_dict({'preset': 'tiny', 'target_energy_mj': value})


def test_the_cli_passes_the_energy_target(stand_ins, tmp_path, capsys):
    from nni_lightnas.cli import main
    config = tmp_path / 'pipeline.yml'
    config.write_text(f'run_dir: {tmp_path / "run"}\npreset: tiny\n')
    seen = {}
    stand_ins.setattr(pipeline, 'run_pipeline', lambda config, **kwargs: seen.setdefault('config', config) and 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(['pipeline', '--config', str(config), '--target-energy-mj', '3.5'])
    assert seen['config'].target_energy_mj == 3.5

"""The closed loop after export: a mis-calibrated latency model is corrected by measuring the final net.

The device is deterministic (:class:`ParamsDevice`: latency a formula of the ONNX model's
weights), the profile, the search, the re-landing, the export and the measurements are real;
stage 2 (keeps the LUT's widths) and the training (saves the untrained weights) are stand-ins,
since neither changes what the loop decides. The profile's calibrated LUT is scaled 15% low, so
the first final net measures about 18% over its target.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from latency_fakes import ParamsDevice
from nni_lightnas import pipeline, pipeline_stages
from nni_lightnas.closed_loop import LandingRound, chosen_round, landing_verdict
from nni_lightnas.latency.calibration import correct_on_landings
from nni_lightnas.latency.lut import LatencyLUT
from nni_lightnas.pipeline_config import PipelineConfig, PipelineConfigError

pytestmark = pytest.mark.usefixtures('one_torch_thread')

SETTINGS = {'preset': 'tiny', 'target_quantiles': [0.5],
            'profile': {'runs': 3, 'warmup': 0, 'calibrate': 6},
            'search': {'epochs': 2, 'warmup_epochs': 1, 'train_limit': 256, 'batch_size': 64},
            'measure': {'runs': 3, 'rounds': 1}}
#: How far the mis-calibrated LUT predicts below the device.
SCALED = 0.85


def _device(config: PipelineConfig) -> ParamsDevice:
    return ParamsDevice(call_ms=0.05, linear=1e-4, quadratic=1e-10, num_runs=3, num_warmup_runs=0)


def _miscalibrated_profile(real_profile):
    def profile(config: PipelineConfig, directory: Path) -> dict[str, Any]:
        outputs = real_profile(config, directory)
        lut = LatencyLUT.load(outputs['lut'], space=config.preset)
        fit = {key: value for key, value in lut.metadata['calibration'].items() if key not in ('scale', 'offset_ms')}
        lut.with_calibration(SCALED * lut.scale, SCALED * lut.offset_ms, **fit).save(outputs['lut'])
        return outputs
    return profile


def _evolve(config, target_ms, arch, batch, directory):  # stage 2 keeps the LUT's widths
    return {'widths': {}, 'latency_ms': None, 'score': None, 'in_band': None, 'latency_model': 'none',
            'num_trials': 0}


def _train(config, arch, widths, directory, inputs_hash=''):  # latency does not depend on the weights
    import torch
    net = pipeline_stages._build_net(config, arch, widths)
    torch.save(net.state_dict(), directory / 'model.pt')
    return {'weights': str(directory / 'model.pt'), 'test_acc': 0.1, 'test_loss': 2.3,
            'params_m': sum(p.numel() for p in net.parameters()) / 1e6, 'flops_m': None, 'resumed_after_epochs': 0}


def _stand_in(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setattr(pipeline_stages, '_make_device', _device)  # the stages make the device
    monkeypatch.setattr(pipeline, '_profile', _miscalibrated_profile(pipeline._profile))
    monkeypatch.setattr(pipeline, '_evolve', _evolve)
    monkeypatch.setattr(pipeline, '_train', _train)
    return monkeypatch


@pytest.fixture
def stand_ins(monkeypatch):
    return _stand_in(monkeypatch)


@pytest.fixture(scope='module')
def corrected_run(tmp_path_factory):
    """One pipeline run with the mis-calibrated LUT (module-wide: the search is the slow part)."""
    with pytest.MonkeyPatch.context() as patch:
        _stand_in(patch)
        config = PipelineConfig.from_dict({**SETTINGS, 'run_dir': str(tmp_path_factory.mktemp('loop') / 'run')})
        result = pipeline.run_pipeline(config, progress=lambda line: None)
    return config, result


def test_the_loop_corrects_a_model_15_percent_low_to_within_tolerance(corrected_run):
    config, result = corrected_run
    row, = result['rows']
    rounds = row['landing_rounds']
    assert rounds[0]['relative_error'] > 0.1  # the first net measured well over its target
    assert abs(rounds[0]['predicted_ms'] / row['target_ms'] - 1) <= 0.011  # though the model said it landed
    assert row['landing_verdict'] == 'landed' and row['rounds'] == len(rounds) and 2 <= len(rounds) <= 3
    assert abs(rounds[-1]['relative_error']) <= 0.02
    assert abs(row['measured_ms'] / row['target_ms'] - 1) <= 0.02 and row['chosen_round'] == len(rounds)
    assert rounds[1]['landing_factor'] == pytest.approx(1 / SCALED, rel=0.05)
    assert rounds[1]['arch'] != rounds[0]['arch']  # re-landed on a lighter net
    saved = json.loads((Path(config.run_dir) / 'pipeline.json').read_text())
    target, = saved['landing']
    assert [r['measured_ms'] for r in target['rounds']] == pytest.approx([r['measured_ms'] for r in rounds])
    assert target['verdict'] == 'landed' and target['rounds'][0]['target_ms'] == row['target_ms']
    base = Path(row['run_dir'])
    assert (base / 'round2' / 'land' / 'lut_corrected.csv').is_file()
    assert (base / 'round2' / 'export' / 'measure.json').is_file()


def test_the_report_shows_every_round(corrected_run):
    config, result = corrected_run
    page = Path(result['report']).read_text()
    assert 'id="landing-rounds"' in page
    import pandas as pd
    table = pd.read_csv(Path(config.run_dir) / 'report' / 'landing_rounds.csv')
    row, = result['rows']
    assert len(table) == row['rounds'] and list(table['round']) == list(range(1, row['rounds'] + 1))
    assert {'target_ms', 'predicted_ms', 'measured_ms', 'relative_error_pct'} <= set(table.columns)
    final = pd.read_csv(Path(config.run_dir) / 'report' / 'final.csv')
    assert final['rounds'].tolist() == [row['rounds']]


def test_a_rerun_redoes_no_finished_round(corrected_run, stand_ins):
    config, result = corrected_run
    markers = {path: path.stat().st_mtime_ns for path in Path(config.run_dir).glob('**/stage.json')}
    again = pipeline.run_pipeline(config, progress=lambda line: None)
    assert again['executed'] == []
    assert again['rows'][0]['landing_rounds'] == result['rows'][0]['landing_rounds']
    assert {path: path.stat().st_mtime_ns for path in markers} == markers


def test_a_loop_that_cannot_converge_stops_at_max_rounds_and_says_so(corrected_run, stand_ins, tmp_path, caplog):
    config, _ = corrected_run
    run_dir = tmp_path / 'run'
    shutil.copytree(config.run_dir, run_dir)
    for folder in run_dir.glob('T*ms/round*'):
        shutil.rmtree(folder)
    real_export = pipeline._export_and_measure

    def always_twice_the_target(config, arch, widths, weights, lut, directory):  # the net never responds
        measured = real_export(config, arch, widths, weights, lut, directory)
        twice = 2 * float(directory.parent.parent.name[1:-2]) if directory.parent.name.startswith('round') else None
        return {**measured, **({'median_ms': twice, 'p25_ms': twice, 'p75_ms': twice} if twice else {})}

    stand_ins.setattr(pipeline, '_export_and_measure', always_twice_the_target)
    stuck = PipelineConfig.from_dict({**SETTINGS, 'run_dir': str(run_dir),
                                      'measure': {**SETTINGS['measure'], 'max_rounds': 2}})
    lines: list[str] = []
    with caplog.at_level(logging.WARNING, logger='nni_lightnas.pipeline'):
        result = pipeline.run_pipeline(stuck, progress=lines.append)
    row, = result['rows']
    assert row['landing_verdict'] == 'max_rounds' and row['rounds'] == 2
    assert row['landing_rounds'][1]['relative_error'] == pytest.approx(1.0)
    assert row['chosen_round'] == 1  # the nearer of the two ships
    assert any('measure.max_rounds=2' in record.getMessage() for record in caplog.records)
    assert any(line.startswith('[stop]') and 'max_rounds' in line for line in lines)
    assert not any(line.startswith('[run]  search') or line.startswith('[run]  profile') for line in lines)
    landing, = json.loads((run_dir / 'pipeline.json').read_text())['landing']
    assert landing['verdict'] == 'max_rounds' and len(landing['rounds']) == 2


def test_correct_on_landings_fits_one_factor_on_every_point():
    import pandas as pd
    table = pd.DataFrame({'kind': ['op'] * 3, 'layer': ['layer00'] * 3, 'op': ['skip', 'MBK3E3', 'MBK5E3'],
                          'latency_ms': [1.0, 2.0, 4.0]})
    lut = LatencyLUT(table, {}).with_calibration(2.0, 0.5)
    corrected = correct_on_landings(lut, ['MBK3E3', 'MBK5E3'], [4.5 * 1.2, 8.5 * 1.2])
    assert corrected.metadata['calibration']['landing_factor'] == pytest.approx(1.2)
    assert corrected.predict('skip') == pytest.approx(2.5 * 1.2)
    again = correct_on_landings(corrected, ['MBK3E3'], [corrected.predict('MBK3E3')])  # never stacked twice
    assert again.metadata['calibration']['landing_factor'] == pytest.approx(1.0)
    with pytest.raises(ValueError, match='measured_ms must be positive'):
        correct_on_landings(lut, ['MBK3E3'], [0.0])
    with pytest.raises(ValueError, match='equally long'):
        correct_on_landings(lut, ['MBK3E3'], [])


@pytest.mark.parametrize('measured, max_rounds, expected', [(1.019, 3, 'landed'), (0.981, 1, 'landed'),
                                                            (1.03, 3, 'continue'), (0.9, 1, 'max_rounds')])
def test_landing_verdict(measured, max_rounds, expected):
    first = LandingRound(round=1, arch='a', target_ms=1.0, predicted_ms=1.0, measured_ms=measured)
    assert landing_verdict([first], tolerance=0.02, max_rounds=max_rounds) == expected
    assert chosen_round([first]) is first


@pytest.mark.parametrize('measure, match', [({'landing_tolerance': 0}, 'measure.landing_tolerance: 0'),
                                            ({'max_rounds': 0}, 'measure.max_rounds: 0')])
def test_bad_loop_settings_are_refused(measure, match):
    with pytest.raises(PipelineConfigError, match=match):
        PipelineConfig.from_dict({'preset': 'tiny', 'measure': measure})

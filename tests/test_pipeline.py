"""The main job end to end on a Fashion-MNIST slice: run, resume after a kill, and the HTML report."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY_CONFIG = """
run_dir: {run_dir}
preset: tiny
target_quantiles: [0.3, 0.6]
profile: {{runs: 10, warmup: 2, calibrate: 6}}
search: {{epochs: 2, warmup_epochs: 1, train_limit: 512, batch_size: 64}}
evolve: {{max_trials: 2, population_size: 2, sample_size: 1, batches: 4, last: 2, data_limit: 256}}
train: {{epochs: 1, train_limit: 512, test_limit: 512, batch_size: 64}}
measure: {{runs: 10, rounds: 1, max_rounds: 1}}
"""


def _pipeline(config: Path, *extra: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'nni_lightnas', 'pipeline', '--config', str(config), *extra],
                          capture_output=True, text=True, timeout=900, **kwargs)


def _markers(run_dir: Path) -> dict[str, float]:
    return {str(path.relative_to(run_dir)): path.stat().st_mtime_ns for path in run_dir.glob('**/stage.json')}


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp('pipeline') / 'run'
    config = run_dir.parent / 'pipeline.yml'
    config.write_text(TINY_CONFIG.format(run_dir=run_dir))
    completed = _pipeline(config)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return run_dir, config, completed.stdout


def test_pipeline_runs_every_stage_and_writes_artifacts(finished_run):
    run_dir, _, stdout = finished_run
    for stage in ('profile', 'search', 'evolve', 'train', 'export', 'report'):
        assert f'[done] {stage}' in stdout
    target_dir = next(run_dir.glob('T*ms'))
    summary = json.loads((target_dir / 'search' / 'summary.json').read_text())
    assert summary['epochs'] == 2 and len(summary['arch'].split('-')) == 3
    measured = json.loads((target_dir / 'export' / 'measure.json').read_text())
    assert measured['median_ms'] > 0 and measured['batch'] == 32
    assert (target_dir / 'export' / 'model.onnx').stat().st_size > 1000
    metrics = json.loads((target_dir / 'train' / 'metrics.json').read_text())
    assert 0 <= metrics['test_acc'] <= 1 and metrics['params_m'] > 0
    import pandas as pd
    assert 'report:' in stdout and 'measured_ms' in stdout  # the final table is printed
    assert (run_dir / 'report' / 'report.html').is_file() and (run_dir / 'report' / 'final.csv').is_file()
    # the final table tells the argmax from the export, and whether the landing step chose it
    final = pd.read_csv(run_dir / 'report' / 'final.csv')
    for row, (_, line) in zip(sorted((json.loads((d / 'search' / 'summary.json').read_text())
                                      for d in run_dir.glob('T*ms')), key=lambda s: s['target_ms']),
                              final.sort_values('target_ms').iterrows()):
        assert line['argmax_ms'] == pytest.approx(row['argmax_ms'])
        assert line['exported_ms'] == pytest.approx(row['exported_ms']) and row['exported_ms'] == row['predicted_ms']
        assert bool(line['landed']) == row['landed'] == (row['arch'] != row['argmax_arch'])
        assert 0 < line['alpha_entropy_pct'] <= 100.0001
    # the profile stage calibrated the LUT on 6 measured random nets, and the search used it
    from nni_lightnas.latency.lut import LatencyLUT
    calibration = pd.read_csv(run_dir / 'profile' / 'calibration.csv')
    assert len(calibration) == 6 and (calibration['measured_ms'] > 0).all()
    calibrated = LatencyLUT.load(run_dir / 'profile' / 'lut_calibrated.csv', space='tiny')
    assert calibrated.metadata['calibration']['num_archs'] == 6
    assert summary['predicted_ms'] == pytest.approx(calibrated.predict(summary['arch']))
    # the two targets shared one warmed-up supernet: the first search wrote it, the second started from it
    summaries = [json.loads((directory / 'search' / 'summary.json').read_text())
                 for directory in sorted(run_dir.glob('T*ms'), key=lambda d: float(d.name[1:-2]))]
    assert [s['warmup_reused'] for s in summaries] == [False, True]
    assert len(list((run_dir / 'supernet').glob('warmup-*.ckpt'))) == 1
    assert all(len(pd.read_csv(d / 'search' / 'history.csv')) == 2 for d in run_dir.glob('T*ms'))


def test_rerun_skips_everything_and_a_killed_run_resumes_at_its_stage(finished_run):
    run_dir, config, _ = finished_run
    before = _markers(run_dir)
    again = _pipeline(config)
    assert again.returncode == 0
    assert '[run]' not in again.stdout and again.stdout.count('[skip]') == 2 + 4 * 2  # 2 targets
    assert _markers(run_dir) == before

    # Rerun from 'train', kill it once training has started, then resume.
    process = subprocess.Popen([sys.executable, '-m', 'nni_lightnas', 'pipeline', '--config', str(config),
                                '--from', 'train'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    train_marker = next(run_dir.glob('T*ms')) / 'train' / 'stage.json'
    deadline = time.time() + 300
    while train_marker.exists() and time.time() < deadline:  # the forced stage drops its marker first
        time.sleep(0.2)
    assert not train_marker.exists()
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = _pipeline(config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for stage in ('profile', 'search', 'evolve'):
        assert f'[skip] {stage}' in resumed.stdout
    for stage in ('train', 'export', 'report'):
        assert f'[run]  {stage}' in resumed.stdout
    after = _markers(run_dir)
    finished_before = [key for key in before if key.split('/')[-2] in ('profile', 'search', 'evolve')]
    assert all(after[key] == before[key] for key in finished_before)


def _chromium() -> str | None:
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_chromium() is None, reason='chromium not installed (scripts/setup.sh --test installs it)')
def test_report_renders_in_headless_chromium(finished_run, tmp_path):
    import matplotlib.image
    run_dir, _, _ = finished_run
    report = run_dir / 'report' / 'report.html'
    flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync',
             f'--user-data-dir={tmp_path / "profile"}']
    screenshot = tmp_path / 'report.png'
    subprocess.run([_chromium(), *flags, f'--screenshot={screenshot}', '--window-size=1200,2400',
                    report.as_uri()], capture_output=True, timeout=120, env={**os.environ, 'HOME': str(tmp_path)})
    assert screenshot.is_file() and screenshot.stat().st_size > 20_000
    pixels = matplotlib.image.imread(str(screenshot))
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1100
    non_white = (pixels[..., :3] < 0.95).any(axis=-1).mean()
    assert non_white > 0.05  # figures and table drew something, not a blank page
    dom = subprocess.run([_chromium(), *flags, '--dump-dom', report.as_uri()], capture_output=True, text=True,
                         timeout=120, env={**os.environ, 'HOME': str(tmp_path)}).stdout
    assert dom.count('<img') >= 4 and 'data:image/png;base64,' in dom
    assert 'id="final-table"' in dom and 'measured (ms)' in dom and 'Target ' in dom


@pytest.mark.parametrize('path', sorted(str(p) for p in Path(__file__).parents[1].glob('examples/*/pipeline.yml')))
@pytest.mark.parametrize('quick', [False, True])
def test_shipped_pipeline_configs_load_into_valid_settings(path, quick):
    from nni_lightnas.pipeline import load_pipeline_config
    from nni_lightnas.search import SearchConfig
    from nni_lightnas.search_spaces import get_preset
    config = load_pipeline_config(path, quick=quick)
    get_preset(config.preset)
    search = SearchConfig(preset=config.preset, target_ms=1.0, **config.search)
    assert search.epochs > search.warmup_epochs
    assert config.targets_ms or all(0 < q < 1 for q in config.target_quantiles)

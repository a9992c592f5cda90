"""A real SIGKILL of a real pipeline in its search stage: the rerun continues from the last epoch."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

CONFIG = """
run_dir: {run_dir}
preset: tiny
target_quantiles: [0.5]
profile: {{runs: 5, warmup: 1, calibrate: 0}}
search: {{epochs: 4, warmup_epochs: 1, train_limit: 512, batch_size: 64}}
evolve: {{max_trials: 1, population_size: 1, sample_size: 1, batches: 2, last: 1, data_limit: 128}}
train: {{epochs: 1, train_limit: 256, test_limit: 256, batch_size: 64}}
measure: {{runs: 5, rounds: 1}}
"""

#: The search alone, uninterrupted, with the pipeline's settings and LUT (the reference).
REFERENCE = """
import json, sys
from nni_lightnas.latency.lut import LatencyLUT
from nni_lightnas.search import SearchConfig, run_search
lut = LatencyLUT.load(sys.argv[1], space='tiny')
config = SearchConfig(preset='tiny', target_ms=float(sys.argv[2]), seed=0, epochs=4, warmup_epochs=1,
                      train_limit=512, batch_size=64)
run_search(config, lut, sys.argv[3])
"""


def _pipeline(config: Path) -> list[str]:
    return [sys.executable, '-m', 'nni_lightnas', 'pipeline', '--config', str(config)]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_search_killed_mid_stage_resumes_from_its_last_epoch_to_the_same_result(tmp_path):
    run_dir = tmp_path / 'run'
    config = tmp_path / 'pipeline.yml'
    config.write_text(CONFIG.format(run_dir=run_dir))
    process = subprocess.Popen(_pipeline(config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    checkpoint = None
    while time.monotonic() < deadline and process.poll() is None:
        found = list(run_dir.glob('T*ms/search/checkpoints/epoch=1.ckpt'))
        if found:
            checkpoint = found[0]
            break
        time.sleep(0.05)
    assert checkpoint is not None, 'the search never finished its second epoch'
    process.send_signal(signal.SIGKILL)
    process.wait()
    search_dir = checkpoint.parent.parent
    assert not (search_dir / 'stage.json').exists()  # killed inside the stage
    resumed = subprocess.run(_pipeline(config), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert '[skip] profile' in resumed.stdout and '[run]  search' in resumed.stdout
    marker = json.loads((search_dir / 'stage.json').read_text())
    assert marker['outputs']['resumed_after_epochs'] >= 2  # continued, did not start over
    assert not (search_dir / 'checkpoints').exists()  # removed once the search finished

    target_ms = float(search_dir.parent.name[1:-2])
    reference_dir = tmp_path / 'reference'
    subprocess.run([sys.executable, '-c', REFERENCE, str(run_dir / 'profile' / 'lut.csv'), str(target_ms),
                    str(reference_dir)], check=True, capture_output=True, timeout=600)
    expected = json.loads((reference_dir / 'summary.json').read_text())
    summary = json.loads((search_dir / 'summary.json').read_text())
    assert summary['arch'] == expected['arch']
    history = pd.read_csv(search_dir / 'history.csv')
    expected_history = pd.read_csv(reference_dir / 'history.csv')
    assert len(history) == 4
    assert history['argmax_ms'].tolist() == pytest.approx(expected_history['argmax_ms'].tolist())
    assert history['lambda'].tolist() == pytest.approx(expected_history['lambda'].tolist())

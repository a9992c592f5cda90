"""Real SIGKILLs of a real pipeline in its search and training stages: reruns continue from the last epoch."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

CONFIG = """
run_dir: {run_dir}
preset: tiny
target_quantiles: [0.5]
profile: {{runs: 5, warmup: 1, calibrate: 0}}
search: {{epochs: 4, warmup_epochs: 1, train_limit: 512, batch_size: 64}}
evolve: {{max_trials: 1, population_size: 1, sample_size: 1, batches: 2, last: 1, data_limit: 128}}
train: {{epochs: 3, train_limit: 2048, test_limit: 256, batch_size: 64}}
measure: {{runs: 5, rounds: 1, max_rounds: 1}}
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


def _pipeline(config: Path, *extra: str) -> list[str]:
    return [sys.executable, '-m', 'nni_lightnas', 'pipeline', '--config', str(config), *extra]


def _kill_when(config: Path, pattern: str, run_dir: Path) -> Path:
    """Run the pipeline and SIGKILL it as soon as a file matching ``pattern`` appears; returns that file."""
    process = subprocess.Popen(_pipeline(config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    found = None
    while time.monotonic() < deadline and process.poll() is None and found is None:
        found = next(iter(run_dir.glob(pattern)), None)
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert found is not None, f'{pattern} never appeared'
    assert not (found.parent.parent / 'stage.json').exists()  # killed inside the stage
    return found


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_search_and_training_killed_mid_stage_resume_from_their_last_epoch_to_the_same_result(tmp_path):
    run_dir = tmp_path / 'run'
    config = tmp_path / 'pipeline.yml'
    config.write_text(CONFIG.format(run_dir=run_dir))
    checkpoint = _kill_when(config, 'T*ms/search/checkpoints/epoch=1.ckpt', run_dir)
    search_dir = checkpoint.parent.parent
    _kill_when(config, 'T*ms/train/checkpoints/epoch=0.ckpt', run_dir)  # the search resumes, then this
    resumed = subprocess.run(_pipeline(config), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert '[skip] search' in resumed.stdout and '[run]  train' in resumed.stdout
    marker = json.loads((search_dir / 'stage.json').read_text())
    assert marker['outputs']['resumed_after_epochs'] >= 2  # continued, did not start over
    assert not (search_dir / 'checkpoints').exists()  # removed once the search finished
    train_dir = search_dir.parent / 'train'
    metrics = json.loads((train_dir / 'metrics.json').read_text())
    assert metrics['resumed_after_epochs'] >= 1 and not (train_dir / 'checkpoints').exists()
    weights = torch.load(train_dir / 'model.pt', weights_only=True)

    again = subprocess.run(_pipeline(config, '--from', 'train'), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    uninterrupted = json.loads((train_dir / 'metrics.json').read_text())
    assert uninterrupted['resumed_after_epochs'] == 0  # a forced stage starts over
    assert metrics['test_acc'] == pytest.approx(uninterrupted['test_acc'])
    for name, tensor in torch.load(train_dir / 'model.pt', weights_only=True).items():
        assert torch.allclose(weights[name].float(), tensor.float(), atol=1e-5), name

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

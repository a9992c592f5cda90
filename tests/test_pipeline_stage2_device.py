"""Stage 2 measures on the pipeline's device: an ssh:// board (a real sshd on 127.0.0.1), never this host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nni_lightnas.pipeline_stages import _evolve, stage2_latency
from nni_lightnas.search_spaces.channel_space import nni_search_space
from nni_lightnas.pipeline_config import PipelineConfig, PipelineConfigError
from sshd_fixture import sshd  # noqa: F401

ARCH = 'MBK3E3-skip-MBK5E6'


def _config(sshd, run_dir: Path, **evolve) -> PipelineConfig:
    options = {'identity_file': str(sshd.user_key), 'ssh_options': sshd.ssh_options, 'ssh_config': '/dev/null',
               'remote_python': sshd.remote_python, 'remote_dir': sshd.remote_dir, 'retries': 1}
    return PipelineConfig.from_dict({
        'run_dir': str(run_dir), 'preset': 'tiny', 'device': sshd.url, 'device_options': options,
        'profile': {'runs': 10, 'warmup': 2},
        'evolve': {'max_trials': 2, 'population_size': 2, 'sample_size': 1, 'batches': 2, 'last': 1,
                   'data': 'synthetic', 'data_limit': 64, **evolve}})


def _cache_devices(path: Path) -> set[str]:
    return {json.loads(line)['result']['device'] for line in path.read_text().splitlines() if line.strip()}


def test_stage2_of_an_ssh_pipeline_is_measured_over_ssh(sshd, tmp_path):
    config = _config(sshd, tmp_path / 'run')
    directory = tmp_path / 'run' / 'evolve'
    directory.mkdir(parents=True)
    out = _evolve(config, 50.0, ARCH, 4, directory)
    assert out['latency_model'] == 'nni_lightnas.latency.channel:measured_channel_latency'
    assert out['num_trials'] == 2 and out['latency_ms'] > 0
    cache = directory / 'latency_cache.jsonl'
    assert _cache_devices(cache) == {sshd.url}  # every candidate's latency came from the board
    records = [json.loads(line) for line in cache.read_text().splitlines()]
    assert all(record['result']['input_shape'] == [4, 1, 28, 28] for record in records)
    trials = [json.loads(line) for line in (directory / 'trials.jsonl').read_text().splitlines()]
    measured = {json.dumps(record['widths'], sort_keys=True): record['latency_ms'] for record in records}
    for trial in trials:  # trials report the board's latency of their own widths, read from the shared cache
        widths = {key: value for key, value in trial['params'].items() if key.endswith('_chs')}
        assert trial['latency_ms'] == pytest.approx(measured[json.dumps(widths, sort_keys=True)], abs=1e-3)


def test_the_flops_line_is_an_option_calibrated_on_the_board(sshd, tmp_path):
    config = _config(sshd, tmp_path / 'run', latency='flops')
    spec, args = stage2_latency(config, ARCH, 2, tmp_path)
    saved = json.loads(Path(spec).read_text())
    assert saved['type'] == 'FlopsChannelLatency' and saved['ms_per_mmac'] > 0 and args == {}
    assert _cache_devices(tmp_path / 'latency_cache.jsonl') == {sshd.url}  # its three points: on the board


def test_a_host_measured_model_is_refused_for_a_remote_device(tmp_path):
    with pytest.raises(PipelineConfigError, match="'measured' times candidates on this host"):
        PipelineConfig.from_dict({'preset': 'tiny', 'device': 'ssh://nvidia@jetson', 'evolve': {'latency': 'measured'}})
    local = PipelineConfig.from_dict({'preset': 'tiny', 'device': 'local'})
    spec, args = stage2_latency(local, ARCH, 8, tmp_path)
    assert spec.endswith(':measured_channel_latency') and args['device'] == 'local' and args['batch_size'] == 8


def test_trials_report_the_device_latency_to_the_microsecond(sshd, tmp_path):
    config = _config(sshd, tmp_path / 'run')
    directory = tmp_path / 'run' / 'evolve'
    directory.mkdir(parents=True)
    _evolve(config, 50.0, ARCH, 2, directory)
    for trial in (json.loads(line) for line in (directory / 'trials.jsonl').read_text().splitlines()):
        assert trial['latency_source'] == 'device' and trial['latency_device'] == sshd.url
        assert trial['latency_ms'] == round(trial['latency_ms'], 3) and trial['latency_ms'] > 0


def test_a_target_the_device_finds_infeasible_ships_the_narrowest_widths_for_the_closed_loop(tmp_path):
    config = PipelineConfig.from_dict({
        'run_dir': str(tmp_path / 'run'), 'preset': 'tiny', 'device': 'local',
        'profile': {'runs': 5, 'warmup': 1},
        'evolve': {'max_trials': 2, 'population_size': 2, 'sample_size': 1, 'batches': 2, 'last': 1,
                   'data': 'synthetic', 'data_limit': 64}})
    directory = tmp_path / 'run' / 'evolve'
    directory.mkdir(parents=True)
    out = _evolve(config, 1e-4, ARCH, 2, directory)  # far below anything the device can run
    assert out['infeasible'] and out['num_trials'] == 0 and out['latency_ms'] > 1e-4
    narrowest = {label: min(spec['_value']) for label, spec in nni_search_space(ARCH, 'tiny').items()}
    assert out['widths'] == narrowest
    assert json.loads((directory / 'best.json').read_text())['params'] == narrowest
    assert not (directory / 'trials.jsonl').exists()  # no trial ran

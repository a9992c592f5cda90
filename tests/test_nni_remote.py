"""NNI experiments against the test sshd: latency trials on a board pool, and NNI's remote service.

Each experiment runs one or two short trials of the ``tiny`` preset and is stopped at the end.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from sshd_fixture import free_port, sshd  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / 'examples' / 'jetson'


def _tiny_space() -> dict:
    from nni_lightnas.search_spaces import LightNASSpace
    space = LightNASSpace('tiny')
    return {label: {'_type': 'choice', '_value': list(space.candidates[label])} for label in space.labels}


def _decode(value):
    """NNI hands final metrics back as JSON, sometimes encoded twice."""
    while isinstance(value, str):
        value = json.loads(value)
    return value


def _run_experiment(config, timeout_s: float = 150.0) -> tuple[list, str]:
    from nni.experiment import Experiment
    experiment = Experiment(config)
    experiment.start(free_port())
    status = 'UNKNOWN'
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                status = experiment.get_status()
            except Exception:  # the manager stopped on an error: its log says why
                status = 'MANAGER_GONE'
                break
            if status in ('DONE', 'ERROR', 'STOPPED'):
                break
            time.sleep(1.0)
        jobs = experiment.list_trial_jobs() if status != 'MANAGER_GONE' else []
    finally:
        experiment.stop()
    if status != 'DONE':
        log = Path(config.experiment_working_directory) / experiment.id / 'log' / 'nnimanager.log'
        tail = log.read_text()[-3000:] if log.is_file() else '(no manager log)'
        pytest.fail(f'experiment ended as {status}; manager log:\n{tail}')
    return jobs, experiment.id


def test_latency_experiment_measures_on_a_board_pool(sshd, tmp_path):
    """examples/jetson/latency.yml, pointed at two "boards" (the test sshd under two names)."""
    from nni.experiment import ExperimentConfig
    data = yaml.safe_load((EXAMPLES / 'latency.yml').read_text())
    words = data['trialCommand'].split()
    assert words[words.index('-m') + 1] == 'nni_lightnas.trials.latency'
    boards = f'ssh://{sshd.user}@127.0.0.1:{sshd.port},ssh://{sshd.user}@localhost:{sshd.port}'
    options = ' '.join(f'--ssh-option {option}' for option in sshd.ssh_options)
    data.pop('searchSpaceFile')
    data.update(
        searchSpace=_tiny_space(), maxTrialNumber=2, trialConcurrency=2, trialCodeDirectory=str(tmp_path),
        experimentWorkingDirectory=str(tmp_path / 'nni'),
        trialCommand=(f'{sys.executable} -m nni_lightnas.trials.latency --preset tiny --batch 1 --runs 20 '
                      f'--warmup 2 --device {boards} --ssh-identity {sshd.user_key} --ssh-config /dev/null '
                      f'{options} --remote-python {sshd.remote_python} --remote-dir {sshd.remote_dir} '
                      f'--lock-dir {tmp_path / "locks"}'))
    jobs, experiment_id = _run_experiment(ExperimentConfig(**data))
    assert len(jobs) == 2 and all(job.status == 'SUCCEEDED' for job in jobs), jobs
    trial_dirs = list((tmp_path / 'nni').glob(f'{experiment_id}/environments/*/trials/*'))
    for job in jobs:
        metrics = _decode(job.finalMetricData[0].data)
        assert metrics['default'] == metrics['latency_ms'] > 0 and metrics['p25_ms'] <= metrics['p75_ms']
    records = [json.loads((d / 'latency.json').read_text()) for d in trial_dirs if (d / 'latency.json').is_file()]
    assert len(records) == 2
    for record in records:
        assert record['device'] in boards.split(',') and record['facts']['pool'].startswith('pool(')
        assert record['facts']['ssh_attempts'] == 1
    # one measurement at a time on the board, whichever pool member the trial took
    (a_start, a_end), (b_start, b_end) = sorted(
        (r['facts']['measure_start_unix'], r['facts']['measure_end_unix']) for r in records)
    assert a_end <= b_start


def test_remote_training_service_runs_a_trial_on_the_target(sshd, tmp_path):
    """NNI's own remote training service (for x86 targets that can run NNI) against the sshd."""
    from nni.experiment import ExperimentConfig
    data = yaml.safe_load((EXAMPLES / 'remote.yml').read_text())
    assert data['trainingService']['platform'] == 'remote'
    code = tmp_path / 'code'
    code.mkdir()
    (code / 'README').write_text('trial code directory (NNI refuses to upload an empty one)\n')
    data.pop('searchSpaceFile')
    data.update(
        searchSpace=_tiny_space(), maxTrialNumber=1, trialConcurrency=1, trialCodeDirectory=str(code),
        experimentWorkingDirectory=str(tmp_path / 'nni'), nniManagerIp='127.0.0.1',
        trialCommand=(f'{sys.executable} -m nni_lightnas.trials.latency --preset tiny --runs 10 --warmup 1 '
                      f'--device local'))
    data['trainingService']['machineList'] = [{
        'host': '127.0.0.1', 'port': sshd.port, 'user': sshd.user, 'sshKeyFile': str(sshd.user_key),
        'pythonPath': str(Path(sys.executable).parent)}]
    jobs, experiment_id = _run_experiment(ExperimentConfig(**data))
    try:
        assert len(jobs) == 1 and jobs[0].status == 'SUCCEEDED', jobs
        assert jobs[0].logPath.startswith('127.0.0.1:')  # it ran through the remote worker
        metrics = _decode(jobs[0].finalMetricData[0].data)
        assert metrics['default'] == metrics['latency_ms'] > 0
    finally:  # the remote worker's directory on the "target" (this machine)
        shutil.rmtree(Path('~').expanduser() / 'nni-experiments' / experiment_id, ignore_errors=True)


def test_latency_trial_parameters_and_standalone_run(tmp_path, capsys):
    from nni_lightnas.trials.latency import arch_from_parameters, main
    assert arch_from_parameters({'layer02': 'MBK5E6', 'layer00': 'MBK3E3', 'layer01': 'SkipConnect'}, 'tiny') == \
        ('MBK3E3-skip-MBK5E6', {})
    with pytest.raises(ValueError, match='"arch"'):
        arch_from_parameters({'lr': 0.1}, 'tiny')
    with pytest.raises(ValueError, match='3 searchable layers'):
        arch_from_parameters({'arch': 'skip-skip'}, 'tiny')
    assert main(['--preset', 'tiny', '--arch', 'MBK3E6-skip-MBK5E3', '--runs', '5', '--warmup', '1']) == 0
    record = json.loads(next(line for line in capsys.readouterr().out.splitlines() if line.startswith('{"arch"')))
    assert record['arch'] == 'MBK3E6-skip-MBK5E3' and record['device'] == 'local' and record['median_ms'] > 0

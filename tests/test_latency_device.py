"""The local device: the result object, re-measurement, the cross-process lock, the measure CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap

import pytest
import torch

from nni_lightnas.export import export_onnx
from nni_lightnas.latency import LatencyResult, LocalDevice, device_lock
from nni_lightnas.search_spaces import LightNet

INPUT_SHAPE = (2, 1, 28, 28)
# a private lock directory: these tests need not wait for a benchmark holding the machine's 'local' lock
PRIVATE_LOCKS = tempfile.mkdtemp(prefix='nni-lightnas-test-locks-')


@pytest.fixture(scope='module')
def tiny_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp('onnx') / 'tiny.onnx'
    return export_onnx(LightNet('MBK3E6-skip-MBK7E3', 'tiny'), path, INPUT_SHAPE)


def test_result_object_has_statistics_and_provenance(tiny_onnx):
    result = LocalDevice(num_runs=15, num_warmup_runs=2, threads=1, lock_dir=PRIVATE_LOCKS).measure(tiny_onnx)
    assert isinstance(result, LatencyResult)
    assert result.runs == 15 and result.device == 'local' and result.threads == 1
    assert 0 < result.min_ms <= result.p25_ms <= result.median_ms <= result.p75_ms
    assert result.iqr_ms == pytest.approx(result.p75_ms - result.p25_ms)
    assert result.cv is not None and result.cv >= 0
    assert result.runtime.startswith('onnxruntime') and result.provider == 'CPUExecutionProvider'
    assert result.input_shape == list(INPUT_SHAPE)
    assert 1 <= result.attempts <= 3
    data = json.loads(json.dumps(result.to_dict()))
    assert {'median_ms', 'p25_ms', 'p75_ms', 'runs', 'device', 'cv', 'runtime', 'provider', 'threads'} <= set(data)


def test_module_and_bytes_are_exported_at_the_given_shape(tiny_onnx):
    device = LocalDevice(num_runs=5, num_warmup_runs=1, lock_dir=PRIVATE_LOCKS)
    from_module = device.measure(LightNet('MBK3E6-skip-MBK7E3', 'tiny'), INPUT_SHAPE)
    from_bytes = device.measure(tiny_onnx.read_bytes())
    assert from_module.input_shape == from_bytes.input_shape == list(INPUT_SHAPE)
    with pytest.raises(ValueError, match='input_shape'):
        device.measure(torch.nn.Conv2d(1, 4, 3))
    with pytest.raises(FileNotFoundError):
        device.measure(tiny_onnx.with_name('missing.onnx'))


def test_wide_spread_is_remeasured_and_reported(tiny_onnx):
    # an impossible tolerance: every attempt is "too wide", so all are made and the result says so
    result = LocalDevice(num_runs=8, num_warmup_runs=1, max_iqr_ratio=1e-12, max_attempts=3,
                         lock_dir=PRIVATE_LOCKS).measure(tiny_onnx)
    assert result.attempts == 3
    assert result.stable is False
    relaxed = LocalDevice(num_runs=8, num_warmup_runs=1, max_iqr_ratio=1e6, lock_dir=PRIVATE_LOCKS).measure(tiny_onnx)
    assert relaxed.attempts == 1 and relaxed.stable


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match='num_runs'):
        LocalDevice(num_runs=0)
    with pytest.raises(ValueError, match='threads'):
        LocalDevice(threads=0)


_LOCK_SCRIPT = textwrap.dedent('''
    import json, sys, time
    from nni_lightnas.latency import LocalDevice

    class Recording(LocalDevice):
        name = 'lock-test'

        def _measure_onnx_file(self, path):
            start = time.time()
            time.sleep(0.4)  # make an overlap impossible to miss
            result = super()._measure_onnx_file(path)
            print(json.dumps([start, time.time()]), flush=True)
            return result

    device = Recording(num_runs=5, num_warmup_runs=1, lock_dir=sys.argv[2])
    device.measure(sys.argv[1])
''')


def test_two_processes_on_one_device_are_serialized(tiny_onnx, tmp_path):
    script = tmp_path / 'measure.py'
    script.write_text(_LOCK_SCRIPT)
    lock_dir = tmp_path / 'locks'
    processes = [subprocess.Popen([sys.executable, str(script), str(tiny_onnx), str(lock_dir)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    intervals = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        intervals.append(json.loads(out.strip().splitlines()[-1]))
    (start_a, end_a), (start_b, end_b) = sorted(intervals)
    assert end_a <= start_b, f'measurements overlapped: {intervals}'


def test_busy_device_lock_times_out_in_another_process(tmp_path):
    code = textwrap.dedent(f'''
        from nni_lightnas.latency import device_lock
        try:
            with device_lock('busy', {str(tmp_path)!r}, timeout_s=0.2):
                print('acquired')
        except TimeoutError as error:
            print('timeout', error)
    ''')
    with device_lock('busy', tmp_path):
        held = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert held.stdout.startswith('timeout') and "device 'busy'" in held.stdout
    free = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert free.stdout.startswith('acquired')


def test_measure_cli_prints_json(tiny_onnx, capsys):
    from nni_lightnas.cli import main
    assert main(['measure', str(tiny_onnx), '--device', 'local', '--runs', '6', '--threads', '1', '--json']) == 0
    data = json.loads(capsys.readouterr().out)
    assert data['runs'] == 6 and data['device'] == 'local' and data['threads'] == 1
    assert data['p25_ms'] <= data['median_ms'] <= data['p75_ms']


def test_measure_cli_reports_a_missing_model(tmp_path, capsys):
    from nni_lightnas.cli import main
    assert main(['measure', str(tmp_path / 'nope.onnx'), '--json']) == 2
    assert 'does not exist' in capsys.readouterr().err


def test_cpu_clock_is_recorded_and_needs_one_thread(tiny_onnx):
    result = LocalDevice(num_runs=6, num_warmup_runs=1, clock='cpu', lock_dir=PRIVATE_LOCKS).measure(tiny_onnx)
    assert result.facts['clock'] == 'cpu' and result.provider == 'CPUExecutionProvider'
    assert 0 < result.p25_ms <= result.median_ms <= result.p75_ms
    assert LocalDevice(num_runs=3, lock_dir=PRIVATE_LOCKS).measure(tiny_onnx).facts['clock'] == 'wall'
    with pytest.raises(ValueError, match='threads=1'):
        LocalDevice(clock='cpu', threads=2)
    with pytest.raises(ValueError, match='unknown clock'):
        LocalDevice(clock='gpu')


def test_group_measurement_interleaves_models(tiny_onnx):
    device = LocalDevice(num_runs=6, num_warmup_runs=1, lock_dir=PRIVATE_LOCKS)
    skip = LightNet('skip-skip-skip', 'tiny')
    results = device.measure_group([tiny_onnx, skip], INPUT_SHAPE)
    assert len(results) == 2 and all(r.runs == 6 for r in results)
    assert all(r.facts['interleaved_with'] == 1 for r in results)

"""Board-side code for real Jetsons, over the loopback sshd (no Jetson and no TensorRT here).

- Python 3.6 (JetPack 4): ``vermin`` on every file shipped to the board, and the board runs
  under the oldest Python of this machine (pyenv's 3.6 when present) with a simulated
  ``trtexec`` (``tests/fake_trtexec.py``: builds take time, engines are files).
- Engine cache: a second profile of the same space rebuilds no engine.
- Warm-up runs dropped, unstable runs retried then reported, energy per inference from a
  simulated sysfs tree of INA3221 rails (JetPack 4 and JetPack 5/6 layouts).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nni_lightnas.latency import board_power
from nni_lightnas.latency.ssh import _BOOTSTRAP, _BOARD_FILES
from sshd_fixture import sshd  # noqa: F401

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent / 'nni_lightnas' / 'latency'


def _oldest_python() -> str | None:
    candidates = sorted(glob.glob('/root/.pyenv/versions/3.*/bin/python3') + glob.glob('/usr/bin/python3.[0-9]*'))
    found = []
    for path in candidates:
        try:
            out = subprocess.run([path, '-c', 'import sys; print(sys.version_info[1])'], capture_output=True,
                                 text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        if out.isdigit():
            found.append((int(out), path))
    return min(found)[1] if found else None


OLDEST = _oldest_python()
OLDEST_VERSION = subprocess.run([OLDEST, '-c', 'import platform; print(platform.python_version())'],
                                capture_output=True, text=True).stdout.strip() if OLDEST else None
needs_old_python = pytest.mark.skipif(
    OLDEST is None or not OLDEST_VERSION.startswith('3.6'),
    reason=f'no Python 3.6 on this machine (oldest found: {OLDEST_VERSION}); the runner logic then runs under the '
           f'oldest available only')


def test_board_files_need_only_python36(tmp_path):
    vermin = shutil.which('vermin') or str(Path(sys.executable).parent / 'vermin')
    if not os.access(vermin, os.X_OK):
        pytest.skip('vermin is not installed (pip install -e .[test])')
    bootstrap = tmp_path / 'bootstrap.py'
    bootstrap.write_text(_BOOTSTRAP)
    files = [str(PACKAGE / name) for name in _BOARD_FILES] + [str(bootstrap)]
    done = subprocess.run([vermin, '--target=3.6-', '--no-tips', '--violations', *files], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _jp4_rails(root: Path, idle_mw: int) -> Path:
    """A Nano-like JetPack 4 tree: ina3221x with POM_5V_IN (total), POM_5V_GPU, POM_5V_CPU."""
    folder = root / 'sys/bus/i2c/devices/6-0040'
    (folder / 'iio:device0').mkdir(parents=True)
    (folder / 'name').write_text('ina3221x\n')
    for index, (name, value) in enumerate([('POM_5V_IN', idle_mw), ('POM_5V_GPU', 40), ('POM_5V_CPU', 300)]):
        (folder / 'iio:device0' / f'rail_name_{index}').write_text(name + '\n')
        (folder / 'iio:device0' / f'in_power{index}_input').write_text(f'{value}\n')
    return folder / 'iio:device0' / 'in_power0_input'


def _jp5_rails(root: Path) -> None:
    """An AGX-Xavier-like JetPack 5 tree: hwmon rails, no input rail (the total is their sum)."""
    folder = root / 'sys/bus/i2c/devices/1-0040'
    (folder / 'hwmon' / 'hwmon3').mkdir(parents=True)
    (folder / 'name').write_text('ina3221\n')
    hwmon = folder / 'hwmon' / 'hwmon3'
    for index, (name, mv, ma) in enumerate([('GPU', 5000, 100), ('CPU', 5000, 200), ('NC', 5000, 999)], start=1):
        (hwmon / f'in{index}_label').write_text(name + '\n')
        (hwmon / f'in{index}_input').write_text(f'{mv}\n')
        (hwmon / f'curr{index}_input').write_text(f'{ma}\n')
    (hwmon / 'in7_label').write_text('sum of shunt voltages\n')
    (hwmon / 'in7_input').write_text('1\n')
    (hwmon / 'curr7_input').write_text('1\n')


def test_power_rails_of_both_sysfs_layouts(tmp_path):
    _jp4_rails(tmp_path / 'nano', 2500)
    nano = board_power.PowerMeter(board_power.find_power_rails(str(tmp_path / 'nano')))
    assert nano.name == 'POM_5V_IN' and nano.read_mw() == 2500.0
    _jp5_rails(tmp_path / 'xavier')
    rails = board_power.find_power_rails(str(tmp_path / 'xavier'))
    assert [rail.name for rail in rails] == ['GPU', 'CPU']  # NC and the shunt sum skipped
    xavier = board_power.PowerMeter(rails)
    assert xavier.read_mw() == pytest.approx(5000 * 0.1 + 5000 * 0.2) and xavier.name.startswith('sum of')
    with pytest.raises(ValueError, match='no power rails'):
        board_power.PowerMeter([])


_OLD_PYTHON_CHECK = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
import board_power, board_trtexec, runner
fixtures = sys.argv[2]
text = open(fixtures + '/trt7_issue1221_gpu_compute.txt').read()
entries = board_trtexec.exported_times(json.load(open(fixtures + '/trt10_export_times_fuzzylabs_alexnet.json')))
summary = runner.summarize_times([e[0] for e in board_trtexec.timed_runs(entries, 8)])
rails = board_power.find_power_rails(sys.argv[3])
print(json.dumps({'python': sys.version_info[:2], 'gpu': board_trtexec.parse_trtexec_output(text)['gpu_compute'],
                  'median': summary['median_ms'], 'rails': [r.name for r in rails],
                  'energy': board_power.energy_per_inference([(1.5, 5000.0)], [(1.0, 2.0)], 10, 3000.0)['energy_mj'],
                  'key': board_trtexec.engine_key('ab', '8.2.1', ['--fp16'])}))
'''


def test_board_logic_under_the_oldest_python(tmp_path):
    if OLDEST is None:
        pytest.skip('no other Python found')
    _jp4_rails(tmp_path / 'root', 2000)
    board = tmp_path / 'board'
    board.mkdir()
    for name in _BOARD_FILES:
        shutil.copy(PACKAGE / name, board / name)
    done = subprocess.run([OLDEST, '-c', _OLD_PYTHON_CHECK, str(board), str(HERE / 'fixtures' / 'trtexec'),
                           str(tmp_path / 'root')], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    from nni_lightnas.latency.board_trtexec import engine_key
    assert data['gpu']['median'] == 567.073 and data['median'] == pytest.approx(0.497803)
    assert data['rails'] == ['POM_5V_IN', 'POM_5V_GPU', 'POM_5V_CPU'] and data['energy'] == pytest.approx(200.0)
    assert data['key'] == engine_key('ab', '8.2.1', ['--fp16'])  # same key whichever Python computes it
    if not OLDEST_VERSION.startswith('3.6'):
        pytest.skip(f'ran under {OLDEST_VERSION}: no Python 3.6 could be installed here')


def _fake_trtexec(tmp_path: Path, **config) -> tuple[Path, Path]:
    script = tmp_path / 'trtexec'
    script.write_text(f'#!{sys.executable}\n' + (HERE / 'fake_trtexec.py').read_text())
    script.chmod(0o755)
    log = tmp_path / 'trtexec_calls.jsonl'
    config.setdefault('log', str(log))
    (tmp_path / 'trtexec.json').write_text(json.dumps(config))
    return script, log


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _board_python() -> str:
    return OLDEST if OLDEST_VERSION and OLDEST_VERSION.startswith('3.6') else sys.executable


def test_second_profile_builds_no_engine(sshd, tmp_path):
    """A LUT profiled twice on one board (board Python: 3.6 when present): the second builds nothing."""
    from nni_lightnas.latency.lut_build import build_lut, lut_entries
    from nni_lightnas.search_spaces import StageSpec, get_preset
    space = get_preset('tiny', stages=(StageSpec(16, 1, 2),))  # one searchable layer
    rows = len([entry for entry in lut_entries(space, 1) if entry.kind != 'overhead'])
    trtexec, log = _fake_trtexec(tmp_path, build_delay_s=0.3, base_ms=0.5, spreads=[0.01])
    device = sshd.device(trtexec=str(trtexec), trtexec_args=['--fp16'], num_runs=20, max_attempts=1,
                         remote_python=_board_python(), remote_dir=str(tmp_path / 'board'))
    first = build_lut(space, device, batch=1, path=tmp_path / 'first.csv', overhead=False)
    built = [call for call in _calls(log) if call['build']]
    assert len(first.table) == rows and len(built) > 0
    assert all(any(a.startswith('--saveEngine=') for a in call['argv']) for call in built)
    assert all(any(a.startswith('--timingCacheFile=') for a in call['argv']) for call in built)  # TensorRT 8
    before = len(_calls(log))
    second = build_lut(space, device, batch=1, path=tmp_path / 'second.csv', overhead=False)
    again = _calls(log)[before:]
    assert len(second.table) == rows and again and not any(call['build'] for call in again)
    assert all(any(a.startswith('--loadEngine=') for a in call['argv']) for call in again)
    # the engines are keyed by content: one per distinct network, however many rows share it
    assert len(list((tmp_path / 'board' / 'engines').glob('*.engine'))) == len(built)
    # precision is part of the key: FP32 builds its own engines
    fp32 = sshd.device(trtexec=str(trtexec), num_runs=20, max_attempts=1, remote_python=_board_python(),
                       remote_dir=str(tmp_path / 'board'))
    result = fp32.measure(_tiny_onnx(tmp_path))
    assert result.facts['engine_cache'] == 'miss' and _calls(log)[-1]['build']
    assert fp32.measure(_tiny_onnx(tmp_path)).facts['engine_cache'] == 'hit'


def _tiny_onnx(tmp_path: Path) -> Path:
    from nni_lightnas.export import export_onnx
    from nni_lightnas.search_spaces import LightNet
    path = tmp_path / 'tiny.onnx'
    if not path.exists():
        export_onnx(LightNet('MBK3E6-skip-MBK5E3', 'tiny'), path, (1, 1, 28, 28))
    return path


def test_tensorrt7_trace_drops_warmups_and_unstable_runs_are_retried(sshd, tmp_path, caplog):
    trtexec, log = _fake_trtexec(tmp_path, version=None, mode='trace', warmup_runs=4, warmup_ms_each=50.0,
                                 base_ms=1.0, spreads=[0.3, 0.02])
    device = sshd.device(trtexec=str(trtexec), num_runs=30, max_attempts=3, max_iqr_ratio=0.1,
                         trtexec_version='7.1.3', remote_dir=str(tmp_path / 'board'))
    result = device.measure(_tiny_onnx(tmp_path))
    calls = _calls(log)
    assert not any(a.startswith('--exportTimes') for a in calls[0]['argv'])  # TensorRT 7: trace lines instead
    assert not any(a.startswith('--timingCacheFile') for a in calls[0]['argv'])  # not in TensorRT 7
    assert result.attempts == 2 and result.stable  # wide first attempt, tight second
    assert result.facts['warmup_runs_dropped'] == 4 and result.runs == 30
    assert result.median_ms == pytest.approx(1.0, rel=0.03)  # the 50 ms warm-ups are gone
    assert result.facts['iqr_ratio'] == pytest.approx(0.04, abs=0.01)
    assert [call['build'] for call in calls] == [True, False]  # the retry loads the cached engine
    # always wide: retried up to max_attempts, then kept and reported unstable
    (tmp_path / 'trtexec_calls.jsonl').unlink()
    wide, log = _fake_trtexec(tmp_path, version='8602', base_ms=1.0, spreads=[0.3])
    with caplog.at_level(logging.WARNING, logger='nni_lightnas.latency.device'):
        unstable = sshd.device(trtexec=str(wide), num_runs=20, max_attempts=3, max_iqr_ratio=0.1,
                               remote_dir=str(tmp_path / 'board2')).measure(_tiny_onnx(tmp_path))
    assert unstable.attempts == 3 and not unstable.stable and unstable.facts['iqr_ratio'] > 0.1
    assert any('spread stayed wide after 3 attempts' in record.message for record in caplog.records)


@needs_old_python
def test_energy_per_inference_from_simulated_rails_on_python36(sshd, tmp_path):
    """Idle 3000 mW, 5000 mW during the timed runs of 5 ms each: 2000 mW x 5 ms = 10 mJ an inference."""
    power_file = _jp4_rails(tmp_path / 'root', 3000)
    trtexec, _ = _fake_trtexec(tmp_path, base_ms=5.0, spreads=[0.0], warmup_runs=3, warmup_ms_each=5.0,
                               power_file=str(power_file), idle_mw=3000, active_mw=5000)
    device = sshd.device(trtexec=str(trtexec), num_runs=60, max_attempts=1, energy=True,
                         power_root=str(tmp_path / 'root'), idle_s=0.3, power_interval_ms=5,
                         remote_python=OLDEST, remote_dir=str(tmp_path / 'board'))
    result = device.measure(_tiny_onnx(tmp_path))
    facts = result.facts
    assert facts['python'].startswith('3.6')
    assert facts['power_rail'] == 'POM_5V_IN' and facts['power_idle_mw'] == pytest.approx(3000)
    assert facts['power_samples'] >= 20
    assert facts['energy_mj'] == pytest.approx(10.0, rel=0.15)
    assert facts['power_rails'] == ['POM_5V_IN', 'POM_5V_GPU', 'POM_5V_CPU']


def test_energy_with_onnxruntime_and_missing_rails(sshd, tmp_path):
    from nni_lightnas.latency.errors import BoardSetupError
    _jp4_rails(tmp_path / 'root', 3000)  # constant power: nothing above idle; 600 runs outlast several samples
    device = sshd.device(num_runs=600, num_warmup_runs=2, energy=True, power_root=str(tmp_path / 'root'),
                         idle_s=0.2, power_interval_ms=5)
    result = device.measure(_tiny_onnx(tmp_path))
    assert result.facts['energy_mj'] == pytest.approx(0.0, abs=1e-9) and result.facts['power_samples'] >= 1
    with pytest.raises(BoardSetupError, match='no INA3221 power rails under .*nowhere'):
        sshd.device(energy=True, power_root=str(tmp_path / 'nowhere'), idle_s=0.1).measure(_tiny_onnx(tmp_path))


def test_lut_rows_carry_energy_when_the_board_measures_it(sshd, tmp_path):
    from nni_lightnas.latency.lut import COLUMNS
    from nni_lightnas.latency.lut_build import build_lut
    from nni_lightnas.search_spaces import StageSpec, get_preset
    power_file = _jp4_rails(tmp_path / 'root', 3000)
    trtexec, _ = _fake_trtexec(tmp_path, base_ms=2.0, spreads=[0.0], power_file=str(power_file), idle_mw=3000,
                               active_mw=4000)
    device = sshd.device(trtexec=str(trtexec), num_runs=40, max_attempts=1, energy=True, idle_s=0.1,
                         power_root=str(tmp_path / 'root'), power_interval_ms=5, remote_dir=str(tmp_path / 'board'))
    space = get_preset('tiny', stages=(StageSpec(16, 1, 2),))
    lut = build_lut(space, device, batch=1, path=tmp_path / 'lut.csv', overhead=False)
    assert 'energy_mj' in COLUMNS
    energies = lut.table['energy_mj'].astype(float)
    assert energies.notna().all() and energies.median() == pytest.approx(2.0, rel=0.25)  # 1000 mW x 2 ms

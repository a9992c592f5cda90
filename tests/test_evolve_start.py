"""``nni-lightnas evolve`` stops an NNI experiment whose tuner fails at start, with the tuner's error."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
#: A latency model that works once (for the CLI's budget check) and then fails (in NNI's tuner).
FACTORY = '''
import os
from pathlib import Path

from nni_lightnas.latency.channel import FlopsChannelLatency


def factory(arch, preset, batch_size=1, **kwargs):
    marker = Path(os.environ['LIGHTNAS_TEST_MARKER'])
    if marker.exists():
        raise RuntimeError('latency model unavailable in the tuner (simulated start failure)')
    marker.write_text('used once')
    return FlopsChannelLatency(arch, preset, intercept_ms=0.05, ms_per_mmac=0.2, batch_size=batch_size)
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_tuner_that_cannot_start_stops_the_experiment_with_its_error(tmp_path):
    (tmp_path / 'once_latency.py').write_text(FACTORY)
    port = _free_port()
    env = {**os.environ, 'PATH': f'{VENV_BIN}{os.pathsep}{os.environ.get("PATH", "")}',
           'PYTHONPATH': f'{tmp_path}{os.pathsep}{os.environ.get("PYTHONPATH", "")}',
           'LIGHTNAS_TEST_MARKER': str(tmp_path / 'marker')}
    command = [sys.executable, '-m', 'nni_lightnas', 'evolve', '--lightnet', 'MBK3E6-skip-MBK5E3', '--preset', 'tiny',
               '--budget-ms', '1.0', '--latency', 'once_latency:factory', '--output', str(tmp_path / 'experiment'),
               '--working-dir', str(tmp_path / 'nni'), '--max-trials', '2', '--data', 'synthetic',
               '--port', str(port)]
    try:
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
        assert completed.returncode == 1, completed.stdout + completed.stderr
        assert 'Traceback' not in completed.stderr
        line = completed.stderr.strip().splitlines()[-1]
        assert 'the tuner failed to start' in line and 'simulated start failure' in line, line
        assert 'was stopped' in line and 'dispatcher.log' in line
        # the manager is gone: nothing answers on the port any more
        with pytest.raises(OSError):
            socket.create_connection(('127.0.0.1', port), timeout=2).close()
    finally:
        subprocess.run([str(VENV_BIN / 'nnictl'), 'stop', '--port', str(port)], env=env, capture_output=True,
                       timeout=60)

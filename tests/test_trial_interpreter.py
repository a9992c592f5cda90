"""The shipped nnictl configs run their trials with the interpreter that has nni-lightnas, not any python3.

Each config's ``trialCommand`` starts with ``sh ../nni_python.sh``; here that command is run as
nnictl's local training service runs it (a shell in ``trialCodeDirectory``), with a PATH that
holds no interpreter of this package, and must resolve to this checkout's one.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[1] / 'examples'
CONFIGS = ['fashion_mnist/evolve.yml', 'fashion_mnist/evolve_quick.yml', 'jetson/latency.yml']
#: Prints the interpreter instead of running a trial.
PROBE = ['-c', 'import os, sys, nni_lightnas; print(sys.executable, os.environ.get("CHOSEN_WRAPPER", "-"))']
#: A PATH without this package's interpreter (system tools only).
BARE_PATH = '/usr/bin:/bin'


def _launch(config_name: str, *, path: str = BARE_PATH, **env: str) -> subprocess.CompletedProcess:
    """The config's trialCommand with its module and arguments replaced by PROBE, run in its code directory."""
    config_path = EXAMPLES / config_name
    config = yaml.safe_load(config_path.read_text())
    words = shlex.split(config['trialCommand'])
    launcher = words[:words.index('-m')]
    workdir = (config_path.parent / config['trialCodeDirectory']).resolve()
    environment = {key: value for key, value in os.environ.items()
                   if key not in ('VIRTUAL_ENV', 'NNI_LIGHTNAS_PYTHON', 'PYTHONPATH')}
    return subprocess.run([*launcher, *PROBE], cwd=workdir, capture_output=True, text=True, timeout=120,
                          env={**environment, 'PATH': path, **env})


@pytest.mark.parametrize('config_name', CONFIGS)
def test_shipped_trial_command_resolves_to_this_packages_interpreter(config_name):
    words = shlex.split(yaml.safe_load((EXAMPLES / config_name).read_text())['trialCommand'])
    assert words[:2] == ['sh', '../nni_python.sh'] and 'python3' not in words[:words.index('-m')]
    completed = _launch(config_name)
    assert completed.returncode == 0, completed.stderr
    expected = (EXAMPLES.parent / '.venv' / 'bin' / 'python')
    if not expected.exists():
        pytest.skip(f'{expected} does not exist (the package is not installed in a checkout venv)')
    assert completed.stdout.split() == [str(expected.absolute()), '-']


def test_nni_lightnas_python_wins_and_a_missing_one_is_named(tmp_path):
    chosen = tmp_path / 'bin' / 'python'  # an interpreter of the user's choice: marks its runs
    chosen.parent.mkdir()
    chosen.write_text(f'#!/bin/sh\nCHOSEN_WRAPPER=yes exec {sys.executable} "$@"\n')
    chosen.chmod(0o755)
    completed = _launch(CONFIGS[0], NNI_LIGHTNAS_PYTHON=str(chosen))
    assert completed.returncode == 0 and completed.stdout.split()[-1] == 'yes', completed.stderr

    lonely = tmp_path / 'examples'  # a copy of the launcher with no .venv beside it, no python3 on PATH
    (lonely / 'fashion_mnist').mkdir(parents=True)
    shutil.copy(EXAMPLES / 'nni_python.sh', lonely / 'nni_python.sh')
    sh_only = tmp_path / 'sh-only'
    sh_only.mkdir()
    (sh_only / 'sh').symlink_to(shutil.which('sh'))
    (sh_only / 'dirname').symlink_to(shutil.which('dirname'))
    failed = subprocess.run(['sh', '../nni_python.sh', *PROBE], cwd=lonely / 'fashion_mnist', capture_output=True,
                            text=True, timeout=60, env={'PATH': str(sh_only), 'NNI_LIGHTNAS_PYTHON': '/nonexistent'})
    assert failed.returncode == 127
    assert 'no interpreter with nni-lightnas' in failed.stderr and 'NNI_LIGHTNAS_PYTHON=' in failed.stderr

"""Importing our strategies first must leave NNI's own one-shot strategies intact in the process."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize('first', ['from nni_lightnas.strategies import LightNAS',
                                   'from nni_lightnas.strategies import SinglePathMixedLayer'])
def test_nni_strategies_still_import_after_ours(first):
    code = (f'{first}\n'
            'from nni.nas.strategy import Proxyless, GumbelDARTS\n'
            'print(Proxyless.__module__, GumbelDARTS.__module__)\n'
            "Proxyless(penalty=None, warmup_epochs=1)\n")
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    # not nni.nas.strategy.oneshot's ImportFailedStrategy placeholders
    assert result.stdout.split() == ['nni.nas.oneshot.pytorch.strategy'] * 2

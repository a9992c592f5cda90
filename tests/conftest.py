"""Shared fixtures and settings of the test suite."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import nni_lightnas  # noqa: F401  (silences NNI's import-time warnings)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get('NNI_LIGHTNAS_SHARED', REPO_ROOT.parent / 'shared'))
LIGHTNETS_JSON = SHARED_DIR / 'data' / 'lightnets.json'

torch.set_num_threads(2)


@pytest.fixture(scope='session')
def published_lightnets() -> list[dict]:
    """The authors' released LightNets (shared/data/lightnets.json)."""
    if not LIGHTNETS_JSON.is_file():
        pytest.skip(f'{LIGHTNETS_JSON} not found (set NNI_LIGHTNAS_SHARED to the shared/ directory)')
    return json.loads(LIGHTNETS_JSON.read_text())['lightnets']


@pytest.fixture(scope='module')
def one_torch_thread():
    """One torch thread for a module of short CPU training runs: on the shared 2-core machine two
    threads contend and run several times slower. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

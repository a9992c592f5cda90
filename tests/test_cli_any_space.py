"""``nni-lightnas profile --space`` and ``search --space`` on a user's own model space (the KWS example)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nni_lightnas.cli import main

pytestmark = pytest.mark.usefixtures('one_torch_thread')

REPO = Path(__file__).resolve().parents[1]
SPACE = f'{REPO}/examples/nni_spaces/kws_space.py:KWSSpace'
SPACE_ARGS = '{"channels": 8, "num_blocks": 2}'
DATA = f'{REPO}/examples/nni_spaces/kws_space.py:generated_kws_features'


def _last_json(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith('{')][-1])


def test_profile_then_search_a_user_space_from_the_command_line(tmp_path, capsys):
    lut = tmp_path / 'lut.csv'
    assert main(['profile', '--space', SPACE, '--space-args', SPACE_ARGS, '--input-shape', '2x40x49',
                 '--output', str(lut), '--runs', '5', '--warmup', '1']) == 0
    profiled = _last_json(capsys.readouterr().out)
    assert profiled['layers'] == 2 and profiled['input_shape'] == [2, 40, 49] and lut.is_file()
    assert profiled['instances'] == {'block0': 1, 'block1': 1}
    assert main(['search', '--space', SPACE, '--space-args', SPACE_ARGS, '--data', DATA,
                 '--data-args', '{"num_examples": 128}', '--latency', str(lut), '--target-quantile', '0.5',
                 '--epochs', '2', '--warmup-epochs', '1', '--batch-size', '32', '--output', str(tmp_path / 's')]) == 0
    summary = json.loads((tmp_path / 's' / 'summary.json').read_text())
    assert set(summary['sample']) == {'block0', 'block1'} and summary['arch'] == summary['arch_string']
    # another width is another space: its LUT is refused
    assert main(['search', '--space', SPACE, '--space-args', '{"channels": 16, "num_blocks": 2}', '--data', DATA,
                 '--latency', str(lut), '--target-quantile', '0.5', '--output', str(tmp_path / 't')]) == 2
    assert 'another space' in capsys.readouterr().err


@pytest.mark.parametrize('argv,message', [
    (['profile', '--space', SPACE, '--output', 'x.csv'], 'needs --input-shape'),
    (['profile', '--space', 'no_colon_here', '--input-shape', '1,40,49', '--output', 'x.csv'],
     'must be package.module:Name'),
    (['profile', '--space', SPACE, '--space-args', '[1]', '--input-shape', '1,40,49', '--output', 'x.csv'],
     'must be a JSON object'),
    (['profile', '--space', SPACE, '--input-shape', '1,forty', '--output', 'x.csv'], 'positive integers'),
    (['profile', '--space', SPACE, '--input-shape', '1,40,49', '--output', 'x.csv', '--correct', 'bbssp'],
     'for our presets'),
    (['profile', '--space', 'nni.nas.hub.pytorch:MobileNetV3Space', '--input-shape', '1,3,32,32',
      '--output', 'x.csv'], "module 'stem.0' of type MutableConv2d"),
])
def test_bad_space_options_are_one_line_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err

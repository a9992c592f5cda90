"""CLI: --help, space show, export (called through main([...]))."""

from __future__ import annotations

import json
import subprocess
import sys

import onnx

from nni_lightnas.cli import SUBCOMMANDS, main


def test_help_lists_subcommands():
    result = subprocess.run([sys.executable, '-m', 'nni_lightnas', '--help'], capture_output=True, text=True)
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert name in result.stdout


def test_space_show_json(capsys):
    assert main(['space', 'show', '--preset', 'imagenet', '--json']) == 0
    data = json.loads(capsys.readouterr().out)
    assert data['num_layers'] == 21 and len(data['ops']) == 7
    assert data['layers'][0] == {'label': 'layer00', 'stage': 0, 'in_chs': 16, 'out_chs': 24, 'stride': 2,
                                 'input_size': 112}


def test_export_writes_a_checked_onnx_file(tmp_path, capsys):
    output = tmp_path / 'net.onnx'
    arch = 'MBK3E6-skip-MBK5E3-MBK7E6-MBK3E3-MBK3E3-skip-MBK5E6'
    assert main(['export', '--preset', 'fashion_mnist', '--arch', arch, '--batch', '2', '-o', str(output)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['arch'] == arch and report['max_abs_diff'] <= 1e-4
    model = onnx.load(str(output))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 1, 28, 28]


def test_export_bad_arch_is_a_clear_error(tmp_path, capsys):
    code = main(['export', '--preset', 'fashion_mnist', '--arch', 'MBK9X-skip', '-o', str(tmp_path / 'x.onnx')])
    assert code == 2
    assert "unknown op name 'MBK9X'" in capsys.readouterr().err

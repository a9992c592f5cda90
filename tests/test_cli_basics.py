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


def test_cli_hides_known_third_party_warnings_unless_verbose():
    """NNI's nni.trace advice and Lightning's tips do not apply to one-shot runs; anything else still shows."""
    code = ('import warnings, logging, sys\n'
            'from nni_lightnas.cli import main\n'
            'main(sys.argv[1:])\n'
            "warnings.warn('When using training service, please try to wrap PyTorch DataLoader with nni.trace')\n"
            "warnings.warn('an unrelated warning')\n"
            "logging.getLogger('pytorch_lightning.utilities.rank_zero').info('Tip: try a cloud logger')\n")
    quiet = subprocess.run([sys.executable, '-c', code, 'space', 'show', '--preset', 'tiny'],
                           capture_output=True, text=True)
    assert quiet.returncode == 0, quiet.stderr
    assert 'an unrelated warning' in quiet.stderr
    assert 'nni.trace' not in quiet.stderr and 'Tip:' not in quiet.stderr
    verbose = subprocess.run([sys.executable, '-c', code, '-v', 'space', 'show', '--preset', 'tiny'],
                             capture_output=True, text=True)
    assert verbose.returncode == 0, verbose.stderr
    assert 'nni.trace' in verbose.stderr and 'Tip: try a cloud logger' in verbose.stderr

"""User errors through the real CLI: one line naming the value and what is accepted, no traceback.

Each bad input of issue 17 that used to end in a traceback, a vague message or a wrong
answer is fed to ``python -m nni_lightnas`` in a subprocess; a full disk is a file size limit
(``RLIMIT_FSIZE``), an unreachable board a closed loopback port.
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
from pathlib import Path

import pytest

TINY_ARCH = 'MBK3E6-skip-MBK5E3'


def _cli(*args: str, cwd: Path | None = None, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'nni_lightnas', *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, preexec_fn=preexec_fn)


def _one_line_error(completed: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """The error line, after checking the exit code, that it is one line, and that it names ``fragments``."""
    assert completed.returncode == code, (completed.returncode, completed.stderr[-3000:])
    assert 'Traceback' not in completed.stderr, completed.stderr[-3000:]
    lines = [line for line in completed.stderr.splitlines() if 'error:' in line]
    assert len(lines) == 1, completed.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def tiny_onnx(tmp_path_factory) -> Path:
    from nni_lightnas.export import export_onnx
    from nni_lightnas.search_spaces import LightNet
    return export_onnx(LightNet(TINY_ARCH, 'tiny'), tmp_path_factory.mktemp('onnx') / 'net.onnx', (1, 1, 28, 28))


def test_bad_onnx_files_are_named(tmp_path, tiny_onnx):
    garbage = tmp_path / 'notes.onnx'
    garbage.write_text('this is not a model')
    truncated = tmp_path / 'cut.onnx'
    truncated.write_bytes(tiny_onnx.read_bytes()[:len(tiny_onnx.read_bytes()) // 2])
    for path, fragment in [(garbage, 'is not a valid ONNX file'), (truncated, 'is not a valid'),
                           (tmp_path, 'is a directory; expected an .onnx file')]:
        _one_line_error(_cli('measure', str(path)), 2, str(path), fragment)
    verbose = _cli('measure', str(garbage), '--verbose')
    assert verbose.returncode == 2 and 'Traceback' in verbose.stderr  # --verbose keeps the traceback


def test_an_unreachable_board_fails_at_once_naming_host_port_and_check(tiny_onnx):
    port = _closed_port()
    completed = _cli('measure', str(tiny_onnx), '--device', f'ssh://nobody@127.0.0.1:{port}',
                     '--ssh-option', 'StrictHostKeyChecking=no')
    _one_line_error(completed, 1, f'127.0.0.1 port {port} is unreachable', 'not retried', f'ssh -p {port}')


def test_output_under_a_file_and_a_directory_as_output_are_refused_before_work(tmp_path):
    blocker = tmp_path / 'notes.txt'
    blocker.write_text('a file where a directory should be')
    _one_line_error(_cli('profile', '--preset', 'tiny', '-o', str(blocker / 'lut.csv')), 2,
                    str(blocker), 'is a file, not a directory')
    _one_line_error(_cli('export', '--preset', 'tiny', '--arch', TINY_ARCH, '-o', str(tmp_path)), 2,
                    str(tmp_path), 'is a directory')


def test_a_full_disk_during_export_leaves_nothing_half_written(tmp_path, tiny_onnx):
    limit = tiny_onnx.stat().st_size // 2

    def small_disk():  # the child may write files of at most `limit` bytes (EFBIG past that)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    output = tmp_path / 'out' / 'net.onnx'
    completed = _cli('export', '--preset', 'tiny', '--arch', TINY_ARCH, '-o', str(output), preexec_fn=small_disk)
    _one_line_error(completed, 1, 'cannot write', 'File too large')
    assert not output.exists()
    assert list(output.parent.iterdir()) == []  # no temporary file left either


@pytest.mark.parametrize('text, fragments', [
    ('search: {epochs: 3\n  bad: [\n', ['YAML syntax error at line 3']),
    ('search: {epochz: 6}\n', ['search.epochz: unknown setting; accepted: ', 'epochs']),
    ('search: {epochs: six}\n', ["search.epochs: 'six' (a str) is not an integer >= 1"]),
    ('target_quantiles: 0.4\n', ['target_quantiles: 0.4 (a float) is not a non-empty list', 'e.g. [0.4]']),
    ('target_quantiles: []\n', ['target_quantiles: [] is not a non-empty list of numbers in (0, 1)']),
    ('targets_ms: [1.0, -2]\n', ['targets_ms: [1.0, -2] is not a non-empty list of numbers > 0']),
    ('preset: tinyy\n', ["preset: 'tinyy' is not a preset; accepted: ", 'tiny']),
    ('evolve: {population_size: 2, sample_size: 5}\n', ['evolve.sample_size: 5 must be at most']),
    ('quick:\n  train: {epochs: 0}\n', ['quick.train.epochs: 0 (an int) is not an integer >= 1']),
])
def test_pipeline_config_errors_name_file_key_and_value_before_any_work(tmp_path, text, fragments):
    from nni_lightnas.cli import main
    config = tmp_path / 'pipeline.yml'
    run_dir = tmp_path / 'run'
    config.write_text(f'run_dir: {run_dir}\n{text}')
    completed = _cli('pipeline', '--config', str(config), '--quick') if 'YAML' in fragments[0] else None
    if completed is not None:  # one through a real subprocess, the others in-process (same code path)
        _one_line_error(completed, 2, str(config), *fragments)
    else:
        assert main(['pipeline', '--config', str(config), '--quick']) == 2
    assert not run_dir.exists()  # nothing profiled, nothing written


def test_evolve_refuses_an_infeasible_budget_before_writing(tmp_path):
    output = tmp_path / 'experiment'
    completed = _cli('evolve', '--lightnet', TINY_ARCH, '--preset', 'tiny', '--budget-ms', '0.0001',
                     '--latency-args', json.dumps({'intercept_ms': 0.05, 'ms_per_mmac': 0.2}), '--output', str(output))
    _one_line_error(completed, 2, '--budget-ms 0.0001 is infeasible', 'accepted: --budget-ms >= ')
    assert not output.exists()


def test_full_width_digits_in_an_op_name_are_refused(tmp_path):
    full_width = 'MBK\uff13E\uff16'  # MBK3E6 with full-width digits
    completed = _cli('export', '--preset', 'tiny', '--arch', f'{full_width}-skip-skip', '-o', str(tmp_path / 'n.onnx'))
    _one_line_error(completed, 2, "unknown op name 'MBK\uff13E\uff16'", 'accepted: MBK3E3')


def test_an_internal_bug_keeps_its_traceback(monkeypatch):
    from nni_lightnas import cli
    from nni_lightnas.cli import space

    def broken(args):
        raise KeyError('a bug, not a user error')
    monkeypatch.setattr(space, 'run', broken)
    with pytest.raises(KeyError, match='a bug'):
        cli.main(['space', 'show'])


def test_error_lines_map_os_errors_to_the_fix():
    import errno

    from nni_lightnas.cli.errors import describe_user_error
    message, code = describe_user_error(OSError(errno.ENOSPC, 'No space left on device', 'runs/lut.csv'))
    assert code == 1 and message == 'cannot write runs/lut.csv: No space left on device; free some space or write ' \
                                    'elsewhere'
    message, code = describe_user_error(FileExistsError(errno.EEXIST, 'File exists', 'runs/notes.txt'))
    assert code == 2 and 'a file is in the way' in message
    assert describe_user_error(KeyboardInterrupt())[1] == 130
    assert describe_user_error(AttributeError('bug')) is None

"""The ssh:// device against a real sshd on 127.0.0.1 (see sshd_fixture.py)."""

from __future__ import annotations

import json
import logging
import os
import socket
import statistics
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from nni_lightnas.latency import LocalDevice
from nni_lightnas.latency.device_pool import make_device
from nni_lightnas.latency.errors import (BoardSetupError, DeviceError, MeasurementTimeout, SSHAuthError,
                                         SSHConnectionError, SSHHostKeyError)
from nni_lightnas.latency.ssh import SSHDevice, classify_ssh_failure, parse_ssh_url, parse_trtexec_output
from sshd_fixture import free_port, keygen, sshd  # noqa: F401

# trtexec 8.6 output (abridged) as printed on a Jetson; numbers are made up.
TRTEXEC_SAMPLE = textwrap.dedent("""\
    &&&& RUNNING TensorRT.trtexec [TensorRT v8602] # /usr/src/tensorrt/bin/trtexec --onnx=model.onnx
    [11/24/2026-10:00:00] [I] TensorRT version: 8.6.2
    [11/24/2026-10:00:09] [I] === Performance summary ===
    [11/24/2026-10:00:09] [I] Throughput: 1523.41 qps
    [11/24/2026-10:00:09] [I] Latency: min = 0.708008 ms, max = 1.52344 ms, mean = 0.75 ms, median = 0.741699 ms, percentile(90%) = 0.773438 ms, percentile(95%) = 0.786133 ms, percentile(99%) = 0.911377 ms
    [11/24/2026-10:00:09] [I] Enqueue Time: min = 0.302979 ms, max = 0.8 ms, mean = 0.33 ms, median = 0.32 ms, percentile(90%) = 0.35 ms, percentile(95%) = 0.36 ms, percentile(99%) = 0.5 ms
    [11/24/2026-10:00:09] [I] H2D Latency: min = 0.0187988 ms, max = 0.05 ms, mean = 0.021 ms, median = 0.02 ms, percentile(90%) = 0.023 ms, percentile(95%) = 0.024 ms, percentile(99%) = 0.03 ms
    [11/24/2026-10:00:09] [I] GPU Compute Time: min = 0.634766 ms, max = 1.43848 ms, mean = 0.66 ms, median = 0.655273 ms, percentile(90%) = 0.684082 ms, percentile(95%) = 0.695312 ms, percentile(99%) = 0.82373 ms
    [11/24/2026-10:00:09] [I] D2H Latency: min = 0.00390625 ms, max = 0.01 ms, mean = 0.005 ms, median = 0.0048 ms, percentile(90%) = 0.006 ms, percentile(95%) = 0.007 ms, percentile(99%) = 0.009 ms
    [11/24/2026-10:00:09] [I] Total Host Walltime: 3.00125 s
    [11/24/2026-10:00:09] [I] Total GPU Compute Time: 2.99 s
    &&&& PASSED TensorRT.trtexec [TensorRT v8602]
    """)
TRTEXEC7_SAMPLE = ('[09/10/2020-10:00:00] [I] GPU Compute: min: 1.25 ms, max: 2.5 ms, mean: 1.3 ms, '
                   'median: 1.28 ms, percentile: 1.9 ms at 99%\n')


def test_parse_trtexec_output():
    sections = parse_trtexec_output(TRTEXEC_SAMPLE)
    gpu = sections['gpu_compute']
    assert gpu['median'] == pytest.approx(0.655273)
    assert gpu['min'] == pytest.approx(0.634766) and gpu['max'] == pytest.approx(1.43848)
    assert gpu['mean'] == pytest.approx(0.66) and gpu['p99'] == pytest.approx(0.82373)
    assert sections['latency']['median'] == pytest.approx(0.741699)  # not the H2D line
    assert sections['h2d']['median'] == pytest.approx(0.02)
    assert sections['throughput_qps'] == pytest.approx(1523.41)
    old = parse_trtexec_output(TRTEXEC7_SAMPLE)['gpu_compute']
    assert old['median'] == pytest.approx(1.28) and old['p99'] == pytest.approx(1.9)
    with pytest.raises(ValueError, match='GPU Compute Time'):
        parse_trtexec_output('[I] Total GPU Compute Time: 2.99 s\n')


def test_parse_ssh_url_and_make_device_errors():
    assert parse_ssh_url('ssh://nvidia@10.0.0.5:2222').port == 2222
    assert parse_ssh_url('ssh://xavier').user is None
    for bad in ('nvidia@host', 'ssh://', 'ssh://u@h:22/path', 'ssh://u:pw@h'):
        with pytest.raises(ValueError, match='ssh://'):
            parse_ssh_url(bad)
    with pytest.raises(ValueError, match=r'accepted: local, ssh://'):
        make_device('jetson')
    with pytest.raises(ValueError, match='ssh:// devices only'):
        make_device('local', identity_file='~/.ssh/id_ed25519')
    device = make_device('ssh://nvidia@jetson:22', identity_file='/k', ssh_options=['ProxyJump=gw'],
                         remote_python='/usr/bin/python3', num_runs=7)
    argv = device.ssh_command('true')
    assert isinstance(device, SSHDevice) and device.num_runs == 7
    assert 'BatchMode=yes' in argv and argv[argv.index('-i') + 1] == '/k' and 'ProxyJump=gw' in argv
    assert argv[argv.index('-p') + 1] == '22' and argv[-3:] == ['nvidia@jetson', '--', 'true']


def test_classify_ssh_failure_messages():
    def kind(stderr):
        return classify_ssh_failure(stderr, url='ssh://u@board:2222', host='board', port=2222)
    error = kind('No ED25519 host key is known for [board]:2222 and you have requested strict checking.\n'
                 'Host key verification failed.\n')
    assert isinstance(error, SSHHostKeyError) and 'ssh-keyscan -p 2222 board' in str(error)
    error = kind('u@board: Permission denied (publickey).\n')
    assert isinstance(error, SSHAuthError) and 'ssh-copy-id -p 2222 u@board' in str(error)
    error = kind('ssh: connect to host board port 2222: Connection refused\n')
    assert isinstance(error, SSHConnectionError) and not error.transient and 'unreachable' in str(error)
    assert 'board port 2222' in str(error) and 'ssh -p 2222 u@board true' in str(error)
    error = kind('ssh: Could not resolve hostname board: Name or service not known\n')
    assert isinstance(error, SSHConnectionError) and not error.transient
    assert 'dropped' in str(kind('Connection to board closed by remote host.\n'))


def _export_tiny(tmp_path: Path, batch: int = 16) -> Path:
    from nni_lightnas.export import export_onnx
    from nni_lightnas.search_spaces import LightNet
    return export_onnx(LightNet('MBK3E6-skip-MBK5E3', 'tiny'), tmp_path / 'tiny.onnx', (batch, 1, 28, 28))


def test_ssh_measures_like_local(sshd, tmp_path):
    path = _export_tiny(tmp_path)
    ssh = sshd.device(num_runs=60, num_warmup_runs=10)
    local = LocalDevice(num_runs=60, num_warmup_runs=10)
    ssh_results, local_results = [], []
    for _ in range(3):  # interleaved: the machine's load drifts
        ssh_results.append(ssh.measure(path))
        local_results.append(local.measure(path))
    first = ssh_results[0]
    assert first.device == sshd.url and first.runs == 60 and first.input_shape == [16, 1, 28, 28]
    assert sorted(first.to_dict()) == sorted(local_results[0].to_dict())
    for key in ('clocks_locked', 'nvpmodel' if 'nvpmodel' in first.facts else 'host', 'lock_wait_s',
                'measure_start_unix', 'ssh_attempts'):
        assert key in first.facts
    ssh_ms = statistics.median(r.median_ms for r in ssh_results)
    local_ms = statistics.median(r.median_ms for r in local_results)
    spread = max(r.iqr_ms for r in ssh_results + local_results)
    # same runtime, same machine: the medians agree within the measurement spread (or 25 %)
    assert abs(ssh_ms - local_ms) <= max(3 * spread, 0.25 * local_ms), (ssh_ms, local_ms, spread)


def test_ssh_config_alias(sshd, tmp_path):
    config = tmp_path / 'ssh_config'
    config.write_text(f'Host board\n  HostName {sshd.host}\n  Port {sshd.port}\n  User {sshd.user}\n'
                      f'  IdentityFile {sshd.user_key}\n  IdentitiesOnly yes\n'
                      f'  UserKnownHostsFile {sshd.known_hosts}\n  StrictHostKeyChecking yes\n')
    device = SSHDevice('ssh://board', ssh_config=config, remote_python=sshd.remote_python,
                       remote_dir=sshd.remote_dir, num_runs=5, num_warmup_runs=1)
    assert device.check()['onnxruntime']
    assert device.measure(_export_tiny(tmp_path, batch=1)).runs == 5


def test_wrong_key_is_an_auth_error(sshd, tmp_path):
    other_key = keygen(tmp_path / 'other_key')
    start = time.monotonic()
    with pytest.raises(SSHAuthError) as caught:
        sshd.device(identity_file=other_key, retries=3).measure(_export_tiny(tmp_path, batch=1))
    assert sshd.host in str(caught.value) and str(other_key) in str(caught.value)
    assert 'ssh-copy-id' in str(caught.value) and 'gave up' not in str(caught.value)  # not retried
    assert time.monotonic() - start < 30


def test_unknown_host_key_is_refused(sshd, tmp_path):
    empty = tmp_path / 'known_hosts'
    empty.write_text('')
    options = [f'UserKnownHostsFile={empty}', 'GlobalKnownHostsFile=/dev/null', 'StrictHostKeyChecking=yes']
    with pytest.raises(SSHHostKeyError, match=r'ssh-keyscan -p \d+ 127\.0\.0\.1'):
        sshd.device(ssh_options=options).measure(_export_tiny(tmp_path, batch=1))


def test_unreachable_host_fails_at_once_without_retries(sshd, tmp_path, caplog):
    port = free_port()
    device = sshd.device(url=f'ssh://{sshd.user}@127.0.0.1:{port}', retries=3, backoff_s=5.0)
    with caplog.at_level(logging.WARNING, logger='nni_lightnas.latency.ssh'):
        with pytest.raises(SSHConnectionError, match=rf'127\.0\.0\.1 port {port} is unreachable.*not retried') \
                as caught:
            device.measure(_export_tiny(tmp_path, batch=1))
    assert 'gave up' not in str(caught.value) and f'ssh -p {port}' in str(caught.value)
    assert not any('retrying' in record.message for record in caplog.records)


def test_board_without_onnxruntime_or_python(sshd, tmp_path):
    model = _export_tiny(tmp_path, batch=1)
    fake = tmp_path / 'fake_site'
    fake.mkdir()
    (fake / 'onnxruntime.py').write_text('raise ImportError("No module named onnxruntime")\n')
    wrapper = tmp_path / 'python_without_ort'
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={fake} exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    with pytest.raises(BoardSetupError, match=r'127\.0\.0\.1.*onnxruntime.*remote_python'):
        sshd.device(remote_python=str(wrapper)).measure(model)
    with pytest.raises(BoardSetupError, match=r'could not start .*/no/such/python3'):
        sshd.device(remote_python='/no/such/python3').measure(model)
    with pytest.raises(BoardSetupError, match='trtexec not found'):
        sshd.device(trtexec='/no/such/trtexec').measure(model)


@pytest.mark.parametrize('per_run_times', [True, False], ids=['exported-times', 'summary-only'])
def test_trtexec_path_with_a_stand_in(sshd, tmp_path, per_run_times):
    """A stand-in trtexec (prints the captured sample, maybe writes per-run times): parsed on the board."""
    fake = tmp_path / 'trtexec'
    fake.write_text(f'#!{sys.executable}\n' + textwrap.dedent(f'''\
        import json, sys
        args = dict(a.split('=', 1) for a in sys.argv[1:] if '=' in a)
        assert args['--onnx'].endswith('.onnx') and args['--iterations'] == '9' and '--fp16' in sys.argv
        if {per_run_times!r}:
            json.dump([{{"computeMs": 0.5 + 0.01 * i, "latencyMs": 0.6}} for i in range(9)],
                      open(args['--exportTimes'], 'w'))
        print({TRTEXEC_SAMPLE!r})
        '''))
    fake.chmod(0o755)
    result = sshd.device(trtexec=str(fake), trtexec_args=['--fp16'], num_runs=9).measure(_export_tiny(tmp_path, 1))
    assert result.provider == 'trtexec' and result.runtime == 'TensorRT trtexec 8.6.2'
    assert result.facts['trtexec_summary']['gpu_compute']['median'] == pytest.approx(0.655273)
    if per_run_times:  # median and quartiles of the per-inference GPU compute times
        assert result.median_ms == pytest.approx(0.54) and result.p25_ms == pytest.approx(0.52) and result.runs == 9
    else:  # the printed summary: its median, no quartiles
        assert result.median_ms == result.p25_ms == result.p75_ms == pytest.approx(0.655273)


def test_measurement_timeout(sshd, tmp_path):
    device = sshd.device(num_runs=10 ** 7, num_warmup_runs=0, timeout_s=1.5, max_attempts=1)
    with pytest.raises(MeasurementTimeout, match=r'127\.0\.0\.1.*timeout_s'):
        device.measure(_export_tiny(tmp_path, batch=1))


def test_concurrent_measurements_are_serialized_on_the_board(sshd, tmp_path):
    """Two workstations (two device objects, no shared local lock) on one board take turns."""
    import fcntl
    path = _export_tiny(tmp_path, batch=8)
    results, errors = [], []

    def run():
        try:
            results.append(sshd.device(num_runs=300, num_warmup_runs=5, max_attempts=1).measure(path))
        except DeviceError as error:  # pragma: no cover - reported below
            errors.append(error)
    # Hold the board lock until both runs wait on the board, so they really compete for it.
    held = os.open(sshd.device().board_lock, os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(held, fcntl.LOCK_EX)
    threads = [threading.Thread(target=run) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum('--runs' in _cmdline(pid) for pid in sshd.descendants()) < 2:
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        os.close(held)
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and len(results) == 2
    first, second = sorted(((r.facts['measure_start_unix'], r.facts['measure_end_unix']) for r in results))
    assert first[0] < first[1] <= second[0] < second[1], (first, second)
    assert min(r.facts['lock_wait_s'] for r in results) > 0  # both waited: the lock, not luck, kept them apart


def test_sshd_killed_mid_run_retries_then_fails_and_frees_the_board(sshd, tmp_path, caplog):
    path = _export_tiny(tmp_path, batch=1)
    device = sshd.device(num_runs=10 ** 6, num_warmup_runs=0, max_attempts=1, retries=2, backoff_s=0.2)
    outcome = {}

    def run():
        try:
            outcome['result'] = device.measure(path)
        except DeviceError as error:
            outcome['error'] = error
    with caplog.at_level(logging.WARNING, logger='nni_lightnas.latency.ssh'):
        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any('--runs' in _cmdline(pid) for pid in sshd.descendants()):
            time.sleep(0.1)
        time.sleep(1.0)  # the board is measuring
        port = sshd.port
        sshd.kill()
        thread.join(timeout=60)
    try:
        error = outcome.get('error')
        assert isinstance(error, SSHConnectionError), outcome
        # the drop is retried; the retry finds the port closed, which is not retried again
        assert '127.0.0.1' in str(error) and 'gave up after 2 attempts' in str(error)
        assert 'first failure' in str(error) and 'dropped' in str(error) and 'unreachable' in str(error)
        assert sum('retrying' in record.message for record in caplog.records) == 1
    finally:
        sshd.start(port)
    # the orphaned run on the board noticed its session was gone and released the board lock
    quick = sshd.device(num_runs=5, num_warmup_runs=0, lock_timeout_s=20)
    assert quick.measure(path).facts['lock_wait_s'] < 20


def _cmdline(pid: int) -> str:
    try:
        return Path(f'/proc/{pid}/cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace')
    except OSError:
        return ''


def test_cli_measure_over_ssh(sshd, tmp_path):
    """`nni-lightnas measure model.onnx --device ssh://... --json` prints the local keys."""
    import subprocess
    cli = Path(__file__).resolve().parents[1] / 'nni_lightnas' / 'cli' / 'measure.py'
    if not cli.is_file():
        pytest.skip('nni_lightnas/cli/measure.py (the measure subcommand) is not there yet')
    path = _export_tiny(tmp_path, batch=1)
    base = [sys.executable, '-m', 'nni_lightnas', 'measure', str(path), '--json', '--runs', '10']
    ssh = base + ['--device', sshd.url, '--ssh-identity', str(sshd.user_key),
                  '--remote-python', sshd.remote_python] + [arg for option in sshd.ssh_options
                                                            for arg in ('--ssh-option', option)]
    env = {**os.environ, 'HOME': str(tmp_path)}  # no ~/.ssh/config of this machine's user
    remote = subprocess.run(ssh, capture_output=True, text=True, timeout=120, env=env)
    assert remote.returncode == 0, remote.stderr[-2000:]
    local = subprocess.run(base + ['--device', 'local'], capture_output=True, text=True, timeout=120)
    assert local.returncode == 0, local.stderr[-2000:]
    remote_data, local_data = json.loads(remote.stdout), json.loads(local.stdout)
    assert remote_data['device'] == sshd.url and sorted(remote_data) == sorted(local_data)


def test_lut_build_over_ssh_resumes_after_a_drop(sshd, tmp_path):
    """sshd dies after 3 rows: the build stops with a clear error; the rerun measures only the rest."""
    from nni_lightnas.latency.lut_build import build_lut, lut_entries
    from nni_lightnas.search_spaces import StageSpec, get_preset
    space = get_preset('tiny', stages=(StageSpec(16, 1, 2),))  # one searchable layer: 10 rows
    table = tmp_path / 'one_layer_lut.csv'
    total = len([entry for entry in lut_entries(space, 1) if entry.kind != 'overhead'])
    finished = []

    def drop_after_three(row):
        finished.append(row)
        if len(finished) == 3:
            sshd.kill()
    port = sshd.port
    device = sshd.device(num_runs=5, num_warmup_runs=1, max_attempts=1, retries=1, backoff_s=0.1)
    try:
        with pytest.raises(SSHConnectionError, match=r'127\.0\.0\.1.*unreachable'):
            build_lut(space, device, batch=1, path=table, overhead=False, on_row=drop_after_three)
    finally:
        if sshd.proc is None:
            sshd.start(port)
    calls = []
    resumed = sshd.device(num_runs=5, num_warmup_runs=1, max_attempts=1)
    measure_file = resumed._measure_onnx_file
    resumed._measure_onnx_file = lambda path: calls.append(path) or measure_file(path)
    lut = build_lut(space, resumed, batch=1, path=table, overhead=False)
    assert len(calls) == total - 3
    assert len(lut.table) == total and lut.metadata['device'] == sshd.url
    first = {(row['layer'], row['op']): row['median_ms'] for row in finished}
    kept = {(row['layer'], row['op']): row['median_ms'] for row in lut.table.to_dict('records')}
    assert all(kept[key] == pytest.approx(value) for key, value in first.items())  # not re-measured


def test_measure_group_interleaves_on_the_board(sshd, tmp_path):
    from nni_lightnas.export import export_onnx
    from nni_lightnas.search_spaces import LightNet
    small = export_onnx(LightNet('skip-skip-skip', 'tiny'), tmp_path / 'small.onnx', (8, 1, 28, 28))
    large = export_onnx(LightNet('MBK7E6-MBK7E6-MBK7E6', 'tiny'), tmp_path / 'large.onnx', (8, 1, 28, 28))
    results = sshd.device(num_runs=60, num_warmup_runs=5, max_attempts=1).measure_group([small, large, small])
    assert [r.device for r in results] == [sshd.url] * 3
    assert len({r.facts['measure_start_unix'] for r in results}) == 1  # one session, one lock hold
    assert results[1].median_ms > results[0].median_ms and results[1].median_ms > results[2].median_ms


def test_cpu_clock_on_the_board(sshd, tmp_path):
    result = sshd.device(num_runs=20, num_warmup_runs=2, clock='cpu').measure(_export_tiny(tmp_path, batch=4))
    assert result.median_ms > 0 and result.facts.get('clock', getattr(result, 'clock', None)) == 'cpu'
    with pytest.raises(ValueError, match='threads=1'):
        sshd.device(clock='cpu', threads=2)


def test_a_host_that_never_answers_fails_within_the_connect_timeout_without_retries(tmp_path):
    """A port that accepts TCP but never speaks SSH (like a filtered address): one ConnectTimeout, no retry."""
    from nni_lightnas.latency.ssh import SSHDevice
    with socket.socket() as listener:  # never accept()ed: the kernel queues the connection, no banner comes
        listener.bind(('127.0.0.1', 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        device = SSHDevice(f'ssh://nobody@127.0.0.1:{port}', connect_timeout_s=2, retries=3, backoff_s=30,
                           ssh_options=['StrictHostKeyChecking=no', 'UserKnownHostsFile=/dev/null'])
        with pytest.raises(SSHConnectionError, match=rf'127\.0\.0\.1 port {port} is unreachable.*not retried') \
                as caught:
            device.measure(_export_tiny(tmp_path, batch=1))  # would take 3 x 30 s of backoff if retried
    assert 'timed out' in str(caught.value) and 'gave up' not in str(caught.value)


def test_the_workstation_knows_every_board_error_kind_it_maps_and_the_board_exit_codes_are_distinct():
    from nni_lightnas.latency import ssh, ssh_board
    assert set(ssh.BOARD_ERRORS) <= set(ssh_board.EXIT_CODES)  # no kind the board never reports
    codes = list(ssh_board.EXIT_CODES.values()) + [ssh_board.EXIT_CALLER_GONE, ssh.SSH_EXIT]
    assert len(set(codes)) == len(codes) and 0 not in codes and 127 not in codes

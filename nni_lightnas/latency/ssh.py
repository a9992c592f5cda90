"""The ``ssh://`` device: time ONNX models on a board (a Jetson) reached over SSH.

The system OpenSSH client does the connecting, so the user's ``~/.ssh/config`` (aliases,
``ProxyJump``, ``ControlMaster``), keys and agent all apply; it runs with ``BatchMode=yes``
and never prompts. Each measurement is one SSH session that:

1. ships ``runner.py``, ``ssh_board.py``, ``board_trtexec.py`` and ``board_power.py`` (a
   few kB, so the board never runs stale code; Python 3.6 compatible, for JetPack 4) and the
   ONNX file, through the session's stdin;
2. on the board, takes an exclusive ``flock`` on ``board_lock`` (``/tmp/nni-lightnas-board.lock``,
   one file for every user of the board): one measurement at a time per board, whichever
   workstation, user, trial or pool asks;
3. runs ``trtexec`` (when configured; its GPU compute times, from an engine built once per
   network, precision and TensorRT version and kept on the board) or ONNX Runtime (TensorRT /
   CUDA execution providers when present, else CPU), optionally samples the board's power
   rails for the energy per inference, and reads board facts (nvpmodel mode, whether clocks
   are locked);
4. prints one JSON line, read back into a :class:`~nni_lightnas.latency.device.LatencyResult`.

The board needs Python 3 and ``onnxruntime`` (or ``trtexec``); no NNI (NNI 3.0 has no
aarch64 wheel), no torch. Failures raise subclasses of
:class:`~nni_lightnas.latency.errors.DeviceError` naming the host and the fix; transient
ones (refused or dropped connections, a busy board) are retried with exponential backoff.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit

from .device import Device, LatencyResult
from .errors import (BoardBusyError, BoardSetupError, DeviceError, MeasurementError, MeasurementTimeout,
                     SSHAuthError, SSHConnectionError, SSHHostKeyError)
from .ssh_board import EXIT_CALLER_GONE, parse_trtexec_output

__all__ = ['SSHDevice', 'SSHTarget', 'parse_ssh_url', 'parse_trtexec_output', 'classify_ssh_failure',
           'onnx_structure_sha256']

_logger = logging.getLogger(__name__)
_HERE = Path(__file__).resolve().parent
_BOARD_FILES = ('runner.py', 'ssh_board.py', 'board_trtexec.py', 'board_power.py')
SSH_EXIT = 255
DEFAULT_BOARD_LOCK = '/tmp/nni-lightnas-board.lock'

# Runs on the board under `python3 -c`: unpack the shipped files, then hand over to ssh_board.
# Python 3.6-compatible on purpose (JetPack 4).
_BOOTSTRAP = '''import sys, os, json, base64
d = os.path.expanduser(sys.argv[1])
os.makedirs(d, exist_ok=True)
h = json.loads(sys.stdin.buffer.readline().decode("utf-8"))
for n, c in h["files"].items():
    p = os.path.join(d, n); t = p + ".%d" % os.getpid()
    with open(t, "wb") as f:
        f.write(base64.b64decode(c))
    os.replace(t, p)
sys.path.insert(0, d)
import ssh_board
sys.exit(ssh_board.main(["--dir", d] + sys.argv[2:]))
'''


_FLOAT_TYPES = (1, 10, 11, 16)  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def onnx_structure_sha256(model: bytes) -> str:
    """sha256 of an ONNX model without its floating-point weight values: the engine cache id.

    Two exports of one architecture with other random weights build the same TensorRT
    engine timings, so a LUT profiled again reuses the engines of the first profile. Shapes,
    dtypes, the graph and integer tensors (reshape targets) stay in the hash. Falls back to
    the file's sha256 when ``onnx`` cannot read it.

    Examples
    --------
    >>> onnx_structure_sha256(b'not onnx') == hashlib.sha256(b'not onnx').hexdigest()
    True
    """
    try:
        import onnx
        proto = onnx.load_model_from_string(model)
    except Exception:  # noqa: BLE001 - any unreadable model: hash its bytes
        return hashlib.sha256(model).hexdigest()
    for tensor in proto.graph.initializer:
        if tensor.data_type in _FLOAT_TYPES:
            for name in ('raw_data', 'float_data', 'double_data', 'int32_data'):
                tensor.ClearField(name)
    return hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()


@dataclass(frozen=True)
class SSHTarget:
    """Where to connect: ``user@host:port`` (user and port optional: ``~/.ssh/config`` decides)."""

    host: str
    user: str | None = None
    port: int | None = None

    @property
    def destination(self) -> str:
        return f'{self.user}@{self.host}' if self.user else self.host

    @property
    def url(self) -> str:
        host = f'[{self.host}]' if ':' in self.host else self.host
        user = f'{self.user}@' if self.user else ''
        port = f':{self.port}' if self.port is not None else ''
        return f'ssh://{user}{host}{port}'


def parse_ssh_url(spec: str) -> SSHTarget:
    """Parse ``ssh://[user@]host[:port]`` (host may be a ``~/.ssh/config`` alias or ``[IPv6]``).

    Examples
    --------
    >>> parse_ssh_url('ssh://nvidia@jetson.local:2222')
    SSHTarget(host='jetson.local', user='nvidia', port=2222)
    >>> parse_ssh_url('ssh://xavier').url
    'ssh://xavier'
    """
    if not isinstance(spec, str) or not spec.startswith('ssh://'):
        raise ValueError(f'SSH device must look like ssh://[user@]host[:port], got {spec!r}')
    parts = urlsplit(spec)
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError(f'bad port in SSH device {spec!r}: {error}') from None
    if not parts.hostname or parts.path not in ('', '/') or parts.query or parts.fragment or parts.password:
        raise ValueError(f'SSH device must look like ssh://[user@]host[:port] (no path, password or query), '
                         f'got {spec!r}')
    return SSHTarget(host=parts.hostname, user=parts.username or None, port=port)


_HOST_KEY = re.compile(r'Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|'
                       r'No \S+ host key is known|host key for .* has changed', re.I)
_AUTH = re.compile(r'Permission denied|Too many authentication failures|Authentication failed|'
                   r'no mutual signature', re.I)
_RESOLVE = re.compile(r'Could not resolve hostname|Name or service not known|nodename nor servname', re.I)
_UNREACHABLE = re.compile(r'Connection refused|Connection timed out|timed out during banner exchange|'
                          r'No route to host|Network is unreachable|Operation timed out|Host is down', re.I)
_DROPPED = re.compile(r'Connection closed|Connection reset|Broken pipe|closed by remote host|'
                      r'Timeout, server .* not responding|client_loop|kex_exchange_identification|'
                      r'Connection to .* closed', re.I)


#: Board error kinds (:data:`~nni_lightnas.latency.ssh_board.EXIT_CODES`) with a fix of their own: the
#: error raised here and the hint added to the board's message (others: :class:`MeasurementError`).
BOARD_ERRORS: dict[str, tuple[type[DeviceError], str]] = {
    'onnxruntime_missing': (BoardSetupError, '. Install ONNX Runtime for that python on {host} (Jetson: the '
                            'onnxruntime-gpu wheel for your JetPack from the Jetson Zoo, or `pip3 install '
                            'onnxruntime`), point remote_python / --remote-python at a python that has it, or use '
                            'trtexec=True'),
    'trtexec_missing': (BoardSetupError, '. On a Jetson it ships with JetPack in /usr/src/tensorrt/bin; pass '
                        'trtexec=/full/path'),
    'lock_timeout': (BoardBusyError, '; raise lock_timeout_s or use a device pool'),
    'timeout': (MeasurementTimeout, '; raise timeout_s'),
    'no_power_rails': (BoardSetupError, '. This board exposes no INA3221 rails to this user; measure without '
                       'energy=True, or check power_root'),
}


def _destination(url: str, host: str) -> str:
    try:
        return parse_ssh_url(url).destination
    except ValueError:
        return host


def classify_ssh_failure(stderr: str, *, url: str, host: str, port: int | None = None,
                         identity_file: str | None = None) -> DeviceError:
    """Map the OpenSSH client's stderr (exit code 255) to a :class:`DeviceError` with a fix.

    Examples
    --------
    >>> error = classify_ssh_failure('root@h: Permission denied (publickey).', url='ssh://root@h', host='h')
    >>> type(error).__name__
    'SSHAuthError'
    """
    detail = ' '.join(stderr.strip().splitlines()[-3:]) or '(no message from ssh)'
    port_flag = f'-p {port} ' if port is not None else ''
    if _HOST_KEY.search(stderr):
        return SSHHostKeyError(
            f'{url}: host key of {host} is unknown or changed ({detail}). Verify the board, then record its key: '
            f'`ssh-keyscan {port_flag}{host} >> ~/.ssh/known_hosts` (or connect once interactively); if the '
            f'board was reinstalled, remove the old key with `ssh-keygen -R {host}` first', host=host)
    if _AUTH.search(stderr):
        key = f'identity file {identity_file}' if identity_file else 'your keys (ssh-agent, ~/.ssh/id_*)'
        return SSHAuthError(
            f'{url}: {host} refused {key} ({detail}). Install the public key on the board '
            f'(`ssh-copy-id {port_flag}{_destination(url, host)}`), '
            f'check the user name, or pass the right key (identity_file= / --ssh-identity)', host=host)
    if _RESOLVE.search(stderr):
        return SSHConnectionError(
            f'{url}: cannot resolve host name {host!r} ({detail}). Check the spelling, DNS/mDNS, or add a '
            f'Host entry to ~/.ssh/config', host=host, transient=False)
    if _UNREACHABLE.search(stderr):
        # Refused or timed out before any session: a board that is off or a wrong port does not
        # come back within a backoff, so this fails at once (within ssh's ConnectTimeout).
        return SSHConnectionError(
            f'{url}: {host} port {port or 22} is unreachable ({detail}); not retried. Check that the board is '
            f'powered on and on the network (`ping {host}`) and that sshd listens on that port '
            f'(`ssh {port_flag}{_destination(url, host)} true`)', host=host, transient=False)
    if _DROPPED.search(stderr):
        return SSHConnectionError(
            f'{url}: connection to {host} dropped during the run ({detail}). Check the board (power, '
            f'network, sshd); the measurement was not completed', host=host)
    return SSHConnectionError(f'{url}: ssh to {host} failed ({detail})', host=host)


class SSHDevice(Device):
    """A board reached with the system OpenSSH client; measures with trtexec or ONNX Runtime there.

    Parameters
    ----------
    target
        ``ssh://[user@]host[:port]`` or an :class:`SSHTarget`; ``host`` may be an alias of
        ``~/.ssh/config``.
    identity_file
        Private key to use (``ssh -i``, with ``IdentitiesOnly=yes``); default: the agent and
        ``~/.ssh/config``.
    ssh_options
        Extra ``ssh -o`` options, e.g. ``['UserKnownHostsFile=/path', 'ProxyJump=gateway']``.
    ssh_config
        An ssh config file to use in place of ``~/.ssh/config`` (``ssh -F``).
    remote_python
        The board's Python 3 (name or absolute path): the one that has ``onnxruntime``.
    remote_dir
        Working directory on the board (shipped scripts, temporary models).
    board_lock
        The lock file on the board that serializes measurements. Keep the default (one path
        for every user and workstation) unless one machine plays several boards (tests).
    trtexec
        Measure with TensorRT's ``trtexec`` (``True`` for ``trtexec`` on PATH or in
        ``/usr/src/tensorrt/bin``, or its path) instead of ONNX Runtime.
    trtexec_args
        Extra trtexec arguments, e.g. ``['--fp16']``. Precision, shape and builder flags
        are part of the engine cache key; ``--onnx``, ``--saveEngine``, ``--loadEngine``,
        ``--timingCacheFile``, ``--iterations``, ``--warmUp`` ... are set by the measurement.
    engine_cache
        trtexec engine cache on the board: ``True`` (``<remote_dir>/engines``), a directory,
        or ``False`` (build every time). Engines are keyed by the ONNX model's structure
        (:func:`onnx_structure_sha256`: graph, shapes, dtypes, not the float weight values),
        the TensorRT version, the engine flags and the board model; builds share a timing cache.
    engine_cache_mb
        Size limit of the engine cache; the least recently used engines go first.
    trtexec_version
        The board's TensorRT version, when neither ``trtexec --help`` nor ``libnvinfer.so.X.Y.Z``
        tells it (it picks the per-run time source: TensorRT 7 has no usable ``--exportTimes``).
    energy
        Measure the energy per inference (``facts['energy_mj']``, mJ) from the board's
        INA3221 power rails: idle power sampled for ``idle_s`` first, then subtracted from
        the mean power during the timed runs. Single models only (an interleaved group
        cannot be split).
    power_root
        Root of the sysfs tree holding the rails on the board (``/``; a simulated tree in tests).
    idle_s, power_interval_ms
        Idle sampling time and power sampling period.
    providers
        ONNX Runtime execution providers on the board (default: TensorRT, CUDA when
        present, then CPU).
    connect_timeout_s
        ``ssh -o ConnectTimeout``.
    timeout_s
        Limit of one measurement on the board (after its lock is taken).
    lock_timeout_s
        How long to wait for the board's lock (another measurement running); ``None``: forever.
    retries, backoff_s
        Transient failures (refused or dropped connections, busy board) are retried this
        many times, after ``backoff_s``, ``2 * backoff_s``, ... seconds.
    ssh_binary
        The OpenSSH client executable.
    clock
        ONNX Runtime timer on the board: ``wall`` (default, the latency) or ``cpu`` (the
        measuring thread's CPU time; see :mod:`~nni_lightnas.latency.runner`).
    **kwargs
        See :class:`~nni_lightnas.latency.device.Device` (``num_runs``, ``threads``, ...).

    Notes
    -----
    :meth:`measure` takes no lock on this machine: the board's own ``flock`` serializes
    measurements from every workstation and trial. :meth:`measure_group` sends all models
    in one session and ONNX Runtime interleaves blocks of their runs on the board (trtexec measures
    them one after another).

    Examples
    --------
    >>> device = SSHDevice('ssh://nvidia@jetson:22', remote_python='/usr/bin/python3', num_runs=200)
    >>> device.name
    'ssh://nvidia@jetson:22'
    >>> device.measure('lightnet.onnx')  # doctest: +SKIP
    LatencyResult(median_ms=..., device='ssh://nvidia@jetson:22', facts={'nvpmodel': 'MAXN', ...})
    """

    def __init__(self, target: str | SSHTarget, *, identity_file: str | os.PathLike | None = None,
                 ssh_options: Sequence[str] = (), ssh_config: str | os.PathLike | None = None,
                 remote_python: str = 'python3', remote_dir: str = '~/.cache/nni-lightnas',
                 board_lock: str = DEFAULT_BOARD_LOCK,
                 trtexec: bool | str = False, trtexec_args: Sequence[str] = (), providers: Sequence[str] | None = None,
                 engine_cache: bool | str = True, engine_cache_mb: float = 2048.0, trtexec_version: str | None = None,
                 energy: bool = False, power_root: str = '/', idle_s: float = 1.0, power_interval_ms: float = 10.0,
                 connect_timeout_s: float = 10.0, timeout_s: float = 600.0, lock_timeout_s: float | None = 3600.0,
                 retries: int = 3, backoff_s: float = 2.0, ssh_binary: str = 'ssh', clock: str = 'wall', **kwargs):
        super().__init__(**kwargs)
        if clock not in ('wall', 'cpu'):
            raise ValueError(f"unknown clock {clock!r}; accepted: ('wall', 'cpu')")
        if clock == 'cpu' and (trtexec or self.threads != 1):
            raise ValueError(f"clock='cpu' needs ONNX Runtime with threads=1, got {trtexec=}, threads={self.threads}")
        self.clock = clock
        self.target = target if isinstance(target, SSHTarget) else parse_ssh_url(target)
        self.name = self.target.url
        self.identity_file = str(Path(identity_file).expanduser()) if identity_file else None
        if isinstance(ssh_options, str):
            ssh_options = [ssh_options]
        for option in ssh_options:
            if not re.match(r'^\w+[= ]', option):
                raise ValueError(f'ssh option must look like Name=value (as for ssh -o), got {option!r}')
        self.ssh_options = list(ssh_options)
        self.ssh_config = str(ssh_config) if ssh_config else None
        self.remote_python = remote_python
        self.remote_dir = remote_dir
        self.board_lock = board_lock
        self.trtexec = 'trtexec' if trtexec is True else (str(trtexec) if trtexec else None)
        self.trtexec_args = list(trtexec_args)
        if self.trtexec:
            from .board_trtexec import split_flags
            split_flags(self.trtexec_args)  # a flag the measurement sets itself: ValueError now, not on the board
        self.engine_cache = engine_cache
        if not engine_cache_mb > 0:
            raise ValueError(f'engine_cache_mb must be > 0, got {engine_cache_mb=}')
        self.engine_cache_mb = float(engine_cache_mb)
        self.trtexec_version = trtexec_version
        self.energy = bool(energy)
        self.power_root = power_root
        if not idle_s > 0 or not power_interval_ms > 0:
            raise ValueError(f'idle_s and power_interval_ms must be > 0, got {idle_s=}, {power_interval_ms=}')
        self.idle_s = float(idle_s)
        self.power_interval_ms = float(power_interval_ms)
        self.providers = list(providers) if providers else None
        if retries < 0:
            raise ValueError(f'retries must be >= 0, got {retries=}')
        if not timeout_s > 0 or not connect_timeout_s > 0:
            raise ValueError(f'timeouts must be > 0, got {timeout_s=}, {connect_timeout_s=}')
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self.lock_timeout_s = lock_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.ssh_binary = ssh_binary

    # ---------------------------------------------------------------- commands
    def ssh_command(self, remote_command: str) -> list[str]:
        """The ``ssh`` argv that runs ``remote_command`` (a shell string) on the board."""
        argv = [self.ssh_binary, '-T', '-o', 'BatchMode=yes', '-o', f'ConnectTimeout={self.connect_timeout_s:g}',
                '-o', 'ServerAliveInterval=5', '-o', 'ServerAliveCountMax=3']
        if self.ssh_config:
            argv += ['-F', self.ssh_config]
        if self.identity_file:
            argv += ['-i', self.identity_file, '-o', 'IdentitiesOnly=yes']
        if self.target.port is not None:
            argv += ['-p', str(self.target.port)]
        for option in self.ssh_options:
            argv += ['-o', option]
        return argv + [self.target.destination, '--', remote_command]

    def _board_args(self) -> list[str]:
        args = ['--lock-file', self.board_lock, '--runs', str(self.num_runs), '--warmup', str(self.num_warmup_runs),
                '--threads', str(self.threads), '--max-iqr-ratio', repr(self.max_iqr_ratio),
                '--max-attempts', str(self.max_attempts), '--timeout', repr(float(self.timeout_s))]
        if self.lock_timeout_s is not None:
            args += ['--lock-timeout', repr(float(self.lock_timeout_s))]
        if self.clock != 'wall':
            args += ['--clock', self.clock]
        if self.providers:
            args += ['--providers', *self.providers]
        if self.trtexec:
            args += ['--trtexec', self.trtexec]
            args += [f'--trtexec-arg={arg}' for arg in self.trtexec_args]
            if self.engine_cache is False:
                args += ['--engine-cache', 'off']
            elif isinstance(self.engine_cache, str):
                args += ['--engine-cache', self.engine_cache]
            args += ['--engine-cache-mb', repr(self.engine_cache_mb)]
            if self.trtexec_version:
                args += ['--trtexec-version', self.trtexec_version]
        if self.energy:
            args += ['--energy', '--power-root', self.power_root, '--idle-s', repr(self.idle_s),
                     '--power-interval-ms', repr(self.power_interval_ms)]
        return args

    def _remote_command(self) -> str:
        return shlex.join([self.remote_python, '-c', _BOOTSTRAP, self.remote_dir, *self._board_args()])

    @staticmethod
    def _payload(models: Sequence[bytes]) -> bytes:
        files = {name: base64.b64encode((_HERE / name).read_bytes()).decode('ascii') for name in _BOARD_FILES}
        header = {'models': [{'size': len(model), 'sha256': hashlib.sha256(model).hexdigest(),
                              'engine_id': onnx_structure_sha256(model)} for model in models]}
        return b''.join([json.dumps({'files': files}).encode('utf-8'), b'\n',
                         json.dumps(header).encode('utf-8'), b'\n', *models])

    def run_remote(self, remote_command: str, *, stdin: bytes = b'', timeout_s: float = 60.0,
                   keep_stdin_open: bool = False) -> tuple[int, str, str]:
        """Run a shell command on the board; returns (exit code, stdout, stderr).

        With ``keep_stdin_open`` the session's stdin stays open until the command exits (the
        board-side script uses its closing to notice that the caller went away).
        Raises :class:`MeasurementTimeout` after ``timeout_s``.
        """
        argv = self.ssh_command(remote_command)
        _logger.debug('%s: %s', self.name, shlex.join(argv[:-1]) + ' <remote command>')
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise BoardSetupError(f'{self.name}: the OpenSSH client {self.ssh_binary!r} is not installed here '
                                  f'(Debian/Ubuntu: apt install openssh-client)', host=self.target.host) from None
        out: list[bytes] = []
        err: list[bytes] = []
        readers = [threading.Thread(target=lambda s=stream, b=buffer: b.append(s.read()), daemon=True)
                   for stream, buffer in ((proc.stdout, out), (proc.stderr, err))]
        for reader in readers:
            reader.start()
        try:
            proc.stdin.write(stdin)
            proc.stdin.flush()
            if not keep_stdin_open:
                proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # ssh exited early (auth failure, ...): its stderr says why
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise MeasurementTimeout(
                f'{self.name}: no answer from {self.target.host} within {timeout_s:.0f} s; the run on the board was '
                f'stopped. Raise timeout_s (a TensorRT engine build can take minutes) or check the board',
                host=self.target.host) from None
        finally:
            for reader in readers:
                reader.join(timeout=5)
            if proc.stdin and not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        return proc.returncode, b''.join(out).decode('utf-8', 'replace'), b''.join(err).decode('utf-8', 'replace')

    # ---------------------------------------------------------------- measuring
    @contextlib.contextmanager
    def hold(self) -> Iterator['SSHDevice']:
        """Nothing to hold here: the board takes its own lock (``flock`` on ``lock_file``) for each run,
        whichever workstation, user or trial asks."""
        yield self

    def _measure_onnx_file(self, path: Path) -> LatencyResult:
        return self._measure_onnx_group([path])[0]

    def _measure_onnx_group(self, paths: Sequence[Path]) -> list[LatencyResult]:
        """One SSH session for all ``paths``: ONNX Runtime interleaves blocks of their runs on the board."""
        payload = self._payload([Path(path).read_bytes() for path in paths])
        command = self._remote_command()
        lock_wait = self.lock_timeout_s if self.lock_timeout_s is not None else 7 * 24 * 3600.0
        deadline_s = self.timeout_s + lock_wait + 2 * self.connect_timeout_s + 30
        errors: list[DeviceError] = []
        for attempt in range(self.retries + 1):
            try:
                data = self._run_once(command, payload, deadline_s)
            except DeviceError as error:
                errors.append(error)
                if not error.transient or attempt == self.retries:
                    break
                delay = self.backoff_s * 2 ** attempt
                _logger.warning('%s: attempt %d of %d failed (%s); retrying in %.1f s', self.name, attempt + 1,
                                self.retries + 1, error, delay)
                time.sleep(delay)
                continue
            facts = dict(data.get('facts') or {})
            facts['ssh_attempts'] = attempt + 1
            results = data.get('results')
            if not isinstance(results, list) or len(results) != len(paths):
                raise MeasurementError(f'{self.name}: the board answered {len(results or [])} results for '
                                       f'{len(paths)} models', host=self.target.host)
            return [LatencyResult.from_runner(item, device=self.name, **facts) for item in results]
        last = errors[-1]
        if len(errors) > 1:
            first = f'; first failure: {errors[0]}' if str(errors[0]) != str(last) else ''
            raise type(last)(f'{last} [gave up after {len(errors)} attempts{first}]', host=last.host,
                             transient=last.transient) from last
        raise last

    def _run_once(self, command: str, payload: bytes, timeout_s: float) -> dict[str, Any]:
        code, stdout, stderr = self.run_remote(command, stdin=payload, timeout_s=timeout_s, keep_stdin_open=True)
        host = self.target.host
        data = None
        for line in reversed(stdout.strip().splitlines()):
            if line.startswith('{'):
                try:
                    data = json.loads(line)
                except ValueError:
                    continue
                break
        if isinstance(data, dict) and 'error' in data:
            kind = data['error'].get('kind', 'runtime')
            message = data['error'].get('message', '')
            if kind not in BOARD_ERRORS:
                raise MeasurementError(f'{self.name}: measurement failed on {host} ({kind}): {message}', host=host)
            error_class, hint = BOARD_ERRORS[kind]
            raise error_class(f'{self.name}: {message}{hint.format(host=host)}', host=host)
        if code == 0 and isinstance(data, dict) and 'results' in data:
            return data
        if code == SSH_EXIT:
            raise classify_ssh_failure(stderr, url=self.name, host=host, port=self.target.port,
                                       identity_file=self.identity_file)
        tail = ' '.join(stderr.strip().splitlines()[-3:])
        if code == 127 or re.search(r'(command )?not found|No such file or directory', tail) and not data:
            raise BoardSetupError(
                f'{self.name}: the board could not start {self.remote_python!r} ({tail or "exit 127"}). Install '
                f'Python 3 on {host} or set remote_python / --remote-python to its absolute path', host=host)
        if code == EXIT_CALLER_GONE:
            raise SSHConnectionError(f'{self.name}: the board lost our session mid-run (exit {code}); retrying',
                                     host=host)
        if code < 0 or code > 128:  # the remote shell or python was killed (sshd gone, OOM, reboot)
            raise SSHConnectionError(f'{self.name}: the run on {host} was killed (exit {code}): {tail}', host=host)
        raise MeasurementError(f'{self.name}: the board returned exit code {code} without a result: '
                               f'{tail or stdout[-500:]}', host=host)

    def check(self) -> dict[str, Any]:
        """Connect once and report the board's python, onnxruntime and trtexec (no measurement).

        Raises the same errors as :meth:`measure` when the board cannot be reached.
        """
        probe = ('import json, platform, shutil, sys\n'
                 'try:\n    import onnxruntime as o; ort = o.__version__; eps = o.get_available_providers()\n'
                 'except Exception as e:\n    ort = None; eps = str(e)\n'
                 'print(json.dumps({"python": sys.executable, "version": platform.python_version(), '
                 '"onnxruntime": ort, "providers": eps, "trtexec": shutil.which("trtexec") or '
                 '(shutil.which("trtexec", path="/usr/src/tensorrt/bin"))}))\n')
        command = shlex.join([self.remote_python, '-c', probe])
        code, stdout, stderr = self.run_remote(command, timeout_s=self.connect_timeout_s + 30)
        if code == SSH_EXIT:
            raise classify_ssh_failure(stderr, url=self.name, host=self.target.host, port=self.target.port,
                                       identity_file=self.identity_file)
        if code != 0:
            raise BoardSetupError(f'{self.name}: {self.remote_python!r} failed on the board (exit {code}): '
                                  f'{stderr.strip()[-300:]}; set remote_python to a working Python 3',
                                  host=self.target.host)
        return json.loads(stdout.strip().splitlines()[-1])

    def extra_repr(self) -> str:
        extra = f'{self.name!r}, remote_python={self.remote_python!r}'
        if self.identity_file:
            extra += f', identity_file={self.identity_file!r}'
        if self.trtexec:
            extra += f', trtexec={self.trtexec!r}, engine_cache={self.engine_cache!r}'
        if self.energy:
            extra += ', energy=True'
        return f'{extra}, {super().extra_repr()}'

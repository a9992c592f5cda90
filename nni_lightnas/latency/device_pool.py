"""The device factory (:func:`make_device`: devices by name) and pools of boards that serve concurrent trials.

:func:`make_device` turns a device spec (``local``, ``ssh://user@host:port``, or several
comma-separated boards) into a :class:`~nni_lightnas.latency.device.Device`.
:class:`DevicePool` hands each measurement a free board: NNI trials are separate
processes, so boards are taken with one lock file per board on this machine (non-blocking
tries over the pool, then a short sleep), and each board still serializes measurements
from other machines with its own lock.

Examples
--------
>>> make_device('local', num_runs=20).name
'local'
>>> pool = make_device('ssh://nvidia@nano1,ssh://nvidia@nano2')
>>> [board.name for board in pool.devices]
['ssh://nvidia@nano1', 'ssh://nvidia@nano2']
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from .device import DEFAULT_LOCK_DIR, Device, LatencyResult
from .errors import (BoardBusyError, BoardSetupError, DeviceError, MeasurementError, MeasurementTimeout,
                     SSHAuthError, SSHConnectionError, SSHHostKeyError)
from .local import LocalDevice
from .ssh import SSHDevice

__all__ = [
    'make_device', 'DevicePool', 'DEVICE_SPECS', 'SSH_OPTIONS',
    'DeviceError', 'SSHConnectionError', 'SSHAuthError', 'SSHHostKeyError', 'BoardSetupError',
    'BoardBusyError', 'MeasurementTimeout', 'MeasurementError',
]

_logger = logging.getLogger(__name__)

DEVICE_SPECS = ('local', 'ssh://[user@]host[:port]', 'several of those joined by commas (a pool)')
#: Options only SSH devices take; ``None`` values are ignored for other devices.
SSH_OPTIONS = ('identity_file', 'ssh_options', 'ssh_config', 'remote_python', 'remote_dir', 'trtexec',
               'trtexec_args', 'connect_timeout_s', 'timeout_s', 'lock_timeout_s', 'retries', 'backoff_s',
               'ssh_binary')


def make_device(spec: str | Sequence[str] | Device, **options: Any) -> Device:
    """Build a device from a spec string.

    Parameters
    ----------
    spec
        ``'local'`` (ONNX Runtime here), ``'ssh://[user@]host[:port]'`` (a board over SSH;
        ``host`` may be an alias of ``~/.ssh/config``), several of them joined by commas or
        given as a list (a :class:`DevicePool`), or a ``Device`` (returned as is).
    **options
        Keyword arguments of the device class: ``num_runs``, ``num_warmup_runs``,
        ``threads``, ... for all; ``identity_file``, ``ssh_options``, ``remote_python``,
        ``trtexec``, ... for SSH (see :class:`~nni_lightnas.latency.ssh.SSHDevice`). SSH
        options set to ``None`` are ignored, so a CLI can pass them through unconditionally.

    Examples
    --------
    >>> make_device('ssh://root@127.0.0.1:2222', remote_python='/usr/bin/python3').name
    'ssh://root@127.0.0.1:2222'
    >>> make_device('gpu0')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown device 'gpu0'; accepted: local, ssh://[user@]host[:port], ...
    """
    if isinstance(spec, Device):
        return spec
    if not isinstance(spec, str):
        specs = list(spec)
        if len(specs) == 1:
            return make_device(specs[0], **options)
        return DevicePool(specs, **options)
    parts = [part.strip() for part in spec.split(',') if part.strip()]
    if not parts:
        raise ValueError(f'empty device spec {spec!r}; accepted: {", ".join(DEVICE_SPECS)}')
    if len(parts) > 1:
        return DevicePool(parts, **options)
    spec = parts[0]
    options = {key: value for key, value in options.items() if value is not None}
    if spec == 'local':
        ssh_only = [key for key in ('identity_file', 'ssh_config', 'ssh_options', 'trtexec', 'trtexec_args')
                    if options.get(key)]
        if ssh_only:
            raise ValueError(f'options {ssh_only} apply to ssh:// devices only, not to {spec!r}')
        options = {key: value for key, value in options.items() if key not in SSH_OPTIONS}
        return LocalDevice(**options)
    if spec.startswith('ssh://'):
        return SSHDevice(spec, **options)
    raise ValueError(f'unknown device {spec!r}; accepted: {", ".join(DEVICE_SPECS)}')


class DevicePool(Device):
    """Several boards of one kind; each measurement takes a free one.

    Concurrent NNI trials (separate processes on this machine) each get their own board:
    a board is taken by locking ``<lock_dir>/pool-<board>.lock`` with non-blocking tries
    over the pool (starting at a random board), sleeping ``poll_s`` when all are taken.

    Parameters
    ----------
    devices
        Devices or device specs (``ssh://...``); at least one, no duplicates.
    lock_dir
        Directory of the per-board lock files; every process sharing the pool must use the
        same one (default: the system temp directory).
    poll_s
        Sleep between rounds of tries when every board is busy.
    acquire_timeout_s
        Give up (:class:`~nni_lightnas.latency.errors.BoardBusyError`) after this long;
        ``None``: wait forever.
    **options
        Passed to :func:`make_device` for specs.

    Examples
    --------
    >>> pool = DevicePool(['local', LocalDevice(threads=2)])  # doctest: +SKIP
    >>> with pool.acquire() as board:  # doctest: +SKIP
    ...     result = board.measure('model.onnx')
    """

    def __init__(self, devices: Sequence[Device | str], *, lock_dir: str | os.PathLike | None = None,
                 poll_s: float = 0.2, acquire_timeout_s: float | None = None, **options: Any):
        super().__init__()
        boards = [make_device(device, **options) if isinstance(device, str) else device for device in devices]
        if not boards:
            raise ValueError('a device pool needs at least one device')
        if any(isinstance(board, DevicePool) for board in boards):
            raise ValueError('a device pool cannot contain another pool')
        names = [board.name for board in boards]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f'device pool lists {duplicates} more than once; each board once')
        self.devices = boards
        self.name = 'pool(' + ','.join(names) + ')'
        self.lock_dir = Path(lock_dir) if lock_dir is not None else DEFAULT_LOCK_DIR
        self.poll_s = poll_s
        self.acquire_timeout_s = acquire_timeout_s

    def __len__(self) -> int:
        return len(self.devices)

    def _lock_path(self, device: Device) -> Path:
        safe = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in device.name)
        return self.lock_dir / f'pool-{safe}.lock'

    @contextlib.contextmanager
    def acquire(self, timeout_s: float | None = None) -> Iterator[Device]:
        """Take a free board for the duration of the ``with`` block (cross-process)."""
        from filelock import FileLock, Timeout
        timeout_s = self.acquire_timeout_s if timeout_s is None else timeout_s
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        order = list(range(len(self.devices)))
        while True:
            offset = random.randrange(len(order))
            for index in order[offset:] + order[:offset]:
                device = self.devices[index]
                lock = FileLock(str(self._lock_path(device)), timeout=0)
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    continue
                try:
                    _logger.debug('%s: took %s after %.2f s', self.name, device.name, time.monotonic() - start)
                    yield device
                    return
                finally:
                    lock.release()
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                raise BoardBusyError(f'{self.name}: every board stayed busy for {timeout_s:.0f} s; add boards or '
                                     f'raise acquire_timeout_s', host=self.name)
            time.sleep(self.poll_s)

    @contextlib.contextmanager
    def hold(self) -> Iterator[Device]:
        """Take the first free board (:meth:`acquire`), then hold that board as it holds itself."""
        with self.acquire() as board, board.hold() as held:
            yield held

    def result_facts(self) -> dict[str, Any]:
        return {'pool': self.name}

    def _measure_onnx_file(self, path: Path) -> LatencyResult:
        raise RuntimeError(f'{self.name} measures on its boards: hold() yields the board that times')

    def extra_repr(self) -> str:
        return ', '.join(repr(device) for device in self.devices)

"""A real OpenSSH server on 127.0.0.1 for tests: the "board" of ssh:// devices.

Installs nothing: it starts Debian's ``/usr/sbin/sshd`` (installed by ``scripts/setup.sh
--test``) in the foreground on a free port, with a host key, a user key, an
``authorized_keys`` and a ``known_hosts`` it generates in a temp dir. As root the login
user is root; otherwise sshd can only log in the user running it. The board's Python is
this interpreter (``sys.executable``), which has onnxruntime.

Usage in a test module::

    from sshd_fixture import sshd  # noqa: F401  (the module-scoped fixture)

    def test_x(sshd):
        device = sshd.device(num_runs=20)
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

SSHD = Path('/usr/sbin/sshd')
SSH_KEYGEN = shutil.which('ssh-keygen') or '/usr/bin/ssh-keygen'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run([SSH_KEYGEN, '-q', '-t', 'ed25519', '-N', '', '-C', 'nni-lightnas-test', '-f', str(path)],
                   check=True, stdin=subprocess.DEVNULL)
    return path


class SSHServer:
    """sshd on 127.0.0.1:``port`` with keys in ``root``; ``device()`` makes an SSHDevice for it."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.user = 'root' if os.geteuid() == 0 else getpass.getuser()
        self.host = '127.0.0.1'
        self.host_key = keygen(self.root / 'host_key')
        self.user_key = keygen(self.root / 'user_key')
        (self.root / 'authorized_keys').write_text((self.root / 'user_key.pub').read_text())
        os.chmod(self.root / 'authorized_keys', 0o600)
        self.known_hosts = self.root / 'known_hosts'
        self.remote_python = sys.executable
        self.remote_dir = str(self.root / 'board')
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f'ssh://{self.user}@{self.host}:{self.port}'

    @property
    def ssh_options(self) -> list[str]:
        return [f'UserKnownHostsFile={self.known_hosts}', 'GlobalKnownHostsFile=/dev/null',
                'StrictHostKeyChecking=yes', 'LogLevel=ERROR']

    def device(self, **options):
        """An SSHDevice for this server (no ~/.ssh/config: ``ssh -F /dev/null``)."""
        from nni_lightnas.latency.ssh import SSHDevice
        defaults = dict(identity_file=self.user_key, ssh_options=self.ssh_options, ssh_config='/dev/null',
                        remote_python=self.remote_python, remote_dir=self.remote_dir,
                        board_lock=str(self.root / 'board.lock'), retries=1, backoff_s=0.2,
                        connect_timeout_s=5)
        defaults.update(options)
        url = defaults.pop('url', self.url)
        return SSHDevice(url, **defaults)

    def _write_config(self) -> Path:
        config = self.root / 'sshd_config'
        config.write_text('\n'.join([
            f'Port {self.port}', f'ListenAddress {self.host}', f'HostKey {self.host_key}',
            f'AuthorizedKeysFile {self.root / "authorized_keys"}', 'StrictModes no',
            f'PidFile {self.root / "sshd.pid"}', 'UsePAM no', 'PasswordAuthentication no',
            'KbdInteractiveAuthentication no', 'PubkeyAuthentication yes', 'PermitRootLogin prohibit-password',
            'Subsystem sftp internal-sftp', 'MaxStartups 64', 'MaxSessions 64', 'LogLevel VERBOSE',
            'PrintMotd no', '']))
        return config

    def start(self, port: int | None = None) -> 'SSHServer':
        if os.geteuid() == 0:
            Path('/run/sshd').mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        for _ in range(5):
            self.port = port or free_port()
            config = self._write_config()
            log = open(self.root / 'sshd.log', 'ab')
            self.proc = subprocess.Popen([str(SSHD), '-D', '-e', '-f', str(config)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                        if sock.recv(64).startswith(b'SSH-'):
                            break
                except OSError:
                    time.sleep(0.05)
            if self.proc.poll() is None:
                host_key = (self.root / 'host_key.pub').read_text().split()[:2]
                self.known_hosts.write_text(''.join(f'[{name}]:{self.port} {" ".join(host_key)}\n'
                                                    for name in (self.host, 'localhost')))
                return self
            if port:
                break
        raise RuntimeError(f'sshd did not start; its log:\n{(self.root / "sshd.log").read_text()[-2000:]}')

    def descendants(self) -> list[int]:
        """Pids of sshd's whole process tree (sessions, their shells and commands)."""
        if self.proc is None:
            return []
        children: dict[int, list[int]] = {}
        for entry in Path('/proc').iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / 'stat').read_text().rsplit(')', 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            for child in children.get(pid, []):
                found.append(child)
                todo.append(child)
        return found

    def kill(self) -> None:
        """Kill sshd and its per-connection processes (not the commands they run): a crash."""
        if self.proc is None:
            return
        pids = [pid for pid in self.descendants() if _comm(pid) == 'sshd']
        for pid in [self.proc.pid, *pids]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            for pid in [pid for pid in self.descendants() if _comm(pid) == 'sshd']:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def _comm(pid: int) -> str:
    try:
        return Path(f'/proc/{pid}/comm').read_text().strip()
    except OSError:
        return ''


def require_sshd() -> None:
    if not SSHD.is_file():
        pytest.skip(f'{SSHD} not found: install openssh-server (scripts/setup.sh --test does)')


@pytest.fixture(scope='module')
def sshd():
    """A running :class:`SSHServer` for the test module; stopped afterwards."""
    require_sshd()
    root = Path(tempfile.mkdtemp(prefix='nni-lightnas-sshd-'))
    server = SSHServer(root).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

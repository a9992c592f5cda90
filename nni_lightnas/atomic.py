"""Atomic file writes: a reader sees the old file or the whole new one, never a torn one.

Every artifact we write (ONNX models, LUTs, JSON summaries, CSV tables, reports, weights)
goes through :func:`atomic_write`: the content is written to a temporary file in the same
directory, flushed and ``fsync``-ed, then renamed over the target with :func:`os.replace`
(atomic on POSIX within one file system). When the write fails (a full disk, a quota, a
kill), the temporary file is removed and the target is left as it was.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / 'summary.json'
>>> _ = atomic_write_json(path, {'latency_ms': 0.5})
>>> path.read_text()
'{\\n  "latency_ms": 0.5\\n}'
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ['atomic_write', 'atomic_write_text', 'atomic_write_bytes', 'atomic_write_json', 'check_output_path']

_logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = 'w', *, encoding: str | None = 'utf-8',
                 newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit, fsync it and rename it to ``path``.

    Parameters
    ----------
    path
        The file to (re)place; its parent directories are created.
    mode
        ``'w'`` (text) or ``'wb'`` (binary).
    encoding, newline
        As for :func:`open`, text mode only.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / 'rows.csv'
    >>> with atomic_write(path) as file:
    ...     _ = file.write('a,b\\n1,2\\n')
    >>> path.read_text()
    'a,b\\n1,2\\n'
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode=}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, tmp_name = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        if mode == 'wb':
            file = os.fdopen(descriptor, 'wb')
        else:
            file = os.fdopen(descriptor, 'w', encoding=encoding, newline=newline)
        with file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (best effort: some file systems refuse to open a directory)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        _logger.debug('fsync of directory %s not supported', directory)
    finally:
        os.close(descriptor)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = 'utf-8') -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_write(path, 'w', encoding=encoding) as file:
        file.write(text)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_write(path, 'wb') as file:
        file.write(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, value: Any, *, indent: int | None = 2,
                      default: Any = None) -> Path:
    """Write ``value`` as JSON to ``path`` atomically; returns the path."""
    return atomic_write_text(path, json.dumps(value, indent=indent, default=default))


def check_output_path(path: str | os.PathLike, *, what: str = 'output', directory: bool = False) -> Path:
    """Refuse, before any work, an output path that cannot be created; returns it as a ``Path``.

    A file must not be a directory (and a directory not a file), and the nearest existing
    ancestor must be a directory, not a file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> blocker = Path(tempfile.mkdtemp()) / 'notes.txt'
    >>> _ = blocker.write_text('a file')
    >>> check_output_path(blocker / 'lut.csv', what='--output')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --output .../notes.txt/lut.csv: .../notes.txt is a file, not a directory; choose another path
    """
    path = Path(path)
    if path.exists():
        if directory and not path.is_dir():
            raise ValueError(f'{what} {path} is a file; expected a directory')
        if not directory and path.is_dir():
            raise ValueError(f'{what} {path} is a directory; expected a file name inside it')
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ValueError(f'{what} {path}: {ancestor} is a file, not a directory; choose another path')
            break
    return path

"""Which errors are the user's, and the one line the CLI prints for each.

:func:`describe_user_error` maps an exception raised by a subcommand to a message and an
exit code, or to ``None`` for an internal bug (the CLI then lets the traceback through).

Exit codes:

* ``2``: a usage error, fixed by changing the command or its input files: a bad value
  (``ValueError``, :class:`CLIError`), a missing, unreadable or wrong file, a YAML error;
* ``1``: the environment failed: a full disk or another ``OSError`` while writing, a
  device or board that cannot be reached or cannot measure (:class:`~nni_lightnas.latency.errors.DeviceError`),
  an NNI experiment that does not start (:class:`ExperimentStartError`);
* ``130``: interrupted (Ctrl-C).

Examples
--------
>>> describe_user_error(ValueError('--batch must be >= 1, got 0'))
('--batch must be >= 1, got 0', 2)
>>> import errno
>>> describe_user_error(OSError(errno.ENOSPC, 'No space left on device', 'runs/net.onnx'))[1]
1
>>> describe_user_error(KeyError('arch')) is None
True
"""

from __future__ import annotations

import errno

__all__ = ['CLIError', 'ExperimentStartError', 'describe_user_error', 'USAGE_EXIT', 'ENVIRONMENT_EXIT']

USAGE_EXIT = 2
ENVIRONMENT_EXIT = 1
INTERRUPTED_EXIT = 130

#: errno values of a write that failed for lack of room or rights, with the fix to suggest.
_WRITE_FIXES = {
    errno.ENOSPC: 'free some space or write elsewhere',
    errno.EDQUOT: 'free some of your quota or write elsewhere',
    errno.EFBIG: 'the file size limit (ulimit -f) was reached; raise it or write elsewhere',
    errno.EROFS: 'the file system is read-only; write elsewhere',
    errno.EACCES: 'check the permissions or write elsewhere',
    errno.EPERM: 'check the permissions or write elsewhere',
}
#: errno values of a path that names the wrong kind of thing.
_PATH_FIXES = {
    errno.ENOENT: 'check the path',
    errno.EISDIR: 'it is a directory; give a file',
    errno.ENOTDIR: 'a parent of it is a file, not a directory; choose another path',
    errno.EEXIST: 'a file is in the way of a directory there; choose another path',
    errno.ENAMETOOLONG: 'shorten the path',
}


class CLIError(Exception):
    """A user error the CLI reports in one line (exit code 2)."""


class ExperimentStartError(RuntimeError):
    """An NNI experiment did not start, or its tuner failed at once (exit code 1)."""


def _os_error_line(error: OSError) -> tuple[str, int]:
    name = error.filename if error.filename is not None else None
    reason = error.strerror or str(error)
    where = f'{name}' if name is not None else 'a file'
    if error.filename2 is not None:
        where += f' -> {error.filename2}'
    if error.errno in _WRITE_FIXES:
        return f'cannot write {where}: {reason}; {_WRITE_FIXES[error.errno]}', ENVIRONMENT_EXIT
    if error.errno in _PATH_FIXES:
        if error.errno == errno.ENOENT and name is None and error.args:
            return str(error), USAGE_EXIT  # our own FileNotFoundError('LUT x does not exist')
        return f'{where}: {reason}; {_PATH_FIXES[error.errno]}', USAGE_EXIT
    if name is None and error.errno is None:
        return str(error), USAGE_EXIT if isinstance(error, FileNotFoundError) else ENVIRONMENT_EXIT
    return f'{where}: {reason}', ENVIRONMENT_EXIT


def describe_user_error(error: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit code of a user-caused ``error``; ``None`` for an internal bug."""
    if isinstance(error, KeyboardInterrupt):
        return 'interrupted; rerun the same command to resume where it stopped', INTERRUPTED_EXIT
    if isinstance(error, CLIError):
        return str(error), USAGE_EXIT
    if isinstance(error, UnicodeDecodeError):
        return (f'a file is not UTF-8 text ({error.reason} at byte {error.start}); expected a text file '
                f'(CSV, JSON or YAML)', USAGE_EXIT)
    if isinstance(error, ValueError):
        return str(error), USAGE_EXIT
    if isinstance(error, OSError):
        return _os_error_line(error)
    if isinstance(error, ExperimentStartError):
        return str(error), ENVIRONMENT_EXIT
    from nni_lightnas.pipeline import StageError
    if isinstance(error, StageError):
        return str(error), error.exit_code
    try:
        from nni_lightnas.latency.errors import DeviceError
    except ImportError:  # pragma: no cover - torch missing
        DeviceError = ()  # type: ignore[assignment,misc]
    if DeviceError and isinstance(error, DeviceError):
        return str(error), ENVIRONMENT_EXIT
    yaml_error = _yaml_error_type()
    if yaml_error is not None and isinstance(error, yaml_error):
        return f'YAML error: {" ".join(str(error).split())}', USAGE_EXIT
    return None


def _yaml_error_type():
    try:
        import yaml
    except ImportError:  # pragma: no cover
        return None
    return yaml.YAMLError

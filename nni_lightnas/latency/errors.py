"""Errors of latency devices: each names the device and says what to fix.

All derive from :class:`DeviceError`, so callers (the LUT builder, trials) can catch one
class. ``transient`` says whether trying again later may help (a dropped connection) or
not (a wrong key).

Examples
--------
>>> error = SSHAuthError('ssh://jetson@nano: key refused', host='nano')
>>> isinstance(error, DeviceError), error.transient
(True, False)
"""

from __future__ import annotations

__all__ = [
    'DeviceError', 'SSHConnectionError', 'SSHAuthError', 'SSHHostKeyError', 'BoardSetupError',
    'BoardBusyError', 'MeasurementTimeout', 'MeasurementError',
]


class DeviceError(RuntimeError):
    """A device could not measure; the message names the device and the fix.

    Parameters
    ----------
    message
        What happened, on which device, and what to do.
    host
        The host (or device name) concerned.
    transient
        Whether retrying later may succeed; defaults to the class attribute.
    """

    transient: bool = False

    def __init__(self, message: str, *, host: str | None = None, transient: bool | None = None):
        super().__init__(message)
        self.host = host
        if transient is not None:
            self.transient = transient

    def __reduce__(self):  # keep host/transient through pickling (NNI, multiprocessing)
        return (_rebuild, (type(self), str(self), self.host, self.transient))


def _rebuild(cls, message, host, transient):
    return cls(message, host=host, transient=transient)


class SSHConnectionError(DeviceError):
    """The host cannot be reached (not retried), or the connection dropped during a run (retried)."""

    transient = True


class SSHAuthError(DeviceError):
    """The SSH server refused every key offered (wrong user, key or agent)."""


class SSHHostKeyError(DeviceError):
    """The host key is unknown or changed (nothing is sent to an unverified host)."""


class BoardSetupError(DeviceError):
    """The board lacks what the measurement needs (python3, onnxruntime, trtexec)."""


class BoardBusyError(DeviceError):
    """The board's lock stayed taken by another measurement for too long."""

    transient = True


class MeasurementTimeout(DeviceError):
    """The measurement ran past its time limit."""


class MeasurementError(DeviceError):
    """The runtime on the board failed on this model (bad ONNX, unsupported op, ...)."""

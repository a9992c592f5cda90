"""Keep a benchmark's standard output for its JSON alone.

NNI's loggers and Lightning's progress bars write to the process's standard output, which a
benchmark's one JSON object shares. :func:`json_only_stdout` points file descriptor 1 at
standard error while the work runs (everything written there, from Python or from C, goes to
stderr) and hands back a writer to the real standard output.

Example::

    with json_only_stdout() as stdout:
        result = run_everything()          # logs and progress bars: stderr
        stdout.write(json.dumps(result) + '\\n')
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import IO, Iterator


def _stdout_log_handlers_to_stderr() -> None:
    """Point every logging handler that writes to standard output at standard error.

    NNI's handlers hold ``sys.stdout`` itself, and NNI logs again when it stops an experiment,
    after the block (at exit): those lines must not follow the JSON.
    """
    loggers = [logging.getLogger()] + [logger for logger in logging.Logger.manager.loggerDict.values()
                                       if isinstance(logger, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
                handler.setStream(sys.stderr)


@contextlib.contextmanager
def json_only_stdout() -> Iterator[IO[str]]:
    """Within the block, anything written to standard output lands on standard error; yields the real stdout.

    Log handlers on standard output keep writing to standard error after the block.
    """
    sys.stdout.flush()
    saved_fd = os.dup(1)
    os.dup2(2, 1)
    real_stdout = os.fdopen(os.dup(saved_fd), 'w')
    try:
        yield real_stdout
    finally:
        _stdout_log_handlers_to_stderr()
        real_stdout.flush()
        sys.stdout.flush()
        os.dup2(saved_fd, 1)
        os.close(saved_fd)
        real_stdout.close()

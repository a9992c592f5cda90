"""Devices that measure latency, and the result they return.

A :class:`Device` takes an ONNX model (a path, bytes, or an ``nn.Module`` it exports at a
given input shape) and returns a :class:`LatencyResult`. Every device measures through the
same two methods, :meth:`Device.measure` and :meth:`Device.measure_group`: export, hold the
device (:meth:`Device.hold`: a lock on this machine, the board's own lock over SSH, a free
board of a pool), time, report. Subclasses implement :meth:`Device._measure_onnx_file` (and,
to interleave runs, :meth:`Device._measure_onnx_group`) and, where it differs, :meth:`Device.hold`.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

__all__ = ['LatencyResult', 'Device', 'device_lock', 'DEFAULT_LOCK_DIR']

_logger = logging.getLogger(__name__)
DEFAULT_LOCK_DIR = Path(tempfile.gettempdir()) / 'nni-lightnas-locks'


@dataclass
class LatencyResult:
    """One latency measurement of one model on one device.

    Attributes
    ----------
    median_ms, p25_ms, p75_ms, mean_ms, min_ms
        Statistics of the per-run times, in milliseconds.
    cv
        Coefficient of variation (std / mean) of the runs.
    runs
        Number of timed runs in the kept attempt.
    device
        The device's name (``local``, ``ssh://user@host``).
    runtime, provider, threads
        What ran the model: runtime and version, execution provider, intra-op threads.
    input_shape
        The model's input shape, batch included.
    stable
        Whether the spread (IQR / median) was within the device's tolerance; ``attempts``
        says how many measurements it took.
    facts
        Anything else the device knows (host, clocks, power mode, ...).

    Examples
    --------
    >>> result = LatencyResult(median_ms=1.0, p25_ms=0.9, p75_ms=1.2, runs=50, device='local')
    >>> round(result.iqr_ms, 3)
    0.3
    >>> sorted(result.to_dict())[:3]
    ['attempts', 'cv', 'device']
    """

    median_ms: float
    p25_ms: float
    p75_ms: float
    runs: int
    device: str
    mean_ms: float | None = None
    min_ms: float | None = None
    cv: float | None = None
    runtime: str = ''
    provider: str = ''
    threads: int | None = None
    input_shape: list[int] = field(default_factory=list)
    warmup_runs: int | None = None
    attempts: int = 1
    stable: bool = True
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def iqr_ms(self) -> float:
        return self.p75_ms - self.p25_ms

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_runner(cls, data: dict[str, Any], device: str, **facts: Any) -> 'LatencyResult':
        """Build from the JSON dict of :func:`nni_lightnas.latency.runner.measure_onnx`."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        extra = {key: value for key, value in data.items() if key not in known}
        return cls(device=device, **{k: v for k, v in values.items() if k != 'device'},
                   facts={**extra, **facts})


@contextlib.contextmanager
def device_lock(name: str, lock_dir: str | os.PathLike | None = None,
                timeout_s: float | None = None) -> Iterator[Path]:
    """Hold an exclusive, cross-process file lock for device ``name``.

    Two concurrent measurements on one device corrupt each other; NNI trials are separate
    processes, so a thread lock is not enough. Uses ``filelock`` (pinned by NNI 3.0).
    """
    from filelock import FileLock, Timeout
    lock_dir = Path(lock_dir) if lock_dir is not None else DEFAULT_LOCK_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    safe = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in name)
    path = lock_dir / f'{safe}.lock'
    lock = FileLock(str(path), timeout=-1 if timeout_s is None else timeout_s)
    try:
        with lock:
            yield path
    except Timeout as error:
        raise TimeoutError(f'device {name!r} stayed busy for {timeout_s} s (lock {path})') from error


class Device(abc.ABC):
    """Something that times ONNX models: this machine, a board over SSH, ...

    Parameters
    ----------
    num_runs
        Timed runs per measurement.
    num_warmup_runs
        Untimed runs before them.
    threads
        Intra-op threads of the runtime (recorded with each result).
    max_iqr_ratio
        A measurement whose IQR exceeds this share of its median is repeated.
    max_attempts
        Measurements at most, keeping the one with the smallest spread.
    lock_dir
        Directory of the cross-process lock files.
    """

    name: str = 'device'

    def __init__(self, *, num_runs: int = 100, num_warmup_runs: int = 10, threads: int = 1,
                 max_iqr_ratio: float = 0.1, max_attempts: int = 3, lock_dir: str | os.PathLike | None = None):
        if num_runs < 1:
            raise ValueError(f'num_runs must be >= 1, got {num_runs=}')
        if num_warmup_runs < 0:
            raise ValueError(f'num_warmup_runs must be >= 0, got {num_warmup_runs=}')
        if threads < 1:
            raise ValueError(f'threads must be >= 1, got {threads=}')
        if not max_iqr_ratio > 0:
            raise ValueError(f'max_iqr_ratio must be > 0, got {max_iqr_ratio=}')
        if max_attempts < 1:
            raise ValueError(f'max_attempts must be >= 1, got {max_attempts=}')
        self.num_runs = num_runs
        self.num_warmup_runs = num_warmup_runs
        self.threads = threads
        self.max_iqr_ratio = max_iqr_ratio
        self.max_attempts = max_attempts
        self.lock_dir = lock_dir

    def measure(self, model: Any, input_shape: Sequence[int] | None = None) -> LatencyResult:
        """Measure ``model``: an ONNX path, ONNX bytes, or an ``nn.Module`` with ``input_shape``.

        The model is exported first; the device is held (:meth:`hold`) only while it is timed.
        """
        with self._onnx_files([model], input_shape) as paths, self.hold() as device:
            result = device._measure_onnx_file(paths[0])
        return self._finish([result])[0]

    def measure_group(self, models: Sequence[Any], input_shape: Sequence[int] | None = None) -> list[LatencyResult]:
        """Measure several models under one hold of the device, their runs interleaved where possible.

        Use it for models whose latencies are compared (a base network and its variants):
        devices that can (the local one, a board over SSH) alternate *blocks* of timed runs
        of all models (:func:`~nni_lightnas.latency.runner.measure_onnx_group`), so a change
        of load hits all of them alike while each model is timed warm, as it runs alone;
        others measure them one after another. ``models``
        are as in :meth:`measure` (``input_shape`` for ``nn.Module`` entries).
        """
        with self._onnx_files(models, input_shape) as paths, self.hold() as device:
            results = device._measure_onnx_group(paths)
        return self._finish(results)

    @contextlib.contextmanager
    def hold(self) -> Iterator['Device']:
        """Hold the device for one measurement; yields the device that measures.

        Two measurements at once on one device corrupt each other, and NNI trials are separate
        processes: this machine takes a cross-process file lock (:func:`device_lock`). Other
        devices hold differently: a board over SSH takes its lock on the board itself, a pool
        takes a free board and then holds that board.
        """
        with device_lock(self.name, self.lock_dir):
            yield self

    def result_facts(self) -> dict[str, Any]:
        """Facts this device adds to each of its results (a pool: its name)."""
        return {}

    def _finish(self, results: list[LatencyResult]) -> list[LatencyResult]:
        """Add :meth:`result_facts` to ``results`` and warn about any whose spread stayed wide."""
        facts = self.result_facts()
        for result in results:
            for key, value in facts.items():
                result.facts.setdefault(key, value)
        unstable = [result for result in results if not result.stable]
        if len(results) == 1 and unstable:
            result = unstable[0]
            spread = (f'IQR {result.iqr_ms:.3f} ms on median {result.median_ms:.3f} ms'
                      if result.facts.get('iqr_ratio', 0.0) is not None else 'no per-run times: spread unknown')
            _logger.warning('%s: spread stayed wide after %d attempts (%s)', result.device, result.attempts, spread)
        elif unstable:  # one line for a group
            widest = max((r.iqr_ms / r.median_ms for r in unstable if r.median_ms), default=float('nan'))
            _logger.warning('%s: spread stayed wide after %d attempts for %d of %d interleaved models (widest '
                            'IQR/median %.3f)', unstable[0].device, max(r.attempts for r in unstable), len(unstable),
                            len(results), widest)
        return results

    @contextlib.contextmanager
    def _onnx_files(self, models: Sequence[Any], input_shape: Sequence[int] | None) -> Iterator[list[Path]]:
        """The models as ONNX files (in a temporary folder, removed afterwards)."""
        with tempfile.TemporaryDirectory(prefix='nni-lightnas-') as workdir:
            paths = []
            for index, model in enumerate(models):
                folder = Path(workdir) / str(index)
                folder.mkdir()
                paths.append(self._as_onnx_file(model, input_shape, folder))
            yield paths

    def _measure_onnx_group(self, paths: Sequence[Path]) -> list[LatencyResult]:
        """Time several ONNX files (the device is held); default: one after another."""
        return [self._measure_onnx_file(path) for path in paths]

    @staticmethod
    def _as_onnx_file(model: Any, input_shape: Sequence[int] | None, workdir: Path) -> Path:
        if isinstance(model, (str, os.PathLike)):
            from nni_lightnas.export import check_onnx_file
            return check_onnx_file(model)
        if isinstance(model, (bytes, bytearray)):
            path = workdir / 'model.onnx'
            path.write_bytes(bytes(model))
            return path
        import torch.nn
        if isinstance(model, torch.nn.Module):
            if input_shape is None:
                raise ValueError('input_shape (batch, channels, height, width) is needed to export an nn.Module')
            from nni_lightnas.export import export_onnx
            return export_onnx(model, workdir / 'model.onnx', input_shape, check=False)
        raise TypeError(f'model must be an ONNX path, ONNX bytes or an nn.Module, got {type(model).__name__}')

    @abc.abstractmethod
    def _measure_onnx_file(self, path: Path) -> LatencyResult:
        """Time the ONNX file at ``path``; the device is held (:meth:`hold`)."""

    def extra_repr(self) -> str:
        return (f'num_runs={self.num_runs}, num_warmup_runs={self.num_warmup_runs}, threads={self.threads}, '
                f'max_iqr_ratio={self.max_iqr_ratio}, max_attempts={self.max_attempts}')

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.extra_repr()})'

"""The ``local`` device: ONNX Runtime on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .device import Device, LatencyResult
from .runner import measure_onnx, measure_onnx_group

__all__ = ['LocalDevice']


class LocalDevice(Device):
    """ONNX Runtime on this machine (CPU provider; CUDA/TensorRT when installed and present).

    Parameters
    ----------
    providers
        ONNX Runtime execution providers in order of preference; default: TensorRT, CUDA
        when available, then CPU (only CPU with ``clock='cpu'``).
    clock
        ``'wall'`` (default): wall-clock time of each run, the latency a user sees.
        ``'cpu'``: the CPU time of the measuring thread (needs ``threads=1`` and the CPU
        provider), which leaves out the time the run was preempted by other processes: on
        a shared, loaded machine it still measures the compute cost of a model, where the
        wall clock measures the neighbours. Recorded with every result (``facts['clock']``).
    **kwargs
        See :class:`~nni_lightnas.latency.device.Device`.

    Examples
    --------
    >>> import torch
    >>> result = LocalDevice(num_runs=5, num_warmup_runs=1).measure(torch.nn.Conv2d(1, 4, 3), (1, 1, 8, 8))
    >>> result.device, result.runs
    ('local', 5)
    """

    name = 'local'

    def __init__(self, *, providers: list[str] | None = None, clock: str = 'wall', **kwargs):
        super().__init__(**kwargs)
        from .runner import CLOCKS
        if clock not in CLOCKS:
            raise ValueError(f'unknown clock {clock!r}; accepted: {CLOCKS}')
        if clock == 'cpu' and self.threads != 1:
            raise ValueError(f"clock='cpu' needs threads=1 (it times the calling thread), got threads={self.threads}")
        self.clock = clock
        self.providers = providers if providers or clock == 'wall' else ['CPUExecutionProvider']

    def _measure_onnx_file(self, path: Path) -> LatencyResult:
        data = measure_onnx(str(path), num_runs=self.num_runs, num_warmup_runs=self.num_warmup_runs,
                            threads=self.threads, providers=self.providers, max_iqr_ratio=self.max_iqr_ratio,
                            max_attempts=self.max_attempts, clock=self.clock)
        return LatencyResult.from_runner(data, device=self.name)

    def _measure_onnx_group(self, paths: Sequence[Path]) -> list[LatencyResult]:
        data = measure_onnx_group([str(path) for path in paths], num_runs=self.num_runs,
                                  num_warmup_runs=self.num_warmup_runs, threads=self.threads,
                                  providers=self.providers, max_iqr_ratio=self.max_iqr_ratio,
                                  max_attempts=self.max_attempts, clock=self.clock)
        return [LatencyResult.from_runner(item, device=self.name) for item in data]

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, clock={self.clock!r}'

"""Deterministic devices for latency tests: a latency that is a known function of the ONNX model.

Real timings are noisy, so the arithmetic of LUTs, BBSSP and profilers is tested against
:class:`ParamsDevice`, whose "latency" of a model with ``P`` weights is
``call_ms + linear * P + quadratic * P**2``: a per-op sum misses the cross terms of the
quadratic part (like fusion and cache effects a real runtime has), so a correction has
something to correct. :class:`CountingDevice` counts real measurements.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from nni_lightnas.latency import Device, LatencyResult, LocalDevice


def onnx_params(path: Path) -> int:
    """Weights read by the model's nodes, counted per use."""
    import numpy as np
    import onnx
    model = onnx.load(str(path))
    sizes = {init.name: int(np.prod(init.dims)) for init in model.graph.initializer}
    # per use: the exporter shares equal initializers between layers of a whole network
    return sum(sizes.get(name, 0) for node in model.graph.node for name in node.input)


class ParamsDevice(Device):
    """Latency = ``call_ms + linear * P + quadratic * P**2`` for a model with ``P`` weights."""

    name = 'params'

    def __init__(self, *, call_ms: float = 0.01, linear: float = 1e-5, quadratic: float = 1e-9, **kwargs):
        super().__init__(**kwargs)
        self.call_ms, self.linear, self.quadratic = call_ms, linear, quadratic
        self.calls = 0

    def latency_of(self, params: int) -> float:
        return self.call_ms + self.linear * params + self.quadratic * params ** 2

    def _measure_onnx_file(self, path: Path) -> LatencyResult:
        self.calls += 1
        value = self.latency_of(onnx_params(path))
        return LatencyResult(median_ms=value, p25_ms=value, p75_ms=value, runs=self.num_runs, device=self.name,
                             cv=0.0, runtime='formula', provider='none', threads=self.threads)


class CountingDevice(LocalDevice):
    """The local device, counting its measurements.

    Its lock lives in a private directory: a test need not wait for a benchmark that holds
    the machine's ``local`` lock (the lock itself is tested in test_latency_device.py).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault('lock_dir', tempfile.mkdtemp(prefix='nni-lightnas-test-locks-'))
        super().__init__(**kwargs)
        self.calls = 0

    def _measure_onnx_file(self, path: Path) -> LatencyResult:
        self.calls += 1
        return super()._measure_onnx_file(path)

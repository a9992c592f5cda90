"""ONNX export of fixed networks, with a parity check in ONNX Runtime.

We use the TorchScript exporter (``dynamo=False``) at opset 17: it needs no extra
package (the dynamo exporter needs ``onnxscript``), exports a small net in well under a
second, which matters when a latency table exports hundreds of single ops, and its
graphs run in every ONNX Runtime execution provider we target. Torch 2.14 warns that
it is deprecated; the warning is silenced here and the choice is kept in one place.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ['DEFAULT_OPSET', 'export_onnx', 'onnx_bytes', 'check_onnx_parity']

_logger = logging.getLogger(__name__)
DEFAULT_OPSET = 17


def _export(module: nn.Module, example: torch.Tensor, target, opset: int) -> None:
    was_training = module.training
    module.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter('ignore')  # deprecation notice of the TorchScript exporter
            torch.onnx.export(module, (example,), target, dynamo=False, opset_version=opset,
                              input_names=['input'], output_names=['output'], do_constant_folding=True)
    finally:
        module.train(was_training)


def export_onnx(module: nn.Module, path: str | os.PathLike, input_shape: Sequence[int], *,
                opset: int = DEFAULT_OPSET, check: bool = True) -> Path:
    """Export ``module`` (in eval mode) to ``path`` for a fixed input shape (batch included).

    Parameters
    ----------
    module
        A plain ``nn.Module`` (a frozen net, not a model space).
    path
        Output file; parent directories are created.
    input_shape
        Full input shape, e.g. ``(1, 1, 28, 28)``.
    opset
        ONNX opset, at least 17.
    check
        Run ``onnx.checker`` on the result.

    Examples
    --------
    >>> import tempfile
    >>> from nni_lightnas.search_spaces import LightNet
    >>> path = export_onnx(LightNet('skip-skip-skip', 'tiny'), tempfile.mktemp(suffix='.onnx'), (1, 1, 28, 28))
    >>> path.stat().st_size > 0
    True
    """
    if opset < 17:
        raise ValueError(f'opset must be >= 17, got opset={opset}')
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 4 or min(input_shape) < 1:
        raise ValueError(f'input_shape must be (batch, channels, height, width) of positive sizes, got {input_shape}')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _export(module, torch.zeros(input_shape), str(path), opset)
    if check:
        import onnx
        onnx.checker.check_model(str(path))
    _logger.debug('exported %s (%d bytes) for input %s', path, path.stat().st_size, input_shape)
    return path


def onnx_bytes(module: nn.Module, input_shape: Sequence[int], *, opset: int = DEFAULT_OPSET) -> bytes:
    """Export to an in-memory ONNX model (no file)."""
    buffer = io.BytesIO()
    _export(module, torch.zeros(tuple(input_shape)), buffer, opset)
    return buffer.getvalue()


def check_onnx_parity(module: nn.Module, model: str | os.PathLike | bytes, input_shape: Sequence[int], *,
                      atol: float = 1e-4, seed: int = 0) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime (CPU) outputs on a random input.

    Raises ``ValueError`` when the difference exceeds ``atol``.
    """
    import onnxruntime as ort
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(tuple(input_shape), generator=generator)
    was_training = module.training
    module.eval()
    with torch.no_grad():
        expected = module(example).numpy()
    module.train(was_training)
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, providers=['CPUExecutionProvider'])
    actual = session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
    difference = float(np.max(np.abs(actual - expected)))
    if difference > atol:
        raise ValueError(f'ONNX Runtime output differs from PyTorch by {difference:.3g} > atol={atol}')
    return difference

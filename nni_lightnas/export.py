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

from .atomic import atomic_write_bytes

__all__ = ['DEFAULT_OPSET', 'export_onnx', 'onnx_bytes', 'check_onnx_parity', 'check_onnx_file']

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
        Output file; parent directories are created. It is written atomically (a temporary
        file beside it, then renamed), so a failed export leaves no partial model.
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
    if path.is_dir():
        raise ValueError(f'ONNX output {path} is a directory; expected a file name such as {path / "net.onnx"}')
    # Exported in memory and written atomically: a full disk leaves no torn model at ``path``.
    buffer = io.BytesIO()
    _export(module, torch.zeros(input_shape), buffer, opset)
    if check:
        import onnx
        onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()))
    atomic_write_bytes(path, buffer.getvalue())
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


def check_onnx_file(path: str | os.PathLike) -> Path:
    """Check that ``path`` is a readable ONNX model before it is timed; returns it as a ``Path``.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for a
    directory or for a file that does not parse as an ONNX ``ModelProto`` (another format, or
    a model cut short by a full disk or an interrupted copy).

    Examples
    --------
    >>> import tempfile
    >>> bad = tempfile.mktemp(suffix='.onnx')
    >>> _ = open(bad, 'wb').write(b'not a model')
    >>> check_onnx_file(bad)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ONNX model ... is not a valid ONNX file (...)...
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f'ONNX model {path} is a directory; expected an .onnx file (e.g. from nni-lightnas export)')
    if not path.is_file():
        raise FileNotFoundError(f'ONNX model {path} does not exist')
    import onnx
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf DecodeError, or onnx's own errors: the file is not a model
        raise ValueError(f'ONNX model {path} is not a valid ONNX file ({type(error).__name__}: {error}); '
                         f'expected a model exported with a fixed input shape, e.g. by nni-lightnas export') from None
    try:
        onnx.checker.check_model(model)
    except Exception as error:  # onnx.checker.ValidationError and friends
        raise ValueError(f'ONNX model {path} ({path.stat().st_size} bytes) is not a valid model '
                         f'({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ""}): a truncated '
                         f'or empty file? Export it again') from None
    return path

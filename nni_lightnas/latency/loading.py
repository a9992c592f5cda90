"""Load any saved latency model: a LUT (plain or corrected) or a trained predictor.

Examples
--------
>>> model = load_latency_model('runs/lut_fashion_mnist.csv', space='fashion_mnist')  # doctest: +SKIP
>>> model.predict('MBK3E3-MBK3E3-MBK5E3-skip-MBK3E3-MBK3E3-MBK7E3-MBK5E3')  # doctest: +SKIP
2.68
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .lut import LatencyLUT
from .model import LatencyModel

__all__ = ['load_latency_model', 'latency_model_from_path']


def load_latency_model(path: str | os.PathLike, *, space: Any = None) -> LatencyModel:
    """Load any latency model file: a LUT (``.csv``/``.parquet``, plain or corrected) or a predictor.

    Parameters
    ----------
    path
        The file.
    space
        When given, a model built for another space or input size is refused.

    Examples
    --------
    >>> model = load_latency_model('runs/lut_fashion_mnist.csv', space='fashion_mnist')  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'latency model {path} does not exist')
    if path.suffix in ('.csv', '.parquet'):
        return LatencyLUT.load(path, space=space)
    from .predictors import load_predictor  # a predictor's directory (or its JSON)
    model = load_predictor(path)
    if space is not None and hasattr(model, 'check_compatible'):
        model.check_compatible(space)
    return model


#: The former name of :func:`load_latency_model` (configs and scripts written for it keep working).
latency_model_from_path = load_latency_model

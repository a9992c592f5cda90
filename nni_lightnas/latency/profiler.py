"""Latency models as NNI profilers, so NNI's filters and penalties can use them.

:class:`LatencyProfiler` turns a LUT (plain, BBSSP-corrected or calibrated) into an NNI
``ExpressionProfiler``, like NNI's FLOPs and nn-Meter profilers: its ``expression`` is a
symbolic sum over the model space's ``LayerChoice`` mutables,

    (scale * fixed + offset) + sum_l switch_case(choice_l, {op: scale * lut[l, op]}),

so ``profiler.profile(sample)`` is the LUT prediction of the sample, and the expression can
be inspected or evaluated for any sample without the model. It plugs into
``nni.nas.oneshot.pytorch.profiler.RangeProfilerFilter`` (drop samples outside a latency
range) and ``ExpectationProfilerPenalty`` / ``SampleProfilerPenalty``.

:class:`LatencyModelProfiler` wraps any other :class:`~nni_lightnas.latency.model.LatencyModel`
(a learned predictor) as a plain NNI ``Profiler``; :func:`latency_profiler` picks the right one.

Examples
--------
>>> from nni.nas.oneshot.pytorch.profiler import RangeProfilerFilter
>>> from nni_lightnas.search_spaces import LightNASSpace
>>> space = LightNASSpace('tiny')
>>> profiler = LatencyProfiler(space, 'lut_tiny.csv')  # doctest: +SKIP

A LUT built in memory, 0.02 ms for every op but ``skip``, shows the arithmetic:

>>> import pandas as pd
>>> rows = [{'kind': 'fixed', 'layer': 'stem', 'op': 'MBK3E1', 'latency_ms': 0.05}]
>>> rows += [{'kind': 'op', 'layer': label, 'op': op, 'latency_ms': 0.0 if op == 'skip' else 0.02}
...          for label, ops in space.candidates.items() for op in ops]
>>> profiler = LatencyProfiler(space, LatencyLUT(pd.DataFrame(rows), {}))
>>> profiler.profile({'layer00': 'MBK3E3', 'layer01': 'skip', 'layer02': 'skip'})
0.07
>>> keep = RangeProfilerFilter(profiler, max=0.1)
>>> keep({'layer00': 'skip', 'layer01': 'skip', 'layer02': 'skip'})
True
"""

from __future__ import annotations

import logging
import os
from typing import Any

from nni.mutable import MutableExpression, Sample
from nni.nas.nn.pytorch import LayerChoice
from nni.nas.profiler import ExpressionProfiler, Profiler

from .lut import LatencyLUT, LUTMismatchError
from .loading import latency_model_from_path
from .model import LatencyModel

__all__ = ['LatencyProfiler', 'LatencyModelProfiler', 'latency_profiler']

_logger = logging.getLogger(__name__)


def _layer_choices(model_space: Any) -> dict[str, LayerChoice]:
    choices = {}
    for _, module in model_space.named_modules():
        if isinstance(module, LayerChoice):
            choices[module.label] = module
    return choices


def _as_model(latency_model: LatencyModel | str | os.PathLike, model_space: Any) -> LatencyModel:
    if isinstance(latency_model, (str, os.PathLike)):
        from nni_lightnas.search_spaces import LightNASSpace
        space = model_space if isinstance(model_space, LightNASSpace) else None
        return latency_model_from_path(latency_model, space=space)
    if not isinstance(latency_model, LatencyModel):
        raise TypeError(f'latency_model must be a LatencyModel or a path to one, got {type(latency_model).__name__}')
    return latency_model


class LatencyProfiler(ExpressionProfiler):
    """A LUT as an NNI ``ExpressionProfiler`` over the ``LayerChoice`` mutables of a model space.

    Parameters
    ----------
    model_space
        The NNI model space; every ``LayerChoice`` label must be a layer of the LUT, with
        every candidate in the LUT. For a ``LightNASSpace`` the LUT's space fingerprint and
        input size are checked too; for any other NNI model space, the fingerprint of a LUT file
        (:func:`~nni_lightnas.latency.space_lut.build_space_lut`).
    latency_model
        A :class:`~nni_lightnas.latency.lut.LatencyLUT`, or the path of a LUT file.

    Attributes
    ----------
    expression
        The symbolic latency (ms); ``expression.evaluate(sample)`` equals ``lut.predict``.
    lut
        The table.

    Examples
    --------
    >>> import pandas as pd
    >>> from nni_lightnas.search_spaces import LightNASSpace
    >>> space = LightNASSpace('tiny', op_names=['skip', 'MBK3E3'])
    >>> table = pd.DataFrame({'kind': ['fixed'] + ['op'] * 6, 'layer': ['stem'] + [f'layer0{i // 2}' for i in range(6)],
    ...                       'op': ['MBK3E1'] + ['skip', 'MBK3E3'] * 3, 'latency_ms': [1.0, 0, 1, 0, 2, 0, 3]})
    >>> profiler = LatencyProfiler(space, LatencyLUT(table, {}))
    >>> profiler.profile({'layer00': 'MBK3E3', 'layer01': 'skip', 'layer02': 'MBK3E3'})
    5.0
    """

    def __init__(self, model_space: Any, latency_model: LatencyLUT | str | os.PathLike):
        lut = _as_model(latency_model, model_space)
        if not isinstance(lut, LatencyLUT):
            raise TypeError(f'LatencyProfiler needs an additive LatencyLUT, got {type(lut).__name__}; '
                            'use LatencyModelProfiler (or latency_profiler) for other latency models')
        from torch import nn
        if isinstance(model_space, nn.Module):  # ours: fingerprint and input size; any other: fingerprint, layers
            lut.check_compatible(model_space)
        self.lut = lut
        choices = _layer_choices(model_space)
        if not choices:
            raise ValueError('the model space has no LayerChoice to profile')
        unknown = sorted(set(choices) - set(lut.labels))
        if unknown:
            raise LUTMismatchError(f'the model space has layer choices {unknown} that the LUT does not cover; '
                                   f'LUT layers: {lut.labels}')
        uncovered = sorted(set(lut.labels) - set(choices))
        if uncovered:
            raise LUTMismatchError(f'the LUT has layers {uncovered} that are not layer choices of the model space')
        # A plain sum of one switch_case per layer (scale folded into the values): NNI's
        # ExpectationProfilerPenalty takes E(a + b) = E(a) + E(b) term by term, where a product
        # would make it enumerate every architecture of the space.
        total: Any = lut.scale * lut.fixed_ms + lut.offset_ms
        for label, choice in choices.items():
            # the choice's own values (a list's candidates are 0, 1, ...); the table names them as strings
            values = {op: lut.scale * lut.latency(label, str(op)) for op in choice.choice.values}
            total = total + MutableExpression.switch_case(choice.choice, values)
        self.expression = total

    def profile(self, sample: Sample) -> float:
        return float(super().profile(sample))


class LatencyModelProfiler(Profiler):
    """Any :class:`~nni_lightnas.latency.model.LatencyModel` (e.g. a learned predictor) as an NNI profiler.

    ``profile(sample)`` calls ``latency_model.predict`` on the sample's layer choices.
    """

    def __init__(self, model_space: Any, latency_model: LatencyModel | str | os.PathLike):
        self.latency_model = _as_model(latency_model, model_space)
        missing = sorted(set(self.latency_model.labels) - set(_layer_choices(model_space)))
        if missing:
            raise LUTMismatchError(f'the latency model needs layers {missing} that the model space does not choose')

    def profile(self, sample: Sample) -> float:
        return float(self.latency_model.predict({label: sample[label] for label in self.latency_model.labels}))


def latency_profiler(model_space: Any, latency_model: LatencyModel | str | os.PathLike) -> Profiler:
    """:class:`LatencyProfiler` for a LUT, :class:`LatencyModelProfiler` for any other latency model."""
    model = _as_model(latency_model, model_space)
    if isinstance(model, LatencyLUT):
        return LatencyProfiler(model_space, model)
    return LatencyModelProfiler(model_space, model)

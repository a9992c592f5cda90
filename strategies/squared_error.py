"""The expected squared budget error of the architecture distribution, a term that lands the argmax.

LightNAS's multiplier term ``lambda * (LAT(alpha) / T - 1)`` pushes every layer toward
cheaper ops (``lambda > 0``) or dearer ones (``lambda < 0``), hardest where two ops differ
most in latency. Once alpha has settled, the argmax moves one layer at a time, so that push
flips the layer with the largest latency step first: the argmax jumps over the target, the
multiplier changes sign, and it jumps back (measured in ``docs/argmax_trace.json``: in the
second half of a quick search at 3.1 ms the argmax visited six latencies from -9.2 % to
+34.7 % of the target; with this term, two: -7.8 % and +3.0 %).

The augmented-Lagrangian term

    rho * E_{arch ~ softmax(alpha)} [ (LAT(arch) / T - 1) ** 2 ]

prefers, in each layer, the op that completes the *other* layers' latency to T: for a
latency that is a sum over layers (a LUT, with or without a linear calibration),

    d E[(LAT - T)^2] / d p_lk = (lat_lk + E[LAT_-l] - T)^2 + Var[LAT_-l],

and the variance of the other layers is the same for every op of layer ``l``. So a layer is
pulled toward the op whose step closes the remaining gap, not the largest step, and the
variance part concentrates the distribution. :func:`expected_squared_error` returns a
surrogate whose gradient in the probabilities is exactly that for such models (the
conditional latencies are computed without gradient); for other latency models (GNN or MLP
predictors, LUTs with ``Repeat`` depth gates) the other layers are held at their expected
probabilities (mean field). Each call evaluates the latency model once per candidate of
every layer.

Examples
--------
Two layers, T = 3 ms; layer ``a`` is undecided between 1 and 2 ms, layer ``b`` sits on its 1 ms op:

>>> import pandas as pd, torch
>>> from nni_lightnas.latency.lut import LatencyLUT
>>> lut = LatencyLUT(pd.DataFrame({'kind': 'op', 'layer': ['a', 'a', 'b', 'b'], 'op': ['x', 'y', 'x', 'y'],
...                                'latency_ms': [1.0, 2.0, 1.0, 3.0]}), {})
>>> alpha = torch.zeros(2, requires_grad=True)
>>> probs = {'a': alpha.softmax(-1), 'b': torch.tensor([1.0, 0.0])}
>>> expected_squared_error(lut, probs, target=3.0).backward()
>>> bool(alpha.grad[1] < 0 < alpha.grad[0])  # layer a is pulled to its 2 ms op: 2 + 1 = T
True
"""

from __future__ import annotations

from typing import Mapping

import torch

__all__ = ['expected_squared_error']


def expected_squared_error(model, probs: Mapping[str, torch.Tensor], target: float) -> torch.Tensor:
    """``sum_l sum_k p_lk * (LAT(probs with layer l = k) / T - 1) ** 2``, conditional latencies without gradient.

    A surrogate: its gradient in ``probs`` is that of ``E_{arch ~ probs}[(LAT(arch) / T - 1) ** 2]``
    for latency models that are sums over layers (its value is that expectation once per layer,
    less the other layers' variance). ``model`` has the latency-model interface (``labels``,
    ``expected_latency(probs)``); ``target`` is T in the model's unit.
    """
    if not target > 0:
        raise ValueError(f'target must be > 0, got {target!r}')
    detached = {label: p.detach() for label, p in probs.items()}
    total = torch.zeros(())
    for label in model.labels:
        p = probs[label]
        conditional = []
        with torch.no_grad():
            for index in range(p.shape[-1]):
                one_hot = torch.zeros_like(detached[label])
                one_hot[index] = 1.0
                conditional.append(model.expected_latency({**detached, label: one_hot}))
            squared = (torch.stack(conditional).to(p.dtype) / target - 1.0) ** 2
        total = total + (p * squared).sum()
    return total

"""The expected squared budget error: exact gradient for additive models, and it lands the argmax."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
import torch

from nni_lightnas.latency.lut import LatencyLUT
from nni_lightnas.strategies import LightNAS
from nni_lightnas.strategies.squared_error import expected_squared_error

from lightnas_helpers import synthetic_lut

LAYER_MS = {'a': [0.3, 0.5, 0.9], 'b': [0.2, 0.6, 1.1], 'c': [0.05, 0.4, 0.7]}


def _lut(scale: float = 1.0, offset_ms: float = 0.0) -> LatencyLUT:
    rows = [{'kind': 'fixed', 'layer': 'stem', 'op': 'stem', 'latency_ms': 0.5}]
    rows += [{'kind': 'op', 'layer': layer, 'op': f'op{index}', 'latency_ms': value}
             for layer, values in LAYER_MS.items() for index, value in enumerate(values)]
    return LatencyLUT(pd.DataFrame(rows), {}, scale=scale, offset_ms=offset_ms)


def _exact(lut: LatencyLUT, alphas: dict[str, torch.Tensor], target: float) -> torch.Tensor:
    """E[(LAT / T - 1)^2] by enumerating all 27 architectures."""
    probs = {label: alpha.softmax(-1) for label, alpha in alphas.items()}
    total = torch.zeros(())
    for picks in itertools.product(range(3), repeat=3):
        weight = torch.ones(())
        for label, index in zip(LAYER_MS, picks):
            weight = weight * probs[label][index]
        latency = lut.predict([f'op{index}' for index in picks])
        total = total + weight * (latency / target - 1.0) ** 2
    return total


@pytest.mark.parametrize('scale,offset_ms', [(1.0, 0.0), (1.3, -0.2)])
def test_gradient_equals_the_exact_expectation_for_an_additive_lut(scale, offset_ms):
    lut = _lut(scale, offset_ms)
    generator = torch.Generator().manual_seed(3)
    start = {label: torch.randn(3, generator=generator) for label in LAYER_MS}
    target = 2.0
    exact_alphas = {label: value.clone().requires_grad_() for label, value in start.items()}
    _exact(lut, exact_alphas, target).backward()
    surrogate_alphas = {label: value.clone().requires_grad_() for label, value in start.items()}
    expected_squared_error(lut, {label: alpha.softmax(-1) for label, alpha in surrogate_alphas.items()},
                           target).backward()
    for label in LAYER_MS:
        assert torch.allclose(surrogate_alphas[label].grad, exact_alphas[label].grad, atol=1e-6), label


def test_a_settled_layer_is_pulled_to_the_op_that_closes_the_gap_not_the_largest_step():
    # argmax: op0 everywhere = 0.5 + 0.3 + 0.2 + 0.05 = 1.05 ms; T = 1.45 ms needs +0.4 ms:
    # layer b's op1 (+0.4) closes it; op2 (+0.9) is the largest step
    lut = _lut()
    alpha_b = torch.tensor([3.0, 0.0, 0.0], requires_grad=True)
    settled = torch.tensor([1.0, 0.0, 0.0])
    expected_squared_error(lut, {'a': settled, 'b': alpha_b.softmax(-1), 'c': settled}, 1.45).backward()
    assert alpha_b.grad[1] < 0 < alpha_b.grad[2]  # gradient descent raises op1's logit, lowers op2's


def test_rejects_bad_target_and_weight():
    with pytest.raises(ValueError, match='target must be > 0'):
        expected_squared_error(_lut(), {label: torch.ones(3) / 3 for label in LAYER_MS}, 0.0)
    with pytest.raises(ValueError, match=r"squared_error_weight must be a finite number >= 0, got -1"):
        LightNAS(target_latency_ms=3.0, latency_model=synthetic_lut(), squared_error_weight=-1)
    with pytest.raises(ValueError, match=r"squared_error_weight must be a finite number >= 0, got nan"):
        LightNAS(target_latency_ms=3.0, latency_model=synthetic_lut(), squared_error_weight=float('nan'))

"""The LUT as an NNI ExpressionProfiler: profile(sample), RangeProfilerFilter, mismatches, other models."""

from __future__ import annotations

import random

import pytest
import torch
from latency_fakes import ParamsDevice
from nni.mutable.symbol import SymbolicExpression
from nni.nas.oneshot.pytorch.profiler import RangeProfilerFilter
from nni.nas.profiler import ExpressionProfiler

from nni_lightnas.latency.lut import LUTMismatchError
from nni_lightnas.latency.lut_build import build_lut
from nni_lightnas.latency.model import LatencyModel
from nni_lightnas.latency.profiler import LatencyModelProfiler, LatencyProfiler, latency_profiler
from nni_lightnas.search_spaces import LightNASSpace


@pytest.fixture(scope='module')
def space():
    return LightNASSpace('tiny')


@pytest.fixture(scope='module')
def lut(space):
    return build_lut(space, ParamsDevice(), batch=2)


def _samples(space, count, seed=0):
    rng = random.Random(seed)
    return [{label: rng.choice(space.candidates[label]) for label in space.labels} for _ in range(count)]


def test_profile_is_the_lut_sum_as_an_nni_expression(space, lut):
    profiler = LatencyProfiler(space, lut)
    assert isinstance(profiler, ExpressionProfiler)
    assert isinstance(profiler.expression, SymbolicExpression)
    assert {symbol.label for symbol in profiler.expression.leaf_symbols()} == set(space.labels)
    for sample in _samples(space, 10):
        assert profiler.profile(sample) == pytest.approx(lut.predict(sample))
        assert profiler.expression.evaluate(sample) == pytest.approx(lut.predict(sample))


def test_range_filter_keeps_exactly_the_samples_within_budget(space, lut):
    samples = _samples(space, 40, seed=1)
    latencies = sorted(lut.predict(s) for s in samples)
    budget = latencies[len(latencies) // 2]
    keep = RangeProfilerFilter(LatencyProfiler(space, lut), max=budget)
    kept = [s for s in samples if keep(s)]
    assert 0 < len(kept) < len(samples)
    assert all(lut.predict(s) <= budget for s in kept)
    assert all(lut.predict(s) > budget for s in samples if s not in kept)
    low, high = lut.latency_range()
    fastest = {label: min(space.candidates[label], key=lambda op, l=label: lut.latency(l, op))
               for label in space.labels}
    assert lut.predict(fastest) == pytest.approx(low)
    assert RangeProfilerFilter(LatencyProfiler(space, lut), min=low + 1e-9)(fastest) is False
    # the filter NNI's random one-shot strategy accepts (a dict of RangeProfilerFilter arguments)
    keep_dict = RangeProfilerFilter(**{'profiler': latency_profiler(space, lut), 'max': budget})
    assert [keep_dict(s) for s in samples] == [keep(s) for s in samples]


def test_profiler_from_a_file_and_with_calibration(space, lut, tmp_path):
    path = lut.save(tmp_path / 'tiny.csv')
    from_file = LatencyProfiler(space, path)
    calibrated = lut.with_calibration(1.5, 0.2)
    scaled = LatencyProfiler(space, calibrated)
    for sample in _samples(space, 5, seed=2):
        assert from_file.profile(sample) == pytest.approx(lut.predict(sample))
        assert scaled.profile(sample) == pytest.approx(1.5 * lut.predict(sample) + 0.2)


def test_profiler_refuses_a_lut_of_another_space(lut, tmp_path):
    path = lut.save(tmp_path / 'tiny.csv')
    with pytest.raises(LUTMismatchError):
        LatencyProfiler(LightNASSpace('fashion_mnist'), path)
    with pytest.raises(LUTMismatchError, match='input size'):
        LatencyProfiler(LightNASSpace('tiny', input_size=32), lut)
    # a reduced space is fine: its candidates are a subset of the LUT's
    reduced = LightNASSpace('tiny', op_names=['skip', 'MBK3E3'])
    profiler = LatencyProfiler(reduced, lut)
    sample = {label: 'MBK3E3' for label in reduced.labels}
    assert profiler.profile(sample) == pytest.approx(lut.predict(sample))


class _Quadratic(LatencyModel):
    """A non-additive latency model (like a learned predictor)."""

    def __init__(self, lut):
        self.lut = lut
        self.candidates = lut.candidates

    def expected_latency(self, probs):
        return self.lut.expected_latency(probs) ** 2

    def latency_range(self):
        low, high = self.lut.latency_range()
        return low ** 2, high ** 2


def test_any_latency_model_becomes_a_profiler(space, lut):
    model = _Quadratic(lut)
    profiler = latency_profiler(space, model)
    assert isinstance(profiler, LatencyModelProfiler)
    sample = _samples(space, 1, seed=3)[0]
    assert profiler.profile(sample) == pytest.approx(lut.predict(sample) ** 2, rel=1e-5)
    assert RangeProfilerFilter(profiler, max=profiler.profile(sample) + 1e-6)(sample)
    assert isinstance(latency_profiler(space, lut), LatencyProfiler)


def test_expected_latency_gradient_reaches_the_architecture_logits(space, lut):
    alpha = {label: torch.randn(len(lut.candidates[label]), requires_grad=True) for label in lut.labels}
    latency = lut.expected_latency({label: torch.softmax(a, -1) for label, a in alpha.items()})
    (latency - 0.5 * sum(lut.latency_range())).abs().backward()
    assert all(a.grad is not None and float(a.grad.abs().sum()) > 0 for a in alpha.values())


def _sum_terms(expression):
    """The terms of nested ``+`` nodes, as NNI's expression_expectation splits them."""
    import operator
    if getattr(expression, 'function', None) == operator.add:
        return [term for argument in expression.arguments for term in _sum_terms(argument)]
    return [expression]


def test_nni_expectation_penalty_takes_the_calibrated_lut_term_by_term(space, lut):
    from nni.nas.oneshot.pytorch.supermodule._expression_utils import expression_expectation
    calibrated = lut.with_calibration(1.5, 0.2)
    profiler = LatencyProfiler(space, calibrated)
    # one layer per term: NNI's expectation is then linear in the layers, not a walk of the whole space
    symbolic_terms = [term for term in _sum_terms(profiler.expression) if isinstance(term, SymbolicExpression)]
    assert [len(list(term.leaf_symbols())) for term in symbolic_terms] == [1] * len(space.labels)
    torch.manual_seed(0)
    probs = {label: torch.softmax(torch.randn(len(space.candidates[label])), -1) for label in space.labels}
    weights = {label: probs[label] for label in space.labels}
    expected = expression_expectation(profiler.expression, weights)
    assert float(expected) == pytest.approx(float(calibrated.expected_latency(probs)), rel=1e-6)

"""Landing on the target: the most probable architecture within the tolerance, checked by brute force."""

from __future__ import annotations

import itertools
import math

import pandas as pd
import pytest
import torch

from lightnas_helpers import synthetic_lut
from nni_lightnas.latency.lut import LatencyLUT
from nni_lightnas.latency.model import LatencyModel
from nni_lightnas.strategies.landing import land_on_target


class SquaredLatency(LatencyModel):
    """A non-additive model (a stand-in for a learned predictor): the square of a LUT's prediction."""

    def __init__(self, lut: LatencyLUT):
        self.lut = lut
        self.candidates = dict(lut.candidates)

    def expected_latency(self, probs):
        return self.lut.expected_latency(probs) ** 2

    def latency_range(self):
        low, high = self.lut.latency_range()
        return low ** 2, high ** 2


def _random_log_probs(model, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {label: torch.log_softmax(torch.randn(len(model.candidates[label]), generator=generator) * 2, -1)
            for label in model.labels}


def _brute_force(model, log_probs, target_ms, tolerance, archs=None):
    """Highest total log-probability over ``archs`` (default: the whole space) within the tolerance."""
    labels = model.labels
    if archs is None:
        archs = [dict(zip(labels, ops)) for ops in itertools.product(*(model.candidates[l] for l in labels))]
    best, best_score = None, -math.inf
    for arch in archs:
        if abs(model.predict(arch) / target_ms - 1) <= tolerance:
            score = sum(float(log_probs[l][model.candidates[l].index(arch[l])]) for l in labels)
            if score > best_score:
                best, best_score = arch, score
    return best, best_score


def _score(model, log_probs, arch):
    return sum(float(log_probs[l][model.candidates[l].index(arch[l])]) for l in model.labels)


@pytest.mark.parametrize('calibration', [None, (1.3, 0.4)])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_lut_landing_is_the_most_probable_arch_within_tolerance(seed, calibration):
    lut = synthetic_lut()
    if calibration:
        lut = lut.with_calibration(*calibration)
    low, high = lut.latency_range()
    log_probs = _random_log_probs(lut, seed)
    for quantile in (0.1, 0.35, 0.8):
        target_ms = low + quantile * (high - low)
        landed = land_on_target(lut, log_probs, target_ms=target_ms, tolerance=0.01)
        expected, expected_score = _brute_force(lut, log_probs, target_ms, 0.01)
        assert expected is not None
        assert abs(lut.predict(landed) / target_ms - 1) <= 0.01
        assert _score(lut, log_probs, landed) == pytest.approx(expected_score)


def test_lut_landing_handles_negative_corrected_entries():
    # A BBSSP-corrected table can hold negative per-op entries (a swap faster than the typical block).
    table = pd.DataFrame({'kind': ['fixed'] + ['op'] * 4, 'layer': ['stem', 'a', 'a', 'b', 'b'],
                          'op': ['stem', 'x', 'y', 'x', 'y'], 'latency_ms': [2.0, -0.5, 0.3, 0.1, 0.9]})
    lut = LatencyLUT(table, {})
    log_probs = {'a': torch.tensor([0.7, 0.3]).log(), 'b': torch.tensor([0.9, 0.1]).log()}
    assert land_on_target(lut, log_probs, target_ms=2.4, tolerance=0.01) == {'a': 'y', 'b': 'x'}
    assert land_on_target(lut, log_probs, target_ms=1.6, tolerance=0.01) == {'a': 'x', 'b': 'x'}


def test_predictor_landing_searches_two_layers_around_the_argmax():
    model = SquaredLatency(synthetic_lut())
    log_probs = _random_log_probs(model, 3)
    argmax = {l: model.candidates[l][int(log_probs[l].argmax())] for l in model.labels}
    near = [dict(zip(model.labels, ops)) for ops in itertools.product(*(model.candidates[l] for l in model.labels))
            if sum(op != argmax[l] for l, op in zip(model.labels, ops)) <= 2]
    low, high = model.latency_range()
    found_any = False
    for quantile in (0.2, 0.5, 0.7):
        target_ms = low + quantile * (high - low)
        landed = land_on_target(model, log_probs, target_ms=target_ms, tolerance=0.02, nearest=False)
        expected, expected_score = _brute_force(model, log_probs, target_ms, 0.02, near)
        if expected is None:
            assert landed is None
            continue
        found_any = True
        assert _score(model, log_probs, landed) == pytest.approx(expected_score)
    assert found_any


def test_nothing_within_tolerance_gives_none_without_nearest_and_bad_tolerance_is_refused():
    table = pd.DataFrame({'kind': 'op', 'layer': ['a', 'a'], 'op': ['x', 'y'], 'latency_ms': [1.0, 2.0]})
    lut = LatencyLUT(table, {})
    log_probs = {'a': torch.tensor([0.5, 0.5]).log()}
    assert land_on_target(lut, log_probs, target_ms=1.5, tolerance=0.01, nearest=False) is None
    with pytest.raises(ValueError, match='tolerance must be > 0, got tolerance=0'):
        land_on_target(lut, log_probs, target_ms=1.5, tolerance=0)


def test_a_very_tight_tolerance_coarsens_the_grid_but_stays_exact_about_the_window():
    lut = synthetic_lut('fashion_mnist')
    log_probs = _random_log_probs(lut, 4)
    reachable = {label: lut.candidates[label][1] for label in lut.labels}
    target_ms = lut.predict(reachable)  # an architecture lands exactly on it
    landed = land_on_target(lut, log_probs, target_ms=target_ms, tolerance=1e-9)
    assert landed is not None and abs(lut.predict(landed) / target_ms - 1) <= 1e-9
    assert _score(lut, log_probs, landed) >= _score(lut, log_probs, reachable) - 1e-9


# ------------------------------------------------------------------ nearest-feasible landing
def _coarse_lut(num_layers: int) -> LatencyLUT:
    """Each layer costs 0 or 1 ms: the reachable latencies are 1 + integers."""
    rows = [{'kind': 'fixed', 'layer': 'rest', 'op': 'rest', 'latency_ms': 1.0}]
    for index in range(num_layers):
        rows += [{'kind': 'op', 'layer': f'l{index}', 'op': op, 'latency_ms': ms} for op, ms in (('x', 0.0), ('y', 1.0))]
    return LatencyLUT(pd.DataFrame(rows), {})


@pytest.mark.parametrize('kind', ['lut', 'predictor'])
def test_no_architecture_within_tolerance_exports_the_nearest_with_a_warning(kind, caplog):
    lut = _coarse_lut(3)
    model = lut if kind == 'lut' else SquaredLatency(lut)
    log_probs = {label: torch.tensor([0.9, 0.1]).log() for label in lut.labels}  # argmax: all x
    all_archs = [dict(zip(model.labels, ops)) for ops in itertools.product('xy', repeat=3)]
    for target in (2.4, 2.6) if kind == 'lut' else (2.4 ** 2, 2.6 ** 2):  # between 2 and 3 ms: nothing within 1%
        with caplog.at_level('WARNING', logger='nni_lightnas.strategies.landing'):
            caplog.clear()
            landed = land_on_target(model, log_probs, target_ms=target, tolerance=0.01)
        distance = abs(model.predict(landed) / target - 1)
        assert distance == pytest.approx(min(abs(model.predict(arch) / target - 1) for arch in all_archs))
        # the most probable of the nearest: as few y as that latency allows
        assert _score(model, log_probs, landed) == pytest.approx(max(
            _score(model, log_probs, arch) for arch in all_archs
            if abs(model.predict(arch) / target - 1) == pytest.approx(distance)))
        assert 'exporting the nearest one' in caplog.text
        assert land_on_target(model, log_probs, target_ms=target, tolerance=0.01, nearest=False) is None


def test_predictor_landing_goes_beyond_two_layers_toward_a_far_target():
    lut = _coarse_lut(6)
    model = SquaredLatency(lut)
    log_probs = {label: torch.tensor([0.9, 0.1]).log() for label in lut.labels}  # argmax 1 ms; 5 ms needs 4 changes
    landed = land_on_target(model, log_probs, target_ms=5.0 ** 2, tolerance=0.01)
    assert model.predict(landed) == pytest.approx(25.0)
    assert land_on_target(model, log_probs, target_ms=5.0 ** 2, tolerance=0.01, nearest=False) is None

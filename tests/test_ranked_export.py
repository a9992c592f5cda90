"""The ranked export: at-target architectures drawn from alpha, the best by supernet accuracy."""

from __future__ import annotations

import itertools
import logging

import pandas as pd
import pytest
import torch

from nni_lightnas.latency.lut import LatencyLUT
from nni_lightnas.strategies import LightNAS
from nni_lightnas.strategies.ranking import best_by_accuracy, draw_at_target
from test_search_convergence import _toy_lut, _toy_search

logging.getLogger('nni').setLevel(logging.ERROR)
pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _three_layer_lut() -> LatencyLUT:
    """Ops cost 1, 2 or 3 ms in each of three layers (plus 1 ms fixed): many sums hit 7 ms."""
    rows = [{'kind': 'fixed', 'layer': 'stem', 'op': 'stem', 'latency_ms': 1.0}]
    rows += [{'kind': 'op', 'layer': layer, 'op': op, 'latency_ms': cost}
             for layer in ('a', 'b', 'c') for op, cost in (('s', 1.0), ('m', 2.0), ('l', 3.0))]
    return LatencyLUT(pd.DataFrame(rows), {})


def test_draws_are_distinct_on_target_and_most_probable_first():
    lut = _three_layer_lut()
    log_probs = {label: torch.tensor([0.6, 0.3, 0.1]).log() for label in ('a', 'b', 'c')}
    drawn = draw_at_target(lut, log_probs, target_ms=7.0, tolerance=0.01, count=50)
    # every architecture whose ops sum to 6 ms: (2,2,2) and the permutations of (1,2,3)
    expected = {arch for arch in itertools.product('sml', repeat=3)
                if sum({'s': 1, 'm': 2, 'l': 3}[op] for op in arch) == 6}
    assert {tuple(arch[label] for label in 'abc') for arch in drawn} == expected
    assert len(drawn) == len(expected) == 7
    assert all(lut.predict(arch) == pytest.approx(7.0) for arch in drawn)
    scores = [sum(float(log_probs[label][lut.candidates[label].index(arch[label])]) for label in 'abc')
              for arch in drawn]
    assert scores == sorted(scores, reverse=True)
    assert drawn[0] == {'a': 'm', 'b': 'm', 'c': 'm'}  # 0.3^3 > 0.6 * 0.3 * 0.1
    # count caps the list; the same seed draws the same architectures
    assert draw_at_target(lut, log_probs, target_ms=7.0, tolerance=0.01, count=3) == drawn[:3]


def test_draws_only_what_alpha_allows():
    lut = _three_layer_lut()
    # layer a never takes 's': the three architectures with a='s' cannot be drawn
    log_probs = {'a': torch.tensor([0.0, 0.5, 0.5]).clamp_min(1e-45).log(),
                 'b': torch.tensor([1 / 3] * 3).log(), 'c': torch.tensor([1 / 3] * 3).log()}
    drawn = draw_at_target(lut, log_probs, target_ms=7.0, tolerance=0.01, count=50)
    assert drawn and all(arch['a'] != 's' for arch in drawn)
    assert len(drawn) == 5


@pytest.mark.parametrize('kwargs,match', [({'count': 0}, 'count must be an integer >= 1'),
                                          ({'tolerance': 0.0}, 'tolerance must be > 0')])
def test_draw_rejects_bad_settings(kwargs, match):
    lut = _three_layer_lut()
    log_probs = {label: torch.zeros(3) for label in 'abc'}
    with pytest.raises(ValueError, match=match):
        draw_at_target(lut, log_probs, **{'target_ms': 7.0, 'tolerance': 0.01, 'count': 5, **kwargs})


def test_best_by_accuracy_keeps_the_more_probable_on_a_tie():
    best, accuracies = best_by_accuracy([{'a': 'x'}, {'a': 'y'}, {'a': 'z'}], lambda arch: {'x': .5, 'y': .7, 'z': .7}[arch['a']])
    assert best == {'a': 'y'} and accuracies == [.5, .7, .7]
    with pytest.raises(ValueError, match='at least one candidate'):
        best_by_accuracy([], lambda arch: 0.0)


@pytest.mark.parametrize('kwargs,match', [({'rank_candidates': -1}, 'rank_candidates must be an integer >= 0'),
                                          ({'rank_candidates': 5, 'rank_batches': 0}, 'rank_batches must be'),
                                          ({'rank_candidates': 5, 'landing_tolerance': None}, 'needs a landing_tolerance'),
                                          ({'rank_candidates': 5, 'arch_gradient': 'none'}, "got 'none'")])
def test_strategy_rejects_bad_ranking_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LightNAS(target_latency_ms=1.5, latency_model=_toy_lut(), **kwargs)


def test_ranked_export_finds_the_useful_op_that_a_still_uniform_alpha_does_not():
    # alpha hardly moves (the paper's fixed rate over 28 steps), so its argmax is arbitrary;
    # the supernet has learnt the task, and ranking the three at-target candidates finds 'useful'
    strategy = _toy_search(schedule='fixed', arc_learning_rate=1e-5, lr_anneal_threshold=0, rank_candidates=3)
    assert strategy.history()['alpha_entropy_fraction'].iloc[-1] > 0.99
    result = strategy.export_result()
    assert result['lightnet'] == 'useful'
    assert result['export_rule'] == 'ranking'
    assert result['ranked_candidates'] == 3
    assert result['ranked_supernet_acc'] > 0.5
    assert result['landed_lightnet'] == result['argmax_lightnet']  # every candidate is on target: no landing
    assert result['landed'] == (result['argmax_lightnet'] != 'useful')
    if result['landed_lightnet'] != 'useful':
        assert result['landed_supernet_acc'] < result['ranked_supernet_acc']

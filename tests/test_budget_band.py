"""The budget band: stage 2 keeps the best score within [T * (1 - fill_tolerance), T]."""

from __future__ import annotations

import math

import pytest

from nni_lightnas.budget_band import BudgetBand
from nni_lightnas.strategies.evolution import LightNASEvolution


def test_the_band_rejects_an_over_budget_and_a_far_under_budget_candidate():
    band = BudgetBand(budget_ms=1.0, fill_tolerance=0.03)
    over = {'score': 0.95, 'latency_ms': 1.02}   # best score, over budget
    far_under = {'score': 0.90, 'latency_ms': 0.80}  # second best, budget left unused
    inside = {'score': 0.85, 'latency_ms': 0.985}
    assert not band.contains(over['latency_ms']) and not band.contains(far_under['latency_ms'])
    assert band.best([over, far_under, inside]) is inside
    assert band.distance(over['latency_ms']) == math.inf
    assert band.distance(far_under['latency_ms']) == pytest.approx(0.17)
    assert band.distance(inside['latency_ms']) == 0.0


def test_without_a_candidate_in_the_band_the_nearest_below_it_is_kept():
    band = BudgetBand(budget_ms=1.0, fill_tolerance=0.03)
    records = [{'score': 0.9, 'latency_ms': 0.6}, {'score': 0.7, 'latency_ms': 0.9}, {'score': 0.99, 'latency_ms': 1.1}]
    assert band.best(records)['latency_ms'] == 0.9
    assert band.best([{'score': 0.99, 'latency_ms': 1.1}]) is None
    assert band.best([{'score': 0.2, 'latency_ms': 0.99}, {'score': 0.1, 'latency_ms': 0.98}],
                     maximize=False)['score'] == 0.1


@pytest.mark.parametrize('kwargs, match', [({'budget_ms': 0.0}, 'budget_ms'), ({'budget_ms': math.nan}, 'budget_ms'),
                                           ({'budget_ms': 1.0, 'fill_tolerance': 1.0}, 'fill_tolerance'),
                                           ({'budget_ms': 1.0, 'fill_tolerance': -0.1}, 'fill_tolerance')])
def test_bad_band_settings_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BudgetBand(**kwargs)


def _linear_tuner(**kwargs):
    # latency grows with every width; scores favour the narrowest nets (as a short BTE can)
    def latency(params):
        return 0.001 * sum(value for key, value in params.items() if key.endswith('_chs'))
    return LightNASEvolution(lightnet='MBK3E3-skip-MBK5E6', preset='tiny', latency=latency, population_size=4,
                             sample_size=2, seed=0, **kwargs), latency


def test_the_tuner_keeps_the_best_score_within_the_band_not_the_best_overall():
    tuner, latency = _linear_tuner(budget_ms=1.0)
    space = tuner._space()
    narrow = {label: values[0] for label, values in space.items()}
    budget_ms = 1.02 * latency(narrow) * 2
    tuner, latency = _linear_tuner(budget_ms=budget_ms, fill_tolerance=0.05)
    scored = []
    for trial in range(40):
        params = tuner.generate_parameters(trial)
        score = 1.0 - latency(params) / budget_ms  # the faster, the better: the best overall wastes budget
        tuner.receive_trial_result(trial, params, {'default': score})
        scored.append((score, latency(params)))
    best = tuner.best()
    assert best['in_band'] and tuner.band.contains(best['latency_ms'])
    best_overall = max(scored)
    assert best_overall[1] < tuner.band.lower_ms  # the plain best score would have left budget unused
    assert best['score'] == max(score for score, ms in scored if tuner.band.contains(ms))


def test_evolved_children_move_toward_the_band():
    def mean_distance(band_children):
        probe, latency = _linear_tuner(budget_ms=1.0)
        narrow = {label: values[0] for label, values in probe._space().items()}
        tuner, _ = _linear_tuner(budget_ms=2 * latency(narrow), band_children=band_children)
        for trial in range(4):  # a narrow population: the band lies well above it
            params = dict(narrow, **{label: values[min(trial, len(values) - 1)] for label, values in
                                     list(tuner._space().items())[:1]})
            tuner.history[str(trial)] = {'params': params, 'latency_ms': latency(params), 'status': 'running',
                                         'score': None, 'attempts': 1}
            tuner.receive_trial_result(trial, params, {'default': 0.5})
        return sum(tuner.band.distance(latency(tuner._propose())) for _ in range(60)) / 60
    assert mean_distance(3) < mean_distance(1)


def test_the_first_population_is_filled_into_the_band():
    probe, latency = _linear_tuner(budget_ms=1.0)
    narrow = {label: values[0] for label, values in probe._space().items()}
    budget_ms = 2 * latency(narrow)
    tuner, _ = _linear_tuner(budget_ms=budget_ms, fill_tolerance=0.05)
    space = tuner._space()
    samples = [tuner.random_sample() for _ in range(50)]
    assert sum(latency(sample) < tuner.band.lower_ms for sample in samples) >= 10  # random widths leave budget
    for sample in (sample for sample in samples if latency(sample) <= budget_ms):  # the tuner repairs the rest
        filled = tuner.fill(sample)
        ms = latency(filled)
        assert ms <= budget_ms and latency(filled) >= latency(sample)
        if not tuner.band.contains(ms):  # then no single widening fits the budget any more
            assert all(latency(dict(filled, **{label: values[values.index(filled[label]) + 1]})) > budget_ms
                       for label, values in space.items() if values.index(filled[label]) < len(values) - 1)
    # the tuner proposes filled candidates first (a repeat falls back to the plain sample)
    fresh, _ = _linear_tuner(budget_ms=budget_ms, fill_tolerance=0.05)
    first = [latency(fresh.generate_parameters(trial)) for trial in range(fresh.population_size)]
    assert sum(fresh.band.contains(ms) for ms in first) >= 3, first
    # without a budget, nothing to fill
    free, _ = _linear_tuner()
    assert free.fill(narrow) == narrow

"""The stage-2 evolution tuner: hard budget, parameter-id matching, failures, resume, NAS use."""

from __future__ import annotations

import json

import nni
import pytest

from nni_lightnas.latency.channel import FlopsChannelLatency
from nni_lightnas.strategies.evolution import LightNASEvolution, parse_metric

ARCH = 'MBK3E3-skip-MBK5E6'
PRESET = 'tiny'
COEFFICIENTS = {'intercept_ms': 0.05, 'ms_per_mmac': 0.2}


SHARED_MODEL = FlopsChannelLatency(ARCH, PRESET, **COEFFICIENTS)  # one MACs cache for all tuners here


@pytest.fixture(scope='module')
def latency_model() -> FlopsChannelLatency:
    return SHARED_MODEL


@pytest.fixture(scope='module')
def budget_ms(latency_model) -> float:
    narrow, middle, wide = (latency_model(sample) for sample in latency_model.corner_samples())
    assert narrow < middle < wide
    return middle  # about half of the space is over budget


def make_tuner(budget_ms, **kwargs) -> LightNASEvolution:
    settings = dict(lightnet=ARCH, preset=PRESET, budget_ms=budget_ms, latency=SHARED_MODEL,
                    population_size=4, sample_size=2, seed=3)
    settings.update(kwargs)
    return LightNASEvolution(**settings)


def fake_score(params) -> float:
    """Wider is better, so evolution pushes against the budget."""
    return sum(params.values()) / 1000


def run(tuner: LightNASEvolution, ids) -> list[dict]:
    proposed = []
    for parameter_id in ids:
        params = tuner.generate_parameters(parameter_id)
        proposed.append(params)
        tuner.receive_trial_result(parameter_id, params, {'default': fake_score(params)})
        tuner.trial_end(parameter_id, True)
    return proposed


def test_never_proposes_over_budget(budget_ms, latency_model):
    # the latency model named as in an nnictl config's classArgs
    tuner = make_tuner(budget_ms, latency='flops', latency_args=COEFFICIENTS)
    proposed = run(tuner, range(30))
    latencies = [latency_model(params) for params in proposed]
    assert max(latencies) <= budget_ms
    assert tuner.num_over_budget > 0, 'the budget never bit: the test checks nothing'
    assert len({json.dumps(p, sort_keys=True) for p in proposed}) == 30  # no duplicates
    assert len(tuner.population) == 4  # aging keeps the population size
    # evolution climbs: the best of the last 10 beats the average random start
    assert max(map(fake_score, proposed[-10:])) >= sum(map(fake_score, proposed[:4])) / 4


def test_infeasible_budget_is_refused(latency_model):
    narrow = latency_model(latency_model.corner_samples()[0])
    tuner = make_tuner(narrow * 0.5)
    with pytest.raises(ValueError, match='infeasible'):
        tuner.generate_parameters(0)


def test_same_seed_same_candidates(budget_ms):
    assert run(make_tuner(budget_ms), range(12)) == run(make_tuner(budget_ms), range(12))
    assert run(make_tuner(budget_ms), range(12)) != run(make_tuner(budget_ms, seed=4), range(12))


def test_results_are_matched_on_parameter_id(budget_ms):
    tuner = make_tuner(budget_ms)
    first, second = tuner.generate_parameters(10), tuner.generate_parameters(11)
    # NNI issue 5726: the result of trial 11 arrives with trial 10's parameters, JSON-encoded twice
    tuner.receive_trial_result(11, first, json.dumps(json.dumps({'default': 0.8, 'latency_ms': 1.0})))
    assert tuner.population[0]['params'] == second
    assert tuner.population[0]['parameter_id'] == 11
    assert tuner.history['11']['metrics'] == {'latency_ms': 1.0}
    assert tuner.history['10']['status'] == 'running'


def test_failed_and_missing_trials_leave_the_population_alone(budget_ms):
    tuner = make_tuner(budget_ms, retry_failed=1)
    run(tuner, range(3))
    failed = tuner.generate_parameters(3)
    tuner.trial_end(3, False)
    assert tuner.history['3']['status'] == 'failed'
    assert len(tuner.population) == 3
    retried = tuner.generate_parameters(4)  # retried once ...
    assert retried == failed
    tuner.trial_end(4, False)
    assert tuner.generate_parameters(5) != failed  # ... then dropped
    tuner.trial_end(5, True)  # ended without a metric
    assert tuner.history['5']['status'] == 'missing'
    tuner.receive_trial_result(6, {}, 0.5)  # unknown id: ignored
    tuner.receive_trial_result(5, None, 'not a number')  # a metric without a score: dropped
    assert len(tuner.population) == 3
    run(tuner, range(7, 12))  # and the search goes on
    assert len(tuner.population) == 4


def test_resume_continues_the_same_search(budget_ms, tmp_path):
    state_path = tmp_path / 'state.json'
    original = make_tuner(budget_ms, state_path=state_path)
    run(original, range(10))
    pending = original.generate_parameters(10)  # running when the experiment stops
    assert json.loads(state_path.read_text())['history']['10']['status'] == 'running'

    resumed = make_tuner(budget_ms, state_path=state_path)
    resumed._space()  # loads the state (NNI: update_search_space)
    assert resumed.population == original.population
    assert resumed.history['10']['status'] == 'lost' and resumed.history['10']['params'] == pending
    assert run(resumed, range(11, 20)) == run(original, range(11, 20))


def test_parse_metric_forms():
    assert parse_metric({'default': 1, 'x': 2}) == (1.0, {'default': 1, 'x': 2})
    assert parse_metric('0.5') == (0.5, {})
    assert parse_metric(None) == (None, {})
    assert parse_metric('{"latency_ms": 2}') == (None, {'latency_ms': 2})


def test_rejects_non_choice_spaces_and_bad_arguments():
    tuner = LightNASEvolution(latency=None)
    with pytest.raises(ValueError, match='choice'):
        tuner.update_search_space({'lr': {'_type': 'uniform', '_value': [0, 1]}})
    with pytest.raises(ValueError, match='sample_size'):
        LightNASEvolution(population_size=3, sample_size=5)
    with pytest.raises(ValueError, match='optimize_mode'):
        LightNASEvolution(optimize_mode='best')


def test_generic_space_without_lightnet_and_space_exhaustion():
    tuner = LightNASEvolution(latency=lambda params: params['a'] * 1.0, budget_ms=2, population_size=2,
                              sample_size=1, max_attempts=50)
    tuner.update_search_space({'a': {'_type': 'choice', '_value': [3, 1, 2]}})
    seen = [tuner.generate_parameters(i)['a'] for i in range(2)]
    assert sorted(seen) == [1, 2]  # 3 ms is over budget
    with pytest.raises(nni.NoMoreTrialError):
        tuner.generate_parameters(2)


def _bte_evaluate(model):
    import torch

    from nni_lightnas.bte import batchwise_training_estimation
    generator = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(96, 1, 28, 28, generator=generator),
                                          torch.randint(0, 10, (96,), generator=generator))
    nni.report_final_result(batchwise_training_estimation(model, data, batches=3, last=2, batch_size=32).score)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_nas_experiment_with_hpo_tuner_strategy(budget_ms):
    """The tuner as a NAS strategy: NasExperiment over the channel model space (sequential engine)."""
    import socket

    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment, NasExperimentConfig
    from nni.nas.strategy.hpo import HPOTunerStrategy

    from nni_lightnas.search_spaces import ChannelSpace
    tuner = make_tuner(budget_ms, population_size=2, sample_size=1)
    config = NasExperimentConfig('sequential', 'raw', 'local')
    config.max_trial_number = 3
    config.trial_concurrency = 1
    experiment = NasExperiment(ChannelSpace(ARCH, PRESET), FunctionalEvaluator(_bte_evaluate),
                               HPOTunerStrategy(tuner), config=config)
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    try:
        experiment.run(port=port)
        top = experiment.export_top_models(top_k=1, formatter='dict')[0]
    finally:
        experiment.stop()
    done = [record for record in tuner.history.values() if record['status'] == 'done']
    assert len(done) == 3
    assert all(record['latency_ms'] <= budget_ms for record in done)
    assert top in [record['params'] for record in done]

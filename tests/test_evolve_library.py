"""Stage 2 as a library: ``EvolveConfig`` -> ``run_evolution`` in this process, the same trial config as NNI's."""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

from nni_lightnas.budget_band import BudgetBand
from nni_lightnas.evolve import EvolveConfig, InfeasibleBudgetError, run_evolution, write_experiment
from nni_lightnas.latency.channel import FlopsChannelLatency
from nni_lightnas.trials.bte import BteTrialConfig, build_parser

ARCH = 'MBK3E3-skip-MBK5E6'
PRESET = 'tiny'
LINE = {'intercept_ms': 0.0, 'ms_per_mmac': 0.2}


def _config(**overrides) -> EvolveConfig:
    model = FlopsChannelLatency(ARCH, PRESET, **LINE)
    budget_ms = model(model.corner_samples()[1])  # the middle widths: some candidates over, some under
    settings = dict(lightnet=ARCH, preset=PRESET, budget_ms=budget_ms, latency_args=LINE, max_trials=4,
                    population_size=2, sample_size=1, data='synthetic', data_limit=64, batches=2, last=1)
    return EvolveConfig(**{**settings, **overrides})


def test_run_evolution_writes_every_trial_and_keeps_the_best_within_budget(tmp_path):
    config = _config()
    seen = []
    result = run_evolution(config, tmp_path, on_trial=seen.append)
    model = FlopsChannelLatency(ARCH, PRESET, **LINE)
    assert [trial['trial'] for trial in seen] == [0, 1, 2, 3]
    lines = [json.loads(line) for line in (tmp_path / 'trials.jsonl').read_text().splitlines()]
    assert [line['trial'] for line in lines] == [0, 1, 2, 3] and lines == result.trials
    for line in lines:
        assert line['latency_ms'] == round(model(line['params']), 3) <= config.budget_ms + 1e-3
        assert line['default'] == pytest.approx(-line['bte_loss'])
    best = json.loads((tmp_path / 'best.json').read_text())
    assert best['params'] == result.widths
    band = BudgetBand(budget_ms=config.budget_ms, fill_tolerance=config.fill_tolerance)
    in_band = [line['default'] for line in lines if band.contains(line['latency_ms'])]
    assert in_band and best['in_band'] and best['score'] == max(in_band)  # the best score that uses the budget


def test_a_stopped_evolution_resumes_with_only_the_missing_trials(tmp_path):
    first = run_evolution(_config(max_trials=2), tmp_path)
    resumed = run_evolution(_config(max_trials=4), tmp_path)
    assert resumed.trials[:2] == first.trials  # kept, not rerun
    assert [trial['trial'] for trial in resumed.trials] == [0, 1, 2, 3]
    again = run_evolution(_config(max_trials=4), tmp_path)  # nothing left to do
    assert again.trials == resumed.trials


def test_an_infeasible_budget_is_refused_before_anything_is_written(tmp_path):
    output = tmp_path / 'evolve'
    with pytest.raises(InfeasibleBudgetError, match=r'budget_ms 0.0001 is infeasible.*accepted: budget_ms >= 0\.0'):
        run_evolution(_config(budget_ms=1e-4), output)
    assert not output.exists()


@pytest.mark.parametrize('overrides, message', [
    ({'sample_size': 3}, 'sample_size must be at most population_size=2, got 3'),
    ({'budget_ms': float('nan')}, 'budget_ms must be a positive number of ms, got nan'),
    ({'max_trials': 0}, 'max_trials must be an integer >= 1, got 0'),
    ({'data': 'mnist'}, "data must be one of fashion_mnist, cifar10, imagenet, synthetic, got 'mnist'"),
    ({'batches': 2, 'last': 3}, 'last must be at most batches=2, got 3'),
    ({'fill_tolerance': 1.5}, 'fill_tolerance'),
])
def test_bad_settings_are_named_before_any_trial(overrides, message):
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
        _config(**overrides)


def test_the_nnictl_trial_runs_the_same_trial_config(tmp_path):
    config = _config(seed=3, supernet='weights.pt')
    path = write_experiment(config, tmp_path, python='/opt/venv/bin/python')
    experiment = yaml.safe_load(path.read_text().split('\n', 1)[1])
    command = shlex.split(experiment['trialCommand'])
    assert command[:3] == ['/opt/venv/bin/python', '-m', 'nni_lightnas.trials.bte']
    from_command = BteTrialConfig.from_args(build_parser().parse_args(command[3:]))
    assert from_command == config.trial_config(config.latency, config.latency_args)
    assert from_command.seed == 3 and from_command.supernet == 'weights.pt' and from_command.batches == 2
    assert experiment['tuner']['classArgs'] == config.tuner_args(config.latency, config.latency_args)


def test_a_trial_leaves_the_callers_threads_and_random_state_alone():
    import torch

    from nni_lightnas.trials.bte import run_trial
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        config = _config().trial_config('flops', LINE)
        assert config.threads == 1
        torch.manual_seed(123)
        state = torch.get_rng_state()
        run_trial(config, {})
        assert torch.get_num_threads() == 2  # the trial ran with one thread, then gave the two back
        assert torch.equal(torch.get_rng_state(), state)
    finally:
        torch.set_num_threads(threads)

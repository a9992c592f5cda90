"""Stage 2 as one call: the BTE evolution of a LightNet's widths under a latency budget.

:func:`run_evolution` is what ``nni-lightnas evolve --in-process`` and the pipeline call; it
runs the :class:`~nni_lightnas.strategies.evolution.LightNASEvolution` tuner and the BTE trial
(:func:`~nni_lightnas.trials.bte.run_trial`) one after the other in this process and writes,
into ``output_dir``:

* ``trials.jsonl``: one line per finished trial, ``{"trial", "params", "default", "latency_ms", ...}``
  (the trial's final result, as NNI's web UI shows it);
* ``best.json``: the tuner's best candidate (the best score within the budget band);
* ``tuner_state.json``: the tuner's state; a run stopped part-way resumes from it and runs only
  the trials still missing;
* ``latency_model.json`` (a FLOPs line calibrated here) or ``latency_cache.jsonl`` (measured
  candidates), when the latency model needs them.

:func:`write_experiment` writes the same search as an NNI experiment (``config.yml``,
``search_space.json``) for ``nnictl create``; its trials run ``python -m
nni_lightnas.trials.bte`` with the same :class:`~nni_lightnas.trials.bte.BteTrialConfig`.

Examples
--------
>>> import tempfile
>>> config = EvolveConfig(lightnet='MBK3E3-skip-MBK5E6', preset='tiny', budget_ms=1.0,
...                       latency_args={'intercept_ms': 0.0, 'ms_per_mmac': 0.2}, max_trials=2,
...                       population_size=2, sample_size=1, data='synthetic', data_limit=64, batches=2, last=1)
>>> result = run_evolution(config, tempfile.mkdtemp())
>>> len(result.trials), result.best['latency_ms'] <= 1.0
(2, True)
"""

from __future__ import annotations

import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .atomic import atomic_write_json, atomic_write_text, check_output_path
from .budget_band import DEFAULT_FILL_TOLERANCE, BudgetBand
from .trials.bte import BteTrialConfig

__all__ = ['EvolveConfig', 'EvolutionResult', 'InfeasibleBudgetError', 'run_evolution', 'write_experiment',
           'check_budget', 'prepare_latency_model', 'EVOLUTION_CLASS']

_logger = logging.getLogger(__name__)

#: The tuner class an NNI experiment config names.
EVOLUTION_CLASS = 'nni_lightnas.strategies.evolution.LightNASEvolution'
#: The tuner's state file in the output directory of :func:`run_evolution`.
TUNER_STATE_FILE = 'tuner_state.json'


class InfeasibleBudgetError(ValueError):
    """Even the narrowest widths of the LightNet exceed the budget: no candidate is feasible.

    ``str(error)`` names the setting ``budget_ms``; :meth:`message` names another (a CLI flag).
    """

    def __init__(self, budget_ms: float, fastest_ms: float, lightnet: str, latency: str,
                 narrowest: dict[str, Any] | None = None):
        self.budget_ms, self.fastest_ms, self.lightnet, self.latency = budget_ms, fastest_ms, lightnet, latency
        #: The narrowest widths (the tuner's parameters), which take ``fastest_ms``.
        self.narrowest = dict(narrowest or {})
        super().__init__(self.message('budget_ms'))

    def message(self, setting: str) -> str:
        return (f'{setting} {self.budget_ms:g} is infeasible: the narrowest widths of {self.lightnet} take '
                f'{self.fastest_ms:.4f} ms (latency model {self.latency}); accepted: {setting} >= '
                f'{self.fastest_ms:.4f}')


@dataclass
class EvolveConfig:
    """Settings of one stage-2 evolution: the tuner's and the BTE trials'.

    Attributes
    ----------
    lightnet, preset
        The stage-1 LightNet (ops joined by ``-``) whose widths are searched, and its preset.
    budget_ms
        Hard latency budget (ms); the tuner never proposes a candidate above it.
    latency, latency_args
        The latency model of the budget check and of the trials' ``latency_ms``
        (:func:`~nni_lightnas.latency.channel.make_channel_latency_model`): ``'flops'`` (a MACs
        line; calibrated on this host from three measurements when ``latency_args`` has no
        ``ms_per_mmac``), ``'measured'``, a saved model's JSON path or ``'module:factory'``.
    max_trials, population_size, sample_size, fill_tolerance, seed
        The tuner's (:class:`~nni_lightnas.strategies.evolution.LightNASEvolution`); ``seed``
        seeds the trials too.
    batches, last, data, data_dir, data_limit, supernet
        The BTE trial's (:class:`~nni_lightnas.trials.bte.BteTrialConfig`); ``None``: its default.
    """

    lightnet: str
    budget_ms: float
    preset: str = 'fashion_mnist'
    latency: str = 'flops'
    latency_args: dict[str, Any] = field(default_factory=dict)
    max_trials: int = 50
    population_size: int = 20
    sample_size: int = 5
    fill_tolerance: float = DEFAULT_FILL_TOLERANCE
    seed: int = 0
    batches: int | None = None
    last: int | None = None
    data: str = 'fashion_mnist'
    data_dir: str | None = None
    data_limit: int | None = None
    supernet: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.budget_ms, bool) or not isinstance(self.budget_ms, (int, float)) \
                or not math.isfinite(self.budget_ms) or self.budget_ms <= 0:
            raise ValueError(f'budget_ms must be a positive number of ms, got {self.budget_ms!r}')
        for name in ('max_trials', 'population_size', 'sample_size'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
        if self.sample_size > self.population_size:
            raise ValueError(f'sample_size must be at most population_size={self.population_size}, '
                             f'got {self.sample_size}')
        try:
            BudgetBand(budget_ms=1.0, fill_tolerance=self.fill_tolerance)
        except ValueError as error:
            raise ValueError(f'fill_tolerance: {error}') from None
        self.latency_args = dict(self.latency_args or {})
        self.trial_config(self.latency, self.latency_args)  # the trial's own checks, before any work

    def trial_config(self, latency: str, latency_args: dict[str, Any]) -> BteTrialConfig:
        """The BTE trial of this evolution, scoring with the latency model ``latency`` (as prepared)."""
        optional = {name: getattr(self, name) for name in ('batches', 'last') if getattr(self, name) is not None}
        return BteTrialConfig(lightnet=self.lightnet, preset=self.preset, data=self.data, data_dir=self.data_dir,
                              data_limit=self.data_limit, supernet=self.supernet, seed=self.seed, latency=latency,
                              latency_args=dict(latency_args), **optional)

    def tuner_args(self, latency: str, latency_args: dict[str, Any]) -> dict[str, Any]:
        """The tuner's keyword arguments (an experiment config's ``classArgs``)."""
        return {'lightnet': self.lightnet, 'preset': self.preset, 'budget_ms': self.budget_ms, 'latency': latency,
                'latency_args': dict(latency_args), 'population_size': self.population_size,
                'sample_size': self.sample_size, 'seed': self.seed, 'fill_tolerance': self.fill_tolerance}


@dataclass
class EvolutionResult:
    """What :func:`run_evolution` found: the best candidate and every finished trial."""

    best: dict[str, Any]
    trials: list[dict[str, Any]]
    latency: str
    latency_args: dict[str, Any]

    @property
    def widths(self) -> dict[str, Any]:
        """The best candidate's widths (the tuner's parameters)."""
        return dict(self.best['params'])


def check_budget(lightnet: str, preset: str, budget_ms: float, latency: str = 'flops',
                 latency_args: dict[str, Any] | None = None):
    """Refuse a budget that even the narrowest widths of ``lightnet`` exceed; returns the latency model.

    The narrowest configuration is the one the tuner checks first: over the budget, no
    candidate is feasible and the tuner would stop at once. Nothing is written here (the
    model's measurement cache is not used).

    Examples
    --------
    >>> check_budget('MBK3E3-skip-MBK5E6', 'tiny', 1e-4, 'flops',
    ...              {'intercept_ms': 0.05, 'ms_per_mmac': 0.2})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    nni_lightnas.evolve.InfeasibleBudgetError: budget_ms 0.0001 is infeasible: ... take 0.0828 ms ...>= 0.0828
    """
    from .latency.channel import make_channel_latency_model
    from .search_spaces.channel_space import nni_search_space

    if isinstance(budget_ms, bool) or not budget_ms > 0 or not math.isfinite(budget_ms):
        raise ValueError(f'budget_ms must be a positive number of ms, got {budget_ms}')
    args = {key: value for key, value in (latency_args or {}).items() if key != 'cache_path'}
    model = make_channel_latency_model(latency, lightnet, preset, **args)
    narrowest = {}
    for label, spec in nni_search_space(lightnet, preset).items():
        values = list(spec['_value'])
        narrowest[label] = min(values) if all(isinstance(v, (int, float)) for v in values) else values[0]
    fastest_ms = float(model(narrowest))
    if fastest_ms > budget_ms:
        raise InfeasibleBudgetError(budget_ms, fastest_ms, lightnet, latency, narrowest)
    return model


def prepare_latency_model(config: EvolveConfig, output_dir: Path) -> tuple[str, dict[str, Any]]:
    """The latency model the tuner and the trials share, as ``(spec, args)``; the budget checked first.

    ``'flops'`` without coefficients is calibrated here once (three measurements) and saved as
    ``latency_model.json``; ``'measured'`` caches every measurement in ``latency_cache.jsonl``,
    which the tuner and the trials share. An infeasible budget raises
    :class:`InfeasibleBudgetError` before anything is written.
    """
    latency, latency_args = config.latency, dict(config.latency_args)
    model = check_budget(config.lightnet, config.preset, config.budget_ms, latency, latency_args)
    output_dir.mkdir(parents=True, exist_ok=True)
    if latency == 'flops' and 'ms_per_mmac' not in latency_args:
        return str(model.save(output_dir / 'latency_model.json')), {}
    if latency == 'measured':
        latency_args.setdefault('cache_path', str(output_dir / 'latency_cache.jsonl'))
    return latency, latency_args


def _finished_trials(tuner) -> list[dict[str, Any]]:
    """Every trial with a result, in trial order, as its line of ``trials.jsonl``."""
    trials = []
    for key, record in tuner.history.items():
        if record['status'] == 'done' and key.isdigit():
            trials.append({'trial': int(key), 'params': record['params'], 'default': record['score'],
                           **record.get('metrics', {})})
    return sorted(trials, key=lambda trial: trial['trial'])


def run_evolution(config: EvolveConfig, output_dir: str | Path, *,
                  on_trial: Callable[[dict[str, Any]], None] | None = None) -> EvolutionResult:
    """Run stage 2 in this process: ``config.max_trials`` BTE trials proposed by the evolution tuner.

    Writes ``trials.jsonl``, ``best.json`` and ``tuner_state.json`` into ``output_dir``; a run
    stopped part-way resumes from the tuner's state and runs only the missing trials.
    ``on_trial`` is called with each finished trial's line (progress).

    Examples
    --------
    >>> result = run_evolution(EvolveConfig(lightnet=ARCH, budget_ms=0.9), 'runs/evolve')  # doctest: +SKIP
    >>> result.widths, result.best['latency_ms'], result.best['in_band']  # doctest: +SKIP
    ({'stage0_out_chs': 16, ...}, 0.884, True)
    """
    from .search_spaces.channel_space import nni_search_space
    from .strategies.evolution import LightNASEvolution
    from .trials.bte import run_trial

    output = check_output_path(Path(output_dir), what='output_dir', directory=True)
    latency, latency_args = prepare_latency_model(config, output)
    tuner = LightNASEvolution(**config.tuner_args(latency, latency_args), state_path=output / TUNER_STATE_FILE)
    trial_config = config.trial_config(latency, latency_args)
    tuner.update_search_space(nni_search_space(config.lightnet, config.preset))  # and loads a saved state
    trials = _finished_trials(tuner)
    if trials:
        _logger.info('evolution resumed in %s: %d of %d trials done', output, len(trials), config.max_trials)
    trial_id = max([int(key) for key in tuner.history if key.isdigit()], default=-1) + 1
    while len(trials) < config.max_trials:
        params = tuner.generate_parameters(trial_id)
        metrics = run_trial(trial_config, params)
        tuner.receive_trial_result(trial_id, params, metrics)
        tuner.trial_end(trial_id, True)
        trials = _finished_trials(tuner)
        atomic_write_text(output / 'trials.jsonl', ''.join(json.dumps(trial) + '\n' for trial in trials))
        if on_trial is not None:
            on_trial({'trial': trial_id, 'params': params, **metrics})
        trial_id += 1
    best = tuner.best()
    if best is None:
        raise RuntimeError(f'the evolution in {output} finished {len(trials)} trials without a score')
    atomic_write_json(output / 'best.json', best, default=float)
    return EvolutionResult(best=best, trials=trials, latency=latency, latency_args=latency_args)


def write_experiment(config: EvolveConfig, output_dir: str | Path, *, concurrency: int = 1,
                     max_duration: str | None = None, python: str | None = None,
                     experiment_name: str = 'lightnas-evolve', working_dir: str | Path | None = None) -> Path:
    """Write ``config.yml`` and ``search_space.json`` of the evolution as an NNI experiment; returns the config path.

    Start it with ``nnictl create --config PATH``: NNI's manager runs the same tuner, and each
    trial runs ``python -m nni_lightnas.trials.bte`` with the flags of
    :meth:`EvolveConfig.trial_config` (``python``: the trials' interpreter, default this one).
    An infeasible budget is refused before anything is written.

    Examples
    --------
    >>> import tempfile, yaml
    >>> config = EvolveConfig(lightnet='MBK3E3-skip-MBK5E6', preset='tiny', budget_ms=1.0,
    ...                       latency_args={'ms_per_mmac': 0.1}, max_trials=3)
    >>> path = write_experiment(config, tempfile.mkdtemp())
    >>> yaml.safe_load(path.read_text())['tuner']['className']
    'nni_lightnas.strategies.evolution.LightNASEvolution'
    """
    import yaml

    from .search_spaces.channel_space import nni_search_space

    output = check_output_path(Path(output_dir).resolve(), what='output_dir', directory=True)
    latency, latency_args = prepare_latency_model(config, output)
    atomic_write_text(output / 'search_space.json',
                      json.dumps(nni_search_space(config.lightnet, config.preset), indent=1))
    trial = config.trial_config(latency, latency_args)
    experiment: dict[str, Any] = {
        'experimentName': experiment_name,
        'searchSpaceFile': 'search_space.json',
        'trialCommand': trial.command(python or sys.executable),
        'trialCodeDirectory': '.',
        'trialConcurrency': concurrency,
        'maxTrialNumber': config.max_trials,
        'tuner': {'codeDirectory': '.', 'className': EVOLUTION_CLASS,
                  'classArgs': config.tuner_args(latency, latency_args)},
        'trainingService': {'platform': 'local'},
    }
    if max_duration:
        experiment['maxExperimentDuration'] = max_duration
    if working_dir:
        experiment['experimentWorkingDirectory'] = str(Path(working_dir).resolve())
    path = output / 'config.yml'
    atomic_write_text(path, f'# written by nni-lightnas evolve; run: nnictl create --config {path}\n'
                      + yaml.safe_dump(experiment, sort_keys=False))
    return path

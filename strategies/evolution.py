"""Stage 2: regularized evolution over the channel widths of a LightNet, under a hard latency budget.

:class:`LightNASEvolution` is an NNI tuner (``nni.tuner.Tuner``): ``nnictl`` runs it (see
``examples/fashion_mnist/evolve.yml``), and :class:`nni.nas.strategy.hpo.HPOTunerStrategy`
wraps it as a NAS strategy for ``NasExperiment``. It works on any NNI search space of
``choice`` parameters; the LightNet arguments only build the default search space and the
latency model.

Regularized evolution (Real et al., AAAI 2019): until ``population_size`` results are in,
candidates are random; after that each one is a child of the best of ``sample_size``
random members of the population (a tournament), crossed over with a second tournament
winner with probability ``crossover_prob`` and mutated; every result enters the
population and the oldest member leaves it (aging).

The latency budget is hard: a candidate whose predicted latency exceeds ``budget_ms`` is
never returned to NNI, so it is never trained. Over-budget children are resampled and,
failing that, repaired by narrowing one width at a time (the narrowest configuration must
fit, else the search space is refused).

Results are matched on ``parameter_id`` only (under concurrency NNI 3.0 can pass another
trial's parameters), failed or metric-less trials leave the population untouched (and are
retried ``retry_failed`` times), and the whole state is written to JSON after every event
and read back on start, so a resumed experiment continues the same population.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from pathlib import Path
from typing import Any, Callable, Mapping

import nni
from nni.tuner import Tuner

from nni_lightnas.budget_band import DEFAULT_FILL_TOLERANCE, BudgetBand

__all__ = ['LightNASEvolution', 'parse_metric', 'STATE_FILE_NAME']

_logger = logging.getLogger(__name__)

#: Name of the state file in NNI's checkpoint directory when no ``state_path`` is given.
STATE_FILE_NAME = 'lightnas_evolution.json'
_STATE_VERSION = 1


def parse_metric(value: Any) -> tuple[float | None, dict[str, Any]]:
    """``(score, extra)`` from a reported metric: a number, a dict with ``'default'``, or JSON of either.

    NNI's local training service hands the tuner a decoded value, the remote one a JSON
    string (sometimes encoded twice); NAS passes only the ``'default'`` number.

    Examples
    --------
    >>> parse_metric('{"default": 0.9, "latency_ms": 3.5}')
    (0.9, {'default': 0.9, 'latency_ms': 3.5})
    >>> parse_metric(0.5)
    (0.5, {})
    >>> parse_metric('"0.25"')
    (0.25, {})
    """
    for _ in range(3):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                return None, {}
        else:
            break
    extra: dict[str, Any] = {}
    if isinstance(value, Mapping):
        extra = dict(value)
        value = value.get('default')
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, extra
    return float(value), extra


def _key(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True)


class LightNASEvolution(Tuner):
    """Regularized evolution over choice parameters with a hard latency budget.

    Parameters
    ----------
    lightnet
        The LightNet (stage-1 result) whose widths are searched; builds the default search
        space (:func:`~nni_lightnas.search_spaces.channel_space.nni_search_space`) and the
        latency model. Optional when ``latency`` is a callable and NNI gives the search space.
    preset
        Preset of the LightNet.
    budget_ms
        Hard latency budget; ``None`` searches without a constraint.
    latency
        Latency model: ``'flops'``, ``'measured'``, a saved model's JSON path,
        ``'module:factory'`` (see :func:`~nni_lightnas.latency.channel.make_channel_latency_model`),
        or, from Python, any callable ``params -> ms``.
    latency_args
        Keyword arguments of the latency model (e.g. ``{"intercept_ms": 0.2, "ms_per_mmac": 0.1}``
        or ``{"cache_path": "runs/latency.jsonl"}``).
    optimize_mode
        ``'maximize'`` (the default: the BTE score is higher-is-better) or ``'minimize'``.
    population_size
        Results kept in the population (and random candidates before evolving).
    sample_size
        Tournament size, ``1 <= sample_size <= population_size``.
    mutation_prob
        Per-parameter probability of moving to a neighbouring choice (at least one moves);
        default ``1 / number of parameters``.
    crossover_prob
        Probability that a child mixes two tournament winners (uniform crossover) before mutation.
    seed
        Seed of every random decision.
    state_path
        JSON file of the tuner state, written after each event and read back when it exists.
        Default: ``lightnas_evolution.json`` in NNI's checkpoint directory (when run by NNI).
    retry_failed
        How many times a failed trial's parameters are proposed again before they are dropped.
    max_attempts
        Candidates drawn per request before the tuner gives up (``NoMoreTrialError``): all
        duplicates of earlier ones (space exhausted).
    fill_tolerance
        With a budget, the band ``[budget_ms * (1 - fill_tolerance), budget_ms]`` of latencies
        that use the budget (:class:`~nni_lightnas.budget_band.BudgetBand`): :meth:`best` keeps
        the best score within it, and an evolved child is the one of ``band_children``
        mutations nearest to it.
    band_children
        Mutated children drawn per evolved candidate; the one nearest to the band is proposed
        (1: no preference).

    Examples
    --------
    >>> tuner = LightNASEvolution(lightnet='MBK3E3-skip-MBK5E6', preset='tiny', budget_ms=0.5, latency='flops',
    ...                           latency_args={'intercept_ms': 0.0, 'ms_per_mmac': 0.2}, population_size=4,
    ...                           sample_size=2, seed=0)
    >>> params = tuner.generate_parameters(0)
    >>> tuner.latency_ms(params) <= 0.5
    True
    >>> tuner.receive_trial_result(0, params, {'default': 0.7, 'latency_ms': tuner.latency_ms(params)})
    >>> len(tuner.population)
    1
    """

    def __init__(self, *, lightnet: str | None = None, preset: str = 'fashion_mnist', budget_ms: float | None = None,
                 latency: str | Callable[[Mapping[str, Any]], float] | None = 'flops',
                 latency_args: Mapping[str, Any] | None = None, optimize_mode: str = 'maximize',
                 population_size: int = 20, sample_size: int = 5, mutation_prob: float | None = None,
                 crossover_prob: float = 0.3, seed: int = 0, state_path: str | os.PathLike | None = None,
                 retry_failed: int = 0, max_attempts: int = 200, fill_tolerance: float = DEFAULT_FILL_TOLERANCE,
                 band_children: int = 3):
        super().__init__()
        if not (isinstance(population_size, int) and population_size >= 1):
            raise ValueError(f'population_size must be a positive integer, got {population_size!r}')
        if not (isinstance(sample_size, int) and 1 <= sample_size <= population_size):
            raise ValueError(f'sample_size must be an integer in [1, population_size={population_size}], '
                             f'got {sample_size!r}')
        if optimize_mode not in ('maximize', 'minimize'):
            raise ValueError(f"optimize_mode must be 'maximize' or 'minimize', got {optimize_mode!r}")
        if mutation_prob is not None and not 0 < mutation_prob <= 1:
            raise ValueError(f'mutation_prob must be in (0, 1] or None, got {mutation_prob!r}')
        if not 0 <= crossover_prob <= 1:
            raise ValueError(f'crossover_prob must be in [0, 1], got {crossover_prob!r}')
        if budget_ms is not None and not budget_ms > 0:
            raise ValueError(f'budget_ms must be > 0 or None, got {budget_ms!r}')
        if not (isinstance(retry_failed, int) and retry_failed >= 0):
            raise ValueError(f'retry_failed must be a non-negative integer, got {retry_failed!r}')
        if not (isinstance(max_attempts, int) and max_attempts >= 1):
            raise ValueError(f'max_attempts must be a positive integer, got {max_attempts!r}')
        if not (isinstance(band_children, int) and band_children >= 1):
            raise ValueError(f'band_children must be a positive integer, got {band_children!r}')
        self.lightnet = lightnet
        self.preset = preset
        self.budget_ms = None if budget_ms is None else float(budget_ms)
        self.band = None if budget_ms is None else BudgetBand(budget_ms=float(budget_ms), fill_tolerance=fill_tolerance)
        self.band_children = band_children
        self.optimize_mode = optimize_mode
        self.population_size = population_size
        self.sample_size = sample_size
        self.mutation_prob = mutation_prob
        self.crossover_prob = crossover_prob
        self.seed = seed
        self.retry_failed = retry_failed
        self.max_attempts = max_attempts
        self._latency_spec = latency
        self._latency_args = dict(latency_args or {})
        self._latency_model: Callable[[Mapping[str, Any]], float] | None = None
        self._explicit_state_path = Path(state_path) if state_path is not None else None

        self.rng = random.Random(seed)
        self.search_space: dict[str, list[Any]] | None = None
        #: Completed individuals, oldest first: {parameter_id, params, score, latency_ms}.
        self.population: list[dict[str, Any]] = []
        #: Every proposed candidate by parameter id: {params, latency_ms, status, score, attempts}.
        self.history: dict[str, dict[str, Any]] = {}
        self._latency_cache: dict[str, float] = {}
        self._retry_queue: list[dict[str, Any]] = []
        self.num_over_budget = 0
        self.num_results = 0

        # Nothing heavy here: NNI gives a tuner 10 s from process start to connect, so torch,
        # the default search space, the latency model and the saved state are loaded on
        # first use (update_search_space, or the first call that needs them).
        self._state_restored = False

    # ---------------------------------------------------------------- latency
    @property
    def latency_model(self) -> Callable[[Mapping[str, Any]], float] | None:
        """The latency model (built on first use); ``None`` when there is neither model nor budget."""
        if self._latency_model is None and self._latency_spec is not None:
            if callable(self._latency_spec):
                self._latency_model = self._latency_spec
            elif self.lightnet is not None:
                from nni_lightnas.latency.channel import make_channel_latency_model
                self._latency_model = make_channel_latency_model(self._latency_spec, self.lightnet, self.preset,
                                                                 **self._latency_args)
            elif self.budget_ms is not None:
                raise ValueError(f'latency={self._latency_spec!r} needs lightnet=...; or pass a callable')
        return self._latency_model

    def latency_ms(self, params: Mapping[str, Any]) -> float | None:
        """Predicted latency of ``params`` (cached), ``None`` without a latency model."""
        key = _key(params)
        if key not in self._latency_cache:
            model = self.latency_model
            if model is None:
                return None
            self._latency_cache[key] = float(model(params))
        return self._latency_cache[key]

    def feasible(self, params: Mapping[str, Any]) -> bool:
        """Whether ``params`` fits the budget (always, without a budget)."""
        if self.budget_ms is None:
            return True
        latency = self.latency_ms(params)
        return latency is not None and latency <= self.budget_ms

    # ----------------------------------------------------------- search space
    def update_search_space(self, search_space: Mapping[str, Any]) -> None:
        """Accept an NNI search space of ``choice`` parameters (values sorted when numeric)."""
        space: dict[str, list[Any]] = {}
        for label, spec in search_space.items():
            kind = spec.get('_type') if isinstance(spec, Mapping) else None
            if kind != 'choice' or not spec.get('_value'):
                raise ValueError(f'{type(self).__name__} supports only non-empty choice parameters; '
                                 f'{label} is {spec!r}')
            values = list(spec['_value'])
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                values = sorted(values)
            space[label] = values
        if self.search_space is not None and space != self.search_space:
            _logger.info('search space changed: %s', space)
        self.search_space = space
        self._restore_once()
        if self.budget_ms is not None and self.latency_model is not None:
            narrowest = {label: values[0] for label, values in space.items()}
            if not self.feasible(narrowest):
                raise ValueError(f'budget_ms={self.budget_ms} is infeasible: the narrowest configuration takes '
                                 f'{self.latency_ms(narrowest):.3f} ms')

    def _space(self) -> dict[str, list[Any]]:
        if self.search_space is None and self.lightnet is not None:
            from nni_lightnas.search_spaces.channel_space import nni_search_space
            self.update_search_space(nni_search_space(self.lightnet, self.preset))
        if self.search_space is None:
            raise RuntimeError('no search space yet: give lightnet=... or call update_search_space()')
        self._restore_once()
        return self.search_space

    def _restore_once(self) -> None:
        if self._state_restored:
            return
        self._state_restored = True
        path = self.state_path
        if path is not None and path.is_file():
            self.load_state(path)

    # ------------------------------------------------------------- candidates
    def random_sample(self) -> dict[str, Any]:
        return {label: self.rng.choice(values) for label, values in self._space().items()}

    def tournament(self) -> dict[str, Any]:
        """The best of ``sample_size`` random population members."""
        contenders = self.rng.sample(self.population, min(self.sample_size, len(self.population)))
        return max(contenders, key=lambda individual: individual['fitness'])

    def mutate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Move each parameter to a neighbouring choice with ``mutation_prob``; at least one moves."""
        space = self._space()
        movable = [label for label, values in space.items() if len(values) > 1]
        child = dict(params)
        if not movable:
            return child
        prob = self.mutation_prob if self.mutation_prob is not None else 1 / len(movable)
        chosen = [label for label in movable if self.rng.random() < prob] or [self.rng.choice(movable)]
        for label in chosen:
            values = space[label]
            index = values.index(child[label]) if child.get(label) in values else self.rng.randrange(len(values))
            step = self.rng.choice([-1, 1]) if 0 < index < len(values) - 1 else (1 if index == 0 else -1)
            child[label] = values[index + step]
        return child

    def crossover(self, first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, Any]:
        """Uniform crossover: each parameter from either parent."""
        return {label: (first if self.rng.random() < 0.5 else second)[label] for label in self._space()}

    def repair(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Narrow random parameters one choice at a time until the candidate fits the budget."""
        space = self._space()
        child = dict(params)
        while not self.feasible(child):
            shrinkable = [label for label, values in space.items() if values.index(child[label]) > 0]
            if not shrinkable:
                break
            label = self.rng.choice(shrinkable)
            child[label] = space[label][space[label].index(child[label]) - 1]
        return child

    def fill(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Widen random parameters one choice at a time, within the budget, until the candidate reaches the band.

        The mirror of :meth:`repair`: a random sample of widths sits far below a budget that
        stage 1 filled, so the first population is filled into the band (or as near below it as
        any one-choice widening allows) and the evolution ranks candidates that use the budget.
        Without a band, ``params`` unchanged.
        """
        child = dict(params)
        if self.band is None or self.latency_model is None:
            return child
        space = self._space()
        while self.latency_ms(child) < self.band.lower_ms:
            growable = [label for label, values in space.items() if values.index(child[label]) < len(values) - 1]
            self.rng.shuffle(growable)
            for label in growable:
                wider = dict(child, **{label: space[label][space[label].index(child[label]) + 1]})
                if self.feasible(wider):
                    child = wider
                    break
            else:
                break  # no single widening fits the budget
        return child

    def _propose(self) -> dict[str, Any]:
        if len(self.population) < self.population_size:
            return self.random_sample()
        parent = self.tournament()['params']
        if self.rng.random() < self.crossover_prob:
            parent = self.crossover(parent, self.tournament()['params'])
        children = [self.mutate(parent) for _ in range(self.band_children if self.band is not None else 1)]
        if len(children) == 1:
            return children[0]
        return min(children, key=lambda child: self.band.distance(self.latency_ms(child)))  # type: ignore[union-attr]

    def new_candidate(self) -> dict[str, Any]:
        """A feasible candidate not proposed before; raises ``nni.NoMoreTrialError`` when none is found."""
        seen = {_key(record['params']) for record in self.history.values()}
        for attempt in range(self.max_attempts):
            params = self._propose()
            if len(self.population) < self.population_size:
                filled = self.fill(params)  # the first population uses the budget, unless that repeats a candidate
                params = filled if _key(filled) not in seen else params
            if not self.feasible(params):
                self.num_over_budget += 1
                _logger.debug('over budget (%.3f ms > %.3f ms), not proposed: %s', self.latency_ms(params),
                              self.budget_ms, params)
                if attempt % 10 != 9:
                    continue
                params = self.repair(params)
                if not self.feasible(params):
                    continue
            if _key(params) in seen:
                continue
            return params
        raise nni.NoMoreTrialError(f'no new candidate within budget_ms={self.budget_ms} after '
                                   f'{self.max_attempts} attempts (space exhausted?)')

    # -------------------------------------------------------------- NNI hooks
    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        """Next candidate for trial ``parameter_id`` (within the budget, never seen before)."""
        self._space()
        retry = self._retry_queue.pop(0) if self._retry_queue else None
        params = dict(retry['params']) if retry else self.new_candidate()
        key = str(parameter_id)
        if key in self.history:  # a reused id (e.g. after a resume): keep the old record under another key
            self.history[f'{key}@{len(self.history)}'] = self.history.pop(key)
        self.history[key] = {'params': params, 'latency_ms': self.latency_ms(params), 'status': 'running',
                             'score': None, 'attempts': (retry['attempts'] + 1) if retry else 1}
        _logger.info('[%s] proposed (%s ms): %s', key, self.history[key]['latency_ms'], params)
        self.save_state()
        return params

    def receive_trial_result(self, parameter_id: int, parameters: Any, value: Any, **kwargs: Any) -> None:
        """Record the result of trial ``parameter_id``; the parameters are taken from the tuner's own record."""
        self._space()
        record = self.history.get(str(parameter_id))
        if record is None:
            _logger.warning('result for unknown parameter id %s ignored', parameter_id)
            return
        if record['status'] == 'done':
            _logger.warning('second result for parameter id %s ignored', parameter_id)
            return
        if parameters is not None and isinstance(parameters, Mapping) and _key(parameters) != _key(record['params']):
            _logger.warning('result of parameter id %s came with other parameters (NNI issue 5726); '
                            'using the proposed ones', parameter_id)
        score, extra = parse_metric(value)
        if score is None or not math.isfinite(score):
            _logger.warning('[%s] metric %r has no finite score; dropped', parameter_id, value)
            record['status'] = 'failed'
            self._maybe_retry(record)
            self.save_state()
            return
        record.update(status='done', score=score, metrics={k: v for k, v in extra.items() if k != 'default'})
        fitness = score if self.optimize_mode == 'maximize' else -score
        self.population.append({'parameter_id': parameter_id, 'params': record['params'], 'score': score,
                                'fitness': fitness, 'latency_ms': record['latency_ms']})
        while len(self.population) > self.population_size:
            self.population.pop(0)
        self.num_results += 1
        _logger.info('[%s] score %.5f; population %d', parameter_id, score, len(self.population))
        self.save_state()

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        """A failed trial is dropped (or retried), one that ended without a metric dropped; the population is kept.

        A metric that arrives after the end of its trial is still accepted.
        """
        self._space()
        record = self.history.get(str(parameter_id))
        if record is None or record['status'] != 'running':
            return
        record['status'] = 'missing' if success else 'failed'
        _logger.warning('[%s] trial ended %s without a result', parameter_id,
                        'successfully' if success else 'with a failure')
        if not success:
            self._maybe_retry(record)
        self.save_state()

    def _maybe_retry(self, record: dict[str, Any]) -> None:
        if record['attempts'] <= self.retry_failed:
            self._retry_queue.append({'params': record['params'], 'attempts': record['attempts']})

    def import_data(self, data: list[dict[str, Any]]) -> None:
        """Seed the population with earlier results (``[{'parameter': ..., 'value': ...}]``)."""
        for index, entry in enumerate(data):
            score, _ = parse_metric(entry.get('value'))
            if score is None:
                continue
            key = f'imported-{len(self.history)}-{index}'
            params = dict(entry['parameter'])
            self.history[key] = {'params': params, 'latency_ms': self.latency_ms(params), 'status': 'running',
                                 'score': None, 'attempts': 1}
            self.receive_trial_result(key, params, score)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ state
    @property
    def state_path(self) -> Path | None:
        """Where the state is saved: ``state_path`` or NNI's checkpoint directory, else nowhere."""
        if self._explicit_state_path is not None:
            return self._explicit_state_path
        directory = self.get_checkpoint_path()
        return Path(directory) / STATE_FILE_NAME if directory else None

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the search (JSON-serialisable)."""
        version, internal, gauss = self.rng.getstate()
        return {'version': _STATE_VERSION, 'search_space': self.search_space, 'population': self.population,
                'history': self.history, 'retry_queue': self._retry_queue, 'latency_cache': self._latency_cache,
                'rng': [version, list(internal), gauss], 'num_over_budget': self.num_over_budget,
                'num_results': self.num_results, 'budget_ms': self.budget_ms,
                'settings': {'population_size': self.population_size, 'sample_size': self.sample_size,
                             'optimize_mode': self.optimize_mode, 'seed': self.seed}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; trials still running when it was saved count as lost."""
        if state.get('version') != _STATE_VERSION:
            raise ValueError(f'tuner state version {state.get("version")!r} is not supported (expected {_STATE_VERSION})')
        if self.search_space is not None and state['search_space'] not in (None, self.search_space):
            raise ValueError('the saved tuner state belongs to another search space; remove it or give another '
                             'state_path')
        self.search_space = state['search_space'] or self.search_space
        self.population = [dict(individual) for individual in state['population']]
        self.history = {key: dict(record) for key, record in state['history'].items()}
        for record in self.history.values():
            if record['status'] == 'running':
                record['status'] = 'lost'
        self._retry_queue = list(state.get('retry_queue', []))
        self._latency_cache = {key: float(value) for key, value in state.get('latency_cache', {}).items()}
        if state.get('budget_ms') != self.budget_ms:  # cached feasibility may differ: keep latencies only
            _logger.info('budget changed from %s to %s ms', state.get('budget_ms'), self.budget_ms)
        version, internal, gauss = state['rng']
        self.rng.setstate((version, tuple(internal), gauss))
        self.num_over_budget = int(state.get('num_over_budget', 0))
        self.num_results = int(state.get('num_results', 0))

    def save_state(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write :meth:`state_dict` atomically to ``path`` (default :attr:`state_path`)."""
        path = Path(path) if path is not None else self.state_path
        if path is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + '.tmp')
        temporary.write_text(json.dumps(self.state_dict()))
        os.replace(temporary, path)
        return path

    def load_state(self, path: str | os.PathLike) -> None:
        """Read a state file written by :meth:`save_state`."""
        self.load_state_dict(json.loads(Path(path).read_text()))
        _logger.info('resumed from %s: %d results, population %d', path, self.num_results, len(self.population))

    def load_checkpoint(self) -> None:  # NNI hook (nnictl resume)
        self._restore_once()

    def save_checkpoint(self) -> None:  # NNI hook
        self.save_state()

    def best(self) -> dict[str, Any] | None:
        """The best completed candidate so far (over the whole history, not only the population).

        With a budget: the best score within the budget band, else the candidate nearest below it.
        """
        done = [dict(record, parameter_id=key) for key, record in self.history.items() if record['status'] == 'done']
        if not done:
            return None
        if self.band is not None:
            chosen = self.band.best(done, maximize=self.optimize_mode == 'maximize')
            if chosen is not None:
                return dict(chosen, in_band=self.band.contains(float(chosen['latency_ms'])))
        sign = 1 if self.optimize_mode == 'maximize' else -1
        return max(done, key=lambda record: sign * record['score'])

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(lightnet={self.lightnet!r}, preset={self.preset!r}, budget_ms={self.budget_ms}, '
                f'population_size={self.population_size}, sample_size={self.sample_size}, seed={self.seed})')

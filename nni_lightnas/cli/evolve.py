"""``nni-lightnas evolve``: stage 2, the BTE evolution of a LightNet's widths under a latency budget.

Writes an NNI experiment (``config.yml``, ``search_space.json`` and, for a calibrated
latency model, ``latency_model.json``) to ``--output`` and starts it with ``nnictl create``
(the web UI address is printed), or with ``--in-process`` runs the same tuner and trial
code in this process without NNI's manager.

A budget that even the narrowest widths exceed is refused before anything is written
(:func:`check_budget`); after ``nnictl create``, :func:`watch_start` waits for the first
trial and stops an experiment whose tuner failed, printing the tuner's error.

Examples
--------
::

    nni-lightnas evolve --lightnet MBK3E3-MBK5E6-skip-MBK3E6-MBK5E3-skip-MBK7E6-MBK3E3 \\
        --budget-ms 0.5 --max-trials 50 --port 8080
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from nni_lightnas.atomic import atomic_write_text, check_output_path
from nni_lightnas.budget_band import DEFAULT_FILL_TOLERANCE

from .errors import ExperimentStartError

__all__ = ['add_arguments', 'run', 'write_experiment', 'check_budget', 'watch_start', 'EVOLUTION_CLASS']

_logger = logging.getLogger(__name__)

EVOLUTION_CLASS = 'nni_lightnas.strategies.evolution.LightNASEvolution'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--lightnet', required=True, help='the LightNet (ops joined by -) whose widths are searched')
    parser.add_argument('--preset', default='fashion_mnist', help='preset of the LightNet (default fashion_mnist)')
    parser.add_argument('--budget-ms', type=float, required=True, help='hard latency budget in ms')
    parser.add_argument('--latency', default='flops',
                        help="latency model: 'flops' (MACs line calibrated by measuring here, the default), "
                             "'measured' (time every candidate here, cached), or a saved model JSON")
    parser.add_argument('--latency-args', default=None, help='JSON keyword arguments of the latency model')
    parser.add_argument('--output', default='runs/evolve', help='directory for the experiment files')
    parser.add_argument('--max-trials', type=int, default=50)
    parser.add_argument('--concurrency', type=int, default=1, help='trials at a time')
    parser.add_argument('--max-duration', default=None, help="NNI maxExperimentDuration, e.g. '2h'")
    parser.add_argument('--population-size', type=int, default=20)
    parser.add_argument('--sample-size', type=int, default=5)
    parser.add_argument('--fill-tolerance', type=float, default=DEFAULT_FILL_TOLERANCE,
                        help='keep the best candidate within [budget * (1 - this), budget] '
                             f'(default {DEFAULT_FILL_TOLERANCE})')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--batches', type=int, default=None, help='BTE batches (default: nni_lightnas.bte default)')
    parser.add_argument('--last', type=int, default=None, help='BTE: score over the last K batches')
    parser.add_argument('--data-limit', type=int, default=None, help='BTE: use the first N training examples')
    parser.add_argument('--data', default='fashion_mnist', help='BTE data: fashion_mnist, cifar10, imagenet (an image folder, --data-dir) or synthetic')
    parser.add_argument('--data-dir', default=None)
    parser.add_argument('--supernet', default=None, help='state dict of a supernet to inherit weights from')
    parser.add_argument('--python', default=None, help='interpreter of the trials (default: this one)')
    parser.add_argument('--port', type=int, default=8080, help='port of the NNI manager and web UI')
    parser.add_argument('--working-dir', default=None,
                        help='NNI experimentWorkingDirectory (default: ~/nni-experiments)')
    parser.add_argument('--no-start', action='store_true', help='only write the experiment files')
    parser.add_argument('--in-process', action='store_true', help='run the evolution here, without nnictl')
    parser.add_argument('--start-timeout', type=float, default=60.0,
                        help='seconds to watch a started experiment for its first trial; a tuner that fails '
                             'meanwhile stops the experiment with its error (default 60)')


def _trial_command(python: str, options: dict[str, Any]) -> str:
    parts = [python, '-m', 'nni_lightnas.trials.bte']
    for key, value in options.items():
        if value is None or value is False:
            continue
        parts.append('--' + key.replace('_', '-'))
        if value is not True:
            parts.append(json.dumps(value) if isinstance(value, dict) else str(value))
    return ' '.join(shlex.quote(part) for part in parts)


def write_experiment(output: str | Path, *, lightnet: str, budget_ms: float, preset: str = 'fashion_mnist',
                     latency: str = 'flops', latency_args: dict[str, Any] | None = None, max_trials: int = 50,
                     concurrency: int = 1, max_duration: str | None = None, population_size: int = 20,
                     sample_size: int = 5, seed: int = 0, fill_tolerance: float = DEFAULT_FILL_TOLERANCE,
                     trial_options: dict[str, Any] | None = None,
                     python: str | None = None, experiment_name: str = 'lightnas-evolve',
                     working_dir: str | Path | None = None) -> Path:
    """Write ``config.yml`` and ``search_space.json`` of an evolution experiment; returns the config path.

    The tuner keeps the best candidate within the budget band ``[budget_ms * (1 -
    fill_tolerance), budget_ms]`` (:class:`~nni_lightnas.budget_band.BudgetBand`).
    The tuner and the trials get the same latency model: ``'flops'`` without coefficients is
    calibrated here once (three measurements) and saved as ``latency_model.json``;
    ``'measured'`` shares one cache file (``latency_cache.jsonl``) between them.

    Examples
    --------
    >>> import tempfile, yaml
    >>> path = write_experiment(tempfile.mkdtemp(), lightnet='MBK3E3-skip-MBK5E6', preset='tiny', budget_ms=1.0,
    ...                         latency_args={'ms_per_mmac': 0.1}, max_trials=3)
    >>> yaml.safe_load(path.read_text())['tuner']['className']
    'nni_lightnas.strategies.evolution.LightNASEvolution'
    """
    import yaml

    from nni_lightnas.latency.channel import FlopsChannelLatency
    from nni_lightnas.search_spaces.channel_space import nni_search_space

    from nni_lightnas.budget_band import BudgetBand

    output = check_output_path(Path(output).resolve(), what='--output', directory=True)
    try:
        BudgetBand(budget_ms=1.0, fill_tolerance=fill_tolerance)
    except ValueError as error:
        raise ValueError(f'--fill-tolerance: {error}') from None
    latency_args = dict(latency_args or {})
    if latency == 'flops' and 'ms_per_mmac' in latency_args:
        FlopsChannelLatency(lightnet, preset, **latency_args)  # validates the arguments
    # The budget is checked before anything is written: an experiment that cannot produce a
    # trial (the tuner refuses the budget at once) is never created.
    model = check_budget(lightnet, preset, budget_ms, latency, latency_args)
    output.mkdir(parents=True, exist_ok=True)
    if latency in ('flops', 'measured'):
        latency_args.setdefault('cache_path', str(output / 'latency_cache.jsonl'))
    if latency == 'flops' and 'ms_per_mmac' not in latency_args:
        latency, latency_args = str(model.save(output / 'latency_model.json')), {}  # type: ignore[attr-defined]
    elif latency == 'flops':
        latency_args.pop('cache_path', None)
    atomic_write_text(output / 'search_space.json', json.dumps(nni_search_space(lightnet, preset), indent=1))
    options = {'lightnet': lightnet, 'preset': preset, 'latency': latency,
               'latency_args': latency_args or None, **(trial_options or {})}
    config: dict[str, Any] = {
        'experimentName': experiment_name,
        'searchSpaceFile': 'search_space.json',
        'trialCommand': _trial_command(python or sys.executable, options),
        'trialCodeDirectory': '.',
        'trialConcurrency': concurrency,
        'maxTrialNumber': max_trials,
        'tuner': {'codeDirectory': '.', 'className': EVOLUTION_CLASS, 'classArgs': {
            'lightnet': lightnet, 'preset': preset, 'budget_ms': budget_ms, 'latency': latency,
            'latency_args': latency_args, 'population_size': population_size, 'sample_size': sample_size,
            'seed': seed, 'fill_tolerance': fill_tolerance}},
        'trainingService': {'platform': 'local'},
    }
    if max_duration:
        config['maxExperimentDuration'] = max_duration
    if working_dir:
        config['experimentWorkingDirectory'] = str(Path(working_dir).resolve())
    path = output / 'config.yml'
    atomic_write_text(path, f'# written by nni-lightnas evolve; run: nnictl create --config {path}\n'
                      + yaml.safe_dump(config, sort_keys=False))
    return path


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
    ValueError: --budget-ms 0.0001 is infeasible: ... take 0.0828 ms (latency model flops); accepted: ... >= 0.0828
    """
    from nni_lightnas.latency.channel import make_channel_latency_model
    from nni_lightnas.search_spaces.channel_space import nni_search_space

    if not budget_ms > 0 or budget_ms != budget_ms or budget_ms == float('inf'):
        raise ValueError(f'--budget-ms must be a positive number of ms, got {budget_ms}')
    args = {key: value for key, value in (latency_args or {}).items() if key != 'cache_path'}
    model = make_channel_latency_model(latency, lightnet, preset, **args)
    narrowest = {}
    for label, spec in nni_search_space(lightnet, preset).items():
        values = list(spec['_value'])
        narrowest[label] = min(values) if all(isinstance(v, (int, float)) for v in values) else values[0]
    fastest_ms = float(model(narrowest))
    if fastest_ms > budget_ms:
        raise ValueError(f'--budget-ms {budget_ms:g} is infeasible: the narrowest widths of {lightnet} take '
                         f'{fastest_ms:.4f} ms (latency model {latency}); accepted: --budget-ms >= {fastest_ms:.4f}')
    return model


def _nnictl() -> str:
    import shutil
    candidate = Path(sys.executable).parent / 'nnictl'
    found = str(candidate) if candidate.is_file() else shutil.which('nnictl')
    if found is None:
        raise FileNotFoundError('nnictl not found next to this python or on PATH; install nni==3.0')
    return found


def run_in_process(args: argparse.Namespace, config_path: Path) -> int:
    """Run tuner and trials in this process (no NNI manager): one trial after another."""
    import yaml

    from nni_lightnas.strategies.evolution import LightNASEvolution
    from nni_lightnas.trials.bte import build_parser, run_trial

    config = yaml.safe_load(config_path.read_text().split('\n', 1)[1])
    class_args = config['tuner']['classArgs']
    tuner = LightNASEvolution(**class_args, state_path=config_path.parent / 'tuner_state.json')
    command = shlex.split(config['trialCommand'])
    trial_args = build_parser().parse_args(command[3:])
    for trial in range(args.max_trials):
        params = tuner.generate_parameters(trial)
        metrics = run_trial(trial_args, params)
        tuner.receive_trial_result(trial, params, metrics)
        tuner.trial_end(trial, True)
        print(json.dumps({'trial': trial, 'params': params, **metrics}), flush=True)
    best = tuner.best()
    print(json.dumps({'best': best}), flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    import subprocess

    trial_options = {'batches': args.batches, 'last': args.last, 'data_limit': args.data_limit, 'data': args.data,
                     'data_dir': args.data_dir, 'supernet': args.supernet}
    config_path = write_experiment(
        args.output, lightnet=args.lightnet, budget_ms=args.budget_ms, preset=args.preset, latency=args.latency,
        latency_args=json.loads(args.latency_args) if args.latency_args else None, max_trials=args.max_trials,
        concurrency=args.concurrency, max_duration=args.max_duration, population_size=args.population_size,
        sample_size=args.sample_size, seed=args.seed, fill_tolerance=args.fill_tolerance,
        trial_options=trial_options, python=args.python,
        working_dir=args.working_dir)
    print(f'experiment written to {config_path}')
    if args.in_process:
        return run_in_process(args, config_path)
    if args.no_start:
        print(f'start it with: nnictl create --config {config_path} --port {args.port}')
        return 0
    completed = subprocess.run([_nnictl(), 'create', '--config', str(config_path), '--port', str(args.port)])
    if completed.returncode != 0:
        raise ExperimentStartError(f'nnictl create --config {config_path} --port {args.port} failed with exit code '
                                   f'{completed.returncode} (its message is above); is the port free?')
    watch_start(args.port, timeout_s=args.start_timeout)
    print(f'NNI web UI: http://127.0.0.1:{args.port}  (stop with: nnictl stop --port {args.port})')
    return 0


def _rest(port: int, route: str) -> Any:
    import urllib.request
    with urllib.request.urlopen(f'http://127.0.0.1:{port}/api/v1/nni/{route}', timeout=10) as response:
        return json.loads(response.read())


def _dispatcher_error(log: Path) -> str | None:
    """The error the tuner's dispatcher logged (its exception line), or ``None``."""
    if not log.is_file():
        return None
    lines = [line.strip() for line in log.read_text(errors='replace').splitlines() if line.strip()]
    if not any('Traceback' in line or ' ERROR ' in f' {line} ' for line in lines):
        return None
    for line in reversed(lines):
        if re.match(r'^[\w.]+(Error|Exception|Exit)\b.*:', line):
            return line
    return next(line for line in reversed(lines) if 'ERROR' in line or 'Traceback' in line)


def watch_start(port: int, *, timeout_s: float = 60.0, poll_s: float = 1.0) -> None:
    """Wait until the experiment on ``port`` submits its first trial; stop it if its tuner failed.

    NNI keeps an experiment whose tuner crashed at start RUNNING, with the error only in
    ``dispatcher.log``: this reads that log, and on an error stops the experiment and raises
    :class:`~nni_lightnas.cli.errors.ExperimentStartError` with the tuner's error line. After
    ``timeout_s`` without a trial or an error it returns (a slow first trial is not an error).
    """
    import subprocess
    import time

    profile = _rest(port, 'experiment')
    experiment_id = profile.get('id', '?')
    log = Path(profile.get('logDir', '')) / 'log' / 'dispatcher.log'
    deadline = time.monotonic() + timeout_s
    while True:
        status = _rest(port, 'check-status')
        error = _dispatcher_error(log)
        if error is None and status.get('status') == 'ERROR':
            error = '; '.join(str(e) for e in status.get('errors', [])) or 'status ERROR'
        if error is not None:
            subprocess.run([_nnictl(), 'stop', experiment_id], capture_output=True, timeout=120)
            raise ExperimentStartError(f'NNI experiment {experiment_id}: the tuner failed to start: {error}. The '
                                       f'experiment was stopped; full log: {log}')
        if _rest(port, 'trial-jobs'):
            return
        if time.monotonic() > deadline:
            _logger.warning('NNI experiment %s: no trial after %.0f s; watch it in the web UI', experiment_id,
                            timeout_s)
            return
        time.sleep(poll_s)

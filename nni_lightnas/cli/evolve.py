"""``nni-lightnas evolve``: stage 2, the BTE evolution of a LightNet's widths under a latency budget.

The command line of :mod:`nni_lightnas.evolve`: it builds an
:class:`~nni_lightnas.evolve.EvolveConfig` and either writes the NNI experiment
(:func:`~nni_lightnas.evolve.write_experiment`) and starts it with ``nnictl create`` (the web
UI address is printed), or with ``--in-process`` runs the same tuner and trials here
(:func:`~nni_lightnas.evolve.run_evolution`), printing one JSON line per trial and the best.

A budget that even the narrowest widths exceed is refused before anything is written; after
``nnictl create``, :func:`watch_start` waits for the first trial and stops an experiment whose
tuner failed, printing the tuner's error.

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
import sys
from pathlib import Path
from typing import Any

from nni_lightnas.atomic import check_output_path
from nni_lightnas.budget_band import DEFAULT_FILL_TOLERANCE

from .errors import CLIError, ExperimentStartError

__all__ = ['add_arguments', 'evolve_config', 'run', 'watch_start']

_logger = logging.getLogger(__name__)


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


def _nnictl() -> str:
    import shutil
    candidate = Path(sys.executable).parent / 'nnictl'
    found = str(candidate) if candidate.is_file() else shutil.which('nnictl')
    if found is None:
        raise FileNotFoundError('nnictl not found next to this python or on PATH; install nni==3.0')
    return found


def evolve_config(args: argparse.Namespace):
    """The :class:`~nni_lightnas.evolve.EvolveConfig` of the command line."""
    from nni_lightnas.evolve import EvolveConfig
    try:
        latency_args = json.loads(args.latency_args) if args.latency_args else {}
    except json.JSONDecodeError as error:
        raise CLIError(f'--latency-args must be a JSON object, got {args.latency_args!r} ({error})') from None
    if not isinstance(latency_args, dict):
        raise CLIError(f'--latency-args must be a JSON object, got {args.latency_args!r}')
    return EvolveConfig(lightnet=args.lightnet, budget_ms=args.budget_ms, preset=args.preset, latency=args.latency,
                        latency_args=latency_args, max_trials=args.max_trials, population_size=args.population_size,
                        sample_size=args.sample_size, fill_tolerance=args.fill_tolerance, seed=args.seed,
                        batches=args.batches, last=args.last, data=args.data, data_dir=args.data_dir,
                        data_limit=args.data_limit, supernet=args.supernet)


def run(args: argparse.Namespace) -> int:
    import subprocess

    from nni_lightnas.evolve import InfeasibleBudgetError, run_evolution, write_experiment

    output = check_output_path(Path(args.output).resolve(), what='--output', directory=True)
    try:
        config = evolve_config(args)
        if args.in_process:
            def show(trial: dict[str, Any]) -> None:
                print(json.dumps(trial), flush=True)
            result = run_evolution(config, output, on_trial=show)
            print(json.dumps({'best': result.best}, default=float), flush=True)
            return 0
        config_path = write_experiment(config, output, concurrency=args.concurrency, max_duration=args.max_duration,
                                       python=args.python, working_dir=args.working_dir)
    except InfeasibleBudgetError as error:
        raise CLIError(error.message('--budget-ms')) from None
    print(f'experiment written to {config_path}')
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

"""Does the main job land on the measured target? Quick main jobs from scratch, two targets each.

Runs ``--jobs`` (default 3) quick main jobs of ``--config`` (default
``examples/fashion_mnist/pipeline.yml`` with its ``quick:`` section), each in a fresh run
directory (the profile included) with its own seed, at the targets 30 % and 70 % of the
space's latency range, and prints one JSON object::

    {"runs": [{"target_ms", "measured_ms", "relative_error", "rounds", "verdict", "test_acc"}, ...], "seconds"}

``measured_ms`` is the final net alone on the device (median of block-interleaved rounds),
``relative_error`` is ``measured_ms / target_ms - 1``, ``rounds`` the number of rounds of
the pipeline's closed loop (1: the first final net landed within ``measure.landing_tolerance``;
up to ``measure.max_rounds``), and ``verdict`` how the loop ended (``landed``, ``max_rounds``
or ``no_new_net``, :mod:`nni_lightnas.closed_loop`).

Figures must come from an idle machine::

    .venv/bin/python benchmarks/main_job_landing.py > docs/main_job_landing.json

``--tiny`` runs the ``tiny`` preset with minimal settings (a check that the script works,
not a figure).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from json_stdout import json_only_stdout  # noqa: E402

TINY = {'preset': 'tiny', 'profile': {'runs': 10, 'warmup': 2, 'calibrate': 6},
        'search': {'epochs': 2, 'warmup_epochs': 1, 'train_limit': 512, 'batch_size': 64},
        'evolve': {'max_trials': 2, 'population_size': 2, 'sample_size': 1, 'batches': 4, 'last': 2,
                   'data_limit': 256},
        'train': {'epochs': 1, 'train_limit': 512, 'test_limit': 512, 'batch_size': 64},
        'measure': {'runs': 10, 'rounds': 1}}


def landing_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The contract's per-target rows from :func:`~nni_lightnas.pipeline.run_pipeline`'s result."""
    rows = []
    for row in result['rows']:
        measured_ms, target_ms = float(row['measured_ms']), float(row['target_ms'])
        rows.append({'target_ms': target_ms, 'measured_ms': measured_ms,
                     'relative_error': measured_ms / target_ms - 1,
                     'rounds': int(row['rounds']), 'verdict': row['landing_verdict'],
                     'test_acc': float(row['test_acc'])})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--config', default='examples/fashion_mnist/pipeline.yml')
    parser.add_argument('--jobs', type=int, default=3, help='main jobs from scratch, seeds 0..jobs-1')
    parser.add_argument('--quantiles', type=float, nargs='+', default=[0.3, 0.7])
    parser.add_argument('--run-root', default=None, help='where the run directories go (default: a temp dir)')
    parser.add_argument('--keep', action='store_true', help='keep the run directories')
    parser.add_argument('--tiny', action='store_true', help='tiny preset and settings: check the script only')
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f'--jobs must be >= 1, got {args.jobs}')

    with json_only_stdout() as stdout:  # NNI's and Lightning's output goes to stderr
        summary = run_jobs(args)
        stdout.write(json.dumps(summary, indent=1) + '\n')
    return 0


def run_jobs(args: argparse.Namespace) -> dict[str, Any]:
    """The main jobs of ``args``; the JSON summary."""
    from nni_lightnas.pipeline import load_pipeline_config, run_pipeline
    root = Path(args.run_root or tempfile.mkdtemp(prefix='main-job-landing-'))
    start = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for seed in range(args.jobs):
        config = load_pipeline_config(args.config, quick=True)
        if args.tiny:
            for key, value in TINY.items():
                setattr(config, key, {**getattr(config, key), **value} if isinstance(value, dict) else value)
        run_dir = root / f'job{seed}'
        shutil.rmtree(run_dir, ignore_errors=True)  # from scratch: the profile too
        config.run_dir, config.seed = str(run_dir), seed
        config.targets_ms, config.target_quantiles = None, list(args.quantiles)
        config.check()
        result = run_pipeline(config, progress=lambda message: print(message, file=sys.stderr, flush=True))
        runs.extend(landing_rows(result))
    if not args.keep and args.run_root is None:
        shutil.rmtree(root, ignore_errors=True)
    return {'runs': runs, 'seconds': round(time.perf_counter() - start, 1)}


if __name__ == '__main__':
    sys.exit(main())

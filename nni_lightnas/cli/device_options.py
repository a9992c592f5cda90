"""The measurement options the device commands share (``measure``, ``profile``, ``profile-space``, ``scale``).

Each of those commands adds its own ``--device`` (the help differs: ``measure`` also takes a
pool) and then :func:`add_measurement_arguments`; :func:`device_from_args` builds the device.

Examples
--------
>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> _ = parser.add_argument('--device', default='local')
>>> add_measurement_arguments(parser)
>>> parser.parse_args(['--runs', '50']).runs
50
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ['add_measurement_arguments', 'device_from_args']


def add_measurement_arguments(parser: argparse.ArgumentParser) -> None:
    """``--runs``, ``--warmup``, ``--threads`` and ``--clock``."""
    parser.add_argument('--runs', type=int, default=100, help='timed runs per measurement (default 100)')
    parser.add_argument('--warmup', type=int, default=10, help='untimed warm-up runs per measurement (default 10)')
    parser.add_argument('--threads', type=int, default=1, help='intra-op threads of the runtime (default 1)')
    parser.add_argument('--clock', choices=['wall', 'cpu'], default='wall',
                        help="local device: wall (default) or cpu, the measuring thread's CPU time, robust to "
                             'other processes on a shared machine (needs --threads 1)')


def device_from_args(args: argparse.Namespace, **options: Any):
    """The device of ``args.device`` with the measurement options; ``options`` go to ``make_device``."""
    from nni_lightnas.latency.device_pool import make_device
    clock = {'clock': args.clock} if args.clock != 'wall' else {}  # a board takes no clock option
    return make_device(args.device, num_runs=args.runs, num_warmup_runs=args.warmup, threads=args.threads,
                       **clock, **options)

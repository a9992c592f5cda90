"""The ``nni-lightnas`` command line: a thin layer over the library.

Each subcommand lives in its own module of this package with two functions,
``add_arguments(parser)`` and ``run(args) -> int``; :data:`SUBCOMMANDS` lists them. Those
modules import heavy libraries (torch, NNI) inside ``run`` only, so ``--help`` is quick.

Examples
--------
>>> main(['space', 'show', '--preset', 'tiny'])
preset tiny: input 1x28x28, 10 classes, width x1.0, fingerprint b68f72a2329b
stem 3x3 s2 -> 8, fixed MBK3E1
  label  stage  in_chs  out_chs  stride  input_size
layer00      0       8       16       2          14
layer01      1      16       24       2           7
layer02      1      24       24       1           4
candidates per layer: MBK3E3, MBK3E6, MBK5E3, MBK5E6, MBK7E3, MBK7E6, skip
7^3 = 343 architectures
0
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from typing import Sequence

from ..quiet import quiet_known_messages
from .errors import CLIError, describe_user_error

__all__ = ['SUBCOMMANDS', 'CLIError', 'build_parser', 'main']

#: name -> (module under nni_lightnas.cli, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    'space': ('space', 'inspect the LightNAS search spaces'),
    'export': ('export', 'export a LightNet to ONNX (checked against PyTorch in ONNX Runtime)'),
    'demo': ('demo', 'build a space, export a sampled LightNet and time it with ONNX Runtime'),
    'predictor': ('predictor', 'evaluate or fit a latency predictor (additive, MLP, GNN, ensemble, transfer) on measured archs'),
    'measure': ('measure', 'time an ONNX model on a device: median, quartiles, runs, spread'),
    'profile': ('profile', 'build the latency LUT of a space on a device (plain or BBSSP-corrected), or fit a predictor on N measured nets'),
    'search': ('search', 'stage 1: one LightNAS search toward a latency target'),
    'pipeline': ('pipeline', 'the whole job: profile, search, evolve, train, export, measure, report'),
    'evolve': ('evolve', 'stage 2: BTE evolution of a LightNet\'s widths under a latency budget (NNI experiment)'),
    'register': ('register', 'register the LightNASEvolution tuner with NNI (tuner: {name: LightNASEvolution})'),
    'profile-space': ('profile_space', 'BBSSP: profile block families on a device and emit a reduced search space'),
    'scale': ('scale', 'Comfort Zone scaling: widen/deepen a searched LightNet while latency stays within a tolerance'),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='nni-lightnas',
        description='LightNAS hardware-aware NAS for embedded platforms (an NNI 3.0 plugin).')
    parser.add_argument('-v', '--verbose', action='count', default=0, help='more log output (-vv for debug)')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    subparsers.required = True
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(f'{__name__}.{module_name}')
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(subparser)
        # also accepted after the command (nni-lightnas measure m.onnx -v); SUPPRESS keeps the top-level count
        subparser.add_argument('-v', '--verbose', action='count', default=argparse.SUPPRESS,
                               help='more log output (-vv for debug) and tracebacks of errors')
        subparser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nni-lightnas``; returns the exit code.

    An error the user can fix (a bad value or file, a full disk, an unreachable board, an NNI
    experiment that does not start) is printed as one line, ``nni-lightnas COMMAND: error:
    ...``, with exit code 2 (usage) or 1 (environment), see :mod:`nni_lightnas.cli.errors`;
    ``--verbose`` adds its traceback. Any other exception is a bug and keeps its traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    if not args.verbose:
        # NNI announces every experiment it starts and stops on stdout; keep its errors only.
        # (Importing nni.runtime.log first: it sets the 'nni' logger to INFO on import.)
        import nni.runtime.log  # noqa: F401
        logging.getLogger('nni').setLevel(logging.ERROR)
        # NNI's and Lightning's messages that do not apply to a one-shot run (nni_lightnas.quiet)
        quiet_known_messages()
    try:
        return int(args._run(args) or 0)
    except BaseException as error:  # noqa: B036 - user errors become one line, bugs keep their traceback
        described = describe_user_error(error)
        if described is None or isinstance(error, SystemExit):
            raise
        message, code = described
        if args.verbose:
            traceback.print_exc()
        print(f'nni-lightnas {args.command}: error: {message}', file=sys.stderr)
        return code


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())

"""``nni-lightnas measure``: time an ONNX model on a device (median and spread)."""

from __future__ import annotations

import argparse
import json

from .device_options import add_measurement_arguments, device_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('model', help='ONNX file (exported with a fixed input shape, batch included)')
    parser.add_argument('--device', default='local',
                        help="'local' (ONNX Runtime here), 'ssh://[user@]host[:port]' (a board), or several "
                             'boards joined by commas (a pool); default local')
    parser.add_argument('--ssh-identity', default=None, help='ssh:// devices: private key (ssh -i)')
    parser.add_argument('--ssh-option', action='append', default=[], metavar='NAME=VALUE',
                        help='ssh:// devices: extra ssh -o option (repeatable)')
    parser.add_argument('--remote-python', default=None,
                        help="ssh:// devices: the board's python3 that has onnxruntime (default python3)")
    add_measurement_arguments(parser)
    parser.add_argument('--max-iqr-ratio', type=float, default=0.1,
                        help='re-measure when IQR / median exceeds this (default 0.1)')
    parser.add_argument('--max-attempts', type=int, default=3, help='measurements at most (default 3)')
    parser.add_argument('--repeat', type=int, default=1,
                        help='measure this many times (each a full protocol) and report each; default 1')
    parser.add_argument('--json', action='store_true', help='print one JSON object (a list with --repeat > 1)')


def run(args: argparse.Namespace) -> int:
    from nni_lightnas.export import check_onnx_file

    check_onnx_file(args.model)
    if args.repeat < 1:
        raise ValueError(f'--repeat must be >= 1, got {args.repeat}')
    device = device_from_args(args, max_iqr_ratio=args.max_iqr_ratio, max_attempts=args.max_attempts,
                              identity_file=args.ssh_identity, ssh_options=args.ssh_option or None,
                              remote_python=args.remote_python)
    results = []
    for _ in range(args.repeat):
        result = device.measure(args.model)
        results.append({'model': str(args.model), **result.to_dict(), 'iqr_ms': result.iqr_ms})
    if args.json:
        print(json.dumps(results[0] if args.repeat == 1 else results))
    else:
        for data in results:
            stable = '' if data['stable'] else f' (spread stayed wide after {data["attempts"]} attempts)'
            print(f'{data["model"]} on {data["device"]}: median {data["median_ms"]:.4f} ms, '
                  f'IQR {data["p25_ms"]:.4f}-{data["p75_ms"]:.4f} ms, CV {data["cv"]:.3f}, {data["runs"]} runs, '
                  f'{data["threads"]} thread(s), {data["provider"]}{stable}')
    return 0

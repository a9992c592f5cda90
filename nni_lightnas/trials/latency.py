"""NNI trial: measure one LightNet's latency on a device or a pool of boards.

Run by an NNI experiment (``trialCommand: python3 -m nni_lightnas.trials.latency ...``).
The trial reads its architecture from ``nni.get_next_parameter()``: either a sample of
the layer-choice search space (``{"layer00": "MBK3E6", "layer01": "skip", ...}``) or
``{"arch": "MBK3E6-skip-..."}``, optionally with ``stage_out_chs`` / ``mid_chs`` (stage-2
widths). It builds the :class:`~nni_lightnas.search_spaces.LightNet`, exports it to ONNX
at the configured batch, measures it on ``--device`` (``local``, ``ssh://user@host[:port]``,
or several comma-separated boards forming a pool: each concurrent trial takes a free
board), and reports::

    nni.report_final_result({'default': latency_ms, 'latency_ms': ..., 'p25_ms': ...,
                             'p75_ms': ..., 'iqr_ms': ..., 'cv': ...})

so the web UI lists every architecture with its latency. The full result (device, board
facts such as nvpmodel mode and locked clocks) goes to ``latency.json`` in the trial's
output directory and, as one JSON line, to stdout.

Outside NNI (no parameters), pass ``--arch``::

    python -m nni_lightnas.trials.latency --preset tiny --arch MBK3E6-skip-MBK5E3 --device local
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ['measure_architecture', 'arch_from_parameters', 'build_parser', 'main']

_logger = logging.getLogger(__name__)


def arch_from_parameters(parameters: Mapping[str, Any], preset: str) -> tuple[str, dict[str, Any]]:
    """LightNet string and width options from trial parameters.

    Examples
    --------
    >>> arch_from_parameters({'layer00': 'MBK3E3', 'layer01': 'skip', 'layer02': 'MBK5E6'}, 'tiny')
    ('MBK3E3-skip-MBK5E6', {})
    >>> arch_from_parameters({'arch': 'skip-skip-skip', 'stage_out_chs': [8, 16]}, 'tiny')
    ('skip-skip-skip', {'stage_out_chs': [8, 16]})
    """
    from nni_lightnas.search_spaces import decode_arch, encode_arch, get_preset
    config = get_preset(preset)
    if 'arch' in parameters:
        ops = decode_arch(parameters['arch'], config)
    elif any(str(key).startswith('layer') for key in parameters):
        ops = decode_arch({str(k): v for k, v in parameters.items()}, config)
    else:
        raise ValueError(f'trial parameters need "arch" (a LightNet string) or layer choices '
                         f'("layer00", ...); got keys {sorted(parameters)}')
    widths = {key: list(parameters[key]) for key in ('stage_out_chs', 'mid_chs') if parameters.get(key) is not None}
    return encode_arch(ops), widths


def measure_architecture(arch: str, *, preset: str, device: Any, batch: int = 1,
                         widths: Mapping[str, Sequence[int]] | None = None,
                         workdir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Build, export and measure one LightNet; returns the metric dict NNI gets.

    Parameters
    ----------
    arch
        LightNet string of ``preset``.
    preset
        Space preset (``imagenet``, ``cifar10``, ``fashion_mnist``, ``tiny``).
    device
        A :class:`~nni_lightnas.latency.device.Device` (an SSH board, a pool, ``local``).
    batch
        Batch of the timed input.
    widths
        ``stage_out_chs`` and/or ``mid_chs`` of :class:`~nni_lightnas.search_spaces.LightNet`.
    workdir
        Where the ONNX file goes (a temp dir when ``None``).

    Examples
    --------
    >>> from nni_lightnas.latency import LocalDevice
    >>> metrics = measure_architecture('skip-skip-skip', preset='tiny', device=LocalDevice(num_runs=5))
    >>> metrics['default'] == metrics['latency_ms'] > 0
    True
    """
    from nni_lightnas.export import export_onnx
    from nni_lightnas.search_spaces import LightNet
    net = LightNet(arch, preset, **dict(widths or {}))
    input_shape = (batch, *net.input_shape)
    with tempfile.TemporaryDirectory(prefix='nni-lightnas-trial-') as tmp:
        path = export_onnx(net, Path(workdir or tmp) / 'lightnet.onnx', input_shape, check=False)
        result = device.measure(path)
    return {
        'default': result.median_ms, 'latency_ms': result.median_ms, 'p25_ms': result.p25_ms,
        'p75_ms': result.p75_ms, 'iqr_ms': result.iqr_ms, 'cv': result.cv if result.cv is not None else 0.0,
        '_result': result,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='python -m nni_lightnas.trials.latency', description=__doc__.split('\n')[0])
    parser.add_argument('--preset', default='fashion_mnist', help='search space preset (default fashion_mnist)')
    parser.add_argument('--batch', type=int, default=1, help='batch of the timed input (default 1)')
    parser.add_argument('--device', default='local',
                        help='local, ssh://[user@]host[:port], or several boards joined by commas (a pool)')
    parser.add_argument('--runs', type=int, default=100, help='timed runs (default 100)')
    parser.add_argument('--warmup', type=int, default=10, help='warm-up runs (default 10)')
    parser.add_argument('--threads', type=int, default=1, help='ONNX Runtime intra-op threads (default 1)')
    parser.add_argument('--ssh-identity', default=None, help='private key for ssh:// devices (ssh -i)')
    parser.add_argument('--ssh-option', action='append', default=[], metavar='NAME=VALUE',
                        help='extra ssh -o option (repeatable)')
    parser.add_argument('--ssh-config', default=None, help='ssh config file in place of ~/.ssh/config (ssh -F)')
    parser.add_argument('--remote-python', default=None, help="the board's python3 with onnxruntime")
    parser.add_argument('--remote-dir', default=None,
                        help='working directory on the boards (default ~/.cache/nni-lightnas)')
    parser.add_argument('--trtexec', default=None, help='measure with trtexec on the board (name or path)')
    parser.add_argument('--lock-dir', default=None, help='directory of the pool lock files (shared by trials)')
    parser.add_argument('--arch', default=None, help='LightNet string, when not run by NNI')
    return parser


def make_trial_device(args: argparse.Namespace):
    from nni_lightnas.latency.device_pool import make_device
    options: dict[str, Any] = dict(num_runs=args.runs, num_warmup_runs=args.warmup, threads=args.threads,
                                   identity_file=args.ssh_identity, ssh_options=args.ssh_option or None,
                                   ssh_config=args.ssh_config, remote_python=args.remote_python,
                                   remote_dir=args.remote_dir, trtexec=args.trtexec)
    if ',' in args.device and args.lock_dir:
        options['lock_dir'] = args.lock_dir
    return make_device(args.device, **options)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    import nni
    parameters = nni.get_next_parameter() if args.arch is None else {'arch': args.arch}
    if not parameters:
        print('no parameters: run inside an NNI experiment, or pass --arch', file=sys.stderr)
        return 2
    arch, widths = arch_from_parameters(parameters, args.preset)
    device = make_trial_device(args)
    metrics = measure_architecture(arch, preset=args.preset, device=device, batch=args.batch, widths=widths)
    result = metrics.pop('_result')
    record = {'arch': arch, 'preset': args.preset, 'batch': args.batch, **widths, **result.to_dict()}
    output_dir = Path(os.environ.get('NNI_OUTPUT_DIR', '.'))
    if 'NNI_OUTPUT_DIR' in os.environ:
        from nni_lightnas.atomic import atomic_write_json
        atomic_write_json(output_dir / 'latency.json', record, default=str)
    print(json.dumps(record, default=str))
    _logger.info('%s on %s: %.4f ms (IQR %.4f ms)', arch, result.device, result.median_ms, result.iqr_ms)
    nni.report_final_result(metrics)
    return 0


if __name__ == '__main__':
    sys.exit(main())

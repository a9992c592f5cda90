"""``nni-lightnas profile``: build the latency LUT of a space on a device (resumable), optionally corrected."""

from __future__ import annotations

import argparse
import json

from .device_options import add_measurement_arguments, device_from_args
from .space_option import add_space_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--preset', default='fashion_mnist', help='imagenet, cifar10, fashion_mnist or tiny')
    parser.add_argument('--output', '-o', required=True,
                        help='LUT file (.csv, or .parquet with pyarrow); an unfinished one is resumed')
    parser.add_argument('--device', default='local',
                        help="'local' (ONNX Runtime here) or 'ssh://[user@]host[:port]' (default local)")
    parser.add_argument('--batch', type=int, default=None,
                        help='batch of every measured input (default 32 for 28x28/32x32 presets, else 1)')
    add_measurement_arguments(parser)
    parser.add_argument('--correct', choices=['none', 'bbssp', 'linear', 'bbssp+linear'], default='none',
                        help='bbssp: layer-adaptive correction with whole-network base nets (written to '
                             'OUTPUT with a .bbssp suffix, the plain LUT stays at OUTPUT); linear: a '
                             'whole-network fit on --calibration-archs random archs; default none')
    parser.add_argument('--typical-op', default=None,
                        help='op of the BBSSP base net SSBN_0 (default: per layer the median-latency block)')
    parser.add_argument('--rounds', type=int, default=1, help='repeats of the BBSSP / calibration measurements')
    parser.add_argument('--calibration-archs', type=int, default=30, help='random archs for --correct linear')
    parser.add_argument('--seed', type=int, default=0, help='seed of the calibration archs')
    parser.add_argument('--overwrite', action='store_true', help='measure from scratch even if OUTPUT exists')
    add_space_arguments(parser)


def _corrected_path(path, suffix: str):
    from pathlib import Path
    path = Path(path)
    return path.with_name(f'{path.stem}.{suffix}{path.suffix}')


def run(args: argparse.Namespace) -> int:
    import random

    from nni_lightnas.latency.lut import build_lut, measure_archs, resolve_space
    from nni_lightnas.search_spaces import encode_arch

    from nni_lightnas.atomic import check_output_path
    check_output_path(args.output, what='--output')
    device = device_from_args(args)
    if args.space:
        from .space_option import profile_any_space
        print(json.dumps(profile_any_space(args, device), default=float))
        return 0
    lut = build_lut(args.preset, device, batch=args.batch, path=args.output, overwrite=args.overwrite)
    outputs = {'plain': str(args.output)}
    final = lut
    if 'bbssp' in args.correct:
        from nni_lightnas.latency.bbssp import bbssp_correct
        path = _corrected_path(args.output, 'bbssp')
        journal = _corrected_path(args.output, 'bbssp-journal').with_suffix('.csv')
        if args.overwrite and journal.exists():
            journal.unlink()
        final = bbssp_correct(lut, device, typical_op=args.typical_op, rounds=args.rounds, journal=journal)
        final.save(path)
        outputs['bbssp'] = str(path)
    if 'linear' in args.correct:
        from nni_lightnas.latency.calibration import fit_linear_calibration
        _, candidates = resolve_space(args.preset)
        rng = random.Random(args.seed)
        archs = [encode_arch([rng.choice(ops) for ops in candidates.values()]) for _ in range(args.calibration_archs)]
        measured = measure_archs(args.preset, archs, device, batch=int(lut.metadata['batch']), rounds=args.rounds)
        final = fit_linear_calibration(final, archs, [m['median_ms'] for m in measured])
        path = _corrected_path(args.output, args.correct.replace('+', '-'))
        final.save(path)
        outputs[args.correct] = str(path)
    low, high = final.latency_range()
    print(json.dumps({'outputs': outputs, 'latency_model': outputs[args.correct] if args.correct != 'none'
                      else outputs['plain'], 'preset': lut.metadata['preset'], 'device': lut.metadata['device'],
                      'batch': lut.metadata['batch'], 'threads': lut.metadata['threads'],
                      'runtime': lut.metadata.get('runtime'), 'provider': lut.metadata.get('provider'),
                      'layers': len(lut.labels), 'range_ms': [low, high],
                      'calibration': final.metadata.get('calibration')}))
    return 0

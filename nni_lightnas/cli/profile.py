"""``nni-lightnas profile``: build the latency LUT of a space on a device (resumable), optionally corrected.

With ``--predictor KIND`` it builds no LUT: it measures ``--samples`` whole networks spread over
the space's cost range and fits a predictor on them (``transfer``: pre-trained on other devices,
``--pretrain-data``), written as a predictor directory that ``search --latency`` reads. It
prints the accuracy to expect on an unseen device from the leave-one-device-out benchmark
(docs/predictor_transfer.md), also kept in the directory's ``profile.json``.
"""

from __future__ import annotations

import argparse
import json

from .device_options import add_measurement_arguments, device_from_args
from .space_option import add_space_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--preset', default='fashion_mnist', help='imagenet, cifar10, fashion_mnist or tiny')
    parser.add_argument('--output', '-o', required=True,
                        help='LUT file (.csv, or .parquet with pyarrow); an unfinished one is resumed. With '
                             '--predictor: the predictor directory to write')
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
    from .predictor import KINDS
    parser.add_argument('--predictor', choices=KINDS, default=None,
                        help='instead of a LUT, fit a latency predictor of this kind on --samples measured networks '
                             '(transfer: pre-trained on other devices, accurate from about 20)')
    parser.add_argument('--samples', type=int, default=None,
                        help='with --predictor: networks measured, spread over the cost range (default 20, >= 2)')
    parser.add_argument('--pretrain-data', default=None, metavar='CSV',
                        help='with --predictor transfer/best: other devices measured on this preset\'s LightNet '
                             'strings (arch column, one latency column per device); default for transfer: the '
                             'shipped table in the space\'s encoding')
    parser.add_argument('--pretrain-columns', default=None, metavar='A,B',
                        help='pre-train on these columns of the pretraining table only')
    add_space_arguments(parser)


def _corrected_path(path, suffix: str):
    from pathlib import Path
    path = Path(path)
    return path.with_name(f'{path.stem}.{suffix}{path.suffix}')


def _run_predictor(args: argparse.Namespace) -> int:
    """``--predictor KIND``: measure ``--samples`` spread networks, fit, save, print what to expect."""
    from nni_lightnas.atomic import check_output_path
    from nni_lightnas.latency.predictors.device_fit import DevicePredictorConfig, fit_device_predictor
    if args.space:
        raise ValueError('--predictor fits a preset\'s LightNets (--preset); for --space build a LUT (no --predictor)')
    if args.correct != 'none':
        raise ValueError(f'--correct {args.correct} corrects a LUT; --predictor {args.predictor} needs none')
    samples = 20 if args.samples is None else args.samples
    if samples < 2:
        raise ValueError(f'--samples must be an integer >= 2 (the cheapest and the dearest network are always '
                         f'measured), got --samples {samples}; 20 is the validated default for --predictor transfer')
    columns = tuple(c for c in args.pretrain_columns.split(',') if c) if args.pretrain_columns else None
    config = DevicePredictorConfig(preset=args.preset, kind=args.predictor, num_samples=samples,
                                   batch=args.batch, rounds=args.rounds, seed=args.seed,
                                   pretrain_data=args.pretrain_data, pretrain_columns=columns)
    check_output_path(args.output, what='--output', directory=True)
    result = fit_device_predictor(config, device_from_args(args))
    directory = result.save(args.output)
    low, high = result.model.latency_range()
    profile = result.profile
    expected = profile['expected_accuracy']
    if expected is None:
        print(f'expected accuracy: kind {profile["kind"]!r} has no leave-one-device-out figures')
    else:
        below = ' (fewer measurements than validated: expect worse)' if expected['below_validated'] else ''
        print(f'expected accuracy on an unseen device ({profile["kind"]}, N={expected["validated_n_train"]}, '
              f'leave-one-device-out over {expected["devices"]} devices{below}): within +-10% '
              f'{expected["mean_acc10"]:.1f}% mean, {expected["worst_acc10"]:.1f}% worst '
              f'({expected["worst_acc10_device"]}); Spearman {expected["mean_spearman"]:.3f} mean, '
              f'{expected["worst_spearman"]:.3f} worst ({expected["worst_spearman_device"]})')
    print(json.dumps({'outputs': {'predictor': str(directory)}, 'latency_model': str(directory),
                      'preset': profile['preset'], 'device': profile['device'], 'batch': profile['batch'],
                      'threads': profile['threads'], 'kind': profile['kind'], 'samples': profile['num_samples'],
                      'pretrain_columns': profile['pretrain_columns'], 'range_ms': [low, high],
                      'expected_accuracy': expected}, default=float))
    return 0


def run(args: argparse.Namespace) -> int:
    import random

    if args.predictor is not None:
        return _run_predictor(args)
    given = [flag for flag, value in (('--samples', args.samples), ('--pretrain-data', args.pretrain_data),
                                      ('--pretrain-columns', args.pretrain_columns)) if value is not None]
    if given:
        raise ValueError(f'{", ".join(given)} only apply with --predictor KIND (a LUT measures every op)')

    from nni_lightnas.latency.lut_build import build_lut
    from nni_lightnas.latency.whole_network import measure_archs
    from nni_lightnas.search_spaces.resolve import resolve_space
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

#!/usr/bin/env python
"""How well do the plain and the BBSSP-corrected LUT predict measured whole-network latency?

On the ``fashion_mnist`` preset and the ``local`` device (ONNX Runtime, CPU):

1. build the plain per-op LUT (overhead subtracted);
2. correct it with BBSSP (``SSBN_0`` and every single-layer swap measured as whole nets);
3. measure random architectures as whole exported networks, the repeats interleaved
   (every architecture once, then again, ...), and compare with both tables; a linear
   whole-network calibration is fitted on a separate set of measured architectures and
   reported beside them.

Prints one JSON object::

    {"n_archs": ..., "additive": {"mape": ..., "acc5": ..., "acc10": ..., "spearman": ...},
     "corrected": {...}, "linear": {...}, "bbssp_linear": {...}, "device": ..., "threads": ..., ...}

``mape``, ``acc5`` and ``acc10`` are in percent. ``drift_compensated`` repeats the comparison
with the truth rescaled by ``SSBN_0``, measured in every group of whole nets
(``load_factor`` = its latency now / at profiling time): on a shared machine the load, and
with it the latency of everything, drifts by 5-10 % between the profiling and the
evaluation, which no per-op table can know. ``measurement`` says how noisy the reference
itself is (the median relative IQR of the whole-net runs and the relative change of each
architecture's median between rounds): a predictor cannot be judged more finely than that.

Usage::

    python benchmarks/lut_accuracy.py --quick          # about 3-6 minutes on 2 cores
    python benchmarks/lut_accuracy.py                  # 100 archs, 3 rounds
    python benchmarks/lut_accuracy.py --quick --clock wall   # wall-clock latency (a quiet machine)

``--clock cpu`` (the default) times the CPU time of the measuring thread: on a machine
shared with other jobs the wall clock mostly measures the neighbours (IQR of 100 % and
more was seen here under a load of 8 on 2 cores), the thread's CPU time is the model's.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='30 archs, 2 rounds, 100 runs per measurement')
    parser.add_argument('--preset', default='fashion_mnist')
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--archs', type=int, default=None, help='evaluation architectures (30 quick, 100 full)')
    parser.add_argument('--calibration-archs', type=int, default=None, help='for the linear fit (20 quick, 50 full)')
    parser.add_argument('--rounds', type=int, default=None, help='interleaved repeats of each whole-net measurement')
    parser.add_argument('--runs', type=int, default=None, help='timed runs per measurement (100 quick, 200 full)')
    parser.add_argument('--bbssp-rounds', type=int, default=None, help='repeats of the BBSSP plan (1 quick, 2 full)')
    parser.add_argument('--typical-op', default=None,
                        help='op of SSBN_0 at every layer (default: per layer the median-latency block)')
    parser.add_argument('--clock', choices=['cpu', 'wall'], default='cpu',
                        help="cpu (default): CPU time of the measuring thread, robust to other processes on a "
                             "shared machine; wall: wall-clock latency (use on a quiet machine)")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--output-dir', default='runs/lut_accuracy',
                        help='LUTs, the BBSSP journal and the measured archs (a rerun resumes the LUT and BBSSP)')
    parser.add_argument('--fresh', action='store_true', help='remeasure the LUT and BBSSP from scratch')
    parser.add_argument('-v', '--verbose', action='store_true')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s', stream=sys.stderr)

    from nni_lightnas.latency import LocalDevice
    from nni_lightnas.latency.bbssp import bbssp_correct
    from nni_lightnas.latency.calibration import fit_linear_calibration, prediction_metrics
    from nni_lightnas.latency.lut_build import build_lut
    from nni_lightnas.latency.whole_network import measure_archs
    from nni_lightnas.search_spaces.resolve import resolve_space
    from nni_lightnas.search_spaces import encode_arch

    n_archs = args.archs or (30 if args.quick else 100)
    n_calibration = args.calibration_archs if args.calibration_archs is not None else (20 if args.quick else 50)
    rounds = args.rounds or (2 if args.quick else 3)
    runs = args.runs or (100 if args.quick else 200)
    out = Path(args.output_dir) / f'{args.preset}_b{args.batch}_t{args.threads}_{args.clock}'
    out.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        for name in ['lut_plain.csv', *(path.name for path in out.glob('bbssp_journal*.csv'))]:
            (out / name).unlink(missing_ok=True)

    device = LocalDevice(num_runs=runs, num_warmup_runs=max(10, runs // 10), threads=args.threads, clock=args.clock)
    started = time.time()
    plain = build_lut(args.preset, device, batch=args.batch, path=out / 'lut_plain.csv')
    lut_s = time.time() - started
    bbssp_rounds = args.bbssp_rounds or (1 if args.quick else 2)
    corrected = bbssp_correct(plain, device, rounds=bbssp_rounds, typical_op=args.typical_op,
                              journal=out / f'bbssp_journal_r{bbssp_rounds}_{args.typical_op or "median"}.csv')
    corrected.save(out / 'lut_bbssp.csv')
    bbssp_s = time.time() - started - lut_s

    config, candidates = resolve_space(args.preset)
    rng = random.Random(args.seed)
    labels = list(candidates)
    seen = set()
    archs = []
    while len(archs) < n_archs + n_calibration:
        arch = encode_arch([rng.choice(candidates[label]) for label in labels])
        if arch not in seen:
            seen.add(arch)
            archs.append(arch)
    typical = corrected.metadata['bbssp']['typical_ops']
    ssbn0 = [typical[label] for label in labels]
    measured = measure_archs(args.preset, archs, device, batch=args.batch, rounds=rounds, reference=ssbn0)
    nets_s = time.time() - started - lut_s - bbssp_s
    evaluation, calibration = measured[:n_archs], measured[n_archs:]
    truth = [m['median_ms'] for m in evaluation]

    def score(model) -> dict:
        metrics = prediction_metrics([model.predict(m['arch']) for m in evaluation], truth)
        return {key: round(value, 3) if isinstance(value, float) else value for key, value in metrics.items()}

    report = {'n_archs': n_archs, 'additive': score(plain), 'corrected': score(corrected)}
    if calibration:
        calibration_archs = [m['arch'] for m in calibration]
        calibration_ms = [m['median_ms'] for m in calibration]
        report['linear'] = score(fit_linear_calibration(plain, calibration_archs, calibration_ms))
        report['bbssp_linear'] = score(fit_linear_calibration(corrected, calibration_archs, calibration_ms))
        report['n_calibration_archs'] = len(calibration)
    report['mape_gap'] = round(report['additive']['mape'] - report['corrected']['mape'], 3)
    # the same comparison with the slow drift of the machine taken out: every group of the
    # whole-net measurements also ran SSBN_0, whose latency at profiling time is known
    ssbn0_ms = corrected.metadata['bbssp']['ssbn0_ms']
    compensated = [statistics.median(t / r for t, r in zip(m['round_medians_ms'], m['reference_ms'])) * ssbn0_ms
                   for m in evaluation]

    def score_compensated(model) -> dict:
        metrics = prediction_metrics([model.predict(m['arch']) for m in evaluation], compensated)
        return {key: round(value, 3) if isinstance(value, float) else value for key, value in metrics.items()}

    report['drift_compensated'] = {
        'additive': score_compensated(plain), 'corrected': score_compensated(corrected),
        'load_factor': round(statistics.median(r for m in measured for r in m['reference_ms']) / ssbn0_ms, 4),
    }
    report['drift_compensated']['mape_gap'] = round(
        report['drift_compensated']['additive']['mape'] - report['drift_compensated']['corrected']['mape'], 3)
    iqr = [(m['p75_ms'] - m['p25_ms']) / m['median_ms'] for m in measured]
    drift = [abs(m['round_medians_ms'][-1] - m['round_medians_ms'][0]) / m['median_ms']
             for m in measured if len(m['round_medians_ms']) > 1]
    within = [m['p25_ms'] <= m['round_medians_ms'][-1] <= m['p75_ms'] for m in measured
              if len(m['round_medians_ms']) > 1]
    report['measurement'] = {
        'repeat_within_first_iqr_pct': round(100 * sum(within) / len(within), 1) if within else None,
        'median_relative_iqr_pct': round(100 * statistics.median(iqr), 3),
        'median_round_drift_pct': round(100 * statistics.median(drift), 3) if drift else None,
        'max_round_drift_pct': round(100 * max(drift), 3) if drift else None,
        'ssbn0_relative_spread_pct': round(100 * corrected.metadata['bbssp']['ssbn0_relative_spread'], 3),
        'whole_net_ms_range': [round(min(truth), 4), round(max(truth), 4)],
    }
    report.update({
        'device': device.name, 'threads': args.threads, 'clock': args.clock, 'batch': args.batch, 'preset': args.preset,
        'runtime': plain.metadata.get('runtime'), 'provider': plain.metadata.get('provider'),
        'runs': runs, 'rounds': rounds, 'bbssp_rounds': bbssp_rounds, 'typical_ops': typical, 'seed': args.seed,
        'seconds': {'lut': round(lut_s, 1), 'bbssp': round(bbssp_s, 1), 'whole_nets': round(nets_s, 1)},
    })
    (out / 'measured_archs.json').write_text(json.dumps(measured, indent=1))
    (out / 'report.json').write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    return 0


if __name__ == '__main__':
    sys.exit(main())

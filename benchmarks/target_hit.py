"""Does one search land on the latency target? LightNAS against NNI's penalty strategies.

For 5 targets spread over the feasible range of the ``fashion_mnist`` preset (a LUT measured
on ``local``), run ONE search per target with one fixed budget for each of:

* LightNAS (learned multiplier);
* NNI's ``Proxyless`` and ``GumbelDARTS`` with NNI's ``ExpectationProfilerPenalty`` at its
  default scale (1.0), baseline = the target, on the same LUT through our NNI profiler.

The latency model is the per-op LUT with a whole-network linear calibration fitted on
``--calibrate`` random networks measured on ``local`` (0: the plain LUT), so "measured within
3%" tests the search and not the LUT's summing error.

Every exported architecture is then measured as a whole exported network on ``local``
(interleaved, several rounds). Prints one JSON object::

    {"lightnas": [{"target_ms", "predicted_ms", "measured_ms", "rel_error", ...}, ...],
     "nni_proxyless_penalty": [...], "nni_gumbel_penalty": [...], "budget": {...}, "device": {...}}

``rel_error`` is predicted / target - 1; ``measured_rel_error`` is measured / target - 1;
``drift_corrected_measured_rel_error`` divides the measurement by ``machine_drift.ratio``, the
median of measured / calibrated-prediction over the calibration nets re-measured in the same
session (interleaved with the exported nets).
For LightNAS, ``argmax_*`` describe the plain argmax of alpha and ``landed`` whether the
export moved to the most probable architecture within 1% (``landing_tolerance``).

Usage::

    python benchmarks/target_hit.py --quick            # ~16 min on 2 CPU cores (NNI strategies at 2 targets)
    python benchmarks/target_hit.py --output docs/target_hit.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
#: seed of the calibration nets; the drift measurement re-measures the same nets
CALIBRATION_SEED = 1


def build_or_load_lut(path: Path, preset: str, batch: int | None):
    from nni_lightnas.latency import LocalDevice
    from nni_lightnas.latency.lut import LatencyLUT
    from nni_lightnas.latency.lut_build import build_lut
    if path.is_file():
        try:
            return LatencyLUT.load(path, space=preset)
        except ValueError:
            pass  # unfinished: build_lut resumes it
    return build_lut(preset, LocalDevice(num_runs=100, num_warmup_runs=10, threads=1), batch=batch, path=path)


def calibrated_lut(path: Path, preset: str, calibrate: int):
    """The LUT at ``path`` (measured on ``local`` when missing) with a linear calibration fitted on
    ``calibrate`` spread nets (0: none); the calibrated LUT is saved beside ``path`` and reused.

    Returns ``(lut, calibration metadata or None)``.
    """
    from nni_lightnas.latency import LocalDevice
    from nni_lightnas.latency.calibration import calibrate_on_device, prediction_metrics
    from nni_lightnas.latency.lut import LatencyLUT
    lut = build_or_load_lut(path, preset, None)
    if not calibrate:
        return lut, None
    calibrated_path = path.with_name(path.stem + f'_calibrated{calibrate}.csv')
    if calibrated_path.is_file():
        lut = LatencyLUT.load(calibrated_path, space=preset)
        return lut, lut.metadata['calibration']
    batch = int(lut.metadata.get('batch', 32))
    device = LocalDevice(num_runs=100, num_warmup_runs=10, threads=int(lut.metadata.get('threads', 1)))
    lut, calibration_rows = calibrate_on_device(lut, preset, device, num_archs=calibrate, batch=batch, rounds=2,
                                                seed=CALIBRATION_SEED)
    truth = [row['median_ms'] for row in calibration_rows]
    lut = lut.with_calibration(**{**lut.metadata['calibration'], 'metrics': {
        'plain_lut': prediction_metrics([row['lut_ms'] for row in calibration_rows], truth),
        'calibrated_lut': prediction_metrics([lut.predict(row['arch']) for row in calibration_rows], truth)}})
    lut.save(calibrated_path)
    print(f"calibration: {json.dumps(lut.metadata['calibration'], default=float)}", file=sys.stderr)
    return lut, lut.metadata['calibration']


def nni_penalty_search(strategy_name: str, target_ms: float, lut, config, train_loader, arch_loader) -> dict:
    from nni.nas.experiment import NasExperiment
    from nni.nas.oneshot.pytorch.profiler import ExpectationProfilerPenalty
    from nni.nas.strategy import GumbelDARTS, Proxyless

    from nni_lightnas.latency.profiler import LatencyProfiler
    from nni_lightnas.search import make_search_evaluator
    from nni_lightnas.search_spaces import LightNASSpace
    torch.manual_seed(config.seed)
    space = LightNASSpace(config.preset)
    penalty = ExpectationProfilerPenalty(LatencyProfiler(space, lut), baseline=target_ms)  # default scale 1.0
    strategy_class = {'proxyless': Proxyless, 'gumbel': GumbelDARTS}[strategy_name]
    strategy = strategy_class(penalty=penalty, warmup_epochs=config.warmup_epochs)
    evaluator = make_search_evaluator(train_loader, arch_loader, max_epochs=config.epochs,
                                      learning_rate=config.learning_rate, weight_decay=config.weight_decay)
    start = time.perf_counter()
    experiment = NasExperiment(space, evaluator, strategy)
    experiment.run()
    sample = experiment.export_top_models(formatter='dict')[0]
    arch = '-'.join(sample[label] for label in space.labels)
    return {'arch': arch, 'predicted_ms': lut.predict(arch), 'seconds': time.perf_counter() - start}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='smaller budget (about 20 minutes on 2 cores)')
    parser.add_argument('--preset', default='fashion_mnist')
    parser.add_argument('--lut', default=str(REPO / 'runs' / 'bench' / 'lut_fashion_mnist.csv'),
                        help='LUT to use; measured on local (and cached here) when missing')
    parser.add_argument('--epochs', type=int, default=None)
    parser.add_argument('--train-limit', type=int, default=None)
    parser.add_argument('--num-targets', type=int, default=5)
    parser.add_argument('--strategies', default='lightnas,proxyless,gumbel')
    parser.add_argument('--rounds', type=int, default=3, help='measurement rounds of the exported nets')
    parser.add_argument('--calibrate', type=int, default=24,
                        help='random nets measured to fit the linear calibration (0: plain LUT); the calibrated '
                             'LUT is saved beside --lut and reused')
    parser.add_argument('--nni-targets', type=int, default=None,
                        help="how many of the targets NNI's penalty strategies run (default: all; 2 with --quick, "
                             "since NNI's Proxyless takes ~10 min per quick search here)")
    parser.add_argument('--journal', default=str(REPO / 'runs' / 'bench' / 'target_hit_journal.jsonl'),
                        help='finished searches are appended here and not rerun')
    parser.add_argument('--landing-tolerance', type=float, default=0.01,
                        help="LightNAS's landing step (0: export the plain argmax, so the learned lambda alone lands it)")
    parser.add_argument('--quantiles', default=None, metavar='LIST',
                        help='targets at these shares of the latency range, e.g. 0.225,0.375 (default: '
                             '--num-targets from 0.15 to 0.75); settings are chosen on other targets than reported')
    parser.add_argument('--search-options', default='{}', metavar='JSON',
                        help="SearchConfig settings of LightNAS's searches, e.g. '{\"lambda_lr\": 0.002}' (part of "
                             "the journal key)")
    parser.add_argument('--threads', type=int, default=2, help='torch threads of the searches')
    parser.add_argument('--output', default=None, help='also write the JSON here')
    args = parser.parse_args(argv)
    warnings.filterwarnings('ignore')
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger('nni').setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)

    from nni_lightnas.latency import LocalDevice
    from nni_lightnas.latency.calibration import spread_archs
    from nni_lightnas.latency.whole_network import measure_archs
    from nni_lightnas.search import SearchConfig, _data_loaders, run_search

    epochs = args.epochs or (6 if args.quick else 12)
    train_limit = args.train_limit or (4000 if args.quick else 20000)
    lut, calibration = calibrated_lut(Path(args.lut), args.preset, args.calibrate)
    batch = int(lut.metadata.get('batch', 32))
    device = LocalDevice(num_runs=100, num_warmup_runs=10, threads=int(lut.metadata.get('threads', 1)))
    fastest_ms, slowest_ms = lut.latency_range()
    quantiles = ([float(q) for q in args.quantiles.split(',')] if args.quantiles
                 else np.linspace(0.15, 0.75, args.num_targets))
    search_options = json.loads(args.search_options)
    targets = [float(fastest_ms + q * (slowest_ms - fastest_ms)) for q in quantiles]
    strategies = args.strategies.split(',')
    results: dict[str, list[dict]] = {'lightnas': [], 'nni_proxyless_penalty': [], 'nni_gumbel_penalty': []}
    started = time.perf_counter()
    nni_count = args.nni_targets if args.nni_targets is not None else (2 if args.quick else len(targets))
    nni_targets = {targets[int(i)] for i in np.linspace(0, len(targets) - 1, nni_count).round()} if nni_count else set()
    journal_path = Path(args.journal)
    journal_path.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if journal_path.is_file():
        for line in journal_path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                done[(record['strategy'], round(record['target_ms'], 6), record['epochs'], record['train_limit'])] = record

    lightnas_name = f'lightnas-landing{args.landing_tolerance:g}' + (
        json.dumps(search_options, sort_keys=True) if search_options else '')

    def journaled(name: str, target_ms: float, search) -> dict:
        key = (name if name != 'lightnas' else lightnas_name, round(target_ms, 6), epochs, train_limit)
        if key not in done:
            record = {'strategy': key[0], 'target_ms': target_ms, 'epochs': epochs, 'train_limit': train_limit,
                      **search()}
            with journal_path.open('a') as handle:
                handle.write(json.dumps(record, default=float) + '\n')
            done[key] = record
        print(f"{name} target {target_ms:.4f}: {done[key]['predicted_ms']:.4f}", file=sys.stderr)
        return {k: v for k, v in done[key].items() if k not in ('strategy', 'epochs', 'train_limit')}

    def lightnas_search(config) -> dict:
        summary = run_search(config, lut)
        return {'arch': summary['arch'], 'predicted_ms': summary['predicted_ms'], 'seconds': summary['seconds'],
                'argmax_arch': summary['argmax_arch'], 'argmax_ms': summary['argmax_ms'],
                'exported_ms': summary['exported_ms'],
                'argmax_rel_error': summary['argmax_relative_error'], 'landed': summary['landed'],
                'alpha_entropy_fraction': summary['alpha_entropy_fraction'],
                'argmax_changes_last_epoch': summary['argmax_changes_last_epoch'],
                'argmax_supernet_acc': summary['argmax_supernet_acc']}

    for target_ms in targets:
        config = SearchConfig(preset=args.preset, target_ms=target_ms, epochs=epochs,
                              warmup_epochs=max(1, epochs // 5), batch_size=64, train_limit=train_limit,
                              landing_tolerance=args.landing_tolerance or None)
        if 'lightnas' in strategies:
            lightnas_config = dataclasses.replace(config, **search_options)
            results['lightnas'].append(journaled('lightnas', target_ms, lambda: lightnas_search(lightnas_config)))
        for name in ('proxyless', 'gumbel'):
            if name in strategies and target_ms in nni_targets:
                def penalty_search(name=name, config=config, target_ms=target_ms):
                    train_loader, arch_loader = _data_loaders(config)
                    return nni_penalty_search(name, target_ms, lut, config, train_loader, arch_loader)
                results[f'nni_{name}_penalty'].append(journaled(name, target_ms, penalty_search))

    # Measure every exported net as a whole network at the LUT's batch, interleaved with the
    # calibration nets: their ratio measured-now / calibrated-prediction is the machine's drift
    # since the calibration (a shared VM changes speed over an hour), reported beside the raw error.
    entries = [entry for rows in results.values() for entry in rows]
    # the very nets calibrate_on_device measured (spread over the range, same count and seed)
    references = spread_archs(lut, args.calibrate, seed=CALIBRATION_SEED) if args.calibrate else []
    measured = measure_archs(args.preset, [entry['arch'] for entry in entries] + references, device, batch=batch,
                             rounds=args.rounds, group_size=None)
    drift_ratios = [row['median_ms'] / lut.predict(row['arch']) for row in measured[len(entries):]]
    drift = float(np.median(drift_ratios)) if drift_ratios else 1.0
    for entry, measurement in zip(entries, measured):
        entry['measured_ms'] = measurement['median_ms']
        entry['measured_p25_ms'] = measurement['p25_ms']
        entry['measured_p75_ms'] = measurement['p75_ms']
        entry['rel_error'] = entry['predicted_ms'] / entry['target_ms'] - 1
        entry['measured_rel_error'] = entry['measured_ms'] / entry['target_ms'] - 1
        entry['drift_corrected_measured_rel_error'] = entry['measured_ms'] / drift / entry['target_ms'] - 1
    summary = {
        **results,
        'mean_abs_rel_error': {name: float(np.mean([abs(e['rel_error']) for e in rows])) if rows else None
                               for name, rows in results.items()},
        'lightnas_mean_abs_argmax_rel_error': float(np.mean([abs(e['argmax_rel_error']) for e in results['lightnas']]))
        if results['lightnas'] else None,
        'mean_abs_measured_rel_error': {name: float(np.mean([abs(e['measured_rel_error']) for e in rows]))
                                        if rows else None for name, rows in results.items()},
        'mean_abs_drift_corrected_measured_rel_error': {
            name: float(np.mean([abs(e['drift_corrected_measured_rel_error']) for e in rows])) if rows else None
            for name, rows in results.items()},
        'machine_drift': {'ratio': drift, 'reference_nets': len(drift_ratios),
                          'ratio_p25': float(np.percentile(drift_ratios, 25)) if drift_ratios else None,
                          'ratio_p75': float(np.percentile(drift_ratios, 75)) if drift_ratios else None},
        'lightnas_argmax_within_2pct': sum(abs(e['argmax_rel_error']) <= 0.02 for e in results['lightnas']),
        'lightnas_alpha_entropy_fraction': [e.get('alpha_entropy_fraction') for e in results['lightnas']],
        'budget': {'epochs': epochs, 'train_limit': train_limit, 'batch_size': 64, 'quick': args.quick,
                   'landing_tolerance': args.landing_tolerance, 'search_options': search_options},
        'latency_model': {'path': str(args.lut), 'range_ms': [fastest_ms, slowest_ms], 'batch': batch,
                          'calibration': calibration},
        'device': {'name': 'local', 'threads': device.threads, 'runtime': entries[0] and 'onnxruntime'},
        'seconds': time.perf_counter() - started,
    }
    text = json.dumps(summary, default=float)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(summary, indent=2, default=float))
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())

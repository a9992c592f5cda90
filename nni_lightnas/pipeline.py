"""The main job: profile -> search -> evolve -> train -> export -> measure -> report, resumable.

:func:`run_pipeline` runs every stage for every target of a :class:`PipelineConfig` in a run
directory. Each stage writes its artifacts into its own folder and, last, a ``stage.json``
marker holding the hash of its inputs (its settings and the markers of the stages it reads).
On a rerun a stage whose marker matches is skipped, so an interrupted run continues at the
stage it stopped in (the search and the training within it, from their last finished epoch),
and changing one setting reruns only what depends on it; ``from_stage`` forces a stage and
everything after it. Several targets share the one
profiled device and one warmed-up supernet (``supernet/warmup-*.ckpt``: the first target's
search saves it at the end of its warm-up, the others start from it).

After export the loop closes (:mod:`~nni_lightnas.closed_loop`): when the final net measures
more than ``measure.landing_tolerance`` (default 2%) from its target, the measurement corrects
the latency model (:func:`~nni_lightnas.latency.calibration.correct_on_landings`), stage 1's
export is re-landed under it from the search's ``alpha.json``, and stage 2, the training and
the export run again in ``roundN/``, up to ``measure.max_rounds`` rounds in all (default 3).
Every round (target, predicted, measured) goes into ``pipeline.json`` (``landing``), the rows
and the report; the round measured nearest the target ships. Each round's stages have their
markers, so a rerun redoes no finished round.

Layout of a run directory::

    profile/lut.csv                      the device's latency table (built incrementally)
    profile/lut_calibrated.csv           the same with the whole-network calibration (profile.calibrate)
    profile/calibration.csv              the nets it was fitted on: LUT, calibrated, measured
    supernet/warmup-HASH.ckpt            the warmed-up supernet the targets share (several targets)
    T0.85ms/search/                      arch.json, history.csv, alpha.json, summary.json
    T0.85ms/search/checkpoints/          the newest epoch's checkpoint while the search runs (resume)
    T0.85ms/evolve/                      trials.jsonl, best.json (stage-2 widths)
    T0.85ms/train/                       model.pt, metrics.json (checkpoints/ while it trains)
    T0.85ms/export/                      model.onnx, measure.json
    T0.85ms/round2/land/                 lut_corrected.csv, land.json (the closed loop's re-landing)
    T0.85ms/round2/{evolve,train,export} round 2's stages, like the first round's
    pipeline.json                        the settings and, once run, every round of the loop (landing)
    report/report.html                   figures (PNG) and tables (CSV) beside it
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from .atomic import atomic_write_json
from .closed_loop import LandingRound, chosen_round, landing_verdict
from .pipeline_config import (DEFAULT_LANDING_TOLERANCE, DEFAULT_MAX_ROUNDS, PipelineConfig, PipelineConfigError,
                              load_pipeline_config)
from .pipeline_stages import (_CHECKPOINTS, StageError, _evolve, _export_and_measure, _profile, _reland, _report,
                              _search, _train, evolve_settings)

__all__ = ['STAGES', 'PipelineConfig', 'PipelineConfigError', 'StageError', 'run_pipeline', 'load_pipeline_config']

_logger = logging.getLogger(__name__)

STAGES = ('profile', 'search', 'evolve', 'train', 'export', 'report')


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Stage:
    """One stage's folder and marker."""

    def __init__(self, directory: Path, inputs: Any):
        self.directory = directory
        self.inputs_hash = _digest(inputs)
        self.marker = directory / 'stage.json'

    def done(self) -> bool:
        if not self.marker.is_file():
            return False
        return json.loads(self.marker.read_text()).get('inputs_hash') == self.inputs_hash

    def finish(self, outputs: dict[str, Any], seconds: float) -> None:
        # A fresh run id per execution: stages downstream hash it, so they rerun after this one reran.
        atomic_write_json(self.marker, {'inputs_hash': self.inputs_hash, 'run_id': uuid.uuid4().hex,
                                        'outputs': outputs, 'seconds': seconds,
                                        'finished': time.strftime('%Y-%m-%dT%H:%M:%S')}, default=float)

    def outputs(self) -> dict[str, Any]:
        """The stage's outputs, with ``_hash`` identifying this execution for the stages downstream."""
        marker = json.loads(self.marker.read_text())
        return {**marker['outputs'], '_hash': f"{marker['inputs_hash']}:{marker['run_id']}"}


def run_pipeline(config: PipelineConfig, *, from_stage: str | None = None,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the whole pipeline; returns the final table as a list of dicts per target.

    Examples
    --------
    >>> from nni_lightnas.pipeline import load_pipeline_config, run_pipeline  # doctest: +SKIP
    >>> run_pipeline(load_pipeline_config('examples/fashion_mnist/pipeline.yml', quick=True))  # doctest: +SKIP
    """
    if from_stage is not None and from_stage not in STAGES:
        raise ValueError(f'unknown stage {from_stage!r}; accepted: {", ".join(STAGES)}')
    say = progress or (lambda message: _logger.info('%s', message))
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / 'pipeline.json', dataclasses.asdict(config))
    forced = set(STAGES[STAGES.index(from_stage):]) if from_stage else set()
    executed: list[str] = []

    def stage(name: str, directory: Path, inputs: Any, body: Callable[[Path], dict[str, Any]],
              label: str = '') -> dict[str, Any]:
        state = _Stage(directory, inputs)
        title = f'{name}{" " + label if label else ""}'
        if name not in forced and state.done():
            say(f'[skip] {title}: done ({state.marker})')
            return state.outputs()
        if state.marker.exists():
            state.marker.unlink()
        if name in forced:  # a forced stage starts over, not from an interrupted run's checkpoints
            shutil.rmtree(directory / _CHECKPOINTS, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        say(f'[run]  {title} ...')
        start = time.perf_counter()
        outputs = body(directory)
        seconds = time.perf_counter() - start
        state.finish(outputs, seconds)
        executed.append(title)
        say(f'[done] {title} in {seconds:.1f} s')
        return state.outputs()

    profile_out = stage('profile', run_dir / 'profile',
                        {'preset': config.preset, 'device': config.device, **config.profile},
                        lambda d: _profile(config, d))
    from .latency.lut import LatencyLUT
    lut = LatencyLUT.load(profile_out['lut'], space=config.preset)
    targets = config.targets_ms or [round(lut.target_at(q), 4) for q in config.target_quantiles]
    if config.target_energy_mj is not None:  # the energy column is checked before any search
        from .search import energy_model_of
        try:
            energy_model_of(lut, config.target_energy_mj)
        except ValueError as error:
            raise PipelineConfigError(f'target_energy_mj: {error} (the LUT is {profile_out["lut"]})') from None
    energy_target = {} if config.target_energy_mj is None else {'target_energy_mj': config.target_energy_mj}
    rows, export_hashes, landing = [], [], []
    # Several targets share one warmed-up supernet (the warm-up does not depend on the target);
    # its file name carries everything else the warm-up depends on.
    shared_warmup = None
    from .search import SearchConfig
    if len(targets) > 1 and int(config.search.get('warmup_epochs', SearchConfig.warmup_epochs)) > 0:
        shared_warmup = run_dir / 'supernet' / (
            f"warmup-{_digest({'lut': profile_out['_hash'], 'seed': config.seed, **config.search})}.ckpt")
    for target_ms in targets:
        base = run_dir / f'T{target_ms:g}ms'
        label = f'(target {target_ms:g} ms)'
        search_inputs = {'target': target_ms, 'lut': profile_out['_hash'], 'seed': config.seed, **config.search,
                         **energy_target}
        search_out = stage('search', base / 'search', search_inputs,
                           lambda d: _search(config, target_ms, lut, d, shared_warmup, _digest(search_inputs)), label)
        # The loop's settings do not change what a round measures: changing them reruns no export.
        measure_inputs = {key: value for key, value in config.measure.items()
                          if key not in ('landing_tolerance', 'max_rounds')}
        tolerance = float(config.measure.get('landing_tolerance', DEFAULT_LANDING_TOLERANCE))
        max_rounds = int(config.measure.get('max_rounds', DEFAULT_MAX_ROUNDS))
        rounds: list[LandingRound] = []
        outputs: dict[int, dict[str, Any]] = {}
        arch, predicted_ms, factor, folder = search_out['arch'], search_out['predicted_ms'], 1.0, base
        while True:
            number = len(rounds) + 1
            round_label = label if number == 1 else f'(target {target_ms:g} ms, round {number})'
            if number > 1:  # correct the latency model with every measured round, re-land stage 1's export
                folder = base / f'round{number}'
                land_out = stage('land', folder / 'land',
                                 {'search': search_out['_hash'], 'tolerance': config.search.get('landing_tolerance'),
                                  'exports': [outputs[r.round]['export']['_hash'] for r in rounds]},
                                 lambda d: _reland(config, target_ms, lut, base / 'search', rounds, d),
                                 round_label)
                if land_out['arch'] in {r.arch for r in rounds}:
                    verdict = 'no_new_net'
                    say(f'[stop] {round_label}: the corrected model lands on {land_out["arch"]} again, already '
                        f'measured; the loop cannot change the net')
                    break
                arch, predicted_ms, factor = land_out['arch'], land_out['predicted_ms'], land_out['landing_factor']
            # the band as stage 2 uses it (it follows measure.landing_tolerance too)
            evolve_out = stage('evolve', folder / 'evolve',
                               {'search': search_out['_hash'], 'seed': config.seed, **config.evolve,
                                'fill_tolerance': evolve_settings(config)['fill_tolerance'],
                                **({'arch': arch} if number > 1 else {})},
                               lambda d: _evolve(config, target_ms, arch, int(lut.metadata.get('batch', 1)), d),
                               round_label)
            train_inputs = {'evolve': evolve_out['_hash'], **config.train}
            train_out = stage('train', folder / 'train', train_inputs,
                              lambda d: _train(config, arch, evolve_out['widths'], d, _digest(train_inputs)),
                              round_label)
            export_out = stage('export', folder / 'export', {'train': train_out['_hash'], **measure_inputs},
                               lambda d: _export_and_measure(config, arch, evolve_out['widths'],
                                                             Path(train_out['weights']), lut, d), round_label)
            rounds.append(LandingRound(round=number, arch=arch, target_ms=target_ms, predicted_ms=predicted_ms,
                                       measured_ms=export_out['median_ms'],
                                       evolved_predicted_ms=evolve_out.get('latency_ms'), landing_factor=factor))
            outputs[number] = {'evolve': evolve_out, 'train': train_out, 'export': export_out,
                               'predicted_ms': predicted_ms}
            verdict = landing_verdict(rounds, tolerance=tolerance, max_rounds=max_rounds)
            if verdict != 'continue':
                break
            say(f'[loop] {round_label}: measured {rounds[-1].measured_ms:.4g} ms, '
                f'{100 * rounds[-1].relative_error:+.1f}% from the target (tolerance {100 * tolerance:g}%): '
                f'correcting the latency model, round {number + 1} of at most {max_rounds}')
        if verdict in ('max_rounds', 'no_new_net'):
            _logger.warning('target %g ms: after %d round(s) the final net measures %.4g ms (%+.1f%%), outside '
                            '+-%g%%; stopped (%s: %s)', target_ms, len(rounds), rounds[-1].measured_ms,
                            100 * rounds[-1].relative_error, 100 * tolerance, verdict,
                            f'measure.max_rounds={max_rounds}' if verdict == 'max_rounds'
                            else 'the corrected model re-lands on a measured net')
            say(f'[stop] {label}: {len(rounds)} round(s), final net {100 * rounds[-1].relative_error:+.1f}% from the '
                f'target, outside +-{100 * tolerance:g}% ({verdict})')
        chosen = chosen_round(rounds)
        evolve_out, train_out, export_out = (outputs[chosen.round][key] for key in ('evolve', 'train', 'export'))
        export_hashes.extend(outputs[r.round]['export']['_hash'] for r in rounds)
        landing.append({'target_ms': target_ms, 'verdict': verdict, 'tolerance': tolerance, 'max_rounds': max_rounds,
                        'chosen_round': chosen.round, 'rounds': [r.as_dict() for r in rounds]})
        rows.append({'target_ms': target_ms, 'arch': chosen.arch,
                     'predicted_ms': chosen.predicted_ms, 'argmax_ms': search_out.get('argmax_ms'),
                     'exported_ms': chosen.predicted_ms,
                     'landed': search_out.get('landed'),
                     'alpha_entropy_fraction': search_out.get('alpha_entropy_fraction'),
                     'widths': evolve_out['widths'],
                     'evolved_predicted_ms': evolve_out.get('latency_ms'),
                     'measured_ms': export_out['median_ms'], 'measured_p25_ms': export_out['p25_ms'],
                     'measured_p75_ms': export_out['p75_ms'], 'test_acc': train_out['test_acc'],
                     'params_m': train_out['params_m'], 'flops_m': train_out.get('flops_m'),
                     'onnx': export_out['onnx'], 'device': config.device, 'batch': export_out['batch'],
                     'rounds': len(rounds), 'chosen_round': chosen.round, 'landing_verdict': verdict,
                     'landing_rounds': [r.as_dict() for r in rounds],
                     # the energy model's prediction of the shipped round's architecture (the LUT's widths)
                     **({} if config.target_energy_mj is None else {
                         'target_energy_mj': config.target_energy_mj,
                         'predicted_energy_mj': lut.energy_view().predict(chosen.arch)}),
                     'run_dir': str(base)})
        atomic_write_json(run_dir / 'pipeline.json', {**dataclasses.asdict(config), 'landing': landing}, default=float)
    report_out = stage('report', run_dir / 'report', {'rows': rows, 'exports': export_hashes},
                       lambda d: _report(config, rows, lut, d))
    return {'rows': rows, 'report': report_out['html'], 'executed': executed}


# ------------------------------------------------------------------------ the stages

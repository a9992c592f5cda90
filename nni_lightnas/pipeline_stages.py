"""The stages of the main job, one function each: profile, search, evolve, train, export (and measure), report.

:func:`~nni_lightnas.pipeline.run_pipeline` calls them in order, each with its own folder; they
read their settings from the :class:`~nni_lightnas.pipeline_config.PipelineConfig` and return
the outputs that go into the stage's marker. Stage 1 is :func:`~nni_lightnas.search.run_search`,
stage 2 :func:`~nni_lightnas.evolve.run_evolution`, both in this process.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from .atomic import atomic_write, atomic_write_json, atomic_write_text
from .budget_band import DEFAULT_FILL_TOLERANCE
from .closed_loop import LandingRound
from .pipeline_config import DEFAULT_LANDING_TOLERANCE, PipelineConfig, PipelineConfigError

__all__ = ['StageError', 'STAGE2_LATENCY', 'stage2_latency', 'evolve_settings']

_logger = logging.getLogger(__name__)


class StageError(RuntimeError):
    """A stage failed on a user or environment error: one line, and the exit code the CLI returns."""

    def __init__(self, message: str, *, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def _device_options(config: PipelineConfig) -> dict[str, Any]:
    """The keyword arguments of the pipeline's device: run counts of ``profile`` and ``device_options``."""
    return {'num_runs': int(config.profile.get('runs', 100)), 'num_warmup_runs': int(config.profile.get('warmup', 10)),
            'threads': int(config.profile.get('threads', 1)), **config.device_options}


def _make_device(config: PipelineConfig):
    from .latency.device_pool import make_device
    return make_device(config.device, **_device_options(config))


#: Stage-2 latency models the pipeline accepts (``evolve.latency``), besides a JSON path and ``module:factory``.
STAGE2_LATENCY = ('device', 'flops')


def stage2_latency(config: PipelineConfig, arch: str, batch: int, directory: Path) -> tuple[str, dict[str, Any]]:
    """The latency model of stage 2 (the tuner's budget check and the trials), on the pipeline's device.

    ``evolve.latency``:

    * ``device`` (the default): every candidate is exported and measured on the pipeline's
      device (``local``, ``ssh://``, a pool), the same quantity as the LUT calibration and the
      final measurement; measurements are cached in ``latency_cache.jsonl`` of the stage's
      folder, so an interrupted stage resumes without measuring again.
    * ``flops``: the line ``intercept_ms + ms_per_mmac * MMACs``, fitted on the narrowest,
      middle and widest widths *measured on the pipeline's device* (saved as
      ``latency_model.json``); with ``latency_args: {intercept_ms, ms_per_mmac}`` the given line.
    * a saved model's JSON path or ``module:factory``, as given.

    A remote device never gets a model measured on this host: ``measured`` (which times on
    this host) is refused for a device other than ``local``.

    Returns the ``latency`` spec and ``latency_args`` of :class:`~nni_lightnas.evolve.EvolveConfig`.

    Examples
    --------
    >>> config = PipelineConfig.from_dict({'preset': 'tiny', 'device': 'local'})
    >>> spec, args = stage2_latency(config, 'MBK3E3-skip-MBK5E6', 8, Path('/tmp/evolve'))
    >>> spec, args['device'], args['batch_size']
    ('nni_lightnas.latency.channel:measured_channel_latency', 'local', 8)
    """
    settings = dict(config.evolve)
    kind = str(settings.get('latency') or 'device')
    user_args = dict(settings.get('latency_args') or {})
    measuring = {**_device_options(config), 'device': config.device, 'batch_size': batch,
                 'cache_path': str(directory / 'latency_cache.jsonl')}
    if kind == 'measured' and config.device != 'local':
        raise PipelineConfigError(f"evolve.latency: 'measured' times candidates on this host, but the pipeline's "
                                  f"device is {config.device!r}; accepted: {', '.join(STAGE2_LATENCY)} (both measure "
                                  f"on that device), a saved model's JSON path or module:factory")
    if kind == 'device':
        return 'nni_lightnas.latency.channel:measured_channel_latency', {**measuring, **user_args}
    if kind == 'flops' and 'ms_per_mmac' not in user_args:
        from .latency.channel import FlopsChannelLatency
        from .latency.channel import measured_channel_latency
        measured = measured_channel_latency(arch=arch, preset=config.preset, **measuring)
        line = FlopsChannelLatency.calibrate(arch, config.preset, device=measured, batch_size=batch)
        _logger.info('stage-2 FLOPs line calibrated on %s: %s', config.device, line)
        return str(line.save(directory / 'latency_model.json')), {}
    if kind == 'flops':
        return 'flops', {'batch_size': batch, **user_args}
    return kind, {'batch_size': batch, **user_args}


def _profile(config: PipelineConfig, directory: Path) -> dict[str, Any]:
    """The LUT, then (``calibrate: N``, N > 0) the whole-network linear calibration from N measured nets."""
    import pandas as pd

    from .latency.calibration import calibrate_on_device, prediction_metrics
    from .latency.lut_build import build_lut
    device = _make_device(config)
    lut = build_lut(config.preset, device, path=directory / 'lut.csv', batch=config.profile.get('batch'))
    outputs: dict[str, Any] = {'lut': str(directory / 'lut.csv'), 'plain_lut': str(directory / 'lut.csv')}
    num_archs = int(config.profile.get('calibrate', 0) or 0)
    if num_archs:
        calibrated, measured = calibrate_on_device(lut, config.preset, device, num_archs=num_archs,
                                                   batch=int(lut.metadata['batch']), seed=config.seed)
        calibrated.save(directory / 'lut_calibrated.csv')
        table = pd.DataFrame([{'arch': row['arch'], 'lut_ms': row['lut_ms'],
                               'calibrated_ms': calibrated.predict(row['arch']), 'measured_ms': row['median_ms'],
                               'measured_p25_ms': row['p25_ms'], 'measured_p75_ms': row['p75_ms']}
                              for row in measured])
        with atomic_write(directory / 'calibration.csv', newline='') as file:
            table.to_csv(file, index=False)
        outputs.update(lut=str(directory / 'lut_calibrated.csv'), calibration_csv=str(directory / 'calibration.csv'),
                       calibration={**calibrated.metadata['calibration'],
                                    'plain': prediction_metrics(table['lut_ms'], table['measured_ms']),
                                    'calibrated': prediction_metrics(table['calibrated_ms'], table['measured_ms'])})
        lut = calibrated
    outputs['range_ms'] = list(lut.latency_range())
    return outputs


_CHECKPOINTS = 'checkpoints'


def _latest_checkpoint(directory: Path, inputs_hash: str) -> tuple[Path, int] | None:
    """The newest per-epoch checkpoint of an interrupted stage with these inputs, and its epoch.

    Checkpoints of other inputs (a changed setting) are removed, and the folder is stamped
    with ``inputs_hash`` for the run that follows.
    """
    stamp = directory / 'inputs_hash'
    found = []
    if stamp.is_file() and stamp.read_text().strip() == inputs_hash:
        for path in directory.glob('epoch=*.ckpt'):
            try:
                found.append((int(path.stem.split('=', 1)[1]), path))
            except ValueError:
                continue
    if found:
        epoch, path = max(found)
        return path, epoch
    shutil.rmtree(directory, ignore_errors=True)
    atomic_write_text(stamp, inputs_hash)
    return None


def _epoch_checkpointing(directory: Path, *, rng: bool = False) -> list[Any]:
    """Lightning callbacks: the newest epoch's checkpoint in ``directory``, written atomically.

    ``rng`` also saves and restores torch's global random state, so a resumed training draws
    the same batches and dropout masks as an uninterrupted one (the LightNAS strategy keeps
    its own).
    """
    import torch
    from pytorch_lightning.callbacks import Callback, ModelCheckpoint

    class EpochCheckpoint(ModelCheckpoint):
        """The newest epoch only, written atomically; its own state key, beside run_search's warm-up checkpoint."""

        @property
        def state_key(self) -> str:
            return 'nni_lightnas.pipeline.EpochCheckpoint'

        def _save_checkpoint(self, trainer, filepath: str) -> None:
            partial = f'{filepath}.partial'  # a kill while writing leaves no torn epoch=N.ckpt
            super()._save_checkpoint(trainer, partial)
            os.replace(partial, filepath)
            self._last_checkpoint_saved = filepath

    class RandomState(Callback):
        """torch's global random state, saved with each checkpoint and restored on resume."""

        def state_dict(self) -> dict[str, Any]:
            return {'torch': torch.get_rng_state()}

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            torch.set_rng_state(state_dict['torch'])

    callbacks: list[Any] = [EpochCheckpoint(dirpath=str(directory), filename='{epoch}', save_top_k=1, monitor=None,
                                            every_n_epochs=1, save_on_train_epoch_end=True)]
    return callbacks + [RandomState()] if rng else callbacks


def _search(config: PipelineConfig, target_ms: float, lut, directory: Path,
            shared_warmup: Path | None = None, inputs_hash: str = '') -> dict[str, Any]:
    """One LightNAS search; with ``shared_warmup``, start from that warm-up checkpoint or write it.

    The search checkpoints every epoch into ``checkpoints/`` (the newest only, stamped with the
    stage's inputs hash); a rerun after a kill continues from the newest one, and the result is
    the one an uninterrupted search gives (the strategy restores alpha, lambda, optimizers and
    the data order). The folder is removed when the search finishes.
    """
    from .search import SearchConfig, run_search
    settings = {key: value for key, value in config.search.items()}
    checkpoints = directory / _CHECKPOINTS
    resume = _latest_checkpoint(checkpoints, inputs_hash)
    reuse = shared_warmup is not None and shared_warmup.is_file()
    warmup_from, save_warmup_to = (shared_warmup, None) if reuse else (None, shared_warmup)
    if resume is not None:
        path, epoch = resume
        _logger.info('resuming the search from %s (epoch %d finished)', path, epoch + 1)
        settings['strategy_options'] = {**settings.get('strategy_options', {}), 'resume_from': str(path)}
        warmup_epochs = int(settings.get('warmup_epochs', SearchConfig.warmup_epochs))
        warmup_from = None  # the checkpoint already holds the warm-up (or this search's own)
        if save_warmup_to is not None and epoch == warmup_epochs - 1:
            shutil.copyfile(path, save_warmup_to.with_suffix('.tmp'))
            save_warmup_to.with_suffix('.tmp').replace(save_warmup_to)
        if save_warmup_to is not None and epoch >= warmup_epochs - 1:
            save_warmup_to = None  # past the warm-up: the other targets warm up themselves
    search_config = SearchConfig(preset=config.preset, target_ms=target_ms, seed=config.seed,
                                 data_dir=config.data_dir, target_energy_mj=config.target_energy_mj, **settings)
    summary = run_search(search_config, lut, directory, warmup_from=warmup_from, save_warmup_to=save_warmup_to,
                         enable_checkpointing=True, callbacks=_epoch_checkpointing(checkpoints),
                         enable_progress_bar=True)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return {'arch': summary['arch'], 'predicted_ms': summary['predicted_ms'], 'seconds': summary['seconds'],
            'warmup_reused': summary['warmup_reused'], 'argmax_arch': summary['argmax_arch'],
            'argmax_ms': summary['argmax_ms'], 'exported_ms': summary['exported_ms'], 'landed': summary['landed'],
            'alpha_entropy_fraction': summary['alpha_entropy_fraction'],
            **{key: summary[key] for key in ('target_energy_mj', 'predicted_energy_mj', 'energy_relative_error')
               if summary.get(key) is not None},
            'resumed_after_epochs': resume[1] + 1 if resume is not None else 0}


def evolve_settings(config: PipelineConfig) -> dict[str, Any]:
    """The evolve stage's :class:`~nni_lightnas.evolve.EvolveConfig` settings (its latency options apart).

    The budget band is no wider than the closed loop's ``measure.landing_tolerance``: a band
    reaching 3 % under the target lets stage 2 ship a net that the loop then counts as a miss
    (measured: -2.1 to -2.5 % in all three rounds of one main-job target), and no re-landing of
    stage 1 can change which width stage 2 prefers inside the band.

    >>> config = PipelineConfig.from_dict({'preset': 'tiny', 'target_quantiles': [0.5]})
    >>> evolve_settings(config)['fill_tolerance']
    0.02
    """
    settings = dict(config.evolve)
    settings.pop('latency_args', None)
    settings.pop('latency', None)
    fill = settings.get('fill_tolerance')
    tolerance = float(config.measure.get('landing_tolerance', DEFAULT_LANDING_TOLERANCE))
    settings['fill_tolerance'] = min(DEFAULT_FILL_TOLERANCE if fill is None else float(fill), tolerance)
    return settings


def _evolve(config: PipelineConfig, target_ms: float, arch: str, batch: int, directory: Path) -> dict[str, Any]:
    """Stage 2 (:func:`~nni_lightnas.evolve.run_evolution`) on the pipeline's device, with a progress bar."""
    from tqdm.auto import tqdm

    from .evolve import EvolveConfig, InfeasibleBudgetError, run_evolution
    # Stage 2 measures on the pipeline's device at the LUT's batch, so the budget means the same thing.
    latency, latency_args = stage2_latency(config, arch, batch, directory)
    settings = {key: value for key, value in evolve_settings(config).items() if value is not None}
    evolve_config = EvolveConfig(lightnet=arch, budget_ms=target_ms, preset=config.preset, seed=config.seed,
                                 latency=latency, latency_args=latency_args, data_dir=config.data_dir, **settings)
    with tqdm(total=evolve_config.max_trials, desc=f'evolve {target_ms:.4g} ms', unit='trial', leave=False) as bar:
        def advance(trial: dict[str, Any]) -> None:
            bar.update(1)
            bar.set_postfix(latency_ms=trial.get('latency_ms'), score=round(float(trial['default']), 4))
        try:
            result = run_evolution(evolve_config, directory, on_trial=advance)
        except InfeasibleBudgetError as error:
            # The device measures even the narrowest widths over the target that stage 1's latency
            # model put this net at: ship them, and let the closed loop correct the model and re-land.
            _logger.warning('evolve stage: %s; the narrowest widths go on, the closed loop corrects the latency '
                            'model', error.message('target'))
            atomic_write_json(directory / 'best.json', {'params': error.narrowest, 'latency_ms': error.fastest_ms,
                                                        'score': None, 'in_band': False, 'infeasible': True})
            return {'widths': error.narrowest, 'latency_ms': error.fastest_ms, 'score': None, 'in_band': False,
                    'latency_model': latency, 'num_trials': 0, 'infeasible': True}
    best = result.best
    return {'widths': result.widths, 'latency_ms': best.get('latency_ms'), 'score': best.get('score'),
            'in_band': best.get('in_band'), 'latency_model': latency, 'num_trials': len(result.trials)}


def _reland(config: PipelineConfig, target_ms: float, lut, search_dir: Path, rounds: list[LandingRound],
            directory: Path) -> dict[str, Any]:
    """Correct the LUT with every measured round and re-land stage 1's export (``alpha.json``) under it.

    Writes ``lut_corrected.csv`` and ``land.json`` (the architecture, its predicted latency, the
    correction factor and the points it was fitted on).
    """
    from .strategies.landing import is_within, land_from_probabilities

    from .latency.calibration import correct_on_landings
    from .search_spaces import encode_arch
    corrected = correct_on_landings(lut, [r.arch for r in rounds], [r.measured_ms for r in rounds])
    corrected.save(directory / 'lut_corrected.csv')
    probabilities = json.loads((search_dir / 'alpha.json').read_text())
    tolerance = config.search.get('landing_tolerance')
    tolerance = float(0.01 if tolerance is None else tolerance)
    sample = land_from_probabilities(corrected, probabilities, target_ms=target_ms, tolerance=tolerance)
    arch = encode_arch([sample[label] for label in corrected.labels])
    predicted_ms = corrected.predict(arch)
    landed = {'arch': arch, 'predicted_ms': predicted_ms, 'within_tolerance': is_within(predicted_ms, target_ms,
                                                                                      tolerance),
              'landing_factor': corrected.metadata['calibration']['landing_factor'],
              'points': [{'arch': r.arch, 'measured_ms': r.measured_ms} for r in rounds],
              'lut': str(directory / 'lut_corrected.csv')}
    atomic_write_json(directory / 'land.json', landed, default=float)
    _logger.info('re-landed on %s: %.4f ms under the corrected model (factor %.4f)', arch, predicted_ms,
                 landed['landing_factor'])
    return landed


def _build_net(config: PipelineConfig, arch: str, widths: dict[str, Any]):
    from .search_spaces import LightNet
    from .search_spaces.channel_space import widths_from_sample
    mid_chs, stage_out_chs = widths_from_sample(arch, config.preset, widths)
    return LightNet(arch, config.preset, mid_chs=mid_chs, stage_out_chs=stage_out_chs)


def _train(config: PipelineConfig, arch: str, widths: dict[str, Any], directory: Path,
           inputs_hash: str = '') -> dict[str, Any]:
    """Train the final net; like the search, it checkpoints every epoch and a rerun continues from the last."""
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader

    from .data import load_for_preset
    from .search import CosineSGDClassificationModule
    settings = config.train
    torch.manual_seed(config.seed)
    net = _build_net(config, arch, widths)
    module = CosineSGDClassificationModule(learning_rate=float(settings.get('learning_rate', 0.05)),
                                           num_classes=net.config.num_classes)
    module.set_model(net)
    train_data = load_for_preset(config.preset, 'train', config.data_dir, limit=settings.get('train_limit'))
    test_data = load_for_preset(config.preset, 'test', config.data_dir, limit=settings.get('test_limit'))
    batch_size = int(settings.get('batch_size', 128))
    checkpoints = directory / _CHECKPOINTS
    resume = _latest_checkpoint(checkpoints, inputs_hash)
    trainer = pl.Trainer(max_epochs=int(settings.get('epochs', 3)), accelerator=settings.get('accelerator', 'cpu'),
                         devices=1, logger=False, callbacks=_epoch_checkpointing(checkpoints, rng=True),
                         enable_checkpointing=True, enable_model_summary=False, enable_progress_bar=True,
                         num_sanity_val_steps=0)
    if resume is not None:
        _logger.info('resuming the training from %s (epoch %d finished)', resume[0], resume[1] + 1)
    # The module's hyper-parameters name its loss and optimizer classes: allowed, nothing else is.
    with torch.serialization.safe_globals([torch.nn.CrossEntropyLoss, torch.optim.SGD]):
        trainer.fit(module, DataLoader(train_data, batch_size=batch_size, shuffle=True, drop_last=True),
                    ckpt_path=str(resume[0]) if resume is not None else None, weights_only=True)
    metrics = trainer.validate(module, DataLoader(test_data, batch_size=512), verbose=False)[0]
    weights = directory / 'model.pt'
    with atomic_write(weights, 'wb') as file:
        torch.save(net.state_dict(), file)
    params_m = sum(p.numel() for p in net.parameters()) / 1e6
    from .flops import count_macs_params
    flops_m = count_macs_params(net, (1, *net.input_shape)).flops_m
    result = {'weights': str(weights), 'test_acc': float(metrics['val_acc']), 'test_loss': float(metrics['val_loss']),
              'params_m': params_m, 'flops_m': flops_m,
              'resumed_after_epochs': resume[1] + 1 if resume is not None else 0}
    atomic_write_json(directory / 'metrics.json', result)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return result


def _export_and_measure(config: PipelineConfig, arch: str, widths: dict[str, Any], weights: Path, lut,
                        directory: Path) -> dict[str, Any]:
    import torch

    from .export import check_onnx_parity, export_onnx
    net = _build_net(config, arch, widths)
    net.load_state_dict(torch.load(weights, map_location='cpu', weights_only=True))
    batch = int(lut.metadata.get('batch', 32))
    input_shape = (batch, *net.input_shape)
    onnx_path = export_onnx(net, directory / 'model.onnx', input_shape)
    check_onnx_parity(net, onnx_path, input_shape)
    device = _make_device(config)
    device.num_runs = int(config.measure.get('runs', 200))
    rounds = [device.measure(onnx_path) for _ in range(int(config.measure.get('rounds', 3)))]
    # The round with the median median: its quartiles belong to the reported median.
    middle = sorted(rounds, key=lambda result: result.median_ms)[len(rounds) // 2]
    measured = {'onnx': str(onnx_path), 'batch': batch, 'median_ms': middle.median_ms,
                'p25_ms': middle.p25_ms, 'p75_ms': middle.p75_ms,
                'round_medians_ms': [result.median_ms for result in rounds],
                'device': middle.device, 'runtime': middle.runtime, 'provider': middle.provider,
                'threads': middle.threads, 'facts': middle.facts}
    atomic_write_json(directory / 'measure.json', measured, default=str)
    return measured


def _report(config: PipelineConfig, rows: list[dict[str, Any]], lut, directory: Path) -> dict[str, Any]:
    from .report import write_report
    path = write_report(Path(config.run_dir), rows, lut, directory)
    return {'html': str(path)}

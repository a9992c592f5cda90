"""Stage 1 as one call: data, evaluator, LightNAS strategy, NNI experiment, result files.

:func:`run_search` is what ``nni-lightnas search`` and the pipeline call. It runs a real
``NasExperiment`` with the :class:`~nni_lightnas.strategies.LightNAS` strategy and writes,
into ``output_dir``:

* ``arch.json``: the NNI sample dict (``arch``), its ``arch_string`` (``label=op,...``) and, for our
  presets, the LightNet string;
* ``history.csv``: one row per epoch (lambda, argmax and expected latency, temperature, ...);
* ``summary.json``: ``target_ms``, ``arch`` and ``exported_ms`` (the export: a LightNet string for our
  presets, the ``arch_string`` for any other space), ``sample`` (the export as ``{label: op}``),
  ``argmax_arch`` and ``argmax_ms`` (the plain argmax of alpha), ``landed`` (whether the landing step
  moved the export), ``within_tolerance`` and ``nearest_feasible`` (no architecture lay within
  ``landing_tolerance`` of the target, so the nearest one was exported),
  the final alpha entropy as a fraction of its maximum, ``epochs``, ``seconds`` and more; with
  ``target_energy_mj``, also ``predicted_energy_mj``, ``energy_relative_error``, ``argmax_energy_mj``,
  ``energy_lambda`` and ``energy_range_mj`` (``target_ms`` is ``None`` in an energy-only search);
* ``alpha.json``: softmax(alpha) per layer.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nni
import torch
from nni.nas.evaluator.pytorch import ClassificationModule, Lightning, Trainer
from torch import optim
from torch.utils.data import DataLoader

from .strategies.defaults import (DEFAULT_LANDING_TOLERANCE, LR_ANNEAL_THRESHOLD, PAPER_ARC_LEARNING_RATE,
                                  PAPER_LAMBDA_LR)

__all__ = ['SearchConfig', 'CosineSGDClassificationModule', 'make_search_evaluator', 'run_search',
           'energy_model_of']

_logger = logging.getLogger(__name__)


@dataclass
class SearchConfig:
    """Settings of one LightNAS search on Fashion-MNIST (or another preset's data).

    Attributes
    ----------
    preset
        Search space preset (its data too). Not used when :func:`run_search` is given another NNI
        model space with its own ``dataset`` (nor are ``train_limit`` and ``data_dir``; nor these two
        when a preset is searched on a ``dataset`` of its own).
    target_ms
        Latency target; ``None`` for an energy-only search (``target_energy_mj`` then required).
    target_energy_mj
        Energy target per inference (mJ), alone or beside ``target_ms``: the latency model must
        be a LUT with an ``energy_mj`` column (:meth:`~nni_lightnas.latency.lut.LatencyLUT.energy_view`
        becomes the strategy's energy model). With both, the export lands on the latency target
        and reports its energy.
    epochs, warmup_epochs
        Total epochs and fair warm-up epochs (the paper: 90 and 10).
    batch_size
        Batch of both splits.
    train_limit
        Use only the first ``train_limit`` training examples (``None``: all 60,000).
    arch_fraction
        Share of the training examples held out for the architecture step.
    learning_rate, weight_decay
        SGD (momentum 0.9, cosine schedule) of the supernet weights.
    arc_learning_rate, lambda_lr, lr_anneal_threshold, landing_tolerance
        See :class:`~nni_lightnas.strategies.LightNAS`: the paper's alpha learning rate and lambda
        step, which the strategy's budget schedule scales to this search's planned alpha steps.
    seed
        Seeds data split, initialisation and Gumbel sampling.
    data_dir
        Fashion-MNIST directory (default: the Debian package's).
    strategy_options
        Further keyword arguments of the strategy.
    accelerator
        Lightning accelerator of the supernet training (``'cpu'``, ``'gpu'``, ``'auto'``).
    """

    preset: str = 'fashion_mnist'
    target_ms: float | None = 1.0
    epochs: int = 10
    warmup_epochs: int = 2
    batch_size: int = 128
    train_limit: int | None = 10_000
    arch_fraction: float = 0.5
    learning_rate: float = 0.05
    weight_decay: float = 4e-5
    arc_learning_rate: float = PAPER_ARC_LEARNING_RATE
    lambda_lr: float = PAPER_LAMBDA_LR
    lr_anneal_threshold: float = LR_ANNEAL_THRESHOLD
    landing_tolerance: float | None = DEFAULT_LANDING_TOLERANCE
    seed: int = 0
    data_dir: str | None = None
    strategy_options: dict[str, Any] = field(default_factory=dict)
    accelerator: str = 'cpu'
    target_energy_mj: float | None = None

    def __post_init__(self) -> None:
        if self.target_ms is None and self.target_energy_mj is None:
            raise ValueError('a search needs a budget: target_ms, target_energy_mj or both; got neither')
        for name in ('target_ms', 'target_energy_mj'):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value <= 0):
                raise ValueError(f'{name} must be a positive number of {name.rsplit("_", 1)[1]}, got {name}={value!r}')
        if self.epochs < 1:
            raise ValueError(f'epochs must be >= 1, got epochs={self.epochs}')
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ValueError(f'warmup_epochs must be in [0, epochs), got warmup_epochs={self.warmup_epochs}, '
                             f'epochs={self.epochs}')
        if self.batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got batch_size={self.batch_size}')


@nni.trace
class CosineSGDClassificationModule(ClassificationModule):
    """NNI's classification module with SGD (momentum 0.9, Nesterov) and a cosine schedule."""

    def __init__(self, learning_rate: float = 0.05, weight_decay: float = 4e-5, num_classes: int = 10):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, optimizer=optim.SGD,
                         num_classes=num_classes, export_onnx=False)

    def configure_optimizers(self):
        optimizer = optim.SGD(self.parameters(), lr=self.hparams.learning_rate, momentum=0.9, nesterov=True,
                              weight_decay=self.hparams.weight_decay, foreach=False)
        max_epochs = max(int(self.trainer.max_epochs or 1), 1)
        return [optimizer], [optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs)]


def make_search_evaluator(train_loader: DataLoader, arch_loader: DataLoader, *, max_epochs: int,
                          learning_rate: float = 0.05, weight_decay: float = 4e-5, num_classes: int = 10,
                          **trainer_kwargs) -> Lightning:
    """An NNI ``Lightning`` evaluator for a one-shot search on CPU (no checkpoints, no bar by default)."""
    defaults = dict(max_epochs=max_epochs, accelerator='cpu', devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    defaults.update(trainer_kwargs)
    module = CosineSGDClassificationModule(learning_rate=learning_rate, weight_decay=weight_decay,
                                           num_classes=num_classes)
    return Lightning(module, Trainer(**defaults), train_dataloaders=train_loader, val_dataloaders=arch_loader)


def _data_loaders(config: SearchConfig, space_config: Any = None,
                  dataset: Any = None) -> tuple[DataLoader, DataLoader]:
    """Loaders of the weight and architecture splits: the preset's data, or ``dataset`` shaped for it."""
    from .data import load_for_preset, split_train_arch
    if dataset is None:
        dataset = load_for_preset(space_config or config.preset, 'train', config.data_dir, limit=config.train_limit)
    else:
        _check_preset_dataset(dataset, space_config)
    weights_part, arch_part = split_train_arch(dataset, config.arch_fraction, seed=config.seed)
    # Shuffling draws from torch's global generator (seeded by run_search), which a LightNAS
    # checkpoint saves and restores: a resumed search sees the same batches.
    train_loader = DataLoader(weights_part, batch_size=config.batch_size, shuffle=True, drop_last=True)
    arch_loader = DataLoader(arch_part, batch_size=config.batch_size, shuffle=True, drop_last=True)
    if len(train_loader) == 0 or len(arch_loader) == 0:
        raise ValueError(f'batch_size={config.batch_size} is larger than a split of the {len(dataset)} examples '
                         f'(arch_fraction={config.arch_fraction}); lower it or give more data')
    return train_loader, arch_loader


def _check_preset_dataset(dataset: Any, space_config: Any) -> None:
    """Refuse a dataset whose first example does not fit the preset (input shape, label range)."""
    image, label = dataset[0]
    expected = (space_config.in_chans, space_config.input_size, space_config.input_size)
    if tuple(image.shape) != expected:
        raise ValueError(f'dataset= examples are {tuple(image.shape)}, preset {space_config.name!r} takes '
                         f'{expected} (channels, height, width)')
    if not 0 <= int(label) < space_config.num_classes:
        raise ValueError(f'dataset= label {int(label)} is outside the {space_config.num_classes} classes of preset '
                         f'{space_config.name!r}')


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar: numpy numbers as Python numbers, NaN as ``None``."""
    if value is None:
        return None
    value = value.item() if hasattr(value, 'item') else value
    return None if isinstance(value, float) and value != value else value


def _any_space_data(config: SearchConfig, space: Any, dataset: Any,
                    latency_model: Any) -> tuple[DataLoader, DataLoader, int]:
    """Loaders of ``dataset`` for a model space other than ours, and its number of classes (a dry run)."""
    from .data import split_train_arch
    from .search_spaces.nni_space import space_candidates
    space_candidates(space)  # an unsupported mutable is named before anything else
    if dataset is None:
        raise ValueError(f'searching a {type(space).__name__} (not one of our presets) needs dataset=, a torch '
                         f'Dataset of (input, label) pairs to train the supernet on')
    from .latency.lut import LatencyLUT
    if isinstance(latency_model, LatencyLUT):
        latency_model.check_compatible(space)
    weights_part, arch_part = split_train_arch(dataset, config.arch_fraction, seed=config.seed)
    train_loader = DataLoader(weights_part, batch_size=config.batch_size, shuffle=True, drop_last=True)
    arch_loader = DataLoader(arch_part, batch_size=config.batch_size, shuffle=True, drop_last=True)
    if len(train_loader) == 0 or len(arch_loader) == 0:
        raise ValueError(f'batch_size={config.batch_size} is larger than a split of the {len(dataset)} examples '
                         f'(arch_fraction={config.arch_fraction}); lower it or give more data')
    example = torch.stack([weights_part[index][0] for index in range(min(2, len(weights_part)))])
    was_training = space.training
    space.eval()
    with torch.no_grad():
        output = space(example)
    space.train(was_training)
    return train_loader, arch_loader, int(output.shape[-1])


def energy_model_of(latency_model: Any, target_energy_mj: float) -> Any:
    """The energy model an energy target needs: ``latency_model.energy_view()`` of a LUT with energy.

    Raises
    ------
    ValueError
        The latency model has no energy column (a LUT profiled without energy, or a predictor).

    Examples
    --------
    >>> from nni_lightnas.latency.lut import LatencyLUT
    >>> import pandas as pd
    >>> lut = LatencyLUT(pd.DataFrame({'kind': ['fixed'], 'layer': ['stem'], 'op': ['stem'], 'latency_ms': [1.0],
    ...                                'energy_mj': [3.0]}), {})
    >>> energy_model_of(lut, 5.0).latency_range()
    (3.0, 3.0)
    """
    how = ('profile the LUT on a board that measures energy (nni-lightnas profile --device ssh://... on a Jetson '
           'with power rails; Python: SSHDevice(energy=True))')
    if not hasattr(latency_model, 'energy_view'):
        raise ValueError(f'target_energy_mj={target_energy_mj} needs a latency model with an energy_mj column; '
                         f'{type(latency_model).__name__} has none (only a LUT can carry energy): {how}')
    try:
        return latency_model.energy_view()
    except ValueError as error:
        raise ValueError(f'target_energy_mj={target_energy_mj} needs a latency model with an energy_mj column: '
                         f'{error}') from None


def run_search(config: SearchConfig, latency_model, output_dir: str | os.PathLike | None = None, *,
               space: Any = None, dataset: Any = None, save_warmup_to: str | os.PathLike | None = None,
               warmup_from: str | os.PathLike | None = None, **trainer_kwargs) -> dict[str, Any]:
    """Run one LightNAS search; returns the summary (also written to ``output_dir``).

    ``space`` is the model space to search (default: ``LightNASSpace(config.preset)``), e.g. a
    reduced space from BBSSP profiling; its input shape picks the data. Any other NNI model
    space with ``LayerChoice`` layers works too, with its own training ``dataset`` (a torch
    ``Dataset`` of ``(input, label)`` pairs, split by ``config.arch_fraction``); the number of
    classes is read from the space's output on one batch, and ``config.preset`` is not used.
    Our presets take ``dataset`` too (instead of their own data, e.g. a subset of the classes):
    its examples must have the preset's input shape and labels below its number of classes;
    ``train_limit`` and ``data_dir`` are then not used.

    The fair warm-up does not depend on the target (lambda is 0 and alpha does not move), so
    several targets can share one warmed-up supernet: ``save_warmup_to`` writes a checkpoint
    at the end of the warm-up, and ``warmup_from`` starts another search (same data, seed and
    schedule, any target) from it, skipping its warm-up. The result equals a search run from
    scratch. ``summary['warmup_reused']`` says which happened.

    Examples
    --------
    >>> from nni_lightnas.latency.lut import LatencyLUT  # doctest: +SKIP
    >>> lut = LatencyLUT.load('runs/lut.csv', space='fashion_mnist')  # doctest: +SKIP
    >>> run_search(SearchConfig(target_ms=0.9, epochs=6), lut, 'runs/search')['predicted_ms']  # doctest: +SKIP
    0.9012

    Any NNI model space, with its own data:

    >>> lut = build_lut(MySpace(), LocalDevice(), example_input=torch.randn(8, 40, 49))  # doctest: +SKIP
    >>> run_search(SearchConfig(target_ms=0.05), lut, space=MySpace(), dataset=train_set)['arch']  # doctest: +SKIP
    'block0=conv5,block1=skip'
    """
    from nni.nas.experiment import NasExperiment

    from .search_spaces import LightNASSpace
    from .search_spaces.nni_space import arch_string
    from .strategies import LightNAS

    torch.manual_seed(config.seed)
    options = dict(config.strategy_options)
    if warmup_from is not None:
        if config.warmup_epochs < 1:
            raise ValueError(f'warmup_from={str(warmup_from)!r} needs warmup_epochs >= 1, got {config.warmup_epochs}')
        options['resume_from'] = str(warmup_from)
    energy = {} if config.target_energy_mj is None else {
        'target_energy_mj': config.target_energy_mj, 'energy_model': energy_model_of(latency_model, config.target_energy_mj)}
    strategy = LightNAS(target_latency_ms=config.target_ms, latency_model=latency_model, **energy,
                        warmup_epochs=config.warmup_epochs, arc_learning_rate=config.arc_learning_rate,
                        lambda_lr=config.lambda_lr, lr_anneal_threshold=config.lr_anneal_threshold,
                        landing_tolerance=config.landing_tolerance, **options)
    checkpoint_dir = None
    if save_warmup_to is not None and config.warmup_epochs >= 1 and warmup_from is None:
        import tempfile

        from pytorch_lightning.callbacks import ModelCheckpoint
        Path(save_warmup_to).parent.mkdir(parents=True, exist_ok=True)
        checkpoint_dir = Path(tempfile.mkdtemp(prefix='warmup-', dir=Path(save_warmup_to).parent))
        # Saved after the module's own epoch-end hook, so the checkpoint holds the warm-up history.
        saver = ModelCheckpoint(dirpath=str(checkpoint_dir), filename='{epoch}', save_top_k=-1,
                                every_n_epochs=config.warmup_epochs, save_on_train_epoch_end=True)
        trainer_kwargs = {**trainer_kwargs, 'enable_checkpointing': True,
                          'callbacks': [*trainer_kwargs.get('callbacks', []), saver]}
    space = LightNASSpace(config.preset) if space is None else space
    ours = isinstance(space, LightNASSpace)
    if ours:
        train_loader, arch_loader = _data_loaders(config, space.config, dataset)
        num_classes = space.config.num_classes
    else:
        train_loader, arch_loader, num_classes = _any_space_data(config, space, dataset, latency_model)
    evaluator = make_search_evaluator(train_loader, arch_loader, max_epochs=config.epochs,
                                      learning_rate=config.learning_rate, weight_decay=config.weight_decay,
                                      num_classes=num_classes,
                                      **{'accelerator': config.accelerator, **trainer_kwargs})
    experiment = NasExperiment(space, evaluator, strategy)
    start = time.perf_counter()
    experiment.run()
    seconds = time.perf_counter() - start
    if checkpoint_dir is not None:
        import shutil
        warmup_checkpoint = checkpoint_dir / f'epoch={config.warmup_epochs - 1}.ckpt'
        shutil.move(str(warmup_checkpoint), str(save_warmup_to))
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    result = strategy.export_result()
    history = strategy.history()
    last = history.iloc[-1] if len(history) else {}
    schedule = strategy.oneshot_module.schedule
    summary = {'target_ms': config.target_ms, 'predicted_ms': result['predicted_ms'],
               'arch': result['lightnet'] if ours else result['arch_string'], 'sample': result['arch'],
               'arch_string': result['arch_string'], 'exported_ms': result['predicted_ms'],
               'within_tolerance': result.get('within_tolerance'),
               'nearest_feasible': result.get('nearest_feasible', False),
               'relative_error': result['relative_error'], 'lambda': result['lambda'], 'epochs': config.epochs,
               'argmax_arch': result['argmax_lightnet'] if ours else
               arch_string(strategy.oneshot_module.argmax_arch(), strategy.oneshot_module.labels),
               'argmax_ms': result['argmax_ms'],
               'argmax_relative_error': result['argmax_relative_error'], 'landed': result['landed'],
               'seconds': seconds, 'preset': config.preset if ours else None,
               'space': space.config.name if ours else f'{type(space).__module__}:{type(space).__qualname__}',
               'latency_range_ms': None if strategy.latency_range_ms is None else list(strategy.latency_range_ms),
               'final_val_acc': history['val_acc'].iloc[-1] if 'val_acc' in history and len(history) else None,
               'warmup_reused': warmup_from is not None,
               'alpha_entropy_fraction': _plain(last.get('alpha_entropy_fraction')),
               'argmax_changes_last_epoch': _plain(last.get('argmax_changes')),
               'argmax_supernet_acc': _plain(last.get('argmax_supernet_acc')),
               'planned_arch_steps': schedule.planned_steps if schedule else None,
               'scheduled_arc_learning_rate': schedule.arc_learning_rate if schedule else config.arc_learning_rate,
               'scheduled_lambda_lr': schedule.lambda_lr if schedule else config.lambda_lr,
               'export_rule': result['export_rule'],
               **{key: result[key] for key in ('ranked_candidates', 'ranked_supernet_acc', 'landed_lightnet',
                                               'landed_ms', 'landed_supernet_acc') if key in result},
               **{key: result[key] for key in ('target_energy_mj', 'predicted_energy_mj', 'energy_relative_error',
                                               'argmax_energy_mj', 'energy_lambda') if key in result},
               'energy_range_mj': None if strategy.energy_range_mj is None else list(strategy.energy_range_mj),
               'config': asdict(config)}
    if output_dir is not None:
        output = Path(output_dir)
        output.mkdir(parents=True, exist_ok=True)
        (output / 'arch.json').write_text(json.dumps({'arch': result['arch'], 'arch_string': result['arch_string'],
                                                      **({'lightnet': result['lightnet']} if ours else {})}, indent=2))
        history.to_csv(output / 'history.csv', index=False)
        (output / 'alpha.json').write_text(json.dumps(strategy.probabilities(), indent=2))
        (output / 'summary.json').write_text(json.dumps(summary, indent=2, default=float))
        _logger.info('search results written to %s', output)
    summary['history'] = history
    summary['strategy'] = strategy
    return summary

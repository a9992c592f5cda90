"""LightNAS: a one-shot NNI strategy whose latency multiplier is learned ("you only search once").

The strategy trains a single-path supernet (:class:`~.single_path.SinglePathMixedLayer`)
and architecture logits alpha with the loss

    CE(val batch) + lambda * (LAT(alpha) / T - 1)

where ``LAT(alpha)`` is the expected latency of softmax(alpha) under a latency model
(a LUT, a corrected LUT or a predictor; see
:class:`~nni_lightnas.latency.model.LatencyModel`) and lambda is learned by gradient ascent
(:class:`~.latency_multiplier.LatencyMultiplier`), so one search lands on the target T.

Schedule (Luo et al., DAC 2022; every constant is a keyword argument):

* warm-up epochs: weights only, every candidate of every layer trained once per batch,
  drawn in order without replacement (fair), gradients accumulated, one step;
* then alternating steps: alpha on the architecture split (Adam, betas (0.5, beta2), weight decay
  1e-3), weights on the training split (one path sampled from softmax(alpha));
* the alpha learning rate, the lambda step, beta2 and the temperature are sized by the search's
  planned number of alpha steps (:class:`~.schedule.BudgetSchedule`): the paper's values
  (1e-3, 5e-4, 0.999, 5 * exp(-0.1 * epoch)) at its 400,000 steps, stretched so that alpha
  settles by the end of any budget; ``schedule='fixed'`` uses the constants as given;
* the cross-entropy reaches alpha through a score-function estimate over a few architectures
  run on the same batch (``arch_gradient='reinforce'``), or the paper's straight-through
  Gumbel gate (``'gumbel'``), which batch norm all but silences in these blocks;
* in the last quarter of the steps, once the argmax is within ``lr_anneal_threshold`` of T, the
  alpha learning rate is scaled by ``|LAT/T - 1|`` (the argmax stays there);
* export: argmax alpha per layer; if that misses the target by more than
  ``landing_tolerance``, the most probable architecture under the final alpha that is within
  it (:func:`~.landing.land_on_target`), or the nearest one when none is (``nearest_feasible`` in
  :meth:`LightNAS.export_result`, and a warning). With ``rank_candidates``, the best by supernet accuracy
  of that many at-target architectures drawn from softmax(alpha) (:mod:`~.ranking`). The argmax
  is reported beside the export.

Energy as a second budget: with ``target_energy_mj`` and an ``energy_model`` (any object with
the latency-model interface, e.g. :meth:`~nni_lightnas.latency.lut.LatencyLUT.energy_view`), a
second multiplier lambda_E adds ``lambda_E * (E(alpha) / T_E - 1)`` to the loss and is learned the
same way on the argmax's energy. Either target alone, or both.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd
import torch.nn.functional as F
from nni.mutable import Categorical
# nni.nas.strategy first: imported from inside nni.nas.oneshot, it would find that package half-initialised
# and put placeholders (ImportFailedStrategy) in place of NNI's own one-shot strategies for the whole process.
import nni.nas.strategy  # noqa: F401,I001
from nni.nas.oneshot.pytorch.base_lightning import BaseOneShotLightningModule
from nni.nas.oneshot.pytorch.strategy import DARTS, no_default_hook
from nni_lightnas.search_spaces.nni_space import arch_string, space_candidates

from .latency_multiplier import LatencyMultiplier
from .defaults import (DEFAULT_LANDING_TOLERANCE, LR_ANNEAL_THRESHOLD, PAPER_ARC_LEARNING_RATE, PAPER_ARCH_STEPS,
                       PAPER_LAMBDA_LR)
from .lightnas_module import LightNASLightningModule, _relative_error, _tolerance_keys
from .schedule import BudgetSchedule
from .single_path import SinglePathMixedLayer, SinglePathRepeat

__all__ = ['LightNAS', 'LightNASLightningModule', 'InfeasibleTargetError']

_logger = logging.getLogger(__name__)


class InfeasibleTargetError(ValueError):
    """The latency (or energy) target lies outside what the search space can reach."""


def _check_budgets(target_latency_ms: float | None, latency_model, target_energy_mj: float | None,
                   energy_model) -> None:
    """Raise ``ValueError`` unless at least one target is given, each positive and with its model."""
    if target_latency_ms is None and target_energy_mj is None:
        raise ValueError('LightNAS needs a budget: target_latency_ms (with latency_model), target_energy_mj '
                         '(with energy_model) or both; got neither')
    for name, target, model_name, model in (('target_latency_ms', target_latency_ms, 'latency_model', latency_model),
                                            ('target_energy_mj', target_energy_mj, 'energy_model', energy_model)):
        if target is None:
            continue
        if isinstance(target, bool) or not (isinstance(target, (int, float)) and target > 0):
            raise ValueError(f'{name} must be a positive number, got {target!r}')
        if model is None:
            raise ValueError(f'{name}={target!r} needs {model_name}, got {model_name}=None'
                             + ('; e.g. energy_model=lut.energy_view() of a LUT with an energy_mj column'
                                if model_name == 'energy_model' else
                                '; e.g. latency_model=build_lut(space, device, example_input=...) or '
                                'latency_model_from_path(path)'))
    for model_name, model in (('latency_model', latency_model), ('energy_model', energy_model)):
        missing = [attr for attr in ('candidates', 'expected_latency', 'latency_range', 'predict')
                   if model is not None and not hasattr(model, attr)]
        if missing:
            raise TypeError(f'{model_name} must be a LatencyModel (a LatencyLUT or a latency predictor), got '
                            f'{type(model).__name__} without {missing}'
                            + ('; load a file with latency_model_from_path(path)'
                               if isinstance(model, (str, bytes)) or hasattr(model, '__fspath__') else ''))
    if latency_model is not None and energy_model is not None and \
            dict(latency_model.candidates) != dict(energy_model.candidates):
        raise ValueError(f'latency_model and energy_model must cover the same layers and candidates; got '
                         f'{dict(latency_model.candidates)} and {dict(energy_model.candidates)}')


class LightNAS(DARTS):
    """LightNAS one-shot strategy: one search lands on the target latency, energy, or both.

    Use it like NNI's own one-shot strategies. Give ``target_latency_ms`` with a
    ``latency_model``, ``target_energy_mj`` with an ``energy_model``, or both pairs.

    Parameters
    ----------
    target_latency_ms
        The latency target T, in the latency model's unit (ms). May be omitted when
        ``target_energy_mj`` is given.
    latency_model
        A :class:`~nni_lightnas.latency.model.LatencyModel` (LUT, corrected LUT or predictor)
        whose layer labels and candidates match the model space. Optional in an energy-only
        search; when given there, the export's latency is reported.
    target_energy_mj
        Energy per inference target T_E (mJ): a second learned multiplier lambda_E adds
        ``lambda_E * (E(alpha) / T_E - 1)`` to the loss, updated on the argmax's energy like lambda.
        Alone, the landing step lands on it; with ``target_latency_ms`` too, the landing meets
        the latency target and the energy is reported (the search itself pulls toward both).
    energy_model
        Any object with the latency-model interface whose values are energies in mJ, e.g.
        ``lut.energy_view()`` of a LUT profiled with ``SSHDevice(energy=True)``
        (:meth:`~nni_lightnas.latency.lut.LatencyLUT.energy_view`). Needed by ``target_energy_mj``;
        without it the export's energy is reported.
    warmup_epochs
        Epochs of fair weight-only training before alpha moves (10 of 90 in the paper).
    arc_learning_rate
        Adam learning rate of alpha (the paper's 1e-3). With ``schedule='budget'`` this is the
        rate at ``reference_arch_steps``, scaled to the search's planned steps.
    lambda_lr
        Gradient-ascent step of lambda (the paper's 5e-4), scaled like ``arc_learning_rate``.
    schedule
        ``'budget'`` (default): the alpha learning rate, the lambda step and the temperature are
        sized by the search's planned number of alpha steps, so alpha settles by the end of any
        budget (:class:`~.schedule.BudgetSchedule`). ``'fixed'``: the constants as given, the
        temperature decayed per epoch (``temperature_decay``), annealing at any time.
    planned_arch_steps
        Alpha steps the search will make; by default search epochs x training batches per epoch.
    reference_arch_steps
        Steps at which ``arc_learning_rate`` and ``lambda_lr`` hold unchanged (the paper's
        ImageNet search, about 400,000).
    initial_temperature, final_temperature
        Gumbel-softmax temperature at the first and the last planned alpha step (``'budget'``).
    temperature_decay
        ``'fixed'`` schedule: tau = initial * exp(-decay * (epoch - warmup)) after warm-up.
    anneal_start
        ``'budget'`` schedule: share of the planned alpha steps after which annealing may start.
    min_alpha_travel
        ``'budget'`` schedule: the alpha learning rate is at least this over the planned steps.
    arch_gradient
        How the cross-entropy reaches alpha. ``'reinforce'`` (default): ``arch_samples``
        architectures drawn from softmax(alpha) are run forward on the same batch and compared
        (score function with a leave-one-out baseline). ``'gumbel'``: the paper's hard
        Gumbel-softmax gate with straight-through gradient on one path. ``'none'``: alpha is never
        stepped, so the weight steps sample paths uniformly: the supernet of random search with
        weight sharing (Li & Talwalkar, 2019), trained like the LightNAS one (bilevel only).
    arch_samples
        Architectures per alpha step for ``'reinforce'`` (>= 2).
    diagnostic_batches
        Architecture-split batches kept to score the argmax net with supernet weights each epoch.
    weight_sampling
        Path of each weight step (``sampling='gumbel'``): drawn from softmax(alpha) (``'alpha'``,
        the paper), or uniformly (``'uniform'``: every op keeps training as often as the others,
        so the supernet that judges the architectures stays fair while alpha settles).
    arc_betas
        Adam betas of alpha. ``None``: (0.5, beta2) with beta2 from the budget schedule (the
        paper's 0.999 at its budget; see :attr:`~.schedule.BudgetSchedule.adam_beta2`), or
        (0.5, 0.999) with ``schedule='fixed'``.
    lr_anneal_threshold
        Once the argmax latency is within this relative error of T, the alpha learning rate is
        scaled by the error ``|LAT/T - 1|``, as in the paper (0 turns annealing off).
    min_arc_lr_scale
        Lower bound of that scale.
    squared_error_weight
        Weight rho of the augmented-Lagrangian term ``rho * E_{arch ~ softmax(alpha)}[(LAT / T - 1)^2]``
        (and the same for energy), which pulls each layer toward the op that completes the other
        layers' latency to T rather than the op with the largest latency step, so a settled
        argmax stops jumping over the target (:mod:`~.squared_error`). The weight grows with the
        share of planned alpha steps done (penalty continuation; the full weight throughout with
        ``schedule='fixed'``), so the cross-entropy shapes alpha first. 0 turns it off. The
        default, 30, was chosen on tuning targets of the quick Fashion-MNIST search
        (``docs/target_hit_tuning.json``).
    truncate_lambda
        Two-sided truncation of lambda.
    gradient_clip_val
        Gradient clipping of the weights.
    log_every_n_steps
        How often op probabilities are logged.
    resume_from
        A Lightning checkpoint of an interrupted LightNAS search to continue from.
    optimization
        ``'bilevel'`` (the paper: alpha on the architecture split, weights on the training split)
        or ``'one_level'`` (SurgeNAS: both from the same training batch and backward pass).
    sampling
        ``'gumbel'`` (one path per weight step, drawn from softmax(alpha)) or ``'ordered'``
        (SurgeNAS ordered sampling: every candidate of every layer once per batch, in a random
        order, gradients accumulated; single-path memory, equal updates per op). With
        ``arch_gradient='gumbel'`` the alpha step runs the same paths with straight-through gates
        (SurgeNAS's ordered differentiable sampling); with ``'reinforce'`` it is the score function.
    identity_eta
        Initial weight of SurgeNAS identity mapping regularisation (layer output
        ``op(x) + eta * aux(x)``), decayed linearly to 0 over the epochs; 0 turns it off.
    landing_tolerance
        When the final argmax architecture misses T by more than this relative error, export the
        most probable architecture (under the final alpha) within it instead
        (:func:`~.landing.land_on_target`); ``None`` always exports the argmax. The argmax
        and its latency are reported either way.
    rank_candidates
        0 (default): export the (landed) argmax. ``n > 0``: draw up to ``n`` distinct architectures
        within ``landing_tolerance`` of T from softmax(alpha), score each with the supernet's
        weights on the last ``rank_batches`` architecture-split batches, and export the best
        (:mod:`~.ranking`; ENAS's derivation step). The argmax is reported either way.
    rank_batches
        Architecture-split batches that score the ranked candidates.

    Examples
    --------
    >>> from nni.nas.experiment import NasExperiment  # doctest: +SKIP
    >>> strategy = LightNAS(target_latency_ms=0.5, latency_model=lut)  # doctest: +SKIP
    >>> NasExperiment(space, evaluator, strategy).run()  # doctest: +SKIP
    >>> strategy.export_result()['lightnet']  # doctest: +SKIP
    'MBK3E6-skip-...'

    An energy budget, alone or with the latency one:

    >>> strategy = LightNAS(target_energy_mj=12.0, energy_model=lut.energy_view())  # doctest: +SKIP
    >>> strategy = LightNAS(target_latency_ms=0.5, latency_model=lut, target_energy_mj=12.0,
    ...                     energy_model=lut.energy_view())  # doctest: +SKIP
    """

    def __init__(self, *, target_latency_ms: float | None = None, latency_model=None, warmup_epochs: int = 10,
                 arc_learning_rate: float = PAPER_ARC_LEARNING_RATE, lambda_lr: float = PAPER_LAMBDA_LR,
                 initial_temperature: float = 5.0,
                 temperature_decay: float = 0.1, lr_anneal_threshold: float = LR_ANNEAL_THRESHOLD,
                 min_arc_lr_scale: float = 0.0,
                 truncate_lambda: bool = True, gradient_clip_val: float | None = 5.0, log_every_n_steps: int = 10,
                 resume_from: str | None = None, optimization: str = 'bilevel', sampling: str = 'gumbel',
                 identity_eta: float = 0.0, landing_tolerance: float | None = DEFAULT_LANDING_TOLERANCE,
                 schedule: str = 'budget',
                 planned_arch_steps: int | None = None, reference_arch_steps: int = PAPER_ARCH_STEPS,
                 final_temperature: float = 5.0 * math.exp(-8.0), anneal_start: float = 0.75,
                 min_alpha_travel: float = 20.0,
                 arch_gradient: str = 'reinforce', arch_samples: int = 4, diagnostic_batches: int = 4,
                 arc_betas: tuple[float, float] | None = None, weight_sampling: str = 'alpha',
                 rank_candidates: int = 0, rank_batches: int = 8,
                 target_energy_mj: float | None = None, energy_model=None, squared_error_weight: float = 30.0,
                 **kwargs):
        super().__init__(arc_learning_rate=arc_learning_rate, gradient_clip_val=gradient_clip_val,
                         log_prob_every_n_step=log_every_n_steps, warmup_epochs=warmup_epochs, **kwargs)
        _check_budgets(target_latency_ms, latency_model, target_energy_mj, energy_model)
        if warmup_epochs < 0:
            raise ValueError(f'warmup_epochs must be >= 0, got {warmup_epochs=}')
        if not initial_temperature > 0 or temperature_decay < 0:
            raise ValueError(f'need initial_temperature > 0 and temperature_decay >= 0, got '
                             f'{initial_temperature=}, {temperature_decay=}')
        if not 0 <= min_arc_lr_scale <= 1:
            raise ValueError(f'min_arc_lr_scale must be in [0, 1], got {min_arc_lr_scale=}')
        if not (isinstance(squared_error_weight, (int, float)) and math.isfinite(squared_error_weight)
                and squared_error_weight >= 0):
            raise ValueError(f'squared_error_weight must be a finite number >= 0, got {squared_error_weight!r}')
        if optimization not in ('bilevel', 'one_level'):
            raise ValueError(f"optimization must be 'bilevel' or 'one_level', got {optimization!r}")
        if sampling not in ('gumbel', 'ordered'):
            raise ValueError(f"sampling must be 'gumbel' or 'ordered', got {sampling!r}")
        if schedule not in ('budget', 'fixed'):
            raise ValueError(f"schedule must be 'budget' or 'fixed', got {schedule!r}")
        if arch_gradient not in ('reinforce', 'gumbel', 'none'):
            raise ValueError(f"arch_gradient must be 'reinforce', 'gumbel' or 'none', got {arch_gradient!r}")
        if not (isinstance(arch_samples, int) and arch_samples >= 2):
            raise ValueError(f'arch_samples must be an integer >= 2, got {arch_samples!r}')
        if planned_arch_steps is not None and not (isinstance(planned_arch_steps, int) and planned_arch_steps >= 1):
            raise ValueError(f'planned_arch_steps must be None or an integer >= 1, got {planned_arch_steps!r}')
        if weight_sampling not in ('alpha', 'uniform'):
            raise ValueError(f"weight_sampling must be 'alpha' or 'uniform', got {weight_sampling!r}")
        if arch_gradient == 'none' and optimization != 'bilevel':
            raise ValueError(f"arch_gradient='none' (a uniformly sampled supernet) needs optimization='bilevel', "
                             f"got {optimization!r}")
        if not (isinstance(diagnostic_batches, int) and diagnostic_batches >= 0):
            raise ValueError(f'diagnostic_batches must be an integer >= 0, got {diagnostic_batches!r}')
        # validated here (not at the first epoch): the schedule's own checks
        BudgetSchedule(planned_steps=1, reference_steps=reference_arch_steps, base_arc_learning_rate=arc_learning_rate,
                       base_lambda_lr=lambda_lr, initial_temperature=initial_temperature,
                       final_temperature=min(final_temperature, initial_temperature), anneal_start=anneal_start,
                       min_alpha_travel=min_alpha_travel)
        if not (isinstance(identity_eta, (int, float)) and identity_eta >= 0):
            raise ValueError(f'identity_eta must be a number >= 0, got {identity_eta!r}')
        if landing_tolerance is not None and not (isinstance(landing_tolerance, (int, float))
                                                  and 0 < landing_tolerance < 1):
            raise ValueError(f'landing_tolerance must be None or a number in (0, 1), got {landing_tolerance!r}')
        if not (isinstance(rank_candidates, int) and rank_candidates >= 0):
            raise ValueError(f'rank_candidates must be an integer >= 0, got {rank_candidates!r}')
        if not (isinstance(rank_batches, int) and rank_batches >= 1):
            raise ValueError(f'rank_batches must be an integer >= 1, got {rank_batches!r}')
        if rank_candidates and (landing_tolerance is None or arch_gradient == 'none'):
            raise ValueError(f'rank_candidates={rank_candidates} needs a landing_tolerance (the window the candidates '
                             f'lie in; got {landing_tolerance!r}) and architecture steps (arch_gradient '
                             f"'reinforce' or 'gumbel', got {arch_gradient!r})")
        self.rank_candidates = rank_candidates
        self.rank_batches = rank_batches
        self.landing_tolerance = landing_tolerance
        self.schedule = schedule
        self.planned_arch_steps = planned_arch_steps
        self.reference_arch_steps = reference_arch_steps
        self.final_temperature = final_temperature
        self.anneal_start = anneal_start
        self.min_alpha_travel = min_alpha_travel
        self.arch_gradient = arch_gradient
        self.arch_samples = arch_samples
        self.diagnostic_batches = diagnostic_batches
        self.arc_betas = None if arc_betas is None else tuple(arc_betas)
        self.weight_sampling = weight_sampling
        self.optimization = optimization
        self.sampling = sampling
        self.identity_eta = float(identity_eta)
        self.target_latency_ms = None if target_latency_ms is None else float(target_latency_ms)
        self.latency_model = latency_model
        self.target_energy_mj = None if target_energy_mj is None else float(target_energy_mj)
        self.energy_model = energy_model
        self.arc_learning_rate = arc_learning_rate
        self.lambda_lr = lambda_lr
        LatencyMultiplier(1.0, lambda_lr)  # validates lambda_lr
        self.initial_temperature = initial_temperature
        self.temperature_decay = temperature_decay
        self.lr_anneal_threshold = lr_anneal_threshold
        self.min_arc_lr_scale = min_arc_lr_scale
        self.squared_error_weight = float(squared_error_weight)
        self.truncate_lambda = truncate_lambda
        self.log_every_n_steps = log_every_n_steps
        self.resume_from = resume_from
        self.latency_range_ms = None if self.target_latency_ms is None else self.check_feasible()
        self.energy_range_mj = None if self.target_energy_mj is None else self.check_energy_feasible()

    @property
    def space_model(self):
        """The model that names the searched layers and their candidates: the latency model, else the energy one."""
        return self.latency_model if self.latency_model is not None else self.energy_model

    def extra_repr(self) -> str:
        return (f'target_latency_ms={self.target_latency_ms}, target_energy_mj={self.target_energy_mj}, '
                f'warmup_epochs={self.warmup_epochs}, '
                f'arc_learning_rate={self.arc_learning_rate}, lambda_lr={self.lambda_lr}, '
                f'initial_temperature={self.initial_temperature}, temperature_decay={self.temperature_decay}, '
                f'lr_anneal_threshold={self.lr_anneal_threshold}, optimization={self.optimization!r}, '
                f'sampling={self.sampling!r}, identity_eta={self.identity_eta}, '
                f'landing_tolerance={self.landing_tolerance}, schedule={self.schedule!r}, '
                f'arch_gradient={self.arch_gradient!r}, arch_samples={self.arch_samples}, '
                f'rank_candidates={self.rank_candidates}')

    def check_feasible(self) -> tuple[float, float]:
        """Refuse a target outside the latency model's range; returns (fastest, slowest) in ms."""
        fastest_ms, slowest_ms = self.latency_model.latency_range()
        if not fastest_ms <= self.target_latency_ms <= slowest_ms:
            raise InfeasibleTargetError(
                f'target_latency_ms={self.target_latency_ms:.4f} is outside the latency range of the search space '
                f'under this latency model: [{fastest_ms:.4f}, {slowest_ms:.4f}] ms')
        return fastest_ms, slowest_ms

    def check_energy_feasible(self) -> tuple[float, float]:
        """Refuse an energy target outside the energy model's range; returns (lowest, highest) in mJ."""
        lowest_mj, highest_mj = self.energy_model.latency_range()
        if not lowest_mj <= self.target_energy_mj <= highest_mj:
            raise InfeasibleTargetError(
                f'target_energy_mj={self.target_energy_mj:.4f} is outside the energy range of the search space '
                f'under this energy model: [{lowest_mj:.4f}, {highest_mj:.4f}] mJ')
        return lowest_mj, highest_mj

    # ---------------------------------------------------------- NNI plumbing
    def default_mutation_hooks(self):
        return [SinglePathMixedLayer.mutate, SinglePathRepeat.mutate, no_default_hook]

    def mutate_model(self, model):
        space_candidates(model)  # refuses MutableConv2d, InputChoice, ... by module and mutable, before any training
        space = model.simplify()
        expected = self.space_model.candidates
        for label, mutable in space.items():
            if not isinstance(mutable, Categorical):
                raise TypeError(f'LightNAS searches LayerChoice and Repeat depth (categorical) choices only; '
                                f'{label} is {mutable!r}')
            if label not in expected:
                raise ValueError(f'layer {label} of the model space is unknown to the latency model '
                                 f'(it knows {list(expected)})')
            if [str(value) for value in mutable.values] != [str(op) for op in expected[label]]:
                raise ValueError(f'candidates of {label} differ: space {list(mutable.values)}, '
                                 f'latency model {list(expected[label])}')
        missing = set(expected) - set(space)
        if missing:
            raise ValueError(f'latency model layers {sorted(missing)} are not in the model space')
        model = super().mutate_model(model)
        if self.identity_eta > 0:
            layers = [m for m in model.modules() if isinstance(m, SinglePathMixedLayer)]
            without = [layer.label for layer in layers if not layer.add_identity_regularization()]
            if without:
                _logger.warning('identity regularisation: layers %s have no skip candidate to copy; left out', without)
        return model

    def configure_oneshot_module(self, training_module) -> BaseOneShotLightningModule:
        return LightNASLightningModule(training_module, strategy=self)

    def mutate_evaluator(self, evaluator):
        mutated = super().mutate_evaluator(evaluator)
        if self.resume_from is not None:
            # weights_only: a checkpoint is read as data (tensors and plain containers), never unpickled code
            mutated.fit_kwargs = {**(mutated.fit_kwargs or {}), 'ckpt_path': str(self.resume_from), 'weights_only': True}
        return mutated

    # ---------------------------------------------------------------- results
    @property
    def oneshot_module(self) -> LightNASLightningModule:
        module = self._mutated_model_space.evaluator.module  # type: ignore[union-attr]
        if not isinstance(module, LightNASLightningModule):
            raise RuntimeError('the search has not been initialised; run the experiment first')
        return module

    def history(self) -> pd.DataFrame:
        """One row per epoch: lambda, argmax and expected latency, temperature, alpha entropy, losses.

        ``train_loss`` is the weight-step loss, ``arch_loss`` the cross-entropy of the alpha steps on
        the architecture split; ``val_acc`` is filled only when the evaluator has a validation loop.
        """
        return pd.DataFrame(self.oneshot_module.history_rows)

    def step_history(self) -> pd.DataFrame:
        """One row per alpha step: lambda, expected and argmax latency, alpha entropy (share of its maximum), alpha lr.

        The per-epoch :meth:`history` averages these; a settled argmax that jumps over the
        target and back shows only here.
        """
        return pd.DataFrame(self.oneshot_module.step_rows)

    def export_result(self) -> dict[str, Any]:
        """The searched architecture: NNI sample dict, LightNet string and predicted latency (and energy).

        ``argmax_lightnet`` / ``argmax_ms`` are the plain argmax of alpha; ``landed`` says
        whether the exported architecture differs from it (see ``landing_tolerance``) and
        ``export_rule`` what chose it (``'argmax'``, ``'landing'`` or ``'ranking'``; with ranking,
        ``ranked_candidates``, ``ranked_supernet_acc`` and the landed argmax's ``landed_lightnet``,
        ``landed_ms`` and ``landed_supernet_acc`` too). With an
        energy model, ``predicted_energy_mj`` and ``argmax_energy_mj`` too; with an energy target,
        ``target_energy_mj``, ``energy_relative_error``, ``argmax_energy_relative_error`` and
        ``energy_lambda``. Without a latency model (an energy-only search) the latencies are NaN;
        relative errors to a target not given are ``None``.
        """
        module = self.oneshot_module
        labels = module.labels
        argmax = module.argmax_arch()
        arch = module.exported_arch()
        predicted_ms = module.arch_latency_ms(arch)
        argmax_ms = module.arch_latency_ms(argmax)
        result = {'arch': {label: arch[label] for label in labels},
                  'lightnet': '-'.join(arch[label] for label in labels),
                  'predicted_ms': predicted_ms, 'target_ms': self.target_latency_ms,
                  'relative_error': _relative_error(predicted_ms, self.target_latency_ms),
                  'lambda': float(module.latency_lambda),
                  'argmax_lightnet': '-'.join(argmax[label] for label in labels), 'argmax_ms': argmax_ms,
                  'argmax_relative_error': _relative_error(argmax_ms, self.target_latency_ms),
                  'landed': arch != argmax}
        result['arch_string'] = arch_string(arch, labels)  # label=op,...: any space (lightnet: our presets)
        result.update(_tolerance_keys(module, arch, self.landing_tolerance))
        ranked = module.ranked_export()
        landed = module.landed_arch() if ranked is not None else arch
        result['export_rule'] = 'ranking' if ranked is not None else ('landing' if arch != argmax else 'argmax')
        if ranked is not None:
            result.update({'ranked_candidates': ranked['candidates'], 'ranked_supernet_acc': ranked['supernet_acc'],
                           'landed_lightnet': '-'.join(landed[label] for label in labels),
                           'landed_ms': module.arch_latency_ms(landed),
                           'landed_supernet_acc': ranked['landed_supernet_acc']})
        if self.energy_model is not None:
            predicted_mj, argmax_mj = module.arch_energy_mj(arch), module.arch_energy_mj(argmax)
            result.update({'predicted_energy_mj': predicted_mj, 'argmax_energy_mj': argmax_mj,
                           'target_energy_mj': self.target_energy_mj,
                           'energy_relative_error': _relative_error(predicted_mj, self.target_energy_mj),
                           'argmax_energy_relative_error': _relative_error(argmax_mj, self.target_energy_mj)})
            if self.target_energy_mj is not None:
                result['energy_lambda'] = float(module.energy_lambda)
        return result

    def probabilities(self) -> dict[str, dict[str, float]]:
        """softmax(alpha) per layer as plain floats (label -> op -> probability)."""
        module = self.oneshot_module
        return {layer.label: dict(zip(layer.names, F.softmax(layer._arch_alpha.detach(), -1).tolist()))
                for layer in module.mixed_layers()}

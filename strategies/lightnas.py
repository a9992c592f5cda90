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

import collections
import logging
import math
from typing import Any, Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from nni.mutable import Categorical
# nni.nas.strategy first: imported from inside nni.nas.oneshot, it would find that package half-initialised
# and put placeholders (ImportFailedStrategy) in place of NNI's own one-shot strategies for the whole process.
import nni.nas.strategy  # noqa: F401,I001
from nni.nas.oneshot.pytorch.base_lightning import BaseOneShotLightningModule
from nni.nas.oneshot.pytorch.differentiable import DartsLightningModule
from nni.nas.oneshot.pytorch.strategy import DARTS, no_default_hook
from nni_lightnas.search_spaces.nni_space import arch_string, space_candidates

from .landing import land_on_target
from ._training import batch_statistics_accuracy
from .ranking import best_by_accuracy, draw_at_target
from .squared_error import expected_squared_error
from .latency_multiplier import LatencyMultiplier
from .defaults import (DEFAULT_LANDING_TOLERANCE, LR_ANNEAL_THRESHOLD, PAPER_ARC_LEARNING_RATE, PAPER_ARCH_STEPS,
                       PAPER_LAMBDA_LR)
from .schedule import BudgetSchedule
from .single_path import SinglePathChoice, SinglePathMixedLayer, SinglePathRepeat

__all__ = ['LightNAS', 'LightNASLightningModule', 'InfeasibleTargetError']

_logger = logging.getLogger(__name__)


class InfeasibleTargetError(ValueError):
    """The latency (or energy) target lies outside what the search space can reach."""


class LightNASLightningModule(DartsLightningModule):
    """The Lightning module that runs a LightNAS search (built by :class:`LightNAS`)."""

    def __init__(self, training_module, *, strategy: 'LightNAS'):
        super().__init__(training_module, arc_learning_rate=strategy.arc_learning_rate,
                         gradient_clip_val=strategy.gradient_clip_val,
                         log_prob_every_n_step=strategy.log_every_n_steps, warmup_epochs=strategy.warmup_epochs)
        self.strategy_config = strategy
        self.latency_model = strategy.latency_model
        self.energy_model = strategy.energy_model
        self.labels: list[str] = list(strategy.space_model.labels)
        self.multiplier = None if strategy.target_latency_ms is None else LatencyMultiplier(
            strategy.target_latency_ms, strategy.lambda_lr, truncate=strategy.truncate_lambda)
        self.energy_multiplier = None if strategy.target_energy_mj is None else LatencyMultiplier(
            strategy.target_energy_mj, strategy.lambda_lr, truncate=strategy.truncate_lambda)
        # Buffers: saved in checkpoints and broadcast from rank 0 under DDP.
        self.register_buffer('latency_lambda', torch.zeros(()))
        if self.energy_multiplier is not None:  # only then: checkpoints of latency-only searches keep their keys
            self.register_buffer('energy_lambda', torch.zeros(()))
        self.register_buffer('arch_steps_done', torch.zeros((), dtype=torch.long))
        self.schedule: BudgetSchedule | None = None
        # the last architecture-split batches: the argmax's diagnostic score and the ranked export read them
        self._recent_arch_batches: collections.deque = collections.deque(
            maxlen=max(strategy.diagnostic_batches, strategy.rank_batches if strategy.rank_candidates else 0))
        self._ranked_export: dict[str, Any] | None = None
        self._epoch_start_arch: dict[str, str] | None = None
        self.history_rows: list[dict[str, Any]] = []
        self.step_rows: list[dict[str, Any]] = []  # one per alpha step
        self._epoch_stats: dict[str, list[float]] = {}
        self._latency_cache: dict[tuple[str, ...], float] = {}
        self._energy_cache: dict[tuple[str, ...], float] = {}
        self._last_expected_ms = float('nan')
        self._last_expected_mj = float('nan')
        self._last_arc_lr = float('nan')

    # ----------------------------------------------------------------- helpers
    def mixed_layers(self) -> list[SinglePathChoice]:
        """Every searched choice of the supernet in module order: ``LayerChoice`` layers and ``Repeat`` depths."""
        return [m for m in self.supernet_modules() if isinstance(m, SinglePathChoice)]

    def layer_probs(self) -> dict[str, torch.Tensor]:
        """softmax(alpha) per layer label (differentiable)."""
        return {layer.label: layer.probs() for layer in self.mixed_layers()}

    def argmax_arch(self) -> dict[str, str]:
        return {layer.label: layer.names[int(layer._arch_alpha.detach().argmax())] for layer in self.mixed_layers()}

    def _landing_problem(self) -> tuple[Any, float, Any]:
        """(model, target, value of an arch): latency, or energy in an energy-only search."""
        config = self.strategy_config
        if config.target_latency_ms is not None:
            return self.latency_model, config.target_latency_ms, self.arch_latency_ms
        return self.energy_model, config.target_energy_mj, self.arch_energy_mj

    def landed_arch(self) -> dict[str, str]:
        """The argmax architecture, or the most probable one within ``landing_tolerance`` of T when it misses.

        When no architecture lies within the tolerance, the one nearest to T (the most probable
        there), with a warning (:func:`~.landing.land_on_target`). T is the latency target; in an
        energy-only search, the energy target. With both budgets the landing meets the latency
        target and the energy is reported, not landed on.
        """
        arch = self.argmax_arch()
        tolerance = self.strategy_config.landing_tolerance
        model, target, value_of = self._landing_problem()
        if tolerance is None or abs(value_of(arch) / target - 1.0) <= tolerance:
            return arch
        log_probs = {layer.label: F.log_softmax(layer._arch_alpha.detach(), -1) for layer in self.mixed_layers()}
        landed = land_on_target(model, log_probs, target_ms=target, tolerance=tolerance)
        return arch if landed is None else landed

    def ranked_export(self) -> dict[str, Any] | None:
        """The best of ``rank_candidates`` at-target architectures drawn from softmax(alpha), by supernet accuracy.

        Returns ``{'arch', 'candidates', 'supernet_acc', 'landed_supernet_acc'}`` (the landed
        architecture is always among the candidates when it is on target), or ``None`` when
        ranking is off or no architecture-split batch was seen. Computed once per state of alpha
        (again after any further training).
        """
        config = self.strategy_config
        if not config.rank_candidates or not self._recent_arch_batches:
            return None
        if self._ranked_export is None:
            model, target, value_of = self._landing_problem()
            landed = self.landed_arch()
            log_probs = {layer.label: F.log_softmax(layer._arch_alpha.detach(), -1) for layer in self.mixed_layers()}
            candidates = draw_at_target(model, log_probs, target_ms=target, tolerance=config.landing_tolerance,
                                        count=config.rank_candidates)
            if abs(value_of(landed) / target - 1.0) <= config.landing_tolerance and landed not in candidates:
                candidates = [landed] + candidates[:config.rank_candidates - 1]
            if not candidates:
                return None
            batches = list(self._recent_arch_batches)[-config.rank_batches:]
            best, accuracies = best_by_accuracy(candidates, lambda arch: self.subnet_accuracy(arch, batches))
            self._ranked_export = {
                'arch': best, 'candidates': len(candidates), 'supernet_acc': max(accuracies),
                'landed_supernet_acc': accuracies[candidates.index(landed)] if landed in candidates else None}
            _logger.info('ranked export: best of %d at-target architectures drawn from alpha, supernet accuracy '
                         '%.4f (the landed one: %s)', len(candidates), max(accuracies),
                         self._ranked_export['landed_supernet_acc'])
        return self._ranked_export

    def exported_arch(self) -> dict[str, str]:
        """The export: :meth:`ranked_export` when ranking is on, else :meth:`landed_arch`."""
        ranked = self.ranked_export()
        return dict(ranked['arch']) if ranked is not None else self.landed_arch()

    def export(self) -> dict[str, str]:
        """What NNI's ``export_top_models`` returns: :meth:`exported_arch`."""
        return dict(self.exported_arch())

    def arch_latency_ms(self, arch: Mapping[str, str]) -> float:
        """Latency of ``arch`` under the latency model (NaN in a search without one)."""
        return self._cached_prediction(self.latency_model, self._latency_cache, arch)

    def arch_energy_mj(self, arch: Mapping[str, str]) -> float:
        """Energy per inference of ``arch`` under the energy model (NaN in a search without one)."""
        return self._cached_prediction(self.energy_model, self._energy_cache, arch)

    def _cached_prediction(self, model, cache: dict[tuple[str, ...], float], arch: Mapping[str, str]) -> float:
        """``model.predict(arch)``, memoised in ``cache``; NaN without a model."""
        if model is None:
            return math.nan
        key = tuple(arch[label] for label in self.labels)
        if key not in cache:
            cache[key] = model.predict(arch)
        return cache[key]

    def planned_arch_steps(self) -> int:
        """Alpha steps the search will make: the strategy's setting, else search epochs x batches per epoch."""
        config = self.strategy_config
        if config.planned_arch_steps is not None:
            return config.planned_arch_steps
        batches = self.trainer.num_training_batches
        if not math.isfinite(batches):
            raise ValueError('the training loader has no length; give LightNAS(planned_arch_steps=...)')
        return max(int(batches) * (int(self.trainer.max_epochs or 1) - config.warmup_epochs), 1)

    def make_schedule(self) -> BudgetSchedule:
        """The :class:`~.schedule.BudgetSchedule` of this search (``schedule='budget'``)."""
        config = self.strategy_config
        return BudgetSchedule(planned_steps=self.planned_arch_steps(), reference_steps=config.reference_arch_steps,
                              base_arc_learning_rate=config.arc_learning_rate, base_lambda_lr=config.lambda_lr,
                              initial_temperature=config.initial_temperature,
                              final_temperature=min(config.final_temperature, config.initial_temperature),
                              anneal_start=config.anneal_start, min_alpha_travel=config.min_alpha_travel)

    def scheduled_arc_learning_rate(self) -> float:
        """The alpha learning rate in use before annealing (scaled by the budget unless ``schedule='fixed'``)."""
        if self.schedule is None:
            return self.strategy_config.arc_learning_rate
        return self.schedule.arc_learning_rate

    def temperature(self, epoch: int) -> float:
        """Gumbel-softmax temperature: by alpha step (``'budget'``) or by epoch (``'fixed'``, the paper's)."""
        config = self.strategy_config
        if epoch < config.warmup_epochs:
            return config.initial_temperature
        if self.schedule is not None:
            return self.schedule.temperature(int(self.arch_steps_done))
        return config.initial_temperature * math.exp(-config.temperature_decay * (epoch - config.warmup_epochs))

    def alpha_entropy(self) -> float:
        """Sum over layers of the entropy of softmax(alpha), in nats."""
        with torch.no_grad():
            return float(sum(-(p * p.clamp_min(1e-12).log()).sum() for p in self.layer_probs().values()))

    def max_alpha_entropy(self) -> float:
        """The entropy of uniform alpha: sum over layers of ln(candidates)."""
        return float(sum(math.log(len(layer.names)) for layer in self._layers_by_label().values()))

    def alpha_entropy_fraction(self, entropy: float | None = None) -> float:
        """The entropy of softmax(alpha) over its maximum (1: uniform); pass ``entropy`` when already computed."""
        entropy = self.alpha_entropy() if entropy is None else entropy
        return entropy / max(self.max_alpha_entropy(), 1e-12)

    @torch.no_grad()
    def subnet_accuracy(self, arch: Mapping[str, str], batches) -> float:
        """Accuracy of ``arch`` with the supernet's weights on ``batches`` of ``(inputs, labels)``.

        Batch norm uses each batch's statistics (as in supernet training) with momentum 0, so
        the supernet's running statistics are left as they were.
        """
        for layer in self.mixed_layers():
            layer.force(layer.names.index(arch[layer.label]))
        return batch_statistics_accuracy(self.training_module, batches, device=self.device)

    def argmax_supernet_accuracy(self) -> float | None:
        """:meth:`subnet_accuracy` of the argmax net on the last few architecture-split batches (``None`` before any)."""
        diagnostic = list(self._recent_arch_batches)[-self.strategy_config.diagnostic_batches:] \
            if self.strategy_config.diagnostic_batches else []
        if not diagnostic:
            return None
        return self.subnet_accuracy(self.argmax_arch(), diagnostic)

    def _weight_optimizer(self):
        optimizers = self.optimizers()
        if not isinstance(optimizers, list):
            optimizers = [optimizers]
        weights = [opt for opt in optimizers if not getattr(opt, 'is_arch_optimizer', False)]
        if len(weights) != 1:
            raise ValueError(f'LightNAS needs exactly one weight optimizer from the evaluator, got {len(weights)}')
        return weights[0]

    def _record(self, **values: float) -> None:
        for key, value in values.items():
            self._epoch_stats.setdefault(key, []).append(float(value))

    # ------------------------------------------------------------------- steps
    def training_step(self, batch, batch_idx):
        config = self.strategy_config
        if self.trainer.current_epoch < config.warmup_epochs:
            loss = self._fair_warmup_step(batch['train'], batch_idx)
        elif config.optimization == 'one_level':
            loss = self._one_level_step(batch['train'], batch_idx)
        else:
            if config.arch_gradient != 'none':
                self._architecture_step(batch['val'], batch_idx)
            loss = self._weight_step(batch['train'], batch_idx)
        self._record(train_loss=loss.detach())
        self.advance_lr_schedulers(batch_idx)
        return loss

    def _loss(self, batch, batch_idx) -> torch.Tensor:
        output = self.training_module.training_step(batch, batch_idx)
        return output['loss'] if isinstance(output, dict) else output

    def _orders(self) -> tuple[list[SinglePathChoice], list[list[int]], int]:
        """Per layer, a random order of all its candidates (drawn without replacement), one per label.

        Modules that share a label (NAS-Bench-201 cells) share the order, so every path run is an
        architecture of the space.
        """
        layers = self.mixed_layers()
        by_label: dict[str, list[int]] = {}
        for layer in layers:
            if layer.label not in by_label:
                by_label[layer.label] = torch.randperm(len(layer.names)).tolist()
        orders = [by_label[layer.label] for layer in layers]
        return layers, orders, max(len(order) for order in orders)

    def _layers_by_label(self) -> dict[str, SinglePathChoice]:
        """The first mixed layer of each label, in module order (the others share its alpha)."""
        unique: dict[str, SinglePathMixedLayer] = {}
        for layer in self.mixed_layers():
            unique.setdefault(layer.label, layer)
        return unique

    def _run_paths(self, batch, batch_idx, *, gated: bool) -> torch.Tensor:
        """Forward/backward the sampled path(s) of one batch, accumulating gradients; returns the mean loss.

        ``sampling='gumbel'``: one path drawn by hard Gumbel-softmax. ``sampling='ordered'``: every
        candidate of every layer once, in a random order per layer (SurgeNAS ordered sampling);
        with ``gated`` each path carries a straight-through gate, so alpha gets a gradient too.
        """
        if self.strategy_config.sampling == 'gumbel' and gated:
            self.resample()
            loss = self._loss(batch, batch_idx)
            self.manual_backward(loss)
            return loss.detach()
        layers, orders, num_rounds = self._orders()
        total = torch.zeros(())
        for round_index in range(num_rounds):
            for layer, order in zip(layers, orders):
                index = order[round_index % len(order)]
                layer.pin(index) if gated else layer.force(index)
            loss = self._loss(batch, batch_idx)
            self.manual_backward(loss / num_rounds if gated else loss)
            total = total + loss.detach()
        return total / num_rounds

    def _latency_penalty(self) -> torch.Tensor:
        """lambda * (LAT(alpha) / T - 1) + lambda_E * (E(alpha) / T_E - 1), each term when its target is set.

        LAT and E are the expected latency and energy of softmax(alpha). With
        ``squared_error_weight`` rho > 0, each budget adds ``rho * E[(LAT / T - 1)^2]``
        (:func:`~.squared_error.expected_squared_error`).
        """
        config = self.strategy_config
        probs = self.layer_probs()
        terms = []
        squared_error_weight = config.squared_error_weight * self.squared_error_ramp()
        if self.multiplier is not None:
            self.multiplier.value = float(self.latency_lambda)
            expected_ms = self.latency_model.expected_latency(probs)
            self._last_expected_ms = float(expected_ms.detach())
            terms.append(self.multiplier.value * (expected_ms / config.target_latency_ms - 1.0))
            if squared_error_weight:
                terms.append(squared_error_weight *
                             expected_squared_error(self.latency_model, probs, config.target_latency_ms))
        if self.energy_multiplier is not None:
            self.energy_multiplier.value = float(self.energy_lambda)
            expected_mj = self.energy_model.expected_latency(probs)
            self._last_expected_mj = float(expected_mj.detach())
            terms.append(self.energy_multiplier.value * (expected_mj / config.target_energy_mj - 1.0))
            if squared_error_weight:
                terms.append(squared_error_weight *
                             expected_squared_error(self.energy_model, probs, config.target_energy_mj))
        return sum(terms[1:], terms[0])

    def squared_error_ramp(self) -> float:
        """Share of ``squared_error_weight`` in force: the share of planned alpha steps done (1: ``'fixed'``).

        A penalty continuation, as in augmented-Lagrangian methods: early on the cross-entropy
        shapes alpha, at the end the squared error holds the argmax on T.
        """
        return 1.0 if self.schedule is None else self.schedule.progress(int(self.arch_steps_done))

    def in_landing_phase(self) -> bool:
        """Whether the search is in its last ``1 - anneal_start`` of planned alpha steps (always: ``'fixed'``).

        Alpha's learning rate may be annealed there.
        """
        return self.schedule is None or self.schedule.may_anneal(int(self.arch_steps_done))

    def _fair_warmup_step(self, batch, batch_idx) -> torch.Tensor:
        """Every candidate of every layer once, in a random order per layer; one optimizer step."""
        optimizer = self._weight_optimizer()
        self.training_module.optimizer_zero_grad(self.trainer.current_epoch, batch_idx, optimizer)
        layers, orders, num_rounds = self._orders()
        total = torch.zeros(())
        for round_index in range(num_rounds):
            for layer, order in zip(layers, orders):
                layer.force(order[round_index % len(order)])
            loss = self._loss(batch, batch_idx)
            self.manual_backward(loss)
            total = total + loss.detach()
        self._step_weights(optimizer, batch_idx)
        return total / num_rounds

    def _step_weights(self, optimizer, batch_idx) -> None:
        self.training_module.configure_gradient_clipping(optimizer, self.gradient_clip_val, None)
        self.training_module.optimizer_step(self.trainer.current_epoch, batch_idx, optimizer)
        self._optimizer_progress += 1

    def _weight_step(self, batch, batch_idx) -> torch.Tensor:
        """Weights on the training split: one Gumbel path, or all paths in order (no gates)."""
        optimizer = self._weight_optimizer()
        self.training_module.optimizer_zero_grad(self.trainer.current_epoch, batch_idx, optimizer)
        if self.strategy_config.sampling == 'gumbel':
            if self.strategy_config.weight_sampling == 'uniform':
                picks = {label: int(torch.randint(len(layer.names), ()))
                         for label, layer in self._layers_by_label().items()}
                for layer in self.mixed_layers():
                    layer.force(picks[layer.label])
            else:
                self.resample()
            loss = self._loss(batch, 2 * batch_idx + 1)
            self.manual_backward(loss)
            loss = loss.detach()
        else:
            loss = self._run_paths(batch, 2 * batch_idx + 1, gated=False)
        self._step_weights(optimizer, batch_idx)
        return loss

    def _architecture_step(self, batch, batch_idx) -> None:
        """Alpha on the architecture split: CE of the sampled path(s) + the latency penalty."""
        arc_optim = self.architecture_optimizers()
        arc_optim.zero_grad()
        self._recent_arch_batches.append(_inputs_and_labels(batch))
        if self.strategy_config.arch_gradient == 'reinforce':
            ce_loss = self._reinforce_backward(batch, 2 * batch_idx)
        else:
            ce_loss = self._run_paths(batch, 2 * batch_idx, gated=True)
        self.manual_backward(self._latency_penalty())
        arc_optim.step()
        self._after_architecture_step(arc_optim, ce_loss)

    def _reinforce_backward(self, batch, batch_idx) -> torch.Tensor:
        """Score-function gradient of the expected CE, with a leave-one-out baseline; returns the mean CE.

        ``arch_samples`` architectures are drawn from softmax(alpha) and run forward (no weight
        gradients) on the same batch; each one's log-probability is weighted by its loss minus the
        mean loss of the others. The estimate compares whole architectures on one batch, so it is
        unbiased and does not depend on how a block's output scale reaches the loss (a gate on a
        single path followed by batch norm gives alpha almost no gradient).
        """
        layers = self.mixed_layers()
        # one draw per label: modules sharing a label run the same op, and its log-probability counts once
        unique = self._layers_by_label()
        log_probs = [F.log_softmax(layer._arch_alpha, -1) for layer in unique.values()]
        num_samples = self.strategy_config.arch_samples
        with torch.no_grad():
            draws = [torch.multinomial(lp.detach().exp(), num_samples, replacement=True) for lp in log_probs]
            draw_of = dict(zip(unique, draws))
            losses = []
            for sample in range(num_samples):
                for layer in layers:
                    layer.force(int(draw_of[layer.label][sample]))
                losses.append(self._loss(batch, batch_idx).detach().float())
            losses_t = torch.stack(losses)
            advantage = losses_t - (losses_t.sum() - losses_t) / (num_samples - 1)
        surrogate = sum(((advantage * lp[draw]).sum() for lp, draw in zip(log_probs, draws)),
                        torch.zeros(())) / num_samples
        self.manual_backward(surrogate)
        return losses_t.mean()

    def _one_level_step(self, batch, batch_idx) -> torch.Tensor:
        """SurgeNAS one-level: weights and alpha from the same batch and the same backward pass."""
        arc_optim = self.architecture_optimizers()
        optimizer = self._weight_optimizer()
        arc_optim.zero_grad()
        self.training_module.optimizer_zero_grad(self.trainer.current_epoch, batch_idx, optimizer)
        ce_loss = self._run_paths(batch, batch_idx, gated=True)
        self.manual_backward(self._latency_penalty())
        self._step_weights(optimizer, batch_idx)
        arc_optim.step()
        self._after_architecture_step(arc_optim, ce_loss)
        return ce_loss

    def _after_architecture_step(self, arc_optim, ce_loss: torch.Tensor) -> None:
        """Lambda ascent on the argmax latency, alpha learning-rate annealing, logging."""
        config = self.strategy_config
        argmax = self.argmax_arch()
        argmax_ms, argmax_mj = self.arch_latency_ms(argmax), self.arch_energy_mj(argmax)
        errors, energy_values = [], {}
        new_lambda = float(self.latency_lambda)
        if self.multiplier is not None:
            new_lambda = self.multiplier.update(argmax_ms)
            self.latency_lambda.fill_(new_lambda)
            errors.append(abs(argmax_ms / config.target_latency_ms - 1.0))
        if self.energy_multiplier is not None:
            self.energy_lambda.fill_(self.energy_multiplier.update(argmax_mj))
            errors.append(abs(argmax_mj / config.target_energy_mj - 1.0))
            energy_values = {'energy_lambda': float(self.energy_lambda), 'expected_energy_mj': self._last_expected_mj,
                             'argmax_energy_mj': argmax_mj}
        self.arch_steps_done += 1
        # annealing waits until every budget is within the threshold
        scale = self._arc_lr_scale(max(errors)) if self.in_landing_phase() else 1.0
        for group in arc_optim.param_groups:
            group['lr'] = self.scheduled_arc_learning_rate() * scale
        self._last_arc_lr = self.scheduled_arc_learning_rate() * scale
        tau = self.temperature(self.trainer.current_epoch)
        for layer in self.mixed_layers():
            layer.tau = tau
        entropy = self.alpha_entropy()
        self.log_dict({'lightnas/lambda': new_lambda, 'lightnas/expected_ms': self._last_expected_ms,
                       'lightnas/argmax_ms': argmax_ms, 'lightnas/temperature': tau,
                       'lightnas/alpha_entropy': entropy, 'lightnas/arc_lr_scale': scale,
                       **{f'lightnas/{key}': value for key, value in energy_values.items()}})
        self.step_rows.append({'arch_step': int(self.arch_steps_done), 'epoch': int(self.trainer.current_epoch),
                               'lambda': new_lambda, 'expected_ms': self._last_expected_ms, 'argmax_ms': argmax_ms,
                               'alpha_entropy_fraction': self.alpha_entropy_fraction(entropy),
                               'arc_lr': self._last_arc_lr, **energy_values})
        self._record(ce_loss=ce_loss, expected_ms=self._last_expected_ms, argmax_ms=argmax_ms,
                     **{'lambda': new_lambda}, **energy_values)

    def arch_parameters(self) -> list[torch.nn.Parameter]:
        """The alphas in module order, each once.

        NNI's DARTS module returns ``list(set(...))``, whose order changes from process to process;
        optimizer state is restored by position, so a resumed search would give one layer's Adam
        moments to another. A stable order makes resumes exact.
        """
        unique: dict[int, torch.nn.Parameter] = {}
        for module in self.supernet_modules():
            if hasattr(module, 'arch_parameters'):
                for parameter in module.arch_parameters():
                    unique.setdefault(id(parameter), parameter)
        return list(unique.values())

    def configure_architecture_optimizers(self):
        # foreach=False: one code path before and after a checkpoint restore (bitwise-equal resumes).
        # The learning rate is set before every step (budget schedule and annealing).
        betas = self.strategy_config.arc_betas
        if betas is None:  # sized in on_train_start, once the planned steps are known
            betas = (0.5, 0.999)
        return torch.optim.Adam(self.arch_parameters(), self.strategy_config.arc_learning_rate,
                                betas=betas, weight_decay=1e-3, foreach=False)

    def on_train_start(self):
        if self.strategy_config.schedule == 'budget':
            self.schedule = self.make_schedule()
            for multiplier in (self.multiplier, self.energy_multiplier):
                if multiplier is not None:
                    multiplier.lambda_lr = self.schedule.lambda_lr
            if self.strategy_config.arc_betas is None:
                for group in self.architecture_optimizers().param_groups:
                    group['betas'] = (0.5, self.schedule.adam_beta2)
            _logger.info('LightNAS budget schedule: %d planned alpha steps, alpha lr %.4g, lambda step %.4g, '
                         'temperature %.3g -> %.3g', self.schedule.planned_steps, self.schedule.arc_learning_rate,
                         self.schedule.lambda_lr, self.schedule.initial_temperature, self.schedule.final_temperature)
        return super().on_train_start()

    def _arc_lr_scale(self, relative_error: float) -> float:
        """Scale of the alpha learning rate: 1 away from the target, ``|LAT/T - 1|`` within ``lr_anneal_threshold``.

        The paper's rule: once the argmax is close to T, alpha all but stops, so the argmax stays there.
        """
        threshold = self.strategy_config.lr_anneal_threshold
        if threshold <= 0 or relative_error >= threshold:
            return 1.0
        return max(relative_error, self.strategy_config.min_arc_lr_scale)

    def validation_step(self, batch, batch_idx):
        """Accuracy of the current argmax architecture on the validation data."""
        arch = self.argmax_arch()
        for layer in self.mixed_layers():
            layer.force(layer.names.index(arch[layer.label]))
        return self.training_module.validation_step(batch, batch_idx)

    # ------------------------------------------------------------------ epochs
    def identity_eta(self, epoch: int) -> float:
        """Weight of the identity path: ``identity_eta`` at epoch 0, linearly down to 0 at the last epoch."""
        max_epochs = max(int(self.trainer.max_epochs or 1), 1)
        return self.strategy_config.identity_eta * max(0.0, 1.0 - epoch / max_epochs)

    def on_train_epoch_start(self):
        tau = self.temperature(self.trainer.current_epoch)
        eta = self.identity_eta(self.trainer.current_epoch)
        for layer in self.mixed_layers():
            layer.tau = tau
            layer.eta = eta
        self._epoch_stats = {}
        self._epoch_start_arch = self.argmax_arch()
        self._ranked_export = None  # alpha and the weights move again
        return super().on_train_epoch_start()

    def on_train_epoch_end(self):
        arch = self.argmax_arch()
        entropy = self.alpha_entropy()
        stats = {key: sum(values) / len(values) for key, values in self._epoch_stats.items() if values}
        row = {'epoch': self.trainer.current_epoch, 'phase': 'warmup' if self.trainer.current_epoch <
               self.strategy_config.warmup_epochs else 'search',
               'temperature': self.temperature(self.trainer.current_epoch), 'lambda': float(self.latency_lambda),
               'argmax_ms': self.arch_latency_ms(arch),
               'expected_ms': math.nan if self.latency_model is None else float(self.latency_model.expected_latency(
                   {k: v.detach() for k, v in self.layer_probs().items()})),
               'alpha_entropy': entropy,
               'alpha_entropy_fraction': self.alpha_entropy_fraction(entropy),
               # layers whose argmax op changed during this epoch
               'argmax_changes': sum(arch[label] != (self._epoch_start_arch or arch)[label] for label in arch),
               'argmax_supernet_acc': self.argmax_supernet_accuracy(),
               'arch_steps': int(self.arch_steps_done), 'arc_lr': self._last_arc_lr,
               'train_loss': stats.get('train_loss'),
               # cross-entropy of the sampled paths on the architecture split (empty during warm-up)
               'arch_loss': stats.get('ce_loss'),
               'identity_eta': self.identity_eta(self.trainer.current_epoch),
               'skip_share': sum(op == 'skip' for op in arch.values()) / max(len(arch), 1),
               'arch': '-'.join(arch[label] for label in self.labels)}
        if self.energy_model is not None:
            row['argmax_energy_mj'] = self.arch_energy_mj(arch)
            row['expected_energy_mj'] = float(self.energy_model.expected_latency(
                {k: v.detach() for k, v in self.layer_probs().items()}))
            row['energy_lambda'] = float(self.energy_lambda) if self.energy_multiplier is not None else None
        val_acc = self.trainer.callback_metrics.get('val_acc')
        row['val_acc'] = float(val_acc) if val_acc is not None else None
        row['mean_lambda'] = stats.get('lambda', row['lambda'])
        self.history_rows.append(row)
        self.log_dict({'lightnas/alpha_entropy_fraction': row['alpha_entropy_fraction'],
                       'lightnas/argmax_changes': float(row['argmax_changes'])})
        if row['argmax_supernet_acc'] is not None:
            self.log('lightnas/argmax_supernet_acc', row['argmax_supernet_acc'])
        _logger.info('epoch %d: argmax %.4f ms (target %s), lambda %.4g, tau %.3f, alpha entropy %.1f%% of max, '
                     '%d argmax changes', row['epoch'], row['argmax_ms'], self.strategy_config.target_latency_ms,
                     row['lambda'], row['temperature'], 100 * row['alpha_entropy_fraction'], row['argmax_changes'])
        if self.energy_model is not None:
            _logger.info('epoch %d: argmax %.4f mJ (target %s), energy lambda %s', row['epoch'],
                         row['argmax_energy_mj'], self.strategy_config.target_energy_mj, row['energy_lambda'])
        return super().on_train_epoch_end()

    # -------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint['lightnas'] = {'history': list(self.history_rows), 'steps': list(self.step_rows),
                                  'torch_rng_state': torch.get_rng_state(),
                                  'lambda': float(self.latency_lambda)}
        if self.energy_multiplier is not None:
            checkpoint['lightnas']['energy_lambda'] = float(self.energy_lambda)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get('lightnas')
        if state is None:
            raise ValueError('checkpoint has no LightNAS state; was it written by a LightNAS search?')
        self.history_rows = list(state['history'])
        self.step_rows = list(state.get('steps', []))
        torch.set_rng_state(state['torch_rng_state'])
        if self.multiplier is not None:
            self.multiplier.value = state['lambda']
        if self.energy_multiplier is not None:
            self.energy_multiplier.value = state.get('energy_lambda', 0.0)


def _inputs_and_labels(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, labels)`` of a classification batch (a pair, or a dict with a ``'train'``-style pair)."""
    if isinstance(batch, Mapping):
        batch = next(iter(batch.values()))
    inputs, labels = batch[0], batch[1]
    return inputs.detach(), labels.detach()


def _tolerance_keys(module: LightNASLightningModule, arch: Mapping[str, str],
                    tolerance: float | None) -> dict[str, Any]:
    """``within_tolerance`` of the export (``None`` without a tolerance) and ``nearest_feasible``.

    ``nearest_feasible`` is true when no architecture within the tolerance was found and the
    export is the nearest one (:func:`~.landing.land_on_target`).
    """
    if tolerance is None:
        return {'within_tolerance': None, 'nearest_feasible': False}
    _, target, value_of = module._landing_problem()
    within = bool(abs(value_of(arch) / target - 1.0) <= tolerance)
    return {'within_tolerance': within, 'nearest_feasible': not within}


def _relative_error(value: float, target: float | None) -> float | None:
    """``value / target - 1``, or ``None`` without a target."""
    return None if target is None else value / target - 1.0


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

"""The Lightning module of a LightNAS search: the supernet's weights, alpha and the learned multipliers.

:class:`~.lightnas.LightNAS` (the NNI strategy) builds it; this module runs the search's steps
(fair warm-up, then alternating alpha and weight steps), keeps the per-epoch and per-step
history, and exports the argmax, the landed or the ranked architecture. Every setting is read
from the strategy that built it.
"""

from __future__ import annotations

import collections
import logging
import math
from typing import TYPE_CHECKING, Any, Mapping

import torch
import torch.nn.functional as F
# nni.nas.strategy first: imported from inside nni.nas.oneshot, it would find that package half-initialised
# and put placeholders (ImportFailedStrategy) in place of NNI's own one-shot strategies for the whole process.
import nni.nas.strategy  # noqa: F401,I001
from nni.nas.oneshot.pytorch.differentiable import DartsLightningModule

from .landing import land_on_target
from ._training import batch_statistics_accuracy
from .ranking import best_by_accuracy, draw_at_target
from .squared_error import expected_squared_error
from .latency_multiplier import LatencyMultiplier
from .schedule import BudgetSchedule
from .single_path import SinglePathChoice, SinglePathMixedLayer

if TYPE_CHECKING:
    from .lightnas import LightNAS

__all__ = ['LightNASLightningModule']

_logger = logging.getLogger(__name__)


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
            self._last_expected_ms = self._budget_terms(terms, self.multiplier, self.latency_lambda,
                                                        self.latency_model, config.target_latency_ms, probs,
                                                        squared_error_weight)
        if self.energy_multiplier is not None:
            self._last_expected_mj = self._budget_terms(terms, self.energy_multiplier, self.energy_lambda,
                                                        self.energy_model, config.target_energy_mj, probs,
                                                        squared_error_weight)
        return sum(terms[1:], terms[0])

    @staticmethod
    def _budget_terms(terms: list[torch.Tensor], multiplier: LatencyMultiplier, lambda_value, model,
                      target: float, probs, squared_error_weight: float) -> float:
        """Append one budget's terms (``lambda * (E/T - 1)``, and the squared error when weighted) to
        ``terms``; returns the expected value E (ms or mJ) under ``probs``."""
        multiplier.value = float(lambda_value)
        expected = model.expected_latency(probs)
        terms.append(multiplier.value * (expected / target - 1.0))
        if squared_error_weight:
            terms.append(squared_error_weight * expected_squared_error(model, probs, target))
        return float(expected.detach())

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

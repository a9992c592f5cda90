"""The search converges: budget-sized schedules, alpha settling on a clearly best candidate, diagnostics."""

from __future__ import annotations

import logging
import math

import pandas as pd
import pytest
import torch
from nni.nas.experiment import NasExperiment
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from torch import nn

from lightnas_helpers import synthetic_loaders
from nni_lightnas.latency.lut import LatencyLUT
from nni_lightnas.search import make_search_evaluator
from nni_lightnas.strategies import LightNAS
from nni_lightnas.strategies.schedule import PAPER_ARCH_STEPS, BudgetSchedule

logging.getLogger('nni').setLevel(logging.ERROR)
pytestmark = pytest.mark.usefixtures('one_torch_thread')


# ------------------------------------------------------------------- the schedule
def test_paper_constants_hold_at_the_paper_budget_and_stretch_over_short_ones():
    paper = BudgetSchedule(planned_steps=PAPER_ARCH_STEPS)
    assert (paper.arc_learning_rate, paper.lambda_lr) == (1e-3, 5e-4)
    # the paper's tau = 5 exp(-0.1 epoch) over 80 search epochs, as a function of progress
    assert paper.temperature(PAPER_ARCH_STEPS // 2) == pytest.approx(5.0 * math.exp(-4.0))
    short = BudgetSchedule(planned_steps=1_000)
    assert short.lambda_lr == pytest.approx(5e-4 * 400)  # lambda reaches the paper's values at the same progress
    assert short.arc_learning_rate == pytest.approx(1e-3 * math.sqrt(400))
    assert short.temperature(1_000) == pytest.approx(paper.temperature(PAPER_ARCH_STEPS))
    assert short.temperature(5_000) == short.temperature(1_000)  # clipped at the end of the plan
    tiny = BudgetSchedule(planned_steps=50)
    assert tiny.arc_learning_rate == pytest.approx(20.0 / 50)  # the travel floor
    assert not short.may_anneal(700) and short.may_anneal(750)


@pytest.mark.parametrize('kwargs,match', [({'planned_steps': 0}, 'planned_steps must be an integer >= 1'),
                                          ({'planned_steps': 10, 'final_temperature': 9.0}, 'final_temperature'),
                                          ({'planned_steps': 10, 'anneal_start': 1.5}, 'anneal_start'),
                                          ({'planned_steps': 10, 'base_lambda_lr': 0.0}, 'base_lambda_lr=0.0')])
def test_schedule_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BudgetSchedule(**kwargs)


@pytest.mark.parametrize('kwargs,match', [({'schedule': 'epoch'}, "schedule must be 'budget' or 'fixed'"),
                                          ({'arch_gradient': 'st'}, "arch_gradient must be 'reinforce', 'gumbel' or 'none'"),
                                          ({'arch_samples': 1}, 'arch_samples must be an integer >= 2'),
                                          ({'weight_sampling': 'fair'}, "weight_sampling must be 'alpha' or 'uniform'"),
                                          ({'arch_gradient': 'none', 'optimization': 'one_level'},
                                           "arch_gradient='none'"),
                                          ({'planned_arch_steps': 0}, 'planned_arch_steps must be None')])
def test_strategy_rejects_bad_schedule_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LightNAS(target_latency_ms=1.5, latency_model=_toy_lut(), **kwargs)


# -------------------------------------------------- a task with one clearly best op
class _Blind(nn.Module):
    """Passes nothing on: zeros of the input's shape."""

    def forward(self, x):
        return x * 0.0


class _Scrambled(nn.Module):
    """Replaces the input by noise of the same shape."""

    def forward(self, x):
        return torch.randn_like(x)


class _ToySpace(ModelSpace):
    """Quadrant features, then one choice: keep them (``useful``), zero them or replace them by noise."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 7, stride=7), nn.BatchNorm2d(8), nn.ReLU())
        self.choice = LayerChoice({'blind': _Blind(), 'useful': nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8),
                                                                              nn.ReLU()),
                                   'scrambled': _Scrambled()}, label='layer00')
        self.classifier = nn.Linear(8 * 16, 10)

    def forward(self, x):
        x = self.choice(self.features(x))
        return self.classifier(x.view(x.size(0), -1))


def _toy_lut() -> LatencyLUT:
    """Every candidate costs the same: only the cross-entropy can tell them apart."""
    rows = [{'kind': 'fixed', 'layer': 'stem', 'op': 'stem', 'latency_ms': 0.5}]
    rows += [{'kind': 'op', 'layer': 'layer00', 'op': op, 'latency_ms': 1.0} for op in ('blind', 'useful', 'scrambled')]
    return LatencyLUT(pd.DataFrame(rows), {})


def _toy_search(**kwargs) -> LightNAS:
    torch.manual_seed(0)
    train_loader, arch_loader = synthetic_loaders(256, 32)  # 4 batches per split and epoch
    strategy = LightNAS(target_latency_ms=1.5, latency_model=_toy_lut(), warmup_epochs=1, **kwargs)
    evaluator = make_search_evaluator(train_loader, arch_loader, max_epochs=8)
    NasExperiment(_ToySpace(), evaluator, strategy).run()
    return strategy


def test_alpha_converges_to_the_clearly_best_candidate():
    strategy = _toy_search()
    probabilities = strategy.probabilities()['layer00']
    assert max(probabilities, key=probabilities.get) == 'useful'
    assert probabilities['useful'] > 0.9, probabilities
    history = strategy.history()
    assert history['alpha_entropy_fraction'].iloc[0] == pytest.approx(1.0, abs=1e-3)  # warm-up: alpha untouched
    assert history['alpha_entropy_fraction'].iloc[-1] < 0.5
    # the planned budget is used exactly: 7 search epochs x 4 batches
    assert history['arch_steps'].iloc[-1] == 28
    steps = strategy.step_history()  # one row per alpha step, the epoch rows are their means
    assert list(steps['arch_step']) == list(range(1, 29))
    assert steps['argmax_ms'].tolist() == pytest.approx([1.5] * 28)
    assert steps['alpha_entropy_fraction'].iloc[-1] == pytest.approx(history['alpha_entropy_fraction'].iloc[-1],
                                                                     abs=0.05)
    assert history['arc_lr'].iloc[1] == pytest.approx(20.0 / 28)  # the travel floor of a 28-step plan
    # the argmax net, scored with supernet weights on architecture-split batches, has learnt the task
    assert history['argmax_supernet_acc'].iloc[-1] > 0.5
    assert history['argmax_changes'].iloc[-1] == 0
    assert history['argmax_supernet_acc'].iloc[0] is None or math.isnan(history['argmax_supernet_acc'].iloc[0])


def test_fixed_schedule_keeps_the_given_constants():
    # (annealing off: every candidate sits on the target here, so it would scale the rate to 0)
    strategy = _toy_search(schedule='fixed', arc_learning_rate=1e-3, lr_anneal_threshold=0)
    history = strategy.history()
    assert history['arc_lr'].iloc[-1] == pytest.approx(1e-3)
    assert history['temperature'].iloc[2] == pytest.approx(5.0 * math.exp(-0.1))
    # the paper's rate over 28 steps barely moves alpha: the reason the budget schedule exists
    assert history['alpha_entropy_fraction'].iloc[-1] > 0.95


# --------------------------------------------- why the default alpha gradient is a score function
class _GatedThenNormalised(ModelSpace):
    """One choice whose output reaches the loss only through batch norm (as most MB blocks do)."""

    def __init__(self):
        super().__init__()
        self.choice = LayerChoice({'blind': nn.Conv2d(1, 4, 3, padding=1), 'useful': nn.Conv2d(1, 4, 5, padding=2),
                                   'scrambled': nn.Conv2d(1, 4, 7, padding=3)}, label='layer00')
        self.norm = nn.BatchNorm2d(4)
        self.classifier = nn.Linear(4, 10)

    def forward(self, x):
        return self.classifier(self.norm(self.choice(x)).mean((2, 3)))


def test_straight_through_gate_gives_alpha_no_gradient_behind_batch_norm():
    from nni_lightnas.strategies import SinglePathMixedLayer
    torch.manual_seed(0)
    strategy = LightNAS(target_latency_ms=1.5, latency_model=_toy_lut())
    net = strategy.mutate_model(_GatedThenNormalised())
    layer = next(m for m in net.modules() if isinstance(m, SinglePathMixedLayer))
    images, labels = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    layer.resample({})
    nn.functional.cross_entropy(net(images), labels).backward()
    # batch norm undoes any scale of its input, so the gate's value does not change the loss
    assert layer._arch_alpha.grad.abs().max() < 1e-6

"""Schedules of a LightNAS search sized by its planned number of architecture steps.

The paper's constants (Luo et al., DAC 2022: alpha learning rate 1e-3, lambda step 5e-4,
temperature 5 * exp(-0.1 * epoch) over 80 search epochs) assume ImageNet: about 5,000 alpha
steps per epoch, some 400,000 in all. A search on a CPU makes a few hundred. Run with the
paper's per-step constants, such a search ends where the paper's is after a few minutes:
alpha still uniform and lambda too small to move it.

:class:`BudgetSchedule` keeps the paper's values as the case ``planned_steps ==
reference_steps`` and stretches them over any budget by the share of the search done,
``progress = step / planned_steps``:

* **lambda step**: lambda after a share ``p`` of the search is ``sum(lambda_lr * error)``,
  about ``lambda_lr * planned_steps * mean error``. Scaling ``lambda_lr`` by
  ``reference_steps / planned_steps`` gives lambda the paper's trajectory over ``p``.
* **alpha learning rate**: Adam moves each logit by at most the learning rate per step. A
  linear scaling would keep the total move but, with noisy gradients, multiply the random
  walk by ``reference / planned``; the square root, ``base * sqrt(reference / planned)``,
  grows the walk only by ``(reference / planned) ** 0.25``. For very short searches that
  leaves alpha too little room to settle, so the rate is at least ``min_alpha_travel /
  planned_steps``: Adam can move a logit ``min_alpha_travel`` in all (20 by default; a
  logit gap of about 3 already puts 75% of a layer's probability on one op).
* **temperature**: ``initial * (final / initial) ** p``; with the defaults this is the
  paper's ``5 * exp(-0.1 * epoch)`` over 80 search epochs.
* **Adam's second-moment memory** ``1 / (1 - beta2)``: the paper's 0.999 remembers 1,000 steps,
  0.25% of its search but longer than a whole CPU search, so the large early gradients keep a
  settled alpha from ever answering the latency term. Here it is a tenth of the planned steps,
  between 100 and 1,000 steps (0.999 at the paper's budget, 0.99 below 1,000 steps).
* **learning-rate annealing** near the target applies only in the last
  ``1 - anneal_start`` of the search, as in the paper ("near the end"), so it cannot freeze
  alpha long before the end.

Examples
--------
>>> paper = BudgetSchedule(planned_steps=400_000)
>>> paper.lambda_lr, paper.arc_learning_rate, paper.adam_beta2
(0.0005, 0.001, 0.999)
>>> cpu = BudgetSchedule(planned_steps=1_000)
>>> round(cpu.lambda_lr, 6), round(cpu.arc_learning_rate, 4)
(0.2, 0.02)
>>> round(BudgetSchedule(planned_steps=100).arc_learning_rate, 4)  # the travel floor: 20 / 100
0.2
>>> round(cpu.temperature(0), 3), round(cpu.temperature(1_000), 4)
(5.0, 0.0017)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .defaults import PAPER_ARC_LEARNING_RATE, PAPER_ARCH_STEPS, PAPER_LAMBDA_LR

__all__ = ['BudgetSchedule', 'PAPER_ARCH_STEPS']


@dataclass(frozen=True)
class BudgetSchedule:
    """Alpha learning rate, lambda step and temperature of a search of ``planned_steps`` alpha steps.

    Attributes
    ----------
    planned_steps
        Architecture steps the search will make (search epochs x batches per epoch).
    reference_steps
        Steps at which the base constants hold unchanged (the paper's ImageNet search).
    base_arc_learning_rate, base_lambda_lr
        The paper's alpha learning rate and lambda step at ``reference_steps``.
    initial_temperature, final_temperature
        Gumbel-softmax temperature at the first and the last planned step.
    anneal_start
        Share of the search after which the alpha learning rate may be annealed near the target.
    min_alpha_travel
        Lower bound of ``arc_learning_rate * planned_steps``: how far Adam can move a logit in all.
    """

    planned_steps: int
    reference_steps: int = PAPER_ARCH_STEPS
    base_arc_learning_rate: float = PAPER_ARC_LEARNING_RATE
    base_lambda_lr: float = PAPER_LAMBDA_LR
    initial_temperature: float = 5.0
    final_temperature: float = 5.0 * math.exp(-8.0)
    anneal_start: float = 0.75
    min_alpha_travel: float = 20.0

    def __post_init__(self) -> None:
        if not (isinstance(self.planned_steps, int) and self.planned_steps >= 1):
            raise ValueError(f'planned_steps must be an integer >= 1, got planned_steps={self.planned_steps!r}')
        if not self.reference_steps >= 1:
            raise ValueError(f'reference_steps must be >= 1, got reference_steps={self.reference_steps!r}')
        if not (self.base_arc_learning_rate > 0 and self.base_lambda_lr > 0):
            raise ValueError(f'learning rates must be > 0, got base_arc_learning_rate={self.base_arc_learning_rate!r},'
                             f' base_lambda_lr={self.base_lambda_lr!r}')
        if not 0 < self.final_temperature <= self.initial_temperature:
            raise ValueError(f'need 0 < final_temperature <= initial_temperature, got '
                             f'initial_temperature={self.initial_temperature!r}, '
                             f'final_temperature={self.final_temperature!r}')
        if not self.min_alpha_travel >= 0:
            raise ValueError(f'min_alpha_travel must be >= 0, got min_alpha_travel={self.min_alpha_travel!r}')
        if not 0 <= self.anneal_start <= 1:
            raise ValueError(f'anneal_start must be in [0, 1], got anneal_start={self.anneal_start!r}')

    @property
    def budget_ratio(self) -> float:
        """``reference_steps / planned_steps``: how much shorter this search is than the paper's."""
        return self.reference_steps / self.planned_steps

    @property
    def lambda_lr(self) -> float:
        """Lambda step that gives lambda the reference trajectory over the share of the search done."""
        return self.base_lambda_lr * self.budget_ratio

    @property
    def arc_learning_rate(self) -> float:
        """Adam learning rate of alpha: ``base * sqrt(reference / planned)``, at least ``min_alpha_travel / planned``."""
        return max(self.base_arc_learning_rate * math.sqrt(self.budget_ratio),
                   self.min_alpha_travel / self.planned_steps)

    @property
    def adam_beta2(self) -> float:
        """Adam's beta2 for alpha: a memory of a tenth of the planned steps, clipped to [100, 1000] steps."""
        memory = min(max(self.planned_steps / 10, 100.0), 1000.0)
        return 1.0 - 1.0 / memory

    def progress(self, step: int) -> float:
        """Share of the planned alpha steps done, clipped to [0, 1]."""
        return min(max(step / self.planned_steps, 0.0), 1.0)

    def temperature(self, step: int) -> float:
        """Geometric decay from ``initial_temperature`` to ``final_temperature`` over the planned steps."""
        ratio = self.final_temperature / self.initial_temperature
        return self.initial_temperature * ratio ** self.progress(step)

    def may_anneal(self, step: int) -> bool:
        """Whether the search is far enough along for the near-target learning-rate annealing."""
        return self.progress(step) >= self.anneal_start

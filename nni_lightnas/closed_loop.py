"""The closed loop after export: one round per final net measured, and when to stop.

After export the pipeline measures the final net on the device. When it misses the target
``T`` by more than ``landing_tolerance``, it corrects the latency model with that measurement
(:func:`~nni_lightnas.latency.calibration.correct_on_landings`), re-lands stage 1's export under
the corrected model, re-fits the widths and measures again, up to ``max_rounds`` rounds in all.
This module holds the record of a round (:class:`LandingRound`) and the decision after each
(:func:`landing_verdict`); the pipeline runs the stages.

Verdicts:

* ``landed``: the last round's net is within the tolerance;
* ``continue``: it is not, and a round is left;
* ``max_rounds``: it is not, and ``max_rounds`` rounds were run;
* ``no_new_net``: the corrected model re-landed on a net already measured (the loop cannot
  change anything more; stage 2 and the training would repeat).

Examples
--------
>>> first = LandingRound(round=1, arch='MBK3E3-skip-MBK5E6', target_ms=1.0, predicted_ms=1.0, measured_ms=1.15)
>>> landing_verdict([first], tolerance=0.02, max_rounds=3)
'continue'
>>> landing_verdict([first], tolerance=0.02, max_rounds=1)
'max_rounds'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

__all__ = ['LandingRound', 'VERDICTS', 'chosen_round', 'landing_verdict']

#: What :func:`landing_verdict` answers.
VERDICTS = ('landed', 'continue', 'max_rounds', 'no_new_net')


@dataclass(frozen=True)
class LandingRound:
    """One round of the closed loop: the net it exported and what it measured.

    Attributes
    ----------
    round
        1 for the pipeline's first export, then 2, 3, ...
    arch
        The stage-1 architecture of the round (LightNet string).
    target_ms
        The latency target.
    predicted_ms
        The stage-1 latency model's prediction of ``arch`` (in round 2 on: the corrected model).
    measured_ms
        The final net (stage-2 widths, trained) measured on the device (median of rounds).
    evolved_predicted_ms
        Stage 2's latency of the chosen widths, when it reported one.
    landing_factor
        The correction of the latency model this round landed under (1.0 in round 1).

    Examples
    --------
    >>> LandingRound(round=1, arch='skip-skip-skip', target_ms=2.0, predicted_ms=2.0, measured_ms=2.1).relative_error
    0.05
    """

    round: int
    arch: str
    target_ms: float
    predicted_ms: float
    measured_ms: float
    evolved_predicted_ms: float | None = None
    landing_factor: float = 1.0

    def __post_init__(self) -> None:
        if self.round < 1:
            raise ValueError(f'round must be >= 1, got round={self.round}')
        for name in ('target_ms', 'measured_ms'):
            if not getattr(self, name) > 0:
                raise ValueError(f'{name} must be a positive number of ms, got {name}={getattr(self, name)!r}')

    @property
    def relative_error(self) -> float:
        """``measured_ms / target_ms - 1``, rounded to 1e-9 (so 2.1 / 2.0 - 1 prints as 0.05)."""
        return round(self.measured_ms / self.target_ms - 1.0, 9)

    def as_dict(self) -> dict[str, Any]:
        """The round as a plain dict with its ``relative_error`` (for ``pipeline.json`` and the report)."""
        return {**asdict(self), 'relative_error': self.relative_error}


def landing_verdict(rounds: Sequence[LandingRound], *, tolerance: float, max_rounds: int) -> str:
    """What to do after the last of ``rounds``: one of :data:`VERDICTS` (``no_new_net`` is the pipeline's).

    Raises
    ------
    ValueError
        ``rounds`` is empty, ``tolerance`` is not positive or ``max_rounds`` is below 1.

    Examples
    --------
    >>> near = LandingRound(round=2, arch='skip-skip-skip', target_ms=1.0, predicted_ms=1.0, measured_ms=1.01)
    >>> landing_verdict([near], tolerance=0.02, max_rounds=3)
    'landed'
    """
    if not rounds:
        raise ValueError('landing_verdict needs at least one measured round, got none')
    if not tolerance > 0:
        raise ValueError(f'tolerance must be > 0, got tolerance={tolerance!r}')
    if max_rounds < 1:
        raise ValueError(f'max_rounds must be >= 1, got max_rounds={max_rounds}')
    if abs(rounds[-1].relative_error) <= tolerance:
        return 'landed'
    return 'max_rounds' if len(rounds) >= max_rounds else 'continue'


def chosen_round(rounds: Sequence[LandingRound]) -> LandingRound:
    """The round whose net ships: the one measured nearest the target (the earlier on a tie).

    Examples
    --------
    >>> rounds = [LandingRound(round=1, arch='a', target_ms=1.0, predicted_ms=1.0, measured_ms=1.2),
    ...           LandingRound(round=2, arch='b', target_ms=1.0, predicted_ms=1.0, measured_ms=0.95)]
    >>> chosen_round(rounds).round
    2
    """
    if not rounds:
        raise ValueError('chosen_round needs at least one measured round, got none')
    return min(rounds, key=lambda item: (abs(item.relative_error), item.round))

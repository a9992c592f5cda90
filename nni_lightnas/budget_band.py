"""The budget band of stage 2: latencies in ``[T * (1 - fill_tolerance), T]`` use the budget.

A hard budget alone lets the evolution keep a net that is much faster than the target
when its score happens to be best: budget left unused, and usually accuracy lost. The band
makes "use the budget" explicit: a candidate over ``T`` is refused, one below the band
wastes budget, and the best score *within* the band wins. :meth:`BudgetBand.distance`
measures how far a latency is from the band (0 inside), so a search can prefer the
mutations that move toward it.

Pure functions only: no latency model, no I/O.

Examples
--------
>>> band = BudgetBand(budget_ms=1.0, fill_tolerance=0.03)
>>> band.contains(0.98), band.contains(1.01), band.contains(0.90)
(True, False, False)
>>> band.best([{'score': 0.9, 'latency_ms': 0.90}, {'score': 0.8, 'latency_ms': 0.99}])['score']
0.8
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ['BudgetBand', 'DEFAULT_FILL_TOLERANCE']

_logger = logging.getLogger(__name__)

#: Share of the budget a final net may leave unused (the band's width).
DEFAULT_FILL_TOLERANCE = 0.03


@dataclass(frozen=True)
class BudgetBand:
    """The latencies ``[budget_ms * (1 - fill_tolerance), budget_ms]`` that use the budget.

    Attributes
    ----------
    budget_ms
        The hard budget ``T`` (ms): nothing above it is accepted.
    fill_tolerance
        Share of ``T`` a net may leave unused, in ``[0, 1)``; 0.03 (the default) accepts
        ``[0.97 T, T]``.

    Examples
    --------
    >>> band = BudgetBand(budget_ms=2.0)
    >>> band.lower_ms
    1.94
    >>> BudgetBand(budget_ms=2.0, fill_tolerance=1.5)
    Traceback (most recent call last):
    ...
    ValueError: fill_tolerance must be in [0, 1), got fill_tolerance=1.5
    """

    budget_ms: float
    fill_tolerance: float = DEFAULT_FILL_TOLERANCE

    def __post_init__(self) -> None:
        if not (isinstance(self.budget_ms, (int, float)) and math.isfinite(self.budget_ms) and self.budget_ms > 0):
            raise ValueError(f'budget_ms must be a positive number of ms, got budget_ms={self.budget_ms!r}')
        if not (isinstance(self.fill_tolerance, (int, float)) and 0 <= self.fill_tolerance < 1):
            raise ValueError(f'fill_tolerance must be in [0, 1), got fill_tolerance={self.fill_tolerance!r}')

    @property
    def lower_ms(self) -> float:
        """The band's lower end, ``budget_ms * (1 - fill_tolerance)``."""
        return round(self.budget_ms * (1 - self.fill_tolerance), 12)

    def contains(self, latency_ms: float) -> bool:
        """Whether ``latency_ms`` is within the band (both ends included)."""
        return self.lower_ms <= latency_ms <= self.budget_ms

    def distance(self, latency_ms: float) -> float:
        """How far ``latency_ms`` is from the band, as a share of the budget: 0 inside, ``inf`` over budget.

        Examples
        --------
        >>> band = BudgetBand(budget_ms=1.0, fill_tolerance=0.1)
        >>> band.distance(0.95), round(band.distance(0.8), 6), band.distance(1.2)
        (0.0, 0.1, inf)
        """
        if latency_ms > self.budget_ms:
            return math.inf
        return max(0.0, (self.lower_ms - latency_ms) / self.budget_ms)

    def best(self, records: Sequence[Mapping[str, Any]], *, maximize: bool = True,
             score_key: str = 'score', latency_key: str = 'latency_ms') -> Mapping[str, Any] | None:
        """The record with the best score within the band.

        When no record lies within the band, the feasible one nearest below it (the most
        budget used; best score among equals) is returned with a warning; ``None`` when no
        record is within the budget.

        Examples
        --------
        >>> band = BudgetBand(budget_ms=1.0)
        >>> band.best([{'score': 0.9, 'latency_ms': 1.2}, {'score': 0.7, 'latency_ms': 0.5},
        ...            {'score': 0.6, 'latency_ms': 0.8}])['latency_ms']
        0.8
        """
        sign = 1 if maximize else -1
        feasible = [record for record in records if record.get(latency_key) is not None
                    and record.get(score_key) is not None and float(record[latency_key]) <= self.budget_ms]
        if not feasible:
            return None
        within = [record for record in feasible if self.contains(float(record[latency_key]))]
        if within:
            return max(within, key=lambda record: sign * float(record[score_key]))
        nearest = min(feasible, key=lambda record: (self.distance(float(record[latency_key])),
                                                    -sign * float(record[score_key])))
        _logger.warning('no candidate within the budget band [%.4f, %.4f] ms; keeping the one nearest below it '
                        '(%.4f ms)', self.lower_ms, self.budget_ms, float(nearest[latency_key]))
        return nearest

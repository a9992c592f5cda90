"""The learned latency multiplier of LightNAS (lambda), as a small pure state machine.

The architecture loss is ``CE + lambda * (LAT / T - 1)``. After every architecture step,
lambda takes a gradient-ascent step on the constraint ``LAT / T - 1 = 0`` using the latency
of the current argmax architecture:

    lambda <- lambda + lambda_lr * (LAT / T - 1)

with two-sided truncation: if ``LAT > T`` while ``lambda < 0``, or ``LAT < T`` while
``lambda > 0``, lambda is reset to 0, so a multiplier left over from the other side never
pushes the wrong way. A negative lambda pulls the latency *up* to the target: LightNAS
aims at equality, not at ``LAT <= T``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .defaults import PAPER_LAMBDA_LR

__all__ = ['LatencyMultiplier']


@dataclass
class LatencyMultiplier:
    """Lambda of the LightNAS loss with its update rule.

    Attributes
    ----------
    target_ms
        The latency target T.
    lambda_lr
        Step of the gradient ascent on lambda (5e-4 in the paper's ImageNet setting).
    value
        Current lambda (starts at 0).
    truncate
        Apply the two-sided truncation.

    Examples
    --------
    >>> multiplier = LatencyMultiplier(target_ms=8.0, lambda_lr=0.25)
    >>> multiplier.update(12.0)  # 50% over target: lambda rises by 0.25 * 0.5
    0.125
    >>> multiplier.update(6.0)  # 25% under target with lambda > 0: truncated to 0
    0.0
    >>> multiplier.update(6.0)  # then falls below 0, pulling latency up
    -0.0625
    """

    target_ms: float
    lambda_lr: float = PAPER_LAMBDA_LR
    value: float = 0.0
    truncate: bool = True

    def __post_init__(self) -> None:
        if not self.target_ms > 0:
            raise ValueError(f'target_ms must be > 0, got target_ms={self.target_ms!r}')
        if not self.lambda_lr > 0:
            raise ValueError(f'lambda_lr must be > 0, got lambda_lr={self.lambda_lr!r}')

    def relative_error(self, latency_ms: float) -> float:
        """``LAT / T - 1``."""
        return latency_ms / self.target_ms - 1.0

    def update(self, latency_ms: float) -> float:
        """One ascent step from the latency of the current argmax architecture; returns the new lambda."""
        error = self.relative_error(latency_ms)
        self.value += self.lambda_lr * error
        if self.truncate and ((error > 0 and self.value < 0) or (error < 0 and self.value > 0)):
            self.value = 0.0
        return self.value

"""A fitted predictor as a :class:`~nni_lightnas.latency.model.LatencyModel` for the search."""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..graphs import GraphSpace, LightNetGraphSpace
from ..model import LatencyModel
from .base import LatencyPredictor, load_latency_predictor

__all__ = ['PredictorLatencyModel', 'load_predictor']

_logger = logging.getLogger(__name__)


class PredictorLatencyModel(LatencyModel):
    """Latency model of a LightNAS space backed by a fitted :class:`LatencyPredictor`.

    :meth:`expected_latency` feeds the per-layer op probabilities straight into the predictor
    (``softmax(alpha)`` in place of the one-hot), so the search loss gets gradients through
    the predictor.

    :meth:`latency_range` cannot sum per-layer extremes of a non-additive model; it is
    *estimated*: a greedy coordinate search (each pass tries every op of every layer and keeps
    the best change) from several starts — every layer at its cheapest / dearest op by MACs,
    every layer at the op the predictor finds fastest / slowest when the other layers are
    uniform, and random architectures — together with ``num_random`` random architectures. The
    result is the smallest and largest latency found (a lower estimate of the true range's
    width, exact for an additive predictor).

    Parameters
    ----------
    predictor
        A fitted predictor over a graph space with one slot per layer.
    labels
        Layer labels; defaults to the space's labels (``layer00``, ...) or ``slot00``, ...

    Examples
    --------
    >>> from nni_lightnas.latency.graphs import LightNetGraphSpace
    >>> from nni_lightnas.latency.predictors import make_predictor
    >>> predictor = make_predictor('additive', LightNetGraphSpace('tiny'))
    >>> _ = predictor.fit(['skip-skip-skip', 'MBK3E3-skip-skip', 'skip-MBK3E3-skip'], [1.0, 2.0, 1.5])
    >>> model = PredictorLatencyModel(predictor)
    >>> probs = {label: torch.full((7,), 1 / 7, requires_grad=True) for label in model.labels}
    >>> model.expected_latency(probs).backward()
    >>> probs['layer00'].grad.shape
    torch.Size([7])
    """

    def __init__(self, predictor: LatencyPredictor, *, labels: Sequence[str] | None = None,
                 num_random: int = 2000, seed: int = 0):
        if not predictor.is_fitted:
            raise ValueError('the predictor is not fitted')
        self.predictor = predictor
        space = predictor.space
        labels = list(labels) if labels is not None else list(
            getattr(space, 'labels', [f'slot{index:02d}' for index in range(space.num_slots)]))
        if len(labels) != space.num_slots:
            raise ValueError(f'{len(labels)} labels for a space of {space.num_slots} slots')
        self.candidates = {label: list(names) for label, names in zip(labels, space.candidates)}
        self.num_random = int(num_random)
        self.seed = int(seed)
        self._range: tuple[float, float] | None = None

    @property
    def space(self) -> GraphSpace:
        return self.predictor.space

    def _stack(self, probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        missing = [label for label in self.labels if label not in probs]
        if missing:
            raise ValueError(f'probabilities lack layers {missing}; got {sorted(probs)}')
        width = self.space.max_candidates
        rows = []
        for label in self.labels:
            vector = probs[label].float().reshape(-1)
            expected = len(self.candidates[label])
            if vector.numel() != expected:
                raise ValueError(f'{label}: {vector.numel()} probabilities for {expected} candidates')
            rows.append(torch.nn.functional.pad(vector, (0, width - expected)))
        return torch.stack(rows)

    def expected_latency(self, probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.predictor.predict_probs(self._stack(probs))

    def one_hot(self, arch: Any) -> dict[str, torch.Tensor]:
        if isinstance(arch, str):
            arch = self.space.parse(arch)
        return super().one_hot(arch)

    def predict(self, arch: Any) -> float:
        if isinstance(arch, Mapping):
            arch = [arch[label] for label in self.labels]
        return float(self.predictor.predict([arch])[0])

    def _evaluate(self, index: np.ndarray) -> np.ndarray:
        probs = torch.nn.functional.one_hot(torch.from_numpy(index), self.space.max_candidates).float()
        with torch.no_grad():
            return np.concatenate([self.predictor.predict_probs(chunk).double().numpy()
                                   for chunk in probs.split(4096)])

    def _coordinate_search(self, start: np.ndarray, sign: float) -> tuple[float, np.ndarray]:
        """Greedy: minimise ``sign * latency`` by changing one layer at a time."""
        current = start.copy()
        value = sign * self._evaluate(current[None])[0]
        sizes = [len(names) for names in self.space.candidates]
        for _ in range(50):
            moves = [(slot, op) for slot, size in enumerate(sizes) for op in range(size) if op != current[slot]]
            if not moves:
                break
            trial = np.repeat(current[None], len(moves), axis=0)
            for row, (slot, op) in enumerate(moves):
                trial[row, slot] = op
            values = sign * self._evaluate(trial)
            best = int(np.argmin(values))
            if values[best] >= value - 1e-9:
                break
            value, current = float(values[best]), trial[best]
        return sign * value, current

    def latency_range(self) -> tuple[float, float]:
        if self._range is not None:
            return self._range
        rng = np.random.default_rng(self.seed)
        sizes = np.array([len(names) for names in self.space.candidates])
        randoms = (rng.random((self.num_random, len(sizes))) * sizes).astype(np.int64)
        values = self._evaluate(randoms) if self.num_random else np.zeros(0)
        tables = self.space.tables()['numeric'][..., 7].numpy()  # MACs per (slot, op)
        masked = np.where(self.space.candidate_mask().numpy() > 0, tables, np.nan)
        starts = [np.nanargmin(masked, axis=1), np.nanargmax(masked, axis=1)]
        # per layer, the op the predictor likes best/least with the other layers uniform
        uniform = self.space.candidate_mask() / torch.tensor(sizes, dtype=torch.float32).unsqueeze(1)
        per_op = []
        for slot, size in enumerate(sizes):
            probs = uniform.repeat(size, 1, 1)
            probs[:, slot] = torch.nn.functional.one_hot(torch.arange(size), self.space.max_candidates).float()
            with torch.no_grad():
                per_op.append(self.predictor.predict_probs(probs).numpy())
        starts += [np.array([int(np.argmin(v)) for v in per_op]), np.array([int(np.argmax(v)) for v in per_op])]
        if len(values):
            starts += [randoms[int(np.argmin(values))], randoms[int(np.argmax(values))]]
        low = min(self._coordinate_search(start, 1.0)[0] for start in starts)
        high = max(self._coordinate_search(start, -1.0)[0] for start in starts)
        if len(values):
            low, high = min(low, float(values.min())), max(high, float(values.max()))
        self._range = (float(low), float(high))
        return self._range

    def check_compatible(self, space: Any = None, **_: Any) -> None:
        """Raise ``ValueError`` unless the predictor was fitted for ``space`` (a preset or config)."""
        if space is None:
            return
        mine = self.space
        if not isinstance(mine, LightNetGraphSpace):
            raise ValueError(f'the predictor is for space {mine.name!r}, not a LightNAS preset')
        from nni_lightnas.search_spaces.resolve import resolve_space
        config, candidates = resolve_space(space)
        if config.fingerprint() != mine.config.fingerprint():
            raise ValueError(f'the predictor was fitted for preset {mine.config.name!r} (fingerprint '
                             f'{mine.config.fingerprint()}), not for {config.name!r} ({config.fingerprint()})')
        for label, ops in candidates.items():
            absent = [op for op in ops if op not in self.candidates.get(label, [])]
            if absent:
                raise ValueError(f'the predictor knows no ops {absent} at {label}; refit it for this space')

    def describe(self) -> str:
        low, high = self.latency_range()
        return (f'{self.predictor.kind} predictor over {self.space.name} fitted on '
                f'{self.predictor.fit_info.get("num_train")} archs, range {low:.3f}-{high:.3f} ms (estimated)')

    def __repr__(self) -> str:
        return f'PredictorLatencyModel({self.predictor!r})'


def load_predictor(directory: str | os.PathLike) -> PredictorLatencyModel:
    """Load a predictor directory (``nni-lightnas predictor fit -o DIR``) as a latency model.

    Examples
    --------
    A predictor fitted on two measured archs of the ``tiny`` preset, saved and loaded back:

    >>> from nni_lightnas.latency.graphs import LightNetGraphSpace
    >>> from nni_lightnas.latency.predictors import AdditivePredictor
    >>> fitted = AdditivePredictor(LightNetGraphSpace('tiny')).fit(['skip-skip-skip', 'MBK3E3-skip-skip'],
    ...                                                             [1.0, 2.0])
    >>> model = load_predictor(fitted.save('predictor'))
    >>> round(model.predict('MBK3E3-skip-skip'), 3)
    2.0
    """
    return PredictorLatencyModel(load_latency_predictor(directory))

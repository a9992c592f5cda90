"""Which few architectures to measure on a new device: ones spread over the space's cost range.

A predictor fitted on 20 measurements learns most from architectures that cover the range the
search will move through, from the cheapest to the dearest, rather than 20 random ones (which
bunch around the middle: a sum of per-layer costs is close to normal). :func:`spread_architectures`
ranks a seeded pool of random architectures by total MACs (the space's op features, no device
needed) and takes evenly spaced ranks, with the cheapest and the dearest architecture of the
space (each layer at its fewest / most MACs) at the ends.

Examples
--------
>>> from nni_lightnas.latency.graphs import LightNetGraphSpace
>>> archs = spread_architectures(LightNetGraphSpace('tiny'), 5, seed=0)
>>> len(archs), archs[0]
(5, 'skip-skip-skip')
"""

from __future__ import annotations

import logging

import numpy as np

from ..graphs import NUMERIC_FEATURES, GraphSpace

__all__ = ['spread_architectures', 'architecture_macs']

_logger = logging.getLogger(__name__)


def architecture_macs(space: GraphSpace, index: np.ndarray) -> np.ndarray:
    """Total MACs (millions) of architectures given as ``(n, num_slots)`` candidate indices.

    Examples
    --------
    >>> from nni_lightnas.latency.graphs import LightNetGraphSpace
    >>> space = LightNetGraphSpace('tiny')
    >>> float(architecture_macs(space, space.indices(['skip-skip-skip']))[0]) >= 0
    True
    """
    macs = space.tables()['numeric'][..., NUMERIC_FEATURES.index('macs_m')].double().numpy()
    index = np.asarray(index, dtype=np.int64).reshape(-1, space.num_slots)
    return macs[np.arange(space.num_slots), index].sum(axis=1)


def spread_architectures(space: GraphSpace, num_archs: int, *, seed: int = 0, pool_size: int = 5000) -> list[str]:
    """``num_archs`` distinct architectures at evenly spaced ranks of total MACs.

    Parameters
    ----------
    space
        The graph space (its op features give each architecture's MACs).
    num_archs
        How many; at least 2 (the cheapest and the dearest), at most the number of distinct
        architectures the pool holds.
    seed
        Seed of the random pool.
    pool_size
        Random architectures drawn before ranking (duplicates dropped).

    Examples
    --------
    >>> from nni_lightnas.latency.graphs import LightNetGraphSpace
    >>> spread_architectures(LightNetGraphSpace('tiny'), 1)
    Traceback (most recent call last):
    ...
    ValueError: num_archs must be at least 2 (the cheapest and the dearest architecture), got num_archs=1
    """
    if isinstance(num_archs, bool) or not isinstance(num_archs, (int, np.integer)) or num_archs < 2:
        raise ValueError(f'num_archs must be at least 2 (the cheapest and the dearest architecture), '
                         f'got {num_archs=}')
    sizes = np.array([len(names) for names in space.candidates])
    macs = space.tables()['numeric'][..., NUMERIC_FEATURES.index('macs_m')].numpy()
    masked = np.where(space.candidate_mask().numpy() > 0, macs, np.nan)
    cheapest, dearest = np.nanargmin(masked, axis=1), np.nanargmax(masked, axis=1)
    rng = np.random.default_rng(seed)
    randoms = (rng.random((int(pool_size), len(sizes))) * sizes).astype(np.int64)
    pool = np.unique(np.vstack([cheapest[None], dearest[None], randoms]), axis=0)
    if num_archs > len(pool):
        raise ValueError(f'num_archs={num_archs} is more than the {len(pool)} distinct architectures drawn from '
                         f'space {space.name!r} (pool_size={pool_size}); ask for fewer')
    costs = architecture_macs(space, pool)
    # ties broken by the pool's (sorted) order, so the choice depends on the seed only
    order = np.lexsort((np.arange(len(pool)), costs))
    ranks = np.unique(np.round(np.linspace(0, len(pool) - 1, num_archs)).astype(np.int64))
    chosen = pool[order[ranks]]
    _logger.info('%d architectures spread over %.3g-%.3g M MACs', len(chosen), costs.min(), costs.max())
    return [space.format([space.candidates[slot][op] for slot, op in enumerate(row)]) for row in chosen]

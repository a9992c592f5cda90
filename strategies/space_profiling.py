"""BBSSP: black-box search space profiling (Zeng et al., ASP-DAC 2020).

Before searching, pick *which* blocks to search over, from what the target device and the
data say. For each candidate block family (:data:`~nni_lightnas.search_spaces.families.FAMILIES`):

1. build the search space base networks on the LightNAS macro-structure of a preset:
   SSBN_0 has the family's typical block in every searchable layer; SSBN_(i<-j) swaps
   layer ``i`` to op ``j`` of the family;
2. train SSBN_0 briefly (``base_steps``), then fine-tune SSBN_0 and every swap from those
   weights for ``finetune_steps`` (same batches for all; a swapped layer starts fresh),
   and take each one's accuracy on a held-out slice;
3. measure every base network on the device (whole networks, interleaved, ``rounds``
   times: :func:`~nni_lightnas.latency.whole_network.measure_archs`);
4. compute the cost of each (layer, op)::

       cost = exp(-(acc - theta) / s) + lam * (-1 / latency_ms)

   ``acc`` is the accuracy of SSBN_(i<-j) as a fraction, ``latency_ms`` its measured median.
   **Lower is better.** The first term falls as accuracy rises (it is 1 at ``acc = theta``
   and is multiplied by e for each ``s`` of accuracy lost). The second term is
   ``-lam / latency_ms``: its derivative in latency is ``+lam / latency_ms**2 > 0``, so a
   faster network has the lower (more negative) cost. So both terms agree that lower cost
   is better; ``lam`` trades milliseconds for accuracy. Note the latency term is hyperbolic:
   the same 0.1 ms saving weighs more in a fast network than in a slow one, and its scale
   depends on the device and batch, so ``lam`` is tied to them (re-select with another
   ``lam`` without re-profiling: :meth:`ProfilingResult.reselect`);
5. keep, per layer, the ``selection_size`` lowest-cost ops; choose the family whose kept
   ops have the lowest mean cost (or, with ``mix_families=True``, keep the lowest-cost ops
   of all families together), and emit the reduced NNI model space
   (:meth:`ProfilingResult.space`, a ``LightNASSpace`` with ``op_names`` per layer and the
   usual ``layer00`` ... labels) and the report (:attr:`ProfilingResult.table`).

The LightNAS strategy then searches the reduced space (build its LUT with
:func:`~nni_lightnas.latency.lut_build.build_lut` on ``result.space()``).

Examples
--------
>>> from nni_lightnas.latency import LocalDevice
>>> config = ProfilingConfig(preset='tiny', base_steps=20, finetune_steps=5)  # doctest: +SKIP
>>> result = profile_search_space(config, LocalDevice(num_runs=30))  # doctest: +SKIP
>>> result.family, result.candidates['layer00']  # doctest: +SKIP
('inverted_residual', ['MBK3E3', 'skip', 'MBK5E3'])
>>> space = result.space()  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ._training import evaluate_accuracy, train_steps

__all__ = ['ProfilingConfig', 'ProfilingResult', 'bbssp_cost', 'select_candidates', 'profile_search_space',
           'ssbn_archs', 'load_profiling_data']

_logger = logging.getLogger(__name__)

#: Columns of the profiling table, in order.
TABLE_COLUMNS = ['family', 'layer', 'op', 'is_typical', 'arch', 'accuracy', 'latency_ms', 'p25_ms', 'p75_ms',
                 'finetune_loss', 'cost']


def bbssp_cost(accuracy: Any, latency_ms: Any, *, theta: float, s: float = 0.05, lam: float = 1.0) -> Any:
    """The BBSSP cost ``exp(-(accuracy - theta) / s) + lam * (-1 / latency_ms)``; lower is better.

    Works on floats, NumPy arrays and pandas Series.

    Parameters
    ----------
    accuracy
        Accuracy as a fraction in [0, 1].
    latency_ms
        Measured latency in ms (> 0).
    theta
        Accuracy at which the accuracy term equals 1.
    s
        Accuracy scale: each ``s`` of accuracy lost multiplies the accuracy term by e.
    lam
        Weight of the latency term ``-1 / latency_ms`` (in ms); larger favours faster blocks.

    Examples
    --------
    >>> round(bbssp_cost(0.85, 2.0, theta=0.85, s=0.05, lam=1.0), 4)
    0.5
    >>> bbssp_cost(0.86, 2.0, theta=0.85) < bbssp_cost(0.85, 2.0, theta=0.85)   # more accurate: lower
    True
    >>> bbssp_cost(0.85, 1.5, theta=0.85) < bbssp_cost(0.85, 2.0, theta=0.85)   # faster: lower
    True
    """
    if not s > 0:
        raise ValueError(f's must be > 0, got {s=}')
    latency = np.asarray(latency_ms, dtype=float)
    if np.any(~(latency > 0)):
        raise ValueError(f'latency_ms must be > 0, got {latency_ms!r}')
    result = np.exp(-(np.asarray(accuracy, dtype=float) - theta) / s) + lam * (-1.0 / latency)
    if isinstance(accuracy, pd.Series):
        return pd.Series(result, index=accuracy.index)
    return float(result) if np.ndim(result) == 0 else result


@dataclass
class ProfilingConfig:
    """Settings of one BBSSP profiling run.

    Attributes
    ----------
    preset
        The LightNAS macro-structure (preset name or ``SpaceConfig``) the families fill.
    families
        Block families to profile (names in ``FAMILIES``); at least one.
    theta
        Accuracy (fraction) at which the accuracy term is 1. ``None`` (default): the median
        accuracy of all profiled networks, so the term is about 1 for a typical block.
    s
        Accuracy scale of the cost (default 0.05: 5 points of accuracy lost multiply the
        accuracy term by e).
    lam
        Weight of the latency term ``-1 / latency_ms`` (default 1.0). Its useful size depends
        on the latencies: at latency ``L`` ms, a saving of ``dL`` ms lowers the cost by about
        ``lam * dL / L**2``. With the default batch-32 Fashion-MNIST nets (about 1-3 ms on this
        CPU), ``lam = 1`` weighs a 10% latency saving like about 2-3 points of accuracy.
    selection_size
        Ops kept per layer (default 3).
    mix_families
        Keep the lowest-cost ops of all families together instead of one family.
    base_steps
        Training steps of SSBN_0.
    finetune_steps
        Fine-tuning steps of SSBN_0 and of each swap, from SSBN_0's weights.
    batch_size, learning_rate, finetune_learning_rate
        SGD of the short runs (cosine to 0 over ``base_steps``; constant when fine-tuning).
    train_limit, val_limit
        The first ``train_limit`` Fashion-MNIST training examples train; the next ``val_limit``
        give the accuracies (the test split is left untouched).
    latency_batch
        Batch of the measured networks; ``None``: 32 for the small presets (DESIGN section 4).
    rounds
        Interleaved measurement rounds (the median over rounds is kept).
    seed
        Seeds initialisation and batch order.
    """

    preset: Any = 'fashion_mnist'
    families: Sequence[str] = ('inverted_residual', 'residual')
    theta: float | None = None
    s: float = 0.05
    lam: float = 1.0
    selection_size: int = 3
    mix_families: bool = False
    base_steps: int = 200
    finetune_steps: int = 20
    batch_size: int = 64
    learning_rate: float = 0.05
    finetune_learning_rate: float = 0.01
    train_limit: int = 5000
    val_limit: int = 1000
    latency_batch: int | None = None
    rounds: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        from nni_lightnas.search_spaces.families import get_family
        if isinstance(self.families, str):
            self.families = (self.families,)
        self.families = tuple(self.families)
        if not self.families:
            raise ValueError('families must name at least one block family')
        for name in self.families:
            get_family(name)  # raises for unknown names
        if len(set(self.families)) != len(self.families):
            raise ValueError(f'families must not repeat, got {list(self.families)}')
        if not self.s > 0:
            raise ValueError(f's must be > 0, got s={self.s!r}')
        if not (isinstance(self.selection_size, int) and self.selection_size >= 1):
            raise ValueError(f'selection_size must be an integer >= 1, got selection_size={self.selection_size!r}')
        for name in ('base_steps', 'finetune_steps'):
            if getattr(self, name) < 0:
                raise ValueError(f'{name} must be >= 0, got {name}={getattr(self, name)!r}')
        for name in ('batch_size', 'train_limit', 'val_limit', 'rounds'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name} must be >= 1, got {name}={getattr(self, name)!r}')
        if self.theta is not None and not 0 <= self.theta <= 1:
            raise ValueError(f'theta is an accuracy fraction in [0, 1] (or None), got theta={self.theta!r}')

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data['families'] = list(self.families)
        if not isinstance(self.preset, str):
            data['preset'] = self.preset.to_dict()
        return data


def ssbn_archs(preset: Any, family: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """The base networks of one family: ``(layer, op, arch)`` for SSBN_0 and every swap.

    SSBN_0 comes first with layer ``'base'``; then SSBN_(i<-j) for every layer ``i`` and
    every op ``j`` of the family other than the typical block.

    Examples
    --------
    >>> rows = ssbn_archs('tiny', 'residual')
    >>> rows[0]
    ('base', 'RBK3', ('RBK3', 'RBK3', 'RBK3'))
    >>> rows[1]
    ('layer00', 'RBK5', ('RBK5', 'RBK3', 'RBK3'))
    >>> len(rows)  # 1 + 3 layers x 3 other ops
    10
    """
    from nni_lightnas.search_spaces import layer_specs, resolve_config
    from nni_lightnas.search_spaces.families import get_family
    config = resolve_config(preset)
    fam = get_family(family)
    base = tuple(fam.typical_op for _ in range(config.num_layers))
    rows = [('base', fam.typical_op, base)]
    for spec in layer_specs(config):
        for op in fam.op_names:
            if op != fam.typical_op:
                arch = list(base)
                arch[spec.index] = op
                rows.append((spec.label, op, tuple(arch)))
    return rows


def _select(table: pd.DataFrame, labels: Sequence[str], selection_size: int, *,
            family: str | None, mix_families: bool) -> tuple[str, dict[str, list[str]], pd.DataFrame]:
    per_layer = table[table['layer'] != 'base']
    scores = []
    choices: dict[str, dict[str, list[str]]] = {}
    for name, rows in per_layer.groupby('family', sort=False):
        kept = {label: rows[rows['layer'] == label].sort_values(['cost', 'op'])['op'].tolist()[:selection_size]
                for label in labels}
        kept_cost = [rows[(rows['layer'] == label) & rows['op'].isin(ops)]['cost'].mean()
                     for label, ops in kept.items()]
        base_rows = table[(table['family'] == name) & (table['layer'] == 'base')]
        scores.append({'family': name, 'selected_mean_cost': float(np.mean(kept_cost)),
                       'mean_cost': float(rows['cost'].mean()),
                       'base_cost': float(base_rows['cost'].iloc[0]) if len(base_rows) else math.nan,
                       'base_accuracy': float(base_rows['accuracy'].iloc[0]) if len(base_rows) else math.nan,
                       'base_latency_ms': float(base_rows['latency_ms'].iloc[0]) if len(base_rows) else math.nan})
        choices[name] = kept
    score_table = pd.DataFrame(scores).sort_values('selected_mean_cost', kind='stable').reset_index(drop=True)
    if mix_families:
        candidates = {}
        for label in labels:
            rows = per_layer[per_layer['layer'] == label].sort_values(['cost', 'op'])
            # skip is profiled in every family: keep its best row only
            candidates[label] = list(dict.fromkeys(rows['op']))[:selection_size]
        return 'mixed', candidates, score_table
    if family is None:
        family = str(score_table['family'].iloc[0])
    elif family not in choices:
        raise ValueError(f'family {family!r} was not profiled; profiled: {list(choices)}')
    return family, choices[family], score_table


def select_candidates(table: pd.DataFrame, *, selection_size: int = 3, theta: float | None = None,
                      s: float = 0.05, lam: float = 1.0, family: str | None = None,
                      mix_families: bool = False) -> tuple[str, dict[str, list[str]], pd.DataFrame]:
    """Cost every (layer, op) of a profiling table and pick the family and candidates.

    Parameters
    ----------
    table
        Rows with ``family``, ``layer`` (``'base'`` for SSBN_0), ``op``, ``accuracy``,
        ``latency_ms`` (the ``cost`` column is recomputed in place).
    selection_size, theta, s, lam, mix_families
        See :class:`ProfilingConfig`.
    family
        Force this family instead of the lowest-cost one.

    Returns
    -------
    tuple
        ``(family, candidates, family_scores)``: the chosen family (``'mixed'`` with
        ``mix_families``), label -> kept ops (lowest cost first), and one row per family
        (``selected_mean_cost``, ``mean_cost``, ``base_cost``, ...), best first.

    Examples
    --------
    >>> table = pd.DataFrame({'family': ['f'] * 4, 'layer': ['base', 'layer00', 'layer00', 'layer00'],
    ...                       'op': ['a', 'a', 'b', 'c'], 'accuracy': [0.8, 0.8, 0.7, 0.82],
    ...                       'latency_ms': [1.0, 1.0, 1.0, 1.2]})
    >>> select_candidates(table, selection_size=2, theta=0.8)[1]
    {'layer00': ['c', 'a']}
    """
    if not (isinstance(selection_size, int) and selection_size >= 1):
        raise ValueError(f'selection_size must be an integer >= 1, got {selection_size=}')
    if theta is None:
        theta = float(table['accuracy'].median())
    table['cost'] = bbssp_cost(table['accuracy'], table['latency_ms'], theta=theta, s=s, lam=lam)
    labels = [label for label in dict.fromkeys(table['layer']) if label != 'base']
    return _select(table, labels, selection_size, family=family, mix_families=mix_families)


@dataclass
class ProfilingResult:
    """What :func:`profile_search_space` found.

    Attributes
    ----------
    table
        One row per base network (SSBN_0 as layer ``'base'``, and each (layer, op); the
        typical op of a layer repeats SSBN_0's numbers): family, layer, op, is_typical, arch,
        accuracy, latency_ms, p25_ms, p75_ms, finetune_loss, cost.
    family
        The chosen family (``'mixed'`` when families were mixed).
    candidates
        Layer label -> kept ops, lowest cost first.
    family_scores
        One row per family (mean cost of the kept ops, of all ops, of SSBN_0), best first.
    config
        The settings.
    theta
        The theta used (the median accuracy when the config left it ``None``).
    seconds
        Wall time of training and measuring.
    device
        Name of the measuring device; ``facts`` holds measurement details.
    """

    table: pd.DataFrame
    family: str
    candidates: dict[str, list[str]]
    family_scores: pd.DataFrame
    config: ProfilingConfig
    theta: float
    seconds: float = 0.0
    device: str = ''
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def space_config(self):
        from nni_lightnas.search_spaces import resolve_config
        return resolve_config(self.config.preset)

    def reduced_size(self) -> int:
        """Number of architectures of the reduced space."""
        return int(np.prod([len(ops) for ops in self.candidates.values()], dtype=object))

    def full_size(self) -> int:
        """Number of architectures of the full LightNAS space (seven ops per layer)."""
        from nni_lightnas.search_spaces import OP_NAMES
        return len(OP_NAMES) ** len(self.candidates)

    def space(self, **kwargs: Any):
        """The reduced NNI model space: a ``LightNASSpace`` restricted to :attr:`candidates`.

        Examples
        --------
        >>> space = result.space()  # doctest: +SKIP
        >>> space.candidates['layer00']  # doctest: +SKIP
        ['MBK3E3', 'skip', 'MBK5E3']
        """
        from nni_lightnas.search_spaces import LightNASSpace
        return LightNASSpace(self.config.preset, op_names=self.candidates, **kwargs)

    def reselect(self, *, theta: float | None = None, s: float | None = None, lam: float | None = None,
                 selection_size: int | None = None, family: str | None = None,
                 mix_families: bool | None = None) -> 'ProfilingResult':
        """The same measurements selected with other cost settings (no training, no measuring).

        Unset arguments keep the config's values; ``theta=None`` keeps the config's rule.
        """
        config = dataclasses.replace(
            self.config, theta=self.config.theta if theta is None else theta,
            s=self.config.s if s is None else s, lam=self.config.lam if lam is None else lam,
            selection_size=self.config.selection_size if selection_size is None else selection_size,
            mix_families=self.config.mix_families if mix_families is None else mix_families)
        table = self.table.copy()
        used_theta = float(table['accuracy'].median()) if config.theta is None else config.theta
        chosen, candidates, scores = select_candidates(table, selection_size=config.selection_size,
                                                       theta=used_theta, s=config.s, lam=config.lam,
                                                       family=family, mix_families=config.mix_families)
        return dataclasses.replace(self, table=table, family=chosen, candidates=candidates, family_scores=scores,
                                   config=config, theta=used_theta)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (family, candidates, sizes, scores, settings)."""
        return {'family': self.family, 'candidates': self.candidates, 'reduced_space_size': self.reduced_size(),
                'full_space_size': self.full_size(), 'theta': self.theta, 's': self.config.s,
                'lam': self.config.lam, 'selection_size': self.config.selection_size,
                'family_scores': self.family_scores.to_dict('records'), 'seconds': self.seconds,
                'device': self.device, 'facts': self.facts, 'config': self.config.to_dict(),
                'num_networks': int((~self.table['is_typical'] | (self.table['layer'] == 'base')).sum())}

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``report.csv`` (the table), ``candidates.json`` and ``summary.json`` into ``directory``."""
        output = Path(directory)
        output.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(output / 'report.csv', index=False)
        (output / 'candidates.json').write_text(json.dumps(
            {'preset': self.config.to_dict()['preset'], 'family': self.family, 'op_names': self.candidates},
            indent=2))
        (output / 'summary.json').write_text(json.dumps(self.summary(), indent=2, default=float))
        return output


def load_profiling_data(train_limit: int, val_limit: int, root: str | os.PathLike | None = None
                        ) -> tuple[Dataset, Dataset]:
    """First ``train_limit`` Fashion-MNIST training examples, and the next ``val_limit`` held out.

    Examples
    --------
    >>> train, val = load_profiling_data(100, 50)  # doctest: +SKIP
    >>> len(train), len(val)  # doctest: +SKIP
    (100, 50)
    """
    from torch.utils.data import TensorDataset

    from nni_lightnas.data import load_fashion_mnist
    data = load_fashion_mnist('train', root, limit=train_limit + val_limit)
    x, y = data.tensors
    if len(x) < train_limit + val_limit:
        raise ValueError(f'Fashion-MNIST has {len(x)} training examples, fewer than '
                         f'train_limit + val_limit = {train_limit + val_limit}')
    return (TensorDataset(x[:train_limit], y[:train_limit]),
            TensorDataset(x[train_limit:train_limit + val_limit], y[train_limit:train_limit + val_limit]))


def _transfer(source: Mapping[str, torch.Tensor], target: torch.nn.Module, skip_prefix: str | None) -> int:
    """Copy matching tensors of ``source`` into ``target`` except under ``skip_prefix``; returns the count."""
    state = target.state_dict()
    copied = 0
    for key, value in source.items():
        if skip_prefix is not None and key.startswith(skip_prefix):
            continue
        if key in state and state[key].shape == value.shape:
            state[key] = value.clone()
            copied += 1
    target.load_state_dict(state)
    return copied


def profile_search_space(config: ProfilingConfig, device, *, train_data: Dataset | None = None,
                         val_data: Dataset | None = None, data_root: str | os.PathLike | None = None,
                         on_network: Callable[[dict[str, Any]], None] | None = None) -> ProfilingResult:
    """Profile block families on ``device`` and select the reduced search space (BBSSP).

    Parameters
    ----------
    config
        :class:`ProfilingConfig`.
    device
        A :class:`~nni_lightnas.latency.device.Device` (e.g. ``LocalDevice(clock='cpu')`` on
        a shared machine).
    train_data, val_data
        Datasets of 1x28x28-shaped inputs; default: Fashion-MNIST slices
        (:func:`load_profiling_data` with ``config.train_limit`` / ``config.val_limit``).
    data_root
        Fashion-MNIST directory for the default data.
    on_network
        Called with each trained network's row (family, layer, op, accuracy, ...).

    Returns
    -------
    ProfilingResult
    """
    from nni_lightnas.latency.lut_build import default_batch
    from nni_lightnas.latency.whole_network import measure_archs
    from nni_lightnas.search_spaces import LightNet, layer_specs, resolve_config
    from nni_lightnas.search_spaces.families import get_family

    space_config = resolve_config(config.preset)
    if train_data is None or val_data is None:
        loaded_train, loaded_val = load_profiling_data(config.train_limit, config.val_limit, data_root)
        train_data = loaded_train if train_data is None else train_data
        val_data = loaded_val if val_data is None else val_data
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for family_name in config.families:
        family = get_family(family_name)
        networks = ssbn_archs(space_config, family.name)
        torch.manual_seed(config.seed)
        base = LightNet(networks[0][2], space_config)
        base_loss = train_steps(base, train_data, steps=config.base_steps, batch_size=config.batch_size,
                                learning_rate=config.learning_rate, seed=config.seed)
        base_state = copy.deepcopy(base.state_dict())
        _logger.info('%s: SSBN_0 (%s) trained %d steps, loss %.4f', family.name, family.typical_op,
                     config.base_steps, base_loss)
        for layer, op, arch in networks:
            torch.manual_seed(config.seed + 1)  # the swapped layer's fresh weights
            net = LightNet(arch, space_config)
            index = None if layer == 'base' else int(layer[len('layer'):])
            _transfer(base_state, net, None if index is None else f'layers.{index}.')
            loss = train_steps(net, train_data, steps=config.finetune_steps, batch_size=config.batch_size,
                               learning_rate=config.finetune_learning_rate, cosine=False, seed=config.seed + 1)
            accuracy = evaluate_accuracy(net, val_data)
            row = {'family': family.name, 'layer': layer, 'op': op, 'is_typical': op == family.typical_op,
                   'arch': '-'.join(arch), 'accuracy': accuracy, 'finetune_loss': loss}
            rows.append(row)
            _logger.info('%s %-8s %-8s acc %.4f', family.name, layer, op, accuracy)
            if on_network is not None:
                on_network(dict(row))
    batch = default_batch(space_config) if config.latency_batch is None else int(config.latency_batch)
    measured = measure_archs(space_config, [row['arch'] for row in rows], device, batch=batch,
                             rounds=config.rounds)
    for row, result in zip(rows, measured):
        row.update(latency_ms=result['median_ms'], p25_ms=result['p25_ms'], p75_ms=result['p75_ms'])
    # The typical op of each layer is SSBN_0 itself: repeat its row under every layer label.
    labels = [spec.label for spec in layer_specs(space_config)]
    table_rows = list(rows)
    for row in rows:
        if row['layer'] == 'base':
            table_rows.extend({**row, 'layer': label} for label in labels)
    table = pd.DataFrame(table_rows)
    order = {name: i for i, name in enumerate(config.families)}
    table['_family_order'] = table['family'].map(order)
    table['_layer_order'] = table['layer'].map(lambda label: -1 if label == 'base' else int(label[5:]))
    table = table.sort_values(['_family_order', '_layer_order', 'is_typical'], ascending=[True, True, False],
                              kind='stable').drop(columns=['_family_order', '_layer_order']).reset_index(drop=True)
    table = table.reindex(columns=[c for c in TABLE_COLUMNS if c != 'cost'])
    theta = float(table['accuracy'].median()) if config.theta is None else float(config.theta)
    family, candidates, scores = select_candidates(table, selection_size=config.selection_size, theta=theta,
                                                   s=config.s, lam=config.lam, mix_families=config.mix_families)
    seconds = time.perf_counter() - start
    facts = {'latency_batch': batch, 'rounds': config.rounds, 'num_runs': getattr(device, 'num_runs', None),
             'clock': getattr(device, 'clock', 'wall'), 'threads': getattr(device, 'threads', None)}
    _logger.info('BBSSP chose %s: %s', family, candidates)
    return ProfilingResult(table=table, family=family, candidates=candidates, family_scores=scores, config=config,
                           theta=theta, seconds=seconds, device=getattr(device, 'name', type(device).__name__),
                           facts=facts)

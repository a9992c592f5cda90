"""Per-op latency lookup tables (LUTs): the table, its file format and its compatibility checks.

A LUT holds the measured latency of every candidate op at every searchable layer, each
timed as a tiny ONNX model with its real input shape (batch included), plus the fixed
parts of the network (stem with the fixed first block, head). The predicted latency of
an architecture is the sum of its rows (:class:`LatencyLUT`).

Every timed call carries a fixed cost (session run, output allocation and copy) that a
per-op sum would count once per op. The builder measures an ``Identity`` model at each
output shape and subtracts it from the rows with that shape, then adds the cost of one
call (an ``Identity`` at the network's output shape) once, as the fixed row ``call``.

The table is measured row by row (:func:`~nni_lightnas.latency.lut_build.build_lut`): a crash or Ctrl-C loses no finished
measurement, and a rerun with the same settings measures only the missing rows. A LUT
built for another space, input size or batch is refused (:class:`LUTMismatchError`).

File format: CSV whose first line is ``# nni-lightnas-lut {json metadata}``; Parquet (when
``pyarrow`` is installed) keeps the same metadata in the schema.

Examples
--------
>>> from nni_lightnas.latency import LocalDevice
>>> from nni_lightnas.latency.lut_build import build_lut
>>> lut = build_lut('tiny', LocalDevice(num_runs=5, num_warmup_runs=1), batch=2)  # doctest: +SKIP
>>> lut.predict('MBK3E6-skip-MBK7E3') > 0  # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from .depth_gates import (active_mask, active_probabilities, active_weights, check_gates, gated_range,
                          gates_from_metadata)
from .journal import JournalFormatError, JournalTable, read_journal, write_table
from .model import LatencyModel
from ..atomic import atomic_write
from ..search_spaces.resolve import is_foreign_space, resolve_space

__all__ = ['LUT_FORMAT', 'COLUMNS', 'LUTMismatchError', 'LUTFormatError', 'LatencyLUT', 'check_space_compatible']

_logger = logging.getLogger(__name__)

LUT_FORMAT = 'nni-lightnas-lut/1'
_HEADER_PREFIX = '# nni-lightnas-lut '
#: Columns of a LUT table, in file order.
COLUMNS = ['kind', 'layer', 'op', 'latency_ms', 'median_ms', 'p25_ms', 'p75_ms', 'overhead_ms', 'cv', 'runs',
           'stable', 'input_shape', 'output_shape', 'measured_at', 'energy_mj']
#: Row kinds: ``overhead`` rows (an Identity per output shape) are only subtracted; ``fixed``
#: rows (call, stem, head, corrections) are added once; ``op`` rows are the searchable choices.
KINDS = ('overhead', 'fixed', 'op')
#: Metadata keys that must agree between a LUT and what it is used for (or resumed with).
_IDENTITY_KEYS = ('input_size', 'in_chans', 'space_fingerprint', 'batch', 'device', 'threads', 'clock')


class LUTMismatchError(ValueError):
    """A LUT was built for another space, input size, batch or device than the one asked for."""


class LUTFormatError(LUTMismatchError):
    """A file is not a LUT, or a line of it is torn, malformed or in conflict with another (file and line named)."""


def _shape_key(shape: Sequence[int]) -> str:
    return 'x'.join(str(int(d)) for d in shape)


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _check_identity(found: Mapping[str, Any], expected: Mapping[str, Any], source: str) -> None:
    if found.get('format') != LUT_FORMAT:
        raise LUTMismatchError(f'{source} is not an nni-lightnas LUT (format {found.get("format")!r}, '
                               f'expected {LUT_FORMAT!r})')
    for key in _IDENTITY_KEYS:
        if key in expected and expected[key] is not None and found.get(key) != expected[key]:
            what = {'space_fingerprint': 'another search space (fingerprint)', 'input_size': 'another input size',
                    'in_chans': 'another number of input channels', 'batch': 'another batch',
                    'device': 'another device', 'threads': 'another thread count',
                    'clock': 'another clock'}[key]
            raise LUTMismatchError(f'{source} was built for {what}: {key}={found.get(key)!r}, but '
                                   f'{key}={expected[key]!r} was asked for (preset {found.get("preset")!r} vs '
                                   f'{expected.get("preset")!r}); rebuild it or pass the matching LUT')


# ---------------------------------------------------------------------------------------------
# file I/O


def _space_name(space: nn.Module) -> str:
    return f'{type(space).__module__}:{type(space).__qualname__}'


def check_space_compatible(lut: LatencyLUT, space: nn.Module, *, source: str = 'the LUT') -> None:
    """Raise :class:`LUTMismatchError` unless ``lut`` covers every choice of ``space`` (and, from a file, its fingerprint).

    Examples
    --------
    >>> check_space_compatible(LatencyLUT.load('lut_kws.csv'), MySpace())  # doctest: +SKIP
    """
    from nni_lightnas.search_spaces.nni_space import space_candidates, space_fingerprint
    candidates = space_candidates(space)
    found = lut.metadata.get('space_fingerprint')
    if 'format' in lut.metadata and found != space_fingerprint(space):
        raise LUTMismatchError(f'{source} was built for another space (fingerprint {found!r}, space '
                               f'{lut.metadata.get("space")!r}) than {_space_name(space)} (fingerprint '
                               f'{space_fingerprint(space)!r}); rebuild it for this space')
    for label, ops in candidates.items():
        absent = [op for op in ops if op not in lut.candidates.get(label, [])]
        if absent:
            raise LUTMismatchError(f'{source} has no rows for layer {label!r} ops {absent} (it has layers '
                                   f'{lut.labels}); rebuild it for this space')
    extra = sorted(set(lut.labels) - set(candidates))
    if extra:
        raise LUTMismatchError(f'{source} has layers {extra} that are not choices of {_space_name(space)}')


_REQUIRED = ('kind', 'layer', 'op', 'latency_ms', 'median_ms')
_NUMERIC = ('latency_ms', 'median_ms', 'p25_ms', 'p75_ms', 'overhead_ms', 'cv', 'runs', 'energy_mj')


def _read_csv(path: Path, *, strict: bool = True) -> JournalTable:
    """A CSV LUT: every line checked (see :mod:`~nni_lightnas.latency.journal`), bad kinds refused."""
    try:
        found = read_journal(path, prefix=_HEADER_PREFIX, key=('layer', 'op'), required=_REQUIRED,
                             numeric=_NUMERIC, dtype={'layer': str, 'op': str}, strict=strict)
    except JournalFormatError as error:
        raise LUTFormatError(str(error)) from None
    unknown = sorted(set(found.rows['kind']) - set(KINDS)) if len(found.rows) else []
    if unknown:
        raise LUTFormatError(f'{path}: rows of unknown kind {unknown}; accepted: {", ".join(KINDS)}')
    return found


def _parquet_modules():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as error:
        raise ImportError('Parquet LUTs need pyarrow (pip install pyarrow); or use a .csv path') from error
    return pyarrow, pyarrow.parquet


# ---------------------------------------------------------------------------------------------
# the table


class LatencyLUT(LatencyModel):
    """Additive latency model: fixed part + the latency of each chosen op (ms).

    ``predict(arch) = scale * (fixed_ms + sum_l lut[l, arch[l]]) + offset_ms``. ``scale`` and
    ``offset_ms`` are 1 and 0 unless a whole-network calibration was fitted
    (:func:`~nni_lightnas.latency.calibration.fit_linear_calibration`). A table of a space with
    depth choices (NNI's ``Repeat``) carries ``metadata['depth_gates']``: a layer inside a block
    past the chosen depth counts 0 (:mod:`~nni_lightnas.latency.depth_gates`).

    Parameters
    ----------
    table
        Rows as written by :func:`~nni_lightnas.latency.lut_build.build_lut` (columns :data:`COLUMNS`; at least ``kind``,
        ``layer``, ``op``, ``latency_ms``).
    metadata
        Device, runtime, provider, threads, batch, input size, space fingerprint, date, ...
    scale, offset_ms
        Whole-network linear calibration; read from ``metadata['calibration']`` when not given.

    Examples
    --------
    >>> table = pd.DataFrame({'kind': ['fixed', 'op', 'op', 'op', 'op'],
    ...                       'layer': ['stem', 'layer00', 'layer00', 'layer01', 'layer01'],
    ...                       'op': ['MBK3E1', 'skip', 'MBK3E3', 'skip', 'MBK3E3'],
    ...                       'latency_ms': [1.0, 0.0, 0.5, 0.1, 0.7]})
    >>> lut = LatencyLUT(table, {})
    >>> lut.predict('MBK3E3-skip'), lut.latency_range()
    (1.6, (1.1, 2.2))
    >>> probs = {'layer00': torch.tensor([0.5, 0.5], requires_grad=True), 'layer01': torch.tensor([1.0, 0.0])}
    >>> round(lut.expected_latency(probs).item(), 6)
    1.35
    """

    def __init__(self, table: pd.DataFrame, metadata: Mapping[str, Any] | None = None, *,
                 scale: float | None = None, offset_ms: float | None = None):
        missing = {'kind', 'layer', 'op', 'latency_ms'} - set(table.columns)
        if missing:
            raise ValueError(f'LUT table lacks columns {sorted(missing)}; it has {list(table.columns)}')
        unknown = set(table['kind']) - set(KINDS)
        if unknown:
            raise ValueError(f'LUT table has unknown row kinds {sorted(unknown)}; accepted: {KINDS}')
        self.table = table.reset_index(drop=True)
        self.metadata = dict(metadata or {})
        calibration = self.metadata.get('calibration') or {}
        self.scale = float(scale if scale is not None else calibration.get('scale', 1.0))
        self.offset_ms = float(offset_ms if offset_ms is not None else calibration.get('offset_ms', 0.0))
        if not math.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f'calibration scale must be a positive number, got scale={self.scale}')
        ops = self.table[self.table['kind'] == 'op']
        self.candidates = {}
        self._values: dict[str, torch.Tensor] = {}
        for label in sorted(set(ops['layer'])):
            rows = ops[ops['layer'] == label]
            self.candidates[label] = [str(op) for op in rows['op']]
            self._values[label] = torch.tensor([float(v) for v in rows['latency_ms']], dtype=torch.float64)
        self._fixed_ms = float(self.table.loc[self.table['kind'] == 'fixed', 'latency_ms'].sum())
        # depth choices (NNI's Repeat): the labels inside a block count only when the block runs
        self.depth_gates = gates_from_metadata(self.metadata)
        check_gates(self.depth_gates, self.candidates)

    # --- queries -------------------------------------------------------------------------------

    @property
    def fixed_ms(self) -> float:
        """Latency of the parts every architecture has (call, stem, head, corrections), uncalibrated."""
        return self._fixed_ms

    def latency(self, label: str, op: str) -> float:
        """Table latency (ms, uncalibrated) of ``op`` at layer ``label``."""
        if label not in self.candidates:
            raise KeyError(f'layer {label!r} is not in the LUT; layers: {self.labels}')
        if op not in self.candidates[label]:
            raise KeyError(f'op {op!r} of {label} is not in the LUT; ops: {self.candidates[label]}')
        return float(self._values[label][self.candidates[label].index(op)])

    def layer_latencies(self, label: str) -> torch.Tensor:
        """Latencies of the candidates of ``label`` (ms, float64, in :attr:`candidates` order)."""
        return self._values[label].clone()

    def one_hot(self, arch):
        if isinstance(arch, str):
            from nni_lightnas.search_spaces import decode_arch
            arch = decode_arch(arch)
        return super().one_hot(arch)

    def predict(self, arch) -> float:
        """Latency (ms) of one architecture: a LightNet string, an op list or an NNI sample."""
        if isinstance(arch, str):
            from nni_lightnas.search_spaces import decode_arch
            arch = decode_arch(arch)
        ops = [arch[label] for label in self.labels] if isinstance(arch, Mapping) else list(arch)
        if len(ops) != len(self.labels):
            raise ValueError(f'architecture has {len(ops)} layers, the LUT {len(self.labels)}')
        weights = active_weights(self.depth_gates, dict(zip(self.labels, ops))) if self.depth_gates else {}
        total = self._fixed_ms + sum(weights.get(label, 1.0) * self.latency(label, op)
                                     for label, op in zip(self.labels, ops))
        return self.scale * total + self.offset_ms

    def predict_indices(self, choices) -> 'np.ndarray':
        """Latencies (ms) of many architectures at once, each a row of op indices in :attr:`labels` order.

        The same sum as :meth:`predict`, vectorised: for sampling thousands of architectures.

        Examples
        --------
        >>> table = pd.DataFrame({'kind': 'op', 'layer': ['a', 'a', 'b', 'b'], 'op': ['x', 'y', 'x', 'y'],
        ...                       'latency_ms': [1.0, 2.0, 1.0, 3.0]})
        >>> LatencyLUT(table, {}).predict_indices([[0, 0], [1, 1]]).tolist()
        [2.0, 5.0]
        """
        import numpy as np
        choices = np.asarray(choices)
        if choices.ndim != 2 or choices.shape[1] != len(self.labels):
            raise ValueError(f'choices must be rows of {len(self.labels)} op indices (one per layer), '
                             f'got an array of shape {choices.shape}')
        mask = active_mask(self.depth_gates, self.labels, choices)
        raw = self._fixed_ms + sum(mask[:, i] * self._values[label].numpy()[choices[:, i]]
                                   for i, label in enumerate(self.labels))
        return self.scale * raw + self.offset_ms

    def expected_latency(self, probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``scale * (fixed + sum_l probs[l] . lut[l]) + offset`` (ms); differentiable in ``probs``."""
        missing = [label for label in self.labels if label not in probs]
        if missing:
            raise KeyError(f'probabilities missing for layers {missing}; the LUT needs {self.labels}')
        total = None
        active = active_probabilities(self.depth_gates, probs) if self.depth_gates else {}
        for label in self.labels:
            p = probs[label]
            values = self._values[label].to(device=p.device, dtype=p.dtype if p.is_floating_point() else torch.float32)
            if p.shape[-1] != values.shape[0]:
                raise ValueError(f'{label}: {p.shape[-1]} probabilities for {values.shape[0]} candidates '
                                 f'{self.candidates[label]}')
            term = (p * values).sum(-1)
            if label in active:
                term = active[label] * term
            total = term if total is None else total + term
        if total is None:
            total = torch.zeros(())
        return self.scale * (total + self._fixed_ms) + self.offset_ms

    def latency_range(self) -> tuple[float, float]:
        low, high = gated_range(self.depth_gates, self._values)
        low, high = self._fixed_ms + low, self._fixed_ms + high
        return (self.scale * low + self.offset_ms, self.scale * high + self.offset_ms)

    # --- compatibility -------------------------------------------------------------------------

    def check_compatible(self, space: Any = None, *, batch: int | None = None, device: str | None = None,
                         threads: int | None = None, source: str = 'the LUT') -> None:
        """Raise :class:`LUTMismatchError` unless this LUT fits ``space`` (and batch/device/threads if given)."""
        expected: dict[str, Any] = {'batch': batch, 'device': device, 'threads': threads}
        in_memory = 'format' not in self.metadata  # a table built in code: only its rows can be checked
        if is_foreign_space(space):
            check_space_compatible(self, space, source=source)
            space = None
        if space is not None:
            config, candidates = resolve_space(space)
            expected.update({'space_fingerprint': config.fingerprint(), 'input_size': config.input_size,
                             'in_chans': config.in_chans, 'preset': config.name})
            # the clearest message first: input size, then the space itself
            order = ('input_size', 'in_chans', 'space_fingerprint')
            if not in_memory:
                _check_identity(self.metadata, {key: expected[key] for key in order} | {'preset': config.name},
                                source)
            for label, ops in candidates.items():
                absent = [op for op in ops if op not in self.candidates.get(label, [])]
                if absent:
                    raise LUTMismatchError(f'{source} has no rows for {label} ops {absent}; rebuild it for this space')
        if not in_memory:
            _check_identity(self.metadata, expected, source)

    # --- derived tables ------------------------------------------------------------------------

    def with_calibration(self, scale: float, offset_ms: float, **info: Any) -> 'LatencyLUT':
        """A copy predicting ``scale * sum + offset_ms`` (a whole-network linear correction)."""
        metadata = dict(self.metadata)
        metadata['calibration'] = {'scale': float(scale), 'offset_ms': float(offset_ms), **info}
        return LatencyLUT(self.table.copy(), metadata)

    def without_calibration(self) -> 'LatencyLUT':
        """The same table predicting the plain per-op sum (any whole-network calibration dropped)."""
        return LatencyLUT(self.table, {key: value for key, value in self.metadata.items() if key != 'calibration'})

    def energy_view(self) -> 'LatencyLUT':
        """The same table with energy per inference (mJ) in place of latency: an energy model.

        Every method then reads in mJ where it says ms (``predict``, ``expected_latency``,
        ``latency_range``), so LightNAS's machinery (penalty, multiplier, landing) works on energy
        unchanged (``LightNAS(target_energy_mj=..., energy_model=lut.energy_view())``). Like the
        latency rows, each row's energy has the energy of its call (the ``overhead`` row at its
        output shape) subtracted when the table was built with ``overhead_subtracted``, and the
        ``call`` row counts it once (without it, every row keeps its call and ``call`` counts 0).
        A whole-network latency calibration is dropped.

        Raises
        ------
        ValueError
            The table has no ``energy_mj`` column, or some op/fixed rows have no energy
            (profile the LUT on a board with ``SSHDevice(energy=True)``).

        Examples
        --------
        >>> table = pd.DataFrame({'kind': ['fixed', 'op', 'op'], 'layer': ['stem', 'layer00', 'layer00'],
        ...                       'op': ['stem', 'skip', 'MBK3E3'], 'latency_ms': [1.0, 0.0, 0.5],
        ...                       'energy_mj': [4.0, 0.0, 2.5]})
        >>> energy = LatencyLUT(table, {}).energy_view()
        >>> energy.predict(['MBK3E3']), energy.latency_range()
        (6.5, (4.0, 6.5))
        """
        if 'energy_mj' not in self.table.columns:
            raise ValueError(f'the LUT has no energy_mj column (columns: {list(self.table.columns)}); profile it on '
                             f'a board that measures energy (SSHDevice(energy=True))')
        table = self.table.copy()
        energy = pd.to_numeric(table['energy_mj'], errors='coerce')
        summed = table['kind'] != 'overhead'
        missing = table.loc[summed & energy.isna(), ['layer', 'op']]
        if len(missing):
            raise ValueError(f'{len(missing)} LUT rows have no energy_mj, e.g. '
                             f'{missing.head(3).to_dict("records")}; profile the LUT with SSHDevice(energy=True)')
        if self.metadata.get('overhead_subtracted') and 'output_shape' in table.columns:
            overhead = table['kind'] == 'overhead'
            per_call = dict(zip(table.loc[overhead, 'op'].astype(str), energy[overhead]))
            subtract = summed & (table['layer'] != 'call')
            call_mj = table.loc[subtract, 'output_shape'].astype(str).map(per_call).fillna(0.0)
            energy[subtract] = (energy[subtract] - call_mj).clip(lower=0.0)
        elif self.metadata.get('overhead_subtracted') is False:  # every row already pays a call, as in build_lut
            energy[table['layer'] == 'call'] = 0.0
        table['latency_ms'] = energy
        metadata = {key: value for key, value in self.metadata.items() if key != 'calibration'}
        metadata['quantity'] = 'energy_mj'
        return LatencyLUT(table, metadata)

    def describe(self) -> str:
        low, high = self.latency_range()
        return (f'LUT {self.metadata.get("preset", "?")} on {self.metadata.get("device", "?")} '
                f'(batch {self.metadata.get("batch", "?")}, threads {self.metadata.get("threads", "?")}, '
                f'correction {self.metadata.get("correction", "none")}): {len(self.labels)} layers, '
                f'range {low:.3f}-{high:.3f} {"mJ" if self.metadata.get("quantity") == "energy_mj" else "ms"}')

    def __repr__(self) -> str:
        return f'LatencyLUT({self.describe()})'

    # --- files ---------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` (``.csv``, or ``.parquet`` when pyarrow is installed); atomic."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = self.table.copy()
        for column in COLUMNS:
            if column not in table.columns:
                table[column] = None
        extra = [c for c in table.columns if c not in COLUMNS]
        table = table[COLUMNS + extra]
        if path.suffix == '.parquet':
            pyarrow, parquet = _parquet_modules()
            arrow = pyarrow.Table.from_pandas(table, preserve_index=False)
            arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}),
                                                   b'nni-lightnas-lut': json.dumps(self.metadata).encode()})
            with atomic_write(path, 'wb') as file:
                parquet.write_table(arrow, file)
        else:
            write_table(path, self.metadata, table, prefix=_HEADER_PREFIX)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, space: Any = None, batch: int | None = None,
             device: str | None = None, threads: int | None = None) -> 'LatencyLUT':
        """Read a LUT; when ``space`` (or batch/device/threads) is given, refuse one built for another.

        Raises
        ------
        LUTMismatchError
            The file is no LUT, or it was built for another space, input size, batch, ...
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f'LUT {path} does not exist')
        if path.suffix == '.parquet':
            _, parquet = _parquet_modules()
            arrow = parquet.read_table(str(path))
            raw = (arrow.schema.metadata or {}).get(b'nni-lightnas-lut')
            if raw is None:
                raise LUTMismatchError(f'{path} is not an nni-lightnas LUT (no nni-lightnas-lut metadata)')
            metadata, table = json.loads(raw), arrow.to_pandas()
        else:
            found = _read_csv(path)
            metadata, table = found.metadata, found.rows
        if metadata.get('format') != LUT_FORMAT:
            raise LUTMismatchError(f'{path} has format {metadata.get("format")!r}; expected {LUT_FORMAT!r}')
        lut = cls(table, metadata)
        if metadata.get('complete') is False:
            _logger.warning('%s is incomplete (an interrupted build): rerun the build to finish it', path)
        lut.check_compatible(space, batch=batch, device=device, threads=threads, source=str(path))
        return lut


# ---------------------------------------------------------------------------------------------
# building



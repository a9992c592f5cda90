"""Measured (architecture, latency) tables: the public edge-device CSVs and our own measurements.

Public data (``shared/data/latency``): the first column ``arch`` holds architecture strings
(NAS-Bench-201 cells or FBNet layer lists), every other column one device in ms (or other
numbers, such as ``nb201_index``). :func:`read_latency_csv` reads one column of such a file.

Our measurements: a CSV (``#`` comment lines allowed, as the LUT files write them) or JSON
(a list of records, such as :func:`~nni_lightnas.latency.whole_network.measure_archs` returns) with an
``arch`` column of LightNet strings and a latency column (``latency_ms``, ``median_ms`` or
``measured_ms``, or any column named). :func:`read_measured_table` reads them.

Errors name the file, the column and the bad row; a missing column lists the columns present.
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .graphs import GraphSpace, detect_space

__all__ = ['LatencyDataset', 'read_latency_csv', 'read_measured_table', 'split_train_test', 'MEASURED_COLUMNS']

_logger = logging.getLogger(__name__)

#: Latency columns looked for, in order, when a measured table is read without a column name.
MEASURED_COLUMNS: tuple[str, ...] = ('latency_ms', 'median_ms', 'measured_ms')


@dataclass
class LatencyDataset:
    """Architectures of one space and their latencies in ms.

    Attributes
    ----------
    archs
        Architecture strings, as in the file.
    latency_ms
        One value per architecture; ``nan`` where the file has none (or a non-positive one).
    space
        The :class:`~nni_lightnas.latency.graphs.GraphSpace` every architecture parsed in.
    column
        The column read.
    source
        The file read.

    Examples
    --------
    >>> data = read_latency_csv(io.StringIO('arch,dev\\nMBK3E6-skip-skip,1.5\\nskip-skip-skip,0\\n'), 'dev')
    >>> len(data), data.valid.tolist()
    (2, [True, False])
    """

    archs: list[str]
    latency_ms: np.ndarray
    space: GraphSpace
    column: str
    source: str = ''
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.archs)

    @property
    def valid(self) -> np.ndarray:
        """Rows with a positive, finite latency."""
        return np.isfinite(self.latency_ms) & (self.latency_ms > 0)

    def subset(self, index: Sequence[int] | np.ndarray) -> 'LatencyDataset':
        index = np.asarray(index, dtype=np.int64)
        return LatencyDataset([self.archs[i] for i in index], self.latency_ms[index], self.space, self.column,
                              self.source, dict(self.info))


def _read_frame(path: Any) -> tuple[pd.DataFrame, str]:
    if isinstance(path, (str, os.PathLike)):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f'latency table {path} does not exist')
        text = path.read_text()
        name = str(path)
    else:  # a file-like object
        text = path.read()
        name = getattr(path, 'name', '<stream>')
    if name.endswith('.json') or text.lstrip().startswith(('[', '{')):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f'{name}: not valid JSON ({error})') from None
        if isinstance(records, dict):
            records = records.get('archs') or records.get('measured') or records.get('rows') or [records]
        if not isinstance(records, list) or not all(isinstance(row, dict) for row in records):
            raise ValueError(f'{name}: JSON must be a list of records with "arch" and a latency field')
        return pd.DataFrame(records), name
    lines = [line for line in text.splitlines() if not line.lstrip().startswith('#')]
    if not lines:
        raise ValueError(f'{name}: empty file; expected a header line starting with "arch"')
    try:
        frame = pd.read_csv(io.StringIO('\n'.join(lines)), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f'{name}: not a readable CSV ({error})') from None
    return frame, name


def _numeric(frame: pd.DataFrame, column: str, name: str) -> np.ndarray:
    values = frame[column]
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype(float).to_numpy()
    stripped = values.astype(str).str.strip()
    missing = stripped.isin(['', 'nan', 'NaN', 'NA', 'null', 'None'])
    converted = pd.to_numeric(stripped.where(~missing), errors='coerce')
    bad = converted.isna() & ~missing
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f'{name}: column {column!r} must be numeric (ms); row {row + 1} ({frame.iloc[row, 0]!r}) '
                         f'has {values.iloc[row]!r} ({int(bad.sum())} non-numeric values in all)')
    return converted.to_numpy(dtype=float)


def _parse_all(archs: list[str], space: GraphSpace, name: str) -> None:
    for row, arch in enumerate(archs):
        try:
            space.parse(arch)
        except (ValueError, TypeError) as error:
            raise ValueError(f'{name}: row {row + 1}: {error}') from None


def read_latency_csv(path: Any, column: str, *, space: GraphSpace | None = None, preset: Any = None,
                     arch_column: str | None = None) -> LatencyDataset:
    """Read one latency column of a CSV whose first column (or ``arch_column``) holds architectures.

    Parameters
    ----------
    path
        File path or text stream.
    column
        The latency column (ms), e.g. ``jetson_nano_fp32``.
    space
        Graph space of the architectures; detected from the strings when not given
        (NAS-Bench-201, FBNet, or the LightNAS preset ``preset`` / the one with that many layers).
    preset
        LightNAS preset of LightNet strings.
    arch_column
        Column of the architectures; default ``arch`` if present, else the first column.

    Examples
    --------
    >>> text = 'arch,nb201_index,dev\\n|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|,0,2.5\\n'
    >>> data = read_latency_csv(io.StringIO(text), 'dev')
    >>> data.space.name, data.latency_ms.tolist()
    ('nasbench201', [2.5])
    """
    frame, name = _read_frame(path)
    if frame.empty or len(frame.columns) < 2:
        raise ValueError(f'{name}: needs an architecture column and at least one latency column, '
                         f'got columns {list(frame.columns)} and {len(frame)} rows')
    if arch_column is None:
        arch_column = 'arch' if 'arch' in frame.columns else str(frame.columns[0])
    if arch_column not in frame.columns:
        raise ValueError(f'{name}: no architecture column {arch_column!r}; columns: {list(frame.columns)}')
    if column not in frame.columns or column == arch_column:
        others = [c for c in frame.columns if c != arch_column]
        raise ValueError(f'{name}: no latency column {column!r}; columns: {others}')
    archs = [str(arch).strip() for arch in frame[arch_column]]
    latency = _numeric(frame, column, name)
    if space is None:
        try:
            space = detect_space(archs, preset=preset)
        except ValueError as error:
            raise ValueError(f'{name}: {error}') from None
    _parse_all(archs, space, name)
    data = LatencyDataset(archs, latency, space, column, name)
    invalid = int((~data.valid).sum())
    if invalid:
        _logger.info('%s: %d of %d rows have no positive %s value', name, invalid, len(data), column)
    return data


def read_measured_table(path: Any, *, column: str | None = None, preset: Any = None,
                        space: GraphSpace | None = None) -> LatencyDataset:
    """Read our own measured ``(arch, latency)`` table (CSV or JSON) of a LightNAS preset.

    ``column`` defaults to the first of :data:`MEASURED_COLUMNS` present; ``preset`` to the
    LightNAS preset with as many layers as the architectures.

    Examples
    --------
    >>> text = '# device: local\\narch,median_ms\\nMBK3E6-skip-MBK5E3,0.8\\n'
    >>> read_measured_table(io.StringIO(text), preset='tiny').latency_ms.tolist()
    [0.8]
    """
    frame, name = _read_frame(path)
    if 'arch' not in frame.columns:
        raise ValueError(f'{name}: no "arch" column; columns: {list(frame.columns)}')
    if column is None:
        found = [c for c in MEASURED_COLUMNS if c in frame.columns]
        if not found:
            raise ValueError(f'{name}: no latency column; expected one of {list(MEASURED_COLUMNS)} '
                             f'(or name one), columns: {list(frame.columns)}')
        column = found[0]
    if space is None and preset is not None:
        from .graphs import LightNetGraphSpace
        space = LightNetGraphSpace(preset)
    frame = frame.astype({c: str for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c].dtype)})
    buffer = io.StringIO(frame[['arch', column]].to_csv(index=False))
    buffer.name = name
    return read_latency_csv(buffer, column, space=space, preset=preset, arch_column='arch')


def split_train_test(data: LatencyDataset, train_size: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``train_size`` random valid rows and of every other valid row (seeded).

    Examples
    --------
    >>> data = read_latency_csv(io.StringIO('arch,d\\nskip-skip-skip,1\\nMBK3E3-skip-skip,2\\nMBK3E6-skip-skip,3\\n'), 'd')
    >>> train, test = split_train_test(data, 2, seed=0)
    >>> len(train), len(test)
    (2, 1)
    """
    valid = np.flatnonzero(data.valid)
    if train_size < 2:
        raise ValueError(f'train_size must be at least 2, got {train_size}')
    if train_size >= len(valid):
        raise ValueError(f'train_size={train_size} leaves no test rows: {data.source} has {len(valid)} rows with '
                         f'a positive {data.column!r}')
    order = np.random.default_rng(seed).permutation(valid)
    return np.sort(order[:train_size]), np.sort(order[train_size:])

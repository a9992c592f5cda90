"""Pre-training on other devices: a multi-device latency network fitted on every source column.

A table of the same architectures measured on several *source* devices (the public CSVs in
``shared/data/latency``, one column per device) trains one network whose shared trunk maps an
architecture to a device-independent embedding and whose heads give each source device's
standardised log-latency. :class:`~nni_lightnas.latency.predictors.transfer.TransferPredictor`
adapts it to a new *target* device from a few measured architectures.

* :func:`read_pretrain_table`: every latency column of a CSV, the target column excluded,
  checked against the target's architecture encoding.
* :func:`pretrain_source_model`: fit the multi-device network (missing values are skipped).
* :func:`shipped_pretrain_table`: the default table of a space, from the measured device data
  that ship beside the repository (:data:`SHIPPED_DATA_DIRS`), when one uses its encoding.

Examples
--------
>>> import io
>>> text = ('arch,dev_a,dev_b\\n'
...         'MBK3E3-skip-skip,2.0,4.0\\nMBK3E6-skip-skip,3.0,5.5\\nskip-skip-skip,1.0,2.0\\n'
...         'skip-MBK5E3-skip,2.5,4.5\\n')
>>> table = read_pretrain_table(io.StringIO(text), preset='tiny')
>>> table.columns
['dev_a', 'dev_b']
>>> model = pretrain_source_model(table, epochs=5, hidden=[16, 8])
>>> model.num_sources, model.embedding_size
(2, 8)
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..graphs import GraphSpace, detect_space
from .base import FeatureEncoder
from .mlp import make_mlp

__all__ = ['PretrainTable', 'SourceLatencyNet', 'read_pretrain_table', 'pretrain_source_model',
           'shipped_pretrain_table', 'NON_LATENCY_COLUMNS', 'SHIPPED_DATA_DIRS']

_logger = logging.getLogger(__name__)

#: Columns that are never read as latencies (besides the architecture column).
NON_LATENCY_COLUMNS: frozenset[str] = frozenset({'arch', 'index', 'nb201_index', 'id'})

_REPOSITORY = Path(__file__).resolve().parents[3]
#: Where the measured multi-device tables are looked for: ``shared/data/latency`` in the
#: repository or beside it (NAS-Bench-201 and FBNet today; see its README).
SHIPPED_DATA_DIRS: tuple[Path, ...] = (_REPOSITORY / 'shared' / 'data' / 'latency',
                                       _REPOSITORY.parent / 'shared' / 'data' / 'latency')


@dataclass
class PretrainTable:
    """Architectures of one space measured on several source devices.

    Attributes
    ----------
    archs
        Architecture strings.
    latency_ms
        ``(len(archs), len(columns))``; ``nan`` where a device has no (positive) value.
    columns
        Source device names.
    space
        The graph space every architecture parsed in.
    source
        The file read.
    """

    archs: list[str]
    latency_ms: np.ndarray
    columns: list[str]
    space: GraphSpace
    source: str = ''

    def __post_init__(self) -> None:
        self.latency_ms = np.asarray(self.latency_ms, dtype=np.float64).reshape(len(self.archs), -1)
        if self.latency_ms.shape[1] != len(self.columns):
            raise ValueError(f'{self.latency_ms.shape[1]} latency columns but {len(self.columns)} names')
        if not self.columns:
            raise ValueError(f'{self.source or "pretraining table"}: no source device column left to pre-train on')
        self.latency_ms[~(np.isfinite(self.latency_ms) & (self.latency_ms > 0))] = np.nan

    def __len__(self) -> int:
        return len(self.archs)


def _is_latency_column(frame: pd.DataFrame, column: str) -> bool:
    if column.lower() in NON_LATENCY_COLUMNS or column.lower().endswith(('_index', '_id')):
        return False
    values = pd.to_numeric(frame[column], errors='coerce')
    return bool(values.notna().any())


def read_pretrain_table(path: Any, *, exclude: Sequence[str] = (), columns: Sequence[str] | None = None,
                        space: GraphSpace | None = None, preset: Any = None) -> PretrainTable:
    """Read every latency column of a CSV of measured architectures (the source devices).

    Parameters
    ----------
    path
        CSV path or text stream: an ``arch`` column (or the first column), then one column per device (ms).
    exclude
        Columns to leave out, such as the target device when the file also holds it.
    columns
        Read only these columns (default: every numeric column but indices such as ``nb201_index``).
    space
        The target's graph space: the file's architectures must use the same encoding.
    preset
        LightNAS preset of LightNet strings, when ``space`` is not given.

    Examples
    --------
    >>> text = 'arch,nb201_index,dev_a,dev_b\\n|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|,0,2.5,3.0\\n'
    >>> read_pretrain_table(io.StringIO(text), exclude=['dev_b']).columns
    ['dev_a']
    """
    if isinstance(path, (str, os.PathLike)):
        if not os.path.isfile(path):
            raise FileNotFoundError(f'pretraining table {path} does not exist')
        name = str(path)
        with open(path) as handle:
            text = handle.read()
    else:
        text = path.read()
        name = getattr(path, 'name', '<stream>')
    lines = [line for line in text.splitlines() if not line.lstrip().startswith('#')]
    try:
        frame = pd.read_csv(io.StringIO('\n'.join(lines)), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f'{name}: not a readable CSV ({error})') from None
    if frame.empty:
        raise ValueError(f'{name}: no rows; expected an arch column and one latency column per source device')
    arch_column = 'arch' if 'arch' in frame.columns else str(frame.columns[0])
    archs = [str(arch).strip() for arch in frame[arch_column]]
    found = detect_space(archs, preset=preset) if space is None else space
    for row, arch in enumerate(archs):
        try:
            found.parse(arch)
        except (ValueError, TypeError) as error:
            try:
                looks_like = f'{detect_space([arch]).name!r} strings'
            except ValueError:
                looks_like = 'of no known space'
            raise ValueError(f'{name}: row {row + 1}: {arch!r} is not an architecture of the target space '
                             f'{found.name!r} ({error}); the file\'s architectures look {looks_like}: the '
                             'pretraining table must use the target\'s architecture encoding') from None
    candidates = [str(c) for c in frame.columns if c != arch_column]
    if columns is not None:
        unknown = [c for c in columns if c not in candidates]
        if unknown:
            raise ValueError(f'{name}: no columns {unknown}; columns: {candidates}')
        chosen = [c for c in columns if c not in set(exclude)]
    else:
        chosen = [c for c in candidates if c not in set(exclude) and _is_latency_column(frame, c)]
    if not chosen:
        raise ValueError(f'{name}: no source latency column to pre-train on (columns {candidates}, '
                         f'excluded {list(exclude)})')
    values = np.stack([pd.to_numeric(frame[c].str.strip(), errors='coerce').to_numpy(dtype=float)
                       for c in chosen], axis=1)
    _logger.info('%s: pre-training columns %s on %d architectures', name, chosen, len(archs))
    return PretrainTable(archs, values, chosen, found, name)


def _first_arch(path: Path) -> str:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=1, comment='#')
    column = 'arch' if 'arch' in frame.columns else str(frame.columns[0])
    return str(frame[column].iloc[0]).strip() if len(frame) else ''


def shipped_pretrain_table(space: GraphSpace, *, exclude: Sequence[str] = (), columns: Sequence[str] | None = None,
                           data_dirs: Sequence[str | os.PathLike] = SHIPPED_DATA_DIRS) -> PretrainTable:
    """The first shipped multi-device table whose architectures are in ``space``'s encoding.

    Parameters
    ----------
    space
        The target's graph space.
    exclude, columns
        As in :func:`read_pretrain_table`.
    data_dirs
        Directories of ``*.csv`` tables (default :data:`SHIPPED_DATA_DIRS`).

    Raises
    ------
    ValueError
        No table uses the space's encoding: the message lists the tables found and their spaces.
        The shipped data cover NAS-Bench-201 and FBNet, not the LightNAS presets.

    Examples
    --------
    >>> from nni_lightnas.latency.graphs import FBNetGraphSpace
    >>> shipped_pretrain_table(FBNetGraphSpace()).columns  # doctest: +SKIP
    ['gtx1080ti_b1', 'rtx2080ti_b1', 'xeon_gold6240', 'xeon_silver4114', 'samsung_a50', 'pixel2']
    """
    found = []
    for directory in dict.fromkeys(Path(d) for d in data_dirs):
        for path in sorted(directory.glob('*.csv')) if directory.is_dir() else []:
            arch = _first_arch(path)
            try:
                space.parse(arch)
            except (ValueError, TypeError, KeyError, IndexError):
                try:
                    found.append(f'{path} ({detect_space([arch]).name})')
                except ValueError:
                    found.append(f'{path} (no known space)')
                continue
            return read_pretrain_table(path, exclude=exclude, columns=columns, space=space)
    where = ', '.join(str(d) for d in dict.fromkeys(Path(d) for d in data_dirs))
    preset = getattr(getattr(space, 'config', None), 'name', None)
    name = f'{space.name!r}' + (f' (preset {preset!r})' if preset else '')
    raise ValueError(f'no shipped multi-device latency table is in the architecture encoding of space {name} '
                     f'(found: {"; ".join(found) if found else f"no CSV in {where}"}); pass --pretrain-data CSV '
                     f'(Python: pretrain=read_pretrain_table(CSV, space=space)): an arch column of this space\'s '
                     'strings and one latency column (ms) per other device')


class SourceLatencyNet(nn.Module):
    """Architecture probabilities -> shared embedding -> standardised log-latency of each source device.

    The trunk reads the flattened one-hot plus the space's standardised whole-network features
    (:class:`~nni_lightnas.latency.predictors.base.FeatureEncoder`); every layer is linear in
    the probabilities or a ReLU, so soft architectures give gradients.

    Parameters
    ----------
    space
        The graph space.
    num_sources
        Number of source devices (heads).
    hidden
        Trunk widths; the last one is the embedding size.
    """

    def __init__(self, space: GraphSpace, *, num_sources: int, hidden: Sequence[int]):
        super().__init__()
        if not hidden:
            raise ValueError(f'hidden must list at least one width, got {list(hidden)}')
        self.encoder = FeatureEncoder(space, summary_gain=1.0)
        layers = make_mlp(self.encoder.num_features, list(hidden[:-1]), out_features=int(hidden[-1]))
        self.trunk = nn.Sequential(*layers, nn.ReLU())
        self.heads = nn.Linear(int(hidden[-1]), int(num_sources))
        self.register_buffer('source_mean', torch.zeros(int(num_sources)))
        self.register_buffer('source_std', torch.ones(int(num_sources)))

    @property
    def num_sources(self) -> int:
        return self.heads.out_features

    @property
    def embedding_size(self) -> int:
        return self.heads.in_features

    def embed(self, probs: torch.Tensor) -> torch.Tensor:
        """``(batch, embedding_size)`` device-independent embedding."""
        return self.trunk(self.encoder(probs))

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        """``(batch, num_sources)`` standardised log-latency of every source device."""
        return self.heads(self.embed(probs))

    def log_latency(self, probs: torch.Tensor) -> torch.Tensor:
        """``(batch, num_sources)`` predicted log(ms) of every source device."""
        return self(probs) * self.source_std + self.source_mean


def pretrain_source_model(table: PretrainTable, *, hidden: Sequence[int] = (256, 128), epochs: int = 500,
                          lr: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0) -> SourceLatencyNet:
    """Fit a :class:`SourceLatencyNet` on every row and source column of ``table`` (full batch, AdamW).

    The loss is the mean squared error of standardised log-latency over the measured cells only,
    so devices measured on different architectures can share one table.

    Examples
    --------
    >>> table = PretrainTable(['skip-skip-skip', 'MBK3E3-skip-skip', 'MBK3E6-skip-skip'],
    ...                       np.array([[1.0, 2.0], [2.0, 3.0], [3.0, 5.0]]), ['a', 'b'],
    ...                       detect_space(['skip-skip-skip']))
    >>> pretrain_source_model(table, epochs=3, hidden=[8]).num_sources
    2
    """
    if epochs < 1:
        raise ValueError(f'epochs must be >= 1, got {epochs=}')
    log_ms = np.log(table.latency_ms)
    measured = np.isfinite(log_ms)
    empty = [c for c, count in zip(table.columns, measured.sum(0)) if count < 2]
    if empty:
        raise ValueError(f'{table.source or "pretraining table"}: source columns {empty} have fewer than 2 '
                         'positive latencies')
    mean = np.nanmean(log_ms, axis=0)
    std = np.nanstd(log_ms, axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    torch.manual_seed(seed)
    net = SourceLatencyNet(table.space, num_sources=len(table.columns), hidden=hidden)
    probs = table.space.one_hot(table.archs)
    net.encoder.calibrate(probs)
    net.source_mean.copy_(torch.from_numpy(mean).float())
    net.source_std.copy_(torch.from_numpy(std).float())
    target = torch.from_numpy(np.where(measured, (log_ms - mean) / std, 0.0)).float()
    mask = torch.from_numpy(measured).float()
    with torch.no_grad():
        features = net.encoder(probs)
    model = nn.Sequential(net.trunk, net.heads)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    model.train()
    loss = torch.zeros(())
    for _ in range(int(epochs)):
        optimizer.zero_grad()
        loss = (((model(features) - target) ** 2) * mask).sum() / mask.sum()
        loss.backward()
        optimizer.step()
        scheduler.step()
    net.eval()
    net.columns = list(table.columns)  # names of the heads, for reports (not saved with the weights)
    _logger.info('pre-trained on %d architectures x %d source devices %s: loss %.4f', len(table), len(table.columns),
                 table.columns, float(loss.detach()))
    return net

"""Measuring a LUT: :func:`build_lut` for our presets and (through :mod:`.space_lut`) any NNI model space.

Every candidate op of every searchable layer is timed as a tiny ONNX model with its real input
shape, plus the fixed parts (stem with the fixed first block, head) and, to remove the cost of a
call, an ``Identity`` at each output shape. Rows are appended to the file as they are measured,
so a crash or Ctrl-C loses no finished measurement and a rerun measures only the missing rows.

Examples
--------
>>> from nni_lightnas.latency import LocalDevice
>>> lut = build_lut('tiny', LocalDevice(num_runs=5, num_warmup_runs=1), batch=2)  # doctest: +SKIP
>>> lut.predict('MBK3E6-skip-MBK7E3') > 0  # doctest: +SKIP
True
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from torch import nn

from ..search_spaces.resolve import is_foreign_space, resolve_space
from .device import Device, LatencyResult
from .journal import CSVJournal
from .lut import (_HEADER_PREFIX, COLUMNS, LUT_FORMAT, LatencyLUT, LUTMismatchError, _check_identity, _Identity,
                  _read_csv, _shape_key)

__all__ = ['LUTEntry', 'lut_entries', 'build_lut', 'default_batch']

_logger = logging.getLogger(__name__)


def default_batch(preset_or_config: Any) -> int:
    """Batch at which a space is profiled by default: 32 for the 28x28 / 32x32 presets, else 1.

    At batch 1 a Fashion-MNIST net runs in about 0.1 ms and the call overhead dominates;
    at batch 32 compute dominates (DESIGN section 4).
    """
    config = resolve_space(preset_or_config)[0]
    return 32 if config.input_size <= 64 else 1


@dataclass
class LUTEntry:
    """One row to measure: a module at an input shape."""

    kind: str
    layer: str
    op: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    factory: Callable[[], nn.Module]

    @property
    def key(self) -> tuple[str, str]:
        return (self.layer, self.op)


def lut_entries(space: Any, batch: int) -> list[LUTEntry]:
    """Every row of the LUT of ``space`` at ``batch``, in measurement order.

    Overhead rows (one Identity per distinct output shape) come first, then ``call``, the
    stem (stem conv + fixed first block), every (layer, op) and the head.
    """
    from nni_lightnas.search_spaces import build_op, layer_specs
    from nni_lightnas.search_spaces.lightnas_space import Head, make_stem
    from nni_lightnas.search_spaces.presets import conv_output_size
    if batch < 1:
        raise ValueError(f'batch must be >= 1, got {batch=}')
    config, candidates = resolve_space(space)
    specs = layer_specs(config)
    stem_chs = config.channels(config.stem_chs)
    stem_size = conv_output_size(config.input_size, config.stem_stride)
    net_input = (batch, config.in_chans, config.input_size, config.input_size)
    net_output = (batch, config.num_classes)
    rows: list[LUTEntry] = [
        LUTEntry('fixed', 'call', 'identity', net_output, net_output, _Identity),
        LUTEntry('fixed', 'stem', config.first_block, net_input, (batch, stem_chs, stem_size, stem_size),
                 lambda: make_stem(config)),
    ]
    for spec in specs:
        out_size = conv_output_size(spec.input_size, spec.stride)
        for op in candidates[spec.label]:
            rows.append(LUTEntry('op', spec.label, op, (batch, spec.in_chs, spec.input_size, spec.input_size),
                                 (batch, spec.out_chs, out_size, out_size),
                                 lambda op=op, spec=spec: build_op(op, spec.in_chs, spec.out_chs, spec.stride)))
    last = specs[-1]
    last_size = conv_output_size(last.input_size, last.stride)
    rows.append(LUTEntry('fixed', 'head', 'head', (batch, last.out_chs, last_size, last_size), net_output,
                         lambda: Head(config, last.out_chs)))
    overheads = {}
    for row in rows:
        if row.layer != 'call':
            overheads.setdefault(_shape_key(row.output_shape), row.output_shape)
    return [LUTEntry('overhead', 'overhead', key, shape, shape, _Identity) for key, shape in overheads.items()] + rows


def _identity_metadata(config: Any, batch: int, device: Device) -> dict[str, Any]:
    return {
        'format': LUT_FORMAT, 'preset': config.name, 'space_fingerprint': config.fingerprint(),
        'space_config': config.to_dict(), 'input_size': config.input_size, 'in_chans': config.in_chans,
        'batch': int(batch), 'device': device.name, 'threads': device.threads,
        'clock': getattr(device, 'clock', 'wall'),
        'num_runs': device.num_runs, 'num_warmup_runs': device.num_warmup_runs,
    }


def _row_from_result(entry: LUTEntry, result: LatencyResult, overhead_ms: float) -> dict[str, Any]:
    latency = result.median_ms if entry.kind == 'overhead' or entry.layer == 'call' else \
        max(result.median_ms - overhead_ms, 0.0)
    return {
        'kind': entry.kind, 'layer': entry.layer, 'op': entry.op, 'latency_ms': latency,
        'median_ms': result.median_ms, 'p25_ms': result.p25_ms, 'p75_ms': result.p75_ms,
        'overhead_ms': overhead_ms, 'cv': result.cv, 'runs': result.runs, 'stable': bool(result.stable),
        'input_shape': _shape_key(entry.input_shape), 'output_shape': _shape_key(entry.output_shape),
        'measured_at': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'energy_mj': result.facts.get('energy_mj'),  # boards measuring with energy=True; else empty
    }


#: LUT columns that must be filled in every row, and those that hold numbers.


def build_lut(space: Any, device: Device, *, batch: int | None = None, path: str | os.PathLike | None = None,
              overhead: bool = True, on_row: Callable[[dict[str, Any]], None] | None = None,
              overwrite: bool = False, example_input: torch.Tensor | None = None) -> LatencyLUT:
    """Measure the LUT of ``space`` on ``device``, row by row, resumable.

    Parameters
    ----------
    space
        A ``LightNASSpace`` (its candidates), a preset name or a ``SpaceConfig`` (all seven ops);
        or any NNI ``ModelSpace`` with ``LayerChoice`` layers, given ``example_input``
        (:func:`~nni_lightnas.latency.space_lut.build_space_lut`).
    device
        Where to measure (:class:`~nni_lightnas.latency.device.Device`).
    batch
        Batch of every row's input; default :func:`default_batch` (32 for the small presets).
    path
        Where to write the table (``.csv`` or ``.parquet``). Each finished row is appended and
        flushed at once (for Parquet, to ``PATH.partial.csv``, converted at the end). When
        the file exists with the same space, batch, device and threads, only missing rows are
        measured; when it was built with other settings, :class:`LUTMismatchError`.
    overhead
        Subtract the cost of a call (an Identity model at the row's output shape) from every
        row, and count one call in the fixed part. Off: raw medians are summed.
    on_row
        Called with each newly measured row (a dict); may raise (e.g. ``KeyboardInterrupt``)
        to stop, and the rows written so far stay.
    overwrite
        Start a fresh table even if ``path`` exists.
    example_input
        One input batch of a model space other than ours (its shape fixes the batch).

    Returns
    -------
    LatencyLUT
        The complete table.
    """
    from nni_lightnas.export import onnx_bytes
    if is_foreign_space(space):
        from .space_lut import build_space_lut
        if example_input is None:
            raise ValueError(f'build_lut of a {type(space).__name__} (not a LightNAS preset) needs example_input=, '
                             f'one input batch such as torch.randn(1, 3, 32, 32); its shape is measured')
        if batch is not None and int(batch) != int(example_input.shape[0]):
            raise ValueError(f'batch={batch} disagrees with example_input of shape {list(example_input.shape)}; '
                             f'the batch is the example input\'s first dimension')
        return build_space_lut(space, device, example_input=example_input, path=path, overhead=overhead,
                               overwrite=overwrite, on_row=on_row)
    config, _ = resolve_space(space)
    batch = default_batch(config) if batch is None else int(batch)
    entries = lut_entries(space, batch)
    expected = _identity_metadata(config, batch, device)
    expected['overhead_subtracted'] = bool(overhead)

    final_path = Path(path) if path is not None else None
    journal_path = None
    if final_path is not None:
        journal_path = final_path.with_name(final_path.name + '.partial.csv') \
            if final_path.suffix == '.parquet' else final_path
    done: dict[tuple[str, str], dict[str, Any]] = {}
    metadata: dict[str, Any] | None = None
    if journal_path is not None and journal_path.is_file() and not overwrite:
        resumed = _read_csv(journal_path, strict=False)
        found, table = resumed.metadata, resumed.rows
        _check_identity(found, expected, str(journal_path))
        if found.get('overhead_subtracted') != expected['overhead_subtracted']:
            raise LUTMismatchError(f'{journal_path} was built with overhead_subtracted='
                                   f'{found.get("overhead_subtracted")}, asked for {overhead}')
        metadata = found
        done = {(row['layer'], row['op']): row for row in table.to_dict('records')}
        _logger.info('resuming %s: %d of %d rows already measured', journal_path, len(done), len(entries))
    columns = COLUMNS
    if metadata is not None and 'energy_mj' not in table.columns:  # a table begun before the energy column
        columns = [column for column in COLUMNS if column != 'energy_mj']
    journal = CSVJournal(journal_path, columns, prefix=_HEADER_PREFIX) if journal_path is not None else None
    if metadata is not None and resumed.bad_lines:
        for number, reason in resumed.bad_lines:
            _logger.warning('%s, line %d: %s; the row will be measured again', journal_path, number, reason)
        journal.rewrite(metadata, list(done.values()))  # without the bad lines, so appends start on a clean line

    overheads = {key[1]: row['median_ms'] for key, row in done.items() if row['kind'] == 'overhead'}
    for entry in entries:
        if entry.key in done:
            continue
        if entry.kind == 'overhead' and not overhead:
            continue
        result = device.measure(onnx_bytes(entry.factory(), entry.input_shape), entry.input_shape)
        if metadata is None:
            metadata = {**expected, 'runtime': result.runtime, 'provider': result.provider,
                        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                        'correction': 'none', 'complete': False}
            if journal is not None and not (journal_path.is_file() and done):
                journal.start(metadata)
        overhead_ms = overheads.get(_shape_key(entry.output_shape), 0.0) if overhead else 0.0
        if entry.layer == 'call' and not overhead:
            overhead_ms = 0.0
        row = _row_from_result(entry, result, overhead_ms)
        if entry.layer == 'call' and not overhead:
            row['latency_ms'] = 0.0  # without overhead handling, every row already pays a call
        if entry.kind == 'overhead':
            overheads[entry.op] = result.median_ms
        done[entry.key] = row
        if journal is not None:
            journal.append(row)
        _logger.info('%-8s %-10s %.4f ms (IQR %.4f-%.4f, overhead %.4f)', entry.layer, entry.op,
                     row['latency_ms'], row['p25_ms'], row['p75_ms'], overhead_ms)
        if on_row is not None:
            on_row(row)

    if metadata is None:  # nothing to measure and no file: an empty space cannot happen
        raise RuntimeError('no LUT rows were measured')
    metadata['complete'] = True
    rows = [done[entry.key] for entry in entries if entry.key in done]
    lut = LatencyLUT(pd.DataFrame(rows, columns=COLUMNS), metadata)
    if final_path is not None:
        lut.save(final_path)
        if journal_path != final_path and journal_path.is_file():
            journal_path.unlink()
    return lut

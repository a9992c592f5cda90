"""The latency lookup table of any NNI model space with ``LayerChoice`` layers.

:func:`build_space_lut` profiles a space it knows nothing about, given one example input:

1. a dry run (:func:`~nni_lightnas.search_spaces.nni_space.probe_choices`) finds the input and
   output shape of every call of every ``LayerChoice``;
2. every candidate of every call is exported as its own ONNX model at that input shape and
   timed; the cost of a call (an ``Identity`` model at the row's output shape) is subtracted,
   and counted once for the network (the fixed row ``call``), as for the presets
   (:mod:`~nni_lightnas.latency.lut`);
3. modules that share a label (NAS-Bench-201's cells all choose the same ops) and modules called
   more than once are summed: a LUT row ``(label, op)`` holds the latency of ``op`` in every
   place the label decides, and its ``instances`` column says in how many;
4. the fixed part (everything that is not a choice: stem, reductions, head, glue) is measured on
   whole networks: ``check_archs`` architectures (the fastest and the slowest by the table, and
   random ones) are frozen, exported and timed interleaved, and the fixed row ``rest`` is the
   median of ``measured - call - sum of their op rows``. The same measurements check the table:
   ``metadata['whole_net_check']`` holds each one's measured and predicted latency, and a warning
   says when they disagree by more than 5% (fit a calibration then:
   :func:`~nni_lightnas.latency.calibration.fit_linear_calibration` with
   :func:`measure_space_archs`).

Every finished measurement is appended to a journal (``PATH.partial.csv``) at once; a rerun with
the same space, input shape and device measures only what is missing, and a finished table is
only loaded. A table of another space (by :func:`~nni_lightnas.search_spaces.nni_space.space_fingerprint`),
input shape, device or thread count is refused (:class:`~nni_lightnas.latency.lut.LUTMismatchError`).

Examples
--------
>>> import torch
>>> from nni_lightnas.latency import LocalDevice
>>> lut = build_space_lut(MySpace(), LocalDevice(), example_input=torch.randn(8, 40, 98),
...                       path='lut_kws.csv')  # doctest: +SKIP
>>> lut.predict({'block0': 'conv5', 'block1': 'skip'})  # doctest: +SKIP
0.0831
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import random
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from .depth_gates import gates_to_metadata
from .device import Device, LatencyResult
from .journal import CSVJournal, JournalFormatError, read_journal
from .lut import (COLUMNS, LUT_FORMAT, LatencyLUT, LUTFormatError, LUTMismatchError, _Identity, _shape_key,
                  _space_name, check_space_compatible)

__all__ = ['SPACE_JOURNAL_FORMAT', 'build_space_lut', 'measure_space_archs', 'check_space_compatible']

_logger = logging.getLogger(__name__)

SPACE_JOURNAL_FORMAT = 'nni-lightnas-space-lut-journal/1'
_JOURNAL_PREFIX = '# nni-lightnas-space-lut-journal '
_JOURNAL_COLUMNS = ['kind', 'layer', 'op', 'label', 'median_ms', 'p25_ms', 'p75_ms', 'cv', 'runs', 'stable',
                    'input_shape', 'output_shape', 'measured_at', 'energy_mj']
#: Journal settings that must agree when a build is resumed.
_RESUME_KEYS = ('space_fingerprint', 'input_shape', 'device', 'threads', 'clock', 'overhead_subtracted',
                'check_archs', 'seed')
#: Whole-network disagreement (relative) above which the build warns.
_CHECK_WARN = 0.05
#: Journal op name of a block without choices inside a ``Repeat``.
_BLOCK_OP = 'block'


@dataclass
class _Measurement:
    kind: str  # overhead, call, op, whole
    layer: str  # module path (op), 'overhead', 'call', 'whole'
    op: str
    label: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    factory: Callable[[], nn.Module]

    @property
    def key(self) -> tuple[str, str]:
        return (self.layer, self.op)


def _plan(space: nn.Module, probe, overhead: bool) -> list[_Measurement]:
    """Overheads (one per output shape), the call, then every (call, op)."""
    from nni_lightnas.search_spaces.nni_space import choice_modules
    modules = dict(choice_modules(space))
    net_out = probe.output_shape
    rows = [_Measurement('call', 'call', 'identity', '', net_out, net_out, _Identity)]
    for call in probe.calls:
        module = modules[call.path]
        for op, candidate in zip(probe.candidates[call.label], module):
            rows.append(_Measurement('op', call.key, op, call.label, call.input_shape, call.output_shape,
                                     lambda candidate=candidate: candidate))
    blocks = dict(space.named_modules())
    for call in probe.block_calls:  # a block without choices inside a Repeat: its latency goes to the depth's rows
        rows.append(_Measurement('op', call.key, _BLOCK_OP, call.label, call.input_shape, call.output_shape,
                                 lambda block=blocks[call.path]: block))
    if not overhead:
        return rows
    shapes = {_shape_key(row.output_shape): row.output_shape for row in rows if row.kind == 'op'}
    return [_Measurement('overhead', 'overhead', key, '', shape, shape, _Identity)
            for key, shape in shapes.items()] + rows


def _journal_row(entry: _Measurement, result: LatencyResult) -> dict[str, Any]:
    return {'kind': entry.kind, 'layer': entry.layer, 'op': entry.op, 'label': entry.label,
            'median_ms': result.median_ms, 'p25_ms': result.p25_ms, 'p75_ms': result.p75_ms, 'cv': result.cv,
            'runs': result.runs, 'stable': bool(result.stable), 'input_shape': _shape_key(entry.input_shape),
            'output_shape': _shape_key(entry.output_shape),
            'measured_at': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            'energy_mj': result.facts.get('energy_mj')}


def _resume(journal_path: Path, expected: Mapping[str, Any]) -> tuple[dict[str, Any], dict, list]:
    try:
        found = read_journal(journal_path, prefix=_JOURNAL_PREFIX, key=('layer', 'op'),
                             required=('kind', 'layer', 'op', 'median_ms'),
                             numeric=('median_ms', 'p25_ms', 'p75_ms', 'cv', 'runs', 'energy_mj'),
                             dtype={'layer': str, 'op': str, 'label': str})
    except JournalFormatError as error:
        raise LUTFormatError(str(error)) from None
    if found.metadata.get('format') != SPACE_JOURNAL_FORMAT:
        raise LUTFormatError(f'{journal_path} is not an nni-lightnas space LUT journal (format '
                             f'{found.metadata.get("format")!r}); move it away or pass overwrite=True')
    for key in _RESUME_KEYS:
        if found.metadata.get(key) != expected.get(key):
            raise LUTMismatchError(f'{journal_path} was begun with {key}={found.metadata.get(key)!r}, but '
                                   f'{key}={expected.get(key)!r} was asked for; finish it with the same settings '
                                   f'or pass overwrite=True')
    rows = {(str(row['layer']), str(row['op'])): row for row in found.rows.to_dict('records')}
    return dict(found.metadata), rows, found.bad_lines


def _check_archs(ops_only: LatencyLUT, count: int, seed: int) -> list[dict[str, str]]:
    """The fastest and the slowest architecture by the op rows (depth gates applied), then distinct random ones."""
    candidates = ops_only.candidates

    def extreme(pick) -> dict[str, str]:
        arch = {label: pick(ops, key=lambda op: ops_only.latency(label, op)) for label, ops in candidates.items()}
        for gate in ops_only.depth_gates:  # a depth's groups are independent: its best depth with the others fixed
            arch[gate.label] = pick(gate.ops, key=lambda op: ops_only.predict({**arch, gate.label: op}))
        return arch

    fastest, slowest = extreme(min), extreme(max)
    archs = [fastest] + ([slowest] if slowest != fastest else [])
    rng = random.Random(seed)
    total = 1
    for ops in candidates.values():
        total *= len(ops)
    while len(archs) < min(count, total):
        arch = {label: rng.choice(list(ops)) for label, ops in candidates.items()}
        if arch not in archs:
            archs.append(arch)
    return archs[:count]


def measure_space_archs(space: nn.Module, archs: Sequence[Mapping[str, str]], device: Device, *,
                        example_input: torch.Tensor | Sequence[int]) -> list[LatencyResult]:
    """Measure whole frozen networks of ``space``, their timed runs interleaved (one hold of the device lock).

    Parameters
    ----------
    space
        The model space.
    archs
        Architectures as ``{label: op}``.
    device
        Where to measure.
    example_input
        An input batch, or its shape (batch included).

    Examples
    --------
    >>> [r.median_ms for r in measure_space_archs(MySpace(), [arch], LocalDevice(),
    ...                                           example_input=(8, 40, 98))]  # doctest: +SKIP
    [0.081]
    """
    from nni_lightnas.export import onnx_bytes
    from nni_lightnas.search_spaces.nni_space import freeze_arch
    shape = tuple(example_input.shape) if isinstance(example_input, torch.Tensor) else tuple(example_input)
    models = [onnx_bytes(freeze_arch(space, arch), shape) for arch in archs]
    return device.measure_group(models, shape)


def build_space_lut(space: nn.Module, device: Device, *, example_input: torch.Tensor,
                    path: str | os.PathLike | None = None, overhead: bool = True, check_archs: int = 3,
                    seed: int = 0, overwrite: bool = False,
                    on_row: Callable[[dict[str, Any]], None] | None = None) -> LatencyLUT:
    """Measure the LUT of any NNI model space with ``LayerChoice`` layers (see the module docstring).

    Parameters
    ----------
    space
        The model space; a mutable other than a ``LayerChoice`` is refused
        (:class:`~nni_lightnas.search_spaces.nni_space.UnsupportedMutableError`).
    device
        Where to measure.
    example_input
        One input batch; its shape (batch included) is the one every row is measured at.
    path
        Where to write the table (``.csv``, or ``.parquet`` with pyarrow); the measurements go to
        ``PATH.partial.csv`` first, row by row, and a rerun resumes it. An existing finished table
        for the same space, input and device is loaded without measuring.
    overhead
        Subtract a call's cost from every row and count it once (``call``); off: raw medians.
    check_archs
        Whole networks measured for the fixed part and the check (>= 1; the fastest, the slowest
        and random ones).
    seed
        Seed of the random check architectures.
    overwrite
        Measure from scratch even if ``path`` or its journal exists.
    on_row
        Called with each new journal row (a dict); may raise to stop (the rows written so far stay).

    Returns
    -------
    LatencyLUT
        Rows ``op`` per (label, op) with an ``instances`` column, fixed rows ``call`` and ``rest``.
    """
    from nni_lightnas.export import onnx_bytes
    from nni_lightnas.search_spaces.nni_space import arch_string, probe_choices, space_fingerprint
    if not (isinstance(check_archs, int) and check_archs >= 1):
        raise ValueError(f'check_archs must be an integer >= 1 (the fixed part is measured on whole networks), '
                         f'got {check_archs!r}')
    probe = probe_choices(space, example_input)
    fingerprint = space_fingerprint(space)
    expected = {'format': SPACE_JOURNAL_FORMAT, 'space': _space_name(space), 'space_fingerprint': fingerprint,
                'input_shape': list(probe.input_shape), 'device': device.name, 'threads': device.threads,
                'clock': getattr(device, 'clock', 'wall'), 'overhead_subtracted': bool(overhead),
                'check_archs': check_archs, 'seed': seed}
    final_path = Path(path) if path is not None else None
    if final_path is not None and final_path.is_file() and not overwrite:
        lut = LatencyLUT.load(final_path)
        if lut.metadata.get('input_shape') != expected['input_shape']:
            raise LUTMismatchError(f'{final_path} was built for input shape {lut.metadata.get("input_shape")}, '
                                   f'asked for {expected["input_shape"]}; pass overwrite=True or another path')
        for key in ('device', 'threads'):
            if lut.metadata.get(key) != expected[key]:
                raise LUTMismatchError(f'{final_path} was built with {key}={lut.metadata.get(key)!r}, asked for '
                                       f'{expected[key]!r}; pass overwrite=True or another path')
        check_space_compatible(lut, space, source=str(final_path))
        _logger.info('%s is complete for this space: loaded, nothing measured', final_path)
        return lut

    journal_path = None if final_path is None else final_path.with_name(final_path.name + '.partial.csv')
    journal = None if journal_path is None else CSVJournal(journal_path, _JOURNAL_COLUMNS, prefix=_JOURNAL_PREFIX)
    metadata: dict[str, Any] | None = None
    done: dict[tuple[str, str], dict[str, Any]] = {}
    if journal_path is not None and journal_path.is_file() and not overwrite:
        metadata, done, bad_lines = _resume(journal_path, expected)
        for number, reason in bad_lines:
            _logger.warning('%s, line %d: %s; the row will be measured again', journal_path, number, reason)
        if bad_lines:
            journal.rewrite(metadata, list(done.values()))
        _logger.info('resuming %s: %d measurements already done', journal_path, len(done))

    def record(entry: _Measurement, result: LatencyResult) -> None:
        nonlocal metadata
        if metadata is None:
            metadata = {**expected, 'runtime': result.runtime, 'provider': result.provider,
                        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}
            if journal is not None:
                journal.start(metadata)
        row = _journal_row(entry, result)
        done[entry.key] = row
        if journal is not None:
            journal.append(row)
        _logger.info('%-24s %-14s %.4f ms (IQR %.4f-%.4f)', entry.layer, entry.op, row['median_ms'],
                     row['p25_ms'], row['p75_ms'])
        if on_row is not None:
            on_row(row)

    for entry in _plan(space, probe, overhead):
        if entry.key not in done:
            record(entry, device.measure(onnx_bytes(entry.factory(), entry.input_shape), entry.input_shape))

    # per (label, op): the sum over the label's calls of (median - the call overhead at its output shape)
    overheads = {row['op']: float(row['median_ms']) for row in done.values() if row['kind'] == 'overhead'}
    aggregated: dict[tuple[str, str], dict[str, Any]] = {}
    depth_labels = {depth.label for depth in probe.depths}
    block_ms: dict[str, float] = {}  # block path -> latency of a block without choices inside a Repeat
    for row in (row for row in done.values() if row['kind'] == 'op'):
        overhead_ms = overheads.get(str(row['output_shape']), 0.0) if overhead else 0.0
        if str(row['label']) in depth_labels:
            path = str(row['layer']).split('#')[0]
            block_ms[path] = block_ms.get(path, 0.0) + max(float(row['median_ms']) - overhead_ms, 0.0)
            continue
        key = (str(row['label']), str(row['op']))
        into = aggregated.setdefault(key, {
            'kind': 'op', 'layer': key[0], 'op': key[1], 'latency_ms': 0.0, 'median_ms': 0.0, 'p25_ms': 0.0,
            'p75_ms': 0.0, 'overhead_ms': 0.0, 'cv': 0.0, 'runs': row['runs'], 'stable': True,
            'input_shape': row['input_shape'], 'output_shape': row['output_shape'],
            'measured_at': row['measured_at'], 'energy_mj': None, 'instances': 0})
        into['latency_ms'] += max(float(row['median_ms']) - overhead_ms, 0.0)
        for column in ('median_ms', 'p25_ms', 'p75_ms'):
            into[column] += float(row[column])
        into['overhead_ms'] += overhead_ms
        into['cv'] = max(into['cv'], float(row['cv']) if pd.notna(row['cv']) else 0.0)
        into['stable'] = bool(into['stable'] and str(row['stable']) not in ('False', 'false', '0'))
        into['instances'] += 1
    for depth in probe.depths:  # depth d: the blocks without choices among the first d
        for value in depth.depths:
            latency_ms = sum(block_ms.get(depth.block_paths[index], 0.0) for index in depth.plain_blocks
                             if index < value)
            aggregated[(depth.label, str(value))] = {
                **{column: None for column in COLUMNS}, 'kind': 'op', 'layer': depth.label, 'op': str(value),
                'latency_ms': latency_ms, 'median_ms': latency_ms, 'overhead_ms': 0.0, 'stable': True,
                'instances': 1}
    gates = gates_to_metadata([depth.gate() for depth in probe.depths])
    op_rows = [aggregated[(label, op)] for label, ops in probe.candidates.items() for op in ops
               if (label, op) in aggregated]
    uncalled = [label for label in probe.candidates if (label, probe.candidates[label][0]) not in aggregated]
    if uncalled:
        raise ValueError(f'LayerChoice labels {uncalled} were never called in the dry run on an input of shape '
                         f'{list(probe.input_shape)}; LightNAS cannot time them')
    call = done[('call', 'identity')]
    call_ms = float(call['median_ms'])
    call_row = {'kind': 'fixed', 'layer': 'call', 'op': 'identity', 'latency_ms': call_ms if overhead else 0.0,
                'median_ms': call_ms, 'p25_ms': call['p25_ms'], 'p75_ms': call['p75_ms'], 'overhead_ms': 0.0,
                'cv': call['cv'], 'runs': call['runs'], 'stable': call['stable'], 'input_shape': call['input_shape'],
                'output_shape': call['output_shape'], 'measured_at': call['measured_at'], 'energy_mj': None,
                'instances': 1}

    # whole networks: the fixed part, and the check of the table
    ops_only = LatencyLUT(pd.DataFrame(op_rows), {'depth_gates': gates})  # the op rows' sum, depth gates applied
    archs = _check_archs(ops_only, check_archs, seed)
    missing = [arch for arch in archs if ('whole', arch_string(arch)) not in done]
    if missing:
        results = measure_space_archs(space, missing, device, example_input=probe.input_shape)
        for arch, result in zip(missing, results):
            record(_Measurement('whole', 'whole', arch_string(arch), '', probe.input_shape, probe.output_shape,
                                _Identity), result)
    measured = [float(done[('whole', arch_string(arch))]['median_ms']) for arch in archs]
    op_sums = [ops_only.predict(arch) for arch in archs]
    residuals = [whole - call_row['latency_ms'] - ops for whole, ops in zip(measured, op_sums)]
    rest_ms = statistics.median(residuals)
    rest_row = {**{column: None for column in COLUMNS}, 'kind': 'fixed', 'layer': 'rest', 'op': 'rest',
                'latency_ms': rest_ms, 'median_ms': rest_ms, 'overhead_ms': 0.0, 'runs': len(archs), 'stable': True,
                'input_shape': _shape_key(probe.input_shape), 'output_shape': _shape_key(probe.output_shape),
                'measured_at': call['measured_at'], 'instances': 1}
    if rest_ms < 0:
        _logger.warning('the fixed part came out negative (%.4f ms): the per-op rows overestimate whole networks '
                        '(fusion across ops, or a small batch where the call overhead dominates)', rest_ms)

    metadata = dict(metadata or expected)
    instances = {label: len(probe.calls_of(label)) if label not in depth_labels else 1 for label in probe.candidates}
    metadata.update({'format': LUT_FORMAT, 'preset': type(space).__name__, 'batch': int(probe.input_shape[0]),
                     'input_size': None, 'in_chans': None, 'correction': 'none', 'complete': True,
                     'num_runs': device.num_runs, 'num_warmup_runs': device.num_warmup_runs,
                     'instances': instances, 'output_shape': list(probe.output_shape)})
    if gates:
        metadata['depth_gates'] = gates
    lut = LatencyLUT(pd.DataFrame([call_row, rest_row, *op_rows]), metadata)
    check = [{'arch': arch_string(arch), 'measured_ms': ms, 'predicted_ms': lut.predict(arch),
              'relative_error': lut.predict(arch) / ms - 1.0} for arch, ms in zip(archs, measured)]
    lut.metadata['whole_net_check'] = check
    worst = max(abs(row['relative_error']) for row in check)
    _logger.info('space LUT %s: %d layers (%d choice calls), fixed part %.4f ms, whole-net check on %d nets: '
                 'worst error %.1f%%', type(space).__name__, len(lut.labels), len(probe.calls), rest_ms, len(check),
                 100 * worst)
    if worst > _CHECK_WARN:
        _logger.warning('the per-op table misses whole-network latency by up to %.1f%% on %d checked nets; fit a '
                        'calibration (fit_linear_calibration with measure_space_archs) before trusting it',
                        100 * worst, len(check))
    if final_path is not None:
        lut.save(final_path)
        if journal_path is not None and journal_path.is_file():
            journal_path.unlink()
    _logger.debug('space LUT metadata: %s', json.dumps({k: v for k, v in lut.metadata.items()
                                                         if k != 'whole_net_check'}, default=str))
    return lut

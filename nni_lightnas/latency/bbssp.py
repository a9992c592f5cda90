"""BBSSP layer-adaptive correction of a per-op LUT with whole-network measurements.

A per-op sum misses what the runtime does across op boundaries (fusion, scheduling, cache
reuse). Black-box search space profiling (BBSSP) measures whole "base networks" instead:

* ``SSBN_0``: the typical op at every searchable layer;
* ``SSBN_(i<-j)``: ``SSBN_0`` with layer ``i`` switched to op ``j``.

The corrected entry is ``L(i, j) = l_i^typ + T(SSBN_(i<-j)) - T(SSBN_0)``, where
``l_i^typ`` is the plain LUT's latency of the typical op at layer ``i``. The fixed part
gets one more row, ``bbssp/anchor = T(SSBN_0) - (fixed + sum_i l_i^typ)``, so the corrected
table predicts ``SSBN_0`` exactly and every single-layer swap of it exactly; a general
architecture gets ``T(SSBN_0) + sum_i (T(SSBN_(i<-a_i)) - T(SSBN_0))``.

Measurement: per layer, ``SSBN_0`` and its swaps at that layer are measured as one group
with their timed runs interleaved (:meth:`~nni_lightnas.latency.device.Device.measure_group`),
so a change of machine load hits the base and its variants alike and their differences
stay accurate. Each difference is taken relative to its group's ``SSBN_0`` and scaled to
the median ``SSBN_0`` of all groups, ``T(SSBN_0) * (T(SSBN_(i<-j)) / T_group(SSBN_0) - 1)``
(identical on a quiet machine; a group measured under heavier load does not inflate its
layer's corrections). ``rounds > 1`` repeats the whole plan and takes the median
difference. With a ``journal`` path every finished group of measurements is appended at
once and a rerun continues where it stopped.

Examples
--------
>>> from nni_lightnas.latency import LocalDevice
>>> from nni_lightnas.latency.lut_build import build_lut
>>> device = LocalDevice(num_runs=5, num_warmup_runs=1)
>>> corrected = bbssp_correct(build_lut('tiny', device, batch=2), device)  # doctest: +SKIP
>>> corrected.metadata['correction']  # doctest: +SKIP
'bbssp'
"""

from __future__ import annotations

import datetime
import logging
import os
import statistics
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from .device import Device, LatencyResult
from .journal import CSVJournal, read_journal
from .lut import COLUMNS, LatencyLUT, LUTMismatchError
from nni_lightnas.search_spaces.resolve import resolve_space

__all__ = ['bbssp_plan', 'bbssp_correct', 'typical_ops']

_logger = logging.getLogger(__name__)

_JOURNAL_PREFIX = '# nni-lightnas-bbssp '
_JOURNAL_COLUMNS = ['step', 'round', 'group', 'kind', 'layer', 'op', 'median_ms', 'p25_ms', 'p75_ms', 'cv', 'stable',
                    'measured_at']


def typical_ops(lut: LatencyLUT, typical_op: str | Mapping[str, str] | None = None) -> dict[str, str]:
    """The op of ``SSBN_0`` at every layer.

    ``None``: per layer, the non-skip candidate with the median LUT latency (a typical block,
    neither the cheapest nor the most expensive). A string: that op everywhere. A mapping:
    label -> op.
    """
    result = {}
    for label in lut.labels:
        names = lut.candidates[label]
        if typical_op is None:
            blocks = [op for op in names if op != 'skip'] or list(names)
            ordered = sorted(blocks, key=lambda op: lut.latency(label, op))
            op = ordered[(len(ordered) - 1) // 2]
        elif isinstance(typical_op, str):
            op = typical_op
        else:
            if label not in typical_op:
                raise ValueError(f'typical_op has no op for layer {label}; it names {sorted(typical_op)}')
            op = typical_op[label]
        if op not in names:
            raise ValueError(f'typical op {op!r} is not a candidate of {label}; accepted: {names}')
        result[label] = op
    return result


def bbssp_plan(lut: LatencyLUT, typical: Mapping[str, str], rounds: int = 1) -> list[dict[str, Any]]:
    """The measurement steps: per round and layer, one group of ``SSBN_0`` and its swaps at that layer.

    The networks of a group are measured together, their timed runs interleaved
    (:meth:`~nni_lightnas.latency.device.Device.measure_group`).
    """
    steps = []
    group = 0
    for round_index in range(rounds):
        for label in lut.labels:
            steps.append({'round': round_index, 'group': group, 'kind': 'base', 'layer': label, 'op': typical[label]})
            for op in lut.candidates[label]:
                if op != typical[label]:
                    steps.append({'round': round_index, 'group': group, 'kind': 'swap', 'layer': label, 'op': op})
            group += 1
    for index, step in enumerate(steps):
        step['step'] = index
    return steps


def _arch_of(step: Mapping[str, Any], labels: list[str], typical: Mapping[str, str]) -> list[str]:
    ops = [typical[label] for label in labels]
    if step['kind'] == 'swap':
        ops[labels.index(step['layer'])] = step['op']
    return ops


def bbssp_correct(lut: LatencyLUT, device: Device, *, space: Any = None,
                  typical_op: str | Mapping[str, str] | None = None, rounds: int = 1,
                  journal: str | os.PathLike | None = None,
                  on_measure: Callable[[dict[str, Any]], None] | None = None) -> LatencyLUT:
    """Correct ``lut`` with whole-network measurements on ``device`` (BBSSP, layer-adaptive).

    Parameters
    ----------
    lut
        The plain per-op LUT, measured on the same device at the same batch.
    device
        Where the base networks are measured.
    space
        The space (``LightNASSpace``, preset or ``SpaceConfig``); default: the one recorded
        in the LUT's metadata.
    typical_op
        Op of ``SSBN_0``: see :func:`typical_ops`.
    rounds
        Repetitions of the whole plan; the median difference is kept.
    journal
        CSV where every finished group of measurements is appended; a rerun resumes from it.
    on_measure
        Called after each newly measured group (a dict with ``group``, ``layer``, ``rows``);
        may raise to stop.

    Returns
    -------
    LatencyLUT
        The corrected table (metadata ``correction='bbssp'``), with the per-op values in
        ``latency_ms`` and the plain ones in ``plain_latency_ms``.
    """
    from nni_lightnas.export import onnx_bytes
    from nni_lightnas.search_spaces import LightNet, SpaceConfig

    if rounds < 1:
        raise ValueError(f'rounds must be >= 1, got {rounds=}')
    if lut.metadata.get('correction', 'none') != 'none':
        raise ValueError(f'the LUT is already corrected ({lut.metadata["correction"]}); pass the plain LUT')
    if space is None:
        if 'space_config' not in lut.metadata:
            raise ValueError('the LUT records no space_config; pass space=')
        config = SpaceConfig.from_dict(lut.metadata['space_config'])
    else:
        config = resolve_space(space)[0]
    batch = int(lut.metadata.get('batch', 1))
    lut.check_compatible(space, device=device.name, threads=device.threads)
    clock = getattr(device, 'clock', 'wall')
    if lut.metadata.get('clock', 'wall') != clock:
        raise LUTMismatchError(f"the LUT was measured with clock={lut.metadata.get('clock', 'wall')!r}, "
                               f'the device measures with clock={clock!r}')
    if lut.metadata.get('space_fingerprint') not in (None, config.fingerprint()):
        raise LUTMismatchError(f'the LUT was built for another space (fingerprint '
                               f'{lut.metadata.get("space_fingerprint")}, expected {config.fingerprint()})')
    typical = typical_ops(lut, typical_op)
    labels = lut.labels
    steps = bbssp_plan(lut, typical, rounds)
    input_shape = (batch, config.in_chans, config.input_size, config.input_size)

    journal_metadata = {'format': 'nni-lightnas-bbssp/1', 'space_fingerprint': config.fingerprint(),
                        'input_size': config.input_size, 'batch': batch, 'device': device.name,
                        'threads': device.threads, 'clock': clock, 'typical_ops': typical, 'rounds': rounds}
    done: dict[int, dict[str, Any]] = {}
    writer = None
    if journal is not None:
        journal = Path(journal)
        writer = CSVJournal(journal, _JOURNAL_COLUMNS, prefix=_JOURNAL_PREFIX)
        if journal.is_file():
            resumed = read_journal(journal, prefix=_JOURNAL_PREFIX, key=('step',),
                                   required=('step', 'kind', 'median_ms'),
                                   numeric=('step', 'round', 'group', 'median_ms', 'p25_ms', 'p75_ms', 'cv'),
                                   dtype={'layer': str, 'op': str})
            found, table = resumed.metadata, resumed.rows
            for key, value in journal_metadata.items():
                if found.get(key) != value:
                    raise LUTMismatchError(f'BBSSP journal {journal} was written with {key}={found.get(key)!r}, '
                                           f'now {key}={value!r}; delete it or pass another journal')
            done = {int(row['step']): row for row in table.to_dict('records')}
            for number, reason in resumed.bad_lines:
                _logger.warning('%s, line %d: %s; that network will be measured again', journal, number, reason)
            # A group is measured interleaved, so a group cut short is measured again as a whole.
            group_of = {step['step']: step['group'] for step in steps}
            complete = {group for group in set(group_of.values())
                        if all(s['step'] in done for s in steps if s['group'] == group)}
            partial = [number for number in done if group_of.get(number) not in complete]
            for number in partial:
                del done[number]
            if resumed.bad_lines or partial:
                writer.rewrite(found, list(done.values()))
            _logger.info('resuming BBSSP journal %s: %d of %d networks measured', journal, len(done), len(steps))
        else:
            writer.start(journal_metadata)

    groups: dict[int, list[dict[str, Any]]] = {}
    for step in steps:
        groups.setdefault(step['group'], []).append(step)
    for members in groups.values():
        if all(step['step'] in done for step in members):
            continue
        nets = [onnx_bytes(LightNet(_arch_of(step, labels, typical), config), input_shape) for step in members]
        results: list[LatencyResult] = device.measure_group(nets, input_shape)
        stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
        for step, result in zip(members, results):
            row = {**step, 'median_ms': result.median_ms, 'p25_ms': result.p25_ms, 'p75_ms': result.p75_ms,
                   'cv': result.cv, 'stable': bool(result.stable), 'measured_at': stamp}
            done[step['step']] = row
            if writer is not None:
                writer.append(row)
            _logger.info('BBSSP %s %s %s: %.4f ms', step['kind'], step['layer'], step['op'], result.median_ms)
        if on_measure is not None:
            on_measure({'group': members[0]['group'], 'layer': members[0]['layer'],
                        'rows': [done[step['step']] for step in members]})

    # differences T(SSBN_(i<-j)) - T(SSBN_0) within each interleaved group
    # (relative to the group's own SSBN_0, then scaled to the median SSBN_0: a group measured
    # while the machine was slower does not inflate its layer's corrections)
    ratios: dict[tuple[str, str], list[float]] = {}
    bases: list[float] = []
    for members in groups.values():
        rows = [done[step['step']] for step in members]
        base = float(next(row['median_ms'] for row in rows if row['kind'] == 'base'))
        bases.append(base)
        for row in rows:
            if row['kind'] == 'swap':
                ratios.setdefault((row['layer'], row['op']), []).append(float(row['median_ms']) / base)
    base_ms = statistics.median(bases)
    deltas = {key: [(ratio - 1.0) * base_ms for ratio in values] for key, values in ratios.items()}

    table = lut.table.copy()
    table['plain_latency_ms'] = table['latency_ms']
    table['ssbn_ms'] = float('nan')
    typical_sum = 0.0
    for label in labels:
        typical_ms = lut.latency(label, typical[label])
        typical_sum += typical_ms
        for op in lut.candidates[label]:
            mask = (table['kind'] == 'op') & (table['layer'] == label) & (table['op'] == op)
            delta = 0.0 if op == typical[label] else statistics.median(deltas[(label, op)])
            table.loc[mask, 'latency_ms'] = typical_ms + delta
            table.loc[mask, 'ssbn_ms'] = base_ms + delta
    anchor = base_ms - (lut.fixed_ms + typical_sum)
    anchor_row = {column: None for column in COLUMNS}
    anchor_row.update({'kind': 'fixed', 'layer': 'bbssp', 'op': 'anchor', 'latency_ms': anchor,
                       'median_ms': base_ms, 'ssbn_ms': base_ms, 'plain_latency_ms': 0.0,
                       'input_shape': 'x'.join(map(str, input_shape)),
                       'measured_at': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')})
    table = pd.concat([table, pd.DataFrame([anchor_row])], ignore_index=True)
    spread = (max(bases) - min(bases)) / base_ms if base_ms else 0.0
    metadata = {**lut.metadata, 'correction': 'bbssp', 'bbssp': {
        'typical_ops': typical, 'ssbn0_ms': base_ms, 'ssbn0_min_ms': min(bases), 'ssbn0_max_ms': max(bases),
        'ssbn0_relative_spread': spread, 'rounds': rounds, 'networks_measured': len(steps),
        'plain_prediction_of_ssbn0_ms': lut.fixed_ms + typical_sum,
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}}
    if spread > 0.05:
        _logger.warning('SSBN_0 varied by %.1f%% during the BBSSP measurements: the machine is not quiet; '
                        'corrections of a few percent are not trustworthy (use rounds > 1)', 100 * spread)
    _logger.info('BBSSP: SSBN_0 measured %.4f ms, plain LUT predicts %.4f ms (anchor %+.4f ms)',
                 base_ms, lut.fixed_ms + typical_sum, anchor)
    return LatencyLUT(table, metadata)

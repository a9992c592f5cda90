"""What accuracy to expect of a predictor fitted on N measurements of a new device.

The figures come from the leave-one-device-out benchmark (``benchmarks/predictor_transfer.py``,
written to ``docs/predictor_transfer.json``): every device column of the public NAS-Bench-201
and FBNet tables held out in turn, the predictor trained on N of its rows (pre-trained on the
other columns for ``transfer``) and tested on the rest. The package carries the benchmark's
summary in ``transfer_validation.json`` (:func:`summarize_validation` of that JSON; a test keeps
the two equal), so an installed ``nni-lightnas profile`` can report it without the docs.

* :func:`expected_accuracy`: the mean and worst device at the largest validated N not above
  the N measured (or the smallest validated N, flagged, when fewer were measured).

Examples
--------
>>> expected = expected_accuracy('transfer', 20)
>>> expected['validated_n_train'], expected['mean_acc10'] > 50, expected['worst_acc10'] <= expected['mean_acc10']
(20, True, True)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

__all__ = ['VALIDATION_FILE', 'SUMMARY_KEYS', 'summarize_validation', 'load_validation', 'expected_accuracy']

_logger = logging.getLogger(__name__)

#: The packaged summary of the leave-one-device-out benchmark.
VALIDATION_FILE = Path(__file__).with_name('transfer_validation.json')
#: Keys of each (kind, N) row kept from the benchmark's summary.
SUMMARY_KEYS = ('kind', 'n_train', 'devices', 'seeds', 'mean_acc10', 'mean_acc5', 'mean_mape', 'mean_spearman',
                'worst_acc10', 'worst_acc10_device', 'worst_spearman', 'worst_spearman_device')


def summarize_validation(benchmark: Mapping[str, Any], *, source: str = 'docs/predictor_transfer.json') -> dict:
    """The compact form of a ``benchmarks/predictor_transfer.py`` JSON: its protocol and summary rows.

    Examples
    --------
    >>> row = {key: 0 for key in SUMMARY_KEYS}
    >>> summary = summarize_validation({'meta': {'date': 'd', 'protocol': 'p'}, 'summary': [dict(row, kind='gbt')]})
    >>> summary['rows'][0]['kind'], summary['protocol']
    ('gbt', 'p')
    """
    meta = benchmark.get('meta', {})
    rows = benchmark.get('summary')
    if not isinstance(rows, list) or not rows:
        raise ValueError(f'{source}: no "summary" rows; expected the JSON of benchmarks/predictor_transfer.py')
    missing = [key for key in SUMMARY_KEYS if key not in rows[0]]
    if missing:
        raise ValueError(f'{source}: summary rows lack {missing}; expected keys {list(SUMMARY_KEYS)}')
    return {'source': source, 'date': meta.get('date'), 'protocol': meta.get('protocol'),
            'rows': [{key: row[key] for key in SUMMARY_KEYS} for row in rows]}


def load_validation(path: str | os.PathLike | None = None) -> dict:
    """A validation summary: the packaged one, or from a benchmark JSON at ``path``.

    Examples
    --------
    >>> load_validation()['source']
    'docs/predictor_transfer.json'
    """
    if path is None:
        return json.loads(VALIDATION_FILE.read_text())
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'validation JSON {path} does not exist')
    return summarize_validation(json.loads(path.read_text()), source=str(path))


def expected_accuracy(kind: str, num_train: int, *, validation: Mapping[str, Any] | None = None) -> dict | None:
    """Mean and worst-device accuracy of ``kind`` on unseen devices, from ``num_train`` measurements.

    Returns ``None`` when the benchmark did not validate ``kind`` (for example ``gnn``).
    Otherwise a dict with the row's figures (``mean_acc10``, ``worst_acc10``,
    ``worst_acc10_device``, ``mean_spearman``, ``worst_spearman``, ... as in
    :data:`SUMMARY_KEYS`), ``validated_n_train`` (the largest validated N not above
    ``num_train``), ``below_validated`` (fewer measurements than any validated N: expect
    worse than the figures), ``n_train`` and the benchmark's ``protocol``, ``date`` and ``source``.

    Parameters
    ----------
    kind
        A predictor kind (``transfer``, ``ensemble``, ``additive``, ``mlp``; ``best`` is not
        resolved here: pass the kind it stood for).
    num_train
        Measured architectures the predictor was fitted on.
    validation
        A summary (:func:`load_validation`); default the packaged one.

    Examples
    --------
    >>> expected_accuracy('transfer', 35)['validated_n_train']
    20
    >>> expected_accuracy('gnn', 100) is None
    True
    """
    if num_train < 1:
        raise ValueError(f'num_train must be >= 1, got {num_train=}')
    validation = load_validation() if validation is None else validation
    rows = sorted((row for row in validation['rows'] if row['kind'] == kind), key=lambda row: row['n_train'])
    if not rows:
        _logger.debug('no leave-one-device-out figures for kind %r', kind)
        return None
    below = [row for row in rows if row['n_train'] <= num_train]
    row = below[-1] if below else rows[0]
    result = {key: value for key, value in row.items() if key != 'n_train'}
    result.update({'n_train': int(num_train), 'validated_n_train': row['n_train'], 'below_validated': not below,
                   'protocol': validation.get('protocol'), 'date': validation.get('date'),
                   'source': validation.get('source')})
    return result

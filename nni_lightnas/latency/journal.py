"""The append-only CSV journal that LUTs and BBSSP corrections are measured into.

A journal is a CSV file whose first line is ``PREFIX {json metadata}`` and whose second
line is the column header; each finished measurement appends one line, flushed and
``fsync``-ed (:class:`CSVJournal`), so a crash loses at most the line being written. The
header and any rewrite go through :func:`~nni_lightnas.atomic.atomic_write`.

:func:`read_journal` reads one back line by line and checks every row:

* a *torn* line (the last line without its newline, or a line with the wrong number of
  fields, as a crash or a full disk leaves it) and a *malformed* one (a required field
  empty, a number field that is not a number) is reported with the file and line number:
  a journal being resumed drops it with a warning, so the row is measured again; a finished
  table (``strict=True``) is refused;
* two lines with the same key (``layer, op`` of a LUT) and the same values are one row; with
  different values they are refused, naming the file, both lines and the values, since no
  rule can tell which measurement is right.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / 'journal.csv'
>>> journal = CSVJournal(path, ['layer', 'op', 'latency_ms'], prefix='# demo ')
>>> journal.start({'format': 'demo/1'})
>>> journal.append({'layer': 'L1', 'op': 'skip', 'latency_ms': 0.5})
>>> _ = open(path, 'a').write('L1,MBK3E6,0.')  # a torn last line
>>> table = read_journal(path, prefix='# demo ', required=('layer', 'op', 'latency_ms'),
...                      numeric=('latency_ms',))
>>> table.rows.to_dict('records'), table.bad_lines
([{'layer': 'L1', 'op': 'skip', 'latency_ms': 0.5}], [(4, 'torn: the last line has no line end')])
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from nni_lightnas.atomic import atomic_write

__all__ = ['JournalFormatError', 'JournalTable', 'CSVJournal', 'read_journal', 'write_table']

_logger = logging.getLogger(__name__)


class JournalFormatError(ValueError):
    """A journal or table file is not what it should be; the message names the file and line."""


@dataclass
class JournalTable:
    """What :func:`read_journal` found.

    Attributes
    ----------
    metadata
        The JSON of the first line.
    rows
        The good rows (one per key), in file order.
    bad_lines
        ``(line number, reason)`` of every torn or malformed line that was left out.
    """

    metadata: dict[str, Any]
    rows: pd.DataFrame
    bad_lines: list[tuple[int, str]] = field(default_factory=list)


def write_table(path: Path, metadata: Mapping[str, Any], table: pd.DataFrame, *, prefix: str) -> None:
    """Write the metadata line and ``table`` (with its header) to ``path`` atomically."""
    with atomic_write(path, 'w', newline='') as file:
        file.write(prefix + json.dumps(metadata, sort_keys=True) + '\n')
        table.to_csv(file, index=False)


def _check_row(values: dict[str, str], required: Sequence[str], numeric: Sequence[str]) -> str | None:
    """Why a row is malformed, or ``None``."""
    for column in required:
        if values.get(column, '') == '':
            return f'{column} is empty'
    for column in numeric:
        text = values.get(column, '')
        if text == '':
            continue
        try:
            number = float(text)
        except ValueError:
            return f'{column}={text!r} is not a number'
        if column in required and not math.isfinite(number):
            return f'{column}={text!r} is not a finite number'
    return None


def read_journal(path: str | os.PathLike, *, prefix: str, key: Sequence[str] = ('layer', 'op'),
                 required: Sequence[str] = (), numeric: Sequence[str] = (),
                 dtype: Mapping[str, Any] | None = None, strict: bool = False) -> JournalTable:
    """Read a journal, checking every line (see the module docstring).

    Parameters
    ----------
    path
        The file.
    prefix
        What its first line starts with, before the JSON metadata.
    key
        Columns that identify a row.
    required, numeric
        Columns that must not be empty; columns that must hold numbers when not empty.
    dtype
        ``pandas.read_csv`` dtypes of the good rows.
    strict
        Refuse (:class:`JournalFormatError`) a torn or malformed line instead of leaving it out.

    Raises
    ------
    JournalFormatError
        Not text, no ``prefix`` line, metadata that is not JSON, conflicting duplicates, or
        (``strict``) a bad line.
    """
    path = Path(path)
    kind = prefix.strip('# ').strip() or 'journal'
    try:
        text = path.read_bytes().decode('utf-8')
    except UnicodeDecodeError as error:
        raise JournalFormatError(f'{path} is not a text file (byte {error.start} is not UTF-8); expected an '
                                 f'{kind} CSV whose first line starts with {prefix.strip()!r}') from None
    lines = text.split('\n')
    terminated = text.endswith('\n')
    if terminated:
        lines.pop()  # the empty string after the last newline
    if not lines or not lines[0].startswith(prefix):
        first = lines[0][:40] if lines else ''
        raise JournalFormatError(f'{path} is not an {kind} table: its first line {first!r} does not start with '
                                 f'{prefix.strip()!r}')
    if len(lines) == 1 and not terminated:
        raise JournalFormatError(f'{path}, line 1: the metadata line is cut short (no line end); the file was '
                                 f'torn while being written: delete it and build it again')
    try:
        metadata = json.loads(lines[0][len(prefix):])
    except json.JSONDecodeError as error:
        raise JournalFormatError(f'{path}, line 1: the metadata after {prefix.strip()!r} is not valid JSON '
                                 f'({error.msg} at column {error.colno + len(prefix)}); the file is cut or was '
                                 f'edited: restore it or build it again') from None
    if not isinstance(metadata, dict):
        raise JournalFormatError(f'{path}, line 1: the metadata is {type(metadata).__name__}, expected a JSON object')
    if len(lines) < 2 or not lines[1].strip():
        return JournalTable(metadata, pd.DataFrame(columns=list(required) or list(key)))
    header = next(csv.reader([lines[1]]))
    missing = [column for column in (*key, *required) if column not in header]
    if missing:
        raise JournalFormatError(f'{path}, line 2: the header lacks columns {missing}; it has {header}')
    good_lines: list[str] = []
    bad_lines: list[tuple[int, str]] = []
    seen: dict[tuple[str, ...], tuple[int, list[str]]] = {}
    for index, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        if index == len(lines) and not terminated:
            bad_lines.append((index, 'torn: the last line has no line end'))
            continue
        fields = next(csv.reader([line]), [])
        if len(fields) != len(header):
            bad_lines.append((index, f'torn: {len(fields)} fields, the header has {len(header)}'))
            continue
        values = dict(zip(header, fields))
        reason = _check_row(values, required, numeric)
        if reason is not None:
            bad_lines.append((index, f'malformed: {reason}'))
            continue
        row_key = tuple(values[column] for column in key)
        if row_key in seen:
            first_line, first_fields = seen[row_key]
            if first_fields != fields:
                differing = [f'{column} {a!r} vs {b!r}' for column, a, b in zip(header, first_fields, fields)
                             if a != b]
                raise JournalFormatError(
                    f'{path}: lines {first_line} and {index} both hold '
                    f'{", ".join(f"{c}={v}" for c, v in zip(key, row_key))} with different values '
                    f'({"; ".join(differing)}); delete the wrong line, or rebuild the table')
            continue
        seen[row_key] = (index, fields)
        good_lines.append(line)
    if bad_lines and strict:
        number, reason = bad_lines[0]
        more = f' (and {len(bad_lines) - 1} more bad lines)' if len(bad_lines) > 1 else ''
        raise JournalFormatError(f'{path}, line {number}: {reason}{more}; an interrupted build leaves such a line: '
                                 f'rerun the build with the same settings to measure the row again')
    frame = pd.read_csv(io.StringIO('\n'.join([lines[1], *good_lines]) + '\n'), dtype=dict(dtype or {}))
    return JournalTable(metadata, frame, bad_lines)


class CSVJournal:
    """Append-only CSV with the metadata line: one flushed, fsynced line per finished row.

    Parameters
    ----------
    path
        The journal file.
    columns
        Its columns, in order.
    prefix
        What its first line starts with, before the JSON metadata.
    """

    def __init__(self, path: Path, columns: Sequence[str], *, prefix: str):
        self.path = Path(path)
        self.columns = list(columns)
        self.prefix = prefix

    def start(self, metadata: Mapping[str, Any]) -> None:
        """Write the metadata line and the header (atomically), replacing any file at ``path``."""
        self.rewrite(metadata, [])

    def rewrite(self, metadata: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> None:
        """Replace the journal by ``metadata`` and ``rows`` (atomically), e.g. without its torn lines."""
        write_table(self.path, metadata, pd.DataFrame(list(rows), columns=self.columns), prefix=self.prefix)

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one row and make it durable before returning."""
        line = pd.DataFrame([row], columns=self.columns).to_csv(index=False, header=False)
        with open(self.path, 'a', encoding='utf-8', newline='') as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())

"""Atomic writes and the LUT journal: torn, malformed and conflicting lines are found and named."""

from __future__ import annotations

import logging

import pytest
from latency_fakes import ParamsDevice

from nni_lightnas.atomic import atomic_write, atomic_write_text
from nni_lightnas.latency.lut import LatencyLUT, LUTFormatError
from nni_lightnas.latency.lut_build import build_lut, lut_entries

BATCH = 2


@pytest.fixture()
def built(tmp_path):
    path = tmp_path / 'lut.csv'
    build_lut('tiny', ParamsDevice(num_runs=3, num_warmup_runs=0), batch=BATCH, path=path)
    return path


def _lines(path):
    return path.read_text().split('\n')


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path):
    path = atomic_write_text(tmp_path / 'summary.json', '{"old": 1}')
    with pytest.raises(RuntimeError, match='disk'):
        with atomic_write(path) as file:
            file.write('{"new": ')
            raise RuntimeError('disk went away')
    assert path.read_text() == '{"old": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['summary.json']  # no temporary file left


def test_torn_malformed_and_junk_lines_are_named_and_measured_again(built, caplog):
    lines = _lines(built)
    total = len(lut_entries('tiny', BATCH))
    assert len([line for line in lines[2:] if line]) == total
    header = lines[1].split(',')
    bad_value = lines[4].split(',')
    bad_value[header.index('latency_ms')] = 'abc'
    # line 5: a value that is no number; line 6: junk; the last line: torn (no line end)
    edited = lines[:4] + [','.join(bad_value), 'garbage without commas'] + lines[5:-2]
    built.write_text('\n'.join(edited) + '\n' + lines[-2][:25])
    device = ParamsDevice(num_runs=3, num_warmup_runs=0)
    with caplog.at_level(logging.WARNING, logger='nni_lightnas.latency.lut_build'):
        lut = build_lut('tiny', device, batch=BATCH, path=built)
    messages = [record.getMessage() for record in caplog.records]
    assert any(f'{built}, line 5: malformed: latency_ms=\'abc\' is not a number' in m for m in messages), messages
    assert any(f'{built}, line 6: torn' in m for m in messages), messages
    assert any(f'{built}, line {len(edited) + 1}: torn: the last line has no line end' in m for m in messages)
    assert device.calls == 2  # the row with 'abc' and the torn last row; the junk line held no row
    assert len(lut.table) == total
    reloaded = LatencyLUT.load(built, space='tiny')  # a clean, complete file: strict reading accepts it
    assert reloaded.metadata['complete'] is True and len(reloaded.table) == total


def test_a_finished_lut_with_a_torn_line_is_refused_naming_the_line(built):
    lines = _lines(built)
    built.write_text('\n'.join(lines[:-2]) + '\n' + lines[-2][:30])
    with pytest.raises(LUTFormatError, match=rf'{built.name}, line {len(lines) - 1}: torn'):
        LatencyLUT.load(built)


def test_a_conflicting_duplicate_is_refused_naming_both_lines(built):
    lines = _lines(built)
    header = lines[1].split(',')
    duplicate = lines[4].split(',')
    column = header.index('latency_ms')
    duplicate[column] = str(float(duplicate[column]) * 10)
    built.write_text('\n'.join(lines[:-1]) + '\n' + ','.join(duplicate) + '\n')
    with pytest.raises(LUTFormatError, match=rf'lines 5 and {len(lines)} both hold layer=.*latency_ms'):
        build_lut('tiny', ParamsDevice(num_runs=3, num_warmup_runs=0), batch=BATCH, path=built)
    # the same row twice is one row
    built.write_text('\n'.join(lines[:-1]) + '\n' + lines[4] + '\n')
    assert len(LatencyLUT.load(built).table) == len(lines) - 3


@pytest.mark.parametrize('content, message', [
    (b'\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary', r'is not a text file \(byte \d+ is not UTF-8\)'),
    (b'# nni-lightnas-lut {"format": "nni-lightnas-lut/1", "bat\nkind,layer,op,latency_ms,median_ms\n',
     r'line 1: the metadata after .* is not valid JSON'),
    (b'layer,op,latency_ms\n', r'is not an nni-lightnas-lut table'),
])
def test_a_file_that_is_no_lut_is_named(tmp_path, content, message):
    path = tmp_path / 'lut.csv'
    path.write_bytes(content)
    with pytest.raises(LUTFormatError, match=message) as caught:
        LatencyLUT.load(path)
    assert str(path) in str(caught.value)


def test_a_full_disk_mid_build_leaves_a_torn_row_that_the_resume_measures_again(built, tmp_path, caplog):
    """A real short write: the build runs under a file size limit (RLIMIT_FSIZE) that cuts a row."""
    import subprocess
    import sys
    from pathlib import Path
    lines = built.read_text().split('\n')
    kept_rows = 4
    limit = sum(len(line) + 1 for line in lines[:2 + kept_rows]) + 20  # 20 bytes into the next row
    path = tmp_path / 'small_disk' / 'lut.csv'
    script = (f'import resource, sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n'
              'from latency_fakes import ParamsDevice\nfrom nni_lightnas.latency.lut_build import build_lut\n'
              f'resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n'
              f"build_lut('tiny', ParamsDevice(num_runs=3, num_warmup_runs=0), batch={BATCH}, path={str(path)!r})\n")
    completed = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=300)
    assert completed.returncode != 0 and 'File too large' in completed.stderr, completed.stderr[-2000:]
    assert path.stat().st_size == limit  # the last row was cut where the disk ran full
    device = ParamsDevice(num_runs=3, num_warmup_runs=0)
    with caplog.at_level(logging.WARNING, logger='nni_lightnas.latency.lut_build'):
        lut = build_lut('tiny', device, batch=BATCH, path=path)
    torn = f'{path}, line {2 + kept_rows + 1}: torn: the last line has no line end'
    assert any(torn in record.getMessage() for record in caplog.records), caplog.text
    total = len(lut_entries('tiny', BATCH))
    assert device.calls == total - kept_rows and len(lut.table) == total
    assert LatencyLUT.load(path).table.equals(LatencyLUT.load(built).table.assign(
        measured_at=LatencyLUT.load(path).table['measured_at']))

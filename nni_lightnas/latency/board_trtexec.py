#!/usr/bin/env python3
"""Board side: time an ONNX model with TensorRT's ``trtexec``, building each engine once.

Shipped to the board with ``ssh_board.py`` (Python 3.6, standard library only).

- **Engine cache**: engines live in ``<cache>/<key>.engine``, the key being the sha256 of
  the network's id (the host's hash of the ONNX structure without weight values, else the
  file's sha256), the TensorRT version, the engine-shaping trtexec flags
  (``--fp16``, ``--int8``, ``--shapes``, ...) and the board model. A miss builds with
  ``--onnx ... --saveEngine`` (and ``--timingCacheFile``, one per TensorRT version, shared by
  every build, TensorRT 8+); a hit times ``--loadEngine``. A LUT profiled again, or resumed,
  on the same board builds nothing. The oldest engines go past ``max_mb``.
- **Per-run times without warm-up**: TensorRT 8+ through ``--exportTimes`` (``computeMs``),
  TensorRT 7 through its ``Average on 1 runs - GPU latency`` trace lines (its
  ``--exportTimes`` also turns on the layer profiler). Some versions count warm-up runs in
  these; only the last ``runs`` entries, the timed ones, are kept.
- **Stability**: IQR / median of the kept times; above ``max_iqr_ratio`` the model is timed
  again (from its cached engine) up to ``max_attempts`` times, keeping the tightest attempt;
  ``stable`` says whether one met the bound. With no per-run times (summary only) the spread
  is unknown and ``stable`` is False.
"""

import glob
import hashlib
import json
import os
import re
import subprocess
import time

try:
    from .runner import summarize_times
except ImportError:  # on the board: the shipped files sit side by side, not in a package
    from runner import summarize_times

__all__ = ['parse_trtexec_output', 'trace_averages', 'trtexec_version', 'split_flags', 'engine_key', 'EngineCache',
           'exported_times', 'timed_runs', 'measure_trtexec']

_NUMBER = r'([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)'
_STAT = re.compile(r'(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*[=:]\s*' + _NUMBER + r'\s*(ms|us|s)?')
_PERCENTILE_OLD = re.compile(r'percentile\s*[=:]\s*' + _NUMBER + r'\s*(ms|us|s)?\s*at\s*(\d+(?:\.\d+)?)%')
_SCALE = {'ms': 1.0, 'us': 1e-3, 's': 1e3, None: 1.0}
# optional log prefix ('[11/24/2026-10:00:00] [I] '), a label, a colon, the numbers
_LINE = re.compile(r'^(?:.*\]\s*)?(?P<label>[A-Za-z][A-Za-z0-9 ]*?)\s*:\s*(?P<rest>.*)$')
_SECTIONS = {'GPU Compute Time': 'gpu_compute', 'GPU Compute': 'gpu_compute', 'Latency': 'latency',
             'Host Latency': 'latency', 'Enqueue Time': 'enqueue', 'H2D Latency': 'h2d', 'D2H Latency': 'd2h'}
# TensorRT 7 prints a section name alone on a line, then one statistic per line
_HEADER = re.compile(r'^(?:.*\]\s*)?(GPU Compute|Host Latency|Enqueue Time|H2D Latency|D2H Latency)\s*$')
_TRT7_STATS = ('min', 'max', 'mean', 'median', 'percentile')
_TRACE = re.compile(r'Average on (\d+) runs - GPU latency:\s*' + _NUMBER + r'\s*ms')
_VERSION_TAG = re.compile(r'\[TensorRT v(\d+)\]')
_VERSION_LINE = re.compile(r'TensorRT version:\s*([0-9][0-9.]*)')
_STARTING = re.compile(r'Starting inference')

# trtexec flags that do not change the engine (timing and reporting only)
RUNTIME_FLAGS = frozenset([
    '--iterations', '--duration', '--warmUp', '--avgRuns', '--exportTimes', '--exportOutput', '--exportProfile',
    '--dumpProfile', '--dumpOutput', '--separateProfileRun', '--useSpinWait', '--threads', '--streams',
    '--infStreams', '--useCudaGraph', '--noDataTransfers', '--verbose', '--percentile', '--idleTime',
    '--sleepTime', '--exposeDMA', '--useManagedMemory', '--loadInputs', '--timeDeserialize', '--timeRefit',
    '--persistentCacheRatio'])
# flags that shape the engine and are needed again when it is loaded
BOTH_FLAGS = frozenset(['--shapes', '--useDLACore', '--device', '--plugins', '--staticPlugins', '--dynamicPlugins'])
# flags the cache sets itself
MANAGED_FLAGS = frozenset(['--onnx', '--saveEngine', '--loadEngine', '--timingCacheFile', '--skipInference',
                           '--iterations', '--duration', '--warmUp', '--avgRuns', '--exportTimes'])


def _parse_stats(text):
    stats = {}
    for match in _STAT.finditer(text):
        name, percent, value, unit = match.groups()
        value = float(value) * _SCALE[unit]
        if percent is not None:
            stats['p%g' % float(percent)] = value
        else:
            stats[name] = value
    for match in _PERCENTILE_OLD.finditer(text):
        value, unit, percent = match.groups()
        stats['p%g' % float(percent)] = float(value) * _SCALE[unit]
    return stats


def parse_trtexec_output(text):
    """Statistics (ms) of trtexec's performance summary: ``{'gpu_compute': {...}, ...}``.

    Reads the one-line form of TensorRT 8/10 (``GPU Compute Time: min = 0.61 ms, ...,
    median = ..., percentile(99%) = ...``), the multi-line form of TensorRT 7 (``GPU
    Compute`` alone on a line, then ``min: 0.61 ms``, ..., ``percentile: 0.9 ms at 99%``),
    the throughput (``qps``), the version (``trtexec_version``) and the trace averages
    (``trace_gpu_ms``, one value per ``Average on N runs`` line, ``trace_avg_runs`` = N).
    Raises ``ValueError`` when there is no GPU compute median.

    Examples
    --------
    >>> text = '[I] GPU Compute Time: min = 0.5 ms, max = 0.9 ms, mean = 0.6 ms, median = 0.58 ms'
    >>> parse_trtexec_output(text)['gpu_compute']['median']
    0.58
    >>> parse_trtexec_output('[I] GPU Compute\\n[I] min: 1.5 ms\\n[I] median: 1.6 ms\\n')['gpu_compute']
    {'min': 1.5, 'median': 1.6}
    """
    sections = {}
    current = None  # TensorRT 7: the section whose statistics follow
    trace = []
    for raw in text.splitlines():
        line = raw.strip()
        header = _HEADER.match(line)
        if header:
            current = _SECTIONS[header.group(1)]
            continue
        averaged = _TRACE.search(line)
        if averaged:
            sections['trace_avg_runs'] = int(averaged.group(1))
            trace.append(float(averaged.group(2)))
            continue
        match = _LINE.match(line)
        if not match:
            continue
        label, rest = ' '.join(match.group('label').split()), match.group('rest')
        if label in ('Throughput', 'throughput'):
            qps = re.match(_NUMBER + r'\s*qps', rest.strip())
            if qps:
                sections['throughput_qps'] = float(qps.group(1))
        elif label in _SECTIONS:
            stats = _parse_stats(rest)
            if stats:
                sections[_SECTIONS[label]] = stats
            current = None
        elif current is not None and label in _TRT7_STATS:
            stats = _parse_stats(label + ': ' + rest.split('(')[0])
            sections.setdefault(current, {}).update(stats)
        else:
            current = None
    version = _VERSION_LINE.search(text)
    tag = _VERSION_TAG.search(text)
    if version:
        sections['trtexec_version'] = version.group(1).rstrip('.')
    elif tag:
        sections['trtexec_version'] = decode_version_tag(tag.group(1))
    if trace:
        sections['trace_gpu_ms'] = trace
    if 'gpu_compute' not in sections or 'median' not in sections['gpu_compute']:
        raise ValueError('no "GPU Compute Time: ... median = ..." line in the trtexec output')
    return sections


def trace_averages(text):
    """``(N, [GPU latency ms, ...])`` of trtexec's ``Average on N runs - GPU latency`` lines.

    With ``--avgRuns=1`` these are per-run GPU times (how TensorRT 7 gives them without
    its layer profiler). ``(None, [])`` when there are none.

    Examples
    --------
    >>> trace_averages('[I] Average on 1 runs - GPU latency: 0.5 ms - Host latency: 0.6 ms')
    (1, [0.5])
    """
    found = [(int(m.group(1)), float(m.group(2))) for m in _TRACE.finditer(text)]
    return (found[0][0] if found else None), [value for _, value in found]


def decode_version_tag(tag):
    """``8602`` -> ``8.6.2``, ``100300`` -> ``10.3.0`` (the ``[TensorRT vNNNN]`` banner).

    Examples
    --------
    >>> decode_version_tag('8602'), decode_version_tag('100300'), decode_version_tag('8400')
    ('8.6.2', '10.3.0', '8.4.0')
    """
    if len(tag) == 4:
        return '%d.%d.%d' % (int(tag[0]), int(tag[1]), int(tag[2:]))
    if len(tag) == 6:
        return '%d.%d.%d' % (int(tag[:2]), int(tag[2:4]), int(tag[4:]))
    return tag


def major_version(version):
    match = re.match(r'(\d+)\.', version or '')
    return int(match.group(1)) if match else None


def _libnvinfer_version(executable):
    directories = ['/usr/lib/aarch64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/usr/lib', '/usr/local/lib',
                   os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(executable))), 'lib')]
    found = []
    for directory in directories:
        for path in glob.glob(os.path.join(directory, 'libnvinfer.so.*.*.*')):
            match = re.search(r'libnvinfer\.so\.(\d+\.\d+\.\d+)', path)
            if match:
                found.append(match.group(1))
    return max(found, key=lambda v: [int(p) for p in v.split('.')]) if found else None


def trtexec_version(executable, state_dir, override=None):
    """TensorRT version behind ``executable``: its ``--help`` banner, else ``libnvinfer.so.X.Y.Z``.

    The answer is kept in ``state_dir/trtexec-version.json`` while the executable's path,
    size and mtime stay the same. When neither source says, ``unknown-<fingerprint>`` (the
    engine cache still separates two installs).
    """
    if override:
        return override
    real = os.path.realpath(executable)
    stat = os.stat(real)
    fingerprint = '%s|%d|%d' % (real, stat.st_size, int(stat.st_mtime))
    state = os.path.join(state_dir, 'trtexec-version.json')
    try:
        with open(state) as handle:
            known = json.load(handle)
        if known.get('fingerprint') == fingerprint:
            return known['version']
    except (IOError, OSError, ValueError, KeyError):
        pass
    version = None
    try:
        banner = subprocess.run([executable, '--help'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                universal_newlines=True, timeout=120).stdout
        tag = _VERSION_TAG.search(banner) or _VERSION_LINE.search(banner)
        if tag:
            version = decode_version_tag(tag.group(1)) if tag.re is _VERSION_TAG else tag.group(1)
    except (OSError, subprocess.SubprocessError):
        pass
    version = version or _libnvinfer_version(executable)
    version = version or 'unknown-' + hashlib.sha256(fingerprint.encode('utf-8')).hexdigest()[:12]
    temporary = '%s.%d' % (state, os.getpid())
    with open(temporary, 'w') as handle:
        json.dump({'fingerprint': fingerprint, 'version': version}, handle)
    os.replace(temporary, state)
    return version


def split_flags(flags):
    """Split extra trtexec flags into (engine-only, engine-and-load, timing-only) lists.

    Raises ``ValueError`` for flags the cache sets itself.

    Examples
    --------
    >>> split_flags(['--fp16', '--shapes=x:1x3x8x8', '--useSpinWait'])
    (['--fp16'], ['--shapes=x:1x3x8x8'], ['--useSpinWait'])
    """
    build, both, runtime = [], [], []
    for flag in flags or []:
        name = flag.split('=', 1)[0]
        if name in MANAGED_FLAGS:
            raise ValueError('trtexec flag %r is set by the measurement itself (accepted: precision, shape, '
                             'builder and timing flags such as --fp16, --int8, --shapes, --useSpinWait)' % flag)
        if name in RUNTIME_FLAGS:
            runtime.append(flag)
        elif name in BOTH_FLAGS:
            both.append(flag)
        else:
            build.append(flag)
    return build, both, runtime


def engine_key(onnx_sha256, version, engine_flags, board=''):
    """Cache key of an engine: sha256 over the ONNX hash, TensorRT version, flags and board.

    Examples
    --------
    >>> engine_key('ab', '8.6.2', ['--fp16']) == engine_key('ab', '8.6.2', ['--fp16'])
    True
    >>> engine_key('ab', '8.6.2', ['--fp16']) == engine_key('ab', '8.6.2', [])
    False
    """
    text = json.dumps({'onnx': onnx_sha256, 'tensorrt': version, 'flags': list(engine_flags), 'board': board},
                      sort_keys=True)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()[:32]


class EngineCache(object):
    """Serialized engines in one directory, with the timing caches; oldest out past ``max_mb``."""

    def __init__(self, directory, max_mb=2048.0):
        self.directory = directory
        self.max_bytes = max_mb * 1e6
        if not os.path.isdir(directory):
            os.makedirs(directory)

    def path(self, key):
        return os.path.join(self.directory, key + '.engine')

    def lookup(self, key):
        path = self.path(key)
        if os.path.isfile(path) and os.path.getsize(path) > 0:
            os.utime(path, None)  # recently used: evicted last
            return path
        return None

    def temporary(self, key):
        return os.path.join(self.directory, '%s.%d.partial' % (key, os.getpid()))

    def timing_cache(self, version):
        return os.path.join(self.directory, 'timing-%s.cache' % re.sub(r'[^0-9A-Za-z.-]', '_', version))

    def store(self, key, temporary, info):
        os.replace(temporary, self.path(key))
        with open(os.path.join(self.directory, key + '.json'), 'w') as handle:
            json.dump(info, handle, sort_keys=True)
        self.evict(keep=key)

    def discard(self, key):
        for path in (self.path(key), os.path.join(self.directory, key + '.json')):
            if os.path.exists(path):
                os.remove(path)

    def evict(self, keep=None):
        engines = sorted(glob.glob(os.path.join(self.directory, '*.engine')), key=os.path.getmtime)
        total = sum(os.path.getsize(path) for path in engines)
        for path in engines:
            if total <= self.max_bytes:
                break
            key = os.path.basename(path)[:-len('.engine')]
            if key != keep:
                total -= os.path.getsize(path)
                self.discard(key)


def exported_times(data):
    """Per-run entries of an ``--exportTimes`` file: ``[(compute_ms, start_ms, end_ms), ...]``.

    ``start_ms``/``end_ms`` (trtexec's own clock) are ``None`` where the version names them
    otherwise.
    """
    entries = []
    for item in data:
        if not isinstance(item, dict) or 'computeMs' not in item:
            continue
        start = next((item[k] for k in ('startEnqMs', 'startInMs', 'startH2dMs', 'startComputeMs') if k in item),
                     None)
        end = next((item[k] for k in ('endD2hMs', 'endOutMs', 'endComputeMs') if k in item), None)
        entries.append((float(item['computeMs']), start, end))
    return entries


def timed_runs(values, runs):
    """The last ``runs`` values: trtexec asked for ``runs`` timed iterations; earlier ones are warm-up.

    Examples
    --------
    >>> timed_runs([9.0, 8.0, 1.0, 1.1, 1.2], 3)
    [1.0, 1.1, 1.2]
    """
    return list(values[-runs:]) if runs > 0 and len(values) > runs else list(values)


def _run(argv, children):
    """Run trtexec, reading its output as it comes: (exit code, output, {'start': t, 'end': t})."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                            preexec_fn=os.setsid, bufsize=1)
    children.procs.append(proc)
    lines, marks = [], {'launched': time.time()}
    for line in iter(proc.stdout.readline, ''):
        now = time.time()
        lines.append(line)
        if 'start' not in marks and _STARTING.search(line):
            marks['start'] = now
        elif 'start' in marks and 'end' not in marks:
            marks['end'] = now  # the first line after the inference loop
    proc.wait()
    if 'start' in marks and 'end' not in marks:
        marks['end'] = time.time()
    return proc.returncode, ''.join(lines), marks


class TrtexecError(Exception):
    def __init__(self, kind, message):
        super(TrtexecError, self).__init__(message)
        self.kind = kind


def _attempt_summary(args, output, times_path, per_run, warmup_s, marks):
    sections = parse_trtexec_output(output)
    values, span_ms, total = [], None, 0
    if per_run == 'exportTimes':
        try:
            with open(times_path) as handle:
                entries = exported_times(json.load(handle))
        except (IOError, OSError, ValueError):
            entries = []
        finally:
            if os.path.exists(times_path):
                os.remove(times_path)
        total = len(entries)
        kept = timed_runs(entries, args.runs)
        values = [entry[0] for entry in kept]
        if kept and kept[0][1] is not None and kept[-1][2] is not None:
            span_ms = kept[-1][2] - kept[0][1]
    elif per_run == 'trace' and sections.get('trace_avg_runs') == 1:
        total = len(sections['trace_gpu_ms'])
        values = timed_runs(sections['trace_gpu_ms'], args.runs)
    if values:
        summary = summarize_times(values)
        summary['iqr_ratio'] = ((summary['p75_ms'] - summary['p25_ms']) / summary['median_ms']
                                if summary['median_ms'] else 0.0)
        summary['per_run_times'] = per_run
    else:  # summary only: no quartiles, the spread is unknown
        gpu = sections['gpu_compute']
        summary = {'median_ms': gpu['median'], 'p25_ms': gpu['median'], 'p75_ms': gpu['median'],
                   'mean_ms': gpu.get('mean'), 'min_ms': gpu.get('min'), 'cv': None, 'runs': args.runs,
                   'iqr_ratio': None, 'per_run_times': 'none (summary only)'}
    summary['warmup_runs_dropped'] = max(total - len(values), 0) if values else None
    window = None
    if 'start' in marks:
        end = marks['end']
        start = end - span_ms / 1e3 if span_ms else marks['start'] + warmup_s
        window = (max(start, marks['start']), end)
    return summary, sections, window


def measure_trtexec(args, executable, model_path, children, board='', onnx_id=None):
    """Time ``model_path`` with trtexec (engine cache, warm-up dropped, retried when unstable).

    ``args`` carries ``runs``, ``warmup_ms``, ``trtexec_arg``, ``max_iqr_ratio``,
    ``max_attempts``, ``engine_cache`` (a directory or ``off``), ``engine_cache_mb``,
    ``trtexec_version`` and ``dir``. ``onnx_id`` identifies the network in the engine key
    (the host sends a hash of its structure without weight values); default the file's
    sha256. Returns ``(result dict, timed windows [(start, end)],
    timed inferences)``; the windows are wall-clock (for the energy).
    """
    build, both, runtime = split_flags(args.trtexec_arg)
    version = trtexec_version(executable, args.dir, args.trtexec_version)
    major = major_version(version)
    per_run = 'trace' if major is not None and major < 8 else 'exportTimes'
    cache = None if args.engine_cache == 'off' else EngineCache(args.engine_cache, args.engine_cache_mb)
    if onnx_id:
        onnx_sha256 = onnx_id
    else:
        with open(model_path, 'rb') as handle:
            onnx_sha256 = hashlib.sha256(handle.read()).hexdigest()
    key = engine_key(onnx_sha256, version, build + both, board)
    times_path = os.path.join(os.path.dirname(model_path), '%d-times.json' % os.getpid())
    timing = ['--iterations=%d' % args.runs, '--duration=0', '--warmUp=%d' % args.warmup_ms, '--avgRuns=1']
    if per_run == 'exportTimes':
        timing.append('--exportTimes=' + times_path)
    attempts, windows, state, build_s, rebuilt = [], [], 'off', None, False
    while len(attempts) < max(1, args.max_attempts):
        engine = cache.lookup(key) if cache else None
        if engine:
            argv = [executable, '--loadEngine=' + engine] + both + runtime + timing
        else:
            argv = [executable, '--onnx=' + model_path] + build + both + runtime + timing
            if cache:
                argv.append('--saveEngine=' + cache.temporary(key))
                if major is not None and major >= 8:
                    argv.append('--timingCacheFile=' + cache.timing_cache(version))
        if not attempts:
            state = 'hit' if engine else ('miss' if cache else 'off')
        code, output, marks = _run(argv, children)
        if code != 0:
            if engine and not rebuilt:  # a stale or corrupted engine: build it again, once
                cache.discard(key)
                rebuilt, state = True, 'rebuilt'
                continue
            raise TrtexecError('trtexec_failed', 'trtexec exited with %d: %s' % (code, output[-2000:]))
        if not engine:
            build_s = round(marks.get('start', time.time()) - marks['launched'], 3)
            if cache and os.path.isfile(cache.temporary(key)):
                cache.store(key, cache.temporary(key), {'onnx_sha256': onnx_sha256, 'tensorrt': version,
                                                        'flags': build + both, 'board': board, 'build_s': build_s,
                                                        'created_unix': time.time()})
        summary, sections, window = _attempt_summary(args, output, times_path, per_run, args.warmup_ms / 1e3, marks)
        attempts.append((summary, sections))
        if window:
            windows.append(window)
        if summary['iqr_ratio'] is not None and summary['iqr_ratio'] <= args.max_iqr_ratio:
            break
    summary, sections = min(attempts, key=lambda item: float('inf') if item[0]['iqr_ratio'] is None
                            else item[0]['iqr_ratio'])
    ratio = summary['iqr_ratio']
    summary.update({
        'runtime': 'TensorRT trtexec ' + sections.get('trtexec_version', version), 'provider': 'trtexec',
        'threads': None, 'warmup_runs': None, 'attempts': len(attempts),
        'stable': ratio is not None and ratio <= args.max_iqr_ratio, 'trtexec_summary': sections,
        'engine_cache': state, 'engine_key': key, 'engine_build_s': build_s, 'trtexec_version': version,
    })
    return summary, windows, args.runs * len(windows)

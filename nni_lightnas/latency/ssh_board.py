#!/usr/bin/env python3
"""Board side of the ``ssh://`` device: receive a model, take the board lock, time it, print JSON.

This file runs on the board (a Jetson), shipped there by :class:`~nni_lightnas.latency.ssh.SSHDevice`
together with ``runner.py`` on every call. It needs only Python 3 (3.6 or newer for this file;
``runner.py`` needs 3.8) and, for the ONNX Runtime path, ``onnxruntime``; for the TensorRT path,
``trtexec``. No NNI, no torch, no nni_lightnas.

Protocol (stdin, then stdout):

1. one JSON header line ``{"models": [{"size": N, "sha256": "..."}, ...]}``, then the
   models' bytes one after another; stdin then stays open for the whole run. When it closes (the workstation died,
   the connection dropped, the caller gave up), this process kills its children and
   exits, so an orphaned measurement never keeps the board busy;
2. an exclusive ``flock`` on the board lock (``--lock-file``, by default
   ``/tmp/nni-lightnas-board.lock`` from the SSH device, the same for every user): one
   measurement at a time on this board, whichever workstation, user or trial asks;
3. ``trtexec`` (when ``--trtexec`` is given; one model after another) or
   ``runner.measure_onnx`` (``runner.measure_onnx_group``, runs interleaved, for several);
4. one JSON line on stdout: ``{"results": [runner keys, ...], "facts": {...}}`` (power
   mode, clocks, lock times), or ``{"error": {"kind": ..., "message": ...}}`` with a
   non-zero exit code.

The trtexec summary parser :func:`parse_trtexec_output` also lives here (it runs on the
board) and is re-exported by :mod:`nni_lightnas.latency.ssh`.
"""

from __future__ import print_function

import argparse
import glob
import hashlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time

__all__ = ['parse_trtexec_output', 'board_facts', 'main']

EXIT_CODES = {
    'onnxruntime_missing': 3, 'trtexec_missing': 4, 'trtexec_failed': 5, 'lock_timeout': 6,
    'timeout': 7, 'bad_input': 8, 'runtime': 9,
}

_NUMBER = r'([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)'
_STAT = re.compile(r'(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*[=:]\s*' + _NUMBER + r'\s*(ms|us|s)?')
_PERCENTILE_OLD = re.compile(r'percentile\s*[=:]\s*' + _NUMBER + r'\s*(ms|us|s)?\s*at\s*(\d+(?:\.\d+)?)%')
_SCALE = {'ms': 1.0, 'us': 1e-3, 's': 1e3, None: 1.0}
# optional log prefix ('[11/24/2026-10:00:00] [I] '), a label, a colon, the numbers
_LINE = re.compile(r'^(?:.*\]\s*)?(?P<label>[A-Za-z][A-Za-z0-9 ]*?)\s*:\s*(?P<rest>.*)$')
_SECTIONS = {'GPU Compute Time': 'gpu_compute', 'GPU Compute': 'gpu_compute', 'Latency': 'latency',
             'Enqueue Time': 'enqueue', 'H2D Latency': 'h2d', 'D2H Latency': 'd2h'}


class BoardError(Exception):
    def __init__(self, kind, message):
        super(BoardError, self).__init__(message)
        self.kind = kind


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

    Reads the ``GPU Compute Time``, ``Latency``, ``Enqueue Time``, ``H2D Latency`` and
    ``D2H Latency`` lines of TensorRT 8/10 (``min = 0.61 ms, max = ..., mean = ..., median
    = ..., percentile(99%) = ...``), the TensorRT 7 form (``GPU Compute: min: 0.61 ms, ...,
    percentile: 0.9 ms at 99%``) and the throughput (``qps``). Raises ``ValueError`` when
    there is no GPU compute line.

    Examples
    --------
    >>> text = '[I] GPU Compute Time: min = 0.5 ms, max = 0.9 ms, mean = 0.6 ms, median = 0.58 ms'
    >>> parse_trtexec_output(text)['gpu_compute']['median']
    0.58
    """
    sections = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        label, rest = ' '.join(match.group('label').split()), match.group('rest')
        if label == 'Throughput':
            qps = re.match(_NUMBER + r'\s*qps', rest.strip())
            if qps:
                sections['throughput_qps'] = float(qps.group(1))
        elif label in _SECTIONS:
            stats = _parse_stats(rest)
            if stats:
                sections[_SECTIONS[label]] = stats
    if 'gpu_compute' not in sections or 'median' not in sections['gpu_compute']:
        raise ValueError('no "GPU Compute Time: ... median = ..." line in the trtexec output')
    return sections


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip().strip('\x00')
    except (IOError, OSError):
        return None


def _command(argv, timeout=5):
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                              universal_newlines=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _all_equal_pairs(pairs):
    pairs = [(low, high) for low, high in pairs if low is not None and high is not None]
    if not pairs:
        return None
    return all(low == high for low, high in pairs)


def board_facts():
    """What the board says about itself: model, L4T release, power mode, clocks.

    ``clocks_locked`` is ``True`` when every CPU's and the GPU's minimum frequency equals
    its maximum (what ``jetson_clocks`` does), ``False`` when one can scale, ``None`` when
    the board does not expose frequencies.
    """
    facts = {'host': platform.node(), 'machine': platform.machine(), 'python': platform.python_version()}
    model = _read('/proc/device-tree/model')
    if model:
        facts['board_model'] = model
    release = _read('/etc/nv_tegra_release')
    if release:
        facts['l4t_release'] = release.splitlines()[0]
    nvpmodel = _command(['nvpmodel', '-q'])
    if nvpmodel:
        match = re.search(r'NV Power Mode:\s*(.+)', nvpmodel)
        facts['nvpmodel'] = match.group(1).strip() if match else nvpmodel.splitlines()[0]
    cpu = [(_read(os.path.join(d, 'scaling_min_freq')), _read(os.path.join(d, 'scaling_max_freq')))
           for d in sorted(glob.glob('/sys/devices/system/cpu/cpu[0-9]*/cpufreq'))]
    gpu = []
    for d in sorted(glob.glob('/sys/class/devfreq/*')):
        name = os.path.basename(os.path.realpath(d)) + ' ' + (_read(os.path.join(d, 'name')) or '')
        if re.search(r'gpu|ga10b|gv11b|gp10b|gk20a|gm20b', name):
            gpu.append((_read(os.path.join(d, 'min_freq')), _read(os.path.join(d, 'max_freq'))))
            facts['gpu_cur_freq_hz'] = _read(os.path.join(d, 'cur_freq'))
    if cpu:
        facts['cpu_max_freq_khz'] = cpu[0][1]
    facts['cpu_clocks_locked'] = _all_equal_pairs(cpu)
    facts['gpu_clocks_locked'] = _all_equal_pairs(gpu)
    locked = [v for v in (facts['cpu_clocks_locked'], facts['gpu_clocks_locked']) if v is not None]
    facts['clocks_locked'] = all(locked) if locked else None
    return facts


class _Children(object):
    """Processes to kill when stdin closes."""

    def __init__(self):
        self.procs = []

    def kill(self):
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass


def _watch_stdin(children):
    try:
        while sys.stdin.buffer.read(65536):
            pass
    except (IOError, OSError, ValueError):
        pass
    children.kill()
    os._exit(75)  # the caller is gone: release the board at once


def _receive_models(workdir):
    """Read the models header line and the models' bytes from stdin; write them to ``workdir``."""
    header = json.loads(sys.stdin.buffer.readline().decode('utf-8'))
    paths = []
    try:
        for index, model in enumerate(header['models']):
            size = int(model['size'])
            data = bytearray()
            while len(data) < size:
                chunk = sys.stdin.buffer.read(min(1 << 20, size - len(data)))
                if not chunk:
                    raise BoardError('bad_input', 'stdin closed after %d of %d bytes of model %d'
                                     % (len(data), size, index))
                data.extend(chunk)
            digest = hashlib.sha256(bytes(data)).hexdigest()
            if model.get('sha256') and model['sha256'] != digest:
                raise BoardError('bad_input', 'model %d arrived corrupted (sha256 mismatch)' % index)
            path = os.path.join(workdir, '%d-%d-%s.onnx' % (os.getpid(), index, digest[:16]))
            with open(path, 'wb') as handle:
                handle.write(bytes(data))
            paths.append(path)
    except BaseException:
        _remove(paths)
        raise
    return paths


def _remove(paths):
    for path in paths:
        if os.path.exists(path):
            os.remove(path)


def _take_lock(path, timeout_s):
    """Exclusive flock on ``path``, shared by every user of the board (created mode 0666)."""
    import fcntl
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            os.fchmod(fd, 0o666)  # let other users' measurements take the same lock
        except OSError:
            pass
    except OSError:
        fd = os.open(path, os.O_RDONLY)  # another user's lock file: flock needs no write access
    start = time.time()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd, time.time() - start
        except (IOError, OSError):
            if timeout_s is not None and time.time() - start > timeout_s:
                os.close(fd)
                raise BoardError('lock_timeout', 'board stayed busy (another measurement held %s) for %.0f s'
                                 % (path, timeout_s))
            time.sleep(0.05)


def _run_trtexec(args, model_path, workdir, children, deadline):
    executable = args.trtexec
    candidates = [executable] if os.path.sep in executable else [executable, '/usr/src/tensorrt/bin/trtexec']
    found = None
    for candidate in candidates:
        if os.path.sep in candidate and os.access(candidate, os.X_OK):
            found = candidate
            break
        for directory in os.environ.get('PATH', '').split(os.pathsep):
            if os.access(os.path.join(directory, candidate), os.X_OK):
                found = os.path.join(directory, candidate)
                break
        if found:
            break
    if not found:
        raise BoardError('trtexec_missing', 'trtexec not found (tried %s and PATH); install TensorRT '
                         '(JetPack) or give its full path' % ', '.join(candidates))
    times_path = os.path.join(workdir, '%d-times.json' % os.getpid())
    argv = [found, '--onnx=' + model_path, '--iterations=%d' % args.runs, '--duration=0',
            '--warmUp=%d' % args.warmup_ms, '--avgRuns=1', '--exportTimes=' + times_path] + list(args.trtexec_arg or [])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                            preexec_fn=os.setsid)
    children.procs.append(proc)
    try:
        output, _ = proc.communicate(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        children.kill()
        raise BoardError('timeout', 'trtexec ran past the %.0f s limit' % args.timeout)
    if proc.returncode != 0:
        raise BoardError('trtexec_failed', 'trtexec exited with %d: %s' % (proc.returncode, output[-2000:]))
    sections = parse_trtexec_output(output)
    result = None
    try:
        with open(times_path) as handle:
            compute = [float(item['computeMs']) for item in json.load(handle) if 'computeMs' in item]
        if compute:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from runner import summarize_times
            result = summarize_times(compute)
    except (IOError, OSError, ValueError, KeyError, ImportError):
        result = None
    finally:
        if os.path.exists(times_path):
            os.remove(times_path)
    gpu = sections['gpu_compute']
    if result is None:  # summary only: no quartiles, percentiles where printed
        result = {'median_ms': gpu['median'], 'p25_ms': gpu.get('p25', gpu['median']),
                  'p75_ms': gpu.get('p75', gpu['median']), 'mean_ms': gpu.get('mean'), 'min_ms': gpu.get('min'),
                  'cv': None, 'runs': args.runs}
    version = re.search(r'TensorRT version:\s*(\S+)', output) or re.search(r'\[TensorRT v(\d+)\]', output)
    result.update({
        'runtime': ('TensorRT trtexec ' + version.group(1)) if version else 'TensorRT trtexec',
        'provider': 'trtexec', 'threads': None, 'warmup_runs': None, 'attempts': 1,
        'stable': True, 'trtexec_summary': sections,
    })
    if result.get('p75_ms') is not None and result['median_ms']:
        result['iqr_ratio'] = (result['p75_ms'] - result['p25_ms']) / result['median_ms']
    return result


def _run_onnxruntime(args, model_paths):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise BoardError('onnxruntime_missing', 'python %s (%s) cannot import onnxruntime: %s'
                         % (platform.python_version(), sys.executable, error))
    options = dict(num_runs=args.runs, num_warmup_runs=args.warmup, threads=args.threads,
                   providers=args.providers or None, max_iqr_ratio=args.max_iqr_ratio,
                   max_attempts=args.max_attempts)
    if args.clock != 'wall':
        options['clock'] = args.clock
    if len(model_paths) == 1:
        from runner import measure_onnx
        return [measure_onnx(model_paths[0], **options)]
    from runner import measure_onnx_group  # runs interleaved: a load change hits every model alike
    return measure_onnx_group(list(model_paths), **options)


def _measure(args, children):
    workdir = os.path.join(args.dir, 'work')
    if not os.path.isdir(workdir):
        os.makedirs(workdir)
    model_paths = _receive_models(workdir)
    watcher = threading.Thread(target=_watch_stdin, args=(children,))
    watcher.daemon = True
    watcher.start()
    try:
        lock, waited = _take_lock(os.path.expanduser(args.lock_file or os.path.join(args.dir, 'board.lock')),
                                  args.lock_timeout)
        try:
            started = time.time()
            deadline = started + args.timeout

            def on_alarm(signum, frame):
                children.kill()
                raise BoardError('timeout', 'measurement ran past the %.0f s limit' % args.timeout)
            signal.signal(signal.SIGALRM, on_alarm)
            signal.alarm(max(1, int(args.timeout + 0.999)))
            try:
                facts = board_facts()
                if args.trtexec:
                    results = [_run_trtexec(args, path, workdir, children, deadline) for path in model_paths]
                else:
                    results = _run_onnxruntime(args, model_paths)
            finally:
                signal.alarm(0)
            ended = time.time()
        finally:
            os.close(lock)
    finally:
        _remove(model_paths)
    facts.update({'lock_wait_s': round(waited, 4), 'measure_start_unix': started, 'measure_end_unix': ended})
    return {'results': results, 'facts': facts}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Board side of nni-lightnas ssh:// devices (reads the models on stdin).')
    parser.add_argument('--dir', required=True, help='working directory on the board (lock file, temp models)')
    parser.add_argument('--runs', type=int, default=100)
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--warmup-ms', type=int, default=500, help='trtexec warm-up, ms')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--providers', nargs='*', default=None)
    parser.add_argument('--max-iqr-ratio', type=float, default=0.1)
    parser.add_argument('--max-attempts', type=int, default=3)
    parser.add_argument('--clock', default='wall', help="ONNX Runtime timer: wall or cpu (see runner.py)")
    parser.add_argument('--trtexec', default=None, help='trtexec executable; ONNX Runtime when absent')
    parser.add_argument('--trtexec-arg', action='append', help='extra trtexec argument (repeatable)')
    parser.add_argument('--timeout', type=float, default=600.0, help='seconds for the measurement itself')
    parser.add_argument('--lock-file', default=None, help='the board lock (default <dir>/board.lock)')
    parser.add_argument('--lock-timeout', type=float, default=None, help='seconds to wait for the board lock')
    args = parser.parse_args(argv)
    args.dir = os.path.expanduser(args.dir)
    children = _Children()
    code = 0
    try:
        output = _measure(args, children)
    except BoardError as error:
        output, code = {'error': {'kind': error.kind, 'message': str(error)}}, EXIT_CODES[error.kind]
    except Exception as error:  # the caller needs one JSON line whatever happened
        output = {'error': {'kind': 'runtime', 'message': '%s: %s' % (type(error).__name__, error)}}
        code = EXIT_CODES['runtime']
    print(json.dumps(output))
    sys.stdout.flush()
    sys.stderr.flush()
    # The stdin watcher thread blocks in read(): a normal interpreter shutdown would hang on it.
    os._exit(code)


if __name__ == '__main__':
    sys.exit(main())

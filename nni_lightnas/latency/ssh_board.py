#!/usr/bin/env python3
"""Board side of the ``ssh://`` device: receive a model, take the board lock, time it, print JSON.

This file runs on the board (a Jetson), shipped there by :class:`~nni_lightnas.latency.ssh.SSHDevice`
together with ``runner.py``, ``board_trtexec.py`` and ``board_power.py`` on every call. They
need only Python 3.6 or newer (JetPack 4 ships 3.6; ``tests/test_jetson_board.py`` checks the
minimum with ``vermin`` and runs them under the oldest Python the test machine has) and, for
the ONNX Runtime path, ``onnxruntime`` and numpy; for the TensorRT path, ``trtexec``. No NNI,
no torch, no nni_lightnas.

Protocol (stdin, then stdout):

1. one JSON header line ``{"models": [{"size": N, "sha256": "..."}, ...]}``, then the
   models' bytes one after another; stdin then stays open for the whole run. When it closes (the workstation died,
   the connection dropped, the caller gave up), this process kills its children and
   exits, so an orphaned measurement never keeps the board busy;
2. an exclusive ``flock`` on the board lock (``--lock-file``, by default
   ``/tmp/nni-lightnas-board.lock`` from the SSH device, the same for every user): one
   measurement at a time on this board, whichever workstation, user or trial asks;
3. with ``--energy``: the idle power of the board (``--idle-s`` seconds of its INA3221
   rails, :mod:`board_power`), then power samples all through the timed runs;
4. ``trtexec`` (when ``--trtexec`` is given; one model after another, engines from the
   board's engine cache, :mod:`board_trtexec`) or ``runner.measure_onnx``
   (``runner.measure_onnx_group``, blocks of runs interleaved, for several);
5. one JSON line on stdout: ``{"results": [runner keys, ...], "facts": {...}}`` (power
   mode, clocks, lock times; ``energy_mj`` and the powers in each result with
   ``--energy``), or ``{"error": {"kind": ..., "message": ...}}`` with a non-zero exit code.

The trtexec summary parser :func:`parse_trtexec_output` lives in :mod:`board_trtexec` and is
re-exported here and by :mod:`nni_lightnas.latency.ssh`.
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

try:
    from . import board_power, board_trtexec, runner
    from .board_trtexec import parse_trtexec_output
except ImportError:  # on the board: the shipped files sit side by side, not in a package
    import board_power
    import board_trtexec
    import runner
    from board_trtexec import parse_trtexec_output

__all__ = ['parse_trtexec_output', 'board_facts', 'main']

#: Exit code of each error kind the board reports (``{"error": {"kind": ..., "message": ...}}``);
#: the workstation side (:mod:`nni_lightnas.latency.ssh`) imports these, never copies them.
EXIT_CODES = {
    'onnxruntime_missing': 3, 'trtexec_missing': 4, 'trtexec_failed': 5, 'lock_timeout': 6,
    'timeout': 7, 'bad_input': 8, 'runtime': 9, 'no_power_rails': 10,
}
#: Exit code when the caller went away mid-run (stdin closed): the board is released at once.
EXIT_CALLER_GONE = 75



class BoardError(Exception):
    def __init__(self, kind, message):
        super(BoardError, self).__init__(message)
        self.kind = kind


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
    os._exit(EXIT_CALLER_GONE)  # the caller is gone: release the board at once


_ENGINE_IDS = {}  # model path -> the id its engine is cached under (the host's structure hash)


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
            _ENGINE_IDS[path] = model.get('engine_id') or digest
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


def _find_trtexec(executable):
    candidates = [executable] if os.path.sep in executable else [executable, '/usr/src/tensorrt/bin/trtexec']
    for candidate in candidates:
        if os.path.sep in candidate and os.access(candidate, os.X_OK):
            return candidate
        for directory in os.environ.get('PATH', '').split(os.pathsep):
            if os.access(os.path.join(directory, candidate), os.X_OK):
                return os.path.join(directory, candidate)
    raise BoardError('trtexec_missing', 'trtexec not found (tried %s and PATH); install TensorRT '
                     '(JetPack) or give its full path' % ', '.join(candidates))


def _run_trtexec(args, model_path, children):
    """One model with trtexec: ``(result, timed windows, timed inferences)``."""
    executable = _find_trtexec(args.trtexec)
    board = ' '.join(filter(None, [_read('/proc/device-tree/model'), platform.machine()]))
    try:
        result, windows, inferences = board_trtexec.measure_trtexec(
            args, executable, model_path, children, board=board, onnx_id=_ENGINE_IDS.get(model_path))
    except board_trtexec.TrtexecError as error:
        raise BoardError(error.kind, str(error))
    except ValueError as error:  # a managed flag, or output without a summary
        raise BoardError('bad_input' if 'set by the measurement' in str(error) else 'trtexec_failed', str(error))
    result['trtexec_summary'].pop('trace_gpu_ms', None)
    return result, windows, inferences


def _run_onnxruntime(args, model_paths, windows):
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

    def on_timed(start, end):
        windows.append((start, end))
    options['on_timed'] = on_timed
    if len(model_paths) == 1:
        return [runner.measure_onnx(model_paths[0], **options)]
    return runner.measure_onnx_group(list(model_paths), **options)  # blocks of runs interleaved: load hits all alike


def _power_meter(args):
    rails = board_power.find_power_rails(args.power_root)
    if not rails:
        raise BoardError('no_power_rails', 'no INA3221 power rails under %s (looked for a device named ina3221* '
                         'in /sys/bus/i2c/devices with iio:device*/rail_name_* or hwmon/hwmon*/in*_label)'
                         % os.path.join(args.power_root, board_power.I2C_DEVICES))
    return board_power.PowerMeter(rails)


def _add_energy(results, sampler, idle_mw, windows, inferences, meter):
    """Energy per inference into each result (one model per set of windows)."""
    for result, model_windows, count in zip(results, windows, inferences):
        energy = board_power.energy_per_inference(sampler.samples, model_windows, count, idle_mw)
        if energy is None:
            result.update({'energy_mj': None, 'power_idle_mw': idle_mw,
                           'energy_note': 'no power sample fell in the timed runs'})
        else:
            result.update(energy)
        result['power_rail'] = meter.name


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

            def on_alarm(signum, frame):
                children.kill()
                raise BoardError('timeout', 'measurement ran past the %.0f s limit' % args.timeout)
            signal.signal(signal.SIGALRM, on_alarm)
            signal.alarm(max(1, int(args.timeout + 0.999)))
            try:
                facts = board_facts()
                sampler, idle_mw, meter = None, None, None
                if args.energy:
                    meter = _power_meter(args)
                    idle = board_power.PowerSampler(meter, args.power_interval_ms / 1e3).start()
                    time.sleep(args.idle_s)
                    idle.stop()
                    if not idle.samples:
                        raise BoardError('no_power_rails', 'could not read %s' % meter.name)
                    idle_mw = sum(mw for _, mw in idle.samples) / len(idle.samples)
                    sampler = board_power.PowerSampler(meter, args.power_interval_ms / 1e3).start()
                try:
                    if args.trtexec:
                        measured = [_run_trtexec(args, path, children) for path in model_paths]
                        results = [item[0] for item in measured]
                        windows = [item[1] for item in measured]
                        inferences = [item[2] for item in measured]
                    else:
                        shared = []
                        results = _run_onnxruntime(args, model_paths, shared)
                        windows = [shared] * len(results)
                        inferences = [len(shared) * args.runs] * len(results)
                finally:
                    if sampler is not None:
                        sampler.stop()
                if sampler is not None and len(results) > 1 and not args.trtexec:
                    for result in results:  # runs of all models interleave inside the same windows
                        result.update({'energy_mj': None, 'power_idle_mw': idle_mw, 'power_rail': meter.name,
                                       'energy_note': 'interleaved group: per-model energy cannot be separated; '
                                                      'measure one model per call'})
                elif sampler is not None:
                    _add_energy(results, sampler, idle_mw, windows, inferences, meter)
                    facts['power_rails'] = [rail.name for rail in meter.all_rails]
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
    parser.add_argument('--engine-cache', default=None,
                        help='trtexec engine cache directory (default <dir>/engines), or "off"')
    parser.add_argument('--engine-cache-mb', type=float, default=2048.0, help='engine cache size limit, MB')
    parser.add_argument('--trtexec-version', default=None, help='TensorRT version, when trtexec cannot tell')
    parser.add_argument('--energy', action='store_true', help='energy per inference from the INA3221 rails')
    parser.add_argument('--power-root', default='/', help='root of the sysfs tree with the power rails')
    parser.add_argument('--idle-s', type=float, default=1.0, help='seconds of idle power sampled first')
    parser.add_argument('--power-interval-ms', type=float, default=10.0, help='power sampling period, ms')
    parser.add_argument('--timeout', type=float, default=600.0, help='seconds for the measurement itself')
    parser.add_argument('--lock-file', default=None, help='the board lock (default <dir>/board.lock)')
    parser.add_argument('--lock-timeout', type=float, default=None, help='seconds to wait for the board lock')
    args = parser.parse_args(argv)
    args.dir = os.path.expanduser(args.dir)
    if args.engine_cache is None:
        args.engine_cache = os.path.join(args.dir, 'engines')
    elif args.engine_cache != 'off':
        args.engine_cache = os.path.expanduser(args.engine_cache)
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

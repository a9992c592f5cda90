"""A simulated ``trtexec`` for tests (no TensorRT here): builds take time, engines are files.

Copy it next to a JSON config named ``<copy>.json``; keys (all optional):

- ``version``: banner tag (``"8602"``); ``null`` prints no version (like old builds);
- ``build_delay_s``: seconds a build (``--onnx``) takes;
- ``base_ms``: per-run GPU time; ``spreads``: relative spread of the runs, one per timing
  call in order (the last repeats): runs alternate ``base * (1 - s)`` and ``base * (1 + s)``;
- ``warmup_runs``: warm-up runs reported ahead of the timed ones (in ``--exportTimes``, or
  as ``Average on 1 runs`` trace lines when ``mode`` is ``trace``), each ``warmup_ms_each`` long;
- ``power_file``, ``idle_mw``, ``active_mw``: a simulated power rail, set to ``active_mw``
  while the timed runs run and back to ``idle_mw`` after;
- ``log``: a file that gets one JSON line per call (``{"build": bool, "argv": [...]}``).

Its printed statistics are computed by this simulator; they are no captured output.
"""

import json
import os
import sys
import time


def main(argv):
    config_path = os.path.abspath(sys.argv[0]) + '.json'
    with open(config_path) as handle:
        config = json.load(handle)
    tag = config.get('version', '8602')
    banner = '&&&& RUNNING TensorRT.trtexec%s # trtexec %s' % (' [TensorRT v%s]' % tag if tag else '', ' '.join(argv))
    print(banner, flush=True)
    if '--help' in argv:
        return 0
    args = dict(arg.split('=', 1) for arg in argv if '=' in arg)
    calls = []
    if config.get('log') and os.path.exists(config['log']):
        with open(config['log']) as handle:
            calls = [json.loads(line) for line in handle if line.strip()]
    building = '--onnx' in args
    if config.get('log'):
        with open(config['log'], 'a') as handle:
            handle.write(json.dumps({'build': building, 'argv': argv}) + '\n')
    if building:
        time.sleep(config.get('build_delay_s', 0.0))
        with open(args['--onnx'], 'rb') as handle:
            onnx = handle.read()
        if '--saveEngine' in args:
            with open(args['--saveEngine'], 'wb') as handle:
                handle.write(b'engine:' + onnx[:64])
        if '--timingCacheFile' in args:
            with open(args['--timingCacheFile'], 'ab') as handle:
                handle.write(b'.')
    else:
        with open(args['--loadEngine'], 'rb') as handle:
            if not handle.read().startswith(b'engine:'):
                print('[E] corrupted engine', flush=True)
                return 1
    print('[I] Starting inference', flush=True)
    time.sleep(float(args.get('--warmUp', '0')) / 1e3)
    runs = int(args['--iterations'])
    spreads = config.get('spreads', [0.0])
    spread = spreads[min(len(calls), len(spreads) - 1)]
    base = config.get('base_ms', 5.0)
    timed = [base * (1 - spread if i % 2 else 1 + spread) for i in range(runs)]
    warmups = [config.get('warmup_ms_each', 50.0)] * config.get('warmup_runs', 0)
    if config.get('power_file'):
        with open(config['power_file'], 'w') as handle:
            handle.write('%d\n' % config['active_mw'])
    time.sleep(sum(timed) / 1e3)
    if config.get('power_file'):
        with open(config['power_file'], 'w') as handle:
            handle.write('%d\n' % config['idle_mw'])
    print('[I] Warmup completed %d queries over %s ms' % (len(warmups), args.get('--warmUp')), flush=True)
    if '--exportTimes' in args:
        entries, clock = [], 0.0
        for value in warmups + timed:
            entries.append({'startEnqMs': clock, 'endD2hMs': clock + value, 'computeMs': value, 'latencyMs': value})
            clock += value
        with open(args['--exportTimes'], 'w') as handle:
            json.dump(entries, handle)
    if config.get('mode') == 'trace':
        for value in warmups + timed:
            print('[I] Average on 1 runs - GPU latency: %g ms - Host latency: %g ms' % (value, value))
    ordered = sorted(timed)
    print('[I] === Performance summary ===')
    print('[I] GPU Compute Time: min = %g ms, max = %g ms, mean = %g ms, median = %g ms'
          % (ordered[0], ordered[-1], sum(ordered) / len(ordered), ordered[len(ordered) // 2]))
    print('&&&& PASSED TensorRT.trtexec', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

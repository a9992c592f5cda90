"""Does the ssh:// device measure what the local device measures, and what does a session cost?

Measures a few LightNets of a preset on ``local`` and on an SSH device, interleaved (round r
measures every model on both devices before round r+1, so a change of machine load hits both
alike), and prints one JSON line per model::

    {"arch", "local_ms", "ssh_ms", "ratio", "local_iqr_ms", "ssh_iqr_ms", "ssh_session_s"}

plus a summary line ``{"summary": ..., "median_ratio", "max_abs_rel_diff", "median_session_s"}``.
``ssh_session_s`` is the wall time of one SSH measurement (connect, ship the scripts and the
model, start Python and ONNX Runtime on the board, the runs, read back).

Against a real board this compares the board with the workstation (ratios far from 1 are
expected). With ``--start-sshd`` it starts a throw-away sshd on 127.0.0.1 (as in the tests,
``tests/sshd_fixture.py``) and this machine is the "board": then the two devices run the same
runtime on the same CPU, and the ratio shows the protocol adds no bias. Timings are
wall-clock on a possibly shared machine: read them beside the IQRs.

Run: ``python benchmarks/ssh_device.py --start-sshd`` (about a minute), or
``python benchmarks/ssh_device.py --device ssh://nvidia@jetson --remote-python /usr/bin/python3``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default=None, help='ssh://[user@]host[:port] (or use --start-sshd)')
    parser.add_argument('--start-sshd', action='store_true', help='start a throw-away sshd on 127.0.0.1')
    parser.add_argument('--ssh-identity', default=None)
    parser.add_argument('--ssh-option', action='append', default=[])
    parser.add_argument('--remote-python', default='python3')
    parser.add_argument('--preset', default='fashion_mnist')
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--models', type=int, default=3, help='random LightNets (default 3)')
    parser.add_argument('--rounds', type=int, default=3, help='interleaved rounds (default 3)')
    parser.add_argument('--runs', type=int, default=100)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)

    from nni_lightnas.export import export_onnx
    from nni_lightnas.latency import LocalDevice, SSHDevice
    from nni_lightnas.search_spaces import LightNASSpace, LightNet, encode_arch

    server = None
    if args.start_sshd:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))
        from sshd_fixture import SSHServer
        server = SSHServer(Path(tempfile.mkdtemp(prefix='nni-lightnas-sshd-'))).start()
        ssh = server.device(num_runs=args.runs, num_warmup_runs=10, retries=3)
    elif args.device:
        ssh = SSHDevice(args.device, identity_file=args.ssh_identity, ssh_options=args.ssh_option,
                        remote_python=args.remote_python, num_runs=args.runs, num_warmup_runs=10)
    else:
        parser.error('give --device ssh://... or --start-sshd')
    local = LocalDevice(num_runs=args.runs, num_warmup_runs=10)
    try:
        space = LightNASSpace(args.preset)
        rng = random.Random(args.seed)
        workdir = Path(tempfile.mkdtemp(prefix='nni-lightnas-bench-'))
        models = []
        for index in range(args.models):
            arch = encode_arch([rng.choice(space.candidates[label]) for label in space.labels])
            net = LightNet(arch, args.preset)
            path = export_onnx(net, workdir / f'{index}.onnx', (args.batch, *net.input_shape), check=False)
            models.append((arch, path))
        rows = {arch: {'local': [], 'ssh': [], 'local_iqr': [], 'ssh_iqr': [], 'session': []} for arch, _ in models}
        for _ in range(args.rounds):
            for arch, path in models:
                result = local.measure(path)
                rows[arch]['local'].append(result.median_ms)
                rows[arch]['local_iqr'].append(result.iqr_ms)
                start = time.perf_counter()
                result = ssh.measure(path)
                rows[arch]['session'].append(time.perf_counter() - start)
                rows[arch]['ssh'].append(result.median_ms)
                rows[arch]['ssh_iqr'].append(result.iqr_ms)
        ratios, sessions = [], []
        for arch, row in rows.items():
            local_ms, ssh_ms = statistics.median(row['local']), statistics.median(row['ssh'])
            ratios.append(ssh_ms / local_ms)
            sessions.extend(row['session'])
            print(json.dumps({'arch': arch, 'local_ms': round(local_ms, 5), 'ssh_ms': round(ssh_ms, 5),
                              'ratio': round(ssh_ms / local_ms, 4),
                              'local_iqr_ms': round(statistics.median(row['local_iqr']), 5),
                              'ssh_iqr_ms': round(statistics.median(row['ssh_iqr']), 5),
                              'ssh_session_s': round(statistics.median(row['session']), 3)}))
        print(json.dumps({'summary': {'device': ssh.name, 'preset': args.preset, 'batch': args.batch,
                                      'runs': args.runs, 'rounds': args.rounds},
                          'median_ratio': round(statistics.median(ratios), 4),
                          'max_abs_rel_diff': round(max(abs(r - 1) for r in ratios), 4),
                          'median_session_s': round(statistics.median(sessions), 3)}))
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())

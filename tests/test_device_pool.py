"""Device pools: each concurrent measurement (thread or process) takes a free board."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import threading
import time

import pytest

from nni_lightnas.latency import LocalDevice
from nni_lightnas.latency.device import Device, LatencyResult
from nni_lightnas.latency.device_pool import DevicePool, make_device
from nni_lightnas.latency.errors import BoardBusyError
from sshd_fixture import sshd  # noqa: F401


class FakeBoard(Device):
    """A stand-in board that takes no lock of its own and logs when it was busy, so any overlap
    on one board would be the pool's fault."""

    def __init__(self, name: str, log: str):
        super().__init__()
        self.name, self.log = name, log

    @contextlib.contextmanager
    def hold(self):
        yield self  # no lock of its own

    def _measure_onnx_file(self, path):
        start = time.time()
        time.sleep(0.3)
        end = time.time()
        with open(self.log, 'a') as handle:
            handle.write(json.dumps({'board': self.name, 'start': start, 'end': end, 'pid': os.getpid()}) + '\n')
        return LatencyResult(median_ms=1.0, p25_ms=1.0, p75_ms=1.0, runs=1, device=self.name)


def _pool_worker(lock_dir: str, log: str, model: str, start_at: float) -> None:
    pool = DevicePool([FakeBoard('board-a', log), FakeBoard('board-b', log)], lock_dir=lock_dir, poll_s=0.02)
    time.sleep(max(0.0, start_at - time.time()))  # start together
    for _ in range(2):
        assert pool.measure(model).device in ('board-a', 'board-b')


def test_pool_serves_concurrent_processes_one_board_each(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    model = tmp_path / 'model.onnx'  # the smallest valid model: the pool checks the file, the fake boards time nothing
    value = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node('Identity', ['x'], ['y'])], 'identity', [value],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]), str(model))
    log = tmp_path / 'busy.jsonl'
    context = multiprocessing.get_context('fork')  # separate processes, without re-importing torch
    start_at = time.time() + 1.0
    workers = [context.Process(target=_pool_worker, args=(str(tmp_path / 'locks'), str(log), str(model), start_at))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    intervals = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(intervals) == 6 and {item['board'] for item in intervals} == {'board-a', 'board-b'}
    assert len({item['pid'] for item in intervals}) == 3
    for board in ('board-a', 'board-b'):
        spans = sorted((item['start'], item['end']) for item in intervals if item['board'] == board)
        assert all(previous[1] <= current[0] for previous, current in zip(spans, spans[1:])), (board, spans)
    # two boards, three workers: the boards were busy at the same time (the pool used both)
    a = [(i['start'], i['end']) for i in intervals if i['board'] == 'board-a']
    b = [(i['start'], i['end']) for i in intervals if i['board'] == 'board-b']
    assert any(sa < eb and sb < ea for sa, ea in a for sb, eb in b)


def test_pool_times_out_when_every_board_is_busy(tmp_path):
    boards = [LocalDevice(num_runs=3), LocalDevice(num_runs=3)]
    boards[1].name = 'local-2'
    pool = DevicePool(boards, lock_dir=tmp_path, poll_s=0.02)
    other = DevicePool(boards, lock_dir=tmp_path, poll_s=0.02, acquire_timeout_s=0.3)
    with pool.acquire() as first, pool.acquire() as second:
        assert {first.name, second.name} == {'local', 'local-2'}
        with pytest.raises(BoardBusyError, match=r'pool\(local,local-2\).*every board stayed busy'):
            with other.acquire():
                pass
    with other.acquire() as board:  # freed again
        assert board.name in ('local', 'local-2')


def test_make_device_pools_and_errors(tmp_path):
    pool = make_device('ssh://nvidia@nano-1, ssh://nvidia@nano-2:2222', remote_python='/usr/bin/python3',
                       num_runs=9, lock_dir=tmp_path)
    assert isinstance(pool, DevicePool) and len(pool) == 2
    assert [board.name for board in pool.devices] == ['ssh://nvidia@nano-1', 'ssh://nvidia@nano-2:2222']
    assert all(board.num_runs == 9 and board.remote_python == '/usr/bin/python3' for board in pool.devices)
    with pytest.raises(ValueError, match='more than once'):
        make_device('ssh://a,ssh://a')
    with pytest.raises(ValueError, match='another pool'):
        DevicePool([pool])
    with pytest.raises(ValueError, match='at least one'):
        DevicePool([])


def test_pool_of_ssh_boards_measures_concurrently(sshd, tmp_path):
    from nni_lightnas.export import export_onnx
    from nni_lightnas.search_spaces import LightNet
    path = export_onnx(LightNet('MBK3E3-skip-MBK3E3', 'tiny'), tmp_path / 'net.onnx', (4, 1, 28, 28))
    boards = [sshd.device(num_runs=200, num_warmup_runs=2, max_attempts=1, board_lock=str(tmp_path / 'a.lock')),
              sshd.device(url=f'ssh://{sshd.user}@localhost:{sshd.port}', num_runs=200, num_warmup_runs=2,
                          max_attempts=1, board_lock=str(tmp_path / 'b.lock'))]
    pool = DevicePool(boards, lock_dir=tmp_path / 'locks', poll_s=0.05)
    results = []
    threads = [threading.Thread(target=lambda: results.append(pool.measure(path))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 3 and all(result.median_ms > 0 for result in results)
    assert {result.device for result in results} <= {board.name for board in boards}
    for board in boards:
        spans = sorted((r.facts['measure_start_unix'], r.facts['measure_end_unix'])
                       for r in results if r.device == board.name)
        assert all(previous[1] <= current[0] for previous, current in zip(spans, spans[1:]))
    assert all(result.facts['pool'] == pool.name for result in results)


def test_evolution_tuner_latency_on_an_ssh_board(sshd, tmp_path):
    """The stage-2 tuner's latency model can measure on an SSH board (module:factory spec)."""
    from nni_lightnas.latency.channel import make_channel_latency_model
    model = make_channel_latency_model(
        'nni_lightnas.latency.channel:measured_channel_latency', 'MBK3E3-skip-MBK5E6', 'tiny',
        device=sshd.url, identity_file=sshd.user_key, ssh_options=sshd.ssh_options, ssh_config='/dev/null',
        remote_python=sshd.remote_python, remote_dir=sshd.remote_dir, num_runs=10, cache_path=tmp_path / 'c.jsonl')
    sample = model.corner_samples()[0]
    latency_ms = model(sample)
    assert latency_ms > 0 and model.device.name == sshd.url
    record = json.loads((tmp_path / 'c.jsonl').read_text().splitlines()[0])
    assert record['result']['device'] == sshd.url and 'measure_start_unix' in record['result']['facts']

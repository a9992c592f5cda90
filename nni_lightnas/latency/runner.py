#!/usr/bin/env python3
"""Self-contained ONNX Runtime latency runner.

This file needs only Python 3 and ``onnxruntime`` (no torch, no NNI, no nni_lightnas), so
it is copied as is to a board (a Jetson over SSH) and run there; the local device imports
the same function, so both follow one protocol:

1. ``num_warmup_runs`` untimed runs;
2. ``num_runs`` timed runs of ``session.run`` on a fixed random input, back to back (a group
   of models interleaves blocks of runs, never single runs: :func:`measure_onnx_group`);
3. median, quartiles and coefficient of variation of the per-run times;
4. when the IQR exceeds ``max_iqr_ratio`` of the median, measure again (up to
   ``max_attempts``) and keep the attempt with the smallest relative spread.

Usage on a board::

    python3 runner.py model.onnx --runs 200 --warmup 20 --threads 1 [--providers ...]

prints one JSON object (the keys of :func:`measure_onnx`'s result).

Python 3.6 compatible (JetPack 4 boards): no ``from __future__ import annotations``, no
``f"{x=}"``, no ``statistics.fmean``; ``tests/test_jetson_board.py`` checks it with ``vermin``.
"""

import argparse
import json
import platform
import statistics
import sys
import time

__all__ = ['measure_onnx', 'measure_onnx_group', 'summarize_times']


def summarize_times(times_ms: list) -> dict:
    """Median, quartiles, mean and coefficient of variation of per-run times (ms).

    Examples
    --------
    >>> summary = summarize_times([1.0, 2.0, 3.0, 4.0, 5.0])
    >>> summary['median_ms'], summary['p25_ms'], summary['p75_ms']
    (3.0, 2.0, 4.0)
    """
    ordered = sorted(times_ms)
    count = len(ordered)
    if count == 0:
        raise ValueError('no timed runs to summarize')

    def quantile(q: float) -> float:
        position = q * (count - 1)
        low = int(position)
        high = min(low + 1, count - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    mean = sum(ordered) / count
    std = statistics.pstdev(ordered) if count > 1 else 0.0
    return {
        'median_ms': quantile(0.5), 'p25_ms': quantile(0.25), 'p75_ms': quantile(0.75),
        'mean_ms': mean, 'min_ms': ordered[0], 'cv': std / mean if mean > 0 else 0.0, 'runs': count,
    }


CLOCKS = ('wall', 'cpu')
#: Timed runs of one model in a row when a group is interleaved (see :func:`measure_onnx_group`).
DEFAULT_BLOCK_RUNS = 25
#: Untimed runs that start each block, so its first timed run follows a run of the same model.
DEFAULT_BLOCK_WARMUP_RUNS = 3


def _clock(clock: str, threads: int):
    """The timer of a clock name: ``wall`` (``perf_counter``) or ``cpu`` (this thread's CPU time).

    ``cpu`` is for a shared machine: with one intra-op thread ONNX Runtime computes in the
    calling thread, so its CPU time is the run's compute time without the time the thread
    spent preempted by other processes. It is no wall-clock latency and it misses work done
    by other threads (GPU providers, thread pools), so it needs ``threads == 1``.
    """
    if clock == 'wall':
        return time.perf_counter
    if clock == 'cpu':
        if threads != 1:
            raise ValueError("clock='cpu' times the calling thread only and needs threads=1, got threads=%r"
                             % (threads,))
        if not hasattr(time, 'thread_time'):  # Python 3.6
            raise ValueError("clock='cpu' needs Python 3.7+ (time.thread_time) on the board; use clock='wall'")
        return getattr(time, 'thread_time')
    raise ValueError('unknown clock %r; accepted: %s' % (clock, CLOCKS))


def measure_onnx(model, *, num_runs: int = 100, num_warmup_runs: int = 10, threads: int = 1,
                 providers=None, max_iqr_ratio: float = 0.1, max_attempts: int = 3, seed: int = 0,
                 clock: str = 'wall', on_timed=None) -> dict:
    """Time an ONNX model (path or bytes) in ONNX Runtime; returns a dict of summary numbers.

    The input shape is the model's own (exported with a fixed shape, batch included).
    ``clock``: ``wall`` (default) or ``cpu`` (see :func:`_clock`). When the IQR exceeds
    ``max_iqr_ratio`` of the median the model is measured again (up to ``max_attempts``),
    keeping the tightest attempt; ``stable`` says whether one met the bound.
    ``on_timed(start_unix_s, end_unix_s)`` is called after each attempt's timed runs (the
    board's energy measurement uses it).
    """
    result = measure_onnx_group([model], num_runs=num_runs, num_warmup_runs=num_warmup_runs, threads=threads,
                                providers=providers, max_iqr_ratio=max_iqr_ratio, max_attempts=max_attempts,
                                seed=seed, clock=clock, on_timed=on_timed)[0]
    del result['interleaved_with']
    return result


def measure_onnx_group(models, *, num_runs: int = 100, num_warmup_runs: int = 10, threads: int = 1,
                       providers=None, max_iqr_ratio: float = 0.1, max_attempts: int = 3, seed: int = 0,
                       clock: str = 'wall', on_timed=None, block_runs: int = DEFAULT_BLOCK_RUNS,
                       block_warmup_runs: int = DEFAULT_BLOCK_WARMUP_RUNS) -> list:
    """Time several ONNX models in interleaved *blocks* of runs; one summary dict per model.

    The latency of a model is that of the model alone, warm, run back to back, as it is
    deployed (what ``trtexec`` or a plain runtime loop reports). Interleaving single runs
    (A, B, C, A, ...) would start every run with caches holding another net and measure
    up to 10 % more. So each round runs every model as a block: ``block_warmup_runs``
    untimed runs, then ``block_runs`` timed ones; the order of the models rotates every
    round, and rounds repeat until each model has ``num_runs`` timed runs. A slow change
    of machine load still hits all models alike (drift control), while every timed run
    follows runs of the same model. One model is simply timed ``num_runs`` times in a row.

    All sessions are created first. When any model's IQR exceeds ``max_iqr_ratio`` of its
    median the whole group is measured again (up to ``max_attempts``), keeping the attempt
    whose widest relative spread is smallest. ``on_timed``: see :func:`measure_onnx`.
    """
    import numpy as np
    import onnxruntime as ort

    if not models:
        return []
    if num_runs < 1 or num_warmup_runs < 0:
        raise ValueError('num_runs must be >= 1 and num_warmup_runs >= 0, got num_runs=%r, num_warmup_runs=%r'
                         % (num_runs, num_warmup_runs))
    if threads < 1:
        raise ValueError('threads must be >= 1, got threads=%r' % (threads,))
    if block_runs < 1 or block_warmup_runs < 0:
        raise ValueError('block_runs must be >= 1 and block_warmup_runs >= 0, got block_runs=%r, '
                         'block_warmup_runs=%r' % (block_runs, block_warmup_runs))
    timer = _clock(clock, threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    available = ort.get_available_providers()
    if providers:
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise ValueError('execution providers %s are not available; available: %s' % (unknown, available))
    else:
        providers = [p for p in ('TensorrtExecutionProvider', 'CUDAExecutionProvider') if p in available]
        providers.append('CPUExecutionProvider')
    rng = np.random.default_rng(seed) if hasattr(np.random, 'default_rng') else np.random.RandomState(seed)
    runs = []
    for model in models:
        session = ort.InferenceSession(model, sess_options=options, providers=list(providers))
        feeds = {}
        for node in session.get_inputs():
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in node.shape]
            feeds[node.name] = rng.standard_normal(shape).astype(np.float32)
        runs.append((session, [node.name for node in session.get_outputs()], feeds))

    count = len(runs)
    if count == 1:
        block_runs = num_runs  # nothing to interleave with: one block, run back to back
    block_runs = min(block_runs, num_runs)
    best = None
    attempts = 0
    for attempts in range(1, max_attempts + 1):
        for session, outputs, feeds in runs:  # warm-up in blocks as well
            for _ in range(num_warmup_runs):
                session.run(outputs, feeds)
        times_ms = [[] for _ in runs]
        timed_start = time.time()
        round_index = 0
        while len(times_ms[0]) < num_runs:
            for offset in range(count):
                index = (round_index + offset) % count
                session, outputs, feeds = runs[index]
                for _ in range(block_warmup_runs if count > 1 else 0):
                    session.run(outputs, feeds)
                for _ in range(min(block_runs, num_runs - len(times_ms[index]))):
                    start = timer()
                    session.run(outputs, feeds)
                    times_ms[index].append((timer() - start) * 1e3)
            round_index += 1
        if on_timed is not None:
            on_timed(timed_start, time.time())
        summaries = []
        for values in times_ms:
            summary = summarize_times(values)
            median = summary['median_ms']
            summary['iqr_ratio'] = (summary['p75_ms'] - summary['p25_ms']) / median if median else 0.0
            summaries.append(summary)
        widest = max(summary['iqr_ratio'] for summary in summaries)
        if best is None or widest < best[0]:
            best = (widest, summaries)
        if widest <= max_iqr_ratio:
            break
    results = []
    for (session, _, feeds), summary in zip(runs, best[1]):
        summary.update({
            'attempts': attempts, 'stable': summary['iqr_ratio'] <= max_iqr_ratio, 'warmup_runs': num_warmup_runs,
            'threads': threads, 'runtime': 'onnxruntime %s' % ort.__version__, 'provider': session.get_providers()[0],
            'input_shape': list(next(iter(feeds.values())).shape), 'host': platform.node(),
            'machine': platform.machine(), 'interleaved_with': count - 1, 'clock': clock,
            'block_runs': block_runs, 'block_warmup_runs': block_warmup_runs if count > 1 else 0,
        })
        if clock == 'cpu' and summary['provider'] != 'CPUExecutionProvider':
            raise ValueError("clock='cpu' needs the CPU execution provider, the session used %s" % summary['provider'])
        results.append(summary)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='Time an ONNX model with ONNX Runtime; print JSON.')
    parser.add_argument('model')
    parser.add_argument('--runs', type=int, default=100)
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--providers', nargs='*', default=None)
    parser.add_argument('--max-iqr-ratio', type=float, default=0.1)
    parser.add_argument('--max-attempts', type=int, default=3)
    parser.add_argument('--clock', choices=CLOCKS, default='wall')
    args = parser.parse_args(argv)
    try:
        result = measure_onnx(args.model, num_runs=args.runs, num_warmup_runs=args.warmup, threads=args.threads,
                              providers=args.providers, max_iqr_ratio=args.max_iqr_ratio,
                              max_attempts=args.max_attempts, clock=args.clock)
    except ImportError as error:
        print(json.dumps({'error': 'onnxruntime missing on this host: %s' % error}))
        return 3
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Profile the user-written keyword-spotting space on this CPU, then search it at three targets.

Run from the repository root::

    python examples/nni_spaces/search_kws.py --output runs/kws            # the full setting
    python examples/nni_spaces/search_kws.py --output runs/kws --quick    # a smoke run (a minute)

It writes ``lut.csv`` (resumable) and one search directory per target, and prints one JSON line
per target: target, predicted latency of the export, its argmax, and whether it landed within the
tolerance. Nothing here subclasses anything of nni-lightnas.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kws_space import NUM_FRAMES, NUM_MELS, KWSSpace, generated_kws_features  # noqa: E402

from nni_lightnas.latency import LocalDevice  # noqa: E402
from nni_lightnas.latency.lut_build import build_lut  # noqa: E402
from nni_lightnas.search import SearchConfig, run_search  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output', default='runs/kws')
    parser.add_argument('--quick', action='store_true', help='small width, few examples and epochs')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    channels, examples, epochs = (16, 512, 3) if args.quick else (64, 8192, 12)
    space_args = {'channels': channels, 'num_blocks': 4}
    output = Path(args.output)
    lut = build_lut(KWSSpace(**space_args), LocalDevice(num_runs=20 if args.quick else 100),
                    example_input=torch.zeros(8, NUM_MELS, NUM_FRAMES), path=output / 'lut.csv')
    dataset = generated_kws_features(examples, seed=0)
    fastest_ms, slowest_ms = lut.latency_range()
    for quantile in (0.25, 0.5, 0.75):
        target_ms = fastest_ms + quantile * (slowest_ms - fastest_ms)
        config = SearchConfig(target_ms=target_ms, epochs=epochs, warmup_epochs=1 if args.quick else 2,
                              batch_size=64, seed=0)
        summary = run_search(config, lut, output / f'search_q{int(100 * quantile)}', space=KWSSpace(**space_args),
                             dataset=dataset)
        print(json.dumps({key: summary[key] for key in ('target_ms', 'predicted_ms', 'arch', 'argmax_ms',
                                                         'within_tolerance', 'nearest_feasible')}))


if __name__ == '__main__':
    main()

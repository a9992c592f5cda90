"""Run a LightNAS search on two CPU processes (Lightning DDP, gloo); each rank writes its result.

Usage: python ddp_search.py OUTPUT_DIR. Lightning's DDP launcher re-runs this script for rank 1.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings('ignore')

from lightnas_helpers import synthetic_loaders, synthetic_lut  # noqa: E402
from nni_lightnas.search import make_search_evaluator  # noqa: E402
from nni_lightnas.search_spaces import LightNASSpace  # noqa: E402
from nni_lightnas.strategies import LightNAS  # noqa: E402


def main(output_dir: str) -> None:
    logging.getLogger('nni').setLevel(logging.ERROR)
    # A different seed per rank: different batches and Gumbel draws. DDP broadcasts rank 0's
    # weights and alpha, averages gradients, and lambda follows the (identical) argmax.
    torch.manual_seed(int(os.environ.get('LOCAL_RANK', 0)))
    lut = synthetic_lut()
    train_loader, arch_loader = synthetic_loaders(256, 32)
    strategy = LightNAS(target_latency_ms=lut.latency_range()[0] * 1.3, latency_model=lut, warmup_epochs=1,
                        lambda_lr=0.2, arc_learning_rate=0.05, schedule='fixed')
    evaluator = make_search_evaluator(train_loader, arch_loader, max_epochs=3, devices=2,
                                      strategy='ddp_find_unused_parameters_true')
    space = strategy.mutate_model(LightNASSpace('tiny'))
    evaluator = strategy.mutate_evaluator(evaluator)
    strategy._mutated_model_space = type('Mutated', (), {'evaluator': evaluator})()
    evaluator.fit(space)
    rank = evaluator.trainer.global_rank
    result = strategy.export_result()
    result['world_size'] = evaluator.trainer.world_size
    result['probabilities'] = strategy.probabilities()
    Path(output_dir, f'rank{rank}.json').write_text(json.dumps(result))


if __name__ == '__main__':
    main(sys.argv[1])

"""How well does BTE rank channel configurations of a LightNet? (stage 2, DESIGN section 7)

For N width configurations of one Fashion-MNIST LightNet, compare the ranking of:

* truth: held-out test accuracy after a longer training (several epochs of SGD with a cosine
  schedule on a training subset, or the full 60k split without ``--quick``);
* BTE at the default setting and at alternative settings (number of batches B, last K,
  accuracy or loss, SGD or Adam). Training for B batches at a constant learning rate on a
  fixed batch order is a prefix of training for more, so one run of ``--bte-max-batches``
  per optimiser gives every (B, K) setting; the cost of a setting is the run's time scaled by
  B / max batches;
* naive proxies on the same candidates: parameter count, MACs and synflow (Tanaka et al.
  2020; zero-cost, one forward/backward pass).

Prints one JSON line per setting or proxy, ``{"setting", "n_configs", "kendall_tau",
"spearman", "bte_seconds", "truth_seconds", "cost_ratio", "cost_ratio_examples"}``, and
writes everything (per-configuration values, the whole (B, K) grid) to ``--output``.
Truth trainings are cached in ``--cache`` so an interrupted run resumes.

``--truth-seeds 2`` trains every configuration's truth a second time (another initialisation
and batch order): the truth becomes the mean accuracy, and the rank agreement of seed 0 with
seed 1 (``truth seed 0 vs truth seed 1``) is the ceiling any proxy can reach against one seed.
Cost ratios always compare with one truth training.

Timings are wall-clock on a shared machine; ``cost_ratio_examples`` (training examples BTE
processes over those the truth processes) does not depend on the load.

Run: ``python benchmarks/bte_rank.py --quick`` (about 20-30 min on two CPU cores).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
from scipy import stats
from torch import nn

from nni_lightnas import bte
from nni_lightnas.data import load_fashion_mnist
from nni_lightnas.flops import count_macs_params
from nni_lightnas.search_spaces import LightNet
from nni_lightnas.search_spaces.channel_space import channel_choices, widths_from_sample

ARCH = 'MBK3E3-MBK5E6-skip-MBK3E6-MBK5E3-skip-MBK7E6-MBK3E3'
PRESET = 'fashion_mnist'
REPO = Path(__file__).resolve().parents[1]
#: learning rate of the BTE run of each optimiser
RUN_LR = {'sgd': 0.1, 'adam': 1e-3}


def sample_configs(n: int, seed: int) -> list[dict[str, int]]:
    """N distinct configurations spread from narrow to wide (a level per config plus per-layer jitter)."""
    choices = channel_choices(ARCH, PRESET)
    rng = random.Random(seed)
    configs: list[dict[str, int]] = []
    seen = set()
    attempt = 0
    while len(configs) < n:
        level = (len(configs) + rng.random() * 0.5) / max(n - 1, 1)
        config = {}
        for label, values in choices.items():
            index = round(level * (len(values) - 1) + rng.gauss(0, 0.8))
            config[label] = values[min(max(index, 0), len(values) - 1)]
        key = json.dumps(config, sort_keys=True)
        attempt += 1
        if key not in seen or attempt > 100 * n:
            seen.add(key)
            configs.append(config)
    return configs


def build(config: dict[str, int], seed: int = 0) -> LightNet:
    mid, out = widths_from_sample(ARCH, PRESET, config)
    torch.manual_seed(seed)
    return LightNet(ARCH, PRESET, mid_chs=mid, stage_out_chs=out)


def evaluate(model: nn.Module, dataset, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    x, y = dataset.tensors
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            correct += int((model(x[start:start + batch_size]).argmax(1) == y[start:start + batch_size]).sum())
    return correct / len(x)


def train_truth(config, train, test, *, epochs: int, batch_size: int = 128, lr: float = 0.1,
                seed: int = 0) -> dict:
    """Test accuracy after ``epochs`` of SGD; ``seed`` > 0 changes the initialisation and batch order."""
    model = build(config, seed=0 if seed == 0 else 100 + seed)
    steps_per_epoch = len(train) // batch_size
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    start = time.perf_counter()
    model.train()
    for inputs, targets in bte.fixed_batches(train, batch_size=batch_size, num_batches=epochs * steps_per_epoch,
                                             seed=1 + seed):
        loss = nn.functional.cross_entropy(model(inputs), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    accuracy = evaluate(model, test)
    return {'test_accuracy': accuracy, 'seconds': time.perf_counter() - start,
            'examples': epochs * steps_per_epoch * batch_size}


def synflow(config) -> float:
    """log10 of synflow: sum |theta * dR/dtheta| with R the output of the all-ones input, |theta| weights.

    ReLU6 is replaced by ReLU while scoring (with all-positive weights ReLU6 saturates and
    zeroes every gradient); computed in float64, BatchNorm in eval mode.
    """
    model = copy.deepcopy(build(config)).double().eval()
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(module, name, nn.ReLU())
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    model.zero_grad()
    output = model(torch.ones(1, 1, 28, 28, dtype=torch.float64))
    output.sum().backward()
    total = sum(float((p * p.grad).abs().sum()) for p in model.parameters() if p.grad is not None)
    return math.log10(total) if total > 0 else float('-inf')


def rank_stats(proxy: list[float], truth: list[float]) -> dict:
    tau = stats.kendalltau(proxy, truth).statistic
    rho = stats.spearmanr(proxy, truth).statistic
    return {'kendall_tau': round(float(tau), 4), 'spearman': round(float(rho), 4)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='truth = 2 epochs on a 20k subset of the train split (else 3 epochs on all 60k)')
    parser.add_argument('--configs', type=int, default=20, help='number of channel configurations (>= 20)')
    parser.add_argument('--epochs', type=int, default=None, help='truth training epochs (default 2 quick, else 3)')
    parser.add_argument('--train-limit', type=int, default=None, help='truth training examples (default 20k quick)')
    parser.add_argument('--bte-max-batches', type=int, default=80, help='longest SGD BTE run (Adam: half)')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads (1: on a shared machine two threads per process oversubscribe)')
    parser.add_argument('--reanalyze', action='store_true',
                        help='recompute the summary from the per-configuration data in --output (no training)')
    parser.add_argument('--truth-seeds', type=int, default=1,
                        help='independent truth trainings per config (init and batch order); the truth is their '
                             'mean accuracy, and seed 0 against seed 1 gives the ceiling of any ranking')
    parser.add_argument('--bte-seeds', type=int, default=3,
                        help='independent BTE runs (init and batch order) of the default optimiser per config; '
                             'settings "xR" average the first R of them')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--output', default=str(REPO / 'docs' / 'bte_rank.json'))
    parser.add_argument('--cache', default=str(REPO / 'runs' / 'bte_rank_cache.json'))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    limit = args.train_limit or (20000 if args.quick else None)
    args.epochs = args.epochs or (2 if args.quick else 3)
    if args.reanalyze:
        saved = json.loads(Path(args.output).read_text())
        records = [{**config, 'bte_runs': runs} for config, runs in zip(saved['configs'], saved['bte_runs'])]
        return report(records, args, saved['truth']['train_examples'], saved['truth']['test_examples'])

    full_train = load_fashion_mnist('train')
    test = load_fashion_mnist('test')
    if limit is not None and limit < len(full_train):
        order = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(args.seed))[:limit]
        train = torch.utils.data.TensorDataset(full_train.tensors[0][order], full_train.tensors[1][order])
    else:
        train = full_train
    configs = sample_configs(args.configs, args.seed)

    cache_path = Path(args.cache)
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    truth_key = f'epochs={args.epochs},train={len(train)},seed={args.seed}'
    records = []
    for index, config in enumerate(configs):
        key = truth_key + '|' + json.dumps(config, sort_keys=True)
        if key not in cache:
            cache[key] = train_truth(config, train, test, epochs=args.epochs)
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_text(json.dumps(cache))
        truth = dict(cache[key])
        truth_runs = [truth['test_accuracy']]
        for truth_seed in range(1, args.truth_seeds):
            seed_key = f'{key}|truth_seed={truth_seed}'
            if seed_key not in cache:
                cache[seed_key] = train_truth(config, train, test, epochs=args.epochs, seed=truth_seed)
                cache_path.write_text(json.dumps(cache))
            truth_runs.append(cache[seed_key]['test_accuracy'])
        # Costs stay those of one truth training (the reference a proxy's cost is compared with);
        # the extra seeds only make the reference ranking less noisy.
        truth['seed_accuracies'] = truth_runs
        truth['test_accuracy'] = sum(truth_runs) / len(truth_runs)
        cost = count_macs_params(build(config), (1, 28, 28))
        runs = {}
        for name, optimizer, lr, max_batches in (('sgd', 'sgd', RUN_LR['sgd'], args.bte_max_batches),
                                                 ('adam', 'adam', RUN_LR['adam'], args.bte_max_batches // 2)):
            result = bte.batchwise_training_estimation(build(config), train, batches=max_batches, last=1,
                                                       batch_size=64, optimizer=optimizer, lr=lr, seed=0)
            runs[name] = {'losses': result.losses, 'accuracies': result.accuracies, 'seconds': result.seconds}
        for repeat in range(1, args.bte_seeds):
            result = bte.batchwise_training_estimation(
                build(config, seed=repeat), train, batches=args.bte_max_batches // 2, last=1, batch_size=64,
                optimizer=bte.DEFAULT_OPTIMIZER, lr=bte.DEFAULT_LR, seed=repeat)
            runs[f'{bte.DEFAULT_OPTIMIZER}@{repeat}'] = {'losses': result.losses, 'accuracies': result.accuracies,
                                                         'seconds': result.seconds}
        records.append({'config': config, 'truth': truth, 'params': cost.params, 'macs': cost.macs,
                        'synflow': synflow(config), 'bte_runs': runs})
        print(f'[{index + 1}/{len(configs)}] test acc {truth["test_accuracy"]:.4f} truth {truth["seconds"]:.1f}s '
              f'params {cost.params}', file=sys.stderr, flush=True)
    return report(records, args, len(train), len(test))


def report(records: list[dict], args: argparse.Namespace, train_examples: int, test_examples: int) -> int:
    truth_acc = [r['truth']['test_accuracy'] for r in records]
    truth_seconds = sum(r['truth']['seconds'] for r in records)
    truth_examples = sum(r['truth']['examples'] for r in records)
    base = {'n_configs': len(records), 'truth_seconds': round(truth_seconds, 1)}

    def bte_setting(run: str, batches: int, last: int, metric: str, repeats: int = 1) -> dict:
        """Rank statistics of one setting; ``repeats`` > 1 averages the scores of that many seeds."""
        scores, seconds = [], 0.0
        for r in records:
            names = [run] + [f'{run}@{repeat}' for repeat in range(1, repeats)]
            per_seed = []
            for name in names:
                history = r['bte_runs'][name]
                window = history['losses' if metric == 'loss' else 'accuracies'][batches - last:batches]
                mean = sum(window) / last
                per_seed.append(-mean if metric == 'loss' else mean)
                seconds += history['seconds'] * batches / len(history['losses'])
            scores.append(sum(per_seed) / len(per_seed))
        examples = batches * 64 * len(records) * repeats
        return {**base, **rank_stats(scores, truth_acc), 'bte_seconds': round(seconds, 1),
                'cost_ratio': round(seconds / truth_seconds, 4),
                'cost_ratio_examples': round(examples / truth_examples, 4)}

    grid = []
    for run in ('sgd', 'adam'):
        max_batches = len(records[0]['bte_runs'][run]['losses'])
        for batches in (10, 20, 30, 40, 60, 80, 100, 120):
            if batches > max_batches:
                continue
            for last in (5, 10, 20):
                if last > batches:
                    continue
                for metric in bte.METRICS:
                    grid.append({'setting': f'{run} B={batches} K={last} {metric}', 'optimizer': run,
                                 'batches': batches, 'last': last, 'metric': metric,
                                 **bte_setting(run, batches, last, metric)})

    seeds = 1 + sum(1 for name in records[0]['bte_runs'] if name.startswith(f'{bte.DEFAULT_OPTIMIZER}@'))
    for repeats in range(2, seeds + 1):
        max_batches = len(records[0]['bte_runs'][bte.DEFAULT_OPTIMIZER]['losses'])
        for batches in (10, 20, 30, 40):
            for last in (5, 10):
                if batches > max_batches or last > batches:
                    continue
                for metric in bte.METRICS:
                    grid.append({'setting': f'{bte.DEFAULT_OPTIMIZER} x{repeats} B={batches} K={last} {metric}',
                                 'optimizer': bte.DEFAULT_OPTIMIZER, 'batches': batches, 'last': last,
                                 'metric': metric, 'repeats': repeats,
                                 **bte_setting(bte.DEFAULT_OPTIMIZER, batches, last, metric, repeats)})

    sgd_max = len(records[0]['bte_runs']['sgd']['losses'])
    adam_max = len(records[0]['bte_runs']['adam']['losses'])
    other = 'sgd' if bte.DEFAULT_OPTIMIZER == 'adam' else 'adam'
    default_run = bte.DEFAULT_OPTIMIZER
    if RUN_LR[default_run] != bte.DEFAULT_LR:
        raise SystemExit(f'the {default_run} run used lr {RUN_LR[default_run]}, the default is {bte.DEFAULT_LR}')
    run_max = {'sgd': sgd_max, 'adam': adam_max}
    headline = [
        ('default', default_run, bte.DEFAULT_BATCHES, bte.DEFAULT_LAST, bte.DEFAULT_METRIC),
        ('accuracy metric', default_run, bte.DEFAULT_BATCHES, bte.DEFAULT_LAST, 'accuracy'),
        ('fewer batches', default_run, max(10, bte.DEFAULT_BATCHES // 2), 5, bte.DEFAULT_METRIC),
        ('more batches', default_run, run_max[default_run], 20, bte.DEFAULT_METRIC),
        (f'{other} lr {RUN_LR[other]}', other, bte.DEFAULT_BATCHES, bte.DEFAULT_LAST, bte.DEFAULT_METRIC),
        (f'{other} lr {RUN_LR[other]}, more batches', other, run_max[other], 20, bte.DEFAULT_METRIC),
    ]
    results = []
    for name, run, batches, last, metric in headline:
        if batches > (adam_max if run == 'adam' else sgd_max):
            continue
        results.append({'setting': f'BTE {name}: {run} B={batches} K={last} {metric}',
                        **bte_setting(run, batches, last, metric)})
    seed_runs = [r['truth'].get('seed_accuracies', [r['truth']['test_accuracy']]) for r in records]
    if all(len(runs) >= 2 for runs in seed_runs):
        # How well one truth seed ranks the configurations by another: the ceiling of any proxy.
        results.append({'setting': 'truth seed 0 vs truth seed 1', **base,
                        **rank_stats([runs[0] for runs in seed_runs], [runs[1] for runs in seed_runs]),
                        'bte_seconds': 0.0, 'cost_ratio': 0.5, 'cost_ratio_examples': 0.5})
    for proxy in ('params', 'macs', 'synflow'):
        results.append({'setting': f'proxy {proxy}', **base, **rank_stats([r[proxy] for r in records], truth_acc),
                        'bte_seconds': 0.0, 'cost_ratio': 0.0, 'cost_ratio_examples': 0.0})
    for line in results:
        print(json.dumps(line))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    summary = {'arch': ARCH, 'preset': PRESET, 'quick': args.quick, 'truth': {
        'epochs': args.epochs, 'train_examples': train_examples, 'test_examples': test_examples, 'batch_size': 128,
        'seeds': len(seed_runs[0]),
        'optimizer': 'sgd lr 0.1 nesterov cosine wd 1e-4'},
        'defaults': {'batches': bte.DEFAULT_BATCHES, 'last': bte.DEFAULT_LAST, 'batch_size': bte.DEFAULT_BATCH_SIZE,
                     'optimizer': bte.DEFAULT_OPTIMIZER, 'lr': bte.DEFAULT_LR, 'metric': bte.DEFAULT_METRIC},
        'threads': args.threads, 'results': results, 'grid': grid,
        'configs': [{k: v for k, v in r.items() if k != 'bte_runs'} for r in records],
        'bte_runs': [r['bte_runs'] for r in records]}
    output.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())

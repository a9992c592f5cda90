"""Does the search search? LightNAS's net against random nets of the same latency.

For 3 targets at 25/50/75% of the latency range of the ``fashion_mnist`` preset (a LUT measured
on ``local``, with a linear whole-network calibration), compare at each target:

* ``lightnas``: ONE LightNAS search at the main job's search budget
  (``examples/fashion_mnist/pipeline.yml``; its ``quick:`` section with ``--quick``), landing
  step on (the export) and the plain argmax reported beside it;
* ``random``: the first ``--random`` of a pool of ``--pool`` architectures drawn uniformly from
  the space and kept when their predicted latency is within 1% of the target (rejection);
* ``supernet_ranked_random``: random search with weight sharing (Li & Talwalkar, 2019): the net
  of that pool with the best accuracy under a uniformly sampled supernet trained with the same
  data, epochs and warm-up as the LightNAS supernet (``LightNAS(arch_gradient='none')``), scored
  on the architecture split (training images only);
* ``nni_proxyless``: NNI's ``Proxyless`` with ``ExpectationProfilerPenalty`` on the same LUT,
  the same epochs, warm-up and alpha learning rate as LightNAS and the same landing step on its
  final probabilities; the best of ``--proxyless-scales`` penalty scales, chosen by its own
  supernet's accuracy on the architecture split (no test data).

Every net is then trained stand-alone with ONE recipe (``RECIPES``), ``--seeds`` seeds, and
scored on the 10,000 test images. ``kendall_supernet_vs_standalone`` is Kendall's tau between
the uniform supernet's accuracy and the mean stand-alone accuracy over all random nets.

Everything finished is appended to ``--journal`` (JSON lines) and never redone, so a long run
can be stopped and resumed; the targets are done one after another (the middle one first), each
searched and all its nets trained before the next, and ``--from-journal`` summarises the targets
a run in progress has finished (computing nothing; the rest listed in ``unfinished_targets``).
Prints one JSON object::

    {"targets": [{"target_ms", "lightnas": {"arch", "predicted_ms", "argmax_ms", "landed",
     "test_acc": [per seed]}, "random": [...], "supernet_ranked_random": {...},
     "nni_proxyless": {...}, "comparison": {...}}], "kendall_supernet_vs_standalone", "noise",
     "recipe", "search", "seconds"}

Usage::

    python benchmarks/search_quality.py --quick --output docs/search_quality_quick.json   # ~30 min, 2 cores
    python benchmarks/search_quality.py --output docs/search_quality.json                  # hours; resumable
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from target_hit import calibrated_lut  # noqa: E402

#: One stand-alone training recipe for every net (SGD, momentum 0.9, Nesterov, cosine to 0).
#: ``train_images`` are drawn (seeded) from the 60,000 training images; test on all 10,000.
RECIPES = {
    'full': {'train_images': 10_000, 'epochs': 8, 'batch_size': 128, 'learning_rate': 0.05, 'weight_decay': 4e-5},
    'quick': {'train_images': 5_000, 'epochs': 3, 'batch_size': 128, 'learning_rate': 0.05, 'weight_decay': 4e-5},
}
#: the data subset of the stand-alone recipe is drawn with this seed (the same images for every net)
RECIPE_DATA_SEED = 1234
#: training images after the recipe's own in that order: the validation split on which settings
#: are chosen (never the test images)
VALIDATION_IMAGES = 10_000
TOLERANCE = 0.01


def _key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class NotJournaled(LookupError):
    """A read-only journal lacks this piece of work (``--from-journal``)."""


class Journal:
    """Finished work as JSON lines: ``{"key": ..., "value": ...}``; a key is computed once.

    ``read_only``: nothing is computed; :meth:`get` of a missing key raises :class:`NotJournaled`.
    """

    def __init__(self, path: Path, read_only: bool = False):
        self.path = path
        self.read_only = read_only
        self.records: dict[str, Any] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by an interruption: that work is redone
                self.records[record['key']] = record['value']
        path.parent.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, value: Any) -> None:
        """Record ``value`` under ``key`` (a value computed beside another key's)."""
        with self.path.open('a') as handle:
            handle.write(json.dumps({'key': key, 'value': value}, default=float) + '\n')
        self.records[key] = value

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        if key not in self.records:
            if self.read_only:
                raise NotJournaled(key)
            value = compute()
            with self.path.open('a') as handle:
                handle.write(json.dumps({'key': key, 'value': value}, default=float) + '\n')
            self.records[key] = value
        return self.records[key]


def at_target_pool(lut, target_ms: float, count: int, seed: int) -> list[str]:
    """``count`` distinct archs drawn uniformly from the space with predicted latency within 1% of the target."""
    rng = np.random.default_rng(seed)
    labels = lut.labels
    sizes = [len(lut.candidates[label]) for label in labels]
    found: list[str] = []
    seen: set[str] = set()
    idle_rounds = 0
    for _ in range(200):
        if idle_rounds == 5:  # five rounds of draws found nothing new: the target has no more
            break
        before = len(found)
        choices = np.stack([rng.integers(size, size=200_000) for size in sizes], axis=1)
        predicted = lut.predict_indices(choices)
        for row in np.flatnonzero(np.abs(predicted / target_ms - 1.0) <= TOLERANCE):
            arch = '-'.join(lut.candidates[label][choices[row, i]] for i, label in enumerate(labels))
            if arch not in seen:
                seen.add(arch)
                found.append(arch)
                if len(found) == count:
                    return found
        idle_rounds = idle_rounds + 1 if len(found) == before else 0
    raise RuntimeError(f'found only {len(found)} of {count} archs within 1% of {target_ms:.4f} ms')


def _history_summary(history) -> dict[str, Any]:
    last = history.iloc[-1]
    return {'alpha_entropy_fraction': float(last['alpha_entropy_fraction']),
            'argmax_changes_last_epoch': int(last['argmax_changes']),
            'argmax_supernet_acc': None if last['argmax_supernet_acc'] is None
            or (isinstance(last['argmax_supernet_acc'], float) and math.isnan(last['argmax_supernet_acc']))
            else float(last['argmax_supernet_acc']),
            'argmax_ms_per_epoch': [float(v) for v in history['argmax_ms']],
            'lambda_per_epoch': [float(v) for v in history['lambda']]}


def _arch_batches(config, space_config, count: int = 8, dataset=None):
    """The first ``count`` batches of the search's architecture split (training images only)."""
    from nni_lightnas.search import _data_loaders
    generator_state = torch.get_rng_state()
    _, arch_loader = _data_loaders(config, space_config, dataset)
    batches = []
    for batch in arch_loader:
        batches.append(batch)
        if len(batches) == count:
            break
    torch.set_rng_state(generator_state)
    return batches


def proxyless_search(lut, target_ms: float, scale: float, config, arc_learning_rate: float,
                     dataset=None) -> dict[str, Any]:
    """NNI's Proxyless with ExpectationProfilerPenalty; its final probabilities through our landing step.

    ``dataset``: the search's training images when not the preset's own (as ``run_search(dataset=)``).
    """
    from nni.nas.experiment import NasExperiment
    from nni.nas.oneshot.pytorch.profiler import ExpectationProfilerPenalty
    from nni.nas.strategy import Proxyless

    from nni_lightnas.latency.profiler import LatencyProfiler
    from nni_lightnas.search import _data_loaders, make_search_evaluator
    from nni_lightnas.search_spaces import LightNASSpace
    from nni_lightnas.strategies.landing import land_from_probabilities
    torch.manual_seed(config.seed)
    space = LightNASSpace(config.preset)
    penalty = ExpectationProfilerPenalty(LatencyProfiler(space, lut), baseline=target_ms, scale=scale)
    strategy = Proxyless(penalty=penalty, warmup_epochs=config.warmup_epochs, arc_learning_rate=arc_learning_rate)
    train_loader, arch_loader = _data_loaders(config, space.config, dataset)
    evaluator = make_search_evaluator(train_loader, arch_loader, max_epochs=config.epochs,
                                      learning_rate=config.learning_rate, weight_decay=config.weight_decay)
    start = time.perf_counter()
    experiment = NasExperiment(space, evaluator, strategy)
    experiment.run()
    module = strategy._mutated_model_space.evaluator.module  # the one-shot Lightning module
    probabilities = module.export_probs()
    argmax = {label: max(probabilities[label], key=probabilities[label].get) for label in lut.labels}
    argmax_arch = '-'.join(argmax[label] for label in lut.labels)
    landed = None
    if abs(lut.predict(argmax_arch) / target_ms - 1) > TOLERANCE:
        landed = land_from_probabilities(lut, probabilities, target_ms=target_ms, tolerance=TOLERANCE)
    arch = argmax_arch if landed is None else '-'.join(landed[label] for label in lut.labels)
    # its own supernet's accuracy of the exported net on the architecture split: the scale selection criterion
    sample = dict(zip(lut.labels, arch.split('-')))
    accuracy = _nni_subnet_accuracy(module, sample, _arch_batches(config, space.config, dataset=dataset))
    return {'arch': arch, 'predicted_ms': lut.predict(arch), 'argmax_arch': argmax_arch,
            'argmax_ms': lut.predict(argmax_arch), 'landed': arch != argmax_arch, 'scale': scale,
            'supernet_acc': accuracy, 'seconds': time.perf_counter() - start}


def _nni_subnet_accuracy(module, sample: dict[str, str], batches) -> float:
    """Accuracy of ``sample`` under an NNI one-shot module's supernet (batch statistics, momentum 0)."""
    from nni_lightnas.strategies._training import batch_statistics_accuracy
    for supernet_module in module.supernet_modules():
        supernet_module.resample(memo=dict(sample))
    return batch_statistics_accuracy(module.training_module, batches)


def train_standalone(arch: str, preset: str, recipe: dict[str, Any], seed: int, train_set, test_set,
                     validation_set=None) -> float | tuple[float, float]:
    """Test accuracy (%) of ``arch`` trained from scratch with ``recipe`` and ``seed``.

    With ``validation_set``, ``(test, validation)`` accuracies (%) of the same trained net.
    """
    from nni_lightnas.search_spaces import build_lightnet
    from nni_lightnas.strategies._training import evaluate_accuracy, train_steps
    torch.manual_seed(seed)
    net = build_lightnet(arch, preset)
    steps = recipe['epochs'] * (len(train_set) // recipe['batch_size'])
    train_steps(net, train_set, steps=steps, batch_size=recipe['batch_size'], learning_rate=recipe['learning_rate'],
                weight_decay=recipe['weight_decay'], seed=seed)
    test_acc = 100.0 * evaluate_accuracy(net, test_set)
    if validation_set is None:
        return test_acc
    return test_acc, 100.0 * evaluate_accuracy(net, validation_set)


def only_classes(dataset, classes: list[int]):
    """The examples of ``dataset`` (a ``TensorDataset`` of images and labels) whose label is in ``classes``."""
    from torch.utils.data import Subset
    labels = dataset.tensors[1]
    missing = sorted(set(classes) - set(labels.unique().tolist()))
    if missing:
        raise ValueError(f'classes {missing} do not occur in the data (labels {sorted(labels.unique().tolist())})')
    return Subset(dataset, torch.isin(labels, torch.tensor(classes)).nonzero().flatten().tolist())


def _kendall(x, y) -> float | None:
    from scipy.stats import kendalltau
    if len(x) < 3:
        return None
    tau = kendalltau(x, y).statistic
    return None if tau is None or math.isnan(tau) else float(tau)


def compare(entry: dict[str, Any]) -> dict[str, Any]:
    """LightNAS against the random nets (paired over seeds), their 75th percentile, RSWS and Proxyless."""
    lightnas = np.asarray(entry['lightnas']['test_acc'])
    random = np.asarray([net['test_acc'] for net in entry['random']])  # nets x seeds
    random_means = random.mean(axis=1)
    paired = lightnas - random.mean(axis=0)
    result = {'lightnas_mean_acc': float(lightnas.mean()), 'random_mean_acc': float(random_means.mean()),
              'random_p75_acc': float(np.percentile(random_means, 75)),
              'random_best_acc': float(random_means.max()),
              'lightnas_minus_random_per_seed': paired.tolist(),
              'beats_random_mean_every_seed': bool((paired > 0).all()),
              'at_or_above_random_p75': bool(lightnas.mean() >= np.percentile(random_means, 75)),
              'lightnas_rank_among_random': int((random_means > lightnas.mean()).sum()) + 1}
    for name in ('supernet_ranked_random', 'nni_proxyless', 'lightnas_landed_argmax'):
        if entry.get(name):
            other = np.asarray(entry[name]['test_acc'])
            result[f'{name}_mean_acc'] = float(other.mean())
            result[f'lightnas_minus_{name}'] = float(lightnas.mean() - other.mean())
    return result


def parse_variants(variants_json: str | None, options_json: str) -> list[dict[str, Any]]:
    """The LightNAS option sets to search: ``--lightnas-variants`` or the one ``--lightnas-options``."""
    try:
        variants = json.loads(variants_json) if variants_json else [json.loads(options_json)]
    except json.JSONDecodeError as error:
        raise SystemExit(f'--lightnas-variants/--lightnas-options: not JSON ({error})') from None
    if not (isinstance(variants, list) and variants and all(isinstance(v, dict) for v in variants)):
        raise SystemExit(f'--lightnas-variants must be a non-empty JSON list of objects, got {variants_json!r}')
    return variants


def choose_variant(results: list[dict[str, Any]]) -> int:
    """Index of the LightNAS variant whose exports have the best mean validation accuracy over targets and seeds.

    Trainings journaled before validation was kept have none; a variant without any counts as
    -inf, and with no validation at all the first variant (the default) is kept.
    """
    means = []
    for index in range(len(results[0]['lightnas_variants'])):
        values = [v for entry in results for v in entry['lightnas_variants'][index]['search'].get('val_acc', [])
                  if v is not None]
        means.append(float(np.mean(values)) if values else -math.inf)
    return int(np.argmax(means)) if any(math.isfinite(m) for m in means) else 0


def noise_floor(random_per_target: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """How far nets of one latency spread against how far two seeds of one net differ (test accuracy, %).

    Per target, over the nets trained with every seed, a one-way analysis of variance with the
    architecture as the factor: ``anova_f`` and ``anova_p`` (can the recipe tell these nets apart
    at all?) and ``architecture_share`` (ICC(1): the share of the variance of one training's
    accuracy that the architecture explains; 0 or below when seeds differ as much as nets).
    """
    seed_gaps = [abs(net['test_acc'][0] - net['test_acc'][1])
                 for nets in random_per_target for net in nets if len(net['test_acc']) > 1]
    return {'mean_abs_seed_gap_pct': float(np.mean(seed_gaps)) if seed_gaps else None,
            'random_net_spread_pct_per_target': [float(np.std([np.mean(n['test_acc']) for n in nets]))
                                                 for nets in random_per_target],
            'per_target': [architecture_anova([n['test_acc'] for n in nets]) for nets in random_per_target]}


def architecture_anova(accuracies: list[list[float]]) -> dict[str, Any]:
    """One-way ANOVA of per-seed accuracies (one list per net) on the nets with the most seeds.

    >>> result = architecture_anova([[80.0, 80.2], [85.0, 85.1], [90.0, 89.8]])
    >>> result['anova_p'] < 0.001, round(result['architecture_share'], 3)
    (True, 0.999)
    """
    seeds = max((len(a) for a in accuracies), default=0)
    groups = [np.asarray(a, dtype=float) for a in accuracies if len(a) == seeds]
    if seeds < 2 or len(groups) < 2:
        return {'nets': len(groups), 'seeds': seeds, 'anova_f': None, 'anova_p': None, 'architecture_share': None}
    from scipy.stats import f_oneway
    f_value, p_value = f_oneway(*groups)
    within = float(np.mean([g.var(ddof=1) for g in groups]))
    between = float(seeds * np.var([g.mean() for g in groups], ddof=1))
    share = (between - within) / (between + (seeds - 1) * within) if between + within > 0 else None
    return {'nets': len(groups), 'seeds': seeds, 'anova_f': float(f_value), 'anova_p': float(p_value),
            'architecture_share': share}


def markdown_table(summary: dict[str, Any]) -> str:
    """The per-target table of a result JSON, in Markdown (mean test accuracy over seeds, %)."""
    def cell(entry: dict[str, Any]) -> str:
        accs = entry['test_acc']
        return f"{np.mean(accs):.2f} ({', '.join(f'{a:.2f}' for a in accs)})"

    ranked = any('lightnas_landed_argmax' in entry for entry in summary['targets'])
    lines = ['| target (ms) | LightNAS arch | argmax / export (ms) | entropy | LightNAS | '
             + ('landed argmax of the same search | ' if ranked else '')
             + 'random mean | random p75 | random best | RSWS (best of pool) | NNI Proxyless | '
             'LightNAS rank among random |',
             '| --- ' * (12 if ranked else 11) + '|']
    for entry in summary['targets']:
        lightnas, comparison = entry['lightnas'], entry['comparison']
        how = {'ranking': f" (ranked, {lightnas.get('ranked_candidates')} candidates)", 'landing': ' (landed)'}.get(
            lightnas.get('export_rule'), ' (landed)' if lightnas['landed'] else '')
        landed = entry.get('lightnas_landed_argmax')
        lines.append(
            f"| {entry['target_ms']:.3f} | `{lightnas['arch']}` | {lightnas['argmax_ms']:.3f} / "
            f"{lightnas['predicted_ms']:.3f}{how} | "
            f"{100 * lightnas['alpha_entropy_fraction']:.0f} % | {cell(lightnas)} | "
            + ((f"{cell(landed)} | " if landed else '- | ') if ranked else '')
            + f"{comparison['random_mean_acc']:.2f} | "
            f"{comparison['random_p75_acc']:.2f} | {comparison['random_best_acc']:.2f} | "
            f"{cell(entry['supernet_ranked_random'])} | {cell(entry['nni_proxyless'])} | "
            f"{comparison['lightnas_rank_among_random']} of {len(entry['random']) + 1} |")
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help="the quick main job's search and a short recipe")
    parser.add_argument('--preset', default='fashion_mnist')
    parser.add_argument('--pipeline', default=str(REPO / 'examples' / 'fashion_mnist' / 'pipeline.yml'),
                        help="the search budget is this pipeline's search stage")
    parser.add_argument('--lut', default=str(REPO / 'runs' / 'bench' / 'lut_fashion_mnist.csv'),
                        help='LUT measured on local (cached here when missing)')
    parser.add_argument('--calibrate', type=int, default=24)
    parser.add_argument('--quantiles', default='0.25,0.5,0.75')
    parser.add_argument('--random', type=int, default=None, help='random at-target nets trained (8; 5 with --quick)')
    parser.add_argument('--pool', type=int, default=100, help='random at-target nets ranked by the supernet')
    parser.add_argument('--seeds', type=int, default=2, help='stand-alone training seeds')
    parser.add_argument('--train-images', type=int, default=None, help="override the recipe's training images")
    parser.add_argument('--train-epochs', type=int, default=None, help="override the recipe's epochs")
    parser.add_argument('--proxyless-scales', default='1',
                        help='penalty scales tried, the best by its supernet (default 1: the landing step already '
                             'puts every scale on the target)')
    parser.add_argument('--journal', default=None, help='finished work (default: runs/bench/search_quality[_quick].jsonl)')
    parser.add_argument('--lightnas-options', default='{}',
                        help='JSON of LightNAS keyword arguments for the lightnas rows (part of their journal key)')
    parser.add_argument('--lightnas-variants', default=None, metavar='JSON',
                        help='a JSON list of LightNAS option sets, each searched at every target; the lightnas rows '
                             'are the set whose exports score best on the validation split (mean over targets and '
                             'seeds), the same set at every target (default: only --lightnas-options)')
    parser.add_argument('--output', default=None, help='also write the JSON here')
    parser.add_argument('--table', default=None, metavar='JSON', help='only print the Markdown table of a result file')
    parser.add_argument('--only-random', action='store_true',
                        help='only train the random at-target nets (no search) and print how far they spread '
                             'against two seeds of one net: the noise floor of the recipe, and the first part of a '
                             'full run (the same journal keys)')
    parser.add_argument('--from-journal', action='store_true',
                        help='search and train nothing: summarise the targets whose every search and training the '
                             'journal holds (the others are listed in unfinished_targets); for a run in progress')
    parser.add_argument('--no-train', action='store_true',
                        help='with --only-random: train nothing, summarise the nets the journal already holds')
    parser.add_argument('--classes', default=None, metavar='LIST',
                        help='searches, trainings and tests on these classes only, e.g. 0,2,4,6 (the four '
                             'upper-body garments of Fashion-MNIST, its hardest split); the searches train on '
                             'their training images less the validation ones')
    parser.add_argument('--data-dir', default=None,
                        help="the preset's data when it is not Fashion-MNIST (CIFAR-10 for --preset cifar10)")
    parser.add_argument('--threads', type=int, default=2,
                        help='torch threads (1 when the machine is shared: two threads on one free core crawl)')
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return 0
    warnings.filterwarnings('ignore')
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger('nni').setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)

    from nni_lightnas.data import load_for_preset
    from nni_lightnas.pipeline import load_pipeline_config
    from nni_lightnas.search import SearchConfig, run_search
    from nni_lightnas.search_spaces import LightNASSpace
    from nni_lightnas.strategies import LightNAS
    from nni_lightnas.strategies.schedule import BudgetSchedule

    mode = 'quick' if args.quick else 'full'
    recipe = dict(RECIPES[mode])
    if args.train_images:
        recipe['train_images'] = args.train_images
    if args.train_epochs:
        recipe['epochs'] = args.train_epochs
    if args.classes:
        try:
            recipe['classes'] = sorted({int(label) for label in args.classes.split(',')})
        except ValueError:
            parser.error(f'--classes must be comma-separated class indices such as 0,2,4,6, got {args.classes!r}')
    random_count = args.random or (5 if args.quick else 8)
    scales = [float(s) for s in args.proxyless_scales.split(',')]
    journal = Journal(Path(args.journal or REPO / 'runs' / 'bench' / f'search_quality{"_quick" if args.quick else ""}.jsonl'),
                      read_only=args.from_journal)
    started = time.perf_counter()

    lut, calibration = calibrated_lut(Path(args.lut), args.preset, args.calibrate)
    fastest_ms, slowest_ms = lut.latency_range()
    quantiles = [float(q) for q in args.quantiles.split(',')]
    targets = [round(fastest_ms + q * (slowest_ms - fastest_ms), 6) for q in quantiles]
    pipeline = load_pipeline_config(args.pipeline, quick=args.quick)
    search_settings = dict(pipeline.search)
    space = LightNASSpace(args.preset)
    # what the LUT predicts, rounded: a LUT reloaded from its CSV gives the same key as the one just built
    lut_key = _key({label: [round(v, 6) for v in lut.layer_latencies(label).tolist()] for label in lut.labels},
                   round(lut.fixed_ms, 6), round(lut.scale, 6), round(lut.offset_ms, 6))
    # a class subset changes the searches' data too (and so their keys); without one the keys stay as they were
    budget_key = _key(search_settings, pipeline.seed, lut_key, *([recipe['classes']] if 'classes' in recipe else []))
    warmup_path = REPO / 'runs' / 'bench' / f'search_quality_warmup_{budget_key}.ckpt'

    def search_config(target_ms: float) -> SearchConfig:
        return SearchConfig(preset=args.preset, target_ms=target_ms, seed=pipeline.seed, data_dir=args.data_dir,
                            **search_settings)

    def run_lightnas_search(config: SearchConfig, **options) -> dict[str, Any]:
        """One run_search, sharing the warm-up checkpoint across targets and strategies."""
        share = {'warmup_from': warmup_path} if warmup_path.is_file() else {'save_warmup_to': warmup_path}
        return run_search(config, lut, **share, dataset=search_dataset, **options)

    # ---- pools of random at-target archs (deterministic) and the uniform supernet's scores
    pools = {target: at_target_pool(lut, target, args.pool, seed=index) for index, target in enumerate(targets)}

    # ---- stand-alone training: one recipe, every net, every seed
    train_full = load_for_preset(args.preset, 'train', args.data_dir)
    test_set = load_for_preset(args.preset, 'test', args.data_dir)
    from torch.utils.data import Subset
    if 'classes' in recipe:
        train_full, test_set = (only_classes(dataset, recipe['classes']) for dataset in (train_full, test_set))
    if recipe['train_images'] + VALIDATION_IMAGES > len(train_full):
        parser.error(f"{recipe['train_images']} training images and {VALIDATION_IMAGES} validation images need "
                     f"{recipe['train_images'] + VALIDATION_IMAGES} images, the data has {len(train_full)}")
    order = torch.randperm(len(train_full), generator=torch.Generator().manual_seed(RECIPE_DATA_SEED))
    train_set = Subset(train_full, order[:recipe['train_images']].tolist())
    validation_set = Subset(train_full, order[recipe['train_images']:recipe['train_images']
                                              + VALIDATION_IMAGES].tolist())
    search_dataset = None  # the preset's own data, as the main job searches
    if 'classes' in recipe:
        # the class subset's training images less the validation ones (settings are chosen on those),
        # at most the search stage's train_limit
        validation_indices = set(validation_set.indices)
        searchable = [index for index in range(len(train_full)) if index not in validation_indices]
        search_dataset = Subset(train_full, searchable[:search_settings.get('train_limit') or len(searchable)])
    recipe_key = _key(recipe, RECIPE_DATA_SEED)

    def train(arch: str, seed: int) -> float:
        begun = time.perf_counter()
        accuracy, validation = train_standalone(arch, args.preset, recipe, seed, train_set, test_set, validation_set)
        journal.put(_key('validation', arch, recipe_key, seed, VALIDATION_IMAGES), validation)
        print(f'trained {arch} seed {seed}: {accuracy:.2f} % (validation {validation:.2f} %) in '
              f'{time.perf_counter() - begun:.0f} s', file=sys.stderr)
        return accuracy

    def test_accuracies(arch: str) -> list[float]:
        return [journal.get(_key('train', arch, recipe_key, seed), lambda seed=seed: train(arch, seed))
                for seed in range(args.seeds)]

    def validation_accuracies(arch: str) -> list[float | None]:
        """Accuracy on the validation split per seed (``None`` for trainings journaled before it was kept)."""
        return [journal.records.get(_key('validation', arch, recipe_key, seed, VALIDATION_IMAGES))
                for seed in range(args.seeds)]

    if args.only_random:
        # seed by seed: after the first seed every net has a score (the supernet's ranking can be judged)
        for seed in range(0 if args.no_train else args.seeds):
            for target in targets:
                for arch in pools[target][:random_count]:
                    journal.get(_key('train', arch, recipe_key, seed), lambda arch=arch, seed=seed: train(arch, seed))

        def trained(arch: str) -> list[float]:
            return [journal.records[key] for key in (_key('train', arch, recipe_key, seed) for seed in range(args.seeds))
                    if key in journal.records]
        nets = {target: [{'arch': arch, 'test_acc': trained(arch), 'val_acc': validation_accuracies(arch)}
                         for arch in pools[target][:random_count] if trained(arch)] for target in targets}
        summary = {'targets': [{'target_ms': target, 'random': nets[target]} for target in targets],
                   'noise': noise_floor(list(nets.values())), 'recipe': {**recipe, 'seeds': args.seeds},
                   'seconds': time.perf_counter() - started}
        # the uniform supernet's ranking of these nets, when a run has scored them (never trained here)
        scored = journal.records.get(_key('uniform_supernet', budget_key, sorted(pools.items())))
        if scored:
            for entry in summary['targets']:
                for net in entry['random']:
                    net['supernet_acc'] = scored['scores'][net['arch']]
            every = [net for entry in summary['targets'] for net in entry['random']]
            summary['kendall_supernet_vs_standalone'] = _kendall([n['supernet_acc'] for n in every],
                                                                 [float(np.mean(n['test_acc'])) for n in every])
            summary['kendall_per_target'] = [_kendall([n['supernet_acc'] for n in entry['random']],
                                                      [float(np.mean(n['test_acc'])) for n in entry['random']])
                                             for entry in summary['targets']]
        print(json.dumps(summary, default=float))
        return 0

    def uniform_supernet_scores() -> dict[str, Any]:
        config = search_config(targets[len(targets) // 2])
        config.strategy_options = {'arch_gradient': 'none'}
        config.landing_tolerance = None
        summary = run_lightnas_search(config)
        module = summary['strategy'].oneshot_module
        batches = _arch_batches(config, space.config, dataset=search_dataset)
        scores = {arch: module.subnet_accuracy(dict(zip(lut.labels, arch.split('-'))), batches)
                  for pool in pools.values() for arch in pool}
        return {'scores': scores, 'seconds': summary['seconds']}

    supernet = journal.get(_key('uniform_supernet', budget_key, sorted(pools.items())), uniform_supernet_scores)
    print(f"uniform supernet trained and scored {len(supernet['scores'])} nets", file=sys.stderr)

    # ---- searches
    variants = parse_variants(args.lightnas_variants, args.lightnas_options)

    def lightnas(target_ms: float, options: dict[str, Any]) -> dict[str, Any]:
        config = search_config(target_ms)
        config.strategy_options = dict(options)
        summary = run_lightnas_search(config)
        planned = summary['strategy'].oneshot_module.schedule
        return {'arch': summary['arch'], 'predicted_ms': summary['predicted_ms'], 'argmax_arch': summary['argmax_arch'],
                'argmax_ms': summary['argmax_ms'], 'landed': summary['landed'], 'seconds': summary['seconds'],
                'planned_arch_steps': planned.planned_steps if planned else None,
                'arc_learning_rate': planned.arc_learning_rate if planned else None,
                'export_rule': summary['export_rule'],
                **{key: summary[key] for key in ('ranked_candidates', 'ranked_supernet_acc', 'landed_lightnet',
                                                 'landed_ms', 'landed_supernet_acc') if key in summary},
                **_history_summary(summary['history'])}

    # the strategy's defaults are part of a search's key: a search journaled under other defaults is rerun
    strategy_defaults = {name: parameter.default for name, parameter in
                         inspect.signature(LightNAS.__init__).parameters.items()
                         if parameter.default is not inspect.Parameter.empty}
    def train_every_net(entry: dict[str, Any]) -> None:
        """Every net of one target, every seed (journaled): a run cut short has compared whole targets."""
        nets = [net for variant in entry['lightnas_variants']
                for net in [variant['search']] + ([variant['landed_argmax']] if 'landed_argmax' in variant else [])]
        nets += [entry['supernet_ranked_random'], entry['nni_proxyless'], *entry['random']]
        for net in nets:
            test_accuracies(net['arch'])

    # the middle target first, then outwards
    order = sorted(range(len(targets)), key=lambda index: abs(quantiles[index] - 0.5))

    def search_target(target_ms: float) -> dict[str, Any]:
        entry: dict[str, Any] = {'target_ms': target_ms,
                                 'quantile': quantiles[targets.index(target_ms)]}
        entry['lightnas_variants'] = []
        for options in variants:
            key = _key('lightnas', budget_key, target_ms, *([options] if options else []), strategy_defaults)
            variant = {'options': options, 'search': dict(journal.get(key, lambda: lightnas(target_ms, options)))}
            if variant['search'].get('export_rule') == 'ranking':
                # the same search's landed argmax, trained too: what the ranking adds over alpha alone
                search = variant['search']
                landed_arch = search['landed_lightnet']
                variant['landed_argmax'] = {'arch': landed_arch, 'predicted_ms': lut.predict(landed_arch),
                                            'argmax_ms': search['argmax_ms'],
                                            'landed': landed_arch != search['argmax_arch'],
                                            'supernet_acc': search.get('landed_supernet_acc')}
            entry['lightnas_variants'].append(variant)
        entry['lightnas'] = entry['lightnas_variants'][0]['search']  # until the validation split chooses
        print(f"lightnas {target_ms:.4f}: {entry['lightnas']['arch']} argmax {entry['lightnas']['argmax_ms']:.4f} "
              f"entropy {entry['lightnas']['alpha_entropy_fraction']:.2f}", file=sys.stderr)
        config = search_config(target_ms)
        schedule = BudgetSchedule(planned_steps=max(int(entry['lightnas']['planned_arch_steps'] or 1), 1))
        proxyless_runs = []
        for scale in scales:
            def run(scale=scale):
                return proxyless_search(lut, target_ms, scale, config, schedule.arc_learning_rate,
                                        dataset=search_dataset)
            proxyless_runs.append(journal.get(_key('proxyless', budget_key, target_ms, scale), run))
        best = max(proxyless_runs, key=lambda r: r['supernet_acc'])
        entry['nni_proxyless'] = {**best, 'scales_tried': [{k: r[k] for k in ('scale', 'arch', 'predicted_ms',
                                                                              'argmax_ms', 'supernet_acc')}
                                                           for r in proxyless_runs]}
        pool = pools[target_ms]
        entry['random'] = [{'arch': arch, 'predicted_ms': lut.predict(arch), 'argmax_ms': lut.predict(arch),
                            'landed': False, 'supernet_acc': supernet['scores'][arch]} for arch in pool[:random_count]]
        best_arch = max(pool, key=lambda arch: supernet['scores'][arch])
        entry['supernet_ranked_random'] = {'arch': best_arch, 'predicted_ms': lut.predict(best_arch),
                                           'argmax_ms': lut.predict(best_arch), 'landed': False,
                                           'supernet_acc': supernet['scores'][best_arch], 'pool': len(pool)}
        train_every_net(entry)
        return entry

    results = []
    unfinished = []
    for target_ms in [targets[index] for index in order]:
        try:
            results.append(search_target(target_ms))
        except NotJournaled:
            unfinished.append(target_ms)
    results.sort(key=lambda entry: entry['target_ms'])
    if not results:
        raise SystemExit(f'the journal {journal.path} holds no finished target yet (targets {targets})')

    for entry in results:
        for variant in entry['lightnas_variants']:
            for net in [variant['search']] + ([variant['landed_argmax']] if 'landed_argmax' in variant else []):
                net['test_acc'] = test_accuracies(net['arch'])
                net['val_acc'] = validation_accuracies(net['arch'])
    chosen = choose_variant(results)
    for entry in results:
        variant = entry['lightnas_variants'][chosen]
        entry['lightnas'] = variant['search']
        entry.pop('lightnas_landed_argmax', None)
        if 'landed_argmax' in variant:
            entry['lightnas_landed_argmax'] = variant['landed_argmax']
        for name in ('supernet_ranked_random', 'nni_proxyless'):
            entry[name]['test_acc'] = test_accuracies(entry[name]['arch'])
            entry[name]['val_acc'] = validation_accuracies(entry[name]['arch'])
        for net in entry['random']:
            net['test_acc'] = test_accuracies(net['arch'])
            net['val_acc'] = validation_accuracies(net['arch'])
        entry['comparison'] = compare(entry)
        print(f"target {entry['target_ms']:.4f}: {json.dumps(entry['comparison'])}", file=sys.stderr)

    random_nets = [net for entry in results for net in entry['random']]
    supernet_acc = [net['supernet_acc'] for net in random_nets]
    standalone = [float(np.mean(net['test_acc'])) for net in random_nets]
    summary = {
        'targets': results,
        'kendall_supernet_vs_standalone': _kendall(supernet_acc, standalone),
        'kendall_per_target': [_kendall([n['supernet_acc'] for n in e['random']],
                                        [float(np.mean(n['test_acc'])) for n in e['random']]) for e in results],
        'noise': noise_floor([entry['random'] for entry in results]),
        'recipe': {**recipe, 'seeds': args.seeds, 'data_seed': RECIPE_DATA_SEED, 'test_images': len(test_set),
                   'optimizer': 'SGD momentum 0.9 Nesterov, cosine to 0'},
        'search': {**search_settings, 'seed': pipeline.seed, 'quick': args.quick, 'random_nets': random_count,
                   'lightnas_variants': variants, 'lightnas_chosen_variant': variants[chosen],
                   'lightnas_choice_rule': 'best mean validation accuracy of the exports (held-out training '
                                           'images), one set for every target',
                   'pool': args.pool, 'proxyless_scales': scales},
        'latency_model': {'range_ms': [fastest_ms, slowest_ms], 'calibration': calibration,
                          'batch': int(lut.metadata.get('batch', 32)), 'device': 'local (ONNX Runtime CPU)'},
        'seconds': time.perf_counter() - started,
        **({'unfinished_targets': unfinished} if unfinished else {}),
    }
    text = json.dumps(summary, default=float)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(summary, indent=2, default=float))
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())

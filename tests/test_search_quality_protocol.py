"""The pieces of the search-quality protocol: at-target random pools, the journal, the comparison."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from lightnas_helpers import synthetic_lut

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'benchmarks'))
import search_quality  # noqa: E402


def test_at_target_pool_is_distinct_and_within_one_percent():
    lut = synthetic_lut('tiny')
    fastest, slowest = lut.latency_range()
    target = fastest + 0.5 * (slowest - fastest)
    pool = search_quality.at_target_pool(lut, target, 8, seed=0)
    assert len(pool) == len(set(pool)) == 8
    assert all(abs(lut.predict(arch) / target - 1) <= 0.01 for arch in pool)
    assert pool == search_quality.at_target_pool(lut, target, 8, seed=0)  # seeded
    with pytest.raises(RuntimeError, match='found only 10 of 50'):
        search_quality.at_target_pool(lut, target, 50, seed=0)  # 10 of the 343 archs sit there


def test_journal_computes_each_key_once_and_survives_a_torn_line(tmp_path):
    path = tmp_path / 'journal.jsonl'
    calls = []
    journal = search_quality.Journal(path)
    assert journal.get('a', lambda: calls.append(1) or {'x': 1.5}) == {'x': 1.5}
    assert journal.get('a', lambda: calls.append(1) or {'x': 9}) == {'x': 1.5}
    with path.open('a') as handle:
        handle.write('{"key": "b", "val')  # interrupted mid-write
    reopened = search_quality.Journal(path)
    assert reopened.get('a', lambda: calls.append(1)) == {'x': 1.5}
    assert reopened.get('b', lambda: 7) == 7  # the torn record is redone
    assert calls == [1]
    assert json.loads(path.read_text().splitlines()[0]) == {'key': 'a', 'value': {'x': 1.5}}


def test_compare_pairs_seeds_and_ranks_among_random():
    entry = {'lightnas': {'test_acc': [85.0, 83.8]},
             'random': [{'test_acc': [83.0, 83.0]}, {'test_acc': [84.0, 84.0]}, {'test_acc': [86.0, 86.0]},
                        {'test_acc': [82.0, 83.0]}],
             'supernet_ranked_random': {'test_acc': [86.0, 85.0]}, 'nni_proxyless': {'test_acc': [84.0, 84.0]}}
    result = search_quality.compare(entry)
    assert result['random_mean_acc'] == pytest.approx(83.875)
    assert result['lightnas_minus_random_per_seed'] == pytest.approx([85.0 - 83.75, 83.8 - 84.0])
    assert result['beats_random_mean_every_seed'] is False  # below on the second seed
    assert result['lightnas_rank_among_random'] == 2  # one random net (86) is better
    assert result['random_p75_acc'] == pytest.approx(84.5)  # of the means (83, 84, 86, 82.5)
    assert result['at_or_above_random_p75'] is False  # 84.4 < 84.5
    assert result['lightnas_minus_supernet_ranked_random'] == pytest.approx(84.4 - 85.5)
    assert result['lightnas_minus_nni_proxyless'] == pytest.approx(0.4)


def test_journal_put_is_read_back_after_a_restart(tmp_path):
    path = tmp_path / 'journal.jsonl'
    search_quality.Journal(path).put('validation', 91.25)
    assert search_quality.Journal(path).get('validation', lambda: 0.0) == 91.25


def test_standalone_training_scores_one_net_on_test_and_validation(one_torch_thread):
    from torch.utils.data import TensorDataset
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 1, 28, 28, generator=generator), torch.randint(0, 10, (64,), generator=generator))
    other = TensorDataset(torch.randn(64, 1, 28, 28, generator=generator), torch.randint(0, 10, (64,), generator=generator))
    recipe = {'epochs': 1, 'batch_size': 32, 'learning_rate': 0.05, 'weight_decay': 4e-5}
    arch = 'skip-MBK7E3-MBK3E3-MBK3E3-skip-MBK3E3-skip-MBK7E3'
    test_only = search_quality.train_standalone(arch, 'fashion_mnist', recipe, 0, data, data)
    test_acc, validation_acc = search_quality.train_standalone(arch, 'fashion_mnist', recipe, 0, data, data, data)
    assert test_acc == validation_acc == test_only  # one seeded net, scored twice on the same images
    _, on_other = search_quality.train_standalone(arch, 'fashion_mnist', recipe, 0, data, data, other)
    assert 0.0 <= on_other <= 100.0


def test_the_variant_with_the_best_validation_accuracy_is_chosen_for_every_target():
    def entry(*validation):
        return {'lightnas_variants': [{'search': {'val_acc': list(v)}} for v in validation]}
    # variant 1 wins on the mean over targets and seeds though variant 0 wins the first target
    results = [entry([86.0, 86.2], [85.9, 86.0]), entry([85.0, 85.1], [86.5, 86.4])]
    assert search_quality.choose_variant(results) == 1
    # no validation yet (trained before it was kept): the first, the default, stays
    assert search_quality.choose_variant([entry([None, None], [None, None])]) == 0
    assert search_quality.parse_variants(None, '{"rank_candidates": 100}') == [{'rank_candidates': 100}]
    with pytest.raises(SystemExit, match='non-empty JSON list of objects'):
        search_quality.parse_variants('{"a": 1}', '{}')


def test_noise_floor_tells_nets_apart_only_when_they_differ_more_than_seeds():
    # three nets 5 points apart, seeds 0.2 apart: the architecture explains nearly everything
    apart = search_quality.architecture_anova([[80.0, 80.2], [85.0, 85.1], [90.0, 89.8]])
    assert apart['anova_p'] < 0.001 and apart['architecture_share'] > 0.99
    # the same net three times: seeds differ, nets do not (F = 0, share -1 with two seeds)
    same = search_quality.architecture_anova([[86.0, 87.0], [86.0, 87.0], [86.0, 87.0]])
    assert same['anova_f'] == pytest.approx(0.0) and same['anova_p'] == pytest.approx(1.0)
    assert same['architecture_share'] == pytest.approx(-1.0)
    # nets with one seed only cannot be judged; the summary says so instead of guessing
    assert search_quality.architecture_anova([[86.0], [87.0]])['anova_p'] is None
    floor = search_quality.noise_floor([[{'test_acc': [80.0, 80.2]}, {'test_acc': [85.0, 85.1]},
                                         {'test_acc': [90.0]}]])
    assert floor['mean_abs_seed_gap_pct'] == pytest.approx(0.15)
    assert floor['per_target'][0]['nets'] == 2  # the net with one seed is left out of the ANOVA

"""``run_search(config, lut, dataset=...)`` on one of our presets: its own data instead of the preset's."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from lightnas_helpers import synthetic_lut
from nni_lightnas.search import SearchConfig, run_search

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _two_class_images(num_examples: int = 256) -> TensorDataset:
    """1x28x28 images of two classes told apart by their mean brightness."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(num_examples) % 2
    images = torch.randn(num_examples, 1, 28, 28, generator=generator) * 0.5 + (labels.float() * 2 - 1)[:, None,
                                                                                                          None, None]
    return TensorDataset(images, labels)


def test_a_preset_searches_on_a_dataset_of_its_own_and_lands():
    lut = synthetic_lut('tiny')
    low, high = lut.latency_range()
    config = SearchConfig(preset='tiny', target_ms=low + 0.5 * (high - low), epochs=2, warmup_epochs=1,
                          batch_size=32, seed=0)
    summary = run_search(config, lut, dataset=_two_class_images())
    assert abs(summary['relative_error']) <= config.landing_tolerance
    assert summary['preset'] == 'tiny' and len(summary['arch'].split('-')) == len(lut.labels)
    # the supernet learnt the two classes of this data (chance is 50 %)
    assert summary['argmax_supernet_acc'] > 0.7, summary['argmax_supernet_acc']


@pytest.mark.parametrize('dataset, message', [
    (TensorDataset(torch.zeros(64, 3, 32, 32), torch.zeros(64, dtype=torch.long)), r'\(3, 32, 32\).*\(1, 28, 28\)'),
    (TensorDataset(torch.zeros(64, 1, 28, 28), torch.full((64,), 10)), 'label 10 is outside the 10 classes'),
])
def test_a_dataset_that_does_not_fit_the_preset_is_refused_before_training(dataset, message):
    config = SearchConfig(preset='tiny', target_ms=2.0, epochs=1, warmup_epochs=0, batch_size=32)
    with pytest.raises(ValueError, match=message):
        run_search(config, synthetic_lut('tiny'), dataset=dataset)

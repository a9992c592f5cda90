"""BTE proxy, weight inheritance, MACs/params, channel latency models and the BTE trial."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from nni_lightnas.bte import batchwise_training_estimation, fixed_batches, inherit_weights
from nni_lightnas.flops import count_macs_params
from nni_lightnas.latency.channel import (ChannelLatencyModel, FlopsChannelLatency, MeasuredChannelLatency,
                                          make_channel_latency_model)
from nni_lightnas.latency.device import Device, LatencyResult
from nni_lightnas.search_spaces import LightNet
from nni_lightnas.search_spaces.channel_space import channel_choices, widths_from_sample

ARCH = 'MBK3E3-skip-MBK5E6'
PRESET = 'tiny'


def net_at(sample=None, seed=0) -> LightNet:
    mid, out = widths_from_sample(ARCH, PRESET, sample or {})
    torch.manual_seed(seed)
    return LightNet(ARCH, PRESET, mid_chs=mid, stage_out_chs=out)


@pytest.fixture(scope='module')
def synthetic() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(256, 1, 28, 28, generator=generator), torch.randint(0, 10, (256,),
                                                                                        generator=generator))


def test_bte_is_reproducible_and_scores_the_last_batches(synthetic):
    first = batchwise_training_estimation(net_at(), synthetic, batches=6, last=3, batch_size=32, metric='loss')
    second = batchwise_training_estimation(net_at(), synthetic, batches=6, last=3, batch_size=32, metric='loss')
    assert first.losses == second.losses and len(first.losses) == 6
    assert first.score == pytest.approx(-sum(first.losses[-3:]) / 3)
    accuracy = batchwise_training_estimation(net_at(), synthetic, batches=6, last=3, batch_size=32,
                                             metric='accuracy')
    assert accuracy.score == pytest.approx(sum(accuracy.accuracies[-3:]) / 3)
    assert accuracy.losses == first.losses  # the metric changes the score, not the training
    assert first.to_dict()['batches'] == 6 and 'losses' not in first.to_dict()


@pytest.mark.parametrize('kwargs, message', [
    ({'batches': 0}, 'batches'), ({'last': 7}, 'last'), ({'metric': 'f1'}, 'metric'),
    ({'optimizer': 'rmsprop'}, 'optimizer'), ({'lr': 0}, 'lr'),
])
def test_bte_rejects_bad_settings(synthetic, kwargs, message):
    settings = {'batches': 6, 'last': 3, 'batch_size': 32, **kwargs}
    with pytest.raises(ValueError, match=message):
        batchwise_training_estimation(net_at(), synthetic, **settings)


def test_fixed_batches_cycle_epochs_in_one_seeded_order():
    data = TensorDataset(torch.arange(10).float(), torch.arange(10))
    batches = [y.tolist() for _, y in fixed_batches(data, batch_size=4, num_batches=5, seed=1)]
    assert len(batches) == 5 and all(len(b) == 4 for b in batches)
    assert sorted(batches[0] + batches[1]) == sorted(set(batches[0] + batches[1]))  # no repeats in an epoch
    assert batches != [y.tolist() for _, y in fixed_batches(data, batch_size=4, num_batches=5, seed=2)]


def test_bte_learns_fashion_mnist():
    from nni_lightnas.data import load_fashion_mnist
    try:
        data = load_fashion_mnist('train', limit=2048)
    except FileNotFoundError as error:
        pytest.skip(str(error))
    result = batchwise_training_estimation(net_at(), data, batches=40, last=10, batch_size=32, metric='accuracy')
    assert result.accuracy > 0.4  # chance is 0.1
    assert result.loss < result.losses[0]


def test_inherit_weights_takes_leading_slices():
    choices = channel_choices(ARCH, PRESET)
    wide = net_at({label: values[-1] for label, values in choices.items()}, seed=1)
    narrow = net_at({label: values[0] for label, values in choices.items()}, seed=2)
    count = inherit_weights(narrow, wide.state_dict())
    assert count == len(narrow.state_dict())
    weight = narrow.layers[0].conv_pw[0].weight
    source = wide.layers[0].conv_pw[0].weight
    assert torch.equal(weight, source[:weight.shape[0], :weight.shape[1]])
    # a candidate wider than the supernet keeps its own initialisation where it does not fit
    assert inherit_weights(wide, narrow.state_dict()) < len(wide.state_dict())


def test_bte_from_supernet_weights(synthetic):
    choices = channel_choices(ARCH, PRESET)
    supernet = net_at({label: values[-1] for label, values in choices.items()}, seed=1)
    result = batchwise_training_estimation(net_at(seed=5), synthetic, batches=2, last=1, batch_size=32,
                                           supernet_state=supernet.state_dict())
    assert result.inherited == len(net_at().state_dict())


def test_macs_and_params_grow_with_width():
    choices = channel_choices(ARCH, PRESET)
    narrow = count_macs_params(net_at({l: v[0] for l, v in choices.items()}), (1, 28, 28))
    wide = count_macs_params(net_at({l: v[-1] for l, v in choices.items()}), (1, 28, 28))
    assert narrow.macs < wide.macs and narrow.params < wide.params
    assert wide.params == sum(p.numel() for p in net_at({l: v[-1] for l, v in choices.items()}).parameters())
    with pytest.raises(ValueError, match='input_shape'):
        count_macs_params(net_at(), (28, 28))


class CountingDevice(Device):
    """A device whose latency is 1 ms per million parameters of the exported file's size (no timing)."""

    name = 'counting'

    def __init__(self):
        super().__init__(num_runs=1, num_warmup_runs=0)
        self.calls = 0

    def _measure_onnx_file(self, path: Path) -> LatencyResult:
        self.calls += 1
        latency = path.stat().st_size / 4e6
        return LatencyResult(median_ms=latency, p25_ms=latency, p75_ms=latency, runs=1, device=self.name)


def test_measured_latency_is_cached_on_disk(tmp_path):
    cache = tmp_path / 'latency.jsonl'
    device = CountingDevice()
    model = MeasuredChannelLatency(ARCH, PRESET, device=device, cache_path=cache)
    narrow, _, wide = model.corner_samples()
    assert model(narrow) < model(wide)
    assert model(narrow) == model(narrow) and device.calls == 2
    records = [json.loads(line) for line in cache.read_text().splitlines()]
    assert [r['widths'] for r in records] == [narrow, wide]
    again = MeasuredChannelLatency(ARCH, PRESET, device=CountingDevice(), cache_path=cache)
    assert again(wide) == model(wide) and again.device.calls == 0  # read back, not re-measured


def test_flops_latency_calibration_recovers_a_line():
    class Linear(ChannelLatencyModel):
        def __call__(self, sample):
            return 0.3 + 0.02 * FlopsChannelLatency(ARCH, PRESET).mmacs(sample)

    model = FlopsChannelLatency.calibrate(ARCH, PRESET, device=Linear(ARCH, PRESET))
    assert model.intercept_ms == pytest.approx(0.3) and model.ms_per_mmac == pytest.approx(0.02)


def test_make_channel_latency_model_specs(tmp_path):
    model = make_channel_latency_model('flops', ARCH, PRESET, intercept_ms=0.1, ms_per_mmac=0.5)
    sample = model.corner_samples()[1]
    loaded = make_channel_latency_model(str(model.save(tmp_path / 'model.json')), ARCH, PRESET)
    assert loaded(sample) == pytest.approx(model(sample))
    with pytest.raises(ValueError, match='JSON path'):
        make_channel_latency_model('lut', ARCH, PRESET)
    with pytest.raises(ValueError, match='models LightNet MBK3E3'):
        make_channel_latency_model(str(tmp_path / 'model.json'), 'skip-skip-skip', PRESET)


def test_trial_reports_score_latency_params_and_flops():
    from nni_lightnas.trials.bte import BteTrialConfig, build_parser, run_trial
    args = build_parser().parse_args(['--lightnet', ARCH, '--preset', PRESET, '--data', 'synthetic',
                                      '--data-limit', '128', '--batches', '3', '--last', '2', '--batch-size', '32',
                                      '--latency', 'flops', '--latency-args', '{"ms_per_mmac": 0.5}'])
    config = BteTrialConfig.from_args(args)
    assert config.latency_args == {'ms_per_mmac': 0.5} and config.batches == 3
    params = {'stage0_out_chs': 8, 'layer02_mid_chs': 72}
    metrics = run_trial(config, params)
    expected = FlopsChannelLatency(ARCH, PRESET, ms_per_mmac=0.5)(params)
    assert metrics['latency_ms'] == round(expected, 3)  # ms to the microsecond
    assert metrics['default'] == pytest.approx(-metrics['bte_loss'])
    cost = count_macs_params(net_at(params), (1, 28, 28))
    assert metrics['params_m'] == pytest.approx(cost.params_m) and metrics['flops_m'] == pytest.approx(cost.flops_m)
    json.dumps(metrics)  # reportable


def test_a_config_that_names_the_former_factory_module_still_loads():
    model = make_channel_latency_model('nni_lightnas.latency.devices:measured_channel_latency', ARCH, PRESET,
                                       device='local', num_runs=3)
    assert isinstance(model, MeasuredChannelLatency) and model.device.name == 'local'

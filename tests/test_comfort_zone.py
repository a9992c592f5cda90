"""Comfort Zone scaling: scaled nets, the greedy growth under a latency tolerance, accuracy, the CLI."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch

from latency_fakes import CountingDevice, ParamsDevice, onnx_params
from nni_lightnas.cli import main
from nni_lightnas.data import load_fashion_mnist
from nni_lightnas.export import onnx_bytes
from nni_lightnas.strategies import comfort_zone_scale
from nni_lightnas.strategies.comfort_zone import ScaledNet, compare_accuracy

ARCH = ('MBK3E6', 'skip', 'MBK7E3')

pytestmark = pytest.mark.usefixtures('one_torch_thread')


def _params(net: ScaledNet, batch: int = 32) -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / 'net.onnx'
        path.write_bytes(onnx_bytes(net.build().eval(), (batch, 1, 28, 28)))
        return onnx_params(path)


class KneeDevice(ParamsDevice):
    """Flat latency up to ``limit`` weights (an underused accelerator), then steeply rising."""

    name = 'knee'

    def __init__(self, limit: int, **kwargs):
        super().__init__(**kwargs)
        self.limit = limit

    def latency_of(self, params: int) -> float:
        return 1.0 + max(0, params - self.limit) * 1e-3


def test_scaled_net_widths_and_depth():
    net = ScaledNet(ARCH, 'tiny', (24, 32), (1, 1))
    assert net.ops() == ('MBK3E6', 'MBK3E6', 'skip', 'MBK7E3', 'MBK7E3')
    model = net.build()
    assert len(model.layers) == 5
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert model.layers[0].conv_pwl[0].out_channels == 24 and model.layers[-1].conv_pwl[0].out_channels == 32
    assert net.config().num_layers == 5


def test_growth_stops_at_the_knee():
    original = ScaledNet(ARCH, 'tiny', (16, 24), (0, 0))
    limit = int(_params(original) * 1.5)
    result = comfort_zone_scale(ARCH, 'tiny', KneeDevice(limit), tolerance=0.02, width_step=8, max_steps=20,
                                depth=True, rounds=1)
    scaled_params = _params(result.scaled)
    assert result.scaled != result.original
    assert _params(result.original) < scaled_params <= limit
    assert result.latency_ratio == pytest.approx(1.0)
    assert result.scaled_macs > result.original_macs
    accepted = result.history[result.history['accepted']]
    assert (accepted['ratio'] <= 1.02).all()
    assert len(accepted) == result.history['step'].max() - 1  # the last step found nothing that fits
    # no single further widening fits under the knee
    for stage in range(2):
        widths = list(result.scaled.stage_out_chs)
        widths[stage] += 8
        assert _params(ScaledNet(ARCH, 'tiny', tuple(widths), result.scaled.extra_layers)) > limit


class OptimisticDevice(ParamsDevice):
    """Reports every candidate as free while stepping; the final two-model check tells the truth."""

    def _measure_onnx_group(self, paths):
        results = super()._measure_onnx_group(paths)
        if len(paths) > 2:
            for result in results:
                result.median_ms = 1.0
        return results


def test_final_check_undoes_steps_over_the_tolerance():
    result = comfort_zone_scale(ARCH, 'tiny', OptimisticDevice(), tolerance=0.02, max_steps=3, rounds=1)
    assert result.history['accepted'].sum() == 3  # all three steps looked free
    assert result.scaled == result.original  # and were all undone by the final check
    assert result.latency_ratio == pytest.approx(1.0)


def test_bad_settings():
    with pytest.raises(ValueError, match='tolerance must be in'):
        comfort_zone_scale(ARCH, 'tiny', ParamsDevice(), tolerance=-0.1)
    with pytest.raises(ValueError, match='width_step must be a positive integer'):
        comfort_zone_scale(ARCH, 'tiny', ParamsDevice(), width_step=0)
    with pytest.raises(ValueError, match='stage_out_chs needs one entry per stage'):
        comfort_zone_scale(ARCH, 'tiny', ParamsDevice(), stage_out_chs=[16])


@pytest.mark.timeout(300)
def test_real_device_and_accuracy_on_fashion_mnist():
    device = CountingDevice(num_runs=10, num_warmup_runs=2, clock='cpu', max_attempts=1)
    result = comfort_zone_scale(ARCH, 'tiny', device, tolerance=0.02, max_steps=1, rounds=1, batch=8)
    assert len(result.history) == 2  # one widening per stage
    assert result.scaled == result.original or result.latency_ratio <= 1.02
    assert result.original_ms > 0 and result.scaled_ms > 0
    data = load_fashion_mnist('train', limit=160)
    x, y = data.tensors
    train, test = torch.utils.data.TensorDataset(x[:128], y[:128]), torch.utils.data.TensorDataset(x[128:], y[128:])
    wider = ScaledNet(ARCH, 'tiny', (24, 32), (0, 0))
    first = compare_accuracy([result.original, wider], train, test, steps=3, batch_size=16)
    again = compare_accuracy([result.original, wider], train, test, steps=3, batch_size=16)
    assert all(0 <= acc <= 1 for acc in first) and first == again


@pytest.mark.timeout(300)
def test_scale_cli(tmp_path):
    output = tmp_path / 'scaled'
    code = main(['scale', 'MBK3E6-skip-MBK7E3', '--preset', 'tiny', '--max-steps', '1', '--runs', '3',
                 '--warmup', '1', '--clock', 'cpu', '--rounds', '1', '--batch', '4', '--train-steps', '2',
                 '--train-limit', '64', '--test-limit', '32', '--batch-size', '16', '-o', str(output)])
    assert code == 0
    summary = json.loads((output / 'summary.json').read_text())
    assert summary['original_widths'] == [16, 24] and summary['tolerance'] == 0.02
    assert 0 <= summary['accuracy_before'] <= 1 and 0 <= summary['accuracy_after'] <= 1
    assert (output / 'history.csv').is_file()
    assert main(['scale', 'MBK3E6-skip', '--preset', 'tiny']) == 2  # wrong number of layers

"""The per-op LUT: rows and sums, overhead subtraction, incremental writes, refusal of a mismatched LUT."""

from __future__ import annotations

import random

import pandas as pd
import pytest
import torch
from latency_fakes import CountingDevice, ParamsDevice

from nni_lightnas.latency.calibration import fit_linear_calibration, prediction_metrics
from nni_lightnas.latency.lut import LatencyLUT, LUTMismatchError
from nni_lightnas.latency.lut_build import build_lut, lut_entries
from nni_lightnas.latency.loading import latency_model_from_path
from nni_lightnas.latency.whole_network import measure_archs
from nni_lightnas.search_spaces import OP_NAMES, LightNASSpace, LightNet, encode_arch

BATCH = 2


def _random_archs(count: int, layers: int = 3, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [encode_arch([rng.choice(OP_NAMES) for _ in range(layers)]) for _ in range(count)]


@pytest.fixture(scope='module')
def real_lut(tmp_path_factory):
    path = tmp_path_factory.mktemp('lut') / 'tiny.csv'
    return build_lut('tiny', CountingDevice(num_runs=5, num_warmup_runs=1), batch=BATCH, path=path), path


@pytest.fixture(scope='module')
def formula_lut(tmp_path_factory):
    path = tmp_path_factory.mktemp('lut') / 'formula.csv'
    return build_lut('tiny', ParamsDevice(), batch=BATCH, path=path)


def test_entries_cover_every_layer_op_and_fixed_part():
    entries = lut_entries('tiny', BATCH)
    ops = [e for e in entries if e.kind == 'op']
    assert len(ops) == 3 * len(OP_NAMES)
    assert {e.layer for e in entries if e.kind == 'fixed'} == {'call', 'stem', 'head'}
    first = next(e for e in ops if e.layer == 'layer00')
    assert first.input_shape == (BATCH, 8, 14, 14) and first.output_shape == (BATCH, 16, 7, 7)
    # an Identity per distinct output shape, measured before everything else
    assert entries[0].kind == 'overhead'
    assert {e.op for e in entries if e.kind == 'overhead'} >= {'2x16x7x7', '2x24x4x4', '2x10'}
    restricted = lut_entries(LightNASSpace('tiny', op_names=['skip', 'MBK3E3']), BATCH)
    assert len([e for e in restricted if e.kind == 'op']) == 6


def test_real_lut_rows_metadata_and_sum(real_lut):
    lut, path = real_lut
    assert lut.labels == ['layer00', 'layer01', 'layer02']
    assert all(lut.candidates[label] == list(OP_NAMES) for label in lut.labels)
    meta = lut.metadata
    assert meta['device'] == 'local' and meta['threads'] == 1 and meta['batch'] == BATCH
    assert meta['input_size'] == 28 and meta['runtime'].startswith('onnxruntime')
    assert meta['provider'] == 'CPUExecutionProvider' and meta['complete'] is True
    assert meta['space_fingerprint'] == LightNASSpace('tiny').config.fingerprint() and 'date' in meta
    table = lut.table
    ops = table[table['kind'] == 'op']
    assert (ops['latency_ms'] >= 0).all() and (ops['p25_ms'] <= ops['p75_ms']).all()
    # overhead subtracted: latency = median - identity at the same output shape
    assert ((ops['median_ms'] - ops['overhead_ms']).clip(lower=0) - ops['latency_ms']).abs().max() < 1e-12
    assert (ops['overhead_ms'] > 0).all()
    arch = 'MBK3E6-skip-MBK7E3'
    expected = lut.fixed_ms + lut.latency('layer00', 'MBK3E6') + lut.latency('layer01', 'skip') + \
        lut.latency('layer02', 'MBK7E3')
    assert lut.predict(arch) == pytest.approx(expected)
    fixed = table[table['kind'] == 'fixed']
    assert lut.fixed_ms == pytest.approx(fixed['latency_ms'].sum())
    reloaded = LatencyLUT.load(path, space='tiny')
    assert reloaded.predict(arch) == pytest.approx(lut.predict(arch))
    assert isinstance(latency_model_from_path(path), LatencyLUT)


def test_expected_latency_is_differentiable_and_matches_predict(real_lut):
    lut, _ = real_lut
    alpha = {label: torch.zeros(len(OP_NAMES), requires_grad=True) for label in lut.labels}
    probs = {label: torch.softmax(a, -1) for label, a in alpha.items()}
    expected = lut.expected_latency(probs)
    assert expected.dim() == 0
    expected.backward()
    for label, a in alpha.items():
        assert a.grad is not None and a.grad.abs().sum() > 0
        # the gradient favours (is most negative for) the fastest op of the layer
        assert int(a.grad.argmin()) == int(lut.layer_latencies(label).argmin())
    uniform = sum(float(lut.layer_latencies(label).mean()) for label in lut.labels) + lut.fixed_ms
    assert float(expected.detach()) == pytest.approx(uniform, rel=1e-5)
    for arch in _random_archs(5):
        assert float(lut.expected_latency(lut.one_hot(arch))) == pytest.approx(lut.predict(arch), rel=1e-5)
    low, high = lut.latency_range()
    assert all(low - 1e-9 <= lut.predict(arch) <= high + 1e-9 for arch in _random_archs(20))
    with pytest.raises(KeyError, match='layer02'):
        lut.expected_latency({'layer00': probs['layer00'], 'layer01': probs['layer01']})


def test_formula_lut_sums_what_the_device_reports(formula_lut):
    # ParamsDevice: overhead = call_ms exactly, so each op row = linear * P + quadratic * P^2
    device = ParamsDevice()
    lut = formula_lut
    skip_rows = lut.table[(lut.table['op'] == 'skip') & (lut.table['layer'] == 'layer02')]
    assert float(skip_rows['latency_ms'].iloc[0]) == pytest.approx(0.0, abs=1e-12)  # identity skip costs nothing
    call = lut.table[lut.table['layer'] == 'call']
    assert float(call['latency_ms'].iloc[0]) == pytest.approx(device.call_ms)
    archs = _random_archs(4)
    with_reference = measure_archs('tiny', archs, device, batch=BATCH, rounds=2, reference='skip-skip-skip')
    reference_ms = measure_archs('tiny', ['skip-skip-skip'], device, batch=BATCH)[0]['median_ms']
    assert all(m['reference_ms'] == pytest.approx([reference_ms] * 2) for m in with_reference)
    measured = [m['median_ms'] for m in with_reference]
    predicted = [lut.predict(arch) for arch in archs]
    # with a linear device the sum would be exact; the quadratic cross terms make it an underestimate
    assert all(p < m for p, m in zip(predicted, measured))
    linear = build_lut('tiny', ParamsDevice(quadratic=0.0), batch=BATCH)
    linear_measured = [m['median_ms'] for m in measure_archs('tiny', archs, ParamsDevice(quadratic=0.0), batch=BATCH)]
    assert [linear.predict(a) for a in archs] == pytest.approx(linear_measured, rel=1e-9)


def test_interrupted_build_resumes_without_remeasuring(tmp_path):
    path = tmp_path / 'lut.csv'
    total = len(lut_entries('tiny', BATCH))
    finished = []

    def stop_after_seven(row):
        finished.append(row)
        if len(finished) == 7:
            raise KeyboardInterrupt

    first = CountingDevice(num_runs=3, num_warmup_runs=0)
    with pytest.raises(KeyboardInterrupt):
        build_lut('tiny', first, batch=BATCH, path=path, on_row=stop_after_seven)
    assert first.calls == 7
    saved = pd.read_csv(path, skiprows=1)
    assert len(saved) == 7
    # a crash in the middle of a write leaves half a line: it is dropped and measured again
    with open(path, 'a') as file:
        file.write('op,layer01,MBK5E3,0.0')
    second = CountingDevice(num_runs=3, num_warmup_runs=0)
    lut = build_lut('tiny', second, batch=BATCH, path=path)
    assert second.calls == total - 7
    table = lut.table.set_index(['layer', 'op'])
    for row in finished:
        assert table.loc[(row['layer'], row['op']), 'median_ms'] == pytest.approx(row['median_ms'])
    third = CountingDevice(num_runs=3, num_warmup_runs=0)
    again = build_lut('tiny', third, batch=BATCH, path=path)
    assert third.calls == 0 and again.predict('skip-skip-skip') == pytest.approx(lut.predict('skip-skip-skip'))


def test_interrupted_build_with_other_settings_is_refused(tmp_path):
    path = tmp_path / 'lut.csv'

    def stop(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_lut('tiny', ParamsDevice(), batch=BATCH, path=path, on_row=stop)
    with pytest.raises(LUTMismatchError, match='batch'):
        build_lut('tiny', ParamsDevice(), batch=BATCH + 1, path=path)
    with pytest.raises(LUTMismatchError, match='another search space'):
        build_lut(LightNASSpace('tiny', num_classes=5), ParamsDevice(), batch=BATCH, path=path)
    with pytest.raises(LUTMismatchError, match='threads'):
        build_lut('tiny', ParamsDevice(threads=2), batch=BATCH, path=path)


def test_mismatched_lut_is_refused(formula_lut, tmp_path):
    path = formula_lut.save(tmp_path / 'tiny.csv')
    with pytest.raises(LUTMismatchError, match='input size'):
        LatencyLUT.load(path, space=LightNASSpace('tiny', input_size=32))
    with pytest.raises(LUTMismatchError, match='another search space'):
        LatencyLUT.load(path, space=LightNASSpace('tiny', width_mult=0.5))
    with pytest.raises(LUTMismatchError, match='another search space|input size'):
        latency_model_from_path(path, space='fashion_mnist')
    with pytest.raises(LUTMismatchError, match='batch'):
        LatencyLUT.load(path, batch=BATCH * 2)
    with pytest.raises(LUTMismatchError, match='device'):
        LatencyLUT.load(path, device='local')
    not_a_lut = tmp_path / 'other.csv'
    not_a_lut.write_text('a,b\n1,2\n')
    with pytest.raises(LUTMismatchError, match='not an nni-lightnas'):
        LatencyLUT.load(not_a_lut)
    assert LatencyLUT.load(path, space=LightNASSpace('tiny'), batch=BATCH, device='params').labels == \
        formula_lut.labels


def test_linear_calibration_and_metrics(formula_lut):
    archs = _random_archs(12, seed=3)
    truth = [1.3 * formula_lut.predict(a) + 0.05 for a in archs]
    calibrated = fit_linear_calibration(formula_lut, archs, truth)
    assert calibrated.metadata['calibration']['scale'] == pytest.approx(1.3)
    assert [calibrated.predict(a) for a in archs] == pytest.approx(truth)
    probs = calibrated.one_hot(archs[0])
    assert float(calibrated.expected_latency(probs)) == pytest.approx(truth[0], rel=1e-6)
    low, high = calibrated.latency_range()
    assert low == pytest.approx(1.3 * formula_lut.latency_range()[0] + 0.05)
    metrics = prediction_metrics([formula_lut.predict(a) for a in archs], truth)
    assert metrics['mape'] > 0 and metrics['spearman'] == pytest.approx(1.0)
    assert prediction_metrics(truth, truth)['acc5'] == 100.0


def test_lightnet_whole_network_shapes_match_lut_entries():
    # the LUT's per-op input shapes are those the layers see inside the whole network
    net = LightNet('MBK3E3-MBK3E3-MBK3E3', 'tiny').eval()
    shapes = []
    for layer in net.layers:
        layer.register_forward_hook(lambda module, inputs, output: shapes.append(tuple(inputs[0].shape)))
    net(torch.zeros(BATCH, 1, 28, 28))
    entries = {e.layer: e.input_shape for e in lut_entries('tiny', BATCH) if e.kind == 'op'}
    assert shapes == [entries['layer00'], entries['layer01'], entries['layer02']]


def test_profile_cli_builds_a_resumable_lut_and_a_calibrated_one(tmp_path, capsys):
    import json

    from nni_lightnas.cli import main
    path = tmp_path / 'tiny.csv'
    argv = ['profile', '--preset', 'tiny', '--output', str(path), '--batch', '2', '--runs', '3', '--warmup', '0',
            '--correct', 'linear', '--calibration-archs', '4']
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report['batch'] == 2 and report['device'] == 'local' and report['layers'] == 3
    calibrated = LatencyLUT.load(report['latency_model'], space='tiny')
    assert calibrated.metadata['calibration']['num_archs'] == 4
    plain = LatencyLUT.load(path, space='tiny', batch=2)
    assert plain.metadata['complete'] is True


def test_parquet_round_trip_or_a_clear_error(formula_lut, tmp_path):
    path = tmp_path / 'tiny.parquet'
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match='pyarrow'):
            formula_lut.save(path)
        return
    formula_lut.save(path)
    loaded = LatencyLUT.load(path, space='tiny')
    assert loaded.metadata == formula_lut.metadata
    assert loaded.predict('skip-MBK3E3-MBK7E6') == pytest.approx(formula_lut.predict('skip-MBK3E3-MBK7E6'))

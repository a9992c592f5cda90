"""BBSSP layer-adaptive correction: the formula, its accuracy against a non-additive device, resuming."""

from __future__ import annotations

import random

import pytest
from latency_fakes import CountingDevice, ParamsDevice

from nni_lightnas.latency.bbssp import bbssp_correct, bbssp_plan, typical_ops
from nni_lightnas.latency.calibration import fit_linear_calibration, prediction_metrics
from nni_lightnas.latency.lut import LatencyLUT, LUTMismatchError
from nni_lightnas.latency.lut_build import build_lut
from nni_lightnas.latency.whole_network import measure_archs
from nni_lightnas.search_spaces import OP_NAMES, LightNASSpace, encode_arch

BATCH = 2


@pytest.fixture(scope='module')
def device():
    return ParamsDevice()


@pytest.fixture(scope='module')
def plain(device):
    return build_lut('tiny', device, batch=BATCH)


@pytest.fixture(scope='module')
def corrected(plain, device):
    return bbssp_correct(plain, device, typical_op='MBK5E3')


def _truth(device, arch):
    return measure_archs('tiny', [arch], device, batch=BATCH)[0]['median_ms']


def test_typical_ops_and_plan(plain):
    typical = typical_ops(plain)
    assert set(typical) == set(plain.labels) and 'skip' not in typical.values()
    assert typical_ops(plain, 'MBK3E3') == {label: 'MBK3E3' for label in plain.labels}
    with pytest.raises(ValueError, match='not a candidate'):
        typical_ops(plain, 'MBK9E9')
    steps = bbssp_plan(plain, typical, rounds=2)
    # per round and layer: one base and six swaps
    assert len(steps) == 2 * 3 * 7
    assert sum(step['kind'] == 'base' for step in steps) == 2 * 3


def test_corrected_entries_follow_the_bbssp_formula(plain, corrected, device):
    base_arch = ['MBK5E3'] * 3
    t0 = _truth(device, base_arch)
    assert corrected.metadata['correction'] == 'bbssp'
    assert corrected.metadata['bbssp']['ssbn0_ms'] == pytest.approx(t0)
    for index, label in enumerate(plain.labels):
        typical_ms = plain.latency(label, 'MBK5E3')
        assert corrected.latency(label, 'MBK5E3') == pytest.approx(typical_ms)
        for op in ('skip',):
            swapped = list(base_arch)
            swapped[index] = op
            # L(i, j) = l_i^typ + T(SSBN_(i<-j)) - T(SSBN_0)
            assert corrected.latency(label, op) == pytest.approx(typical_ms + _truth(device, swapped) - t0)
            # and the corrected table predicts every single-layer swap of SSBN_0 exactly
            assert corrected.predict(swapped) == pytest.approx(_truth(device, swapped))
    assert corrected.predict(base_arch) == pytest.approx(t0)
    assert plain.predict(base_arch) < t0  # the per-op sum misses the cross terms


def test_corrected_lut_predicts_whole_networks_better(plain, corrected, device):
    rng = random.Random(1)
    archs = [encode_arch([rng.choice(OP_NAMES) for _ in range(3)]) for _ in range(12)]
    truth = [m['median_ms'] for m in measure_archs('tiny', archs, device, batch=BATCH)]
    additive = prediction_metrics([plain.predict(a) for a in archs], truth)
    bbssp = prediction_metrics([corrected.predict(a) for a in archs], truth)
    assert bbssp['mape'] < additive['mape']
    calibrated = fit_linear_calibration(plain, archs[:6], truth[:6])
    linear = prediction_metrics([calibrated.predict(a) for a in archs[6:]], truth[6:])
    assert linear['mape'] < prediction_metrics([plain.predict(a) for a in archs[6:]], truth[6:])['mape']


def test_corrected_lut_round_trips_through_a_file(corrected, tmp_path):
    path = corrected.save(tmp_path / 'bbssp.csv')
    loaded = LatencyLUT.load(path, space='tiny')
    assert loaded.metadata['correction'] == 'bbssp'
    assert loaded.predict('skip-MBK3E6-MBK7E3') == pytest.approx(corrected.predict('skip-MBK3E6-MBK7E3'))
    assert 'plain_latency_ms' in loaded.table.columns


def test_refuses_a_corrected_lut_or_another_device(plain, corrected):
    with pytest.raises(ValueError, match='already corrected'):
        bbssp_correct(corrected, ParamsDevice())
    with pytest.raises(LUTMismatchError, match='device'):
        bbssp_correct(plain, CountingDevice(num_runs=3))


def test_interrupted_correction_resumes_from_its_journal(plain, corrected, tmp_path):
    journal = tmp_path / 'journal.csv'
    seen = []

    def stop_after_two_layers(event):
        seen.append(event)
        if len(seen) == 2:
            raise KeyboardInterrupt

    first = ParamsDevice()
    with pytest.raises(KeyboardInterrupt):
        bbssp_correct(plain, first, typical_op='MBK5E3', journal=journal, on_measure=stop_after_two_layers)
    assert first.calls == 2 * 7
    second = ParamsDevice()
    resumed = bbssp_correct(plain, second, typical_op='MBK5E3', journal=journal)
    assert second.calls == 7  # only the last layer's group
    assert resumed.predict('MBK7E6-skip-MBK3E6') == pytest.approx(corrected.predict('MBK7E6-skip-MBK3E6'))
    with pytest.raises(LUTMismatchError, match='typical_ops'):
        bbssp_correct(plain, ParamsDevice(), typical_op='MBK3E3', journal=journal)


def test_real_device_correction_smoke(tmp_path):
    device = CountingDevice(num_runs=5, num_warmup_runs=1)
    space = LightNASSpace('tiny', op_names=['skip', 'MBK3E3'])
    lut = build_lut(space, device, batch=BATCH)
    corrected = bbssp_correct(lut, device, space=space, journal=tmp_path / 'j.csv')
    assert corrected.metadata['bbssp']['typical_ops'] == {label: 'MBK3E3' for label in lut.labels}
    ops = corrected.table[corrected.table['kind'] == 'op']
    assert ops['latency_ms'].notna().all() and ops['ssbn_ms'].gt(0).all()
    low, high = corrected.latency_range()
    assert 0 < low < high

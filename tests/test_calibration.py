"""Whole-network calibration: the sample it is fitted on, the relative fit, and a real device run."""

from __future__ import annotations

import numpy as np
import pytest

from lightnas_helpers import synthetic_lut
from nni_lightnas.latency import LocalDevice
from nni_lightnas.latency.calibration import (calibrate_on_device, fit_linear_calibration, random_archs,
                                              spread_archs)


def test_spread_archs_cover_the_latency_range_and_are_deterministic():
    lut = synthetic_lut('fashion_mnist')
    low, high = lut.latency_range()
    spread = spread_archs(lut, 12, seed=0)
    assert spread == spread_archs(lut, 12, seed=0) and len(set(spread)) == 12
    spread_ms = sorted(lut.predict(arch) for arch in spread)
    random_ms = sorted(lut.predict(arch) for arch in random_archs('fashion_mnist', 12, seed=0))
    position = lambda ms: (ms - low) / (high - low)  # noqa: E731
    assert position(spread_ms[0]) < 0.15 and position(spread_ms[-1]) > 0.85
    assert np.ptp(spread_ms) > 1.5 * np.ptp(random_ms)
    with pytest.raises(ValueError, match=r'count must be in \[0, 343\]'):
        spread_archs(synthetic_lut(), 400)


def test_relative_fit_trades_absolute_error_for_relative_error():
    lut = synthetic_lut()
    archs = spread_archs(lut, 10, seed=1)
    raw = np.array([lut.predict(arch) for arch in archs])
    # a device that is linear in the LUT sum plus a bump on the slowest nets
    measured = 1.1 * raw + 0.2 + np.where(raw > np.percentile(raw, 70), 0.3, 0.0)
    relative = fit_linear_calibration(lut, archs, measured)
    absolute = fit_linear_calibration(lut, archs, measured, relative=False)
    def rms_rel(model):
        return float(np.sqrt(np.mean([(model.predict(a) / m - 1) ** 2 for a, m in zip(archs, measured)])))
    def rms_abs(model):
        return float(np.sqrt(np.mean([(model.predict(a) - m) ** 2 for a, m in zip(archs, measured)])))
    assert rms_rel(relative) < rms_rel(absolute)
    assert rms_abs(absolute) <= rms_abs(relative)
    assert relative.metadata['calibration']['fit'] == 'relative'
    plain = relative.without_calibration()
    assert 'calibration' not in plain.metadata
    assert [plain.predict(a) for a in archs] == pytest.approx(list(raw))
    # an exactly linear device is recovered by both
    exact = fit_linear_calibration(lut, archs, 1.25 * raw + 0.1)
    assert exact.scale == pytest.approx(1.25) and exact.offset_ms == pytest.approx(0.1)


def test_calibrate_on_a_real_device_measures_the_spread_nets():
    from nni_lightnas.latency.lut_build import build_lut
    device = LocalDevice(num_runs=10, num_warmup_runs=2, threads=1)
    lut = build_lut('tiny', device, batch=4)
    calibrated, rows = calibrate_on_device(lut, 'tiny', device, num_archs=5, batch=4, rounds=1, seed=3)
    assert [row['arch'] for row in rows] == spread_archs(lut, 5, seed=3)
    assert all(row['median_ms'] > 0 and row['lut_ms'] == pytest.approx(lut.predict(row['arch'])) for row in rows)
    assert calibrated.metadata['calibration']['num_archs'] == 5 and calibrated.scale > 0
    with pytest.raises(ValueError, match='num_archs must be >= 3'):
        calibrate_on_device(lut, 'tiny', device, num_archs=2, batch=4)

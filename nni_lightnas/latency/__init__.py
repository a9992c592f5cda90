"""Latency: devices that measure, tables and predictors that estimate.

Examples
--------
>>> from nni_lightnas.latency import LocalDevice, LatencyResult
"""

from .device import Device, LatencyResult, device_lock
from .local import LocalDevice
from .errors import (BoardBusyError, BoardSetupError, DeviceError, MeasurementError, MeasurementTimeout,
                     SSHAuthError, SSHConnectionError, SSHHostKeyError)
from .ssh import SSHDevice
from .device_pool import DevicePool, make_device
from .model import LatencyModel

# Tables, correction and the NNI profiler pull in pandas and NNI: imported on first use.
_LAZY = {
    'LatencyLUT': 'lut', 'LUTMismatchError': 'lut', 'build_lut': 'lut_build', 'load_latency_model': 'loading',
    'latency_model_from_path': 'loading', 'measure_archs': 'whole_network', 'bbssp_correct': 'bbssp', 'fit_linear_calibration': 'calibration',
    'prediction_metrics': 'calibration', 'calibrate_on_device': 'calibration', 'random_archs': 'calibration',
    'LatencyProfiler': 'profiler', 'LatencyModelProfiler': 'profiler',
    'latency_profiler': 'profiler',
}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f'{__name__}.{_LAZY[name]}'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
from .graphs import ArchGraph, GraphSpace, LightNetGraphSpace, FBNetGraphSpace, NasBench201GraphSpace
from .datasets import LatencyDataset, read_latency_csv, read_measured_table
from .predictors import LatencyPredictor, PredictorLatencyModel, load_predictor, make_predictor

__all__ = ['Device', 'LatencyResult', 'device_lock', 'LocalDevice', 'LatencyModel',
           'SSHDevice', 'DevicePool', 'make_device', 'DeviceError', 'SSHConnectionError', 'SSHAuthError',
           'SSHHostKeyError', 'BoardSetupError', 'BoardBusyError', 'MeasurementTimeout', 'MeasurementError',
           'LatencyLUT', 'LUTMismatchError', 'build_lut', 'load_latency_model', 'latency_model_from_path', 'measure_archs', 'bbssp_correct',
           'fit_linear_calibration', 'prediction_metrics', 'calibrate_on_device', 'random_archs', 'LatencyProfiler', 'LatencyModelProfiler',
           'latency_profiler', 'ArchGraph', 'GraphSpace', 'LightNetGraphSpace', 'FBNetGraphSpace',
           'NasBench201GraphSpace', 'LatencyDataset', 'read_latency_csv', 'read_measured_table', 'LatencyPredictor',
           'PredictorLatencyModel', 'load_predictor', 'make_predictor']

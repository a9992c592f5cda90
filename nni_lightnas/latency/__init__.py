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
from .devices import DevicePool, make_device
from .model import LatencyModel
from .lut import LatencyLUT, LUTMismatchError, build_lut, latency_model_from_path, measure_archs
from .bbssp import bbssp_correct
from .calibration import fit_linear_calibration, prediction_metrics
from .profiler import LatencyModelProfiler, LatencyProfiler, latency_profiler
from .graphs import ArchGraph, GraphSpace, LightNetGraphSpace, FBNetGraphSpace, NasBench201GraphSpace
from .datasets import LatencyDataset, read_latency_csv, read_measured_table
from .predictors import LatencyPredictor, PredictorLatencyModel, load_predictor, make_predictor

__all__ = ['Device', 'LatencyResult', 'device_lock', 'LocalDevice', 'LatencyModel',
           'SSHDevice', 'DevicePool', 'make_device', 'DeviceError', 'SSHConnectionError', 'SSHAuthError',
           'SSHHostKeyError', 'BoardSetupError', 'BoardBusyError', 'MeasurementTimeout', 'MeasurementError',
           'LatencyLUT', 'LUTMismatchError', 'build_lut', 'latency_model_from_path', 'measure_archs', 'bbssp_correct',
           'fit_linear_calibration', 'prediction_metrics', 'LatencyProfiler', 'LatencyModelProfiler',
           'latency_profiler', 'ArchGraph', 'GraphSpace', 'LightNetGraphSpace', 'FBNetGraphSpace',
           'NasBench201GraphSpace', 'LatencyDataset', 'read_latency_csv', 'read_measured_table', 'LatencyPredictor',
           'PredictorLatencyModel', 'load_predictor', 'make_predictor']

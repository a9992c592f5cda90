"""Latency: devices that measure, tables and predictors that estimate.

Examples
--------
>>> from nni_lightnas.latency import LocalDevice, LatencyResult
"""

from .device import Device, LatencyResult, device_lock
from .local import LocalDevice
from .model import LatencyModel

__all__ = ['Device', 'LatencyResult', 'device_lock', 'LocalDevice', 'LatencyModel']

#!/usr/bin/env python3
"""Board side: the power rails of a Jetson and the energy of one inference.

Shipped to the board with ``ssh_board.py`` (Python 3.6, standard library only). Jetsons
carry INA3221 monitors whose rails the kernel exposes under
``/sys/bus/i2c/devices/<bus>-<addr>/`` (a device whose ``name`` contains ``ina3221``):

- JetPack 4 (Nano, TX2, Xavier on L4T 32): ``iio:device<N>/rail_name_<k>`` with
  ``in_power<k>_input`` (mW), ``in_voltage<k>_input`` (mV), ``in_current<k>_input`` (mA);
- JetPack 5 and 6 (Xavier on L4T 35, Orin): ``hwmon/hwmon<N>/in<k>_label`` with
  ``in<k>_input`` (mV) and ``curr<k>_input`` (mA); channel 7 is the sum of the shunt
  voltages and labels ``NC`` are unconnected channels: both are skipped.

The board's total is its input rail (``VDD_IN`` on TX2, Xavier NX and Orin, ``POM_5V_IN``
on the Nano) when there is one, else the sum of all rails (AGX Xavier).

Energy per inference = (mean power during the timed runs - idle power) x (timed wall
time / number of timed inferences): mW x s = mJ. The idle power is sampled right before
the measurement, with the board lock held, so no other measurement runs.
"""

import glob
import os
import re
import threading
import time

__all__ = ['PowerRail', 'PowerMeter', 'PowerSampler', 'find_power_rails', 'energy_per_inference']

TOTAL_RAILS = ('VDD_IN', 'POM_5V_IN')
I2C_DEVICES = 'sys/bus/i2c/devices'


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip().strip('\x00')
    except (IOError, OSError):
        return None


class PowerRail(object):
    """One INA3221 channel: ``read_mw()`` from its power file, or voltage x current."""

    def __init__(self, name, power_path=None, voltage_path=None, current_path=None):
        self.name = name
        self.power_path = power_path
        self.voltage_path = voltage_path
        self.current_path = current_path

    def read_mw(self):
        if self.power_path:
            return float(_read(self.power_path))
        return float(_read(self.voltage_path)) * float(_read(self.current_path)) / 1000.0

    def to_dict(self):
        return {'name': self.name, 'path': self.power_path or self.current_path}


def _iio_rails(folder):
    """JetPack 4 layout: ``rail_name_<k>``, ``in_power<k>_input`` (mW)."""
    rails = []
    for label_path in sorted(glob.glob(os.path.join(folder, 'rail_name_*'))):
        index = label_path.rsplit('_', 1)[1]
        name = _read(label_path)
        power = os.path.join(folder, 'in_power%s_input' % index)
        voltage = os.path.join(folder, 'in_voltage%s_input' % index)
        current = os.path.join(folder, 'in_current%s_input' % index)
        if name and os.path.isfile(power):
            rails.append(PowerRail(name, power_path=power))
        elif name and os.path.isfile(voltage) and os.path.isfile(current):
            rails.append(PowerRail(name, voltage_path=voltage, current_path=current))
    return rails


def _hwmon_rails(folder):
    """JetPack 5/6 layout: ``in<k>_label``, ``in<k>_input`` (mV), ``curr<k>_input`` (mA)."""
    rails = []
    for label_path in sorted(glob.glob(os.path.join(folder, 'in*_label'))):
        match = re.match(r'in(\d+)_label$', os.path.basename(label_path))
        name = _read(label_path)
        if not match or not name or match.group(1) == '7' or name.upper() == 'NC':
            continue
        voltage = os.path.join(folder, 'in%s_input' % match.group(1))
        current = os.path.join(folder, 'curr%s_input' % match.group(1))
        if os.path.isfile(voltage) and os.path.isfile(current):
            rails.append(PowerRail(name, voltage_path=voltage, current_path=current))
    return rails


def find_power_rails(root='/'):
    """Every INA3221 rail of the board under ``root`` (``/``, or a simulated tree in tests).

    Examples
    --------
    >>> find_power_rails('/no/such/root')
    []
    """
    rails = []
    for device in sorted(glob.glob(os.path.join(root, I2C_DEVICES, '*'))):
        if 'ina3221' not in (_read(os.path.join(device, 'name')) or ''):
            continue
        for folder in sorted(glob.glob(os.path.join(device, 'iio:device*'))):
            rails.extend(_iio_rails(folder))
        for folder in sorted(glob.glob(os.path.join(device, 'hwmon', 'hwmon*'))):
            rails.extend(_hwmon_rails(folder))
    return rails


class PowerMeter(object):
    """The board's total power: its input rail, else the sum of all rails."""

    def __init__(self, rails):
        if not rails:
            raise ValueError('no power rails to read')
        total = [rail for rail in rails if rail.name in TOTAL_RAILS]
        self.rails = total[:1] if total else list(rails)
        self.all_rails = list(rails)
        self.name = self.rails[0].name if total else 'sum of ' + ', '.join(rail.name for rail in rails)

    def read_mw(self):
        return sum(rail.read_mw() for rail in self.rails)


class PowerSampler(object):
    """Reads a :class:`PowerMeter` every ``interval_s`` in a thread; ``samples`` = [(unix s, mW)]."""

    def __init__(self, meter, interval_s=0.01):
        self.meter = meter
        self.interval_s = interval_s
        self.samples = []
        self._stop = threading.Event()
        self._thread = None

    def _loop(self):
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), self.meter.read_mw()))
            except (TypeError, ValueError):  # a file read mid-write: skip the sample
                pass
            self._stop.wait(self.interval_s)

    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop)
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def mean_mw(self, start, end):
        values = [mw for unix, mw in self.samples if start <= unix <= end]
        return (sum(values) / len(values), len(values)) if values else (None, 0)


def energy_per_inference(samples, windows, inferences, idle_mw):
    """Energy (mJ) of one inference from power samples taken during timed windows.

    Parameters
    ----------
    samples
        ``[(unix_s, mW), ...]``.
    windows
        ``[(start_unix_s, end_unix_s), ...]``: when the timed runs ran.
    inferences
        How many inferences ran inside all windows together.
    idle_mw
        The board's idle power, subtracted.

    Returns ``None`` when no sample fell in a window.

    Examples
    --------
    >>> samples = [(0.5, 3000.0), (1.5, 5000.0), (2.5, 5000.0), (3.5, 3000.0)]
    >>> energy_per_inference(samples, [(1.0, 3.0)], 100, idle_mw=3000.0)['energy_mj']
    40.0
    """
    inside = [mw for unix, mw in samples if any(start <= unix <= end for start, end in windows)]
    duration_s = sum(end - start for start, end in windows)
    if not inside or inferences < 1 or duration_s <= 0:
        return None
    active_mw = sum(inside) / len(inside)
    return {'energy_mj': (active_mw - idle_mw) * duration_s / inferences, 'power_active_mw': active_mw,
            'power_idle_mw': idle_mw, 'power_samples': len(inside), 'energy_window_s': duration_s}

"""Energy as a second budget: LightNAS(target_energy_mj=..., energy_model=...), alone or with latency.

There is no Jetson here. The board is simulated: the loopback sshd of ``sshd_fixture`` is the
board, a sysfs tree of INA3221 rails lives in a temp dir, and a simulated ``trtexec``
(``tests/fake_trtexec.py``) sets the input rail's power while its timed runs run. In the goal
test the power above idle follows a known model, proportional to the network's parameters
(``MW_PER_PARAM``), so every op's energy per inference is known and additive.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from nni.nas.experiment import NasExperiment

from lightnas_helpers import FIXED_MS, OP_COST_MS, synthetic_loaders
from nni_lightnas.latency.lut import LatencyLUT
from nni_lightnas.search import make_search_evaluator
from nni_lightnas.search_spaces import OP_NAMES, LightNASSpace
from nni_lightnas.strategies import InfeasibleTargetError, LightNAS, SinglePathMixedLayer
from sshd_fixture import sshd  # noqa: F401

logging.getLogger('nni').setLevel(logging.ERROR)
pytestmark = pytest.mark.usefixtures('one_torch_thread')
HERE = Path(__file__).resolve().parent

#: Energy per inference (mJ) of each op at layer 0 of the synthetic table; not proportional to
#: its latency (expansion 6 costs more energy per ms), so the two budgets pick different nets.
OP_ENERGY_MJ = {'MBK3E3': 1.0, 'MBK3E6': 2.6, 'MBK5E3': 1.5, 'MBK5E6': 3.4, 'MBK7E3': 1.9, 'MBK7E6': 4.4,
                'skip': 0.1}
FIXED_MJ = 2.0


def energy_lut(preset: str = 'tiny', op_names=OP_NAMES) -> LatencyLUT:
    """A LUT with known latency and energy columns; layer i costs (1 + 0.25 i) times the layer-0 values."""
    space = LightNASSpace(preset, op_names=op_names)
    rows = [{'kind': 'fixed', 'layer': 'stem', 'op': 'stem', 'latency_ms': FIXED_MS, 'energy_mj': FIXED_MJ}]
    for index, label in enumerate(space.labels):
        for op in space.candidates[label]:
            rows.append({'kind': 'op', 'layer': label, 'op': op, 'latency_ms': OP_COST_MS[op] * (1 + 0.25 * index),
                         'energy_mj': OP_ENERGY_MJ[op] * (1 + 0.25 * index)})
    return LatencyLUT(pd.DataFrame(rows), {})


# ------------------------------------------------------------------ the energy model
def test_energy_view_predicts_the_energy_column():
    lut = energy_lut()
    energy = lut.energy_view()
    assert energy.candidates == lut.candidates
    arch = {label: 'MBK5E6' for label in lut.labels}
    expected = FIXED_MJ + sum(OP_ENERGY_MJ['MBK5E6'] * (1 + 0.25 * i) for i in range(len(lut.labels)))
    assert energy.predict(arch) == pytest.approx(expected)
    assert lut.predict(arch) != pytest.approx(expected)  # the latency view is unchanged
    low, high = energy.latency_range()
    assert low == pytest.approx(FIXED_MJ + 0.1 * (1 + 1.25 + 1.5))
    assert high == pytest.approx(FIXED_MJ + 4.4 * (1 + 1.25 + 1.5))
    assert 'mJ' in energy.describe()


def test_energy_view_subtracts_the_call_energy_like_latency():
    table = pd.DataFrame({'kind': ['overhead', 'fixed', 'fixed', 'op', 'op'],
                          'layer': ['overhead', 'call', 'stem', 'layer00', 'layer00'],
                          'op': ['1x8x14x14', 'identity', 'stem', 'skip', 'MBK3E3'],
                          'latency_ms': [0.1, 0.1, 1.0, 0.0, 0.4], 'output_shape': ['1x8x14x14'] * 5,
                          'energy_mj': [0.5, 0.5, 3.0, 0.4, 2.5]})
    energy = LatencyLUT(table, {'overhead_subtracted': True}).energy_view()
    # call counted once (0.5); stem and ops lose their call's 0.5 mJ (never below 0)
    assert energy.predict(['MBK3E3']) == pytest.approx(0.5 + 2.5 + 2.0)
    assert energy.predict(['skip']) == pytest.approx(0.5 + 2.5 + 0.0)
    raw = LatencyLUT(table, {'overhead_subtracted': False}).energy_view()
    assert raw.predict(['MBK3E3']) == pytest.approx(0.0 + 3.0 + 2.5)  # every row keeps its call


@pytest.mark.parametrize('energies,match', [(None, 'no energy_mj column'),
                                            ([1.0, None, 2.0], r'1 LUT rows have no energy_mj.*layer00')])
def test_energy_view_without_energy_is_refused(energies, match):
    table = pd.DataFrame({'kind': ['fixed', 'op', 'op'], 'layer': ['stem', 'layer00', 'layer00'],
                          'op': ['stem', 'skip', 'MBK3E3'], 'latency_ms': [1.0, 0.0, 0.5]})
    if energies is not None:
        table['energy_mj'] = energies
    with pytest.raises(ValueError, match=match):
        LatencyLUT(table, {}).energy_view()


# ------------------------------------------------------------------- configuration
def test_bad_budgets_are_refused_with_what_is_accepted():
    lut = energy_lut()
    energy = lut.energy_view()
    with pytest.raises(ValueError, match='needs a budget: target_latency_ms .* target_energy_mj .* got neither'):
        LightNAS(latency_model=lut, energy_model=energy)
    with pytest.raises(ValueError, match=r'target_energy_mj=5.0 needs energy_model, got energy_model=None'):
        LightNAS(target_latency_ms=3.0, latency_model=lut, target_energy_mj=5.0)
    with pytest.raises(ValueError, match=r'target_latency_ms=3.0 needs latency_model'):
        LightNAS(target_latency_ms=3.0, target_energy_mj=5.0, energy_model=energy)
    with pytest.raises(ValueError, match='target_energy_mj must be a positive number, got -1'):
        LightNAS(target_energy_mj=-1, energy_model=energy)
    low, high = energy.latency_range()
    with pytest.raises(InfeasibleTargetError, match=rf'target_energy_mj=.* outside .* \[{low:.4f}, {high:.4f}\] mJ'):
        LightNAS(target_energy_mj=high * 1.2, energy_model=energy)
    other = energy_lut(op_names=['skip', 'MBK3E3']).energy_view()
    with pytest.raises(ValueError, match='must cover the same layers and candidates'):
        LightNAS(target_latency_ms=3.0, latency_model=lut, energy_model=other)
    # energy alone needs no latency target nor latency model
    strategy = LightNAS(target_energy_mj=(low + high) / 2, energy_model=energy)
    assert strategy.target_latency_ms is None and strategy.latency_range_ms is None
    assert strategy.energy_range_mj == pytest.approx((low, high))
    assert 'target_energy_mj=' in strategy.extra_repr()


def test_energy_penalty_reaches_alpha():
    """lambda_E * (E(alpha) / T_E - 1) with lambda_E > 0 pushes the most energy-hungry op down."""
    lut = energy_lut()
    strategy = LightNAS(target_energy_mj=6.0, energy_model=lut.energy_view())
    space = strategy.mutate_model(LightNASSpace('tiny'))
    layers = [m for m in space.modules() if isinstance(m, SinglePathMixedLayer)]
    probs = {layer.label: layer.probs() for layer in layers}
    (0.5 * (strategy.energy_model.expected_latency(probs) / 6.0 - 1.0)).backward()
    for layer in layers:
        assert layer.names[int(layer._arch_alpha.grad.argmax())] == 'MBK7E6'


# -------------------------------------------------------------------------- search
def _search(epochs: int = 4, space: LightNASSpace | None = None, **targets) -> LightNAS:
    torch.manual_seed(0)
    train_loader, arch_loader = synthetic_loaders(128, 32)
    strategy = LightNAS(warmup_epochs=1, lambda_lr=0.2, arc_learning_rate=0.05, schedule='fixed', **targets)
    evaluator = make_search_evaluator(train_loader, arch_loader, max_epochs=epochs)
    NasExperiment(space or LightNASSpace('tiny'), evaluator, strategy).run()
    return strategy


def test_energy_only_search_lands_within_two_percent():
    energy = energy_lut().energy_view()
    low, high = energy.latency_range()
    target_mj = low + 0.3 * (high - low)
    strategy = _search(target_energy_mj=target_mj, energy_model=energy)
    result = strategy.export_result()
    assert result['predicted_energy_mj'] == pytest.approx(energy.predict(result['arch']))
    assert abs(result['energy_relative_error']) <= 0.01  # landing_tolerance: landed on the energy target
    assert result['target_energy_mj'] == target_mj and result['target_ms'] is None
    assert math.isnan(result['predicted_ms']) and result['relative_error'] is None
    assert result['argmax_energy_mj'] == pytest.approx(energy.predict(result['argmax_lightnet'].split('-')))
    history = strategy.history()
    search = history[history['phase'] == 'search']
    assert {'argmax_energy_mj', 'expected_energy_mj', 'energy_lambda'} <= set(history.columns)
    # the uniform supernet starts above the target: lambda_E rises above 0 and pulls the energy down
    assert search['energy_lambda'].iloc[0] > 0
    assert search['argmax_energy_mj'].iloc[-1] < history['expected_energy_mj'].iloc[0]


def test_both_budgets_land_on_latency_and_report_energy():
    lut = energy_lut()
    energy = lut.energy_view()
    fastest, slowest = lut.latency_range()
    target_ms = fastest + 0.3 * (slowest - fastest)
    low, high = energy.latency_range()
    target_mj = low + 0.3 * (high - low)
    strategy = _search(target_latency_ms=target_ms, latency_model=lut, target_energy_mj=target_mj,
                       energy_model=energy)
    result = strategy.export_result()
    assert abs(result['relative_error']) <= 0.02  # landed on the latency target
    assert result['predicted_energy_mj'] == pytest.approx(energy.predict(result['arch']))
    assert result['energy_relative_error'] == pytest.approx(result['predicted_energy_mj'] / target_mj - 1)
    history = strategy.history()
    assert history.loc[history['phase'] == 'search', 'energy_lambda'].abs().max() > 0  # lambda_E was learned


# -------------------------------------------------------------------------- report
def test_report_shows_energy_when_rows_carry_it(tmp_path):
    from nni_lightnas.report import _energy_bars, final_table
    row = {'target_ms': 2.0, 'predicted_ms': 1.98, 'measured_ms': 2.01, 'measured_p25_ms': 1.99,
           'measured_p75_ms': 2.03, 'test_acc': 0.8, 'params_m': 0.1, 'batch': 1, 'device': 'ssh://jetson',
           'arch': 'MBK3E3-skip-MBK7E6'}
    plain = final_table([row])
    assert not any('energy' in column for column in plain.columns)
    assert _energy_bars([row], tmp_path) is None
    with_energy = dict(row, target_energy_mj=7.0, predicted_energy_mj=7.05, measured_energy_mj=7.1)
    table = final_table([with_energy])
    assert table.loc[0, ['target_energy_mj', 'predicted_energy_mj', 'measured_energy_mj']].tolist() == [7.0, 7.05, 7.1]
    assert _energy_bars([with_energy], tmp_path) and (tmp_path / 'energy.png').stat().st_size > 1000


# ---------------------------------------------------------- the goal, on a simulated board
MW_PER_PARAM = 0.2  # power above idle of the simulated board while a network runs, per parameter
IDLE_MW = 3000

#: A ``trtexec`` wrapper: looks up the parameter count of the network (by the ONNX file's hash, in
#: ``params.json`` written by the host) and sets the simulated rail's active power to
#: ``idle + MW_PER_PARAM x params`` before running ``fake_trtexec`` (energy = that x run time).
_POWER_MODEL_TRTEXEC = '''
import hashlib, json, os, sys
sys.path.insert(0, {tests!r})
import fake_trtexec
config_path = os.path.abspath(sys.argv[0]) + '.json'
with open(config_path) as handle:
    config = json.load(handle)
args = dict(arg.split('=', 1) for arg in sys.argv[1:] if '=' in arg)
count = None
if '--onnx' in args:
    with open(args['--onnx'], 'rb') as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    with open(config['params_file']) as handle:
        count = json.load(handle)[digest]
    if '--saveEngine' in args:
        with open(args['--saveEngine'] + '.params', 'w') as handle:
            handle.write(str(count))
elif '--loadEngine' in args:
    with open(args['--loadEngine'] + '.params') as handle:
        count = int(handle.read())
if count is not None:
    config['active_mw'] = config['idle_mw'] + config['mw_per_param'] * count
    with open(config_path, 'w') as handle:
        json.dump(config, handle)
sys.exit(fake_trtexec.main(sys.argv[1:]))
'''


class _KnownPowerBoard:
    """An ``SSHDevice`` on the simulated board that first tells the board each network's parameter count."""

    def __init__(self, device, params_file: Path):
        self._device = device
        self._params_file = params_file
        params_file.write_text('{}')

    def __getattr__(self, name):
        return getattr(self._device, name)

    def measure(self, onnx, input_shape=None):
        import onnx as onnx_lib
        from onnx import numpy_helper
        data = onnx if isinstance(onnx, bytes) else Path(onnx).read_bytes()
        graph = onnx_lib.load_from_string(data).graph
        count = int(sum(numpy_helper.to_array(t).size for t in graph.initializer
                        if t.data_type == onnx_lib.TensorProto.FLOAT))
        known = json.loads(self._params_file.read_text())
        known[hashlib.sha256(data).hexdigest()] = count
        self._params_file.write_text(json.dumps(known))
        return self._device.measure(onnx, input_shape)


def test_goal_energy_target_on_a_simulated_board(sshd, tmp_path):
    """No Jetson here: LUT and final net measured on a simulated board; LightNAS lands within 2% of T_E."""
    from nni_lightnas.export import onnx_bytes
    from nni_lightnas.latency.lut_build import build_lut
    from nni_lightnas.search_spaces import LightNet
    folder = tmp_path / 'root/sys/bus/i2c/devices/6-0040'  # a Nano-like JetPack 4 rail tree
    (folder / 'iio:device0').mkdir(parents=True)
    (folder / 'name').write_text('ina3221x\n')
    (folder / 'iio:device0' / 'rail_name_0').write_text('POM_5V_IN\n')
    power_file = folder / 'iio:device0' / 'in_power0_input'
    power_file.write_text(f'{IDLE_MW}\n')
    trtexec = tmp_path / 'trtexec'
    trtexec.write_text(f'#!{sys.executable}\n' + _POWER_MODEL_TRTEXEC.format(tests=str(HERE)))
    trtexec.chmod(0o755)
    (tmp_path / 'trtexec.json').write_text(json.dumps({
        'base_ms': 2.0, 'spreads': [0.0], 'power_file': str(power_file), 'idle_mw': IDLE_MW,
        'mw_per_param': MW_PER_PARAM, 'params_file': str(tmp_path / 'params.json')}))
    device = sshd.device(trtexec=str(trtexec), num_runs=100, max_attempts=1, energy=True, idle_s=0.05,
                         power_root=str(tmp_path / 'root'), power_interval_ms=2, remote_dir=str(tmp_path / 'board'))
    board = _KnownPowerBoard(device, tmp_path / 'params.json')
    op_names = ['skip', 'MBK3E3', 'MBK7E6']
    space = LightNASSpace('tiny', op_names=op_names)
    lut = build_lut(space, board, batch=1, overhead=False)
    energy = lut.energy_view()
    # every row's measured energy follows the board's power model: MW_PER_PARAM x params x 2 ms
    op_rows = lut.table[lut.table['kind'] == 'op']
    assert op_rows['energy_mj'].astype(float).max() > 5 * op_rows['energy_mj'].astype(float).min()
    low, high = energy.latency_range()
    archs = [[a, b, c] for a in op_names for b in op_names for c in op_names]
    # a target between two reachable nets' energies, away from both ends of the range
    values = sorted(energy.predict(arch) for arch in archs)
    target_mj = values[len(values) // 3] * 1.005
    assert low < target_mj < high
    strategy = _search(target_energy_mj=target_mj, energy_model=energy,
                       space=LightNASSpace('tiny', op_names=op_names))
    result = strategy.export_result()
    assert abs(result['predicted_energy_mj'] / target_mj - 1) <= 0.02
    # the exported net, measured whole on the simulated board: the median of five measurements, as
    # one measurement's power samples catch the run's start and end at random (a few % apart)
    net = LightNet(result['lightnet'], 'tiny')
    model = onnx_bytes(net, (1, 1, 28, 28))
    measured = sorted(board.measure(model, (1, 1, 28, 28)).facts['energy_mj'] for _ in range(5))
    assert abs(measured[2] / target_mj - 1) <= 0.02, (measured, result)

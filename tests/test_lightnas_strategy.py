"""The LightNAS strategy: lambda dynamics, gradients to alpha, feasibility, search, resume."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from nni.nas.experiment import NasExperiment

from lightnas_helpers import FIXED_MS, OP_COST_MS, synthetic_loaders, synthetic_lut
from nni_lightnas.search import make_search_evaluator
from nni_lightnas.search_spaces import LightNASSpace
from nni_lightnas.strategies import InfeasibleTargetError, LatencyMultiplier, LightNAS, SinglePathMixedLayer

logging.getLogger('nni').setLevel(logging.ERROR)
pytestmark = pytest.mark.usefixtures('one_torch_thread')


# ---------------------------------------------------------------- the multiplier
def test_lambda_rises_while_over_target_and_falls_below():
    multiplier = LatencyMultiplier(target_ms=10.0, lambda_lr=0.1)
    values = [multiplier.update(12.0) for _ in range(3)]
    assert values == pytest.approx([0.02, 0.04, 0.06])
    multiplier = LatencyMultiplier(target_ms=10.0, lambda_lr=0.1)
    values = [multiplier.update(9.0) for _ in range(3)]
    assert values == pytest.approx([-0.01, -0.02, -0.03])


def test_two_sided_truncation():
    multiplier = LatencyMultiplier(target_ms=10.0, lambda_lr=0.1, value=0.5)
    assert multiplier.update(9.0) == 0.0  # under target while lambda > 0: reset
    multiplier.value = -0.5
    assert multiplier.update(11.0) == 0.0  # over target while lambda < 0: reset
    untruncated = LatencyMultiplier(target_ms=10.0, lambda_lr=0.1, value=0.5, truncate=False)
    assert untruncated.update(9.0) == pytest.approx(0.49)


@pytest.mark.parametrize('kwargs,match', [({'target_ms': 0}, 'target_ms must be > 0'),
                                          ({'target_ms': 1.0, 'lambda_lr': -1}, 'lambda_lr must be > 0')])
def test_multiplier_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LatencyMultiplier(**kwargs)


# ------------------------------------------------------------------- the strategy
def test_infeasible_target_is_refused_with_the_range():
    lut = synthetic_lut()
    fastest, slowest = lut.latency_range()
    assert fastest == pytest.approx(FIXED_MS + OP_COST_MS['skip'] * (1 + 1.25 + 1.5))
    with pytest.raises(InfeasibleTargetError, match=rf'outside .* \[{fastest:.4f}, {slowest:.4f}\] ms'):
        LightNAS(target_latency_ms=slowest * 1.1, latency_model=lut)
    with pytest.raises(InfeasibleTargetError):
        LightNAS(target_latency_ms=fastest * 0.5, latency_model=lut)
    with pytest.raises(ValueError, match='target_latency_ms must be a positive number'):
        LightNAS(target_latency_ms=-1, latency_model=lut)


def test_latency_model_must_match_the_space():
    strategy = LightNAS(target_latency_ms=2.0, latency_model=synthetic_lut('tiny'))
    with pytest.raises(ValueError, match='layer layer03 of the model space is unknown to the latency model'):
        strategy.mutate_model(LightNASSpace('fashion_mnist'))


def test_gradients_reach_alpha_through_the_latency_term():
    lut = synthetic_lut()
    strategy = LightNAS(target_latency_ms=2.0, latency_model=lut)
    space = strategy.mutate_model(LightNASSpace('tiny'))
    layers = [m for m in space.modules() if isinstance(m, SinglePathMixedLayer)]
    assert len(layers) == 3
    probs = {layer.label: layer.probs() for layer in layers}
    penalty = 0.7 * (lut.expected_latency(probs) / 2.0 - 1.0)
    penalty.backward()
    for layer in layers:
        grad = layer._arch_alpha.grad
        assert grad is not None and grad.abs().sum() > 0
        # the slowest op's logit gets the largest positive gradient (pushing it down)
        assert layer.names[int(grad.argmax())] == 'MBK7E6'


def test_single_path_forward_runs_one_op_and_passes_straight_through_gradient():
    torch.manual_seed(0)
    strategy = LightNAS(target_latency_ms=2.0, latency_model=synthetic_lut())
    space = strategy.mutate_model(LightNASSpace('tiny'))
    layers = [m for m in space.modules() if isinstance(m, SinglePathMixedLayer)]
    calls: dict[str, int] = {}
    for layer in layers:
        for name in layer.names:
            layer[name].register_forward_hook(lambda m, i, o, key=f'{layer.label}/{name}': calls.__setitem__(
                key, calls.get(key, 0) + 1))
    for layer in layers:
        layer.resample({})
    space(torch.randn(2, 1, 28, 28)).sum().backward()
    assert sorted(calls) == sorted(f'{layer.label}/{layer.sampled}' for layer in layers)
    assert all(layer._arch_alpha.grad is not None and layer._arch_alpha.grad.abs().sum() > 0 for layer in layers)


def _search(target_ms, epochs=5, warmup=1, trainer_kwargs=None, **kwargs):
    torch.manual_seed(0)
    train_loader, arch_loader = synthetic_loaders(256, 32)
    # The mechanics of the strategy with the constants as given (the budget schedule has its own tests).
    strategy = LightNAS(target_latency_ms=target_ms, latency_model=synthetic_lut(), warmup_epochs=warmup,
                        lambda_lr=kwargs.pop('lambda_lr', 0.2), arc_learning_rate=kwargs.pop('arc_learning_rate', 0.02),
                        schedule=kwargs.pop('schedule', 'fixed'), **kwargs)
    evaluator = make_search_evaluator(train_loader, arch_loader, max_epochs=epochs, **(trainer_kwargs or {}))
    NasExperiment(LightNASSpace('tiny'), evaluator, strategy).run()
    return strategy


def test_search_exports_arch_history_and_moves_lambda_toward_target():
    lut = synthetic_lut()
    fastest, _ = lut.latency_range()
    target = fastest * 1.05  # far below where the uniform supernet starts: latency must come down
    strategy = _search(target, epochs=4)
    history = strategy.history()
    assert list(history['phase']) == ['warmup', 'search', 'search', 'search']
    assert history['temperature'].iloc[0] == pytest.approx(5.0)
    assert history['temperature'].iloc[2] == pytest.approx(5.0 * math.exp(-0.1))
    assert (history.loc[history['phase'] == 'search', 'mean_lambda'] > 0).all()  # over target: lambda > 0
    assert history['arch_loss'].isna().tolist() == [True, False, False, False]  # no alpha steps in warm-up
    assert (history['arch_loss'].iloc[1:] > 0).all()
    result = strategy.export_result()
    assert set(result['arch']) == {'layer00', 'layer01', 'layer02'}
    assert result['lightnet'] == '-'.join(result['arch'].values())
    assert result['predicted_ms'] == pytest.approx(lut.predict(result['lightnet']))
    assert result['predicted_ms'] < history['argmax_ms'].iloc[0]  # latency came down toward the target
    json.dumps(strategy.probabilities())  # plain floats


def test_checkpoint_mid_search_resumes_to_the_same_result(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    def checkpointing(directory):
        return {'enable_checkpointing': True,
                'callbacks': [ModelCheckpoint(dirpath=str(directory), save_top_k=-1, every_n_epochs=1,
                                              save_on_train_epoch_end=True, filename='{epoch}')]}

    target = synthetic_lut().latency_range()[0] * 1.3
    # A large alpha step keeps the logits far from ties, so float rounding of restored optimizer
    # state cannot flip an argmax.
    uninterrupted = _search(target, epochs=4, arc_learning_rate=0.2, trainer_kwargs=checkpointing(tmp_path / 'full'))
    checkpoint = tmp_path / 'full' / 'epoch=1.ckpt'
    assert checkpoint.is_file()
    resumed = _search(target, epochs=4, arc_learning_rate=0.2, resume_from=str(checkpoint),
                      trainer_kwargs=checkpointing(tmp_path / 'resumed'))
    assert resumed.export_result()['lightnet'] == uninterrupted.export_result()['lightnet']
    assert len(resumed.history()) == 4
    assert resumed.history()['argmax_ms'].tolist() == uninterrupted.history()['argmax_ms'].tolist()
    assert resumed.history()['lambda'].tolist() == pytest.approx(uninterrupted.history()['lambda'].tolist())
    for label, probs in uninterrupted.probabilities().items():
        assert resumed.probabilities()[label] == pytest.approx(probs, abs=1e-4)
    # Optimizer state is restored by position: the alphas must come in module order in every process.
    module = resumed.oneshot_module
    assert [id(alpha) for alpha in module.arch_parameters()] == [id(layer._arch_alpha) for layer in module.mixed_layers()]


def test_two_process_ddp_search_agrees_on_both_ranks(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).parent / 'scripts' / 'ddp_search.py'
    completed = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rank0 = json.loads((tmp_path / 'rank0.json').read_text())
    rank1 = json.loads((tmp_path / 'rank1.json').read_text())
    assert rank0['world_size'] == rank1['world_size'] == 2
    assert rank0['lightnet'] == rank1['lightnet']
    assert rank0['lambda'] == rank1['lambda']
    for label, probs in rank0['probabilities'].items():
        assert rank1['probabilities'][label] == pytest.approx(probs, abs=1e-6)


# ---------------------------------------------------------------- SurgeNAS options
def test_ordered_sampling_updates_every_op_equally():
    torch.manual_seed(0)
    train_loader, arch_loader = synthetic_loaders(64, 32)  # one batch per split
    strategy = LightNAS(target_latency_ms=2.0, latency_model=synthetic_lut(), warmup_epochs=0, sampling='ordered',
                        arch_gradient='gumbel', diagnostic_batches=0)  # gated ordered paths; no epoch-end scoring
    space = LightNASSpace('tiny')
    calls: dict[tuple[str, str], int] = {}
    for choice in space.layers:
        for name in choice.names:
            choice[name].register_forward_hook(
                lambda m, i, o, key=(choice.label, name): calls.__setitem__(key, calls.get(key, 0) + 1))
    evaluator = make_search_evaluator(train_loader, arch_loader, max_epochs=1)
    NasExperiment(space, evaluator, strategy).run()
    # per batch: the architecture step and the weight step each run every op of every layer once
    assert len(calls) == 3 * 7
    assert set(calls.values()) == {2}


def test_one_level_search_updates_weights_and_alpha_from_one_batch():
    strategy = _search(synthetic_lut().latency_range()[0] * 1.3, epochs=2, warmup=0, optimization='one_level')
    history = strategy.history()
    assert len(history) == 2 and history['phase'].tolist() == ['search', 'search']
    probabilities = strategy.probabilities()
    assert any(max(p.values()) - min(p.values()) > 1e-3 for p in probabilities.values())  # alpha moved
    assert history['lambda'].abs().sum() > 0


def test_identity_regularization_adds_a_decaying_identity_path():
    strategy = LightNAS(target_latency_ms=2.0, latency_model=synthetic_lut(), identity_eta=0.5)
    space = strategy.mutate_model(LightNASSpace('tiny'))
    layers = [m for m in space.modules() if isinstance(m, SinglePathMixedLayer)]
    assert all(layer.aux is not None for layer in layers)
    layer = layers[1]  # layer01: 16 -> 24, stride 2: aux is 1x1 conv + BN
    assert not layer.aux.is_identity
    layer.eval()
    layer.force(layer.names.index('MBK3E3'))
    x = torch.randn(2, 16, 7, 7)
    layer.eta = 0.0
    plain = layer(x)
    layer.eta = 0.5
    assert torch.allclose(layer(x), plain + 0.5 * layer.aux(x))
    with pytest.raises(ValueError, match="sampling must be 'gumbel' or 'ordered', got 'random'"):
        LightNAS(target_latency_ms=2.0, latency_model=synthetic_lut(), sampling='random')


def test_export_lands_within_tolerance_and_reports_the_argmax():
    lut = synthetic_lut()
    fastest, slowest = lut.latency_range()
    target = fastest + 0.37 * (slowest - fastest)
    torch.manual_seed(0)
    train_loader, arch_loader = synthetic_loaders(256, 32)
    strategy = LightNAS(target_latency_ms=target, latency_model=lut, warmup_epochs=1)
    experiment = NasExperiment(LightNASSpace('tiny'), make_search_evaluator(train_loader, arch_loader, max_epochs=2),
                               strategy)
    experiment.run()
    # Make the argmax the slowest architecture, far above the target: the export must land.
    with torch.no_grad():
        for layer in strategy.oneshot_module.mixed_layers():
            layer._arch_alpha[layer.names.index('MBK7E6')] = layer._arch_alpha.max() + 10.0
    result = strategy.export_result()
    assert result['argmax_ms'] == pytest.approx(slowest)
    assert result['landed'] is True and result['lightnet'] != result['argmax_lightnet']
    assert abs(result['relative_error']) <= 0.01
    assert result['argmax_ms'] == pytest.approx(lut.predict(result['argmax_lightnet']))
    # NNI's export gives the same architecture as export_result
    assert experiment.export_top_models(formatter='dict')[0] == result['arch']
    # without landing, the argmax is exported
    strategy.landing_tolerance = None
    assert strategy.export_result()['lightnet'] == result['argmax_lightnet']


@pytest.mark.parametrize('value', [0, 1.5, '0.01'])
def test_bad_landing_tolerance_is_refused(value):
    with pytest.raises(ValueError, match='landing_tolerance must be None or a number in'):
        LightNAS(target_latency_ms=synthetic_lut().latency_range()[0] * 1.2, latency_model=synthetic_lut(),
                 landing_tolerance=value)


def test_targets_share_one_warmed_up_supernet(tmp_path):
    from nni_lightnas.search import SearchConfig, run_search
    lut = synthetic_lut()
    fastest, slowest = lut.latency_range()

    def config(quantile):
        return SearchConfig(preset='tiny', target_ms=fastest + quantile * (slowest - fastest), epochs=3,
                            warmup_epochs=1, batch_size=64, train_limit=512)

    checkpoint = tmp_path / 'supernet' / 'warmup.ckpt'
    first = run_search(config(0.2), lut, save_warmup_to=checkpoint)
    assert checkpoint.is_file() and not list(checkpoint.parent.glob('warmup-*'))  # only the warm-up is kept
    fresh = run_search(config(0.6), lut)
    shared = run_search(config(0.6), lut, warmup_from=checkpoint)
    assert not first['warmup_reused'] and shared['warmup_reused']
    # the shared warm-up gives exactly what a search from scratch gives
    assert shared['arch'] == fresh['arch'] and shared['argmax_arch'] == fresh['argmax_arch']
    assert list(shared['history']['phase']) == ['warmup', 'search', 'search']
    assert shared['history']['lambda'].tolist() == pytest.approx(fresh['history']['lambda'].tolist())
    assert shared['history']['argmax_ms'].tolist() == fresh['history']['argmax_ms'].tolist()

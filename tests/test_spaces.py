"""Model spaces: presets, the published LightNets, the supernet, bad configurations."""

from __future__ import annotations

import pytest
import torch
from nni.nas.strategy import GumbelDARTS

from nni_lightnas.export import check_onnx_parity, export_onnx
from nni_lightnas.search_spaces import (OP_NAMES, LightNASSpace, LightNet, get_preset, layer_specs)


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_imagenet_preset_is_the_paper_space():
    space = LightNASSpace('imagenet')
    mutables = space.simplify()
    assert len(mutables) == 21
    assert all(len(mutable.values) == 7 for mutable in mutables.values())
    assert set(next(iter(mutables.values())).values) == set(OP_NAMES)
    specs = layer_specs(space.config)
    assert [s.out_chs for s in specs] == [24] * 2 + [48] * 3 + [72] * 4 + [128] * 3 + [160] * 4 + [176] * 4 + [384]
    assert [s.stride for s in specs if s.stride == 2] == [2, 2, 2, 2]
    assert specs[0].input_size == 112 and specs[-1].input_size == 7


def test_published_lightnets_build_run_and_export(published_lightnets, tmp_path, record_property):
    param_counts = {}
    for lightnet in published_lightnets:
        net = LightNet(lightnet['arch'], 'imagenet').eval()
        with torch.no_grad():
            out = net(torch.randn(1, 3, 224, 224))
        assert out.shape == (1, 1000)
        assert torch.isfinite(out).all()
        param_counts[lightnet['name']] = count_params(net)
        path = export_onnx(net, tmp_path / f"{lightnet['name']}.onnx", (1, 3, 224, 224))
        assert check_onnx_parity(net, path, (1, 3, 224, 224)) <= 1e-4
    record_property('param_counts', param_counts)
    print('parameter counts (M):', {name: round(n / 1e6, 2) for name, n in param_counts.items()})
    # MobileNetV2-class: the paper's head (1x1 -> 1984, linear 1984 -> 1280 -> 1000) holds 3.8 M of them.
    assert all(3.0e6 <= n <= 8.5e6 for n in param_counts.values()), param_counts


def test_freeze_matches_lightnet_parameters():
    space = LightNASSpace('fashion_mnist')
    arch = 'MBK3E6-skip-MBK5E3-MBK7E6-MBK3E3-MBK3E3-skip-MBK5E6'
    frozen = space.freeze(space.sample_of(arch))
    net = LightNet(arch, 'fashion_mnist')
    assert {k: v.shape for k, v in frozen.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    net.load_state_dict(frozen.state_dict())
    frozen.eval(), net.eval()
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(frozen(x), net(x))


@pytest.mark.parametrize('preset,shape', [('tiny', (2, 1, 28, 28)), ('fashion_mnist', (2, 1, 28, 28)),
                                          ('cifar10', (2, 3, 32, 32))])
def test_every_op_of_every_layer_gets_a_gradient(preset, shape):
    torch.manual_seed(0)
    space = LightNASSpace(preset)
    GumbelDARTS().mutate_model(space)  # a supernet that runs every candidate, weighted
    space(torch.randn(shape)).logsumexp(1).mean().backward()
    grads = {name: p.grad for name, p in space.named_parameters()}
    missing = [name for name, grad in grads.items() if grad is None or not grad.abs().sum() > 0]
    assert not missing, f'no gradient for {missing[:5]}'
    for index in range(len(space.labels)):
        assert grads[f'layers.{index}._arch_alpha'].shape == (7,)
        for op in OP_NAMES[:-1]:  # skip is parameter-free where shapes match
            op_params = [name for name in grads if name.startswith(f'layers.{index}.{op}.')]
            assert len(op_params) >= 6, (index, op, op_params)


def test_width_mult_scales_channels():
    narrow = LightNASSpace('fashion_mnist', width_mult=0.5)
    assert [s.out_chs for s in narrow.layer_specs][:2] == [16, 16]
    assert count_params(LightNet('skip-' * 7 + 'skip', 'fashion_mnist', width_mult=2.0)) > \
        count_params(LightNet('skip-' * 7 + 'skip', 'fashion_mnist'))


def test_preset_overrides():
    space = LightNASSpace('cifar10', num_classes=100, input_size=64)
    out = space.freeze(space.sample_of(['skip'] * 12))(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 100)


def test_bad_preset_names_accepted_ones():
    with pytest.raises(ValueError, match=r"unknown preset 'mnist'; accepted: cifar10, fashion_mnist, imagenet, tiny"):
        LightNASSpace('mnist')


@pytest.mark.parametrize('width_mult', [0, -1, 5.0, float('nan')])
def test_bad_width_multiplier(width_mult):
    with pytest.raises(ValueError, match=r'width_mult must be in \(0, 4\], got width_mult='):
        get_preset('fashion_mnist', width_mult=width_mult)


def test_reduced_candidates_per_layer():
    space = LightNASSpace('tiny', op_names={'layer00': ['MBK3E3', 'skip']})
    mutables = space.simplify()
    assert mutables['layer00'].values == ['MBK3E3', 'skip']
    assert len(mutables['layer01'].values) == 7
    with pytest.raises(ValueError, match='not a candidate of layer00'):
        space.sample_of('MBK5E6-skip-skip')


def test_onnx_parity_of_a_fixed_net(tmp_path):
    net = LightNet('MBK7E6-MBK5E3-skip-MBK3E6-MBK3E3-MBK7E3-skip-MBK5E6', 'fashion_mnist')
    path = export_onnx(net, tmp_path / 'net.onnx', (4, 1, 28, 28))
    import onnx
    model = onnx.load(str(path))
    assert model.opset_import[0].version >= 17
    assert check_onnx_parity(net, path, (4, 1, 28, 28)) <= 1e-4

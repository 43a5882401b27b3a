"""AdderNet ResNets (Chen et al., CVPR 2020): the layouts against the multiplicative nets they
mirror (torchvision's resnet50; ResNet-20's closed-form parameter count), which layers are adder
layers, shapes, one training step, bad input."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import zoo
from zoo.nn import Adder2d
from tests.util import n_params


def resnet20_params(num_classes: int = 10) -> int:
    """The multiplicative CIFAR ResNet-20 with 1x1 conv + BN shortcuts, counted by hand."""
    conv = lambda cin, cout, k: cin * cout * k * k  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731
    total = conv(3, 16, 3) + bn(16)
    cin = 16
    for width in (16, 32, 64):
        for b in range(3):
            total += conv(cin, width, 3) + bn(width) + conv(width, width, 3) + bn(width)
            if cin != width:
                total += conv(cin, width, 1) + bn(width)
            cin = width
    return total + 64 * num_classes + num_classes


def test_registered_specs():
    for name, size, classes in [("adder_resnet20", (3, 32, 32), 10), ("adder_resnet50", (3, 224, 224), 1000)]:
        spec = zoo.get_spec(name)
        assert spec.family == "addernet" and spec.task == "classification"
        assert spec.reference == "paper:Chen et al. CVPR 2020" and "AdderNet" in spec.paper
        assert spec.input_size == size and spec.defaults["num_classes"] == classes


def test_resnet20_layout_and_parameter_count():
    net = zoo.create_net("adder_resnet20")
    assert n_params(net) == resnet20_params() == 272_474
    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    adders = [m for m in net.modules() if isinstance(m, Adder2d)]
    assert convs == ["conv1"] and net.conv1.kernel_size == (3, 3) and net.conv1.out_channels == 16
    assert len(adders) == 18 + 2  # two per block, plus the 1x1 shortcuts of stages 2 and 3
    assert sorted({m.kernel_size for m in adders}) == [(1, 1), (3, 3)]
    assert isinstance(net.fc, nn.Linear) and net.fc.in_features == 64
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == (2, 10)
    assert net.forward_features(x).shape == (2, 64, 8, 8)
    feats = zoo.create_net("adder_resnet20", features_only=True)(x)
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]


def test_resnet50_has_torchvisions_parameter_shapes():
    ref = torchvision.models.resnet50(weights=None)
    net = zoo.create_net("adder_resnet50")
    assert n_params(net) == n_params(ref) == 25_557_032
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert got == want
    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    ref_convs = [n for n, m in ref.named_modules() if isinstance(m, nn.Conv2d)]
    assert convs == ["conv1"] and net.conv1.kernel_size == (7, 7)
    adders = {n: m for n, m in net.named_modules() if isinstance(m, Adder2d)}
    assert sorted(adders) == sorted(ref_convs[1:])  # every other conv of resnet50 is an adder here
    for name, m in adders.items():
        c = ref.get_submodule(name)
        assert (m.kernel_size, m.stride, m.padding) == (c.kernel_size, c.stride, c.padding), name
    # torchvision's state dict loads as it is
    net.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        y = net.eval()(torch.randn(1, 3, 32, 32))
    assert y.shape == (1, 1000) and torch.isfinite(y).all()


def test_custom_classes_channels_and_eta():
    net = zoo.create_net("adder_resnet20", num_classes=3, in_chans=1, eta=None)
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 3)
    assert all(m.eta == 0.0 for m in net.modules() if isinstance(m, Adder2d))


def test_a_training_step_decreases_the_loss():
    torch.manual_seed(0)
    net = zoo.create_net("adder_resnet20")
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(4):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        for m in net.modules():  # the paper's scaling: each adder layer's gradient has norm eta * sqrt(K)
            if isinstance(m, Adder2d):
                assert abs(m.weight.grad.norm().item() - 0.2 * m.weight.numel() ** 0.5) < 1e-3
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_bad_input():
    net = zoo.create_net("adder_resnet20")
    with pytest.raises(ValueError, match="x: expected a 4-D"):
        net(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="takes 3 input channel"):
        net(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="eta"):
        zoo.create_net("adder_resnet20", eta=-1.0)
    with pytest.raises(ValueError, match="out_indices"):
        zoo.create_net("adder_resnet20", features_only=True, out_indices=(4,))

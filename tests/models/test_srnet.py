"""SRNet and srnet_rgb (Boroumand, Chen, Fridrich, TIFS 2019): no outside implementation to
compare with, so the oracles are parameter counts summed by hand from the paper's layer list,
closed-form output shapes, and the independence of srnet_rgb's per-channel streams."""
from __future__ import annotations

import pytest
import torch

import zoo
from tests.util import n_params

# The paper's layer list: (type, cin, cout). Every conv 3x3 (Type 3's shortcut 1x1), BN after each.
LAYERS = [(1, None, 64), (1, 64, 16)] + [(2, 16, 16)] * 5 + [
    (3, 16, 16), (3, 16, 64), (3, 64, 128), (3, 128, 256), (4, 256, 512)
]


def _conv_bn(cin: int, cout: int, k: int, bias: bool) -> int:
    return cin * cout * k * k + (cout if bias else 0) + 2 * cout  # weight (+ bias) + BN gamma, beta


def _layer_params(kind: int, cin: int, cout: int, bias: bool) -> int:
    n = _conv_bn(cin, cout, 3, bias)  # the Type 1 part
    if kind in (2, 3, 4):
        n += _conv_bn(cout, cout, 3, bias)
    if kind == 3:
        n += _conv_bn(cin, cout, 1, bias)  # shortcut
    return n


def hand_count(in_chans: int, bias: bool, streams: int = 1, num_classes: int = 2) -> int:
    """Parameters of SRNet split after L7 into ``streams`` copies (1: plain SRNet with ``in_chans``)."""
    front, back = LAYERS[:7], LAYERS[7:]
    total = 0
    for _ in range(streams):
        cin = in_chans
        for kind, _, cout in front:
            total += _layer_params(kind, cin, cout, bias)
            cin = cout
    cin = 16 * streams
    for kind, _, cout in back:
        total += _layer_params(kind, cin, cout, bias)
        cin = cout
    return total + 512 * num_classes + num_classes


def test_hand_count_matches_the_published_numbers():
    assert hand_count(1, bias=False) == 4_776_962
    assert hand_count(1, bias=True) == 4_779_618


@pytest.mark.parametrize("bias, expected", [(False, 4_776_962), (True, 4_779_618)])
def test_srnet_parameter_count(bias, expected):
    with torch.device("meta"):
        net = zoo.create_net("srnet", conv_bias=bias)
    assert n_params(net) == expected
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 + 5 * 2 + 4 * 3 + 2
    assert all((m.bias is not None) == bias for m in convs)


@pytest.mark.parametrize("bias", [False, True])
def test_srnet_rgb_parameter_count(bias):
    expected = 4_848_706 if not bias else 4_851_842
    assert hand_count(1, bias, streams=3) == expected
    with torch.device("meta"):
        net = zoo.create_net("srnet_rgb", conv_bias=bias)
    assert n_params(net) == expected
    # the split: three 1-channel L1-L7 streams, L8's convs take 48 channels
    assert [s[0].conv.in_channels for s in net.streams] == [1, 1, 1]
    assert net.back[0].type1.conv.in_channels == 48 and net.back[0].shortcut_conv.in_channels == 48


def test_specs():
    for name, c in (("srnet", 1), ("srnet_rgb", 3)):
        spec = zoo.get_spec(name)
        assert spec.task == "steganalysis" and spec.family == "srnet"
        assert spec.input_size == (c, 256, 256)
        assert spec.mean == (0.0,) * c and spec.std == (1.0,) * c
        assert spec.defaults["num_classes"] == 2 and spec.defaults["in_chans"] == c
        assert spec.reference.startswith("paper:") and "Boroumand" in spec.paper


@pytest.mark.parametrize("name, c, size, batch", [
    ("srnet", 1, 256, 1), ("srnet", 1, 64, 2), ("srnet_rgb", 3, 256, 1), ("srnet_rgb", 3, 64, 2),
])
def test_output_shape_and_resolutions(name, c, size, batch):
    torch.manual_seed(0)
    net = zoo.create_net(name).eval()
    seen = []
    hooks = [layer.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape))) for layer in net.back]
    with torch.no_grad():
        out = net(torch.rand(batch, c, size, size) * 255)
    for h in hooks:
        h.remove()
    assert out.shape == (batch, 2) and torch.isfinite(out).all()
    # each Type 3 layer halves the side (pool 3x3 s2 p1: ceil), Type 4 pools globally
    assert seen == [(batch, ch, size >> (i + 1), size >> (i + 1)) for i, ch in enumerate((16, 64, 128, 256))] + [
        (batch, 512)
    ]


def test_srnet_rgb_streams_are_independent():
    torch.manual_seed(0)
    net = zoo.create_net("srnet_rgb").eval()
    x = torch.rand(2, 3, 32, 32) * 255
    y = x.clone()
    y[:, 1] += torch.randn(2, 32, 32) * 10  # change only G
    with torch.no_grad():
        a, b = net.forward_streams(x), net.forward_streams(y)
        la, lb = net(x), net(y)
    assert [t.shape for t in a] == [(2, 16, 32, 32)] * 3
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    assert (a[1] - b[1]).abs().max() > 1e-3
    assert (la - lb).abs().max() > 0
    # what L8 receives is the three streams side by side, R then G then B
    got = []
    h = net.back[0].register_forward_hook(lambda m, i, o: got.append(i[0]))
    with torch.no_grad():
        net(y)
    h.remove()
    assert torch.equal(got[0][:, 16:32], b[1]) and torch.equal(got[0][:, :16], b[0])


def test_bad_input():
    srnet, rgb = zoo.create_net("srnet").eval(), zoo.create_net("srnet_rgb").eval()
    with pytest.raises(ValueError, match=r"x: expected a 4-D \[N, C, H, W\] batch, got shape \(1, 32, 32\)"):
        srnet(torch.rand(1, 32, 32))
    with pytest.raises(ValueError, match=r"x: expected a 4-D"):
        rgb(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match=r"takes 1 input channel\(s\) but got 3"):
        srnet(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"takes 3 input channel\(s\) but got 1"):
        rgb(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"srnet: unknown option\(s\) \['drop_path_rate'\]"):
        zoo.create_net("srnet", drop_path_rate=0.1)
    with pytest.raises(ValueError, match="num_classes"):
        zoo.create_net("srnet_rgb", num_classes=0)


@pytest.mark.parametrize("name", ["srnet", "srnet_rgb"])
def test_initialisation_follows_the_authors_code(name):
    """He-normal convs (std sqrt(2 / fan_in)), conv biases 0.2, classifier N(0, 0.01) with bias 0,
    batch norms at 1 / 0. torch's default conv init has std sqrt(1 / (3 fan_in)), ~2.45x smaller,
    so the std check tells the two apart."""
    torch.manual_seed(0)
    net = zoo.create_net(name, conv_bias=True)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    checked = 0
    for conv in convs:
        w = conv.weight.detach()
        fan_in = w[0].numel()
        if w.numel() < 20_000:  # too few samples for a tight std estimate
            continue
        assert w.std().item() == pytest.approx((2.0 / fan_in) ** 0.5, rel=0.05), conv
        assert abs(w.mean().item()) < 0.05 * (2.0 / fan_in) ** 0.5
        checked += 1
    assert checked >= 8
    assert all(torch.all(c.bias == 0.2) for c in convs)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(torch.all(b.weight == 1) and torch.all(b.bias == 0) for b in bns)
    assert net.fc.weight.std().item() == pytest.approx(0.01, rel=0.15)
    assert torch.all(net.fc.bias == 0)

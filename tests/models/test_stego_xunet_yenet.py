"""XuNet and YeNet (steganalysis): parameter counts summed by hand from the layer shapes,
the fixed KV filter and the 30 SRM kernels against their written-out definitions, TLU in
closed form, output shapes and bad input."""
from __future__ import annotations

import pytest
import torch

import zoo
from zoo.nn.stego_filters import TLU, HighPassFilter, kv_kernel, srm_kernels

KV = [
    [-1, 2, -2, 2, -1],
    [2, -6, 8, -6, 2],
    [-2, 8, -12, 8, -2],
    [2, -6, 8, -6, 2],
    [-1, 2, -2, 2, -1],
]
KB = [[-1, 2, -1], [2, -4, 2], [-1, 2, -1]]

# Tap positions written out by hand (row, col) in the 5x5 kernel, centre (2, 2).
S1_NEIGHBOUR = [(2, 3), (3, 3), (3, 2), (3, 1), (2, 1), (1, 1), (1, 2), (1, 3)]
S2_TAPS = [
    [(2, 1), (2, 2), (2, 3)], [(1, 1), (2, 2), (3, 3)], [(1, 2), (2, 2), (3, 2)], [(1, 3), (2, 2), (3, 1)],
]
S3_TAPS = [
    [(2, 1), (2, 2), (2, 3), (2, 4)], [(1, 1), (2, 2), (3, 3), (4, 4)],
    [(1, 2), (2, 2), (3, 2), (4, 2)], [(1, 3), (2, 2), (3, 1), (4, 0)],
    [(2, 3), (2, 2), (2, 1), (2, 0)], [(3, 3), (2, 2), (1, 1), (0, 0)],
    [(3, 2), (2, 2), (1, 2), (0, 2)], [(3, 1), (2, 2), (1, 3), (0, 4)],
]


def _taps(positions, coeffs, denom):
    k = torch.zeros(5, 5)
    for (r, c), v in zip(positions, coeffs):
        k[r, c] = v
    return k / denom


def _expected_srm() -> dict[str, torch.Tensor]:
    exp = {}
    for d, pos in enumerate(S1_NEIGHBOUR):
        exp[f"S1_{d}"] = _taps([(2, 2), pos], [-1, 1], 1)
    for d, pos in enumerate(S2_TAPS):
        exp[f"S2_{d}"] = _taps(pos, [1, -2, 1], 2)
    for d, pos in enumerate(S3_TAPS):
        exp[f"S3_{d}"] = _taps(pos, [1, -3, 3, -1], 3)
    sq3 = torch.zeros(5, 5)
    sq3[1:4, 1:4] = torch.tensor(KB, dtype=torch.float32)
    exp["SQUARE3x3"] = sq3 / 4
    # EDGE r: the square kernel with one side cut off: r=0 bottom, 1 right, 2 top, 3 left
    # (the 3x3 occupies rows/columns 1..3 of the 5x5).
    for r in range(4):
        e = sq3.clone()
        if r == 0:
            e[3] = 0
        elif r == 1:
            e[:, 3] = 0
        elif r == 2:
            e[1] = 0
        else:
            e[:, 1] = 0
        exp[f"EDGE3x3_{r}"] = e / 4
    kv = torch.tensor(KV, dtype=torch.float32)
    exp["SQUARE5x5"] = kv / 12
    for r in range(4):
        e = kv.clone()
        if r == 0:
            e[3:] = 0
        elif r == 1:
            e[:, 3:] = 0
        elif r == 2:
            e[:2] = 0
        else:
            e[:, :2] = 0
        exp[f"EDGE5x5_{r}"] = e / 12
    return exp


# --- filters --------------------------------------------------------------------------------

def test_kv_kernel_is_its_definition():
    torch.testing.assert_close(kv_kernel(), torch.tensor(KV, dtype=torch.float32) / 12, rtol=0, atol=0)
    assert (kv_kernel() * 12).round().sum().item() == 0
    assert abs(kv_kernel().double().sum().item()) < 1e-6


def test_srm_kernels_match_their_definitions():
    names, w = srm_kernels()
    assert w.shape == (30, 1, 5, 5)
    exp = _expected_srm()
    assert len(exp) == 30 and sorted(names) == sorted(exp)
    for name, k in zip(names, w[:, 0]):
        torch.testing.assert_close(k, exp[name], rtol=0, atol=0, msg=name)
        assert abs(k.double().sum().item()) < 1e-6, name
    assert len({tuple(k.flatten().tolist()) for k in w}) == 30


def test_high_pass_filter_is_a_direct_correlation():
    x = torch.randn(1, 1, 7, 8)
    out = HighPassFilter(kv_kernel())(x)
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))[0, 0]
    k = torch.tensor(KV, dtype=torch.float32) / 12
    ref = torch.zeros(7, 8)
    for i in range(7):
        for j in range(8):
            ref[i, j] = sum(k[a, b] * xp[i + a, j + b] for a in range(5) for b in range(5))
    torch.testing.assert_close(out[0, 0], ref, rtol=1e-5, atol=1e-5)


def test_tlu_clamps_at_three():
    x = torch.tensor([-10.0, -3.0, -2.5, 0.0, 1.0, 3.0, 3.5, 100.0], requires_grad=True)
    y = TLU(3.0)(x)
    assert y.tolist() == [-3.0, -3.0, -2.5, 0.0, 1.0, 3.0, 3.0, 3.0]
    with pytest.raises(ValueError, match="threshold"):
        TLU(0.0)


# --- XuNet ----------------------------------------------------------------------------------

def test_xunet_param_count_by_hand():
    net = zoo.create_net("xunet")
    convs = 1 * 8 * 25 + 8 * 16 * 25 + 16 * 32 + 32 * 64 + 64 * 128
    bns = 2 * (8 + 16 + 32 + 64 + 128)
    fc = 128 * 2 + 2
    assert convs + bns + fc == 14906
    assert sum(p.numel() for p in net.parameters()) == convs + bns + fc


def test_xunet_kv_filter_is_fixed():
    net = zoo.create_net("xunet")
    torch.testing.assert_close(net.hpf.weight[0, 0], torch.tensor(KV, dtype=torch.float32) / 12, rtol=0, atol=0)
    assert not any(p is net.hpf.weight for p in net.parameters())
    assert "hpf.weight" in net.state_dict()
    before = net.hpf.weight.clone()
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    net.train()
    loss = torch.nn.functional.cross_entropy(net(torch.rand(2, 1, 32, 32) * 255), torch.tensor([0, 1]))
    loss.backward()
    assert net.hpf.weight.grad is None and not net.hpf.weight.requires_grad
    fc_before = net.fc.weight.clone()
    opt.step()
    assert torch.equal(net.hpf.weight, before)
    assert not torch.equal(net.fc.weight, fc_before)  # the step did train the rest


@pytest.mark.parametrize("size", [256, 64])
def test_xunet_output_shape(size):
    net = zoo.create_net("xunet").eval()
    with torch.no_grad():
        assert net(torch.rand(2, 1, size, size) * 255).shape == (2, 2)


# --- YeNet ----------------------------------------------------------------------------------

def test_yenet_param_count_by_hand():
    net = zoo.create_net("yenet")
    l1 = 30 * 1 * 25 + 30
    l2_4 = 3 * (30 * 30 * 9 + 30)
    l5_7 = (30 * 32 * 25 + 32) + 2 * (32 * 32 * 25 + 32)
    l8, l9 = 32 * 16 * 9 + 16, 16 * 16 * 9 + 16
    fc = 16 * 3 * 3 * 2 + 2
    assert l1 + l2_4 + l5_7 + l8 + l9 + fc == 107700
    assert sum(p.numel() for p in net.parameters()) == 107700


def test_yenet_first_layer_is_srm_and_trainable():
    net = zoo.create_net("yenet")
    names, _ = srm_kernels()
    exp = _expected_srm()
    for i, name in enumerate(names):
        torch.testing.assert_close(net.conv1.weight[i, 0].detach(), exp[name], rtol=0, atol=0)
    assert net.conv1.weight.requires_grad
    assert any(p is net.conv1.weight for p in net.parameters())


def test_yenet_tlu_after_first_layer():
    net = zoo.create_net("yenet")
    x = torch.rand(1, 1, 20, 20) * 255
    y = net.tlu(net.conv1(x))
    assert y.abs().max().item() <= 3.0
    torch.testing.assert_close(y, net.conv1(x).clamp(-3, 3))


@pytest.mark.parametrize("size", [256, 270])
def test_yenet_output_shape(size):
    net = zoo.create_net("yenet").eval()
    with torch.no_grad():
        assert net(torch.rand(2, 1, size, size) * 255).shape == (2, 2)


def test_yenet_rejects_sizes_the_fc_cannot_take():
    net = zoo.create_net("yenet")
    with pytest.raises(ValueError, match="256..303"):
        net(torch.rand(1, 1, 128, 128))


# --- both -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["xunet", "yenet"])
def test_bad_input(name):
    net = zoo.create_net(name)
    with pytest.raises(ValueError, match="4-D"):
        net(torch.rand(1, 256, 256))
    with pytest.raises(ValueError, match="input channel"):
        net(torch.rand(1, 3, 256, 256))
    with pytest.raises(ValueError, match="unknown option"):
        zoo.create_net(name, depth=3)


@pytest.mark.parametrize("name", ["xunet", "yenet"])
def test_spec(name):
    spec = zoo.get_spec(name)
    assert spec.task == "steganalysis" and spec.family == name
    assert spec.input_size == (1, 256, 256) and spec.mean == (0.0,) and spec.std == (1.0,)
    assert spec.defaults["num_classes"] == 2 and spec.reference.startswith("paper:")

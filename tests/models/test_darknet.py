"""Darknet-53: parameter counts and outputs against timm's darknet53; the residual block's SE placement."""
from __future__ import annotations

import pytest
import timm
import torch

import zoo
import zoo.nn.se
from zoo.models.darknet import ConvBNAct, DarkResidual, Darknet53
from zoo.weights import convert_state_dict
from tests.util import n_params, randomize_bn


@pytest.fixture(scope="module")
def timm_darknet53():
    torch.manual_seed(0)
    return randomize_bn(timm.create_model("darknet53", pretrained=False)).eval()


def test_counts_match_timm_and_reference(timm_darknet53):
    spec = zoo.get_spec("darknet53")
    assert spec.reference == "timm:darknet53" and spec.family == "darknet" and spec.task == "classification"
    assert spec.input_size == (3, 256, 256)
    with torch.device("meta"):
        net = zoo.create_net("darknet53")
        body = Darknet53(num_classes=0)
        features = Darknet53(features_only=True)
    assert n_params(net) == n_params(timm_darknet53)
    assert n_params(body) == n_params(features) == 40_584_928  # the Darknet-53 body (YOLOv3 paper / darknet cfg)
    assert len(net.darknet_conv_order()) == 53  # 52 convs + classifier


def test_outputs_match_timm_with_its_leaky_slope(timm_darknet53):
    # timm builds darknet53 with LeakyReLU(0.01); darknet (and the zoo's default) uses 0.1
    slopes = {m.negative_slope for m in timm_darknet53.modules() if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.01}
    net = zoo.create_net("darknet53", negative_slope=0.01).eval()
    converted, layout = convert_state_dict("darknet53", timm_darknet53.state_dict(), net)
    assert layout == "timm"
    net.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = timm_darknet53(x), net(x)
        assert got.shape == (2, 1000)
        assert (got - want).abs().max().item() <= 1e-4 * want.abs().max().item()

        # multiscale maps = timm's features at the same indices
        feats = net.forward_multiscale(x)
        ref = timm_darknet53.stages[:3](timm_darknet53.stem(x))
        assert [f.shape[1:] for f in feats] == [(256, 8, 8), (512, 4, 4), (1024, 2, 2)]
        torch.testing.assert_close(feats[0], ref)

    darknet_slope = zoo.create_net("darknet53")
    assert {m.negative_slope for m in darknet_slope.modules() if isinstance(m, torch.nn.LeakyReLU)} == {0.1}


def test_feature_info_matches_timm():
    with torch.device("meta"):
        ref = timm.create_model("darknet53", pretrained=False, features_only=True, out_indices=(0, 1, 2, 3, 4, 5))
        net = Darknet53(features_only=True, out_indices=(0, 1, 2, 3, 4, 5))
        default = Darknet53(features_only=True)
    for mine, theirs in zip(net.feature_info, ref.feature_info.get_dicts(), strict=True):
        assert (mine["num_chs"], mine["reduction"]) == (theirs["num_chs"], theirs["reduction"])
    assert [(i["num_chs"], i["reduction"]) for i in default.feature_info] == [(256, 8), (512, 16), (1024, 32)]
    assert default.fc is None and default.num_classes == 0


def test_custom_classes_channels_and_head_split(timm_darknet53):
    """Other class and channel counts match timm built the same way; forward_features /
    forward_head split where timm's do."""
    ref = randomize_bn(timm.create_model("darknet53", pretrained=False, num_classes=7, in_chans=1)).eval()
    net = zoo.create_net("darknet53", num_classes=7, in_chans=1, negative_slope=0.01).eval()
    net.load_state_dict(convert_state_dict("darknet53", ref.state_dict(), net)[0])
    assert (net.num_classes, net.in_chans, net.fc.out_features, net.stem.conv.in_channels) == (7, 1, 7, 1)
    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        f = net.forward_features(x)
        assert f.shape == (2, 1024, 2, 3)
        torch.testing.assert_close(f, ref.forward_features(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(net(x), ref(x), rtol=1e-4, atol=1e-4)
    net.reset_classifier(3)
    assert net(x).shape == (2, 3)
    with pytest.raises(ValueError, match=r"x: the net takes 1 input channel"):
        net(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="out_indices"):
        Darknet53(features_only=True, out_indices=(6,))
    with torch.device("meta"), pytest.raises(RuntimeError, match="features_only"):
        Darknet53(features_only=True, out_indices=(5,)).forward_head(f.to("meta"))


def test_conv_bn_act_is_darknet_convolutional():
    m = ConvBNAct(4, 6, 3, stride=2)
    assert m.conv.bias is None and m.conv.padding == (1, 1) and m.conv.stride == (2, 2)
    assert m.act.negative_slope == 0.1
    randomize_bn(m).eval()
    x = torch.randn(1, 4, 9, 9)
    want = torch.nn.functional.leaky_relu(
        torch.nn.functional.batch_norm(
            torch.nn.functional.conv2d(x, m.conv.weight, stride=2, padding=1),
            m.bn.running_mean, m.bn.running_var, m.bn.weight, m.bn.bias, eps=1e-5,
        ),
        0.1,
    )
    with torch.no_grad():
        torch.testing.assert_close(m(x), want)


def _gate(block: DarkResidual, bias: float) -> None:
    with torch.no_grad():
        block.se.fc2.weight.zero_()
        block.se.fc2.bias.fill_(bias)


def test_se_sits_on_the_branch_before_the_add():
    torch.manual_seed(0)
    plain = randomize_bn(DarkResidual(64)).eval()
    se = DarkResidual(64, se=True).eval()
    assert se.se.rd_channels == 8  # reduction 16, rounded to a multiple of 8
    se.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        _gate(se, -1e4)  # gate 0: the branch vanishes, the block is the identity
        assert torch.equal(se(x), x)
        _gate(se, 1e4)  # gate 1: the plain block
        assert torch.equal(se(x), plain(x))


def test_se_option_uses_the_fused_op_in_every_block(monkeypatch):
    calls = []
    real = zoo.nn.se.squeeze_excite

    def counting(*args, **kwargs):
        calls.append(args[0].shape[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(zoo.nn.se, "squeeze_excite", counting)
    net = Darknet53(num_classes=0, se=True, se_reduction=8).eval()
    with torch.no_grad():
        net(torch.randn(1, 3, 32, 32))
    assert calls == [64] * 1 + [128] * 2 + [256] * 8 + [512] * 8 + [1024] * 4
    blocks = [m for m in net.modules() if isinstance(m, DarkResidual)]
    assert len(blocks) == 23 and all(b.se.rd_channels == b.conv2.conv.out_channels // 8 for b in blocks)


@pytest.mark.parametrize("se", [False, True])
def test_zero_init_residual_makes_every_block_the_identity(se):
    torch.manual_seed(0)
    net = Darknet53(num_classes=0, se=se, zero_init_residual=True).train()
    default = Darknet53(num_classes=0, se=se).train()
    x = torch.randn(2, 64, 8, 8)
    blocks = [m for m in net.modules() if isinstance(m, DarkResidual)]
    assert len(blocks) == 23
    for block in blocks[:1]:  # (the first stage's block: 64 channels)
        assert torch.equal(block(x), x)
    first = [m for m in default.modules() if isinstance(m, DarkResidual)][0]
    assert not torch.equal(first(x), x)
    # only the last BatchNorm scale of each branch differs from the default init
    zeroed = {n for n, p in net.named_parameters() if p.ndim == 1 and torch.all(p == 0) and "weight" in n}
    assert zeroed == {f"{n}.conv2.bn.weight" for n, m in net.named_modules() if isinstance(m, DarkResidual)}


def test_yolov3_zero_init_residual_survives_the_head_init():
    net = zoo.create_net("yolov3_se", num_classes=7, zero_init_residual=True)
    blocks = [m for m in net.modules() if isinstance(m, DarkResidual)]
    assert len(blocks) == 23 and all(torch.all(b.conv2.bn.weight == 0) for b in blocks)
    assert all(torch.all(b.conv1.bn.weight == 1) for b in blocks)
    x = torch.randn(1, 256, 4, 4)
    with torch.no_grad():
        assert torch.equal(blocks[5](x), x)  # a stride-8 block (256 channels) is the identity

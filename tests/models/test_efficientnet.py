"""EfficientNet-B0..B7: weight identity with timm and torchvision (random weights, offline),
compound scaling, SE layout, stochastic depth, features."""
from __future__ import annotations

import pytest
import timm
import torch
import torchvision

import zoo
from zoo.nn import DepthwiseSeparable, DropPath, MBConv, SEBlock, drop_path
from tests.models.common import assert_features_match_timm, load_through_zoo, max_logit_diff
from tests.util import n_params, randomize_bn

NAMES = [f"efficientnet_b{i}" for i in range(8)]
# parameter counts at 1000 classes (timm's and torchvision's alike)
PARAMS = dict(zip(NAMES, [5_288_548, 7_794_184, 9_109_994, 12_233_232, 19_341_616, 30_389_784, 43_040_704,
                          66_347_960]))
INPUT_SIZES = dict(zip(NAMES, [224, 240, 260, 300, 380, 456, 528, 600]))  # the paper's resolutions
TV_BN_EPS = dict(zip(NAMES, [1e-5] * 5 + [1e-3] * 3))  # torchvision's BatchNorm eps per variant


def _x(n: int = 2, size: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def _check_load(name: str, ref: torch.nn.Module, path, layout: str, **overrides) -> torch.Tensor:
    """Save ``ref``'s state dict, zoo.load it, check layout and size; return max |Δlogits|."""
    net = load_through_zoo(name, ref, path, layout, **overrides)
    assert n_params(net) == n_params(ref) == PARAMS[name]
    x = _x(size=64 if PARAMS[name] < 25_000_000 else 32)  # the biggest at 32 px (1x1 at stride 32) to keep it fast
    return max_logit_diff(net, ref, x)


def test_every_efficientnet_has_a_reference_test():
    assert zoo.list_models(pattern="efficientnet*") == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_weight_identity_with_timm(name, tmp_path):
    spec = zoo.get_spec(name)
    assert spec.reference == f"timm:{name}"
    assert spec.input_size == (3, INPUT_SIZES[name], INPUT_SIZES[name])
    torch.manual_seed(0)
    ref = randomize_bn(timm.create_model(name, pretrained=False)).eval()
    assert _check_load(name, ref, tmp_path / "w.pth", "timm") <= 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_weight_identity_with_torchvision(name, tmp_path):
    """torchvision's B0..B4 are timm's net exactly; its B5..B7 differ only by BatchNorm eps (1e-3,
    as its BNs say), so their weights give its logits in a net built with bn_eps=1e-3."""
    torch.manual_seed(0)
    ref = randomize_bn(torchvision.models.get_model(name, weights=None)).eval()
    assert {m.eps for m in ref.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {TV_BN_EPS[name]}
    assert zoo.get_spec(name).defaults["drop_rate"] == ref.classifier[0].p  # same dropout defaults
    overrides = {} if TV_BN_EPS[name] == 1e-5 else {"net_kwargs": {"bn_eps": TV_BN_EPS[name]}}
    assert _check_load(name, ref, tmp_path / "w.pth", "torchvision", **overrides) <= 1e-5
    if name == "efficientnet_b5":  # the keys also load into the default (eps 1e-5) net, whose logits differ
        assert _check_load(name, ref, tmp_path / "w.pth", "torchvision") > 1e-5


def test_compound_scaling_and_defaults():
    """Stage widths / repeats of B4 against timm's, and the per-variant training defaults."""
    net, ref = zoo.create_net("efficientnet_b4"), timm.create_model("efficientnet_b4", pretrained=False)
    assert [len(s) for s in net.blocks] == [len(s) for s in ref.blocks] == [2, 4, 4, 6, 6, 8, 2]  # ceil(r * 1.8)
    assert [s[-1].bn2.num_features if isinstance(s[-1], DepthwiseSeparable) else s[-1].bn3.num_features
            for s in net.blocks] == [24, 32, 56, 112, 160, 272, 448]
    assert net.conv_stem.out_channels == 48 and net.num_features == ref.num_features == 1792
    spec = zoo.get_spec("efficientnet_b4")
    assert spec.defaults["drop_rate"] == 0.4 and spec.defaults["drop_path_rate"] == 0.2
    assert net.drop_rate == 0.4
    bare = zoo.models.EfficientNet()
    assert bare.drop_rate == 0.0 and bare.drop_path_rate == 0.0


def test_se_blocks_are_fused_silu_sigmoid_quarter_of_block_input():
    net = zoo.create_net("efficientnet_b2")
    ref = timm.create_model("efficientnet_b2", pretrained=False)
    blocks = [b for s in net.blocks for b in s]
    theirs = [m for m in ref.modules() if type(m).__name__ == "SqueezeExcite"]
    assert len(blocks) == len(theirs) == 23
    assert sum(isinstance(m, SEBlock) for m in net.modules()) == 23
    for b, t in zip(blocks, theirs):
        assert isinstance(b.se, SEBlock) and (b.se.gate, b.se.act) == ("sigmoid", "silu")
        block_in = (b.conv_pw if isinstance(b, MBConv) else b.conv_dw).in_channels
        assert b.se.rd_channels == int(0.25 * block_in) == t.conv_reduce.out_channels
        assert b.se.channels == t.conv_reduce.in_channels


def test_drop_path_is_identity_in_eval_and_at_zero():
    x = torch.randn(4, 3, 5, 5)
    assert drop_path(x, 0.5, training=False) is x and drop_path(x, 0.0, training=True) is x
    assert DropPath(0.5).eval()(x) is x
    with pytest.raises(ValueError, match="p: expected a drop probability"):
        DropPath(1.5)


def test_drop_path_training_drops_whole_samples_and_rescales():
    """Each sample is either all zeros or x / (1 - p); the kept count is Binomial(N, 1 - p)."""
    torch.manual_seed(0)
    n, p = 4000, 0.3
    x = torch.rand(n, 3, 2, 2) + 0.5  # no zeros, so a kept sample is told from a dropped one
    y = drop_path(x, p, training=True)
    kept = (y != 0).flatten(1).all(1)
    dropped = (y == 0).flatten(1).all(1)
    assert bool((kept | dropped).all())  # one draw per sample, shared by all of its elements
    torch.testing.assert_close(y[kept], x[kept] / (1 - p))
    sd = (n * p * (1 - p)) ** 0.5
    assert abs(kept.sum().item() - n * (1 - p)) < 6 * sd
    assert torch.equal(drop_path(x, 1.0, training=True), torch.zeros_like(x))


def test_mbconv_residual_branch_is_dropped_per_sample():
    """With its BNs frozen, a training MBConv returns x + m_n * branch(x) / (1 - p), m_n in {0, 1}."""
    torch.manual_seed(0)
    block = randomize_bn(MBConv(8, 8, 3, 1, drop_path_rate=0.5)).eval()
    x = torch.randn(64, 8, 6, 6)
    with torch.no_grad():
        branch = block(x) - x
        block.drop_path.train()
        delta = block(x) - x
    kept = delta.flatten(1).abs().amax(1) > 0
    assert 0 < kept.sum() < 64
    torch.testing.assert_close(delta[kept], branch[kept] / 0.5)
    assert torch.equal(delta[~kept], torch.zeros_like(delta[~kept]))


def test_drop_path_rate_grows_linearly_over_blocks_as_timm():
    net = zoo.create_net("efficientnet_b0")  # spec default drop_path_rate=0.2
    ref = timm.create_model("efficientnet_b0", pretrained=False, drop_path_rate=0.2)
    ours = [b.drop_path.p for s in net.blocks for b in s]
    assert ours == pytest.approx([0.2 * i / 16 for i in range(16)])
    theirs = [getattr(b.drop_path, "drop_prob", 0.0) for s in ref.blocks for b in s]
    assert ours == pytest.approx(theirs)


def test_zero_init_residual_makes_every_residual_block_the_identity():
    net = zoo.create_net("efficientnet_b0", zero_init_residual=True).eval()
    residual = [m for m in net.modules() if isinstance(m, MBConv) and m.has_skip]
    assert len(residual) == 9  # B0: 16 blocks, 7 of them change width or stride
    x = torch.randn(2, 40, 8, 8)
    block = net.blocks[2][1]  # a 40 -> 40 stride-1 block
    assert block in residual
    with torch.no_grad():
        assert torch.equal(block(x), x)
    others = [m for m in net.modules() if isinstance(m, MBConv) and not m.has_skip]
    assert all(bool((m.bn3.weight == 1).all()) for m in others)
    default = zoo.create_net("efficientnet_b0")  # off by default, as in timm
    assert all(bool((m.bn3.weight == 1).all()) for m in default.modules() if isinstance(m, MBConv))


def test_multiscale_features_match_timm_features_only():
    torch.manual_seed(0)
    ref = randomize_bn(timm.create_model("efficientnet_b0", pretrained=False, features_only=True,
                                         out_indices=(0, 1, 2, 3, 4))).eval()
    net = zoo.create_net("efficientnet_b0", features_only=True, out_indices=(0, 1, 2, 3, 4)).eval()
    net.load_state_dict(zoo.get_spec("efficientnet_b0").converters["timm"](ref.state_dict()), strict=True)
    assert not hasattr(net, "conv_head") and net.fc is None
    x = _x()
    assert_features_match_timm(net, ref, x)
    assert len(net.feature_info) == 5
    sub = zoo.create_net("efficientnet_b0", features_only=True, out_indices=(3, 1))
    assert sub.out_indices == (1, 3) and [i["num_chs"] for i in sub.feature_info] == [24, 112]


def test_custom_classes_channels_and_head_split_match_timm():
    torch.manual_seed(0)
    ref = randomize_bn(timm.create_model("efficientnet_b0", pretrained=False, num_classes=7, in_chans=1)).eval()
    net = zoo.create_net("efficientnet_b0", num_classes=7, in_chans=1).eval()
    net.load_state_dict(zoo.get_spec("efficientnet_b0").converters["timm"](ref.state_dict()), strict=True)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        feats = net.forward_features(x)
        torch.testing.assert_close(feats, ref.forward_features(x))
        torch.testing.assert_close(net.forward_head(feats, pre_logits=True), ref.forward_head(feats, pre_logits=True))
        assert (net(x) - ref(x)).abs().max().item() <= 1e-5
    net.reset_classifier(3)
    assert net(x).shape == (2, 3)


def test_bad_input_is_a_clear_error():
    net = zoo.create_net("efficientnet_b0")
    with pytest.raises(ValueError, match=r"x: the net takes 3 input channel\(s\) but got 1"):
        net(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="4-D"):
        net(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="out_indices"):
        zoo.create_net("efficientnet_b0", features_only=True, out_indices=(5,))
    with pytest.raises(ValueError, match="drop_path_rate"):
        zoo.create_net("efficientnet_b0", drop_path_rate=2.0)
    with pytest.raises(ValueError, match="bn_eps"):
        zoo.create_net("efficientnet_b0", bn_eps=0.0)
    with pytest.raises(ValueError, match="stride"):
        MBConv(8, 8, stride=3)
    ref = timm.create_model("efficientnet_b2", pretrained=False)  # a wider net's weights
    with pytest.raises(ValueError, match="weights: the state dict's keys match no known layout"):
        zoo.weights.convert_state_dict("efficientnet_b0", ref.state_dict(), net)

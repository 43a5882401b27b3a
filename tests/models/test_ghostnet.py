"""GhostNet family: weight identity with timm (random weights, offline), SE layout, features."""
from __future__ import annotations

import pytest
import timm
import torch

import zoo
from zoo.nn import GhostBottleneck, SEBlock
from tests.models.common import load_through_zoo, max_logit_diff
from tests.util import n_params, randomize_bn

# zoo name -> (timm name, parameter count at 1000 classes)
REFERENCES = {
    "ghostnet_050": ("ghostnet_050", 2_587_292),
    "ghostnet_100": ("ghostnet_100", 5_182_508),
    "ghostnet_130": ("ghostnet_130", 7_358_820),
}


def timm_ref(name: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return randomize_bn(timm.create_model(name, pretrained=False, **kwargs)).eval()


def test_every_ghostnet_has_a_reference_test():
    assert sorted(REFERENCES) == zoo.list_models(pattern="ghostnet*")


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_weight_identity_with_timm(name, tmp_path):
    ref_name, count = REFERENCES[name]
    spec = zoo.get_spec(name)
    assert spec.reference == f"timm:{ref_name}"
    assert spec.defaults["drop_rate"] == 0.2  # timm's GhostNet default
    ref = timm_ref(ref_name)
    net = load_through_zoo(name, ref, tmp_path / f"{ref_name}.pth", "timm")
    assert n_params(net) == n_params(ref) == count
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert max_logit_diff(net, ref, x) <= 1e-5


def test_se_blocks_are_fused_with_timms_widths_and_gate():
    """Every SE of the net is the zoo's SEBlock (ReLU, hard-sigmoid gate), in timm's places and with
    timm's reduced widths (make_divisible(C / 4, 4): 72 -> 20, 120 -> 32, 480 -> 120, ...)."""
    net = zoo.create_net("ghostnet_100")
    ref = timm.create_model("ghostnet_100", pretrained=False)
    ours = [m.se for m in net.modules() if isinstance(m, GhostBottleneck) and m.se is not None]
    theirs = [m for m in ref.modules() if type(m).__name__ == "SqueezeExcite"]
    assert len(ours) == len(theirs) == 7
    assert all(isinstance(m, SEBlock) for m in ours)
    assert sum(isinstance(m, SEBlock) for m in net.modules()) == 7  # no other SE of any kind
    for se, t in zip(ours, theirs):
        assert (se.gate, se.act) == ("hard_sigmoid", "relu")
        assert isinstance(t.gate, torch.nn.Hardsigmoid) and isinstance(t.act1, torch.nn.ReLU)
        assert (se.channels, se.rd_channels) == (t.conv_reduce.in_channels, t.conv_reduce.out_channels)
    assert [se.rd_channels for se in ours[:2]] == [20, 32]


def test_custom_classes_and_channels_match_timm():
    ref = timm_ref("ghostnet_050", num_classes=7, in_chans=1)
    net = zoo.create_net("ghostnet_050", num_classes=7, in_chans=1).eval()
    net.load_state_dict(zoo.get_spec("ghostnet_050").converters["timm"](ref.state_dict()), strict=True)
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert (net(x) - ref(x)).abs().max().item() <= 1e-5
        # the head split where timm splits it: pre-logits are the 1280 conv_head channels
        feats = net.forward_features(x)
        torch.testing.assert_close(feats, ref.forward_features(x))
        torch.testing.assert_close(net.forward_head(feats, pre_logits=True), ref.forward_head(feats, pre_logits=True))
    assert feats.shape[1] == net.num_features == 480 and net.head_hidden_size == 1280


def test_multiscale_features_match_timm_features_only():
    """Levels 1..4 are timm's features_only maps (blocks.1/3/5/7); level 0 is the stem after its
    BN and ReLU (timm taps it before the BN), checked against timm's own stem layers."""
    full = timm_ref("ghostnet_100")
    ref = timm.create_model("ghostnet_100", pretrained=False, features_only=True, out_indices=(0, 1, 2, 3, 4))
    flat = {k.replace("blocks.", "blocks_", 1): v for k, v in full.state_dict().items()}  # timm's FeatureListNet names
    ref.load_state_dict({k: v for k, v in flat.items() if k in ref.state_dict()}, strict=True)
    ref.eval()
    net = zoo.create_net("ghostnet_100", features_only=True, out_indices=(0, 1, 2, 3, 4)).eval()
    conv = zoo.get_spec("ghostnet_100").converters["timm"]
    net.load_state_dict({k: v for k, v in conv(full.state_dict()).items() if k in net.state_dict()}, strict=True)
    assert not hasattr(net, "conv_head") and len(net.blocks) == 8  # nothing past blocks.7
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        got, want = net(x), ref(x)
        stem = full.act1(full.bn1(full.conv_stem(x)))
    assert len(got) == len(want) == 5
    torch.testing.assert_close(got[0], stem, rtol=0, atol=1e-5)
    for g, w in zip(got[1:], want[1:]):
        assert (g - w).abs().max().item() <= 1e-5
    for g, info, ref_info in zip(got, net.feature_info, ref.feature_info.get_dicts()):
        assert info["num_chs"] == ref_info["num_chs"] == g.shape[1]
        assert info["reduction"] == ref_info["reduction"] == 64 // g.shape[-1]


def test_bad_input_is_a_clear_error():
    net = zoo.create_net("ghostnet_050")
    with pytest.raises(ValueError, match=r"x: the net takes 3 input channel\(s\) but got 1"):
        net(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="4-D"):
        net(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="out_indices"):
        zoo.create_net("ghostnet_050", features_only=True, out_indices=(5,))
    with pytest.raises(ValueError, match="width"):
        zoo.models.GhostNet(width=0)
    ref = timm.create_model("ghostnet_100", pretrained=False)  # a wider net's weights
    with pytest.raises(ValueError, match="weights: the state dict's keys match no known layout"):
        zoo.weights.convert_state_dict("ghostnet_050", ref.state_dict(), net)


def test_reset_classifier_and_defaults():
    net = zoo.create_net("ghostnet_050").eval()
    assert net.drop_rate == 0.2 and zoo.models.GhostNet(width=0.5).drop_rate == 0.0
    net.reset_classifier(3)
    assert net.fc.in_features == 1280
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    net.reset_classifier(0)
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 1280)

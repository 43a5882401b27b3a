"""ResNeSt family: weight identity with timm's ResNeSts (random weights, offline), SplitAttn
against timm's, features_only against timm's, bad input."""
from __future__ import annotations

import pytest
import timm
import torch
from timm.layers import SplitAttn as TimmSplitAttn

import zoo
from zoo.models import ResNeSt
from zoo.nn import SplitAttn
from zoo.weights import convert_state_dict
from tests.models.common import assert_features_match_timm, load_through_zoo, max_logit_diff
from tests.util import n_params, randomize_bn

# zoo name -> (timm name, parameter count, test resolution)
REFERENCES = {
    "resnest50d": ("resnest50d", 27_483_240, 64),
    "resnest101e": ("resnest101e", 48_275_016, 32),
}


def _timm(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_bn(timm.create_model(name, pretrained=False, **kwargs)).eval()


def test_every_resnest_model_has_a_reference_test():
    assert zoo.list_models(pattern="resnest*") == sorted(REFERENCES)
    assert [zoo.get_spec(n).family for n in REFERENCES] == ["resnest"] * len(REFERENCES)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_weight_identity_with_timm(name, tmp_path):
    ref_name, params, size = REFERENCES[name]
    assert zoo.get_spec(name).reference == f"timm:{ref_name}"
    ref = _timm(ref_name)
    net = load_through_zoo(name, ref, tmp_path / "ref.pth", "zoo")  # timm's keys are the zoo's
    assert zoo.get_spec(name).converters == {}  # no converter registered
    assert n_params(net) == n_params(ref) == params
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    assert max_logit_diff(net, ref, x) <= 1e-5


@pytest.mark.parametrize("radix, groups, stride", [(2, 1, 1), (2, 2, 2), (4, 2, 1), (1, 1, 1), (1, 4, 2)])
def test_split_attn_matches_timm(radix, groups, stride):
    """Radix softmax over the splits of each cardinal group (sigmoid for radix 1)."""
    torch.manual_seed(0)
    ref = TimmSplitAttn(32, 48, 3, stride=stride, groups=groups, radix=radix, norm_layer=torch.nn.BatchNorm2d)
    ref = randomize_bn(ref).eval()
    with torch.no_grad():  # logits large enough that the softmax is far from uniform
        ref.fc2.weight.mul_(4.0)
    attn = SplitAttn(32, 48, 3, stride=stride, groups=groups, radix=radix).eval()
    attn.load_state_dict(ref.state_dict(), strict=True)
    assert attn.fc1.out_channels == 32  # 32 * radix / 4 <= 32: the minimum width
    x = torch.randn(2, 32, 7, 7)
    with torch.no_grad():
        got, want = attn(x), ref(x)
    assert got.shape == want.shape == (2, 48, 7 // stride + (7 % stride > 0), 7 // stride + (7 % stride > 0))
    assert (got - want).abs().max().item() <= 1e-5


def test_split_attn_radix2_is_a_softmax_weighted_sum():
    """Closed form for radix 2, one group: the output is a*s0 + (1-a)*s1 with a = softmax over
    the two splits' logits, s_r the BN-ReLU'd conv splits."""
    torch.manual_seed(0)
    attn = randomize_bn(SplitAttn(8, 8, 3, radix=2, rd_channels=4)).eval()
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        s = torch.relu(attn.bn0(attn.conv(x)))
        s0, s1 = s[:, :8], s[:, 8:]
        z = attn.fc2(torch.relu(attn.bn1(attn.fc1((s0 + s1).mean((2, 3), keepdim=True)))))
        a = torch.exp(z[:, :8]) / (torch.exp(z[:, :8]) + torch.exp(z[:, 8:]))
        torch.testing.assert_close(attn(x), a * s0 + (1 - a) * s1, rtol=1e-5, atol=1e-6)


def test_multiscale_features_match_timm_features_only():
    full = _timm("resnest50d")
    ref = timm.create_model("resnest50d", pretrained=False, features_only=True, out_indices=(0, 1, 2, 3, 4))
    ref.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("fc.")})
    ref.eval()
    net = zoo.create_net("resnest50d", features_only=True, out_indices=(0, 1, 2, 3, 4)).eval()
    net.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    assert_features_match_timm(net, ref, x)
    assert len(net.feature_info) == 5


def test_bad_input_is_a_clear_error(tmp_path):
    net = zoo.create_net("resnest50d")
    with pytest.raises(ValueError, match="x: expected a 4-D"):
        net(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="radix: expected an int >= 1"):
        ResNeSt((1, 1, 1, 1), radix=0)

    # ResNeSt-50d weights (stem width 32) into ResNeSt-101e (stem width 64, 23 blocks in layer3)
    sd = timm.create_model("resnest50d", pretrained=False).state_dict()
    path = tmp_path / "r50d.pth"
    torch.save(sd, path)
    with pytest.raises(ValueError, match=r"weights: .*'resnest101e'.*missing key\(s\) \['layer3\.10"):
        zoo.load("resnest101e", weights=str(path))
    # same keys, wrong width: the stem's first conv is named with both shapes
    with pytest.raises(ValueError, match=r"zoo: shape mismatch: conv1\.0\.weight: file \(32, 3, 3, 3\) vs net \(64, 3, 3, 3\)"):
        convert_state_dict("resnest50d", sd, ResNeSt((3, 4, 6, 3), stem_width=64))

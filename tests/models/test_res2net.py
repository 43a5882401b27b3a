"""Res2Net family: weight identity with timm's Res2Nets (random weights, offline), the block
against timm's Bottle2neck, features_only against timm's, bad input."""
from __future__ import annotations

import pytest
import timm
import torch
from timm.models.res2net import Bottle2neck as TimmBottle2neck

import zoo
from zoo.models import Res2Net
from zoo.nn import Bottle2neck
from zoo.weights import convert_state_dict
from tests.models.common import assert_features_match_timm, load_through_zoo, max_logit_diff
from tests.util import n_params, randomize_bn

# zoo name -> (timm name, parameter count, test resolution)
REFERENCES = {
    "res2net50_26w_4s": ("res2net50_26w_4s", 25_699_120, 64),
    "res2net101_26w_4s": ("res2net101_26w_4s", 45_206_688, 32),
}


def _timm(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_bn(timm.create_model(name, pretrained=False, **kwargs)).eval()


def test_every_res2net_model_has_a_reference_test():
    assert zoo.list_models(pattern="res2net*") == sorted(REFERENCES)
    assert [zoo.get_spec(n).family for n in REFERENCES] == ["res2net"] * len(REFERENCES)


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


@pytest.mark.parametrize("scale, stride, first", [(4, 1, False), (4, 2, True), (4, 1, True), (1, 2, True), (3, 1, False)])
def test_block_matches_timm_bottle2neck(scale, stride, first):
    """Chained splits in a plain block, unchained + pooled last split in a stage's first block."""
    torch.manual_seed(0)
    inplanes, planes = (64, 32) if first else (128, 32)
    down = None
    if first:
        down = torch.nn.Sequential(torch.nn.Conv2d(inplanes, 4 * planes, 1, stride, bias=False),
                                   torch.nn.BatchNorm2d(4 * planes))
    ref = TimmBottle2neck(inplanes, planes, stride, down, base_width=26, scale=scale,
                          norm_layer=torch.nn.BatchNorm2d)
    ref = randomize_bn(ref).eval()
    block = Bottle2neck(inplanes, planes, stride, None if down is None else torch.nn.Sequential(
        torch.nn.Conv2d(inplanes, 4 * planes, 1, stride, bias=False), torch.nn.BatchNorm2d(4 * planes)),
        base_width=26, scale=scale).eval()
    block.load_state_dict(ref.state_dict(), strict=True)
    assert block.width == 13 and len(block.convs) == max(1, scale - 1)
    x = torch.randn(2, inplanes, 9, 9)
    with torch.no_grad():
        got, want = block(x), ref(x)
    assert got.shape == (2, 4 * planes, 9 // stride + (9 % stride > 0), 9 // stride + (9 % stride > 0))
    assert (got - want).abs().max().item() <= 1e-5


def test_multiscale_features_match_timm_features_only():
    full = _timm("res2net50_26w_4s")
    ref = timm.create_model("res2net50_26w_4s", pretrained=False, features_only=True, out_indices=(0, 1, 2, 3, 4))
    ref.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("fc.")})
    ref.eval()
    net = zoo.create_net("res2net50_26w_4s", features_only=True, out_indices=(0, 1, 2, 3, 4)).eval()
    net.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    assert_features_match_timm(net, ref, x)
    assert len(net.feature_info) == 5


def test_bad_input_is_a_clear_error(tmp_path):
    net = zoo.create_net("res2net50_26w_4s")
    with pytest.raises(ValueError, match="x: expected a 4-D"):
        net(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="scale: expected an int >= 1"):
        Res2Net((1, 1, 1, 1), scale=0)

    # Res2Net-50 weights into Res2Net-101: layer3's extra blocks are missing
    path = tmp_path / "r50.pth"
    torch.save(timm.create_model("res2net50_26w_4s", pretrained=False).state_dict(), path)
    with pytest.raises(ValueError, match=r"weights: .*'res2net101_26w_4s'.*missing key\(s\) \['layer3\.10"):
        zoo.load("res2net101_26w_4s", weights=str(path))
    # 26w x 6s weights into the 26w x 4s net: same keys up to convs.3..4, different widths
    sd = timm.create_model("res2net50_26w_6s", pretrained=False).state_dict()
    with pytest.raises(ValueError, match=r"zoo: .*(unexpected key|shape mismatch)"):
        convert_state_dict("res2net50_26w_4s", sd, zoo.create_net("res2net50_26w_4s"))

"""DenseNet family: weight identity with torchvision (random weights, offline), timm's feature taps."""
from __future__ import annotations

import re

import pytest
import timm
import torch
import torchvision

import zoo
from zoo.models.densenet import convert_from_torchvision
from zoo.weights import convert_state_dict
from tests.models.common import assert_features_match_timm, load_through_zoo, max_logit_diff
from tests.util import n_params, randomize_bn

# zoo name -> (torchvision name, parameter count at 1000 classes as torchvision publishes it, test side)
REFERENCES = {
    "densenet121": ("densenet121", 7_978_856, 64),
    "densenet161": ("densenet161", 28_681_000, 32),
    "densenet169": ("densenet169", 14_149_480, 32),
    "densenet201": ("densenet201", 20_013_928, 32),
}


def build_reference(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None, **kwargs)


def test_every_densenet_has_a_reference_test():
    assert sorted(REFERENCES) == zoo.list_models(pattern="densenet*")
    assert {zoo.get_spec(n).family for n in REFERENCES} == {"densenet"}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_weight_identity_with_torchvision(name, tmp_path):
    ref_name, count, side = REFERENCES[name]
    assert zoo.get_spec(name).reference == f"torchvision:{ref_name}"
    ref = randomize_bn(build_reference(ref_name)).eval()
    net = load_through_zoo(name, ref, tmp_path / f"{name}.pth", "torchvision")
    assert n_params(net) == n_params(ref) == count
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    assert max_logit_diff(net, ref, x) <= 1e-5


def test_zoo_layout_and_legacy_torchvision_keys():
    """The zoo's own keys load as "zoo"; torchvision's first checkpoints named the dense layers'
    parts ``norm.1`` / ``conv.2``, which the converter also maps."""
    ref = randomize_bn(build_reference("densenet121")).eval()
    net = zoo.create_net("densenet121").eval()
    sd, layout = convert_state_dict("densenet121", ref.state_dict(), net)
    assert layout == "torchvision"
    assert "block1.layers.0.norm1.weight" in sd and "stem.conv.weight" in sd and "fc.weight" in sd
    assert convert_state_dict("densenet121", sd, net)[1] == "zoo"

    legacy = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v for k, v in ref.state_dict().items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    sd2, layout2 = convert_state_dict("densenet121", legacy, net)
    assert layout2 == "torchvision" and sd2.keys() == sd.keys()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    assert convert_from_torchvision({"features.transition3.conv.weight": torch.zeros(1)}) == {
        "transition3.conv.weight": torch.zeros(1)}


def test_multiscale_features_match_timm_features_only():
    full = randomize_bn(timm.create_model("densenet121", pretrained=False)).eval()
    ref = timm.create_model("densenet121", pretrained=False, features_only=True, out_indices=(0, 1, 2, 3, 4)).eval()
    body = {k: v for k, v in full.state_dict().items() if not k.startswith("classifier.")}
    ref.load_state_dict({k.replace("features.", "features_", 1): v for k, v in body.items()})
    net = zoo.create_net("densenet121", features_only=True, out_indices=(0, 1, 2, 3, 4)).eval()
    net.load_state_dict(convert_from_torchvision(body), strict=True)
    assert net.fc is None and n_params(net) == n_params(ref)
    x = torch.randn(2, 3, 64, 64)
    assert_features_match_timm(net, ref, x)
    assert len(net.feature_info) == 5

    # the classifier's forward_features is the last level; forward_head is timm's head on it
    clf = zoo.create_net("densenet121").eval()
    clf.load_state_dict(convert_from_torchvision(full.state_dict()))
    with torch.no_grad():
        last = net(x)[-1]
        torch.testing.assert_close(clf.forward_features(x), last)
        torch.testing.assert_close(clf.forward_head(last), full(x))


def test_custom_classes_and_channels_match_torchvision():
    ref = build_reference("densenet121", num_classes=7)
    ref.features.conv0 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # torchvision has no in_chans
    ref = randomize_bn(ref).eval()
    net = zoo.create_net("densenet121", num_classes=7, in_chans=1).eval()
    assert n_params(net) == n_params(ref)
    sd, layout = convert_state_dict("densenet121", ref.state_dict(), net)
    assert layout == "torchvision"
    net.load_state_dict(sd)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert (net(x) - ref(x)).abs().max().item() <= 1e-5


def test_bad_input_is_a_clear_error(tmp_path):
    net = zoo.create_net("densenet121")
    with pytest.raises(ValueError, match="4-D"):
        net(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match=r"x: the net takes 3 input channel\(s\) but got 1"):
        net(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"densenet121: unknown option\(s\) \['growth'\]"):
        zoo.create_net("densenet121", growth=12)
    with pytest.raises(ValueError, match="out_indices"):
        zoo.create_net("densenet121", features_only=True, out_indices=(5,))

    path = tmp_path / "d121.pth"
    torch.save(net.state_dict(), path)  # densenet121 weights do not fit densenet169
    with pytest.raises(ValueError, match="match no known layout for 'densenet169'"):
        zoo.load("densenet169", weights=str(path))
    with pytest.raises(ValueError, match="shape mismatch"):  # nor a 10-class head
        zoo.load("densenet121", weights=str(path), num_classes=10)


def test_reset_classifier_and_32px_input():
    net = zoo.create_net("densenet121").eval()
    net.reset_classifier(3)
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert net.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 1024, 1, 1)

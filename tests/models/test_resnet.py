"""ResNet family: weight identity with torchvision / timm references (random weights, offline)."""
from __future__ import annotations

import pytest
import timm
import torch
import torchvision

import zoo
from zoo.weights import convert_state_dict
from tests.models.common import assert_features_match_timm
from tests.util import n_params, randomize_bn

# zoo name -> (library, reference name)
REFERENCES = {
    "resnet18": ("torchvision", "resnet18"),
    "resnet34": ("torchvision", "resnet34"),
    "resnet50": ("torchvision", "resnet50"),
    "resnet101": ("torchvision", "resnet101"),
    "resnet152": ("torchvision", "resnet152"),
    "resnext50_32x4d": ("torchvision", "resnext50_32x4d"),
    "resnext101_32x8d": ("torchvision", "resnext101_32x8d"),
    "wide_resnet50_2": ("torchvision", "wide_resnet50_2"),
    "se_resnet50": ("timm", "seresnet50"),
}


def build_reference(lib: str, name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    if lib == "torchvision":
        return torchvision.models.get_model(name, weights=None, **kwargs)
    return timm.create_model(name, pretrained=False, **kwargs)


def test_every_resnet_family_model_has_a_reference_test():
    family = [n for n in zoo.list_models(task="classification") if zoo.get_spec(n).family == "resnet"]
    assert sorted(REFERENCES) == family


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_weight_identity_with_reference(name):
    lib, ref_name = REFERENCES[name]
    assert zoo.get_spec(name).reference == f"{lib}:{ref_name}"
    ref = randomize_bn(build_reference(lib, ref_name)).eval()
    net = zoo.create_net(name).eval()
    assert n_params(net) == n_params(ref)

    # torchvision's and timm's ResNets use the zoo's parameter names: no converter runs
    converted, layout = convert_state_dict(name, ref.state_dict(), net)
    assert layout == "zoo" and zoo.get_spec(name).converters == {}
    net.load_state_dict(converted, strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = ref(x), net(x)
    assert got.shape == (2, 1000)
    assert (got - want).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "se_resnet50"])
def test_custom_classes_and_channels_match_reference(name):
    lib, ref_name = REFERENCES[name]
    if lib == "torchvision":  # torchvision has no in_chans: swap its stem for a 1-channel one
        ref = build_reference(lib, ref_name, num_classes=7)
        ref.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    else:
        ref = build_reference(lib, ref_name, num_classes=7, in_chans=1)
    ref = randomize_bn(ref).eval()
    net = zoo.create_net(name, num_classes=7, in_chans=1).eval()
    assert n_params(net) == n_params(ref)
    net.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        assert (net(x) - ref(x)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "se_resnet50"])
def test_multiscale_features_match_timm_features_only(name):
    ref_name = {"se_resnet50": "seresnet50"}.get(name, name)
    full = randomize_bn(timm.create_model(ref_name, pretrained=False)).eval()
    ref = timm.create_model(ref_name, pretrained=False, features_only=True, out_indices=(0, 1, 2, 3, 4)).eval()
    ref.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("fc.")})
    net = zoo.create_net(name, features_only=True, out_indices=(0, 1, 2, 3, 4)).eval()
    net.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    assert_features_match_timm(net, ref, x)
    assert len(net.feature_info) == 5


def test_features_only_subset_and_head_split():
    """A features_only subset gives timm's maps at those indices; forward_features / forward_head
    split the classifier where timm splits it (pooled features feed the same fc)."""
    ref = randomize_bn(timm.create_model("resnet18", pretrained=False, num_classes=5)).eval()
    net = zoo.create_net("resnet18", features_only=True, out_indices=(4, 2)).eval()
    net.load_state_dict({k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = net(x)
        want = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(2, 4))
        want.load_state_dict(net.state_dict())
        for got, exp in zip(feats, want.eval()(x), strict=True):
            torch.testing.assert_close(got, exp)
    assert [f.shape[1:] for f in feats] == [(128, 8, 8), (512, 2, 2)] and net.out_indices == (2, 4)
    assert [i["num_chs"] for i in net.feature_info] == [128, 512]
    with pytest.raises(RuntimeError, match="features_only"):
        net.forward_head(feats[-1])

    clf = zoo.create_net("resnet18", num_classes=5).eval()
    clf.load_state_dict(ref.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(clf.forward_features(x), ref.forward_features(x))
        torch.testing.assert_close(clf.forward_head(clf.forward_features(x), pre_logits=True),
                                   ref.forward_head(ref.forward_features(x), pre_logits=True))


def test_wrong_channel_count_is_a_clear_error():
    net = zoo.create_net("resnet18")
    with pytest.raises(ValueError, match=r"x: the net takes 3 input channel\(s\) but got 1"):
        net(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="4-D"):
        net(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="out_indices"):
        zoo.create_net("resnet18", features_only=True, out_indices=(5,))


def test_reset_classifier():
    net = zoo.create_net("resnet34").eval()
    net.reset_classifier(3)
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 3)

"""GoogLeNet: weight identity with torchvision (random weights, offline), auxiliary outputs, taps."""
from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

import zoo
from zoo.models import GoogLeNetOutputs
from zoo.registry import IMAGENET_MEAN, IMAGENET_STD
from zoo.weights import convert_state_dict
from tests.util import n_params, randomize_bn

WITH_AUX, WITHOUT_AUX = 13_004_888, 6_624_904  # torchvision's counts at 1000 classes


def build_reference(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torchvision's note on its init
        return randomize_bn(torchvision.models.get_model("googlenet", weights=None, **kwargs))


def test_registered_with_torchvision_reference():
    assert zoo.list_models(pattern="googlenet*") == ["googlenet"]
    spec = zoo.get_spec("googlenet")
    assert spec.reference == "torchvision:googlenet" and spec.family == "googlenet"
    assert spec.defaults["num_classes"] == 1000


@pytest.mark.parametrize(
    "ref_aux, net_aux, layout, count",
    [
        (True, True, "zoo", WITH_AUX),  # torchvision's names are the zoo's
        (False, False, "zoo", WITHOUT_AUX),
        (True, False, "torchvision", WITHOUT_AUX),  # a state dict with aux heads into a net without
    ],
)
def test_weight_identity_with_torchvision(ref_aux, net_aux, layout, count, tmp_path):
    ref = build_reference(aux_logits=ref_aux).eval()
    path = tmp_path / "googlenet.pth"
    torch.save(ref.state_dict(), path)
    overrides = {} if net_aux else {"net_kwargs": {"aux_logits": False}}
    module = zoo.load("googlenet", weights=str(path), **overrides)
    assert module.weights_layout == layout
    net = module.net.eval()
    assert n_params(net) == count
    assert n_params(ref) == (WITH_AUX if ref_aux else WITHOUT_AUX)
    for side in (64, 32):  # 32x32: the digits recipe
        x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(side))
        with torch.no_grad():
            want, got = ref(x), net(x)
        assert isinstance(got, torch.Tensor) and got.shape == (2, 1000)
        assert (got - want).abs().max().item() <= 1e-5


def test_training_outputs_match_torchvision():
    """Train mode (batch statistics, the same dropout masks): (logits, aux1, aux2) equal torchvision's
    (logits, aux_logits2, aux_logits1) reordered; without aux heads the logits tensor alone. At 32x32
    the aux heads' 4x4 pool upsamples a 2x2 map."""
    ref = build_reference(aux_logits=True, num_classes=5).train()
    net = zoo.create_net("googlenet", num_classes=5).train()
    net.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(7)
    want = ref(x)
    torch.manual_seed(7)
    got = net(x)
    assert isinstance(got, GoogLeNetOutputs) and got._fields == ("logits", "aux1", "aux2")
    assert [tuple(t.shape) for t in got] == [(2, 5)] * 3
    for g, w in ((got.logits, want.logits), (got.aux1, want.aux_logits1), (got.aux2, want.aux_logits2)):
        assert (g - w).abs().max().item() <= 1e-5

    plain = zoo.create_net("googlenet", num_classes=5, aux_logits=False).train()
    assert plain.aux1 is None and plain.aux2 is None
    out = plain(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 5)


def test_multiscale_features_match_torchvision_taps():
    """features_only maps equal the outputs of torchvision's conv1, conv3, inception3b, 4e and 5b
    (read with forward hooks); such a net has no heads and returns the list in train mode too."""
    ref = build_reference(aux_logits=False).eval()
    taps = ["conv1", "conv3", "inception3b", "inception4e", "inception5b"]
    seen: dict[str, torch.Tensor] = {}
    for name in taps:
        getattr(ref, name).register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o))
    net = zoo.create_net("googlenet", features_only=True, out_indices=(0, 1, 2, 3, 4)).eval()
    net.load_state_dict({k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref(x)
        got = net(x)
    assert len(got) == 5
    for g, name, info in zip(got, taps, net.feature_info):
        assert g.shape == seen[name].shape
        assert (g - seen[name]).abs().max().item() <= 1e-5
        assert info["num_chs"] == g.shape[1] and info["module"] == name
        assert info["reduction"] == 64 // g.shape[-1]
    assert net.aux1 is None and net.aux2 is None and net.fc is None
    assert isinstance(net.train()(x), list)


def test_normalisation_replaces_transform_input():
    """The spec's mean/std of 0.5 feed the net what torchvision's transform_input=True makes of
    ImageNet-normalised input."""
    spec = zoo.get_spec("googlenet")
    ref = build_reference(aux_logits=False, transform_input=True).eval()
    net = zoo.create_net("googlenet", aux_logits=False).eval()
    net.load_state_dict(ref.state_dict(), strict=True)
    raw = torch.rand(2, 3, 32, 32)

    def normalise(mean, std):
        return (raw - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]

    with torch.no_grad():
        want = ref(normalise(IMAGENET_MEAN, IMAGENET_STD))
        got = net(normalise(spec.mean, spec.std))
    assert (got - want).abs().max().item() <= 1e-4


def test_custom_classes_and_channels_match_torchvision():
    ref = build_reference(num_classes=7)
    ref.conv1.conv = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # torchvision has no in_chans
    ref = ref.eval()
    net = zoo.create_net("googlenet", num_classes=7, in_chans=1).eval()
    assert n_params(net) == n_params(ref)
    assert convert_state_dict("googlenet", ref.state_dict(), net)[1] == "zoo"
    net.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert (net(x) - ref(x)).abs().max().item() <= 1e-5


def test_reset_classifier_resets_the_aux_heads():
    net = zoo.create_net("googlenet").train()
    net.reset_classifier(3)
    out = net(torch.randn(2, 3, 32, 32))
    assert [tuple(t.shape) for t in out] == [(2, 3)] * 3
    net.reset_classifier(0)
    assert net.aux1 is None and net(torch.randn(2, 3, 32, 32)).shape == (2, 1024)


def test_bad_input_is_a_clear_error(tmp_path):
    net = zoo.create_net("googlenet")
    with pytest.raises(ValueError, match="4-D"):
        net(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="4-D"):
        net.train()(torch.randn(3, 32, 32))  # the aux path checks too
    with pytest.raises(ValueError, match=r"x: the net takes 3 input channel\(s\) but got 1"):
        net(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"googlenet: unknown option\(s\) \['transform_input'\]"):
        zoo.create_net("googlenet", transform_input=True)

    path = tmp_path / "g.pth"
    torch.save(zoo.create_net("googlenet", num_classes=10).state_dict(), path)
    with pytest.raises(ValueError, match="shape mismatch"):  # a 10-class file into a 1000-class net
        zoo.load("googlenet", weights=str(path))
    torch.save(zoo.create_net("googlenet", aux_logits=False).state_dict(), path)
    with pytest.raises(ValueError, match="missing key"):  # no aux heads in the file, the net has them
        zoo.load("googlenet", weights=str(path))

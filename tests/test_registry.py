"""Registry: names, patterns, specs, errors, model_info against independent counts."""
from __future__ import annotations

import pytest
import torch
import torchvision

import zoo
from zoo import registry
from tests.util import count_macs_with_hooks, n_params

RESNET_FAMILY = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "se_resnet50",
]


def test_list_models_sorted_with_patterns_and_tasks():
    names = zoo.list_models()
    assert names == sorted(names)
    assert set(RESNET_FAMILY) <= set(names)
    assert zoo.list_models("resnext*") == ["resnext101_32x8d", "resnext50_32x4d"]
    assert zoo.list_models("*50*", task="classification") == sorted(
        n for n in RESNET_FAMILY if "50" in n
    )
    assert zoo.list_models("nothing_like_this*") == []
    assert set(RESNET_FAMILY) <= set(zoo.list_models(task="classification"))
    with pytest.raises(ValueError, match="task"):
        zoo.list_models(task="segmentation")


def test_unknown_name_lists_closest():
    with pytest.raises(KeyError, match="resnet50") as err:
        zoo.create_net("resnet05")
    assert "unknown model name 'resnet05'" in str(err.value)
    with pytest.raises(KeyError, match="closest: resnext50_32x4d"):
        zoo.model_info("resnext50_32x")
    with pytest.raises(KeyError):
        zoo.load("no_such_model")


def test_spec_and_overrides():
    spec = zoo.get_spec("resnet50")
    assert spec.task == "classification" and spec.family == "resnet"
    assert spec.defaults["num_classes"] == 1000 and spec.defaults["in_chans"] == 3
    assert spec.input_size == (3, 224, 224)
    net = zoo.create_net("resnet50", num_classes=10, in_chans=4)
    assert net.fc.out_features == 10 and net.conv1.in_channels == 4


def test_register_model_rejects_duplicates_and_bad_tasks():
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model("resnet18", family="x", task="classification")(lambda **k: None)
    with pytest.raises(ValueError, match="task"):
        registry.register_model("brand_new", family="x", task="painting")


def test_register_model_roundtrip():
    name = "_test_tiny_mlp"

    @registry.register_model(name, family="test", task="classification", input_size=(1, 4, 4), num_classes=3)
    def _tiny(num_classes: int, in_chans: int):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_chans * 16, num_classes))

    try:
        assert name in zoo.list_models("_test*")
        info = zoo.model_info(name)
        assert info["params"] == 16 * 3 + 3
        assert info["macs"] == 16 * 3
        assert zoo.create_net(name, num_classes=5)(torch.randn(2, 1, 4, 4)).shape == (2, 5)
    finally:
        registry._REGISTRY.pop(name)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d"])
def test_model_info_counts_match_torchvision(name):
    info = zoo.model_info(name)
    ref = torchvision.models.get_model(name, weights=None)
    assert info["params"] == n_params(ref)
    assert info["macs"] == count_macs_with_hooks(ref, torch.randn(1, 3, 224, 224))
    assert info["reference"] == f"torchvision:{name}"

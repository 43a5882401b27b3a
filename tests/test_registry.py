"""Registry: names, patterns, specs, errors, model_info against independent counts."""
from __future__ import annotations

import json
import subprocess
import sys

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
    fifties = zoo.list_models("*50*", task="classification")
    assert [n for n in fifties if zoo.get_spec(n).family == "resnet"] == sorted(
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


def test_import_zoo_does_not_import_torch():
    code = "import sys, zoo; assert 'torch' not in sys.modules; zoo.list_models(); assert 'torch' in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_cached_model_table_is_current():
    """zoo/models/index.json (what `zoo list` prints) holds today's counts of every model and the
    digest of today's sources; `make docs` rewrites it."""
    index = json.loads(registry.INDEX_PATH.read_text())
    assert index["digest"] == registry.sources_digest(), "zoo/models/index.json is stale: run `make docs`"
    assert index["models"] == registry.build_model_index()["models"]
    counts = {r["name"]: r["params"] for r in index["models"]}
    assert counts["resnet50"] == n_params(torchvision.models.resnet50(weights=None))


def test_stale_table_is_rebuilt(tmp_path, monkeypatch):
    stale = tmp_path / "index.json"
    stale.write_text(json.dumps({"digest": "old", "models": [{"name": "resnet50", "task": "classification",
                                                               "family": "resnet", "params": 1, "reference": ""}]}))
    monkeypatch.setattr(registry, "INDEX_PATH", stale)
    rows = registry.model_table(task="classification", pattern="resnet5*")
    assert [(r["name"], r["params"]) for r in rows] == [("resnet50", 25_557_032)]
    assert json.loads(stale.read_text())["digest"] == registry.sources_digest()

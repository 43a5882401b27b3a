"""Safe loading and layout conversion of weights files."""
from __future__ import annotations

import collections

import pytest
import timm
import torch
import torchvision

import zoo
from zoo.weights import read_checkpoint
from tests.util import randomize_bn


def _save(obj, path):
    torch.save(obj, path)
    return str(path)


def _same_outputs(a, b, size=64):
    x = torch.randn(2, 3, size, size)
    a.eval(), b.eval()
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


def test_load_torchvision_state_dict_file(tmp_path):
    ref = randomize_bn(torchvision.models.resnet18(weights=None))
    path = _save(ref.state_dict(), tmp_path / "tv.pth")
    module = zoo.load("resnet18", weights=path)
    assert _same_outputs(module, ref) <= 1e-5
    assert module.weights_layout == "zoo"  # torchvision's ResNet keys are the zoo's
    assert zoo.load("resnet18").weights_layout is None


def test_load_timm_seresnet50_with_wrappers(tmp_path):
    ref = randomize_bn(timm.create_model("seresnet50", pretrained=False))
    # DataParallel-style "module." keys inside a {"state_dict": ...} wrapper
    sd = {"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}
    module = zoo.load("se_resnet50", weights=_save(sd, tmp_path / "timm.pth"))
    assert _same_outputs(module, ref) <= 1e-5
    assert module.weights_layout == "zoo"


def test_unknown_layout_is_rejected(tmp_path):
    sd = collections.OrderedDict(("backbone.stem.weight", torch.zeros(3)) for _ in range(1))
    with pytest.raises(ValueError, match="match no known layout for 'resnet18'"):
        zoo.load("resnet18", weights=_save(sd, tmp_path / "odd.pth"))


def test_shape_mismatch_names_the_key(tmp_path):
    ref = torchvision.models.resnet18(weights=None)  # 1000 classes
    path = _save(ref.state_dict(), tmp_path / "tv.pth")
    with pytest.raises(ValueError, match=r"fc\.weight: file \(1000, 512\) vs net \(10, 512\)"):
        zoo.load("resnet18", weights=path, num_classes=10)


class Payload:
    """Stands for any object whose unpickling would run code outside torch's allowlist."""


def test_arbitrary_pickles_are_refused(tmp_path):
    path = _save({"fc.weight": torch.zeros(1), "payload": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="weights-only"):
        read_checkpoint(path)


def test_non_tensor_entries_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="not a state dict"):
        read_checkpoint(_save({"fc.weight": torch.zeros(1), "epoch": 3}, tmp_path / "x.pth"))
    with pytest.raises(FileNotFoundError, match="weights"):
        zoo.load("resnet18", weights=str(tmp_path / "missing.pth"))

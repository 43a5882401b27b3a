"""Bad input to every classifier family: an unknown variant name, a state dict of another width,
and a batch that is not 4-D each raise an error that says what was expected."""
from __future__ import annotations

import pytest
import torch

import zoo

# family -> (a name that is not registered, the variant it is closest to, two variants of different widths)
CASES = {
    "densenet": ("densenet122", "densenet121", ("densenet121", "densenet169")),
    "googlenet": ("googlenet_v2", "googlenet", None),
    "res2net": ("res2net50_26w_8s", "res2net50_26w_4s", ("res2net50_26w_4s", "res2net101_26w_4s")),
    "resnest": ("resnest50e", "resnest50d", ("resnest50d", "resnest101e")),
    "ghostnet": ("ghostnet_150", "ghostnet_130", ("ghostnet_050", "ghostnet_100")),
    "efficientnet": ("efficientnet_b8", "efficientnet_b7", ("efficientnet_b0", "efficientnet_b1")),
    "addernet": ("adder_resnet32", "adder_resnet20", ("adder_resnet20", "adder_resnet50")),
}


def test_every_classifier_family_is_covered():
    families = {zoo.get_spec(n).family for n in zoo.list_models(task="classification")}
    assert set(CASES) == families - {"resnet", "darknet"}  # those two: tests/models/test_resnet.py, test_darknet.py


@pytest.mark.parametrize("family", sorted(CASES))
def test_unknown_variant_names_the_closest(family):
    unknown, closest, _ = CASES[family]
    with pytest.raises(KeyError, match=f"unknown model name '{unknown}'; closest: .*{closest}"):
        zoo.create_net(unknown)
    with pytest.raises(KeyError, match=closest):
        zoo.load(unknown)


@pytest.mark.parametrize("family", sorted(f for f, c in CASES.items() if c[2]))
def test_state_dict_of_another_width_is_refused(family, tmp_path):
    source, target = CASES[family][2]
    with torch.device("meta"):
        sd = zoo.create_net(source).state_dict()
    path = tmp_path / f"{source}.pth"
    torch.save({k: torch.zeros(v.shape, dtype=v.dtype) for k, v in sd.items()}, path)
    with pytest.raises(ValueError, match=f"weights: the state dict's keys match no known layout for '{target}'"):
        zoo.load(target, weights=str(path))


@pytest.mark.parametrize("family", sorted(CASES))
def test_input_that_is_not_a_4d_batch_is_refused(family):
    name = (CASES[family][2] or CASES[family][1:2])[0]  # the smaller one
    net = zoo.create_net(name, num_classes=10).eval()
    with pytest.raises(ValueError, match=r"x: expected a 4-D \[N, C, H, W\] batch, got shape \(3, 32, 32\)"):
        net(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match=r"takes 3 input channel\(s\) but got 1"):
        net(torch.randn(2, 1, 32, 32))

"""What the classifier families' tests share: loading a reference's state dict through
``zoo.load`` and comparing ``features_only`` maps with timm's."""
from __future__ import annotations

import torch

import zoo


def load_through_zoo(name: str, ref: torch.nn.Module, path, layout: str, **overrides) -> torch.nn.Module:
    """Save ``ref``'s state dict to ``path``, load it with ``zoo.load(name, weights=path)`` and check
    that ``layout`` is the layout that matched; return the loaded net in eval mode."""
    torch.save(ref.state_dict(), path)
    module = zoo.load(name, weights=str(path), **overrides)
    assert module.weights_layout == layout
    return module.net.eval()


def max_logit_diff(net: torch.nn.Module, ref: torch.nn.Module, x: torch.Tensor, num_classes: int = 1000) -> float:
    """max |net(x) - ref(x)| in eval mode (both must give ``[N, num_classes]`` logits)."""
    with torch.no_grad():
        got, want = net.eval()(x), ref.eval()(x)
    assert got.shape == want.shape == (x.shape[0], num_classes)
    return (got - want).abs().max().item()


def assert_features_match_timm(net: torch.nn.Module, ref: torch.nn.Module, x: torch.Tensor) -> None:
    """``net`` (built ``features_only``) gives timm's ``features_only`` maps for ``x`` within 1e-5,
    and its ``feature_info`` has timm's channels and reductions."""
    with torch.no_grad():
        got, want = net.eval()(x), ref.eval()(x)
    assert len(got) == len(want) == len(net.feature_info)
    for g, w, info, ref_info in zip(got, want, net.feature_info, ref.feature_info.get_dicts()):
        assert g.shape == w.shape
        assert (g - w).abs().max().item() <= 1e-5
        assert info["num_chs"] == ref_info["num_chs"] == g.shape[1]
        assert info["reduction"] == ref_info["reduction"] == x.shape[-1] // g.shape[-1]

"""Safe checkpoint loading and converters from foreign state-dict layouts.

Everything is read with ``torch.load(..., weights_only=True)``: a file that needs
arbitrary pickled objects is refused, never executed.

A state dict is accepted in any *layout* the zoo knows for the model's family:

* ``zoo``: the net's own keys (``create_net(name).state_dict()``);
* ``lightning``: a zoo LightningModule checkpoint, keys prefixed ``net.``;
* per family, the layouts registered with :func:`register_converter`
  (``torchvision``, ``timm``, ``darknet`` ...).

A layout matches when, after conversion, the keys are exactly the net's keys and
every shape agrees. ``module.`` prefixes (DataParallel / DDP) are stripped first.
"""
from __future__ import annotations

import os
import pickle
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .registry import get_spec

StateDict = dict[str, torch.Tensor]
Converter = Callable[[Mapping[str, torch.Tensor]], StateDict]

_CONVERTERS: dict[str, dict[str, Converter]] = {}


def register_converter(family: str, source: str) -> Callable[[Converter], Converter]:
    """Decorator: ``fn(state_dict) -> zoo state_dict`` converts ``source``'s layout for ``family``."""

    def wrap(fn: Converter) -> Converter:
        _CONVERTERS.setdefault(family, {})[source] = fn
        return fn

    return wrap


def converters(family: str) -> dict[str, Converter]:
    """The foreign layouts known for ``family``: ``{source: converter}``."""
    return dict(_CONVERTERS.get(family, {}))


def _safe_globals() -> list:
    """Plain containers Lightning puts in its checkpoints (hparams are an AttributeDict)."""
    allowed: list = []
    try:
        from lightning_fabric.utilities.data import AttributeDict

        allowed.append(AttributeDict)
    except ImportError:  # pragma: no cover - lightning is a hard dependency
        pass
    return allowed


def read_checkpoint(path: str | os.PathLike) -> tuple[StateDict, dict[str, Any] | None]:
    """Read ``path`` safely; return ``(state_dict, hyper_parameters or None)``.

    Accepts a plain state dict, a dict wrapping one under ``state_dict`` /
    ``model`` / ``model_state_dict``, or a Lightning checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights: no such file {path!r}")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise ValueError(
            f"weights: {path!r} is not a readable weights-only checkpoint "
            f"(files that need arbitrary pickled objects are refused): {err}"
        ) from err
    if not isinstance(obj, Mapping):
        raise ValueError(f"weights: {path!r} holds a {type(obj).__name__}, expected a state dict")
    hparams = None
    if "state_dict" in obj and ("hyper_parameters" in obj or "pytorch-lightning_version" in obj):
        hparams = dict(obj.get("hyper_parameters") or {})
        sd = obj["state_dict"]
    else:
        sd = next((obj[k] for k in ("state_dict", "model", "model_state_dict") if isinstance(obj.get(k), Mapping)), obj)
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"weights: {path!r} is not a state dict; entries that are not tensors: {bad[:5]}")
    return dict(sd), hparams


def _strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> StateDict | None:
    if not sd or not all(k.startswith(prefix) for k in sd):
        return None
    return {k[len(prefix):]: v for k, v in sd.items()}


def _mismatch(sd: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> str | None:
    """None when ``sd`` fits ``expected`` exactly; else a short description of the difference."""
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        return f"{len(missing)} missing key(s) {missing[:3]}, {len(unexpected)} unexpected key(s) {unexpected[:3]}"
    shapes = [
        f"{k}: file {tuple(sd[k].shape)} vs net {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(sd[k].shape) != tuple(v.shape)
    ]
    if shapes:
        return "shape mismatch: " + "; ".join(shapes[:3])
    return None


def convert_state_dict(name: str, state_dict: Mapping[str, torch.Tensor], net: nn.Module) -> tuple[StateDict, str]:
    """Convert ``state_dict`` into ``net``'s layout; return ``(state_dict, layout name)``.

    ``net`` is the registered model ``name`` as built (its keys and shapes are the target).
    Raises ``ValueError`` naming each layout tried and why it did not fit.
    """
    expected = net.state_dict()
    sd = dict(state_dict)
    while True:
        stripped = _strip_prefix(sd, "module.")
        if stripped is None:
            break
        sd = stripped
    candidates: list[tuple[str, Callable[[], StateDict | None]]] = [
        ("zoo", lambda: sd),
        ("lightning", lambda: _strip_prefix(sd, "net.")),
    ]
    family = get_spec(name).family
    for source, fn in converters(family).items():
        candidates.append((source, lambda fn=fn: fn(sd)))

    why: list[str] = []
    for layout, convert in candidates:
        try:
            out = convert()
        except (KeyError, ValueError, RuntimeError) as err:
            why.append(f"{layout}: {err}")
            continue
        if out is None:
            why.append(f"{layout}: key prefix does not match")
            continue
        problem = _mismatch(out, expected)
        if problem is None:
            return out, layout
        why.append(f"{layout}: {problem}")
    raise ValueError(
        f"weights: the state dict's keys match no known layout for {name!r} "
        f"(family {family!r}); tried " + " | ".join(why)
    )


def load_weights(net: nn.Module, name: str, path: str | os.PathLike) -> str:
    """Load the weights file ``path`` into ``net`` (the registered model ``name``); return the layout used."""
    sd, _ = read_checkpoint(path)
    converted, layout = convert_state_dict(name, sd, net)
    net.load_state_dict(converted, strict=True)
    return layout


# --------------------------------------------------------------------------------------
# Family converters
# --------------------------------------------------------------------------------------


@register_converter("resnet", "torchvision")
@register_converter("resnet", "timm")
def _resnet_shared_names(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """torchvision's and timm's ResNets (timm's SE as ``se.fc1``/``se.fc2`` 1x1 convs)
    use the same parameter names as the zoo's, so the keys carry over as they are."""
    return dict(sd)

"""Safe checkpoint loading and converters from foreign state-dict layouts.

Every file is read by :func:`zoo.serialization.load_file` (re-exported here as
:func:`load_file`), the one place the zoo deserialises a file: ``torch.load(...,
weights_only=True)``, ``.safetensors`` through the ``safetensors`` package, darknet binaries by
their own reader. A pickle that needs arbitrary code or objects is refused (a ``ValueError``
naming the file), never executed; a truncated or corrupt file is a ``ValueError`` naming it.

A state dict is accepted in any *layout* the zoo knows for the model:

* ``zoo``: the net's own keys (``create_net(name).state_dict()``); torchvision's and
  timm's ResNets use these names already;
* ``lightning``: a zoo LightningModule checkpoint, keys prefixed ``net.``;
* the layouts whose converters the model's family registered with it
  (``ModelSpec.converters``, defined beside the model, e.g. ``timm`` for ``darknet53``);
* ``darknet``: a darknet binary ``.weights`` file (or a backbone cut such as
  ``darknet53.conv.74``) for any net with a ``darknet_conv_order()`` method
  (:data:`DARKNET_MODELS`); see :func:`load_darknet_weights`.

A layout matches when, after conversion, the keys are exactly the net's keys and
every shape agrees. ``module.`` prefixes (DataParallel / DDP) are stripped first.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .registry import get_spec
from .serialization import DarknetWeights, is_darknet_file, load_file, read_darknet_weights

StateDict = dict[str, torch.Tensor]

#: The registered models whose nets have a darknet layout (``darknet_conv_order()``) that darknet
#: ``.weights`` files exist for (``yolov3_se`` has one too, but its SE blocks are not in darknet files).
DARKNET_MODELS = ("darknet53", "yolov1", "yolov2", "yolov3", "yolov3_tiny", "yolov4", "yolov4_tiny")
_DARKNET_LIST = ", ".join(DARKNET_MODELS[:-1]) + " and " + DARKNET_MODELS[-1]

__all__ = ["DARKNET_MODELS", "DarknetWeights", "convert_state_dict", "darknet_state_dict", "is_darknet_file",
           "load_darknet_weights", "load_file", "load_weights", "read_checkpoint", "read_darknet_weights"]


def read_checkpoint(path: str | os.PathLike) -> tuple[StateDict, dict[str, Any] | None]:
    """Read ``path`` safely (:func:`load_file`); return ``(state_dict, hyper_parameters or None)``.

    Accepts a plain state dict (``torch.save`` or ``.safetensors``), a dict wrapping one under
    ``state_dict`` / ``model`` / ``model_state_dict``, or a Lightning checkpoint. A darknet file
    (``*.weights``, ``*.conv.<N>``) comes back as :class:`DarknetWeights`, which
    :func:`convert_state_dict` maps onto the net.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights: no such file {path!r}")
    obj = load_file(path, map_location="cpu")
    if isinstance(obj, DarknetWeights):
        return obj, None
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
    A :class:`DarknetWeights` (from :func:`read_checkpoint`) is mapped with
    :func:`darknet_state_dict` (layout ``"darknet"``).
    """
    if isinstance(state_dict, DarknetWeights):
        return darknet_state_dict(net, state_dict, name=name), "darknet"
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
    spec = get_spec(name)
    for source, fn in spec.converters.items():
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
        f"(family {spec.family!r}); tried " + " | ".join(why)
    )


def load_weights(net: nn.Module, name: str, path: str | os.PathLike) -> str:
    """Load the weights file ``path`` into ``net`` (the registered model ``name``); return the layout used."""
    sd, _ = read_checkpoint(path)
    converted, layout = convert_state_dict(name, sd, net)
    net.load_state_dict(converted, strict=True)
    return layout


# --------------------------------------------------------------------------------------
# Darknet binary weights
# --------------------------------------------------------------------------------------

def darknet_state_dict(
    net: nn.Module, weights: DarknetWeights, strict: bool | None = None, name: str | None = None
) -> StateDict:
    """``net``'s full state dict with the layers in ``weights`` filled in from the file.

    ``net.darknet_conv_order()`` lists ``(conv, bn)`` in cfg order; per layer the
    file holds, as darknet's ``load_convolutional_weights``: with BN its bias (beta),
    weight (gamma), running_mean, running_var, else the conv bias; then the conv
    weight ``(out, in, kh, kw)`` flattened. An ``nn.Linear`` is the same: bias, then the
    ``(out, in)`` weight, whether it stands for a 1x1 conv classifier or a darknet ``[connected]``
    layer -- except in files whose header version has a major or minor number above 1000, which
    darknet's parser reads as holding ``[connected]`` weights transposed, ``(in, out)``: the layers
    ``net.darknet_connected_layers()`` lists (if the net has that method) are transposed back then.

    ``strict`` (default: True unless ``weights.partial``): the file must hold every
    darknet layer of the net and the net may have no parameters outside them (the SE
    blocks of ``yolov3_se`` are not in darknet files). With ``strict=False`` the file
    may stop after any whole layer (e.g. ``darknet53.conv.74``, Darknet-53's 52 convs)
    and the layers not in it keep their current values. Values left over after the
    last layer, or a file that ends inside a layer, raise ``ValueError`` naming it.
    """
    label = name or type(net).__name__
    path = weights.path
    if strict is None:
        strict = not weights.partial
    order_fn = getattr(net, "darknet_conv_order", None)
    if order_fn is None:
        raise ValueError(
            f"weights: {path!r} is a darknet weights file, but {label} has no darknet layout "
            f"(darknet files load into {_DARKNET_LIST})"
        )
    order = order_fn()
    names = {id(m): n for n, m in net.named_modules()}
    values = weights["values"]
    total = values.numel()
    major, minor = (int(v) for v in weights["header"][:2])
    transposed = major > 1000 or minor > 1000  # darknet parser.c: old [connected] layout

    def key(module: nn.Module, attr: str) -> str:
        prefix = names[id(module)]
        return f"{prefix}.{attr}" if prefix else attr

    plan: list[list[tuple[str, torch.Size]]] = []
    for i, (layer, bn) in enumerate(order):
        entries = []
        if bn is not None:
            entries += [(key(bn, a), getattr(bn, a).shape) for a in ("bias", "weight", "running_mean", "running_var")]
        else:
            if getattr(layer, "bias", None) is None:
                raise ValueError(f"darknet_conv_order: layer {i} of {label} has neither a BN nor a bias")
            entries.append((key(layer, "bias"), layer.bias.shape))
        entries.append((key(layer, "weight"), layer.weight.shape))
        plan.append(entries)
    connected = getattr(net, "darknet_connected_layers", lambda: [])()
    connected_weights = {key(layer, "weight") for layer in connected}
    needed = sum(s.numel() for entries in plan for _, s in entries)

    sd = net.state_dict()
    out: StateDict = dict(sd)
    covered: set[str] = set()
    pos = 0
    for i, entries in enumerate(plan):
        size = sum(s.numel() for _, s in entries)
        if pos == total and not strict and i > 0:
            break  # a cut of the first i layers
        if pos + size > total:
            if pos < total:
                where = f"ends inside layer {i} ({entries[-1][0]})"
            else:
                where = f"holds only the first {i} layers (strict=False loads such a cut, e.g. darknet53.conv.74)"
            raise ValueError(
                f"weights: {path!r} is too short for {label}: expected {needed} float32 values after its "
                f"header (the net's {len(plan)} darknet layers), found {total}; the file {where}"
            )
        for k, shape in entries:
            n = shape.numel()
            if transposed and k in connected_weights:
                out[k] = values[pos : pos + n].view(shape[1], shape[0]).t()
            else:
                out[k] = values[pos : pos + n].view(shape)
            covered.add(k)
            pos += n
    if pos != total:
        raise ValueError(
            f"weights: {path!r} does not fit {label}: expected {needed} float32 values after its header "
            f"(the net's {len(plan)} darknet layers), found {total}: {total - pos} float32 values are left "
            "over; was it saved for another model, number of classes or anchors?"
        )
    if strict:
        outside = [n for n, _ in net.named_parameters() if n not in covered]
        if outside:
            raise ValueError(
                f"weights: {path!r} is a darknet weights file, which holds only darknet's conv/BN layers, "
                f"but {label} has {len(outside)} parameters outside them ({', '.join(outside[:3])}, ...): "
                f"darknet weights exist for {_DARKNET_LIST}, not SE variants. To load the "
                "convs and leave the rest at its init, call "
                "zoo.weights.load_darknet_weights(net, path, strict=False)"
            )
    return out


def load_darknet_weights(net: nn.Module, path: str | os.PathLike, strict: bool | None = None) -> None:
    """Load a darknet ``.weights`` file into ``net`` (in place).

    ``net`` is any net with ``darknet_conv_order()``: ``YOLOv3`` (yolov3.cfg),
    ``YOLOv3Tiny`` (yolov3-tiny.cfg), ``Darknet53`` (darknet53.cfg: 52 convs + the
    classifier as a 1x1 conv), ``YOLOv4`` / ``YOLOv4Tiny`` (AlexeyAB's yolov4.cfg /
    yolov4-tiny.cfg), ``YOLOv2`` (yolov2.cfg), ``YOLOv1`` (yolo.cfg of 2015: 24 convs with biases
    and two connected layers). The number of classes and anchors must be the file's.
    ``strict``: see :func:`darknet_state_dict` -- by default a ``*.conv.<N>`` cut
    loads partially (the rest keeps its init), any other file must cover the whole
    net; ``strict=False`` also loads ``yolov3_se`` from yolov3 weights (the SE blocks
    keep their init). Raises ``ValueError`` naming the file when it does not fit.
    """
    weights = load_file(path, format="darknet")
    net.load_state_dict(darknet_state_dict(net, weights, strict=strict), strict=True)

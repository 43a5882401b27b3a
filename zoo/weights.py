"""Safe checkpoint loading and converters from foreign state-dict layouts.

Everything is read with ``torch.load(..., weights_only=True)``: a file that needs
arbitrary pickled objects is refused, never executed.

A state dict is accepted in any *layout* the zoo knows for the model:

* ``zoo``: the net's own keys (``create_net(name).state_dict()``); torchvision's and
  timm's ResNets use these names already;
* ``lightning``: a zoo LightningModule checkpoint, keys prefixed ``net.``;
* the layouts whose converters the model's family registered with it
  (``ModelSpec.converters``, defined beside the model, e.g. ``timm`` for ``darknet53``);
* ``darknet``: a darknet binary ``.weights`` file (or a backbone cut such as
  ``darknet53.conv.74``) for any net with a ``darknet_conv_order()`` method
  (``yolov3``, ``yolov3_tiny``, ``darknet53``); see :func:`load_darknet_weights`.

A layout matches when, after conversion, the keys are exactly the net's keys and
every shape agrees. ``module.`` prefixes (DataParallel / DDP) are stripped first.
"""
from __future__ import annotations

import array
import os
import pickle
import re
import struct
import sys
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .registry import get_spec

StateDict = dict[str, torch.Tensor]


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
    ``model`` / ``model_state_dict``, or a Lightning checkpoint. A darknet file
    (``*.weights``, ``*.conv.<N>``) comes back as :class:`DarknetWeights`, which
    :func:`convert_state_dict` maps onto the net.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights: no such file {path!r}")
    if is_darknet_file(path):
        return read_darknet_weights(path), None
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

_DARKNET_PARTIAL = re.compile(r"\.conv\.\d+$")


def is_darknet_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like a darknet weights file: ``*.weights``, or
    ``*.conv.<N>`` (what ``darknet partial`` writes, e.g. ``darknet53.conv.74``)."""
    p = os.fspath(path)
    return p.endswith(".weights") or _DARKNET_PARTIAL.search(p) is not None


class DarknetWeights(dict):
    """A darknet weights file as read: ``{"header": int64 [4], "values": float32 [N]}``.

    ``header`` is (major, minor, revision, seen); ``values`` every float after it.
    ``path`` names the file; ``partial`` is True for ``*.conv.<N>`` files (a cut of
    the first convs only), which then load with ``strict=False``.
    """

    def __init__(self, header: torch.Tensor, values: torch.Tensor, path: str, partial: bool = False) -> None:
        super().__init__(header=header, values=values)
        self.path = path
        self.partial = partial


def read_darknet_weights(path: str | os.PathLike) -> DarknetWeights:
    """Read a darknet binary weights file.

    Layout (little-endian): int32 major, minor, revision; then ``seen`` (images
    trained on) as int64 when ``major*10 + minor >= 2`` and both are below 1000,
    else as int32 (darknet's parser.c); then float32 values to the end.
    ``ValueError`` naming the file when the header is bad or the rest is not a whole
    number of float32 values.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights: no such file {path!r}")
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if len(data) < 16:
        raise ValueError(f"weights: {path!r} is too short for a darknet weights header ({len(data)} bytes)")
    major, minor, revision = struct.unpack_from("<3i", data, 0)
    # versions darknet writes are 0.1.x / 0.2.x; 1000 is added to mark transposed dense layers
    if not (0 <= major < 2000 and 0 <= minor < 2000 and revision >= 0):
        raise ValueError(
            f"weights: {path!r} has a bad darknet header: version {major}.{minor}.{revision} "
            "(is it a darknet .weights file?)"
        )
    offset = 20 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 16
    if len(data) < offset:
        raise ValueError(f"weights: {path!r} is too short for a darknet weights header ({len(data)} bytes)")
    (seen,) = struct.unpack_from("<q" if offset == 20 else "<i", data, 12)
    if seen < 0:
        raise ValueError(f"weights: {path!r} has a bad darknet header: seen = {seen}")
    nbytes = len(data) - offset
    if nbytes % 4:
        raise ValueError(
            f"weights: {path!r} is not a darknet weights file: {nbytes} bytes after the header "
            "are not a whole number of float32 values"
        )
    if nbytes == 0:
        values = torch.zeros(0)
    elif sys.byteorder == "little":  # no copy: the tensor views the file's bytes
        values = torch.frombuffer(data, dtype=torch.float32, offset=offset, count=nbytes // 4)
    else:  # pragma: no cover
        floats = array.array("f")
        floats.frombytes(memoryview(data)[offset:])
        floats.byteswap()
        values = torch.frombuffer(floats, dtype=torch.float32)
    header = torch.tensor([major, minor, revision, seen], dtype=torch.int64)
    return DarknetWeights(header, values, path, partial=_DARKNET_PARTIAL.search(path) is not None)


def darknet_state_dict(
    net: nn.Module, weights: DarknetWeights, strict: bool | None = None, name: str | None = None
) -> StateDict:
    """``net``'s full state dict with the layers in ``weights`` filled in from the file.

    ``net.darknet_conv_order()`` lists ``(conv, bn)`` in cfg order; per layer the
    file holds, as darknet's ``load_convolutional_weights``: with BN its bias (beta),
    weight (gamma), running_mean, running_var, else the conv bias; then the conv
    weight ``(out, in, kh, kw)`` flattened (an ``nn.Linear`` is a 1x1 conv).

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
            "(darknet files load into yolov3, yolov3_tiny and darknet53)"
        )
    order = order_fn()
    names = {id(m): n for n, m in net.named_modules()}
    values = weights["values"]
    total = values.numel()

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
                f"weights: {path!r} is too short for {label}: it holds {total} float32 values after its "
                f"header, the net's {len(plan)} darknet layers need {needed}; the file {where}"
            )
        for k, shape in entries:
            n = shape.numel()
            out[k] = values[pos : pos + n].view(shape)
            covered.add(k)
            pos += n
    if pos != total:
        raise ValueError(
            f"weights: {path!r} does not fit {label}: {total - pos} float32 values are left over after its "
            f"{len(plan)} darknet layers ({needed} values); was it saved for another model, "
            "number of classes or anchors?"
        )
    if strict:
        outside = [n for n, _ in net.named_parameters() if n not in covered]
        if outside:
            raise ValueError(
                f"weights: {path!r} is a darknet weights file, which holds only darknet's conv/BN layers, "
                f"but {label} has {len(outside)} parameters outside them ({', '.join(outside[:3])}, ...): "
                "darknet weights exist for yolov3, yolov3_tiny and darknet53, not SE variants. To load the "
                "convs and leave the rest at its init, call "
                "zoo.weights.load_darknet_weights(net, path, strict=False)"
            )
    return out


def load_darknet_weights(net: nn.Module, path: str | os.PathLike, strict: bool | None = None) -> None:
    """Load a darknet ``.weights`` file into ``net`` (in place).

    ``net`` is any net with ``darknet_conv_order()``: ``YOLOv3`` (yolov3.cfg),
    ``YOLOv3Tiny`` (yolov3-tiny.cfg), ``Darknet53`` (darknet53.cfg: 52 convs + the
    classifier as a 1x1 conv). The number of classes and anchors must be the file's.
    ``strict``: see :func:`darknet_state_dict` -- by default a ``*.conv.<N>`` cut
    loads partially (the rest keeps its init), any other file must cover the whole
    net; ``strict=False`` also loads ``yolov3_se`` from yolov3 weights (the SE blocks
    keep their init). Raises ``ValueError`` naming the file when it does not fit.
    """
    weights = read_darknet_weights(path)
    net.load_state_dict(darknet_state_dict(net, weights, strict=strict), strict=True)

"""The model registry: a name -> :class:`ModelSpec` table.

No ``torch.nn`` code lives here, and importing it does not import torch. Builders
register themselves with :func:`register_model` in their family's file under
``zoo/models``, which is imported the first time a name is looked up; everything else
looks them up by name.

``zoo/models/index.json`` caches one row per built-in model (name, task, family, parameter
count, reference) with a digest of the files that define them, so that ``python -m zoo
list`` answers without importing torch or building a model. When those files change the
digest no longer matches, and :func:`model_table` rebuilds the rows (and the file, where it
can write it); ``make docs`` rewrites it too.
"""
from __future__ import annotations

import difflib
import fnmatch
import hashlib
import importlib
import json
import os
from dataclasses import dataclass, field, asdict
from pathlib import Path
from typing import Any, Callable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TASKS = ("classification", "detection", "steganalysis", "video")


@dataclass(frozen=True)
class ModelSpec:
    """Everything the zoo knows about a registered model.

    ``defaults`` are the keyword arguments the builder gets unless overridden
    (``num_classes``, ``in_chans``, anchors, ...). ``input_size`` is ``(C, H, W)``
    of the default input (``(T, C, H, W)`` for a ``video`` model: T frames per clip); ``mean``/``std`` are the per-channel normalisation the
    model expects. ``reference`` names the outside implementation the zoo's
    architecture is checked against, e.g. ``"timm:resnet50"``. ``converters`` maps
    a foreign state-dict layout (``"timm"``, ``"torchvision"``, ...) to the function
    ``fn(state_dict) -> state_dict`` that renames its keys to the zoo's; the family's
    file defines them beside the model (:func:`zoo.weights.convert_state_dict` tries them).
    ``verified`` says in a few words how the test suite checks the architecture; by default,
    for a ``timm:`` / ``torchvision:`` reference, "weight identity" (the reference's state dict,
    loaded through the converters, gives the same logits within 1e-5 in fp32).
    """

    name: str
    family: str
    task: str
    builder: Callable[..., Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, ...] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    paper: str = ""
    reference: str = ""
    converters: dict[str, Callable[..., Any]] = field(default_factory=dict)
    verified: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["builder"] = f"{self.builder.__module__}.{self.builder.__qualname__}"
        d["converters"] = sorted(self.converters)
        return d


_REGISTRY: dict[str, ModelSpec] = {}


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task: expected one of {TASKS}, got {task!r}")


def register_model(
    name: str | None = None,
    *,
    family: str,
    task: str,
    input_size: tuple[int, ...] = (3, 224, 224),
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    paper: str = "",
    reference: str = "",
    converters: dict[str, Callable[..., Any]] | None = None,
    verified: str = "",
    **defaults: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``builder`` under ``name`` (default: the function's name).

    Extra keyword arguments become the spec's ``defaults`` and are passed to the
    builder by :func:`create_net` unless overridden there. ``converters`` and ``verified``:
    see :class:`ModelSpec`.
    """
    _check_task(task)
    if not verified and reference.split(":", 1)[0] in ("timm", "torchvision"):
        verified = "weight identity"

    def wrap(builder: Callable[..., Any]) -> Callable[..., Any]:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"name: model {key!r} is already registered by {_REGISTRY[key].builder.__module__}")
        defaults.setdefault("in_chans", input_size[-3])
        _REGISTRY[key] = ModelSpec(
            name=key,
            family=family,
            task=task,
            builder=builder,
            defaults=dict(defaults),
            input_size=tuple(input_size),
            mean=tuple(mean),
            std=tuple(std),
            paper=paper,
            reference=reference,
            converters=dict(converters or {}),
            verified=verified,
        )
        return builder

    return wrap


_BUILTINS_LOADED = False


def _load_builtins() -> None:
    """Import ``zoo.models`` (which registers every built-in family) once."""
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        importlib.import_module(f"{__package__}.models")


def list_models(pattern: str = "*", task: str | None = None) -> list[str]:
    """Sorted registered names matching the fnmatch ``pattern``, optionally of one ``task``."""
    if task is not None:
        _check_task(task)
    _load_builtins()
    return sorted(
        n for n, s in _REGISTRY.items() if fnmatch.fnmatchcase(n, pattern) and (task is None or s.task == task)
    )


def get_spec(name: str) -> ModelSpec:
    """The spec registered as ``name``; ``KeyError`` naming the closest names otherwise."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        pass
    close = difflib.get_close_matches(str(name), list(_REGISTRY), n=5, cutoff=0.5)
    hint = f"; closest: {', '.join(close)}" if close else f"; registered: {len(_REGISTRY)} models (zoo.list_models())"
    raise KeyError(f"unknown model name {name!r}{hint}")


def create_net(name: str, **overrides: Any):
    """Build the bare ``nn.Module`` registered as ``name`` with the spec defaults + ``overrides``."""
    spec = get_spec(name)
    kwargs = {**spec.defaults, **overrides}
    return spec.builder(**kwargs)


def count_params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def count_macs(net, input_size: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on a ``(1, *input_size)`` input.

    Counted with ``torch.utils.flop_counter`` (convolutions and matrix products;
    it reports 2 FLOPs per MAC) on meta tensors, so nothing is computed.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.empty((1, *input_size), device="meta")
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            net(x)
    finally:
        net.train(was_training)
    return counter.get_total_flops() // 2


def model_info(name: str, **overrides: Any) -> dict[str, Any]:
    """The spec of ``name`` as a dict plus ``params`` and ``macs`` at the default input.

    The net is built on the meta device, so this is cheap even for large models.
    """
    import torch

    spec = get_spec(name)
    with torch.device("meta"):
        net = create_net(name, **overrides)
    info = spec.as_dict()
    info["params"] = count_params(net)
    in_chans = overrides.get("in_chans", spec.defaults.get("in_chans", spec.input_size[-3]))
    info["macs"] = count_macs(net, (*spec.input_size[:-3], in_chans, *spec.input_size[-2:]))
    return info


# ----------------------------------------------------------------------------- the cached model table

INDEX_PATH = Path(__file__).parent / "models" / "index.json"
TABLE_COLUMNS = ("name", "task", "family", "params", "macs", "input", "reference", "verified")


def sources_digest() -> str:
    """sha1 of the files that define the built-in models and their parameter counts
    and MACs (this file, ``zoo/models/*.py``, ``zoo/nn/*.py`` and ``zoo/ops/__init__.py``, which
    holds the MAC formulas of the custom ops)."""
    root = Path(__file__).parent
    files = [root / "registry.py", *sorted((root / "models").glob("*.py")), *sorted((root / "nn").glob("*.py")),
             root / "ops" / "__init__.py"]
    digest = hashlib.sha1()
    for f in files:
        digest.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()


def build_model_index() -> dict[str, Any]:
    """The index of every registered model: ``{"digest", "models": [{name, task, family, params,
    macs, input, reference, verified}, ...]}`` (``macs`` at the default ``input`` "CxHxW"); each
    model is built and run on the meta device, so nothing is computed."""
    import torch

    rows = []
    for name in list_models():
        spec = get_spec(name)
        with torch.device("meta"):
            net = create_net(name)
        rows.append({"name": name, "task": spec.task, "family": spec.family, "params": count_params(net),
                     "macs": count_macs(net, spec.input_size), "input": "x".join(map(str, spec.input_size)),
                     "reference": spec.reference, "verified": spec.verified})
    return {"digest": sources_digest(), "models": rows}


def write_model_index(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Rebuild the index and write it to ``path`` (default :data:`INDEX_PATH`; ``make docs`` does this)."""
    index = build_model_index()
    Path(INDEX_PATH if path is None else path).write_text(json.dumps(index, indent=1) + "\n")
    return index


def model_table(task: str | None = None, pattern: str = "*") -> list[dict[str, Any]]:
    """One row per built-in model matching ``pattern`` (and ``task``): name, task, family,
    params (int), macs (int), input, reference and verified -- from ``zoo/models/index.json`` while it is current, else
    from the models themselves (then the index is rewritten, if it can be)."""
    if task is not None:
        _check_task(task)
    try:
        index = json.loads(INDEX_PATH.read_text())
    except (OSError, ValueError):
        index = None
    if not index or index.get("digest") != sources_digest() or not all(
            set(TABLE_COLUMNS) <= set(r) for r in index.get("models", ())):
        try:
            index = write_model_index()
        except OSError:  # a read-only install: use the fresh rows without saving them
            index = build_model_index()
    return [r for r in index["models"]
            if fnmatch.fnmatchcase(r["name"], pattern) and (task is None or r["task"] == task)]

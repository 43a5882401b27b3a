"""zoo: a PyTorch Lightning model zoo with exact architectures and custom ops.

>>> import zoo
>>> zoo.list_models("resnet*")          # registered names
>>> net = zoo.create_net("resnet50")    # plain nn.Module
>>> module = zoo.load("resnet18", num_classes=10)   # LightningModule for its task
>>> print(zoo.flow("yolov3_se").to_table())         # per-layer shapes, params, MACs, memory

Importing ``zoo`` is cheap: torch and the model families are imported when first needed
(the first registry lookup, or a submodule such as ``zoo.ops``).
"""
from __future__ import annotations

import importlib
from typing import Any

from .registry import ModelSpec, create_net, get_spec, list_models, model_info, register_model

__version__ = "0.1.0"

_SUBMODULES = ("callbacks", "cli", "data", "losses", "metrics", "models", "nn", "ops", "optim", "registry", "tasks", "tracer", "weights")


def load(name: str, weights: str | None = None, **overrides: Any):
    """The task LightningModule for ``name`` (see :func:`zoo.tasks.load`)."""
    from .tasks import load as _load

    return _load(name, weights=weights, **overrides)


def flow(model: Any, example: Any = None):
    """The data flow of one forward pass of ``model`` (a module or a registry name) on ``example``
    (see :func:`zoo.tracer.flow`): a :class:`zoo.tracer.Flow` with per-layer rows and totals."""
    from .tracer import flow as _flow

    return _flow(model, example)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ModelSpec",
    "create_net",
    "flow",
    "get_spec",
    "list_models",
    "load",
    "model_info",
    "register_model",
]

"""zoo: a PyTorch Lightning model zoo with exact architectures and custom ops.

>>> import zoo
>>> zoo.list_models("resnet*")          # registered names
>>> net = zoo.create_net("resnet50")    # plain nn.Module
>>> module = zoo.load("resnet18", num_classes=10)   # LightningModule for its task
"""
from __future__ import annotations

from typing import Any

from . import models  # noqa: F401  (fills the registry)
from .registry import ModelSpec, create_net, get_spec, list_models, model_info, register_model

__version__ = "0.1.0"


def load(name: str, weights: str | None = None, **overrides: Any):
    """The task LightningModule for ``name`` (see :func:`zoo.tasks.load`)."""
    from .tasks import load as _load

    return _load(name, weights=weights, **overrides)


__all__ = [
    "ModelSpec",
    "create_net",
    "get_spec",
    "list_models",
    "load",
    "model_info",
    "register_model",
]

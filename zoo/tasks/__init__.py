"""LightningModules, one per task; each wraps a net built by name."""
from __future__ import annotations

import inspect
from typing import Any

import pytorch_lightning as pl

from ..registry import get_spec
from ..weights import convert_state_dict, read_checkpoint
from .classification import Classifier
from .base import Task
from .detection import Detector
from .steganalysis import Steganalyzer, stego_probability
from .video import VideoClassifier

TASK_CLASSES: dict[str, type[pl.LightningModule]] = {
    "classification": Classifier,
    "detection": Detector,
    "steganalysis": Steganalyzer,
    "video": VideoClassifier,
}


def load(name: str, weights: str | None = None, **overrides: Any) -> pl.LightningModule:
    """The task LightningModule for the registered model ``name``.

    ``weights`` is a zoo (Lightning) checkpoint, whose saved hyper-parameters
    rebuild the model (``overrides`` win), or a state-dict file in any layout
    :mod:`zoo.weights` knows for the family (torchvision, timm, ...). The layout that matched
    (``"zoo"``, ``"lightning"``, ``"timm"``, ``"torchvision"``, ``"darknet"``, ...) is kept in the
    module's ``weights_layout`` attribute (None without ``weights``).
    """
    spec = get_spec(name)
    try:
        cls = TASK_CLASSES[spec.task]
    except KeyError:
        raise NotImplementedError(f"name: no task module for {spec.task!r} models yet ({name!r})") from None
    hparams: dict[str, Any] = {}
    state_dict = None
    if weights is not None:
        state_dict, saved = read_checkpoint(weights)
        if saved:
            if saved.get("arch", name) != name:
                raise ValueError(f"weights: {weights!r} is a checkpoint of {saved['arch']!r}, not {name!r}")
            # LightningCLI also records ``_class_path`` / ``_instantiator``: keep the init arguments only
            accepted = inspect.signature(cls.__init__).parameters
            hparams = {k: v for k, v in saved.items() if k in accepted}
    hparams.update(overrides)
    hparams["arch"] = name
    module = cls(**hparams)
    module.weights_layout = None
    if state_dict is not None:
        converted, module.weights_layout = convert_state_dict(name, state_dict, module.net)
        module.net.load_state_dict(converted, strict=True)
    return module


__all__ = ["Classifier", "Detector", "Steganalyzer", "TASK_CLASSES", "Task", "VideoClassifier", "load",
           "stego_probability"]

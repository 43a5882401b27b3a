"""Reusable layers (pure torch.nn)."""
from .checks import check_image_batch
from .backbone import ClassifierBackbone
from .se import SEBlock, make_divisible

__all__ = ["ClassifierBackbone", "SEBlock", "check_image_batch", "make_divisible"]

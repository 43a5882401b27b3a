"""Reusable layers (pure torch.nn)."""
from .checks import check_image_batch
from .se import SEBlock, make_divisible

__all__ = ["SEBlock", "check_image_batch", "make_divisible"]

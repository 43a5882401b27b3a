"""Reusable layers (pure torch.nn)."""
from .checks import check_image_batch
from .head import PooledClassifierHead
from .se import SEBlock, make_divisible

__all__ = ["PooledClassifierHead", "SEBlock", "check_image_batch", "make_divisible"]

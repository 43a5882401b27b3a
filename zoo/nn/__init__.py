"""Reusable layers (pure torch.nn)."""
from .checks import check_image_batch, check_in_chans
from .adder import Adder2d
from .backbone import ClassifierBackbone
from .se import SEBlock, make_divisible

__all__ = ["Adder2d", "ClassifierBackbone", "SEBlock", "check_image_batch", "check_in_chans", "make_divisible"]

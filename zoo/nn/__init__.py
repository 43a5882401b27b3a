"""Reusable layers (pure torch.nn)."""
from .checks import check_image_batch, check_in_chans
from .backbone import ClassifierBackbone
from .res2net import Bottle2neck
from .se import SEBlock, make_divisible
from .split_attn import SplitAttn

__all__ = [
    "Bottle2neck", "ClassifierBackbone", "SEBlock", "SplitAttn", "check_image_batch", "check_in_chans", "make_divisible",
]

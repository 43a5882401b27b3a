"""Reusable layers (pure torch.nn)."""
from .checks import check_image_batch, check_in_chans
from .backbone import ClassifierBackbone
from .se import SEBlock, make_divisible
from .drop_path import DropPath, drop_path
from .ghost import GhostBottleneck, GhostModule
from .mbconv import DepthwiseSeparable, MBConv

__all__ = [
    "ClassifierBackbone",
    "DepthwiseSeparable",
    "DropPath",
    "GhostBottleneck",
    "GhostModule",
    "MBConv",
    "SEBlock",
    "check_image_batch",
    "check_in_chans",
    "drop_path",
    "make_divisible",
]

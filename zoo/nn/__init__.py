"""Reusable layers (pure torch.nn)."""
from .checks import check_image_batch, check_in_chans
from .backbone import ClassifierBackbone
from .dense import DenseBlock, DenseLayer, Transition
from .inception import ConvBNReLU, InceptionAux, InceptionBlock
from .res2net import Bottle2neck
from .se import SEBlock, make_divisible
from .split_attn import SplitAttn

__all__ = [
    "Bottle2neck",
    "ClassifierBackbone",
    "ConvBNReLU",
    "DenseBlock",
    "DenseLayer",
    "InceptionAux",
    "InceptionBlock",
    "SEBlock",
    "SplitAttn",
    "Transition",
    "check_image_batch",
    "check_in_chans",
    "make_divisible",
]

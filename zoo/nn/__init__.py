"""Reusable layers (pure torch.nn)."""
from .checks import check_image_batch, check_in_chans
from .backbone import ClassifierBackbone
from .dense import DenseBlock, DenseLayer, Transition
from .inception import ConvBNReLU, InceptionAux, InceptionBlock
from .se import SEBlock, make_divisible

__all__ = [
    "ClassifierBackbone",
    "ConvBNReLU",
    "DenseBlock",
    "DenseLayer",
    "InceptionAux",
    "InceptionBlock",
    "SEBlock",
    "Transition",
    "check_image_batch",
    "check_in_chans",
    "make_divisible",
]

"""Reusable layers (pure torch.nn)."""
from .adder import Adder2d
from .checks import check_clip_batch, check_image_batch, check_in_chans
from .backbone import ClassifierBackbone
from .batchnorm import BatchNorm1d, BatchNorm2d, BatchNorm3d, convert_batchnorm
from .dense import DenseBlock, DenseLayer, Transition
from .drop_path import DropPath, drop_path
from .ghost import GhostBottleneck, GhostModule
from .inception import ConvBNReLU, InceptionAux, InceptionBlock
from .mbconv import DepthwiseSeparable, MBConv
from .res2net import Bottle2neck
from .se import SEBlock, make_divisible
from .split_attn import SplitAttn
from .srnet import SRNetType1, SRNetType2, SRNetType3, SRNetType4

__all__ = [
    "Adder2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "Bottle2neck",
    "ClassifierBackbone",
    "ConvBNReLU",
    "DenseBlock",
    "DenseLayer",
    "DepthwiseSeparable",
    "DropPath",
    "GhostBottleneck",
    "GhostModule",
    "InceptionAux",
    "InceptionBlock",
    "MBConv",
    "SEBlock",
    "SplitAttn",
    "SRNetType1",
    "SRNetType2",
    "SRNetType3",
    "SRNetType4",
    "Transition",
    "check_clip_batch",
    "check_image_batch",
    "check_in_chans",
    "convert_batchnorm",
    "drop_path",
    "make_divisible",
]

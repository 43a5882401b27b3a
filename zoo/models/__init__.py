"""Architectures (plain nn.Module, no Lightning). Importing this registers every family."""
from . import darknet, densenet, googlenet, res2net, resnest, resnet, yolov3  # noqa: F401  (each registers its family)
from .darknet import ConvBNAct, DarkResidual, DarkStage, Darknet53
from .densenet import DenseNet
from .googlenet import GoogLeNet, GoogLeNetOutputs
from .res2net import Res2Net
from .resnest import ResNeSt, ResNestBottleneck
from .resnet import BasicBlock, Bottleneck, ResNet
from .yolov3 import YOLOBranch, YOLOv3, YOLOv3Tiny

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ConvBNAct",
    "DarkResidual",
    "DarkStage",
    "Darknet53",
    "DenseNet",
    "GoogLeNet",
    "GoogLeNetOutputs",
    "ResNeSt",
    "ResNestBottleneck",
    "ResNet",
    "Res2Net",
    "YOLOBranch",
    "YOLOv3",
    "YOLOv3Tiny",
]

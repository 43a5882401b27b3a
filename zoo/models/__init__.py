"""Architectures (plain nn.Module, no Lightning). Importing this registers every family."""
from . import darknet, efficientnet, ghostnet, resnet, yolov3  # noqa: F401  (each registers its family)
from .darknet import ConvBNAct, DarkResidual, DarkStage, Darknet53
from .efficientnet import EfficientNet
from .ghostnet import GhostNet
from .resnet import BasicBlock, Bottleneck, ResNet
from .yolov3 import YOLOBranch, YOLOv3, YOLOv3Tiny

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ConvBNAct",
    "DarkResidual",
    "DarkStage",
    "Darknet53",
    "EfficientNet",
    "GhostNet",
    "ResNet",
    "YOLOBranch",
    "YOLOv3",
    "YOLOv3Tiny",
]

"""Architectures (plain nn.Module, no Lightning). Importing this registers every family."""
from . import addernet, darknet, resnet, yolov3  # noqa: F401  (each registers its family)
from .addernet import AdderBasicBlock, AdderBottleneck, AdderResNet
from .darknet import ConvBNAct, DarkResidual, DarkStage, Darknet53
from .resnet import BasicBlock, Bottleneck, ResNet
from .yolov3 import YOLOBranch, YOLOv3, YOLOv3Tiny

__all__ = [
    "AdderBasicBlock",
    "AdderBottleneck",
    "AdderResNet",
    "BasicBlock",
    "Bottleneck",
    "ConvBNAct",
    "DarkResidual",
    "DarkStage",
    "Darknet53",
    "ResNet",
    "YOLOBranch",
    "YOLOv3",
    "YOLOv3Tiny",
]

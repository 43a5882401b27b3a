"""Architectures (plain nn.Module, no Lightning). Importing this registers every family."""
from . import (  # noqa: F401  (each registers its family)
    addernet, darknet, densenet, efficientnet, ghostnet, googlenet, res2net, resnest, resnet, srnet, xunet,
    video, yenet, yolov1, yolov2, yolov3, yolov4,
)
from .addernet import AdderBasicBlock, AdderBottleneck, AdderResNet
from .darknet import ConvBNAct, DarkResidual, DarkStage, Darknet53
from .densenet import DenseNet
from .efficientnet import EfficientNet
from .ghostnet import GhostNet
from .googlenet import GoogLeNet, GoogLeNetOutputs
from .res2net import Res2Net
from .resnest import ResNeSt, ResNestBottleneck
from .resnet import BasicBlock, Bottleneck, ResNet
from .srnet import SRNet, SRNetRGB
from .video import R3D18, BasicBlock3d, DeepfakeEffNet, DeepfakeEffNetLSTM
from .xunet import XuNet
from .yenet import YeNet
from .yolov1 import YOLOv1
from .yolov2 import YOLOv2, darknet_reorg
from .yolov3 import YOLOBranch, YOLOv3, YOLOv3Tiny
from .yolov4 import CSPDarknet53, YOLOv4, YOLOv4Tiny

__all__ = [
    "AdderBasicBlock",
    "AdderBottleneck",
    "AdderResNet",
    "BasicBlock",
    "BasicBlock3d",
    "Bottleneck",
    "CSPDarknet53",
    "ConvBNAct",
    "DarkResidual",
    "DarkStage",
    "Darknet53",
    "DeepfakeEffNet",
    "DeepfakeEffNetLSTM",
    "DenseNet",
    "EfficientNet",
    "GhostNet",
    "GoogLeNet",
    "GoogLeNetOutputs",
    "ResNeSt",
    "ResNestBottleneck",
    "ResNet",
    "R3D18",
    "Res2Net",
    "SRNet",
    "SRNetRGB",
    "XuNet",
    "YeNet",
    "YOLOBranch",
    "YOLOv1",
    "YOLOv2",
    "YOLOv3",
    "YOLOv3Tiny",
    "YOLOv4",
    "YOLOv4Tiny",
    "darknet_reorg",
]

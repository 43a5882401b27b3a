"""Architectures (plain nn.Module, no Lightning). Importing this registers every family."""
from . import resnet  # noqa: F401  (registers the ResNet family)
from .resnet import BasicBlock, Bottleneck, ResNet

__all__ = ["BasicBlock", "Bottleneck", "ResNet"]

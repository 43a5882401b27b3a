"""Task losses and target assignment, testable without Lightning."""
from .yolo import BOX_LOSSES, LEVEL_BALANCE, YOLOLoss, build_targets

__all__ = ["BOX_LOSSES", "LEVEL_BALANCE", "YOLOLoss", "build_targets"]

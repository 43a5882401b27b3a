"""Task losses and target assignment, testable without Lightning."""
from .yolo import BOX_LOSSES, LEVEL_BALANCE, RegionLoss, YOLOLoss, YOLOv1Loss, build_targets

__all__ = ["BOX_LOSSES", "LEVEL_BALANCE", "RegionLoss", "YOLOLoss", "YOLOv1Loss", "build_targets"]

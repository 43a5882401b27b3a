"""LightningDataModules, datasets and transforms, one file per task."""
from .classification import DigitsDataModule, ImageFolderDataModule, load_digits_images, read_image
from .detection import (
    INSECT_CLASSES,
    DetectionDataModule,
    DetectionImages,
    DetectionTransforms,
    Letterbox,
    VOCDetection,
    detection_collate,
    eval_transforms,
    kmeans_anchors,
    read_voc_xml,
    train_transforms,
)
from .synthetic_insects import synthetic_insects

__all__ = [
    "DigitsDataModule",
    "ImageFolderDataModule",
    "load_digits_images",
    "read_image",
    "INSECT_CLASSES",
    "DetectionDataModule",
    "DetectionImages",
    "DetectionTransforms",
    "Letterbox",
    "VOCDetection",
    "detection_collate",
    "eval_transforms",
    "kmeans_anchors",
    "read_voc_xml",
    "synthetic_insects",
    "train_transforms",
]

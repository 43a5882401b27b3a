"""LightningDataModules, datasets and transforms, one file per task."""
from .classification import DigitsDataModule, ImageFolderDataModule, load_digits_images
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
    to_original,
    train_transforms,
)
from .images import IMAGE_SUFFIXES, open_image, read_image
from .synthetic_insects import synthetic_insects

__all__ = [
    "DigitsDataModule",
    "ImageFolderDataModule",
    "load_digits_images",
    "IMAGE_SUFFIXES",
    "open_image",
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
    "to_original",
    "train_transforms",
]

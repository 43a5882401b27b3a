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
from .steganalysis import (
    StegoDataModule,
    StegoPairs,
    default_covers,
    embed_covers,
    embed_image,
    pair_collate,
    read_pixels,
)
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
    "StegoDataModule",
    "StegoPairs",
    "default_covers",
    "embed_covers",
    "embed_image",
    "pair_collate",
    "read_pixels",
    "synthetic_insects",
    "to_original",
    "train_transforms",
]
